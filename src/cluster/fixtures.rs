//! Byte fixtures of the metadata formats: a [`MetaCommand`] log entry, a [`ClusterState`]
//! snapshot body (the postcard body inside `cluster-state.bin`'s envelope) and a whole
//! `cluster-state.bin`, of every version. Version 1's bytes are only read (nothing writes them
//! any more): they must decode to the model they meant. Version 2's log entry and snapshot body
//! are what this build writes: a change that alters them fails here. `cluster-state.bin`
//! version 2 is the hand-written layout before the storage envelope (`SHOALMET`), rebuilt here
//! by hand from the same body; version 3 is the envelope around that body (only read since
//! version 4), version 4 the envelope around the body with aliases (only read since version 5),
//! version 5 the envelope around the body with named vectors, which this build writes;
//! `create_collection_v3.bin` pins the create of a collection with named vectors.
//! `MetaCommand::UpdateAliases` is pinned by `update_aliases_v1.bin`. Replies of the cluster
//! service between nodes are pinned too: `cluster_reply_groups_v1.bin` and
//! `cluster_reply_centroids_v1.bin` hold a [`ClusterReply::Applied`] of each non-empty result.
//! `SHOAL_WRITE_FIXTURES=1 cargo test --lib cluster::fixtures` writes the files of the current
//! version, which is only right when that version is new.

use super::meta::{self, AliasAction, ClusterState, CollectionMeta, MetaCommand, ShardMeta};
use super::persisted::ClusterStateV3;
use super::placement::CentroidPlacement;
use super::rpc::{Applied, ClusterReply};
use crate::collection::{
    CollectionConfig, IvfPqSettings, Metric, NamedVector, Placement, SearchSettings, VectorSpace,
};
use crate::raft::NodeInfo;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/meta")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares `bytes` with the fixture `name` (writing it first under `SHOAL_WRITE_FIXTURES`).
fn check(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = fixture(name);
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes, stored.as_slice(), "{name}: the encoding changed");
    stored
}

/// The configuration the fixtures hold. Version 1 stored nprobe 16 and rerank 4, the built-in
/// defaults then, which read as "not fixed" with the default recall target.
fn config() -> CollectionConfig {
    CollectionConfig {
        vectors: VectorSpace {
            dim: 8,
            metric: Metric::Dot,
        },
        shard_number: 2,
        replication_factor: 2,
        placement: Placement::Centroid,
        ivf_pq: IvfPqSettings {
            nlist: 64,
            pq_m: 4,
            pq_bits: 8,
            seal_threshold: 50_000,
        },
        search: SearchSettings {
            nprobe: None,
            rerank: None,
            shard_probe: 1,
            recall_target: 0.95,
        },
        group_id: 3,
    }
}

fn collection() -> CollectionMeta {
    let sample: Vec<f32> = (0..64).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
    CollectionMeta {
        config: config(),
        shards: vec![
            ShardMeta {
                group: 3,
                replicas: vec![1, 2],
            },
            ShardMeta {
                group: 4,
                replicas: vec![2, 3],
            },
        ],
        centroids: Some(CentroidPlacement::train(&sample, 8, Metric::Dot, 2, 2, 7)),
        named: Vec::new(),
    }
}

fn state() -> ClusterState {
    let mut s = ClusterState::default();
    for id in 1..=3u64 {
        s.members.insert(
            id,
            NodeInfo::new(format!("10.0.0.{id}:6335"), format!("10.0.0.{id}:6333")),
        );
    }
    s.collections.insert("docs".into(), collection());
    s.next_group = 5;
    s.reconfigured.insert(4);
    s.applied_index = 42;
    s
}

/// Version 2 fixes what version 1 could not say: a fixed rerank and a recall target.
fn config_v2() -> CollectionConfig {
    let mut c = config();
    c.search.rerank = Some(8);
    c.search.recall_target = 0.9;
    c
}

fn state_v2() -> ClusterState {
    let mut s = state();
    let mut c = collection();
    c.config = config_v2();
    s.collections.insert("tuned".into(), c);
    s
}

#[test]
fn meta_command_v1_fixture_decodes() {
    let stored = read("create_collection_v1.bin");
    match postcard::from_bytes::<MetaCommand>(&stored).unwrap() {
        MetaCommand::CreateCollection { name, meta } => {
            assert_eq!(name, "docs");
            assert_eq!(CollectionMeta::from(meta.clone()), collection());
            // Read and written back as version 1, the bytes are the same.
            let again = MetaCommand::CreateCollection { name, meta };
            assert_eq!(again.encode(), stored);
        }
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn cluster_state_v1_fixture_decodes() {
    let stored = read("cluster_state_v1.bin");
    let decoded: meta::ClusterStateV1 = postcard::from_bytes(&stored).unwrap();
    assert_eq!(ClusterState::from(decoded), state());
}

#[test]
fn meta_command_v2_fixture_decodes() {
    let cmd = MetaCommand::CreateCollectionV2 {
        name: "tuned".into(),
        meta: CollectionMeta {
            config: config_v2(),
            ..collection()
        }
        .into(),
    };
    let stored = check("create_collection_v2.bin", &cmd.encode());
    match postcard::from_bytes::<MetaCommand>(&stored).unwrap() {
        MetaCommand::CreateCollectionV2 { name, meta } => {
            assert_eq!(name, "tuned");
            assert_eq!(CollectionMeta::from(meta).config, config_v2());
        }
        other => panic!("decoded {other:?}"),
    }
}

/// A state with aliases: what version 4 added.
fn state_v4() -> ClusterState {
    let mut s = state_v2();
    s.aliases.insert("docs-live".into(), "docs".into());
    s.aliases.insert("t".into(), "tuned".into());
    s
}

/// The body of `cluster-state.bin` versions 2 and 3 (no aliases) of `state`.
fn body_v3(state: &ClusterState) -> Vec<u8> {
    let v3 = ClusterStateV3 {
        members: state.members.clone(),
        collections: state
            .collections
            .iter()
            .map(|(n, c)| (n.clone(), c.clone().into()))
            .collect(),
        next_group: state.next_group,
        reconfigured: state.reconfigured.clone(),
        applied_index: state.applied_index,
    };
    postcard::to_allocvec(&v3).unwrap()
}

/// `cluster-state.bin` version 2 as the builds before the storage envelope wrote it: `SHOALMET`,
/// u32 version 2, u32 body length, the postcard body, CRC-32 of the body (little-endian).
fn legacy_v2_file(state: &ClusterState) -> Vec<u8> {
    let body = body_v3(state);
    let mut out = b"SHOALMET".to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out
}

/// A collection with named vectors: what version 5 added.
fn named_collection() -> CollectionMeta {
    let vector = |name: &str, dim, metric, pq_m| NamedVector {
        name: name.into(),
        space: VectorSpace { dim, metric },
        pq_m,
    };
    let mut c = collection();
    c.centroids = None;
    c.config.placement = Placement::Hash;
    c.named = vec![
        vector("image", 8, Metric::Dot, 4),
        vector("text", 6, Metric::Cosine, 3),
    ];
    c.config.vectors = c.named[0].space;
    c.shards = vec![ShardMeta {
        group: 5,
        replicas: vec![1],
    }];
    c
}

fn state_v5() -> ClusterState {
    let mut s = state_v4();
    s.collections.insert("multi".into(), named_collection());
    s.next_group = 6;
    s
}

#[test]
fn create_collection_v3_fixture_decodes() {
    let cmd = MetaCommand::create("multi".into(), named_collection());
    assert!(matches!(cmd, MetaCommand::CreateCollectionV3 { .. }));
    let stored = check("create_collection_v3.bin", &cmd.encode());
    match postcard::from_bytes::<MetaCommand>(&stored).unwrap() {
        MetaCommand::CreateCollectionV3 { name, meta } => {
            assert_eq!(name, "multi");
            assert_eq!(meta, named_collection());
        }
        other => panic!("decoded {other:?}"),
    }
    // Without named vectors a create is still written as version 2.
    assert!(matches!(
        MetaCommand::create("docs".into(), collection()),
        MetaCommand::CreateCollectionV2 { .. }
    ));
}

#[test]
fn cluster_state_file_v5_fixture_decodes_and_v4_v3_v2_and_v1_still_read() {
    // Version 5: the storage envelope around the state with named vectors, what this build
    // writes.
    let bytes = meta::encode_state(&state_v5()).unwrap();
    let stored = check("cluster_state_v5.bin", &bytes);
    assert_eq!(&stored[..8], &crate::storage::envelope::CLUSTER_STATE.magic);
    assert_eq!(meta::decode_state(&stored).unwrap(), state_v5());
    // Version 4, as the previous release wrote it (never regenerated): no named vectors.
    let v4 = read("cluster_state_v4.bin");
    assert_eq!(u32::from_le_bytes(v4[8..12].try_into().unwrap()), 4);
    assert_eq!(meta::decode_state(&v4).unwrap(), state_v4());
    // Version 3, as the previous release wrote it (never regenerated): no aliases.
    let v3 = read("cluster_state_v3.bin");
    assert_eq!(u32::from_le_bytes(v3[8..12].try_into().unwrap()), 3);
    assert_eq!(&v3[32..], body_v3(&state_v2()).as_slice());
    assert_eq!(meta::decode_state(&v3).unwrap(), state_v2());
    // Version 2, as a node of the previous release wrote it.
    let v2 = check("cluster_state_v2.bin", &legacy_v2_file(&state_v2()));
    assert_eq!(meta::decode_state(&v2).unwrap(), state_v2());
    // A whole version 1 file, as a node of the previous release wrote it.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cluster_state_v1/cluster-state.bin");
    let v1 = meta::decode_state(&std::fs::read(path).unwrap()).unwrap();
    assert!(v1.applied_index > 0 || !v1.members.is_empty(), "{v1:?}");
    // Newer versions are refused by name, not misread (the header checksum forged to match).
    let mut newer = stored.clone();
    newer[8..12].copy_from_slice(&6u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..28]);
    newer[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = meta::decode_state(&newer).unwrap_err().to_string();
    assert!(
        err.contains("version 6") && err.contains("upgrade"),
        "{err}"
    );
    // A version past 2 in the old layout is damage, not a newer format.
    let mut bad = v2.clone();
    bad[8..12].copy_from_slice(&3u32.to_le_bytes());
    let err = meta::decode_state(&bad).unwrap_err().to_string();
    assert!(err.contains("version 3"), "{err}");
}

#[test]
fn update_config_v2_fixture_decodes() {
    let cmd = MetaCommand::UpdateConfig {
        name: "tuned".into(),
        config: config_v2(),
    };
    let stored = check("update_config_v2.bin", &cmd.encode());
    match postcard::from_bytes::<MetaCommand>(&stored).unwrap() {
        MetaCommand::UpdateConfig { name, config } => {
            assert_eq!(name, "tuned");
            assert_eq!(config, config_v2());
        }
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn update_aliases_v1_fixture_decodes() {
    let actions = vec![
        AliasAction::Delete {
            alias: "docs-live".into(),
        },
        AliasAction::Create {
            collection: "tuned".into(),
            alias: "docs-live".into(),
        },
        AliasAction::Rename {
            old: "t".into(),
            new: "t2".into(),
        },
    ];
    let cmd = MetaCommand::UpdateAliases {
        actions: actions.clone(),
    };
    let stored = check("update_aliases_v1.bin", &cmd.encode());
    match postcard::from_bytes::<MetaCommand>(&stored).unwrap() {
        MetaCommand::UpdateAliases { actions: decoded } => assert_eq!(decoded, actions),
        other => panic!("decoded {other:?}"),
    }
    // Applied to the fixture state, the swap moves the alias and renames the other.
    let mut s = state_v4();
    s.apply(cmd).unwrap();
    assert_eq!(s.aliases["docs-live"], "tuned");
    assert_eq!(s.aliases["t2"], "tuned");
    assert!(!s.aliases.contains_key("t"));
}

#[test]
fn cluster_reply_applied_v1_fixtures_decode() {
    let centroids = collection().centroids.unwrap();
    for (name, result) in [
        ("cluster_reply_groups_v1.bin", Applied::Groups(vec![3, 4])),
        (
            "cluster_reply_centroids_v1.bin",
            Applied::Centroids(centroids.clone()),
        ),
    ] {
        let reply = ClusterReply::Applied {
            index: 42,
            result: result.clone(),
        };
        let stored = check(name, &reply.encode());
        match ClusterReply::decode(&stored) {
            ClusterReply::Applied { index, result: r } => {
                assert_eq!(index, 42, "{name}");
                assert_eq!(r, result, "{name}");
            }
            other => panic!("{name}: decoded {other:?}"),
        }
    }
}
