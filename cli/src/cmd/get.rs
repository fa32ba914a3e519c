//! `cox get`: list or show objects as the server's table, YAML, JSON or names; `-w` follows
//! changes.

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::api_client::{ApiClient, Target, block_on, kind_label, resolve_kind, resource_path};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Arguments of `cox get`.
#[derive(Args)]
pub struct GetArgs {
    /// The kind: a plural, singular or short name (`pods`, `po`, `tj`).
    pub kind: String,
    /// Object names; all objects when none.
    pub names: Vec<String>,
    /// Output format: yaml, json, wide or name (default: a table).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Only objects whose labels match this selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, print changes as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox get`.
pub fn run(args: GetArgs) -> anyhow::Result<()> {
    block_on(get(args))
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    let kind = resolve_kind(&args.kind)?;
    let namespace = (!args.all_namespaces).then_some(client.namespace.as_str());
    let format = args.output.as_deref().unwrap_or("table");
    if !matches!(format, "table" | "wide" | "yaml" | "json" | "name") {
        anyhow::bail!("-o {format}: unsupported output format (use yaml, json, wide or name)");
    }
    let mut query = Vec::new();
    if let Some(selector) = &args.selector {
        query.push(format!("labelSelector={}", encode(selector)));
    }
    let objects_path = |name: Option<&str>| resource_path(kind, namespace, name);
    let accept = if matches!(format, "table" | "wide") {
        TABLE
    } else {
        "application/json"
    };
    let mut bodies = Vec::new();
    if args.names.is_empty() {
        let path = format!("{}?{}", objects_path(None), query.join("&"));
        bodies.push(client.ok(Method::GET, &path, accept, None).await?);
    } else {
        for name in &args.names {
            bodies.push(
                client
                    .ok(Method::GET, &objects_path(Some(name)), accept, None)
                    .await?,
            );
        }
    }
    let mut printed_header = false;
    for body in &bodies {
        match format {
            "yaml" => print!("{}", yaml_serde::to_string(body)?),
            "json" => println!("{}", serde_json::to_string_pretty(body)?),
            "name" => {
                let items = body["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![body.clone()]);
                for item in items {
                    println!(
                        "{}/{}",
                        kind_label(kind),
                        item["metadata"]["name"].as_str().unwrap_or_default()
                    );
                }
            }
            _ => {
                print_table(
                    body,
                    args.all_namespaces && kind.namespaced,
                    !printed_header,
                );
                printed_header = true;
            }
        }
    }
    if args.watch {
        let rv = bodies
            .last()
            .and_then(|b| b["metadata"]["resourceVersion"].as_str())
            .unwrap_or("0");
        query.push(format!("watch=true&resourceVersion={rv}"));
        if let [name] = args.names.as_slice() {
            query.push(format!("fieldSelector=metadata.name%3D{}", encode(name)));
        }
        watch(
            &client,
            &format!("{}?{}", objects_path(None), query.join("&")),
            args.all_namespaces && kind.namespaced,
        )
        .await?;
    }
    Ok(())
}

async fn watch(client: &ApiClient, path: &str, with_namespace: bool) -> anyhow::Result<()> {
    let mut response = client.stream(path, TABLE).await?;
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Value = serde_json::from_slice(&buffer[..end]).unwrap_or(Value::Null);
            buffer.drain(..=end);
            match line["type"].as_str() {
                Some("ERROR") => anyhow::bail!(
                    "{}",
                    line["object"]["message"].as_str().unwrap_or("watch failed")
                ),
                Some("BOOKMARK") | None => {}
                Some(_) => print_table(&line["object"], with_namespace, false),
            }
        }
    }
    Ok(())
}

fn print_table(table: &Value, with_namespace: bool, header: bool) {
    let columns: Vec<String> = table["columnDefinitions"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    if header {
        let mut head = columns.clone();
        if with_namespace {
            head.insert(0, "NAMESPACE".to_string());
        }
        rows.push(head);
    }
    for row in table["rows"].as_array().into_iter().flatten() {
        let mut cells: Vec<String> = row["cells"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if with_namespace {
            cells.insert(
                0,
                row["object"]["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        rows.push(cells);
    }
    if rows.len() == usize::from(header) {
        if header {
            eprintln!("No resources found.");
        }
        return;
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
