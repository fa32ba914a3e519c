//! `cox describe`: one object in full (without managed fields) and the events about it.

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::api_client::{ApiClient, Target, block_on, resolve_kind, resource_path};
use super::get::encode;

/// Arguments of `cox describe`.
#[derive(Args)]
pub struct DescribeArgs {
    /// The kind (`pod`, `tj`, ...).
    pub kind: String,
    /// The object's name.
    pub name: String,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox describe`.
pub fn run(args: DescribeArgs) -> anyhow::Result<()> {
    block_on(describe(args))
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    let kind = resolve_kind(&args.kind)?;
    let namespace = client.namespace.clone();
    let path = resource_path(kind, Some(&namespace), Some(&args.name));
    let mut object = client
        .ok(Method::GET, &path, "application/json", None)
        .await?;
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    println!("Kind:         {}", kind.kind);
    print!("{}", yaml_serde::to_string(&object)?);
    let mut selector = format!(
        "involvedObject.name={},involvedObject.kind={}",
        args.name, kind.kind
    );
    if kind.namespaced {
        selector.push_str(&format!(",involvedObject.namespace={namespace}"));
    }
    let events_path = format!(
        "{}?fieldSelector={}",
        resource_path(
            coxswain_api::registry::resolve("events").expect("events are served"),
            Some(&namespace),
            None
        ),
        encode(&selector)
    );
    let events = client
        .ok(Method::GET, &events_path, "application/json", None)
        .await?;
    let items = events["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("Events:       <none>");
        return Ok(());
    }
    println!("Events:");
    for event in items {
        let text = |field: &str| event[field].as_str().unwrap_or_default().to_string();
        let when = [
            text("lastTimestamp"),
            text("eventTime"),
            text("firstTimestamp"),
        ]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
        println!(
            "  {:<8} {:<20} {:<22} {}",
            text("type"),
            text("reason"),
            when,
            text("message")
        );
    }
    Ok(())
}
