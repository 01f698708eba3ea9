//! The parameter grid of a benchmark sweep: which indexes to build (`nlist` × `pq_m` ×
//! `pq_bits`) and which search settings to run on each (`nprobe` × `rerank`).
//!
//! Building is the expensive step, so a sweep builds each index once and runs every search
//! setting on it. The grid comes from flags, optionally overridden key by key by a sweep file
//! (TOML or JSON, chosen by extension) holding the same keys:
//!
//! ```toml
//! nlist = [256, 1024]
//! pq_m = [32, 64]
//! pq_bits = [4]
//! nprobe = [1, 4, 16, 64]
//! rerank = [0, 4]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BenchError;

/// The settings fixed when an index is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildConfig {
    /// Number of inverted lists (k-means centroids).
    pub nlist: usize,
    /// Number of PQ sub-quantisers (bytes or nibbles per code).
    pub pq_m: usize,
    /// Bits per PQ sub-code: 4 (fast-scan) or 8.
    pub pq_bits: u8,
}

/// The settings chosen per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Inverted lists probed.
    pub nprobe: usize,
    /// Re-ranking factor: `k * rerank` ADC candidates re-ranked exactly, 0 = none.
    pub rerank: usize,
}

/// A sweep grid. Empty `nlist` or `pq_m` mean "choose for the dataset" (see [`auto_nlist`] and
/// [`auto_pq_m`]); the other axes must not be empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepGrid {
    /// `nlist` values to build.
    #[serde(default)]
    pub nlist: Vec<usize>,
    /// `pq_m` values to build.
    #[serde(default)]
    pub pq_m: Vec<usize>,
    /// `pq_bits` values to build.
    #[serde(default)]
    pub pq_bits: Vec<u8>,
    /// `nprobe` values to search with.
    #[serde(default)]
    pub nprobe: Vec<usize>,
    /// `rerank` values to search with.
    #[serde(default)]
    pub rerank: Vec<usize>,
}

impl SweepGrid {
    /// Replaces every axis that the sweep file at `path` sets; axes it leaves out keep their
    /// flag values. Unknown keys are refused so that a typo does not silently do nothing.
    pub fn override_from_file(mut self, path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
        let file: SweepGrid = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|source| BenchError::Json {
                path: path.to_path_buf(),
                source,
            })?,
            Some("toml") => toml::from_str(&text).map_err(|source| BenchError::Toml {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?,
            _ => {
                return Err(BenchError::InvalidParameter(format!(
                    "sweep file {} must end in .toml or .json",
                    path.display()
                )));
            }
        };
        let take = |from: Vec<usize>, into: &mut Vec<usize>| {
            if !from.is_empty() {
                *into = from;
            }
        };
        take(file.nlist, &mut self.nlist);
        take(file.pq_m, &mut self.pq_m);
        take(file.nprobe, &mut self.nprobe);
        take(file.rerank, &mut self.rerank);
        if !file.pq_bits.is_empty() {
            self.pq_bits = file.pq_bits;
        }
        Ok(self)
    }

    /// Fills the automatic axes for a dataset of `n` vectors of dimension `dim` and checks every
    /// value, so that a bad grid fails before the first (long) build rather than in the middle.
    pub fn resolve(mut self, n: usize, dim: usize) -> Result<Self, BenchError> {
        let bad = |msg: String| Err(BenchError::InvalidParameter(msg));
        if n == 0 || dim == 0 {
            return bad(format!("dataset is empty (n = {n}, dim = {dim})"));
        }
        if self.nlist.is_empty() {
            self.nlist = vec![auto_nlist(n)];
        }
        if self.pq_m.is_empty() {
            self.pq_m = vec![auto_pq_m(dim)];
        }
        if self.pq_bits.is_empty() {
            self.pq_bits = vec![4];
        }
        if self.nprobe.is_empty() || self.rerank.is_empty() {
            return bad("nprobe and rerank need at least one value each".into());
        }
        for &nlist in &self.nlist {
            if nlist == 0 || nlist > n {
                return bad(format!(
                    "nlist = {nlist} must be in 1..={n} (the base size)"
                ));
            }
        }
        for &m in &self.pq_m {
            if m == 0 || !dim.is_multiple_of(m) {
                return bad(format!("pq_m = {m} must divide the dimension {dim}"));
            }
        }
        for &bits in &self.pq_bits {
            if bits != 4 && bits != 8 {
                return bad(format!("pq_bits = {bits} must be 4 or 8"));
            }
        }
        if self.nprobe.contains(&0) {
            return bad("nprobe must be at least 1".into());
        }
        for axis in [
            &mut self.nlist,
            &mut self.pq_m,
            &mut self.nprobe,
            &mut self.rerank,
        ] {
            dedup_keep_order(axis);
        }
        dedup_keep_order(&mut self.pq_bits);
        Ok(self)
    }

    /// Every index to build, in flag order.
    pub fn builds(&self) -> Vec<BuildConfig> {
        let mut out = Vec::new();
        for &nlist in &self.nlist {
            for &pq_m in &self.pq_m {
                for &pq_bits in &self.pq_bits {
                    out.push(BuildConfig {
                        nlist,
                        pq_m,
                        pq_bits,
                    });
                }
            }
        }
        out
    }

    /// Every search setting to run on an index with `nlist` lists. `nprobe` beyond `nlist`
    /// probes every list, so such values collapse into `nprobe = nlist` (measured once).
    pub fn searches(&self, nlist: usize) -> Vec<SearchConfig> {
        let mut nprobes: Vec<usize> = self.nprobe.iter().map(|&p| p.min(nlist)).collect();
        dedup_keep_order(&mut nprobes);
        let mut out = Vec::new();
        for &nprobe in &nprobes {
            for &rerank in &self.rerank {
                out.push(SearchConfig { nprobe, rerank });
            }
        }
        out
    }
}

fn dedup_keep_order<T: PartialEq + Copy>(values: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(values.len());
    values.retain(|v| {
        if seen.contains(v) {
            false
        } else {
            seen.push(*v);
            true
        }
    });
}

/// The usual IVF starting point: about `4·√n` lists, rounded to the nearest power of two (in log
/// terms), and never more than the largest power of two below `n / 16` so that every list keeps a handful of points.
pub fn auto_nlist(n: usize) -> usize {
    let target = 4.0 * (n as f64).sqrt();
    let pow = target.log2().round().max(0.0) as u32;
    let cap = (n / 16).max(1);
    let cap_pow2 = 1usize << (usize::BITS - 1 - cap.leading_zeros());
    (1usize << pow.min(30)).min(cap_pow2)
}

/// The default sub-quantiser count: the largest divisor of `dim` that is at most `dim / 2`
/// (64 for 128-d SIFT), i.e. two dimensions per sub-quantiser, which with 4-bit fast-scan codes
/// gives a compact code that still ranks well once re-ranked.
pub fn auto_pq_m(dim: usize) -> usize {
    (1..=(dim / 2).max(1))
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SweepGrid {
        SweepGrid {
            nlist: vec![],
            pq_m: vec![],
            pq_bits: vec![],
            nprobe: vec![1, 4, 16, 64],
            rerank: vec![0, 4],
        }
    }

    #[test]
    fn automatic_axes_follow_the_dataset() {
        assert_eq!(auto_nlist(1_000_000), 4096);
        assert_eq!(auto_nlist(5_000), 256);
        assert_eq!(auto_nlist(100), 4);
        assert_eq!(auto_nlist(1), 1);
        assert_eq!(auto_pq_m(128), 64);
        assert_eq!(auto_pq_m(100), 50);
        assert_eq!(auto_pq_m(7), 1);
        assert_eq!(auto_pq_m(1), 1);
        let grid = flags().resolve(5_000, 32).unwrap();
        assert_eq!(
            grid.builds(),
            vec![BuildConfig {
                nlist: 256,
                pq_m: 16,
                pq_bits: 4
            }]
        );
    }

    #[test]
    fn builds_and_searches_form_the_cross_product() {
        let grid = SweepGrid {
            nlist: vec![64, 128],
            pq_m: vec![8, 16],
            pq_bits: vec![4, 8],
            ..flags()
        }
        .resolve(10_000, 32)
        .unwrap();
        assert_eq!(grid.builds().len(), 8);
        assert_eq!(grid.searches(128).len(), 8);
        // nprobe 64 on 16 lists is nprobe 16, measured once.
        let s = grid.searches(16);
        let nprobes: Vec<usize> = s.iter().map(|c| c.nprobe).collect();
        assert_eq!(nprobes, vec![1, 1, 4, 4, 16, 16]);
    }

    #[test]
    fn bad_grids_are_refused_before_building() {
        let bad = |g: SweepGrid| g.resolve(1000, 32).is_err();
        assert!(bad(SweepGrid {
            pq_m: vec![5],
            ..flags()
        }));
        assert!(bad(SweepGrid {
            pq_bits: vec![6],
            ..flags()
        }));
        assert!(bad(SweepGrid {
            nlist: vec![2000],
            ..flags()
        }));
        assert!(bad(SweepGrid {
            nlist: vec![0],
            ..flags()
        }));
        assert!(bad(SweepGrid {
            nprobe: vec![0, 1],
            ..flags()
        }));
        assert!(bad(SweepGrid {
            rerank: vec![],
            ..flags()
        }));
        assert!(flags().resolve(0, 32).is_err());
    }

    #[test]
    fn sweep_files_override_only_the_keys_they_set() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("sweep.toml");
        std::fs::write(&toml_path, "nlist = [32, 64]\npq_bits = [8]\n").unwrap();
        let grid = flags().override_from_file(&toml_path).unwrap();
        assert_eq!(grid.nlist, vec![32, 64]);
        assert_eq!(grid.pq_bits, vec![8]);
        assert_eq!(grid.nprobe, vec![1, 4, 16, 64]);

        let json_path = dir.path().join("sweep.json");
        std::fs::write(&json_path, r#"{"nprobe": [2, 8], "rerank": [1]}"#).unwrap();
        let grid = flags().override_from_file(&json_path).unwrap();
        assert_eq!(grid.nprobe, vec![2, 8]);
        assert_eq!(grid.rerank, vec![1]);

        std::fs::write(&toml_path, "nprobes = [1]\n").unwrap();
        assert!(matches!(
            flags().override_from_file(&toml_path),
            Err(BenchError::Toml { .. })
        ));
        let yaml = dir.path().join("sweep.yaml");
        std::fs::write(&yaml, "nprobe: [1]").unwrap();
        assert!(flags().override_from_file(&yaml).is_err());
    }
}
