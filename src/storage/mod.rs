//! On-disk formats: sealed-segment files, the envelope of small framed files, crash-safe writes.
//!
//! This module doc is shoal's storage specification (what redb keeps in `docs/design.md`): byte
//! layouts, the commit protocol, what a crash leaves behind, and what we assume of the disk. It
//! changes in the same commit as the format. `storage` knows nothing of Raft or the network; it
//! turns [`crate::index`] parts into files and back.
//!
//! # Pieces
//! - [`atomic`]: crash-safe replacement of a file ([`write_atomic`], [`AtomicFile`]),
//!   [`sync_dir`], and [`remove_temp_files`] for leftovers of interrupted writes.
//! - [`format`](mod@format): the container byte layout and its pure decoder over `&[u8]` (fuzzed by
//!   `tests/fuzz`, property-tested in the normal suite).
//! - [`container`]: [`ContainerWriter`] streams named sections into a new file;
//!   [`Container`] maps it and hands out zero-copy [`crate::index::Slab`] views.
//! - [`disk`]: the free space of the file system under a directory, checked before a download.
//! - [`envelope`]: the envelope of small framed files (cluster state, shard snapshots): kind
//!   magic, format version, length, CRCs, typed version errors.
//! - [`records`]: variable-length records (point payloads) as an offsets + bytes section pair.
//! - [`payload_index`](mod@payload_index): a sealed segment's payload indexes as one section
//!   (roaring postings, sorted value/row pairs), with its pure decoder (fuzzed by
//!   `payload_index_decode`).
//! - [`segment`]: sealed IVF-PQ segment files ([`write_ivfpq_segment`], [`open_ivfpq_segment`])
//!   and flat segment files ([`write_flat_segment`], [`open_flat_segment`]).
//!
//! Fuzzing (cargo-fuzz, nightly; a separate workspace the main build never compiles):
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz container_open -- -max_total_time=60
//! -seed_inputs=tests/fixtures/container_v1.shoal`, and likewise `segment_open` seeded with
//! `tests/fixtures/ivfpq_segment_v1.shoal`. Both also try every input with forged header
//! checksums, to reach the structural checks behind them; the normal suite carries a seeded
//! randomised version of the container target (`random_damage_never_panics`). `envelope_decode`
//! does the same for the envelope (seeds: the fixture directories below), with its own in-suite
//! variant (`envelope::tests::random_damage_never_panics`).
//!
//! # Container layout, format version 1
//! All integers are little-endian and fixed-width; no `usize` is ever written. Offsets are from
//! the start of the file.
//!
//! ```text
//! +--------------------+ 0
//! | header (64 bytes)  |
//! +--------------------+ 64
//! | section 0          | each section starts on a 64-byte boundary;
//! | zero padding       | padding between sections is zero bytes
//! | section 1 ...      |
//! +--------------------+ table_offset (64-aligned, right after the last section's padding)
//! | section table      | section_count entries of 64 bytes, in file order
//! +--------------------+ metadata_offset = table_offset + 64 * section_count
//! | metadata blob      | caller's bytes, JSON by convention
//! +--------------------+ file_len = metadata_offset + metadata_len
//! ```
//!
//! Header:
//!
//! | bytes  | field            | meaning |
//! |--------|------------------|---------|
//! | 0..8   | magic            | `89 53 48 4C 0D 0A 1A 0A` = `"\x89SHL\r\n\x1a\n"`, PNG-style |
//! | 8..12  | format_version   | u32, currently 1 ([`FORMAT_VERSION`]) |
//! | 12..16 | header_len       | u32, 64 |
//! | 16..20 | section_count    | u32 |
//! | 20..24 | table_entry_len  | u32, 64 |
//! | 24..32 | table_offset     | u64 |
//! | 32..40 | metadata_offset  | u64 |
//! | 40..48 | metadata_len     | u64 |
//! | 48..56 | file_len         | u64, the whole file |
//! | 56..60 | table_meta_crc   | u32, CRC-32 of the table bytes followed by the metadata bytes |
//! | 60..64 | header_crc       | u32, CRC-32 of bytes 0..60 |
//!
//! Frozen for every future version: the magic at 0..8, the version at 8..12, and the header CRC at
//! 60..64 over bytes 0..60. So a reader can always tell "corrupted" from "newer than me": it
//! checks magic, then the header CRC, then the version, and only then interprets the rest.
//!
//! Section table entry:
//!
//! | bytes  | field      | meaning |
//! |--------|------------|---------|
//! | 0..32  | name       | UTF-8, 1 to 32 bytes, NUL-padded, unique in the file |
//! | 32..40 | offset     | u64, multiple of 64 |
//! | 40..48 | len        | u64, bytes, a multiple of elem_size |
//! | 48..52 | elem_size  | u32, size of one element (`f32` = 4, `u64` = 8, `u8` = 1) |
//! | 52..56 | elem_align | u32, power of two ≤ 64: `align_of` the element type on the writer (informational; readers rely on the 64-byte section alignment) |
//! | 56..60 | crc        | u32, CRC-32 of the section bytes |
//! | 60..64 | reserved   | zero |
//!
//! Checksums are CRC-32 (IEEE, `crc32fast`, hardware-accelerated): it detects every single-bit
//! and every burst error up to 32 bits, which is the failure model here (bit rot, torn or
//! misdirected writes), and is fast enough that verifying is I/O-bound. Integrity against an
//! adversary is not a goal.
//!
//! # What is checked when
//! - [`Container::open`] (O(1) in the body size, it never reads the body): magic, header CRC,
//!   version ([`StorageError::UpgradeRequired`] for a newer file, [`StorageError::TooOld`] for an
//!   older one than [`OLDEST_SUPPORTED_VERSION`]), the file length against `file_len`
//!   ([`StorageError::Truncated`]), the table+metadata CRC, and that every section lies inside
//!   the body, in order, without overlap, 64-aligned, with sane element size and alignment.
//!   Every offset and length is checked with checked arithmetic against the real file length, so
//!   no file makes the reader panic or read out of bounds.
//! - [`Container::verify`] (reads everything): every section CRC and that all padding is zero.
//!   After `open` + `verify`, any change to any byte of the file has been reported.
//! - [`Container::section`] checks the element size against the requested type.
//!
//! The shard engine opens segments with `open` (fast restart) and verifies them in the
//! background or before serving them, as it chooses.
//!
//! # Commit protocol (every file shoal writes)
//! 1. Create `.<name>.<pid>.<n>.shoal-tmp` in the target's directory (same file system, so the
//!    rename below is atomic) with `create_new`.
//! 2. Write the content. The container writer writes a zeroed header, streams the sections, then
//!    the table and metadata, then seeks back and writes the real header.
//! 3. `fsync` the temporary file: its bytes are durable before any name points to them.
//! 4. `rename` it over the target: atomic replacement.
//! 5. `fsync` the directory: the rename is durable.
//!
//! Crash cases:
//! - Before 4: the target is untouched (old content or absent); a `*.shoal-tmp` file may remain.
//!   [`remove_temp_files`] deletes such leftovers when the directory is opened; it must run
//!   before any writer starts in that directory.
//! - Between 4 and 5: after reboot the directory shows the old or the new file, each complete.
//!   The caller must not have acknowledged anything that depends on the new file yet.
//! - After 5: the new file is durable.
//! - A write that fails or a writer that is dropped removes its temporary file and leaves the
//!   target as it was.
//!
//! # Assumptions about the media and the OS
//! - `fsync` on a file and on a directory is honest (a drive cache that lies breaks every
//!   database, including this one).
//! - `rename` within a directory is atomic (POSIX).
//! - Sector writes are *not* assumed atomic: torn writes and bit rot are caught by the CRCs,
//!   header and table at open, body at `verify`.
//! - A committed file is never modified in place. Readers `mmap` it; writing or truncating a
//!   mapped file could fault the reader. Replacing by rename is safe: open maps keep the old
//!   inode alive until dropped.
//!
//! # IVF-PQ segment files
//! A sealed segment is one container. Metadata:
//! `{"kind":"ivfpq-segment","index":{"version":2,"dim":D,"metric":"l2"|"cosine"|"dot","nlist":L,
//! "pq_m":M,"pq_bits":4|8,"n":N,"spilled":S}}` (the `index` object is
//! [`crate::index::ivfpq::IvfPqMeta`]; its `version` is the index's own layout version, checked
//! by `IvfPqIndex::from_parts`, which reads versions 1 and 2; version 1 has no `spilled` and no
//! spilled entries).
//! Sections, in file order (small, hot parts first; raw vectors last):
//!
//! | section        | type  | elements |
//! |----------------|-------|----------|
//! | `centroids`    | `f32` | `L * D` coarse centroids, row-major |
//! | `codebooks`    | `f32` | `M * (D / M) * 2^bits`, laid out `[m][dsub][ksub]` |
//! | `list_offsets` | `u64` | `L + 1`: list `l` holds rows `offsets[l]..offsets[l+1]` |
//! | `ids`          | `u64` | `N` external ids, row order |
//! | `codes`        | `u8`  | 8-bit: `N * M` bytes in row order; 4-bit: fast-scan blocks per list (its rows, then its spilled entries) |
//! | `spill_offsets`| `u64` | only when `S > 0`: `L + 1`: list `l` also holds spilled entries `offsets[l]..offsets[l+1]` |
//! | `spill_rows`   | `u32` | only when `S > 0`: `S` rows, the row each spilled entry copies (each row at most once) |
//! | `vectors`      | `f32` | `N * D` raw vectors (normalised for cosine), for exact re-ranking |
//!
//! A segment may hold more: `write_ivfpq_sections` writes the sections above into a caller's
//! [`ContainerWriter`] and returns the metadata object, to which the caller (the shard) adds its
//! own sections, such as a [`records`] column `payload` (`payload.bytes` `u8`, `payload.offsets`
//! `u64` with `N + 1` entries from 0 to the byte length), and its own metadata keys; readers
//! ignore sections and keys they do not know.
//!
//! The shard's segment files (`seg-*.seg`, `shard/segment.rs`) carry a metadata key
//! `"segment_version"`: absent in version 1 (IVF-PQ sections, `point_kinds`, `point_values`, the
//! `payloads` records, the calibration), 2 since payload indexes are stored (all of version 1
//! plus the section `payload_index` below), 3 since the index's 8-bit codes are stored (all of
//! version 2 plus the sections below). A reader opens all three; a version-1 segment's indexes are
//! built from its payloads, a version-1 or 2 segment is searched without 8-bit codes (exact scans
//! read its raw vectors). A version above the reader's is [`StorageError::UpgradeRequired`].
//!
//! ## 8-bit code sections (segment version 3, `index::sq8`)
//! | section      | type  | contents |
//! |--------------|-------|----------|
//! | `sq8_bounds` | `f32` | `2 * D`: every dimension's low end `lo_i`, then every dimension's step `step_i` (finite, ≥ 0) |
//! | `sq8_codes`  | `u8`  | `N * D`, rows in the order of `vectors`: `c_i = round((x_i - lo_i) / step_i)` |
//! | `sq8_norms`  | `f32` | L2: `N` squared norms of the decoded rows `Σ (lo_i + step_i c_i)²`; other metrics: none |
//!
//! `attach_sq8_sections` checks every length against the index (`Sq8::from_parts`).
//!
//! ## Payload-index section (`payload_index`, `u8`, layout version 1)
//! The indexes of the payload fields the collection had indexed when the segment was built, each
//! over the segment's rows `0..rows`. Little-endian; `str` is a u32 byte length then UTF-8 bytes;
//! `bitmap` is a u32 byte length then a roaring bitmap in the portable serialization
//! (<https://github.com/RoaringBitmap/RoaringFormatSpec>) of exactly that many bytes.
//!
//! ```text
//! u32 version (1)   u32 rows   u32 field_count
//! field_count × field, names strictly increasing (byte order):
//!   str name (a payload path)   u8 kind (0 keyword, 1 integer, 2 float, 3 bool, 4 uuid,
//!                                        5 datetime, 6 text)
//!   bitmap rows (rows holding a value the index took)   bitmap other (non-null values it did not)
//!   u32 key_count, key_count × (key, bitmap), keys strictly increasing by (tag, value):
//!     key = u8 tag then 0: str | 1: i64 | 2: u8 0 or 1 | 3: u128 (a UUID)
//!   u64 int_count,   int_count × (i64 value, u32 row), sorted by (value, row)
//!   u64 float_count, float_count × (f64 bits, u32 row), sorted by (total order of value, row),
//!                    never NaN
//! nothing after the last field
//! ```
//!
//! [`payload_index::decode`] checks all of it (every row number below `rows`, lengths against the
//! input before allocating, each bitmap valid and of exactly its stated length); the shard then
//! checks the meaning (a known kind, a parsable path, only the keys and pairs of that kind, `rows`
//! equal to the segment's). A field the collection indexed after the segment was built is built
//! from payloads when the segment opens; a stored field it no longer indexes is ignored.
//!
//! Opening hands the mapped sections to `IvfPqIndex::from_parts` as zero-copy slabs, which
//! checks every size against the metadata. [`open_ivfpq_segment`] verifies all checksums first
//! (one sequential read of the file); `open_ivfpq_segment_with(.., Verify::HeaderOnly)` skips that
//! for a fast restart, leaving body verification to the caller.
//!
//! Flat segments (the exact, mutable segment, e.g. in a snapshot) are containers with metadata
//! `{"kind":"flat-segment","dim":D,"metric":..,"n":N}` and sections `ids` (`u64`, `N`) and
//! `vectors` (`f32`, `N * D`, normalised for cosine). [`open_flat_segment`] verifies every CRC
//! and copies them into a heap-owned, appendable `FlatIndex`.
//!
//! # Envelope files
//! Small files that are read whole (the cluster state `cluster-state.bin`, a shard snapshot's
//! `shard.snap`) are not containers: they hold one opaque body (postcard by convention), framed
//! by [`envelope`]. A Raft snapshot's `MANIFEST` has the same header with a kind letter of its
//! own, `R`, but is framed by `raft/manifest.rs`, since `raft` is a leaf that names no other
//! module of the crate (version 2; version 1 was `SHOALSNP`, u32 version 1, u32 length, body,
//! CRC-32, still read there). Layout, little-endian:
//!
//! | bytes    | field      | meaning |
//! |----------|------------|---------|
//! | 0..8     | magic      | `89 53 48 k 0D 0A 1A 0A` = `"\x89SH" k "\r\n\x1a\n"`, `k` names the kind |
//! | 8..12    | version    | u32, the kind's format version |
//! | 12..16   | reserved   | zero |
//! | 16..24   | body_len   | u64 |
//! | 24..28   | body_crc   | u32, CRC-32 of the body |
//! | 28..32   | header_crc | u32, CRC-32 of bytes 0..28 |
//! | 32..     | body       | exactly `body_len` bytes; nothing follows |
//!
//! Kinds (every magic is distinct from the others and from the container's `\x89SHL`):
//!
//! | kind | `k` | file | current version | body |
//! |------|-----|------|-----------------|------|
//! | [`envelope::CLUSTER_STATE`] | `C` | `cluster-state.bin` | 5 | postcard `ClusterState` (4: without named vectors; 3: without aliases) |
//! | [`envelope::SHARD_SNAPSHOT`] | `S` | `<snapshot>/shard.snap` | 5 | postcard shard snapshot body |
//! | [`envelope::SNAPSHOT_ARCHIVE`] | `A` | `snapshots/**/*.snapshot` (its first part) | 1 | postcard archive manifest; member bytes follow ([`archive`]) |
//! | (`raft::manifest`) | `R` | `<raft snapshot>/MANIFEST` | 2 | postcard (last log id, membership, file list) |
//!
//! Reading checks, in order: the magic (another kind's file is [`StorageError::BadMagic`]), the
//! header CRC (so a damaged header is never taken for a newer version), the version
//! ([`StorageError::UpgradeRequired`] above the kind's current version, [`StorageError::TooOld`]
//! below its oldest), the reserved field, the exact length, the body CRC. The decoder
//! ([`envelope::decode`]) is pure, allocates nothing and returns the body as a slice of its
//! input. Writing uses the commit protocol below ([`envelope::write_envelope`]).
//!
//! **Before the envelope** each kind had a hand-written layout, still read as its old versions:
//! old magic (`SHOALMET` for the cluster state, `SHOALSNP` for the shard snapshot), u32
//! version, body length (u32 for the cluster state, u64 for the shard snapshot), body, u32
//! CRC-32 of the body. The cluster state was versions 1 and 2 in that layout, the shard snapshot
//! versions 1 to 3; the envelope versions (3 and 4) hold the bodies of the last legacy versions
//! unchanged, so they only change the framing. A legacy file has no header checksum, so an
//! unknown version in it is reported as corrupted, never as "upgrade required".
//!
//! # Tests that pin this specification
//! - `tests/fixtures/container_v1.shoal` and `tests/fixtures/ivfpq_segment_v1.shoal` are
//!   version-1 files that must open in every later build (never regenerate them; add one per new
//!   version); `tests/fixtures/ivfpq_segment_v2.shoal` is index layout version 2, with spilled
//!   entries. While the writer is at version 1 its output must equal the container fixture byte
//!   for byte.
//! - `tests/fixtures/cluster_state_v1/cluster-state.bin`, `tests/fixtures/meta/cluster_state_v2.bin`
//!   and `tests/fixtures/shard_snapshot_v2/` are the envelope kinds as written before the
//!   envelope, `tests/fixtures/meta/cluster_state_v3.bin`, `cluster_state_v4.bin`,
//!   `cluster_state_v5.bin` and
//!   `tests/fixtures/shard_snapshot_v4/` written in it; they decode, and their owners (cluster metadata, shard snapshot) restore them
//!   completely.
//! - `tests/fixtures/raft_snapshot_v1/` and `raft_snapshot_v2/` hold a Raft snapshot `MANIFEST`
//!   of each version; both decode to the same manifest, and this build writes version 2's bytes
//!   (`tests/format_fixtures.rs`, which also checks that `R` is no storage kind's magic).
//! - `tests/fixtures/shard_segment_v1/`, `shard_segment_v2/` and `shard_segment_v3/` are shard
//!   snapshots whose sealed segments are shard segment versions 1, 2 and 3; all restore with every
//!   filter answering as brute force over their payloads, and version 3's filtered searches
//!   (through its 8-bit codes) return the brute-force nearest matches (`tests/format_fixtures.rs`).
//! - Every prefix of a file is reported `Truncated`; every single-bit flip anywhere is reported at
//!   open or by `verify`; a forged newer version is `UpgradeRequired`.
//! - A child process that rewrites a container in a loop is SIGKILLed at random points: the
//!   target always opens, verifies and holds one complete generation.
//!
//! # Version log
//! - 1: first format (header, section table with CRC-32 per section, metadata blob).
//!
//! Shard segment files (inside container version 1): 1, first; 2, the `payload_index` section
//! and the `"segment_version"` key; 3, the `sq8_*` sections (`tests/fixtures/shard_segment_v1/`,
//! `shard_segment_v2/` and `shard_segment_v3/` are snapshots holding each).
//!
//! Envelope: the layout above is the first; the kinds' versions are listed with them.

pub mod archive;
pub mod atomic;
pub mod container;
pub mod disk;
pub mod envelope;
pub mod format;
pub mod payload_index;
pub mod records;
pub mod segment;

use std::path::{Path, PathBuf};

pub use atomic::{AtomicFile, remove_temp_files, sync_dir, write_atomic};
pub use container::{Container, ContainerWriter, SectionInfo, SectionWriter};
pub use envelope::{FileKind, read_envelope, write_envelope};
pub use format::{FORMAT_VERSION, FormatError, MAGIC, OLDEST_SUPPORTED_VERSION};
pub use segment::{
    Verify, open_flat_segment, open_ivfpq_segment, open_ivfpq_segment_with, write_flat_segment,
    write_ivfpq_segment,
};

/// Everything that can go wrong reading or writing shoal files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// An operating-system error other than "not found".
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is shorter than its header says: a write was cut off or the file was truncated.
    #[error("{}: truncated: expected {expected} bytes, found {actual}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Length the file should have.
        expected: u64,
        /// Length it has.
        actual: u64,
    },
    /// The file does not start with the expected magic ([`MAGIC`] for containers, the kind's for
    /// [`envelope`] files): it is not a shoal file of that kind.
    #[error("{}: not a shoal file of the expected kind (bad magic number)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer shoal; upgrade this binary to read it.
    #[error("{}: format version {found} is newer than the newest this build reads ({supported}); upgrade shoal", path.display())]
    UpgradeRequired {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads ([`FORMAT_VERSION`]).
        supported: u32,
    },
    /// The file's format is older than [`OLDEST_SUPPORTED_VERSION`].
    #[error("{}: format version {found} is older than the oldest this build reads ({oldest})", path.display())]
    TooOld {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
    },
    /// A checksum does not match: the named part (`header`, `table+metadata`, or a section) has
    /// been damaged.
    #[error("{}: checksum mismatch in {section}", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The damaged part.
        section: String,
    },
    /// The file is structurally invalid.
    #[error("{}: corrupted: {reason}", path.display())]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A section the caller needs is not in the file.
    #[error("{}: no section named {name:?}", path.display())]
    MissingSection {
        /// The file.
        path: PathBuf,
        /// The missing section.
        name: String,
    },
    /// A section was asked for as a type of a different size than it was written with.
    #[error("{}: section {section:?} holds {stored}-byte elements, not {requested}-byte ones", path.display())]
    TypeMismatch {
        /// The file.
        path: PathBuf,
        /// The section.
        section: String,
        /// Element size in the file.
        stored: u32,
        /// Element size requested.
        requested: u32,
    },
    /// The writer was asked to write something the format cannot hold (bad or duplicate name).
    #[error("{}: cannot write: {reason}", path.display())]
    InvalidSection {
        /// The file being written.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The path has no file name to write to.
    #[error("{}: not a file path", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
    },
}

impl StorageError {
    /// Wraps an I/O error, telling "not found" apart.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound { path }
        } else {
            Self::Io { path, source }
        }
    }

    /// Attaches the file path to an error of the pure decoder.
    pub fn from_format(path: impl AsRef<Path>, error: FormatError) -> Self {
        let path = path.as_ref().to_path_buf();
        match error {
            FormatError::Truncated { expected, actual } => Self::Truncated {
                path,
                expected,
                actual,
            },
            FormatError::BadMagic => Self::BadMagic { path },
            FormatError::UpgradeRequired { found, supported } => Self::UpgradeRequired {
                path,
                found,
                supported,
            },
            FormatError::TooOld { found, oldest } => Self::TooOld {
                path,
                found,
                oldest,
            },
            FormatError::ChecksumMismatch { section } => Self::ChecksumMismatch { path, section },
            FormatError::Corrupted(reason) => Self::Corrupted { path, reason },
        }
    }
}
