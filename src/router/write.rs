//! The write path: a batch checked, split by placement (hash ring or trained centroids, the
//! quantiser trained once per collection), versioned by the node's clock, cut into log-entry
//! sized commands and sent to each shard's leader, following redirects and elections until the
//! write deadline; the indexes reached become the caller's session token.

use super::resilience::{CallError, StoppedReplicas};
use super::rpc::{ShardRequest, ShardResponse};
use super::write_split::{UPSERT_ENTRY_BYTES, split_by_bytes};
use super::{ConsistencyToken, Router};
use crate::cluster::placement::CentroidPlacement;
use crate::cluster::{CollectionMeta, ShardMeta};
use crate::collection::Error;
use crate::raft::budget::MAX_ENTRY_BYTES;
use crate::shard::{Filter, PointId, PointWrite, ShardCommand, VectorUpdate};
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// The answer to a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAck {
    /// Per group, the log index the write reached: pass back for session reads.
    pub token: ConsistencyToken,
    /// The largest of those indexes (Qdrant's `operation_id`).
    pub operation_id: u64,
}

impl Router {
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
    pub(super) async fn write_all(
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
        // With named vectors, each point carries them packed (`collection::named`).
        check_points(&points, &meta.vectors().lane_dims())?;
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
        let filter = self.check_filter(&meta, Some(filter))?.unwrap_or_default();
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

    /// Replaces vectors of existing points, keeping their payloads (Qdrant's `update_vectors`):
    /// each update names the vectors (lanes) it changes, each of that vector's dimension with
    /// finite components; ids the collection does not hold are ignored. Under centroid
    /// placement a point's shard follows its vector, so a vector change there is refused (an
    /// upsert moves the point).
    pub async fn update_vectors(
        &self,
        collection: &str,
        updates: Vec<VectorUpdate>,
    ) -> Result<WriteAck, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_points(updates.len(), "points")?;
        if updates.is_empty() {
            return Err(Error::bad("no points to update"));
        }
        if Self::is_centroid(&meta) {
            return Err(Error::bad(format!(
                "collection `{collection}` places points by centroid, so a point's shard follows its vector: upsert the point with its new vector instead"
            )));
        }
        let dims = meta.vectors().lane_dims();
        let mut seen = HashSet::with_capacity(updates.len());
        for (i, u) in updates.iter().enumerate() {
            let what = format!("points[{i}] (id {})", u.id);
            if u.vectors.is_empty() {
                return Err(Error::bad(format!("{what}: no vector to update")));
            }
            let mut lanes = HashSet::new();
            for (lane, v) in &u.vectors {
                let dim = dims.get(*lane as usize).ok_or_else(|| {
                    Error::bad(format!("{what}: the collection has no vector lane {lane}"))
                })?;
                if !lanes.insert(*lane) {
                    return Err(Error::bad(format!("{what}: a vector is given twice")));
                }
                crate::collection::limits::check_vector(v, *dim, &what)?;
            }
            if !seen.insert(u.id) {
                return Err(Error::bad(format!(
                    "duplicate point id {} in one request",
                    u.id
                )));
            }
        }
        let n = meta.shards.len() as u32;
        let ring = self.ring(n.max(1));
        let mut owned: BTreeMap<u32, Vec<VectorUpdate>> = BTreeMap::new();
        for u in updates {
            let s = if n <= 1 { 0 } else { ring.shard_of(&u.id) };
            owned.entry(s).or_default().push(u);
        }
        // Entries of at most UPSERT_ENTRY_BYTES, as an upsert's.
        let mut per_shard: BTreeMap<u32, Vec<ShardCommand>> = BTreeMap::new();
        for (s, updates) in owned {
            for points in split_by_bytes(updates, UPSERT_ENTRY_BYTES)? {
                per_shard
                    .entry(s)
                    .or_default()
                    .push(ShardCommand::UpdateVectors { points });
            }
        }
        self.write_all(collection, &meta, per_shard).await
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
        let command = self.check_command(&meta, command)?;
        let per_shard = Self::all_shards(&meta)
            .into_iter()
            .map(|s| (s, vec![command.clone()]))
            .collect();
        self.write_all(collection, &meta, per_shard).await
    }
}

/// The router's own checks of an upsert: at least one point, every vector packed from lanes
/// of dimensions `dims`, each lane's part finite or absent (NaNs, see
/// [`crate::shard::lanes::is_absent`]: what the API packs for a named vector left out, and
/// what a recovered snapshot's point without a vector reads as; JSON cannot carry a NaN), no
/// id twice.
fn check_points(points: &[PointWrite], dims: &[usize]) -> Result<(), Error> {
    if points.is_empty() {
        return Err(Error::bad("no points to upsert"));
    }
    let packed: usize = dims.iter().sum();
    let mut seen = HashSet::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let what = format!("points[{i}] (id {})", p.id);
        if p.vector.len() != packed {
            // The whole vector's dimension, as the message has always said.
            crate::collection::limits::check_vector(&p.vector, packed, &what)?;
        }
        let mut start = 0;
        for dim in dims {
            let part = &p.vector[start..start + dim];
            start += dim;
            if !crate::shard::lanes::is_absent(part) {
                crate::collection::limits::check_vector(part, *dim, &what)?;
            }
        }
        if !seen.insert(p.id) {
            return Err(Error::bad(format!(
                "duplicate point id {} in one request",
                p.id
            )));
        }
    }
    Ok(())
}
