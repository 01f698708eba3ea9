#![no_main]
//! numpy `.npy` headers and data from arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use shoal::datasets::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::run(data, &[Format::Npy]));
