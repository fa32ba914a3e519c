//! Container logs in the CRI format that kubelet writes and `kubectl logs` reads:
//! one line per record, `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, where `P`
//! marks a partial line (a line longer than [`MAX_LINE`] is split) and `F` ends it.

mod timestamp;

use std::io::Write;

pub use timestamp::rfc3339_nano;

/// Longest text written in one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in the CRI format.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes `line` (without its newline) as one or more CRI records. `complete` is false
/// when the stream ended without a final newline, so the last record is partial.
pub fn write_line(
    out: &mut impl Write,
    stream: Stream,
    timestamp: &str,
    line: &[u8],
    complete: bool,
) -> std::io::Result<()> {
    let mut chunks = line.chunks(MAX_LINE).peekable();
    if line.is_empty() {
        return writeln!(
            out,
            "{timestamp} {} {} ",
            stream.as_str(),
            if complete { "F" } else { "P" }
        );
    }
    while let Some(chunk) = chunks.next() {
        let tag = if chunks.peek().is_none() && complete {
            "F"
        } else {
            "P"
        };
        write!(out, "{timestamp} {} {tag} ", stream.as_str())?;
        out.write_all(chunk)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The RFC 3339 timestamp as written.
    pub timestamp: String,
    /// The stream.
    pub stream: Stream,
    /// Whether the record ends a line (`F`).
    pub full: bool,
    /// The text.
    pub text: String,
}

/// Parses one CRI log line; `None` when it is not in the format.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?.to_string();
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or("").to_string();
    Some(Record {
        timestamp,
        stream,
        full,
        text,
    })
}

/// The full lines of a CRI log file's text, partial records joined.
pub fn read_lines(content: &str) -> Vec<(Stream, String)> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for record in content.lines().filter_map(parse_line) {
        pending.push_str(&record.text);
        if record.full {
            lines.push((record.stream, std::mem::take(&mut pending)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let mut out = Vec::new();
        let line = vec![b'x'; MAX_LINE + 10];
        write_line(
            &mut out,
            Stream::Stdout,
            "2026-01-01T00:00:00Z",
            &line,
            true,
        )
        .unwrap();
        write_line(
            &mut out,
            Stream::Stderr,
            "2026-01-01T00:00:00Z",
            b"oops",
            true,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let records: Vec<_> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(records.len(), 3);
        assert!(!records[0].full && records[1].full);
        let lines = read_lines(&text);
        assert_eq!(lines[0].1.len(), MAX_LINE + 10);
        assert_eq!(lines[1], (Stream::Stderr, "oops".to_string()));
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert_eq!(parse_line("hello world"), None);
        assert_eq!(parse_line("t stdout X y"), None);
    }
}
