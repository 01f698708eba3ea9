//! Compatibility with the official Python `qdrant-client` (REST): starts the real `shoal` binary
//! on a free loopback port and runs `tests/python/qdrant_compat.py` against it, which drives
//! create/get/list/exists/delete collection, upsert (points and batch), upload_points,
//! query_points, query_batch_points, retrieve, delete (ids and filter), count, scroll, aliases
//! (update_collection_aliases, get_aliases, get_collection_aliases), facet, query_points_groups
//! and search groups (`search_groups` where the client still has it, else its REST body),
//! and checks the answers against values computed in Python.
//!
//! The virtualenv is created once (`python3 -m venv`, `pip install qdrant-client langchain-qdrant`
//! from PyPI, [`common::python`]) under Cargo's per-target temporary directory and reused by later
//! runs; set `SHOAL_QDRANT_VENV` to use another one. Set `SHOAL_SKIP_QDRANT_CLIENT_TEST=1` to
//! skip the test on machines without Python or network access.

mod common;

use common::python::{run_script, skipped};

#[test]
fn qdrant_client_drives_shoal() {
    if !skipped() {
        run_script("qdrant_compat.py", false, "compatibility: ok");
    }
}

/// The snapshots API through qdrant-client: `tests/python/qdrant_snapshots.py` calls the 11
/// snapshot methods (collection, shard and full: create, list, delete; recover a collection and
/// a shard) and checks every result against a model of the points.
#[test]
fn qdrant_client_snapshots() {
    if !skipped() {
        run_script("qdrant_snapshots.py", true, "snapshots: ok");
    }
}

/// qdrant-client's distance matrix (`search_matrix_pairs`, `search_matrix_offsets`, checked
/// against brute force over the sampled ids, on a three-shard collection), `cluster_status`
/// (parsed as Qdrant's `ClusterStatus`, values real), `cluster_telemetry` and
/// `recover_current_peer`: `tests/python/qdrant_matrix_cluster.py`.
#[test]
fn qdrant_client_matrix_and_cluster() {
    if !skipped() {
        run_script(
            "qdrant_matrix_cluster.py",
            false,
            "qdrant-client matrix and cluster: ok",
        );
    }
}

/// Named vectors through qdrant-client: `tests/python/qdrant_named_vectors.py` creates a
/// collection with a dict `vectors_config`, upserts every form, queries each vector with
/// `using` (filters, batches, groups, queries by example), reads vectors by name, takes the
/// distance matrix of one vector and recovers a snapshot, each answer checked in Python.
#[test]
fn qdrant_client_named_vectors() {
    if !skipped() {
        run_script("qdrant_named_vectors.py", false, "named vectors: ok");
    }
}
