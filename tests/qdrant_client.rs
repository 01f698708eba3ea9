//! Compatibility with the official Python `qdrant-client` (REST): starts the real `shoal` binary
//! on a free loopback port and runs `tests/python/qdrant_compat.py` against it, which drives
//! create/get/list/exists/delete collection, upsert (points and batch), upload_points,
//! query_points, query_batch_points, retrieve, delete (ids and filter), count, scroll, aliases
//! (update_collection_aliases, get_aliases, get_collection_aliases), facet, query_points_groups
//! and search groups (`search_groups` where the client still has it, else its REST body),
//! and checks the answers against values computed in Python.
//!
//! The virtualenv is created once (`python3 -m venv`, `pip install qdrant-client` from PyPI) under
//! Cargo's per-target temporary directory and reused by later runs; set `SHOAL_QDRANT_VENV` to use
//! another one. Set `SHOAL_SKIP_QDRANT_CLIENT_TEST=1` to skip the test on machines without
//! Python or network access.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn venv() -> PathBuf {
    let dir = std::env::var_os("SHOAL_QDRANT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("qdrant-venv"));
    let python = dir.join("bin/python");
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import qdrant_client"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 not found (set SHOAL_SKIP_QDRANT_CLIENT_TEST=1 to skip)");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "qdrant-client"])
            .status()
            .expect("pip");
        assert!(ok.success(), "pip install qdrant-client failed");
    }
    python
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

/// qdrant-client's distance matrix (`search_matrix_pairs`, `search_matrix_offsets`, checked
/// against brute force over the sampled ids, on a three-shard collection), `cluster_status`
/// (parsed as Qdrant's `ClusterStatus`, values real), `cluster_telemetry` and
/// `recover_current_peer`: `tests/python/qdrant_matrix_cluster.py`.
#[test]
fn qdrant_client_matrix_and_cluster() {
    if std::env::var_os("SHOAL_SKIP_QDRANT_CLIENT_TEST").is_some() {
        eprintln!("skipped: SHOAL_SKIP_QDRANT_CLIENT_TEST is set");
        return;
    }
    let python = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), &[]);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/qdrant_matrix_cluster.py");
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("qdrant-client matrix and cluster: ok"));
}
