//! ann-benchmarks HDF5 files: datasets `train` (base), `test` (queries), `neighbors` (exact ids),
//! `distances`, and the root attribute `distance` (`euclidean`, `angular`, `dot`/`ip`).
//!
//! Read and written with `hdf5-pure`, a pure-Rust HDF5 implementation: no system libhdf5, so
//! `cargo build` needs only the Rust toolchain (libhdf5 was the one system library the binary
//! linked). It reads what h5py writes — v0 to v3 superblocks, contiguous and chunked layouts with
//! every chunk index, deflate (gzip), shuffle, LZF and fletcher32 filters — and converts any
//! numeric element type to `f32`/`i64` on read; `tests/fixtures/hdf5/` holds h5py-written files
//! of each storage kind that the tests read back value for value. Files are opened in streaming
//! mode (metadata and chunks fetched on demand), so a file larger than memory is never buffered
//! whole, and `train` can be read a window of rows at a time ([`hdf5_chunks`]).

use std::path::Path;

use hdf5_pure::{AttrValue, DType, Dataset as H5Dataset, File, FileBuilder};
use ndarray::{Array2, ArrayView2};

use super::{Dataset, DatasetError, LoadOptions, dataset_name, metric_from_name};
use crate::index::Metric;

fn h5err(path: &Path) -> impl Fn(hdf5_pure::Error) -> DatasetError + '_ {
    move |e| DatasetError::Hdf5 {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The name ann-benchmarks gives a metric in the `distance` attribute.
pub fn ann_benchmarks_metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "euclidean",
        Metric::Cosine => "angular",
        Metric::Dot => "dot",
    }
}

/// Opens an HDF5 file for reading without buffering it whole.
fn open(path: &Path) -> Result<File, DatasetError> {
    File::open_streaming(path).map_err(h5err(path))
}

/// Reads the root `distance` attribute as text, whatever string type h5py stored it with
/// (variable-length UTF-8 for a `str`, fixed-length ASCII for `np.bytes_`).
fn distance_attr(file: &File, path: &Path) -> Result<Option<String>, DatasetError> {
    let attrs = file.root().attrs().map_err(h5err(path))?;
    let Some(value) = attrs.get("distance") else {
        return Ok(None);
    };
    match value.as_str() {
        Some(text) => Ok(Some(text.trim_end_matches('\0').to_string())),
        None => Err(DatasetError::unsupported(
            path,
            format!("attribute `distance` is {value:?}, not a string"),
        )),
    }
}

/// The dataset `name`, or `None` when the file has no object of that name.
fn find(file: &File, path: &Path, name: &str) -> Result<Option<H5Dataset>, DatasetError> {
    let names = file.root().datasets().map_err(h5err(path))?;
    if !names.iter().any(|n| n == name) {
        return Ok(None);
    }
    file.dataset(name).map(Some).map_err(h5err(path))
}

/// The dataset `name`, or an error saying the ann-benchmarks layout needs it.
fn require(file: &File, path: &Path, name: &str) -> Result<H5Dataset, DatasetError> {
    find(file, path, name)?.ok_or_else(|| {
        DatasetError::inconsistent(
            path,
            format!("no dataset `{name}` (ann-benchmarks layout has train, test, neighbors)"),
        )
    })
}

fn shape2(ds: &H5Dataset, path: &Path, name: &str) -> Result<(usize, usize), DatasetError> {
    let shape = ds.shape().map_err(h5err(path))?;
    match shape.as_slice() {
        &[n, d] => match (usize::try_from(n), usize::try_from(d)) {
            (Ok(n), Ok(d)) => Ok((n, d)),
            _ => Err(DatasetError::unsupported(
                path,
                format!("dataset `{name}` has shape {shape:?}, too large to address"),
            )),
        },
        other => Err(DatasetError::unsupported(
            path,
            format!("dataset `{name}` has shape {other:?}, not two-dimensional"),
        )),
    }
}

/// Checks that `name` holds numbers (a string or compound dataset would convert to garbage).
fn check_numeric(ds: &H5Dataset, path: &Path, name: &str) -> Result<DType, DatasetError> {
    let dtype = ds.dtype().map_err(h5err(path))?;
    match dtype {
        DType::F32
        | DType::F64
        | DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U8
        | DType::U16
        | DType::U32
        | DType::U64 => Ok(dtype),
        other => Err(DatasetError::unsupported(
            path,
            format!("dataset `{name}` has element type {other}, not numbers"),
        )),
    }
}

/// Rows `start..start + count` of a 2-D numeric dataset as `f32`.
fn read_rows_f32(
    ds: &H5Dataset,
    path: &Path,
    name: &str,
    start: usize,
    count: usize,
) -> Result<Array2<f32>, DatasetError> {
    let (n, d) = shape2(ds, path, name)?;
    check_numeric(ds, path, name)?;
    let count = count.min(n.saturating_sub(start));
    let values = ds
        .read_f32_rows(start as u64, count as u64)
        .map_err(h5err(path))?;
    Array2::from_shape_vec((count, d), values).map_err(|_| {
        DatasetError::inconsistent(
            path,
            format!(
                "dataset `{name}`: rows {start}..{} did not decode to {count} x {d}",
                start + count
            ),
        )
    })
}

fn read_f32(
    file: &File,
    path: &Path,
    name: &str,
    max_rows: Option<usize>,
) -> Result<Array2<f32>, DatasetError> {
    let ds = require(file, path, name)?;
    let (n, _) = shape2(&ds, path, name)?;
    read_rows_f32(&ds, path, name, 0, max_rows.map_or(n, |m| m.min(n)))
}

fn read_neighbors(ds: &H5Dataset, path: &Path) -> Result<Array2<i64>, DatasetError> {
    let (n, d) = shape2(ds, path, "neighbors")?;
    check_numeric(ds, path, "neighbors")?;
    let values = ds.read_i64().map_err(h5err(path))?;
    Array2::from_shape_vec((n, d), values)
        .map_err(|_| DatasetError::inconsistent(path, "neighbors did not decode to its shape"))
}

/// Loads an ann-benchmarks HDF5 file. With `max_base`, only the first rows of `train` are read
/// and the stored ground truth (computed on the full base) is dropped.
pub fn load_hdf5(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let file = open(path)?;
    let metric = match options.metric {
        Some(m) => m,
        None => match distance_attr(&file, path)? {
            Some(name) => metric_from_name(&name).ok_or_else(|| {
                DatasetError::unsupported(
                    path,
                    format!("distance `{name}` is not euclidean, angular or dot"),
                )
            })?,
            None => Metric::L2,
        },
    };
    let train_rows = shape2(&require(&file, path, "train")?, path, "train")?.0;
    let base = read_f32(&file, path, "train", options.max_base)?;
    let queries = read_f32(&file, path, "test", None)?;
    if base.ncols() != queries.ncols() {
        return Err(DatasetError::inconsistent(
            path,
            format!(
                "train has dimension {}, test has {}",
                base.ncols(),
                queries.ncols()
            ),
        ));
    }
    let truncated = options.max_base.is_some_and(|m| m < train_rows);
    let groundtruth = match find(&file, path, "neighbors")? {
        Some(ds) if !truncated => {
            let ids = read_neighbors(&ds, path)?;
            if ids.nrows() != queries.nrows() {
                return Err(DatasetError::inconsistent(
                    path,
                    format!(
                        "neighbors has {} rows for {} queries",
                        ids.nrows(),
                        queries.nrows()
                    ),
                ));
            }
            let n = base.nrows() as i64;
            if let Some(bad) = ids.iter().find(|&&v| v < 0 || v >= n) {
                return Err(DatasetError::inconsistent(
                    path,
                    format!("neighbors holds id {bad}, train has {n} rows"),
                ));
            }
            Some(ids.mapv(|v| v as u32))
        }
        _ => None,
    };
    Ok(Dataset {
        name: dataset_name(path),
        metric,
        base,
        queries,
        groundtruth,
    })
}

/// What `shoal dataset info` prints about an HDF5 file, read without loading the vectors.
#[derive(Debug, Clone)]
pub struct Hdf5Summary {
    /// Every two-dimensional numeric dataset in the root group, in name order:
    /// `(name, (rows, columns), element type)`. An ann-benchmarks file has `train`, `test`,
    /// `neighbors` and `distances`.
    pub datasets: Vec<(String, (usize, usize), String)>,
    /// The `distance` attribute.
    pub distance: Option<String>,
}

impl Hdf5Summary {
    /// The shape of dataset `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<(usize, usize)> {
        self.datasets
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, s, _)| *s)
    }
}

/// Summarises an HDF5 file: its 2-D numeric datasets and the `distance` attribute.
pub fn summarize_hdf5(path: &Path) -> Result<Hdf5Summary, DatasetError> {
    let file = open(path)?;
    let mut names = file.root().datasets().map_err(h5err(path))?;
    names.sort();
    let mut datasets = Vec::new();
    for name in names {
        let ds = file.dataset(&name).map_err(h5err(path))?;
        let (Ok(shape), Ok(dtype)) = (shape2(&ds, path, &name), check_numeric(&ds, path, &name))
        else {
            continue; // not a matrix of numbers: not vectors
        };
        datasets.push((name, shape, dtype.to_string()));
    }
    Ok(Hdf5Summary {
        datasets,
        distance: distance_attr(&file, path)?,
    })
}

/// Converts shoal's distances (squared L2, `1 - cos`, `-dot`) to what ann-benchmarks stores
/// (Euclidean distance, `1 - cos`, `-dot`).
fn ann_benchmarks_distances(metric: Metric, distances: ArrayView2<f32>) -> Array2<f32> {
    match metric {
        Metric::L2 => distances.mapv(|d| d.max(0.0).sqrt()),
        Metric::Cosine | Metric::Dot => distances.to_owned(),
    }
}

fn shape_of<T>(a: &ArrayView2<T>) -> [u64; 2] {
    [a.nrows() as u64, a.ncols() as u64]
}

/// The `neighbors` (as int32, what ann-benchmarks stores) and `distances` datasets.
fn gt_data(
    metric: Metric,
    ids: ArrayView2<u32>,
    distances: ArrayView2<f32>,
) -> (Vec<i32>, [u64; 2], Vec<f32>, [u64; 2]) {
    let id_values = ids.iter().map(|&v| v as i32).collect();
    let d = ann_benchmarks_distances(metric, distances);
    let d_shape = [d.nrows() as u64, d.ncols() as u64];
    (
        id_values,
        shape_of(&ids),
        d.as_standard_layout().iter().copied().collect(),
        d_shape,
    )
}

/// Writes an ann-benchmarks HDF5 file (`train`, `test`, optional `neighbors` + `distances`, and
/// the `distance`, `dimension`, `point_type`, `type` attributes) through a temporary file.
pub fn write_hdf5(
    path: &Path,
    base: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    groundtruth: Option<(ArrayView2<u32>, ArrayView2<f32>)>,
    metric: Metric,
) -> Result<(), DatasetError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut b = FileBuilder::new();
    // Variable-length UTF-8 strings: what h5py writes for a `str` attribute.
    let text = |s: &str| AttrValue::VarLenString(s.to_string());
    b.set_attr("type", text("dense"));
    b.set_attr("distance", text(ann_benchmarks_metric_name(metric)));
    b.set_attr("point_type", text("float"));
    b.set_attr("dimension", AttrValue::I64(base.ncols() as i64));
    let base_values: Vec<f32> = base.iter().copied().collect();
    b.create_dataset("train")
        .with_f32_data(&base_values)
        .with_shape(&shape_of(&base));
    drop(base_values);
    let query_values: Vec<f32> = queries.iter().copied().collect();
    b.create_dataset("test")
        .with_f32_data(&query_values)
        .with_shape(&shape_of(&queries));
    if let Some((ids, d)) = groundtruth {
        let (ids, ids_shape, d, d_shape) = gt_data(metric, ids, d);
        b.create_dataset("neighbors")
            .with_i32_data(&ids)
            .with_shape(&ids_shape);
        b.create_dataset("distances")
            .with_f32_data(&d)
            .with_shape(&d_shape);
    }
    if let Err(e) = b.write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(h5err(path)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))
}

/// Replaces the `neighbors` and `distances` of an existing HDF5 file (the target of
/// `shoal dataset groundtruth --out FILE.hdf5`), in place: one commit swaps both.
pub fn write_hdf5_groundtruth(
    path: &Path,
    metric: Metric,
    ids: ArrayView2<u32>,
    distances: ArrayView2<f32>,
) -> Result<(), DatasetError> {
    let file = File::open_rw(path).map_err(h5err(path))?;
    let root = file.root();
    let existing = root.datasets().map_err(h5err(path))?;
    for name in ["neighbors", "distances"] {
        if existing.iter().any(|n| n == name) {
            root.delete(name).map_err(h5err(path))?;
        }
    }
    let (ids, ids_shape, d, d_shape) = gt_data(metric, ids, distances);
    root.create_dataset("neighbors", |b| {
        b.with_i32_data(&ids).with_shape(&ids_shape);
    })
    .map_err(h5err(path))?;
    root.create_dataset("distances", |b| {
        b.with_f32_data(&d).with_shape(&d_shape);
    })
    .map_err(h5err(path))?;
    file.commit().map_err(h5err(path))?;
    file.close().map_err(h5err(path))
}

/// Streams dataset `name` (`train`, `test`) of an HDF5 file as `f32` chunks of at most
/// `rows_per_chunk` rows, so a file larger than memory can be processed a slice at a time.
pub fn hdf5_chunks(
    path: &Path,
    name: &str,
    rows_per_chunk: usize,
) -> Result<impl Iterator<Item = Result<Array2<f32>, DatasetError>> + use<>, DatasetError> {
    let file = open(path)?;
    let ds = require(&file, path, name)?;
    let (n, _) = shape2(&ds, path, name)?;
    check_numeric(&ds, path, name)?;
    let step = rows_per_chunk.max(1);
    let path = path.to_path_buf();
    let name = name.to_string();
    Ok((0..n).step_by(step).map(move |s| {
        let _keep_open = &file;
        read_rows_f32(&ds, &path, &name, s, step)
    }))
}
