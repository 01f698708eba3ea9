//! [`IndexError`]: everything that can go wrong when building, filling or restoring an index.
//!
//! Index code sits at the bottom of the stack and is fed by user input (vectors from the REST API,
//! parts read from disk), so bad input must come back as a typed error that the layers above map
//! once to a 4xx answer or a "segment corrupted" report, never as a panic.

/// Why an index operation was refused. The index is left unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    /// A vector (or a flat buffer of vectors) does not have the index's dimension.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The index's dimension (or the length a buffer must have).
        expected: usize,
        /// The length actually given.
        got: usize,
    },
    /// A vector holds NaN or an infinity; such vectors poison every distance they touch.
    #[error("vector contains a NaN or infinite component")]
    NonFinite,
    /// A configuration or search parameter is out of its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Vectors and ids (or other parallel arrays) do not have matching lengths.
    #[error("length mismatch: {vectors} vectors but {ids} ids")]
    LengthMismatch {
        /// Number of vectors given.
        vectors: usize,
        /// Number of ids given.
        ids: usize,
    },
    /// Too few points to train a quantizer with the requested parameters.
    #[error("not enough training points: need at least {needed}, got {got}")]
    NotEnoughData {
        /// Points the training needs.
        needed: usize,
        /// Points given.
        got: usize,
    },
    /// Restored index parts are inconsistent with each other (e.g. from a damaged file).
    #[error("corrupted index parts: {0}")]
    Corrupted(String),
}
