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

/// Writes the kubeconfig to `path` (mode 0600: it will hold credentials once auth exists).
pub fn write(path: &Path, server_url: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(render(server_url).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
