//! Copies a container's stdout and stderr pipes into one CRI log file, a thread per
//! stream, lines interleaved as they arrive. The file is rotated when it passes a size
//! limit: `N.log` → `N.log.1` → … → `N.log.<keep>` (the oldest is dropped), as
//! kubelet's `containerLogMaxSize`/`containerLogMaxFiles` do.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::logs::{Stream, rfc3339_nano, write_line};

/// Rotate past 10 MiB (kubelet's default), keeping 4 old files (5 in all).
pub const MAX_LOG_BYTES: u64 = 10 << 20;
/// Rotated files kept beside the current one.
pub const KEEP_ROTATED: usize = 4;

/// A log file that rotates itself.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    max: u64,
}

impl RotatingLog {
    /// Opens `path` for appending, rotating past `max` bytes.
    pub fn open(path: &Path, max: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            max,
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Writes one record, rotating first when the file is full.
    pub fn write_record(
        &mut self,
        stream: Stream,
        line: &[u8],
        complete: bool,
    ) -> std::io::Result<()> {
        if self.written >= self.max {
            for n in (1..KEEP_ROTATED).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = File::options().create(true).append(true).open(&self.path)?;
            self.written = 0;
        }
        let mut buf = Vec::with_capacity(line.len() + 48);
        write_line(
            &mut buf,
            stream,
            &rfc3339_nano(SystemTime::now()),
            line,
            complete,
        )?;
        std::io::Write::write_all(&mut self.file, &buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

/// The running copy threads; [`LogCopier::finish`] waits for them to drain.
pub struct LogCopier {
    done: mpsc::Receiver<()>,
}

impl LogCopier {
    /// Opens `log` for appending and starts copying both pipes into it.
    pub fn start(
        log: &Path,
        max: u64,
        stdout: PipeReader,
        stderr: PipeReader,
    ) -> std::io::Result<Self> {
        let file = Arc::new(Mutex::new(RotatingLog::open(log, max)?));
        let (tx, done) = mpsc::channel();
        for (stream, pipe) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
            let (file, tx) = (Arc::clone(&file), tx.clone());
            std::thread::spawn(move || {
                copy(stream, pipe, &file);
                let _ = tx.send(());
            });
        }
        Ok(Self { done })
    }

    /// Waits up to `timeout` for both streams to reach end of file.
    pub fn finish(self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                return;
            }
        }
    }
}

fn copy(stream: Stream, pipe: PipeReader, file: &Mutex<RotatingLog>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let complete = line.last() == Some(&b'\n');
                if complete {
                    line.pop();
                }
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = f.write_record(stream, &line, complete);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_past_the_limit_and_keep_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::open(&path, 200).unwrap();
        for i in 0..100 {
            log.write_record(Stream::Stdout, format!("line {i}").as_bytes(), true)
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["0.log", "0.log.1", "0.log.2", "0.log.3", "0.log.4"]);
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("stdout F line 99\n"), "{last}");
        assert!(std::fs::metadata(dir.path().join("0.log.1")).unwrap().len() >= 200);
    }
}
