//! The pod annotation that carries the GPUs the scheduler picked.
//!
//! `coxswain.dev/gpu-devices` holds a JSON array of strings: a whole GPU is its device
//! ID (`"GPU-8f1c…"`), a share is `"<id>:<milli>"` (`"GPU-8f1c…:250"`). The node agent
//! asks the device plugin to `Allocate` exactly these IDs.

use super::super::model::DeviceAlloc;
use super::BindError;

/// The pod annotation naming the allocated GPUs.
pub const GPU_DEVICES_ANNOTATION: &str = "coxswain.dev/gpu-devices";

/// The annotation value for `devices`.
pub fn format_devices(devices: &[DeviceAlloc]) -> String {
    let items: Vec<String> = devices
        .iter()
        .map(|d| {
            if d.milli >= 1000 {
                d.id.clone()
            } else {
                format!("{}:{}", d.id, d.milli)
            }
        })
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_string())
}

/// Parses an annotation value written by [`format_devices`].
pub fn parse_devices(value: &str) -> Result<Vec<DeviceAlloc>, BindError> {
    let items: Vec<String> = serde_json::from_str(value)
        .map_err(|e| BindError::Annotation(format!("not a JSON array of strings: {e}")))?;
    items
        .into_iter()
        .map(|item| match item.rsplit_once(':') {
            Some((id, milli)) if !id.is_empty() => {
                let milli: u16 = milli
                    .parse()
                    .ok()
                    .filter(|m| (1..=1000).contains(m))
                    .ok_or_else(|| {
                        BindError::Annotation(format!("{item}: share must be 1..=1000 milli"))
                    })?;
                Ok(DeviceAlloc {
                    id: id.to_string(),
                    milli,
                })
            }
            _ if item.is_empty() => Err(BindError::Annotation("empty device ID".to_string())),
            _ => Ok(DeviceAlloc {
                id: item,
                milli: 1000,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_and_shared() {
        let devices = vec![
            DeviceAlloc {
                id: "GPU-a".into(),
                milli: 1000,
            },
            DeviceAlloc {
                id: "GPU-b".into(),
                milli: 250,
            },
        ];
        let text = format_devices(&devices);
        assert_eq!(text, r#"["GPU-a","GPU-b:250"]"#);
        assert_eq!(parse_devices(&text).unwrap(), devices);
        assert!(parse_devices(r#"["GPU-b:0"]"#).is_err());
        assert!(parse_devices(r#"[""]"#).is_err());
        assert!(parse_devices("{}").is_err());
    }
}
