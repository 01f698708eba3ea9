//! Fuzzes the internal port's pre-authentication decoder: what an unauthenticated peer can make
//! the server parse. Any input must decode or fail with a typed error; inputs above the
//! handshake cap are refused without being parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::raft::tcp::wire::{MAX_HANDSHAKE_FRAME, decode_handshake};

fuzz_target!(|data: &[u8]| {
    let r = decode_handshake(data);
    if data.len() > MAX_HANDSHAKE_FRAME {
        assert!(r.is_err());
    }
});
