//! Dataset readers, generators and exact ground truth: what `shoal bench` and `shoal dataset` use
//! to measure the engine on the sets people know (ann-benchmarks HDF5, texmex, big-ann, npy).
//!
//! - [`load`] / [`load_with`]: one entry point for an `.hdf5` file, an `.npz` archive or a folder
//!   of `base`/`query`/`groundtruth` files; [`load::summarize`] also describes one vector file.
//! - [`VectorFile`]: validated, memory-mapped row readers for `.fvecs`/`.ivecs`/`.bvecs`,
//!   `.fbin`/`.u8bin`/`.i8bin`/`.ibin` and `.npy`, with a pure-bytes entry point for fuzzing.
//! - [`writer`] and [`hdf5`]: the same formats back out.
//! - [`generate()`]: seeded synthetic sets; [`exact_knn`]: exact ground truth.
//! - [`catalog`] and [`fetch`]: the public sets, downloaded and checksummed.

pub mod catalog;
pub mod cli;
mod error;
pub mod fetch;
pub mod generate;
pub mod groundtruth;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod load;
pub mod npy;
pub mod reader;
pub mod writer;

use std::path::Path;

use ndarray::Array2;

use crate::index::Metric;

pub use error::DatasetError;
pub use generate::{Difficulty, GenerateConfig, GeneratorKind, generate};
pub use groundtruth::{exact_knn, try_exact_knn};
pub use reader::{ElemType, Format, VectorFile};

/// A benchmark dataset loaded into memory: base vectors to index, query vectors, and optionally
/// the exact nearest neighbours of each query.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// A short name for reports, usually the file or folder name without extension.
    pub name: String,
    /// How the dataset's ground truth compares vectors.
    pub metric: Metric,
    /// Base vectors, one per row; a point's id is its row number.
    pub base: Array2<f32>,
    /// Query vectors, one per row.
    pub queries: Array2<f32>,
    /// For each query, the row numbers of its exact nearest base vectors, nearest first.
    pub groundtruth: Option<Array2<u32>>,
}

/// How to load a dataset beyond what its files say.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Overrides the metric from the file (HDF5 attribute, `metric` file, file name).
    pub metric: Option<Metric>,
    /// Reads only the first rows of the base (a quick run on a big set). Stored ground truth is
    /// then dropped, as it was computed on the full base; compute it with [`exact_knn`].
    pub max_base: Option<usize>,
}

/// Loads the dataset at `path`: an ann-benchmarks `.hdf5` file, a numpy `.npz` archive, or a
/// folder of `base`, `query` and `groundtruth` files (texmex, big-ann or `.npy`). Ground truth is
/// `None` when the files have none.
pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
    load_with(path, LoadOptions::default())
}

/// [`load`] with a metric override or a base-size limit.
pub fn load_with(path: &Path, options: LoadOptions) -> Result<Dataset, DatasetError> {
    match load::container_of(path)? {
        load::Container::Folder => load::load_folder(path, &options),
        load::Container::Npz => load::load_npz(path, &options),
        load::Container::Hdf5 => load_hdf5(path, &options),
        load::Container::File => Err(load::single_file_error(path)),
    }
}

#[cfg(feature = "hdf5")]
fn load_hdf5(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    hdf5::load_hdf5(path, options)
}

#[cfg(not(feature = "hdf5"))]
fn load_hdf5(path: &Path, _options: &LoadOptions) -> Result<Dataset, DatasetError> {
    Err(no_hdf5(path))
}

/// The error for HDF5 files in a build without the `hdf5` feature.
#[cfg(not(feature = "hdf5"))]
pub(crate) fn no_hdf5(path: &Path) -> DatasetError {
    DatasetError::unsupported(path, "this shoal was built without the `hdf5` feature")
}

/// Parses a metric as users and file formats name it: `l2`/`euclidean`, `cosine`/`angular`,
/// `dot`/`ip`.
pub fn metric_from_name(name: &str) -> Option<Metric> {
    match name.trim().to_ascii_lowercase().as_str() {
        "l2" | "euclidean" | "euclid" => Some(Metric::L2),
        "cosine" | "cos" | "angular" => Some(Metric::Cosine),
        "dot" | "ip" | "inner_product" | "innerproduct" => Some(Metric::Dot),
        _ => None,
    }
}

/// A short report name: the file name up to its first dot (`sift-128-euclidean.hdf5` →
/// `sift-128-euclidean`), or the folder name.
pub fn dataset_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.is_dir() {
        return name;
    }
    name.split('.').next().unwrap_or(&name).to_string()
}
#[cfg(test)]
mod tests;
