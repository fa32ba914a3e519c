//! Reading `/proc/self/mountinfo`: which paths are mount points now.

use std::path::{Path, PathBuf};

use crate::Error;

/// The mount points listed in `/proc/self/mountinfo`, in mount order.
pub fn mount_points() -> Result<Vec<PathBuf>, Error> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(parse(&text))
}

/// Whether `target` is a mount point now. A relative or non-canonical path
/// is canonicalised first; a path that does not exist is not mounted.
pub fn is_mount_point(target: &Path) -> Result<bool, Error> {
    let Ok(target) = target.canonicalize() else {
        return Ok(false);
    };
    Ok(mount_points()?.contains(&target))
}

/// Parses mountinfo text into its mount points (field 5), undoing the
/// kernel's octal escapes of space, tab, newline and backslash.
pub fn parse(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escaped_spaces() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    98 22 7:0 / /var/lib/a\\040b rw - ext4 /dev/loop0 rw\n";
        assert_eq!(
            parse(text),
            vec![PathBuf::from("/"), PathBuf::from("/var/lib/a b")]
        );
    }

    #[test]
    fn a_missing_path_is_not_mounted() {
        assert!(!is_mount_point(Path::new("/nonexistent/coxswain/x")).unwrap());
    }
}
