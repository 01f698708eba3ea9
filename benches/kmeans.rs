//! k-means: one assignment pass (the cost of one Lloyd iteration) of 50k × 128 points to 256 and
//! 1024 centroids, GEMM vs pairwise SIMD kernels, plus one full training iteration.
//!
//! `cargo bench --bench kmeans`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::kmeans::{self, AssignMethod, KMeansConfig};

const N: usize = 50_000;
const DIM: usize = 128;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn assign(c: &mut Criterion) {
    let data = random(N * DIM, 1);
    let mut g = c.benchmark_group("assign_50k_x128");
    for k in [16usize, 64, 256, 1024] {
        let cents = random(k * DIM, 2);
        for (name, m) in [
            ("gemm", AssignMethod::Gemm),
            ("pairwise", AssignMethod::Pairwise),
        ] {
            g.bench_with_input(BenchmarkId::new(name, k), &k, |b, _| {
                b.iter(|| kmeans::assign_with(black_box(&data), DIM, black_box(&cents), m))
            });
        }
    }
    g.finish();
}

fn train_one_iter(c: &mut Criterion) {
    let data = random(N * DIM, 3);
    let mut g = c.benchmark_group("train_50k_x128_1iter");
    for k in [256usize, 1024] {
        let cfg = KMeansConfig {
            k,
            iters: 1,
            seed: 7,
            max_points_per_centroid: 256,
            spherical: false,
        };
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| kmeans::train(black_box(&data), DIM, &cfg))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = assign, train_one_iter
}
criterion_main!(benches);
