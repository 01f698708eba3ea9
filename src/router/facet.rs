//! Facet counts across shards (Qdrant's `POST /collections/{name}/facet`): every shard counts
//! all values of the indexed key among its points passing the filter
//! ([`crate::shard::Shard::facet`]); the counts are summed per value, then ordered by count
//! (largest first), ties by value, and cut at `limit`. Cutting only after summing is what
//! makes the top values right: a value second on every shard can be first overall.

use super::rpc::{ShardRequest, ShardResponse};
use super::{Answer, ReadOptions, Router};
use crate::collection::Error;
use crate::shard::{FacetValue, Filter};
use std::collections::BTreeMap;

/// Sums per-shard counts; the `limit` largest, ties by value.
pub fn merge_facets(
    shards: impl IntoIterator<Item = Vec<(FacetValue, u64)>>,
    limit: usize,
) -> Vec<(FacetValue, u64)> {
    let mut sum: BTreeMap<FacetValue, u64> = BTreeMap::new();
    for counts in shards {
        for (v, n) in counts {
            *sum.entry(v).or_default() += n;
        }
    }
    let mut out: Vec<(FacetValue, u64)> = sum.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(limit);
    out
}

impl Router {
    /// The `limit` most frequent values of the indexed keyword, integer or bool field `key`
    /// among the points passing `filter`, with their counts (exact).
    pub async fn facet(
        &self,
        collection: &str,
        key: &str,
        filter: Option<Filter>,
        limit: usize,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<(FacetValue, u64)>>, Error> {
        let meta = self.meta(collection)?;
        let filter = self.check_filter(&meta, filter)?;
        if limit == 0 {
            return Err(Error::bad("limit must be at least 1"));
        }
        let out = self
            .fan_out_all(collection, &meta, read, |group, read| ShardRequest::Facet {
                group,
                read,
                key: key.to_owned(),
                filter: filter.clone(),
            })
            .await?;
        let lists = out.value.into_iter().filter_map(|r| match r {
            ShardResponse::Facets(v) => Some(v),
            _ => None,
        });
        Ok(Answer {
            value: merge_facets(lists, limit),
            missing_shards: out.missing_shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_before_the_cut() {
        let s = |v: &str| FacetValue::Str(v.into());
        // "b" is second on each shard but first overall.
        let a = vec![(s("a"), 5), (s("b"), 4), (s("c"), 1)];
        let b = vec![(s("d"), 5), (s("b"), 4), (s("c"), 1)];
        let merged = merge_facets([a, b], 3);
        assert_eq!(merged, vec![(s("b"), 8), (s("a"), 5), (s("d"), 5)]);
    }
}
