//! The distance matrix across shards (Qdrant's `search/matrix/pairs` and `.../offsets`):
//! a uniform random sample of `sample` points passing the filter, and for each the `limit`
//! nearest other points of the sample, with exact distances.
//!
//! The sample is bottom-k ([`crate::shard::sample_key`]): every shard answers its own `sample`
//! points with the smallest keys under one random seed, and the `sample` smallest of all the
//! answers are the collection's, whichever shards hold them. The neighbours are then found
//! here by brute force over the sampled vectors (`sample²` distances, on the blocking pool),
//! under the collection's metric, ties by id.

use super::rpc::{ShardRequest, ShardResponse};
use super::{Answer, ReadOptions, Router, exec};
use crate::collection::{Error, Metric, limits};
use crate::index::distance::distance_batch;
use crate::shard::filter::Condition;
use crate::shard::{Filter, PointId};

/// A sample and, for each sampled point, its nearest other sampled points.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMatrix {
    /// The sampled points, in sample order.
    pub ids: Vec<PointId>,
    /// Row `i`: up to `limit` `(j, distance)` with `j` an index into `ids` (never `i`),
    /// closest first, ties by id.
    pub rows: Vec<Vec<(usize, f32)>>,
}

/// Keeps the `sample` smallest `(key, id)` of the shards' answers, each id once.
pub fn merge_samples(
    shards: impl IntoIterator<Item = Vec<(u64, PointId, Vec<f32>)>>,
    sample: usize,
) -> Vec<(PointId, Vec<f32>)> {
    let mut all: Vec<(u64, PointId, Vec<f32>)> = shards.into_iter().flatten().collect();
    all.sort_by_key(|a| (a.0, a.1));
    let mut seen = std::collections::HashSet::new();
    all.into_iter()
        .filter(|p| seen.insert(p.1))
        .take(sample)
        .map(|(_, id, v)| (id, v))
        .collect()
}

/// Brute force: for each point, the `limit` nearest others under `metric`.
pub fn nearest_among(
    points: &[(PointId, Vec<f32>)],
    dim: usize,
    metric: Metric,
    limit: usize,
) -> Vec<Vec<(usize, f32)>> {
    let n = points.len();
    let mut flat = Vec::with_capacity(n * dim);
    for (_, v) in points {
        flat.extend_from_slice(v);
    }
    let mut dist = vec![0f32; n];
    (0..n)
        .map(|i| {
            distance_batch(metric, &points[i].1, &flat, dim, &mut dist);
            let mut row: Vec<(usize, f32)> =
                (0..n).filter(|&j| j != i).map(|j| (j, dist[j])).collect();
            row.sort_by(|a, b| a.1.total_cmp(&b.1).then(points[a.0].0.cmp(&points[b.0].0)));
            row.truncate(limit);
            row
        })
        .collect()
}

impl Router {
    /// `sample` random points passing `filter` (fewer if fewer match) and each one's `limit`
    /// nearest others among them, by the vector `using` names.
    pub async fn distance_matrix(
        &self,
        collection: &str,
        using: Option<&str>,
        sample: usize,
        limit: usize,
        filter: Option<Filter>,
        read: &ReadOptions,
    ) -> Result<Answer<DistanceMatrix>, Error> {
        let meta = self.meta(collection)?;
        let vectors = meta.vectors();
        let lane = vectors.lane_of(using)?;
        // Only points that have the vector compared are sampled.
        let has_vector = Condition {
            has_vector: Some(using.unwrap_or_default().to_owned()),
            ..Condition::default()
        };
        let filter = self.check_filter(&meta, Some(filter.unwrap_or_default().and(has_vector)))?;
        let config = vectors.lane_config(lane);
        let dim = config.dim();
        limits::check_matrix(sample, limit, dim)?;
        let metric = config.metric();
        let seed: u64 = rand::random();
        let out = self
            .fan_out_all(collection, &meta, read, |group, read| {
                ShardRequest::Sample {
                    group,
                    read,
                    seed,
                    k: sample,
                    filter: filter.clone(),
                }
            })
            .await?;
        let lists = out.value.into_iter().filter_map(|r| match r {
            ShardResponse::Sample(v) => Some(v),
            _ => None,
        });
        // Each sampled point carries all its vectors packed: keep the one searched.
        let dims = vectors.lane_dims();
        let mut points = merge_samples(lists, sample);
        for (_, v) in points.iter_mut() {
            if let Some(part) = crate::collection::named::unpack(&dims, v, lane) {
                *v = part.to_vec();
            }
        }
        if let Some((id, v)) = points.iter().find(|(_, v)| v.len() != dim) {
            return Err(Error::Internal(format!(
                "point {id} came back with {} components, the collection has {dim}",
                v.len()
            )));
        }
        let (ids, rows) = exec::run(exec::Cost::Long, move || {
            let rows = nearest_among(&points, dim, metric, limit);
            (points.into_iter().map(|(id, _)| id).collect(), rows)
        })
        .await
        .map_err(|e| Error::Internal(format!("distance matrix worker failed: {e}")))?;
        Ok(Answer {
            value: DistanceMatrix { ids, rows },
            missing_shards: out.missing_shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_keys_win_across_shards() {
        let p = |k: u64, id: u64| (k, PointId::Num(id), vec![id as f32]);
        let a = vec![p(1, 10), p(5, 11), p(9, 12)];
        let b = vec![p(2, 20), p(3, 21)];
        let got: Vec<PointId> = merge_samples([a, b], 3)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            got,
            vec![PointId::Num(10), PointId::Num(20), PointId::Num(21)]
        );
    }

    #[test]
    fn neighbours_exclude_the_point_and_order_by_distance() {
        let pts: Vec<(PointId, Vec<f32>)> = [0.0f32, 1.0, 3.0, 7.0]
            .iter()
            .enumerate()
            .map(|(i, x)| (PointId::Num(i as u64), vec![*x, 0.0]))
            .collect();
        let rows = nearest_among(&pts, 2, Metric::L2, 2);
        assert_eq!(rows[0], vec![(1, 1.0), (2, 9.0)]);
        assert_eq!(rows[2], vec![(1, 4.0), (0, 9.0)]);
        assert_eq!(rows[3], vec![(2, 16.0), (1, 36.0)]);
    }
}
