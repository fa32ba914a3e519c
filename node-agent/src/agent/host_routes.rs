//! The host-gw route task: follows `NodeService.WatchRoutes` (the other nodes' pod
//! CIDRs and InternalIPs) and makes the host's coxswain routes exactly that after
//! the initial snapshot and on every change. A broken stream is reopened on the
//! next session; routes stay as they were meanwhile.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::{RouteEvent, WatchRoutesRequest, route_event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::network::routes::HostRoutes;

/// Pause before reopening a failed route stream.
const RETRY: Duration = Duration::from_secs(1);

/// The routes wanted: node name → (pod CIDR, node IP).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: BTreeMap<String, (String, IpAddr)>,
}

impl RouteTable {
    /// Applies one event (except SYNCED); events of `own_node`, or with an
    /// unusable CIDR or IP, remove that node's route.
    pub fn apply(&mut self, own_node: &str, event: &RouteEvent) {
        let kind = route_event::Type::try_from(event.r#type).unwrap_or(route_event::Type::Upsert);
        let ip = event.node_ip.parse::<IpAddr>().ok();
        match (kind, ip) {
            (route_event::Type::Upsert, Some(ip))
                if event.node_name != own_node && event.pod_cidr.contains('/') =>
            {
                self.routes
                    .insert(event.node_name.clone(), (event.pod_cidr.clone(), ip));
            }
            (route_event::Type::Synced, _) => {}
            _ => {
                self.routes.remove(&event.node_name);
            }
        }
    }

    /// The routes as `sync_routes` takes them.
    pub fn desired(&self) -> Vec<(String, IpAddr)> {
        self.routes.values().cloned().collect()
    }
}

/// Runs until `shutdown`: one route stream per session of `channel`.
pub async fn run(
    node_name: String,
    routes: HostRoutes,
    mut channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let Some(ch) = super::connected(&mut channel, &shutdown).await else {
            return;
        };
        let result = tokio::select! {
            r = follow(&node_name, &routes, ch) => r,
            _ = shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            tracing::warn!("route stream: {e}; reopening");
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn follow(node_name: &str, routes: &HostRoutes, channel: Channel) -> Result<(), String> {
    let mut stream = NodeServiceClient::new(channel)
        .watch_routes(WatchRoutesRequest {
            node_name: node_name.to_string(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut table = RouteTable::default();
    let mut synced = false;
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        table.apply(node_name, &event);
        if event.r#type == route_event::Type::Synced as i32 {
            synced = true;
        }
        if synced {
            let desired = table.desired();
            let routes = routes.clone();
            match tokio::task::spawn_blocking(move || routes.sync_routes(&desired)).await {
                Ok(Ok(changes)) if changes.added.is_empty() && changes.removed.is_empty() => {}
                Ok(Ok(changes)) => {
                    tracing::info!(added = ?changes.added, removed = ?changes.removed, "host-gw routes synced")
                }
                Ok(Err(e)) => tracing::error!("host-gw routes: {e}"),
                Err(e) => tracing::error!("host-gw route task: {e}"),
            }
        }
    }
    Err("the route stream ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: route_event::Type, node: &str, cidr: &str, ip: &str) -> RouteEvent {
        RouteEvent {
            r#type: kind as i32,
            node_name: node.into(),
            pod_cidr: cidr.into(),
            node_ip: ip.into(),
        }
    }

    #[test]
    fn the_table_follows_upserts_and_deletes_and_skips_the_own_node() {
        use route_event::Type::*;
        let mut t = RouteTable::default();
        t.apply("me", &event(Upsert, "a", "10.244.1.0/24", "192.168.0.2"));
        t.apply("me", &event(Upsert, "me", "10.244.0.0/24", "192.168.0.1"));
        t.apply("me", &event(Upsert, "b", "10.244.2.0/24", "192.168.0.3"));
        t.apply("me", &event(Upsert, "a", "10.244.1.0/24", "192.168.0.9"));
        t.apply("me", &event(Delete, "b", "", ""));
        t.apply("me", &event(Synced, "", "", ""));
        assert_eq!(
            t.desired(),
            vec![("10.244.1.0/24".to_string(), "192.168.0.9".parse().unwrap())]
        );
        // A node that lost its IP has no route.
        t.apply("me", &event(Upsert, "a", "10.244.1.0/24", ""));
        assert!(t.desired().is_empty());
    }
}
