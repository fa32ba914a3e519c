//! [`RpcResolver`]: the node-local DNS server's [`Resolver`], asking the control
//! plane's `NodeService.Resolve` over the agent's current session.

use std::net::IpAddr;
use std::time::Duration;

use coxswain_proto::node::v1alpha1::ResolveRequest;
use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::network::dns::{ResolveAnswer, ResolveError, Resolver};

/// Longest wait for one answer (a DNS client retries after about 5 s).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves cluster names through the control plane.
pub struct RpcResolver {
    channel: watch::Receiver<Option<Channel>>,
}

impl RpcResolver {
    /// A resolver using whichever session `channel` holds (SERVFAIL between sessions).
    pub fn new(channel: watch::Receiver<Option<Channel>>) -> Self {
        Self { channel }
    }
}

#[async_trait::async_trait]
impl Resolver for RpcResolver {
    async fn resolve(&self, name: &str) -> Result<ResolveAnswer, ResolveError> {
        let fail = |message: String| ResolveError {
            name: name.to_string(),
            message,
        };
        let channel = self
            .channel
            .borrow()
            .clone()
            .ok_or_else(|| fail("not connected to the control plane".into()))?;
        let request = ResolveRequest {
            name: name.to_string(),
        };
        let answer = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            NodeServiceClient::new(channel).resolve(request),
        )
        .await
        .map_err(|_| fail(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
        .map_err(|status| fail(status.message().to_string()))?
        .into_inner();
        answer_of(name, answer.addresses, answer.authoritative)
    }
}

/// The DNS answer for the control plane's reply: no addresses is NXDOMAIN.
fn answer_of(
    name: &str,
    addresses: Vec<String>,
    authoritative: bool,
) -> Result<ResolveAnswer, ResolveError> {
    if !authoritative || addresses.is_empty() {
        return Ok(ResolveAnswer::NoSuchName);
    }
    let ips = addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>().map_err(|_| ResolveError {
                name: name.to_string(),
                message: format!("the control plane answered {a:?}, not an IP address"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolveAnswer::Addresses(ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_map_to_dns_and_no_session_is_a_failure_naming_the_name() {
        let (_tx, rx) = watch::channel(None);
        let e = RpcResolver::new(rx)
            .resolve("a.b.default.svc.cluster.local")
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("a.b.default.svc.cluster.local"),
            "{e}"
        );
        assert!(e.message.contains("not connected"), "{e}");
        assert_eq!(
            answer_of("x", vec!["10.1.0.2".into()], true).unwrap(),
            ResolveAnswer::Addresses(vec!["10.1.0.2".parse().unwrap()])
        );
        assert_eq!(
            answer_of("x", vec![], true).unwrap(),
            ResolveAnswer::NoSuchName
        );
        assert!(answer_of("x", vec!["nope".into()], true).is_err());
    }
}
