#![no_main]
//! big-ann `.fbin`/`.u8bin`/`.i8bin`/`.ibin` from arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use shoal::datasets::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::run(data, &[Format::Fbin, Format::U8bin, Format::I8bin, Format::Ibin]));
