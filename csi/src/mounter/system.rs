//! The real [`Mounter`]: mount syscalls through `nix`, loop devices through
//! util-linux `losetup`, filesystems through e2fsprogs `mkfs.ext4` and
//! `resize2fs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::{Mounter, Usage, mountinfo};
use crate::Error;

/// Tools the driver execs, with the Debian package that ships each.
const TOOLS: &[(&str, &str)] = &[
    ("losetup", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("resize2fs", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
];

/// The [`Mounter`] that changes the host: needs root (CAP_SYS_ADMIN).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMounter;

/// Runs `tool args`, returning its standard output, or an error with its
/// standard error.
fn run(tool: &str, args: &[&str]) -> Result<String, Error> {
    let fail = |message: String| Error::Tool {
        tool: tool.to_string(),
        args: args.join(" "),
        message,
    };
    let out = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| fail(format!("{e} (is it installed? see scripts/setup.sh)")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(format!("{}: {stderr}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| Error::InvalidArgument(format!("path {} is not UTF-8", path.display())))
}

/// Capability number of CAP_SYS_RESOURCE (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has capability `cap` in its effective set.
fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << cap) != 0)
}

fn find_in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

impl Mounter for SystemMounter {
    fn check(&self) -> Result<(), Error> {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(tool, _)| !find_in_path(tool))
            .map(|(tool, pkg)| format!("{tool} (Debian package {pkg})"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::FailedPrecondition(format!(
            "missing tools: {}; run scripts/setup.sh as root",
            missing.join(", ")
        )))
    }

    fn mkfs(&self, image: &Path, fs_type: &str) -> Result<(), Error> {
        if fs_type != "ext4" {
            return Err(Error::InvalidArgument(format!(
                "fsType {fs_type:?} is not supported: only ext4"
            )));
        }
        // No reserved blocks: the whole capacity belongs to the volume's user.
        run("mkfs.ext4", &["-q", "-F", "-m", "0", path_str(image)?]).map(drop)
    }

    fn loop_attach(&self, image: &Path) -> Result<PathBuf, Error> {
        // Direct I/O: the image's pages are cached once, by the filesystem
        // inside it, not a second time as pages of the image file.
        let args = ["--find", "--show", "--direct-io=on", path_str(image)?];
        let out = run("losetup", &args)?;
        Ok(PathBuf::from(out.trim()))
    }

    fn loop_devices(&self, image: &Path) -> Result<Vec<PathBuf>, Error> {
        let out = run("losetup", &["-j", path_str(image)?, "-n", "-O", "NAME"])?;
        Ok(out.lines().map(|l| PathBuf::from(l.trim())).collect())
    }

    fn loop_detach(&self, device: &Path) -> Result<(), Error> {
        run("losetup", &["-d", path_str(device)?]).map(drop)
    }

    fn loop_refresh(&self, device: &Path) -> Result<(), Error> {
        run("losetup", &["-c", path_str(device)?]).map(drop)
    }

    fn resize_fs(&self, device: &Path) -> Result<(), Error> {
        run("resize2fs", &[path_str(device)?]).map(drop)
    }

    fn can_resize_online(&self) -> bool {
        has_capability(CAP_SYS_RESOURCE)
    }

    fn grow_offline(&self, image: &Path) -> Result<(), Error> {
        let image = path_str(image)?;
        // resize2fs wants a freshly checked filesystem; exit 1 means "fixed".
        match run("e2fsck", &["-f", "-y", image]) {
            Ok(_) => {}
            Err(Error::Tool { message, .. }) if message.starts_with("exit status: 1:") => {}
            Err(e) => return Err(e),
        }
        run("resize2fs", &[image]).map(drop)
    }

    fn mount(&self, device: &Path, target: &Path, fs_type: &str) -> Result<(), Error> {
        nix::mount::mount(
            Some(device),
            target,
            Some(fs_type),
            MsFlags::MS_NOATIME,
            None::<&str>,
        )
        .map_err(|source| Error::Mount {
            op: "mount",
            path: target.to_path_buf(),
            source,
        })
    }

    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), Error> {
        let fail = |op, source| Error::Mount {
            op,
            path: target.to_path_buf(),
            source,
        };
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| fail("bind", e))?;
        if readonly {
            // A bind mount ignores MS_RDONLY; it takes effect on a remount.
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) =
                nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            {
                let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
                return Err(fail("remount", e));
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), Error> {
        // Loop: a path can carry stacked mounts after a crash mid-publish.
        while mountinfo::is_mount_point(target)? {
            match nix::mount::umount2(target, MntFlags::empty()) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(source) => {
                    return Err(Error::Mount {
                        op: "umount",
                        path: target.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn is_mounted(&self, target: &Path) -> Result<bool, Error> {
        mountinfo::is_mount_point(target)
    }

    fn usage(&self, path: &Path) -> Result<Usage, Error> {
        let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io(path, e.into()))?;
        let frsize = st.fragment_size();
        let total = st.blocks() * frsize;
        let free = st.blocks_free() * frsize;
        Ok(Usage {
            total_bytes: total,
            available_bytes: st.blocks_available() * frsize,
            used_bytes: total.saturating_sub(free),
            total_inodes: st.files(),
            free_inodes: st.files_free(),
            used_inodes: st.files().saturating_sub(st.files_free()),
        })
    }
}
