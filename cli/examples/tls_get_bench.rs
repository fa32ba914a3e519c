//! Requests per second of GETs through `cox server --secure-listen`, for measuring what
//! authentication and authorization cost per request:
//!
//! `cargo run -p coxswain-cli --example tls_get_bench -- URL CA_FILE TOKEN [SECONDS] [CLIENTS]`
//!
//! Each of CLIENTS tasks sends GETs of URL with the bearer TOKEN back to back for SECONDS
//! (default 10 s, 4 clients); every answer must be 200. Prints requests/s. TOKEN `-` sends
//! none; `BENCH_IDENTITY=<file>` presents that PEM certificate and key instead (a node).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, ca, token, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: tls_get_bench URL CA_FILE TOKEN [SECONDS] [CLIENTS]");
    };
    let seconds: u64 = rest.first().map_or(Ok(10), |s| s.parse())?;
    let clients: usize = rest.get(1).map_or(Ok(4), |s| s.parse())?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca);
    if let Some(file) = std::env::var_os("BENCH_IDENTITY") {
        builder = builder.identity(reqwest::Identity::from_pem(&std::fs::read(file)?)?);
    }
    let http = builder.build()?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token, done) = (http.clone(), url.clone(), token.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut request = http.get(&url);
                if token != "-" {
                    request = request.bearer_auth(&token);
                }
                let response = request.send().await?;
                anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
                response.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "{total} GETs in {seconds} s with {clients} clients: {:.0} requests/s",
        total as f64 / seconds as f64
    );
    Ok(())
}
