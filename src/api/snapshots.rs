//! Qdrant's snapshots API: collection snapshots (`/collections/{name}/snapshots...`), shard
//! snapshots (`/collections/{name}/shards/{shard_id}/snapshots...`) and full snapshots
//! (`/snapshots...`): create, list, download, delete, and recover a collection or a shard.
//!
//! The handlers only translate: what a snapshot is and how one is taken lives in
//! [`crate::cluster::snapshots`], how one is recovered in the router (through the replicated
//! write path). What this layer decides is the recovery `location`: a `file://` URL must name
//! a file inside this node's snapshots directory (anything else is a 400 naming the path), an
//! `http(s)://` URL is downloaded (with `api_key` as the `api-key` header when given) into that
//! directory first, within the free space of its disk less [`disk::FREE_SPACE_RESERVE`] (a 413
//! otherwise: see `fetch`).
//!
//! `wait=false` (Qdrant's default is `true`) answers `202 {"status": "accepted"}` at once and
//! finishes the work in the background; a failure then is only logged. Every operation runs in
//! a task of its own, so a request that times out does not cut a recovery short.
//! `priority`: `snapshot` and `no_sync` are what a recovery here does (the snapshot's data
//! replaces the collection, every replica through the Raft log); `replica` (keep the existing
//! replicas' data) is refused with a 400. Uploading a snapshot in the request body
//! (`.../snapshots/upload`) is not served.

use super::error::ApiError;
use super::{AppState, JsonBody, ok};
use crate::cluster::snapshots::{Scope, SnapshotDescription, SnapshotError, Staging};
use crate::storage::disk;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::future::Future;
use utoipa::ToSchema;

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Core(c) => c.into(),
            SnapshotError::NotFound(m) => ApiError::NotFound(m),
        }
    }
}

/// `?wait=` of the snapshot operations.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// `false`: answer 202 at once and finish in the background. Default `true`.
    pub wait: Option<bool>,
}

/// Qdrant's `SnapshotRecover` and `ShardSnapshotRecover`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecover {
    /// `file:///<data dir>/snapshots/...` (a file in this node's snapshots directory) or an
    /// `http(s)://` URL to download the snapshot from.
    pub location: String,
    /// `snapshot` or `no_sync` (the snapshot replaces the data); `replica` is refused.
    pub priority: Option<String>,
    /// SHA-256 of the snapshot file, hex; a mismatch is a 400 and nothing changes.
    pub checksum: Option<String>,
    /// Sent as the `api-key` header when downloading from an `http(s)://` location.
    pub api_key: Option<String>,
}

fn path_of<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad(format!("invalid path: {}", e.body_text())))
}

fn wait_of(q: Result<Query<WaitQuery>, QueryRejection>) -> Result<bool, ApiError> {
    q.map(|Query(q)| q.wait.unwrap_or(true))
        .map_err(|e| ApiError::bad(format!("invalid query string: {}", e.body_text())))
}

/// Runs `work` in a task of its own; answers with its result, or 202 at once when `!wait`.
async fn run<T, F>(wait: bool, what: &'static str, work: F) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let task = tokio::spawn(work);
    if !wait {
        tokio::spawn(async move {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "{what} (wait=false) failed"),
                Err(e) => tracing::warn!(error = %e, "{what} (wait=false) failed"),
            }
        });
        let body = serde_json::json!({"status": "accepted", "time": super::elapsed_now()});
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    }
    let result = task
        .await
        .map_err(|e| ApiError::Internal(format!("{what}: {e}")))??;
    Ok(ok(result))
}

async fn create(st: AppState, scope: Scope, wait: bool) -> Result<Response, ApiError> {
    // Refused at once (unknown collection or shard) even when not waiting.
    st.cluster.snapshots().resolve(&scope)?;
    run(wait, "snapshot", async move {
        Ok::<SnapshotDescription, ApiError>(st.cluster.snapshots().create(&scope).await?)
    })
    .await
}

fn list(st: &AppState, scope: &Scope) -> Result<Response, ApiError> {
    Ok(ok(st.cluster.snapshots().list(scope)?))
}

fn delete(st: &AppState, scope: &Scope, name: &str) -> Result<Response, ApiError> {
    st.cluster.snapshots().delete(scope, name)?;
    Ok(ok(true))
}

/// The snapshot file as `application/octet-stream`, streamed.
async fn download(st: &AppState, scope: &Scope, name: &str) -> Result<Response, ApiError> {
    use tokio::io::AsyncReadExt;
    let path = st.cluster.snapshots().path(scope, name)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?
        .len();
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 16];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Where a recovery reads the snapshot from: a local file, and the staging directory of a
/// download (removed when dropped).
async fn locate(
    st: &AppState,
    req: &SnapshotRecover,
) -> Result<(std::path::PathBuf, Option<Staging>), ApiError> {
    match req.priority.as_deref() {
        None | Some("snapshot") | Some("no_sync") => {}
        Some("replica") => {
            return Err(ApiError::bad(
                "priority `replica` (keep the existing replicas' data) is not supported: a recovery \
                 replaces the collection's data with the snapshot's on every replica; use `snapshot`",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad(format!(
                "unknown priority {other:?}: use `snapshot`, `no_sync` or `replica`"
            )));
        }
    }
    let loc = req.location.trim();
    if loc.starts_with("file://") {
        return Ok((st.cluster.snapshots().local_location(loc)?, None));
    }
    if !(loc.starts_with("http://") || loc.starts_with("https://")) {
        return Err(ApiError::bad(format!(
            "location {loc:?}: use a file:// URL of a file in this node's snapshots directory or an http(s):// URL"
        )));
    }
    let root = st.cluster.snapshots().root();
    let url = loc.to_owned();
    let key = req.api_key.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&root).map_err(|e| ApiError::Internal(e.to_string()))?;
        let staging = Staging::new(&root, "download")?;
        let file = staging.path().join("download.snapshot");
        fetch(&url, key.as_deref(), &file)?;
        Ok((file, Some(staging)))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Downloads `url` to `dst`; any failure is a 400 naming the URL.
fn fetch(url: &str, api_key: Option<&str>, dst: &std::path::Path) -> Result<(), ApiError> {
    use std::time::Duration;
    let failed =
        |why: String| ApiError::bad(format!("cannot download the snapshot from {url}: {why}"));
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = agent.get(url);
    if let Some(k) = api_key {
        request = request.header("api-key", k);
    }
    let response = request.call().map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(failed(format!("HTTP status {status}")));
    }
    // The snapshot must fit beside what the node keeps writing: refused before a byte is
    // written when its announced length is too large, cut off where it outgrows the room.
    let dir = dst.parent().unwrap_or(std::path::Path::new("."));
    let budget = disk::download_budget(dir).map_err(|e| ApiError::Internal(e.to_string()))?;
    let too_large = |size: String| {
        ApiError::TooLarge(format!(
            "cannot download the snapshot from {url}: it is {size}, and the disk holding {} has              room for {budget} bytes (keeping {} free)",
            dir.display(),
            disk::FREE_SPACE_RESERVE
        ))
    };
    let announced = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced.filter(|len| *len > budget) {
        return Err(too_large(format!("{len} bytes")));
    }
    let mut out = std::fs::File::create(dst).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut body = response.into_body();
    let mut capped = std::io::Read::take(body.as_reader(), budget.saturating_add(1));
    let copied = std::io::copy(&mut capped, &mut out).map_err(|e| failed(e.to_string()))?;
    if copied > budget {
        drop(out);
        let _ = std::fs::remove_file(dst);
        return Err(too_large(format!("more than {budget} bytes")));
    }
    out.sync_all()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(())
}

// ------------------------------------------------------------------------- collection

/// Create a snapshot of the collection: every shard (each must have a replica on this node,
/// else a 400 naming the shard).
#[utoipa::path(post, path = "/collections/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "collection or alias"), WaitQuery),
    responses((status = 200, body = SnapshotDescription), (status = 202, description = "wait=false: accepted"), (status = 400), (status = 404)))]
pub async fn create_snapshot(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_of(p)?;
    create(st, Scope::Collection(name), wait_of(q)?).await
}

/// The collection's snapshots on this node.
#[utoipa::path(get, path = "/collections/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "collection or alias")),
    responses((status = 200, body = Vec<SnapshotDescription>), (status = 404)))]
pub async fn list_snapshots(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    list(&st, &Scope::Collection(path_of(p)?))
}

/// Download a collection snapshot.
#[utoipa::path(get, path = "/collections/{name}/snapshots/{snapshot_name}", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("snapshot_name" = String, Path)),
    responses((status = 200, description = "the snapshot file", content_type = "application/octet-stream"), (status = 400), (status = 404)))]
pub async fn get_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (name, snap) = path_of(p)?;
    download(&st, &Scope::Collection(name), &snap).await
}

/// Delete a collection snapshot.
#[utoipa::path(delete, path = "/collections/{name}/snapshots/{snapshot_name}", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("snapshot_name" = String, Path), WaitQuery),
    responses((status = 200, body = bool), (status = 400), (status = 404)))]
pub async fn delete_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (name, snap) = path_of(p)?;
    wait_of(q)?;
    delete(&st, &Scope::Collection(name), &snap)
}

/// Recover a collection from a collection snapshot: an existing collection of that name is
/// replaced; the snapshot's configuration, payload indexes and points are written through the
/// replicated paths.
#[utoipa::path(put, path = "/collections/{name}/snapshots/recover", tag = "snapshots",
    params(("name" = String, Path, description = "the collection to (re)create"), WaitQuery), request_body = SnapshotRecover,
    responses((status = 200, body = bool), (status = 202, description = "wait=false: accepted"), (status = 400), (status = 404)))]
pub async fn recover_snapshot(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    JsonBody(req): JsonBody<SnapshotRecover>,
) -> Result<Response, ApiError> {
    let name = path_of(p)?;
    let wait = wait_of(q)?;
    crate::collection::limits::validate_name(&name)?;
    let (path, staging) = locate(&st, &req).await?;
    let checksum = req.checksum.clone();
    run(wait, "snapshot recovery", async move {
        let _staging = staging;
        st.router.recover_collection(&name, path, checksum).await?;
        Ok::<bool, ApiError>(true)
    })
    .await
}

// ------------------------------------------------------------------------- shard

/// Create a snapshot of one shard (its replica on this node).
#[utoipa::path(post, path = "/collections/{name}/shards/{shard_id}/snapshots", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("shard_id" = u32, Path), WaitQuery),
    responses((status = 200, body = SnapshotDescription), (status = 202, description = "wait=false: accepted"), (status = 400), (status = 404)))]
pub async fn create_shard_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, u32)>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (name, shard) = path_of(p)?;
    create(st, Scope::Shard(name, shard), wait_of(q)?).await
}

/// The shard's snapshots on this node.
#[utoipa::path(get, path = "/collections/{name}/shards/{shard_id}/snapshots", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("shard_id" = u32, Path)),
    responses((status = 200, body = Vec<SnapshotDescription>), (status = 400), (status = 404)))]
pub async fn list_shard_snapshots(
    State(st): State<AppState>,
    p: Result<Path<(String, u32)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (name, shard) = path_of(p)?;
    list(&st, &Scope::Shard(name, shard))
}

/// Download a shard snapshot.
#[utoipa::path(get, path = "/collections/{name}/shards/{shard_id}/snapshots/{snapshot_name}", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("shard_id" = u32, Path), ("snapshot_name" = String, Path)),
    responses((status = 200, description = "the snapshot file", content_type = "application/octet-stream"), (status = 400), (status = 404)))]
pub async fn get_shard_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, u32, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (name, shard, snap) = path_of(p)?;
    download(&st, &Scope::Shard(name, shard), &snap).await
}

/// Delete a shard snapshot.
#[utoipa::path(delete, path = "/collections/{name}/shards/{shard_id}/snapshots/{snapshot_name}", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("shard_id" = u32, Path), ("snapshot_name" = String, Path), WaitQuery),
    responses((status = 200, body = bool), (status = 400), (status = 404)))]
pub async fn delete_shard_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, u32, String)>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (name, shard, snap) = path_of(p)?;
    wait_of(q)?;
    delete(&st, &Scope::Shard(name, shard), &snap)
}

/// Recover one shard of an existing collection from a shard snapshot of the same shard of a
/// collection of the same shape (hash placement): the shard's points are replaced.
#[utoipa::path(put, path = "/collections/{name}/shards/{shard_id}/snapshots/recover", tag = "snapshots",
    params(("name" = String, Path, description = "collection or alias"), ("shard_id" = u32, Path), WaitQuery), request_body = SnapshotRecover,
    responses((status = 200, body = bool), (status = 202, description = "wait=false: accepted"), (status = 400), (status = 404)))]
pub async fn recover_shard_snapshot(
    State(st): State<AppState>,
    p: Result<Path<(String, u32)>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    JsonBody(req): JsonBody<SnapshotRecover>,
) -> Result<Response, ApiError> {
    let (name, shard) = path_of(p)?;
    let wait = wait_of(q)?;
    st.cluster
        .snapshots()
        .resolve(&Scope::Shard(name.clone(), shard))?;
    let (path, staging) = locate(&st, &req).await?;
    let checksum = req.checksum.clone();
    run(wait, "shard snapshot recovery", async move {
        let _staging = staging;
        st.router
            .recover_shard(&name, shard, path, checksum)
            .await?;
        Ok::<bool, ApiError>(true)
    })
    .await
}

// ------------------------------------------------------------------------- full

/// Create a snapshot of every collection (each shard must have a replica on this node).
#[utoipa::path(post, path = "/snapshots", tag = "snapshots", params(WaitQuery),
    responses((status = 200, body = SnapshotDescription), (status = 202, description = "wait=false: accepted"), (status = 400)))]
pub async fn create_full_snapshot(
    State(st): State<AppState>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    create(st, Scope::Full, wait_of(q)?).await
}

/// The full snapshots on this node.
#[utoipa::path(get, path = "/snapshots", tag = "snapshots",
    responses((status = 200, body = Vec<SnapshotDescription>)))]
pub async fn list_full_snapshots(State(st): State<AppState>) -> Result<Response, ApiError> {
    list(&st, &Scope::Full)
}

/// Download a full snapshot.
#[utoipa::path(get, path = "/snapshots/{snapshot_name}", tag = "snapshots", params(("snapshot_name" = String, Path)),
    responses((status = 200, description = "the snapshot file", content_type = "application/octet-stream"), (status = 400), (status = 404)))]
pub async fn get_full_snapshot(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let snap = path_of(p)?;
    download(&st, &Scope::Full, &snap).await
}

/// Delete a full snapshot.
#[utoipa::path(delete, path = "/snapshots/{snapshot_name}", tag = "snapshots", params(("snapshot_name" = String, Path), WaitQuery),
    responses((status = 200, body = bool), (status = 400), (status = 404)))]
pub async fn delete_full_snapshot(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let snap = path_of(p)?;
    wait_of(q)?;
    delete(&st, &Scope::Full, &snap)
}
