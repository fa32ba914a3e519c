//! Node restriction for the node service: over the TLS listener, where the auth layer put
//! the caller's [`UserInfo`] on the request, a node credential (`system:node:<name>`) may
//! act only for its own node, and only nodes and `system:masters` may call at all. The
//! unauthenticated local listeners (loopback, the 0600 Unix socket) carry no user and are
//! not restricted.

use tonic::{Request, Status};

use super::pb;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::auth::node::node_of;
use crate::apiserver::auth::pki::MASTERS_GROUP;

/// Refuses a call made for `node` by a caller who is not that node.
pub(crate) fn check_caller<T>(request: &Request<T>, node: &str) -> Result<(), Status> {
    let Some(user) = request.extensions().get::<UserInfo>() else {
        return Ok(());
    };
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    match node_of(user) {
        Some(own) if own == node => Ok(()),
        Some(own) => Err(Status::permission_denied(format!(
            "node {own:?} may not act for node {node:?}"
        ))),
        None => Err(Status::permission_denied(format!(
            "user {:?} is not a node",
            user.name
        ))),
    }
}

/// The name of the Node a Register request carries (empty when unreadable; the handler
/// then refuses it).
pub(crate) fn registering_node(request: &pb::RegisterRequest) -> String {
    serde_json::from_slice::<serde_json::Value>(&request.node)
        .ok()
        .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user(name: &str, groups: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        request
    }

    #[test]
    fn nodes_act_only_for_themselves() {
        let a = with_user("system:node:a", &["system:nodes"]);
        assert!(check_caller(&a, "a").is_ok());
        let err = check_caller(&a, "b").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("\"b\""), "{}", err.message());
        assert!(check_caller(&with_user("alice", &["dev"]), "a").is_err());
        assert!(check_caller(&with_user("admin", &["system:masters"]), "b").is_ok());
        assert!(
            check_caller(&Request::new(()), "b").is_ok(),
            "local listeners"
        );
    }

    #[test]
    fn register_names_its_node_from_the_json() {
        let request = pb::RegisterRequest {
            node: br#"{"metadata":{"name":"gpu-1"}}"#.to_vec(),
        };
        assert_eq!(registering_node(&request), "gpu-1");
        let garbage = pb::RegisterRequest {
            node: b"{".to_vec(),
        };
        assert_eq!(registering_node(&garbage), "");
    }
}
