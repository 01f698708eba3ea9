//! Files written by earlier versions still open: the byte fixtures in `tests/fixtures/` were
//! written by the code of their version (before any format change), and must decode the same
//! for as long as that version is supported.

use shoal::raft::state_machine::{MANIFEST_FILE, decode_manifest};
use shoal::shard::{PointId, Shard};
use std::path::Path;

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

#[test]
fn raft_snapshot_manifest_v1_decodes() {
    let bytes = std::fs::read(fixture("raft_snapshot_v1").join(MANIFEST_FILE)).unwrap();
    let m = decode_manifest(&bytes).expect("a version 1 manifest decodes");
    assert_eq!(m.meta.last_log_id.map(|l| l.index), Some(6));
    assert_eq!(m.files, vec![("list.bin".to_owned(), 11)]);
    let listed = std::fs::metadata(fixture("raft_snapshot_v1/list.bin"))
        .unwrap()
        .len();
    assert_eq!(listed, 11);
}

#[test]
fn shard_snapshot_v2_restores_its_points() {
    // Restoring links files into the snapshot's shard directory: work on a copy.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("shard_snapshot_v2/shard.snap"),
        dir.path().join("shard.snap"),
    )
    .unwrap();
    let shard = Shard::restore(dir.path(), false).expect("a version 2 shard snapshot restores");
    // Points 0..24 were written, 3 and 20 deleted.
    assert_eq!(shard.count(None), 22);
    let ids: Vec<PointId> = (0..24).map(PointId::Num).collect();
    let got: Vec<PointId> = shard.get(&ids, false, false).iter().map(|r| r.id).collect();
    let want: Vec<PointId> = (0..24)
        .filter(|i| *i != 3 && *i != 20)
        .map(PointId::Num)
        .collect();
    assert_eq!(got, want);
}
