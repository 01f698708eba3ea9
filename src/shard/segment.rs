//! A shard's segments as the engine holds them, and the file a sealed segment is written to.
//!
//! - A **flat** segment (the mutable one, or a sealed one whose index is still being built) is a
//!   list of [`Chunk`]s of at most [`CHUNK_ROWS`] rows behind `Arc`s. Full chunks never change;
//!   only the last one takes appends. A query clones the list (a few `Arc`s) and searches it
//!   without any lock; a write that finds the last chunk shared with such a query copies only
//!   that chunk (`Arc::make_mut`), never the whole segment.
//! - An **IVF-PQ** segment ([`IvfSeg`]) is immutable once built. With a data directory it lives in
//!   one segment file (IVF-PQ sections + point ids + payloads + payload indexes), written once and
//!   memory-mapped; snapshots hard-link that file.
//!
//! Tombstones are a live-row [`RowSet`] per segment behind an `Arc`, copied on write the same way.
//!
//! A built segment's [`Calibration`] (see [`super::calibrate`]) is stored in its file's metadata
//! JSON under `"calibration"`; files written before calibration existed have no such key and
//! open uncalibrated (searches then use the request's `nprobe`/`rerank`).

use super::calibrate::Calibration;
use super::column::ColumnCache;
use super::payload_index::PayloadIndex;
use super::point::{Payload, PointId};
use super::subsets::SubsetCache;
use crate::index::ivfpq::IvfPqIndex;
use crate::index::{FlatIndex, RowSet};
use crate::storage::payload_index::{self, PAYLOAD_INDEX_SECTION};
use crate::storage::records::{Records, write_records};
use crate::storage::segment::{
    attach_sq8_sections, index_from_container, write_ivfpq_sections, write_sq8_sections,
};
use crate::storage::{Container, ContainerWriter, StorageError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Rows per chunk of a flat segment: what a write copies at most when a query still holds the
/// chunk. A multiple of 64 so a chunk's rows are whole words of a [`RowSet`].
pub(super) const CHUNK_ROWS: usize = 1024;

/// File name extension of sealed segment files.
pub(super) const SEGMENT_EXT: &str = "seg";

/// Up to [`CHUNK_ROWS`] rows of a flat segment. The flat index's ids are segment rows.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub flat: FlatIndex,
    pub points: Vec<PointId>,
    pub payloads: Vec<Option<Arc<Payload>>>,
    /// Payload indexes of the chunk's rows (local row numbers), updated on every append.
    pub index: PayloadIndex,
}

impl Chunk {
    pub fn new(flat: FlatIndex) -> Self {
        Chunk {
            flat,
            points: Vec::new(),
            payloads: Vec::new(),
            index: PayloadIndex::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }
}

/// A sealed segment's file on disk. Deleted when the segment it belongs to has been replaced
/// (compaction) and the last reader (query, snapshot) has let go of it.
#[derive(Debug)]
pub(super) struct SegFile {
    pub path: PathBuf,
    /// File length, recorded in snapshot manifests.
    pub len: u64,
    /// The container's header CRC (which covers the table CRC, which covers every section CRC):
    /// identifies the content in a manifest without reading the file.
    pub crc: u32,
    obsolete: AtomicBool,
}

impl SegFile {
    /// Describes an existing, complete segment file.
    pub fn open(path: PathBuf) -> std::io::Result<SegFile> {
        use std::io::Read;
        let mut header = [0u8; 64];
        std::fs::File::open(&path)?.read_exact(&mut header)?;
        let len = std::fs::metadata(&path)?.len();
        Ok(SegFile {
            path,
            len,
            crc: u32::from_le_bytes([header[60], header[61], header[62], header[63]]),
            obsolete: AtomicBool::new(false),
        })
    }

    /// The file name (segment files live flat in one directory).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Deletes the file once nothing holds the segment any more.
    pub fn retire(&self) {
        self.obsolete.store(true, Ordering::SeqCst);
    }
}

impl Drop for SegFile {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst)
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "old segment file not removed");
        }
    }
}

/// A built IVF-PQ segment: the index, its rows' points and payloads, and its file if any.
#[derive(Debug)]
pub(super) struct IvfSeg {
    pub index: IvfPqIndex,
    /// Segment row → index row (the inverse of `index.ids()`).
    pub pos: Vec<u32>,
    pub points: Vec<PointId>,
    pub payloads: Vec<Option<Arc<Payload>>>,
    pub file: Option<SegFile>,
    /// What the segment measured about its recall when it was built (none: built before
    /// calibration existed, or too small to measure).
    pub calibration: Option<Arc<Calibration>>,
    /// Payload indexes over the segment's rows: built before the segment's file is written (which
    /// stores them), read back when the file is opened, replaced whole when the schema changes
    /// (queries keep the one they took).
    payload_index: RwLock<Arc<PayloadIndex>>,
    /// Payload fields decoded into columns for filters on fields without an index.
    pub columns: ColumnCache,
    /// The codes of indexed payload values' rows, regrouped by list ([`super::subsets`]).
    pub subsets: SubsetCache,
}

impl IvfSeg {
    /// Wraps a built index whose ids are the segment rows `0..n`.
    pub fn new(
        index: IvfPqIndex,
        points: Vec<PointId>,
        payloads: Vec<Option<Arc<Payload>>>,
    ) -> Option<IvfSeg> {
        let n = points.len();
        if index.len() != n || payloads.len() != n {
            return None;
        }
        let mut pos = vec![u32::MAX; n];
        for (r, local) in index.ids().iter().enumerate() {
            match pos.get_mut(*local as usize) {
                Some(p) if *p == u32::MAX => *p = r as u32,
                _ => return None,
            }
        }
        Some(IvfSeg {
            index,
            pos,
            points,
            payloads,
            file: None,
            calibration: None,
            payload_index: RwLock::default(),
            columns: ColumnCache::default(),
            subsets: SubsetCache::default(),
        })
    }

    /// The payload indexes as they are now.
    pub fn payload_index(&self) -> Arc<PayloadIndex> {
        Arc::clone(&self.payload_index.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the payload indexes.
    pub fn set_payload_index(&self, index: Arc<PayloadIndex>) {
        *self
            .payload_index
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index;
        self.subsets.clear();
    }

    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        self.index.vector(*self.pos.get(row)? as usize)
    }

    /// The index rows of the segment rows in `rows`. `pos` is read at scattered rows (4 bytes a
    /// row, megabytes in a large segment): each read is asked for ahead, so the misses overlap
    /// (on 1M × 128 at 0.1%, the translation was a third of a filtered query before).
    pub fn positions(&self, rows: impl IntoIterator<Item = usize>) -> Vec<u32> {
        const AHEAD: usize = 16;
        let rows: Vec<usize> = rows.into_iter().collect();
        let ask = |r: usize| {
            if let Some(p) = self.pos.get(r) {
                crate::index::prefetch(p);
            }
        };
        crate::index::prefetched(&rows, AHEAD, ask)
            .filter_map(|row| self.pos.get(row).copied())
            .collect()
    }
}

/// What a segment searches with.
#[derive(Debug, Clone)]
pub(super) enum SegBody {
    /// Exact search over chunks (the mutable segment, or sealed and waiting for its index).
    Flat(Vec<Arc<Chunk>>),
    /// A built, immutable IVF-PQ segment.
    Ivf(Arc<IvfSeg>),
}

impl SegBody {
    fn chunk(chunks: &[Arc<Chunk>], row: usize) -> Option<(&Chunk, usize)> {
        let c = chunks.get(row / CHUNK_ROWS)?;
        let local = row % CHUNK_ROWS;
        (local < c.len()).then_some((c, local))
    }

    pub fn point(&self, row: usize) -> Option<PointId> {
        match self {
            SegBody::Flat(chunks) => Self::chunk(chunks, row).map(|(c, r)| c.points[r]),
            SegBody::Ivf(s) => s.points.get(row).copied(),
        }
    }

    pub fn payload(&self, row: usize) -> Option<&Arc<Payload>> {
        match self {
            SegBody::Flat(chunks) => {
                Self::chunk(chunks, row).and_then(|(c, r)| c.payloads[r].as_ref())
            }
            SegBody::Ivf(s) => s.payloads.get(row).and_then(Option::as_ref),
        }
    }

    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        match self {
            SegBody::Flat(chunks) => Self::chunk(chunks, row).and_then(|(c, r)| c.flat.vector(r)),
            SegBody::Ivf(s) => s.vector(row),
        }
    }
}

/// One segment: its rows and which of them are live.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub id: u32,
    pub body: SegBody,
    /// Live rows (a cleared bit is a tombstone).
    pub live: Arc<RowSet>,
    pub live_count: usize,
    /// Rows stored, live or not.
    pub rows: usize,
    /// Rows whose vector was deleted (Qdrant's `delete_vectors`): still points, with their
    /// payloads, but no search returns them and reads show no vector. Empty (length 0) until a
    /// row of the segment loses its vector; copied on write like `live`. The row keeps its old
    /// vector (or a placeholder, see [`no_vector_placeholder`]) in the index, never read.
    pub vectorless: Arc<RowSet>,
    /// Frozen for a background job (index build or compaction): no other job may take it.
    pub busy: bool,
}

impl Segment {
    pub fn is_indexed(&self) -> bool {
        matches!(self.body, SegBody::Ivf(_))
    }

    /// Whether `row` has no vector.
    pub fn is_vectorless(&self, row: usize) -> bool {
        self.vectorless.contains(row)
    }

    /// Marks `row` as having no vector (copying the set only if a query still reads it).
    pub fn mark_vectorless(&mut self, row: usize) {
        let set = Arc::make_mut(&mut self.vectorless);
        if set.len() < self.rows {
            set.resize(self.rows);
        }
        if row < set.len() {
            set.insert(row);
        }
    }

    /// The segment as a search sees it: its live rows that have a vector. Borrowed (no cost)
    /// while no row of the segment has lost its vector.
    pub fn searchable(&self) -> std::borrow::Cow<'_, Segment> {
        if self.vectorless.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut live = (*self.live).clone();
        live.difference_with(&self.vectorless);
        let live_count = live.count();
        std::borrow::Cow::Owned(Segment {
            live: Arc::new(live),
            live_count,
            ..self.clone()
        })
    }
}

/// What a point without a vector stores in its row: a unit vector (finite and of norm 1 under
/// every metric, so index builds treat it as any other row). Never returned: the row is marked
/// in [`Segment::vectorless`].
pub(super) fn no_vector_placeholder(dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
    v
}

/// Rows gathered for building a segment: vectors (row-major, as stored), points, payloads.
#[derive(Debug, Default)]
pub(super) struct Rows {
    pub vectors: Vec<f32>,
    pub points: Vec<PointId>,
    pub payloads: Vec<Option<Arc<Payload>>>,
}

impl Rows {
    /// All rows of a flat segment's chunks.
    pub fn from_chunks(chunks: &[Arc<Chunk>]) -> Rows {
        let mut rows = Rows::default();
        for c in chunks {
            rows.vectors.extend_from_slice(c.flat.vectors());
            rows.points.extend_from_slice(&c.points);
            rows.payloads.extend_from_slice(&c.payloads);
        }
        rows
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Chunks for a flat segment over these rows (vectors taken as stored).
    pub fn into_chunks(
        self,
        dim: usize,
        metric: crate::index::Metric,
    ) -> Result<Vec<Arc<Chunk>>, crate::index::IndexError> {
        let mut out = Vec::new();
        let n = self.points.len();
        for start in (0..n).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(n);
            let ids: Vec<u64> = (start as u64..end as u64).collect();
            let flat = FlatIndex::from_parts(
                dim,
                metric,
                self.vectors[start * dim..end * dim].to_vec(),
                ids,
            )?;
            out.push(Arc::new(Chunk {
                flat,
                points: self.points[start..end].to_vec(),
                payloads: self.payloads[start..end].to_vec(),
                index: PayloadIndex::default(),
            }));
        }
        Ok(out)
    }
}

/// Version of the shard's segment file (the metadata key `"segment_version"`; a file without it is
/// version 1). 1: IVF-PQ sections, point ids, payloads, calibration. 2: adds the payload indexes
/// of the schema the segment was built under (section [`PAYLOAD_INDEX_SECTION`]). 3: adds the
/// index's 8-bit codes (`sq8_*` sections, see [`crate::index::sq8`]), which exact scans of a
/// filter's matches read instead of the raw vectors; a version-2 file opens without them and
/// scans raw vectors, as before.
pub(super) const SEGMENT_VERSION: u64 = 3;
const SEGMENT_VERSION_KEY: &str = "segment_version";
const POINT_KINDS: &str = "point_kinds";
const POINT_VALUES: &str = "point_values";
const PAYLOADS: &str = "payloads";
/// Key of the calibration in a segment file's metadata JSON.
const CALIBRATION: &str = "calibration";

/// A name no other segment file of this process (or, with overwhelming odds, of another
/// replica whose snapshot lands here) has: segment id plus a nonce.
pub(super) fn segment_file_name(seg_id: u32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let nonce = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("seg-{seg_id:08}-{nonce:016x}.{SEGMENT_EXT}")
}

/// Writes a built segment to `path` atomically: the IVF-PQ sections, then the point ids (a kind
/// byte and two `u64` words a row), the payloads (JSON bytes a row, empty for none) and the
/// payload indexes the segment holds now (segment version [`SEGMENT_VERSION`]).
pub(super) fn write_segment_file(path: &Path, seg: &IvfSeg) -> Result<(), StorageError> {
    let mut writer = ContainerWriter::create(path)?;
    let mut meta = write_ivfpq_sections(&mut writer, &seg.index)?;
    let with_sq8 = write_sq8_sections(&mut writer, &seg.index)?;
    let mut kinds = Vec::with_capacity(seg.points.len());
    let mut values = Vec::with_capacity(seg.points.len() * 2);
    for p in &seg.points {
        let (k, v) = match p {
            PointId::Num(n) => (0u8, u128::from(*n)),
            PointId::Uuid(u) => (1u8, *u),
        };
        kinds.push(k);
        values.push(v as u64);
        values.push((v >> 64) as u64);
    }
    writer.write_section(POINT_KINDS, &kinds)?;
    writer.write_section(POINT_VALUES, &values)?;
    let texts: Vec<Vec<u8>> = seg
        .payloads
        .iter()
        .map(|p| {
            p.as_deref()
                .and_then(|m| serde_json::to_vec(m).ok())
                .unwrap_or_default()
        })
        .collect();
    write_records(&mut writer, PAYLOADS, texts.iter().map(Vec::as_slice))?;
    let rows = u32::try_from(seg.points.len()).map_err(|_| StorageError::InvalidSection {
        path: path.to_path_buf(),
        reason: format!("{} rows do not fit a segment", seg.points.len()),
    })?;
    let stored = payload_index::encode(&seg.payload_index().to_stored(rows));
    writer.write_section(PAYLOAD_INDEX_SECTION, &stored)?;
    if let Some(obj) = meta.as_object_mut() {
        // Without 8-bit codes the file is what version 2 wrote.
        let version = if with_sq8 { SEGMENT_VERSION } else { 2 };
        obj.insert(SEGMENT_VERSION_KEY.into(), version.into());
        obj.insert("shard_rows".into(), seg.points.len().into());
        if let Some(c) = &seg.calibration
            && let Ok(value) = serde_json::to_value(&**c)
        {
            obj.insert(CALIBRATION.into(), value);
        }
    }
    writer.finish(meta.to_string().as_bytes())
}

/// Opens a segment file written by [`write_segment_file`], memory-mapped, after checking every
/// checksum (a damaged file is refused rather than changing answers).
pub(super) fn open_segment_file(path: &Path) -> Result<IvfSeg, StorageError> {
    let container = Container::open(path)?;
    container.verify()?;
    let corrupted = |reason: String| StorageError::Corrupted {
        path: path.to_path_buf(),
        reason,
    };
    let version = segment_version(&container)?;
    let index = mapped_index(&container, version)?;
    let kinds = container.section::<u8>(POINT_KINDS)?;
    let values = container.section::<u64>(POINT_VALUES)?;
    let records = Records::open(&container, PAYLOADS)?;
    let n = kinds.len();
    if values.len() != 2 * n || records.len() != n {
        return Err(corrupted(
            "point and payload columns disagree in length".into(),
        ));
    }
    let mut points = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    for row in 0..n {
        let v = u128::from(values[2 * row]) | (u128::from(values[2 * row + 1]) << 64);
        points.push(match kinds[row] {
            0 => PointId::Num(
                u64::try_from(v).map_err(|_| corrupted(format!("row {row}: bad integer id")))?,
            ),
            1 => PointId::Uuid(v),
            k => return Err(corrupted(format!("row {row}: point kind {k}"))),
        });
        let text = records.get(row).unwrap_or_default();
        payloads.push(if text.is_empty() {
            None
        } else {
            let map: Payload = serde_json::from_slice(text)
                .map_err(|e| corrupted(format!("row {row}: payload: {e}")))?;
            Some(Arc::new(map))
        });
    }
    let mut seg = IvfSeg::new(index, points, payloads)
        .ok_or_else(|| corrupted("index rows do not match the segment's points".into()))?;
    if let Some(stored) = read_payload_index(&container, n, version)? {
        seg.set_payload_index(Arc::new(stored));
    }
    seg.calibration = read_calibration(&container);
    seg.file = Some(SegFile::open(path.to_path_buf()).map_err(|e| StorageError::io(path, e))?);
    Ok(seg)
}

/// The IVF-PQ index of an open segment file of segment `version` ([`segment_version`]), mapped
/// (zero copy), with its 8-bit codes when the file has them (version 3 on).
pub(super) fn mapped_index(
    container: &Container,
    version: u64,
) -> Result<IvfPqIndex, StorageError> {
    let mut index = index_from_container(container)?;
    if version >= 3 {
        attach_sq8_sections(container, &mut index)?;
    }
    Ok(index)
}

/// The file's segment version (1 when the key is absent); [`StorageError::UpgradeRequired`]
/// above [`SEGMENT_VERSION`].
pub(super) fn segment_version(container: &Container) -> Result<u64, StorageError> {
    let path = container.path();
    let meta: serde_json::Value = container.metadata_json()?;
    let version = match meta.get(SEGMENT_VERSION_KEY) {
        None => 1,
        Some(v) => v.as_u64().ok_or_else(|| StorageError::Corrupted {
            path: path.to_path_buf(),
            reason: format!("segment version {v}"),
        })?,
    };
    if version > SEGMENT_VERSION {
        return Err(StorageError::UpgradeRequired {
            path: path.to_path_buf(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: SEGMENT_VERSION as u32,
        });
    }
    Ok(version)
}

/// The payload indexes stored in a segment file of `rows` rows and segment `version`: `None`
/// for a version-1 file (the shard builds them from payloads), an error for a damaged section.
fn read_payload_index(
    container: &Container,
    rows: usize,
    version: u64,
) -> Result<Option<PayloadIndex>, StorageError> {
    let path = container.path();
    if version < 2 {
        return Ok(None);
    }
    let bytes = container.section::<u8>(PAYLOAD_INDEX_SECTION)?;
    let stored =
        payload_index::decode(&bytes[..]).map_err(|e| StorageError::from_format(path, e))?;
    PayloadIndex::from_stored(stored, rows)
        .map(Some)
        .map_err(|reason| StorageError::Corrupted {
            path: path.to_path_buf(),
            reason,
        })
}

/// The calibration stored in a segment file's metadata, if any. One this build cannot read (a
/// newer version) is dropped with a warning: the segment stays usable, only uncalibrated.
pub(super) fn read_calibration(container: &Container) -> Option<Arc<Calibration>> {
    let meta: serde_json::Value = container.metadata_json().ok()?;
    let value = meta.get(CALIBRATION)?;
    match serde_json::from_value::<Calibration>(value.clone()) {
        Ok(c) if c.version <= super::calibrate::CALIBRATION_VERSION => Some(Arc::new(c)),
        Ok(c) => {
            tracing::warn!(
                version = c.version,
                "segment calibration from a newer build ignored"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "segment calibration unreadable, ignored");
            None
        }
    }
}
