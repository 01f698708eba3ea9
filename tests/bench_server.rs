//! `shoal bench --server`: the real binary benchmarks a real server through its REST API, and the
//! report carries the same measurements as in process (recall against exact ground truth), plus
//! the REST-only fields; the collection is deleted afterwards unless `--keep`.

mod common;

use common::Server;
use serde_json::Value;
use std::process::Command;

fn shoal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("SHOAL_API_KEY")
        .output()
        .expect("run shoal")
}

fn generate(dir: &std::path::Path) -> String {
    let out = dir.join("ds");
    let out_s = out.to_str().unwrap().to_string();
    let gen_ = shoal(&[
        "dataset",
        "generate",
        "--kind",
        "gaussian",
        "--n",
        "3000",
        "--queries",
        "200",
        "--dim",
        "16",
        "--k",
        "10",
        "--seed",
        "7",
        "--out",
        &out_s,
    ]);
    assert!(
        gen_.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_.stderr)
    );
    out_s
}

#[test]
fn bench_through_rest_reports_recall_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = generate(tmp.path());
    let server = Server::start(&tmp.path().join("data"), &[]);
    let url = format!("http://{}", server.addr);
    let json_path = tmp.path().join("report.json");
    let out = shoal(&[
        "bench",
        "--dataset",
        &dataset,
        "--server",
        &url,
        "--concurrency",
        "2",
        "--batch-size",
        "700",
        "--nlist",
        "16",
        "--pq-m",
        "8",
        "--pq-bits",
        "4",
        "--nprobe",
        "1,16",
        "--rerank",
        "0,4",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["engine"], "shoal-rest");
    assert_eq!(report["n"], 3000);
    assert_eq!(report["dim"], 16);
    assert_eq!(report["metric"], "l2");
    assert_eq!(report["k"], 10);
    assert_eq!(report["concurrency"], 2);
    assert_eq!(report["nlist"], 16);
    assert!(report["index_bytes"].is_null());
    assert!(report["build_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["ingest_vectors_per_second"].as_f64().unwrap() > 0.0);
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        for key in ["recall", "qps", "p50_ms", "p95_ms", "p99_ms"] {
            assert!(row[key].as_f64().is_some(), "{key} missing in {row}");
        }
    }
    let recall = |nprobe: u64, rerank: u64| {
        rows.iter()
            .find(|r| r["nprobe"] == nprobe && r["rerank"] == rerank)
            .unwrap()["recall"]
            .as_f64()
            .unwrap()
    };
    // Every list probed and re-ranked exactly: the true neighbours come back.
    assert!(recall(16, 4) >= 0.9, "recall {}", recall(16, 4));
    // Probing one list of sixteen must lose neighbours: the server really searched IVF-PQ
    // segments (a flat, unsealed segment would answer exactly whatever nprobe says).
    assert!(recall(1, 4) < recall(16, 4), "nprobe had no effect");
    // The collection was deleted.
    let list = server.ok("GET", "/collections", Value::Null);
    assert_eq!(list["collections"].as_array().unwrap().len(), 0, "{list}");

    // --keep keeps it, under the given name; a second run on the same name is refused.
    let keep = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--dataset",
            &dataset,
            "--server",
            &url,
            "--nlist",
            "16",
            "--pq-m",
            "8",
            "--nprobe",
            "16",
            "--rerank",
            "4",
            "--max-queries",
            "20",
            "--collection",
            "kept",
        ];
        args.extend_from_slice(extra);
        shoal(&args)
    };
    let out = keep(&["--keep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = server.ok("GET", "/collections/kept", Value::Null);
    assert_eq!(info["points_count"], 3000);
    assert_eq!(info["indexed_vectors_count"], 3000);
    let out = keep(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--collection"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The refused run did not delete the existing collection.
    let info = server.ok("GET", "/collections/kept", Value::Null);
    assert_eq!(info["points_count"], 3000);
}

#[test]
fn bench_server_flags_are_checked() {
    // --tune is not supported through REST, and --concurrency needs --server.
    let out = shoal(&[
        "bench",
        "--dataset",
        "x",
        "--server",
        "http://127.0.0.1:1",
        "--tune",
    ]);
    assert!(!out.status.success());
    let out = shoal(&["bench", "--dataset", "x", "--concurrency", "4"]);
    assert!(!out.status.success());
    // An unreachable server is a clear error, not a hang or a panic.
    let tmp = tempfile::tempdir().unwrap();
    let dataset = generate(tmp.path());
    let out = shoal(&[
        "bench",
        "--dataset",
        &dataset,
        "--server",
        "http://127.0.0.1:1",
        "--nlist",
        "16",
        "--pq-m",
        "8",
        "--nprobe",
        "16",
        "--rerank",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
