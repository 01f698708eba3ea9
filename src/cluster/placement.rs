//! Placeholder for the `placement` branch (hash ring, centroid placement): only the type the
//! cluster metadata stores, so this branch builds on its own. On merge, take the placement
//! branch's file.

use serde::{Deserialize, Serialize};

/// A trained coarse quantiser and its cluster → shard map (see the placement branch).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CentroidPlacement {
    /// Row-major centroids.
    pub centroids: Vec<f32>,
    /// Shard of each centroid.
    pub shard_of_cluster: Vec<u32>,
}
