//! The router: every node's entry point to data that lives in shards on many nodes.
//!
//! ## Writes
//! A write is split by placement — `hash`: the consistent-hash ring over ids; `centroid`: the
//! nearest coarse centroid of each vector (the quantiser is trained on a sample of the
//! collection's first upsert and stored in the cluster metadata, first writer wins) — and each
//! part goes to its shard group's leader: a local call when this node leads, else service 2 on
//! the leader's internal port. `ForwardToLeader` answers and leader changes are followed with
//! bounded retries. Every write carries one version from the node's [`hlc::Hlc`]
//! (`UpsertAt`/`DeleteAt`), so re-sending a write after an unknown outcome is harmless and
//! concurrent upserts of one id resolve to the same winner on every replica. Under centroid
//! placement an upsert also sends `DeleteAt{ids, version}` to every other shard, so an id lives
//! in exactly one shard once writes settle, even when its vector moved it.
//!
//! ## Reads
//! Reads fan out in parallel to one replica per needed shard (hash: all shards; centroid: the
//! `shard_probe` shards nearest the query; an exact search visits all), chosen by consistency
//! level — `strong`: the leader
//! (read-index check); `session`: any replica that has applied the caller's token, local first;
//! `eventual`: any healthy replica, least in-flight first, local first — through the
//! [`resilience`] layer (deadline, retry elsewhere, circuit breakers, hedging). Hits are merged
//! by distance then id ([`merge`]). A shard that cannot be reached fails the read with a 503
//! naming it, unless the caller allows partial answers, which then list the missing shards.

pub mod exec;
pub mod facet;
pub mod groups;
pub mod hlc;
pub mod merge;
pub mod resilience;
pub mod rpc;
pub mod token;
pub mod write_split;

#[cfg(test)]
mod tests;

pub use crate::collection::SearchQuery;
pub use resilience::{ResilienceConfig, RoutingStats};
pub use token::{Consistency, ConsistencyToken, TokenError};

use crate::cluster::placement::{CentroidPlacement, HashRing};
use crate::cluster::{Cluster, CollectionMeta, ShardMeta};
use crate::collection::{CollectionConfig, Error};
use crate::raft::budget::MAX_ENTRY_BYTES;
use crate::raft::tcp::{AppFuture, AppService};
use crate::raft::{GroupId, NodeId, TransportError};
use crate::shard::{Filter, Hit, PointId, PointWrite, Record, SegmentCalibration, ShardCommand};
use futures_util::future::join_all;
use merge::{Order, Ranked};
use resilience::{CallError, Failure, Resilience, StoppedReplicas};
use rpc::{ErrorKind, ReadSpec, ShardRequest, ShardResponse, ShardSearch};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use write_split::{UPSERT_ENTRY_BYTES, split_by_bytes};

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Deadlines, retries, breakers and hedging of reads.
    pub resilience: ResilienceConfig,
    /// Deadline of one write call to a leader (replication and fsync included).
    pub write_call_timeout: Duration,
    /// How long a write may keep chasing a leader (elections included) before failing.
    pub write_deadline: Duration,
    /// How long a replica may wait to apply a session token before answering "stale".
    pub session_wait: Duration,
    /// Most vectors of the first upsert used to train the centroid quantiser.
    pub centroid_sample: usize,
    /// Caps on one request (filter size, batch length, scroll page), checked by the router
    /// itself before anything is sent to a shard.
    pub limits: crate::collection::limits::RequestLimits,
    /// Shard reads that may run on the blocking pool at once on this node ([`exec`]; 0 = four
    /// per core, at least 8): the process-wide bound is set from it when the router is made.
    pub blocking_reads: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            resilience: ResilienceConfig::default(),
            write_call_timeout: Duration::from_secs(10),
            write_deadline: Duration::from_secs(10),
            session_wait: Duration::from_secs(2),
            centroid_sample: 20_000,
            limits: crate::collection::limits::RequestLimits::default(),
            blocking_reads: 0,
        }
    }
}

/// How a read wants to be served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// Freshness.
    pub consistency: Consistency,
    /// For `session`: the indexes the caller's writes reached.
    pub token: Option<ConsistencyToken>,
    /// Answer from the reachable shards when some cannot be reached.
    pub allow_partial: bool,
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAck {
    /// Per group, the log index the write reached: pass back for session reads.
    pub token: ConsistencyToken,
    /// The largest of those indexes (Qdrant's `operation_id`).
    pub operation_id: u64,
}

/// A read answer, possibly from only some shards.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The merged value.
    pub value: T,
    /// Shards (by number) that could not be reached; empty for a complete answer.
    pub missing_shards: Vec<u32>,
}

impl<T> Answer<T> {
    /// Whether some shard is missing.
    pub fn partial(&self) -> bool {
        !self.missing_shards.is_empty()
    }
}

/// A scroll page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Points in id order.
    pub records: Vec<Record>,
    /// Where the next page starts.
    pub next: Option<PointId>,
}

impl Ranked for Hit {
    fn key(&self) -> f32 {
        self.distance
    }
    fn id(&self) -> PointId {
        self.record.id
    }
}

/// Router counters beyond the resilience layer's.
#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    shard_calls: AtomicU64,
    local_calls: AtomicU64,
    partial_answers: AtomicU64,
    failed_reads: AtomicU64,
    writes: AtomicU64,
    write_retries: AtomicU64,
    leader_redirects: AtomicU64,
}

/// Routes point operations of every collection to shard replicas. One per node.
pub struct Router {
    cluster: Arc<Cluster>,
    config: RouterConfig,
    resilience: Resilience,
    hlc: hlc::Hlc,
    /// Last leader seen per group.
    leaders: Mutex<HashMap<GroupId, NodeId>>,
    rings: Mutex<HashMap<u32, Arc<HashRing>>>,
    /// Serialises centroid training per node (the cluster keeps the first stored one).
    training: tokio::sync::Mutex<()>,
    counters: Counters,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// How one shard call ended, for the fan-out.
type ShardResult = Result<ShardResponse, Failure<Error>>;

impl Router {
    /// A router over `cluster`. Other nodes' routers reach this node's replicas through
    /// [`ShardService`], which the node registers beside it.
    pub fn new(cluster: Arc<Cluster>, config: RouterConfig) -> Arc<Self> {
        exec::set_blocking_reads(config.blocking_reads);
        Arc::new(Router {
            hlc: hlc::Hlc::new(cluster.node_id()),
            resilience: Resilience::new(config.resilience.clone()),
            cluster: cluster.clone(),
            config,
            leaders: Mutex::new(HashMap::new()),
            rings: Mutex::new(HashMap::new()),
            training: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
        })
    }

    /// Routing counters (fan-out, retries, hedges, breakers, partial answers).
    pub fn stats(&self) -> &RoutingStats {
        &self.resilience.stats
    }

    /// The collection `collection` names, directly or as an alias (the one place the router
    /// resolves names, so every read and write accepts an alias).
    fn meta(&self, collection: &str) -> Result<CollectionMeta, Error> {
        self.cluster
            .state()
            .resolve(collection)
            .map(|(_, meta)| meta.clone())
            .ok_or_else(|| Error::NotFound(collection.to_owned()))
    }

    /// The configuration of a collection (404 if unknown).
    pub fn collection_config(&self, collection: &str) -> Result<CollectionConfig, Error> {
        Ok(self.meta(collection)?.config)
    }

    fn ring(&self, shards: u32) -> Arc<HashRing> {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(shards)
            .or_insert_with(|| Arc::new(HashRing::new(shards)))
            .clone()
    }

    fn is_centroid(meta: &CollectionMeta) -> bool {
        meta.config.is_centroid(meta.shards.len())
    }

    // ---------------------------------------------------------------- replica choice

    fn leader_guess(&self, shard: &ShardMeta) -> NodeId {
        if let Some(l) = self
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shard.group)
            && shard.replicas.contains(l)
        {
            return *l;
        }
        if let Some(local) = self.cluster.local_shard(shard.group)
            && let Some(l) = local.group.metrics().leader
            && shard.replicas.contains(&l)
        {
            return l;
        }
        shard.replicas.first().copied().unwrap_or(0)
    }

    fn set_leader(&self, group: GroupId, leader: NodeId) {
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, leader);
    }

    /// Replicas of `shard` in the order a read at `consistency` should try them.
    fn read_candidates(&self, shard: &ShardMeta, consistency: Consistency) -> Vec<NodeId> {
        let me = self.cluster.node_id();
        let leader = self.leader_guess(shard);
        let mut rest: Vec<NodeId> = shard.replicas.clone();
        match consistency {
            Consistency::Strong => {
                rest.sort_by_key(|n| (*n != leader, *n != me, *n));
            }
            Consistency::Session => {
                // The local replica usually has the caller's writes (and costs no hop); the
                // leader surely has them.
                rest.sort_by_key(|n| (*n != me, *n != leader, self.resilience.in_flight(*n), *n));
            }
            Consistency::Eventual => {
                rest.sort_by_key(|n| {
                    (
                        !self.resilience.is_available(*n),
                        self.resilience.in_flight(*n),
                        *n != me,
                        *n,
                    )
                });
            }
        }
        rest
    }

    // ---------------------------------------------------------------- one call

    /// Sends `req` to `node` (a local call when it is this node) and classifies the answer.
    ///
    /// `spread`: one of several calls a request makes to shards on this node; it then runs as its
    /// own task, so that an idle worker takes it and the shards are searched in parallel (on a
    /// busy runtime the task stays on the worker that spawned it).
    async fn send(
        &self,
        node: NodeId,
        req: &ShardRequest,
        timeout: Duration,
        spread: bool,
    ) -> Result<ShardResponse, CallError<Error>> {
        let group = req.group();
        let resp = if node == self.cluster.node_id() {
            self.counters.local_calls.fetch_add(1, Ordering::Relaxed);
            match self.cluster.local_shard(group) {
                Some(local) if spread => {
                    let req = req.clone();
                    // Aborted when this call is dropped (the request timed out or its client
                    // went away), so the spawned read does not go on without anyone waiting.
                    exec::AbortOnDrop(tokio::spawn(async move {
                        rpc::execute(&local.group, &local.app, req).await
                    }))
                    .await
                    .unwrap_or_else(|e| rpc::internal_error(format!("shard task failed: {e}")))
                }
                Some(local) => rpc::execute(&local.group, &local.app, req.clone()).await,
                None => rpc::no_shard(group, node),
            }
        } else {
            self.counters.shard_calls.fetch_add(1, Ordering::Relaxed);
            let bytes = self
                .cluster
                .call(node, rpc::SERVICE, req.encode(), timeout)
                .await
                .map_err(|e: TransportError| CallError::Transient(e.to_string()))?;
            ShardResponse::decode(&bytes).map_err(|e| {
                CallError::Transient(format!("node {node}: undecodable shard answer: {e}"))
            })?
        };
        match resp {
            ShardResponse::ForwardToLeader { leader } => {
                if let Some(l) = leader {
                    self.set_leader(group, l);
                }
                Err(CallError::Declined(format!(
                    "node {node} is not the leader of group {group} (leader: {leader:?})"
                )))
            }
            ShardResponse::Error { kind, message } => Err(match kind {
                ErrorKind::BadRequest => CallError::Fatal(Error::bad(message)),
                ErrorKind::Internal => CallError::Fatal(Error::Internal(message)),
                ErrorKind::NoShard | ErrorKind::Stale => CallError::Declined(message),
                ErrorKind::Unavailable => CallError::Transient(message),
                ErrorKind::TooLarge => CallError::Fatal(Error::TooLarge(message)),
                ErrorKind::Stopped => CallError::Stopped(message),
            }),
            ok => Ok(ok),
        }
    }

    // ---------------------------------------------------------------- reads

    /// Sends one read per shard in `shards` (in parallel), each through the resilience layer;
    /// answers per shard, or the error for the whole read.
    async fn fan_out(
        &self,
        collection: &str,
        meta: &CollectionMeta,
        shards: &[u32],
        read: &ReadOptions,
        make: impl Fn(GroupId, ReadSpec) -> ShardRequest,
    ) -> Result<Answer<Vec<ShardResponse>>, Error> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let consistency = match (read.consistency, &read.token) {
            (Consistency::Session, None) => Consistency::Eventual,
            (c, _) => c,
        };
        let wait = self.config.session_wait.min(
            self.resilience
                .config()
                .call_timeout
                .saturating_sub(Duration::from_millis(200)),
        );
        let calls = shards.iter().enumerate().map(|(i, &s)| {
            // The last shard runs in this task; the others, spawned when `join_all` first polls
            // them (before the last), may run beside it.
            let spread = i + 1 < shards.len();
            let shard = &meta.shards[s as usize];
            let spec = ReadSpec {
                consistency,
                min_applied: read.token.as_ref().map_or(0, |t| t.index(shard.group)),
                wait_ms: wait.as_millis() as u64,
            };
            let req = make(shard.group, spec);
            let candidates = self.read_candidates(shard, consistency);
            let timeout = self.resilience.config().call_timeout;
            async move {
                let r: ShardResult = self
                    .resilience
                    .call(&candidates, |node| self.send(node, &req, timeout, spread))
                    .await;
                (s, r)
            }
        });
        let results = join_all(calls).await;
        let mut answers = Vec::new();
        let mut missing = Vec::new();
        let mut reasons = Vec::new();
        for (s, r) in results {
            match r {
                Ok(resp) => answers.push(resp),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Exhausted { tried, last }) => {
                    reasons.push(format!(
                        "shard {s} (group {}) unreachable (tried nodes {tried:?}: {last})",
                        meta.shards[s as usize].group
                    ));
                    missing.push(s);
                }
            }
        }
        if !missing.is_empty() {
            if !read.allow_partial {
                self.counters.failed_reads.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Unavailable(format!(
                    "collection `{collection}`: {} (pass allow_partial=true to accept answers from the other shards)",
                    reasons.join("; ")
                )));
            }
            self.counters
                .partial_answers
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(collection, ?missing, "partial answer");
        }
        Ok(Answer {
            value: answers,
            missing_shards: missing,
        })
    }

    fn all_shards(meta: &CollectionMeta) -> Vec<u32> {
        (0..meta.shards.len() as u32).collect()
    }

    /// Nearest neighbours across the collection's shards, merged by distance then id.
    pub async fn search(
        &self,
        collection: &str,
        q: &SearchQuery,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Hit>>, Error> {
        let meta = self.meta(collection)?;
        q.check(&meta.config)?;
        self.config.limits.check_filter_opt(q.filter.as_ref())?;
        // An exact search is exhaustive: every shard, whatever the placement.
        let shards = match (&meta.centroids, Self::is_centroid(&meta)) {
            (Some(c), true) if !q.exact => {
                let probe = q
                    .shard_probe
                    .unwrap_or(meta.config.search.shard_probe)
                    .max(1);
                let mut v = c.probe(&q.vector, probe);
                v.retain(|s| (*s as usize) < meta.shards.len());
                v
            }
            _ => Self::all_shards(&meta),
        };
        // What the query or the collection fixes; the rest each sealed segment takes from its
        // calibration. A fixed rerank is widened for hash placement (each shard returns its own
        // top-k), as is the fallback of segments without calibration.
        let mut tuning = q.tuning(&meta.config);
        let widen = |r: usize| {
            if Self::is_centroid(&meta) {
                r
            } else {
                merge::hash_shard_rerank(r, shards.len())
            }
        };
        tuning.rerank = tuning.rerank.map(widen);
        let search = ShardSearch {
            vector: q.vector.clone(),
            limit: q.limit.saturating_add(q.offset),
            filter: q.filter.clone(),
            nprobe: meta.config.search.fallback_nprobe(meta.config.ivf_pq.nlist),
            rerank: widen(meta.config.search.fallback_rerank()),
            exact: q.exact,
            with_payload: q.with_payload,
            with_vector: q.with_vector,
        };
        let out = self
            .fan_out(collection, &meta, &shards, read, |group, read| {
                match (tuning.nprobe, tuning.rerank) {
                    // Both fixed: the request every node version understands.
                    (Some(nprobe), Some(rerank)) => ShardRequest::Search {
                        group,
                        read,
                        search: ShardSearch {
                            nprobe,
                            rerank,
                            ..search.clone()
                        },
                    },
                    _ => ShardRequest::SearchTuned {
                        group,
                        read,
                        search: search.clone(),
                        tuning: tuning.into(),
                    },
                }
            })
            .await?;
        let lists: Vec<Vec<Hit>> = out
            .value
            .into_iter()
            .filter_map(|r| match r {
                ShardResponse::Hits(h) => Some(
                    h.into_iter()
                        .map(|h| Hit {
                            record: h.record.into_record(),
                            distance: h.distance,
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        Ok(Answer {
            value: merge::merge_top_k(lists, Order::Ascending, q.offset, q.limit),
            missing_shards: out.missing_shards,
        })
    }

    /// Points by id, in the order asked (each id once; missing ids skipped).
    pub async fn get(
        &self,
        collection: &str,
        ids: &[PointId],
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Record>>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_points(ids.len(), "ids")?;
        // Hash placement: each id only on its owner; centroid: an id may be on any shard.
        let mut per_shard: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
        if Self::is_centroid(&meta) || meta.shards.len() == 1 {
            for s in Self::all_shards(&meta) {
                per_shard.insert(s, ids.to_vec());
            }
        } else {
            let ring = self.ring(meta.shards.len() as u32);
            for id in ids {
                per_shard.entry(ring.shard_of(id)).or_default().push(*id);
            }
        }
        let shards: Vec<u32> = per_shard.keys().copied().collect();
        let by_group: HashMap<GroupId, Vec<PointId>> = per_shard
            .iter()
            .map(|(s, ids)| (meta.shards[*s as usize].group, ids.clone()))
            .collect();
        let out = self
            .fan_out(collection, &meta, &shards, read, |group, read| {
                ShardRequest::Get {
                    group,
                    read,
                    ids: by_group.get(&group).cloned().unwrap_or_default(),
                    with_payload,
                    with_vector,
                }
            })
            .await?;
        let mut found: HashMap<PointId, Record> = HashMap::new();
        for r in out.value {
            if let ShardResponse::Records(rs) = r {
                for w in rs {
                    let rec = w.into_record();
                    found.entry(rec.id).or_insert(rec);
                }
            }
        }
        let mut seen = HashSet::new();
        let records = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| found.remove(id))
            .collect();
        Ok(Answer {
            value: records,
            missing_shards: out.missing_shards,
        })
    }

    /// Points matching the filter, summed over shards.
    pub async fn count(
        &self,
        collection: &str,
        filter: Option<Filter>,
        read: &ReadOptions,
    ) -> Result<Answer<u64>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_filter_opt(filter.as_ref())?;
        let out = self
            .fan_out(
                collection,
                &meta,
                &Self::all_shards(&meta),
                read,
                |group, read| ShardRequest::Count {
                    group,
                    read,
                    filter: filter.clone(),
                },
            )
            .await?;
        let count = out
            .value
            .iter()
            .map(|r| match r {
                ShardResponse::Count(n) => *n,
                _ => 0,
            })
            .sum();
        Ok(Answer {
            value: count,
            missing_shards: out.missing_shards,
        })
    }

    /// A page of points in id order across shards.
    #[allow(clippy::too_many_arguments)]
    pub async fn scroll(
        &self,
        collection: &str,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Page>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_scroll_limit(limit)?;
        self.config.limits.check_filter_opt(filter.as_ref())?;
        let out = self
            .fan_out(
                collection,
                &meta,
                &Self::all_shards(&meta),
                read,
                |group, read| ShardRequest::Scroll {
                    group,
                    read,
                    offset,
                    limit,
                    filter: filter.clone(),
                    with_payload,
                    with_vector,
                },
            )
            .await?;
        let mut all: BTreeMap<PointId, Record> = BTreeMap::new();
        let mut next: Option<PointId> = None;
        for r in out.value {
            if let ShardResponse::Page { records, next: n } = r {
                for w in records {
                    let rec = w.into_record();
                    all.entry(rec.id).or_insert(rec);
                }
                if let Some(n) = n {
                    next = Some(next.map_or(n, |m: PointId| m.min(n)));
                }
            }
        }
        let page = merge_pages(all, next, limit);
        Ok(Answer {
            value: page,
            missing_shards: out.missing_shards,
        })
    }

    // ---------------------------------------------------------------- writes

    /// Sends one command to `shard`'s leader, following redirects and elections until
    /// `write_deadline`. Returns the log index.
    async fn write_shard(
        &self,
        collection: &str,
        shard_no: u32,
        shard: &ShardMeta,
        command: &ShardCommand,
    ) -> Result<u64, Error> {
        let command = command.encode();
        if command.len() > MAX_ENTRY_BYTES {
            return Err(Error::TooLarge(format!(
                "collection `{collection}`: one write to shard {shard_no} encodes to {} bytes, over the {MAX_ENTRY_BYTES}-byte limit of one replicated log entry; send fewer or smaller points (a single point's vector and payload must fit)",
                command.len()
            )));
        }
        let req = ShardRequest::Write {
            group: shard.group,
            command,
        };
        let deadline = Instant::now() + self.config.write_deadline;
        let mut target = self.leader_guess(shard);
        let mut attempt = 0u32;
        let mut stopped = StoppedReplicas::default();
        loop {
            attempt += 1;
            let last = match self
                .send(target, &req, self.config.write_call_timeout, false)
                .await
            {
                Ok(ShardResponse::Written { index }) => {
                    self.set_leader(shard.group, target);
                    return Ok(index);
                }
                Ok(other) => {
                    return Err(Error::Internal(format!(
                        "unexpected answer to a write: {other:?}"
                    )));
                }
                Err(CallError::Fatal(e)) => return Err(e),
                Err(CallError::Stopped(msg)) if stopped.note(target, &shard.replicas) => {
                    return Err(Error::Unavailable(format!(
                        "collection `{collection}`: shard {shard_no} (group {}) is stopped on every replica: {msg}",
                        shard.group
                    )));
                }
                Err(
                    CallError::Transient(msg) | CallError::Declined(msg) | CallError::Stopped(msg),
                ) => msg,
            };
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "collection `{collection}`: shard {shard_no} (group {}) accepted no write within {:?}: {last}",
                    shard.group, self.config.write_deadline
                )));
            }
            self.counters.write_retries.fetch_add(1, Ordering::Relaxed);
            // A redirect to a known, different leader is followed at once; otherwise back off
            // and try the next replica (an election may be running).
            let hinted = self.leader_guess(shard);
            if hinted != target && attempt <= 2 * shard.replicas.len() as u32 {
                self.counters
                    .leader_redirects
                    .fetch_add(1, Ordering::Relaxed);
                target = hinted;
                continue;
            }
            tokio::time::sleep(self.resilience.backoff(attempt.min(6))).await;
            let pos = shard
                .replicas
                .iter()
                .position(|n| *n == target)
                .unwrap_or(0);
            target = shard.replicas[(pos + 1) % shard.replicas.len().max(1)];
            self.set_leader(shard.group, target);
        }
    }

    /// Sends each shard its commands (in parallel across shards, in order within one) and
    /// collects the indexes into a token.
    async fn write_all(
        &self,
        collection: &str,
        meta: &CollectionMeta,
        per_shard: BTreeMap<u32, Vec<ShardCommand>>,
    ) -> Result<WriteAck, Error> {
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        let calls = per_shard.into_iter().map(|(s, cmds)| {
            let shard = &meta.shards[s as usize];
            async move {
                let mut indexes = Vec::new();
                for c in &cmds {
                    indexes.push(self.write_shard(collection, s, shard, c).await?);
                }
                Ok::<_, Error>((shard.group, indexes))
            }
        });
        let mut token = ConsistencyToken::new();
        let mut errors = Vec::new();
        for r in join_all(calls).await {
            match r {
                Ok((g, idx)) => {
                    for i in idx {
                        token.observe(g, i);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let operation_id = token.iter().map(|(_, i)| i).max().unwrap_or(0);
        Ok(WriteAck {
            token,
            operation_id,
        })
    }

    /// The collection's centroid placement, training and storing it from `points` if none is
    /// stored yet.
    async fn centroids(
        &self,
        collection: &str,
        meta: &CollectionMeta,
        points: &[PointWrite],
    ) -> Result<CentroidPlacement, Error> {
        if let Some(c) = &meta.centroids {
            return Ok(c.clone());
        }
        let _one = self.training.lock().await;
        if let Some(c) = self.meta(collection)?.centroids {
            return Ok(c);
        }
        let dim = meta.config.dim();
        let metric = meta.config.metric();
        let shards = meta.shards.len() as u32;
        let step = points
            .len()
            .div_ceil(self.config.centroid_sample.max(1))
            .max(1);
        let sample: Vec<f32> = points
            .iter()
            .step_by(step)
            .flat_map(|p| p.vector.iter().copied())
            .collect();
        let seed = meta.shards.first().map_or(0, |s| s.group) ^ 0xc3e7;
        let trained = tokio::task::spawn_blocking(move || {
            let n = sample.len() / dim.max(1);
            let clusters = CentroidPlacement::default_clusters(shards, n);
            CentroidPlacement::train(&sample, dim, metric, shards, clusters, seed)
        })
        .await
        .map_err(|e| Error::Internal(format!("centroid training failed: {e}")))?;
        // The metadata knows collections by name, not by alias.
        let state = self.cluster.state();
        let name = state.resolve(collection).map_or(collection, |(n, _)| n);
        self.cluster.set_centroids(name, trained).await
    }

    /// Inserts or replaces points: each vector of the collection's dimension with finite
    /// components, each id once (checked here before any shard sees a part of the batch).
    pub async fn upsert(
        &self,
        collection: &str,
        points: Vec<PointWrite>,
    ) -> Result<WriteAck, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_points(points.len(), "points")?;
        check_points(&points, meta.config.dim())?;
        let n = meta.shards.len() as u32;
        let mut owned: BTreeMap<u32, Vec<PointWrite>> = BTreeMap::new();
        let centroid = Self::is_centroid(&meta);
        if n <= 1 {
            owned.insert(0, points);
        } else if centroid {
            let c = self.centroids(collection, &meta, &points).await?;
            for p in points {
                owned
                    .entry(c.shard_of(&p.vector).min(n - 1))
                    .or_default()
                    .push(p);
            }
        } else {
            let ring = self.ring(n);
            for p in points {
                owned.entry(ring.shard_of(&p.id)).or_default().push(p);
            }
        }
        let version = self.hlc.tick();
        let mut per_shard: BTreeMap<u32, Vec<ShardCommand>> = BTreeMap::new();
        if centroid {
            // Every other shard forgets these ids (as of this version), so a point whose vector
            // moved it to another shard does not stay behind in the old one.
            for s in 0..n {
                let ids: Vec<PointId> = owned
                    .iter()
                    .filter(|(o, _)| **o != s)
                    .flat_map(|(_, ps)| ps.iter().map(|p| p.id))
                    .collect();
                if !ids.is_empty() {
                    per_shard
                        .entry(s)
                        .or_default()
                        .push(ShardCommand::DeleteAt { ids, version });
                }
            }
        }
        for (s, points) in owned {
            // Batches larger than one log entry may carry go as several entries.
            for points in split_by_bytes(points, UPSERT_ENTRY_BYTES)? {
                per_shard
                    .entry(s)
                    .or_default()
                    .push(ShardCommand::UpsertAt { points, version });
            }
        }
        self.write_all(collection, &meta, per_shard).await
    }

    /// Deletes points by id.
    pub async fn delete(&self, collection: &str, ids: Vec<PointId>) -> Result<WriteAck, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_points(ids.len(), "ids")?;
        let n = meta.shards.len() as u32;
        let version = self.hlc.tick();
        let mut per_shard: BTreeMap<u32, Vec<ShardCommand>> = BTreeMap::new();
        if n <= 1 || Self::is_centroid(&meta) {
            for s in 0..n {
                per_shard.insert(
                    s,
                    vec![ShardCommand::DeleteAt {
                        ids: ids.clone(),
                        version,
                    }],
                );
            }
        } else {
            let ring = self.ring(n);
            let mut by: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
            for id in ids {
                by.entry(ring.shard_of(&id)).or_default().push(id);
            }
            for (s, ids) in by {
                per_shard.insert(s, vec![ShardCommand::DeleteAt { ids, version }]);
            }
        }
        self.write_all(collection, &meta, per_shard).await
    }

    /// Deletes every point matching `filter`, on every shard.
    pub async fn delete_by_filter(
        &self,
        collection: &str,
        filter: Filter,
    ) -> Result<WriteAck, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_filter(&filter)?;
        let per_shard = Self::all_shards(&meta)
            .into_iter()
            .map(|s| {
                (
                    s,
                    vec![ShardCommand::DeleteByFilter {
                        filter: filter.clone(),
                    }],
                )
            })
            .collect();
        self.write_all(collection, &meta, per_shard).await
    }

    /// The first `limit` matching points ordered by an indexed payload field, across shards:
    /// each shard returns its own first `limit` with their values, merged here by value (in the
    /// asked direction), then id.
    #[allow(clippy::too_many_arguments)]
    pub async fn scroll_ordered(
        &self,
        collection: &str,
        order: rpc::WireOrderBy,
        limit: usize,
        filter: Option<Filter>,
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Record>>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_scroll_limit(limit)?;
        self.config.limits.check_filter_opt(filter.as_ref())?;
        let descending = order.descending;
        let out = self
            .fan_out(
                collection,
                &meta,
                &Self::all_shards(&meta),
                read,
                |group, read| ShardRequest::ScrollOrdered {
                    group,
                    read,
                    order: order.clone(),
                    limit,
                    filter: filter.clone(),
                    with_payload,
                    with_vector,
                },
            )
            .await?;
        let mut rows: Vec<(f64, Record)> = Vec::new();
        for r in out.value {
            if let ShardResponse::OrderedPage(page) = r {
                rows.extend(page.into_iter().map(|(v, w)| (v, w.into_record())));
            }
        }
        rows.sort_by(|a, b| {
            let by = if descending {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            by.then(a.1.id.cmp(&b.1.id))
        });
        rows.dedup_by(|a, b| a.1.id == b.1.id);
        rows.truncate(limit);
        Ok(Answer {
            value: rows.into_iter().map(|(_, r)| r).collect(),
            missing_shards: out.missing_shards,
        })
    }

    /// Sends one command to every shard of the collection: payload-index changes and payload
    /// updates. A shard ignores ids it does not hold, so an update by ids needs no placement and
    /// stays right under centroid placement, where a point's shard follows its vector.
    pub async fn write_every_shard(
        &self,
        collection: &str,
        command: ShardCommand,
    ) -> Result<WriteAck, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_command(&command)?;
        let per_shard = Self::all_shards(&meta)
            .into_iter()
            .map(|s| (s, vec![command.clone()]))
            .collect();
        self.write_all(collection, &meta, per_shard).await
    }

    /// Per shard held on this node (shard number, the local replica's calibrations): what each
    /// sealed segment measured about itself when it was built. Replicas build their own
    /// segments, so another node's replica of the same shard may have chosen differently.
    pub fn calibrations(
        &self,
        collection: &str,
    ) -> Result<Vec<(u32, Vec<SegmentCalibration>)>, Error> {
        let meta = self.meta(collection)?;
        Ok(meta
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, shard)| {
                let local = self.cluster.local_shard(shard.group)?;
                Some((i as u32, local.app.shard().calibrations()))
            })
            .collect())
    }

    // ---------------------------------------------------------------- metrics

    /// Routing counters in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let c = &self.counters;
        let s = &self.resilience.stats;
        let rows: [(&str, &str, u64); 13] = [
            (
                "shoal_router_reads_total",
                "Reads fanned out.",
                c.reads.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_shard_calls_total",
                "Calls to replicas on other nodes.",
                c.shard_calls.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_local_calls_total",
                "Calls to replicas on this node.",
                c.local_calls.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_partial_answers_total",
                "Reads answered without some shard (allow_partial).",
                c.partial_answers.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_failed_reads_total",
                "Reads failed because a shard was unreachable.",
                c.failed_reads.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_writes_total",
                "Writes routed.",
                c.writes.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_write_retries_total",
                "Write attempts beyond the first (redirects, elections).",
                c.write_retries.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_leader_redirects_total",
                "Writes re-sent to a leader named by a follower.",
                c.leader_redirects.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_retries_total",
                "Read attempts beyond the first.",
                s.retries.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_hedges_total",
                "Hedged read requests sent.",
                s.hedges.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_hedge_wins_total",
                "Hedged requests that answered first.",
                s.hedge_wins.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_breaker_opens_total",
                "Circuit breakers opened.",
                s.breaker_opens.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_breaker_rejections_total",
                "Calls refused by an open circuit breaker.",
                s.breaker_rejections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        out
    }
}

/// The router's own checks of an upsert: at least one point, every vector of dimension `dim`
/// with finite components, no id twice.
fn check_points(points: &[PointWrite], dim: usize) -> Result<(), Error> {
    if points.is_empty() {
        return Err(Error::bad("no points to upsert"));
    }
    let mut seen = HashSet::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let what = format!("points[{i}] (id {})", p.id);
        crate::collection::limits::check_vector(&p.vector, dim, &what)?;
        if !seen.insert(p.id) {
            return Err(Error::bad(format!(
                "duplicate point id {} in one request",
                p.id
            )));
        }
    }
    Ok(())
}

/// Joins per-shard scroll pages: the first `limit` ids overall, and where the next page starts
/// (the first id not returned: either one fetched beyond the limit, or the smallest id a shard
/// still had).
fn merge_pages(all: BTreeMap<PointId, Record>, shard_next: Option<PointId>, limit: usize) -> Page {
    let mut records: Vec<Record> = all.into_values().collect();
    let mut next = shard_next;
    if records.len() > limit {
        let beyond = records[limit].id;
        next = Some(next.map_or(beyond, |n| n.min(beyond)));
        records.truncate(limit);
    }
    Page { records, next }
}

/// Service [`rpc::SERVICE`]: runs shard requests from other nodes' routers on this node's
/// replicas.
pub struct ShardService {
    cluster: Weak<Cluster>,
}

impl ShardService {
    /// The service byte to register it under.
    pub const SERVICE: u8 = rpc::SERVICE;

    /// The data-plane service over `cluster`'s replicas (holding the cluster weakly: it answers
    /// "shutting down" once the node is gone).
    pub fn new(cluster: &Arc<Cluster>) -> Arc<Self> {
        Arc::new(ShardService {
            cluster: Arc::downgrade(cluster),
        })
    }
}

impl AppService for ShardService {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> AppFuture {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let resp = match (ShardRequest::decode(&payload), cluster.upgrade()) {
                (Err(e), _) => ShardResponse::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!("undecodable shard request from node {from}: {e}"),
                },
                (Ok(_), None) => ShardResponse::Error {
                    kind: ErrorKind::Unavailable,
                    message: "node shutting down".into(),
                },
                (Ok(req), Some(cluster)) => match cluster.local_shard(req.group()) {
                    Some(local) => rpc::execute(&local.group, &local.app, req).await,
                    None => rpc::no_shard(req.group(), cluster.node_id()),
                },
            };
            resp.encode()
        })
    }
}
