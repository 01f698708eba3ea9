//! Qdrant's `GET /collections/{name}/optimizations` (qdrant-client's `get_optimizations`):
//! the index builds and merges this node's replicas of the collection are running, the merge
//! each would start next (`?with=queued`), the last jobs each finished (`?with=completed`, at
//! most 64 per replica, `completed_limit` caps the list) and the sealed segments no job holds
//! or would take (`?with=idle_segments`), from [`crate::cluster::telemetry::local_optimizations`].
//! Segment and job UUIDs encode the shard's Raft group (high 64 bits) and the segment id (low
//! 64 bits); a job carries the id of the segment it produces, as Qdrant's does (an index build
//! keeps its segment's id). `total` in a job's progress is the rows it reads; shoal does not
//! count rows done while a job runs, so a running job has no `done`.

use super::error::ApiError;
use super::{AppState, ok};
use crate::cluster::status::rfc3339;
use crate::raft::GroupId;
use crate::shard::JobRecord;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

/// The query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptimizationsQuery {
    /// Comma-separated: `queued`, `completed`, `idle_segments`.
    pub with: Option<String>,
    /// Most completed jobs listed (implies `completed`).
    pub completed_limit: Option<usize>,
}

fn segment_uuid(group: GroupId, segment: u32) -> String {
    uuid::Uuid::from_u128((u128::from(group) << 64) | u128::from(segment)).to_string()
}

fn segments(group: GroupId, segs: &[(u32, usize)]) -> Vec<Value> {
    segs.iter()
        .map(|(id, points)| json!({"uuid": segment_uuid(group, *id), "points_count": points}))
        .collect()
}

fn job(group: GroupId, r: &JobRecord) -> Value {
    let mut progress = json!({
        "name": r.kind.name(),
        "started_at": rfc3339(r.started),
        "total": r.rows,
    });
    if let Some(end) = r.finished {
        progress["finished_at"] = json!(rfc3339(end));
        progress["duration_sec"] = json!(
            end.duration_since(r.started)
                .unwrap_or_default()
                .as_secs_f64()
        );
        progress["done"] = json!(r.rows);
    }
    json!({
        "uuid": segment_uuid(group, r.output),
        "optimizer": r.kind.name(),
        "status": if r.finished.is_some() { "done" } else { "optimizing" },
        "segments": segments(group, &r.sources),
        "progress": progress,
    })
}

/// Index builds and merges of this node's replicas of the collection: running, and as asked
/// queued, completed and idle segments.
#[utoipa::path(get, path = "/collections/{name}/optimizations", tag = "collections",
    params(("name" = String, Path), OptimizationsQuery),
    responses((status = 200, body = Object), (status = 400), (status = 404)))]
pub async fn get_optimizations(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<OptimizationsQuery>,
) -> Result<Response, ApiError> {
    let (mut queued, mut completed, mut idle) = (false, q.completed_limit.is_some(), false);
    for w in q.with.iter().flat_map(|w| w.split(',')).map(str::trim) {
        match w {
            "queued" => queued = true,
            "completed" => completed = true,
            "idle_segments" => idle = true,
            "" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "with = {other:?}: expected queued, completed or idle_segments"
                )));
            }
        }
    }
    let shards = crate::cluster::telemetry::local_optimizations(&st.cluster, &name)
        .ok_or_else(|| ApiError::CollectionNotFound(name.clone()))?;
    let mut running = Vec::new();
    let mut pending = Vec::new();
    let mut done: Vec<(std::time::SystemTime, Value)> = Vec::new();
    let mut idle_segs = Vec::new();
    let (mut queued_segments, mut queued_points, mut idle_count) = (0usize, 0usize, 0usize);
    for (_, group, o) in &shards {
        running.extend(o.running.iter().map(|r| job(*group, r)));
        for plan in &o.queued {
            queued_segments += plan.len();
            queued_points += plan.iter().map(|(_, p)| p).sum::<usize>();
            pending.push(json!({"optimizer": "merge", "segments": segments(*group, plan)}));
        }
        idle_count += o.idle.len();
        idle_segs.extend(segments(*group, &o.idle));
        done.extend(
            o.completed
                .iter()
                .map(|r| (r.finished.unwrap_or(r.started), job(*group, r))),
        );
    }
    let mut out = json!({
        "summary": {
            "queued_optimizations": pending.len(),
            "queued_segments": queued_segments,
            "queued_points": queued_points,
            "idle_segments": idle_count,
        },
        "running": running,
    });
    if queued {
        out["queued"] = json!(pending);
    }
    if completed {
        // Most recent first, over every shard.
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        let limit = q.completed_limit.unwrap_or(usize::MAX);
        out["completed"] = Value::Array(done.into_iter().take(limit).map(|(_, v)| v).collect());
    }
    if idle {
        out["idle_segments"] = json!(idle_segs);
    }
    Ok(ok(out))
}
