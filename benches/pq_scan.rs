//! PQ code scanning throughput (codes per second): 4-bit fast-scan at each SIMD level, and 8-bit
//! float-table scanning, over one 8192-vector list that stays in cache (the compute bound; a real
//! query also pays memory bandwidth). The threshold admits about ten candidates, as a top-k does.
//! Also the quantisation of a 4-bit scan's float table at each level, which a query pays once per
//! probed list on L2 (tables per list): at nlist 4096 it rivals the scan of the list itself.
//!
//! `cargo bench --bench pq_scan` (under a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::index::fastscan::{self, SimdLevel};
use shoal::index::pq;

const N: usize = 8192;

fn fastscan4(c: &mut Criterion) {
    let mut g = c.benchmark_group("fastscan4");
    g.throughput(Throughput::Elements(N as u64));
    for m in [16usize, 64, 192] {
        let mut rng = ChaCha8Rng::seed_from_u64(m as u64);
        let codes: Vec<u8> = (0..N * m).map(|_| rng.random_range(0..16u8)).collect();
        let mut packed = Vec::new();
        fastscan::pack_codes(&codes, m, &mut packed);
        let lut_f: Vec<f32> = (0..m * 16).map(|_| rng.random_range(0.0..1.0f32)).collect();
        let mut lut = vec![0u8; fastscan::padded_m(m) * 16];
        fastscan::quantize_lut(&lut_f, m, &mut lut);
        // Threshold = the 10th smallest sum.
        let mut sums = Vec::new();
        fastscan::scan_list(SimdLevel::Scalar, &packed, N, m, &lut, u16::MAX, |_, s| {
            sums.push(s);
            u16::MAX
        });
        sums.sort_unstable();
        let threshold = sums[9];
        for level in SimdLevel::available() {
            g.bench_with_input(BenchmarkId::new(format!("{level:?}"), m), &m, |b, &m| {
                b.iter(|| {
                    let mut hits = 0usize;
                    fastscan::scan_list(
                        level,
                        black_box(&packed),
                        N,
                        m,
                        &lut,
                        threshold,
                        |_, _| {
                            hits += 1;
                            threshold
                        },
                    );
                    hits
                })
            });
        }
    }
    g.finish();
}

fn quantize_lut(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantize_lut");
    for m in [16usize, 64, 192] {
        let mut rng = ChaCha8Rng::seed_from_u64(m as u64);
        let lut: Vec<f32> = (0..m * 16).map(|_| rng.random_range(0.0..1.0f32)).collect();
        let mut out = vec![0u8; fastscan::padded_m(m) * 16];
        g.throughput(Throughput::Elements(m as u64));
        for level in SimdLevel::available() {
            g.bench_with_input(BenchmarkId::new(format!("{level:?}"), m), &m, |b, &m| {
                b.iter(|| fastscan::quantize_lut_with(level, black_box(&lut), m, &mut out))
            });
        }
    }
    g.finish();
}

fn codes8(c: &mut Criterion) {
    let mut g = c.benchmark_group("codes8");
    g.throughput(Throughput::Elements(N as u64));
    for m in [16usize, 32, 48] {
        let mut rng = ChaCha8Rng::seed_from_u64(m as u64);
        let codes: Vec<u8> = (0..N * m).map(|_| rng.random()).collect();
        let lut: Vec<[f32; 256]> = (0..m)
            .map(|_| std::array::from_fn(|_| rng.random_range(0.0..1.0f32)))
            .collect();
        let mut dists = Vec::new();
        pq::scan_codes8(&codes, m, &lut, 0.0, f32::INFINITY, |_, d| {
            dists.push(d);
            f32::INFINITY
        });
        dists.sort_unstable_by(f32::total_cmp);
        let threshold = dists[9];
        g.bench_with_input(BenchmarkId::new("scalar", m), &m, |b, &m| {
            b.iter(|| {
                let mut hits = 0usize;
                pq::scan_codes8(black_box(&codes), m, &lut, 0.0, threshold, |_, _| {
                    hits += 1;
                    threshold
                });
                hits
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = fastscan4, quantize_lut, codes8
}
criterion_main!(benches);
