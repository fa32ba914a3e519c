//! The temporary files and directories of image imports and pulls are named
//! `<kind><pid>-…` after the process writing them, so that what a killed agent or `cox
//! image` left behind can be told from what a running one is still writing, and removed.

use std::path::Path;

/// The name prefix of a temporary of `kind` made by this process: `<kind><pid>-`.
pub(crate) fn prefix(kind: &str) -> String {
    format!("{kind}{}-", std::process::id())
}

/// Whether `name` is a temporary of `kind` whose writer is no longer running.
fn abandoned(name: &str, kind: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(kind)
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the temporaries of `kind` in `dir` whose writers are gone; returns how many.
pub(crate) fn sweep(dir: &Path, kind: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !abandoned(&entry.file_name().to_string_lossy(), kind) {
            continue;
        }
        let path = entry.path();
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a dead writer's temporary");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a dead writer's temporary")
            }
        }
    }
    removed
}
