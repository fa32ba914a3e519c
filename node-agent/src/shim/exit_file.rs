//! The `<bundle>/exit` file the shim writes when the container's init ends.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runtime::ExitStatus;

/// Writes the exit status atomically (temp file + rename).
pub fn write_exit(
    bundle: &Path,
    code: i32,
    signal: Option<i32>,
    at: SystemTime,
) -> std::io::Result<()> {
    let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let body = serde_json::json!({ "code": code, "signal": signal, "finished_at_ns": nanos });
    let tmp = bundle.join("exit.tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, bundle.join("exit"))
}

/// Reads the exit status if the shim wrote one.
pub fn read_exit(bundle: &Path) -> Option<ExitStatus> {
    let text = std::fs::read_to_string(bundle.join("exit")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(ExitStatus {
        code: v["code"].as_i64()? as i32,
        signal: v["signal"].as_i64().map(|s| s as i32),
        finished_at: UNIX_EPOCH + Duration::from_nanos(v["finished_at_ns"].as_u64().unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()), None);
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        write_exit(dir.path(), 137, Some(9), at).unwrap();
        let exit = read_exit(dir.path()).unwrap();
        assert_eq!(
            (exit.code, exit.signal, exit.finished_at),
            (137, Some(9), at)
        );
    }
}
