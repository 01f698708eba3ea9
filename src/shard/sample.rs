//! A uniform random sample of a shard's live points (optionally filtered), for the distance
//! matrix (Qdrant's `search/matrix`).
//!
//! Bottom-k sampling: every point gets the key `sample_key(seed, id)`, a 64-bit hash of the
//! request's seed and the point's id, and the sample is the `k` points with the smallest keys.
//! The keys do not depend on which shard or replica holds a point, so the router, asking every
//! shard for its own `k` smallest with one seed and keeping the `k` smallest of all, gets
//! exactly the `k` smallest over the whole collection: a uniform sample without replacement,
//! different for each seed.

use super::planner::allowed;
use super::{CompiledFilter, PointId, Shard};

/// One sampled point: its key, id and stored vector (normalised for cosine).
#[derive(Debug, Clone, PartialEq)]
pub struct SampledPoint {
    /// `sample_key(seed, id)`: the sample is the smallest keys.
    pub key: u64,
    /// The point.
    pub id: PointId,
    /// Its vector as stored.
    pub vector: Vec<f32>,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling key of `id` under `seed` (the same on every shard and replica).
pub fn sample_key(seed: u64, id: &PointId) -> u64 {
    match *id {
        PointId::Num(n) => splitmix64(seed ^ splitmix64(n)),
        PointId::Uuid(u) => {
            let hi = splitmix64((u >> 64) as u64 ^ 0x5555_5555_5555_5555);
            splitmix64(seed ^ splitmix64(hi ^ u as u64))
        }
    }
}

impl Shard {
    /// The `k` live points passing `filter` with the smallest [`sample_key`] under `seed`,
    /// smallest key first (ties by id), with their vectors.
    pub fn sample(
        &self,
        seed: u64,
        k: usize,
        filter: Option<&CompiledFilter>,
    ) -> Vec<SampledPoint> {
        if k == 0 {
            return Vec::new();
        }
        let mut keyed: Vec<(u64, PointId, u32, usize)> = Vec::new();
        let segments = self.view();
        for (si, seg) in segments.iter().enumerate() {
            for row in allowed(seg, filter).iter() {
                if let Some(id) = seg.body.point(row) {
                    keyed.push((sample_key(seed, &id), id, si as u32, row));
                }
            }
            // Keep memory at O(k) however many points match.
            if keyed.len() > k.saturating_mul(4).saturating_add(1024) {
                keyed.select_nth_unstable_by_key(k - 1, |a| (a.0, a.1));
                keyed.truncate(k);
            }
        }
        keyed.sort_unstable_by_key(|a| (a.0, a.1));
        keyed.truncate(k);
        keyed
            .into_iter()
            .filter_map(|(key, id, si, row)| {
                let vector = segments[si as usize].body.vector(row)?.to_vec();
                Some(SampledPoint { key, id, vector })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_seed_and_id() {
        let a = PointId::Num(1);
        assert_eq!(sample_key(7, &a), sample_key(7, &a));
        assert_ne!(sample_key(7, &a), sample_key(8, &a));
        assert_ne!(sample_key(7, &a), sample_key(7, &PointId::Num(2)));
        assert_ne!(sample_key(7, &a), sample_key(7, &PointId::Uuid(1)));
    }
}
