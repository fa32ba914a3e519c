//! The pod annotation `coxswain.dev/gpu-devices` the scheduler writes when it binds a pod; its
//! format lives in [`coxswain_api::gpu_devices`], shared with the scheduler and `cox top`.

use super::Error;

pub use coxswain_api::gpu_devices::{GPU_DEVICES_ANNOTATION, GpuShare as AnnotatedDevice};

/// Parses the annotation's value.
pub fn parse(value: &str) -> Result<Vec<AnnotatedDevice>, Error> {
    coxswain_api::gpu_devices::parse_gpu_devices(value).map_err(|e| Error::Annotation(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_agents_annotation_prefix() {
        let parsed = parse(r#"["GPU-a","GPU-b:250"]"#).unwrap();
        assert!(parsed[1].is_share() && !parsed[0].is_share());
        let err = parse(r#"["GPU-b:0"]"#).unwrap_err().to_string();
        assert!(
            err.starts_with("annotation coxswain.dev/gpu-devices: GPU-b:0"),
            "{err}"
        );
    }
}
