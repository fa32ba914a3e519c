//! A CSI conformance suite written from the spec's rules (the cases the
//! upstream csi-sanity covers), usable against any CSI driver's socket:
//! plugin info and capabilities, Probe, missing arguments
//! (`InvalidArgument`), unknown volumes (`NotFound`), idempotent
//! create/delete/stage/publish/unstage/unpublish, incompatible re-creates
//! (`AlreadyExists`), capability consistency (what is advertised is
//! implemented), stats, expansion and capacity.
//!
//! [`run`] returns a [`Report`]; cases that do not apply to the driver
//! (an RPC it does not advertise) are skipped with the reason.

mod controller;
mod identity;
mod lifecycle;
mod node;
pub(crate) mod suite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use coxswain_proto::csi::v1::plugin_capability::service::Type as PluginService;
use coxswain_proto::csi::v1::{
    ControllerGetCapabilitiesRequest, GetPluginCapabilitiesRequest, NodeGetCapabilitiesRequest,
    controller_service_capability, node_service_capability, plugin_capability,
};
pub use suite::{Check, Suite};

use crate::{CsiClient, Error};

/// What the suite runs against and with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The driver's endpoint, `unix:///path`.
    pub endpoint: String,
    /// A directory for staging and target paths (must exist, on the driver's host).
    pub work_dir: PathBuf,
    /// Capacity of the volumes the suite creates.
    pub volume_size: u64,
    /// CreateVolume parameters.
    pub parameters: HashMap<String, String>,
    /// Prefix of the names of volumes the suite creates.
    pub name_prefix: String,
    /// Run only cases whose name contains this.
    pub filter: Option<String>,
    /// Check data through real mounts (a read-only publish refuses writes);
    /// off for drivers whose mounts are simulated.
    pub check_data: bool,
}

impl Config {
    /// Defaults: 16 MiB volumes, no parameters, every case.
    pub fn new(endpoint: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            work_dir: work_dir.into(),
            volume_size: 16 << 20,
            parameters: HashMap::new(),
            name_prefix: format!("csi-conformance-{}", std::process::id()),
            filter: None,
            check_data: true,
        }
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The driver followed the rules the case checks.
    Passed,
    /// The driver broke a rule; the message says which.
    Failed(String),
    /// The case does not apply; the message says why.
    Skipped(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name, `service/what it checks`.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// The results of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per case run, in order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// The cases that failed.
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .collect()
    }

    /// Whether no case failed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// How many cases passed.
    pub fn passed_count(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| c.outcome == Outcome::Passed)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            let ms = case.elapsed.as_secs_f64() * 1e3;
            match &case.outcome {
                Outcome::Passed => writeln!(f, "PASS {} ({ms:.1} ms)", case.name)?,
                Outcome::Failed(why) => writeln!(f, "FAIL {} ({ms:.1} ms): {why}", case.name)?,
                Outcome::Skipped(why) => writeln!(f, "SKIP {}: {why}", case.name)?,
            }
        }
        let skipped = self.cases.len() - self.passed_count() - self.failures().len();
        write!(
            f,
            "{} passed, {} failed, {skipped} skipped",
            self.passed_count(),
            self.failures().len()
        )
    }
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = suite::CaseResult> + Send + 'a>>;

/// A named check.
struct Case {
    name: &'static str,
    run: for<'a> fn(&'a Suite) -> CaseFuture<'a>,
}

macro_rules! case {
    ($name:literal, $f:path) => {
        Case {
            name: $name,
            run: |s| Box::pin($f(s)),
        }
    };
}

fn cases() -> Vec<Case> {
    vec![
        case!(
            "identity/GetPluginInfo returns a valid name and version",
            identity::plugin_info
        ),
        case!(
            "identity/GetPluginCapabilities lists known capabilities",
            identity::plugin_capabilities
        ),
        case!("identity/Probe succeeds", identity::probe),
        case!(
            "controller/advertised RPCs are implemented",
            controller::advertised_rpcs_are_implemented
        ),
        case!(
            "controller/CreateVolume without name is InvalidArgument",
            controller::create_without_name
        ),
        case!(
            "controller/CreateVolume without capabilities is InvalidArgument",
            controller::create_without_capabilities
        ),
        case!(
            "controller/CreateVolume is idempotent, DeleteVolume too",
            controller::create_delete_idempotent
        ),
        case!(
            "controller/CreateVolume same name, other capacity is AlreadyExists",
            controller::create_incompatible
        ),
        case!(
            "controller/CreateVolume with required > limit is OutOfRange",
            controller::create_unsatisfiable_range
        ),
        case!(
            "controller/DeleteVolume without ID is InvalidArgument",
            controller::delete_without_id
        ),
        case!(
            "controller/DeleteVolume of an unknown volume succeeds",
            controller::delete_unknown
        ),
        case!(
            "controller/ValidateVolumeCapabilities checks arguments and volumes",
            controller::validate_capabilities
        ),
        case!(
            "controller/ListVolumes lists a created volume",
            controller::list_volumes
        ),
        case!(
            "controller/GetCapacity reports capacity CreateVolume honours",
            controller::get_capacity
        ),
        case!(
            "controller/ControllerExpandVolume checks arguments and grows",
            controller::expand
        ),
        case!(
            "node/advertised RPCs are implemented",
            node::advertised_rpcs_are_implemented
        ),
        case!(
            "node/NodeGetInfo returns a node ID and topology",
            node::get_info
        ),
        case!(
            "node/missing arguments are InvalidArgument",
            node::missing_arguments
        ),
        case!("node/unknown volumes are NotFound", node::unknown_volumes),
        case!(
            "node/NodePublishVolume before staging is FailedPrecondition",
            node::publish_before_stage
        ),
        case!(
            "node/stage, publish, unpublish, unstage are idempotent",
            lifecycle::lifecycle
        ),
        case!(
            "node/read-only publish refuses writes",
            lifecycle::readonly_publish
        ),
        case!("node/NodeGetVolumeStats reports usage", lifecycle::stats),
        case!(
            "node/expansion grows a volume, online when advertised",
            lifecycle::expand
        ),
    ]
}

/// Connects to the driver, reads its capabilities and runs every case.
/// Fails only when the driver cannot be reached.
pub async fn run(config: Config) -> Result<Report, Error> {
    let client = CsiClient::connect(&config.endpoint).await?;
    let plugin = client
        .identity
        .clone()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .map(|r| r.into_inner().capabilities)
        .unwrap_or_default();
    let has_controller = plugin.iter().any(|c| {
        matches!(&c.r#type, Some(plugin_capability::Type::Service(s)) if s.r#type == PluginService::ControllerService as i32)
    });
    let controller = match has_controller {
        false => Vec::new(),
        true => client
            .controller
            .clone()
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .map(|r| r.into_inner().capabilities)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| match c.r#type {
                Some(controller_service_capability::Type::Rpc(rpc)) => rpc.r#type.try_into().ok(),
                None => None,
            })
            .collect(),
    };
    let node = client
        .node
        .clone()
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .map(|r| r.into_inner().capabilities)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| match c.r#type {
            Some(node_service_capability::Type::Rpc(rpc)) => rpc.r#type.try_into().ok(),
            None => None,
        })
        .collect();
    let filter = config.filter.clone();
    let suite = Suite::new(client, config, &plugin, controller, node);
    let mut report = Report::default();
    for case in cases() {
        if filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        let start = Instant::now();
        let result = (case.run)(&suite).await;
        suite.cleanup().await;
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(Check::Fail(why)) => Outcome::Failed(why),
            Err(Check::Skip(why)) => Outcome::Skipped(why),
        };
        report.cases.push(CaseReport {
            name: case.name,
            outcome,
            elapsed: start.elapsed(),
        });
    }
    Ok(report)
}
