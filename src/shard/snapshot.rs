//! Whole-shard snapshots: what Raft installs on a lagging replica, and what a restart loads
//! before replaying the log. **A snapshot is the segment files.**
//!
//! A snapshot directory holds:
//! - every built (IVF-PQ) segment's file, `seg-<segment>-<nonce>.seg`, **hard-linked** from the
//!   shard's data directory (sealed segment files are written once and never change, so a link
//!   is a consistent copy in O(1)); copied when a link is impossible (another file system), and
//!   written from memory when the shard has no file for the segment;
//! - `shard.snap`, the manifest and the small mutable part, written atomically (temporary file,
//!   fsync, rename, fsync of the directory): a storage envelope ([`envelope::SHARD_SNAPSHOT`],
//!   magic `\x89SHS\r\n\x1a\n`, specified in the storage module doc) around a postcard body.
//!   Before the envelope (format versions 1 to 3) the body was framed by hand as `b"SHOALSNP"`,
//!   version (u32 LE), body length (u64 LE), body, CRC-32; those files still load. The body
//!   holds the config (JSON text), the last applied index, the point versions, and per segment its live-row bits
//!   and either `{file name, length, header CRC}` of its segment file or its rows inline (point
//!   ids, raw vectors, payloads) for the mutable segment and a sealed segment still being
//!   indexed. The id map is rebuilt from the live rows.
//!
//! A restore checks every segment file against the manifest (length, header CRC) and all its
//! section checksums, links it into the shard's data directory under a fresh name, and maps it:
//! nothing is parsed but payloads. A sealed segment snapshotted while its build was still running
//! is built again (same seed). Format version 3 appends the payload schema (JSON text, after the
//! version 2 body, inside the checksummed region); payload indexes are not stored but rebuilt
//! from the payloads on restore. Version 4 is version 3's body inside the envelope. Version 5
//! appends, per segment, the bits of its rows whose vector was deleted (Qdrant's
//! `delete_vectors`, `Segment::vectorless`). Versions 4, 3, 2 and 1 (one file holding
//! everything) are still read; `tests/fixtures/shard_snapshot_v2` is
//! a version-2 snapshot every build must restore.
//!
//! The snapshot takes the shard's lock only to clone its segment list, versions and applied
//! index (one consistent instant); linking and writing run outside the lock, and a file that a
//! compaction retires meanwhile stays on disk until the snapshot has let go of it.

use super::point::{PointId, json_text};
use super::segment::{
    Chunk, IvfSeg, Rows, SEGMENT_EXT, SegBody, SegFile, Segment, open_segment_file,
    segment_file_name, write_segment_file,
};
use super::{Loc, Shard, ShardConfig, ShardError, State};
use crate::index::ivfpq::{IvfPqIndex, IvfPqMeta, IvfPqParts};
use crate::index::{Metric, RowSet, Slab};
use crate::storage::envelope;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Snapshot format version written by this build (the envelope's version,
/// [`envelope::SHARD_SNAPSHOT`]).
pub const FORMAT_VERSION: u32 = envelope::SHARD_SNAPSHOT.version;
/// The manifest's name inside the snapshot directory.
pub const FILE_NAME: &str = "shard.snap";

#[derive(Serialize, Deserialize)]
struct Body {
    /// The `ShardConfig` as JSON, so fields added later load with their defaults.
    config: String,
    last_applied: u64,
    next_segment: u32,
    /// `(id, version)` sorted by id.
    versions: Vec<(PointId, u64)>,
    segments: Vec<SnapSegment>,
}

/// What format 3 appends to the body.
#[derive(Serialize, Deserialize)]
struct Extra {
    /// The payload schema as JSON text.
    schema: String,
}

/// What format 5 appends after [`Extra`]: per segment, in the body's order, the bits of its rows
/// whose vector was deleted ([`Segment::vectorless`]; no words for none).
#[derive(Serialize, Deserialize)]
struct Vectorless {
    segments: Vec<Vec<u64>>,
}

#[derive(Serialize, Deserialize)]
struct SnapSegment {
    id: u32,
    sealed: bool,
    rows: u64,
    live: Vec<u64>,
    content: Content,
}

#[derive(Serialize, Deserialize)]
enum Content {
    /// A segment file next to the manifest.
    File { name: String, len: u64, crc: u32 },
    /// Rows inline (vectors as stored: normalised for cosine).
    Rows {
        points: Vec<PointId>,
        vectors: Vec<f32>,
        #[serde(with = "json_text")]
        payloads: Vec<Option<super::Payload>>,
    },
}

fn is_segment_file(name: &str) -> bool {
    name.starts_with("seg-") && name.ends_with(&format!(".{SEGMENT_EXT}"))
}

/// Removes segment files (and interrupted writes) in `dir` whose names are not in `keep`.
pub(super) fn sweep_segment_dir(dir: &Path, keep: &HashSet<String>) -> std::io::Result<()> {
    crate::storage::atomic::remove_temp_files(dir).map_err(std::io::Error::other)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if is_segment_file(&name) && !keep.contains(&name) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Puts a copy of `src` at `dst`: a hard link when the file system allows it, else a byte copy
/// (fsynced). Returns whether it linked.
fn link_or_copy(src: &Path, dst: &Path) -> std::io::Result<bool> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        Err(e) => {
            tracing::debug!(src = %src.display(), error = %e, "hard link refused, copying");
            let _ = std::fs::remove_file(dst);
            std::fs::copy(src, dst)?;
            std::fs::File::open(dst)?.sync_all()?;
            Ok(false)
        }
    }
}

/// Places a built segment's file in the snapshot directory and returns its manifest entry.
fn snapshot_file(dir: &Path, seg_id: u32, ivf: &IvfSeg) -> Result<Content, ShardError> {
    if let Some(f) = &ivf.file {
        let name = f.name();
        match link_or_copy(&f.path, &dir.join(&name)) {
            Ok(_) => {
                return Ok(Content::File {
                    name,
                    len: f.len,
                    crc: f.crc,
                });
            }
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "segment file unusable, writing it again")
            }
        }
    }
    let name = segment_file_name(seg_id);
    let path = dir.join(&name);
    write_segment_file(&path, ivf).map_err(std::io::Error::other)?;
    let f = SegFile::open(path)?;
    Ok(Content::File {
        name,
        len: f.len,
        crc: f.crc,
    })
}

impl Shard {
    /// Writes the whole shard state into `dir` (created if missing; an older snapshot there is
    /// replaced). Returns the last applied index the snapshot covers.
    pub fn snapshot(&self, dir: &Path) -> Result<u64, ShardError> {
        let (view, last_applied, next_segment, mut versions, schema) = {
            let state = super::read(&self.inner.state);
            (
                state.segments.clone(),
                state.last_applied,
                state.next_segment,
                state
                    .versions
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect::<Vec<_>>(),
                state.schema.clone(),
            )
        };
        versions.sort_unstable();
        std::fs::create_dir_all(dir)?;
        let last = view.len().saturating_sub(1);
        let mut segments = Vec::with_capacity(view.len());
        let mut keep = HashSet::new();
        for (i, seg) in view.iter().enumerate() {
            let content = match &seg.body {
                SegBody::Ivf(ivf) => snapshot_file(dir, seg.id, ivf)?,
                SegBody::Flat(chunks) => {
                    let rows = Rows::from_chunks(chunks);
                    Content::Rows {
                        points: rows.points,
                        vectors: rows.vectors,
                        payloads: rows
                            .payloads
                            .iter()
                            .map(|p| p.as_deref().cloned())
                            .collect(),
                    }
                }
            };
            if let Content::File { name, .. } = &content {
                keep.insert(name.clone());
            }
            segments.push(SnapSegment {
                id: seg.id,
                sealed: i < last,
                rows: seg.rows as u64,
                live: seg.live.words().to_vec(),
                content,
            });
        }
        let body = Body {
            config: serde_json::to_string(&self.inner.config)
                .map_err(|e| ShardError::Corrupted(e.to_string()))?,
            last_applied,
            next_segment,
            versions,
            segments,
        };
        let extra = Extra {
            schema: serde_json::to_string(&schema)
                .map_err(|e| ShardError::Corrupted(e.to_string()))?,
        };
        let vectorless = Vectorless {
            segments: view.iter().map(|s| s.vectorless.words().to_vec()).collect(),
        };
        let mut encoded =
            postcard::to_stdvec(&body).map_err(|e| ShardError::Corrupted(e.to_string()))?;
        encoded
            .extend(postcard::to_stdvec(&extra).map_err(|e| ShardError::Corrupted(e.to_string()))?);
        encoded.extend(
            postcard::to_stdvec(&vectorless).map_err(|e| ShardError::Corrupted(e.to_string()))?,
        );
        envelope::write_envelope(dir.join(FILE_NAME), &envelope::SHARD_SNAPSHOT, &encoded)
            .map_err(std::io::Error::other)?;
        sweep_segment_dir(dir, &keep)?;
        Ok(last_applied)
    }

    /// Whether `dir` holds a snapshot.
    pub fn has_snapshot(dir: &Path) -> bool {
        dir.join(FILE_NAME).is_file()
    }

    /// Loads a shard from a snapshot written by [`Shard::snapshot`], mapping its segment files
    /// where they are (the directory must then outlive the shard's use of them; use
    /// [`Shard::restore_into`] to give the shard its own links). `background` chooses how later
    /// seals and compactions run.
    pub fn restore(dir: &Path, background: bool) -> Result<Shard, ShardError> {
        Self::restore_into(dir, background, None)
    }

    /// Loads a shard from a snapshot, hard-linking its segment files into `data_dir` (which then
    /// holds exactly the restored shard's files) when given.
    pub fn restore_into(
        dir: &Path,
        background: bool,
        data_dir: Option<&Path>,
    ) -> Result<Shard, ShardError> {
        let bytes = std::fs::read(dir.join(FILE_NAME))?;
        let decoded = envelope::decode(&envelope::SHARD_SNAPSHOT, &bytes)
            .map_err(|e| ShardError::Corrupted(format!("{FILE_NAME}: {e}")))?;
        let (version, encoded) = (decoded.version, decoded.body);
        if let Some(d) = data_dir {
            std::fs::create_dir_all(d)?;
        }
        let (config, state, pending) = match version {
            1 => v1::decode(encoded)?,
            // 2 and 3 are the layout before the envelope, 4 the envelope; 3 and 4 hold the same
            // body, 5 appends the deleted-vector bits. The envelope refused every version
            // outside 1..=FORMAT_VERSION.
            _ => decode(dir, encoded, data_dir, version)?,
        };
        if let Some(d) = data_dir {
            let keep = state
                .segments
                .iter()
                .filter_map(|s| match &s.body {
                    SegBody::Ivf(ivf) => ivf.file.as_ref().map(SegFile::name),
                    SegBody::Flat(_) => None,
                })
                .collect();
            sweep_segment_dir(d, &keep)?;
        }
        let shard = Shard::with_state(
            config,
            Some(state),
            background,
            data_dir.map(Path::to_path_buf),
        );
        // Sealed segments without an index (snapshotted mid-build, or from format 1): build them.
        let mut state = super::write(&shard.inner.state);
        shard.sync_indexes(&mut state);
        for id in pending {
            shard.start_build(&mut state, id);
        }
        drop(state);
        if !background {
            shard.wait_for_builds();
        }
        Ok(shard)
    }
}

fn bad(m: &str) -> ShardError {
    ShardError::Corrupted(m.to_owned())
}

/// A restored segment and whether it still needs its index built.
fn assemble(
    state: &mut State,
    pending: &mut Vec<u32>,
    id: u32,
    sealed: bool,
    rows: usize,
    live: Vec<u64>,
    body: SegBody,
) -> Result<(), ShardError> {
    let live = RowSet::from_words(rows, live).ok_or_else(|| bad("tombstone bits"))?;
    let mut live_count = 0;
    for row in live.iter() {
        let point = body
            .point(row)
            .ok_or_else(|| bad("live row out of range"))?;
        live_count += 1;
        state.ids.insert(
            point,
            Loc {
                seg: id,
                row: row as u32,
            },
        );
    }
    if sealed && matches!(body, SegBody::Flat(_)) && rows > 0 {
        pending.push(id);
    }
    state.segments.push(Segment {
        id,
        body,
        live: Arc::new(live),
        live_count,
        rows,
        vectorless: Arc::new(RowSet::new(0)),
        busy: false,
    });
    Ok(())
}

fn flat_body(
    config: &ShardConfig,
    points: Vec<PointId>,
    vectors: Vec<f32>,
    payloads: Vec<Option<super::Payload>>,
) -> Result<SegBody, ShardError> {
    let n = points.len();
    if payloads.len() != n || n.checked_mul(config.dim) != Some(vectors.len()) {
        return Err(bad("segment arrays disagree in length"));
    }
    let rows = Rows {
        vectors,
        points,
        payloads: payloads.into_iter().map(|p| p.map(Arc::new)).collect(),
    };
    let chunks: Vec<Arc<Chunk>> = rows.into_chunks(config.dim, config.metric)?;
    Ok(SegBody::Flat(chunks))
}

type Decoded = (ShardConfig, State, Vec<u32>);

fn decode(
    dir: &Path,
    encoded: &[u8],
    data_dir: Option<&Path>,
    version: u32,
) -> Result<Decoded, ShardError> {
    let (body, rest): (Body, &[u8]) =
        postcard::take_from_bytes(encoded).map_err(|e| ShardError::Corrupted(e.to_string()))?;
    let corrupted = |e: postcard::Error| ShardError::Corrupted(e.to_string());
    let (schema, mut vectorless) = match version {
        2 if rest.is_empty() => (super::PayloadSchema::new(), Vec::new()),
        2 => return Err(bad("trailing bytes after the snapshot body")),
        _ => {
            let (extra, rest): (Extra, &[u8]) =
                postcard::take_from_bytes(rest).map_err(corrupted)?;
            let vectorless = if version >= 5 {
                let v: Vectorless = postcard::from_bytes(rest).map_err(corrupted)?;
                if v.segments.len() != body.segments.len() {
                    return Err(bad("deleted-vector bits for another number of segments"));
                }
                v.segments
            } else {
                Vec::new()
            };
            let schema = serde_json::from_str(&extra.schema)
                .map_err(|e| ShardError::Corrupted(format!("payload schema: {e}")))?;
            (schema, vectorless)
        }
    };
    vectorless.resize(body.segments.len(), Vec::new());
    let config: ShardConfig =
        serde_json::from_str(&body.config).map_err(|e| ShardError::Corrupted(e.to_string()))?;
    let mut state = State {
        last_applied: body.last_applied,
        next_segment: body.next_segment,
        segments: Vec::with_capacity(body.segments.len()),
        ids: BTreeMap::new(),
        versions: body.versions.into_iter().collect::<HashMap<_, _>>(),
        schema,
    };
    let mut pending = Vec::new();
    for (s, vectorless) in body.segments.into_iter().zip(vectorless) {
        let rows = usize::try_from(s.rows).map_err(|_| bad("row count"))?;
        let body = match s.content {
            Content::Rows {
                points,
                vectors,
                payloads,
            } => flat_body(&config, points, vectors, payloads)?,
            Content::File { name, len, crc } => {
                if !is_segment_file(&name) || name.contains(['/', '\\']) || name.contains("..") {
                    return Err(bad("segment file name"));
                }
                let src = dir.join(&name);
                let path = match data_dir {
                    Some(d) => {
                        let dst = d.join(segment_file_name(s.id));
                        link_or_copy(&src, &dst)?;
                        dst
                    }
                    None => src,
                };
                let ivf = open_segment_file(&path).map_err(|e| {
                    if data_dir.is_some() {
                        let _ = std::fs::remove_file(&path);
                    }
                    ShardError::Corrupted(e.to_string())
                })?;
                let f = ivf.file.as_ref().ok_or_else(|| bad("segment file"))?;
                if f.len != len || f.crc != crc {
                    return Err(bad("segment file does not match the manifest"));
                }
                if ivf.points.len() != rows || ivf.index.dim() != config.dim {
                    return Err(bad("segment file does not match its segment"));
                }
                SegBody::Ivf(Arc::new(ivf))
            }
        };
        assemble(&mut state, &mut pending, s.id, s.sealed, rows, s.live, body)?;
        if !vectorless.is_empty() {
            // Written as long as the segment was when its first vector went: pad to its rows.
            let mut words = vectorless;
            if words.len() > rows.div_ceil(64) {
                return Err(bad("deleted-vector bits"));
            }
            words.resize(rows.div_ceil(64), 0);
            let set = RowSet::from_words(rows, words).ok_or_else(|| bad("deleted-vector bits"))?;
            if let Some(seg) = state.segments.last_mut() {
                seg.vectorless = Arc::new(set);
            }
        }
    }
    if state.segments.is_empty() {
        return Err(bad("no segments"));
    }
    Ok((config, state, pending))
}

/// Format version 1: the whole shard in one file (read so older data directories still load).
mod v1 {
    use super::super::point::json_text;
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        dim: usize,
        metric: Metric,
        seal_threshold: usize,
        nlist: usize,
        pq_m: usize,
        pq_bits: u8,
        seed: u64,
    }

    #[derive(Deserialize)]
    struct Body {
        config: Config,
        last_applied: u64,
        next_segment: u32,
        segments: Vec<SnapSegment>,
    }

    #[derive(Deserialize)]
    struct SnapSegment {
        id: u32,
        sealed: bool,
        points: Vec<PointId>,
        vectors: Vec<f32>,
        #[serde(with = "json_text")]
        payloads: Vec<Option<super::super::Payload>>,
        live: Vec<u64>,
        ivf: Option<IvfParts>,
    }

    #[derive(Deserialize)]
    struct IvfParts {
        meta: IvfPqMeta,
        centroids: Vec<f32>,
        codebooks: Vec<f32>,
        list_offsets: Vec<u64>,
        codes: Vec<u8>,
        ids: Vec<u64>,
        vectors: Vec<f32>,
    }

    pub(super) fn decode(encoded: &[u8]) -> Result<Decoded, ShardError> {
        let body: Body =
            postcard::from_bytes(encoded).map_err(|e| ShardError::Corrupted(e.to_string()))?;
        let c = body.config;
        let config = ShardConfig {
            dim: c.dim,
            metric: c.metric,
            seal_threshold: c.seal_threshold,
            nlist: c.nlist,
            pq_m: c.pq_m,
            pq_bits: c.pq_bits,
            seed: c.seed,
            compaction: Default::default(),
        };
        let mut state = State {
            last_applied: body.last_applied,
            next_segment: body.next_segment,
            segments: Vec::with_capacity(body.segments.len()),
            ids: BTreeMap::new(),
            versions: HashMap::new(),
            schema: Default::default(),
        };
        let mut pending = Vec::new();
        for s in body.segments {
            let n = s.points.len();
            let body = match s.ivf {
                Some(p) => {
                    let index = IvfPqIndex::from_parts(IvfPqParts {
                        meta: p.meta,
                        centroids: Slab::from(p.centroids),
                        codebooks: Slab::from(p.codebooks),
                        list_offsets: Slab::from(p.list_offsets),
                        codes: Slab::from(p.codes),
                        ids: Slab::from(p.ids),
                        vectors: Slab::from(p.vectors),
                        spill_offsets: Slab::from(Vec::new()),
                        spill_rows: Slab::from(Vec::new()),
                    })
                    .and_then(IvfPqIndex::with_sq8)?;
                    if index.dim() != config.dim || s.payloads.len() != n {
                        return Err(bad("IVF-PQ index does not match its segment"));
                    }
                    let payloads = s.payloads.into_iter().map(|p| p.map(Arc::new)).collect();
                    let ivf = IvfSeg::new(index, s.points, payloads)
                        .ok_or_else(|| bad("IVF-PQ row ids are not a permutation"))?;
                    SegBody::Ivf(Arc::new(ivf))
                }
                None => flat_body(&config, s.points, s.vectors, s.payloads)?,
            };
            assemble(&mut state, &mut pending, s.id, s.sealed, n, s.live, body)?;
        }
        if state.segments.is_empty() {
            return Err(bad("no segments"));
        }
        Ok((config, state, pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/shard_snapshot_v2` is a shard snapshot as written before the storage
    /// envelope (format version 2, rows inline in `shard.snap`; never regenerate
    /// it). It must restore completely in every later build.
    #[test]
    fn v2_fixture_restores_and_rewrites_as_the_current_version() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shard_snapshot_v2");
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let shard = Shard::restore_into(&fixture, false, Some(&data)).unwrap();
        assert_eq!(shard.last_applied(), 4);
        // Points 0..24 were written, 3 and 20 deleted.
        let ids: Vec<PointId> = (0..24).map(PointId::Num).collect();
        let records = shard.get(&ids, true, true);
        assert_eq!(records.len(), 22);
        for r in &records {
            let PointId::Num(id) = r.id else { panic!() };
            assert!(id != 3 && id != 20);
            let payload = r.payload.as_ref().unwrap();
            assert_eq!(payload["n"], serde_json::json!(id));
            assert_eq!(payload["name"], serde_json::json!(format!("p{id}")));
        }
        // Snapshotted again: an envelope of the current version that restores the same points.
        let again = root.path().join("again");
        shard.snapshot(&again).unwrap();
        let bytes = std::fs::read(again.join(FILE_NAME)).unwrap();
        assert_eq!(&bytes[..8], &envelope::SHARD_SNAPSHOT.magic);
        assert_eq!(
            envelope::decode(&envelope::SHARD_SNAPSHOT, &bytes)
                .unwrap()
                .version,
            FORMAT_VERSION
        );
        let restored = Shard::restore(&again, false).unwrap();
        assert_eq!(restored.get(&ids, true, true), records);
        // Version 3, the same body in the layout before the envelope (what the previous release
        // wrote: `SHOALSNP`, u32 version, u64 length, body, CRC-32), still restores.
        let body = envelope::decode(&envelope::SHARD_SNAPSHOT, &bytes)
            .unwrap()
            .body
            .to_vec();
        let mut legacy = b"SHOALSNP".to_vec();
        legacy.extend_from_slice(&3u32.to_le_bytes());
        legacy.extend_from_slice(&(body.len() as u64).to_le_bytes());
        legacy.extend_from_slice(&body);
        legacy.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        std::fs::write(again.join(FILE_NAME), &legacy).unwrap();
        let restored = Shard::restore(&again, false).unwrap();
        assert_eq!(restored.get(&ids, true, true), records);
        // A version past 3 in the old layout is refused.
        legacy[8..12].copy_from_slice(&4u32.to_le_bytes());
        std::fs::write(again.join(FILE_NAME), &legacy).unwrap();
        assert!(Shard::restore(&again, false).is_err());
    }
}
