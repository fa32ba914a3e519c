//! The admin kubeconfig `cox server` writes to `<data-dir>/kubeconfig` for kubectl and `cox`.

use std::path::Path;

/// The kubeconfig for a server at `server_url` (`http://127.0.0.1:6443`).
pub fn render(server_url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: coxswain\n  cluster:\n    server: {server_url}\n\
         users:\n\
         - name: admin\n  user: {{}}\n\
         contexts:\n\
         - name: coxswain\n  context:\n    cluster: coxswain\n    user: admin\n    namespace: default\n\
         current-context: coxswain\n\
         preferences: {{}}\n"
    )
}

/// The kubeconfig for the TLS listener at `server_url` (`https://127.0.0.1:6443`): the
/// cluster CA and a client certificate and key, all inline (PEM, base64), as kubeadm's
/// `admin.conf`.
pub fn render_tls(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: coxswain\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\n\
         users:\n\
         - name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
         contexts:\n\
         - name: coxswain\n  context:\n    cluster: coxswain\n    user: admin\n    namespace: default\n\
         current-context: coxswain\n\
         preferences: {{}}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem),
    )
}

/// Writes the kubeconfig to `path` (mode 0600: it will hold credentials once auth exists).
pub fn write(path: &Path, server_url: &str) -> std::io::Result<()> {
    write_text(path, &render(server_url))
}

/// Writes `text` to `path` with mode 0600 (a kubeconfig or key holding credentials),
/// through a synced temporary file renamed into place.
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
