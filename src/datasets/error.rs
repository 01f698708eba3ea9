//! Errors of reading, writing and generating datasets. One enum for the file work, so a caller
//! (the bench, the CLI) can tell a missing file from a corrupted one and report which byte.

use std::path::{Path, PathBuf};

/// Why a dataset file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The operating system refused to open, read or write the file.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes do not follow its format (truncated, inconsistent rows, absurd header).
    #[error("{path}: malformed at byte {offset}: {reason}")]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file stores elements of a type this use cannot accept (for example float ids).
    #[error("{path}: wrong element type: expected {expected}, found {found}")]
    WrongElementType {
        /// The file concerned.
        path: PathBuf,
        /// What the caller needed.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The file or folder is not a format shoal reads.
    #[error("{path}: unsupported: {reason}")]
    Unsupported {
        /// The file concerned.
        path: PathBuf,
        /// Why it is not supported.
        reason: String,
    },
    /// The parts of a dataset disagree with each other (query and base dimensions, ground truth
    /// rows against queries, ids past the end of the base).
    #[error("{path}: inconsistent dataset: {reason}")]
    Inconsistent {
        /// The dataset (file or folder) concerned.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// The HDF5 library reported an error.
    #[error("{path}: HDF5: {message}")]
    Hdf5 {
        /// The file concerned.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A caller passed an argument that cannot work (k = 0, an unknown metric name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A format violation in `path` at byte `offset`.
    pub fn malformed(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        DatasetError::Malformed {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// A dataset whose parts disagree.
    pub fn inconsistent(path: &Path, reason: impl Into<String>) -> Self {
        DatasetError::Inconsistent {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A file or layout shoal does not read.
    pub fn unsupported(path: &Path, reason: impl Into<String>) -> Self {
        DatasetError::Unsupported {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
