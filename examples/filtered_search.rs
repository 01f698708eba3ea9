//! Filtered against unfiltered search in one process: QPS and recall@10 at 0.1%, 1%, 10% and 50%
//! selectivity on one shard (clustered 128-d vectors, 4 sealed IVF-PQ segments of 50k rows).
//!
//! `cargo run --release --example filtered_search -- [n] [rounds] [noindex]`
//! (defaults: 200000 points, 5 rounds). The filter is a range on an integer field `bucket`
//! (uniform in 0..1000); unless `noindex` is given the field gets an integer payload index. Each
//! round runs every workload once, one after the other (the machine is shared and noisy: the
//! rounds alternate workloads and the medians are reported, with each filtered QPS as a ratio of
//! the unfiltered QPS of the same run). Recall is against an exact filtered search.
//!
//! Uses only the shard's public API and builds its config from JSON; the index creation is the
//! one block to drop to run the file against an engine without payload indexes.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::shard::{
    CompiledFilter, Filter, PointId, PointWrite, SearchRequest, Shard, ShardCommand, ShardConfig,
};
use std::collections::HashSet;
use std::time::Instant;

const DIM: usize = 128;
const K: usize = 10;

fn vectors(rng: &mut ChaCha8Rng, n: usize, centres: &[f32]) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = rng.random_range(0..centres.len() / DIM);
            (0..DIM)
                .map(|d| centres[c * DIM + d] + rng.random_range(-0.5f32..0.5))
                .collect()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn request<'a>(q: &'a [f32], filter: Option<&'a CompiledFilter>, exact: bool) -> SearchRequest<'a> {
    SearchRequest {
        vector: q,
        limit: K,
        offset: 0,
        filter,
        nprobe: 8,
        rerank: 2,
        exact,
        with_payload: false,
        with_vector: false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let no_index = args.iter().any(|a| a == "noindex");
    let config: ShardConfig = serde_json::from_value(serde_json::json!({
        "dim": DIM, "metric": "l2", "seal_threshold": 50_000, "nlist": 256,
        "pq_m": 64, "pq_bits": 4, "seed": 1
    }))
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<f32> = (0..64 * DIM)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    let shard = Shard::new_inline_builds(config);
    let t = Instant::now();
    let mut index = 0;
    // INDEX-BEGIN
    if !no_index {
        index += 1;
        shard
            .apply(
                index,
                &ShardCommand::CreateFieldIndex {
                    field: "bucket".into(),
                    field_type: shoal::shard::PayloadFieldType::Integer,
                },
            )
            .unwrap();
    }
    // INDEX-END
    for start in (0..n).step_by(10_000) {
        let points = vectors(&mut rng, (n - start).min(10_000), &centres)
            .into_iter()
            .enumerate()
            .map(|(i, v)| PointWrite {
                id: PointId::Num((start + i) as u64),
                vector: v,
                payload: serde_json::json!({"bucket": rng.random_range(0..1000), "name": format!("p{i}")})
                    .as_object()
                    .cloned(),
            })
            .collect();
        index += 1;
        shard
            .apply(index, &ShardCommand::Upsert { points })
            .unwrap();
    }
    shard.wait_for_builds();
    eprintln!(
        "loaded {n} in {:.1}s (index: {}): {:?}",
        t.elapsed().as_secs_f64(),
        !no_index,
        shard.stats()
    );
    let queries = vectors(&mut rng, 200, &centres);
    let workloads: Vec<(String, Option<CompiledFilter>)> =
        [None, Some(1), Some(10), Some(100), Some(500)]
            .into_iter()
            .map(|lt| match lt {
                None => ("none".to_string(), None),
                Some(lt) => {
                    let f: Filter = serde_json::from_value(
                        serde_json::json!({"must": [{"key": "bucket", "range": {"lt": lt}}]}),
                    )
                    .unwrap();
                    (
                        format!("{:.1}%", lt as f64 / 10.0),
                        Some(f.compile().unwrap()),
                    )
                }
            })
            .collect();
    // Recall against exact filtered search.
    let mut recalls = Vec::new();
    for (_, f) in &workloads {
        let mut found = 0;
        let mut total = 0;
        for q in &queries {
            let truth: HashSet<PointId> = shard
                .search(&request(q, f.as_ref(), true))
                .unwrap()
                .into_iter()
                .map(|h| h.record.id)
                .collect();
            let got = shard.search(&request(q, f.as_ref(), false)).unwrap();
            found += got.iter().filter(|h| truth.contains(&h.record.id)).count();
            total += truth.len();
        }
        recalls.push(found as f64 / total.max(1) as f64);
    }
    let mut qps: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    for _ in 0..rounds {
        let mut this = Vec::new();
        for (_, f) in &workloads {
            let t = Instant::now();
            for q in &queries {
                std::hint::black_box(shard.search(&request(q, f.as_ref(), false)).unwrap());
            }
            this.push(queries.len() as f64 / t.elapsed().as_secs_f64());
        }
        for (i, q) in this.iter().enumerate() {
            qps[i].push(*q);
            ratios[i].push(q / this[0]);
        }
    }
    println!("selectivity  recall@10  QPS (median of {rounds})  × unfiltered (median ratio)");
    for (i, (name, _)) in workloads.iter().enumerate() {
        println!(
            "{name:>11}  {:>9.3}  {:>22.0}  {:>27.2}",
            recalls[i],
            median(qps[i].clone()),
            median(ratios[i].clone())
        );
    }
}
