//! Dataset readers, generators and exact ground truth: what `shoal bench` and `shoal dataset` use
//! to measure the engine on the sets people know (ann-benchmarks HDF5, texmex, big-ann, npy).

use ndarray::Array2;

use crate::index::Metric;

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
