//! Recovering users' snapshots ([`crate::cluster::snapshots`]) through the replicated paths.
//!
//! Why not install the snapshot's shard files directly: a collection's replicas live on several
//! nodes and stay identical only because each applies the same Raft log. Recovering by writing
//! through that log — recreate the collection through the metadata group, then the payload
//! indexes and the points through the ordinary write path, in batches — keeps every replica
//! consistent with no new mechanism, at the cost of re-indexing (the segments are built again
//! from the points). The points keep their ids, vectors (as stored: normalised for cosine) and
//! payloads, so exact answers of the recovered collection equal the original's. Under centroid
//! placement the quantiser that places points is trained again on the first recovered batch.
//!
//! A recovery that fails half-way answers the error; the collection then holds what was
//! written so far, and recovering again replaces it.

use super::Router;
use crate::cluster::snapshots::{Opened, SnapCollection, SnapshotError, SnapshotKind, open};
use crate::collection::Error;
use crate::collection::limits::validate_name;
use crate::shard::{Filter, Lanes, PointId, PointWrite, ShardCommand};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Points per recovery write (within the request caps and well below a log entry's size for
/// vectors of every dimension shoal takes).
const RECOVER_BATCH: usize = 256;

/// Serialises the recoveries of a node.
static RECOVERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Router {
    async fn open_snapshot(
        &self,
        path: PathBuf,
        checksum: Option<String>,
    ) -> Result<Opened, SnapshotError> {
        let root = self.cluster.snapshots().root();
        tokio::task::spawn_blocking(move || open(&path, checksum.as_deref(), &root))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Recovers collection `name` from the collection snapshot at `path` (checked against
    /// `checksum`, SHA-256 hex, when given): an existing collection of that name is deleted,
    /// the snapshot's collection is created under `name` with its configuration, then its
    /// payload indexes and points are written.
    pub async fn recover_collection(
        &self,
        name: &str,
        path: PathBuf,
        checksum: Option<String>,
    ) -> Result<(), SnapshotError> {
        validate_name(name)?;
        // One recovery at a time on a node: two of one name would interleave delete and create.
        let _one = RECOVERING.lock().await;
        let opened = self.open_snapshot(path, checksum).await?;
        if opened.meta.kind != SnapshotKind::Collection || opened.meta.collections.len() != 1 {
            return Err(Error::bad(format!(
                "this is a {} snapshot: a collection is recovered from a collection snapshot",
                kind_name(opened.meta.kind)
            ))
            .into());
        }
        let col = &opened.meta.collections[0];
        let shards = &opened.shards[0];
        let state = self.cluster.state();
        if state.aliases.contains_key(name) {
            return Err(Error::bad(format!(
                "`{name}` is an alias: recover into a collection name (or delete the alias first)"
            ))
            .into());
        }
        // What the create would refuse for good is refused before anything is deleted.
        let spec = crate::cluster::snapshots::recoverable_spec(&col.spec, &col.named);
        if col.named.is_empty() {
            spec.resolve(self.cluster.defaults(), 1)?;
        } else {
            crate::collection::named::resolve_named(&spec, &col.named, self.cluster.defaults(), 1)?;
        }
        let rf = col.spec.replication_factor.unwrap_or(1) as usize;
        if rf > state.members.len() {
            return Err(Error::bad(format!(
                "the snapshot's collection has replication_factor {rf}; this cluster has {} member(s) \
                 (nothing was changed)",
                state.members.len()
            ))
            .into());
        }
        drop(state);
        self.cluster.delete_collection(name).await?;
        self.cluster
            .create_named_collection(name, spec, col.named.clone())
            .await?;
        self.write_indexes(name, None, shards).await?;
        for (_, shard) in shards {
            self.write_points(name, shard).await?;
        }
        Ok(())
    }

    /// Recovers shard `shard_id` of the existing collection `name` from the shard snapshot at
    /// `path`: the shard's points are deleted, then the snapshot's payload indexes (on that
    /// shard) and points are written. The snapshot must be of a shard with that number in a
    /// collection of as many shards, of the same dimension and metric, under hash placement
    /// (where a point's shard follows from its id, so the points land in that shard again).
    /// Payload indexes the shard has and the snapshot lacks are kept.
    pub async fn recover_shard(
        &self,
        name: &str,
        shard_id: u32,
        path: PathBuf,
        checksum: Option<String>,
    ) -> Result<(), SnapshotError> {
        let _one = RECOVERING.lock().await;
        let meta = self.meta(name)?;
        let shards_now = meta.shards.len() as u32;
        if shard_id >= shards_now {
            return Err(SnapshotError::NotFound(format!(
                "collection `{name}` has no shard {shard_id} (it has {shards_now} shard(s), numbered from 0)"
            )));
        }
        let opened = self.open_snapshot(path, checksum).await?;
        if opened.meta.kind != SnapshotKind::Shard || opened.meta.collections.len() != 1 {
            return Err(Error::bad(format!(
                "this is a {} snapshot: a shard is recovered from a shard snapshot",
                kind_name(opened.meta.kind)
            ))
            .into());
        }
        let col: &SnapCollection = &opened.meta.collections[0];
        let fits = col.shards == [shard_id]
            && col.shard_number == shards_now
            && col.spec.vectors.dim == meta.config.vectors.dim
            && col.spec.vectors.metric == meta.config.vectors.metric
            && col.named == crate::cluster::snapshots::named_specs(&meta.named);
        if !fits {
            return Err(Error::bad(format!(
                "the snapshot holds shard {:?} of a {}-shard collection of {}-dimensional {:?} vectors; \
                 shard {shard_id} of `{name}` ({shards_now} shards, {}-dimensional {:?}) can only be \
                 recovered from a snapshot of the same shard of a collection of that shape",
                col.shards,
                col.shard_number,
                col.spec.vectors.dim,
                col.spec.vectors.metric,
                meta.config.vectors.dim,
                meta.config.vectors.metric
            ))
            .into());
        }
        if Self::is_centroid(&meta) {
            return Err(Error::bad(format!(
                "collection `{name}` places points by centroid: a shard snapshot cannot be recovered \
                 into one shard of it (its points would be placed by their vectors); recover a \
                 collection snapshot instead"
            ))
            .into());
        }
        let everything = ShardCommand::DeleteByFilter {
            filter: Filter::default(),
        };
        self.write_all(name, &meta, BTreeMap::from([(shard_id, vec![everything])]))
            .await?;
        let shards = &opened.shards[0];
        self.write_indexes(name, Some(shard_id), shards).await?;
        for (_, shard) in shards {
            self.write_points(name, shard).await?;
        }
        Ok(())
    }

    /// Creates the payload indexes the restored shards have: on every shard of `name`, or on
    /// `only` that one.
    async fn write_indexes(
        &self,
        name: &str,
        only: Option<u32>,
        shards: &[(u32, Lanes)],
    ) -> Result<(), Error> {
        let mut schema = BTreeMap::new();
        for (_, shard) in shards {
            for (field, info) in shard.primary().payload_schema() {
                schema.insert(field, info.data_type);
            }
        }
        for (field, field_type) in schema {
            let command = ShardCommand::CreateFieldIndex { field, field_type };
            match only {
                None => {
                    self.write_every_shard(name, command).await?;
                }
                Some(s) => {
                    let meta = self.meta(name)?;
                    self.config.limits.check_command(&command)?;
                    self.write_all(name, &meta, BTreeMap::from([(s, vec![command])]))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Upserts every point of `shard` into `name`, in batches (with all its vectors packed).
    async fn write_points(&self, name: &str, shard: &Lanes) -> Result<(), Error> {
        let batch = RECOVER_BATCH.min(self.config.limits.max_batch_points.max(1));
        let mut offset: Option<PointId> = None;
        loop {
            let (records, next) = shard.primary().scroll(offset, batch, None, true, true);
            let points: Vec<PointWrite> = shard
                .join_records(records)
                .into_iter()
                .map(|r| PointWrite {
                    id: r.id,
                    vector: r.vector.unwrap_or_default(),
                    payload: r.payload.map(|p| (*p).clone()),
                })
                .collect();
            if !points.is_empty() {
                self.upsert(name, points).await?;
            }
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(()),
            }
        }
    }
}

fn kind_name(k: SnapshotKind) -> &'static str {
    match k {
        SnapshotKind::Collection => "collection",
        SnapshotKind::Shard => "shard",
        SnapshotKind::Full => "full",
    }
}
