//! Placeholder for the `placement` branch (hash ring, centroid placement) with the agreed
//! interface and simple implementations, so the router builds and runs before that branch
//! lands. On merge, take the placement branch's file.

use crate::index::Metric;
use crate::index::kmeans::{self, KMeansConfig};
use crate::shard::PointId;
use serde::{Deserialize, Serialize};

/// Ids to shards (placeholder: a hash of the id modulo the shard count).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HashRing {
    shards: u32,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl HashRing {
    /// A ring over `shards` shards.
    pub fn new(shards: u32) -> Self {
        HashRing {
            shards: shards.max(1),
        }
    }

    /// Same as [`HashRing::new`] (the placeholder has no virtual nodes).
    pub fn with_vnodes(shards: u32, _vnodes: u32) -> Self {
        Self::new(shards)
    }

    /// The shard owning `id`; stable across processes.
    pub fn shard_of(&self, id: &PointId) -> u32 {
        let h = match id {
            PointId::Num(n) => mix(*n),
            PointId::Uuid(u) => mix(*u as u64 ^ mix((*u >> 64) as u64)),
        };
        (h % u64::from(self.shards)) as u32
    }
}

/// A trained coarse quantiser and its cluster → shard map.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CentroidPlacement {
    /// Row-major centroids.
    pub centroids: Vec<f32>,
    /// Shard of each centroid.
    pub shard_of_cluster: Vec<u32>,
}

impl CentroidPlacement {
    /// Trains `clusters` centroids on `sample` and deals them to `shards` round robin.
    pub fn train(
        sample: &[f32],
        dim: usize,
        metric: Metric,
        shards: u32,
        clusters: usize,
        seed: u64,
    ) -> Self {
        let n = sample.len() / dim.max(1);
        let k = clusters.clamp(1, n.max(1));
        let centroids = if n == 0 {
            vec![0.0; dim]
        } else {
            kmeans::train(
                sample,
                dim,
                &KMeansConfig {
                    k,
                    seed,
                    spherical: metric != Metric::L2,
                    ..KMeansConfig::default()
                },
            )
        };
        let k = centroids.len() / dim.max(1);
        CentroidPlacement {
            centroids,
            shard_of_cluster: (0..k as u32).map(|c| c % shards.max(1)).collect(),
        }
    }

    fn dim(&self) -> usize {
        self.centroids.len() / self.shard_of_cluster.len().max(1)
    }

    fn ranked(&self, v: &[f32]) -> Vec<(f32, usize)> {
        let dim = self.dim();
        let mut d: Vec<(f32, usize)> = self
            .centroids
            .chunks(dim.max(1))
            .enumerate()
            .map(|(c, row)| {
                let dist: f32 = row.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
                (dist, c)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d
    }

    /// The shard owning the cluster nearest `vector`.
    pub fn shard_of(&self, vector: &[f32]) -> u32 {
        self.ranked(vector)
            .first()
            .map_or(0, |(_, c)| self.shard_of_cluster[*c])
    }

    /// The `shard_probe` distinct shards nearest the query, nearest first.
    pub fn probe(&self, query: &[f32], shard_probe: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for (_, c) in self.ranked(query) {
            let s = self.shard_of_cluster[c];
            if !out.contains(&s) {
                out.push(s);
                if out.len() == shard_probe {
                    break;
                }
            }
        }
        out
    }

    /// A default number of clusters: a few per shard, bounded by the sample.
    pub fn default_clusters(shards: u32, sample_len: usize) -> usize {
        (shards as usize * 4)
            .min(sample_len / 4)
            .max(shards as usize)
            .max(1)
    }
}
