//! [`SearchQuery`]: a nearest-neighbour search as the router runs it, and
//! [`SearchQuery::check`], which the router runs itself before fanning out (a front end may
//! check earlier for better messages, but the router never trusts that it did).

use super::Error;
use super::config::CollectionConfig;
use super::limits::{MAX_OFFSET, check_limit, check_vector};
use super::spec::check_search_values;
use crate::shard::Filter;
use crate::shard::Tuning;

/// A search of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Hits wanted (1..=[`MAX_LIMIT`](super::limits::MAX_LIMIT)).
    pub limit: usize,
    /// Best hits skipped (at most [`MAX_OFFSET`]).
    pub offset: usize,
    /// Only matching points.
    pub filter: Option<Filter>,
    /// IVF lists probed per sealed segment (1..=nlist); `None`: the collection's setting, else
    /// each segment's calibrated choice.
    pub nprobe: Option<usize>,
    /// Re-rank factor (at most [`MAX_RERANK`]); `None` as for `nprobe`.
    pub rerank: Option<usize>,
    /// Recall@10 the calibrated choices aim for (`None`: the collection's `recall_target`).
    pub recall_target: Option<f64>,
    /// Exact scan.
    pub exact: bool,
    /// Shards probed under centroid placement (`None`: the collection default; else at least 1).
    pub shard_probe: Option<usize>,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors (every vector of the point, packed in lane order when the collection
    /// has named vectors).
    pub with_vector: bool,
    /// The named vector searched (`None`: the unnamed one, see
    /// [`CollectionVectors::lane_of`](super::CollectionVectors::lane_of)).
    pub using: Option<String>,
}

impl SearchQuery {
    /// Checks the search knobs against the collection: limit, offset, nprobe, rerank,
    /// recall_target and shard_probe, in that order (the first bad one is reported).
    pub fn check_params(&self, config: &CollectionConfig) -> Result<(), Error> {
        check_limit(self.limit)?;
        if self.offset > MAX_OFFSET {
            return Err(Error::bad(format!(
                "offset = {} must be at most {MAX_OFFSET}",
                self.offset
            )));
        }
        check_search_values(
            self.nprobe,
            self.rerank,
            self.recall_target,
            self.shard_probe,
            config.ivf_pq.nlist,
            "",
        )?;
        Ok(())
    }

    /// The IVF-PQ choice for each sealed segment: what the query fixes, else what the
    /// collection fixes, else each segment's calibration at the query's (or the collection's)
    /// recall target.
    pub fn tuning(&self, config: &CollectionConfig) -> Tuning {
        Tuning {
            nprobe: self.nprobe.or(config.search.nprobe),
            rerank: self.rerank.or(config.search.rerank),
            recall_target: Some(self.recall_target.unwrap_or(config.search.recall_target)),
        }
    }

    /// Every check: [`Self::check_params`], then the vector (dimension, finite components) and
    /// the filter (it compiles).
    pub fn check(&self, config: &CollectionConfig) -> Result<(), Error> {
        self.check_params(config)?;
        check_vector(&self.vector, config.dim(), "query")?;
        if let Some(f) = &self.filter {
            f.compile().map_err(|e| Error::bad(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::limits::MAX_RERANK;
    use crate::collection::{CollectionSpec, IndexDefaults, Metric};

    #[test]
    fn searches_out_of_range_are_refused() {
        let mut spec = CollectionSpec::new(2, Metric::L2);
        spec.ivf_pq.nlist = Some(8);
        spec.ivf_pq.pq_m = Some(1);
        let config = spec.resolve(&IndexDefaults::default(), 1).unwrap();
        let ok = SearchQuery {
            vector: vec![0.5, 1.0],
            limit: 10,
            offset: 0,
            filter: None,
            nprobe: Some(8),
            rerank: Some(4),
            recall_target: None,
            exact: false,
            shard_probe: None,
            with_payload: false,
            with_vector: false,
            using: None,
        };
        assert!(ok.check(&config).is_ok());
        let bad: Vec<(SearchQuery, &str)> = vec![
            (
                SearchQuery {
                    limit: 0,
                    ..ok.clone()
                },
                "limit",
            ),
            (
                SearchQuery {
                    offset: MAX_OFFSET + 1,
                    ..ok.clone()
                },
                "offset",
            ),
            (
                SearchQuery {
                    nprobe: Some(0),
                    ..ok.clone()
                },
                "nprobe",
            ),
            (
                SearchQuery {
                    nprobe: Some(9),
                    ..ok.clone()
                },
                "nprobe",
            ),
            (
                SearchQuery {
                    rerank: Some(MAX_RERANK + 1),
                    ..ok.clone()
                },
                "rerank",
            ),
            (
                SearchQuery {
                    recall_target: Some(0.0),
                    ..ok.clone()
                },
                "recall_target",
            ),
            (
                SearchQuery {
                    shard_probe: Some(0),
                    ..ok.clone()
                },
                "shard_probe",
            ),
            (
                SearchQuery {
                    vector: vec![1.0],
                    ..ok.clone()
                },
                "dimension",
            ),
            (
                SearchQuery {
                    vector: vec![1.0, f32::NAN],
                    ..ok.clone()
                },
                "finite",
            ),
        ];
        let calibrated = SearchQuery {
            nprobe: None,
            rerank: None,
            ..ok.clone()
        };
        assert!(calibrated.check(&config).is_ok());
        // Nothing fixed: each segment's calibration at the collection's target; a query's own
        // target and fixed values win.
        let t = calibrated.tuning(&config);
        assert_eq!(
            (t.nprobe, t.rerank, t.recall_target),
            (None, None, Some(0.95))
        );
        let t = SearchQuery {
            recall_target: Some(0.9),
            ..ok.clone()
        }
        .tuning(&config);
        assert_eq!(
            (t.nprobe, t.rerank, t.recall_target),
            (Some(8), Some(4), Some(0.9))
        );
        for (q, what) in bad {
            match q.check(&config) {
                Err(Error::BadRequest(m)) => assert!(m.contains(what), "{m} should name {what}"),
                other => panic!("expected a refusal naming {what}, got {other:?}"),
            }
        }
    }
}
