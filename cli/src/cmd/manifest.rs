//! Reading manifests for `cox apply -f` and `cox delete -f`: files, directories (their
//! `.yaml`, `.yml` and `.json` files) and `-` (stdin); JSON or multi-document YAML, checked with
//! the object model first so errors name the file, document and field.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

/// One object from a manifest.
pub struct Document {
    /// `job.yaml: document 2`, for messages.
    pub origin: String,
    /// The object as written (unknown fields included, for the server to judge).
    pub value: Value,
}

/// Every object in `paths`, in order.
pub fn read(paths: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    for path in paths {
        for (label, bytes) in sources(path)? {
            coxswain_api::decode(&bytes).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
            documents.extend(split(&label, &bytes)?);
        }
    }
    Ok(documents)
}

fn sources(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
        return Ok(vec![("stdin".to_string(), bytes)]);
    }
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list the directory", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        entries.sort();
        let mut out = Vec::new();
        for entry in entries {
            out.extend(sources(&entry)?);
        }
        return Ok(out);
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read the file", path.display()))?;
    Ok(vec![(path.display().to_string(), bytes)])
}

fn split(label: &str, bytes: &[u8]) -> anyhow::Result<Vec<Document>> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let value =
            serde_json::from_slice(bytes).with_context(|| format!("{label}: not valid JSON"))?;
        return Ok(vec![Document {
            origin: label.to_string(),
            value,
        }]);
    }
    let mut documents = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_slice(bytes).enumerate() {
        let value = Value::deserialize(document)
            .with_context(|| format!("{label}: document {}", index + 1))?;
        if !value.is_null() {
            documents.push(Document {
                origin: format!("{label}: document {}", index + 1),
                value,
            });
        }
    }
    Ok(documents)
}
