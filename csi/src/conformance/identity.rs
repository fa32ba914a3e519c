//! Identity cases: GetPluginInfo, GetPluginCapabilities and Probe.

use coxswain_proto::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, ProbeRequest, plugin_capability,
};

use super::suite::{CaseResult, Suite, ensure, ok};

/// The spec's rule for names: at most 63 characters, alphanumerics, `-`
/// and `.`, beginning and ending with an alphanumeric (a domain name).
fn valid_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// GetPluginInfo: a valid name and a non-empty vendor version.
pub async fn plugin_info(s: &Suite) -> CaseResult {
    let info = ok(
        s.client
            .identity
            .clone()
            .get_plugin_info(GetPluginInfoRequest {})
            .await,
        "GetPluginInfo",
    )?;
    ensure(
        valid_name(&info.name),
        format!("name {:?} is not a valid CSI driver name", info.name),
    )?;
    ensure(!info.vendor_version.is_empty(), "vendor_version is empty")
}

/// GetPluginCapabilities: every entry has a known type.
pub async fn plugin_capabilities(s: &Suite) -> CaseResult {
    let resp = ok(
        s.client
            .identity
            .clone()
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await,
        "GetPluginCapabilities",
    )?;
    for cap in resp.capabilities {
        match cap.r#type {
            Some(plugin_capability::Type::Service(svc)) => {
                ensure(svc.r#type != 0, "a Service capability of type UNKNOWN")?
            }
            Some(plugin_capability::Type::VolumeExpansion(exp)) => ensure(
                exp.r#type != 0,
                "a VolumeExpansion capability of type UNKNOWN",
            )?,
            None => return Err(super::Check::Fail("a capability without a type".into())),
        }
    }
    Ok(())
}

/// Probe: OK, and `ready` unset or true.
pub async fn probe(s: &Suite) -> CaseResult {
    let resp = ok(
        s.client.identity.clone().probe(ProbeRequest {}).await,
        "Probe",
    )?;
    ensure(resp.ready != Some(false), "Probe says not ready")
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn driver_names_follow_the_spec() {
        assert!(valid_name("csi.coxswain.dev"));
        assert!(!valid_name("-csi"));
        assert!(!valid_name("csi/x"));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
