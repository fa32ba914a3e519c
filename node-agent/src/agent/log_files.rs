//! Reading a container's CRI log files the way `kubectl logs` asks: which files
//! make up one container instance (`<restart>.log` and its rotations), whole lines
//! re-assembled from partial records, `--tail`, `--timestamps`, `--since`,
//! `--limit-bytes`, and following a file that grows and rotates until the
//! container exits.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logs::{Record, parse_line};

/// How often a followed log is polled for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Rotated files kept per instance (`N.log.1` … `N.log.4`), as the shim rotates them.
const ROTATIONS: u32 = 4;

/// What to print of the log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last this many lines of what is there now.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only lines at or after this RFC 3339 timestamp (fixed width, so compared as text).
    pub since: Option<String>,
}

/// The restart numbers that have a log in `dir` (a container's log directory), ascending.
pub fn instances(dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found
}

/// The live log file of instance `n`.
pub fn live_file(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n}.log"))
}

/// Rotated files of instance `n`, oldest first (the live file is not included).
fn rotated_files(dir: &Path, n: u32) -> Vec<PathBuf> {
    (1..=ROTATIONS)
        .rev()
        .map(|i| dir.join(format!("{n}.log.{i}")))
        .filter(|p| p.exists())
        .collect()
}

/// One whole line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Timestamp of its first record.
    pub timestamp: String,
    /// The text, partial records joined.
    pub text: String,
}

/// Joins CRI records into whole lines, across reads.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// Bytes after the last newline read so far.
    rest: Vec<u8>,
    /// A line whose records so far were partial.
    pending: Option<LogLine>,
}

impl LineAssembler {
    /// Feeds raw file bytes; returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.rest.extend_from_slice(bytes);
        let Some(end) = self.rest.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.rest.drain(..=end).collect();
        let text = String::from_utf8_lossy(&complete);
        let mut lines = Vec::new();
        for record in text.lines().filter_map(parse_line) {
            self.push_record(record, &mut lines);
        }
        lines
    }

    fn push_record(&mut self, record: Record, lines: &mut Vec<LogLine>) {
        let line = self.pending.get_or_insert_with(|| LogLine {
            timestamp: record.timestamp.clone(),
            text: String::new(),
        });
        line.text.push_str(&record.text);
        if record.full {
            lines.extend(self.pending.take());
        }
    }
}

/// Formats lines for the client.
pub fn render(lines: &[LogLine], options: &LogOptions) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        if let Some(since) = &options.since
            && line.timestamp.as_str() < since.as_str()
        {
            continue;
        }
        if options.timestamps {
            out.extend_from_slice(line.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(line.text.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads one instance's log and, when `follow`, keeps reading until `finished()`
/// says the instance ended (then drains what is left) or `emit` returns false
/// (the client went away). Blocking: run it on a blocking thread.
pub fn read_instance(
    dir: &Path,
    n: u32,
    options: &LogOptions,
    follow: bool,
    finished: impl Fn() -> bool,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut assembler = LineAssembler::default();
    let mut lines = Vec::new();
    for path in rotated_files(dir, n) {
        lines.extend(assembler.push(&std::fs::read(&path)?));
    }
    let live_path = live_file(dir, n);
    let mut live = LiveFile::open(&live_path)?;
    lines.extend(assembler.push(&live.read_new()?));
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let first = render(&lines, options);
    if !first.is_empty() && !emit(first) {
        return Ok(());
    }
    if !follow {
        return Ok(());
    }
    loop {
        let done = finished();
        let bytes = live.read_new()?;
        let new = render(&assembler.push(&bytes), options);
        if !new.is_empty() && !emit(new) {
            return Ok(());
        }
        if done {
            return Ok(());
        }
        if bytes.is_empty() {
            // An empty emit tells whether the client is still there.
            if !emit(Vec::new()) {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// The live log file of an instance, followed across rotations: when the path
/// names a new file, the rest of the old one is read, then the new one from 0.
struct LiveFile {
    path: PathBuf,
    file: Option<(File, u64)>,
}

impl LiveFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        let mut live = Self {
            path: path.to_path_buf(),
            file: None,
        };
        live.reopen()?;
        Ok(live)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = match File::open(&self.path) {
            Ok(f) => {
                let ino = f.metadata()?.ino();
                Some((f, ino))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        if let Some((file, _)) = &mut self.file {
            file.read_to_end(&mut out)?;
        }
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        let rotated = match (&self.file, current) {
            (Some((_, ino)), Some(now)) => *ino != now,
            (None, Some(_)) => true,
            _ => false,
        };
        if rotated {
            self.reopen()?;
            if let Some((file, _)) = &mut self.file {
                file.seek(SeekFrom::Start(0))?;
                file.read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Stream, write_line};

    fn write(path: &Path, lines: &[(&str, &str)]) {
        let mut out = Vec::new();
        for (ts, text) in lines {
            write_line(&mut out, Stream::Stdout, ts, text.as_bytes(), true).unwrap();
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn tail_timestamps_since_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("0.log"),
            &[("2026-01-01T00:00:00.000000000Z", "old")],
        );
        write(
            &dir.path().join("1.log.1"),
            &[
                ("2026-01-01T00:00:01.000000000Z", "a"),
                ("2026-01-01T00:00:02.000000000Z", "b"),
            ],
        );
        write(
            &dir.path().join("1.log"),
            &[("2026-01-01T00:00:03.000000000Z", "c")],
        );
        assert_eq!(instances(dir.path()), [0, 1]);
        let read = |options: LogOptions| {
            let mut out = Vec::new();
            read_instance(
                dir.path(),
                1,
                &options,
                false,
                || true,
                |b| {
                    out.extend(b);
                    true
                },
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(read(LogOptions::default()), "a\nb\nc\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(read(tail), "b\nc\n");
        let stamped = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(read(stamped), "2026-01-01T00:00:03.000000000Z c\n");
        let since = LogOptions {
            since: Some("2026-01-01T00:00:02.000000000Z".into()),
            ..Default::default()
        };
        assert_eq!(read(since), "b\nc\n");
    }

    #[test]
    fn partial_records_are_joined_across_reads() {
        let mut a = LineAssembler::default();
        assert!(a.push(b"t1 stdout P hel").is_empty());
        assert!(a.push(b"lo\nt2 stdout F  world\n").len() == 1);
        let lines = a.push(b"t3 stderr F x\n");
        assert_eq!(lines[0].text, "x");
    }
}
