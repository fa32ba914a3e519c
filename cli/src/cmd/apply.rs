//! `cox apply -f`: create or update every object in the manifests with server-side apply
//! (field manager `cox`), refusing unknown fields.

use std::path::PathBuf;

use clap::Args;
use coxswain_api::registry;
use reqwest::Method;
use serde_json::Value;

use super::api_client::{ApiClient, Target, block_on, kind_label, resource_path, status_message};
use super::manifest;

/// Arguments of `cox apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// Files, directories or `-` (stdin) holding the objects.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox apply`.
pub fn run(args: ApplyArgs) -> anyhow::Result<()> {
    block_on(apply(args))
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    for document in manifest::read(&args.files)? {
        let applied = apply_value(&client, &document.value, &document.origin, "cox").await?;
        println!(
            "{}/{} {}",
            kind_label(applied.kind),
            applied.name,
            applied.verb()
        );
    }
    Ok(())
}

/// What a server-side apply did to one object.
pub struct Applied {
    /// The object's kind.
    pub kind: &'static registry::KindInfo,
    /// The object's name.
    pub name: String,
    /// Whether the object was created (else it was updated or left as it was).
    pub created: bool,
    /// The object as the server stored it.
    pub object: Value,
}

impl Applied {
    /// `created` or `configured`, as kubectl prints.
    pub fn verb(&self) -> &'static str {
        if self.created {
            "created"
        } else {
            "configured"
        }
    }
}

/// Creates or updates `value` with server-side apply as field manager `manager`, forcing
/// conflicts and refusing unknown fields; errors are prefixed with `origin`.
pub async fn apply_value(
    client: &ApiClient,
    value: &Value,
    origin: &str,
    manager: &str,
) -> anyhow::Result<Applied> {
    let (kind, name) = identify(value).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let namespace = value["metadata"]["namespace"]
        .as_str()
        .unwrap_or(&client.namespace);
    let path = format!(
        "{}?fieldManager={manager}&force=true&fieldValidation=Strict",
        resource_path(kind, Some(namespace), Some(name))
    );
    let body = serde_json::to_vec(value)?;
    let reply = client
        .send(
            Method::PATCH,
            &path,
            "application/json",
            Some(("application/apply-patch+yaml", body)),
        )
        .await?;
    let created = match reply.status.as_u16() {
        201 => true,
        200 => false,
        _ => anyhow::bail!("{origin}: {}", status_message(&reply)),
    };
    Ok(Applied {
        kind,
        name: name.to_string(),
        created,
        object: reply.body,
    })
}

/// The kind and name of a manifest object.
pub fn identify(value: &Value) -> anyhow::Result<(&'static registry::KindInfo, &str)> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind_name = value["kind"].as_str().unwrap_or_default();
    let kind = registry::lookup(api_version, kind_name)
        .ok_or_else(|| anyhow::anyhow!("no kind {kind_name:?} is served in {api_version:?}"))?;
    let name = value["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("metadata.name: required (apply needs a name, not generateName)")
        })?;
    Ok((kind, name))
}
