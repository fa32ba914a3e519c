//! WatchRoutes: every other node's pod CIDR and InternalIP, the next hop of a host-gw route.
//!
//! A node appears (UPSERT) once it has both a pod CIDR and an InternalIP, is re-sent when
//! either changes, and leaves (DELETE) when it loses one or its Node is deleted. The first
//! list ends with SYNCED; a later re-list is diffed against what the agent was told.

use std::collections::{BTreeMap, HashSet};

use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::route_event::Type;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tonic::Status;

use super::{EventStream, NodeService};

/// Serves WatchRoutes: the stream runs until the agent hangs up or the server shuts down.
pub(crate) fn watch(
    service: &NodeService,
    request: pb::WatchRoutesRequest,
) -> Result<EventStream<pb::RouteEvent>, Status> {
    super::server_stream(service, request.node_name, |client, node, tx| async move {
        stream_routes(client, node, &tx).await
    })
}

type Sender = mpsc::Sender<Result<pb::RouteEvent, Status>>;

/// A route: (pod CIDR, node IP).
type Route = (String, String);

async fn stream_routes(client: kube::Client, me: String, tx: &Sender) {
    let nodes: Api<Node> = Api::all(client);
    let mut events = watcher(nodes, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut sent: BTreeMap<String, Route> = BTreeMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    let mut synced = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(node = %me, %error, "watching nodes for routes");
                continue;
            }
        };
        let mut out = Vec::new();
        match event {
            watcher::Event::Init => relisted = Some(HashSet::new()),
            watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(name.clone());
                }
                if name != me {
                    out.extend(change(&mut sent, name, route(&node)));
                }
            }
            watcher::Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<String> = sent
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for name in gone {
                    out.extend(change(&mut sent, name, None));
                }
                if !synced {
                    synced = true;
                    out.push(pb::RouteEvent {
                        r#type: Type::Synced as i32,
                        ..pb::RouteEvent::default()
                    });
                }
            }
            watcher::Event::Delete(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                out.extend(change(&mut sent, name, None));
            }
        }
        for event in out {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// The event that brings the agent from `sent` to `now` for one node, if any.
fn change(
    sent: &mut BTreeMap<String, Route>,
    name: String,
    now: Option<Route>,
) -> Option<pb::RouteEvent> {
    match now {
        Some(route) => {
            if sent.get(&name) == Some(&route) {
                return None;
            }
            sent.insert(name.clone(), route.clone());
            Some(pb::RouteEvent {
                r#type: Type::Upsert as i32,
                node_name: name,
                pod_cidr: route.0,
                node_ip: route.1,
            })
        }
        None => {
            let (pod_cidr, node_ip) = sent.remove(&name)?;
            Some(pb::RouteEvent {
                r#type: Type::Delete as i32,
                node_name: name,
                pod_cidr,
                node_ip,
            })
        }
    }
}

/// A node's pod CIDR and InternalIP, when it has both.
fn route(node: &Node) -> Option<Route> {
    let cidr = node
        .spec
        .as_ref()?
        .pod_cidr
        .clone()
        .filter(|c| !c.is_empty())?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .clone();
    Some((cidr, ip))
}
