//! Optional API keys, sent as Qdrant does (`api-key: KEY`) or as `Authorization: Bearer KEY`.
//! The admin key may do everything; the read-only key may only read (GET, and the POST routes
//! that only read: retrieve, count, scroll, search, query). `/`, `/healthz` and `/readyz` are
//! always open. Keys are compared in constant time.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Compares two secrets without an early exit (only the length can leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_read(method: &Method, path: &str) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    method == Method::POST
        && [
            "/points",
            "/points/count",
            "/points/scroll",
            "/points/search",
            "/points/search/batch",
            "/points/query",
            "/points/query/batch",
            "/points/search/groups",
            "/points/query/groups",
            "/facet",
            "/points/search/matrix/pairs",
            "/points/search/matrix/offsets",
        ]
        .iter()
        .any(|s| path.ends_with(s))
}

/// Middleware: refuses requests without a valid key when keys are configured.
pub async fn check(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (admin, ro) = (&st.config.api_key, &st.config.read_only_api_key);
    if admin.is_none() && ro.is_none() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if matches!(path, "/" | "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let h = req.headers();
    let given = h.get("api-key").and_then(|v| v.to_str().ok()).or_else(|| {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    let Some(given) = given else {
        return ApiError::Unauthorized.into_response();
    };
    let matches = |k: &Option<crate::config::Secret>| {
        k.as_ref()
            .is_some_and(|k| constant_time_eq(k.expose().as_bytes(), given.as_bytes()))
    };
    if matches(admin) {
        return next.run(req).await;
    }
    if matches(ro) {
        if is_read(req.method(), path) {
            return next.run(req).await;
        }
        return ApiError::Forbidden.into_response();
    }
    ApiError::Unauthorized.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(is_read(&Method::POST, "/collections/a/points/search"));
        assert!(!is_read(&Method::POST, "/collections/a/points/delete"));
        assert!(is_read(
            &Method::POST,
            "/collections/a/points/search/matrix/offsets"
        ));
        assert!(!is_read(&Method::POST, "/cluster/recover"));
        assert!(!is_read(&Method::PUT, "/collections/a/points"));
    }
}
