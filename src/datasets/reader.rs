//! Row-oriented readers over the binary vector formats: texmex `.fvecs`/`.ivecs`/`.bvecs`,
//! big-ann `.fbin`/`.u8bin`/`.i8bin`/`.ibin` and numpy `.npy`.
//!
//! A [`VectorFile`] validates a file's header and size when it is opened, then reads rows on
//! demand from a memory map, so a file larger than memory can be streamed in chunks. Every
//! reader also has a pure-bytes entry point ([`VectorFile::from_bytes`]) that the fuzz targets
//! drive. Nothing is allocated from a header's word before the file's real size has confirmed
//! it, so a corrupted header gives [`DatasetError::Malformed`] rather than an absurd allocation.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use ndarray::Array2;

use super::DatasetError;
use super::npy;

/// Largest dimension a file may declare; past it the header is taken as corrupted.
pub const MAX_DIM: usize = 1 << 20;

/// The bytes behind a [`VectorFile`]: a read-only memory map or an owned buffer (decompressed
/// `.npz` members, fuzz inputs).
#[derive(Clone)]
pub(crate) enum Backing {
    Mapped(Arc<Mmap>),
    Owned(Arc<Vec<u8>>),
}

impl Backing {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// Maps `path` read-only. An empty file is not mappable on every platform, so it becomes an
    /// empty owned buffer.
    pub(crate) fn map(path: &Path) -> Result<Self, DatasetError> {
        let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| DatasetError::io(path, e))?
            .len();
        if len == 0 {
            return Ok(Backing::Owned(Arc::new(Vec::new())));
        }
        // SAFETY: the map is read-only; a dataset file truncated by another process while mapped
        // would fault, which is the accepted trade-off of memory-mapped readers.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DatasetError::io(path, e))?;
        Ok(Backing::Mapped(Arc::new(map)))
    }
}

/// The element type a file stores; rows are converted to `f32` (vectors) or `u32` (ids) on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 16-bit float (numpy `<f2`).
    F16,
    /// 64-bit float.
    F64,
    /// Unsigned byte (SIFT descriptors).
    U8,
    /// Signed byte.
    I8,
    /// 32-bit signed integer (ids in ground-truth files).
    I32,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit signed integer (numpy's default integer).
    I64,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 | ElemType::I8 => 1,
            ElemType::F16 => 2,
            ElemType::F32 | ElemType::I32 | ElemType::U32 => 4,
            ElemType::F64 | ElemType::I64 => 8,
        }
    }

    /// The name used in messages and `shoal dataset info`.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::F64 => "f64",
            ElemType::U8 => "u8",
            ElemType::I8 => "i8",
            ElemType::I32 => "i32",
            ElemType::U32 => "u32",
            ElemType::I64 => "i64",
        }
    }
}

/// The on-disk layouts shoal reads, chosen from a file's extension by [`Format::from_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// texmex: each row is an `i32` dimension then `dim` `f32`.
    Fvecs,
    /// texmex: each row is an `i32` dimension then `dim` `i32`.
    Ivecs,
    /// texmex: each row is an `i32` dimension then `dim` `u8`.
    Bvecs,
    /// big-ann: `u32` rows, `u32` dim, then rows of `f32`.
    Fbin,
    /// big-ann: header then rows of `u8`.
    U8bin,
    /// big-ann: header then rows of `i8`.
    I8bin,
    /// big-ann: header then rows of `i32`; ground-truth files may append as many `f32` distances.
    Ibin,
    /// numpy `.npy`, version 1-3, little-endian, C order.
    Npy,
}

impl Format {
    /// The format an extension names, if shoal reads it.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "fvecs" => Format::Fvecs,
            "ivecs" => Format::Ivecs,
            "bvecs" => Format::Bvecs,
            "fbin" => Format::Fbin,
            "u8bin" => Format::U8bin,
            "i8bin" => Format::I8bin,
            "ibin" => Format::Ibin,
            "npy" => Format::Npy,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Each row carries its own `i32` dimension first (texmex).
    Vecs,
    /// A header, then `rows * dim` elements starting at `offset`.
    Dense { offset: usize },
}

/// An opened, validated vector file: its shape and element type are known, rows are read on
/// demand. Cheap to clone (the bytes are shared).
#[derive(Clone)]
pub struct VectorFile {
    origin: PathBuf,
    backing: Backing,
    /// Window of `backing` that holds this file (an `.npz` member is a part of the archive).
    start: usize,
    end: usize,
    /// Offset of `start` within the file on disk, so error offsets name the real byte.
    file_offset: u64,
    layout: Layout,
    elem: ElemType,
    rows: usize,
    dim: usize,
    /// big-ann ground truth: byte offset (within the window) of the trailing `f32` distances.
    distances_at: Option<usize>,
}

impl std::fmt::Debug for VectorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorFile")
            .field("origin", &self.origin)
            .field("elem", &self.elem)
            .field("rows", &self.rows)
            .field("dim", &self.dim)
            .finish()
    }
}

impl VectorFile {
    /// Opens `path`, choosing the format from its extension.
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        let format = Format::from_path(path).ok_or_else(|| {
            DatasetError::unsupported(
                path,
                "unknown extension (want fvecs, ivecs, bvecs, fbin, u8bin, i8bin, ibin or npy)",
            )
        })?;
        Self::open_as(path, format)
    }

    /// Opens `path` as `format`, memory-mapping it and validating its header against its size.
    pub fn open_as(path: &Path, format: Format) -> Result<Self, DatasetError> {
        let backing = Backing::map(path)?;
        let len = backing.bytes().len();
        Self::parse(path.to_path_buf(), backing, 0, len, 0, format)
    }

    /// Parses a file held in memory: the pure-bytes entry point (fuzzing, archive members).
    /// `origin` only names the source in errors.
    pub fn from_bytes(
        origin: impl Into<PathBuf>,
        bytes: Vec<u8>,
        format: Format,
    ) -> Result<Self, DatasetError> {
        let len = bytes.len();
        Self::parse(
            origin.into(),
            Backing::Owned(Arc::new(bytes)),
            0,
            len,
            0,
            format,
        )
    }

    pub(crate) fn parse(
        origin: PathBuf,
        backing: Backing,
        start: usize,
        end: usize,
        file_offset: u64,
        format: Format,
    ) -> Result<Self, DatasetError> {
        let mut file = VectorFile {
            origin,
            backing,
            start,
            end,
            file_offset,
            layout: Layout::Vecs,
            elem: ElemType::F32,
            rows: 0,
            dim: 0,
            distances_at: None,
        };
        match format {
            Format::Fvecs => file.parse_vecs(ElemType::F32)?,
            Format::Ivecs => file.parse_vecs(ElemType::I32)?,
            Format::Bvecs => file.parse_vecs(ElemType::U8)?,
            Format::Fbin => file.parse_bin(ElemType::F32, false)?,
            Format::U8bin => file.parse_bin(ElemType::U8, false)?,
            Format::I8bin => file.parse_bin(ElemType::I8, false)?,
            Format::Ibin => file.parse_bin(ElemType::I32, true)?,
            Format::Npy => file.parse_npy()?,
        }
        Ok(file)
    }

    fn bytes(&self) -> &[u8] {
        &self.backing.bytes()[self.start..self.end]
    }

    fn err(&self, offset: usize, reason: impl Into<String>) -> DatasetError {
        DatasetError::malformed(&self.origin, self.file_offset + offset as u64, reason)
    }

    fn parse_vecs(&mut self, elem: ElemType) -> Result<(), DatasetError> {
        self.elem = elem;
        self.layout = Layout::Vecs;
        let len = self.bytes().len();
        if len == 0 {
            return Ok(());
        }
        let Some(head) = self.bytes().get(..4) else {
            return Err(self.err(
                0,
                format!("file of {len} bytes is too short for a row header"),
            ));
        };
        let dim = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if dim <= 0 || dim as usize > MAX_DIM {
            return Err(self.err(0, format!("row dimension {dim} is not in 1..={MAX_DIM}")));
        }
        let dim = dim as usize;
        let row_bytes = 4 + dim * elem.size();
        if !len.is_multiple_of(row_bytes) {
            let whole = len / row_bytes;
            return Err(self.err(
                whole * row_bytes,
                format!("truncated: {len} bytes is not a whole number of {row_bytes}-byte rows of dimension {dim}"),
            ));
        }
        self.rows = len / row_bytes;
        self.dim = dim;
        // The last row's header too: cheap, and catches a file of another dimension appended.
        // Rows in between are checked as they are read (or by `validate`).
        self.row_span(self.rows - 1)?;
        Ok(())
    }

    fn parse_bin(&mut self, elem: ElemType, allow_distances: bool) -> Result<(), DatasetError> {
        self.elem = elem;
        let len = self.bytes().len();
        let Some(head) = self.bytes().get(..8) else {
            return Err(self.err(
                0,
                format!("file of {len} bytes is too short for the 8-byte header"),
            ));
        };
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let dim = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
        if dim as usize > MAX_DIM || (dim == 0 && n > 0) {
            return Err(self.err(4, format!("header dimension {dim} is not in 1..={MAX_DIM}")));
        }
        let data = n * dim * elem.size() as u64; // < 2^32 * 2^20 * 8: no overflow in u64
        let have = (len - 8) as u64;
        if have < data {
            return Err(self.err(
                len,
                format!("truncated: header promises {n} rows of dimension {dim} ({data} bytes), the file holds {have}"),
            ));
        }
        if have > data {
            let extra = have - data;
            if !(allow_distances && extra == n * dim * 4) {
                return Err(self.err(
                    8 + data as usize,
                    format!("{extra} unexpected bytes after {n} rows of dimension {dim}"),
                ));
            }
            self.distances_at = Some(8 + data as usize);
        }
        self.layout = Layout::Dense { offset: 8 };
        self.rows = n as usize;
        self.dim = dim as usize;
        Ok(())
    }

    fn parse_npy(&mut self) -> Result<(), DatasetError> {
        let header =
            npy::parse_header(self.bytes()).map_err(|(offset, reason)| self.err(offset, reason))?;
        let elem = header.elem.ok_or_else(|| DatasetError::WrongElementType {
            path: self.origin.clone(),
            expected: "little-endian f32, f16, f64, u8, i8, i32, u32 or i64".into(),
            found: header.descr.clone(),
        })?;
        if header.fortran_order {
            return Err(DatasetError::unsupported(
                &self.origin,
                "Fortran-order arrays are not read; save with C order",
            ));
        }
        let (rows, dim) = match header.shape.as_slice() {
            [n] => (*n, 1),
            [n, d] => (*n, *d),
            other => {
                return Err(self.err(0, format!("shape {other:?} is not one- or two-dimensional")));
            }
        };
        if dim > MAX_DIM || (dim == 0 && rows > 0) {
            return Err(self.err(0, format!("dimension {dim} is not in 1..={MAX_DIM}")));
        }
        let data = (rows as u128) * (dim as u128) * (elem.size() as u128);
        let have = (self.bytes().len() - header.data_offset) as u128;
        if have < data {
            return Err(self.err(
                self.bytes().len(),
                format!("truncated: shape ({rows}, {dim}) of {} needs {data} bytes of data, the file holds {have}", elem.name()),
            ));
        }
        if have > data {
            return Err(self.err(
                header.data_offset + data as usize,
                format!("{} unexpected bytes after the array", have - data),
            ));
        }
        self.elem = elem;
        self.layout = Layout::Dense {
            offset: header.data_offset,
        };
        self.rows = rows;
        self.dim = dim;
        Ok(())
    }

    /// Where the file came from (for messages).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The stored element type.
    pub fn elem(&self) -> ElemType {
        self.elem
    }

    /// Whether a big-ann ground-truth file carries distances after the ids.
    pub fn has_distances(&self) -> bool {
        self.distances_at.is_some()
    }

    /// The byte range of row `r`'s elements (within the window) after checking a texmex row
    /// header.
    fn row_span(&self, r: usize) -> Result<(usize, usize), DatasetError> {
        let es = self.elem.size();
        match self.layout {
            Layout::Dense { offset } => {
                let s = offset + r * self.dim * es;
                Ok((s, s + self.dim * es))
            }
            Layout::Vecs => {
                let row_bytes = 4 + self.dim * es;
                let h = r * row_bytes;
                let b = &self.bytes()[h..h + 4];
                let d = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if d as i64 != self.dim as i64 {
                    return Err(self.err(
                        h,
                        format!("row {r} has dimension {d}, the first row has {}", self.dim),
                    ));
                }
                Ok((h + 4, h + row_bytes))
            }
        }
    }

    fn check_range(&self, start: usize, count: usize) -> Result<(), DatasetError> {
        if start.checked_add(count).is_none_or(|e| e > self.rows) {
            return Err(DatasetError::InvalidArgument(format!(
                "rows {start}..{} requested from {} which has {} rows",
                start.saturating_add(count),
                self.origin.display(),
                self.rows
            )));
        }
        Ok(())
    }

    /// Reads rows `start..start + count` converted to `f32`.
    pub fn read_rows_f32(&self, start: usize, count: usize) -> Result<Array2<f32>, DatasetError> {
        self.check_range(start, count)?;
        let mut out = Vec::with_capacity(count * self.dim);
        for r in start..start + count {
            let (s, e) = self.row_span(r)?;
            convert_f32(self.elem, &self.bytes()[s..e], &mut out);
        }
        Array2::from_shape_vec((count, self.dim), out)
            .map_err(|e| DatasetError::InvalidArgument(e.to_string()))
    }

    /// Reads rows `start..start + count` of an integer file as `u32` ids; negative or too-large
    /// values and float files are refused.
    pub fn read_rows_u32(&self, start: usize, count: usize) -> Result<Array2<u32>, DatasetError> {
        let read: fn(&[u8]) -> i64 = match self.elem {
            ElemType::U8 => |c| c[0] as i64,
            ElemType::I8 => |c| c[0] as i8 as i64,
            ElemType::I32 => |c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            ElemType::U32 => |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            ElemType::I64 => {
                |c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
            }
            ElemType::F32 | ElemType::F16 | ElemType::F64 => {
                return Err(DatasetError::WrongElementType {
                    path: self.origin.clone(),
                    expected: "integer ids".into(),
                    found: self.elem.name().into(),
                });
            }
        };
        self.check_range(start, count)?;
        let es = self.elem.size();
        let mut out = Vec::with_capacity(count * self.dim);
        for r in start..start + count {
            let (s, e) = self.row_span(r)?;
            for (j, c) in self.bytes()[s..e].chunks_exact(es).enumerate() {
                let v = read(c);
                let id = u32::try_from(v).map_err(|_| {
                    self.err(
                        s + j * es,
                        format!("id {v} in row {r} is not a valid row number"),
                    )
                })?;
                out.push(id);
            }
        }
        Array2::from_shape_vec((count, self.dim), out)
            .map_err(|e| DatasetError::InvalidArgument(e.to_string()))
    }

    /// Reads every row as `f32`. Allocates `rows * dim` floats: use [`VectorFile::chunks_f32`] to
    /// stream a file larger than memory.
    pub fn read_all_f32(&self) -> Result<Array2<f32>, DatasetError> {
        self.read_rows_f32(0, self.rows)
    }

    /// Reads every row as `u32` ids.
    pub fn read_all_u32(&self) -> Result<Array2<u32>, DatasetError> {
        self.read_rows_u32(0, self.rows)
    }

    /// The trailing `f32` distances of a big-ann ground-truth `.ibin`, if present.
    pub fn read_distances(&self) -> Result<Option<Array2<f32>>, DatasetError> {
        let Some(at) = self.distances_at else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(self.rows * self.dim);
        convert_f32(
            ElemType::F32,
            &self.bytes()[at..at + self.rows * self.dim * 4],
            &mut out,
        );
        Array2::from_shape_vec((self.rows, self.dim), out)
            .map(Some)
            .map_err(|e| DatasetError::InvalidArgument(e.to_string()))
    }

    /// Streams the rows as `f32` in chunks of at most `rows_per_chunk` rows, so a file larger
    /// than memory can be processed (only the current chunk is resident besides the page cache).
    pub fn chunks_f32(
        &self,
        rows_per_chunk: usize,
    ) -> impl Iterator<Item = Result<Array2<f32>, DatasetError>> + '_ {
        let step = rows_per_chunk.max(1);
        (0..self.rows)
            .step_by(step)
            .map(move |s| self.read_rows_f32(s, step.min(self.rows - s)))
    }

    /// Checks every row header of a texmex file (dense formats were fully validated on open).
    pub fn validate(&self) -> Result<(), DatasetError> {
        if let Layout::Vecs = self.layout {
            for r in 0..self.rows {
                self.row_span(r)?;
            }
        }
        Ok(())
    }
}

/// Appends `bytes` (little-endian elements of `elem`) to `out` as `f32`.
fn convert_f32(elem: ElemType, bytes: &[u8], out: &mut Vec<f32>) {
    match elem {
        ElemType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        ElemType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        ElemType::F64 => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
        ElemType::U8 => out.extend(bytes.iter().map(|&b| b as f32)),
        ElemType::I8 => out.extend(bytes.iter().map(|&b| b as i8 as f32)),
        ElemType::I32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
        ElemType::U32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
        ElemType::I64 => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
}
