//! The crate's error type: every failure names the file, plugin, field or
//! network it is about, and plugin error objects keep the plugin's own message.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::exec::Command;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a network configuration came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Read from this file.
    File(PathBuf),
    /// Passed in as bytes or a JSON value (rendered or built in code).
    Inline,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(path) => write!(f, "network config {}", path.display()),
            ConfigOrigin::Inline => f.write_str("inline network config"),
        }
    }
}

/// A CNI plugin's error object (SPEC.md "Error"), tagged with who returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginError {
    /// The plugin's `type` (its binary name), e.g. `bridge`.
    pub plugin: String,
    /// The network the plugin was called for.
    pub network: String,
    /// The command that failed.
    pub command: Command,
    /// The CNI error code: 1-99 are defined by the spec, 100+ by the plugin.
    pub code: u32,
    /// The plugin's message (`msg`).
    pub msg: String,
    /// The plugin's optional `details`.
    pub details: Option<String>,
}

impl PluginError {
    /// Code 3 ("container unknown or does not exist") or a "not found"
    /// message: for DEL these mean the work is already done.
    pub fn is_not_found(&self) -> bool {
        let msg = self.msg.to_ascii_lowercase();
        self.code == 3 || msg.contains("not found") || msg.contains("does not exist")
    }

    /// Code 11 ("try again later"): the caller may retry.
    pub fn is_try_again_later(&self) -> bool {
        self.code == 11
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin {} ({} on network {}) failed with code {}: {}",
            self.plugin, self.command, self.network, self.code, self.msg
        )?;
        if let Some(details) = self.details.as_deref().filter(|d| !d.is_empty()) {
            write!(f, " ({details})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file or directory could not be read.
    #[error("reading {path}: {source}")]
    ConfigRead {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A config is not valid JSON.
    #[error("{origin}: not valid JSON: {source}")]
    ConfigSyntax {
        /// Where the config came from.
        origin: ConfigOrigin,
        /// The parse error (with line and column).
        source: serde_json::Error,
    },
    /// A config is JSON but a field is missing or wrong.
    #[error("{origin}: field `{field}`: {reason}")]
    ConfigInvalid {
        /// Where the config came from.
        origin: ConfigOrigin,
        /// The JSON path of the field, e.g. `plugins[1].type`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A config directory holds no `.conflist`/`.conf`/`.json` file.
    #[error("no network config (*.conflist, *.conf, *.json) in {}", dir.display())]
    NoConfig {
        /// The directory searched.
        dir: PathBuf,
    },
    /// A pod attachment parameter (container ID, interface name, ...) is invalid.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidAttachment {
        /// Which parameter (`containerID`, `ifname`, `netns`, `CNI_ARGS`).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin binary is in none of the CNI_PATH directories.
    #[error(
        "plugin {plugin} not found in CNI_PATH {} (is containernetworking-plugins installed? run scripts/setup.sh as root)",
        join_paths(search_path)
    )]
    PluginNotFound {
        /// The plugin's `type`.
        plugin: String,
        /// The directories searched, in order.
        search_path: Vec<PathBuf>,
    },
    /// The plugin binary could not be started or talked to.
    #[error("running plugin {plugin} ({}): {source}", path.display())]
    Spawn {
        /// The plugin's `type`.
        plugin: String,
        /// The binary.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The plugin did not finish in time and was killed.
    #[error("plugin {plugin} ({command}) did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The plugin's `type`.
        plugin: String,
        /// The command it was running.
        command: Command,
        /// The limit.
        timeout: Duration,
    },
    /// The plugin returned a CNI error object.
    #[error("{0}")]
    Plugin(Box<PluginError>),
    /// The plugin failed without a readable error object.
    #[error("plugin {plugin} ({command}) exited with {status} and no CNI error object: {stderr}")]
    PluginCrashed {
        /// The plugin's `type`.
        plugin: String,
        /// The command it was running.
        command: Command,
        /// The exit status, as text.
        status: String,
        /// The last part of its stderr (or stdout).
        stderr: String,
    },
    /// The plugin succeeded but its output is not a result we can read.
    #[error("plugin {plugin} ({command}) returned an unreadable result: {reason}")]
    InvalidResult {
        /// The plugin's `type`.
        plugin: String,
        /// The command it was running.
        command: Command,
        /// What is wrong with the output.
        reason: String,
    },
    /// No CNI version is spoken by this library, the config and every plugin.
    #[error("network {network}: plugin {plugin} supports CNI versions [{}], none of which is usable with config version {config_version} (this library speaks up to 1.0.0 for ADD/DEL/CHECK)", supported.join(", "))]
    NoCommonVersion {
        /// The network name.
        network: String,
        /// The plugin without a usable version.
        plugin: String,
        /// The versions the plugin advertised.
        supported: Vec<String>,
        /// The config list's `cniVersion`.
        config_version: String,
    },
    /// The operation needs a newer CNI version than the network negotiated.
    #[error(
        "network {network}: {command} needs CNI version {needs} or later but the network uses {version}"
    )]
    Unsupported {
        /// The network name.
        network: String,
        /// The command asked for.
        command: Command,
        /// The negotiated version.
        version: String,
        /// The minimum version the command needs.
        needs: String,
    },
    /// CHECK was asked for an attachment with no cached ADD result.
    #[error(
        "network {network}: no cached ADD result for container {container_id} interface {ifname} (was it added?)"
    )]
    NotAttached {
        /// The network name.
        network: String,
        /// The container ID.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// The result cache could not be read or written.
    #[error("CNI result cache {}: {source}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A cached result file is not readable JSON.
    #[error("CNI result cache {}: corrupt entry: {source}", path.display())]
    CacheCorrupt {
        /// The cache file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The blocking task running a CNI operation panicked or was cancelled.
    #[error("CNI task failed: {0}")]
    Task(String),
}

impl Error {
    /// The plugin error object, if this error carries one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            Error::Plugin(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        origin: &ConfigOrigin,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::ConfigInvalid {
            origin: origin.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let parts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    parts.join(":")
}
