//! [`ContainerWriter`] and [`Container`]: a sectioned, checksummed, memory-mapped file.
//!
//! A container holds named sections of plain-old-data elements (`f32` vectors, `u64` ids, `u8`
//! codes) plus one metadata blob (JSON by convention). The writer streams sections to a temporary
//! file, so a segment never needs to be in memory twice, and commits with
//! [`AtomicFile::commit`]. The reader maps the file and checks only the header, table and
//! metadata when it opens, in time independent of the body size; [`Container::verify`] reads the
//! body on demand; [`Container::section`] hands out zero-copy [`Slab`] views of the map.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytemuck::Pod;
use memmap2::Mmap;

use super::StorageError;
use super::atomic::AtomicFile;
use super::format::{
    self, FORMAT_VERSION, HEADER_LEN, Header, Layout, SECTION_ALIGN, SectionEntry, TABLE_ENTRY_LEN,
};
use crate::index::{ByteOwner, Slab};

/// A read-only memory map, shared by every [`Slab`] cut from it.
struct MmapOwner(Mmap);

impl ByteOwner for MmapOwner {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Heap bytes with the same 64-byte alignment a map has, for containers held in memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; SECTION_ALIGN]);

struct AlignedBytes {
    lines: Vec<Line>,
    len: usize,
}

impl ByteOwner for AlignedBytes {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `Line` is `repr(C)` around a byte array with no padding (size 64 == align 64),
        // so the vector's storage is `lines.len() * 64` initialised bytes; `len` never exceeds it.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }
}

impl AlignedBytes {
    fn copy_from(bytes: &[u8]) -> Self {
        let mut lines = vec![Line([0; SECTION_ALIGN]); bytes.len().div_ceil(SECTION_ALIGN)];
        for (line, chunk) in lines.iter_mut().zip(bytes.chunks(SECTION_ALIGN)) {
            line.0[..chunk.len()].copy_from_slice(chunk);
        }
        Self {
            lines,
            len: bytes.len(),
        }
    }
}

/// A section as the table describes it, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section's name.
    pub name: String,
    /// Byte offset of the section in the file.
    pub offset: u64,
    /// Length in bytes.
    pub byte_len: u64,
    /// Size of one element in bytes.
    pub elem_size: u32,
}

/// An open, memory-mapped container. Cheap to share: sections are views into one map.
pub struct Container {
    path: PathBuf,
    owner: Arc<dyn ByteOwner>,
    layout: Layout,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("path", &self.path)
            .field("version", &self.layout.version)
            .field("sections", &self.layout.sections)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// Maps `path` and checks its header, section table and metadata, but not the body: opening
    /// costs the same for a kilobyte and for gigabytes. Call [`verify`](Self::verify) to check the
    /// body too.
    ///
    /// The file must not be modified in place while open (writing it or truncating it under the
    /// map is undefined behaviour / `SIGBUS`). shoal never does: containers are write-once and
    /// replaced only by rename, which leaves the mapped inode intact.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        let meta = file.metadata().map_err(|e| StorageError::io(&path, e))?;
        if !meta.is_file() {
            return Err(StorageError::io(
                &path,
                io::Error::other("not a regular file"),
            ));
        }
        let len = meta.len();
        let owner: Arc<dyn ByteOwner> = if len < HEADER_LEN as u64 {
            // Too short to be valid; read it so the decoder can say why (bad magic or truncated)
            // without mapping an empty file.
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| StorageError::io(&path, e))?;
            Arc::new(AlignedBytes::copy_from(&bytes))
        } else {
            // SAFETY: the map is read-only and shoal never writes to or truncates a committed
            // container (see the doc above); bounds are checked before every access.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| StorageError::io(&path, e))?;
            Arc::new(MmapOwner(map))
        };
        Self::from_owner(path, owner)
    }

    /// Decodes a container held in memory. `label` stands in for the path in errors. Used by
    /// tests and the fuzz target; the bytes are copied once to get the alignment a map has.
    pub fn from_bytes(label: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, StorageError> {
        Self::from_owner(label.into(), Arc::new(AlignedBytes::copy_from(bytes)))
    }

    fn from_owner(path: PathBuf, owner: Arc<dyn ByteOwner>) -> Result<Self, StorageError> {
        match format::decode(owner.bytes()) {
            Ok(layout) => Ok(Self {
                path,
                owner,
                layout,
            }),
            Err(e) => Err(StorageError::from_format(&path, e)),
        }
    }

    /// The file this container was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version the file was written with.
    pub fn format_version(&self) -> u32 {
        self.layout.version
    }

    /// Total length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.layout.file_len
    }

    /// The metadata blob, as the writer gave it (checked by the table checksum at open).
    pub fn metadata(&self) -> &[u8] {
        &self.owner.bytes()[self.layout.metadata.clone()]
    }

    /// Parses the metadata blob as JSON; a parse failure is reported as corruption.
    pub fn metadata_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, StorageError> {
        serde_json::from_slice(self.metadata()).map_err(|e| StorageError::Corrupted {
            path: self.path.clone(),
            reason: format!("metadata is not the expected JSON: {e}"),
        })
    }

    /// The sections, in file order.
    pub fn sections(&self) -> Vec<SectionInfo> {
        self.layout
            .sections
            .iter()
            .map(|s| SectionInfo {
                name: s.name.clone(),
                offset: s.offset,
                byte_len: s.len,
                elem_size: s.elem_size,
            })
            .collect()
    }

    fn entry(&self, name: &str) -> Result<&SectionEntry, StorageError> {
        self.layout
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StorageError::MissingSection {
                path: self.path.clone(),
                name: name.to_owned(),
            })
    }

    /// Whether a section of this name exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.layout.sections.iter().any(|s| s.name == name)
    }

    /// A zero-copy view of section `name` as elements of `T`.
    ///
    /// Refused if the section was written with a different element size. Does not check the section's checksum: call [`verify`](Self::verify) or
    /// [`verify_section`](Self::verify_section) first when the data must be trusted.
    pub fn section<T: Pod>(&self, name: &str) -> Result<Slab<T>, StorageError> {
        let entry = self.entry(name)?;
        // Alignment needs no check against the stored `elem_align` (which is the writer
        // platform's, e.g. 4 for `u64` on i686): every section starts on a 64-byte boundary of a
        // page-aligned map, and `Slab::from_owner` checks the pointer anyway.
        if entry.elem_size as usize != size_of::<T>() {
            return Err(StorageError::TypeMismatch {
                path: self.path.clone(),
                section: name.to_owned(),
                stored: entry.elem_size,
                requested: size_of::<T>() as u32,
            });
        }
        let range = entry.range();
        Slab::from_owner(
            Arc::clone(&self.owner),
            range.start,
            range.len() / size_of::<T>(),
        )
        .map_err(|e| StorageError::Corrupted {
            path: self.path.clone(),
            reason: format!("section {name:?}: {e}"),
        })
    }

    /// The raw bytes of section `name`.
    pub fn section_bytes(&self, name: &str) -> Result<&[u8], StorageError> {
        Ok(&self.owner.bytes()[self.entry(name)?.range()])
    }

    /// Checks the checksum of one section (reads its bytes).
    pub fn verify_section(&self, name: &str) -> Result<(), StorageError> {
        format::verify_section(self.owner.bytes(), self.entry(name)?)
            .map_err(|e| StorageError::from_format(&self.path, e))
    }

    /// Checks every section checksum and the zero padding between sections: together with the
    /// checks of [`open`](Self::open) this covers every byte of the file. Reads the whole body.
    pub fn verify(&self) -> Result<(), StorageError> {
        format::verify_body(self.owner.bytes(), &self.layout)
            .map_err(|e| StorageError::from_format(&self.path, e))
    }
}

/// Streams sections into a new container and commits it atomically.
///
/// Nothing is visible at the target path until [`finish`](Self::finish) returns `Ok`; dropping
/// the writer (or an error) leaves the old file, if any, untouched.
pub struct ContainerWriter {
    file: AtomicFile,
    /// Bytes written so far (the file position).
    pos: u64,
    sections: Vec<SectionEntry>,
    /// Set by a failed write: the file's content is unknown, so it must not be committed.
    failed: bool,
}

impl ContainerWriter {
    /// Starts a container that will replace `path` on [`finish`](Self::finish).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let mut file = AtomicFile::create(path)?;
        // Placeholder header, overwritten once the table and metadata are known.
        file.write_all(&[0u8; HEADER_LEN])
            .map_err(|e| StorageError::io(file.temp_path(), e))?;
        Ok(Self {
            file,
            pos: HEADER_LEN as u64,
            sections: Vec::new(),
            failed: false,
        })
    }

    /// The path the container will have once finished.
    pub fn target(&self) -> &Path {
        self.file.target()
    }

    fn io(&self, e: io::Error) -> StorageError {
        StorageError::io(self.file.temp_path(), e)
    }

    fn invalid(&self, reason: String) -> StorageError {
        StorageError::InvalidSection {
            path: self.file.target().to_path_buf(),
            reason,
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if self.failed {
            return Err(self.io(io::Error::other(
                "an earlier write to this container failed",
            )));
        }
        if let Err(e) = self.file.write_all(bytes) {
            self.failed = true;
            return Err(self.io(e));
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to_alignment(&mut self) -> Result<(), StorageError> {
        let target =
            format::align_up(self.pos).ok_or_else(|| self.invalid("file too large".into()))?;
        let zeros = [0u8; SECTION_ALIGN];
        self.write_raw(&zeros[..(target - self.pos) as usize])
    }

    /// Writes a whole section at once.
    pub fn write_section<T: Pod>(&mut self, name: &str, data: &[T]) -> Result<(), StorageError> {
        let mut section = self.begin_section::<T>(name)?;
        section.write(data)?;
        section.finish();
        Ok(())
    }

    /// Opens a section to be written in pieces with [`SectionWriter::write`]; it is closed by
    /// [`SectionWriter::finish`] (or on drop). Names must be unique within a container.
    pub fn begin_section<T: Pod>(
        &mut self,
        name: &str,
    ) -> Result<SectionWriter<'_, T>, StorageError> {
        format::check_name(name).map_err(|r| self.invalid(r))?;
        if self.sections.iter().any(|s| s.name == name) {
            return Err(self.invalid(format!("section {name:?} written twice")));
        }
        if align_of::<T>() > SECTION_ALIGN
            || size_of::<T>() == 0
            || size_of::<T>() > u32::MAX as usize
        {
            return Err(self.invalid(format!(
                "section {name:?}: element type of size {} and alignment {} is not storable",
                size_of::<T>(),
                align_of::<T>()
            )));
        }
        self.pad_to_alignment()?;
        let entry = SectionEntry {
            name: name.to_owned(),
            offset: self.pos,
            len: 0,
            elem_size: size_of::<T>() as u32,
            elem_align: align_of::<T>() as u32,
            crc: 0,
        };
        Ok(SectionWriter {
            writer: self,
            entry: Some(entry),
            hasher: crc32fast::Hasher::new(),
            _element: PhantomData,
        })
    }

    /// Writes the section table and `metadata` (JSON by convention), fills in the header, and
    /// commits: fsync, rename over the target, fsync the directory.
    pub fn finish(mut self, metadata: &[u8]) -> Result<(), StorageError> {
        self.pad_to_alignment()?;
        let table_offset = self.pos;
        let mut table = Vec::with_capacity(self.sections.len() * TABLE_ENTRY_LEN);
        for entry in &self.sections {
            table.extend_from_slice(&format::encode_entry(entry));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&table);
        hasher.update(metadata);
        self.write_raw(&table)?;
        let metadata_offset = self.pos;
        self.write_raw(metadata)?;
        let section_count = u32::try_from(self.sections.len())
            .map_err(|_| self.invalid(format!("{} sections are too many", self.sections.len())))?;
        let header = Header {
            version: FORMAT_VERSION,
            section_count,
            table_offset,
            metadata_offset,
            metadata_len: metadata.len() as u64,
            file_len: self.pos,
            table_meta_crc: hasher.finalize(),
        };
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.io(e))?;
        self.file
            .write_all(&header.encode())
            .map_err(|e| self.io(e))?;
        self.file.commit()
    }
}

/// One section being streamed into a [`ContainerWriter`].
pub struct SectionWriter<'a, T: Pod> {
    writer: &'a mut ContainerWriter,
    entry: Option<SectionEntry>,
    hasher: crc32fast::Hasher,
    _element: PhantomData<T>,
}

impl<T: Pod> SectionWriter<'_, T> {
    /// Appends elements to the section.
    pub fn write(&mut self, data: &[T]) -> Result<(), StorageError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.hasher.update(bytes);
        if let Some(entry) = self.entry.as_mut() {
            entry.len += bytes.len() as u64;
        }
        self.writer.write_raw(bytes)
    }

    /// Closes the section, recording it in the table (dropping the writer does the same).
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.crc = self.hasher.clone().finalize();
            self.writer.sections.push(entry);
        }
    }
}

impl<T: Pod> Drop for SectionWriter<'_, T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::storage::{FormatError, OLDEST_SUPPORTED_VERSION, atomic};

    const VECTORS: [f32; 6] = [1.0, 2.0, 3.0, -4.5, 0.25, f32::MAX];
    const IDS: [u64; 3] = [7, u64::MAX, 42];
    const CODES: [u8; 5] = [0, 1, 2, 254, 255];
    const METADATA: &[u8] = br#"{"kind":"fixture","dim":3}"#;

    /// The content of the checked-in version-1 fixture.
    fn write_fixture_content(path: &Path) {
        let mut w = ContainerWriter::create(path).unwrap();
        w.write_section("vectors", &VECTORS).unwrap();
        w.write_section("ids", &IDS).unwrap();
        w.write_section("codes", &CODES).unwrap();
        w.write_section::<u32>("empty", &[]).unwrap();
        w.finish(METADATA).unwrap();
    }

    fn fixture_bytes() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.shoal");
        write_fixture_content(&path);
        fs::read(path).unwrap()
    }

    fn check_fixture_content(c: &Container) {
        assert_eq!(&*c.section::<f32>("vectors").unwrap(), &VECTORS);
        assert_eq!(&*c.section::<u64>("ids").unwrap(), &IDS);
        assert_eq!(&*c.section::<u8>("codes").unwrap(), &CODES);
        assert!(c.section::<u32>("empty").unwrap().is_empty());
        assert_eq!(c.metadata(), METADATA);
        let names: Vec<String> = c.sections().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["vectors", "ids", "codes", "empty"]);
    }

    fn fixture_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/container_v1.shoal")
    }

    /// Writes the version-1 fixture if it is missing; refuses to overwrite it, since it pins the
    /// format forever. Run by hand only if the fixture is lost:
    /// `cargo test --lib storage::container::tests::write_missing_v1_fixture -- --ignored`.
    #[test]
    #[ignore = "writes the checked-in fixture"]
    fn write_missing_v1_fixture() {
        assert!(
            !fixture_path().exists(),
            "the v1 fixture exists and must never be rewritten"
        );
        assert_eq!(
            FORMAT_VERSION, 1,
            "the v1 fixture must be written by a v1 writer"
        );
        fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
        write_fixture_content(&fixture_path());
    }

    /// Backward compatibility: the version-1 file checked in when the format was born must open
    /// and read the same in every later build. Never delete or regenerate the fixture to make this
    /// pass; add a new fixture per new version instead.
    #[test]
    fn version_1_fixture_opens_forever() {
        let c = Container::open(fixture_path()).unwrap();
        assert_eq!(c.format_version(), 1);
        c.verify().unwrap();
        check_fixture_content(&c);
        #[derive(serde::Deserialize)]
        struct Meta {
            kind: String,
            dim: usize,
        }
        let meta: Meta = c.metadata_json().unwrap();
        assert_eq!((meta.kind.as_str(), meta.dim), ("fixture", 3));
    }

    /// While the writer produces version 1, its output must be byte-identical to the fixture:
    /// an accidental layout change fails here. When the version moves on, delete this test (the
    /// one above stays).
    #[test]
    fn writer_output_matches_v1_fixture() {
        assert_eq!(fixture_bytes(), fs::read(fixture_path()).unwrap());
    }

    #[test]
    fn round_trip_streams_sections_of_several_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.shoal");
        let floats: Vec<f32> = (0..10_000).map(|i| i as f32 * 0.5).collect();
        let longs: Vec<u64> = (0..777).map(|i| i * 1_000_003).collect();
        let shorts: Vec<u16> = (0..33).collect();
        let mut w = ContainerWriter::create(&path).unwrap();
        {
            let mut s = w.begin_section::<f32>("floats").unwrap();
            for chunk in floats.chunks(999) {
                s.write(chunk).unwrap();
            }
            s.finish();
        }
        w.write_section("shorts", &shorts).unwrap();
        w.write_section("longs", &longs).unwrap();
        assert!(matches!(
            w.write_section("longs", &longs),
            Err(StorageError::InvalidSection { .. })
        ));
        assert!(matches!(
            w.write_section::<u8>("", &[]),
            Err(StorageError::InvalidSection { .. })
        ));
        w.finish(b"{}").unwrap();

        let c = Container::open(&path).unwrap();
        c.verify().unwrap();
        let f = c.section::<f32>("floats").unwrap();
        assert_eq!(&*f, &floats[..]);
        assert_eq!(&*c.section::<u16>("shorts").unwrap(), &shorts[..]);
        let l = c.section::<u64>("longs").unwrap();
        assert_eq!(&*l, &longs[..]);
        // Zero copy: the views point into the map, on 64-byte boundaries.
        assert_eq!(f.as_ptr() as usize % SECTION_ALIGN, 0);
        assert_eq!(l.as_ptr() as usize % SECTION_ALIGN, 0);
        let map = c.owner.bytes().as_ptr_range();
        assert!(map.contains(&f.as_ptr().cast::<u8>()));
        // Views outlive the container: the map is shared.
        drop(c);
        assert_eq!(l[776], 776 * 1_000_003);
    }

    /// Containers and their views are shared across search threads.
    #[test]
    fn containers_and_views_are_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Container>();
        shareable::<Slab<f32>>();
    }

    #[test]
    fn wrong_type_or_missing_section_is_refused() {
        let c = Container::from_bytes("mem", &fixture_bytes()).unwrap();
        assert!(matches!(
            c.section::<u64>("vectors"),
            Err(StorageError::TypeMismatch {
                stored: 4,
                requested: 8,
                ..
            })
        ));
        assert!(matches!(
            c.section::<f32>("nope"),
            Err(StorageError::MissingSection { .. })
        ));
        assert!(c.has_section("codes"));
    }

    #[test]
    fn missing_file_is_not_found_and_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Container::open(dir.path().join("absent")),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            Container::open(dir.path()),
            Err(StorageError::Io { .. })
        ));
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let bytes = fixture_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.shoal");
        for len in 0..bytes.len() {
            fs::write(&path, &bytes[..len]).unwrap();
            let expected = if len < HEADER_LEN {
                HEADER_LEN as u64
            } else {
                bytes.len() as u64
            };
            match Container::open(&path) {
                Err(StorageError::Truncated {
                    path: p,
                    expected: e,
                    actual,
                }) => {
                    assert_eq!((e, actual), (expected, len as u64));
                    assert_eq!(p, path);
                }
                other => panic!("prefix of {len} bytes: {other:?}"),
            }
        }
        fs::write(&path, &bytes).unwrap();
        check_fixture_content(&Container::open(&path).unwrap());
    }

    #[test]
    fn trailing_bytes_are_corruption() {
        let mut bytes = fixture_bytes();
        bytes.push(0);
        assert!(matches!(
            Container::from_bytes("mem", &bytes),
            Err(StorageError::Corrupted { .. })
        ));
    }

    /// Flips every bit of the file, one at a time: each flip is caught at open (header, table,
    /// metadata) or by verify (body, padding). Nothing panics and nothing reads back wrong data.
    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = fixture_bytes();
        let layout = format::decode(&bytes).unwrap();
        let body = HEADER_LEN..layout.table_offset as usize;
        for pos in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[pos] ^= 1 << bit;
                match Container::from_bytes("mem", &damaged) {
                    Err(e) => assert!(
                        !body.contains(&pos),
                        "body byte {pos} rejected at open: {e}"
                    ),
                    Ok(c) => {
                        assert!(body.contains(&pos), "byte {pos} bit {bit} passed open");
                        let err = c.verify().expect_err("flip in the body passed verify");
                        assert!(matches!(
                            err,
                            StorageError::ChecksumMismatch { .. } | StorageError::Corrupted { .. }
                        ));
                    }
                }
            }
        }
    }

    /// Rewrites a header field and fixes up the header checksum, as a newer (or forged) writer
    /// would.
    fn with_header_u32(bytes: &[u8], at: usize, value: u32) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn newer_version_requires_upgrade_and_older_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.shoal");
        fs::write(
            &path,
            with_header_u32(&fixture_bytes(), 8, FORMAT_VERSION + 1),
        )
        .unwrap();
        match Container::open(&path) {
            Err(StorageError::UpgradeRequired {
                found,
                supported,
                path: p,
            }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
                assert_eq!(p, path);
            }
            other => panic!("{other:?}"),
        }
        let old = with_header_u32(&fixture_bytes(), 8, OLDEST_SUPPORTED_VERSION - 1);
        assert!(matches!(
            Container::from_bytes("mem", &old),
            Err(StorageError::TooOld { found: 0, .. })
        ));
        // Without a fixed-up checksum a damaged version field is corruption, not a newer file.
        let mut flipped = fixture_bytes();
        flipped[8] = 2;
        assert!(matches!(
            Container::from_bytes("mem", &flipped),
            Err(StorageError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn bad_magic_is_reported() {
        let mut bytes = fixture_bytes();
        bytes[1] = b's';
        assert!(matches!(
            Container::from_bytes("mem", &bytes),
            Err(StorageError::BadMagic { .. })
        ));
        assert!(matches!(
            Container::from_bytes("mem", b"hello"),
            Err(StorageError::BadMagic { .. })
        ));
    }

    #[test]
    fn interrupted_write_leaves_old_file_intact_and_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.shoal");
        write_fixture_content(&path);

        // A writer dropped half-way (an error, a panic) removes its temporary file.
        {
            let mut w = ContainerWriter::create(&path).unwrap();
            w.write_section("vectors", &[9.0f32; 1000]).unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // A crash half-way leaves a partial temporary file: simulate one.
        let partial = dir
            .path()
            .join(format!(".seg.shoal.999.0{}", atomic::TEMP_SUFFIX));
        fs::write(&partial, &fixture_bytes()[..100]).unwrap();
        let c = Container::open(&path).unwrap();
        c.verify().unwrap();
        check_fixture_content(&c);
        assert_eq!(
            atomic::remove_temp_files(dir.path()).unwrap(),
            vec![partial]
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // Replacing a file that is open and mapped leaves the old view valid.
        let ids = c.section::<u64>("ids").unwrap();
        let mut w = ContainerWriter::create(&path).unwrap();
        w.write_section("ids", &[1u64, 2]).unwrap();
        w.finish(b"{}").unwrap();
        assert_eq!(&*ids, &IDS);
        assert_eq!(
            &*Container::open(&path)
                .unwrap()
                .section::<u64>("ids")
                .unwrap(),
            &[1, 2]
        );
    }

    /// Randomised stand-in for the fuzz target, run in the normal suite: random damage, including
    /// forged checksums so that the structural checks behind them are exercised, never panics, and
    /// whatever opens and verifies only hands out in-bounds sections.
    #[test]
    fn random_damage_never_panics() {
        let original = fixture_bytes();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5_0a1);
        let (mut opened, mut structural) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = original.clone();
            match rng.random_range(0..5u8) {
                0 => {
                    for _ in 0..rng.random_range(1..8) {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                2 => {
                    let at = rng.random_range(0..bytes.len());
                    let junk: Vec<u8> = (0..rng.random_range(1..200))
                        .map(|_| rng.random())
                        .collect();
                    bytes.splice(at..at, junk);
                }
                _ => {
                    // Forge: random header fields or table entry fields with valid checksums.
                    let layout = format::decode(&original).unwrap();
                    for _ in 0..rng.random_range(1..4) {
                        let at = if rng.random() {
                            rng.random_range(12..60)
                        } else {
                            rng.random_range(layout.table_offset as usize..layout.metadata.start)
                        };
                        bytes[at] = if rng.random() {
                            rng.random()
                        } else {
                            bytes[at].wrapping_add(64)
                        };
                    }
                    let mut h = crc32fast::Hasher::new();
                    h.update(&bytes[layout.table_offset as usize..]);
                    let crc = h.finalize();
                    bytes = with_header_u32(&bytes, 56, crc);
                }
            }
            match Container::from_bytes("mem", &bytes) {
                Ok(c) => {
                    opened += 1;
                    let _ = c.verify();
                    for s in c.sections() {
                        let raw = c.section_bytes(&s.name).unwrap();
                        assert_eq!(raw.len() as u64, s.byte_len);
                    }
                }
                Err(StorageError::Corrupted { .. }) => structural += 1,
                Err(_) => {}
            }
        }
        // Both the accepting path and the structural checks behind forged checksums were reached.
        assert!(
            opened > 0 && structural > 1000,
            "opened {opened}, structural {structural}"
        );
    }

    #[test]
    fn format_errors_name_the_file() {
        let err = Container::from_bytes("/data/seg-1.shoal", b"\x89SH").unwrap_err();
        assert!(
            err.to_string().starts_with("/data/seg-1.shoal: truncated"),
            "{err}"
        );
        let err = StorageError::from_format(
            "x",
            FormatError::ChecksumMismatch {
                section: "ids".into(),
            },
        );
        assert_eq!(err.to_string(), "x: checksum mismatch in ids");
    }

    const CRASH_TARGET_ENV: &str = "SHOAL_TEST_CRASH_TARGET";
    const CRASH_ROWS: usize = 1 << 20;

    /// The child half of `killed_writer_never_damages_the_target`: rewrites the container named by
    /// the environment over and over until it is killed. Does nothing when run on its own.
    #[test]
    #[ignore = "child process of killed_writer_never_damages_the_target"]
    fn crash_child_rewrites_forever() {
        let Some(path) = std::env::var_os(CRASH_TARGET_ENV) else {
            return;
        };
        let first = read_crash_target(Path::new(&path)).0 + 1;
        for generation in first.. {
            let mut w = ContainerWriter::create(&path).unwrap();
            let value = (generation % 2) as f32;
            let mut s = w.begin_section::<f32>("data").unwrap();
            for _ in 0..16 {
                s.write(&vec![value; CRASH_ROWS / 16]).unwrap();
            }
            s.finish();
            w.finish(format!(r#"{{"generation":{generation}}}"#).as_bytes())
                .unwrap();
        }
    }

    fn read_crash_target(path: &Path) -> (i64, f32) {
        let c = Container::open(path).unwrap();
        c.verify().unwrap();
        let data = c.section::<f32>("data").unwrap();
        assert_eq!(data.len(), CRASH_ROWS);
        assert!(
            data.iter().all(|&v| v == data[0]),
            "mixed generations in one file"
        );
        let meta: serde_json::Value = c.metadata_json().unwrap();
        (meta["generation"].as_i64().unwrap(), data[0])
    }

    /// A real crash of the writing process (SIGKILL at an arbitrary point of the write, fsync
    /// or rename) leaves the target complete and valid, old or new, never a mix; the leftover
    /// temporary file is cleaned up.
    #[test]
    fn killed_writer_never_damages_the_target() {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.shoal");
        let mut w = ContainerWriter::create(&path).unwrap();
        w.write_section("data", &vec![7.0f32; CRASH_ROWS]).unwrap();
        w.finish(br#"{"generation":-1}"#).unwrap();

        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..4 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "storage::container::tests::crash_child_rewrites_forever",
                ])
                .args(["--ignored", "--test-threads=1"])
                .env(CRASH_TARGET_ENV, &path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Let the child commit at least once (bounded wait), then kill it at a random point.
            let start_generation = read_crash_target(&path).0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while read_crash_target(&path).0 == start_generation && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..30)));
            child.kill().unwrap();
            child.wait().unwrap();

            let (generation, value) = read_crash_target(&path);
            assert!(generation > start_generation, "the child never committed");
            assert_eq!(value, (generation % 2) as f32);
            let leftovers = atomic::remove_temp_files(dir.path()).unwrap().len();
            assert!(leftovers <= 1);
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
