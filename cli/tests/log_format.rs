//! `--log-format json` makes the daemons log one JSON object per line (level, target,
//! fields), for log collectors; `--log-level` filters.

mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The first stderr line of `child` that is a JSON object, within a hang guard.
fn first_json_line(child: &mut Child) -> Value {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with('{') => {
                return serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
            }
            Ok(line) => seen.push(line),
            Err(e) => panic!("no JSON log line ({e}); stderr so far: {seen:#?}"),
        }
    }
}

fn assert_structured(line: &Value, what: &str) {
    assert!(line["timestamp"].is_string(), "{what}: {line}");
    assert!(line["level"].is_string(), "{what}: {line}");
    assert!(line["target"].is_string(), "{what}: {line}");
    assert!(line["fields"]["message"].is_string(), "{what}: {line}");
}

#[test]
fn the_server_and_the_plugin_log_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["server", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cox server starts");
    let line = first_json_line(&mut server);
    server.kill().ok();
    server.wait().ok();
    assert_structured(&line, "cox server");

    let mut plugin = Command::new(cluster::plugin_beside_cox())
        .args([
            "--simulate",
            "pcie-4x",
            "--log-format",
            "json",
            "--log-level",
            "warn",
        ])
        .arg("--plugin-dir")
        .arg(dir.path().join("plugins"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cox-nvidia-plugin starts");
    let line = first_json_line(&mut plugin);
    plugin.kill().ok();
    plugin.wait().ok();
    assert_structured(&line, "cox-nvidia-plugin");
    // --log-level warn: the first line is the simulated-GPU warning, not an info line.
    assert_eq!(line["level"], "WARN", "{line}");
}

#[test]
fn a_bad_log_format_is_refused_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args([
            "server",
            "--data-dir",
            "/nonexistent",
            "--log-format",
            "xml",
        ])
        .output()
        .expect("cox runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-format"), "{stderr}");
}
