//! Fuzzes the Raft snapshot `MANIFEST` decoder (framing, postcard body, path checks): what a
//! snapshot sender controls. Any input must decode or fail with a typed error, never a panic;
//! every path a decoded manifest lists has passed `check_snapshot_path`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::raft::state_machine::{check_snapshot_path, decode_manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_manifest(data) {
        for (path, _) in &m.files {
            assert!(check_snapshot_path(path).is_ok());
        }
    }
});
