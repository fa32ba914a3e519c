//! IPv4 CIDRs and the choice of a node's pod CIDR: the lowest range of the cluster CIDR that
//! overlaps no other node's.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: a base address (host bits zero) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    base: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n`.
    #[error("invalid CIDR {0:?}: expected a.b.c.d/n")]
    Syntax(String),
    /// A prefix longer than 32.
    #[error("invalid CIDR {0:?}: the prefix length must be 0-32")]
    Prefix(String),
    /// Host bits set below the prefix.
    #[error("invalid CIDR {0:?}: host bits are set (did you mean {1}?)")]
    HostBits(String, String),
}

impl Ipv4Cidr {
    /// The network `base/prefix`; `None` when the prefix exceeds 32 or host bits are set.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 || u32::from(base) & !mask(prefix) != 0 {
            return None;
        }
        Some(Ipv4Cidr { base, prefix })
    }

    /// The base address.
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address of the network.
    fn last(&self) -> u32 {
        u32::from(self.base) | !mask(self.prefix)
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        u32::from(self.base) <= other.last() && u32::from(other.base) <= self.last()
    }

    /// How many `/prefix` subnets the network holds; `None` when `prefix` is shorter than the
    /// network's own or longer than 32.
    pub fn subnet_count(&self, prefix: u8) -> Option<u64> {
        (self.prefix..=32)
            .contains(&prefix)
            .then(|| 1u64 << (prefix - self.prefix))
    }

    /// The `index`-th `/prefix` subnet, counting from the network's base.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(prefix)? {
            return None;
        }
        let size = 1u64 << (32 - prefix);
        let base = u64::from(u32::from(self.base)) + index * size;
        Ipv4Cidr::new(Ipv4Addr::from(base as u32), prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (addr, prefix) = text.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(CidrError::Prefix(text.to_string()));
        }
        let base = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if base != addr {
            return Err(CidrError::HostBits(
                text.to_string(),
                format!("{base}/{prefix}"),
            ));
        }
        Ok(Ipv4Cidr { base, prefix })
    }
}

/// Checks that nodes' `/prefix` pod CIDRs fit in `cluster` and leave room for pods: the
/// prefix is at least the cluster's and at most 30 (two pod addresses besides the gateway).
pub fn check_node_prefix(cluster: &Ipv4Cidr, prefix: u8) -> Result<(), String> {
    if prefix < cluster.prefix() || prefix > 30 {
        return Err(format!(
            "node CIDR mask size {prefix}: must be between the cluster CIDR's ({cluster}) and 30"
        ));
    }
    Ok(())
}

/// The lowest `/prefix` subnet of `cluster` that overlaps none of `used`; `None` when every
/// one is taken (or `prefix` does not fit in `cluster`).
pub fn lowest_free(cluster: &Ipv4Cidr, prefix: u8, used: &[Ipv4Cidr]) -> Option<Ipv4Cidr> {
    let count = cluster.subnet_count(prefix)?;
    let mut index = 0;
    while index < count {
        let candidate = cluster.subnet(prefix, index)?;
        match used
            .iter()
            .filter(|u| u.overlaps(&candidate))
            .map(|u| u.last())
            .max()
        {
            None => return Some(candidate),
            // Skip every subnet the overlapping range covers.
            Some(last) => {
                let size = 1u64 << (32 - prefix);
                let next = (u64::from(last) + 1).saturating_sub(u64::from(u32::from(cluster.base)));
                index = next.div_ceil(size).max(index + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(cidr("10.244.0.0/16").to_string(), "10.244.0.0/16");
        assert!(matches!(
            "10.244.1.0/16".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits(_, ref b)) if b == "10.244.0.0/16"
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
    }

    #[test]
    fn node_prefix_must_fit_the_cluster_and_leave_room_for_pods() {
        let cluster = cidr("10.244.0.0/16");
        assert!(check_node_prefix(&cluster, 16).is_ok());
        assert!(check_node_prefix(&cluster, 26).is_ok());
        assert!(check_node_prefix(&cluster, 30).is_ok());
        let err = check_node_prefix(&cluster, 15).unwrap_err();
        assert!(err.contains("10.244.0.0/16"), "{err}");
        assert!(check_node_prefix(&cluster, 31).is_err());
        assert_eq!(lowest_free(&cluster, 26, &[]), Some(cidr("10.244.0.0/26")));
    }

    #[test]
    fn picks_the_lowest_range_no_other_node_overlaps() {
        let cluster = cidr("10.244.0.0/16");
        assert_eq!(lowest_free(&cluster, 24, &[]), Some(cidr("10.244.0.0/24")));
        let used = [cidr("10.244.0.0/24"), cidr("10.244.2.0/24")];
        assert_eq!(
            lowest_free(&cluster, 24, &used),
            Some(cidr("10.244.1.0/24"))
        );
        // A wider range used by a node hides every /24 inside it.
        let used = [cidr("10.244.0.0/22")];
        assert_eq!(
            lowest_free(&cluster, 24, &used),
            Some(cidr("10.244.4.0/24"))
        );
        let full = [cidr("10.244.0.0/16")];
        assert_eq!(lowest_free(&cluster, 24, &full), None);
        assert_eq!(lowest_free(&cluster, 8, &[]), None);
    }
}
