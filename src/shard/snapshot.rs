//! Whole-shard snapshots: what Raft installs on a lagging replica, and what a restart loads
//! before replaying the log.
//!
//! One file, `shard.snap`, written atomically (temporary file, fsync, rename, fsync of the
//! directory): `b"SHOALSNP"`, format version (u32 LE), body length (u64 LE), the postcard body,
//! and a CRC-32 of the body (u32 LE). The body holds the config, the last applied index and, per
//! segment, its point ids, raw vectors (normalised for cosine), payloads (JSON text) and live-row
//! bits; an indexed segment stores its IVF-PQ parts instead of raw vectors, so a restored shard
//! answers exactly like the original. A segment sealed while its build was still running is
//! rebuilt on restore with the shard's fixed seed. (Memory-mapped segment files from `storage`
//! will replace this single file once wired in.)

use super::point::{PointId, json_text};
use super::{
    Loc, SegIndex, Segment, SegmentData, Shard, ShardConfig, ShardError, State, build_ivfpq,
};
use crate::index::ivfpq::{IvfPqIndex, IvfPqMeta, IvfPqParts};
use crate::index::{FlatIndex, RowSet, Slab};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SHOALSNP";
/// Snapshot format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// The snapshot file's name inside the snapshot directory.
pub const FILE_NAME: &str = "shard.snap";

#[derive(Serialize, Deserialize)]
struct Body {
    config: ShardConfig,
    last_applied: u64,
    next_segment: u32,
    segments: Vec<SnapSegment>,
}

#[derive(Serialize, Deserialize)]
struct SnapSegment {
    id: u32,
    sealed: bool,
    points: Vec<PointId>,
    vectors: Vec<f32>,
    #[serde(with = "json_text")]
    payloads: Vec<Option<super::Payload>>,
    live: Vec<u64>,
    /// The built IVF-PQ index's parts (then `vectors` is empty: the parts hold them).
    ivf: Option<IvfParts>,
}

#[derive(Serialize, Deserialize)]
struct IvfParts {
    meta: IvfPqMeta,
    centroids: Vec<f32>,
    codebooks: Vec<f32>,
    list_offsets: Vec<u64>,
    codes: Vec<u8>,
    ids: Vec<u64>,
    vectors: Vec<f32>,
}

impl IvfParts {
    fn from_index(index: &IvfPqIndex) -> Self {
        let p = index.to_parts();
        IvfParts {
            meta: p.meta,
            centroids: p.centroids.to_vec(),
            codebooks: p.codebooks.to_vec(),
            list_offsets: p.list_offsets.to_vec(),
            codes: p.codes.to_vec(),
            ids: p.ids.to_vec(),
            vectors: p.vectors.to_vec(),
        }
    }

    fn into_index(self) -> Result<IvfPqIndex, ShardError> {
        Ok(IvfPqIndex::from_parts(IvfPqParts {
            meta: self.meta,
            centroids: Slab::from(self.centroids),
            codebooks: Slab::from(self.codebooks),
            list_offsets: Slab::from(self.list_offsets),
            codes: Slab::from(self.codes),
            ids: Slab::from(self.ids),
            vectors: Slab::from(self.vectors),
        })?)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one (the storage
/// layer's protocol), creating the parent directory first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::storage::atomic::write_atomic(path, bytes).map_err(std::io::Error::other)
}

impl Shard {
    /// Writes the whole shard state into `dir` (atomically replacing an older snapshot).
    /// Returns the last applied index the snapshot covers.
    pub fn snapshot(&self, dir: &Path) -> Result<u64, ShardError> {
        let body = {
            let state = super::read(&self.inner.state);
            let last = state.segments.len().saturating_sub(1);
            Body {
                config: self.inner.config.clone(),
                last_applied: state.last_applied,
                next_segment: state.next_segment,
                segments: state
                    .segments
                    .iter()
                    .enumerate()
                    .map(|(i, seg)| SnapSegment {
                        id: seg.id,
                        sealed: i < last,
                        points: seg.data.points.clone(),
                        ivf: match &seg.data.index {
                            SegIndex::IvfPq { index, .. } => Some(IvfParts::from_index(index)),
                            SegIndex::Flat(_) => None,
                        },
                        vectors: match &seg.data.index {
                            SegIndex::IvfPq { .. } => Vec::new(),
                            SegIndex::Flat(f) => f.vectors().to_vec(),
                        },
                        payloads: seg
                            .data
                            .payloads
                            .iter()
                            .map(|p| p.as_deref().cloned())
                            .collect(),
                        live: seg.live.words().to_vec(),
                    })
                    .collect(),
            }
        };
        let encoded =
            postcard::to_stdvec(&body).map_err(|e| ShardError::Corrupted(e.to_string()))?;
        let mut bytes = Vec::with_capacity(encoded.len() + 24);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(&crc32fast::hash(&encoded).to_le_bytes());
        write_atomic(&dir.join(FILE_NAME), &bytes)?;
        Ok(body.last_applied)
    }

    /// Whether `dir` holds a snapshot.
    pub fn has_snapshot(dir: &Path) -> bool {
        dir.join(FILE_NAME).is_file()
    }

    /// Loads a shard from a snapshot written by [`Shard::snapshot`]. Sealed segments are
    /// re-indexed before this returns. `background` chooses how later seals are built.
    pub fn restore(dir: &Path, background: bool) -> Result<Shard, ShardError> {
        let bytes = std::fs::read(dir.join(FILE_NAME))?;
        let bad = |m: &str| ShardError::Corrupted(m.to_owned());
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(bad("not a shoal shard snapshot (bad magic)"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| bad("header"))?);
        if version != FORMAT_VERSION {
            return Err(ShardError::Corrupted(format!(
                "snapshot format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| bad("header"))?) as usize;
        if bytes.len() != 24usize.saturating_add(len) {
            return Err(bad("truncated snapshot"));
        }
        let encoded = &bytes[20..20 + len];
        let crc = u32::from_le_bytes(bytes[20 + len..].try_into().map_err(|_| bad("footer"))?);
        if crc32fast::hash(encoded) != crc {
            return Err(bad("checksum mismatch"));
        }
        let body: Body =
            postcard::from_bytes(encoded).map_err(|e| ShardError::Corrupted(e.to_string()))?;
        let config = body.config;
        let mut state = State {
            last_applied: body.last_applied,
            next_segment: body.next_segment,
            segments: Vec::with_capacity(body.segments.len()),
            ids: BTreeMap::new(),
            versions: std::collections::HashMap::new(),
        };
        for s in body.segments {
            let n = s.points.len();
            let expected_vectors = if s.ivf.is_some() { 0 } else { n * config.dim };
            if s.payloads.len() != n || s.vectors.len() != expected_vectors {
                return Err(bad("segment arrays disagree in length"));
            }
            let live = RowSet::from_words(n, s.live).ok_or_else(|| bad("tombstone bits"))?;
            let index = match s.ivf {
                Some(parts) => {
                    let index = parts.into_index()?;
                    if index.len() != n || index.dim() != config.dim {
                        return Err(bad("IVF-PQ index does not match its segment"));
                    }
                    let mut pos = vec![u32::MAX; n];
                    for (r, local) in index.ids().iter().enumerate() {
                        match pos.get_mut(*local as usize) {
                            Some(p) if *p == u32::MAX => *p = r as u32,
                            _ => return Err(bad("IVF-PQ row ids are not a permutation")),
                        }
                    }
                    SegIndex::IvfPq {
                        index: Box::new(index),
                        pos,
                    }
                }
                None => {
                    let mut flat = FlatIndex::new(config.dim, config.metric);
                    let ids: Vec<u64> = (0..n as u64).collect();
                    flat.add_batch(&ids, &s.vectors)?;
                    SegIndex::Flat(flat)
                }
            };
            let mut data = SegmentData {
                points: s.points,
                payloads: s.payloads.into_iter().map(|p| p.map(Arc::new)).collect(),
                index,
            };
            // A segment sealed while its build was still running is built now.
            if s.sealed
                && matches!(data.index, SegIndex::Flat(_))
                && let Some(index) = build_ivfpq(&config, &data)
            {
                data.index = index;
            }
            let mut live_count = 0;
            for row in live.iter() {
                live_count += 1;
                state.ids.insert(
                    data.points[row],
                    Loc {
                        seg: s.id,
                        row: row as u32,
                    },
                );
            }
            state.segments.push(Segment {
                id: s.id,
                data: Arc::new(data),
                live,
                live_count,
            });
        }
        if state.segments.is_empty() {
            return Err(bad("no segments"));
        }
        Ok(Shard::with_state(config, Some(state), background))
    }
}
