//! [`Error`]: every way a core operation on collections can fail, in kinds a front end maps to
//! its own codes (the REST layer: 400, 404, 409, 503, 500).
//!
//! It is serialisable because it crosses nodes: a request forwarded to the metadata leader
//! answers the leader's error as it is. The variant order is the wire format (append only).

use crate::shard::ShardError;
use serde::{Deserialize, Serialize};

/// Why an operation failed. The message is what the client reads; it says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The request is malformed or its values are out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The collection (named) does not exist.
    #[error("collection `{0}` not found")]
    NotFound(String),
    /// The collection (named) exists already.
    #[error("collection `{0}` already exists")]
    Exists(String),
    /// The cluster cannot serve the request now: starting, shutting down, no leader, a shard
    /// unreachable. Retrying later may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an I/O failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// One write is larger than a replicated log entry may be (the message names the cap).
    /// Appended last: `Error` crosses the internal port, and older nodes decode the others.
    #[error("{0}")]
    TooLarge(String),
    /// An alias to delete or rename does not exist (the message names it). Appended after
    /// `TooLarge` for the same reason.
    #[error("{0}")]
    AliasNotFound(String),
}

impl Error {
    /// A [`Error::BadRequest`] with this message.
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    /// An [`Error::Unavailable`] with this message.
    pub fn unavailable(msg: impl std::fmt::Display) -> Self {
        Error::Unavailable(msg.to_string())
    }

    /// An [`Error::Internal`] with this message.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

impl From<ShardError> for Error {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::Io(_) | ShardError::Corrupted(_) | ShardError::Index(_) => {
                Error::Internal(e.to_string())
            }
            other => Error::BadRequest(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variant order is the wire format that replaced `cluster::rpc::Failure` (Bad,
    /// NotFound, Exists, Unavailable, Internal): its bytes must stay the same.
    #[test]
    fn wire_encoding_is_the_failure_encoding() {
        let cases = [
            (Error::bad("x"), 0u8),
            (Error::NotFound("x".into()), 1),
            (Error::Exists("x".into()), 2),
            (Error::unavailable("x"), 3),
            (Error::internal("x"), 4),
        ];
        for (e, tag) in cases {
            let bytes = postcard::to_allocvec(&e).unwrap();
            assert_eq!(bytes, vec![tag, 1, b'x']);
            assert_eq!(postcard::from_bytes::<Error>(&bytes).unwrap(), e);
        }
    }
}
