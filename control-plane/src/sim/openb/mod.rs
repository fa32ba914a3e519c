//! Trace replay of the openb GPU-cluster traces, reproducing the simulator
//! of the FGD paper (Weng et al., USENIX ATC'23) number for number.
//!
//! The protocol is `shared/data/openb/PROTOCOL.md`: [`trace`] parses the
//! CSVs, [`workload`] draws the submission order and node ranks from a port
//! of Go's RNG ([`go_rand`]), [`replay`] places pods one at a time under a
//! [`policy`], and [`metric`] turns the per-submission samples into the
//! paper's allocation curve. [`reference`] reads the published oracles.

pub mod cluster;
mod error;
pub mod go_rand;
mod go_rand_cooked;
pub mod metric;
pub mod policy;
pub mod reference;
pub mod replay;
pub mod trace;
pub mod typical;
pub mod workload;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use policy::PolicyKind;
pub use replay::{Event, RunResult, replay, replay_prefix};
pub use workload::Workload;

/// Environment variable naming the openb data folder.
pub const DATA_DIR_ENV: &str = "COXSWAIN_OPENB_DIR";

/// The largest x of the allocation curve (tune 1.3 → 130 %).
pub const MAX_X: usize = 130;

/// The openb data folder: `$COXSWAIN_OPENB_DIR`, else
/// `<workspace root>/../shared/data/openb`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/openb")
}

/// [`data_dir`] when it holds the openb data, else a message saying where it was looked for.
pub fn existing_data_dir() -> std::result::Result<PathBuf, String> {
    let dir = data_dir();
    if dir.join("PROTOCOL.md").exists() {
        Ok(dir)
    } else {
        Err(format!(
            "openb data not found at {} (set {DATA_DIR_ENV})",
            dir.display()
        ))
    }
}

/// The trace name of a pod-list path: its file stem
/// (`openb_pod_list_default`).
pub fn trace_name(pods_csv: &Path) -> String {
    pods_csv
        .file_stem()
        .map_or_else(|| "trace".into(), |s| s.to_string_lossy().into_owned())
}

/// The summary of one replay in the metric's terms.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Trace name.
    pub workload: String,
    /// Policy.
    pub policy: PolicyKind,
    /// Tune factor.
    pub tune: f64,
    /// RNG seed.
    pub seed: i64,
    /// Number of GPUs in the cluster.
    pub total_gpus: i64,
    /// Submissions, and how many failed.
    pub submissions: usize,
    /// Failed submissions.
    pub failed: usize,
    /// The allocation curve, x = 0..=[`MAX_X`].
    pub curve: metric::Curve,
}

impl RunSummary {
    /// Summarises a finished replay.
    pub fn new(
        workload: &str,
        w: &Workload,
        policy: PolicyKind,
        tune: f64,
        seed: i64,
        r: &RunResult,
    ) -> Self {
        let total_gpus = w.capacity_milli() / cluster::GPU_MILLI;
        RunSummary {
            workload: workload.into(),
            policy,
            tune,
            seed,
            total_gpus,
            submissions: r.events.len(),
            failed: r.failed(),
            curve: metric::allocation_curve(&r.samples(), total_gpus, MAX_X),
        }
    }

    /// The row in the shape of `expected_allo_discrete.csv`.
    pub fn csv_row(&self) -> String {
        metric::csv_row(
            &self.workload,
            self.policy.csv_name(),
            self.tune,
            self.seed,
            self.total_gpus,
            &self.curve,
        )
    }

    /// Unallocated GPU % (100 − value) at `x`, in hundredths.
    pub fn unallocated(&self, x: usize) -> Option<metric::Hundredths> {
        self.curve.get(x).copied().flatten().map(|v| 10_000 - v)
    }
}
