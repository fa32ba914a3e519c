//! What a runtime says about one pod when it calls a network: container ID,
//! netns, interface name, CNI_ARGS and runtimeConfig, validated as SPEC.md
//! section 2 requires before anything is executed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

use crate::conflist::PluginConfig;
use crate::error::{Error, Result};

/// A port to publish on the host (the `portMappings` capability, used by portmap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// Port in the pod.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp` or `udp` (sctp where the plugin supports it).
    pub protocol: String,
    /// Host address to bind; absent means all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// Per-attachment data passed through `runtimeConfig`, each key only to the
/// plugins that declare it in `capabilities`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `portMappings`.
    pub port_mappings: Vec<PortMapping>,
    /// Any other capability (`bandwidth`, `ips`, `mac`, `dns`, ...), by name.
    pub extra: Map<String, Value>,
}

impl RuntimeConfig {
    /// Everything as one JSON object (what the cache stores).
    pub fn to_value(&self) -> Value {
        let mut all = self.extra.clone();
        if !self.port_mappings.is_empty() {
            all.insert(
                "portMappings".into(),
                serde_json::to_value(&self.port_mappings).unwrap_or(Value::Null),
            );
        }
        Value::Object(all)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.port_mappings.is_empty() && self.extra.is_empty()
    }

    /// The `runtimeConfig` object for one plugin: only the keys it declared.
    pub(crate) fn for_plugin(all: &Value, plugin: &PluginConfig) -> Option<Value> {
        let picked: Map<String, Value> = all
            .as_object()?
            .iter()
            .filter(|(key, _)| plugin.has_capability(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!picked.is_empty()).then_some(Value::Object(picked))
    }
}

/// One pod's attachment to one network.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The container (pod sandbox) ID.
    pub container_id: String,
    /// Path of the pod's network namespace, e.g. `/var/run/netns/<name>`.
    pub netns: PathBuf,
    /// Interface name inside the pod, e.g. `eth0`.
    pub ifname: String,
    /// CNI_ARGS key/value pairs (e.g. `K8S_POD_NAME`).
    pub args: Vec<(String, String)>,
    /// runtimeConfig values.
    pub runtime_config: RuntimeConfig,
}

impl Attachment {
    /// An attachment with no CNI_ARGS and no runtimeConfig.
    pub fn new(
        container_id: impl Into<String>,
        netns: impl Into<PathBuf>,
        ifname: impl Into<String>,
    ) -> Self {
        Attachment {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            args: Vec::new(),
            runtime_config: RuntimeConfig::default(),
        }
    }

    /// Checks the parameters against the spec's rules.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: &str, reason: &str| Error::InvalidAttachment {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let cid = &self.container_id;
        if cid.is_empty()
            || !cid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad(
                "containerID",
                cid,
                "must be non-empty and only letters, digits, '_', '.', '-'",
            ));
        }
        let ifname = &self.ifname;
        if ifname.is_empty() || ifname.len() > 15 {
            return Err(bad("ifname", ifname, "must be 1 to 15 bytes long"));
        }
        if ifname == "."
            || ifname == ".."
            || ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(bad(
                "ifname",
                ifname,
                "must not be '.', '..' or contain '/', ':' or whitespace",
            ));
        }
        for (key, value) in &self.args {
            if key.is_empty() || key.contains([';', '=']) || value.contains(';') {
                return Err(bad(
                    "CNI_ARGS",
                    &format!("{key}={value}"),
                    "keys must be non-empty; no ';' or '=' in keys, no ';' in values",
                ));
            }
        }
        Ok(())
    }

    /// The CNI_ARGS value: `K=V;K2=V2`.
    pub fn cni_args(&self) -> String {
        let pairs: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflist::NetworkConfigList;
    use crate::error::ConfigOrigin;
    use serde_json::json;

    #[test]
    fn validates_container_id_ifname_and_args() {
        let ok = Attachment::new("abc-123_x.y", "/var/run/netns/p", "eth0");
        assert!(ok.validate().is_ok());
        for (cid, ifname) in [
            ("", "eth0"),
            ("a b", "eth0"),
            ("ok", ""),
            ("ok", "averyveryverylongname"),
            ("ok", "a/b"),
            ("ok", ".."),
            ("ok", "a:b"),
        ] {
            let err = Attachment::new(cid, "/x", ifname)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("invalid containerID") || err.starts_with("invalid ifname"),
                "{err}"
            );
        }
        let mut args = ok.clone();
        args.args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "w-0".into()),
        ];
        assert_eq!(args.cni_args(), "IgnoreUnknown=1;K8S_POD_NAME=w-0");
        args.args.push(("a;b".into(), "c".into()));
        assert!(
            args.validate()
                .unwrap_err()
                .to_string()
                .contains("CNI_ARGS")
        );
    }

    #[test]
    fn runtime_config_goes_only_to_plugins_with_the_capability() {
        let list = NetworkConfigList::from_value(
            json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
                {"type": "bridge"},
                {"type": "portmap", "capabilities": {"portMappings": true}}]}),
            ConfigOrigin::Inline,
        )
        .unwrap();
        let rc = RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            }],
            extra: Map::from_iter([("bandwidth".to_string(), json!({"ingressRate": 1}))]),
        };
        let all = rc.to_value();
        assert_eq!(RuntimeConfig::for_plugin(&all, &list.plugins[0]), None);
        let portmap = RuntimeConfig::for_plugin(&all, &list.plugins[1]).unwrap();
        assert_eq!(
            portmap,
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
    }
}
