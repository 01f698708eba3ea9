//! Which shard a point lives in: a consistent-hash ring over ids ([`HashRing`]) or a global coarse
//! quantiser whose clusters are dealt out to shards ([`CentroidPlacement`]).
//!
//! Both are pure functions of their (small, serialisable) state, so that every router that holds
//! the same metadata sends a point to the same shard, in any process, on any platform and in any
//! later release. That rules out `std`'s `DefaultHasher`/`RandomState` (seeded per process and
//! free to change between Rust versions): ids are hashed by [`stable_hash`], a fixed function
//! whose values are pinned by a test.
//!
//! ## Hash ring
//! Each shard owns `vnodes` points on a 64-bit ring (`vnode_position(shard, v)`); an id belongs
//! to the first shard point at or after its hash, wrapping around. A shard's points depend only on
//! its own number, so going from `n` to `n + 1` shards adds the new shard's points and nothing
//! else: only ids that now fall before one of them move (about `1 / (n + 1)` of all ids), and they
//! all move to the new shard. With [`DEFAULT_VNODES`] = 256 per shard the load of a shard stays
//! within a few percent of the mean (relative spread about `1 / sqrt(vnodes)`).
//!
//! ## Centroid placement
//! 1. k-means ([`crate::index::kmeans`]) trains `clusters` fine centroids on a sample (spherical
//!    for cosine, whose vectors are normalised first), and every sample point is counted in its
//!    nearest cluster under the metric.
//! 2. Clusters are dealt to shards so that shard sizes (sample counts) stay balanced *and*
//!    neighbouring clusters tend to share a shard — a query's nearest clusters then fall in few
//!    shards, which is what lets a search visit only `shard_probe` of them. Shard centres start
//!    from a k-means of the sample with `k = shards`; each round every cluster, most decided first
//!    (largest gap between its nearest and second-nearest centre), goes to the nearest centre that
//!    still has room under a capacity of `(1 + BALANCE_SLACK)` times the mean load (or, if none
//!    has, the least-loaded shard); shards left light then take their nearest movable clusters;
//!    centres then move to the weighted mean of their clusters.
//!    Plain largest-first-onto-the-least-loaded balances as well but scatters neighbouring
//!    clusters over all shards.
//! 3. A vector goes to the shard owning its nearest cluster; a query probes the shards ranked by
//!    their nearest cluster (`probe(v, 1)[0] == shard_of(v)` always, ties broken by cluster index).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::index::distance;
use crate::index::kmeans::{self, KMeansConfig};
use crate::index::{IndexError, Metric};
use crate::shard::PointId;

/// Virtual nodes per shard of [`HashRing::new`]: 256 keep every shard within about ±10% of the
/// mean load for up to a few dozen shards, and the ring stays small (`16 * 256` bytes per shard
/// in memory, two integers when serialised) with lookups of ~12 comparisons.
pub const DEFAULT_VNODES: u32 = 256;

/// Fine clusters per shard chosen by [`CentroidPlacement::default_clusters`]: enough that a
/// shard's share can be balanced to within a few percent and that a query's neighbours, which
/// straddle cluster borders, are found in the `shard_probe` nearest shards; few enough that each
/// cluster keeps a meaningful number of sample points. Measured on 200k × 128 with 8 shards and
/// `shard_probe = 2`: 16 per shard reached recall@10 0.966 against 0.988 for all 8 shards, 64 per
/// shard 0.985 against 0.988 (README, "Sharded search").
pub const CLUSTERS_PER_SHARD: usize = 64;

/// Fewest sample points per cluster [`CentroidPlacement::default_clusters`] allows (FAISS warns
/// below 39 points per centroid).
pub const MIN_POINTS_PER_CLUSTER: usize = 39;

/// How far above the mean load a shard may grow while clusters are dealt out by proximity.
pub const BALANCE_SLACK: f64 = 0.05;

/// Rounds of (capacity-bounded assignment, centre update) when dealing clusters to shards.
const ASSIGN_ROUNDS: usize = 5;

/// Lloyd iterations for both k-means runs of [`CentroidPlacement::train`].
const KMEANS_ITERS: usize = 20;

/// Why a placement could not be trained or decoded.
#[derive(Debug, Error)]
pub enum PlacementError {
    /// A parameter or a decoded field is out of range.
    #[error("invalid placement: {0}")]
    Invalid(String),
    /// k-means refused the sample (ragged rows, non-finite values, ...).
    #[error(transparent)]
    Index(#[from] IndexError),
}

// ---------------------------------------------------------------------------------------------
// Stable hashing
// ---------------------------------------------------------------------------------------------

/// Domain tags keep the three kinds of hashed input apart (a numeric id and a UUID with the same
/// low bits, or an id and a ring position, never collide by construction).
const DOMAIN_NUM: u64 = 0x7368_6f61_6c2d_6e75; // "shoal-nu"
const DOMAIN_UUID: u64 = 0x7368_6f61_6c2d_7575; // "shoal-uu"
const DOMAIN_VNODE: u64 = 0x7368_6f61_6c2d_766e; // "shoal-vn"

/// The SplitMix64 finaliser (Stafford's "Mix13"): a bijection on `u64` in which every input bit
/// flips each output bit with probability close to 1/2.
#[inline]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a fixed-length sequence of words under a domain tag: `h = mix(domain)`, then
/// `h = mix(h ^ w)` per word. Only integer arithmetic on fixed-width values: the same on every
/// platform, process and release (pinned by `stable_hash_values_are_pinned`).
#[inline]
fn hash_words(domain: u64, words: &[u64]) -> u64 {
    words.iter().fold(mix64(domain), |h, &w| mix64(h ^ w))
}

/// The ring position of an id. Fixed forever: changing it would move points between shards of
/// existing collections.
pub fn stable_hash(id: &PointId) -> u64 {
    match *id {
        PointId::Num(n) => hash_words(DOMAIN_NUM, &[n]),
        PointId::Uuid(u) => hash_words(DOMAIN_UUID, &[u as u64, (u >> 64) as u64]),
    }
}

/// The ring position of virtual node `vnode` of `shard`; depends on nothing else, which is what
/// makes adding a shard move only the ids that the new shard takes.
fn vnode_position(shard: u32, vnode: u32) -> u64 {
    hash_words(DOMAIN_VNODE, &[u64::from(shard), u64::from(vnode)])
}

// ---------------------------------------------------------------------------------------------
// Hash ring
// ---------------------------------------------------------------------------------------------

/// A consistent-hash ring with virtual nodes: the `hash` placement. Serialised as its two
/// parameters; the ring itself is rebuilt on load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(into = "RingSpec", try_from = "RingSpec")]
pub struct HashRing {
    shards: u32,
    vnodes: u32,
    /// `(position, shard)` sorted by position, then shard.
    ring: Vec<(u64, u32)>,
}

/// The serialised form of a [`HashRing`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RingSpec {
    shards: u32,
    vnodes: u32,
}

impl From<HashRing> for RingSpec {
    fn from(r: HashRing) -> Self {
        RingSpec {
            shards: r.shards,
            vnodes: r.vnodes,
        }
    }
}

impl TryFrom<RingSpec> for HashRing {
    type Error = PlacementError;
    fn try_from(s: RingSpec) -> Result<Self, Self::Error> {
        if s.shards == 0 || s.vnodes == 0 {
            return Err(PlacementError::Invalid(format!(
                "a hash ring needs at least one shard and one virtual node (got {} and {})",
                s.shards, s.vnodes
            )));
        }
        if u64::from(s.shards) * u64::from(s.vnodes) > MAX_RING_POINTS {
            return Err(PlacementError::Invalid(format!(
                "{} shards x {} virtual nodes is too large a ring",
                s.shards, s.vnodes
            )));
        }
        Ok(HashRing::with_vnodes(s.shards, s.vnodes))
    }
}

/// Refuse decoded rings past this many points (a corrupt record must not allocate gigabytes).
const MAX_RING_POINTS: u64 = 1 << 24;

impl HashRing {
    /// A ring over `shards` shards with [`DEFAULT_VNODES`] virtual nodes each (`0` is taken as 1:
    /// a collection always has a shard).
    pub fn new(shards: u32) -> Self {
        Self::with_vnodes(shards, DEFAULT_VNODES)
    }

    /// A ring with `vnodes` virtual nodes per shard (both clamped to at least 1). More virtual
    /// nodes balance better (relative load spread about `1 / sqrt(vnodes)`) and cost memory.
    pub fn with_vnodes(shards: u32, vnodes: u32) -> Self {
        let (shards, vnodes) = (shards.max(1), vnodes.max(1));
        let mut ring: Vec<(u64, u32)> = (0..shards)
            .flat_map(|s| (0..vnodes).map(move |v| (vnode_position(s, v), s)))
            .collect();
        ring.sort_unstable();
        HashRing {
            shards,
            vnodes,
            ring,
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Virtual nodes per shard.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The shard that owns `id`: the first virtual node at or after [`stable_hash`]`(id)` on the
    /// ring, wrapping past the end. The same on every process, platform and release.
    pub fn shard_of(&self, id: &PointId) -> u32 {
        let h = stable_hash(id);
        let i = self.ring.partition_point(|&(p, _)| p < h);
        self.ring.get(i).unwrap_or(&self.ring[0]).1
    }
}

// ---------------------------------------------------------------------------------------------
// Centroid placement
// ---------------------------------------------------------------------------------------------

/// The `centroid` placement: a coarse quantiser whose clusters are dealt out to shards, so that
/// similar vectors share a shard and a query needs only the shards nearest to it. Part of the
/// collection metadata (Raft), so its serialised form is compact: the centroids as one `f32`
/// vector and one shard number per cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "CentroidParts")]
pub struct CentroidPlacement {
    dim: u32,
    metric: Metric,
    shards: u32,
    /// `clusters × dim`, row-major; unit length for cosine.
    centroids: Vec<f32>,
    /// The shard owning each cluster.
    owner: Vec<u32>,
    /// Sample points per shard at training time (what the balancing balanced).
    sample_loads: Vec<u64>,
}

/// The decoded form of a [`CentroidPlacement`], checked before use.
#[derive(Deserialize)]
struct CentroidParts {
    dim: u32,
    metric: Metric,
    shards: u32,
    centroids: Vec<f32>,
    owner: Vec<u32>,
    sample_loads: Vec<u64>,
}

impl TryFrom<CentroidParts> for CentroidPlacement {
    type Error = PlacementError;
    fn try_from(p: CentroidParts) -> Result<Self, Self::Error> {
        let bad = |m: String| Err(PlacementError::Invalid(m));
        let dim = p.dim as usize;
        if dim == 0 || p.shards == 0 || p.owner.is_empty() {
            return bad("needs a dimension, a shard and a cluster".into());
        }
        if p.centroids.len() != p.owner.len() * dim {
            return bad(format!(
                "{} centroid floats for {} clusters of dimension {dim}",
                p.centroids.len(),
                p.owner.len()
            ));
        }
        if let Some(s) = p.owner.iter().find(|&&s| s >= p.shards) {
            return bad(format!("cluster owned by shard {s} of {}", p.shards));
        }
        if p.sample_loads.len() != p.shards as usize {
            return bad(format!(
                "{} shard loads for {} shards",
                p.sample_loads.len(),
                p.shards
            ));
        }
        if !p.centroids.iter().all(|v| v.is_finite()) {
            return bad("non-finite centroid".into());
        }
        Ok(CentroidPlacement {
            dim: p.dim,
            metric: p.metric,
            shards: p.shards,
            centroids: p.centroids,
            owner: p.owner,
            sample_loads: p.sample_loads,
        })
    }
}

impl CentroidPlacement {
    /// Trains `clusters` centroids on `sample` (row-major, `dim` wide) and assigns clusters to
    /// `shards` so that shard sizes (by sample counts) stay balanced. Same input and seed, same
    /// placement.
    ///
    /// # Panics
    /// On input [`CentroidPlacement::try_train`] refuses (zero `dim` or `shards`, an empty or
    /// ragged sample, non-finite values). Use `try_train` on input-driven paths.
    pub fn train(
        sample: &[f32],
        dim: usize,
        metric: Metric,
        shards: u32,
        clusters: usize,
        seed: u64,
    ) -> Self {
        match Self::try_train(sample, dim, metric, shards, clusters, seed) {
            Ok(p) => p,
            Err(e) => panic!("CentroidPlacement::train: {e}"),
        }
    }

    /// [`CentroidPlacement::train`], refusing invalid input with an error. `clusters` below
    /// `shards` is raised to `shards` (every shard needs a cluster to receive points).
    pub fn try_train(
        sample: &[f32],
        dim: usize,
        metric: Metric,
        shards: u32,
        clusters: usize,
        seed: u64,
    ) -> Result<Self, PlacementError> {
        if dim == 0 || dim > u32::MAX as usize {
            return Err(PlacementError::Invalid(format!("dimension {dim}")));
        }
        if shards == 0 {
            return Err(PlacementError::Invalid("zero shards".into()));
        }
        if sample.is_empty() || !sample.len().is_multiple_of(dim) {
            return Err(PlacementError::Invalid(format!(
                "a sample of {} floats is not a positive number of rows of dimension {dim}",
                sample.len()
            )));
        }
        if !sample.iter().all(|v| v.is_finite()) {
            return Err(IndexError::NonFinite.into());
        }
        let s = shards as usize;
        let clusters = clusters.max(s);
        let spherical = metric == Metric::Cosine;
        let normalised;
        let data: &[f32] = if spherical {
            let mut v = sample.to_vec();
            v.chunks_mut(dim).for_each(distance::normalize);
            normalised = v;
            &normalised
        } else {
            sample
        };

        let config = |k: usize, seed: u64| KMeansConfig {
            k,
            iters: KMEANS_ITERS,
            seed,
            max_points_per_centroid: 256,
            spherical,
        };
        let centroids = kmeans::try_train(data, dim, &config(clusters, seed))?;
        let labels = match metric {
            Metric::Dot => kmeans::assign_inner_product(data, dim, &centroids),
            Metric::L2 | Metric::Cosine => kmeans::assign(data, dim, &centroids),
        };
        let mut counts = vec![0u64; clusters];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        // Shard centres: a k-means of the sample itself, refined below.
        let mut centres = kmeans::try_train(data, dim, &config(s, seed ^ 0x5a5a_a5a5_5a5a_a5a5))?;
        let mut owner = deal(&centroids, dim, &counts, &centres, s);
        for _ in 1..ASSIGN_ROUNDS {
            update_centres(&centroids, dim, &counts, &owner, &mut centres, spherical);
            owner = deal(&centroids, dim, &counts, &centres, s);
        }
        let mut sample_loads = vec![0u64; s];
        for (c, &o) in owner.iter().enumerate() {
            sample_loads[o as usize] += counts[c];
        }
        Ok(CentroidPlacement {
            dim: dim as u32,
            metric,
            shards,
            centroids,
            owner,
            sample_loads,
        })
    }

    /// A sensible cluster count: [`CLUSTERS_PER_SHARD`] per shard, fewer when the sample would
    /// leave clusters with under [`MIN_POINTS_PER_CLUSTER`] points, never fewer than `shards`.
    pub fn default_clusters(shards: u32, sample_len: usize) -> usize {
        let s = shards.max(1) as usize;
        (s * CLUSTERS_PER_SHARD)
            .min(sample_len / MIN_POINTS_PER_CLUSTER)
            .max(s)
    }

    /// The shard owning the cluster nearest to `vector` under the metric (cosine: normalised
    /// first; dot: largest inner product). Ties go to the lowest cluster index. A vector of the
    /// wrong dimension (a caller bug: inputs are validated first) is zero-padded or truncated.
    pub fn shard_of(&self, vector: &[f32]) -> u32 {
        let d = self.distances(vector);
        let mut best = 0usize;
        for (c, x) in d.iter().enumerate() {
            if x.total_cmp(&d[best]).is_lt() {
                best = c;
            }
        }
        self.owner[best]
    }

    /// The `shard_probe` distinct shards nearest the query, nearest first: shards are ranked by
    /// their nearest cluster (distance, then cluster index), so `probe(v, 1) == [shard_of(v)]`.
    /// Fewer are returned when fewer shards own clusters.
    pub fn probe(&self, query: &[f32], shard_probe: usize) -> Vec<u32> {
        if shard_probe == 0 {
            return Vec::new();
        }
        let d = self.distances(query);
        // Per shard: its nearest cluster as (distance, cluster index).
        let mut best: Vec<Option<(f32, usize)>> = vec![None; self.shards as usize];
        for (c, (&x, &s)) in d.iter().zip(&self.owner).enumerate() {
            let slot = &mut best[s as usize];
            if slot.is_none_or(|(bx, _)| x.total_cmp(&bx).is_lt()) {
                *slot = Some((x, c));
            }
        }
        let mut ranked: Vec<(f32, usize, u32)> = best
            .iter()
            .enumerate()
            .filter_map(|(s, b)| b.map(|(x, c)| (x, c, s as u32)))
            .collect();
        ranked.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ranked
            .into_iter()
            .take(shard_probe)
            .map(|(_, _, s)| s)
            .collect()
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim as usize
    }

    /// The metric the placement was trained for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Number of clusters.
    pub fn clusters(&self) -> usize {
        self.owner.len()
    }

    /// The shard owning each cluster.
    pub fn cluster_owners(&self) -> &[u32] {
        &self.owner
    }

    /// Sample points per shard at training time: how balanced the training sample came out.
    pub fn sample_loads(&self) -> &[u64] {
        &self.sample_loads
    }

    /// Distance (smaller is closer) from `v` to every centroid under the metric.
    fn distances(&self, v: &[f32]) -> Vec<f32> {
        let dim = self.dim as usize;
        debug_assert_eq!(v.len(), dim, "vector dimension");
        let mut q = v.to_vec();
        q.resize(dim, 0.0);
        if self.metric == Metric::Cosine {
            distance::normalize(&mut q);
        }
        let mut d = vec![0.0f32; self.owner.len()];
        distance::distance_batch(self.metric, &q, &self.centroids, dim, &mut d);
        d
    }
}

/// One round of dealing clusters to shards: clusters in order of decreasing regret (gap between
/// the distances to their nearest and second-nearest centres, ties by index) each take the
/// nearest centre with room for their count under the capacity, else the least-loaded shard.
/// Then every shard left without a cluster takes, from the shard with most clusters, the one
/// nearest to its centre.
fn deal(centroids: &[f32], dim: usize, counts: &[u64], centres: &[f32], shards: usize) -> Vec<u32> {
    let clusters = counts.len();
    let total: u64 = counts.iter().sum();
    let cap = (total as f64 / shards as f64 * (1.0 + BALANCE_SLACK)).ceil() as u64;
    // prefs[c] = shards by increasing distance to cluster c.
    let mut dist = vec![0.0f32; shards];
    let mut prefs: Vec<Vec<(f32, u32)>> = Vec::with_capacity(clusters);
    for c in centroids.chunks_exact(dim) {
        distance::l2_sq_batch(c, centres, dim, &mut dist);
        let mut p: Vec<(f32, u32)> = dist
            .iter()
            .enumerate()
            .map(|(s, &d)| (d, s as u32))
            .collect();
        p.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        prefs.push(p);
    }
    let regret = |c: usize| match prefs[c].as_slice() {
        [a, b, ..] => b.0 - a.0,
        _ => 0.0,
    };
    let mut order: Vec<usize> = (0..clusters).collect();
    order.sort_unstable_by(|&a, &b| regret(b).total_cmp(&regret(a)).then(a.cmp(&b)));

    let mut load = vec![0u64; shards];
    let mut owner = vec![0u32; clusters];
    for &c in &order {
        let fits = prefs[c]
            .iter()
            .find(|&&(_, s)| load[s as usize] + counts[c] <= cap)
            .map(|&(_, s)| s);
        let s = fits.unwrap_or_else(|| least_loaded(&load));
        owner[c] = s;
        load[s as usize] += counts[c];
    }

    fill_light_shards(centroids, dim, counts, centres, &mut owner, &mut load);

    let mut members = vec![0usize; shards];
    for &o in &owner {
        members[o as usize] += 1;
    }
    for empty in 0..shards {
        if members[empty] > 0 {
            continue;
        }
        let Some(donor) = (0..shards)
            .filter(|&s| members[s] > 1)
            .max_by_key(|&s| (members[s], std::cmp::Reverse(s)))
        else {
            break;
        };
        let centre = &centres[empty * dim..(empty + 1) * dim];
        let Some(c) = (0..clusters)
            .filter(|&c| owner[c] as usize == donor)
            .min_by(|&a, &b| {
                let da = distance::l2_sq(&centroids[a * dim..(a + 1) * dim], centre);
                let db = distance::l2_sq(&centroids[b * dim..(b + 1) * dim], centre);
                da.total_cmp(&db).then(a.cmp(&b))
            })
        else {
            break;
        };
        owner[c] = empty as u32;
        members[donor] -= 1;
        members[empty] += 1;
    }
    owner
}

/// Evens out what capacity-bounded dealing leaves uneven (shards nobody prefers end up light):
/// while the lightest shard is below `(1 - BALANCE_SLACK)` of the mean, it takes the cluster
/// nearest to its centre among those whose move lowers the imbalance (the donor stays heavier
/// than the taker). Each move strictly lowers the sum of squared loads, so this ends.
fn fill_light_shards(
    centroids: &[f32],
    dim: usize,
    counts: &[u64],
    centres: &[f32],
    owner: &mut [u32],
    load: &mut [u64],
) {
    let shards = load.len();
    let total: u64 = load.iter().sum();
    let floor = total as f64 / shards as f64 * (1.0 - BALANCE_SLACK);
    for _ in 0..counts.len() * shards {
        let light = least_loaded(load) as usize;
        if load[light] as f64 >= floor {
            return;
        }
        let centre = &centres[light * dim..(light + 1) * dim];
        let best = (0..counts.len())
            .filter(|&c| {
                let donor = owner[c] as usize;
                donor != light && counts[c] > 0 && load[light] + counts[c] < load[donor]
            })
            .map(|c| {
                let d = distance::l2_sq(&centroids[c * dim..(c + 1) * dim], centre);
                (d, c)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, c)) = best else {
            return;
        };
        load[owner[c] as usize] -= counts[c];
        load[light] += counts[c];
        owner[c] = light as u32;
    }
}

/// The shard with the smallest load, lowest index on ties.
fn least_loaded(load: &[u64]) -> u32 {
    let mut best = 0;
    for (s, &l) in load.iter().enumerate() {
        if l < load[best] {
            best = s;
        }
    }
    best as u32
}

/// Moves every shard centre to the count-weighted mean of its clusters (renormalised when
/// spherical); a shard with no weight keeps its centre.
fn update_centres(
    centroids: &[f32],
    dim: usize,
    counts: &[u64],
    owner: &[u32],
    centres: &mut [f32],
    spherical: bool,
) {
    let shards = centres.len() / dim;
    let mut sums = vec![0.0f64; shards * dim];
    let mut weights = vec![0.0f64; shards];
    for (c, row) in centroids.chunks_exact(dim).enumerate() {
        let s = owner[c] as usize;
        let w = counts[c] as f64;
        weights[s] += w;
        for (acc, &x) in sums[s * dim..(s + 1) * dim].iter_mut().zip(row) {
            *acc += w * f64::from(x);
        }
    }
    for s in 0..shards {
        if weights[s] <= 0.0 {
            continue;
        }
        let out = &mut centres[s * dim..(s + 1) * dim];
        for (o, &acc) in out.iter_mut().zip(&sums[s * dim..(s + 1) * dim]) {
            *o = (acc / weights[s]) as f32;
        }
        if spherical {
            distance::normalize(out);
        }
    }
}

#[cfg(test)]
mod tests;
