//! `subPath` volume mounts that cannot leave their volume (the lesson of CVE-2021-25741).
//!
//! A container that can write to a volume can plant a symlink there (`escape -> /`); a
//! later container mounting `subPath: escape` would then bind-mount the host's root.
//! The sub path is therefore opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! from the volume's directory — every component, symlinks included, must resolve inside
//! the volume. As the kubelet does, the opened file is then bind-mounted through
//! `/proc/self/fd/<n>` at a private staging path in the container's directory, which the
//! runtime mounts into the container: swapping the symlink after the check changes
//! nothing. (The runtime cannot mount the fd link itself: its new mount namespace may not
//! bind a mount of the agent's.) The staging mount is removed once the runtime has created
//! the container. Missing directories are created one component at a time below an
//! already opened parent.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

use crate::mounts::Mounter;

/// A sub path that is malformed or does not stay inside its volume.
#[derive(Debug, thiserror::Error)]
#[error("subPath {sub_path:?} of volume {volume}: {message}")]
pub struct SubPathError {
    /// The sub path as given.
    pub sub_path: String,
    /// The volume's directory on the host.
    pub volume: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The sub path's components; an error unless it is relative and free of `..`.
pub fn check_sub_path(sub_path: &str) -> Result<Vec<&str>, String> {
    let path = Path::new(sub_path);
    if path.is_absolute() {
        return Err("must be a relative path".to_string());
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or("must be UTF-8")?),
            Component::CurDir => {}
            _ => return Err("must not contain '..'".to_string()),
        }
    }
    Ok(parts)
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `sub_path` inside `volume` (`O_PATH`, close-on-exec), creating missing
/// directories; fails when any component resolves outside the volume.
pub fn open_sub_path(volume: &Path, sub_path: &str) -> Result<OwnedFd, SubPathError> {
    let fail = |message: String| SubPathError {
        sub_path: sub_path.to_string(),
        volume: volume.to_path_buf(),
        message,
    };
    let parts = check_sub_path(sub_path).map_err(&fail)?;
    let root = nix::fcntl::open(
        volume,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("opening the volume: {e}")))?;
    let escaped = |e: Errno| match e {
        Errno::EXDEV => fail("resolves outside the volume (a symlink out of it?)".to_string()),
        Errno::ELOOP => fail("resolves through a /proc magic link or a symlink loop".to_string()),
        other => fail(other.to_string()),
    };
    match openat2(&root, sub_path, beneath(OFlag::empty())) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(escaped(e)),
    }
    // Create what is missing, one component below an opened (beneath-checked) parent.
    let mut parent = root;
    for part in parts {
        let next = match openat2(&parent, part, beneath(OFlag::empty())) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(&parent, part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(format!("creating {part:?}: {e}"))),
                }
                openat2(&parent, part, beneath(OFlag::O_DIRECTORY)).map_err(escaped)?
            }
            Err(e) => return Err(escaped(e)),
        };
        // Each step is beneath its parent, which is beneath the volume.
        parent = next;
    }
    Ok(parent)
}

/// A sub path bind-mounted at a staging path; unmounted and removed when dropped.
pub struct StagedSubPath {
    target: PathBuf,
    mounter: Arc<dyn Mounter>,
}

impl StagedSubPath {
    /// Where the runtime finds the sub path.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for StagedSubPath {
    fn drop(&mut self) {
        let _ = self.mounter.unmount(&self.target);
        let _ = std::fs::remove_dir(&self.target).or_else(|_| std::fs::remove_file(&self.target));
    }
}

/// Opens `sub_path` inside `volume` ([`open_sub_path`]) and bind-mounts what it opened at
/// `target` (created as a directory or an empty file to match).
pub fn stage_sub_path(
    mounter: Arc<dyn Mounter>,
    volume: &Path,
    sub_path: &str,
    target: &Path,
) -> Result<StagedSubPath, SubPathError> {
    let fd = open_sub_path(volume, sub_path)?;
    let fail = |message: String| SubPathError {
        sub_path: sub_path.to_string(),
        volume: volume.to_path_buf(),
        message,
    };
    let is_dir = fstat(&fd)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| fail(format!("stat: {e}")))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
    }
    let created = if is_dir {
        std::fs::create_dir_all(target)
    } else {
        std::fs::File::create(target).map(drop)
    };
    created.map_err(|e| fail(format!("creating {}: {e}", target.display())))?;
    let staged = StagedSubPath {
        target: target.to_path_buf(),
        mounter: mounter.clone(),
    };
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    mounter
        .bind_private(&source, target)
        .map_err(|e| fail(e.to_string()))?;
    Ok(staged)
}

/// The path through which another process reaches `fd` of this one.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn sub_paths_must_be_relative_without_dot_dot() {
        assert_eq!(check_sub_path("a/./b"), Ok(vec!["a", "b"]));
        assert!(check_sub_path("/etc").is_err());
        assert!(check_sub_path("a/../../etc").is_err());
    }

    #[test]
    fn a_symlink_out_of_the_volume_is_refused_and_one_inside_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("vol");
        std::fs::create_dir_all(volume.join("inside")).unwrap();
        std::fs::write(volume.join("inside/file"), "ok").unwrap();
        symlink("/", volume.join("escape")).unwrap();
        symlink("../..", volume.join("inside/up")).unwrap();
        symlink("inside", volume.join("rel")).unwrap();

        for bad in ["escape", "escape/etc", "inside/up"] {
            let err = open_sub_path(&volume, bad).unwrap_err();
            assert!(err.message.contains("outside the volume"), "{bad}: {err}");
        }
        let fd = open_sub_path(&volume, "rel/file").unwrap();
        let target = std::fs::read_link(fd_path(&fd)).unwrap();
        assert_eq!(target, volume.join("inside/file"));

        // Swapping the symlink after the check changes nothing: the fd is what is mounted.
        std::fs::remove_file(volume.join("rel")).unwrap();
        symlink("/", volume.join("rel")).unwrap();
        assert_eq!(
            std::fs::read_link(fd_path(&fd)).unwrap(),
            volume.join("inside/file")
        );

        let fd = open_sub_path(&volume, "new/deeper").unwrap();
        assert_eq!(
            std::fs::read_link(fd_path(&fd)).unwrap(),
            volume.join("new/deeper")
        );
        assert!(volume.join("new/deeper").is_dir());
        // A dangling symlink out of the volume is not created through.
        symlink("/nonexistent-coxswain-target", volume.join("dangling")).unwrap();
        assert!(open_sub_path(&volume, "dangling/x").is_err());
        assert!(!Path::new("/nonexistent-coxswain-target").exists());
    }
}
