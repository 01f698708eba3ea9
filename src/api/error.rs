//! [`ApiError`]: every way a request can fail, mapped once to an HTTP status and Qdrant's error
//! body `{"status": {"error": "..."}, "time": seconds}`.

use crate::collection::Error as CoreError;
use crate::shard::ShardError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request failed. The message is what the client reads; it says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or its values are out of range (400).
    #[error("{0}")]
    BadRequest(String),
    /// The collection does not exist (404).
    #[error("collection `{0}` not found")]
    CollectionNotFound(String),
    /// An alias asked for does not exist (404; the message names it).
    #[error("{0}")]
    AliasNotFound(String),
    /// A point asked for by id does not exist (404).
    #[error("point {0} not found")]
    PointNotFound(String),
    /// Something else asked for does not exist: a snapshot, a shard (404; the message names it).
    #[error("{0}")]
    NotFound(String),
    /// The collection exists already (409).
    #[error("collection `{0}` already exists")]
    CollectionExists(String),
    /// A body of a media type other than JSON on a method that can change something (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body exceeds the configured limit, or one write exceeds what a replicated log entry
    /// may carry (413).
    #[error("{0}")]
    TooLarge(String),
    /// Missing or wrong API key (401).
    #[error("missing or invalid API key")]
    Unauthorized,
    /// A read-only key attempted a write (403).
    #[error("this API key is read-only")]
    Forbidden,
    /// The route does not exist (404).
    #[error("no such route: {0}")]
    NoRoute(String),
    /// The route exists but shoal does not serve this method on it (405).
    #[error(
        "{method} {path} is not an operation shoal serves (see GET /openapi.json for the ones it does)"
    )]
    MethodNotAllowed {
        /// The method asked.
        method: String,
        /// The path asked.
        path: String,
    },
    /// The server cannot serve the request now: starting, shutting down, no leader (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an I/O failure on the server (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::CollectionNotFound(_)
            | ApiError::AliasNotFound(_)
            | ApiError::PointNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::CollectionExists(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A 400 with this message.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

/// The one mapping of the core's errors to HTTP: 400, 404, 409, 413, 503, 500.
impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::BadRequest(m) => ApiError::BadRequest(m),
            CoreError::NotFound(n) => ApiError::CollectionNotFound(n),
            CoreError::Exists(n) => ApiError::CollectionExists(n),
            CoreError::Unavailable(m) => ApiError::Unavailable(m),
            CoreError::Internal(m) => ApiError::Internal(m),
            CoreError::TooLarge(m) => ApiError::TooLarge(m),
            CoreError::AliasNotFound(m) => ApiError::AliasNotFound(m),
        }
    }
}

impl From<crate::router::TokenError> for ApiError {
    fn from(e: crate::router::TokenError) -> Self {
        ApiError::bad(e.to_string())
    }
}

/// Through the core's own classification of shard errors (one place decides which are 400s).
impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        CoreError::from(e).into()
    }
}

/// `Retry-After` of every 503, in seconds: long enough for a leader election or a node's start.
const RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // 503 is an expected state (a node joining, a shard between leaders, a cut-off
        // replica): the client retries, so it is a warning, not an error.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request failed");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({
            "status": {"error": self.to_string()},
            "time": super::elapsed_now(),
        });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // What a client can act on: every 503 is a state that passes (a node starting, a
            // shard between leaders), so say when to try again.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_503_says_when_to_retry() {
        let r = ApiError::Unavailable("starting".into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()[axum::http::header::RETRY_AFTER],
            RETRY_AFTER_SECS
        );
        let r = ApiError::bad("no").into_response();
        assert!(r.headers().get(axum::http::header::RETRY_AFTER).is_none());
    }
}
