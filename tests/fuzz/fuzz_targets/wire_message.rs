//! Fuzzes the internal port's post-authentication decoder (`WireMsg`: Raft RPCs, snapshot
//! frames, app requests). Any input must decode or fail with a typed error, without a panic,
//! deep recursion or an allocation out of proportion to the input (`-rss_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::raft::tcp::wire::decode_message;

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data);
});
