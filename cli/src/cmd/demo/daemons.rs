//! The demo cluster's daemons: `cox server`, the device plugin, `cox-csi` and `cox agent` as
//! child processes (stopped when dropped), the binaries beside `cox`, and waiting for the
//! API and the node.

use super::*;

/// The daemons of the demo cluster, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Default)]
pub(super) struct Daemons {
    pub(super) children: Vec<(&'static str, Child, PathBuf)>,
}

impl Daemons {
    pub(super) fn start(
        &mut self,
        name: &'static str,
        cmd: &mut Command,
        logs: &Path,
    ) -> anyhow::Result<()> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting the {name} daemon"))?;
        self.children.push((name, child, log));
        Ok(())
    }

    /// Fails with the last lines of its log when a daemon has exited.
    pub(super) fn check(&mut self) -> anyhow::Result<()> {
        for (name, child, log) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "the {name} daemon exited ({status}); the end of {}:\n  {}",
                    log.display(),
                    tail.join("\n  ")
                );
            }
        }
        Ok(())
    }

    /// Waits until some daemon exits and names it.
    pub(super) async fn exited(&mut self) -> &'static str {
        loop {
            for (name, child, _) in &mut self.children {
                if let Ok(Some(_)) = child.try_wait() {
                    return name;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the daemons in reverse order: SIGTERM, up to 10 s, then SIGKILL. The agent
    /// leaves pods as they are when it stops, as a kubelet does.
    pub(super) fn stop(&mut self) {
        while let Some((_, mut child, _)) = self.children.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

/// This `cox` binary.
pub(super) fn cox_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the cox binary")
}

/// A binary built beside `cox` (the release build puts them in one directory).
pub(super) fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = cox_binary()?;
    let path = exe.with_file_name(name);
    if path.exists() {
        return Ok(path);
    }
    let package = match name {
        "cox-csi" => "coxswain-csi",
        _ => "coxswain-nvidia-plugin",
    };
    bail!(
        "{name} not found beside {}: build it with `cargo build --release -p {package}` \
         (scripts/demo.sh does)",
        exe.display()
    )
}

/// `preferred` when its port is free, else a free port on the same address.
pub(super) fn free_or(preferred: SocketAddr) -> SocketAddr {
    if preferred.port() != 0 && std::net::TcpListener::bind(preferred).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind((preferred.ip(), 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(preferred)
}

/// Waits for the server's kubeconfig and a successful `GET /api`.
pub(super) async fn wait_for_api(
    kubeconfig: &Path,
    daemons: &mut Daemons,
) -> anyhow::Result<ApiClient> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        daemons.check()?;
        if kubeconfig.exists() {
            let client = ApiClient::new(&Target {
                kubeconfig: Some(kubeconfig.to_path_buf()),
                namespace: Some(NAMESPACE.into()),
            })?;
            if client
                .send(Method::GET, "/api", "application/json", None)
                .await
                .is_ok_and(|r| r.status.is_success())
            {
                return Ok(client);
            }
        }
        if Instant::now() > deadline {
            bail!("the API server did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the node is Ready with GPUs allocatable; returns how many.
pub(super) async fn wait_for_node(
    client: &ApiClient,
    node: &str,
    daemons: &mut Daemons,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = format!("/api/v1/nodes/{node}");
    loop {
        daemons.check()?;
        if let Ok(reply) = client
            .send(Method::GET, &path, "application/json", None)
            .await
            && reply.status.is_success()
        {
            let ready = reply.body["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let gpus = reply.body["status"]["allocatable"]["nvidia.com/gpu"]
                .as_str()
                .and_then(|q| q.parse::<i64>().ok())
                .unwrap_or(0);
            if ready && gpus > 0 {
                return Ok(gpus);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "node {node} did not become Ready with GPUs within 60 s (see the agent and nvidia-plugin logs)"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
