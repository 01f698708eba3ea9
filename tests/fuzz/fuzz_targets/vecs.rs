#![no_main]
//! texmex `.fvecs`/`.ivecs`/`.bvecs` from arbitrary bytes: never panic, never allocate absurdly.
use libfuzzer_sys::fuzz_target;
use shoal::datasets::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::run(data, &[Format::Fvecs, Format::Ivecs, Format::Bvecs]));
