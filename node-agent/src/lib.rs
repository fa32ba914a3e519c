//! The coxswain node agent, as a library.
//!
//! It runs the pods bound to one machine: a pod worker per pod drives a
//! level-triggered state machine over narrow traits, each with a real
//! implementation and a fake:
//!
//! - [`sandbox`]: the pod's network/IPC/UTS namespaces (bind-mounted under the
//!   agent's run dir) and its pod cgroup with Kubernetes' QoS classes, cgroup v1 and v2.
//! - [`runtime`]: the OCI runtime spec (`oci-spec`) and runc/crun driven through
//!   their CLI, each container under our own tiny shim ([`shim`]) that writes CRI
//!   logs and the exit status.
//! - [`images`]: root filesystems behind [`images::ImageStore`]: `host`, imported
//!   OCI image layouts/archives, and rootfs directories (the busybox fixture).
//! - [`volumes`]: emptyDir, hostPath, secret, configMap and downwardAPI, and
//!   claims of CSI volumes through [`csi`] (drivers, stage/publish, journal, provisioner).
//! - [`network`]: pod networking (CNI), pod DNS files, the node-local DNS server,
//!   host-gw routes.
//! - [`devices`]: the device-plugin API `v1beta1` (registration server, plugin
//!   sessions, inventory, allocation into the OCI spec, checkpoint).
//! - [`worker`]: the pod worker, restart policies, back-off, status, re-adoption.
//! - [`logs`]: the CRI log format.
//! - [`usage`]: pod and container CPU/memory from their cgroups, as Prometheus text;
//!   [`resource_metrics`]: kubelet's `/metrics/resource` for the metrics API.
//!
//! - [`agent`]: the daemon: registration, lease, pod stream and status reports
//!   over the control plane's gRPC node service, and the log service.

pub mod agent;
pub mod clock;
pub mod config;
pub mod csi;
pub mod devices;
pub mod images;
pub mod logs;
pub mod mounts;
pub mod network;
pub mod resource_metrics;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod usage;
pub mod volumes;
pub mod worker;

pub use config::AgentConfig;
