//! What stands between a request and its handler besides API keys: the media type of bodies
//! (browsers) and the admission of heavy reads (load).
//!
//! **Content-Type.** A request that carries a body on a method that can change something (POST,
//! PUT, PATCH, DELETE) must say `Content-Type: application/json` (parameters such as
//! `; charset=utf-8` are accepted), or it is refused with a 415 before anything is read. A web
//! page can make a browser send a cross-site `text/plain` POST without a CORS preflight, but not
//! an `application/json` one, so this is what keeps a page on another origin from, say,
//! deleting every point of a server without API keys. Bodiless requests (`DELETE
//! /collections/{name}`) need no header. shoal sends no CORS headers at all, so a browser lets
//! no other origin read an answer or send a preflighted request.
//!
//! **Heavy reads.** Searches (single and batch), counts, scrolls and retrieves take a slot of
//! [`Admission`] before their body is read: at most `search_concurrency` run at once, up to
//! `search_queue` more wait in line (in arrival order), and any beyond that are answered 503
//! with `Retry-After` at once. Waiting counts against the request timeout. The blocking pool
//! itself is bounded further down ([`crate::router::exec`]).

use super::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Whether the request carries a body: a non-zero `Content-Length`, or any `Transfer-Encoding`.
fn has_body(h: &HeaderMap) -> bool {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match h.get(header::CONTENT_LENGTH) {
        None => false,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0),
    }
}

/// Whether a `Content-Type` value is `application/json`, with or without parameters.
pub fn is_json(v: &HeaderValue) -> bool {
    v.to_str().ok().is_some_and(|s| {
        s.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Middleware: a body on POST/PUT/PATCH/DELETE must be `application/json` (415 otherwise).
pub async fn content_type(req: Request, next: Next) -> Response {
    let m = req.method();
    if (m == Method::POST || m == Method::PUT || m == Method::PATCH || m == Method::DELETE)
        && has_body(req.headers())
    {
        let ct = req.headers().get(header::CONTENT_TYPE);
        if !ct.is_some_and(is_json) {
            let got = match ct {
                Some(v) => format!("{:?}", v.to_str().unwrap_or("(not text)")),
                None => "none".to_owned(),
            };
            return ApiError::UnsupportedMediaType(format!(
                "{m} with a body needs Content-Type: application/json (got {got})"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// The routes [`admit`] holds to [`Admission`]: the reads that scan (searches, counts, scrolls)
/// or fan out by id (retrieve).
const HEAVY: &[(&str, &str)] = &[
    ("POST", "/collections/{name}/points"),
    ("POST", "/collections/{name}/points/count"),
    ("POST", "/collections/{name}/points/scroll"),
    ("POST", "/collections/{name}/points/search"),
    ("POST", "/collections/{name}/points/search/batch"),
    ("POST", "/collections/{name}/points/query"),
    ("POST", "/collections/{name}/points/query/batch"),
    ("POST", "/collections/{name}/points/search/groups"),
    ("POST", "/collections/{name}/points/query/groups"),
    ("POST", "/collections/{name}/facet"),
    ("POST", "/collections/{name}/points/search/matrix/pairs"),
    ("POST", "/collections/{name}/points/search/matrix/offsets"),
];

/// Slots for heavy reads: `running` at once, `queue` more waiting.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    running: usize,
    queue: usize,
    /// Requests holding or waiting for a slot.
    inside: AtomicUsize,
}

/// Leaves [`Admission`] (also when the request is dropped while waiting).
struct Inside<'a>(&'a AtomicUsize);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// `running` requests at once (at least 1), `queue` waiting.
    pub fn new(running: usize, queue: usize) -> Self {
        let running = running.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(running)),
            running,
            queue,
            inside: AtomicUsize::new(0),
        }
    }

    /// Requests holding or waiting for a slot now.
    pub fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    /// Runs `f` in a slot, after waiting in line; `Err` (503) when the line is full.
    pub async fn run<F: Future<Output = Response>>(&self, f: F) -> Response {
        let n = self.inside.fetch_add(1, Ordering::SeqCst);
        let _inside = Inside(&self.inside);
        if n >= self.running + self.queue {
            let mut resp = ApiError::Unavailable(format!(
                "overloaded: {} heavy reads running and {} waiting (search_concurrency = {}, search_queue = {}); retry later",
                self.running, self.queue, self.running, self.queue
            ))
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return ApiError::Unavailable("shutting down".into()).into_response();
        };
        f.await
    }
}

/// Middleware: heavy reads ([`HEAVY`]) run inside [`Admission`]; everything else passes.
pub async fn admit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let heavy = req.extensions().get::<MatchedPath>().is_some_and(|p| {
        HEAVY
            .iter()
            .any(|(m, route)| req.method().as_str() == *m && p.as_str() == *route)
    });
    if !heavy {
        return next.run(req).await;
    }
    st.admission.run(next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_and_bodies_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(bad)), "{bad}");
        }
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(has_body(&h));
        h.remove(header::CONTENT_LENGTH);
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(has_body(&h));
    }

    #[tokio::test]
    async fn admission_queues_then_refuses() {
        let a = Arc::new(Admission::new(1, 1));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let a = a.clone();
            tokio::spawn(async move {
                a.run(async move {
                    let _ = rx.await;
                    "first".into_response()
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        while a.inside() < 1 {
            tokio::task::yield_now().await;
        }
        let second = {
            let a = a.clone();
            tokio::spawn(async move { a.run(async { "second".into_response() }).await })
        };
        while a.inside() < 2 {
            tokio::task::yield_now().await;
        }
        // One running, one waiting: the third is refused at once.
        let third = a.run(async { "third".into_response() }).await;
        assert_eq!(third.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()[header::RETRY_AFTER], "1");
        tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().status(), 200);
        assert_eq!(second.await.unwrap().status(), 200);
        assert_eq!(a.inside(), 0);
    }
}
