//! Fuzzes the cluster service's decoders (service 1 on the internal port): a reply
//! (`ClusterReply::decode`, typed results included) and a forwarded request
//! (`cluster::rpc::unwrap_forwarded`). Both come from another node; any input must decode or
//! fail with an error, never panic or recurse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::cluster::rpc::{ClusterReply, unwrap_forwarded};

fuzz_target!(|data: &[u8]| {
    let _ = ClusterReply::decode(data);
    let _ = unwrap_forwarded(data);
});
