//! The distance matrix in Qdrant's shapes (qdrant-client's `search_matrix_pairs` and
//! `search_matrix_offsets`): `POST /collections/{name}/points/search/matrix/pairs` and
//! `.../offsets` with `{"sample", "limit", "filter"}` take `sample` random points passing the
//! filter (default 10; fewer if fewer match) and answer, for each, its `limit` nearest other
//! sampled points (default 3) with exact scores, best first: as `{"pairs": [{"a", "b",
//! "score"}]}`, or as `{"ids", "offsets_row", "offsets_col", "scores"}` (row and column are
//! indexes into `ids`). A new random sample each call. The work is
//! [`crate::router::Router::distance_matrix`]; the bounds are
//! [`crate::collection::limits::check_matrix`].

use super::error::ApiError;
use super::points::{answer, read_options, score};
use super::types::{ReadFields, ReadQuery};
use super::vectors::VectorLayout;
use super::{AppState, JsonBody};
use crate::router::matrix::DistanceMatrix;
use crate::shard::Filter;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// Qdrant's default `sample`.
const DEFAULT_SAMPLE: usize = 10;
/// Qdrant's default `limit`.
const DEFAULT_LIMIT: usize = 3;

/// The body of both matrix routes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchMatrixRequest {
    /// Sample only points passing this filter.
    pub filter: Option<Filter>,
    /// Points sampled (default 10; 2 to 1000, and `sample × dim` at most 4194304).
    pub sample: Option<usize>,
    /// Neighbours per sampled point (default 3).
    pub limit: Option<usize>,
    /// The vector name (absent or `""` for the unnamed vector).
    pub using: Option<String>,
    /// Refused: shoal has no shard keys.
    #[schema(value_type = Option<Object>)]
    pub shard_key: Option<Value>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// One pair: `b` is among the nearest sampled points to `a`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatrixPair {
    /// A sampled point.
    #[schema(value_type = Object)]
    pub a: Value,
    /// One of its nearest other sampled points.
    #[schema(value_type = Object)]
    pub b: Value,
    /// Their score under the collection's metric.
    pub score: f32,
}

/// `{"pairs": [...]}`: per sampled point (in sample order) its neighbours, best first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatrixPairs {
    /// The pairs.
    pub pairs: Vec<MatrixPair>,
}

/// The same matrix as coordinates: `scores[k]` is between `ids[offsets_row[k]]` and
/// `ids[offsets_col[k]]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatrixOffsets {
    /// Row of each score (an index into `ids`).
    pub offsets_row: Vec<u64>,
    /// Column of each score (an index into `ids`).
    pub offsets_col: Vec<u64>,
    /// The scores.
    pub scores: Vec<f32>,
    /// The sampled points.
    #[schema(value_type = Vec<Object>)]
    pub ids: Vec<Value>,
}

/// The checked request run through the router, with each distance turned into Qdrant's score.
async fn matrix(
    st: &AppState,
    name: &str,
    q: &ReadQuery,
    req: SearchMatrixRequest,
) -> Result<(DistanceMatrix, Vec<Vec<(usize, f32)>>, BTreeSet<u32>), ApiError> {
    let layout = VectorLayout::of(st, name)?;
    let config = layout.lane_config(layout.lane_of(req.using.as_deref())?);
    if req.shard_key.as_ref().is_some_and(|k| !k.is_null()) {
        return Err(ApiError::bad(
            "shard_key is not supported: shoal has no shard keys (its shards are placed by hash or centroid)",
        ));
    }
    let read = read_options(q, &req.read)?;
    let a = st
        .router
        .distance_matrix(
            name,
            req.using.as_deref(),
            req.sample.unwrap_or(DEFAULT_SAMPLE),
            req.limit.unwrap_or(DEFAULT_LIMIT),
            req.filter,
            &read,
        )
        .await?;
    let metric = config.metric();
    let scored = a
        .value
        .rows
        .iter()
        .map(|row| row.iter().map(|&(j, d)| (j, score(metric, d))).collect())
        .collect();
    Ok((a.value, scored, a.missing_shards.into_iter().collect()))
}

/// Each sampled point's nearest other sampled points, as pairs.
#[utoipa::path(post, path = "/collections/{name}/points/search/matrix/pairs", tag = "points",
    request_body = SearchMatrixRequest, params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = MatrixPairs), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn matrix_pairs(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<SearchMatrixRequest>,
) -> Result<Response, ApiError> {
    let (m, rows, missing) = matrix(&st, &name, &q, req).await?;
    let pairs = rows
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            let m = &m;
            row.iter().map(move |&(j, score)| MatrixPair {
                a: m.ids[i].to_json(),
                b: m.ids[j].to_json(),
                score,
            })
        })
        .collect();
    Ok(answer(MatrixPairs { pairs }, &missing))
}

/// Each sampled point's nearest other sampled points, as a sparse matrix over `ids`.
#[utoipa::path(post, path = "/collections/{name}/points/search/matrix/offsets", tag = "points",
    request_body = SearchMatrixRequest, params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = MatrixOffsets), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn matrix_offsets(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<SearchMatrixRequest>,
) -> Result<Response, ApiError> {
    let (m, rows, missing) = matrix(&st, &name, &q, req).await?;
    let mut out = MatrixOffsets {
        offsets_row: Vec::new(),
        offsets_col: Vec::new(),
        scores: Vec::new(),
        ids: m.ids.iter().map(|id| id.to_json()).collect(),
    };
    for (i, row) in rows.iter().enumerate() {
        for &(j, s) in row {
            out.offsets_row.push(i as u64);
            out.offsets_col.push(j as u64);
            out.scores.push(s);
        }
    }
    Ok(answer(out, &missing))
}
