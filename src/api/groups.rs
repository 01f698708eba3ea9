//! Grouped search in Qdrant's shapes: `POST /collections/{name}/points/search/groups` and
//! `POST /collections/{name}/points/query/groups`. The body is a search (or universal query)
//! body plus `group_by`, `group_size` and `limit` (the number of groups); it is checked as the
//! plain search is, then [`crate::router::Router::search_groups`] gathers and groups the hits
//! across shards. Answers `{"groups": [{"id": value, "hits": [scored points]}]}`.

use super::error::ApiError;
use super::points::{Prepared, answer, prepare, prepare_query, read_options, scored, search_input};
use super::types::{QueryRequest, ReadQuery, ScoredPoint, SearchRequestBody};
use super::{AppState, JsonBody};
use crate::collection::Metric;
use crate::router::groups::{Group, Grouping};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Qdrant's default `group_size` of a query.
const DEFAULT_GROUP_SIZE: usize = 3;

/// `POST /collections/{name}/points/search/groups`: a search body (its `limit` is the number
/// of groups) plus the grouping.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchGroupsRequest {
    /// The search; `limit` is the most groups.
    #[serde(flatten)]
    pub search: SearchRequestBody,
    /// The payload key whose string or integer values form the groups.
    pub group_by: String,
    /// Most hits per group (default 3).
    pub group_size: Option<usize>,
    /// Not supported (refused).
    #[schema(value_type = Option<Object>)]
    pub with_lookup: Option<Value>,
}

/// `POST /collections/{name}/points/query/groups`: a query body (its `limit`, default 10, is
/// the number of groups) plus the grouping.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryGroupsRequest {
    /// The query; `limit` is the most groups.
    #[serde(flatten)]
    pub query: QueryRequest,
    /// The payload key whose string or integer values form the groups.
    pub group_by: String,
    /// Most hits per group (default 3).
    pub group_size: Option<usize>,
    /// Not supported (refused).
    #[schema(value_type = Option<Object>)]
    pub with_lookup: Option<Value>,
}

/// One group of an answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PointGroup {
    /// The value its hits share.
    #[schema(value_type = Object)]
    pub id: Value,
    /// Its hits, best first.
    pub hits: Vec<ScoredPoint>,
}

/// `{"groups": [...]}`, best group first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupsResult {
    /// The groups.
    pub groups: Vec<PointGroup>,
}

fn grouping(
    group_by: &str,
    group_size: Option<usize>,
    limit: usize,
    with_lookup: Option<&Value>,
    offset: Option<usize>,
) -> Result<Grouping, ApiError> {
    if with_lookup.is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad("with_lookup is not supported"));
    }
    if offset.is_some_and(|o| o > 0) {
        return Err(ApiError::bad("offset is not supported with group_by"));
    }
    let g = Grouping {
        group_by: group_by.to_owned(),
        group_size: group_size.unwrap_or(DEFAULT_GROUP_SIZE),
        limit,
    };
    g.check()?;
    Ok(g)
}

/// The groups as Qdrant answers them: hits scored, selected and thresholded as a plain
/// search's are; a group left with no hit is dropped.
fn groups_out(metric: Metric, p: &Prepared, groups: Vec<Group>) -> GroupsResult {
    GroupsResult {
        groups: groups
            .into_iter()
            .map(|g| PointGroup {
                id: g.id,
                hits: scored(metric, p, g.hits),
            })
            .filter(|g| !g.hits.is_empty())
            .collect(),
    }
}

/// Nearest neighbours grouped by a payload field (Qdrant's older search API).
#[utoipa::path(post, path = "/collections/{name}/points/search/groups", tag = "search", request_body = SearchGroupsRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = GroupsResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn search_groups(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<SearchGroupsRequest>,
) -> Result<Response, ApiError> {
    let cfg = st.router.collection_config(&name)?;
    let read = read_options(&q, &req.search.read)?;
    let g = grouping(
        &req.group_by,
        req.group_size,
        req.search.limit,
        req.with_lookup.as_ref(),
        req.search.offset,
    )?;
    let p = prepare(
        &st.config.limits,
        &cfg,
        search_input(&req.search),
        "query vector",
    )?;
    let a = st.router.search_groups(&name, &p.query, &g, &read).await?;
    Ok(answer(
        groups_out(cfg.metric(), &p, a.value),
        &a.missing_shards.into_iter().collect(),
    ))
}

/// Nearest neighbours grouped by a payload field (Qdrant's universal query API).
#[utoipa::path(post, path = "/collections/{name}/points/query/groups", tag = "search", request_body = QueryGroupsRequest,
    params(("name" = String, Path), ReadQuery),
    responses((status = 200, body = GroupsResult), (status = 400), (status = 404), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn query_groups(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    JsonBody(req): JsonBody<QueryGroupsRequest>,
) -> Result<Response, ApiError> {
    let cfg = st.router.collection_config(&name)?;
    let read = read_options(&q, &req.query.read)?;
    let g = grouping(
        &req.group_by,
        req.group_size,
        req.query.limit.unwrap_or(10),
        req.with_lookup.as_ref(),
        req.query.offset,
    )?;
    let p = prepare_query(&st, &name, &cfg, &req.query, &read, "query").await?;
    // A query by example leaves its examples out: it asks for that many more per group.
    let g = Grouping {
        group_size: g.group_size + p.exclude.len(),
        ..g
    };
    let mut p = p;
    p.window = None;
    let a = st.router.search_groups(&name, &p.query, &g, &read).await?;
    let mut out = groups_out(cfg.metric(), &p, a.value);
    for grp in &mut out.groups {
        grp.hits.truncate(g.group_size - p.exclude.len());
    }
    Ok(answer(out, &a.missing_shards.into_iter().collect()))
}
