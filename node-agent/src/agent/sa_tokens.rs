//! The agent's [`TokenSource`]: pods' service-account tokens from the control plane's
//! ServiceAccountToken call, cached per pod, audience and lifetime as kubelet's token
//! manager caches them, and asked for again once due ([`due`]). A token the control plane
//! cannot replace right now is kept while it is still valid.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use coxswain_api::k8s::Pod;
use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::volumes::tokens::{TokenRequest, TokenSource, due};

/// How long one request for a token may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

/// Service-account tokens for this node's pods.
pub struct TokenManager {
    node_name: String,
    channel: watch::Receiver<Option<Channel>>,
    runtime: tokio::runtime::Handle,
    cache: Mutex<HashMap<(String, TokenRequest), Cached>>,
}

impl TokenManager {
    /// Tokens asked for over the control-plane connection in `channel`; calls run on
    /// `runtime` (pod threads block on them).
    pub fn new(
        node_name: String,
        channel: watch::Receiver<Option<Channel>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            node_name,
            channel,
            runtime,
            cache: Mutex::default(),
        }
    }

    fn keep(&self, key: (String, TokenRequest), fresh: Cached) -> Result<String, String> {
        let token = fresh.token.clone();
        self.cache
            .lock()
            .map_err(|_| "token cache poisoned")?
            .insert(key, fresh);
        Ok(token)
    }

    fn ask(&self, pod: &Pod, request: &TokenRequest) -> Result<Cached, String> {
        let channel = self
            .channel
            .borrow()
            .clone()
            .ok_or("not connected to the control plane")?;
        let call = pb::ServiceAccountTokenRequest {
            node_name: self.node_name.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audiences: (!request.audience.is_empty())
                .then(|| request.audience.clone())
                .into_iter()
                .collect(),
            expiration_seconds: request.expiration_seconds,
        };
        let answer = self
            .runtime
            .block_on(async {
                tokio::time::timeout(
                    CALL_TIMEOUT,
                    NodeServiceClient::new(channel).service_account_token(call),
                )
                .await
            })
            .map_err(|_| format!("the control plane did not answer within {CALL_TIMEOUT:?}"))?
            .map_err(|status| status.message().to_string())?
            .into_inner();
        let at = |seconds: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
        Ok(Cached {
            token: answer.token,
            issued: at(answer.issued_unix),
            expires: at(answer.expiration_unix),
        })
    }
}

impl TokenSource for TokenManager {
    fn token(&self, pod: &Pod, request: &TokenRequest) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid, request.clone());
        let now = SystemTime::now();
        let held = self
            .cache
            .lock()
            .map_err(|_| "token cache poisoned")?
            .get(&key)
            .map(|c| {
                (
                    c.token.clone(),
                    due(c.issued, c.expires, now),
                    now < c.expires,
                )
            });
        match held {
            Some((token, false, _)) => Ok(token),
            Some((token, true, true)) => match self.ask(pod, request) {
                Ok(fresh) => self.keep(key, fresh),
                Err(e) => {
                    tracing::warn!(pod = %key.0, "replacing a service-account token: {e}; keeping the current one");
                    Ok(token)
                }
            },
            _ => {
                let fresh = self.ask(pod, request)?;
                self.keep(key, fresh)
            }
        }
    }

    fn forget(&self, uid: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(pod, _), _| pod != uid);
        }
    }
}
