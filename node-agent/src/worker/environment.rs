//! A container's environment as Kubernetes builds it: the image's `Env`, a default
//! `PATH` and `HOSTNAME`, the API server's address (`KUBERNETES_SERVICE_HOST`/`_PORT`,
//! when the agent talks TLS to it), then the container's `env` entries in order (plain values,
//! `fieldRef`s, and secret/configMap keys from the pod's data).

use std::collections::BTreeMap;

use coxswain_api::k8s::Container;

use super::PodWorker;
use super::container_start::StartFailure;
use crate::images::Image;

impl PodWorker {
    /// Image env, then the container's `env` (values, fieldRefs, secret and configMap keys).
    pub(super) fn environment(
        &self,
        c: &Container,
        image: &Image,
    ) -> Result<Vec<String>, StartFailure> {
        let mut env: Vec<(String, String)> = image
            .config
            .env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        env.push(("HOSTNAME".into(), self.hostname()));
        if let Some((host, port)) = &self.deps.config.kubernetes_service {
            for (name, value) in [
                ("KUBERNETES_SERVICE_HOST", host.clone()),
                ("KUBERNETES_SERVICE_PORT", port.to_string()),
                ("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string()),
                ("KUBERNETES_PORT", format!("tcp://{host}:{port}")),
            ] {
                env.retain(|(k, _)| k != name);
                env.push((name.into(), value));
            }
        }
        for var in c.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => self.env_value(c, &var.name, from)?,
                (None, None) => String::new(),
            };
            env.retain(|(k, _)| k != &var.name);
            env.push((var.name.clone(), value));
        }
        Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
    }

    fn env_value(
        &self,
        c: &Container,
        name: &str,
        from: &k8s_openapi::api::core::v1::EnvVarSource,
    ) -> Result<String, StartFailure> {
        let missing = |what: String| {
            StartFailure::Waiting(
                "CreateContainerConfigError",
                format!("container {:?}: env {name}: {what} not found", c.name),
            )
        };
        let meta = &self.pod.metadata;
        if let Some(f) = &from.field_ref {
            return Ok(match f.field_path.as_str() {
                "metadata.name" => meta.name.clone().unwrap_or_default(),
                "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
                "metadata.uid" => self.uid.clone(),
                "spec.nodeName" => self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            });
        }
        let keyed = |maps: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
                     obj: &str,
                     key: &str,
                     optional: Option<bool>| {
            match maps.get(obj).and_then(|m| m.get(key)) {
                Some(v) => Ok(String::from_utf8_lossy(v).into_owned()),
                None if optional == Some(true) => Ok(String::new()),
                None => Err(missing(format!("{obj}/{key}"))),
            }
        };
        if let Some(s) = &from.secret_key_ref {
            return keyed(&self.data.secrets, &s.name, &s.key, s.optional);
        }
        if let Some(m) = &from.config_map_key_ref {
            return keyed(&self.data.config_maps, &m.name, &m.key, m.optional);
        }
        Ok(String::new())
    }
}
