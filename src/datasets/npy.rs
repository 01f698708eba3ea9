//! numpy `.npy` headers and `.npz` archives, parsed by hand so that no Python is needed to read
//! the shared embedding sets.
//!
//! `.npy`: the magic `\x93NUMPY`, a version, a little-endian header length, then a Python dict
//! literal `{'descr': '<f4', 'fortran_order': False, 'shape': (n, d), }`. `.npz` is a zip archive
//! of `.npy` members; stored members are read straight from the memory map, deflated ones
//! (`np.savez_compressed`) are inflated into memory.

use std::io::Read;
use std::path::Path;

use super::DatasetError;
use super::reader::{Backing, ElemType, Format, VectorFile};

/// What an `.npy` header says.
#[derive(Debug, Clone)]
pub struct NpyHeader {
    /// The raw `descr` string, e.g. `<f4`.
    pub descr: String,
    /// The element type, if shoal reads it (little-endian or byte types only).
    pub elem: Option<ElemType>,
    /// Whether the array is stored column-major.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: usize,
}

/// Longest header accepted; numpy pads headers to 64 bytes and writes a few hundred at most.
const MAX_HEADER: usize = 1 << 20;

/// Parses the header of an `.npy` held in `bytes`. Errors carry the byte offset and reason.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, (usize, String)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err((0, "missing the \\x93NUMPY magic".into()));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let Some(b) = bytes.get(8..12) else {
                return Err((8, "truncated header length".into()));
            };
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err((6, format!("unknown .npy version {v}"))),
    };
    if len > MAX_HEADER {
        return Err((8, format!("header length {len} is absurd")));
    }
    let Some(text) = bytes.get(start..start + len) else {
        return Err((
            bytes.len(),
            format!("truncated: header of {len} bytes runs past the end"),
        ));
    };
    let text = std::str::from_utf8(text)
        .map_err(|e| (start + e.valid_up_to(), "header is not text".to_string()))?;
    let descr = dict_value(text, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.split(['\'', '"']).next())
        .ok_or((start, "header has no 'descr'".to_string()))?
        .to_string();
    let fortran_order = match dict_value(text, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err((start, "header has no 'fortran_order'".into())),
    };
    let shape_text = dict_value(text, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or((start, "header has no 'shape'".to_string()))?;
    let mut shape = Vec::new();
    for part in shape_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let part = part.trim_end_matches('L');
        shape.push(
            part.parse::<usize>()
                .map_err(|_| (start, format!("shape entry {part:?} is not a size")))?,
        );
    }
    let elem = match descr.as_str() {
        "<f4" => Some(ElemType::F32),
        "<f2" => Some(ElemType::F16),
        "<f8" => Some(ElemType::F64),
        "|u1" | "<u1" | "u1" => Some(ElemType::U8),
        "|i1" | "<i1" | "i1" => Some(ElemType::I8),
        "<i4" => Some(ElemType::I32),
        "<u4" => Some(ElemType::U32),
        "<i8" => Some(ElemType::I64),
        _ => None,
    };
    Ok(NpyHeader {
        descr,
        elem,
        fortran_order,
        shape,
        data_offset: start + len,
    })
}

/// The text after `'key':` in a Python dict literal, leading spaces removed.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let pat = format!("{quote}{key}{quote}");
        if let Some(i) = text.find(&pat) {
            let rest = text[i + pat.len()..].trim_start();
            return rest.strip_prefix(':').map(str::trim_start);
        }
    }
    None
}

/// One member of a zip archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Member name, e.g. `base.npy`.
    pub name: String,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    local_header: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
}

/// Lists the members of a zip archive held in `bytes` (zip64 included).
pub fn zip_entries(bytes: &[u8]) -> Result<Vec<ZipEntry>, (usize, String)> {
    const EOCD: u32 = 0x0605_4b50;
    let lo = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (lo..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD))
        .ok_or((
            bytes.len(),
            "no zip end-of-central-directory record: not an .npz archive".to_string(),
        ))?;
    let bad = |at: usize| (at, "truncated zip record".to_string());
    let mut count = u16_at(bytes, eocd + 10).ok_or(bad(eocd))? as u64;
    let mut cd = u32_at(bytes, eocd + 16).ok_or(bad(eocd))? as u64;
    if cd == 0xFFFF_FFFF || count == 0xFFFF {
        // zip64: a locator sits just before the classic record.
        let loc = eocd.checked_sub(20).ok_or(bad(eocd))?;
        if u32_at(bytes, loc) != Some(0x0706_4b50) {
            return Err((loc, "zip64 locator missing".into()));
        }
        let z = u64_at(bytes, loc + 8).ok_or(bad(loc))? as usize;
        if u32_at(bytes, z) != Some(0x0606_4b50) {
            return Err((z, "zip64 end-of-central-directory record missing".into()));
        }
        count = u64_at(bytes, z + 32).ok_or(bad(z))?;
        cd = u64_at(bytes, z + 48).ok_or(bad(z))?;
    }
    let mut at = usize::try_from(cd)
        .map_err(|_| (eocd, "central directory offset out of range".to_string()))?;
    let mut entries = Vec::new();
    for _ in 0..count {
        if u32_at(bytes, at) != Some(0x0201_4b50) {
            return Err((at, "expected a zip central directory entry".into()));
        }
        let method = u16_at(bytes, at + 10).ok_or(bad(at))?;
        let mut compressed = u32_at(bytes, at + 20).ok_or(bad(at))? as u64;
        let mut uncompressed = u32_at(bytes, at + 24).ok_or(bad(at))? as u64;
        let name_len = u16_at(bytes, at + 28).ok_or(bad(at))? as usize;
        let extra_len = u16_at(bytes, at + 30).ok_or(bad(at))? as usize;
        let comment_len = u16_at(bytes, at + 32).ok_or(bad(at))? as usize;
        let mut local_header = u32_at(bytes, at + 42).ok_or(bad(at))? as u64;
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or(bad(at))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or(bad(at))?;
        // zip64 extended information: the 64-bit values of the fields saturated above, in order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let size = u16_at(extra, e + 2).unwrap_or(0) as usize;
            if id == 0x0001 {
                let mut p = e + 4;
                for field in [&mut uncompressed, &mut compressed, &mut local_header] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, p).ok_or(bad(at))?;
                        p += 8;
                    }
                }
            }
            e += 4 + size;
        }
        entries.push(ZipEntry {
            name,
            method,
            compressed,
            uncompressed,
            local_header,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// Opens member `name` (e.g. `base`, matched with or without `.npy`) of the `.npz` archive at
/// `path` as a [`VectorFile`]. Returns `Ok(None)` when the archive has no such member.
pub fn open_npz(path: &Path, name: &str) -> Result<Option<VectorFile>, DatasetError> {
    open_npz_member(path, &Backing::map(path)?, name)
}

/// [`open_npz`] over bytes already mapped.
pub(crate) fn open_npz_member(
    path: &Path,
    backing: &Backing,
    name: &str,
) -> Result<Option<VectorFile>, DatasetError> {
    let bytes = backing.bytes();
    let entries =
        zip_entries(bytes).map_err(|(o, r)| DatasetError::malformed(path, o as u64, r))?;
    let Some(entry) = entries
        .iter()
        .find(|e| e.name == name || e.name.strip_suffix(".npy") == Some(name))
    else {
        return Ok(None);
    };
    open_entry(path, backing, entry).map(Some)
}

fn open_entry(
    path: &Path,
    backing: &Backing,
    entry: &ZipEntry,
) -> Result<VectorFile, DatasetError> {
    let bytes = backing.bytes();
    let lh = usize::try_from(entry.local_header).unwrap_or(usize::MAX);
    if u32_at(bytes, lh) != Some(0x0403_4b50) {
        return Err(DatasetError::malformed(
            path,
            entry.local_header,
            "expected a zip local file header",
        ));
    }
    let bad = || DatasetError::malformed(path, entry.local_header, "truncated zip local header");
    let name_len = u16_at(bytes, lh + 26).ok_or_else(bad)? as usize;
    let extra_len = u16_at(bytes, lh + 28).ok_or_else(bad)? as usize;
    let data = lh + 30 + name_len + extra_len;
    let end = usize::try_from(entry.compressed)
        .ok()
        .and_then(|c| data.checked_add(c));
    let Some(end) = end.filter(|&e| e <= bytes.len()) else {
        return Err(DatasetError::malformed(
            path,
            data as u64,
            format!(
                "member {} of {} bytes runs past the end of the archive",
                entry.name, entry.compressed
            ),
        ));
    };
    let member = path.join(&entry.name);
    match entry.method {
        0 => VectorFile::parse(member, backing.clone(), data, end, data as u64, Format::Npy),
        8 => {
            // Deflate cannot expand more than ~1032:1, so the capacity stays bounded by the input.
            let cap = entry
                .uncompressed
                .min(entry.compressed.saturating_mul(1032))
                .min(1 << 34) as usize;
            let mut out = Vec::with_capacity(cap);
            flate2::read::DeflateDecoder::new(&bytes[data..end])
                .take(entry.uncompressed)
                .read_to_end(&mut out)
                .map_err(|e| {
                    DatasetError::malformed(
                        path,
                        data as u64,
                        format!("member {}: bad deflate stream: {e}", entry.name),
                    )
                })?;
            if out.len() as u64 != entry.uncompressed {
                return Err(DatasetError::malformed(
                    path,
                    data as u64,
                    format!(
                        "member {} inflates to {} bytes, the archive says {}",
                        entry.name,
                        out.len(),
                        entry.uncompressed
                    ),
                ));
            }
            let len = out.len();
            VectorFile::parse(
                member,
                Backing::Owned(std::sync::Arc::new(out)),
                0,
                len,
                0,
                Format::Npy,
            )
        }
        m => Err(DatasetError::unsupported(
            path,
            format!("member {} uses zip compression method {m}", entry.name),
        )),
    }
}

/// Opens an `.npz` held in memory and reads member `name` (the fuzz entry point).
pub fn npz_member_from_bytes(
    name: &str,
    bytes: Vec<u8>,
) -> Result<Option<VectorFile>, DatasetError> {
    open_npz_member(
        Path::new("<bytes>.npz"),
        &Backing::Owned(std::sync::Arc::new(bytes)),
        name,
    )
}

/// Writes a 2-D little-endian `f32` array as `.npy` version 1.0 (used by tests and converters).
pub fn write_npy_f32(
    path: &Path,
    rows: usize,
    dim: usize,
    data: &[f32],
) -> Result<(), DatasetError> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| DatasetError::io(path, e))
}
