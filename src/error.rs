//! One error type for the library. Every message says what is wrong and where; `main` prints it on one
//! line and maps it to an exit code.

use std::path::{Path, PathBuf};

/// A malformed protobuf: what is wrong and at which byte of the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub struct FormatError {
    pub offset: usize,
    pub message: String,
}

impl FormatError {
    pub fn at(offset: usize, message: impl Into<String>) -> Self {
        FormatError { offset, message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a readable ONNX model.
    #[error("{}: not a valid ONNX model: {source}", path.display())]
    Format { path: PathBuf, source: FormatError },
    /// The model reads, but something in it cannot be handled (named in the message).
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The options do not make sense (exit code 2, like a command-line usage error).
    #[error("{0}")]
    Usage(String),
    /// Input the job needs was not given (exit 1, like other bad input), e.g. calibration samples.
    #[error("{0}")]
    Missing(String),
    /// Some items of a job failed (exit 1); each is reported where the message says.
    #[error("{0}")]
    Failed(String),
    /// A validation gate failed (exit code 3); the output and report were still written.
    #[error("{0}")]
    Gate(String),
}

impl Error {
    pub fn model(path: &Path, message: impl Into<String>) -> Self {
        Error::Model { path: path.to_path_buf(), message: message.into() }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// The process exit code for this error (design.md §7).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Gate(_) => 3,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
