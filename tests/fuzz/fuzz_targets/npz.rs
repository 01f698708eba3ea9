#![no_main]
//! `.npz` zip archives (central directory, zip64 fields, deflate members) from arbitrary bytes.
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(file)) = shoal::datasets::npy::npz_member_from_bytes("base", data.to_vec()) {
        common::exercise(&file);
    }
});
