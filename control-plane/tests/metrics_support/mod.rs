//! Shared helpers of the metrics tests: reading samples out of a scrape and running promtool.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::io::Write;
use std::process::{Command, Stdio};

/// The value of the sample `name` whose labels are exactly `labels`, if the scrape has it.
pub fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, mut found) = match series.split_once('{') {
                Some((metric, rest)) => (
                    metric,
                    rest.trim_end_matches('}')
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                ),
                None => (series, Vec::new()),
            };
            found.sort();
            (metric == name && found == wanted).then(|| value.parse().ok())?
        })
}

/// Whether any sample of `name` carries the label pair `key="value"`.
pub fn has_series_with(scrape: &str, name: &str, key: &str, value: &str) -> bool {
    let pair = format!("{key}=\"{value}\"");
    scrape
        .lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&pair))
}

/// Runs the real `promtool check metrics` on `scrape` and panics with its output if it
/// objects, or if promtool is missing (scripts/setup.sh installs it with Debian's
/// `prometheus` package, so a missing promtool is a broken setup, not a reason to skip).
pub fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running promtool: {e} (install it with scripts/setup.sh: Debian package prometheus)")
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(scrape.as_bytes())
        .expect("writing the scrape to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{scrape}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
