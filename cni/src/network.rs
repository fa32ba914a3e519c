//! The chain operations on a network config list: ADD through every plugin
//! threading `prevResult`, DEL in reverse from the cached result, CHECK, and
//! the VERSION negotiation that picks the version they are driven with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::attachment::{Attachment, RuntimeConfig};
use crate::cache::{CACHE_KIND, CachedAttachment, DEFAULT_CACHE_DIR, ResultCache};
use crate::conflist::NetworkConfigList;
use crate::error::{Error, Result};
use crate::exec::{Command, DEFAULT_CNI_PATH, PluginExec, ProcessExec, parse_cni_path};
use crate::invoke::{self, Call};
use crate::result::CniResult;
use crate::version::{self, CniVersion, PluginVersions};

/// A CNI client: how plugins are run, where they are found, where results are cached.
pub struct Cni {
    exec: Arc<dyn PluginExec>,
    search_path: Vec<PathBuf>,
    cache: ResultCache,
    versions: Mutex<HashMap<PathBuf, PluginVersions>>,
}

/// The outcome of a successful ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct AddOutcome {
    /// The final result, typed.
    pub result: CniResult,
    /// The final result exactly as the last plugin printed it.
    pub raw: Value,
    /// The version the chain was driven with.
    pub version: CniVersion,
}

impl Cni {
    /// A client with an explicit runner, CNI_PATH and cache.
    pub fn new(exec: Arc<dyn PluginExec>, search_path: Vec<PathBuf>, cache: ResultCache) -> Self {
        Cni {
            exec,
            search_path,
            cache,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Real processes, CNI_PATH from the environment (else
    /// `/usr/lib/cni:/opt/cni/bin`) and the default cache directory.
    pub fn system() -> Self {
        let path = std::env::var("CNI_PATH").ok().filter(|p| !p.is_empty());
        let search_path = parse_cni_path(path.as_deref().unwrap_or(DEFAULT_CNI_PATH));
        Cni::new(
            Arc::new(ProcessExec::default()),
            search_path,
            ResultCache::new(DEFAULT_CACHE_DIR),
        )
    }

    /// The directories searched for plugins.
    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// Finds a plugin binary, or says which plugin and where it looked.
    pub fn find_plugin(&self, plugin: &str) -> Result<PathBuf> {
        self.exec
            .find_plugin(plugin, &self.search_path)
            .ok_or_else(|| Error::PluginNotFound {
                plugin: plugin.to_string(),
                search_path: self.search_path.clone(),
            })
    }

    /// A plugin's VERSION answer (asked once per binary, then remembered).
    pub fn plugin_versions(&self, plugin: &str, network: &str) -> Result<PluginVersions> {
        let path = self.find_plugin(plugin)?;
        if let Some(known) = self.versions.lock().expect("version cache lock").get(&path) {
            return Ok(known.clone());
        }
        let answer = invoke::query_versions(
            self.exec.as_ref(),
            plugin,
            network,
            &path,
            &self.search_path,
        )?;
        self.versions
            .lock()
            .expect("version cache lock")
            .insert(path, answer.clone());
        Ok(answer)
    }

    /// The version ADD/DEL/CHECK use for `net`: the highest spoken by this
    /// library and every plugin, capped at 1.0.0 and at the config's version.
    pub fn negotiate(&self, net: &NetworkConfigList) -> Result<CniVersion> {
        let mut answers = Vec::with_capacity(net.plugins.len());
        for plugin in &net.plugins {
            answers.push((
                plugin.plugin_type.clone(),
                self.plugin_versions(&plugin.plugin_type, &net.name)?,
            ));
        }
        version::negotiate(net.cni_version, &answers).map_err(|plugin| {
            let supported = answers
                .iter()
                .find(|(p, _)| *p == plugin)
                .map(|(_, v)| v.supported_versions.clone());
            Error::NoCommonVersion {
                network: net.name.clone(),
                plugin,
                supported: supported.unwrap_or_default(),
                config_version: net.cni_version.to_string(),
            }
        })
    }

    /// Attaches a pod: ADD through the chain in order, each plugin getting the
    /// previous one's result as `prevResult`; the final result is cached.
    /// On failure nothing is cached; the caller should DEL (which is safe).
    pub fn add(&self, net: &NetworkConfigList, attachment: &Attachment) -> Result<AddOutcome> {
        attachment.validate()?;
        let version = self.negotiate(net)?;
        let paths = self.resolve_all(net)?;
        let runtime_config = attachment.runtime_config.to_value();
        let env = invoke::protocol_env(Command::Add, Some(attachment), &self.search_path);
        let mut prev: Option<(Value, CniResult)> = None;
        for (index, plugin) in net.plugins.iter().enumerate() {
            let stdin = plugin_stdin(
                net,
                index,
                version,
                &runtime_config,
                prev.as_ref().map(|p| &p.0),
            );
            let call = Call {
                plugin: &plugin.plugin_type,
                network: &net.name,
                path: &paths[index],
                command: Command::Add,
                env: env.clone(),
                stdin,
            };
            let stdout = invoke::run(self.exec.as_ref(), call)?;
            prev = Some(invoke::parse_result(
                &plugin.plugin_type,
                Command::Add,
                &stdout,
            )?);
        }
        let (raw, result) = prev.expect("a validated list has at least one plugin");
        self.cache.store(&CachedAttachment {
            kind: CACHE_KIND.into(),
            network_name: net.name.clone(),
            container_id: attachment.container_id.clone(),
            ifname: attachment.ifname.clone(),
            netns: attachment.netns.display().to_string(),
            cni_version: version.to_string(),
            runtime_config,
            result: raw.clone(),
        })?;
        Ok(AddOutcome {
            result,
            raw,
            version,
        })
    }

    /// Detaches a pod: DEL through the chain in reverse, with the cached ADD
    /// result as `prevResult` (none if there is no cache entry). Plugins'
    /// "not found" answers count as success, so DEL may be repeated. The cache
    /// entry is removed only once every plugin succeeded.
    pub fn del(&self, net: &NetworkConfigList, attachment: &Attachment) -> Result<()> {
        attachment.validate()?;
        let cached = self
            .cache
            .load(&net.name, &attachment.container_id, &attachment.ifname)?;
        let version = match cached.as_ref().and_then(|c| c.cni_version.parse().ok()) {
            Some(v) => v,
            None => self.negotiate(net)?,
        };
        let paths = self.resolve_all(net)?;
        let runtime_config = match &cached {
            Some(c) if attachment.runtime_config.is_empty() => c.runtime_config.clone(),
            _ => attachment.runtime_config.to_value(),
        };
        let prev = cached.as_ref().map(|c| &c.result);
        let env = invoke::protocol_env(Command::Del, Some(attachment), &self.search_path);
        for (index, plugin) in net.plugins.iter().enumerate().rev() {
            let stdin = plugin_stdin(net, index, version, &runtime_config, prev);
            let call = Call {
                plugin: &plugin.plugin_type,
                network: &net.name,
                path: &paths[index],
                command: Command::Del,
                env: env.clone(),
                stdin,
            };
            match invoke::run(self.exec.as_ref(), call) {
                Ok(_) => {}
                Err(Error::Plugin(e)) if e.is_not_found() => {
                    tracing::debug!(plugin = %e.plugin, msg = %e.msg, "CNI DEL: already gone");
                }
                Err(e) => return Err(e),
            }
        }
        self.cache
            .remove(&net.name, &attachment.container_id, &attachment.ifname)
    }

    /// Verifies an attachment: CHECK through the chain in order with the
    /// cached result as `prevResult`. A no-op when the list sets `disableCheck`.
    pub fn check(&self, net: &NetworkConfigList, attachment: &Attachment) -> Result<()> {
        attachment.validate()?;
        if net.disable_check {
            return Ok(());
        }
        let cached = self
            .cache
            .load(&net.name, &attachment.container_id, &attachment.ifname)?
            .ok_or_else(|| Error::NotAttached {
                network: net.name.clone(),
                container_id: attachment.container_id.clone(),
                ifname: attachment.ifname.clone(),
            })?;
        let version = cached.cni_version.parse().unwrap_or(CniVersion::V1_0_0);
        if version < CniVersion::V0_4_0 {
            return Err(Error::Unsupported {
                network: net.name.clone(),
                command: Command::Check,
                version: version.to_string(),
                needs: CniVersion::V0_4_0.to_string(),
            });
        }
        let paths = self.resolve_all(net)?;
        let env = invoke::protocol_env(Command::Check, Some(attachment), &self.search_path);
        for (index, plugin) in net.plugins.iter().enumerate() {
            let stdin = plugin_stdin(
                net,
                index,
                version,
                &cached.runtime_config,
                Some(&cached.result),
            );
            let call = Call {
                plugin: &plugin.plugin_type,
                network: &net.name,
                path: &paths[index],
                command: Command::Check,
                env: env.clone(),
                stdin,
            };
            invoke::run(self.exec.as_ref(), call)?;
        }
        Ok(())
    }

    /// The cached ADD result of an attachment, if any.
    pub fn cached_result(
        &self,
        net: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>> {
        self.cache.load(net, container_id, ifname)
    }

    /// Resolves every plugin of the list before running any, so a missing
    /// binary fails the operation before it half-happens.
    pub(crate) fn resolve_all(&self, net: &NetworkConfigList) -> Result<Vec<PathBuf>> {
        net.plugins
            .iter()
            .map(|p| self.find_plugin(&p.plugin_type))
            .collect()
    }

    pub(crate) fn exec(&self) -> &dyn PluginExec {
        self.exec.as_ref()
    }
}

/// The stdin document for plugin `index`.
pub(crate) fn plugin_stdin(
    net: &NetworkConfigList,
    index: usize,
    version: CniVersion,
    runtime_config: &Value,
    prev_result: Option<&Value>,
) -> Map<String, Value> {
    let mut conf = net.plugin_stdin(index, version);
    if let Some(rc) = RuntimeConfig::for_plugin(runtime_config, &net.plugins[index]) {
        conf.insert("runtimeConfig".into(), rc);
    }
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    conf
}
