//! `cox token create`: a bootstrap token for joining nodes, as `kubeadm token create` makes
//! it — a Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`;
//! prints `<id>.<secret>`.

use std::io::Read;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::api_client::{ApiClient, Target, block_on};

/// Arguments of `cox token`.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print it.
    Create(CreateArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// How long the token is valid (`24h`, `30m`, `90s`); `0` never expires.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Extra groups (each `system:bootstrappers:<name>`), comma-separated.
    #[arg(long, default_value = "")]
    groups: String,
    /// A description kept in the secret.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox token`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(args) => block_on(create(args)),
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid ttl {text:?}: expected e.g. 24h, 30m or 90s"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid ttl {text:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// `len` random characters of `[a-z0-9]`.
fn random_chars(len: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        urandom.read_exact(&mut byte)?;
        // 252 = 7 * 36: drop the bytes that would bias the choice.
        if byte[0] < 252 {
            out.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    for group in args
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !group.starts_with("system:bootstrappers:") {
            anyhow::bail!("--groups: {group:?} must start with system:bootstrappers:");
        }
    }
    let client = ApiClient::new(&args.target)?;
    let token = create_bootstrap_token(&client, args.ttl, &args.groups, &args.description).await?;
    println!("{token}");
    Ok(())
}

/// Creates a bootstrap token valid for `ttl` (zero: forever) and returns it as
/// `<id>.<secret>`; `groups` (comma-separated, may be empty) and `description` go into
/// its Secret.
pub async fn create_bootstrap_token(
    client: &ApiClient,
    ttl: Duration,
    groups: &str,
    description: &str,
) -> anyhow::Result<String> {
    let (id, secret) = (random_chars(6)?, random_chars(16)?);
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
    });
    if !ttl.is_zero() {
        let expires = jiff::Timestamp::now()
            + jiff::SignedDuration::from_secs(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        data["expiration"] = json!(expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if !groups.is_empty() {
        data["auth-extra-groups"] = json!(groups);
    }
    if !description.is_empty() {
        data["description"] = json!(description);
    }
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": data,
    });
    client
        .ok(
            Method::POST,
            "/api/v1/namespaces/kube-system/secrets",
            "application/json",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await?;
    Ok(format!("{id}.{secret}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_token_characters() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("1d").is_err());
        let token = random_chars(16).unwrap();
        assert_eq!(token.len(), 16);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
