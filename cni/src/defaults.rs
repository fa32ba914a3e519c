//! coxswain's default pod network for a node: a `cox0` bridge acting as the
//! pods' gateway with masquerading, host-local IPAM on the node's pod CIDR and
//! portmap for hostPorts; plus the loopback list every sandbox also gets.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::conflist::NetworkConfigList;
use crate::error::{ConfigOrigin, Error, Result};

/// Inputs of the default conflist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNetwork {
    /// Network name (also host-local's subdirectory of `ipam_data_dir`).
    pub name: String,
    /// Linux bridge name (≤ 15 bytes).
    pub bridge: String,
    /// The node's pod CIDR, e.g. `10.244.3.0/24`.
    pub pod_cidr: String,
    /// Where host-local keeps its reservations.
    pub ipam_data_dir: PathBuf,
    /// Interface MTU; `None` lets the bridge plugin choose.
    pub mtu: Option<u32>,
}

impl DefaultNetwork {
    /// The standard settings (`coxswain` network on bridge `cox0`) for a pod CIDR.
    pub fn new(pod_cidr: impl Into<String>, ipam_data_dir: impl Into<PathBuf>) -> Self {
        DefaultNetwork {
            name: "coxswain".into(),
            bridge: "cox0".into(),
            pod_cidr: pod_cidr.into(),
            ipam_data_dir: ipam_data_dir.into(),
            mtu: None,
        }
    }

    /// The conflist as JSON (what an agent writes to its config directory).
    pub fn render(&self) -> Result<Value> {
        let origin = ConfigOrigin::Inline;
        let (network, prefix) =
            parse_cidr(&self.pod_cidr).map_err(|r| Error::invalid(&origin, "podCIDR", r))?;
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains(['/', ':', ' '])
        {
            return Err(Error::invalid(
                &origin,
                "bridge",
                format!("{:?} is not a valid interface name", self.bridge),
            ));
        }
        let default_route = if network.is_ipv4() {
            "0.0.0.0/0"
        } else {
            "::/0"
        };
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{network}/{prefix}")}]],
                "routes": [{"dst": default_route}],
                "dataDir": self.ipam_data_dir.display().to_string(),
            },
        });
        if let Some(mtu) = self.mtu {
            bridge["mtu"] = json!(mtu);
        }
        let config = json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                bridge,
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        // Validate what we produce with the same rules as operator configs.
        NetworkConfigList::from_value(config.clone(), origin)?;
        Ok(config)
    }

    /// The conflist, parsed.
    pub fn config_list(&self) -> Result<NetworkConfigList> {
        NetworkConfigList::from_value(self.render()?, ConfigOrigin::Inline)
    }
}

/// The loopback network every sandbox gets (brings `lo` up), run separately
/// from the pod network with ifname `lo`.
pub fn loopback_config_list() -> NetworkConfigList {
    let config =
        json!({"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]});
    NetworkConfigList::from_value(config, ConfigOrigin::Inline).expect("the loopback list is valid")
}

/// Parses `addr/prefix`, requiring the address to be the network address.
fn parse_cidr(cidr: &str) -> std::result::Result<(IpAddr, u8), String> {
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR (addr/prefix)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{cidr:?}: {addr:?} is not an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{cidr:?}: {prefix:?} is not a prefix length"))?;
    let (bits, max) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8),
        IpAddr::V6(a) => (u128::from(a), 128u8),
    };
    if prefix > max {
        return Err(format!("{cidr:?}: prefix length {prefix} is over {max}"));
    }
    // A pod range needs room for the gateway and at least one pod.
    if max - prefix < 2 {
        return Err(format!("{cidr:?}: too small for a gateway and pods"));
    }
    let host_bits = u32::from(max - prefix);
    let host_mask = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if bits & host_mask != 0 {
        return Err(format!(
            "{cidr:?} has host bits set (did you mean the network address?)"
        ));
    }
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bridge_host_local_and_portmap() {
        let net = DefaultNetwork::new("10.244.3.0/24", "/var/lib/coxswain/cni/ipam");
        let value = net.render().unwrap();
        assert_eq!(value["plugins"][0]["bridge"], "cox0");
        assert_eq!(value["plugins"][0]["isGateway"], true);
        assert_eq!(value["plugins"][0]["ipMasq"], true);
        assert_eq!(
            value["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(
            value["plugins"][0]["ipam"]["dataDir"],
            "/var/lib/coxswain/cni/ipam"
        );
        assert_eq!(value["plugins"][1]["type"], "portmap");
        assert_eq!(value["plugins"][1]["snat"], true);
        let list = net.config_list().unwrap();
        assert_eq!(list.name, "coxswain");
        assert!(list.plugins[1].has_capability("portMappings"));
        assert_eq!(loopback_config_list().plugins[0].plugin_type, "loopback");
    }

    #[test]
    fn ipv6_cidrs_get_an_ipv6_default_route() {
        let value = DefaultNetwork::new("fd00:10:244:3::/64", "/tmp/ipam")
            .render()
            .unwrap();
        assert_eq!(value["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn rejects_bad_cidrs_and_bridge_names() {
        for cidr in [
            "10.244.3.0",
            "10.244.3.0/33",
            "10.244.3.5/24",
            "banana/24",
            "10.0.0.0/31",
        ] {
            let err = DefaultNetwork::new(cidr, "/tmp")
                .render()
                .unwrap_err()
                .to_string();
            assert!(err.contains("`podCIDR`"), "{cidr}: {err}");
        }
        let mut net = DefaultNetwork::new("10.244.3.0/24", "/tmp");
        net.bridge = "a-much-too-long-bridge".into();
        assert!(net.render().unwrap_err().to_string().contains("`bridge`"));
    }
}
