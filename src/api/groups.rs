//! Grouped search in Qdrant's shapes: `POST /collections/{name}/points/search/groups` and
//! `POST /collections/{name}/points/query/groups`. The body is a search (or universal query)
//! body plus `group_by`, `group_size` and `limit` (the number of groups); it is checked as the
//! plain search is, then [`crate::router::Router::search_groups`] gathers and groups the hits
//! across shards. Answers `{"groups": [{"id": value, "hits": [scored points]}]}`.
//!
//! `score_threshold` leaves hits out before grouping (the router's [`Grouping::max_distance`]).
//! `with_lookup` (a collection name, or `{collection, with_payload, with_vectors}`) adds to each
//! group the point of that collection whose id is the group's value, as Qdrant does (e.g. the
//! document a group of chunks belongs to); a group whose value is not a point id there has none.

use super::error::ApiError;
use super::parse::{self, PayloadSelector};
use super::points::{
    Prepared, answer, prepare, prepare_query, read_options, record_out, scored, search_input,
};
use super::types::{QueryRequest, ReadQuery, RecordOut, ScoredPoint, SearchRequestBody};
use super::vectors::VectorLayout;
use super::{AppState, JsonBody};
use crate::router::ReadOptions;
use crate::router::groups::{Group, Grouping};
use crate::shard::PointId;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
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
    /// A collection name, or `{"collection": name, "with_payload": .., "with_vectors": ..}`:
    /// each group gains `lookup`, the point of that collection whose id is the group's value.
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
    /// A collection name, or `{"collection": name, "with_payload": .., "with_vectors": ..}`:
    /// each group gains `lookup`, the point of that collection whose id is the group's value.
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
    /// With `with_lookup`: the point of the lookup collection whose id is the group's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<RecordOut>,
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
    offset: Option<usize>,
    max_distance: Option<f32>,
) -> Result<Grouping, ApiError> {
    if offset.is_some_and(|o| o > 0) {
        return Err(ApiError::bad("offset is not supported with group_by"));
    }
    let g = Grouping {
        group_by: group_by.to_owned(),
        group_size: group_size.unwrap_or(DEFAULT_GROUP_SIZE),
        limit,
        max_distance,
    };
    g.check()?;
    Ok(g)
}

/// What `with_lookup` asks for.
struct Lookup {
    collection: String,
    payload: PayloadSelector,
    with_vector: bool,
    /// `with_vectors` as sent (a list names the vectors shown).
    vectors: Option<Value>,
}

/// Parses `with_lookup`: a collection name, or `{collection, with_payload (default true),
/// with_vectors (default false)}`; `null` is none.
fn lookup(v: Option<&Value>) -> Result<Option<Lookup>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(Lookup {
            collection: name.clone(),
            payload: PayloadSelector::All,
            with_vector: false,
            vectors: None,
        })),
        Some(Value::Object(o)) => {
            if let Some(k) = o
                .keys()
                .find(|k| !matches!(k.as_str(), "collection" | "with_payload" | "with_vectors"))
            {
                return Err(ApiError::bad(format!("with_lookup: unknown field `{k}`")));
            }
            let Some(Value::String(name)) = o.get("collection") else {
                return Err(ApiError::bad(
                    "with_lookup needs `collection`, the name of a collection",
                ));
            };
            Ok(Some(Lookup {
                collection: name.clone(),
                payload: parse::with_payload(o.get("with_payload"), true)?,
                with_vector: parse::with_vector(o.get("with_vectors"))?,
                vectors: o.get("with_vectors").cloned(),
            }))
        }
        Some(_) => Err(ApiError::bad(
            "with_lookup must be a collection name or an object with `collection`",
        )),
    }
}

/// Adds to each group the lookup collection's point whose id is the group's value.
async fn look_up(
    st: &AppState,
    lookup: &Lookup,
    read: &ReadOptions,
    out: &mut GroupsResult,
    missing: &mut BTreeSet<u32>,
) -> Result<(), ApiError> {
    let ids: Vec<PointId> = out
        .groups
        .iter()
        .filter_map(|g| parse::id(&g.id).ok())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let view = VectorLayout::of(st, &lookup.collection)?.view(lookup.vectors.as_ref())?;
    let a = st
        .router
        .get(
            &lookup.collection,
            &ids,
            lookup.payload.wants(),
            lookup.with_vector,
            read,
        )
        .await?;
    missing.extend(a.missing_shards);
    let by_id: HashMap<PointId, RecordOut> = a
        .value
        .iter()
        .map(|r| (r.id, record_out(r, &lookup.payload, &view)))
        .collect();
    for g in &mut out.groups {
        g.lookup = parse::id(&g.id).ok().and_then(|id| by_id.get(&id).cloned());
    }
    Ok(())
}

/// The groups as Qdrant answers them: hits scored, selected and thresholded as a plain
/// search's are; a group left with no hit is dropped.
fn groups_out(p: &Prepared, groups: Vec<Group>) -> GroupsResult {
    GroupsResult {
        groups: groups
            .into_iter()
            .map(|g| PointGroup {
                id: g.id,
                hits: scored(p, g.hits),
                lookup: None,
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
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.search.read)?;
    let with_lookup = lookup(req.with_lookup.as_ref())?;
    let p = prepare(
        &st.config.limits,
        &layout,
        search_input(&req.search),
        "query vector",
    )?;
    let g = grouping(
        &req.group_by,
        req.group_size,
        req.search.limit,
        req.search.offset,
        p.max_distance(p.metric),
    )?;
    let a = st.router.search_groups(&name, &p.query, &g, &read).await?;
    let mut missing: BTreeSet<u32> = a.missing_shards.into_iter().collect();
    let mut out = groups_out(&p, a.value);
    if let Some(l) = &with_lookup {
        look_up(&st, l, &read, &mut out, &mut missing).await?;
    }
    Ok(answer(out, &missing))
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
    let layout = VectorLayout::of(&st, &name)?;
    let read = read_options(&q, &req.query.read)?;
    let with_lookup = lookup(req.with_lookup.as_ref())?;
    let mut p = prepare_query(&st, &name, &layout, &req.query, &read, "query").await?;
    let g = grouping(
        &req.group_by,
        req.group_size,
        req.query.limit.unwrap_or(10),
        req.query.offset,
        p.max_distance(p.metric),
    )?;
    // A query by example leaves its examples out: it asks for that many more per group.
    let g = Grouping {
        group_size: g.group_size + p.exclude.len(),
        ..g
    };
    p.window = None;
    let a = st.router.search_groups(&name, &p.query, &g, &read).await?;
    let mut missing: BTreeSet<u32> = a.missing_shards.into_iter().collect();
    let mut out = groups_out(&p, a.value);
    for grp in &mut out.groups {
        grp.hits.truncate(g.group_size - p.exclude.len());
    }
    if let Some(l) = &with_lookup {
        look_up(&st, l, &read, &mut out, &mut missing).await?;
    }
    Ok(answer(out, &missing))
}
