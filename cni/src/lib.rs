//! CNI 1.0 client library: how coxswain's node agent attaches pods to
//! networks with the standard CNI plugins (containernetworking/cni SPEC.md).
//!
//! - [`conflist`]: network config lists, validated with errors naming file and field.
//! - [`exec`]: the [`PluginExec`] seam, the real process runner and CNI_PATH lookup.
//! - `invoke`: one plugin call (environment, stdin, error objects).
//! - [`network`]: [`Cni`]: ADD/DEL/CHECK over a chain, VERSION negotiation.
//! - [`status_gc`]: STATUS and GC, only for plugins that speak 1.1.0.
//! - [`cache`]: the on-disk cache of ADD results used by DEL and CHECK.
//! - [`result`], [`version`], [`attachment`], [`defaults`], [`error`].
//! - [`fake`]: a scripted fake plugin set for unit tests.
//!
//! ```no_run
//! use coxswain_cni::{Attachment, Cni, DefaultNetwork};
//! let net = DefaultNetwork::new("10.244.3.0/24", "/var/lib/coxswain/cni/ipam").config_list()?;
//! let cni = Cni::system();
//! let pod = Attachment::new("pod-1234", "/var/run/netns/pod-1234", "eth0");
//! let added = cni.add(&net, &pod)?;
//! println!("pod IP {}", added.result.ips_on("eth0")[0].ip());
//! cni.del(&net, &pod)?;
//! # Ok::<(), coxswain_cni::Error>(())
//! ```

pub mod async_cni;
pub mod attachment;
pub mod cache;
pub mod conflist;
pub mod defaults;
pub mod error;
pub mod exec;
pub mod fake;
mod invoke;
pub mod network;
pub mod result;
pub mod status_gc;
pub mod version;

#[cfg(test)]
mod tests;

pub use async_cni::AsyncCni;
pub use attachment::{Attachment, PortMapping, RuntimeConfig};
pub use cache::{CachedAttachment, ResultCache};
pub use conflist::{NetworkConfigList, PluginConfig};
pub use defaults::{DefaultNetwork, loopback_config_list};
pub use error::{ConfigOrigin, Error, PluginError, Result};
pub use exec::{Command, DEFAULT_CNI_PATH, ExecRequest, PluginExec, ProcessExec, parse_cni_path};
pub use network::{AddOutcome, Cni};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use status_gc::{PluginOutcome, PluginReport, ValidAttachment};
pub use version::{CniVersion, PluginVersions};
