//! The project's one rule, kept by a test: dependencies point down,
//! `api → router → cluster → collection → shard → storage → index`, with `raft` a leaf beside
//! them; nothing below `api` (nor `config`) names `crate::api`; `collection`, `shard`, `storage`,
//! `index` and `raft` never name a module above them.
//!
//! The test reads every `.rs` file under `src/`, finds the top-level module each `crate::` path
//! names (`crate::a::b`, and each item of `crate::{a, b::c}`), ignoring `//` comments, and checks
//! it against the modules its own top-level module may use. The table is a strict order, so it
//! also rules out import circles between top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the crate modules it may name (itself always allowed).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    const LOWER: &[&str] = &["collection", "shard", "storage", "index", "raft", "process"];
    BTreeMap::from([
        // The binary's composition root: starts every layer and serves `api`.
        (
            "node",
            &[
                "api",
                "router",
                "cluster",
                "config",
                "collection",
                "shard",
                "storage",
                "index",
                "raft",
                "process",
            ][..],
        ),
        (
            "api",
            &[
                "router",
                "cluster",
                "config",
                "collection",
                "shard",
                "storage",
                "index",
                "raft",
                "process",
            ][..],
        ),
        // Tools beside the server: they measure every layer, but never through `api`'s code.
        (
            "bench",
            &[
                "datasets",
                "router",
                "cluster",
                "collection",
                "shard",
                "storage",
                "index",
                "raft",
                "process",
            ][..],
        ),
        ("datasets", &["storage", "index"][..]),
        (
            "router",
            &[
                "cluster",
                "config",
                "collection",
                "shard",
                "storage",
                "index",
                "raft",
            ][..],
        ),
        (
            "cluster",
            &["config", "collection", "shard", "storage", "index", "raft"][..],
        ),
        ("config", &["collection", "raft"][..]),
        ("collection", &["shard", "storage", "index"][..]),
        ("shard", &["storage", "index", "raft"][..]),
        ("storage", &["index"][..]),
        ("index", &[][..]),
        ("raft", &[][..]),
        ("process", &[][..]),
        ("lib", LOWER),
    ])
}

/// Named exceptions: (file, module it names, why). Each must still be needed (the test fails
/// when one no longer matches), so none outlives its reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "src/shard/raft_tests.rs",
        "cluster",
        "tests the shard under Raft through cluster's ShardApp adapter",
    ),
    (
        "src/shard/policy_tests.rs",
        "datasets",
        "checks calibrated recall on the sift-like and gaussian generators",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `line` names through `crate::` paths.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = &rest[..i];
        rest = &rest[i + "crate::".len()..];
        // `$crate::` and `foo_crate::` are not this crate's paths.
        if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Items of `crate::{a, b::c, d::{e, f}}` at depth 1.
            let mut depth = 1;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if start && depth == 1 && (c.is_ascii_alphabetic() || c == '_') => {
                        out.push(ident(&group[k..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let m = ident(rest);
            if !m.is_empty() {
                out.push(m.to_owned());
            }
        }
    }
    out
}

/// The top-level module of a file under `src/`.
fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn named_modules_are_found() {
    assert_eq!(named_modules("use crate::api::ApiError;"), ["api"]);
    assert_eq!(
        named_modules("use crate::{index::Metric, shard::{Filter, Hit}, raft};"),
        ["index", "shard", "raft"]
    );
    assert_eq!(
        named_modules("let x = crate::router::merge::f(); // crate::api"),
        ["router"]
    );
    assert!(named_modules("$crate::foo; my_crate::bar").is_empty());
}

#[test]
fn dependencies_point_down() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let rules = allowed();
    let mut violations = Vec::new();
    let mut used_exceptions = BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&root).unwrap();
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        let module = top_module(rel);
        if module == "main" {
            continue;
        }
        let Some(may) = rules.get(module.as_str()) else {
            violations.push(format!(
                "{rel_str}: top-level module `{module}` has no place in tests/layering.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for named in named_modules(line) {
                if named == module || may.contains(&named.as_str()) {
                    continue;
                }
                if let Some(e) = EXCEPTIONS
                    .iter()
                    .find(|(f, m, _)| *f == rel_str && *m == named)
                {
                    used_exceptions.insert((e.0, e.1));
                    continue;
                }
                violations.push(format!(
                    "{rel_str}:{}: `{module}` names `crate::{named}`, which it must not: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    for (f, m, why) in EXCEPTIONS {
        if !used_exceptions.contains(&(*f, *m)) {
            violations.push(format!(
                "exception ({f} → {m}: {why}) is no longer needed: remove it from tests/layering.rs"
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}
