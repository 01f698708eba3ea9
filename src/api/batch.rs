//! `POST /collections/{name}/points/batch` (qdrant-client's `batch_update_points`): a list of
//! writes — `upsert`, `delete`, `set_payload`, `overwrite_payload`, `delete_payload`,
//! `clear_payload`, `update_vectors`, `delete_vectors` — applied in order, each as its own
//! route applies it.
//!
//! Every operation is parsed and checked before the first is applied, so a malformed batch
//! changes nothing and its 400 names the operation (`operations[2]: …`). Applying is not atomic,
//! as in Qdrant: if the cluster fails part-way, the operations before the failing one stay
//! applied (each was acknowledged by its shards' Raft groups). The answer is one
//! `UpdateResult` per operation, in order.

use super::error::ApiError;
use super::payload::{
    DeletePayload, PayloadTarget, SetPayload, clear_command, delete_command, overwrite_command,
    set_command,
};
use super::points::{
    DeleteTarget, apply_delete, delete_target, points_to_write, update_result, vector_deletes,
    vector_updates,
};
use super::types::{
    DeletePoints, DeleteVectors, UpdateResult, UpdateVectors, UpsertPoints, WriteQuery,
};
use super::vectors::VectorLayout;
use super::{AppState, JsonBody, ok};
use crate::router::WriteAck;
use crate::shard::{PointWrite, ShardCommand, VectorUpdate};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /collections/{name}/points/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchUpdate {
    /// The operations, in order, each `{"<kind>": body}` with the body of the route of that
    /// kind (`upsert`: `points` or `batch`; `delete`: `points` or `filter`; `set_payload`,
    /// `overwrite_payload`, `delete_payload`, `clear_payload`: as their routes).
    #[schema(value_type = Vec<Object>)]
    pub operations: Vec<Value>,
}

/// One operation as Qdrant writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Operation {
    Upsert(UpsertPoints),
    Delete(DeletePoints),
    SetPayload(SetPayload),
    OverwritePayload(SetPayload),
    DeletePayload(DeletePayload),
    ClearPayload(PayloadTarget),
    UpdateVectors(UpdateVectors),
    DeleteVectors(DeleteVectors),
}

/// An operation checked and ready to apply.
enum Checked {
    Upsert(Vec<PointWrite>),
    UpdateVectors(Vec<VectorUpdate>),
    Delete(DeleteTarget),
    EveryShard(ShardCommand),
}

/// Parses and checks operation `i`.
fn check(st: &AppState, layout: &VectorLayout, i: usize, op: Value) -> Result<Checked, ApiError> {
    let at = |e: ApiError| match e {
        ApiError::BadRequest(m) => ApiError::bad(format!("operations[{i}]: {m}")),
        other => other,
    };
    let limits = &st.config.limits;
    let op: Operation = serde_json::from_value(op).map_err(|e| at(ApiError::bad(e.to_string())))?;
    let checked = match op {
        Operation::Upsert(req) => points_to_write(limits, layout, &req).map(Checked::Upsert),
        Operation::Delete(req) => delete_target(limits, &req).map(Checked::Delete),
        Operation::SetPayload(req) => set_command(limits, req).map(Checked::EveryShard),
        Operation::OverwritePayload(req) => overwrite_command(limits, req).map(Checked::EveryShard),
        Operation::DeletePayload(req) => delete_command(limits, req).map(Checked::EveryShard),
        Operation::ClearPayload(req) => clear_command(limits, &req).map(Checked::EveryShard),
        Operation::UpdateVectors(req) => {
            vector_updates(limits, layout, &req).map(Checked::UpdateVectors)
        }
        Operation::DeleteVectors(req) => {
            vector_deletes(limits, layout, &req).map(Checked::EveryShard)
        }
    };
    checked.map_err(at)
}

/// Apply a list of writes in order.
#[utoipa::path(post, path = "/collections/{name}/points/batch", tag = "points", request_body = BatchUpdate,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = Vec<UpdateResult>), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn batch_update(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<BatchUpdate>,
) -> Result<Response, ApiError> {
    let layout = VectorLayout::of(&st, &name)?;
    if req.operations.is_empty() {
        return Err(ApiError::bad("no operations"));
    }
    st.config
        .limits
        .check_points(req.operations.len(), "operations")?;
    let checked = req
        .operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| check(&st, &layout, i, op))
        .collect::<Result<Vec<_>, _>>()?;
    let upserted: usize = checked
        .iter()
        .map(|c| match c {
            Checked::Upsert(p) => p.len(),
            _ => 0,
        })
        .sum();
    st.config.limits.check_points(upserted, "points")?;
    let mut out = Vec::with_capacity(checked.len());
    for op in checked {
        let ack: WriteAck = match op {
            Checked::Upsert(points) => st.router.upsert(&name, points).await?,
            Checked::UpdateVectors(updates) => st.router.update_vectors(&name, updates).await?,
            Checked::Delete(target) => apply_delete(&st, &name, target).await?,
            Checked::EveryShard(command) => st.router.write_every_shard(&name, command).await?,
        };
        out.push(update_result(ack));
    }
    Ok(ok(out))
}
