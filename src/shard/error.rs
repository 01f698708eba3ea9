//! [`ShardError`]: why a shard refused a command or a query.

use super::filter::FilterError;
use super::point::PointId;
use crate::index::IndexError;

/// Why a shard refused a command or a query. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A vector has the wrong dimension.
    #[error("wrong vector dimension: expected {expected}, got {got}")]
    Dimension {
        /// The collection's dimension.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("vector contains NaN or infinite values")]
    NonFinite,
    /// The same id appears twice in one upsert.
    #[error("duplicate point id {0} in one request")]
    DuplicateId(PointId),
    /// A filter is malformed.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A search parameter is out of range.
    #[error("invalid search parameter: {0}")]
    Param(String),
    /// A shard configuration is out of range.
    #[error("invalid shard configuration: {0}")]
    Config(String),
    /// Snapshot or restore I/O failed.
    #[error("snapshot I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot file is damaged or from an unknown format.
    #[error("corrupted snapshot: {0}")]
    Corrupted(String),
    /// The index refused an operation.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A payload index or payload update request is invalid.
    #[error("invalid payload request: {0}")]
    Payload(String),
}
