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

/// Copies every file of fixture directory `rel` into a fresh temporary directory (restoring
/// links files into the snapshot's shard directory, so it works on a copy).
fn copy_of(rel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(rel)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

/// `tests/fixtures/shard_snapshot_v4` is the v2 fixture's shard snapshotted again by the build
/// that introduced the storage envelope (format version 4; `SHOAL_WRITE_FIXTURES=1` writes it
/// when it is missing, never regenerate it). It must restore the same points in every later
/// build, and a forged newer version is refused by name.
#[test]
fn shard_snapshot_v4_restores_its_points() {
    let v4 = fixture("shard_snapshot_v4");
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() && !v4.exists() {
        let from = copy_of("shard_snapshot_v2");
        let shard = Shard::restore(from.path(), false).unwrap();
        shard.snapshot(&v4).unwrap();
    }
    let bytes = std::fs::read(v4.join("shard.snap")).unwrap();
    assert_eq!(&bytes[..8], b"\x89SHS\r\n\x1a\n");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 4);
    let dir = copy_of("shard_snapshot_v4");
    let shard = Shard::restore(dir.path(), false).expect("a version 4 shard snapshot restores");
    assert_eq!(shard.count(None), 22);
    let ids: Vec<PointId> = (0..24).map(PointId::Num).collect();
    let old_dir = copy_of("shard_snapshot_v2");
    let old = Shard::restore(old_dir.path(), false).unwrap();
    assert_eq!(shard.get(&ids, true, true), old.get(&ids, true, true));

    // Version 5 with a valid header checksum: "upgrade", not a misread.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&5u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join("shard.snap"), &newer).unwrap();
    let err = Shard::restore(dir.path(), false).err().unwrap().to_string();
    assert!(
        err.contains("version 5") && err.contains("upgrade"),
        "{err}"
    );
}
