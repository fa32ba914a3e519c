//! STATUS and GC (spec 1.1.0): sent only to plugins that advertise 1.1.0 in
//! their VERSION answer. Debian's plugins stop at 1.0.0 and never get them
//! (they would answer "missing containerID").

use serde_json::{Value, json};

use crate::conflist::NetworkConfigList;
use crate::error::Result;
use crate::exec::Command;
use crate::invoke::{self, Call};
use crate::network::Cni;
use crate::version::CniVersion;

/// What became of a STATUS or GC request to one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginOutcome {
    /// The plugin was asked and answered success.
    Done,
    /// The plugin does not speak 1.1.0, so it was not asked.
    NotSupported,
}

/// One plugin's part in a STATUS or GC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginReport {
    /// The plugin's `type`.
    pub plugin: String,
    /// What happened.
    pub outcome: PluginOutcome,
}

/// An attachment that is still in use, for GC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAttachment {
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

impl Cni {
    /// Asks each 1.1.0 plugin of the list whether it is ready for ADDs. A
    /// plugin that is not ready returns its error object (codes 50-99) as
    /// [`crate::Error::Plugin`].
    pub fn status(&self, net: &NetworkConfigList) -> Result<Vec<PluginReport>> {
        self.for_each_v1_1(net, Command::Status, None)
    }

    /// Tells each 1.1.0 plugin which attachments are still valid so it can
    /// free resources held for the others (`cni.dev/valid-attachments`).
    pub fn gc(
        &self,
        net: &NetworkConfigList,
        valid: &[ValidAttachment],
    ) -> Result<Vec<PluginReport>> {
        let list: Vec<Value> = valid
            .iter()
            .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
            .collect();
        self.for_each_v1_1(net, Command::Gc, Some(Value::Array(list)))
    }

    fn for_each_v1_1(
        &self,
        net: &NetworkConfigList,
        command: Command,
        valid: Option<Value>,
    ) -> Result<Vec<PluginReport>> {
        let mut reports = Vec::with_capacity(net.plugins.len());
        for (index, plugin) in net.plugins.iter().enumerate() {
            let versions = self.plugin_versions(&plugin.plugin_type, &net.name)?;
            if !versions.supports(CniVersion::V1_1_0) {
                reports.push(PluginReport {
                    plugin: plugin.plugin_type.clone(),
                    outcome: PluginOutcome::NotSupported,
                });
                continue;
            }
            let path = self.find_plugin(&plugin.plugin_type)?;
            let mut stdin = net.plugin_stdin(index, CniVersion::V1_1_0);
            if let Some(valid) = &valid {
                stdin.insert("cni.dev/valid-attachments".into(), valid.clone());
            }
            let call = Call {
                plugin: &plugin.plugin_type,
                network: &net.name,
                path: &path,
                command,
                env: invoke::protocol_env(command, None, self.search_path()),
                stdin,
            };
            invoke::run(self.exec(), call)?;
            reports.push(PluginReport {
                plugin: plugin.plugin_type.clone(),
                outcome: PluginOutcome::Done,
            });
        }
        Ok(reports)
    }
}
