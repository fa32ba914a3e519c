//! A minimal root filesystem made from the host's static busybox: `/bin/busybox`,
//! a symlink per applet, `/etc/passwd` and `/etc/group`, and the empty directories
//! the OCI runtime mounts over. Used by tests and demos.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds (or refreshes) a busybox rootfs at `dir` from the static binary `busybox`.
pub fn build_rootfs(busybox: &Path, dir: &Path) -> Result<PathBuf, ImageError> {
    let bin = dir.join("bin");
    for sub in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "usr/bin", "sbin",
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| ImageError::io(&d, e))?;
    }
    let target = bin.join("busybox");
    std::fs::copy(busybox, &target).map_err(|e| ImageError::io(busybox, e))?;
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| ImageError::io(busybox, e))?;
    if !out.status.success() {
        return Err(ImageError::Invalid {
            image: busybox.display().to_string(),
            message: "`busybox --list` failed (is it busybox-static?)".into(),
        });
    }
    for applet in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let link = bin.join(applet);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| ImageError::io(&link, e))?;
        }
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ];
    for (path, body) in files {
        let p = dir.join(path);
        std::fs::write(&p, body).map_err(|e| ImageError::io(&p, e))?;
    }
    Ok(dir.to_path_buf())
}
