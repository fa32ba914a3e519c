//! [`FakeNetwork`]: an in-memory [`PodNetwork`] handing out addresses from
//! `10.88.0.0/24`, with a call log and an injectable setup failure, for unit tests
//! of the pod worker and for hollow nodes that want pod IPs without plugins.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Mutex;

use coxswain_api::k8s::Pod;

use super::{ClusterDns, NetworkError, PodIps, PodNetwork};

/// Addresses from a counter; nothing touches the machine.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    state: Mutex<FakeState>,
    /// The node address reported (`None`: unknown).
    pub host_ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct FakeState {
    next: u8,
    attached: BTreeMap<String, PodIps>,
    calls: Vec<String>,
    fail_setups: u32,
}

impl FakeNetwork {
    /// A fake reporting `host_ip` as the node's address.
    pub fn new(host_ip: Option<IpAddr>) -> Self {
        Self {
            host_ip,
            ..Self::default()
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` setups fail.
    pub fn fail_next_setups(&self, n: u32) {
        self.state().fail_setups = n;
    }

    /// `setup <uid>` / `teardown <uid>` in call order.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Records an attachment as if a previous agent had made it.
    pub fn preattach(&self, uid: &str, ip: IpAddr) {
        self.state().attached.insert(
            uid.to_string(),
            PodIps {
                ips: vec![ip],
                host_ip: self.host_ip,
            },
        );
    }
}

impl PodNetwork for FakeNetwork {
    fn setup(&self, pod: &Pod, _netns: &Path) -> Result<PodIps, NetworkError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let host_ip = self.host_ip;
        let mut state = self.state();
        state.calls.push(format!("setup {uid}"));
        if state.fail_setups > 0 {
            state.fail_setups -= 1;
            return Err(NetworkError::Config("injected setup failure".into()));
        }
        if let Some(ips) = state.attached.get(&uid) {
            return Ok(ips.clone());
        }
        state.next = state.next.wrapping_add(1);
        let ip = IpAddr::V4(Ipv4Addr::new(
            10,
            88,
            0,
            state.next.max(1).saturating_add(1),
        ));
        let ips = PodIps {
            ips: vec![ip],
            host_ip,
        };
        state.attached.insert(uid, ips.clone());
        Ok(ips)
    }

    fn teardown(&self, uid: &str, _netns: &Path) -> Result<(), NetworkError> {
        let mut state = self.state();
        state.calls.push(format!("teardown {uid}"));
        state.attached.remove(uid);
        Ok(())
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        Ok(self.state().attached.keys().cloned().collect())
    }

    fn cluster_dns(&self) -> Option<ClusterDns> {
        Some(ClusterDns {
            nameservers: vec![IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1))],
            domain: "cluster.local".into(),
        })
    }

    fn host_ip(&self) -> Option<IpAddr> {
        self.host_ip
    }
}
