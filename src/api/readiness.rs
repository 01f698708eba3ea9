//! Writes that arrive before the node is ready: a 503 with `Retry-After`, which a client can act
//! on, instead of whatever the half-started cluster would answer (a create sent the moment the
//! port opens used to get a 400 "the cluster has 0 reachable member(s)").
//!
//! Reads are let through: they answer from what the node has, and `/readyz` tells a load
//! balancer when that is everything.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses a write under `/collections` with 503 until the node has joined the cluster, caught
/// up on the metadata and started its replicas ([`crate::cluster::Cluster::is_ready`]).
pub async fn gate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if is_write(req.method(), req.uri().path()) && !st.cluster.is_ready() {
        return ApiError::Unavailable(
            "the node is starting (joining the cluster, starting replicas): retry shortly".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the request changes collections or points. Reads sent as POST (search, query,
/// count, scroll, retrieve) are not writes.
fn is_write(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/collections/") else {
        return false;
    };
    match *method {
        Method::PUT | Method::PATCH | Method::DELETE => true,
        Method::POST => {
            let op = rest.split_once('/').map_or("", |(_, op)| op);
            rest == "aliases" || op == "points/delete" || op.starts_with("points/payload")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_told_apart_from_reads_sent_as_post() {
        let cases = [
            (Method::PUT, "/collections/c", true),
            (Method::PATCH, "/collections/c", true),
            (Method::DELETE, "/collections/c", true),
            (Method::PUT, "/collections/c/points", true),
            (Method::POST, "/collections/c/points/delete", true),
            (Method::POST, "/collections/aliases", true),
            (Method::POST, "/collections/c/facet", false),
            (Method::POST, "/collections/c/points/payload", true),
            (Method::POST, "/collections/c/points/payload/clear", true),
            (Method::POST, "/collections/c/points", false),
            (Method::POST, "/collections/c/points/search", false),
            (Method::POST, "/collections/c/points/query/batch", false),
            (Method::POST, "/collections/c/points/count", false),
            (Method::GET, "/collections/c", false),
            (Method::PUT, "/cluster/members/2", false),
        ];
        for (method, path, write) in cases {
            assert_eq!(is_write(&method, path), write, "{method} {path}");
        }
    }
}
