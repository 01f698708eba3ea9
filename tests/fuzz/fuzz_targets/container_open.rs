//! Fuzzes the container decoder: header, section table and metadata checks, then body
//! verification and section views. Any input must give `Ok` or a typed error, never a panic or
//! an out-of-bounds read; an accepted container only hands out sections inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::storage::{Container, format};

fuzz_target!(|data: &[u8]| {
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
            let bytes = container.section_bytes(&info.name).expect("listed section exists");
            assert_eq!(bytes.len() as u64, info.byte_len);
            let _ = container.section::<u8>(&info.name);
            let _ = container.section::<f32>(&info.name);
            let _ = container.section::<u64>(&info.name);
        }
    }
});
