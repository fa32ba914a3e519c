//! `cox server`: the control plane — the Kubernetes-compatible API and the node service (one
//! port; nodes marked NotReady when their lease expires) over the embedded store
//! (default) or etcd.
//!
//! It writes an admin kubeconfig to `<data-dir>/kubeconfig`. The first SIGTERM or Ctrl-C drains
//! open requests and watches within a grace period; a second one exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coxswain_control_plane::apiserver::{ApiServer, check_listen_address, kubeconfig};
use coxswain_control_plane::metrics::{MeteredStore, Metrics, run_cluster_collector};
use coxswain_control_plane::nodeservice::cidr::{self, Ipv4Cidr};
use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig, lifecycle};
use coxswain_control_plane::scheduler::runner::{self as scheduler, RunnerConfig};
use coxswain_control_plane::store::{EmbeddedStore, EtcdStore, Store};
use coxswain_control_plane::{controllers, workloads};
use tokio_util::sync::CancellationToken;

/// How long open requests and watches get to finish after the first signal.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `cox server`.
#[derive(Args)]
pub struct ServerArgs {
    /// Logging: `--log-format text|json`, `--log-level`.
    #[command(flatten)]
    pub log: super::server::LogArgs,
    /// Directory for the embedded store and the kubeconfig.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to listen on; only loopback until TLS and authentication exist.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Also serve the API and the node service on this Unix socket (mode 0600), e.g. for
    /// agents in other network namespaces of this machine (`--server unix://PATH`).
    #[arg(long)]
    pub listen_unix: Option<PathBuf>,
    /// etcd client URLs (comma-separated); the embedded store is used when absent.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// How long a node's lease may go unrenewed before the node is marked NotReady
    /// (`40s`, `2m`, or seconds).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_grace_period: Duration,
    /// The range node pod CIDRs are assigned from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Cidr,
    /// The TLS listener.
    #[command(flatten)]
    pub tls: super::server_tls::TlsArgs,
    /// The prefix length of each node's pod CIDR (kube-controller-manager's
    /// `--node-cidr-mask-size`); at least the cluster CIDR's, at most 30.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Encrypt resources at rest as this Kubernetes `EncryptionConfiguration` file says
    /// (providers `aesgcm` and `identity`); see docs/security.md.
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// How often the agents' resource usage is scraped for `metrics.k8s.io` (`kubectl
    /// top`); CPU is the rate between the last two scrapes (`15s`, `1m`, or seconds).
    #[arg(long, default_value = "15s", value_parser = parse_resolution)]
    pub metrics_resolution: Duration,
}

fn parse_resolution(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(|d| {
        if d.is_zero() {
            Err("--metrics-resolution must be at least 1s".to_string())
        } else {
            Ok(d)
        }
    })
}

/// Parses `40s`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 40s, 2m or 1h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: the unit must be s, m or h"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// Runs `cox server` until a signal stops it.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(&args.log);
    check_listen_address(&args.listen)?;
    cidr::check_node_prefix(&args.cluster_cidr, args.node_cidr_mask_size)
        .map_err(|e| anyhow::anyhow!("--node-cidr-mask-size: {e}"))?;
    // Bad flags are refused before the store is opened and anything runs.
    super::server_tls::signing_duration(&args.tls)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(serve(args))
}

/// How the daemons (`cox server`, `cox agent`) log to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

/// The logging flags every daemon takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// Log format: `text` or `json`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `coxswain_node_agent=debug,info`); `RUST_LOG`
    /// wins when set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Logs to stderr as `args` say.
pub fn init_logging(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|error| {
            eprintln!("--log-level {:?}: {error}; using info", args.log_level);
            tracing_subscriber::EnvFilter::new("info")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let encryption = super::reencrypt::load_config(args.encryption_provider_config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = if args.etcd_endpoints.is_empty() {
        let dir = args.data_dir.join("store");
        Arc::new(
            EmbeddedStore::open(&dir)
                .with_context(|| format!("opening the embedded store in {}", dir.display()))?,
        )
    } else {
        Arc::new(
            EtcdStore::connect(&args.etcd_endpoints)
                .await
                .context("connecting to etcd")?,
        )
    };
    let shutdown = CancellationToken::new();
    // An early error return stops the background tasks too (the store's object counter
    // would otherwise warn about a closed store on the way out).
    let _stop_on_return = shutdown.clone().drop_guard();
    let metrics = Metrics::new();
    let backend_label = if args.etcd_endpoints.is_empty() {
        "embedded"
    } else {
        "etcd"
    };
    let metered = Arc::new(MeteredStore::new(store, backend_label, metrics.clone()));
    tokio::spawn(metered.clone().run_object_counter(shutdown.clone()));
    let server = ApiServer::new(
        super::reencrypt::encrypted(metered, encryption),
        shutdown.clone(),
    )
    .await?
    .with_metrics(metrics.clone());
    // Service accounts come with authentication: the TLS listener issues their tokens.
    let server = if args.tls.secure_listen.is_some() {
        server.with_service_accounts()
    } else {
        server
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another server using the port?)",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let url = format!("http://{addr}");
    let unix_socket = match &args.listen_unix {
        Some(path) => Some(
            coxswain_control_plane::serve::bind_unix(path)
                .with_context(|| format!("--listen-unix {}", path.display()))?,
        ),
        None => None,
    };
    let secure = super::server_tls::bind(&args.tls, &args.data_dir, server.store()).await?;
    let kubeconfig_path = args.data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &url)
        .with_context(|| format!("writing {}", kubeconfig_path.display()))?;
    let backend = if args.etcd_endpoints.is_empty() {
        "embedded store"
    } else {
        "etcd"
    };
    eprintln!("cox server: serving the API on {url} ({backend})");
    tracing::info!(%url, backend, "serving the API and the node service");
    if let Some(socket) = &unix_socket {
        eprintln!(
            "cox server: also on unix://{} (mode 0600)",
            socket.path().display()
        );
    }
    eprintln!(
        "cox server: kubeconfig written to {} (export KUBECONFIG={0})",
        kubeconfig_path.display()
    );
    if let Some(secure) = &secure {
        eprintln!(
            "cox server: serving the API with TLS on {} (admin kubeconfig {})",
            secure.url,
            secure.kubeconfig.display()
        );
    }
    tokio::spawn(watch_signals(shutdown.clone()));
    // Everything but the API reads and writes through the API, in-process.
    let client = coxswain_control_plane::client::in_process(&server);
    let client_for_csr = client.clone();
    tokio::spawn(scheduler::run(
        client.clone(),
        RunnerConfig {
            metrics: Some(metrics.clone()),
            ..RunnerConfig::default()
        },
        shutdown.clone(),
    ));
    tokio::spawn(controllers::run_all(
        client.clone(),
        controllers::ControllersConfig {
            metrics: Some(metrics.controllers.clone()),
            ..Default::default()
        },
        shutdown.clone(),
    ));
    tokio::spawn(workloads::run(
        client.clone(),
        workloads::WorkloadsConfig {
            metrics: Some(metrics.controllers.clone()),
            ..Default::default()
        },
        shutdown.clone(),
    ));
    tokio::spawn(run_cluster_collector(
        client.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    server.spawn_resource_metrics(
        client.clone(),
        coxswain_control_plane::apiserver::resource_metrics::scraper::ScraperConfig {
            resolution: args.metrics_resolution,
        },
    );
    let node_config = NodeServiceConfig {
        cluster_cidr: args.cluster_cidr,
        node_cidr_prefix: args.node_cidr_mask_size,
        lease_grace: args.node_grace_period,
        ..NodeServiceConfig::default()
    };
    tokio::spawn(lifecycle::run(
        client.clone(),
        node_config.lease_grace,
        shutdown.clone(),
    ));
    let mut node_service = NodeService::new(client, node_config);
    if let Some(secure) = &secure {
        node_service = node_service.with_service_account_tokens(secure.service_accounts.clone());
        tokio::spawn(controllers::service_accounts::run(
            client_for_csr.clone(),
            secure.pki.ca_pem.clone(),
            shutdown.clone(),
        ));
    }
    // One router (one node service, so one CIDR allocator) behind both listeners.
    let router = coxswain_control_plane::serve::router(&server, node_service, shutdown.clone());
    if let Some(socket) = unix_socket {
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) =
                coxswain_control_plane::serve::serve_unix(router, socket, shutdown).await
            {
                eprintln!("cox server: {e}");
            }
        });
    }
    if let Some(secure) = secure {
        tokio::spawn(controllers::csr::run(
            client_for_csr.clone(),
            secure.pki.clone(),
            secure.signing_duration,
            shutdown.clone(),
        ));
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let served = coxswain_control_plane::serve_tls::serve_tls(
                router,
                secure.listener,
                secure.tls,
                secure.auth,
                shutdown,
            );
            if let Err(e) = served.await {
                eprintln!("cox server: {e}");
            }
        });
    }
    let mut served = tokio::spawn(coxswain_control_plane::serve::serve_tcp(
        router,
        listener,
        shutdown.clone(),
    ));
    tokio::select! {
        result = &mut served => {
            result.context("the server task failed")??;
            return Ok(());
        }
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(DRAIN_GRACE, served).await {
        Ok(result) => result.context("the server task failed")??,
        Err(_) => eprintln!("cox server: requests still open after {DRAIN_GRACE:?}; exiting"),
    }
    eprintln!("cox server: stopped");
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM or Ctrl-C and exits on the second.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let mut interrupts = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        interrupts += 1;
        if interrupts == 1 {
            eprintln!("cox server: shutting down (signal again to exit at once)");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
