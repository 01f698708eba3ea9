//! Payload indexes and payload updates, as Qdrant's REST API has them.
//!
//! - `PUT /collections/{name}/index` `{"field_name", "field_schema"}` and
//!   `DELETE /collections/{name}/index/{field}`: a payload index on every shard
//!   ([`crate::shard::payload_index`] says what each type answers).
//! - `POST /collections/{name}/points/payload` (set: merge keys, optionally under `key`),
//!   `PUT /collections/{name}/points/payload` (overwrite), `POST .../points/payload/delete`
//!   (`keys`) and `POST .../points/payload/clear`, each on `points` (ids) or `filter`.
//!
//! Every one is a shard command replicated through each shard's Raft group like an upsert, so
//! the indexes and payloads of every replica stay the same; the answer is the usual write
//! answer with a consistency token.

use super::error::ApiError;
use super::points::write_answer;
use super::types::{UpdateResult, WriteQuery};
use super::{AppState, JsonBody, parse};
use crate::collection::limits::RequestLimits;
use crate::shard::{Filter, Payload, PayloadFieldType, PointSelector, ShardCommand};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `PUT /collections/{name}/index`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFieldIndex {
    /// The payload key to index (`a.b` and `items[].sku` paths are accepted).
    pub field_name: String,
    /// `keyword`, `integer`, `float`, `bool`, `uuid`, `datetime` or `text`, or
    /// `{"type": name}`. Qdrant's type-specific options are refused by name.
    #[schema(value_type = Object)]
    pub field_schema: Option<Value>,
    /// Qdrant's `field_type` alias of `field_schema` (older clients send it).
    #[schema(value_type = Object)]
    pub field_type: Option<Value>,
}

/// The points a payload update applies to: `points` (ids) or `filter`, exactly one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PayloadTarget {
    /// Ids of the points to update.
    #[schema(value_type = Option<Vec<Object>>)]
    pub points: Option<Vec<Value>>,
    /// Update every point matching.
    pub filter: Option<Filter>,
    /// Accepted for Qdrant compatibility; shoal has no shard keys.
    #[schema(value_type = Option<Object>)]
    pub shard_key: Option<Value>,
}

/// `POST|PUT /collections/{name}/points/payload`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetPayload {
    /// The keys to set (set) or the whole new payload (overwrite).
    #[schema(value_type = Object)]
    pub payload: Payload,
    /// Set the keys inside the object at this dotted path (set only).
    pub key: Option<String>,
    /// Which points.
    #[serde(flatten)]
    pub target: PayloadTarget,
}

/// `POST /collections/{name}/points/payload/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletePayload {
    /// The keys to remove (dotted paths reach into nested objects).
    pub keys: Vec<String>,
    /// Which points.
    #[serde(flatten)]
    pub target: PayloadTarget,
}

fn selector(limits: &RequestLimits, target: &PayloadTarget) -> Result<PointSelector, ApiError> {
    match (&target.points, &target.filter) {
        (Some(ids), None) => {
            limits.check_points(ids.len(), "ids")?;
            Ok(PointSelector::Ids(parse::ids(ids)?))
        }
        (None, Some(f)) => {
            limits.check_filter(f)?;
            f.compile().map_err(|e| ApiError::bad(e.to_string()))?;
            Ok(PointSelector::Filter(f.clone()))
        }
        _ => Err(ApiError::bad(
            "give exactly one of `points` (ids) or `filter`",
        )),
    }
}

/// The command of a set-payload body.
pub(super) fn set_command(
    limits: &RequestLimits,
    req: SetPayload,
) -> Result<ShardCommand, ApiError> {
    if req.key.as_deref() == Some("") {
        return Err(ApiError::bad("`key` must not be empty"));
    }
    Ok(ShardCommand::SetPayload {
        points: selector(limits, &req.target)?,
        payload: req.payload,
        key: req.key,
    })
}

/// The command of an overwrite-payload body.
pub(super) fn overwrite_command(
    limits: &RequestLimits,
    req: SetPayload,
) -> Result<ShardCommand, ApiError> {
    if req.key.is_some() {
        return Err(ApiError::bad(
            "`key` applies to set_payload only: overwrite replaces the whole payload",
        ));
    }
    Ok(ShardCommand::OverwritePayload {
        points: selector(limits, &req.target)?,
        payload: req.payload,
    })
}

/// The command of a delete-payload body.
pub(super) fn delete_command(
    limits: &RequestLimits,
    req: DeletePayload,
) -> Result<ShardCommand, ApiError> {
    if req.keys.iter().any(String::is_empty) {
        return Err(ApiError::bad("payload keys must not be empty"));
    }
    Ok(ShardCommand::DeletePayload {
        points: selector(limits, &req.target)?,
        keys: req.keys,
    })
}

/// The command of a clear-payload body.
pub(super) fn clear_command(
    limits: &RequestLimits,
    req: &PayloadTarget,
) -> Result<ShardCommand, ApiError> {
    Ok(ShardCommand::ClearPayload {
        points: selector(limits, req)?,
    })
}

/// Builds a command from the request (once the collection is known to exist: a missing
/// collection is a 404 before anything in the body is judged), sends it to every shard and
/// answers as every write does.
async fn write_to_every_shard(
    st: &AppState,
    name: &str,
    command: impl FnOnce() -> Result<ShardCommand, ApiError>,
) -> Result<Response, ApiError> {
    st.router.collection_config(name)?;
    let command = command()?;
    Ok(write_answer(
        st.router.write_every_shard(name, command).await?,
    ))
}

/// Create a payload index on a field of every shard.
#[utoipa::path(put, path = "/collections/{name}/index", tag = "payload", request_body = CreateFieldIndex,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn create_field_index(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<CreateFieldIndex>,
) -> Result<Response, ApiError> {
    write_to_every_shard(&st, &name, move || {
        if req.field_name.is_empty() {
            return Err(ApiError::bad("`field_name` must not be empty"));
        }
        let schema = req
        .field_schema
        .as_ref()
        .or(req.field_type.as_ref())
        .ok_or_else(|| {
            ApiError::bad(
                "`field_schema` is required: keyword, integer, float, bool, uuid, datetime or text",
            )
        })?;
        let field_type = PayloadFieldType::from_schema(schema).map_err(ApiError::BadRequest)?;
        let command = ShardCommand::CreateFieldIndex {
            field: req.field_name,
            field_type,
        };
        Ok(command)
    })
    .await
}

/// Drop a field's payload index (nothing happens if it has none).
#[utoipa::path(delete, path = "/collections/{name}/index/{field}", tag = "payload",
    params(("name" = String, Path), ("field" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 404), (status = 503)))]
pub async fn delete_field_index(
    State(st): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    Query(_q): Query<WriteQuery>,
) -> Result<Response, ApiError> {
    write_to_every_shard(&st, &name, move || {
        let command = ShardCommand::DeleteFieldIndex { field };
        Ok(command)
    })
    .await
}

/// Merge keys into the payload of the selected points.
#[utoipa::path(post, path = "/collections/{name}/points/payload", tag = "payload", request_body = SetPayload,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn set_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<SetPayload>,
) -> Result<Response, ApiError> {
    let limits = st.config.limits;
    write_to_every_shard(&st, &name, move || set_command(&limits, req)).await
}

/// Replace the whole payload of the selected points.
#[utoipa::path(put, path = "/collections/{name}/points/payload", tag = "payload", request_body = SetPayload,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn overwrite_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<SetPayload>,
) -> Result<Response, ApiError> {
    let limits = st.config.limits;
    write_to_every_shard(&st, &name, move || overwrite_command(&limits, req)).await
}

/// Remove keys from the payload of the selected points.
#[utoipa::path(post, path = "/collections/{name}/points/payload/delete", tag = "payload", request_body = DeletePayload,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn delete_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<DeletePayload>,
) -> Result<Response, ApiError> {
    let limits = st.config.limits;
    write_to_every_shard(&st, &name, move || delete_command(&limits, req)).await
}

/// Remove the whole payload of the selected points.
#[utoipa::path(post, path = "/collections/{name}/points/payload/clear", tag = "payload", request_body = PayloadTarget,
    params(("name" = String, Path), ("wait" = Option<bool>, Query)),
    responses((status = 200, body = UpdateResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn clear_payload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(_q): Query<WriteQuery>,
    JsonBody(req): JsonBody<PayloadTarget>,
) -> Result<Response, ApiError> {
    let limits = st.config.limits;
    write_to_every_shard(&st, &name, move || clear_command(&limits, &req)).await
}
