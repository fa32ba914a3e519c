//! The XIDs each GPU reported since the plugin started, application XIDs
//! included: the health monitor writes every XID event here before the
//! policy decides what it means, and `/metrics` reads it
//! (`DCGM_FI_DEV_XID_ERRORS`, `coxswain_gpu_xid_errors_total`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The XIDs of one GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceXids {
    /// The most recent XID, `None` before the first.
    pub last: Option<u64>,
    /// How many times each XID occurred.
    pub counts: BTreeMap<u64, u64>,
}

/// Device ID → its XIDs; cheap to clone, shared by the monitor and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct XidLog {
    devices: Arc<Mutex<BTreeMap<String, DeviceXids>>>,
}

impl XidLog {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, DeviceXids>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one occurrence of `xid` on `device_id`.
    pub fn record(&self, device_id: &str, xid: u64) {
        let mut devices = self.lock();
        let device = devices.entry(device_id.to_string()).or_default();
        device.last = Some(xid);
        *device.counts.entry(xid).or_insert(0) += 1;
    }

    /// The XIDs of one GPU (empty when it reported none).
    pub fn get(&self, device_id: &str) -> DeviceXids {
        self.lock().get(device_id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_xid_and_counts_each() {
        let log = XidLog::default();
        assert_eq!(log.get("GPU-a"), DeviceXids::default());
        log.record("GPU-a", 79);
        log.record("GPU-a", 13);
        log.record("GPU-a", 13);
        let a = log.get("GPU-a");
        assert_eq!(a.last, Some(13));
        assert_eq!(a.counts, BTreeMap::from([(13, 2), (79, 1)]));
        assert_eq!(log.get("GPU-b").last, None);
    }
}
