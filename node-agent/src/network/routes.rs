//! host-gw routing: one route per other node, `<its pod CIDR> via <its node IP>`,
//! in the host's main table. Every route we add carries our own route protocol
//! number ([`ROUTE_PROTOCOL`], `ip route ... proto 199`), so a sync can list exactly
//! the routes it owns and remove stale ones without touching anyone else's.
//! Driven through iproute2 (`ip -j route`), with a configurable command prefix
//! (`ip -n <netns>` in tests).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

use super::NetworkError;

/// The route protocol number marking coxswain's routes (unassigned in
/// /etc/iproute2/rt_protos; bird uses 12, zebra 11, kernel 2, static 4).
pub const ROUTE_PROTOCOL: u8 = 199;

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Routes added or repointed, as `cidr via ip`.
    pub added: Vec<String>,
    /// Stale routes removed (their CIDRs).
    pub removed: Vec<String>,
}

/// The host's routes to other nodes' pod CIDRs.
#[derive(Debug, Clone)]
pub struct HostRoutes {
    ip: Vec<String>,
}

impl Default for HostRoutes {
    fn default() -> Self {
        Self::system()
    }
}

impl HostRoutes {
    /// The machine's own routes (`ip`).
    pub fn system() -> Self {
        Self {
            ip: vec!["ip".into()],
        }
    }

    /// The routes of a named network namespace (`ip -n <name>`).
    pub fn in_netns(name: &str) -> Self {
        Self {
            ip: vec!["ip".into(), "-n".into(), name.into()],
        }
    }

    /// Makes our routes exactly `desired` (pod CIDR, node IP): adds the missing,
    /// repoints the moved, removes the ones no longer wanted. Idempotent.
    pub fn sync_routes(&self, desired: &[(String, IpAddr)]) -> Result<RouteChanges, NetworkError> {
        let mut want = BTreeMap::new();
        for (cidr, via) in desired {
            let dst = canonical_cidr(cidr)?;
            if dst.0.is_ipv4() != via.is_ipv4() {
                return Err(NetworkError::Config(format!(
                    "route {cidr} via {via}: the pod CIDR and the node IP are of different families"
                )));
            }
            if let Some(other) = want.insert(dst.1.clone(), *via)
                && other != *via
            {
                return Err(NetworkError::Config(format!(
                    "pod CIDR {cidr} is given twice (via {other} and via {via})"
                )));
            }
        }
        let have = self.current()?;
        let mut changes = RouteChanges::default();
        for (dst, via) in &want {
            if have.get(dst) != Some(via) {
                let proto = ROUTE_PROTOCOL.to_string();
                let via = via.to_string();
                self.run(&["route", "replace", dst, "via", &via, "proto", &proto])?;
                changes.added.push(format!("{dst} via {via}"));
            }
        }
        for dst in have.keys().filter(|d| !want.contains_key(*d)) {
            let proto = ROUTE_PROTOCOL.to_string();
            self.run(&["route", "del", dst, "proto", &proto])?;
            changes.removed.push(dst.clone());
        }
        Ok(changes)
    }

    /// The routes we own now, destination → gateway.
    pub fn current(&self) -> Result<BTreeMap<String, IpAddr>, NetworkError> {
        let mut routes = BTreeMap::new();
        for family in ["-4", "-6"] {
            let proto = ROUTE_PROTOCOL.to_string();
            let out = self.run(&["-j", family, "route", "show", "proto", &proto])?;
            routes.extend(parse_routes(&out, family == "-6")?);
        }
        Ok(routes)
    }

    fn run(&self, args: &[&str]) -> Result<String, NetworkError> {
        let mut cmd = Command::new(&self.ip[0]);
        cmd.args(&self.ip[1..]).args(args);
        let line = format!("{} {}", self.ip.join(" "), args.join(" "));
        let out = cmd.output().map_err(|e| NetworkError::Command {
            command: line.clone(),
            message: format!("{e} (is iproute2 installed?)"),
        })?;
        if !out.status.success() {
            return Err(NetworkError::Command {
                command: line,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Parses `ip -j route show` output into destination → gateway.
fn parse_routes(json: &str, v6: bool) -> Result<BTreeMap<String, IpAddr>, NetworkError> {
    let bad = |m: String| NetworkError::Command {
        command: "ip -j route show".into(),
        message: m,
    };
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| bad(format!("unreadable output: {e}")))?;
    let mut out = BTreeMap::new();
    for r in routes {
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        let Some(gw) = r["gateway"].as_str().and_then(|g| g.parse().ok()) else {
            continue;
        };
        let dst = match dst {
            "default" if v6 => "::/0".to_string(),
            "default" => "0.0.0.0/0".to_string(),
            d if d.contains('/') => d.to_string(),
            d if v6 => format!("{d}/128"),
            d => format!("{d}/32"),
        };
        out.insert(dst, gw);
    }
    Ok(out)
}

/// `addr/prefix` with the network address, as `ip route` prints it.
fn canonical_cidr(cidr: &str) -> Result<(IpAddr, String), NetworkError> {
    let bad = |why: &str| NetworkError::Config(format!("pod CIDR {cidr:?}: {why}"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(|| bad("not addr/prefix"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let prefix: u32 = prefix.parse().map_err(|_| bad("bad prefix length"))?;
    let masked = match addr {
        IpAddr::V4(a) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
        _ => return Err(bad("prefix length too long")),
    };
    if masked != addr {
        return Err(bad("host bits set (give the network address)"));
    }
    Ok((addr, format!("{addr}/{prefix}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json_routes() {
        let json = r#"[{"dst":"10.244.1.0/24","gateway":"192.168.5.2","dev":"eth0","flags":[]},
            {"dst":"10.9.9.9","gateway":"192.168.5.3","dev":"eth0","flags":[]},
            {"dst":"10.1.0.0/16","dev":"eth1","flags":[]}]"#;
        let routes = parse_routes(json, false).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes["10.244.1.0/24"].to_string(), "192.168.5.2");
        assert!(routes.contains_key("10.9.9.9/32"));
        assert!(parse_routes("", false).unwrap().is_empty());
        assert!(parse_routes("nonsense", false).is_err());
    }

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(canonical_cidr("10.244.1.0/24").unwrap().1, "10.244.1.0/24");
        assert_eq!(canonical_cidr("fd00:1::/64").unwrap().1, "fd00:1::/64");
        for bad in ["10.244.1.5/24", "10.244.1.0", "x/24", "10.0.0.0/40"] {
            let err = canonical_cidr(bad).unwrap_err().to_string();
            assert!(err.contains("pod CIDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn mixed_families_and_duplicates_are_refused_before_running_ip() {
        let routes = HostRoutes {
            ip: vec!["/nonexistent/ip".into()],
        };
        let err = routes
            .sync_routes(&[("10.244.1.0/24".into(), "fd00::1".parse().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("different families"), "{err}");
        let err = routes
            .sync_routes(&[
                ("10.244.1.0/24".into(), "10.0.0.1".parse().unwrap()),
                ("10.244.1.0/24".into(), "10.0.0.2".parse().unwrap()),
            ])
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
        let err = routes.sync_routes(&[]).unwrap_err().to_string();
        assert!(err.contains("iproute2"), "{err}");
    }
}
