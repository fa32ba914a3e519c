//! CNI spec versions and VERSION negotiation: which version a network's chain
//! is driven with, given what the config asks and what each plugin speaks.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A CNI spec version (`major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CniVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl CniVersion {
    /// Builds a version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        CniVersion {
            major,
            minor,
            patch,
        }
    }

    /// 0.4.0: the first version with CHECK.
    pub const V0_4_0: CniVersion = CniVersion::new(0, 4, 0);
    /// 1.0.0: the highest version this library drives ADD/DEL/CHECK with.
    pub const V1_0_0: CniVersion = CniVersion::new(1, 0, 0);
    /// 1.1.0: the first version with STATUS and GC.
    pub const V1_1_0: CniVersion = CniVersion::new(1, 1, 0);
}

/// Versions whose result format this library reads (0.3.0 onwards share the
/// `interfaces`/`ips`/`routes`/`dns` layout).
pub const SUPPORTED_VERSIONS: [CniVersion; 5] = [
    CniVersion::new(0, 3, 0),
    CniVersion::new(0, 3, 1),
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for CniVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(format!(
                "{s:?} is not a version of the form major.minor.patch"
            ));
        }
        let num = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| format!("{s:?} is not a version of the form major.minor.patch"))
        };
        Ok(CniVersion::new(
            num(parts[0])?,
            num(parts[1])?,
            num(parts[2])?,
        ))
    }
}

/// A plugin's answer to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginVersions {
    /// The version the answer is written in.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// The versions the plugin speaks.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl PluginVersions {
    /// The advertised versions that parse, ignoring any that do not.
    pub fn parsed(&self) -> Vec<CniVersion> {
        self.supported_versions
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect()
    }

    /// Whether the plugin speaks `version` (STATUS and GC need 1.1.0).
    pub fn supports(&self, version: CniVersion) -> bool {
        self.parsed().contains(&version)
    }
}

/// The version to drive ADD/DEL/CHECK with: the highest version spoken by
/// this library and by every plugin, no newer than 1.0.0 and no newer than the
/// config's own `cniVersion` (an operator who wrote 0.4.0 gets 0.4.0 results).
///
/// `plugins` pairs each plugin's `type` with its VERSION answer. On failure
/// returns the first plugin that has no version in common.
pub fn negotiate(
    config_version: CniVersion,
    plugins: &[(String, PluginVersions)],
) -> Result<CniVersion, String> {
    let ceiling = config_version.min(CniVersion::V1_0_0);
    let mut candidates: Vec<CniVersion> = SUPPORTED_VERSIONS
        .iter()
        .copied()
        .filter(|v| v.cmp(&ceiling) != Ordering::Greater)
        .collect();
    for (plugin, versions) in plugins {
        let spoken = versions.parsed();
        let remaining: Vec<CniVersion> = candidates
            .iter()
            .copied()
            .filter(|v| spoken.contains(v))
            .collect();
        if remaining.is_empty() {
            return Err(plugin.clone());
        }
        candidates = remaining;
    }
    candidates
        .into_iter()
        .max()
        .ok_or_else(|| plugins.first().map(|p| p.0.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaks(versions: &[&str]) -> PluginVersions {
        PluginVersions {
            cni_version: "1.0.0".into(),
            supported_versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn parses_and_orders_versions() {
        let v: CniVersion = "0.3.1".parse().unwrap();
        assert_eq!(v, CniVersion::new(0, 3, 1));
        assert!(v < CniVersion::V0_4_0);
        assert!("1.0".parse::<CniVersion>().is_err());
        assert!("1.x.0".parse::<CniVersion>().is_err());
        assert_eq!(CniVersion::V1_1_0.to_string(), "1.1.0");
    }

    #[test]
    fn picks_highest_common_version_capped_at_1_0_0() {
        let debian = speaks(&["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
        let newer = speaks(&["0.4.0", "1.0.0", "1.1.0"]);
        let plugins = vec![("bridge".to_string(), debian), ("fancy".to_string(), newer)];
        assert_eq!(
            negotiate(CniVersion::V1_1_0, &plugins),
            Ok(CniVersion::V1_0_0)
        );
        assert_eq!(
            negotiate(CniVersion::V0_4_0, &plugins),
            Ok(CniVersion::V0_4_0)
        );
    }

    #[test]
    fn older_plugin_lowers_the_chain_version() {
        let plugins = vec![
            ("bridge".to_string(), speaks(&["0.3.1", "0.4.0", "1.0.0"])),
            ("old".to_string(), speaks(&["0.3.0", "0.3.1"])),
        ];
        assert_eq!(
            negotiate(CniVersion::V1_0_0, &plugins),
            Ok(CniVersion::new(0, 3, 1))
        );
    }

    #[test]
    fn no_common_version_names_the_plugin() {
        let plugins = vec![
            ("bridge".to_string(), speaks(&["1.0.0"])),
            ("ancient".to_string(), speaks(&["0.1.0", "0.2.0"])),
        ];
        assert_eq!(
            negotiate(CniVersion::V1_0_0, &plugins),
            Err("ancient".to_string())
        );
    }
}
