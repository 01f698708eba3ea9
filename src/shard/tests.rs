//! Shard engine tests: every answer is checked against a brute-force model of the same points.

use super::*;
use crate::index::{Metric, distance};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::HashMap;
use std::collections::HashSet;

/// A shard shape whose segment layout only changes at `seal` rows and on purges, so tests can
/// assert it: no tier merges, no idle sealing (`policy_tests` covers those, on the defaults).
pub(super) fn config(dim: usize, metric: Metric, seal: usize) -> ShardConfig {
    ShardConfig {
        dim,
        metric,
        seal_threshold: seal,
        nlist: 8,
        pq_m: dim / 2,
        pq_bits: 8,
        seed: 7,
        compaction: CompactionConfig {
            tiers: false,
            idle_seal_ms: 0,
            ..CompactionConfig::default()
        },
    }
}

/// The parts of the stats a snapshot carries (not the job counters of this process).
pub(super) fn layout(shard: &Shard) -> (usize, usize, usize, usize, usize, usize, u64) {
    let s = shard.stats();
    (
        s.points,
        s.segments,
        s.indexed_segments,
        s.indexed_points,
        s.stored_rows,
        s.deleted_rows,
        s.last_applied,
    )
}

pub(super) fn random_vec(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub(super) fn point(id: u64, vector: Vec<f32>, group: u64) -> PointWrite {
    let payload = json!({"group": group, "even": id.is_multiple_of(2), "name": format!("p{id}"), "x": id as f64 / 10.0});
    PointWrite {
        id: PointId::Num(id),
        vector,
        payload: payload.as_object().cloned(),
    }
}

/// A brute-force model: the live points and their payloads.
#[derive(Default)]
pub(super) struct Model {
    pub(super) points: HashMap<PointId, (Vec<f32>, Payload)>,
    pub(super) versions: HashMap<PointId, u64>,
}

impl Model {
    pub(super) fn apply(&mut self, cmd: &ShardCommand) {
        match cmd {
            ShardCommand::UpsertAt { points, version } => {
                for p in points {
                    if *version >= self.versions.get(&p.id).copied().unwrap_or(0) {
                        self.versions.insert(p.id, *version);
                        self.points.insert(
                            p.id,
                            (p.vector.clone(), p.payload.clone().unwrap_or_default()),
                        );
                    }
                }
            }
            ShardCommand::DeleteAt { ids, version } => {
                for id in ids {
                    if *version >= self.versions.get(id).copied().unwrap_or(0) {
                        self.versions.insert(*id, *version);
                        self.points.remove(id);
                    }
                }
            }
            ShardCommand::Upsert { points } => {
                for p in points {
                    self.points.insert(
                        p.id,
                        (p.vector.clone(), p.payload.clone().unwrap_or_default()),
                    );
                }
            }
            ShardCommand::Delete { ids } => ids.iter().for_each(|id| {
                self.points.remove(id);
            }),
            ShardCommand::DeleteByFilter { filter } => {
                let f = filter.compile().unwrap();
                self.points.retain(|id, (_, p)| !f.matches(id, Some(p)));
            }
            other => panic!("not modelled here (see payload_tests): {other:?}"),
        }
    }

    pub(super) fn search(
        &self,
        metric: Metric,
        q: &[f32],
        k: usize,
        filter: Option<&CompiledFilter>,
    ) -> Vec<(PointId, f32)> {
        let mut qn = q.to_vec();
        if metric == Metric::Cosine {
            distance::normalize(&mut qn);
        }
        let mut all: Vec<(PointId, f32)> = self
            .points
            .iter()
            .filter(|(id, (_, p))| filter.is_none_or(|f| f.matches(id, Some(p))))
            .map(|(id, (v, _))| {
                let mut v = v.clone();
                if metric == Metric::Cosine {
                    distance::normalize(&mut v);
                }
                (*id, distance::distance(metric, &qn, &v))
            })
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }
}

pub(super) fn req<'a>(
    q: &'a [f32],
    k: usize,
    filter: Option<&'a CompiledFilter>,
    exact: bool,
) -> SearchRequest<'a> {
    SearchRequest {
        vector: q,
        limit: k,
        offset: 0,
        filter,
        nprobe: 8,
        rerank: 0,
        exact,
        with_payload: true,
        with_vector: false,
    }
}

pub(super) fn run_random_ops(
    shard: &Shard,
    model: &mut Model,
    rng: &mut ChaCha8Rng,
    dim: usize,
    ops: usize,
    start: u64,
) -> u64 {
    let mut index = start;
    for _ in 0..ops {
        let r = rng.random_range(0..10);
        let cmd = if r < 7 {
            let points = (0..rng.random_range(1..20))
                .map(|_| rng.random_range(0..400u64))
                .collect::<HashSet<_>>()
                .into_iter()
                .map(|id| point(id, random_vec(rng, dim), id % 5))
                .collect();
            ShardCommand::Upsert { points }
        } else if r < 9 {
            ShardCommand::Delete {
                ids: (0..5)
                    .map(|_| PointId::Num(rng.random_range(0..400)))
                    .collect(),
            }
        } else {
            let g = rng.random_range(0..5u64);
            let filter: Filter = serde_json::from_value(json!({"must": [{"key": "group", "match": {"value": g}}, {"key": "x", "range": {"lt": 10.0}}]})).unwrap();
            ShardCommand::DeleteByFilter { filter }
        };
        index += 1;
        assert!(shard.apply(index, &cmd).unwrap());
        model.apply(&cmd);
    }
    index
}

pub(super) fn assert_exact_matches_model(
    shard: &Shard,
    model: &Model,
    rng: &mut ChaCha8Rng,
    metric: Metric,
    dim: usize,
) {
    let filter = serde_json::from_value::<Filter>(json!({"must": [{"key": "even", "match": {"value": true}}], "must_not": [{"key": "group", "match": {"any": [1, 2]}}]})).unwrap().compile().unwrap();
    for _ in 0..10 {
        let q = random_vec(rng, dim);
        for f in [None, Some(&filter)] {
            let got: Vec<(PointId, f32)> = shard
                .search(&req(&q, 10, f, true))
                .unwrap()
                .into_iter()
                .map(|h| (h.record.id, h.distance))
                .collect();
            let want = model.search(metric, &q, 10, f);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "metric {metric:?}");
                assert!((g.1 - w.1).abs() < 1e-4);
            }
        }
    }
    assert_eq!(shard.count(None), model.points.len());
    assert_eq!(
        shard.count(Some(&filter)),
        model
            .points
            .iter()
            .filter(|(id, (_, p))| filter.matches(id, Some(p)))
            .count()
    );
}

#[test]
fn random_ops_match_brute_force_for_every_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        for compact in [false, true] {
            let dim = 8;
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            // Seal every 300 rows so updates, deletes and searches cross sealed and mutable
            // segments; with compaction on, the sealed segments are rewritten as rows go.
            let mut c = config(dim, metric, 300);
            c.compaction.enabled = compact;
            let shard = Shard::new_inline_builds(c);
            let mut model = Model::default();
            run_random_ops(&shard, &mut model, &mut rng, dim, 150, 0);
            let s = shard.stats();
            if compact {
                assert!(s.compactions >= 1, "{s:?}");
            } else {
                assert!(s.indexed_segments >= 1, "{s:?}");
            }
            assert_exact_matches_model(&shard, &model, &mut rng, metric, dim);
        }
    }
}

#[test]
fn apply_is_idempotent_and_skips_old_indices() {
    let shard = Shard::new(config(4, Metric::L2, 0));
    let cmd = ShardCommand::Upsert {
        points: vec![point(1, vec![1.0; 4], 0)],
    };
    assert!(shard.apply(1, &cmd).unwrap());
    assert!(!shard.apply(1, &cmd).unwrap());
    assert!(
        !shard
            .apply(
                0,
                &ShardCommand::Delete {
                    ids: vec![PointId::Num(1)]
                }
            )
            .unwrap()
    );
    assert_eq!(shard.count(None), 1);
    assert_eq!(shard.last_applied(), 1);
    // Updating replaces: one point, new vector.
    shard
        .apply(
            2,
            &ShardCommand::Upsert {
                points: vec![point(1, vec![2.0; 4], 0)],
            },
        )
        .unwrap();
    let r = shard.get(&[PointId::Num(1)], true, true);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].vector.as_deref(), Some(&[2.0f32; 4][..]));
    assert_eq!(shard.count(None), 1);
}

#[test]
fn bad_commands_change_nothing() {
    let shard = Shard::new(config(4, Metric::L2, 0));
    shard
        .apply(
            1,
            &ShardCommand::Upsert {
                points: vec![point(1, vec![1.0; 4], 0)],
            },
        )
        .unwrap();
    let bad = [
        ShardCommand::Upsert {
            points: vec![point(2, vec![1.0; 4], 0), point(3, vec![1.0; 3], 0)],
        },
        ShardCommand::Upsert {
            points: vec![point(2, vec![1.0, f32::NAN, 0.0, 0.0], 0)],
        },
        ShardCommand::Upsert {
            points: vec![point(2, vec![1.0; 4], 0), point(2, vec![1.0; 4], 0)],
        },
    ];
    for (i, cmd) in bad.iter().enumerate() {
        assert!(shard.validate(cmd).is_err());
        assert!(shard.apply(2 + i as u64, cmd).is_err());
    }
    assert_eq!(shard.count(None), 1);
    assert!(shard.get(&[PointId::Num(2)], false, false).is_empty());
    assert!(shard.search(&req(&[1.0; 3], 1, None, false)).is_err());
}

#[test]
fn scroll_walks_ids_in_order_with_filters() {
    let shard = Shard::new(config(2, Metric::L2, 7));
    let points = (0..30u64)
        .rev()
        .map(|i| point(i, vec![i as f32, 0.0], i % 3))
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    shard
        .apply(
            2,
            &ShardCommand::Upsert {
                points: vec![PointWrite {
                    id: PointId::Uuid(5),
                    vector: vec![0.0, 0.0],
                    payload: None,
                }],
            },
        )
        .unwrap();
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = shard.scroll(offset, 4, None, false, false);
        seen.extend(page.iter().map(|r| r.id));
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    let mut want: Vec<PointId> = (0..30).map(PointId::Num).collect();
    want.push(PointId::Uuid(5));
    assert_eq!(seen, want);
    let f =
        serde_json::from_value::<Filter>(json!({"must": {"key": "group", "match": {"value": 2}}}))
            .unwrap()
            .compile()
            .unwrap();
    let (page, next) = shard.scroll(Some(PointId::Num(10)), 100, Some(&f), true, false);
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        (10..30)
            .filter(|i| i % 3 == 2)
            .map(PointId::Num)
            .collect::<Vec<_>>()
    );
    assert!(next.is_none());
    shard.wait_for_builds();
}

#[test]
fn filtered_search_fills_the_limit_from_sealed_segments() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let shard = Shard::new(config(dim, Metric::L2, 1000));
    let points: Vec<PointWrite> = (0..2500u64)
        .map(|i| point(i, random_vec(&mut rng, dim), i % 50))
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    shard.wait_for_builds();
    assert_eq!(shard.stats().indexed_segments, 2);
    let f = serde_json::from_value::<Filter>(
        json!({"must": [{"key": "group", "match": {"value": 7}}]}),
    )
    .unwrap()
    .compile()
    .unwrap();
    let q = random_vec(&mut rng, dim);
    // 50 points match: even with 2 of 8 lists probed, 20 matching hits come back.
    let mut r = req(&q, 20, Some(&f), false);
    r.nprobe = 2;
    let hits = shard.search(&r).unwrap();
    assert_eq!(hits.len(), 20);
    for h in &hits {
        let PointId::Num(id) = h.record.id else {
            panic!("numeric ids only")
        };
        assert_eq!(id % 50, 7);
    }
    // A broad filter (half the points) goes through the index and still fills the limit.
    let even = serde_json::from_value::<Filter>(
        json!({"must": [{"key": "even", "match": {"value": true}}]}),
    )
    .unwrap()
    .compile()
    .unwrap();
    let hits = shard.search(&req(&q, 50, Some(&even), false)).unwrap();
    assert_eq!(hits.len(), 50);
    assert!(
        hits.iter()
            .all(|h| matches!(h.record.id, PointId::Num(i) if i % 2 == 0))
    );
}

/// Clustered vectors: `clusters` tight blobs, so that lists follow them.
fn blob_vec(rng: &mut ChaCha8Rng, centres: &[Vec<f32>]) -> Vec<f32> {
    let c = &centres[rng.random_range(0..centres.len())];
    c.iter()
        .map(|x| x + rng.random_range(-0.1f32..0.1))
        .collect()
}

/// A shard of `n` points in `blobs` blobs of `dim`-d vectors (L2), sealed as one 4-bit segment
/// of `nlist` lists and `pq_m` sub-spaces, point `i` in group `i % groups`; with the generator
/// and the blobs' centres, for queries near them.
fn blob_shard(
    seed: u64,
    (dim, nlist, pq_m, pq_bits): (usize, usize, usize, u8),
    n: u64,
    blobs: usize,
    groups: u64,
) -> (Shard, ChaCha8Rng, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shard = Shard::new(ShardConfig {
        nlist,
        pq_m,
        pq_bits,
        ..config(dim, Metric::L2, n as usize)
    });
    let centres: Vec<Vec<f32>> = (0..blobs).map(|_| random_vec(&mut rng, dim)).collect();
    let points: Vec<PointWrite> = (0..n)
        .map(|i| point(i, blob_vec(&mut rng, &centres), i % groups))
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    shard.wait_for_builds();
    assert_eq!(shard.stats().indexed_points, n as usize);
    (shard, rng, centres)
}

/// Indexes `blob_shard`'s `group` field (command 2), then deletes the points whose id is a
/// multiple of `step` (command 3) among its `n`.
fn index_groups_and_delete_every(shard: &Shard, n: u64, step: usize) {
    let cmd = ShardCommand::CreateFieldIndex {
        field: "group".into(),
        field_type: PayloadFieldType::Integer,
    };
    shard.apply(2, &cmd).unwrap();
    let gone: Vec<PointId> = (0..n).step_by(step).map(PointId::Num).collect();
    shard.apply(3, &ShardCommand::Delete { ids: gone }).unwrap();
}

/// `group = g`, compiled.
fn group_filter(g: u64) -> CompiledFilter {
    serde_json::from_value::<Filter>(json!({"must": [{"key": "group", "match": {"value": g}}]}))
        .unwrap()
        .compile()
        .unwrap()
}

/// The numeric ids of `hits`, in order.
fn num_ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter()
        .map(|h| match h.record.id {
            PointId::Num(i) => i,
            PointId::Uuid(_) => panic!("numeric ids only"),
        })
        .collect()
}

/// A filter whose matches mostly lie outside the lists a widened scan would probe is answered
/// by scoring exactly just the matches inside them (`Plan::Probed`): every hit passes the
/// filter, and the answer is near the exact filtered one.
#[test]
fn the_probed_plan_answers_within_the_filter_and_near_exact() {
    // 1% of the rows match a group: 600, more than are always scanned exactly.
    let (shard, mut rng, centres) = blob_shard(17, (128, 256, 64, 4), 60_000, 200, 100);
    let (mut probed, mut hit, mut total) = (0, 0, 0);
    for g in 0..5u64 {
        let f = group_filter(g);
        for nprobe in [1, 2, 4] {
            let q = blob_vec(&mut rng, &centres);
            let mut r = req(&q, 10, Some(&f), false);
            r.nprobe = nprobe;
            r.rerank = 1;
            if !shard
                .plans(&r)
                .iter()
                .any(|p| matches!(p, planner::Plan::Probed(_)))
            {
                continue;
            }
            probed += 1;
            let hits = shard.search(&r).unwrap();
            assert_eq!(hits.len(), 10);
            assert!(num_ids(&hits).iter().all(|i| i % 100 == g), "{hits:?}");
            let exact = num_ids(&shard.search(&req(&q, 10, Some(&f), true)).unwrap());
            hit += num_ids(&hits).iter().filter(|i| exact.contains(i)).count();
            total += 10;
        }
    }
    assert!(
        probed >= 5,
        "the probed plan answered {probed} of 15 searches"
    );
    assert!(hit * 10 >= total * 9, "recall@10 {hit}/{total}");
}

/// A filter on an indexed value scans only that value's rows' entries of the probed lists
/// (`Plan::Subset`): every hit passes the filter and was not deleted, the answer is near the
/// exact filtered one, and it is the answer of the same widened scan over the whole lists
/// (what the segment does once the index is dropped).
#[test]
fn the_subset_plan_answers_as_the_whole_lists_do() {
    let (shard, mut rng, centres) = blob_shard(23, (32, 64, 16, 4), 20_000, 100, 10);
    for (at, field, field_type) in [
        (2, "group", PayloadFieldType::Integer),
        (3, "even", PayloadFieldType::Bool),
    ] {
        let cmd = ShardCommand::CreateFieldIndex {
            field: field.into(),
            field_type,
        };
        shard.apply(at, &cmd).unwrap();
    }
    // Every third point of group 0 deleted: never an answer.
    let gone: Vec<PointId> = (0..20_000u64).step_by(30).map(PointId::Num).collect();
    shard.apply(4, &ShardCommand::Delete { ids: gone }).unwrap();
    // Each filter with the model of the ids it lets through (deleted ones excluded).
    type Passes = fn(u64) -> bool;
    let filters: Vec<(serde_json::Value, Passes)> = vec![
        (
            json!({"must": [{"key": "group", "match": {"value": 0}}]}),
            |i| i % 10 == 0 && i % 30 != 0,
        ),
        (
            json!({"must": [{"key": "group", "match": {"value": 7}}]}),
            |i| i % 10 == 7,
        ),
        (
            json!({"must": [{"key": "even", "match": {"value": true}}]}),
            |i| i % 2 == 0 && i % 30 != 0,
        ),
        // The indexed value narrows the scan; the other condition is checked per candidate.
        (
            json!({"must": [{"key": "group", "match": {"value": 4}}, {"key": "x", "range": {"gte": 500.0}}]}),
            |i| i % 10 == 4 && i >= 5000,
        ),
    ];
    let filters: Vec<(CompiledFilter, Passes)> = filters
        .into_iter()
        .map(|(f, passes)| {
            let f = serde_json::from_value::<Filter>(f).unwrap();
            (f.compile().unwrap(), passes)
        })
        .collect();
    // The approximate search every query makes, before and after the indexes are dropped.
    fn approx<'a>(q: &'a [f32], f: &'a CompiledFilter) -> SearchRequest<'a> {
        SearchRequest {
            nprobe: 8,
            rerank: 4,
            ..req(q, 10, Some(f), false)
        }
    }
    let queries: Vec<Vec<f32>> = (0..12).map(|_| blob_vec(&mut rng, &centres)).collect();
    // Each value's codes are regrouped on the build pool when a plan first wants them.
    for (f, _) in &filters {
        shard.plans(&approx(&queries[0], f));
    }
    shard.wait_for_regrouping();
    let mut answers = Vec::new();
    let (mut subset_plans, mut hit, mut total) = (0, 0, 0);
    for (f, passes) in &filters {
        for q in &queries {
            let r = approx(q, f);
            let plans = shard.plans(&r);
            subset_plans += plans
                .iter()
                .filter(|p| matches!(p, planner::Plan::Subset(_)))
                .count();
            let got = num_ids(&shard.search(&r).unwrap());
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|&i| passes(i)), "{got:?}");
            let exact = num_ids(&shard.search(&req(q, 10, Some(f), true)).unwrap());
            hit += got.iter().filter(|i| exact.contains(i)).count();
            total += 10;
            answers.push((plans, got));
        }
    }
    // At least the three filters on a 10% group (whether the 50% one pays for its copy of the
    // codes on a segment this small is the cost model's call).
    assert!(
        subset_plans >= 3 * queries.len(),
        "{subset_plans} subset plans"
    );
    assert!(hit * 10 >= total * 9, "recall@10 {hit}/{total}");
    // Without the indexes the same widened scans read the whole lists: the same answers
    // wherever the plan is that scan with the same parameters.
    for (at, field) in [(5, "group"), (6, "even")] {
        let cmd = ShardCommand::DeleteFieldIndex {
            field: field.into(),
        };
        shard.apply(at, &cmd).unwrap();
    }
    let mut compared = 0;
    let mut answers = answers.into_iter();
    for (f, _) in &filters {
        for q in &queries {
            let (plans, got) = answers.next().unwrap();
            let r = approx(q, f);
            let whole: Vec<_> = plans
                .iter()
                .map(|p| match p {
                    planner::Plan::Subset(p) => planner::Plan::Ivf(*p),
                    other => *other,
                })
                .collect();
            if shard.plans(&r) == whole {
                compared += 1;
                assert_eq!(num_ids(&shard.search(&r).unwrap()), got);
            }
        }
    }
    // At least the 50% filter's 12: once unindexed, the 10% filters of a segment this small
    // (pq_m 16, so admitting each candidate costs more than its codes) take the exact scan.
    assert!(compared >= 12, "compared {compared} of 48");
}

/// A filter on a sparse indexed value (1%: a few entries a list, too few to regroup per list)
/// scores every code of that value's rows with one table (`Plan::SubsetCodes`) once the
/// segment has regrouped them in the background: every hit passes the filter and was not
/// deleted, and the answer is near the exact filtered one.
#[test]
fn the_subset_codes_plan_answers_within_the_filter_and_near_exact() {
    let (shard, mut rng, centres) = blob_shard(19, (128, 256, 64, 4), 60_000, 200, 100);
    // Every tenth point of group 0 deleted: never an answer (540 rows stay, more than are
    // always scanned exactly).
    index_groups_and_delete_every(&shard, 60_000, 1_000);
    let queries: Vec<Vec<f32>> = (0..4).map(|_| blob_vec(&mut rng, &centres)).collect();
    fn approx<'a>(q: &'a [f32], f: &'a CompiledFilter) -> SearchRequest<'a> {
        SearchRequest {
            nprobe: 4,
            rerank: 4,
            ..req(q, 10, Some(f), false)
        }
    }
    // No search waits for a value's codes: the first one plans without them and has them
    // regrouped on the build pool; once that is done, the plan reads them.
    assert_eq!(shard.stats().filter_subset_bytes, 0);
    let f = group_filter(1);
    let first = shard.plans(&approx(&queries[0], &f));
    assert!(!first.is_empty());
    assert!(
        !first
            .iter()
            .any(|p| matches!(p, planner::Plan::SubsetCodes(_))),
        "{first:?}"
    );
    for g in 0..5u64 {
        shard.plans(&approx(&queries[0], &group_filter(g)));
    }
    shard.wait_for_regrouping();
    // The stats report what the regrouped codes hold, and that none is being made any more.
    let stats = shard.stats();
    assert_eq!(stats.filter_subsets_being_made, 0);
    assert!(stats.filter_subset_bytes > 0, "{stats:?}");
    let (mut codes_plans, mut hit, mut total) = (0, 0, 0);
    for g in 0..5u64 {
        let f = group_filter(g);
        for q in &queries {
            let r = approx(q, &f);
            codes_plans += shard
                .plans(&r)
                .iter()
                .filter(|p| matches!(p, planner::Plan::SubsetCodes(_)))
                .count();
            let got = num_ids(&shard.search(&r).unwrap());
            assert_eq!(got.len(), 10);
            assert!(
                got.iter().all(|i| i % 100 == g && i % 1_000 != 0),
                "{got:?}"
            );
            let exact = num_ids(&shard.search(&req(q, 10, Some(&f), true)).unwrap());
            hit += got.iter().filter(|i| exact.contains(i)).count();
            total += 10;
        }
    }
    assert!(
        codes_plans >= 20,
        "{codes_plans} plans scored the value's codes"
    );
    assert!(hit * 10 >= total * 9, "recall@10 {hit}/{total}");
}

/// A filter on an indexed value with a few entries a list, on L2 (each probed list would make
/// its own table to score them), scores exactly that value's rows in the probed lists, read
/// from its rows regrouped per list (`Plan::SubsetProbed`) once the segment has made them:
/// every hit passes the filter and was not deleted, and the answer is the probed plan's (which
/// looks up every match's lists) once the index is dropped, wherever that plan is taken with
/// the same parameters.
#[test]
fn the_subset_probed_plan_answers_as_the_probed_plan() {
    subset_probed_plan_answers_as_the_probed_plan(4);
}

/// With 8-bit codes too: the value's rows per list hold no codes, so the plan is open to
/// every code width (before, only 4-bit segments could take it).
#[test]
fn the_subset_probed_plan_answers_as_the_probed_plan_with_8_bit_codes() {
    subset_probed_plan_answers_as_the_probed_plan(8);
}

fn subset_probed_plan_answers_as_the_probed_plan(pq_bits: u8) {
    let (shard, mut rng, centres) = blob_shard(29, (128, 512, 64, pq_bits), 60_000, 200, 50);
    // Every tenth point of group 0 deleted: never an answer.
    index_groups_and_delete_every(&shard, 60_000, 500);
    fn approx<'a>(q: &'a [f32], f: &'a CompiledFilter, nprobe: usize) -> SearchRequest<'a> {
        SearchRequest {
            nprobe,
            rerank: 1,
            ..req(q, 10, Some(f), false)
        }
    }
    let queries: Vec<Vec<f32>> = (0..6).map(|_| blob_vec(&mut rng, &centres)).collect();
    for g in 0..4u64 {
        shard.plans(&approx(&queries[0], &group_filter(g), 2));
    }
    shard.wait_for_regrouping();
    let mut answers = Vec::new();
    let (mut probed_rows, mut hit, mut total) = (0, 0, 0);
    for g in 0..4u64 {
        let f = group_filter(g);
        for q in &queries {
            for nprobe in [2, 4] {
                let r = approx(q, &f, nprobe);
                let plans = shard.plans(&r);
                probed_rows += plans
                    .iter()
                    .filter(|p| matches!(p, planner::Plan::SubsetProbed(_)))
                    .count();
                let got = num_ids(&shard.search(&r).unwrap());
                assert_eq!(got.len(), 10);
                assert!(got.iter().all(|i| i % 50 == g && i % 500 != 0), "{got:?}");
                let exact = num_ids(&shard.search(&req(q, 10, Some(&f), true)).unwrap());
                hit += got.iter().filter(|i| exact.contains(i)).count();
                total += 10;
                answers.push((plans, got));
            }
        }
    }
    assert!(
        probed_rows >= 24,
        "{probed_rows} of 48 plans scored the probed rows"
    );
    assert!(hit * 10 >= total * 9, "recall@10 {hit}/{total}");
    let cmd = ShardCommand::DeleteFieldIndex {
        field: "group".into(),
    };
    shard.apply(4, &cmd).unwrap();
    let mut compared = 0;
    let mut answers = answers.into_iter();
    for g in 0..4u64 {
        let f = group_filter(g);
        for q in &queries {
            for nprobe in [2, 4] {
                let (plans, got) = answers.next().unwrap();
                let r = approx(q, &f, nprobe);
                let looked_up: Vec<_> = plans
                    .iter()
                    .map(|p| match p {
                        planner::Plan::SubsetProbed(p) => planner::Plan::Probed(*p),
                        other => *other,
                    })
                    .collect();
                if plans != looked_up && shard.plans(&r) == looked_up {
                    compared += 1;
                    assert_eq!(num_ids(&shard.search(&r).unwrap()), got);
                }
            }
        }
    }
    assert!(compared >= 12, "compared {compared} of 48");
}

/// A selective filter on an indexed value, answered by the exact scan of its matches, reads
/// them from the value's index rows and their copies of the 8-bit codes once the segment
/// keeps them (made in the background on the first search): the answers are the exact
/// filtered ones, with deleted points never among them, before and after the rows are kept.
#[test]
fn the_exact_plan_reads_a_value_s_kept_rows_and_answers_exactly() {
    // 8-bit codes (no coded subset form) and a deep re-rank (a widened probe of nearly every
    // list): the exact scan of the matches is the cheapest plan, before and after regrouping.
    let (shard, mut rng, centres) = blob_shard(31, (32, 64, 16, 8), 20_000, 100, 25);
    // Every tenth point of group 0 deleted (800 rows a group, 720 left).
    index_groups_and_delete_every(&shard, 20_000, 250);
    let queries: Vec<Vec<f32>> = (0..6).map(|_| blob_vec(&mut rng, &centres)).collect();
    fn approx<'a>(q: &'a [f32], f: &'a CompiledFilter) -> SearchRequest<'a> {
        SearchRequest {
            nprobe: 2,
            rerank: 16,
            ..req(q, 10, Some(f), false)
        }
    }
    let check = |g: u64, q: &[f32]| {
        let f = group_filter(g);
        let got = num_ids(&shard.search(&approx(q, &f)).unwrap());
        let exact = num_ids(&shard.search(&req(q, 10, Some(&f), true)).unwrap());
        assert_eq!(got, exact, "group {g}");
        assert!(got.iter().all(|i| i % 25 == g && i % 250 != 0), "{got:?}");
    };
    assert_eq!(shard.stats().filter_subset_bytes, 0);
    for g in 0..4u64 {
        let plans = shard.plans(&approx(&queries[0], &group_filter(g)));
        assert_eq!(plans, vec![planner::Plan::Exact], "group {g}");
        // Before the rows are kept: the posting translated per query.
        check(g, &queries[0]);
    }
    shard.wait_for_regrouping();
    // Kept, for each value searched: 4 bytes a row, and a copy of each row's 8-bit codes and
    // norm (32 + 4 bytes), which the exact scan then reads; nothing else.
    assert_eq!(shard.stats().filter_subset_bytes, 4 * 800 * (4 + 32 + 4));
    for g in 0..4u64 {
        for q in &queries {
            assert_eq!(
                shard.plans(&approx(q, &group_filter(g))),
                vec![planner::Plan::Exact]
            );
            check(g, q);
        }
    }
}

#[test]
fn approximate_search_recalls_exact_neighbours() {
    let dim = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let shard = Shard::new(ShardConfig {
        nlist: 16,
        pq_m: 8,
        ..config(dim, Metric::L2, 3000)
    });
    let points: Vec<PointWrite> = (0..4000u64)
        .map(|i| point(i, random_vec(&mut rng, dim), 0))
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    shard.wait_for_builds();
    let (mut hit, mut total) = (0, 0);
    for _ in 0..20 {
        let q = random_vec(&mut rng, dim);
        let exact: HashSet<PointId> = shard
            .search(&req(&q, 10, None, true))
            .unwrap()
            .iter()
            .map(|h| h.record.id)
            .collect();
        let mut r = req(&q, 10, None, false);
        r.nprobe = 8;
        r.rerank = 4;
        let approx = shard.search(&r).unwrap();
        hit += approx
            .iter()
            .filter(|h| exact.contains(&h.record.id))
            .count();
        total += 10;
    }
    assert!(hit * 10 >= total * 8, "recall@10 {hit}/{total}");
}

#[test]
fn snapshot_restore_gives_the_same_answers() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let shard = Shard::new_inline_builds(config(dim, Metric::Cosine, 400));
    let mut model = Model::default();
    let last = run_random_ops(&shard, &mut model, &mut rng, dim, 120, 0);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(shard.snapshot(dir.path()).unwrap(), last);
    let restored = Shard::restore(dir.path(), true).unwrap();
    assert_eq!(restored.last_applied(), last);
    assert_eq!(layout(&restored), layout(&shard));
    for _ in 0..10 {
        let q = random_vec(&mut rng, dim);
        for exact in [false, true] {
            let a = shard.search(&req(&q, 10, None, exact)).unwrap();
            let b = restored.search(&req(&q, 10, None, exact)).unwrap();
            // Cosine rows of the mutable segment are normalised again on restore, which may move
            // a distance by an ulp; ids, payloads and order are the same.
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.record, y.record);
                assert!((x.distance - y.distance).abs() < 1e-5);
            }
        }
    }
    assert_exact_matches_model(&restored, &model, &mut rng, Metric::Cosine, dim);
    // A damaged file is refused, not half-loaded.
    let path = dir.path().join(snapshot::FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Shard::restore(dir.path(), true),
        Err(ShardError::Corrupted(_))
    ));
}
