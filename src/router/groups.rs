//! Search grouped by a payload field (Qdrant's `points/search/groups` and `points/query/groups`,
//! e.g. the best chunks of each of the best documents), across shards.
//!
//! Grouping needs the collection's merged ranking, so it runs here and not in the shards: the
//! router asks for `limit × group_size` hits (merged across shards by [`Router::search`]),
//! groups them in rank order, and while some group is short and the search returned all it was
//! asked for, asks again for four times as many, up to [`MAX_LIMIT`] hits. A point joins the
//! group of each string or integer value it holds at the key (an array puts it in several);
//! points without one are skipped. Groups are ordered by their best hit, hits within a group by
//! rank; once `limit` groups exist, hits of other values are ignored. A score threshold
//! ([`Grouping::max_distance`]) leaves hits out before they are grouped, so a group is made only
//! of hits that pass it and the search stops asking for more once a hit fails it.

use super::{Answer, ReadOptions, Router};
use crate::collection::limits::MAX_LIMIT;
use crate::collection::{Error, SearchQuery};
use crate::shard::{Hit, JsonPath};
use serde_json::Value;
use std::collections::HashMap;

/// One group: the value its hits share and the hits, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The value (a string or an integer).
    pub id: Value,
    /// Its hits, best first.
    pub hits: Vec<Hit>,
}

/// What a grouped search asks for beside the search itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// The payload key to group by.
    pub group_by: String,
    /// Most hits per group.
    pub group_size: usize,
    /// Most groups.
    pub limit: usize,
    /// Hits farther than this are left out before grouping (a score threshold, as a distance).
    pub max_distance: Option<f32>,
}

impl Grouping {
    /// Checks the sizes (each at least 1, their product at most [`MAX_LIMIT`]) and the key.
    pub fn check(&self) -> Result<JsonPath, Error> {
        if self.group_size == 0 || self.limit == 0 {
            return Err(Error::bad("group_size and limit must be at least 1"));
        }
        if self.group_size.saturating_mul(self.limit) > MAX_LIMIT {
            return Err(Error::bad(format!(
                "limit × group_size = {} × {} is over {MAX_LIMIT}, the most hits one grouped search gathers",
                self.limit, self.group_size
            )));
        }
        JsonPath::parse(&self.group_by)
            .ok_or_else(|| Error::bad(format!("group_by `{}` is not a payload key", self.group_by)))
    }
}

/// Groups `hits` (in rank order); also says whether every one of `limit` groups is full.
pub fn group_hits(hits: Vec<Hit>, path: &JsonPath, g: &Grouping) -> (Vec<Group>, bool) {
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for hit in hits {
        if g.max_distance.is_some_and(|m| hit.distance > m) {
            // Hits come in rank order: none after this one passes either.
            break;
        }
        let keys: Vec<&Value> = path
            .elements(hit.record.payload.as_deref())
            .into_iter()
            .filter(|v| v.is_string() || v.is_i64() || v.is_u64())
            .collect();
        let mut seen: Vec<String> = Vec::new();
        for key in keys {
            let text = key.to_string();
            if seen.contains(&text) {
                continue;
            }
            seen.push(text.clone());
            let at = match by_key.get(&text) {
                Some(&i) => i,
                None if groups.len() < g.limit => {
                    groups.push(Group {
                        id: key.clone(),
                        hits: Vec::new(),
                    });
                    by_key.insert(text, groups.len() - 1);
                    groups.len() - 1
                }
                None => continue,
            };
            if groups[at].hits.len() < g.group_size {
                groups[at].hits.push(hit.clone());
            }
        }
    }
    let full = groups.len() == g.limit && groups.iter().all(|grp| grp.hits.len() == g.group_size);
    (groups, full)
}

impl Router {
    /// The best `grouping.limit` groups of `q`'s hits by the payload key `grouping.group_by`,
    /// each with up to `grouping.group_size` hits (`q.limit` and `q.offset` are ignored;
    /// payloads are always read, since the key is in them).
    pub async fn search_groups(
        &self,
        collection: &str,
        q: &SearchQuery,
        grouping: &Grouping,
        read: &ReadOptions,
    ) -> Result<Answer<Vec<Group>>, Error> {
        let path = grouping.check()?;
        let mut fetch = grouping.limit * grouping.group_size;
        loop {
            let query = SearchQuery {
                limit: fetch,
                offset: 0,
                with_payload: true,
                ..q.clone()
            };
            let answer = self.search(collection, &query, read).await?;
            // Fewer than asked, or the last one past the threshold: more would add nothing.
            let exhausted = answer.value.len() < fetch
                || answer
                    .value
                    .last()
                    .zip(grouping.max_distance)
                    .is_some_and(|(h, m)| h.distance > m);
            let (groups, full) = group_hits(answer.value, &path, grouping);
            if full || exhausted || fetch >= MAX_LIMIT {
                return Ok(Answer {
                    value: groups,
                    missing_shards: answer.missing_shards,
                });
            }
            fetch = fetch.saturating_mul(4).min(MAX_LIMIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{PointId, Record};
    use std::sync::Arc;

    fn hit(id: u64, doc: Value) -> Hit {
        let mut p = serde_json::Map::new();
        p.insert("doc".into(), doc);
        Hit {
            record: Record {
                id: PointId::Num(id),
                payload: Some(Arc::new(p)),
                vector: None,
            },
            distance: id as f32,
        }
    }

    fn ranked_hits() -> Vec<Hit> {
        vec![
            hit(1, "a".into()),
            hit(2, 7.into()),
            hit(3, "a".into()),
            hit(4, serde_json::json!(["a", "b", "a"])),
            hit(5, serde_json::json!(1.5)),
            hit(6, "c".into()),
            hit(7, "a".into()),
        ]
    }

    #[test]
    fn hits_group_in_rank_order_with_arrays_and_caps() {
        let hits = ranked_hits();
        let g = Grouping {
            group_by: "doc".into(),
            group_size: 2,
            limit: 3,
            max_distance: None,
        };
        let path = g.check().unwrap();
        let (groups, full) = group_hits(hits, &path, &g);
        let ids: Vec<(Value, Vec<u64>)> = groups
            .iter()
            .map(|grp| {
                let ids = grp
                    .hits
                    .iter()
                    .map(|h| match h.record.id {
                        PointId::Num(n) => n,
                        _ => 0,
                    })
                    .collect();
                (grp.id.clone(), ids)
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("a".into(), vec![1, 3]),
                (7.into(), vec![2]),
                ("b".into(), vec![4]),
            ]
        );
        assert!(!full);
        // A threshold leaves the farther hits out before they are grouped: "b" (hit 4) and
        // "c" (hit 6) make no group, and "a" holds only hits 1 and 3.
        let near = Grouping {
            max_distance: Some(3.0),
            ..g.clone()
        };
        let (groups, _) = group_hits(ranked_hits(), &path, &near);
        let ids: Vec<Value> = groups.iter().map(|grp| grp.id.clone()).collect();
        assert_eq!(ids, vec![Value::from("a"), Value::from(7)]);
        assert_eq!(groups[0].hits.len(), 2);
        let too_many = Grouping {
            group_size: 101,
            limit: 100,
            ..g
        };
        assert!(too_many.check().is_err());
    }
}
