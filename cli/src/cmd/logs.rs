//! `cox logs`: a container's log, read through the API server's `pods/<name>/log`
//! endpoint (which fetches it from the agent on the pod's node), as `kubectl logs` does.
//!
//! The body is copied to stdout as it arrives, so `-f` prints lines while the container
//! writes them and ends when the container exits. Errors are the server's one-line
//! messages (no such pod, a multi-container pod without `-c`, a pod not yet on a node, an
//! agent that cannot be reached), with the flag to use added where it helps.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use super::api_client::{ApiClient, Target, block_on};
use super::get::encode;

/// Arguments of `cox logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (needed when the pod has more than one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing as the container writes, until it exits.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous instance of the container (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Prefix each line with the RFC 3339 time it was written.
    #[arg(long)]
    pub timestamps: bool,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox logs`.
pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    block_on(logs(args))
}

/// The URL path and query of the log request `args` describe.
fn log_path(namespace: &str, args: &LogsArgs) -> String {
    let mut query = Vec::new();
    if let Some(container) = &args.container {
        query.push(format!("container={}", encode(container)));
    }
    if args.follow {
        query.push("follow=true".to_string());
    }
    if args.previous {
        query.push("previous=true".to_string());
    }
    if let Some(tail) = args.tail {
        query.push(format!("tailLines={tail}"));
    }
    if args.timestamps {
        query.push("timestamps=true".to_string());
    }
    let mut path = format!(
        "/api/v1/namespaces/{}/pods/{}/log",
        encode(namespace),
        encode(&args.pod)
    );
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    let path = log_path(&client.namespace, &args);
    let mut response = match client.stream(&path, "text/plain, application/json").await {
        Ok(response) => response,
        Err(err)
            if err
                .to_string()
                .contains("a container name must be specified") =>
        {
            anyhow::bail!("{err} (pass -c NAME)")
        }
        Err(err) => return Err(err),
    };
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading the log of pod {}", args.pod))?
    {
        let written = stdout.write_all(&chunk).and_then(|()| stdout.flush());
        match written {
            Ok(()) => {}
            // `cox logs ... | head`: the reader is done, so are we.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing the log to stdout"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        logs: LogsArgs,
    }

    #[test]
    fn flags_become_the_kubernetes_query() {
        let cli = Cli::parse_from([
            "cox",
            "web",
            "-c",
            "main",
            "-f",
            "--previous",
            "--tail",
            "5",
            "--timestamps",
        ]);
        assert_eq!(
            log_path("team a", &cli.logs),
            "/api/v1/namespaces/team%20a/pods/web/log?container=main&follow=true\
             &previous=true&tailLines=5&timestamps=true"
        );
        let plain = Cli::parse_from(["cox", "web"]);
        assert_eq!(
            log_path("default", &plain.logs),
            "/api/v1/namespaces/default/pods/web/log"
        );
    }
}
