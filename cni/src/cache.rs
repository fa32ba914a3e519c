//! The result cache: the final ADD result of each attachment, kept on disk so
//! DEL and CHECK get it as `prevResult` even after the runtime restarts.
//!
//! One file per (network, container ID, ifname), written to a temporary file,
//! fsynced and renamed into place, so a crash leaves either the old entry or
//! the new one, never half of one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The default cache directory, beside libcni's `/var/lib/cni/results`.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/coxswain/cni/results";

/// What is remembered about one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAttachment {
    /// Format marker, `coxswainCniCacheV1`.
    pub kind: String,
    /// The network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The container ID.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The interface name in the sandbox.
    #[serde(rename = "ifName")]
    pub ifname: String,
    /// The netns path used at ADD.
    pub netns: String,
    /// The CNI version the chain was driven with.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The runtimeConfig passed at ADD (port mappings, ...), reused by DEL.
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Value,
    /// The final result of the chain, exactly as the last plugin printed it.
    pub result: Value,
}

/// Kind marker written into every cache entry.
pub const CACHE_KIND: &str = "coxswainCniCacheV1";

/// A directory of cached ADD results.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ResultCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for one attachment. Network names and container IDs cannot
    /// contain `:` and interface names cannot either, so the key is unique.
    pub fn path_for(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(format!("{network}:{container_id}:{ifname}.json"))
    }

    /// Stores an entry atomically (write to a temp file, fsync, rename, fsync dir).
    pub fn store(&self, entry: &CachedAttachment) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Cache { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let target = self.path_for(&entry.network_name, &entry.container_id, &entry.ifname);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("entry")
        ));
        let bytes = serde_json::to_vec_pretty(entry).expect("a cache entry always serializes");
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Cache { path: tmp, source });
        }
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// Removes the temporary files of writers that are gone (a runtime killed between
    /// writing an entry and renaming it leaves `.tmp-<pid>-...`); returns how many. A
    /// runtime calls it when it starts, before anything writes.
    pub fn sweep_temporaries(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let own = std::process::id();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(".tmp-"))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let writer_alive = pid == own || Path::new(&format!("/proc/{pid}")).exists();
            if !writer_alive && std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!(path = %entry.path().display(), "removed a dead writer's temporary CNI cache file");
                removed += 1;
            }
        }
        removed
    }

    /// Loads an entry; `None` when there is none.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>> {
        let path = self.path_for(network, container_id, ifname);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::CacheCorrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Cache { path, source }),
        }
    }

    /// Removes an entry; removing a missing one is not an error.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path_for(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Cache { path, source }),
        }
    }

    /// Every readable entry (corrupt ones are skipped with a warning), e.g.
    /// for a runtime that restarts and must DEL what it no longer runs.
    pub fn list(&self) -> Result<Vec<CachedAttachment>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Cache {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Cache {
                    path: self.dir.clone(),
                    source,
                })?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<CachedAttachment>(&b)) {
                Ok(Ok(entry)) => out.push(entry),
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping corrupt CNI cache entry")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable CNI cache entry")
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.network_name, &a.container_id, &a.ifname).cmp(&(
                &b.network_name,
                &b.container_id,
                &b.ifname,
            ))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(cid: &str) -> CachedAttachment {
        CachedAttachment {
            kind: CACHE_KIND.into(),
            network_name: "pods".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/x".into(),
            cni_version: "1.0.0".into(),
            runtime_config: json!({}),
            result: json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}),
        }
    }

    #[test]
    fn a_dead_writers_temporary_file_is_swept_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        cache.store(&entry("c1")).unwrap();
        // pid_max is at most 2^22: this writer never lives.
        let dead = dir.path().join(".tmp-999999999-pods:c2:eth0.json");
        let live = dir
            .path()
            .join(format!(".tmp-{}-pods:c3:eth0.json", std::process::id()));
        std::fs::write(&dead, b"{").unwrap();
        std::fs::write(&live, b"{").unwrap();
        assert_eq!(cache.sweep_temporaries(), 1);
        assert!(!dead.exists());
        assert!(live.exists(), "a running writer's file stays");
        assert_eq!(cache.list().unwrap().len(), 1, "entries are untouched");
    }

    #[test]
    fn store_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("results"));
        assert_eq!(cache.load("pods", "c1", "eth0").unwrap(), None);
        assert!(cache.list().unwrap().is_empty());
        cache.store(&entry("c2")).unwrap();
        cache.store(&entry("c1")).unwrap();
        assert_eq!(cache.load("pods", "c1", "eth0").unwrap(), Some(entry("c1")));
        let listed: Vec<String> = cache
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        assert_eq!(listed, ["c1", "c2"]);
        cache.remove("pods", "c1", "eth0").unwrap();
        cache.remove("pods", "c1", "eth0").unwrap();
        assert_eq!(cache.load("pods", "c1", "eth0").unwrap(), None);
        // No temp files are left behind.
        let names: Vec<_> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_entries_are_typed_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        std::fs::write(cache.path_for("pods", "c1", "eth0"), "{half").unwrap();
        let err = cache.load("pods", "c1", "eth0").unwrap_err().to_string();
        assert!(
            err.contains("pods:c1:eth0.json") && err.contains("corrupt"),
            "{err}"
        );
        assert!(cache.list().unwrap().is_empty());
    }
}
