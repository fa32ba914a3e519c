//! Reading a kubeconfig as kubectl reads it: the current context's cluster (server,
//! `certificate-authority-data` or `certificate-authority`, `insecure-skip-tls-verify`),
//! user (`client-certificate-data`/`client-key-data` or their file forms, `token` or
//! `tokenFile`) and namespace. Relative file paths are relative to the kubeconfig's folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::Value;

/// What a kubeconfig says about reaching and authenticating to its current cluster.
#[derive(Debug, Default)]
pub struct Kubeconfig {
    /// The server URL (`https://127.0.0.1:6443`).
    pub server: String,
    /// The context's namespace (`default` when it names none).
    pub namespace: String,
    /// The cluster CA (PEM) to trust, when given.
    pub ca_pem: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify: true`.
    pub insecure: bool,
    /// The client certificate followed by its key (PEM), when given.
    pub identity_pem: Option<Vec<u8>>,
    /// The bearer token, when given.
    pub token: Option<String>,
}

/// Reads the kubeconfig at `path`; every problem names the file and the field.
pub fn read(path: &Path) -> anyhow::Result<Kubeconfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: cannot read the kubeconfig (pass --kubeconfig or set KUBECONFIG)",
            path.display()
        )
    })?;
    let config: Value = yaml_serde::from_str(&text)
        .with_context(|| format!("{}: not a kubeconfig", path.display()))?;
    let current = config["current-context"].as_str().unwrap_or_default();
    let named = |list: &str, name: &str| {
        config[list]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == name).cloned())
    };
    let context = named("contexts", current).unwrap_or(Value::Null);
    let cluster_name = context["context"]["cluster"].as_str().unwrap_or_default();
    let cluster = named("clusters", cluster_name)
        .or_else(|| config["clusters"].get(0).cloned())
        .with_context(|| format!("{}: no cluster in the kubeconfig", path.display()))?;
    let cluster = &cluster["cluster"];
    let server = cluster["server"]
        .as_str()
        .with_context(|| format!("{}: cluster {cluster_name:?} has no server", path.display()))?;
    let namespace = context["context"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let user_name = context["context"]["user"].as_str().unwrap_or_default();
    let user = named("users", user_name)
        .map(|u| u["user"].clone())
        .unwrap_or(Value::Null);
    let source = Source { path };
    let ca_pem = source.inline_or_file(cluster, "certificate-authority")?;
    let cert = source.inline_or_file(&user, "client-certificate")?;
    let key = source.inline_or_file(&user, "client-key")?;
    let identity_pem = match (cert, key) {
        (Some(mut cert), Some(key)) => {
            cert.push(b'\n');
            cert.extend(key);
            Some(cert)
        }
        (None, None) => None,
        _ => bail!(
            "{}: user {user_name:?} needs both client-certificate and client-key (or neither)",
            path.display()
        ),
    };
    let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (Some(token), _) => Some(token.to_string()),
        (None, Some(file)) => {
            let file = source.resolve(file);
            let token = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "{}: users[{user_name:?}].tokenFile {}",
                    path.display(),
                    file.display()
                )
            })?;
            Some(token.trim().to_string())
        }
        (None, None) => None,
    };
    Ok(Kubeconfig {
        server: server.to_string(),
        namespace: namespace.to_string(),
        ca_pem,
        insecure: cluster["insecure-skip-tls-verify"].as_bool() == Some(true),
        identity_pem,
        token,
    })
}

struct Source<'a> {
    path: &'a Path,
}

impl Source<'_> {
    /// A path from the kubeconfig, relative to its folder unless absolute.
    fn resolve(&self, file: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(file)
    }

    /// `<field>-data` (base64) or the file `<field>` names, decoded.
    fn inline_or_file(&self, section: &Value, field: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(data) = section[format!("{field}-data")].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .with_context(|| format!("{}: {field}-data: not base64", self.path.display()))?;
            return Ok(Some(bytes));
        }
        let Some(file) = section[field].as_str() else {
            return Ok(None);
        };
        let file = self.resolve(file);
        let bytes = std::fs::read(&file)
            .with_context(|| format!("{}: {field} {}", self.path.display(), file.display()))?;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inline_and_file_credentials_of_the_current_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.path().join("token"), "tok-file\n").unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "clusters:\n- name: other\n  cluster: {{server: http://other}}\n\
             - name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: ca.crt\n\
             users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
             - name: bot\n  user: {{tokenFile: token}}\n\
             contexts:\n- name: a\n  context: {{cluster: c, user: admin, namespace: ml}}\n\
             - name: b\n  context: {{cluster: c, user: bot}}\n\
             current-context: a\n",
            b64("CERT"),
            b64("KEY"),
        );
        let path = dir.path().join("config");
        std::fs::write(&path, &text).unwrap();
        let config = read(&path).unwrap();
        assert_eq!(config.server, "https://127.0.0.1:6443");
        assert_eq!(config.namespace, "ml");
        assert_eq!(config.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(config.identity_pem.as_deref(), Some(&b"CERT\nKEY"[..]));
        assert_eq!(config.token, None);
        std::fs::write(
            &path,
            text.replace("current-context: a", "current-context: b"),
        )
        .unwrap();
        let config = read(&path).unwrap();
        assert_eq!(
            (config.token.as_deref(), config.namespace.as_str()),
            (Some("tok-file"), "default")
        );
        let broken = text.replace(
            "certificate-authority: ca.crt",
            "certificate-authority: nope",
        );
        std::fs::write(&path, broken).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("certificate-authority"), "{error}");
    }
}
