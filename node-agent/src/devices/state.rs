//! What the manager knows: each registered plugin (its endpoint, options, whether its
//! `ListAndWatch` stream is open, its devices' health and attributes) and the
//! allocation checkpoint, and the [`DeviceInventory`] derived from them.

use std::collections::BTreeMap;

use coxswain_proto::deviceplugin::v1alpha1::DeviceAttributeSet;
use coxswain_proto::deviceplugin::v1beta1::DevicePluginOptions;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::DeviceInventory;
use super::checkpoint::Checkpoint;
use super::slices::{SliceDevice, resource_slice};

/// One device's health as the plugin last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    /// The resource the device is advertised under.
    pub resource: String,
    /// The device-plugin device ID.
    pub id: String,
    /// Whether the plugin reports it `Healthy`.
    pub healthy: bool,
}

/// A device from `ListAndWatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceState {
    pub healthy: bool,
    pub numa_node: Option<i64>,
}

/// A registered plugin.
#[derive(Debug)]
pub(super) struct PluginEntry {
    /// Socket file name inside the plugin directory.
    pub endpoint: String,
    /// Which registration this is; a session only touches its own.
    pub generation: u64,
    /// The session task is alive (dialling or streaming).
    pub session_running: bool,
    /// `ListAndWatch` is open: the devices are current.
    pub streaming: bool,
    pub options: DevicePluginOptions,
    pub channel: Option<Channel>,
    pub devices: BTreeMap<String, DeviceState>,
    pub attributes: BTreeMap<String, DeviceAttributeSet>,
    /// Stops the session (on replacement or shutdown).
    pub cancel: CancellationToken,
}

impl PluginEntry {
    /// Devices that can be allocated now.
    pub fn healthy_ids(&self) -> Vec<String> {
        if !self.streaming {
            return Vec::new();
        }
        self.devices
            .iter()
            .filter(|(_, d)| d.healthy)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Everything behind the manager's lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub plugins: BTreeMap<String, PluginEntry>,
    pub checkpoint: Checkpoint,
    pub next_generation: u64,
}

impl State {
    /// The inventory for `node_name`: a registered plugin whose stream is closed
    /// reports 0 devices until it registers again.
    pub fn inventory(&self, node_name: &str) -> DeviceInventory {
        let mut inventory = DeviceInventory::default();
        for (resource, plugin) in &self.plugins {
            let (capacity, healthy) = if plugin.streaming {
                let healthy = plugin.devices.values().filter(|d| d.healthy).count();
                (plugin.devices.len(), healthy)
            } else {
                (0, 0)
            };
            inventory.capacity.insert(resource.clone(), capacity as i64);
            inventory
                .allocatable
                .insert(resource.clone(), healthy as i64);
            if healthy == 0 {
                continue;
            }
            // Unhealthy devices are left out of the slice: nothing may schedule onto them.
            let devices: Vec<SliceDevice<'_>> = plugin
                .devices
                .iter()
                .enumerate()
                .filter(|(_, (_, d))| d.healthy)
                .map(|(position, (id, d))| SliceDevice {
                    id,
                    position,
                    numa_node: d.numa_node,
                    attributes: plugin.attributes.get(id),
                })
                .collect();
            inventory
                .resource_slices
                .push(resource_slice(node_name, resource, &devices));
        }
        inventory
    }
}
