//! ann-benchmarks HDF5 files: datasets `train` (base), `test` (queries), `neighbors` (exact ids),
//! `distances`, and the root attribute `distance` (`euclidean`, `angular`, `dot`/`ip`).
//!
//! Read through the system libhdf5 (`hdf5-metno`), which is what ann-benchmarks' own h5py files
//! are written with; the reader converts any numeric element type to `f32`/`i32` in the library.

use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use ndarray::{Array2, ArrayView2, s};

use super::{Dataset, DatasetError, LoadOptions, dataset_name, metric_from_name};
use crate::index::Metric;

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> DatasetError + '_ {
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

/// Reads the root `distance` attribute as text, whatever string type h5py stored it with.
fn distance_attr(file: &hdf5::File, path: &Path) -> Result<Option<String>, DatasetError> {
    let names = file.attr_names().map_err(h5err(path))?;
    if !names.iter().any(|n| n == "distance") {
        return Ok(None);
    }
    let attr = file.attr("distance").map_err(h5err(path))?;
    let desc = attr
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(h5err(path))?;
    let text = match desc {
        TypeDescriptor::VarLenUnicode => attr
            .read_scalar::<VarLenUnicode>()
            .map(|s| s.as_str().to_string()),
        TypeDescriptor::VarLenAscii => attr
            .read_scalar::<VarLenAscii>()
            .map(|s| s.as_str().to_string()),
        TypeDescriptor::FixedAscii(_) => attr
            .read_scalar::<hdf5::types::FixedAscii<256>>()
            .map(|s| s.as_str().to_string()),
        TypeDescriptor::FixedUnicode(_) => attr
            .read_scalar::<hdf5::types::FixedUnicode<256>>()
            .map(|s| s.as_str().to_string()),
        other => {
            return Err(DatasetError::unsupported(
                path,
                format!("attribute `distance` has type {other}, not a string"),
            ));
        }
    };
    Ok(Some(
        text.map_err(h5err(path))?
            .trim_end_matches('\0')
            .to_string(),
    ))
}

fn shape2(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<(usize, usize), DatasetError> {
    match ds.shape().as_slice() {
        [n, d] => Ok((*n, *d)),
        other => Err(DatasetError::unsupported(
            path,
            format!("dataset `{name}` has shape {other:?}, not two-dimensional"),
        )),
    }
}

fn read_f32(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    max_rows: Option<usize>,
) -> Result<Array2<f32>, DatasetError> {
    let ds = file.dataset(name).map_err(|_| {
        DatasetError::inconsistent(
            path,
            format!("no dataset `{name}` (ann-benchmarks layout has train, test, neighbors)"),
        )
    })?;
    let (n, _) = shape2(&ds, path, name)?;
    let rows = max_rows.map_or(n, |m| m.min(n));
    ds.read_slice_2d::<f32, _>(s![..rows, ..])
        .map_err(h5err(path))
}

/// Loads an ann-benchmarks HDF5 file. With `max_base`, only the first rows of `train` are read
/// and the stored ground truth (computed on the full base) is dropped.
pub fn load_hdf5(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let file = hdf5::File::open(path).map_err(h5err(path))?;
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
    let truncated = options
        .max_base
        .is_some_and(|m| m < hdf5_rows(&file, path, "train").unwrap_or(0));
    let groundtruth = if truncated || file.dataset("neighbors").is_err() {
        None
    } else {
        let ds = file.dataset("neighbors").map_err(h5err(path))?;
        let ids = ds.read_2d::<i64>().map_err(h5err(path))?;
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
    };
    Ok(Dataset {
        name: dataset_name(path),
        metric,
        base,
        queries,
        groundtruth,
    })
}

fn hdf5_rows(file: &hdf5::File, path: &Path, name: &str) -> Result<usize, DatasetError> {
    let ds = file.dataset(name).map_err(h5err(path))?;
    Ok(shape2(&ds, path, name)?.0)
}

/// What `shoal dataset info` prints about an HDF5 file, read without loading the vectors.
#[derive(Debug, Clone)]
pub struct Hdf5Summary {
    /// Base rows and dimension (`train`).
    pub base: (usize, usize),
    /// Query rows and dimension (`test`).
    pub queries: (usize, usize),
    /// Ground-truth rows and k (`neighbors`), if present.
    pub neighbors: Option<(usize, usize)>,
    /// The `distance` attribute.
    pub distance: Option<String>,
    /// Element type of `train`.
    pub dtype: String,
}

/// Summarises an ann-benchmarks HDF5 file.
pub fn summarize_hdf5(path: &Path) -> Result<Hdf5Summary, DatasetError> {
    let file = hdf5::File::open(path).map_err(h5err(path))?;
    let train = file.dataset("train").map_err(h5err(path))?;
    let test = file.dataset("test").map_err(h5err(path))?;
    let neighbors = match file.dataset("neighbors") {
        Ok(ds) => Some(shape2(&ds, path, "neighbors")?),
        Err(_) => None,
    };
    let dtype = train
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map(|d| d.to_string())
        .map_err(h5err(path))?;
    Ok(Hdf5Summary {
        base: shape2(&train, path, "train")?,
        queries: shape2(&test, path, "test")?,
        neighbors,
        distance: distance_attr(&file, path)?,
        dtype,
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

fn write_gt(
    file: &hdf5::File,
    path: &Path,
    metric: Metric,
    ids: ArrayView2<u32>,
    distances: ArrayView2<f32>,
) -> Result<(), DatasetError> {
    let ids = ids.mapv(|v| v as i32);
    file.new_dataset_builder()
        .with_data(&ids)
        .create("neighbors")
        .map_err(h5err(path))?;
    let d = ann_benchmarks_distances(metric, distances);
    file.new_dataset_builder()
        .with_data(&d)
        .create("distances")
        .map_err(h5err(path))?;
    Ok(())
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
    let result = (|| {
        let file = hdf5::File::create(&tmp).map_err(h5err(path))?;
        let text = |s: &str| {
            s.parse::<VarLenUnicode>()
                .map_err(|e| DatasetError::InvalidArgument(e.to_string()))
        };
        let attr = |name: &str, value: &str| -> Result<(), DatasetError> {
            file.new_attr::<VarLenUnicode>()
                .create(name)
                .and_then(|a| a.write_scalar(&text(value).unwrap_or_default()))
                .map_err(h5err(path))
        };
        attr("type", "dense")?;
        attr("distance", ann_benchmarks_metric_name(metric))?;
        attr("point_type", "float")?;
        file.new_attr::<i64>()
            .create("dimension")
            .and_then(|a| a.write_scalar(&(base.ncols() as i64)))
            .map_err(h5err(path))?;
        file.new_dataset_builder()
            .with_data(&base.as_standard_layout())
            .create("train")
            .map_err(h5err(path))?;
        file.new_dataset_builder()
            .with_data(&queries.as_standard_layout())
            .create("test")
            .map_err(h5err(path))?;
        if let Some((ids, d)) = groundtruth {
            write_gt(&file, path, metric, ids, d)?;
        }
        file.flush().map_err(h5err(path))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))
}

/// Replaces the `neighbors` and `distances` of an existing HDF5 file (the target of
/// `shoal dataset groundtruth --out FILE.hdf5`).
pub fn write_hdf5_groundtruth(
    path: &Path,
    metric: Metric,
    ids: ArrayView2<u32>,
    distances: ArrayView2<f32>,
) -> Result<(), DatasetError> {
    let file = hdf5::File::open_rw(path).map_err(h5err(path))?;
    for name in ["neighbors", "distances"] {
        if file.dataset(name).is_ok() {
            file.unlink(name).map_err(h5err(path))?;
        }
    }
    write_gt(&file, path, metric, ids, distances)?;
    file.flush().map_err(h5err(path))
}

/// Streams dataset `name` (`train`, `test`) of an HDF5 file as `f32` chunks of at most
/// `rows_per_chunk` rows, so a file larger than memory can be processed a slice at a time.
pub fn hdf5_chunks(
    path: &Path,
    name: &str,
    rows_per_chunk: usize,
) -> Result<impl Iterator<Item = Result<Array2<f32>, DatasetError>> + use<>, DatasetError> {
    let file = hdf5::File::open(path).map_err(h5err(path))?;
    let ds = file.dataset(name).map_err(h5err(path))?;
    let (n, _) = shape2(&ds, path, name)?;
    let step = rows_per_chunk.max(1);
    let path = path.to_path_buf();
    Ok((0..n).step_by(step).map(move |s| {
        let _keep_open = &file;
        ds.read_slice_2d::<f32, _>(s![s..(s + step).min(n), ..])
            .map_err(h5err(&path))
    }))
}
