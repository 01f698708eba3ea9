//! The container's byte layout and its pure decoder.
//!
//! Everything here works on `&[u8]` and does no I/O, so that the decoder can be fuzzed and
//! property-tested directly and so that [`super::Container`] is only a thin layer of mapping and
//! error context on top. The layout itself is specified in the [`crate::storage`] module doc;
//! the constants below are its single source of truth.
//!
//! Every width is fixed and little-endian: no `usize` ever reaches the file, so a file written on
//! one platform reads the same on another.

use std::ops::Range;

/// The first eight bytes of every container, PNG-style: a high-bit byte (catches 7-bit
/// transports), a name, CR LF (catches CRLF → LF conversion), Ctrl-Z (stops `type` on DOS) and
/// LF (catches LF → CRLF conversion).
pub const MAGIC: [u8; 8] = [0x89, b'S', b'H', b'L', b'\r', b'\n', 0x1a, b'\n'];

/// The format version this build writes.
///
/// Bump it whenever the layout changes, add a decoder branch for the old version, check in a
/// fixture of the new version, and log the change in the [`crate::storage`] module doc.
pub const FORMAT_VERSION: u32 = 1;

/// The oldest format version this build still reads.
pub const OLDEST_SUPPORTED_VERSION: u32 = 1;

/// Length of the fixed header at the start of the file.
pub const HEADER_LEN: usize = 64;

/// Length of one entry of the section table.
pub const TABLE_ENTRY_LEN: usize = 64;

/// Alignment of every section, of the table, and the largest element alignment allowed.
///
/// 64 bytes is a cache line and covers every SIMD load width we use; since a memory map starts on
/// a page boundary, a section aligned in the file is aligned in memory, and `Slab<f32>` or
/// `Slab<u64>` views need no copy.
pub const SECTION_ALIGN: usize = 64;

/// Longest section name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 32;

/// Byte range of the header checksum. It covers bytes `0..60`; its position and coverage, like
/// the magic and the version at bytes `8..12`, are frozen for every future version, so that a bit
/// flip in the version field is reported as corruption rather than as a newer format.
const HEADER_CRC_AT: usize = 60;

/// Why bytes are not a valid container. The path-free twin of [`super::StorageError`]: the pure
/// decoder does not know where the bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The bytes end before the layout says they should.
    #[error("truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        /// Length the header (or the fixed header size) calls for.
        expected: u64,
        /// Length actually present.
        actual: u64,
    },
    /// The file does not start with [`MAGIC`]: it is not a shoal container at all.
    #[error("not a shoal file of the expected kind (bad magic number)")]
    BadMagic,
    /// The file was written by a newer shoal.
    #[error(
        "format version {found} is newer than the newest this build reads ({supported}); upgrade shoal"
    )]
    UpgradeRequired {
        /// Version in the file.
        found: u32,
        /// [`FORMAT_VERSION`] of this build.
        supported: u32,
    },
    /// The file is older than anything this build can read.
    #[error("format version {found} is older than the oldest this build reads ({oldest})")]
    TooOld {
        /// Version in the file.
        found: u32,
        /// [`OLDEST_SUPPORTED_VERSION`] of this build.
        oldest: u32,
    },
    /// Stored and computed checksums differ for the named part (`header`, `table+metadata`, or a
    /// section name).
    #[error("checksum mismatch in {section}")]
    ChecksumMismatch {
        /// The part whose checksum failed.
        section: String,
    },
    /// The bytes are structurally invalid although checksums may match.
    #[error("corrupted: {0}")]
    Corrupted(String),
}

/// One entry of the section table, decoded and validated against the file length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionEntry {
    /// Unique name, at most [`MAX_NAME_LEN`] bytes of UTF-8.
    pub name: String,
    /// Byte offset of the section from the start of the file, a multiple of [`SECTION_ALIGN`].
    pub offset: u64,
    /// Length of the section in bytes, a multiple of `elem_size`.
    pub len: u64,
    /// Size of one element, so that reading `u64`s as `f32`s is refused.
    pub elem_size: u32,
    /// Alignment the elements need, a power of two no larger than [`SECTION_ALIGN`].
    pub elem_align: u32,
    /// CRC-32 (IEEE) of the section's bytes.
    pub crc: u32,
}

impl SectionEntry {
    /// The section's bytes as a range of the file. Valid because [`decode`] checked it fits.
    pub fn range(&self) -> Range<usize> {
        // Both fit in usize: decode checked offset + len <= the slice length.
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// What [`decode`] learns from the header and the table: where everything is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Format version of the file.
    pub version: u32,
    /// Sections in file order.
    pub sections: Vec<SectionEntry>,
    /// Byte range of the metadata blob.
    pub metadata: Range<usize>,
    /// Byte offset of the section table (end of the body).
    pub table_offset: u64,
    /// Total length of the file.
    pub file_len: u64,
}

/// The header fields, in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub section_count: u32,
    pub table_offset: u64,
    pub metadata_offset: u64,
    pub metadata_len: u64,
    pub file_len: u64,
    pub table_meta_crc: u32,
}

impl Header {
    /// Encodes the header, computing its own checksum.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out[16..20].copy_from_slice(&self.section_count.to_le_bytes());
        out[20..24].copy_from_slice(&(TABLE_ENTRY_LEN as u32).to_le_bytes());
        out[24..32].copy_from_slice(&self.table_offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.metadata_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.metadata_len.to_le_bytes());
        out[48..56].copy_from_slice(&self.file_len.to_le_bytes());
        out[56..60].copy_from_slice(&self.table_meta_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..HEADER_CRC_AT]);
        out[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Encodes one table entry. The name must already be valid (see [`check_name`]).
pub(crate) fn encode_entry(entry: &SectionEntry) -> [u8; TABLE_ENTRY_LEN] {
    let mut out = [0u8; TABLE_ENTRY_LEN];
    out[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
    out[32..40].copy_from_slice(&entry.offset.to_le_bytes());
    out[40..48].copy_from_slice(&entry.len.to_le_bytes());
    out[48..52].copy_from_slice(&entry.elem_size.to_le_bytes());
    out[52..56].copy_from_slice(&entry.elem_align.to_le_bytes());
    out[56..60].copy_from_slice(&entry.crc.to_le_bytes());
    out
}

/// Checks a section name: non-empty, at most [`MAX_NAME_LEN`] bytes, no NUL (NUL pads the field).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
        return Err(format!(
            "section name {name:?} must be 1 to {MAX_NAME_LEN} bytes of UTF-8 without NUL"
        ));
    }
    Ok(())
}

/// Rounds `n` up to the next multiple of [`SECTION_ALIGN`], or `None` on overflow.
pub fn align_up(n: u64) -> Option<u64> {
    let a = SECTION_ALIGN as u64;
    n.checked_add(a - 1).map(|v| v / a * a)
}

/// The little-endian `u32` at `at` (the caller has checked the length).
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The little-endian `u64` at `at` (the caller has checked the length).
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn corrupted(msg: impl Into<String>) -> FormatError {
    FormatError::Corrupted(msg.into())
}

/// Decodes and validates the header, section table and metadata location of a whole container
/// held in `bytes`.
///
/// Reads only the header, the table and the metadata: the cost is independent of the body size,
/// which is what lets [`super::Container::open`] be O(1) in the data. Section checksums are
/// checked separately by [`verify_body`]. Every offset and length is checked against
/// `bytes.len()` with checked arithmetic, so no input makes this panic.
pub fn decode(bytes: &[u8]) -> Result<Layout, FormatError> {
    let actual = bytes.len() as u64;
    let magic_prefix = bytes.len().min(MAGIC.len());
    if bytes[..magic_prefix] != MAGIC[..magic_prefix] {
        return Err(FormatError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            expected: HEADER_LEN as u64,
            actual,
        });
    }
    let header = &bytes[..HEADER_LEN];
    // Frozen for every version: the header checksum over bytes 0..60 at 60..64.
    if crc32fast::hash(&header[..HEADER_CRC_AT]) != u32_at(header, HEADER_CRC_AT) {
        return Err(FormatError::ChecksumMismatch {
            section: "header".into(),
        });
    }
    let version = u32_at(header, 8);
    if version > FORMAT_VERSION {
        return Err(FormatError::UpgradeRequired {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < OLDEST_SUPPORTED_VERSION {
        return Err(FormatError::TooOld {
            found: version,
            oldest: OLDEST_SUPPORTED_VERSION,
        });
    }
    // Only version 1 exists so far; later versions branch here.
    decode_v1(bytes, version)
}

fn decode_v1(bytes: &[u8], version: u32) -> Result<Layout, FormatError> {
    let actual = bytes.len() as u64;
    let header_len = u32_at(bytes, 12);
    let section_count = u32_at(bytes, 16);
    let entry_len = u32_at(bytes, 20);
    let table_offset = u64_at(bytes, 24);
    let metadata_offset = u64_at(bytes, 32);
    let metadata_len = u64_at(bytes, 40);
    let file_len = u64_at(bytes, 48);
    let table_meta_crc = u32_at(bytes, 56);
    if header_len as usize != HEADER_LEN || entry_len as usize != TABLE_ENTRY_LEN {
        return Err(corrupted(format!(
            "header declares header length {header_len} and table entry length {entry_len}, \
             version {version} uses {HEADER_LEN} and {TABLE_ENTRY_LEN}"
        )));
    }
    // The length check comes first so that a cut-off file reads as truncated, whatever else.
    if actual < file_len {
        return Err(FormatError::Truncated {
            expected: file_len,
            actual,
        });
    }
    if actual > file_len {
        return Err(corrupted(format!(
            "{} trailing bytes after the declared end {file_len}",
            actual - file_len
        )));
    }
    // Canonical layout: body, then the table on a 64-byte boundary, then the metadata to the end.
    if table_offset < HEADER_LEN as u64 || !table_offset.is_multiple_of(SECTION_ALIGN as u64) {
        return Err(corrupted(format!(
            "table offset {table_offset} is not a 64-byte boundary after the header"
        )));
    }
    let table_len = u64::from(section_count) * TABLE_ENTRY_LEN as u64;
    let table_end = table_offset
        .checked_add(table_len)
        .filter(|&end| end == metadata_offset)
        .ok_or_else(|| {
            corrupted(format!(
                "metadata offset {metadata_offset} does not follow the table"
            ))
        })?;
    let meta_end = metadata_offset
        .checked_add(metadata_len)
        .filter(|&end| end == file_len)
        .ok_or_else(|| {
            corrupted(format!(
                "metadata of {metadata_len} bytes does not end the file at {file_len}"
            ))
        })?;
    // All of these are <= file_len == bytes.len(), so the casts are lossless.
    let table = &bytes[table_offset as usize..table_end as usize];
    let metadata = metadata_offset as usize..meta_end as usize;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(table);
    hasher.update(&bytes[metadata.clone()]);
    if hasher.finalize() != table_meta_crc {
        return Err(FormatError::ChecksumMismatch {
            section: "table+metadata".into(),
        });
    }

    let mut sections: Vec<SectionEntry> = Vec::with_capacity(section_count as usize);
    let mut body_end = HEADER_LEN as u64;
    for raw in table.chunks_exact(TABLE_ENTRY_LEN) {
        let entry = decode_entry(raw)?;
        if sections.iter().any(|s| s.name == entry.name) {
            return Err(corrupted(format!("section {:?} appears twice", entry.name)));
        }
        // Sections are stored in file order on 64-byte boundaries, without overlap.
        if !entry.offset.is_multiple_of(SECTION_ALIGN as u64) || entry.offset < body_end {
            return Err(corrupted(format!(
                "section {:?} starts at {}, expected a 64-byte boundary at or after {body_end}",
                entry.name, entry.offset
            )));
        }
        body_end = entry
            .offset
            .checked_add(entry.len)
            .filter(|&end| end <= table_offset)
            .ok_or_else(|| {
                corrupted(format!(
                    "section {:?} ({} bytes at {}) runs past the body end {table_offset}",
                    entry.name, entry.len, entry.offset
                ))
            })?;
        sections.push(entry);
    }
    if align_up(body_end) != Some(table_offset) {
        return Err(corrupted(format!(
            "table at {table_offset} does not follow the last section ending at {body_end}"
        )));
    }
    Ok(Layout {
        version,
        sections,
        metadata,
        table_offset,
        file_len,
    })
}

fn decode_entry(raw: &[u8]) -> Result<SectionEntry, FormatError> {
    let name_field = &raw[..MAX_NAME_LEN];
    let name_len = name_field
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(MAX_NAME_LEN);
    if name_field[name_len..].iter().any(|&b| b != 0) {
        return Err(corrupted("section name has bytes after its NUL padding"));
    }
    let name = std::str::from_utf8(&name_field[..name_len])
        .map_err(|_| corrupted("section name is not UTF-8"))?
        .to_owned();
    check_name(&name).map_err(corrupted)?;
    let entry = SectionEntry {
        offset: u64_at(raw, 32),
        len: u64_at(raw, 40),
        elem_size: u32_at(raw, 48),
        elem_align: u32_at(raw, 52),
        crc: u32_at(raw, 56),
        name,
    };
    if u32_at(raw, 60) != 0 {
        return Err(corrupted(format!(
            "section {:?} has a non-zero reserved field",
            entry.name
        )));
    }
    if entry.elem_size == 0 || !entry.len.is_multiple_of(u64::from(entry.elem_size)) {
        return Err(corrupted(format!(
            "section {:?} of {} bytes is not a whole number of {}-byte elements",
            entry.name, entry.len, entry.elem_size
        )));
    }
    if !entry.elem_align.is_power_of_two() || entry.elem_align as usize > SECTION_ALIGN {
        return Err(corrupted(format!(
            "section {:?} declares element alignment {}, not a power of two up to {SECTION_ALIGN}",
            entry.name, entry.elem_align
        )));
    }
    Ok(entry)
}

/// Checks one section's checksum. `bytes` is the whole file that `layout` was decoded from.
pub fn verify_section(bytes: &[u8], entry: &SectionEntry) -> Result<(), FormatError> {
    let data = bytes
        .get(entry.range())
        .ok_or_else(|| corrupted(format!("section {:?} lies outside the file", entry.name)))?;
    if crc32fast::hash(data) != entry.crc {
        return Err(FormatError::ChecksumMismatch {
            section: entry.name.clone(),
        });
    }
    Ok(())
}

/// Checks every section checksum and that the padding between sections is zero, so that any
/// change to any byte of the file is detected by [`decode`] or here. Reads the whole body.
pub fn verify_body(bytes: &[u8], layout: &Layout) -> Result<(), FormatError> {
    let mut gap_start = HEADER_LEN;
    for entry in &layout.sections {
        check_zero_gap(bytes, gap_start, entry.range().start)?;
        verify_section(bytes, entry)?;
        gap_start = entry.range().end;
    }
    // table_offset <= file_len == bytes.len(), checked by decode.
    check_zero_gap(bytes, gap_start, layout.table_offset as usize)
}

fn check_zero_gap(bytes: &[u8], start: usize, end: usize) -> Result<(), FormatError> {
    let gap = bytes
        .get(start..end)
        .ok_or_else(|| corrupted("padding range lies outside the file"))?;
    if gap.iter().any(|&b| b != 0) {
        return Err(corrupted(format!(
            "non-zero padding between bytes {start} and {end}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_are_png_style() {
        assert_eq!(MAGIC, *b"\x89SHL\r\n\x1a\n");
        // High bit set, so 7-bit transports are caught.
        assert!(MAGIC[0] & 0x80 != 0);
        // Line-ending conversions in either direction change the bytes.
        assert_eq!(&MAGIC[4..6], b"\r\n");
        assert_eq!(MAGIC[7], b'\n');
        assert_eq!(MAGIC[6], 0x1a);
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(64));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(65), Some(128));
        assert_eq!(align_up(u64::MAX), None);
    }

    #[test]
    fn short_inputs_are_truncated_or_bad_magic() {
        assert_eq!(
            decode(&[]),
            Err(FormatError::Truncated {
                expected: 64,
                actual: 0
            })
        );
        assert_eq!(
            decode(&MAGIC[..3]),
            Err(FormatError::Truncated {
                expected: 64,
                actual: 3
            })
        );
        assert_eq!(decode(b"PK\x03\x04 a zip file"), Err(FormatError::BadMagic));
    }

    #[test]
    fn entry_round_trips() {
        let entry = SectionEntry {
            name: "codes".into(),
            offset: 128,
            len: 24,
            elem_size: 4,
            elem_align: 4,
            crc: 0xdead_beef,
        };
        assert_eq!(decode_entry(&encode_entry(&entry)), Ok(entry));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ids").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name("a\0b").is_err());
    }
}
