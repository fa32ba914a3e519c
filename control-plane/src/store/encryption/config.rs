//! Reading Kubernetes' `EncryptionConfiguration` file (`apiserver.config.k8s.io/v1`).
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: EncryptionConfiguration
//! resources:
//!   - resources: [secrets]
//!     providers:
//!       - aesgcm:
//!           keys:
//!             - name: key1
//!               secret: <base64 of 32 random bytes>
//!       - identity: {}
//! ```
//!
//! The file is walked by hand rather than through serde structs so that every refusal names
//! the exact field (`resources[0].providers[0].aesgcm.keys[0].secret`), as `kube-apiserver`
//! does. Providers coxswain does not implement (`aescbc`, `secretbox`, `kms`) are refused by
//! name rather than ignored: silently storing plaintext would be worse than not starting.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value};

use super::provider::{AesGcmKey, KEY_BYTES, Provider, Transformer};

/// The `apiVersion` the file must have.
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
/// The `kind` the file must have.
pub const KIND: &str = "EncryptionConfiguration";

/// Why an encryption configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither YAML nor JSON.
    #[error("not valid YAML or JSON: {0}")]
    Syntax(String),
    /// A field has a value that is not allowed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, e.g. `resources[0].providers[0].aesgcm.keys[0].secret`.
        field: String,
        /// What is wrong with it and what is expected.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> EncryptionConfigError {
    EncryptionConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Which stored resources one rule covers, in Kubernetes' spelling: `secrets` (core group),
/// `deployments.apps`, `*.` (every core resource), `*.apps` (every resource of a group), `*.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePattern {
    /// The resource, or `None` for `*`.
    resource: Option<String>,
    /// The group as store keys spell it (`core` for the core group), or `None` for `*`.
    group: Option<String>,
}

impl ResourcePattern {
    fn parse(text: &str, field: &str) -> Result<Self, EncryptionConfigError> {
        if text.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        if text.chars().any(|c| c.is_ascii_uppercase() || c == '/') {
            return Err(invalid(
                field,
                format!(
                    "{text:?} is not a resource: use the lowercase plural, e.g. secrets or \
                     deployments.apps"
                ),
            ));
        }
        if text == "*" {
            return Err(invalid(
                field,
                "\"*\" alone is not a resource: use \"*.\" for the core group or \"*.*\" for all",
            ));
        }
        let (resource, group) = match text.split_once('.') {
            None => (text, "core"),
            Some((resource, "")) => (resource, "core"),
            Some((resource, group)) => (resource, group),
        };
        let any = |part: &str| (part != "*").then(|| part.to_string());
        Ok(ResourcePattern {
            resource: any(resource),
            group: any(group),
        })
    }

    /// Whether the store key `/registry/<group>/<resource>/...` is covered.
    fn matches(&self, group: &str, resource: &str) -> bool {
        self.group.as_deref().is_none_or(|g| g == group)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

/// One entry of `resources`: the resources it covers and their providers, in order.
#[derive(Debug)]
pub struct ResourceRule {
    patterns: Vec<ResourcePattern>,
    transformer: Transformer,
}

/// A parsed encryption configuration: which keys are encrypted, and how.
#[derive(Debug)]
pub struct EncryptionConfig {
    rules: Vec<ResourceRule>,
}

impl EncryptionConfig {
    /// Reads and checks the file at `path` (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, EncryptionConfigError> {
        let text = std::fs::read(path).map_err(|source| EncryptionConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a configuration (YAML or JSON text).
    pub fn parse(text: &[u8]) -> Result<Self, EncryptionConfigError> {
        let value: Value = yaml_serde::from_slice(text)
            .map_err(|e| EncryptionConfigError::Syntax(e.to_string()))?;
        let top = value
            .as_object()
            .ok_or_else(|| invalid("(top level)", "must be an object"))?;
        expect_string(top, "apiVersion", "", API_VERSION)?;
        expect_string(top, "kind", "", KIND)?;
        let resources = top
            .get("resources")
            .ok_or_else(|| invalid("resources", "required"))?
            .as_array()
            .ok_or_else(|| invalid("resources", "must be a list"))?;
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for (i, entry) in resources.iter().enumerate() {
            rules.push(parse_rule(entry, &format!("resources[{i}]"), &mut seen)?);
        }
        Ok(EncryptionConfig { rules })
    }

    /// The providers for the store key `key`, if a rule covers it (the first rule that does).
    pub fn transformer_for(&self, key: &str) -> Option<&Transformer> {
        let rest = key.strip_prefix("/registry/")?;
        let mut segments = rest.split('/');
        let (group, resource) = (segments.next()?, segments.next()?);
        self.rules
            .iter()
            .find(|rule| rule.patterns.iter().any(|p| p.matches(group, resource)))
            .map(|rule| &rule.transformer)
    }

    /// The fewest store key prefixes that hold every key a rule covers.
    pub fn prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .rules
            .iter()
            .flat_map(|rule| &rule.patterns)
            .map(|p| match (&p.group, &p.resource) {
                (Some(group), Some(resource)) => format!("/registry/{group}/{resource}/"),
                (Some(group), None) => format!("/registry/{group}/"),
                (None, _) => "/registry/".to_string(),
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let all = prefixes.clone();
        prefixes.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q.as_str())));
        prefixes
    }

    /// Whether any rule writes with a provider other than `identity`.
    pub fn encrypts_anything(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| !matches!(rule.transformer.write_provider(), Provider::Identity))
    }
}

fn expect_string(
    object: &Map<String, Value>,
    name: &str,
    parent: &str,
    want: &str,
) -> Result<(), EncryptionConfigError> {
    let field = format!("{parent}{name}");
    match object.get(name).and_then(Value::as_str) {
        Some(got) if got == want => Ok(()),
        Some(got) => Err(invalid(field, format!("must be {want:?} (got {got:?})"))),
        None => Err(invalid(field, format!("required: {want:?}"))),
    }
}

fn parse_rule(
    entry: &Value,
    field: &str,
    seen: &mut HashSet<String>,
) -> Result<ResourceRule, EncryptionConfigError> {
    let entry = entry
        .as_object()
        .ok_or_else(|| invalid(field, "must be an object with resources and providers"))?;
    let names = list(entry, "resources", field)?;
    let mut patterns = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let name_field = format!("{field}.resources[{j}]");
        let text = name
            .as_str()
            .ok_or_else(|| invalid(&name_field, "must be a string"))?;
        if !seen.insert(text.to_string()) {
            return Err(invalid(
                name_field,
                format!("{text:?} is listed twice: each resource may appear in one place only"),
            ));
        }
        patterns.push(ResourcePattern::parse(text, &name_field)?);
    }
    let providers_field = format!("{field}.providers");
    let mut providers = Vec::new();
    let mut key_names = HashSet::new();
    for (j, provider) in list(entry, "providers", field)?.iter().enumerate() {
        let provider = parse_provider(provider, &format!("{providers_field}[{j}]"))?;
        if let Provider::AesGcm(keys) = &provider {
            for key in keys {
                if !key_names.insert(key.name().to_string()) {
                    return Err(invalid(
                        &providers_field,
                        format!(
                            "key name {:?} is used twice: stored values name their key, so \
                             names must be unique",
                            key.name()
                        ),
                    ));
                }
            }
        }
        providers.push(provider);
    }
    Ok(ResourceRule {
        patterns,
        transformer: Transformer::new(providers),
    })
}

/// A required, non-empty list field.
fn list<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    parent: &str,
) -> Result<&'a Vec<Value>, EncryptionConfigError> {
    let field = format!("{parent}.{name}");
    let items = object
        .get(name)
        .ok_or_else(|| invalid(&field, "required"))?
        .as_array()
        .ok_or_else(|| invalid(&field, "must be a list"))?;
    if items.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(items)
}

fn parse_provider(value: &Value, field: &str) -> Result<Provider, EncryptionConfigError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(field, "must be an object such as {aesgcm: {keys: [...]}}"))?;
    let mut entries = object.iter();
    let (Some((name, body)), None) = (entries.next(), entries.next()) else {
        return Err(invalid(
            field,
            "must name exactly one provider (aesgcm or identity)",
        ));
    };
    let field = format!("{field}.{name}");
    match name.as_str() {
        "identity" => match body {
            Value::Null => Ok(Provider::Identity),
            Value::Object(o) if o.is_empty() => Ok(Provider::Identity),
            _ => Err(invalid(field, "takes no settings: write identity: {}")),
        },
        "aesgcm" => {
            let body = body
                .as_object()
                .ok_or_else(|| invalid(&field, "must be an object with keys"))?;
            let keys = list(body, "keys", &field)?;
            let mut parsed = Vec::new();
            for (k, key) in keys.iter().enumerate() {
                parsed.push(parse_key(key, &format!("{field}.keys[{k}]"))?);
            }
            Ok(Provider::AesGcm(parsed))
        }
        "aescbc" | "secretbox" | "kms" => Err(invalid(
            field,
            format!("provider {name} is not supported by coxswain (use aesgcm or identity)"),
        )),
        other => Err(invalid(
            field,
            format!("unknown provider {other:?} (supported: aesgcm, identity)"),
        )),
    }
}

fn parse_key(value: &Value, field: &str) -> Result<AesGcmKey, EncryptionConfigError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(field, "must be an object with name and secret"))?;
    let name_field = format!("{field}.name");
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&name_field, "required: a string"))?;
    if name.is_empty() {
        return Err(invalid(name_field, "must not be empty"));
    }
    if let Some(bad) = name.chars().find(|c| *c == ':' || c.is_control()) {
        return Err(invalid(
            name_field,
            format!("{name:?} must not contain {bad:?}: the name is part of the stored prefix"),
        ));
    }
    let secret_field = format!("{field}.secret");
    let secret = object
        .get("secret")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&secret_field, "required: base64 of 32 random bytes"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .map_err(|e| {
            invalid(
                &secret_field,
                format!("must be {KEY_BYTES} bytes base64 (not valid base64: {e})"),
            )
        })?;
    let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        invalid(
            &secret_field,
            format!("must be {KEY_BYTES} bytes base64 (got {})", bytes.len()),
        )
    })?;
    Ok(AesGcmKey::new(name, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    fn config(providers: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
             resources:\n  - resources: [secrets]\n    providers:\n{providers}"
        )
    }

    fn refusal(text: &str) -> String {
        EncryptionConfig::parse(text.as_bytes())
            .expect_err("the config should be refused")
            .to_string()
    }

    #[test]
    fn a_kubernetes_config_parses_and_covers_secrets_only() {
        let text = config(&format!(
            "      - aesgcm:\n          keys:\n            - name: key1\n              secret: \
             {KEY32}\n      - identity: {{}}\n"
        ));
        let parsed = EncryptionConfig::parse(text.as_bytes()).unwrap();
        assert!(parsed.encrypts_anything());
        assert!(
            parsed
                .transformer_for("/registry/core/secrets/default/s")
                .is_some()
        );
        assert!(
            parsed
                .transformer_for("/registry/core/configmaps/default/c")
                .is_none()
        );
        assert!(
            parsed
                .transformer_for("/registry/apps/secrets/default/s")
                .is_none()
        );
        assert_eq!(parsed.prefixes(), vec!["/registry/core/secrets/"]);
    }

    #[test]
    fn wildcards_follow_kubernetes() {
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                    resources:\n  - resources: [deployments.apps, '*.', '*.coxswain.dev']\n    \
                    providers: [{identity: {}}]\n";
        let parsed = EncryptionConfig::parse(text.as_bytes()).unwrap();
        assert!(!parsed.encrypts_anything());
        for key in [
            "/registry/apps/deployments/ns/d",
            "/registry/core/pods/ns/p",
            "/registry/coxswain.dev/trainingjobs/ns/t",
        ] {
            assert!(parsed.transformer_for(key).is_some(), "{key}");
        }
        assert!(
            parsed
                .transformer_for("/registry/apps/daemonsets/ns/d")
                .is_none()
        );
        assert_eq!(
            parsed.prefixes(),
            vec![
                "/registry/apps/deployments/",
                "/registry/core/",
                "/registry/coxswain.dev/"
            ]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let short = config(
            "      - aesgcm:\n          keys:\n            - name: k\n              secret: \
             MDEyMzQ1Njc4OWFi\n",
        );
        assert_eq!(
            refusal(&short),
            "resources[0].providers[0].aesgcm.keys[0].secret: must be 32 bytes base64 (got 12)"
        );
        let not_base64 = config(
            "      - aesgcm:\n          keys:\n            - name: k\n              secret: \
             '!!!'\n",
        );
        assert!(
            refusal(&not_base64).starts_with(
                "resources[0].providers[0].aesgcm.keys[0].secret: must be 32 bytes base64 (not \
                 valid base64"
            ),
            "{}",
            refusal(&not_base64)
        );
        assert_eq!(
            refusal(&config("      - rot13: {}\n")),
            "resources[0].providers[0].rot13: unknown provider \"rot13\" (supported: aesgcm, \
             identity)"
        );
        assert!(refusal(&config("      - aescbc: {}\n")).contains("not supported by coxswain"));
        let colon = config(&format!(
            "      - aesgcm:\n          keys:\n            - name: 'a:b'\n              secret: \
             {KEY32}\n"
        ));
        assert!(refusal(&colon).starts_with("resources[0].providers[0].aesgcm.keys[0].name:"));
        let twice = config(&format!(
            "      - aesgcm:\n          keys:\n            - {{name: k, secret: {KEY32}}}\n{}",
            format_args!("            - {{name: k, secret: {KEY32}}}\n")
        ));
        assert!(refusal(&twice).contains("key name \"k\" is used twice"));
        assert_eq!(
            refusal("apiVersion: v1\nkind: EncryptionConfiguration\nresources: []\n"),
            "apiVersion: must be \"apiserver.config.k8s.io/v1\" (got \"v1\")"
        );
        assert_eq!(
            refusal(&config("")),
            "resources[0].providers: must be a list"
        );
        assert!(refusal("resources: [").starts_with("not valid YAML or JSON"));
        let listed_twice = "apiVersion: apiserver.config.k8s.io/v1\nkind: \
                            EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    \
                            providers: [{identity: {}}]\n  - resources: [secrets]\n    \
                            providers: [{identity: {}}]\n";
        assert!(
            refusal(listed_twice)
                .starts_with("resources[1].resources[0]: \"secrets\" is listed twice")
        );
    }
}
