//! Fuzzes the envelope decoder of the small framed files (cluster state, shard snapshot), new
//! layout and legacy layouts. Any input must give `Ok` with a
//! body inside the input, or a typed error; never a panic.
//!
//! Each input is tried for every kind, as is and with its header checksum forged to match, so
//! that the version, length and body checks behind the checksum are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::storage::envelope::{self, ALL_KINDS, HEADER_LEN};

fn check(data: &[u8]) {
    for kind in ALL_KINDS {
        if let Ok(d) = envelope::decode(kind, data) {
            let start = d.body.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + d.body.len() <= data.len());
            assert!(d.version >= kind.oldest && d.version <= kind.version);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_LEN {
        let mut forged = data.to_vec();
        let crc = crc32fast::hash(&forged[..28]);
        forged[28..32].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});
