//! Fuzzes a shard snapshot's body (`shard.snap`, [`shoal::shard::snapshot`]): the postcard body,
//! payload schema and deleted-vector bits behind the envelope's checksums, which a replica reads
//! from a snapshot another node sent. Any body, under every format version that has one, must
//! restore a shard or fail with a typed error, never panic or allocate beyond the input's size.
//!
//! The input's first byte picks the version (2 to the current one); the rest is the body, put
//! in a valid envelope so the decoding behind the checksums is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::shard::Shard;
use shoal::storage::envelope::{self, SHARD_SNAPSHOT};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let versions = SHARD_SNAPSHOT.version - 1;
    let version = 2 + u32::from(pick) % versions;
    let mut file = envelope::encode(&SHARD_SNAPSHOT, body);
    file[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&file[..28]);
    file[28..32].copy_from_slice(&crc.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(shoal::shard::snapshot::FILE_NAME), &file).unwrap();
    let _ = Shard::restore(dir.path(), false);
});
