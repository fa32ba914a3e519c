//! The error type of the openb trace replay.

use std::path::PathBuf;

/// Everything that can go wrong while loading or replaying an openb trace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: cannot read", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV line has a bad field.
    #[error("{} line {line}: {field}: {message}", path.display())]
    Field {
        /// The file the line is in.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// The column name.
        field: String,
        /// What was wrong, e.g. `expected integer, got "x"`.
        message: String,
    },
    /// A CSV line or file does not have the expected shape.
    #[error("{} line {line}: {message}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The inputs are individually valid but cannot be replayed together.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with the path it was about.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
