//! Unit tests of the chain operations against the scripted fake plugins,
//! with the fixtures they share: a client over a [`ScriptedExec`], a
//! three-plugin list and a pod with CNI_ARGS and a port mapping.

mod chain;
mod failures;
mod versions;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::fake::{FAKE_PLUGIN_DIR, ScriptedExec};
use crate::{Attachment, Cni, Command, ConfigOrigin, NetworkConfigList, PortMapping, ResultCache};

pub(super) struct Setup {
    pub(super) fake: Arc<ScriptedExec>,
    pub(super) cni: Cni,
    _dir: tempfile::TempDir,
}

pub(super) fn setup(fake: ScriptedExec) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(fake);
    let search = vec![
        PathBuf::from("/nonexistent"),
        PathBuf::from(FAKE_PLUGIN_DIR),
    ];
    let cni = Cni::new(
        fake.clone(),
        search,
        ResultCache::new(dir.path().join("results")),
    );
    Setup {
        fake,
        cni,
        _dir: dir,
    }
}

pub(super) fn three_plugins() -> ScriptedExec {
    ScriptedExec::new()
        .with_plugin("bridge")
        .with_plugin("tuning")
        .with_plugin("portmap")
}

pub(super) fn net(version: &str) -> NetworkConfigList {
    let config = json!({"cniVersion": version, "name": "pods", "plugins": [
        {"type": "bridge", "bridge": "cox0"},
        {"type": "tuning"},
        {"type": "portmap", "capabilities": {"portMappings": true}},
    ]});
    NetworkConfigList::from_value(config, ConfigOrigin::Inline).unwrap()
}

pub(super) fn pod() -> Attachment {
    let mut pod = Attachment::new("pod1", "/var/run/netns/pod1", "eth0");
    pod.args = vec![("K8S_POD_NAME".into(), "w-0".into())];
    pod.runtime_config.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: None,
    }];
    pod
}

pub(super) fn stdin_of(fake: &ScriptedExec, plugin: &str, command: Command) -> Value {
    fake.calls()
        .into_iter()
        .find(|c| c.plugin == plugin && c.command == command)
        .expect("call recorded")
        .stdin
}
