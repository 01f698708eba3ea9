//! Writers for the texmex and big-ann formats, so generated sets and computed ground truth can be
//! handed to any tool that reads them. Each write goes to a temporary file that is renamed into
//! place, so a crash never leaves a half-written file under the final name.

use std::io::Write;
use std::path::Path;

use ndarray::ArrayView2;

use super::DatasetError;
use crate::storage::StorageError;
use crate::storage::atomic::AtomicFile;

/// Writes `path` through `body` with the storage layer's crash-safe protocol (temporary file,
/// fsync, rename, directory fsync), so a crash never leaves a half-written file under its name.
pub(crate) fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut AtomicFile) -> std::io::Result<()>,
) -> Result<(), DatasetError> {
    let storage = |e: StorageError| DatasetError::io(path, std::io::Error::other(e));
    let mut file = AtomicFile::create(path).map_err(storage)?;
    body(&mut file).map_err(|e| DatasetError::io(path, e))?;
    file.commit().map_err(storage)
}

fn check_dim(path: &Path, rows: usize, dim: usize) -> Result<(), DatasetError> {
    if dim == 0 && rows > 0 {
        return Err(DatasetError::InvalidArgument(format!(
            "{}: cannot write rows of dimension 0",
            path.display()
        )));
    }
    if rows > u32::MAX as usize || dim > i32::MAX as usize {
        return Err(DatasetError::InvalidArgument(format!(
            "{}: {rows} x {dim} does not fit the format's 32-bit header",
            path.display()
        )));
    }
    Ok(())
}

/// Writes texmex `.fvecs`: per row an `i32` dimension then the floats.
pub fn write_fvecs(path: &Path, data: ArrayView2<f32>) -> Result<(), DatasetError> {
    check_dim(path, data.nrows(), data.ncols())?;
    let dim = (data.ncols() as i32).to_le_bytes();
    write_atomically(path, |w| {
        for row in data.rows() {
            w.write_all(&dim)?;
            for v in row {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Writes texmex `.ivecs` (ground-truth ids).
pub fn write_ivecs(path: &Path, data: ArrayView2<u32>) -> Result<(), DatasetError> {
    check_dim(path, data.nrows(), data.ncols())?;
    let dim = (data.ncols() as i32).to_le_bytes();
    write_atomically(path, |w| {
        for row in data.rows() {
            w.write_all(&dim)?;
            for v in row {
                w.write_all(&(*v as i32).to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Writes big-ann `.fbin`: `u32` rows, `u32` dim, then the floats.
pub fn write_fbin(path: &Path, data: ArrayView2<f32>) -> Result<(), DatasetError> {
    check_dim(path, data.nrows(), data.ncols())?;
    write_atomically(path, |w| {
        w.write_all(&(data.nrows() as u32).to_le_bytes())?;
        w.write_all(&(data.ncols() as u32).to_le_bytes())?;
        for v in data.iter() {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Writes big-ann `.ibin` ground truth: header, ids, and the distances after them when given
/// (the layout of big-ann-benchmarks' ground-truth files).
pub fn write_ibin(
    path: &Path,
    ids: ArrayView2<u32>,
    distances: Option<ArrayView2<f32>>,
) -> Result<(), DatasetError> {
    check_dim(path, ids.nrows(), ids.ncols())?;
    if let Some(d) = &distances
        && d.dim() != ids.dim()
    {
        return Err(DatasetError::InvalidArgument(format!(
            "{}: distances {:?} do not match ids {:?}",
            path.display(),
            d.dim(),
            ids.dim()
        )));
    }
    write_atomically(path, |w| {
        w.write_all(&(ids.nrows() as u32).to_le_bytes())?;
        w.write_all(&(ids.ncols() as u32).to_le_bytes())?;
        for v in ids.iter() {
            w.write_all(&(*v as i32).to_le_bytes())?;
        }
        if let Some(d) = distances {
            for v in d.iter() {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}
