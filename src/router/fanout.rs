//! Reaching shards: one call to one replica (a local call on this node, service 2 otherwise),
//! its answer classified for the resilience layer, and the fan-out of a read to one replica per
//! shard in parallel, which fails the read or answers partially when a shard cannot be reached.

use super::resilience::{CallError, Failure};
use super::rpc::{self, ErrorKind, ReadSpec, ShardRequest, ShardResponse};
use super::{Consistency, ConsistencyToken, Router, exec};
use crate::cluster::CollectionMeta;
use crate::collection::Error;
use crate::raft::{GroupId, NodeId, TransportError};
use futures_util::future::join_all;
use std::sync::atomic::Ordering;
use std::time::Duration;

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

/// How one shard call ended, for the fan-out.
type ShardResult = Result<ShardResponse, Failure<Error>>;

impl Router {
    /// Sends `req` to `node` (a local call when it is this node) and classifies the answer.
    ///
    /// `spread`: one of several calls a request makes to shards on this node; it then runs as its
    /// own task, so that an idle worker takes it and the shards are searched in parallel (on a
    /// busy runtime the task stays on the worker that spawned it).
    pub(super) async fn send(
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

    /// [`fan_out`](Self::fan_out) to every shard of the collection (the reads that aggregate
    /// over all points: counts, scrolls, retrieves by id, facets, samples).
    pub(super) async fn fan_out_all(
        &self,
        collection: &str,
        meta: &CollectionMeta,
        read: &ReadOptions,
        make: impl Fn(GroupId, ReadSpec) -> ShardRequest,
    ) -> Result<Answer<Vec<ShardResponse>>, Error> {
        let shards = Self::all_shards(meta);
        self.fan_out(collection, meta, &shards, read, make).await
    }

    /// Sends one read per shard in `shards` (in parallel), each through the resilience layer;
    /// answers per shard, or the error for the whole read.
    pub(super) async fn fan_out(
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
}
