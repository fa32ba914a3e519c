//! The pod annotation `coxswain.dev/gpu-devices` the scheduler writes when it binds a
//! pod: a JSON array of strings, a whole GPU as its device ID (`"GPU-8f1c…"`), a
//! share as `"<id>:<milli>"` (`"GPU-8f1c…:250"`).
//!
//! The format belongs to `control-plane/src/scheduler/binder/annotation.rs`; the
//! agent cannot depend on the control plane, so this is its own small parser of the
//! same format (tested against the scheduler's examples).

use super::Error;

/// The pod annotation naming the allocated GPUs.
pub const GPU_DEVICES_ANNOTATION: &str = "coxswain.dev/gpu-devices";

/// One entry of the annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedDevice {
    /// The device-plugin device ID.
    pub id: String,
    /// Thousandths of the device: 1000 for a whole device, less for a share.
    pub milli: u16,
}

impl AnnotatedDevice {
    /// Whether this entry is a share of a device rather than the whole of it.
    pub fn is_share(&self) -> bool {
        self.milli < 1000
    }
}

/// Parses the annotation's value.
pub fn parse(value: &str) -> Result<Vec<AnnotatedDevice>, Error> {
    let items: Vec<String> = serde_json::from_str(value)
        .map_err(|e| Error::Annotation(format!("not a JSON array of strings: {e}")))?;
    items
        .into_iter()
        .map(|item| match item.rsplit_once(':') {
            Some((id, milli)) if !id.is_empty() => {
                let milli: u16 = milli
                    .parse()
                    .ok()
                    .filter(|m| (1..=1000).contains(m))
                    .ok_or_else(|| {
                        Error::Annotation(format!("{item}: a share must be 1..=1000 milli"))
                    })?;
                Ok(AnnotatedDevice {
                    id: id.to_string(),
                    milli,
                })
            }
            _ if item.is_empty() => Err(Error::Annotation("empty device ID".to_string())),
            _ => Ok(AnnotatedDevice {
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
    fn parses_whole_devices_and_shares_as_the_scheduler_writes_them() {
        let parsed = parse(r#"["GPU-a","GPU-b:250"]"#).unwrap();
        assert_eq!(
            parsed,
            vec![
                AnnotatedDevice {
                    id: "GPU-a".into(),
                    milli: 1000
                },
                AnnotatedDevice {
                    id: "GPU-b".into(),
                    milli: 250
                },
            ]
        );
        assert!(parsed[1].is_share() && !parsed[0].is_share());
        for bad in [
            r#"["GPU-b:0"]"#,
            r#"["GPU-b:1001"]"#,
            r#"[""]"#,
            "{}",
            "GPU-a",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("annotation coxswain.dev/gpu-devices: "),
                "{err}"
            );
        }
    }
}
