//! LangChain's Qdrant vector store (`langchain-qdrant`, dense retrieval) against the real
//! `shoal` binary: `tests/python/langchain_compat.py` creates a store with `from_texts`, runs
//! similarity search with and without a metadata filter, MMR, `add_texts`, `get_by_ids`,
//! `delete`, attaches with `from_existing_collection` and queries through a retriever, checking
//! every answer against a brute-force model; a hybrid (sparse) collection is refused by name.
//! The virtualenv is [`common::python`]'s; `SHOAL_SKIP_QDRANT_CLIENT_TEST=1` skips the test.

mod common;

use common::python::{run_script, skipped};

#[test]
fn langchain_vector_store_drives_shoal() {
    if !skipped() {
        run_script("langchain_compat.py", false, "langchain compatibility: ok");
    }
}
