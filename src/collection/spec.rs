//! [`CollectionSpec`]: a create request with every optional setting still open, and
//! [`CollectionSpec::resolve`], which fills in the node's [`IndexDefaults`] and checks every
//! value, so a collection that resolves can be served.
//!
//! The spec is what travels to the metadata leader (the leader resolves it with its defaults
//! and the next free group id); the REST layer builds it from Qdrant's JSON.

use super::config::{CollectionConfig, IvfPqSettings, Placement, SearchSettings, VectorSpace};
use super::limits::{MAX_DIM, MAX_NLIST, MAX_RERANK, MAX_SHARDS};
use super::{Error, Metric};
use crate::index::fastscan;
use crate::index::ivfpq::IvfPqConfig;
use serde::{Deserialize, Serialize};

/// Index defaults used when a collection does not set them (`shoal serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IndexDefaults {
    /// Inverted lists per sealed segment.
    pub nlist: usize,
    /// PQ bits (4 or 8).
    pub pq_bits: u8,
    /// Rows of the mutable segment before it is sealed.
    pub seal_threshold: usize,
    /// Lists probed per search; `None`: each segment's calibrated choice.
    pub nprobe: Option<usize>,
    /// Re-rank factor; `None`: each segment's calibrated choice.
    pub rerank: Option<usize>,
    /// Recall@10 a search without fixed `nprobe`/`rerank` aims for.
    pub recall_target: f64,
}

impl Default for IndexDefaults {
    fn default() -> Self {
        IndexDefaults {
            nlist: 256,
            pq_bits: 4,
            seal_threshold: 50_000,
            nprobe: None,
            rerank: None,
            recall_target: crate::shard::DEFAULT_RECALL_TARGET,
        }
    }
}

/// The vector space asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpec {
    /// Dimension.
    pub dim: u64,
    /// Distance.
    pub metric: Metric,
}

/// IVF-PQ settings asked for (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvfPqSpec {
    /// Inverted lists per sealed segment.
    pub nlist: Option<usize>,
    /// PQ sub-spaces; must divide the dimension.
    pub pq_m: Option<usize>,
    /// Bits per code: 4 or 8.
    pub pq_bits: Option<u8>,
    /// Rows after which the mutable segment is sealed and indexed.
    pub seal_threshold: Option<usize>,
}

/// Default search settings asked for (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    /// Lists probed per sealed segment.
    pub nprobe: Option<usize>,
    /// Re-rank factor.
    pub rerank: Option<usize>,
    /// Shards probed under centroid placement.
    pub shard_probe: Option<usize>,
    /// Recall@10 aimed for where `nprobe`/`rerank` are not fixed, in `(0, 1]`.
    pub recall_target: Option<f64>,
}

/// A request to create a collection. Serialisable: it is sent to the metadata leader as it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// The vector space.
    pub vectors: VectorSpec,
    /// Shards (default 1).
    pub shard_number: Option<u32>,
    /// Replicas per shard (default 1).
    pub replication_factor: Option<u32>,
    /// Placement (default hash).
    pub placement: Option<Placement>,
    /// IVF-PQ settings.
    pub ivf_pq: IvfPqSpec,
    /// Default search settings.
    pub search: SearchSpec,
}

/// The default number of PQ sub-spaces: for 4-bit fast-scan codes the largest divisor of `dim`
/// up to `dim / 2` (and the scanner's limit), since re-ranked 4-bit codes of that size measured
/// about 2x the QPS of 8-bit codes at equal recall (README, Benchmarks); for 8-bit codes the
/// largest divisor that leaves at least 2 dimensions per sub-space, at most 64.
fn default_pq_m(dim: usize, pq_bits: u8) -> usize {
    if pq_bits == 4 {
        return IvfPqConfig::fastscan_pq_m(dim);
    }
    (1..=dim.min(64))
        .rev()
        .find(|m| dim.is_multiple_of(*m) && dim / m >= 2)
        .unwrap_or(1)
}

/// Refuses a recall target outside `(0, 1]` (NaN included), naming the setting.
pub fn check_recall_target(t: f64, what: &str) -> Result<(), Error> {
    if t > 0.0 && t <= 1.0 {
        Ok(())
    } else {
        Err(Error::bad(format!("{what} = {t} must be in (0, 1]")))
    }
}

impl CollectionSpec {
    /// A spec of `dim`-dimensional vectors compared by `metric`, everything else default.
    pub fn new(dim: u64, metric: Metric) -> Self {
        CollectionSpec {
            vectors: VectorSpec { dim, metric },
            shard_number: None,
            replication_factor: None,
            placement: None,
            ivf_pq: IvfPqSpec::default(),
            search: SearchSpec::default(),
        }
    }

    /// The configuration this spec asks for, defaults filled in from `defaults`, its first shard
    /// running as Raft group `group_id`; every value checked. Whether the cluster has enough
    /// members for the replication factor is the cluster's check, when it places the shards.
    pub fn resolve(
        &self,
        defaults: &IndexDefaults,
        group_id: u64,
    ) -> Result<CollectionConfig, Error> {
        let VectorSpec { dim, metric } = self.vectors;
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::bad(format!("vectors.size must be in 1..={MAX_DIM}")));
        }
        let at_least_one = |v: Option<u32>, what: &str| match v {
            None => Ok(1),
            Some(0) => Err(Error::bad(format!("{what} must be at least 1"))),
            Some(n) => Ok(n),
        };
        let shard_number = at_least_one(self.shard_number, "shard_number")?;
        if shard_number > MAX_SHARDS {
            return Err(Error::bad(format!(
                "shard_number = {shard_number} must be in 1..={MAX_SHARDS}"
            )));
        }
        let replication_factor = at_least_one(self.replication_factor, "replication_factor")?;
        let dim = dim as usize;
        let ivf = self.ivf_pq;
        let pq_bits = ivf.pq_bits.unwrap_or(defaults.pq_bits);
        if pq_bits != 4 && pq_bits != 8 {
            return Err(Error::bad(format!(
                "ivf_pq_config.pq_bits = {pq_bits}: use 4 or 8"
            )));
        }
        let pq_m = ivf.pq_m.unwrap_or_else(|| default_pq_m(dim, pq_bits));
        if pq_m == 0 || !dim.is_multiple_of(pq_m) {
            return Err(Error::bad(format!(
                "ivf_pq_config.pq_m = {pq_m} must divide the dimension {dim}"
            )));
        }
        if pq_bits == 4 && fastscan::padded_m(pq_m) > fastscan::MAX_SUBSPACES {
            return Err(Error::bad(format!(
                "ivf_pq_config.pq_m = {pq_m}: 4-bit codes allow at most {} sub-spaces",
                fastscan::MAX_SUBSPACES
            )));
        }
        let nlist = ivf.nlist.unwrap_or(defaults.nlist);
        if nlist == 0 || nlist > MAX_NLIST {
            return Err(Error::bad(format!(
                "ivf_pq_config.nlist must be in 1..={MAX_NLIST}"
            )));
        }
        let seal_threshold = ivf.seal_threshold.unwrap_or(defaults.seal_threshold);
        // A node-wide default nprobe is a ceiling for a small nlist; one the collection asks
        // for must fit its own nlist.
        let search = SearchSettings {
            nprobe: match self.search.nprobe {
                Some(n) => Some(n),
                None => defaults.nprobe.map(|n| n.min(nlist)),
            },
            rerank: self.search.rerank.or(defaults.rerank),
            shard_probe: self.search.shard_probe.unwrap_or(1),
            recall_target: self.search.recall_target.unwrap_or(defaults.recall_target),
        };
        check_search(&search, nlist)?;
        Ok(CollectionConfig {
            vectors: VectorSpace {
                dim: dim as u64,
                metric,
            },
            shard_number,
            replication_factor,
            placement: self.placement.unwrap_or_default(),
            ivf_pq: IvfPqSettings {
                nlist,
                pq_m,
                pq_bits,
                seal_threshold,
            },
            search,
            group_id,
        })
    }
}

/// Refuses search settings a collection with `nlist` lists cannot use, naming the setting.
fn check_search(s: &SearchSettings, nlist: usize) -> Result<(), Error> {
    check_search_values(
        s.nprobe,
        s.rerank,
        Some(s.recall_target),
        Some(s.shard_probe),
        nlist,
        "search_config.",
    )
}

/// The one check of search values, on create, update and per query (`prefix` names where they
/// were given, e.g. `search_config.`): a fixed `nprobe` in `1..=nlist`, `rerank` at most
/// [`MAX_RERANK`], a recall target in `(0, 1]`, `shard_probe` at least 1.
pub(super) fn check_search_values(
    nprobe: Option<usize>,
    rerank: Option<usize>,
    recall_target: Option<f64>,
    shard_probe: Option<usize>,
    nlist: usize,
    prefix: &str,
) -> Result<(), Error> {
    if let Some(nprobe) = nprobe
        && (nprobe == 0 || nprobe > nlist)
    {
        return Err(Error::bad(format!(
            "{prefix}nprobe = {nprobe} must be in 1..=nlist ({nlist})"
        )));
    }
    if let Some(rerank) = rerank
        && rerank > MAX_RERANK
    {
        return Err(Error::bad(format!(
            "{prefix}rerank = {rerank} must be at most {MAX_RERANK}"
        )));
    }
    if let Some(t) = recall_target {
        check_recall_target(t, &format!("{prefix}recall_target"))?;
    }
    if shard_probe == Some(0) {
        return Err(Error::bad(format!(
            "{prefix}shard_probe must be at least 1"
        )));
    }
    Ok(())
}

/// A change of a collection's default search settings (`PATCH /collections/{name}`): what is
/// `None` stays as it is; `nprobe`/`rerank` set to `Some(None)` go back to each segment's
/// calibrated choice. Search settings are read by the router at every query, so a change takes
/// effect on the next query, on every node, once the metadata entry is applied there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchUpdate {
    /// Lists probed per sealed segment: fixed, or back to the calibration.
    pub nprobe: Option<Option<usize>>,
    /// Re-rank factor: fixed, or back to the calibration.
    pub rerank: Option<Option<usize>>,
    /// Shards probed under centroid placement.
    pub shard_probe: Option<usize>,
    /// Recall@10 aimed for where `nprobe`/`rerank` are not fixed, in `(0, 1]`.
    pub recall_target: Option<f64>,
}

impl SearchUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == SearchUpdate::default()
    }

    /// `config` with this change made, every value checked as on create.
    pub fn apply(&self, config: &CollectionConfig) -> Result<CollectionConfig, Error> {
        let mut out = *config;
        let s = &mut out.search;
        if let Some(n) = self.nprobe {
            s.nprobe = n;
        }
        if let Some(r) = self.rerank {
            s.rerank = r;
        }
        if let Some(p) = self.shard_probe {
            s.shard_probe = p;
        }
        if let Some(t) = self.recall_target {
            s.recall_target = t;
        }
        check_search(&out.search, out.ivf_pq.nlist)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(s: CollectionSpec) -> Result<CollectionConfig, Error> {
        s.resolve(&IndexDefaults::default(), 7)
    }

    #[test]
    fn defaults_fill_what_the_spec_leaves_open() {
        let c = resolve(CollectionSpec::new(128, Metric::Cosine)).unwrap();
        let d = IndexDefaults::default();
        assert_eq!(
            c.vectors,
            VectorSpace {
                dim: 128,
                metric: Metric::Cosine
            }
        );
        assert_eq!((c.shard_number, c.replication_factor), (1, 1));
        assert_eq!(c.placement, Placement::Hash);
        assert_eq!(c.ivf_pq.nlist, d.nlist);
        assert_eq!(c.ivf_pq.pq_bits, d.pq_bits);
        assert_eq!(c.ivf_pq.pq_m, IvfPqConfig::fastscan_pq_m(128));
        assert_eq!(c.search.nprobe, None, "calibrated unless fixed");
        assert_eq!(c.search.rerank, None);
        assert_eq!(c.search.recall_target, d.recall_target);
        assert_eq!(c.search.shard_probe, 1);
        assert_eq!(c.group_id, 7);
        // 8-bit codes: the largest divisor up to 64 leaving two dimensions per sub-space.
        let mut s = CollectionSpec::new(100, Metric::L2);
        s.ivf_pq.pq_bits = Some(8);
        assert_eq!(resolve(s).unwrap().ivf_pq.pq_m, 50);
        // A node-wide nprobe is capped at a small nlist.
        let mut s = CollectionSpec::new(8, Metric::Dot);
        s.ivf_pq.nlist = Some(4);
        let d = IndexDefaults {
            nprobe: Some(16),
            ..IndexDefaults::default()
        };
        assert_eq!(s.resolve(&d, 7).unwrap().search.nprobe, Some(4));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let base = CollectionSpec::new(8, Metric::L2);
        let cases: Vec<(CollectionSpec, &str)> = vec![
            (CollectionSpec::new(0, Metric::L2), "vectors.size"),
            (CollectionSpec::new(MAX_DIM + 1, Metric::L2), "vectors.size"),
            (
                CollectionSpec {
                    shard_number: Some(0),
                    ..base
                },
                "shard_number",
            ),
            (
                CollectionSpec {
                    shard_number: Some(MAX_SHARDS + 1),
                    ..base
                },
                "shard_number",
            ),
            (
                CollectionSpec {
                    replication_factor: Some(0),
                    ..base
                },
                "replication_factor",
            ),
            (
                CollectionSpec {
                    ivf_pq: IvfPqSpec {
                        pq_bits: Some(5),
                        ..Default::default()
                    },
                    ..base
                },
                "pq_bits",
            ),
            (
                CollectionSpec {
                    ivf_pq: IvfPqSpec {
                        pq_m: Some(3),
                        ..Default::default()
                    },
                    ..base
                },
                "pq_m",
            ),
            (
                CollectionSpec {
                    ivf_pq: IvfPqSpec {
                        nlist: Some(0),
                        ..Default::default()
                    },
                    ..base
                },
                "nlist",
            ),
            (
                CollectionSpec {
                    search: SearchSpec {
                        nprobe: Some(300),
                        ..Default::default()
                    },
                    ..base
                },
                "nprobe",
            ),
            (
                CollectionSpec {
                    search: SearchSpec {
                        rerank: Some(MAX_RERANK + 1),
                        ..Default::default()
                    },
                    ..base
                },
                "rerank",
            ),
            (
                CollectionSpec {
                    search: SearchSpec {
                        shard_probe: Some(0),
                        ..Default::default()
                    },
                    ..base
                },
                "shard_probe",
            ),
            (
                CollectionSpec {
                    search: SearchSpec {
                        recall_target: Some(1.5),
                        ..Default::default()
                    },
                    ..base
                },
                "recall_target",
            ),
            (
                CollectionSpec {
                    search: SearchSpec {
                        recall_target: Some(f64::NAN),
                        ..Default::default()
                    },
                    ..base
                },
                "recall_target",
            ),
        ];
        for (spec, field) in cases {
            match resolve(spec) {
                Err(Error::BadRequest(m)) => assert!(m.contains(field), "{m} should name {field}"),
                other => panic!("{spec:?}: expected a refusal naming {field}, got {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;

    #[test]
    fn an_update_changes_what_it_names_and_is_checked_as_on_create() {
        let c = CollectionSpec::new(16, Metric::L2)
            .resolve(&IndexDefaults::default(), 1)
            .unwrap();
        let fixed = SearchUpdate {
            nprobe: Some(Some(32)),
            recall_target: Some(0.99),
            ..SearchUpdate::default()
        }
        .apply(&c)
        .unwrap();
        assert_eq!(fixed.search.nprobe, Some(32));
        assert_eq!(fixed.search.recall_target, 0.99);
        assert_eq!(fixed.search.rerank, c.search.rerank, "not named, unchanged");
        assert_eq!(
            (fixed.vectors, fixed.ivf_pq, fixed.group_id),
            (c.vectors, c.ivf_pq, c.group_id)
        );
        let back = SearchUpdate {
            nprobe: Some(None),
            ..SearchUpdate::default()
        }
        .apply(&fixed)
        .unwrap();
        assert_eq!(back.search.nprobe, None, "back to the calibration");
        for bad in [
            SearchUpdate {
                nprobe: Some(Some(c.ivf_pq.nlist + 1)),
                ..SearchUpdate::default()
            },
            SearchUpdate {
                nprobe: Some(Some(0)),
                ..SearchUpdate::default()
            },
            SearchUpdate {
                recall_target: Some(1.5),
                ..SearchUpdate::default()
            },
            SearchUpdate {
                shard_probe: Some(0),
                ..SearchUpdate::default()
            },
            SearchUpdate {
                rerank: Some(Some(MAX_RERANK + 1)),
                ..SearchUpdate::default()
            },
        ] {
            let err = bad.apply(&c).unwrap_err().to_string();
            assert!(err.contains("search_config."), "{err}");
        }
        assert!(SearchUpdate::default().is_empty());
    }
}
