//! End-to-end IVF-PQ query latency (one query per call, k = 10) on a synthetic clustered
//! 100k × 128 L2 index (nlist 256, nprobe 16): 4-bit fast-scan (pq_m 64) and 8-bit (pq_m 16), with
//! and without exact re-ranking. Building the two indexes takes most of the run.
//!
//! `cargo bench --bench ivfpq_query` (about a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::Metric;
use shoal::index::ivfpq::{IvfPqConfig, IvfPqIndex, SearchParams};

const DIM: usize = 128;
const N: usize = 100_000;
const LATENT: usize = 16;

/// SIFT-like: points near 500 cluster centres in a 16-d latent space, projected to 128-d, plus
/// noise, clipped at zero.
fn sift_like(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let proj: Vec<f32> = (0..LATENT * DIM)
        .map(|_| rng.random_range(-1.0..1.0f32))
        .collect();
    let centres: Vec<f32> = (0..500 * LATENT)
        .map(|_| rng.random_range(-3.0..3.0f32))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * DIM);
    let mut z = [0.0f32; LATENT];
    for _ in 0..n {
        let c = rng.random_range(0..500);
        for (l, zl) in z.iter_mut().enumerate() {
            *zl = centres[c * LATENT + l] + rng.random_range(-1.0..1.0f32);
        }
        for d in 0..DIM {
            let x: f32 = (0..LATENT).map(|l| z[l] * proj[l * DIM + d]).sum::<f32>()
                + rng.random_range(-0.5..0.5f32);
            out.push((x * 8.0 + 20.0).max(0.0));
        }
    }
    out
}

fn query(c: &mut Criterion) {
    let base = sift_like(N, 1);
    let queries = sift_like(200, 2);
    let ids: Vec<u64> = (0..N as u64).collect();
    let mut g = c.benchmark_group("ivfpq_query_100k_128");
    g.throughput(Throughput::Elements(1));
    for (bits, m) in [(4u8, 64usize), (8, 16)] {
        let index = IvfPqIndex::build(
            DIM,
            &base,
            &ids,
            &IvfPqConfig::new(Metric::L2, 256, m, bits),
        )
        .unwrap();
        for rerank in [0usize, 4] {
            let params = SearchParams { nprobe: 16, rerank };
            let mut qi = 0;
            g.bench_with_input(
                BenchmarkId::new(format!("pq{m}x{bits}_nprobe16"), format!("rerank{rerank}")),
                &params,
                |b, p| {
                    b.iter(|| {
                        qi = (qi + 1) % 200;
                        black_box(index.search(&queries[qi * DIM..(qi + 1) * DIM], 10, p, None))
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(10);
    targets = query
}
criterion_main!(benches);
