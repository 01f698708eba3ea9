//! Container costs: `open` must not grow with the body (it reads only header, table and
//! metadata); `verify` and the raw CRC-32 show the checksum throughput.
//!
//! `cargo bench --bench storage`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_container
}
criterion_main!(benches);
