//! Files written by earlier versions still open: the byte fixtures in `tests/fixtures/` were
//! written by the code of their version (before any format change), and must decode the same
//! for as long as that version is supported.

use shoal::raft::manifest::{self, ManifestError};
use shoal::raft::state_machine::{
    MANIFEST_FILE, MANIFEST_MAGIC, decode_manifest, encode_manifest, verify_snapshot_dir,
};
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

/// `tests/fixtures/raft_snapshot_v2` is the v1 fixture's manifest written again by the build
/// that introduced manifest version 2 (`SHOAL_WRITE_FIXTURES=1` writes it when it is missing,
/// never regenerate it). It must decode to what the v1 fixture says, this build must write the
/// same bytes, and forged versions are refused by name.
#[test]
fn raft_snapshot_manifest_v2_decodes() {
    let v1 =
        decode_manifest(&std::fs::read(fixture("raft_snapshot_v1").join(MANIFEST_FILE)).unwrap())
            .unwrap();
    let v2 = fixture("raft_snapshot_v2");
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() && !v2.exists() {
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::copy(fixture("raft_snapshot_v1/list.bin"), v2.join("list.bin")).unwrap();
        std::fs::write(v2.join(MANIFEST_FILE), encode_manifest(&v1).unwrap()).unwrap();
    }
    let bytes = std::fs::read(v2.join(MANIFEST_FILE)).unwrap();
    assert_eq!(bytes[..8], MANIFEST_MAGIC);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    let m = decode_manifest(&bytes).expect("a version 2 manifest decodes");
    assert_eq!(m, v1);
    assert_eq!(encode_manifest(&m).unwrap(), bytes, "the encoding changed");
    verify_snapshot_dir(&v2, &m.meta).expect("the fixture directory matches its manifest");

    // Version 3 with a valid header checksum: "upgrade", not a misread.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        manifest::unframe(&newer),
        Err(ManifestError::UpgradeRequired {
            found: 3,
            supported: 2
        })
    );
    let err = decode_manifest(&newer).unwrap_err().to_string();
    assert!(
        err.contains("version 3") && err.contains("upgrade"),
        "{err}"
    );
}

/// The manifest's magic is none of the storage envelope's, and none of their legacy magics:
/// no framed file of shoal is read as another kind.
#[test]
fn the_raft_manifest_has_a_magic_of_its_own() {
    for kind in shoal::storage::envelope::ALL_KINDS {
        assert_ne!(kind.magic, MANIFEST_MAGIC, "{}", kind.name);
        if let Some(legacy) = &kind.legacy {
            assert_ne!(legacy.magic, MANIFEST_MAGIC, "{}", kind.name);
        }
    }
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

    // A version above this build's with a valid header checksum: "upgrade", not a misread.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join("shard.snap"), &newer).unwrap();
    let err = Shard::restore(dir.path(), false).err().unwrap().to_string();
    assert!(
        err.contains("version 99") && err.contains("upgrade"),
        "{err}"
    );
}

/// `tests/fixtures/shard_snapshot_v5` is the v2 fixture's shard after the vectors of points 1,
/// 2 and 5 were deleted, snapshotted by the build that introduced format version 5 (each
/// segment's rows without a vector; `SHOAL_WRITE_FIXTURES=1` writes it when it is missing, never
/// regenerate it). Every later build must restore those points without their vectors.
#[test]
fn shard_snapshot_v5_restores_points_without_vectors() {
    use shoal::shard::{PointSelector, SearchRequest, ShardCommand};
    let v5 = fixture("shard_snapshot_v5");
    let lacking = [1u64, 2, 5].map(PointId::Num);
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() && !v5.exists() {
        let from = copy_of("shard_snapshot_v2");
        let shard = Shard::restore(from.path(), false).unwrap();
        let next = shard.stats().last_applied + 1;
        let delete = ShardCommand::DeleteVectors {
            points: PointSelector::Ids(lacking.to_vec()),
            lanes: vec![0],
        };
        assert!(shard.apply(next, &delete).unwrap());
        shard.snapshot(&v5).unwrap();
    }
    let bytes = std::fs::read(v5.join("shard.snap")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 5);
    let dir = copy_of("shard_snapshot_v5");
    let shard = Shard::restore(dir.path(), false).expect("a version 5 shard snapshot restores");
    let old_dir = copy_of("shard_snapshot_v2");
    let old = Shard::restore(old_dir.path(), false).unwrap();
    assert_eq!(shard.count(None), 22);
    let ids: Vec<PointId> = (0..24).map(PointId::Num).collect();
    for (got, was) in shard
        .get(&ids, true, true)
        .iter()
        .zip(old.get(&ids, true, true))
    {
        assert_eq!((got.id, &got.payload), (was.id, &was.payload));
        let v = got.vector.as_ref().unwrap();
        if lacking.contains(&got.id) {
            assert!(v.iter().all(|x| x.is_nan()), "{:?} kept its vector", got.id);
        } else {
            assert_eq!(got.vector, was.vector);
        }
    }
    // An exact search over every point finds all but those three.
    let q = vec![0.0; shard.config().dim];
    let req = SearchRequest {
        vector: &q,
        limit: 100,
        offset: 0,
        filter: None,
        nprobe: 64,
        rerank: 4,
        exact: true,
        with_payload: false,
        with_vector: false,
    };
    let found: Vec<PointId> = shard
        .search(&req)
        .unwrap()
        .iter()
        .map(|h| h.record.id)
        .collect();
    assert_eq!(found.len(), 19);
    assert!(found.iter().all(|id| !lacking.contains(id)));
}

/// What the `shard_snapshot` fuzz target does, in every test run: bodies derived from the v5
/// fixture's — bytes flipped, cut short, overwritten — each under every body version from 2, in
/// an envelope with valid checksums, restore or fail with an error, never panic.
#[test]
fn damaged_shard_snapshot_bodies_are_errors_not_panics() {
    use shoal::storage::envelope::{self, HEADER_LEN, SHARD_SNAPSHOT};
    let file = std::fs::read(fixture("shard_snapshot_v5/shard.snap")).unwrap();
    let body = &file[HEADER_LEN..];
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let mut restored = 0;
    for round in 0..600 {
        let mut b = body.to_vec();
        match round % 3 {
            0 => {
                for _ in 0..1 + next(4) {
                    let i = next(b.len());
                    b[i] ^= 1 << next(8);
                }
            }
            1 => b.truncate(next(b.len())),
            _ => {
                let i = next(b.len());
                b[i] = [0, 0x7f, 0x80, 0xff][next(4)];
            }
        }
        let version = 2 + (round as u32 / 3) % (SHARD_SNAPSHOT.version - 1);
        let mut framed = envelope::encode(&SHARD_SNAPSHOT, &b);
        framed[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&framed[..28]);
        framed[28..32].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join("shard.snap"), &framed).unwrap();
        if Shard::restore(dir.path(), false).is_ok() {
            restored += 1;
        }
    }
    // Some damage (inside a payload, a vector) still decodes; most does not.
    assert!(restored < 600, "{restored}");
}

/// The shard behind the segment fixtures: 240 points in two sealed IVF-PQ segments of 120 rows
/// (and an empty mutable one), payloads of every indexed kind derived from the id, seven payload
/// indexes created before the points (so a build that stores indexes in segment files stores
/// all seven) and one field, `g`, left unindexed.
fn segment_fixture_shard() -> Shard {
    use shoal::shard::{
        CompactionConfig, PayloadFieldType as T, PointWrite, ShardCommand, ShardConfig,
    };
    let config = ShardConfig {
        dim: 8,
        metric: shoal::index::Metric::L2,
        seal_threshold: 120,
        nlist: 2,
        pq_m: 4,
        pq_bits: 4,
        seed: 7,
        compaction: CompactionConfig {
            tiers: false,
            idle_seal_ms: 0,
            ..CompactionConfig::default()
        },
    };
    let shard = Shard::new_inline_builds(config);
    let mut index = 0;
    for (field, t) in [
        ("kw", T::Keyword),
        ("n", T::Integer),
        ("f", T::Float),
        ("b", T::Bool),
        ("u", T::Uuid),
        ("t", T::Datetime),
        ("txt", T::Text),
    ] {
        index += 1;
        let cmd = ShardCommand::CreateFieldIndex {
            field: field.into(),
            field_type: t,
        };
        shard.apply(index, &cmd).unwrap();
    }
    let points: Vec<PointWrite> = (0..240u64)
        .map(|i| PointWrite {
            id: PointId::Num(i),
            vector: segment_fixture_vector(i),
            payload: segment_fixture_payload(i).as_object().cloned(),
        })
        .collect();
    index += 1;
    shard
        .apply(index, &ShardCommand::Upsert { points })
        .unwrap();
    shard
}

fn segment_fixture_vector(i: u64) -> Vec<f32> {
    (0..8)
        .map(|d| ((i * 7 + d * 13) % 31) as f32 / 7.0)
        .collect()
}

const FIXTURE_WORDS: [&str; 5] = ["red", "green", "blue", "fox", "dog"];

fn segment_fixture_payload(i: u64) -> serde_json::Value {
    use serde_json::json;
    let w = |k: u64| FIXTURE_WORDS[(k % 5) as usize];
    let mut p = json!({
        "kw": w(i),
        "n": (i % 17) as i64 - 3,
        "f": (i % 40) as f64 * 0.25,
        "b": i.is_multiple_of(2),
        "u": if i.is_multiple_of(3) { "550e8400-e29b-41d4-a716-446655440000" } else { "9b2f5a4c-0c1e-4a57-8d0e-5c1e2f3a4b5c" },
        "t": format!("2024-03-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24),
        "txt": format!("{} {} {}", w(i), w(i / 5), w(i / 25)),
        "g": i % 4,
    });
    // Some values the indexes do not take, and some points without the field.
    if i.is_multiple_of(11) {
        p["kw"] = json!(7);
        p["n"] = json!(2.5);
    }
    if i.is_multiple_of(13) {
        p.as_object_mut().unwrap().remove("f");
        p["kw"] = json!([w(i), w(i + 1)]);
    }
    p
}

/// Filters over every indexed kind and the unindexed `g`.
fn segment_fixture_filters() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"must": [{"key": "kw", "match": {"value": "fox"}}]}),
        json!({"must": [{"key": "kw", "match": {"except": ["fox", "red"]}}]}),
        json!({"must": [{"key": "n", "range": {"gte": 2, "lt": 9}}]}),
        json!({"must": [{"key": "n", "match": {"any": [0, 5, 13]}}]}),
        json!({"must": [{"key": "f", "range": {"gt": 2.5, "lte": 7.0}}]}),
        json!({"must": [{"key": "b", "match": {"value": true}}, {"key": "g", "match": {"value": 2}}]}),
        json!({"must": [{"key": "u", "match": {"value": "550e8400-e29b-41d4-a716-446655440000"}}]}),
        json!({"must": [{"key": "t", "range": {"gte": "2024-03-05T00:00:00Z", "lt": "2024-03-12T00:00:00Z"}}]}),
        json!({"must": [{"key": "txt", "match": {"text": "blue fox"}}]}),
        json!({"should": [{"key": "g", "match": {"value": 1}}, {"key": "kw", "match": {"value": "dog"}}],
               "must_not": [{"key": "n", "range": {"lt": 0}}]}),
    ]
}

/// Restores a segment fixture and checks every filter against brute force over the payloads
/// the points had when written.
fn check_segment_fixture(rel: &str) -> Shard {
    let dir = copy_of(rel);
    let shard = Shard::restore(dir.path(), false).expect("the segment fixture restores");
    assert_eq!(shard.count(None), 240);
    assert!(shard.stats().indexed_segments >= 2, "{:?}", shard.stats());
    assert_eq!(shard.payload_schema().len(), 7);
    let ids: Vec<PointId> = (0..240).map(PointId::Num).collect();
    for r in shard.get(&ids, true, false) {
        let PointId::Num(i) = r.id else { panic!() };
        assert_eq!(
            serde_json::Value::Object((*r.payload.unwrap()).clone()),
            segment_fixture_payload(i)
        );
    }
    for json in segment_fixture_filters() {
        let f: shoal::shard::Filter = serde_json::from_value(json.clone()).unwrap();
        let c = f.compile().unwrap();
        let want: Vec<PointId> = (0..240u64)
            .filter(|i| {
                let p = segment_fixture_payload(*i).as_object().cloned();
                c.matches(&PointId::Num(*i), p.as_ref())
            })
            .map(PointId::Num)
            .collect();
        assert!(
            !want.is_empty() && want.len() < 240,
            "{json}: {}",
            want.len()
        );
        assert_eq!(shard.count(Some(&c)), want.len(), "{json}");
        let (page, _) = shard.scroll(None, 300, Some(&c), false, false);
        assert_eq!(
            page.iter().map(|r| r.id).collect::<Vec<_>>(),
            want,
            "{json}"
        );
    }
    shard
}

/// Writes fixture directory `rel` from [`segment_fixture_shard`] when `SHOAL_WRITE_FIXTURES` is
/// set and it is missing (never regenerate one).
fn write_segment_fixture(rel: &str) {
    let dir = fixture(rel);
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() && !dir.exists() {
        segment_fixture_shard().snapshot(&dir).unwrap();
    }
}

/// Every segment file of fixture directory `rel`, verified, with its metadata.
fn segment_files(
    rel: &str,
) -> Vec<(
    std::path::PathBuf,
    shoal::storage::Container,
    serde_json::Value,
)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(fixture(rel)).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let c = shoal::storage::Container::open(&path).unwrap();
        c.verify().unwrap();
        let meta: serde_json::Value = c.metadata_json().unwrap();
        out.push((path, c, meta));
    }
    out
}

/// Sealed segment files with payloads as written before they stored payload indexes (segment
/// version 1): they open, and their indexes are rebuilt from the payloads.
#[test]
fn shard_segment_v1_restores_and_filters() {
    write_segment_fixture("shard_segment_v1");
    check_segment_fixture("shard_segment_v1");
}

/// The same shard written by the build that stores payload indexes in segment files (segment
/// version 2): it opens with every filter right, and its files hold the seven indexes, which the
/// version-1 files do not.
#[test]
fn shard_segment_v2_restores_and_filters_from_stored_indexes() {
    use shoal::storage::payload_index::{PAYLOAD_INDEX_SECTION, decode};
    write_segment_fixture("shard_segment_v2");
    check_segment_fixture("shard_segment_v2");
    for (rel, version) in [("shard_segment_v1", None), ("shard_segment_v2", Some(2))] {
        let mut files = 0;
        for (path, c, meta) in segment_files(rel) {
            files += 1;
            let found = meta
                .get("segment_version")
                .and_then(serde_json::Value::as_u64);
            assert_eq!(found, version, "{}", path.display());
            let has = c.sections().iter().any(|s| s.name == PAYLOAD_INDEX_SECTION);
            assert_eq!(has, version.is_some(), "{}", path.display());
            if has {
                let bytes = c.section::<u8>(PAYLOAD_INDEX_SECTION).unwrap();
                let index = decode(&bytes[..]).unwrap();
                assert_eq!(index.rows, 120);
                let names: Vec<&str> = index.fields.iter().map(|f| f.name.as_str()).collect();
                assert_eq!(names, ["b", "f", "kw", "n", "t", "txt", "u"]);
            }
        }
        assert_eq!(files, 2, "{rel}");
    }
}

/// The same shard written by the build that stores 8-bit codes of the raw vectors beside them
/// (segment version 3): it opens with every filter right, its files hold the `sq8_*` sections,
/// and every filtered search (exact over the few matches, through the codes) returns exactly the
/// brute-force nearest matches, distances included. The version-2 files, without codes, answer
/// the same.
#[test]
fn shard_segment_v3_searches_filters_exactly_through_its_8_bit_codes() {
    use shoal::shard::SearchRequest;
    write_segment_fixture("shard_segment_v3");
    let v3 = check_segment_fixture("shard_segment_v3");
    let v2 = check_segment_fixture("shard_segment_v2");
    let mut files = 0;
    for (path, c, meta) in segment_files("shard_segment_v3") {
        files += 1;
        assert_eq!(meta["segment_version"], 3, "{}", path.display());
        let names: Vec<String> = c.sections().into_iter().map(|s| s.name).collect();
        for want in ["sq8_bounds", "sq8_codes", "sq8_norms"] {
            assert!(
                names.iter().any(|n| n == want),
                "{}: {names:?}",
                path.display()
            );
        }
    }
    assert_eq!(files, 2);
    for (qi, json) in segment_fixture_filters().into_iter().enumerate() {
        let f: shoal::shard::Filter = serde_json::from_value(json.clone()).unwrap();
        let c = f.compile().unwrap();
        let q = segment_fixture_vector(1_000 + qi as u64 * 37);
        let mut want: Vec<(f32, u64)> = (0..240u64)
            .filter(|i| {
                let p = segment_fixture_payload(*i).as_object().cloned();
                c.matches(&PointId::Num(*i), p.as_ref())
            })
            .map(|i| {
                let v = segment_fixture_vector(i);
                let d: f32 = q.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum();
                (d, i)
            })
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        want.truncate(10);
        let req = SearchRequest {
            vector: &q,
            limit: 10,
            offset: 0,
            filter: Some(&c),
            nprobe: 1,
            rerank: 2,
            exact: false,
            with_payload: false,
            with_vector: false,
        };
        for shard in [&v3, &v2] {
            let got: Vec<(f32, u64)> = shard
                .search(&req)
                .unwrap()
                .into_iter()
                .map(|h| {
                    let PointId::Num(i) = h.record.id else {
                        panic!()
                    };
                    (h.distance, i)
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{json}");
            for (g, w) in got.iter().zip(&want) {
                // Ties may order differently only at equal distance.
                assert!(
                    (g.0 - w.0).abs() <= 1e-4 * (1.0 + w.0),
                    "{json}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

/// A segment file of a newer segment version than this build reads (a downgrade after an upgrade
/// wrote one) is refused, naming the file and both versions; it is never opened as if it were
/// one this build understands.
#[test]
fn a_newer_segment_version_is_refused_by_name() {
    use shoal::storage::{Container, ContainerWriter};
    let dir = copy_of("shard_segment_v2");
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    // The same file with `segment_version` 4 in its metadata.
    let c = Container::open(&seg).unwrap();
    let mut meta: serde_json::Value = c.metadata_json().unwrap();
    meta["segment_version"] = 4.into();
    let newer = dir.path().join("newer.tmp");
    let mut w = ContainerWriter::create(&newer).unwrap();
    for s in c.sections() {
        let bytes = c.section_bytes(&s.name).unwrap();
        match s.elem_size {
            1 => w.write_section::<u8>(&s.name, bytes),
            2 => w.write_section::<u16>(&s.name, bytemuck::cast_slice(bytes)),
            4 => w.write_section::<u32>(&s.name, bytemuck::cast_slice(bytes)),
            8 => w.write_section::<u64>(&s.name, bytemuck::cast_slice(bytes)),
            other => panic!("section {} of {other}-byte elements", s.name),
        }
        .unwrap();
    }
    w.finish(meta.to_string().as_bytes()).unwrap();
    drop(c);
    std::fs::rename(&newer, &seg).unwrap();
    let err = Shard::restore(dir.path(), false).expect_err("a newer segment file must not open");
    let text = err.to_string();
    assert!(
        text.contains('4')
            && text.contains('3')
            && text.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );
}

/// `tests/fixtures/collection_snapshot_v1/` holds a user's collection snapshot as the build that
/// introduced snapshot archives wrote it (archive version 1; `SHOAL_WRITE_FIXTURES=1` writes it
/// when it is missing, never regenerate it): the segment fixture shard (two sealed IVF-PQ
/// segments, seven payload indexes) as shard 0 of a collection `fixture`, and the SHA-256 the
/// server reported beside it. Every later build must decode it, restore the same points and
/// indexes, and refuse a forged newer version by name.
#[test]
fn collection_snapshot_v1_recovers_its_points() {
    use shoal::cluster::snapshots::{self, SnapCollection, SnapshotKind, SnapshotMeta};
    use shoal::collection::{CollectionSpec, Metric};
    use shoal::storage::archive;
    let dir = fixture("collection_snapshot_v1");
    let file = dir.join("fixture-1-2026-12-04-13-45-00.snapshot");
    let sum = dir.join("fixture-1-2026-12-04-13-45-00.snapshot.checksum");
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() && !file.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let meta = SnapshotMeta {
            format: snapshots::META_FORMAT.into(),
            kind: SnapshotKind::Collection,
            node: 1,
            collections: vec![SnapCollection {
                name: "fixture".into(),
                spec: CollectionSpec::new(8, Metric::L2),
                named: Vec::new(),
                shard_number: 1,
                shards: vec![0],
            }],
        };
        let staging = tempfile::tempdir().unwrap();
        let sha = snapshots::write_snapshot(
            &file,
            &meta,
            &[(0, 0, shoal::shard::Lanes::single(segment_fixture_shard()))],
            staging.path(),
        )
        .unwrap();
        std::fs::write(&sum, sha).unwrap();
    }
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"\x89SHA\r\n\x1a\n");
    let head = archive::decode(&bytes, bytes.len() as u64).expect("a version 1 archive decodes");
    assert_eq!(head.version, 1);
    let checksum = std::fs::read_to_string(&sum).unwrap();
    assert_eq!(archive::sha256_file(&file).unwrap(), checksum);
    let root = tempfile::tempdir().unwrap();
    let opened = snapshots::open(&file, Some(&checksum), root.path()).expect("it opens");
    assert_eq!(opened.meta.kind, SnapshotKind::Collection);
    assert_eq!(opened.meta.collections[0].name, "fixture");
    assert_eq!(
        opened.meta.collections[0].spec,
        CollectionSpec::new(8, Metric::L2)
    );
    // Written before named vectors: no `named` in its meta, one lane per shard.
    assert!(opened.meta.collections[0].named.is_empty());
    let (s, lanes) = &opened.shards[0][0];
    assert_eq!(*s, 0);
    assert_eq!(lanes.len(), 1);
    let shard = lanes.primary();
    let want = segment_fixture_shard();
    let ids: Vec<PointId> = (0..240).map(PointId::Num).collect();
    assert_eq!(shard.get(&ids, true, true), want.get(&ids, true, true));
    assert_eq!(shard.payload_schema(), want.payload_schema());
    assert!(shard.stats().indexed_segments >= 2);

    // Version 2 with a valid header checksum: "upgrade", not a misread.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = archive::decode(&newer, newer.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 2") && err.contains("upgrade"),
        "{err}"
    );
    // A wrong checksum is refused before anything is read.
    let err = snapshots::open(&file, Some(&"0".repeat(64)), root.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
}
