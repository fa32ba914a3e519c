//! `cox delete`: delete objects by kind and name, or every object in manifests (`-f`).

use std::path::PathBuf;

use clap::Args;
use coxswain_api::registry::KindInfo;
use reqwest::Method;

use super::api_client::{
    ApiClient, Target, block_on, kind_label, resolve_kind, resource_path, status_message,
};
use super::apply::identify;
use super::manifest;

/// Arguments of `cox delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The kind, then object names (`cox delete tj llm`); not with `-f`.
    pub args: Vec<String>,
    /// Files, directories or `-` naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Do not fail when an object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox delete`.
pub fn run(args: DeleteArgs) -> anyhow::Result<()> {
    block_on(delete(args))
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    let mut targets: Vec<(&'static KindInfo, String, String)> = Vec::new();
    if !args.files.is_empty() {
        for document in manifest::read(&args.files)? {
            let (kind, name) = identify(&document.value)
                .map_err(|e| anyhow::anyhow!("{}: {e}", document.origin))?;
            let namespace = document.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&client.namespace);
            targets.push((kind, namespace.to_string(), name.to_string()));
        }
    } else {
        let [kind, names @ ..] = args.args.as_slice() else {
            anyhow::bail!("name a kind and objects (`cox delete pod web`) or pass -f FILE");
        };
        if names.is_empty() {
            anyhow::bail!("name the {kind} to delete");
        }
        let kind = resolve_kind(kind)?;
        targets.extend(
            names
                .iter()
                .map(|n| (kind, client.namespace.clone(), n.clone())),
        );
    }
    for (kind, namespace, name) in targets {
        let path = resource_path(kind, Some(&namespace), Some(&name));
        let reply = client
            .send(Method::DELETE, &path, "application/json", None)
            .await?;
        match reply.status.as_u16() {
            200 | 202 => println!("{} \"{name}\" deleted", kind_label(kind)),
            404 if args.ignore_not_found => {}
            _ => anyhow::bail!("{}", status_message(&reply)),
        }
    }
    Ok(())
}
