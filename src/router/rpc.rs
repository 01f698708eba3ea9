//! The shard data plane between nodes: service [`SERVICE`] on the internal port.
//!
//! A router sends a [`ShardRequest`] (postcard) to a node holding a replica of the target group;
//! the node runs it on its [`LocalShard`](execute) and answers a [`ShardResponse`]. The same
//! [`execute`] serves calls the router makes to a replica on its own node, so local and remote
//! replicas behave identically.
//!
//! Read requests carry their consistency level:
//! - `strong`: only the leader answers, after a read-index round with a quorum
//!   (`linearizable_read`); a follower answers [`ShardResponse::ForwardToLeader`].
//! - `session`: the replica waits (bounded by `wait_ms`) until it has applied `min_applied`, and
//!   answers [`ErrorKind::Stale`] if it cannot catch up in time — never stale data.
//! - `eventual`: answered from local state at once.
//!
//! Writes carry encoded [`ShardCommand`] bytes; they are checked against the shard before they
//! are proposed, so bad input never reaches the log.

use super::exec;
use crate::cluster::ShardApp;
use crate::raft::{GroupId, NodeId, RaftGroup, RaftGroupError};
use crate::router::token::Consistency;
use crate::shard::{FacetValue, Filter, Hit, PointId, Record, SearchRequest, ShardCommand, Tuning};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The app-service number of the router's data plane on the internal port.
pub const SERVICE: u8 = 2;

/// How fresh a read must be, as the replica checks it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReadSpec {
    /// The level.
    pub consistency: Consistency,
    /// For `session`: the log index this replica must have applied first.
    pub min_applied: u64,
    /// For `session`: how long to wait for it, in milliseconds.
    pub wait_ms: u64,
}

impl ReadSpec {
    /// An eventual read (local state, no waiting).
    pub fn eventual() -> Self {
        ReadSpec {
            consistency: Consistency::Eventual,
            min_applied: 0,
            wait_ms: 0,
        }
    }
}

/// A nearest-neighbour search on one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSearch {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Hits wanted from this shard (the router adds the offset: shards cannot skip).
    pub limit: usize,
    /// Only points passing this filter (checked by the router before fan-out).
    #[serde(with = "crate::shard::point::json_text")]
    pub filter: Option<Filter>,
    /// IVF lists to probe.
    pub nprobe: usize,
    /// Re-rank factor.
    pub rerank: usize,
    /// Exact scan.
    pub exact: bool,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors.
    pub with_vector: bool,
}

/// A request to one replica of one shard group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardRequest {
    /// Propose a [`ShardCommand`] (encoded) on the group's leader.
    Write {
        /// The group.
        group: GroupId,
        /// `ShardCommand::encode()` bytes.
        command: Vec<u8>,
    },
    /// Search.
    Search {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The search.
        search: ShardSearch,
    },
    /// Points by id.
    Get {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// Ids.
        ids: Vec<PointId>,
        /// Return payloads.
        with_payload: bool,
        /// Return vectors.
        with_vector: bool,
    },
    /// Count points.
    Count {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// Only matching points.
        #[serde(with = "crate::shard::point::json_text")]
        filter: Option<Filter>,
    },
    /// A page of points in id order.
    Scroll {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// Start at this id (inclusive).
        offset: Option<PointId>,
        /// Page size.
        limit: usize,
        /// Only matching points.
        #[serde(with = "crate::shard::point::json_text")]
        filter: Option<Filter>,
        /// Return payloads.
        with_payload: bool,
        /// Return vectors.
        with_vector: bool,
    },
    /// The first `limit` points ordered by an indexed numeric or date-time payload field
    /// (appended after `Scroll`: variants are numbered by position on the wire).
    ScrollOrdered {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The field, its direction and where to start.
        order: WireOrderBy,
        /// Page size.
        limit: usize,
        /// Only matching points.
        #[serde(with = "crate::shard::point::json_text")]
        filter: Option<Filter>,
        /// Return payloads.
        with_payload: bool,
        /// Return vectors.
        with_vector: bool,
    },
    /// Search with `nprobe`/`rerank` chosen per sealed segment from its calibration where the
    /// tuning leaves them open (`search.nprobe`/`rerank` serve segments without one). Appended
    /// after `ScrollOrdered`; `Search` stays for fully fixed parameters.
    SearchTuned {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The search.
        search: ShardSearch,
        /// What the query fixes and the recall it aims for.
        tuning: WireTuning,
    },
    /// Every value of an indexed field among the points passing a filter, with its count
    /// (appended after `SearchTuned`).
    Facet {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The indexed key.
        key: String,
        /// Only matching points.
        #[serde(with = "crate::shard::point::json_text")]
        filter: Option<Filter>,
    },
    /// The `k` live points passing the filter with the smallest sampling keys under `seed`
    /// ([`crate::shard::sample_key`]), with their vectors: this shard's part of a uniform
    /// sample (the distance matrix; appended after `Facet`).
    Sample {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The request's sampling seed (the same for every shard).
        seed: u64,
        /// Most points.
        k: usize,
        /// Only matching points.
        #[serde(with = "crate::shard::point::json_text")]
        filter: Option<Filter>,
    },
    /// A search of lane `lane` of the shard: a named vector other than the first (appended
    /// after `Sample`; lane 0 is searched by `Search` and `SearchTuned`). Hits carry every
    /// lane's vector, packed, when vectors are asked for.
    SearchLane {
        /// The group.
        group: GroupId,
        /// Freshness.
        read: ReadSpec,
        /// The search (its vector is the lane's).
        search: ShardSearch,
        /// What the query fixes and the recall it aims for.
        tuning: WireTuning,
        /// The lane (the named vector's position among the collection's, sorted by name).
        lane: u32,
    },
}

/// [`crate::shard::Tuning`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireTuning {
    /// Fixed lists probed per sealed segment.
    pub nprobe: Option<usize>,
    /// Fixed re-rank factor.
    pub rerank: Option<usize>,
    /// Recall@10 the calibrated choices aim for.
    pub recall_target: Option<f64>,
}

impl From<Tuning> for WireTuning {
    fn from(t: Tuning) -> Self {
        WireTuning {
            nprobe: t.nprobe,
            rerank: t.rerank,
            recall_target: t.recall_target,
        }
    }
}

impl From<WireTuning> for Tuning {
    fn from(t: WireTuning) -> Self {
        Tuning {
            nprobe: t.nprobe,
            rerank: t.rerank,
            recall_target: t.recall_target,
        }
    }
}

/// [`crate::shard::OrderBy`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireOrderBy {
    /// The indexed key.
    pub key: String,
    /// Largest values first.
    pub descending: bool,
    /// Start from this value (inclusive; date-times as microseconds since the epoch).
    pub start_from: Option<f64>,
}

impl ShardRequest {
    /// The target group.
    pub fn group(&self) -> GroupId {
        match self {
            ShardRequest::Write { group, .. }
            | ShardRequest::Search { group, .. }
            | ShardRequest::Get { group, .. }
            | ShardRequest::Count { group, .. }
            | ShardRequest::Scroll { group, .. }
            | ShardRequest::ScrollOrdered { group, .. }
            | ShardRequest::SearchTuned { group, .. }
            | ShardRequest::Facet { group, .. }
            | ShardRequest::Sample { group, .. }
            | ShardRequest::SearchLane { group, .. } => *group,
        }
    }

    /// The postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes bytes from [`ShardRequest::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// A point on the wire (payload as JSON text: postcard cannot describe free-form JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    /// The id.
    pub id: PointId,
    /// The payload as JSON text.
    pub payload: Option<String>,
    /// The vector.
    pub vector: Option<Vec<f32>>,
}

impl From<&Record> for WireRecord {
    fn from(r: &Record) -> Self {
        WireRecord {
            id: r.id,
            payload: r
                .payload
                .as_ref()
                .and_then(|p| serde_json::to_string(p.as_ref()).ok()),
            vector: r.vector.clone(),
        }
    }
}

impl WireRecord {
    /// Back to a [`Record`].
    pub fn into_record(self) -> Record {
        Record {
            id: self.id,
            payload: self
                .payload
                .and_then(|t| serde_json::from_str(&t).ok())
                .map(Arc::new),
            vector: self.vector,
        }
    }
}

/// A search hit on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireHit {
    /// The point.
    pub record: WireRecord,
    /// Its distance (shoal's convention: smaller is closer).
    pub distance: f32,
}

/// Why a replica could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is invalid: do not retry.
    BadRequest,
    /// No replica of the group on that node (moved, or not started yet): try another.
    NoShard,
    /// A session read could not see the required index in time: try another replica.
    Stale,
    /// The group cannot serve now (no quorum, stopped, write outcome unknown): retry.
    Unavailable,
    /// A bug or I/O failure on the replica.
    Internal,
    /// The write can never fit one log entry (appended last: the tag of every older kind stays).
    TooLarge,
    /// The replica's Raft core stopped on a storage error (a full disk): another replica may
    /// lead, this one restarts when its disk takes writes again (appended after `TooLarge`).
    Stopped,
}

/// The answer of a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardResponse {
    /// The write is committed and applied at this log index.
    Written {
        /// The log index.
        index: u64,
    },
    /// This replica is not the leader; `leader` is, if known.
    ForwardToLeader {
        /// The leader this replica believes in.
        leader: Option<NodeId>,
    },
    /// Search hits, best first.
    Hits(Vec<WireHit>),
    /// Points by id.
    Records(Vec<WireRecord>),
    /// A count.
    Count(u64),
    /// A scroll page and where to continue.
    Page {
        /// Points in id order.
        records: Vec<WireRecord>,
        /// The next id, if any point remains.
        next: Option<PointId>,
    },
    /// Failure.
    Error {
        /// What kind.
        kind: ErrorKind,
        /// The message.
        message: String,
    },
    /// Points ordered by a payload field, each with its value (appended after `Error`).
    OrderedPage(Vec<(f64, WireRecord)>),
    /// Facet counts: every value and how many points hold it (appended after `OrderedPage`).
    Facets(Vec<(FacetValue, u64)>),
    /// Sampled points: `(key, id, vector)`, smallest key first (appended after `Facets`).
    Sample(Vec<(u64, PointId, Vec<f32>)>),
}

impl ShardResponse {
    /// The postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes bytes from [`ShardResponse::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        ShardResponse::Error {
            kind,
            message: message.into(),
        }
    }
}

/// The answer for a group this node does not hold.
pub fn no_shard(group: GroupId, node: NodeId) -> ShardResponse {
    ShardResponse::error(
        ErrorKind::NoShard,
        format!("node {node} holds no replica of shard group {group}"),
    )
}

fn group_error(e: RaftGroupError) -> ShardResponse {
    match e {
        RaftGroupError::ForwardToLeader { leader_id, .. } => {
            ShardResponse::ForwardToLeader { leader: leader_id }
        }
        RaftGroupError::Timeout { .. } => {
            ShardResponse::error(ErrorKind::Unavailable, e.to_string())
        }
        // The router refuses such writes before sending them; a command that still gets here
        // will never fit, so retrying is pointless, and the client hears 413 as from the router.
        RaftGroupError::TooLarge { .. } => ShardResponse::error(ErrorKind::TooLarge, e.to_string()),
        RaftGroupError::Stopped { .. } => ShardResponse::error(ErrorKind::Stopped, e.to_string()),
        other => ShardResponse::error(ErrorKind::Unavailable, other.to_string()),
    }
}

/// Checks the read's freshness condition on this replica; `Err` is the answer to send instead.
async fn ready(group: &RaftGroup, read: &ReadSpec) -> Result<(), ShardResponse> {
    match read.consistency {
        Consistency::Strong => group
            .linearizable_read()
            .await
            .map(|_| ())
            .map_err(group_error),
        Consistency::Session if read.min_applied > 0 => group
            .wait_applied(read.min_applied, Duration::from_millis(read.wait_ms))
            .await
            .map_err(|e| {
                ShardResponse::error(
                    ErrorKind::Stale,
                    format!(
                        "replica of group {} on node {} has not applied index {}: {e}",
                        group.group_id(),
                        group.node_id(),
                        read.min_applied
                    ),
                )
            }),
        Consistency::Session | Consistency::Eventual => Ok(()),
    }
}

/// An internal error answer (a worker or task failed).
pub fn internal_error(message: String) -> ShardResponse {
    ShardResponse::error(ErrorKind::Internal, message)
}

/// Runs `f` where `cost` says (`exec::run`): a short search on the runtime worker, where
/// the blocking-pool hand-off would cost more than the search; everything else on the pool.
async fn run_at(
    cost: exec::Cost,
    f: impl FnOnce() -> ShardResponse + Send + 'static,
) -> ShardResponse {
    exec::run(cost, f)
        .await
        .unwrap_or_else(|e| internal_error(format!("worker failed: {e}")))
}

/// A read over the points a filter selects (counts, scrolls, facets, samples): the freshness
/// check and the compiled filter ([`prepare`]), then `read` on the blocking pool, given the
/// shard's lanes (every one holds the same points; lane 0 answers, the others add their
/// vectors).
async fn filtered_read(
    app: &Arc<ShardApp>,
    group: &RaftGroup,
    spec: &ReadSpec,
    filter: Option<&Filter>,
    read: impl FnOnce(crate::shard::Lanes, Option<crate::shard::CompiledFilter>) -> ShardResponse
    + Send
    + 'static,
) -> ShardResponse {
    let (lanes, filter) = match prepare(app, group, spec, filter).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    run_at(exec::Cost::Long, move || read(lanes, filter)).await
}

/// The read's freshness check on this replica, then the lanes the read runs on and its filter
/// resolved against them (`has_vector`, [`crate::shard::Lanes::resolve_filter`]) and compiled;
/// `Err` is the answer to send instead.
async fn prepare(
    app: &ShardApp,
    group: &RaftGroup,
    read: &ReadSpec,
    filter: Option<&Filter>,
) -> Result<(crate::shard::Lanes, Option<crate::shard::CompiledFilter>), ShardResponse> {
    ready(group, read).await?;
    let lanes = app.lanes();
    let bad = |e: String| ShardResponse::error(ErrorKind::BadRequest, e);
    let Some(filter) = filter else {
        return Ok((lanes, None));
    };
    let resolved = lanes
        .resolve_filter(filter)
        .map_err(|e| bad(e.to_string()))?;
    let compiled = resolved.compile().map_err(|e| bad(e.to_string()))?;
    Ok((lanes, Some(compiled)))
}

/// Searches this node's replica: the read's freshness, the filter compiled, then the search on
/// the runtime worker or the blocking pool as its estimated cost says. `tuning` fixes what the
/// query fixed; the rest each sealed segment takes from its calibration.
/// `lane` is the vector searched (0 unless the collection has named vectors).
async fn search_replica(
    app: &Arc<ShardApp>,
    group: &RaftGroup,
    read: ReadSpec,
    search: ShardSearch,
    tuning: Tuning,
    lane: usize,
) -> ShardResponse {
    let (lanes, filter) = match prepare(app, group, &read, search.filter.as_ref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(shard) = lanes.lane(lane).cloned() else {
        return ShardResponse::error(
            ErrorKind::BadRequest,
            format!("the shard has {} lane(s), no lane {lane}", lanes.len()),
        );
    };
    let fallback = crate::index::ivfpq::SearchParams {
        nprobe: search.nprobe,
        rerank: search.rerank,
    };
    // Each segment's parameters are resolved once, here: the cost estimate and the search read
    // the same plan.
    let plan = match shard.plan_search(&tuning, fallback) {
        Ok(p) => p,
        Err(e) => return ShardResponse::error(ErrorKind::BadRequest, e.to_string()),
    };
    // Filtered and exact searches go to the pool whatever their shape.
    let work = if search.exact || filter.is_some() {
        crate::shard::SearchWork::default()
    } else {
        plan.work()
    };
    let cost = exec::search_cost(exec::SearchShape {
        exact: search.exact,
        filtered: filter.is_some(),
        work,
        k: search.limit,
    });
    let run = move || {
        let req = SearchRequest {
            vector: &search.vector,
            limit: search.limit,
            offset: 0,
            filter: filter.as_ref(),
            nprobe: search.nprobe,
            rerank: search.rerank,
            exact: search.exact,
            with_payload: search.with_payload,
            with_vector: search.with_vector,
        };
        match shard.search_planned(&req, &plan) {
            Ok(hits) => ShardResponse::Hits(
                lanes
                    .join_hits(hits)
                    .iter()
                    .map(|h: &Hit| WireHit {
                        record: WireRecord::from(&h.record),
                        distance: h.distance,
                    })
                    .collect(),
            ),
            Err(e) => ShardResponse::error(ErrorKind::BadRequest, e.to_string()),
        }
    };
    run_at(cost, run).await
}

/// Runs `req` on this node's replica (`group` and its state machine `app`).
pub async fn execute(group: &RaftGroup, app: &Arc<ShardApp>, req: ShardRequest) -> ShardResponse {
    match req {
        ShardRequest::Write { command, .. } => {
            let cmd = match ShardCommand::decode(&command) {
                Ok(c) => c,
                Err(e) => return ShardResponse::error(ErrorKind::BadRequest, e.to_string()),
            };
            if let Err(e) = app.validate(&cmd) {
                return ShardResponse::error(ErrorKind::BadRequest, e.to_string());
            }
            match group.write(command).await {
                Ok(out) if out.response.is_empty() => ShardResponse::Written { index: out.index },
                Ok(out) => ShardResponse::error(
                    ErrorKind::BadRequest,
                    String::from_utf8_lossy(&out.response).into_owned(),
                ),
                Err(e) => group_error(e),
            }
        }
        ShardRequest::Search { read, search, .. } => {
            let tuning = Tuning::explicit(search.nprobe, search.rerank);
            search_replica(app, group, read, search, tuning, 0).await
        }
        ShardRequest::SearchTuned {
            read,
            search,
            tuning,
            ..
        } => search_replica(app, group, read, search, tuning.into(), 0).await,
        ShardRequest::SearchLane {
            read,
            search,
            tuning,
            lane,
            ..
        } => search_replica(app, group, read, search, tuning.into(), lane as usize).await,
        ShardRequest::Get {
            read,
            ids,
            with_payload,
            with_vector,
            ..
        } => {
            if let Err(r) = ready(group, &read).await {
                return r;
            }
            let lanes = app.lanes();
            run_at(exec::Cost::Long, move || {
                let records = lanes.primary().get(&ids, with_payload, with_vector);
                ShardResponse::Records(
                    lanes
                        .join_records(records)
                        .iter()
                        .map(WireRecord::from)
                        .collect(),
                )
            })
            .await
        }
        ShardRequest::Count { read, filter, .. } => {
            filtered_read(app, group, &read, filter.as_ref(), move |lanes, filter| {
                ShardResponse::Count(lanes.primary().count(filter.as_ref()) as u64)
            })
            .await
        }
        ShardRequest::Scroll {
            read,
            offset,
            limit,
            filter,
            with_payload,
            with_vector,
            ..
        } => {
            filtered_read(app, group, &read, filter.as_ref(), move |lanes, filter| {
                let (records, next) = lanes.primary().scroll(
                    offset,
                    limit,
                    filter.as_ref(),
                    with_payload,
                    with_vector,
                );
                ShardResponse::Page {
                    records: lanes
                        .join_records(records)
                        .iter()
                        .map(WireRecord::from)
                        .collect(),
                    next,
                }
            })
            .await
        }
        ShardRequest::ScrollOrdered {
            read,
            order,
            limit,
            filter,
            with_payload,
            with_vector,
            ..
        } => {
            filtered_read(app, group, &read, filter.as_ref(), move |lanes, filter| {
                let shard = lanes.primary();
                let order = crate::shard::OrderBy {
                    key: order.key,
                    descending: order.descending,
                    start_from: order.start_from,
                };
                match shard.scroll_ordered(
                    &order,
                    limit,
                    filter.as_ref(),
                    with_payload,
                    with_vector,
                ) {
                    Ok(rows) => ShardResponse::OrderedPage(
                        lanes
                            .join(rows, |r| (r.record.id, r.record.vector.as_mut()))
                            .iter()
                            .map(|r| (r.value, WireRecord::from(&r.record)))
                            .collect(),
                    ),
                    Err(e) => ShardResponse::error(ErrorKind::BadRequest, e.to_string()),
                }
            })
            .await
        }
        ShardRequest::Facet {
            read, key, filter, ..
        } => {
            filtered_read(
                app,
                group,
                &read,
                filter.as_ref(),
                move |lanes, filter| match lanes.primary().facet(&key, filter.as_ref()) {
                    Ok(counts) => ShardResponse::Facets(counts.into_iter().collect()),
                    Err(e) => ShardResponse::error(ErrorKind::BadRequest, e.to_string()),
                },
            )
            .await
        }
        ShardRequest::Sample {
            read,
            seed,
            k,
            filter,
            ..
        } => {
            filtered_read(app, group, &read, filter.as_ref(), move |lanes, filter| {
                let sampled = lanes.primary().sample(seed, k, filter.as_ref());
                ShardResponse::Sample(
                    lanes
                        .join(sampled, |p| (p.id, Some(&mut p.vector)))
                        .into_iter()
                        .map(|p| (p.key, p.id, p.vector))
                        .collect(),
                )
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_in_postcard() {
        let filter: Filter =
            serde_json::from_str(r#"{"must":[{"key":"a","match":{"value":"x"}}]}"#).unwrap();
        let session = ReadSpec {
            consistency: Consistency::Session,
            min_applied: 42,
            wait_ms: 500,
        };
        let reqs = vec![
            ShardRequest::Write {
                group: 3,
                command: ShardCommand::Delete {
                    ids: vec![PointId::Num(1)],
                }
                .encode(),
            },
            ShardRequest::Search {
                group: 4,
                read: session,
                search: ShardSearch {
                    vector: vec![0.5, -1.0],
                    limit: 10,
                    filter: Some(filter.clone()),
                    nprobe: 8,
                    rerank: 4,
                    exact: true,
                    with_payload: true,
                    with_vector: false,
                },
            },
            ShardRequest::SearchTuned {
                group: 4,
                read: session,
                search: ShardSearch {
                    vector: vec![0.5],
                    limit: 3,
                    filter: None,
                    nprobe: 16,
                    rerank: 4,
                    exact: false,
                    with_payload: false,
                    with_vector: false,
                },
                tuning: WireTuning {
                    nprobe: None,
                    rerank: Some(2),
                    recall_target: Some(0.9),
                },
            },
            ShardRequest::SearchLane {
                group: 4,
                read: session,
                search: ShardSearch {
                    vector: vec![0.25, 1.0, 2.0],
                    limit: 5,
                    filter: Some(filter.clone()),
                    nprobe: 4,
                    rerank: 2,
                    exact: false,
                    with_payload: true,
                    with_vector: true,
                },
                tuning: WireTuning {
                    nprobe: Some(3),
                    rerank: None,
                    recall_target: None,
                },
                lane: 2,
            },
            ShardRequest::Get {
                group: 5,
                read: ReadSpec::eventual(),
                ids: vec![PointId::Uuid(7), PointId::Num(2)],
                with_payload: false,
                with_vector: true,
            },
            ShardRequest::Count {
                group: 6,
                read: session,
                filter: None,
            },
            ShardRequest::Scroll {
                group: 7,
                read: session,
                offset: Some(PointId::Num(9)),
                limit: 3,
                filter: Some(filter.clone()),
                with_payload: true,
                with_vector: true,
            },
            ShardRequest::ScrollOrdered {
                group: 8,
                read: session,
                order: WireOrderBy {
                    key: "price".into(),
                    descending: true,
                    start_from: Some(2.5),
                },
                limit: 4,
                filter: None,
                with_payload: false,
                with_vector: false,
            },
            ShardRequest::Facet {
                group: 9,
                read: session,
                key: "tag".into(),
                filter: None,
            },
            ShardRequest::Sample {
                group: 10,
                read: session,
                seed: u64::MAX - 3,
                k: 25,
                filter: Some(filter.clone()),
            },
        ];
        for r in reqs {
            assert_eq!(ShardRequest::decode(&r.encode()).unwrap(), r);
        }
        let rec = WireRecord {
            id: PointId::Num(1),
            payload: Some(r#"{"k":[1,null,"v"]}"#.into()),
            vector: Some(vec![1.0]),
        };
        let resps = vec![
            ShardResponse::Facets(vec![
                (FacetValue::Str("a".into()), 3),
                (FacetValue::Int(-2), 1),
                (FacetValue::Bool(true), 5),
            ]),
            ShardResponse::Written { index: 9 },
            ShardResponse::ForwardToLeader { leader: Some(2) },
            ShardResponse::ForwardToLeader { leader: None },
            ShardResponse::Hits(vec![WireHit {
                record: rec.clone(),
                distance: 0.25,
            }]),
            ShardResponse::Records(vec![rec.clone()]),
            ShardResponse::Count(12),
            ShardResponse::Page {
                records: vec![rec.clone()],
                next: Some(PointId::Num(2)),
            },
            ShardResponse::error(ErrorKind::Stale, "behind"),
            ShardResponse::OrderedPage(vec![(1.5, rec.clone())]),
            ShardResponse::Sample(vec![
                (3, PointId::Num(4), vec![0.5, -2.0]),
                (u64::MAX, PointId::Uuid(9), vec![]),
            ]),
        ];
        for r in resps {
            assert_eq!(ShardResponse::decode(&r.encode()).unwrap(), r);
        }
        let back = rec.into_record();
        assert_eq!(back.payload.unwrap()["k"][2], "v");
        assert!(ShardRequest::decode(&[0xff, 0x01]).is_err());
    }
}
