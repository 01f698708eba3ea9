//! Distance kernels: ours at each SIMD level vs the `simsimd` crate vs portable code, for one pair
//! and for one query against 1024 contiguous rows (an inverted list, re-ranking, centroids).
//!
//! `cargo bench --bench distance` (about a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::distance::{self, Kernels, SimdLevel};

const DIMS: [usize; 2] = [128, 384];
const ROWS: usize = 1024;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn levels() -> Vec<(&'static str, Kernels)> {
    [
        ("scalar", SimdLevel::Scalar),
        ("avx2", SimdLevel::Avx2),
        ("avx512", SimdLevel::Avx512),
    ]
    .into_iter()
    .filter_map(|(n, l)| Kernels::for_level(l).map(|k| (n, k)))
    .collect()
}

fn pair(c: &mut Criterion) {
    for op in ["l2", "dot"] {
        let mut g = c.benchmark_group(format!("pair_{op}"));
        for dim in DIMS {
            let a = random(dim, 1);
            let b = random(dim, 2);
            g.throughput(Throughput::Elements(dim as u64));
            for (name, k) in levels() {
                g.bench_with_input(BenchmarkId::new(name, dim), &dim, |bch, _| {
                    bch.iter(|| match op {
                        "l2" => k.l2_sq(black_box(&a), black_box(&b)),
                        _ => k.dot(black_box(&a), black_box(&b)),
                    })
                });
            }
            g.bench_with_input(BenchmarkId::new("dispatched", dim), &dim, |bch, _| {
                bch.iter(|| match op {
                    "l2" => distance::l2_sq(black_box(&a), black_box(&b)),
                    _ => distance::dot(black_box(&a), black_box(&b)),
                })
            });
            g.bench_with_input(BenchmarkId::new("simsimd", dim), &dim, |bch, _| {
                bch.iter(|| match op {
                    "l2" => distance::simsimd_l2_sq(black_box(&a), black_box(&b)),
                    _ => distance::simsimd_dot(black_box(&a), black_box(&b)),
                })
            });
        }
        g.finish();
    }
}

fn batch(c: &mut Criterion) {
    for op in ["l2", "dot"] {
        let mut g = c.benchmark_group(format!("batch{ROWS}_{op}"));
        for dim in DIMS {
            let q = random(dim, 3);
            let v = random(dim * ROWS, 4);
            let mut out = vec![0.0f32; ROWS];
            g.throughput(Throughput::Elements((dim * ROWS) as u64));
            for (name, k) in levels() {
                g.bench_with_input(BenchmarkId::new(name, dim), &dim, |bch, _| {
                    bch.iter(|| {
                        match op {
                            "l2" => k.l2_sq_batch(black_box(&q), black_box(&v), dim, &mut out),
                            _ => k.dot_batch(black_box(&q), black_box(&v), dim, &mut out),
                        }
                        black_box(&out);
                    })
                });
            }
            let best = Kernels::best();
            g.bench_with_input(BenchmarkId::new("pair_loop_best", dim), &dim, |bch, _| {
                bch.iter(|| {
                    for (o, row) in out.iter_mut().zip(v.chunks_exact(dim)) {
                        *o = match op {
                            "l2" => best.l2_sq(black_box(&q), row),
                            _ => best.dot(black_box(&q), row),
                        };
                    }
                    black_box(&out);
                })
            });
            g.bench_with_input(
                BenchmarkId::new("pair_loop_simsimd", dim),
                &dim,
                |bch, _| {
                    bch.iter(|| {
                        for (o, row) in out.iter_mut().zip(v.chunks_exact(dim)) {
                            *o = match op {
                                "l2" => distance::simsimd_l2_sq(black_box(&q), row),
                                _ => distance::simsimd_dot(black_box(&q), row),
                            };
                        }
                        black_box(&out);
                    })
                },
            );
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(30);
    targets = pair, batch
}
criterion_main!(benches);
