//! Fuzzes the decoder of a sealed segment's payload-index section (`storage::payload_index`).
//! Any input must give a typed error or an index whose every row number (in bitmaps and sorted
//! pairs) lies inside the segment it claims; never a panic, never an allocation out of proportion
//! to the input.
//!
//! Seed it with sections from `tests/fixtures/shard_segment_v2/*.seg` (the bytes of the
//! `payload_index` section), or start from nothing: the layout is small enough to be found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::storage::payload_index::{check_rows, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = decode(data) {
        assert!(check_rows(&index));
        // What decodes re-encodes to bytes that decode to the same index (the bitmaps' bytes may
        // differ: the portable format allows several encodings of one set).
        assert_eq!(decode(&encode(&index)).as_ref(), Ok(&index));
    }
});
