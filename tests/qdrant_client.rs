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

use std::path::{Path, PathBuf};
use std::process::Command;

fn venv() -> PathBuf {
    common::python::venv()
}

#[test]
fn qdrant_client_drives_shoal() {
    if std::env::var_os("SHOAL_SKIP_QDRANT_CLIENT_TEST").is_some() {
        eprintln!("skipped: SHOAL_SKIP_QDRANT_CLIENT_TEST is set");
        return;
    }
    let python = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/qdrant_compat.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qdrant-client script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("compatibility: ok"));
}

/// The snapshots API through qdrant-client: `tests/python/qdrant_snapshots.py` calls the 11
/// snapshot methods (collection, shard and full: create, list, delete; recover a collection and
/// a shard) and checks every result against a model of the points.
#[test]
fn qdrant_client_snapshots() {
    if std::env::var_os("SHOAL_SKIP_QDRANT_CLIENT_TEST").is_some() {
        eprintln!("skipped: SHOAL_SKIP_QDRANT_CLIENT_TEST is set");
        return;
    }
    let python = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/qdrant_snapshots.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qdrant-client snapshots script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshots: ok"));
}
