//! Coarse probe: inner products of one query with every IVF centroid (`CoarseTable::dots`), at
//! each SIMD level the CPU runs, for nlist 1024 and 4096 × dim 128 and 384; and the 8-bit
//! approximate products with error bounds that shortlist the lists a probe scores exactly
//! (`Coarse8::approx_dots`, group `coarse8_dots`), at each of its levels.
//!
//! `cargo bench --bench coarse` (about half a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::coarse::CoarseTable;
use shoal::index::coarse8::{Coarse8, Level};
use shoal::index::distance::SimdLevel;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// One benchmark shape: `nlist` random centroids of `dim` dimensions and one query.
struct Shape {
    id: String,
    dim: usize,
    nlist: usize,
    centroids: Vec<f32>,
    q: Vec<f32>,
}

/// nlist 1024 and 4096 × dim 128 and 384.
fn shapes() -> impl Iterator<Item = Shape> {
    [128usize, 384].into_iter().flat_map(|dim| {
        [1024usize, 4096].into_iter().map(move |nlist| Shape {
            id: format!("{nlist}x{dim}"),
            dim,
            nlist,
            centroids: random(nlist * dim, 1),
            q: random(dim, 2),
        })
    })
}

fn dots(c: &mut Criterion) {
    let mut g = c.benchmark_group("coarse_dots");
    for s in shapes() {
        let mut out = vec![0.0f32; s.nlist];
        g.throughput(Throughput::Elements((s.nlist * s.dim) as u64));
        for (name, level) in [
            ("scalar", SimdLevel::Scalar),
            ("avx2", SimdLevel::Avx2),
            ("avx512", SimdLevel::Avx512),
        ] {
            let Some(table) = CoarseTable::with_level(&s.centroids, s.dim, level) else {
                continue;
            };
            g.bench_function(BenchmarkId::new(name, &s.id), |b| {
                b.iter(|| table.dots(black_box(&s.q), black_box(&mut out)))
            });
        }
    }
    g.finish();
}

fn dots8(c: &mut Criterion) {
    let mut g = c.benchmark_group("coarse8_dots");
    for s in shapes() {
        let mut out = vec![0.0f32; s.nlist];
        g.throughput(Throughput::Elements((s.nlist * s.dim) as u64));
        for level in [Level::Scalar, Level::Avx2, Level::Avx512Vnni] {
            let Some(table) = Coarse8::with_level(&s.centroids, s.dim, level) else {
                continue;
            };
            g.bench_function(BenchmarkId::new(format!("{level:?}"), &s.id), |b| {
                b.iter(|| table.approx_dots(black_box(&s.q), black_box(&mut out)))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    targets = dots, dots8
}
criterion_main!(benches);
