//! LangChain's Qdrant vector store (`langchain-qdrant`, dense retrieval) against the real
//! `shoal` binary: `tests/python/langchain_compat.py` creates a store with `from_texts`, runs
//! similarity search with and without a metadata filter, MMR, `add_texts`, `get_by_ids`,
//! `delete`, attaches with `from_existing_collection` and queries through a retriever, checking
//! every answer against a brute-force model; a hybrid (sparse) collection is refused by name.
//! The virtualenv is [`common::python`]'s; `SHOAL_SKIP_QDRANT_CLIENT_TEST=1` skips the test.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn langchain_vector_store_drives_shoal() {
    if std::env::var_os("SHOAL_SKIP_QDRANT_CLIENT_TEST").is_some() {
        eprintln!("skipped: SHOAL_SKIP_QDRANT_CLIENT_TEST is set");
        return;
    }
    let python = common::python::venv();
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/langchain_compat.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "LangChain script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("langchain compatibility: ok"));
}
