//! The one error type of the benchmark harness.

use std::path::PathBuf;

/// Everything that can stop `shoal bench`: bad flags or sweep files, unreadable inputs, an index
/// that refuses its parameters, or a plot that cannot be drawn. Each variant names the input at
/// fault so that a user can fix it without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag, sweep file entry or parameter combination that cannot be measured.
    #[error("invalid benchmark parameter: {0}")]
    InvalidParameter(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON report or sweep file could not be parsed, or a report could not be written.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A TOML sweep file could not be parsed.
    #[error("{path}: invalid TOML: {source}")]
    Toml {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The ground truth does not cover what is asked of it.
    #[error("ground truth: {0}")]
    GroundTruth(String),
    /// The index refused its parameters or input.
    #[error("index: {0}")]
    Index(#[from] crate::index::IndexError),
    /// The shard engine (`--engine shard`) refused a write, a filter or a search.
    #[error("shard: {0}")]
    Shard(#[from] crate::shard::ShardError),
    /// The dataset could not be loaded or its ground truth computed.
    #[error("dataset: {0}")]
    Dataset(#[from] crate::datasets::DatasetError),
    /// A request to the server under test (`--server`) failed or was refused.
    #[error("server {url}: {message}")]
    Server {
        /// The request's URL.
        url: String,
        /// What went wrong: the transport error, or the HTTP status and the server's answer.
        message: String,
    },
    /// Drawing the plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What the plotting backend reported.
        message: String,
    },
}

impl BenchError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}
