//! File-backed volumes: secret, configMap, downwardAPI and projected (any mix of the
//! three, plus service-account tokens), written as Kubernetes lays them out: one file per key (or per `items`
//! entry, at its `path`), mode from `mode`/`defaultMode` (0644 by default).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use coxswain_api::k8s::{Pod, Volume};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath};

use super::tokens::{TokenRequest, TokenSource};
use super::{PodData, VolumeError, io};

const DEFAULT_MODE: i32 = 0o644;

fn write_file(
    dir: &Path,
    rel: &str,
    body: &[u8],
    mode: i32,
    volume: &str,
) -> Result<(), VolumeError> {
    if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
        return Err(VolumeError::Invalid {
            volume: volume.to_string(),
            message: format!("item path {rel:?} must be relative and must not contain '..'"),
        });
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mode = std::fs::Permissions::from_mode(mode as u32 & 0o7777);
    if let Ok(current) = std::fs::read(&path) {
        let same_mode =
            std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode.mode());
        if current == body && same_mode {
            return Ok(());
        }
    }
    // A new file renamed over the old one: a container reading it (a token being
    // refreshed) sees the old contents or the new, never a half-written file.
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let staged = path.with_file_name(format!(".{file_name}.tmp"));
    std::fs::write(&staged, body).map_err(io(&staged))?;
    std::fs::set_permissions(&staged, mode).map_err(io(&staged))?;
    std::fs::rename(&staged, &path).map_err(io(&path))
}

/// Writes the keys of one secret/configMap source.
#[allow(clippy::too_many_arguments)]
fn write_keys(
    dir: &Path,
    volume: &str,
    kind: &'static str,
    source: Option<&BTreeMap<String, Vec<u8>>>,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
) -> Result<(), VolumeError> {
    let Some(data) = source else {
        if optional {
            return Ok(());
        }
        return Err(VolumeError::MissingSource {
            volume: volume.to_string(),
            kind,
            name: name.to_string(),
        });
    };
    match items {
        Some(items) => {
            for item in items {
                let body = data
                    .get(&item.key)
                    .ok_or_else(|| VolumeError::MissingSource {
                        volume: volume.to_string(),
                        kind: "key",
                        name: format!("{name}/{}", item.key),
                    })?;
                write_file(
                    dir,
                    &item.path,
                    body,
                    item.mode.unwrap_or(default_mode),
                    volume,
                )?;
            }
        }
        None => {
            for (key, body) in data {
                write_file(dir, key, body, default_mode, volume)?;
            }
        }
    }
    Ok(())
}

fn map_text(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// The value of a downward API `fieldRef` for `pod`.
fn field_value(pod: &Pod, field: &str, volume: &str) -> Result<String, VolumeError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    Ok(match field {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(meta.labels.as_ref()),
        "metadata.annotations" => map_text(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        other => {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                message: format!("downwardAPI fieldRef {other:?} is not supported"),
            });
        }
    })
}

fn write_downward(
    dir: &Path,
    volume: &str,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<(), VolumeError> {
    for item in items {
        let Some(field) = &item.field_ref else {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                message: format!(
                    "downwardAPI item {:?}: only fieldRef is supported",
                    item.path
                ),
            });
        };
        let value = field_value(pod, &field.field_path, volume)?;
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            item.mode.unwrap_or(default_mode),
            volume,
        )?;
    }
    Ok(())
}

/// Writes the files of a secret, configMap, downwardAPI or projected volume into `dir`
/// (a projected service-account token from `tokens`). Files already as they should be
/// are left alone; others are replaced whole.
pub fn write_volume(
    v: &Volume,
    pod: &Pod,
    data: &PodData,
    tokens: Option<&dyn TokenSource>,
    dir: &Path,
) -> Result<(), VolumeError> {
    let name = v.name.as_str();
    if let Some(s) = &v.secret {
        let secret = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        let optional = s.optional.unwrap_or(false);
        write_keys(
            dir,
            name,
            "secret",
            data.secrets.get(&secret),
            &secret,
            s.items.as_ref(),
            optional,
            mode,
        )?;
    }
    if let Some(c) = &v.config_map {
        let cm = c.name.clone();
        let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
        let optional = c.optional.unwrap_or(false);
        write_keys(
            dir,
            name,
            "configMap",
            data.config_maps.get(&cm),
            &cm,
            c.items.as_ref(),
            optional,
            mode,
        )?;
    }
    if let Some(d) = &v.downward_api {
        write_downward(
            dir,
            name,
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
        )?;
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                write_keys(
                    dir,
                    name,
                    "secret",
                    data.secrets.get(&s.name),
                    &s.name,
                    s.items.as_ref(),
                    optional,
                    mode,
                )?;
            }
            if let Some(c) = &source.config_map {
                let optional = c.optional.unwrap_or(false);
                write_keys(
                    dir,
                    name,
                    "configMap",
                    data.config_maps.get(&c.name),
                    &c.name,
                    c.items.as_ref(),
                    optional,
                    mode,
                )?;
            }
            if let Some(d) = &source.downward_api {
                write_downward(dir, name, pod, d.items.as_deref().unwrap_or_default(), mode)?;
            }
            if let Some(t) = &source.service_account_token {
                let request = TokenRequest {
                    audience: t.audience.clone().unwrap_or_default(),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                };
                let token = tokens
                    .ok_or("this agent has no service-account token source".to_string())
                    .and_then(|source| source.token(pod, &request))
                    .map_err(|message| VolumeError::Invalid {
                        volume: name.to_string(),
                        message: format!("serviceAccountToken: {message}"),
                    })?;
                write_file(dir, &t.path, token.as_bytes(), mode, name)?;
            }
        }
    }
    Ok(())
}

/// Whether `v` projects a service-account token (its files are rewritten as the token is
/// refreshed).
pub fn has_token(v: &Volume) -> bool {
    v.projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .any(|s| s.service_account_token.is_some())
}
