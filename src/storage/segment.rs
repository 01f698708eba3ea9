//! Sealed IVF-PQ segment files: an [`IvfPqIndex`]'s parts as sections of one [`Container`].
//!
//! The index's slabs map one-to-one onto sections, and its scalar description
//! ([`IvfPqMeta`]) is the metadata JSON under `"index"`, next to `"kind": "ivfpq-segment"`.
//! Opening maps the file and hands the sections to [`IvfPqIndex::from_parts`] as zero-copy
//! [`Slab`](crate::index::Slab) views: nothing is copied or parsed, and the raw vectors (the
//! largest part, read only for re-ranking) stay in the page cache rather than on the heap.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Container, ContainerWriter, StorageError};
use crate::index::ivfpq::{IvfPqIndex, IvfPqMeta, IvfPqParts};
use crate::index::sq8::{Sq8, Sq8Parts};
use crate::index::{FlatIndex, Metric, Slab};

/// `kind` in the metadata of a segment file.
pub const SEGMENT_KIND: &str = "ivfpq-segment";

/// Section names, in file order: the hot, small parts first, the raw vectors last.
const CENTROIDS: &str = "centroids";
const CODEBOOKS: &str = "codebooks";
const LIST_OFFSETS: &str = "list_offsets";
const IDS: &str = "ids";
const CODES: &str = "codes";
const VECTORS: &str = "vectors";
/// Written only by an index with spilled entries (layout version 2).
const SPILL_OFFSETS: &str = "spill_offsets";
const SPILL_ROWS: &str = "spill_rows";

#[derive(Serialize, Deserialize)]
struct SegmentMeta {
    kind: String,
    index: IvfPqMeta,
}

/// Whether [`open_ivfpq_segment_with`] reads the whole file to check its section checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Check every checksum before use (reads the whole file once): damage in the body is
    /// reported instead of silently changing search results.
    Full,
    /// Check only header, table and metadata (O(1) in the file size), for a fast restart when
    /// the caller verifies in the background.
    HeaderOnly,
}

/// Writes `index` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
pub fn write_ivfpq_segment(path: impl AsRef<Path>, index: &IvfPqIndex) -> Result<(), StorageError> {
    let mut writer = ContainerWriter::create(path)?;
    let meta = write_ivfpq_sections(&mut writer, index)?;
    writer.finish(meta.to_string().as_bytes())
}

/// Writes the index's sections into a container being built and returns the segment metadata
/// object (`{"kind": "ivfpq-segment", "index": {..}}`).
///
/// For callers that store more in the same file (payload [`records`](super::records), their own
/// keys in the metadata): add sections to `writer`, insert keys into the returned object, then
/// `writer.finish(meta.to_string().as_bytes())`. [`index_from_container`] ignores what it does
/// not know.
pub fn write_ivfpq_sections(
    writer: &mut ContainerWriter,
    index: &IvfPqIndex,
) -> Result<serde_json::Value, StorageError> {
    let parts = index.to_parts();
    let meta = serde_json::to_value(SegmentMeta {
        kind: SEGMENT_KIND.into(),
        index: parts.meta,
    })
    .map_err(|e| StorageError::InvalidSection {
        path: writer.target().to_path_buf(),
        reason: format!("segment metadata: {e}"),
    })?;
    writer.write_section(CENTROIDS, &parts.centroids)?;
    writer.write_section(CODEBOOKS, &parts.codebooks)?;
    writer.write_section(LIST_OFFSETS, &parts.list_offsets)?;
    writer.write_section(IDS, &parts.ids)?;
    writer.write_section(CODES, &parts.codes)?;
    if !parts.spill_rows.is_empty() {
        writer.write_section(SPILL_OFFSETS, &parts.spill_offsets)?;
        writer.write_section(SPILL_ROWS, &parts.spill_rows)?;
    }
    writer.write_section(VECTORS, &parts.vectors)?;
    Ok(meta)
}

/// Opens a segment written by [`write_ivfpq_segment`], verifying every checksum first.
pub fn open_ivfpq_segment(path: impl AsRef<Path>) -> Result<IvfPqIndex, StorageError> {
    open_ivfpq_segment_with(path, Verify::Full)
}

/// Opens a segment with the chosen amount of checking.
pub fn open_ivfpq_segment_with(
    path: impl AsRef<Path>,
    verify: Verify,
) -> Result<IvfPqIndex, StorageError> {
    let container = Container::open(path)?;
    if verify == Verify::Full {
        container.verify()?;
    }
    index_from_container(&container)
}

/// Builds the index over the sections of an open container (zero copy: the index's slabs keep
/// the map alive).
pub fn index_from_container(container: &Container) -> Result<IvfPqIndex, StorageError> {
    let corrupted = |reason: String| StorageError::Corrupted {
        path: container.path().to_path_buf(),
        reason,
    };
    let meta: SegmentMeta = container.metadata_json()?;
    if meta.kind != SEGMENT_KIND {
        return Err(corrupted(format!(
            "a {:?} file, not an IVF-PQ segment",
            meta.kind
        )));
    }
    let parts = IvfPqParts {
        // Present only when the metadata declares spilled entries (`from_parts` checks that the
        // two agree).
        spill_offsets: optional_section(container, SPILL_OFFSETS)?,
        spill_rows: optional_section(container, SPILL_ROWS)?,
        meta: meta.index,
        centroids: container.section(CENTROIDS)?,
        codebooks: container.section(CODEBOOKS)?,
        list_offsets: container.section(LIST_OFFSETS)?,
        codes: container.section(CODES)?,
        ids: container.section(IDS)?,
        vectors: container.section(VECTORS)?,
    };
    IvfPqIndex::from_parts(parts)
        .map_err(|e| corrupted(format!("segment parts do not form an index: {e}")))
}

/// The section `name`, or an empty slab when the file has none.
fn optional_section<T: bytemuck::Pod + Send + Sync>(
    container: &Container,
    name: &str,
) -> Result<Slab<T>, StorageError> {
    match container.has_section(name) {
        true => container.section(name),
        false => Ok(Slab::from(Vec::new())),
    }
}

/// Sections of an index's 8-bit codes ([`Sq8`]), when it has them.
const SQ8_BOUNDS: &str = "sq8_bounds";
const SQ8_CODES: &str = "sq8_codes";
const SQ8_NORMS: &str = "sq8_norms";

/// Writes the index's 8-bit codes, if it has them, as the sections `sq8_bounds` (`f32`, `2 * D`:
/// every dimension's low end, then every dimension's step), `sq8_codes` (`u8`, `N * D`, row
/// order) and `sq8_norms` (`f32`: `N` for L2, none otherwise). Returns whether it wrote them.
pub fn write_sq8_sections(
    writer: &mut ContainerWriter,
    index: &IvfPqIndex,
) -> Result<bool, StorageError> {
    let Some(sq8) = index.sq8() else {
        return Ok(false);
    };
    let parts = sq8.to_parts();
    writer.write_section(SQ8_BOUNDS, &parts.bounds)?;
    writer.write_section(SQ8_CODES, &parts.codes)?;
    writer.write_section(SQ8_NORMS, &parts.norms)?;
    Ok(true)
}

/// Maps back the 8-bit codes [`write_sq8_sections`] wrote and attaches them to `index` (zero
/// copy); an error when a section is missing or does not fit the index.
pub fn attach_sq8_sections(
    container: &Container,
    index: &mut IvfPqIndex,
) -> Result<(), StorageError> {
    let corrupted = |reason: String| StorageError::Corrupted {
        path: container.path().to_path_buf(),
        reason,
    };
    let parts = Sq8Parts {
        bounds: container.section(SQ8_BOUNDS)?,
        codes: container.section(SQ8_CODES)?,
        norms: container.section(SQ8_NORMS)?,
    };
    let sq8 = Sq8::from_parts(index.metric(), index.dim(), index.len(), parts)
        .map_err(|e| corrupted(e.to_string()))?;
    index.attach_sq8(sq8).map_err(|e| corrupted(e.to_string()))
}

/// `kind` in the metadata of a flat (exact, mutable-segment) file.
pub const FLAT_KIND: &str = "flat-segment";

#[derive(Serialize, Deserialize)]
struct FlatMeta {
    kind: String,
    dim: u64,
    metric: Metric,
    n: u64,
}

/// Writes a flat index (the mutable segment, e.g. for a snapshot) atomically: sections `ids`
/// (`u64`) and `vectors` (`f32`, as stored, normalised for cosine), metadata
/// `{"kind": "flat-segment", "dim", "metric", "n"}`.
pub fn write_flat_segment(path: impl AsRef<Path>, index: &FlatIndex) -> Result<(), StorageError> {
    let path = path.as_ref();
    let meta = FlatMeta {
        kind: FLAT_KIND.into(),
        dim: index.dim() as u64,
        metric: index.metric(),
        n: index.len() as u64,
    };
    let meta = serde_json::to_vec(&meta).map_err(|e| StorageError::InvalidSection {
        path: path.to_path_buf(),
        reason: format!("flat segment metadata: {e}"),
    })?;
    let mut writer = ContainerWriter::create(path)?;
    writer.write_section(IDS, index.ids())?;
    writer.write_section(VECTORS, index.vectors())?;
    writer.finish(&meta)
}

/// Reads a flat segment back into a (mutable, heap-owned) [`FlatIndex`], verifying every
/// checksum; `FlatIndex::from_parts` checks lengths, finiteness and cosine normalisation.
pub fn open_flat_segment(path: impl AsRef<Path>) -> Result<FlatIndex, StorageError> {
    let container = Container::open(path)?;
    container.verify()?;
    let corrupted = |reason: String| StorageError::Corrupted {
        path: container.path().to_path_buf(),
        reason,
    };
    let meta: FlatMeta = container.metadata_json()?;
    if meta.kind != FLAT_KIND {
        return Err(corrupted(format!(
            "a {:?} file, not a flat segment",
            meta.kind
        )));
    }
    let ids = container.section::<u64>(IDS)?;
    if ids.len() as u64 != meta.n {
        return Err(corrupted(format!("{} ids for {} rows", ids.len(), meta.n)));
    }
    let dim =
        usize::try_from(meta.dim).map_err(|_| corrupted(format!("dimension {}", meta.dim)))?;
    let vectors = container.section::<f32>(VECTORS)?;
    FlatIndex::from_parts(dim, meta.metric, vectors.to_vec(), ids.to_vec())
        .map_err(|e| corrupted(format!("flat segment parts: {e}")))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::index::ivfpq::{IvfPqConfig, SearchParams};
    use crate::index::{Metric, RowSet};

    const DIM: usize = 32;

    fn random_vectors(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..8 * DIM)
            .map(|_| rng.random_range(-3.0..3.0f32))
            .collect();
        (0..n)
            .flat_map(|_| {
                let c = rng.random_range(0..8);
                (0..DIM)
                    .map(|d| centres[c * DIM + d] + rng.random_range(-1.0..1.0f32))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn build(metric: Metric, bits: u8, n: usize) -> IvfPqIndex {
        let vectors = random_vectors(n, 7);
        let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
        let mut config = IvfPqConfig::new(metric, 16, if bits == 4 { 16 } else { 8 }, bits);
        config.pq_train_points = 4096;
        IvfPqIndex::build(DIM, &vectors, &ids, &config).unwrap()
    }

    /// A segment written and mapped back answers every search exactly as the built index does,
    /// with and without re-ranking, filters, both code sizes and every metric.
    #[test]
    fn reopened_segment_answers_identically() {
        let dir = tempfile::tempdir().unwrap();
        let queries = random_vectors(20, 99);
        for (metric, bits) in [
            (Metric::L2, 8),
            (Metric::L2, 4),
            (Metric::Cosine, 4),
            (Metric::Dot, 8),
        ] {
            let built = build(metric, bits, 2000);
            let path = dir.path().join(format!("seg-{metric:?}-{bits}.ivfpq"));
            write_ivfpq_segment(&path, &built).unwrap();
            let reopened = open_ivfpq_segment(&path).unwrap();
            assert_eq!(
                (reopened.len(), reopened.dim(), reopened.metric()),
                (2000, DIM, metric)
            );
            assert_eq!(reopened.ids(), built.ids());
            let filter = RowSet::from_rows(2000, (0..2000).filter(|r| r % 3 != 0));
            for q in queries.chunks_exact(DIM) {
                for params in [
                    SearchParams {
                        nprobe: 1,
                        rerank: 0,
                    },
                    SearchParams {
                        nprobe: 4,
                        rerank: 4,
                    },
                ] {
                    let want = built.search(q, 10, &params, None);
                    // Max-inner-product lists are unbalanced: one probed Dot list may hold
                    // fewer than k points, so only ask for a non-empty answer here.
                    assert!(!want.is_empty(), "{metric:?} {bits} {params:?}");
                    assert_eq!(reopened.search(q, 10, &params, None), want);
                    assert_eq!(
                        reopened.search(q, 10, &params, Some(&filter)),
                        built.search(q, 10, &params, Some(&filter))
                    );
                }
            }
        }
    }

    /// The raw vectors are served from the map (zero copy) and not counted as resident memory.
    #[test]
    fn reopened_vectors_are_mapped_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ivfpq");
        let built = build(Metric::L2, 8, 2000);
        write_ivfpq_segment(&path, &built).unwrap();
        let container = Container::open(&path).unwrap();
        let reopened = index_from_container(&container).unwrap();

        let mapped = container.section_bytes(VECTORS).unwrap().as_ptr_range();
        let row0 = reopened.vector(0).unwrap();
        assert!(
            mapped.contains(&row0.as_ptr().cast::<u8>()),
            "vectors were copied out of the map"
        );
        assert_eq!(row0, built.vector(0).unwrap());

        let vector_bytes = 2000 * DIM * 4;
        assert_eq!(reopened.memory_bytes(), built.memory_bytes());
        assert!(
            reopened.memory_bytes() < vector_bytes,
            "{} >= {vector_bytes}",
            reopened.memory_bytes()
        );
        assert!(container.file_len() as usize > reopened.memory_bytes() + vector_bytes / 2);
    }

    #[test]
    fn damaged_or_foreign_segments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ivfpq");
        write_ivfpq_segment(&path, &build(Metric::L2, 4, 1000)).unwrap();
        let sections = Container::open(&path).unwrap().sections();
        let codes_at = sections.iter().find(|s| s.name == CODES).unwrap().offset as usize;

        // A flipped bit in the PQ codes: a full open refuses it; a header-only open still gives
        // a usable index (the damage is the caller's to find by verifying later), never a panic.
        let mut bytes = fs::read(&path).unwrap();
        bytes[codes_at + 5] ^= 0x10;
        let damaged = dir.path().join("damaged.ivfpq");
        fs::write(&damaged, &bytes).unwrap();
        assert!(matches!(
            open_ivfpq_segment(&damaged),
            Err(StorageError::ChecksumMismatch { section, .. }) if section == CODES
        ));
        let lazy = open_ivfpq_segment_with(&damaged, Verify::HeaderOnly).unwrap();
        assert_eq!(
            lazy.search(
                &random_vectors(1, 5),
                5,
                &SearchParams {
                    nprobe: 16,
                    rerank: 0
                },
                None
            )
            .len(),
            5
        );

        // A valid container of another kind is not a segment.
        let other = dir.path().join("other.shoal");
        ContainerWriter::create(&other)
            .unwrap()
            .finish(br#"{"kind":"tombstones","rows":10}"#)
            .unwrap();
        assert!(matches!(
            open_ivfpq_segment(&other),
            Err(StorageError::Corrupted { .. })
        ));

        // A segment whose sections disagree with its metadata is refused by from_parts.
        let mut w = ContainerWriter::create(&damaged).unwrap();
        for name in [CENTROIDS, CODEBOOKS, VECTORS] {
            w.write_section::<f32>(name, &[0.0; 4]).unwrap();
        }
        for name in [LIST_OFFSETS, IDS] {
            w.write_section::<u64>(name, &[0; 2]).unwrap();
        }
        w.write_section::<u8>(CODES, &[0; 8]).unwrap();
        let meta = r#"{"kind":"ivfpq-segment","index":{"version":1,"dim":32,"metric":"l2","nlist":16,"pq_m":8,"pq_bits":8,"n":1}}"#;
        w.finish(meta.as_bytes()).unwrap();
        assert!(matches!(
            open_ivfpq_segment(&damaged),
            Err(StorageError::Corrupted { .. })
        ));
    }

    /// The shard's use: index sections plus a payload column and its own metadata in one file.
    #[test]
    fn segment_with_payloads_and_extra_metadata() {
        use crate::storage::records::{Records, write_records};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ivfpq");
        let index = build(Metric::Cosine, 4, 500);
        let payloads: Vec<String> = index
            .ids()
            .iter()
            .map(|id| format!(r#"{{"id":{id}}}"#))
            .collect();
        let mut w = ContainerWriter::create(&path).unwrap();
        let mut meta = write_ivfpq_sections(&mut w, &index).unwrap();
        write_records(&mut w, "payload", payloads.iter().map(|p| p.as_bytes())).unwrap();
        meta["shard"] = serde_json::json!({"segment_id": 7, "max_opstamp": 1234});
        w.finish(meta.to_string().as_bytes()).unwrap();

        let container = Container::open(&path).unwrap();
        container.verify().unwrap();
        let reopened = index_from_container(&container).unwrap();
        let records = Records::open(&container, "payload").unwrap();
        let hit = reopened.search(
            &random_vectors(1, 3),
            1,
            &SearchParams {
                nprobe: 4,
                rerank: 2,
            },
            None,
        )[0];
        let row = reopened.ids().iter().position(|&id| id == hit.id).unwrap();
        assert_eq!(
            records.get(row).unwrap(),
            format!(r#"{{"id":{}}}"#, hit.id).as_bytes()
        );
        let meta: serde_json::Value = container.metadata_json().unwrap();
        assert_eq!(meta["shard"]["max_opstamp"], 1234);
    }

    #[test]
    fn flat_segment_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mutable.flat");
        let vectors = random_vectors(300, 21);
        for metric in [Metric::L2, Metric::Cosine] {
            let mut flat = FlatIndex::new(DIM, metric);
            for (i, v) in vectors.chunks_exact(DIM).enumerate() {
                flat.add(i as u64 * 7, v).unwrap();
            }
            write_flat_segment(&path, &flat).unwrap();
            let back = open_flat_segment(&path).unwrap();
            assert_eq!((back.len(), back.dim(), back.metric()), (300, DIM, metric));
            assert_eq!(back.ids(), flat.ids());
            assert_eq!(back.vectors(), flat.vectors());
            for q in random_vectors(5, 4).chunks_exact(DIM) {
                assert_eq!(back.search(q, 10, None), flat.search(q, 10, None));
            }
        }
        // An IVF-PQ segment is not a flat one, and a damaged flat one is refused.
        let seg = dir.path().join("seg.ivfpq");
        write_ivfpq_segment(&seg, &build(Metric::L2, 8, 500)).unwrap();
        assert!(matches!(
            open_flat_segment(&seg),
            Err(StorageError::Corrupted { .. })
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[200] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open_flat_segment(&path),
            Err(StorageError::ChecksumMismatch { .. })
        ));
    }

    /// `tests/fixtures/ivfpq_segment_v{version}.shoal`.
    fn segment_fixture(version: u32) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/ivfpq_segment_v{version}.shoal"))
    }

    /// Writes fixture `version` — 100 rows of 8 (25 random rows of 32, seed `seed`), ids from
    /// `first_id`, built with `config` — if it is missing; refuses to overwrite it.
    fn write_missing_fixture(version: u32, seed: u64, first_id: u64, config: IvfPqConfig) {
        let path = segment_fixture(version);
        assert!(
            !path.exists(),
            "the v{version} segment fixture must never be rewritten"
        );
        let vectors = random_vectors(25, seed);
        let ids: Vec<u64> = (first_id..first_id + 100).collect();
        let index = IvfPqIndex::build(8, &vectors, &ids, &config).unwrap();
        write_ivfpq_segment(path, &index).unwrap();
    }

    /// Opens fixture `version` and checks what every fixture holds: 100 rows of 8 under `metric`
    /// in 4 lists, whose ids (rows are in list order) are a permutation of those written.
    fn opened_fixture(version: u32, metric: Metric, first_id: u64) -> IvfPqIndex {
        let index = open_ivfpq_segment(segment_fixture(version)).unwrap();
        assert_eq!(
            (index.len(), index.dim(), index.metric(), index.nlist()),
            (100, 8, metric, 4)
        );
        let mut ids = index.ids().to_vec();
        ids.sort_unstable();
        assert_eq!(ids, (first_id..first_id + 100).collect::<Vec<u64>>());
        index
    }

    /// Writes the segment fixture (container version 1, index layout version 1) if it is
    /// missing. Run by hand only if the fixture is lost:
    /// `cargo test --lib storage::segment::tests::write_missing_segment_fixture -- --ignored`.
    /// (This build writes layout version 2; the v1 file is the one checked in.)
    #[test]
    #[ignore = "writes the checked-in fixture"]
    fn write_missing_segment_fixture() {
        write_missing_fixture(1, 11, 1000, IvfPqConfig::new(Metric::L2, 4, 4, 4));
    }

    /// Writes the layout-version-2 fixture (an index with spilled entries) if it is missing.
    /// By hand only:
    /// `cargo test --lib storage::segment::tests::write_missing_segment_fixture_v2 -- --ignored`.
    #[test]
    #[ignore = "writes the checked-in fixture"]
    fn write_missing_segment_fixture_v2() {
        let mut config = IvfPqConfig::new(Metric::Cosine, 4, 4, 4);
        config.soar_lambda = Some(1.5);
        write_missing_fixture(2, 12, 2000, config);
    }

    /// Layout version 2: every row also sits in a second list, and each is still found exactly
    /// once. Never regenerate this file.
    #[test]
    fn segment_fixture_v2_with_spilled_entries_opens_forever() {
        let index = opened_fixture(2, Metric::Cosine, 2000);
        assert!(index.has_spills());
        assert!(index.entries() > 100);
        let everything = SearchParams {
            nprobe: 4,
            rerank: 100,
        };
        for row in [0, 50, 99] {
            let v = index.vector(row).unwrap().to_vec();
            let hits = index.search(&v, 100, &everything, None);
            assert_eq!(hits.len(), 100, "every id once");
            assert_eq!(hits[0].id, index.ids()[row]);
            assert!(hits[0].distance.abs() < 1e-5);
        }
    }

    /// Backward compatibility: the first segment file format keeps opening, and its stored
    /// vectors are still found exactly. Add a fixture per new version; never regenerate this one.
    #[test]
    fn segment_fixture_v1_opens_forever() {
        let index = opened_fixture(1, Metric::L2, 1000);
        let everything = SearchParams {
            nprobe: 4,
            rerank: 100,
        };
        for row in [0, 37, 99] {
            let v = index.vector(row).unwrap().to_vec();
            let hits = index.search(&v, 3, &everything, None);
            assert_eq!((hits[0].id, hits[0].distance), (index.ids()[row], 0.0));
        }
    }
}
