//! The pod annotation that carries the GPUs the scheduler picked; its format lives in
//! [`coxswain_api::gpu_devices`], shared with the node agent and `cox top`.

use coxswain_api::gpu_devices::{GpuShare, format_gpu_devices, parse_gpu_devices};

use super::super::model::DeviceAlloc;
use super::BindError;

pub use coxswain_api::gpu_devices::GPU_DEVICES_ANNOTATION;

/// The annotation value for `devices`.
pub fn format_devices(devices: &[DeviceAlloc]) -> String {
    let shares: Vec<GpuShare> = devices
        .iter()
        .map(|d| GpuShare {
            id: d.id.clone(),
            milli: d.milli.min(1000),
        })
        .collect();
    format_gpu_devices(&shares)
}

/// Parses an annotation value written by [`format_devices`].
pub fn parse_devices(value: &str) -> Result<Vec<DeviceAlloc>, BindError> {
    let shares = parse_gpu_devices(value).map_err(|e| BindError::Annotation(e.0))?;
    Ok(shares
        .into_iter()
        .map(|s| DeviceAlloc {
            id: s.id,
            milli: s.milli,
        })
        .collect())
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
