//! The point reads that are not searches, across shards: by id (hash placement asks only each
//! id's owner), counts, id-ordered scroll pages and pages ordered by a payload field, each
//! merged here from the shards' answers.

use super::rpc::{self, ShardRequest, ShardResponse};
use super::{Answer, ReadOptions, Router};
use crate::collection::Error;
use crate::raft::GroupId;
use crate::shard::{Filter, PointId, Record};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A scroll page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Points in id order.
    pub records: Vec<Record>,
    /// Where the next page starts.
    pub next: Option<PointId>,
}

impl Router {
    /// Points by id, in the order asked (each id once; missing ids skipped).
    pub async fn get(
        &self,
        collection: &str,
        ids: &[PointId],
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Record>>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_points(ids.len(), "ids")?;
        // Hash placement: each id only on its owner; centroid: an id may be on any shard.
        let mut per_shard: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
        if Self::is_centroid(&meta) || meta.shards.len() == 1 {
            for s in Self::all_shards(&meta) {
                per_shard.insert(s, ids.to_vec());
            }
        } else {
            let ring = self.ring(meta.shards.len() as u32);
            for id in ids {
                per_shard.entry(ring.shard_of(id)).or_default().push(*id);
            }
        }
        let shards: Vec<u32> = per_shard.keys().copied().collect();
        let by_group: HashMap<GroupId, Vec<PointId>> = per_shard
            .iter()
            .map(|(s, ids)| (meta.shards[*s as usize].group, ids.clone()))
            .collect();
        let out = self
            .fan_out(collection, &meta, &shards, read, |group, read| {
                ShardRequest::Get {
                    group,
                    read,
                    ids: by_group.get(&group).cloned().unwrap_or_default(),
                    with_payload,
                    with_vector,
                }
            })
            .await?;
        let mut found: HashMap<PointId, Record> = HashMap::new();
        for r in out.value {
            if let ShardResponse::Records(rs) = r {
                for w in rs {
                    let rec = w.into_record();
                    found.entry(rec.id).or_insert(rec);
                }
            }
        }
        let mut seen = HashSet::new();
        let records = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| found.remove(id))
            .collect();
        Ok(Answer {
            value: records,
            missing_shards: out.missing_shards,
        })
    }

    /// Points matching the filter, summed over shards.
    pub async fn count(
        &self,
        collection: &str,
        filter: Option<Filter>,
        read: &ReadOptions,
    ) -> Result<Answer<u64>, Error> {
        let meta = self.meta(collection)?;
        let filter = self.check_filter(&meta, filter)?;
        let out = self
            .fan_out_all(collection, &meta, read, |group, read| ShardRequest::Count {
                group,
                read,
                filter: filter.clone(),
            })
            .await?;
        let count = out
            .value
            .iter()
            .map(|r| match r {
                ShardResponse::Count(n) => *n,
                _ => 0,
            })
            .sum();
        Ok(Answer {
            value: count,
            missing_shards: out.missing_shards,
        })
    }

    /// A page of points in id order across shards.
    #[allow(clippy::too_many_arguments)]
    pub async fn scroll(
        &self,
        collection: &str,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Page>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_scroll_limit(limit)?;
        let filter = self.check_filter(&meta, filter)?;
        let out = self
            .fan_out_all(collection, &meta, read, |group, read| {
                ShardRequest::Scroll {
                    group,
                    read,
                    offset,
                    limit,
                    filter: filter.clone(),
                    with_payload,
                    with_vector,
                }
            })
            .await?;
        let mut all: BTreeMap<PointId, Record> = BTreeMap::new();
        let mut next: Option<PointId> = None;
        for r in out.value {
            if let ShardResponse::Page { records, next: n } = r {
                for w in records {
                    let rec = w.into_record();
                    all.entry(rec.id).or_insert(rec);
                }
                if let Some(n) = n {
                    next = Some(next.map_or(n, |m: PointId| m.min(n)));
                }
            }
        }
        let page = merge_pages(all, next, limit);
        Ok(Answer {
            value: page,
            missing_shards: out.missing_shards,
        })
    }

    /// The first `limit` matching points ordered by an indexed payload field, across shards:
    /// each shard returns its own first `limit` with their values, merged here by value (in the
    /// asked direction), then id.
    #[allow(clippy::too_many_arguments)]
    pub async fn scroll_ordered(
        &self,
        collection: &str,
        order: rpc::WireOrderBy,
        limit: usize,
        filter: Option<Filter>,
        with_payload: bool,
        with_vector: bool,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Record>>, Error> {
        let meta = self.meta(collection)?;
        self.config.limits.check_scroll_limit(limit)?;
        let filter = self.check_filter(&meta, filter)?;
        let descending = order.descending;
        let out = self
            .fan_out_all(collection, &meta, read, |group, read| {
                ShardRequest::ScrollOrdered {
                    group,
                    read,
                    order: order.clone(),
                    limit,
                    filter: filter.clone(),
                    with_payload,
                    with_vector,
                }
            })
            .await?;
        let mut rows: Vec<(f64, Record)> = Vec::new();
        for r in out.value {
            if let ShardResponse::OrderedPage(page) = r {
                rows.extend(page.into_iter().map(|(v, w)| (v, w.into_record())));
            }
        }
        rows.sort_by(|a, b| {
            let by = if descending {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            by.then(a.1.id.cmp(&b.1.id))
        });
        rows.dedup_by(|a, b| a.1.id == b.1.id);
        rows.truncate(limit);
        Ok(Answer {
            value: rows.into_iter().map(|(_, r)| r).collect(),
            missing_shards: out.missing_shards,
        })
    }
}

/// Joins per-shard scroll pages: the first `limit` ids overall, and where the next page starts
/// (the first id not returned: either one fetched beyond the limit, or the smallest id a shard
/// still had).
pub(super) fn merge_pages(
    all: BTreeMap<PointId, Record>,
    shard_next: Option<PointId>,
    limit: usize,
) -> Page {
    let mut records: Vec<Record> = all.into_values().collect();
    let mut next = shard_next;
    if records.len() > limit {
        let beyond = records[limit].id;
        next = Some(next.map_or(beyond, |n| n.min(beyond)));
        records.truncate(limit);
    }
    Page { records, next }
}
