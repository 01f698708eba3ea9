//! The exact scan of a filter's matches in a sealed segment: one query over a random 1% (and
//! 0.3%, 3%) of a segment's rows, through raw `f32` vectors against through the 8-bit codes
//! ([`IvfPqIndex::exact_among`] without and with [`IvfPqIndex::with_sq8`]). Both give the same
//! answer; the codes are a quarter of the bytes.
//!
//! On the shared MiniLM set (`SHOAL_BENCH_DATASET=/work/shared/datasets/debian-minilm-384-cos.f16.npz`,
//! its first 29k rows: the size of one of its two segments) or, without it, 29k synthetic 384-d
//! unit vectors. `cargo bench --bench exact_filtered`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::Metric;
use shoal::index::ivfpq::{IvfPqConfig, IvfPqIndex};

const ROWS: usize = 29_000;

fn vectors() -> (usize, Vec<f32>, Vec<f32>) {
    if let Some(path) = std::env::var_os("SHOAL_BENCH_DATASET").map(PathBuf::from) {
        let options = shoal::datasets::LoadOptions {
            max_base: Some(ROWS),
            ..Default::default()
        };
        let d = shoal::datasets::load_with(&path, options).expect("the dataset loads");
        let dim = d.base.ncols();
        let base = d.base.iter().copied().collect();
        let queries = d.queries.iter().take(200 * dim).copied().collect();
        return (dim, base, queries);
    }
    let dim = 384;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut unit = |n: usize| -> Vec<f32> {
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        for row in v.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    (dim, unit(ROWS), unit(200))
}

fn exact(c: &mut Criterion) {
    let (dim, base, queries) = vectors();
    let n = base.len() / dim;
    let ids: Vec<u64> = (0..n as u64).collect();
    let config = IvfPqConfig::for_size(Metric::Cosine, dim, n);
    let raw = IvfPqIndex::build(dim, &base, &ids, &config).expect("the index builds");
    let coded = raw.clone().with_sq8().expect("codes");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut group = c.benchmark_group("exact_filtered");
    for share in [0.003, 0.01, 0.03, 1.0] {
        // Shuffled: a segment hands over a filter's matches as positions in list order, which
        // are scattered over the rows.
        let sets: Vec<Vec<u32>> = (0..64)
            .map(|_| {
                let mut set: Vec<u32> = (0..n as u32)
                    .filter(|_| rng.random_range(0.0..1.0) < share)
                    .collect();
                set.shuffle(&mut rng);
                set
            })
            .collect();
        // How many rows the codes leave to score exactly (the rest is the codes' pass).
        let sq8 = coded.sq8().expect("codes");
        let mut rescored = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let mut q = queries[(i % 200) * dim..(i % 200 + 1) * dim].to_vec();
            shoal::index::distance::normalize(&mut q);
            let count = std::cell::Cell::new(0usize);
            sq8.exact_top_k(
                &q,
                10,
                set,
                |r| {
                    count.set(count.get() + 1);
                    1.0 - shoal::index::distance::dot(&q, raw.vector(r).unwrap())
                },
                |_| {},
            );
            rescored.push(count.get());
        }
        rescored.sort_unstable();
        eprintln!(
            "share {share}: {} matches, rows scored exactly: median {}, max {}",
            sets[0].len(),
            rescored[rescored.len() / 2],
            rescored[rescored.len() - 1]
        );
        for (name, index) in [("f32", &raw), ("sq8", &coded)] {
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, share), &share, |b, _| {
                b.iter(|| {
                    i += 1;
                    let q = &queries[(i % 200) * dim..(i % 200 + 1) * dim];
                    black_box(index.exact_among(q, 10, &sets[i % sets.len()]))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = exact
}
criterion_main!(benches);
