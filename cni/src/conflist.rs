//! Network configuration lists (SPEC.md section 1): parsing, validation with
//! errors that name the file and field, and loading from a config directory.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ConfigOrigin, Error, Result};
use crate::version::CniVersion;

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name (unique per node).
    pub name: String,
    /// The `cniVersion` the config is written for.
    pub cni_version: CniVersion,
    /// Skip CHECK for this network.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConfig>,
    /// Where the config came from.
    pub origin: ConfigOrigin,
}

/// One plugin of a list: its `type` plus its whole JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin's binary name, e.g. `bridge`.
    pub plugin_type: String,
    /// The plugin's config object as written (without `name`/`cniVersion`,
    /// which are added from the list when the plugin is called).
    pub raw: Map<String, Value>,
}

impl PluginConfig {
    /// Whether the plugin declares the runtime capability `name` (e.g. `portMappings`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.raw
            .get("capabilities")
            .and_then(|c| c.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

impl NetworkConfigList {
    /// Parses and validates a `.conflist` (or a single-plugin `.conf`, which
    /// is wrapped into a one-element list as libcni does).
    pub fn from_bytes(bytes: &[u8], origin: ConfigOrigin) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(|source| Error::ConfigSyntax {
            origin: origin.clone(),
            source,
        })?;
        Self::from_value(value, origin)
    }

    /// Validates a config already parsed into JSON.
    pub fn from_value(value: Value, origin: ConfigOrigin) -> Result<Self> {
        let Value::Object(mut top) = value else {
            return Err(Error::invalid(
                &origin,
                "(top level)",
                "must be a JSON object",
            ));
        };
        let name = required_str(&top, "name", &origin)?;
        validate_network_name(&name).map_err(|r| Error::invalid(&origin, "name", r))?;
        let version_text = required_str(&top, "cniVersion", &origin)?;
        let cni_version: CniVersion = version_text
            .parse()
            .map_err(|r: String| Error::invalid(&origin, "cniVersion", r))?;
        let disable_check = match top.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(_) => {
                return Err(Error::invalid(
                    &origin,
                    "disableCheck",
                    "must be true or false",
                ));
            }
        };
        let plugin_values = match top.remove("plugins") {
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(Error::invalid(
                    &origin,
                    "plugins",
                    "must be an array of plugin objects",
                ));
            }
            // A single-plugin `.conf`: the top level is the plugin.
            None if top.contains_key("type") => {
                let mut single = top.clone();
                single.remove("name");
                single.remove("cniVersion");
                vec![Value::Object(single)]
            }
            None => {
                return Err(Error::invalid(
                    &origin,
                    "plugins",
                    "missing (a config list needs at least one plugin)",
                ));
            }
        };
        if plugin_values.is_empty() {
            return Err(Error::invalid(
                &origin,
                "plugins",
                "is empty (a config list needs at least one plugin)",
            ));
        }
        let plugins = plugin_values
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_plugin(i, v, &origin))
            .collect::<Result<Vec<_>>>()?;
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            plugins,
            origin,
        })
    }

    /// Reads and validates one config file.
    pub fn load_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, ConfigOrigin::File(path.to_path_buf()))
    }

    /// Loads the first config in `dir` in lexical order (`*.conflist`,
    /// `*.conf`, `*.json`), as kubelet and containerd choose the default network.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let files = config_files(dir)?;
        match files.first() {
            Some(first) => Self::load_file(first),
            None => Err(Error::NoConfig {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// The JSON object sent to plugin `index` on stdin, before `prevResult`
    /// and `runtimeConfig` are added: the plugin's object plus the list's
    /// `name` and the negotiated `cniVersion`.
    pub(crate) fn plugin_stdin(&self, index: usize, version: CniVersion) -> Map<String, Value> {
        let mut conf = self.plugins[index].raw.clone();
        conf.insert("cniVersion".into(), Value::String(version.to_string()));
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf
    }
}

/// The config files of a directory, sorted by name.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |source| Error::ConfigRead {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "conflist" | "conf" | "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_plugin(index: usize, value: Value, origin: &ConfigOrigin) -> Result<PluginConfig> {
    let field = |f: &str| format!("plugins[{index}].{f}");
    let Value::Object(raw) = value else {
        return Err(Error::invalid(
            origin,
            format!("plugins[{index}]"),
            "must be a JSON object",
        ));
    };
    let plugin_type = match raw.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(Error::invalid(origin, field("type"), "must be a string")),
        None => {
            return Err(Error::invalid(
                origin,
                field("type"),
                "missing (the plugin's binary name, e.g. \"bridge\")",
            ));
        }
    };
    if plugin_type.is_empty()
        || plugin_type.contains('/')
        || plugin_type == "."
        || plugin_type == ".."
    {
        return Err(Error::invalid(
            origin,
            field("type"),
            format!("{plugin_type:?} is not a plugin binary name"),
        ));
    }
    if let Some(caps) = raw.get("capabilities") {
        let ok = caps
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_boolean));
        if !ok {
            return Err(Error::invalid(
                origin,
                field("capabilities"),
                "must be an object of name: true|false",
            ));
        }
    }
    Ok(PluginConfig { plugin_type, raw })
}

fn required_str(top: &Map<String, Value>, key: &str, origin: &ConfigOrigin) -> Result<String> {
    match top.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(origin, key, "must be a string")),
        None => Err(Error::invalid(origin, key, "missing")),
    }
}

/// Network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (SPEC.md section 1).
pub(crate) fn validate_network_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => Err("is empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            Err(format!("{name:?} must start with a letter or digit"))
        }
        _ if chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) => Ok(()),
        _ => Err(format!(
            "{name:?} may only contain letters, digits, '_', '.' and '-'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetworkConfigList> {
        NetworkConfigList::from_bytes(
            text.as_bytes(),
            ConfigOrigin::File("/etc/cni/net.d/10-test.conflist".into()),
        )
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_conflist() {
        let list = parse(
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","bridge":"cox0"},
                {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(list.cni_version, CniVersion::V1_0_0);
        assert_eq!(list.plugins.len(), 2);
        assert!(list.plugins[1].has_capability("portMappings"));
        assert!(!list.plugins[0].has_capability("portMappings"));
        let stdin = list.plugin_stdin(0, CniVersion::V0_4_0);
        assert_eq!(stdin["cniVersion"], "0.4.0");
        assert_eq!(stdin["name"], "pods");
        assert_eq!(stdin["bridge"], "cox0");
    }

    #[test]
    fn wraps_a_single_plugin_conf() {
        let list = parse(r#"{"cniVersion":"0.4.0","name":"lo","type":"loopback"}"#).unwrap();
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "loopback");
        assert!(!list.plugins[0].raw.contains_key("name"));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let m = message(
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"bridge":"x"}]}"#,
        );
        assert!(m.contains("/etc/cni/net.d/10-test.conflist"), "{m}");
        assert!(m.contains("plugins[1].type"), "{m}");
        assert!(message(r#"{"name":"pods","plugins":[]}"#).contains("`cniVersion`: missing"));
        assert!(
            message(r#"{"cniVersion":"1.0","name":"p","plugins":[{"type":"x"}]}"#)
                .contains("`cniVersion`")
        );
        assert!(
            message(r#"{"cniVersion":"1.0.0","name":"-bad","plugins":[{"type":"x"}]}"#)
                .contains("`name`")
        );
        assert!(
            message(r#"{"cniVersion":"1.0.0","name":"p","plugins":[]}"#)
                .contains("`plugins`: is empty")
        );
        assert!(message(r#"{"cniVersion":"1.0.0","name":"p"}"#).contains("`plugins`: missing"));
        assert!(
            message(r#"{"cniVersion":"1.0.0","name":"p","plugins":[{"type":"../sh"}]}"#)
                .contains("plugins[0].type")
        );
        let caps =
            r#"{"cniVersion":"1.0.0","name":"p","plugins":[{"type":"x","capabilities":{"a":1}}]}"#;
        assert!(message(caps).contains("plugins[0].capabilities"));
        assert!(message("[1]").contains("(top level)"));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let m = message("{\n  \"cniVersion\": \"1.0.0\",\n  oops\n}");
        assert!(m.contains("not valid JSON") && m.contains("line 3"), "{m}");
    }

    #[test]
    fn load_dir_picks_the_first_file_and_reports_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            NetworkConfigList::load_dir(dir.path()),
            Err(Error::NoConfig { .. })
        ));
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"1.0.0","name":"a","type":"x"}"#,
        )
        .unwrap();
        assert_eq!(NetworkConfigList::load_dir(dir.path()).unwrap().name, "a");
        let missing = NetworkConfigList::load_dir(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope"), "{missing}");
    }
}
