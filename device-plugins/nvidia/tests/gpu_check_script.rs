//! `scripts/gpu-check` where there is no NVIDIA driver (forced with
//! `COX_GPU_CHECK_NO_DRIVER=1`, so the test means the same on a GPU machine): one
//! line saying so on stderr, nothing built, exit code 2.

use std::path::Path;
use std::process::Command;

#[test]
fn without_a_driver_the_gpu_check_says_so_in_one_line_and_exits_2() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gpu-check");
    let out = Command::new("bash")
        .arg(&script)
        .env("COX_GPU_CHECK_NO_DRIVER", "1")
        .output()
        .expect("running scripts/gpu-check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("gpu-check: no NVIDIA driver on this machine"),
        "{stderr}"
    );
}
