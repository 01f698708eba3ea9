//! Fuzzes the container decoder: header, section table and metadata checks, then body
//! verification and section views. Any input must give `Ok` or a typed error, never a panic or
//! an out-of-bounds read; an accepted container only hands out sections inside the input.
//!
//! Each input is tried twice: as is, and with its two header checksums forged to match, so that
//! the fuzzer also reaches the structural checks that stand behind the checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::storage::{Container, format};

fn check(data: &[u8]) {
    // The pure decoder over the raw bytes, as `Container::open` runs it on a map.
    if let Ok(layout) = format::decode(data) {
        let _ = format::verify_body(data, &layout);
        for entry in &layout.sections {
            assert!(entry.range().end <= data.len());
        }
    }
    // The same through the container, with 64-byte aligned bytes like a map.
    if let Ok(container) = Container::from_bytes("fuzz-input", data) {
        let _ = container.verify();
        let _ = container.metadata();
        for info in container.sections() {
            let bytes = container
                .section_bytes(&info.name)
                .expect("listed section exists");
            assert_eq!(bytes.len() as u64, info.byte_len);
            let _ = container.section::<u8>(&info.name);
            let _ = container.section::<f32>(&info.name);
            let _ = container.section::<u64>(&info.name);
        }
    }
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
