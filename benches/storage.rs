//! Container costs: `open` must not grow with the body (it reads only header, table and
//! metadata); `verify` and the raw CRC-32 show the checksum throughput.
//!
//! `cargo bench --bench storage`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal::index::Metric;
use shoal::index::ivfpq::{IvfPqConfig, IvfPqIndex};
use shoal::storage::segment::{Verify, open_ivfpq_segment_with, write_ivfpq_segment};
use shoal::storage::{Container, ContainerWriter};

fn write_container(path: &std::path::Path, floats: usize) {
    let data: Vec<f32> = (0..floats).map(|i| i as f32).collect();
    let mut w = ContainerWriter::create(path).unwrap();
    w.write_section("vectors", &data).unwrap();
    w.write_section("ids", &(0..1000u64).collect::<Vec<_>>())
        .unwrap();
    w.finish(br#"{"kind":"bench"}"#).unwrap();
}

fn bench_container(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut open = c.benchmark_group("container_open");
    for mib in [1usize, 64] {
        let path = dir.path().join(format!("{mib}.shoal"));
        write_container(&path, mib << 18);
        open.bench_with_input(
            BenchmarkId::from_parameter(format!("{mib}MiB")),
            &path,
            |b, p| b.iter(|| black_box(Container::open(p).unwrap())),
        );
    }
    open.finish();

    let path = dir.path().join("64.shoal");
    let container = Container::open(&path).unwrap();
    let mut verify = c.benchmark_group("container_verify");
    verify.throughput(Throughput::Bytes(container.file_len()));
    verify.bench_function("64MiB", |b| b.iter(|| container.verify().unwrap()));
    verify.finish();

    let buf: Vec<u8> = (0..64usize << 20).map(|i| (i * 31) as u8).collect();
    let mut crc = c.benchmark_group("checksum");
    crc.throughput(Throughput::Bytes(buf.len() as u64));
    crc.bench_function("crc32fast_64MiB", |b| {
        b.iter(|| black_box(crc32fast::hash(&buf)))
    });
    crc.finish();
}

/// Opening a 50k x 128 IVF-PQ segment: header-only (restart path) against full verification.
fn bench_segment(c: &mut Criterion) {
    let (n, dim) = (50_000usize, 128usize);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let vectors: Vec<f32> = (0..n * dim)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let ids: Vec<u64> = (0..n as u64).collect();
    let index = IvfPqIndex::build(
        dim,
        &vectors,
        &ids,
        &IvfPqConfig::new(Metric::L2, 256, 32, 4),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.ivfpq");
    write_ivfpq_segment(&path, &index).unwrap();
    let mut group = c.benchmark_group("segment_open_50k_x_128");
    group.bench_function("header_only", |b| {
        b.iter(|| black_box(open_ivfpq_segment_with(&path, Verify::HeaderOnly).unwrap()))
    });
    group.bench_function("full_verify", |b| {
        b.iter(|| black_box(open_ivfpq_segment_with(&path, Verify::Full).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_container, bench_segment
}
criterion_main!(benches);
