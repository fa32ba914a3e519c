//! Plugin results (SPEC.md "Success" for ADD) parsed into types, and the error
//! object plugins print on failure.
//!
//! The raw JSON is kept beside the typed view: it is what is passed on as
//! `prevResult` and cached, so fields this library does not model survive.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An ADD result: the interfaces, addresses, routes and DNS a chain set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version the result is written in.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Interfaces created, on the host and in the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes set up in the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings the plugin suggests.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name, e.g. `eth0` or `veth1a2b3c`.
    pub name: String,
    /// Hardware address, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU, if the plugin reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The sandbox (netns path) the interface is in; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.244.1.5/24`.
    pub address: String,
    /// Default gateway for this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces` of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }
}

/// A route in the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network, e.g. `0.0.0.0/0`.
    pub dst: String,
    /// Next hop; absent means the gateway of the matching `ips` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// Parses a result from its JSON value.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("result is not a JSON object".into());
        }
        CniResult::deserialize(value).map_err(|e| e.to_string())
    }

    /// The interfaces inside the sandbox (those with a `sandbox` set).
    pub fn sandbox_interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.iter().filter(|i| !i.sandbox.is_empty())
    }

    /// The addresses on the interface named `ifname` (or every address whose
    /// interface index is unknown). This is how a runtime finds the pod IP.
    pub fn ips_on(&self, ifname: &str) -> Vec<&IpConfig> {
        self.ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => iface.name == ifname,
                    None => true,
                },
            )
            .collect()
    }
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorObject {
    /// The version it is written in.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Error code.
    pub code: u32,
    /// Short message.
    #[serde(default)]
    pub msg: String,
    /// Longer details.
    #[serde(default)]
    pub details: Option<String>,
}

impl ErrorObject {
    /// Reads an error object from a plugin's stdout, if it printed one.
    pub fn parse(stdout: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(stdout).ok()?;
        value.get("code")?;
        ErrorObject::deserialize(&value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_bridge_result() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cox0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/var/run/netns/pod"}
            ],
            "ips": [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let result = CniResult::from_value(&raw).unwrap();
        assert_eq!(result.sandbox_interfaces().count(), 1);
        let ips = result.ips_on("eth0");
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0].ip(), "10.244.1.2");
        assert_eq!(ips[0].gateway.as_deref(), Some("10.244.1.1"));
        assert!(result.ips_on("eth1").is_empty());
        assert!(result.dns.is_empty());
    }

    #[test]
    fn reads_0_4_0_results_with_ip_version_field() {
        let raw =
            json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]});
        let result = CniResult::from_value(&raw).unwrap();
        assert_eq!(result.ips[0].address, "10.0.0.2/24");
    }

    #[test]
    fn rejects_non_objects_and_wrong_types() {
        assert!(CniResult::from_value(&json!([1, 2])).is_err());
        assert!(CniResult::from_value(&json!({"ips": "nope"})).is_err());
    }

    #[test]
    fn parses_error_objects_only_when_code_present() {
        let e = ErrorObject::parse(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_deref()),
            (7, "bad config", Some("x"))
        );
        assert!(ErrorObject::parse(br#"{"cniVersion":"1.0.0"}"#).is_none());
        assert!(ErrorObject::parse(b"panic: oops").is_none());
    }
}
