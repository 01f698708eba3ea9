//! Search across shards: the shards a query visits (all, or under centroid placement the
//! `shard_probe` nearest), the per-shard request (fixed parameters, or each segment's calibrated
//! ones), and the merge of the shards' hits by distance then id ([`super::merge`]).

use super::merge::{self, Order, Ranked};
use super::rpc::{ShardRequest, ShardResponse, ShardSearch};
use super::{Answer, ReadOptions, Router, SearchQuery};
use crate::collection::Error;
use crate::shard::{Hit, PointId};

impl Ranked for Hit {
    fn key(&self) -> f32 {
        self.distance
    }
    fn id(&self) -> PointId {
        self.record.id
    }
}

impl Router {
    /// Nearest neighbours across the collection's shards, merged by distance then id.
    pub async fn search(
        &self,
        collection: &str,
        q: &SearchQuery,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Hit>>, Error> {
        let meta = self.meta(collection)?;
        // The vector searched: its lane of every shard, and its space.
        let vectors = meta.vectors();
        let lane = vectors.lane_of(q.using.as_deref())?;
        let config = vectors.lane_config(lane);
        q.check(&config)?;
        let filter = self.check_filter(&meta, q.filter.clone())?;
        // An exact search is exhaustive: every shard, whatever the placement.
        let shards = match (&meta.centroids, Self::is_centroid(&meta)) {
            (Some(c), true) if !q.exact => {
                let probe = q
                    .shard_probe
                    .unwrap_or(meta.config.search.shard_probe)
                    .max(1);
                let mut v = c.probe(&q.vector, probe);
                v.retain(|s| (*s as usize) < meta.shards.len());
                v
            }
            _ => Self::all_shards(&meta),
        };
        // What the query or the collection fixes; the rest each sealed segment takes from its
        // calibration. A fixed rerank is widened for hash placement (each shard returns its own
        // top-k), as is the fallback of segments without calibration.
        let mut tuning = q.tuning(&config);
        let widen = |r: usize| {
            if Self::is_centroid(&meta) {
                r
            } else {
                merge::hash_shard_rerank(r, shards.len())
            }
        };
        tuning.rerank = tuning.rerank.map(widen);
        let search = ShardSearch {
            vector: q.vector.clone(),
            limit: q.limit.saturating_add(q.offset),
            filter: filter.clone(),
            nprobe: config.search.fallback_nprobe(config.ivf_pq.nlist),
            rerank: widen(config.search.fallback_rerank()),
            exact: q.exact,
            with_payload: q.with_payload,
            with_vector: q.with_vector,
        };
        let out = self
            .fan_out(collection, &meta, &shards, read, |group, read| {
                match (tuning.nprobe, tuning.rerank) {
                    // Another named vector than the first: the request that names the lane.
                    _ if lane > 0 => ShardRequest::SearchLane {
                        group,
                        read,
                        search: search.clone(),
                        tuning: tuning.into(),
                        lane: lane as u32,
                    },
                    // Both fixed: the request every node version understands.
                    (Some(nprobe), Some(rerank)) => ShardRequest::Search {
                        group,
                        read,
                        search: ShardSearch {
                            nprobe,
                            rerank,
                            ..search.clone()
                        },
                    },
                    _ => ShardRequest::SearchTuned {
                        group,
                        read,
                        search: search.clone(),
                        tuning: tuning.into(),
                    },
                }
            })
            .await?;
        let lists: Vec<Vec<Hit>> = out
            .value
            .into_iter()
            .filter_map(|r| match r {
                ShardResponse::Hits(h) => Some(
                    h.into_iter()
                        .map(|h| Hit {
                            record: h.record.into_record(),
                            distance: h.distance,
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        Ok(Answer {
            value: merge::merge_top_k(lists, Order::Ascending, q.offset, q.limit),
            missing_shards: out.missing_shards,
        })
    }
}
