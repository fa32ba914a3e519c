//! A throwaway single-member etcd on loopback ports, for tests and `cox bench store`.
//!
//! It runs the distribution's `etcd` binary with its data in a directory the caller owns and is
//! killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::MAX_VALUE_BYTES;

/// Where `scripts/setup.sh` installs etcd (Debian `etcd-server`).
pub const ETCD_BINARY: &str = "/usr/bin/etcd";

/// Why a local etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// The etcd binary is not installed.
    #[error("{path}: etcd is not installed (run scripts/setup.sh)")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Preparing the directory, finding ports or spawning failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// etcd started but did not answer in time.
    #[error("etcd at {endpoint} did not become ready within {secs}s (its log: {log})")]
    NotReady {
        /// The client URL.
        endpoint: String,
        /// How long it was given.
        secs: u64,
        /// Its log file.
        log: PathBuf,
    },
}

/// A running etcd child process; killed on drop.
pub struct LocalEtcd {
    child: Child,
    endpoint: String,
    peer: String,
    dir: PathBuf,
}

impl LocalEtcd {
    /// Starts etcd with its data and log under `dir` and waits until it serves requests.
    pub async fn start(dir: &Path) -> Result<Self, LocalEtcdError> {
        if !Path::new(ETCD_BINARY).exists() {
            return Err(LocalEtcdError::Missing {
                path: ETCD_BINARY.into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let (client_port, peer_port) = free_ports().map_err(io_error(dir))?;
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = spawn(dir, &endpoint, &peer)?;
        let etcd = LocalEtcd {
            child,
            endpoint,
            peer,
            dir: dir.to_owned(),
        };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    /// Kills etcd (SIGKILL) and starts it again on the same data and ports, as after a crash.
    pub async fn restart(&mut self) -> Result<(), LocalEtcdError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.dir, &self.endpoint, &self.peer)?;
        self.wait_ready().await
    }

    /// The client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn wait_ready(&self) -> Result<(), LocalEtcdError> {
        let limit = Duration::from_secs(30);
        let started = Instant::now();
        while started.elapsed() < limit {
            let probe = async {
                let mut client = etcd_client::Client::connect([&self.endpoint], None).await?;
                client.get("/", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LocalEtcdError::NotReady {
            endpoint: self.endpoint.clone(),
            secs: limit.as_secs(),
            log: self.dir.join("etcd.log"),
        })
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalEtcdError {
    let path = path.to_owned();
    move |source| LocalEtcdError::Io { path, source }
}

/// Spawns etcd with its data in `dir/data`, appending its output to `dir/etcd.log`.
fn spawn(dir: &Path, endpoint: &str, peer: &str) -> Result<Child, LocalEtcdError> {
    let log_path = dir.join("etcd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(&log_path))?;
    let log_err = log.try_clone().map_err(io_error(&log_path))?;
    Command::new(ETCD_BINARY)
        .arg("--name")
        .arg("coxswain-test")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen-client-urls", endpoint])
        .args(["--advertise-client-urls", endpoint])
        .args(["--listen-peer-urls", peer])
        .args(["--initial-advertise-peer-urls", peer])
        .args(["--initial-cluster", &format!("coxswain-test={peer}")])
        // Room for a value of exactly the store's limit plus the request around it.
        .args([
            "--max-request-bytes",
            &(MAX_VALUE_BYTES + 64 * 1024).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io_error(Path::new(ETCD_BINARY)))
}

/// Two distinct free loopback ports (held together so they differ).
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}
