//! In-process shard measurements: search QPS while a writer applies upserts, and snapshot time
//! and size. Uses only the shard's public API (and builds its config from JSON) so the same file
//! runs against older versions of the engine for before/after numbers.
//!
//! `cargo run --release --example shard_perf -- [n] [seconds] [snapshot dir root]`
//! (defaults: 200000 points × 128, 5 s per search run, a temporary directory).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::shard::{PointId, PointWrite, SearchRequest, Shard, ShardCommand, ShardConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DIM: usize = 128;

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

fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut total, mut linked) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        total += m.len();
        if m.nlink() > 1 {
            linked += m.len();
        }
    }
    (total, linked)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    let root = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root).unwrap();
    let config: ShardConfig = serde_json::from_value(serde_json::json!({
        "dim": DIM, "metric": "l2", "seal_threshold": 50_000, "nlist": 256,
        "pq_m": 64, "pq_bits": 4, "seed": 1
    }))
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<f32> = (0..64 * DIM)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    // A data directory where the engine supports one (sealed segments as files).
    let data = root.join("data");
    let shard = shoal_open(config, &data);
    let t = Instant::now();
    let mut index = 0;
    for start in (0..n).step_by(10_000) {
        let points = vectors(&mut rng, (n - start).min(10_000), &centres)
            .into_iter()
            .enumerate()
            .map(|(i, v)| PointWrite {
                id: PointId::Num((start + i) as u64),
                vector: v,
                payload: serde_json::json!({"g": (start + i) % 10})
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
        "loaded {n} in {:.1}s: {:?}",
        t.elapsed().as_secs_f64(),
        shard.stats()
    );

    // Snapshots: 5 into fresh directories, median time.
    let mut times = Vec::new();
    let mut sizes = (0, 0);
    for i in 0..5 {
        let dir = root.join(format!("snap{i}"));
        let t = Instant::now();
        shard.snapshot(&dir).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        sizes = dir_bytes(&dir);
    }
    let t = Instant::now();
    let restored = Shard::restore(&root.join("snap4"), true).unwrap();
    let restore_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(restored.stats().points, n);
    drop(restored);
    println!(
        "snapshot n={n}: median {:.1} ms (runs {:?}), {} bytes in the directory, {} of them hard links; restore {:.1} ms",
        median(times.clone()),
        times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>(),
        sizes.0,
        sizes.1,
        restore_ms
    );

    // Search QPS with 2 search threads, with and without a writer (2,000 points/s in batches
    // of 100, ids cycling over 5,000 new ids so the mutable segment stays small).
    let queries = vectors(&mut rng, 1000, &centres);
    for writer_on in [false, true] {
        let mut qps_runs = Vec::new();
        let mut writes_runs = Vec::new();
        for _ in 0..3 {
            let stop = Arc::new(AtomicBool::new(false));
            let written = Arc::new(AtomicU64::new(0));
            let writer = writer_on.then(|| {
                let (shard, stop, written) = (shard.clone(), stop.clone(), written.clone());
                let mut wrng = ChaCha8Rng::seed_from_u64(99);
                let centres = centres.clone();
                let mut next = index;
                std::thread::spawn(move || {
                    let mut k = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let points = vectors(&mut wrng, 100, &centres)
                            .into_iter()
                            .map(|v| {
                                k += 1;
                                PointWrite {
                                    id: PointId::Num(n as u64 + k % 5000),
                                    vector: v,
                                    payload: None,
                                }
                            })
                            .collect();
                        next += 1;
                        shard.apply(next, &ShardCommand::Upsert { points }).unwrap();
                        written.fetch_add(100, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50).saturating_sub(t.elapsed()));
                    }
                    next
                })
            });
            let done = Arc::new(AtomicU64::new(0));
            let t = Instant::now();
            let searchers: Vec<_> = (0..2)
                .map(|s| {
                    let (shard, queries, done) = (shard.clone(), queries.clone(), done.clone());
                    std::thread::spawn(move || {
                        let mut i = s;
                        while t.elapsed() < Duration::from_secs(secs) {
                            let q = &queries[i % queries.len()];
                            let hits = shard
                                .search(&SearchRequest {
                                    vector: q,
                                    limit: 10,
                                    offset: 0,
                                    filter: None,
                                    nprobe: 16,
                                    rerank: 4,
                                    exact: false,
                                    with_payload: true,
                                    with_vector: false,
                                })
                                .unwrap();
                            assert_eq!(hits.len(), 10);
                            done.fetch_add(1, Ordering::Relaxed);
                            i += 2;
                        }
                    })
                })
                .collect();
            for s in searchers {
                s.join().unwrap();
            }
            let elapsed = t.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            if let Some(w) = writer {
                index = w.join().unwrap();
            }
            shard.wait_for_builds();
            qps_runs.push(done.load(Ordering::Relaxed) as f64 / elapsed);
            writes_runs.push(written.load(Ordering::Relaxed) as f64 / elapsed);
        }
        println!(
            "search, 2 threads, writer {}: median {:.0} QPS (runs {:?}), writes {:.0} points/s",
            if writer_on { "on" } else { "off" },
            median(qps_runs.clone()),
            qps_runs
                .iter()
                .map(|q| format!("{q:.0}"))
                .collect::<Vec<_>>(),
            median(writes_runs)
        );
    }
}

/// `Shard::open` with a data directory where this version has it; the older engine only had
/// `Shard::new` (swap the body when building the "before" numbers).
fn shoal_open(config: ShardConfig, data: &Path) -> Shard {
    Shard::open(config, data).unwrap()
}
