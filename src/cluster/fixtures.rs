//! Byte fixtures of the metadata formats: a [`MetaCommand`] log entry and a [`ClusterState`]
//! snapshot body (the postcard body inside `cluster-state.bin`'s envelope), as version 1 wrote
//! them. A change that alters either encoding fails here; old logs and snapshots must still
//! decode. `SHOAL_WRITE_FIXTURES=1 cargo test --lib cluster::fixtures` rewrites the files, which
//! is only right when a new version is added beside them.

use super::meta::{ClusterState, CollectionMeta, MetaCommand, ShardMeta};
use super::placement::CentroidPlacement;
use crate::collection::{
    CollectionConfig, IvfPqSettings, Metric, Placement, SearchSettings, VectorSpace,
};
use crate::raft::NodeInfo;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/meta")
        .join(name)
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
            nprobe: 16,
            rerank: 4,
            shard_probe: 1,
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

#[test]
fn meta_command_v1_fixture_decodes() {
    let cmd = MetaCommand::CreateCollection {
        name: "docs".into(),
        meta: collection(),
    };
    let stored = check("create_collection_v1.bin", &cmd.encode());
    let decoded: MetaCommand = postcard::from_bytes(&stored).unwrap();
    match &decoded {
        MetaCommand::CreateCollection { name, meta } => {
            assert_eq!(name, "docs");
            assert_eq!(*meta, collection());
        }
        other => panic!("decoded {other:?}"),
    }
    assert_eq!(decoded.encode(), stored);
}

#[test]
fn cluster_state_v1_fixture_decodes() {
    let body = postcard::to_allocvec(&state()).unwrap();
    let stored = check("cluster_state_v1.bin", &body);
    let decoded: ClusterState = postcard::from_bytes(&stored).unwrap();
    assert_eq!(decoded, state());
}
