//! The pod annotation `coxswain.dev/gpu-devices` that carries the GPUs the scheduler picked:
//! a JSON array of strings, a whole GPU as its device ID (`"GPU-8f1c…"`), a share as
//! `"<id>:<milli>"` (`"GPU-8f1c…:250"`). The scheduler writes it when it binds a pod, the
//! node agent asks the device plugin to `Allocate` exactly these IDs, and `cox top gpus`
//! reads it to draw who holds which GPU.

use std::fmt;

/// The pod annotation naming the allocated GPUs.
pub const GPU_DEVICES_ANNOTATION: &str = "coxswain.dev/gpu-devices";

/// One entry of the annotation: a device and how much of it the pod holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuShare {
    /// The device-plugin device ID.
    pub id: String,
    /// Thousandths of the device: 1000 for a whole device, less for a share.
    pub milli: u16,
}

impl GpuShare {
    /// The whole of device `id`.
    pub fn whole(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            milli: 1000,
        }
    }

    /// Whether this entry is a share of a device rather than the whole of it.
    pub fn is_share(&self) -> bool {
        self.milli < 1000
    }
}

/// Why an annotation value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError(pub String);

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "annotation {GPU_DEVICES_ANNOTATION}: {}", self.0)
    }
}

impl std::error::Error for AnnotationError {}

/// The annotation value for `shares`.
pub fn format_gpu_devices(shares: &[GpuShare]) -> String {
    let items: Vec<String> = shares
        .iter()
        .map(|share| {
            if share.is_share() {
                format!("{}:{}", share.id, share.milli)
            } else {
                share.id.clone()
            }
        })
        .collect();
    serde_json::Value::from(items).to_string()
}

/// Parses an annotation value written by [`format_gpu_devices`].
pub fn parse_gpu_devices(value: &str) -> Result<Vec<GpuShare>, AnnotationError> {
    let items: Vec<String> = serde_json::from_str(value)
        .map_err(|e| AnnotationError(format!("not a JSON array of strings: {e}")))?;
    items
        .into_iter()
        .map(|item| match item.rsplit_once(':') {
            Some((id, milli)) if !id.is_empty() => {
                let milli: u16 = milli
                    .parse()
                    .ok()
                    .filter(|m| (1..=1000).contains(m))
                    .ok_or_else(|| {
                        AnnotationError(format!("{item}: share must be 1..=1000 milli"))
                    })?;
                Ok(GpuShare {
                    id: id.to_string(),
                    milli,
                })
            }
            _ if item.is_empty() => Err(AnnotationError("empty device ID".to_string())),
            _ => Ok(GpuShare::whole(item)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_devices_and_shares_round_trip() {
        let shares = vec![
            GpuShare::whole("GPU-a"),
            GpuShare {
                id: "GPU-b".to_string(),
                milli: 250,
            },
        ];
        let text = format_gpu_devices(&shares);
        assert_eq!(text, r#"["GPU-a","GPU-b:250"]"#);
        assert_eq!(parse_gpu_devices(&text).unwrap(), shares);
        assert_eq!(
            parse_gpu_devices(r#"["GPU-c:1000"]"#).unwrap(),
            vec![GpuShare::whole("GPU-c")]
        );
    }

    #[test]
    fn bad_values_name_the_problem() {
        for (value, expected) in [
            ("GPU-a", "not a JSON array"),
            (r#"["GPU-a:0"]"#, "1..=1000"),
            (r#"["GPU-a:1001"]"#, "1..=1000"),
            (r#"["GPU-a:x"]"#, "1..=1000"),
            (r#"[""]"#, "empty device ID"),
        ] {
            let error = parse_gpu_devices(value).unwrap_err().to_string();
            assert!(error.contains(expected), "{value}: {error}");
            assert!(error.contains(GPU_DEVICES_ANNOTATION), "{error}");
        }
    }
}
