//! `cox server --secure-listen`: the TLS listener's certificates, credentials and the
//! admin kubeconfig that reaches it; RBAC over the server's store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use coxswain_control_plane::apiserver::auth::bootstrap::BootstrapTokens;
use coxswain_control_plane::apiserver::auth::node::NodeAuthorizer;
use coxswain_control_plane::apiserver::auth::pki::ClusterPki;
use coxswain_control_plane::apiserver::auth::rbac::Rbac;
use coxswain_control_plane::apiserver::auth::service_accounts::ServiceAccountTokens;
use coxswain_control_plane::apiserver::auth::{Authenticator, StaticTokens};
use coxswain_control_plane::apiserver::kubeconfig;

/// The TLS listener's flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Also serve the API over TLS with authentication and authorization here
    /// (`0.0.0.0:6443` is allowed: TLS and authentication guard it). The CA and
    /// certificates live in `<data-dir>/pki` (made on first start); the admin kubeconfig
    /// for it is `<data-dir>/admin.kubeconfig`.
    #[arg(long, value_name = "ADDR")]
    pub secure_listen: Option<SocketAddr>,
    /// Extra names or IPs for the serving certificate (repeatable); `localhost`,
    /// 127.0.0.1, ::1 and the --secure-listen IP are always in it.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// kube-apiserver's static token file: `token,user,uid[,"group1,group2"]` per line.
    #[arg(long, value_name = "FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// How long the node client certificates the control plane signs are valid
    /// (kube-controller-manager's flag; Go durations: `30s`, `10m`, `8760h`). A request's
    /// `spec.expirationSeconds` may ask for less (at least 10 minutes).
    #[arg(long, value_name = "DURATION", default_value = "8760h")]
    pub cluster_signing_duration: String,
}

/// A bound TLS listener and what serving it takes.
pub struct SecureListener {
    /// The bound socket.
    pub listener: tokio::net::TcpListener,
    /// rustls settings (serving certificate, client CA).
    pub tls: Arc<coxswain_control_plane::serve_tls::ServerConfig>,
    /// Who may connect.
    pub auth: Arc<Authenticator>,
    /// `https://ADDR`.
    pub url: String,
    /// Where the admin kubeconfig was written.
    pub kubeconfig: PathBuf,
    /// The cluster CA, for signing joining nodes' certificates.
    pub pki: Arc<ClusterPki>,
    /// The signer of service-account tokens (pods' tokens come from the node service).
    pub service_accounts: ServiceAccountTokens,
    /// How long the node certificates it signs are valid (`--cluster-signing-duration`).
    pub signing_duration: std::time::Duration,
}

/// `--cluster-signing-duration`, checked: a Go duration longer than zero.
pub fn signing_duration(args: &TlsArgs) -> anyhow::Result<std::time::Duration> {
    super::go_duration::parse(&args.cluster_signing_duration)
        .and_then(|d| {
            if d.is_zero() {
                Err("it must be longer than 0".to_string())
            } else {
                Ok(d)
            }
        })
        .map_err(|e| anyhow::anyhow!("--cluster-signing-duration: {e}"))
}

/// Makes or loads the PKI, reads the token file, binds `--secure-listen` and writes the
/// admin kubeconfig; authorization reads RBAC objects from `store`. `None` without
/// `--secure-listen`.
pub async fn bind(
    args: &TlsArgs,
    data_dir: &std::path::Path,
    store: Arc<dyn coxswain_control_plane::store::Store>,
) -> anyhow::Result<Option<SecureListener>> {
    let signing_duration = signing_duration(args)?;
    let Some(addr) = args.secure_listen else {
        return Ok(None);
    };
    let tokens = match &args.token_auth_file {
        Some(path) => {
            StaticTokens::load(path).map_err(|e| anyhow::anyhow!("--token-auth-file {e}"))?
        }
        None => StaticTokens::default(),
    };
    let mut sans = args.tls_sans.clone();
    if !addr.ip().is_unspecified() {
        sans.push(addr.ip().to_string());
    }
    let pki =
        ClusterPki::load_or_create(&data_dir.join("pki"), &sans).context("the cluster PKI")?;
    let tls = coxswain_control_plane::serve_tls::server_config(&pki)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--secure-listen {addr} (is another server using the port?)"))?;
    let bound = listener
        .local_addr()
        .context("reading the secure listen address")?;
    let host = if bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    };
    let url = format!("https://{host}");
    let path = data_dir.join("admin.kubeconfig");
    let text = kubeconfig::render_tls(&url, &pki.ca_pem, &pki.admin.cert_pem, &pki.admin.key_pem);
    kubeconfig::write_text(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let service_accounts = ServiceAccountTokens::new(
        &pki.service_account_key()
            .context("the service-account key")?,
        store.clone(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Some(SecureListener {
        listener,
        tls: Arc::new(tls),
        auth: Arc::new(Authenticator {
            tokens,
            bootstrap: Some(BootstrapTokens::new(store.clone())),
            service_accounts: Some(service_accounts.clone()),
            nodes: Some(NodeAuthorizer::with_cache(store.clone())),
            rbac: Some(Rbac::with_cache(store)),
        }),
        url,
        kubeconfig: path,
        pki: Arc::new(pki),
        service_accounts,
        signing_duration,
    }))
}
