//! TopK selection: the common case (random order, most candidates rejected by the threshold) and
//! the worst case (every candidate better than the last, so each one enters the heap).
//!
//! `cargo bench --bench topk` (a few seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::TopK;

const N: usize = 100_000;

fn push(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let random: Vec<f32> = (0..N).map(|_| rng.random::<f32>()).collect();
    let descending: Vec<f32> = (0..N).map(|i| 1.0 - i as f32 / N as f32).collect();
    let mut g = c.benchmark_group("topk_push_100k");
    g.throughput(Throughput::Elements(N as u64));
    for k in [10usize, 100, 1000] {
        for (name, data) in [("random", &random), ("descending", &descending)] {
            g.bench_with_input(BenchmarkId::new(name, k), &k, |b, &k| {
                b.iter(|| {
                    let mut top = TopK::new(k);
                    for (i, &d) in data.iter().enumerate() {
                        top.push(i as u64, d);
                    }
                    black_box(top.into_sorted_vec())
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600))
        .sample_size(20);
    targets = push
}
criterion_main!(benches);
