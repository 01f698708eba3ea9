//! Facet counts in Qdrant's shape: `POST /collections/{name}/facet` with
//! `{"key", "filter", "limit", "exact"}` answers `{"hits": [{"value", "count"}]}`, the most
//! frequent values first (ties by value). Counts are always exact (`exact` is accepted); the key
//! must have a keyword, integer or bool payload index, as Qdrant requires (a 400 naming the key
//! otherwise). The work is [`crate::router::Router::facet`].

use super::error::ApiError;
use super::points::{answer, read_options};
use super::types::{ReadFields, ReadQuery};
use super::{AppState, JsonBody};
use crate::shard::Filter;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /collections/{name}/facet`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FacetRequest {
    /// The indexed payload key (keyword, integer or bool index).
    pub key: String,
    /// Count only matching points.
    pub filter: Option<Filter>,
    /// Most values answered (default 10).
    pub limit: Option<usize>,
    /// Accepted; counts are always exact.
    pub exact: Option<bool>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// One value and how many points hold it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FacetHit {
    /// The value.
    #[schema(value_type = Object)]
    pub value: Value,
    /// Points holding it.
    pub count: u64,
}

/// `{"hits": [...]}`, the most frequent first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FacetResponse {
    /// The values.
    pub hits: Vec<FacetHit>,
}

/// Counts of the values of an indexed payload field.
#[utoipa::path(post, path = "/collections/{name}/facet", tag = "points", request_body = FacetRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = FacetResponse), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn facet(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<FacetRequest>,
) -> Result<Response, ApiError> {
    st.router.collection_config(&name)?;
    let read = read_options(&q, &req.read)?;
    let limit = req.limit.unwrap_or(10);
    let a = st
        .router
        .facet(&name, &req.key, req.filter.clone(), limit, &read)
        .await?;
    let hits = a
        .value
        .into_iter()
        .map(|(v, count)| FacetHit {
            value: v.to_json(),
            count,
        })
        .collect();
    Ok(answer(
        FacetResponse { hits },
        &a.missing_shards.into_iter().collect(),
    ))
}
