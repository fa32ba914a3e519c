//! The NVML event thread: NVML event sets borrow the `Nvml` handle, so a
//! dedicated thread owns its own handle and event set and forwards critical
//! XID and double-bit ECC events over a channel.

use std::sync::mpsc::Sender;

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;

use crate::gpu::{HealthEvent, HealthEventKind};

/// Milliseconds one `nvmlEventSetWait` lasts.
const WAIT_MS: u32 = 5_000;

/// Starts the event thread; it ends when the receiver is dropped.
pub(crate) fn spawn(tx: Sender<HealthEvent>) {
    let spawned = std::thread::Builder::new()
        .name("nvml-events".into())
        .spawn(move || {
            if let Err(e) = run(&tx) {
                tracing::error!(error = %e, "NVML health events unavailable; GPUs stay as discovered");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the NVML event thread");
    }
}

fn run(tx: &Sender<HealthEvent>) -> Result<(), NvmlError> {
    let nvml = Nvml::init()?;
    let wanted = EventTypes::CRITICAL_XID_ERROR | EventTypes::DOUBLE_BIT_ECC_ERROR;
    let count = nvml.device_count()?;
    // A failed registration consumes the event set: start again without
    // the GPU that refused, so the others keep their events.
    let mut skipped = std::collections::BTreeSet::new();
    let set = 'register: loop {
        let mut set = nvml.create_event_set()?;
        for index in (0..count).filter(|i| !skipped.contains(i)) {
            let device = nvml.device_by_index(index)?;
            let supported = device
                .supported_event_types()
                .unwrap_or(EventTypes::empty())
                & wanted;
            if supported.is_empty() {
                tracing::warn!(
                    index,
                    "GPU reports no XID/ECC events; its health is not watched"
                );
                continue;
            }
            set = match device.register_events(supported, set) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(index, error = %e.error, "cannot register for NVML events");
                    skipped.insert(index);
                    continue 'register;
                }
            };
        }
        break set;
    };
    loop {
        match set.wait(WAIT_MS) {
            Ok(data) => {
                let Ok(device_id) = data.device.uuid() else {
                    continue;
                };
                let kind = if data.event_type.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) {
                    HealthEventKind::DoubleBitEcc
                } else {
                    match data.event_data {
                        Some(XidError::Value(xid)) => HealthEventKind::Xid(xid),
                        _ => HealthEventKind::UnknownXid,
                    }
                };
                if tx.send(HealthEvent { device_id, kind }).is_err() {
                    return Ok(());
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => {
                tracing::warn!(error = %e, "waiting for NVML events failed");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}
