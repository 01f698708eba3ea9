//! Fuzzes opening an IVF-PQ segment from hostile bytes: container decoding, then
//! `IvfPqIndex::from_parts` over whatever sections survive, then the 8-bit code sections if any
//! (`attach_sq8_sections`, shard segment version 3), then a search and an exact scan of some
//! rows. Any input must give a typed error or a working index, never a panic.
//!
//! Seed it with `tests/fixtures/ivfpq_segment_v1.shoal` and the `*.seg` files of
//! `tests/fixtures/shard_segment_v3/`; inputs are also tried with their header
//! checksums forged, and (if they open) verification is skipped, so that damaged sections reach
//! `from_parts` and the search.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::index::ivfpq::SearchParams;
use shoal::storage::Container;
use shoal::storage::segment::{attach_sq8_sections, index_from_container};

fn check(data: &[u8]) {
    let Ok(container) = Container::from_bytes("fuzz-segment", data) else {
        return;
    };
    let Ok(mut index) = index_from_container(&container) else {
        return;
    };
    let with_codes = attach_sq8_sections(&container, &mut index).is_ok();
    let query = vec![0.5f32; index.dim()];
    for params in [
        SearchParams {
            nprobe: 1,
            rerank: 0,
        },
        SearchParams {
            nprobe: 64,
            rerank: 4,
        },
    ] {
        let hits = index.search(&query, 5, &params, None);
        assert!(hits.len() <= 5);
    }
    let rows: Vec<u32> = (0..index.len().min(300) as u32).rev().collect();
    let exact = index.exact_among(&query, 5, &rows);
    assert!(exact.len() <= 5);
    assert!(!with_codes || index.sq8().is_some());
    let _ = index.memory_bytes();
}

/// Makes the table+metadata CRC (bytes 56..60) and the header CRC (60..64) match the input.
fn forge_checksums(data: &mut [u8]) {
    if data.len() < 64 {
        return;
    }
    let mut table_offset = [0u8; 8];
    table_offset.copy_from_slice(&data[24..32]);
    if let Some(tail) = usize::try_from(u64::from_le_bytes(table_offset))
        .ok()
        .and_then(|at| data.get(at..))
    {
        let crc = crc32fast::hash(tail);
        data[56..60].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&data[..60]);
    data[60..64].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut forged = data.to_vec();
    forge_checksums(&mut forged);
    check(&forged);
});
