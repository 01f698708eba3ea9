//! `shoal bench --tune --recall R`: find the fastest settings that reach a target recall without
//! measuring the full grid.
//!
//! Builds are the expensive step, so the search builds few indexes and spends its measurements
//! on the cheap per-query knobs:
//! 1. **Coarse.** `nlist ≈ 4·√n` (a power of two) and a few PQ code layouts of similar size. On
//!    each index, for a couple of `rerank` values, find the smallest `nprobe` reaching the
//!    target: doubling from 1, then bisecting (recall grows with `nprobe`, QPS falls, so the
//!    smallest sufficient `nprobe` is the fastest for that index and `rerank`).
//! 2. **Refine** around the fastest candidate: the neighbouring `rerank` values on its index,
//!    then half and double its `nlist`.
//! 3. **Confirm** the winner on every query (the search itself may use a sample) and raise
//!    `nprobe` if the sample was optimistic.
//!
//! The result is printed as the collection settings to use (`ivf_pq_config` and
//! `search_config` of `PUT /collections/{name}`), and every measurement is kept as a report so
//! that the search can be plotted.

use std::collections::HashMap;

use serde_json::json;

use super::sweep::{BuildConfig, SearchConfig, auto_nlist, auto_pq_m};
use super::{BenchError, QueryResult};

/// Something that can measure a setting: the in-process index bench, or any other engine.
pub trait Evaluate {
    /// Measures `search` on an index built with `build` (building it if needed). With `sample`
    /// the evaluator may use a subset of the queries to save time; without it, all of them.
    fn evaluate(
        &mut self,
        build: BuildConfig,
        search: SearchConfig,
        sample: bool,
    ) -> Result<QueryResult, BenchError>;
}

/// What the tuner searches over.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// Recall@k to reach, in `(0, 1]`.
    pub target_recall: f64,
    /// Starting `nlist`.
    pub nlist: usize,
    /// `(pq_m, pq_bits)` layouts tried in the coarse stage.
    pub pq: Vec<(usize, u8)>,
    /// The `rerank` ladder; the coarse stage tries `coarse_rerank`, refinement its neighbours.
    pub rerank_ladder: Vec<usize>,
    /// `rerank` values tried in the coarse stage (members of the ladder).
    pub coarse_rerank: Vec<usize>,
    /// Base size, to keep `nlist` refinements within `1..=n`.
    pub n: usize,
    /// Whether the search may measure on a sample of the queries (then the winner is confirmed
    /// on all of them); off when the sample would be the whole set anyway.
    pub sampling: bool,
}

impl TuneOptions {
    /// Sensible defaults for `n` vectors of dimension `dim`: `nlist ≈ 4·√n`, codes of `dim / 2`
    /// 4-bit sub-quantisers, `dim / 4` 4-bit ones and `dim / 4` 8-bit ones, `rerank` 0 and 4 first.
    pub fn for_dataset(n: usize, dim: usize, target_recall: f64) -> Self {
        let half = auto_pq_m(dim);
        let quarter = auto_pq_m(half.max(1)).max(1);
        let quarter = if dim.is_multiple_of(quarter) {
            quarter
        } else {
            half
        };
        let mut pq = vec![(half, 4u8), (quarter, 4), (quarter, 8)];
        pq.dedup();
        TuneOptions {
            target_recall,
            nlist: auto_nlist(n),
            pq,
            rerank_ladder: vec![0, 1, 2, 4, 8, 16],
            coarse_rerank: vec![0, 4],
            n,
            sampling: true,
        }
    }
}

/// A setting that reached the target, with its measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The index settings.
    pub build: BuildConfig,
    /// The search settings.
    pub search: SearchConfig,
    /// What was measured.
    pub result: QueryResult,
}

impl Candidate {
    /// The collection settings snippet (`ivf_pq_config` and `search_config` as in
    /// `PUT /collections/{name}`), plus what was measured, for the user to copy.
    pub fn settings_json(&self) -> serde_json::Value {
        json!({
            "ivf_pq_config": {
                "nlist": self.build.nlist,
                "pq_m": self.build.pq_m,
                "pq_bits": self.build.pq_bits,
            },
            "search_config": {
                "nprobe": self.search.nprobe,
                "rerank": self.search.rerank,
            },
            "measured": {
                "recall": round_to(self.result.recall, 4),
                "qps": round_to(self.result.qps, 1),
                "p50_ms": round_to(self.result.p50_ms, 4),
                "p99_ms": round_to(self.result.p99_ms, 4),
            }
        })
    }
}

/// `v` rounded to `digits` decimals, so that the printed snippet reads cleanly.
fn round_to(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// The tuner's answer: the fastest setting found (if any reached the target) and every
/// measurement taken on the way.
#[derive(Debug, Clone)]
pub struct TuneOutcome {
    /// The fastest setting reaching the target on all queries, if one exists in the space.
    pub best: Option<Candidate>,
    /// Every measurement, in order.
    pub trace: Vec<QueryResult>,
}

struct Tuner<'a, E: Evaluate> {
    eval: &'a mut E,
    target: f64,
    trace: Vec<QueryResult>,
    seen: HashMap<(BuildConfig, SearchConfig, bool), QueryResult>,
}

impl<E: Evaluate> Tuner<'_, E> {
    fn measure(
        &mut self,
        build: BuildConfig,
        search: SearchConfig,
        sample: bool,
    ) -> Result<QueryResult, BenchError> {
        if let Some(r) = self.seen.get(&(build, search, sample)) {
            return Ok(r.clone());
        }
        let r = self.eval.evaluate(build, search, sample)?;
        self.trace.push(r.clone());
        self.seen.insert((build, search, sample), r.clone());
        Ok(r)
    }

    /// The smallest `nprobe` in `from..=nlist` whose recall reaches the target, with its
    /// measurement, or `None` if even probing every list falls short. Gives up early (also
    /// `None`) once a setting short of the target is already slower than `to_beat`, since
    /// probing more lists only costs more.
    fn min_nprobe(
        &mut self,
        build: BuildConfig,
        rerank: usize,
        from: usize,
        sample: bool,
        to_beat: Option<f64>,
    ) -> Result<Option<Candidate>, BenchError> {
        let nlist = build.nlist;
        let mut fail = from.max(1) - 1; // largest nprobe known to fall short (0 = none tried)
        let mut probe = from.max(1).min(nlist);
        let mut hit: Option<(usize, QueryResult)> = None;
        // Doubling until the target is reached or every list is probed.
        loop {
            let r = self.measure(
                build,
                SearchConfig {
                    nprobe: probe,
                    rerank,
                },
                sample,
            )?;
            if r.recall >= self.target {
                hit = Some((probe, r));
                break;
            }
            fail = probe;
            if probe == nlist || to_beat.is_some_and(|speed| throughput(&r) < speed) {
                break;
            }
            probe = (probe * 2).min(nlist);
        }
        let Some((mut ok, mut ok_result)) = hit else {
            return Ok(None);
        };
        // Bisection in (fail, ok].
        while ok - fail > 1 {
            let mid = fail + (ok - fail) / 2;
            let r = self.measure(
                build,
                SearchConfig {
                    nprobe: mid,
                    rerank,
                },
                sample,
            )?;
            if r.recall >= self.target {
                ok = mid;
                ok_result = r;
            } else {
                fail = mid;
            }
        }
        Ok(Some(Candidate {
            build,
            search: SearchConfig { nprobe: ok, rerank },
            result: ok_result,
        }))
    }

    fn consider(best: &mut Option<Candidate>, c: Option<Candidate>) {
        if let Some(c) = c
            && best
                .as_ref()
                .is_none_or(|b| throughput(&c.result) > throughput(&b.result))
        {
            *best = Some(c);
        }
    }
}

fn floor(best: &Option<Candidate>) -> Option<f64> {
    best.as_ref().map(|b| throughput(&b.result))
}

/// How the tuner ranks settings: the throughput the median query implies (`1000 / p50_ms`,
/// per client thread), falling back to measured QPS when no latency is known. Wall-clock QPS
/// over a few hundred sub-millisecond queries swings with every scheduler hiccup on a busy
/// machine (one 10 ms preemption halves it); the median does not, so comparisons stay stable.
/// Reports still carry the measured QPS.
pub fn throughput(r: &QueryResult) -> f64 {
    if r.p50_ms > 0.0 {
        1000.0 / r.p50_ms
    } else {
        r.qps
    }
}

/// Runs the coarse-to-fine search described in the module docs.
pub fn tune<E: Evaluate>(eval: &mut E, opts: &TuneOptions) -> Result<TuneOutcome, BenchError> {
    if !(opts.target_recall > 0.0 && opts.target_recall <= 1.0) {
        return Err(BenchError::InvalidParameter(format!(
            "target recall {} must be in (0, 1]",
            opts.target_recall
        )));
    }
    if opts.pq.is_empty() || opts.coarse_rerank.is_empty() || opts.nlist == 0 {
        return Err(BenchError::InvalidParameter(
            "the tuning space is empty".into(),
        ));
    }
    let mut t = Tuner {
        eval,
        target: opts.target_recall,
        trace: Vec::new(),
        seen: HashMap::new(),
    };
    let mut best: Option<Candidate> = None;
    let sample = opts.sampling;

    // 1. Coarse: one nlist, a few code layouts, a couple of rerank values.
    for &(pq_m, pq_bits) in &opts.pq {
        let build = BuildConfig {
            nlist: opts.nlist,
            pq_m,
            pq_bits,
        };
        for &rerank in &opts.coarse_rerank {
            let c = t.min_nprobe(build, rerank, 1, sample, floor(&best))?;
            Tuner::<E>::consider(&mut best, c);
        }
    }

    // 2a. Refine rerank on the winning index: the ladder neighbours of the winning value.
    if let Some(b) = best.clone() {
        let ladder = &opts.rerank_ladder;
        if let Some(pos) = ladder.iter().position(|&r| r == b.search.rerank) {
            let neighbours = [pos.checked_sub(1), Some(pos + 1)];
            for idx in neighbours.into_iter().flatten() {
                if let Some(&rerank) = ladder.get(idx)
                    && !opts.coarse_rerank.contains(&rerank)
                {
                    let c = t.min_nprobe(b.build, rerank, 1, sample, floor(&best))?;
                    Tuner::<E>::consider(&mut best, c);
                }
            }
        }
    }

    // 2b. Refine nlist: half and double, with the winning code layout and rerank.
    if let Some(b) = best.clone() {
        for nlist in [b.build.nlist / 2, b.build.nlist * 2] {
            if nlist == 0 || nlist > opts.n || nlist == b.build.nlist {
                continue;
            }
            let build = BuildConfig { nlist, ..b.build };
            let c = t.min_nprobe(build, b.search.rerank, 1, sample, floor(&best))?;
            Tuner::<E>::consider(&mut best, c);
        }
    }

    // 3. Confirm on every query, raising nprobe if the sample was optimistic.
    let best = match best {
        Some(b) if sample => {
            t.min_nprobe(b.build, b.search.rerank, b.search.nprobe, false, None)?
        }
        other => other,
    };
    Ok(TuneOutcome {
        best,
        trace: t.trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of an index: recall rises with nprobe/nlist, code size and rerank; time grows
    /// with the lists probed, the list length and the rerank work. Enough to check that the
    /// search finds what a full grid would.
    struct Model {
        calls: usize,
        full_penalty: f64,
    }

    impl Model {
        fn recall(b: BuildConfig, s: SearchConfig) -> f64 {
            let coverage = (s.nprobe as f64 / b.nlist as f64).powf(0.35);
            let code = 1.0 - 0.4 / (b.pq_m as f64 * f64::from(b.pq_bits) / 16.0 + 1.0);
            let code = code + (1.0 - code) * (1.0 - 1.0 / (1.0 + s.rerank as f64));
            coverage * code
        }
        fn qps(b: BuildConfig, s: SearchConfig) -> f64 {
            let n = 100_000.0;
            let scan = s.nprobe as f64 * n / b.nlist as f64 * b.pq_m as f64 * 0.001;
            1e6 / (b.nlist as f64 + scan + s.rerank as f64 * 40.0 + 50.0)
        }
    }

    impl Evaluate for Model {
        fn evaluate(
            &mut self,
            b: BuildConfig,
            s: SearchConfig,
            sample: bool,
        ) -> Result<QueryResult, BenchError> {
            self.calls += 1;
            let penalty = if sample { 0.0 } else { self.full_penalty };
            Ok(QueryResult {
                nprobe: s.nprobe,
                rerank: s.rerank,
                recall: Self::recall(b, s) - penalty,
                qps: Self::qps(b, s),
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                nlist: Some(b.nlist),
                pq_m: Some(b.pq_m),
                pq_bits: Some(b.pq_bits),
                build_seconds: None,
                index_bytes: None,
                sharding: None,
                selectivity: None,
                ivf_flat_recall: None,
            })
        }
    }

    fn opts(target: f64) -> TuneOptions {
        TuneOptions::for_dataset(100_000, 32, target)
    }

    #[test]
    fn defaults_follow_the_dataset() {
        let o = opts(0.9);
        assert_eq!(o.nlist, 1024);
        assert_eq!(o.pq, vec![(16, 4), (8, 4), (8, 8)]);
    }

    #[test]
    fn finds_a_setting_reaching_the_target_with_few_measurements() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.0,
        };
        let o = opts(0.9);
        let out = tune(&mut model, &o).unwrap();
        let best = out.best.expect("the target is reachable");
        assert!(best.result.recall >= 0.9);
        // nprobe is minimal for its index and rerank.
        if best.search.nprobe > 1 {
            let below = SearchConfig {
                nprobe: best.search.nprobe - 1,
                ..best.search
            };
            assert!(Model::recall(best.build, below) < 0.9);
        }
        // Far fewer measurements than the grid it searched (3 layouts × 3 nlist × 6 rerank ×
        // up to 2048 nprobe).
        assert!(model.calls < 160, "{} calls", model.calls);
        assert_eq!(out.trace.len(), model.calls);

        // No setting on the searched builds and reranks is much faster while reaching the target.
        let mut grid_best = 0.0f64;
        for nlist in [512, 1024, 2048] {
            for &(pq_m, pq_bits) in &o.pq {
                for &rerank in &o.rerank_ladder {
                    let b = BuildConfig {
                        nlist,
                        pq_m,
                        pq_bits,
                    };
                    for nprobe in 1..=nlist {
                        let s = SearchConfig { nprobe, rerank };
                        if Model::recall(b, s) >= 0.9 {
                            grid_best = grid_best.max(Model::qps(b, s));
                            break;
                        }
                    }
                }
            }
        }
        assert!(
            best.result.qps >= 0.8 * grid_best,
            "{} vs {grid_best}",
            best.result.qps
        );
    }

    #[test]
    fn the_full_query_set_has_the_last_word() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.02,
        };
        let best = tune(&mut model, &opts(0.9)).unwrap().best.unwrap();
        assert!(best.result.recall >= 0.9);
        let full_recall = Model::recall(best.build, best.search) - 0.02;
        assert!((best.result.recall - full_recall).abs() < 1e-12);
    }

    #[test]
    fn without_sampling_every_measurement_uses_all_queries() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.02,
        };
        let o = TuneOptions {
            sampling: false,
            ..opts(0.9)
        };
        let out = tune(&mut model, &o).unwrap();
        assert!(out.best.unwrap().result.recall >= 0.9);
        assert!(out.trace.iter().all(|r| {
            let b = BuildConfig {
                nlist: r.nlist.unwrap(),
                pq_m: r.pq_m.unwrap(),
                pq_bits: r.pq_bits.unwrap(),
            };
            let s = SearchConfig {
                nprobe: r.nprobe,
                rerank: r.rerank,
            };
            (r.recall - (Model::recall(b, s) - 0.02)).abs() < 1e-12
        }));
    }

    #[test]
    fn ranking_prefers_median_latency_over_noisy_wall_clock() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.0,
        };
        let b = BuildConfig {
            nlist: 16,
            pq_m: 8,
            pq_bits: 4,
        };
        let s = SearchConfig {
            nprobe: 2,
            rerank: 0,
        };
        let mut r = model.evaluate(b, s, true).unwrap();
        r.qps = 100.0;
        r.p50_ms = 0.5;
        assert_eq!(throughput(&r), 2000.0);
        r.p50_ms = 0.0;
        assert_eq!(throughput(&r), 100.0);
    }

    #[test]
    fn unreachable_targets_give_no_answer() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.0,
        };
        let out = tune(&mut model, &opts(1.0)).unwrap();
        assert!(out.best.is_none());
        assert!(tune(&mut model, &opts(1.5)).is_err());
        assert!(tune(&mut model, &opts(0.0)).is_err());
    }

    #[test]
    fn settings_snippet_has_the_collection_keys() {
        let mut model = Model {
            calls: 0,
            full_penalty: 0.0,
        };
        let best = tune(&mut model, &opts(0.8)).unwrap().best.unwrap();
        let v = best.settings_json();
        for key in ["nlist", "pq_m", "pq_bits"] {
            assert!(v["ivf_pq_config"].get(key).is_some(), "{key}");
        }
        assert_eq!(v["search_config"]["nprobe"], best.search.nprobe);
        assert_eq!(v["search_config"]["rerank"], best.search.rerank);
    }
}
