//! End-to-end checks of the harness on a small synthetic set: a real IVF-PQ sweep, its JSON and
//! plots, and the tuner's answer checked by measuring it again.

use ndarray::Array2;
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::engine::{Workload, build_index, measure};
use super::run::{run_sweep, run_tune};
use super::sweep::{BuildConfig, SearchConfig, SweepGrid};
use super::tune::TuneOptions;
use super::{BenchReport, plot};
use crate::datasets::Dataset;
use crate::index::Metric;
use crate::index::flat::FlatIndex;

/// `n` base vectors and `nq` queries drawn around 40 Gaussian centres in `dim` dimensions, with
/// exact ground truth from the flat index.
fn synthetic(n: usize, nq: usize, dim: usize, k: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let centres: Vec<f32> = (0..40 * dim)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    let mut draw = |rows: usize| {
        let mut a = Array2::<f32>::zeros((rows, dim));
        for mut row in a.rows_mut() {
            let c = rng.random_range(0..40usize);
            for (j, v) in row.iter_mut().enumerate() {
                *v = centres[c * dim + j] + rng.random_range(-1.0f32..1.0);
            }
        }
        a
    };
    let base = draw(n);
    let queries = draw(nq);
    let mut flat = FlatIndex::new(dim, Metric::L2);
    let ids: Vec<u64> = (0..n as u64).collect();
    flat.add_batch(&ids, base.as_slice().unwrap()).unwrap();
    let answers = flat.search_batch(queries.as_slice().unwrap(), k, None);
    let gt = Array2::from_shape_fn((nq, k), |(q, j)| answers[q][j].id as u32);
    Dataset {
        name: "synthetic".into(),
        metric: Metric::L2,
        base,
        queries,
        groundtruth: Some(gt),
    }
}

#[test]
fn sweep_measures_every_setting_and_plots() {
    let data = synthetic(5000, 200, 32, 10);
    let workload = Workload::new(&data, 10, 2).unwrap();
    let grid = SweepGrid {
        nlist: vec![64],
        pq_m: vec![16],
        pq_bits: vec![4, 8],
        nprobe: vec![1, 8, 64],
        rerank: vec![0, 4],
    }
    .resolve(workload.n(), workload.dim())
    .unwrap();
    let report = run_sweep(&workload, &grid, Some("test".into())).unwrap();
    assert_eq!(report.results.len(), 12);
    assert_eq!(
        (report.n, report.dim, report.k, report.threads),
        (5000, 32, 10, 2)
    );
    assert_eq!(report.metric, "l2");
    assert!(report.nlist.is_none(), "two builds: no single nlist");
    assert!(report.build_seconds > 0.0 && report.index_bytes.is_some_and(|b| b > 0));
    for r in &report.results {
        assert!((0.0..=1.0).contains(&r.recall));
        assert!(r.qps > 0.0 && r.p50_ms <= r.p95_ms && r.p95_ms <= r.p99_ms);
    }
    for bits in [4u8, 8] {
        let rows: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.pq_bits == Some(bits))
            .collect();
        let recall = |nprobe: usize, rerank: usize| {
            rows.iter()
                .find(|r| r.nprobe == nprobe && r.rerank == rerank)
                .unwrap()
                .recall
        };
        // Probing more lists and re-ranking can only help on this clustered data.
        assert!(recall(1, 4) < recall(64, 4), "bits {bits}");
        assert!(recall(64, 0) <= recall(64, 4) + 1e-9, "bits {bits}");
        // Every list probed and 40 candidates re-ranked exactly: nearly exact.
        assert!(recall(64, 4) >= 0.95, "bits {bits}: {}", recall(64, 4));
    }

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    report.write(&json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "dataset",
        "n",
        "dim",
        "metric",
        "build_seconds",
        "index_bytes",
        "results",
    ] {
        assert!(value.get(key).is_some(), "{key}");
    }
    for key in ["nprobe", "rerank", "recall", "qps", "p50_ms", "p99_ms"] {
        assert!(value["results"][0].get(key).is_some(), "{key}");
    }
    let back = BenchReport::read(&json).unwrap();
    assert_eq!(back.results.len(), report.results.len());
    for (a, b) in back.results.iter().zip(&report.results) {
        assert_eq!(
            (a.nprobe, a.rerank, a.recall),
            (b.nprobe, b.rerank, b.recall)
        );
    }

    let png_path = dir.path().join("run.png");
    plot::plot_files(std::slice::from_ref(&json), &png_path).unwrap();
    let bytes = std::fs::read(&png_path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();

    let svg_path = dir.path().join("run.svg");
    plot::plot_files(&[json], &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("test nlist=64 m=16 b=4"));
}

#[test]
fn ivf_flat_recall_is_the_recall_of_an_exact_scan_of_the_probed_lists() {
    let data = synthetic(3000, 60, 16, 10);
    let workload = Workload::new(&data, 10, 1).unwrap();
    let build = BuildConfig {
        nlist: 32,
        pq_m: 8,
        pq_bits: 4,
    };
    let built = build_index(&workload, build).unwrap();
    let mut previous = 0.0;
    for nprobe in [1, 2, 4, 8, 32] {
        // The model: brute force over the rows of the probed lists only.
        let mut found = 0;
        for (q, truth) in data
            .queries
            .outer_iter()
            .zip(data.groundtruth.as_ref().unwrap().outer_iter())
        {
            let probed = built.index.probed_lists(q.as_slice().unwrap(), nprobe);
            let mut scored: Vec<(f32, usize)> = (0..workload.n())
                .filter(|r| probed.contains(&(built.list_of_row[*r][0] as usize)))
                .map(|r| {
                    (
                        crate::index::distance::l2_sq(
                            q.as_slice().unwrap(),
                            data.base.row(r).as_slice().unwrap(),
                        ),
                        r,
                    )
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            found += scored
                .iter()
                .take(10)
                .filter(|(_, r)| truth.iter().take(10).any(|&t| t as usize == *r))
                .count();
        }
        let model = found as f64 / (60.0 * 10.0);
        let search = SearchConfig { nprobe, rerank: 4 };
        let row = measure(&workload, &built, search, false).unwrap();
        let flat = row.ivf_flat_recall.expect("the index engine reports it");
        assert!(
            (flat - model).abs() < 1e-9,
            "nprobe {nprobe}: {flat} vs {model}"
        );
        assert!(flat >= previous, "more lists never hold fewer neighbours");
        assert!(
            row.recall <= flat + 1e-9,
            "a PQ scan finds only what the probed lists hold"
        );
        previous = flat;
    }
    assert_eq!(previous, 1.0, "probing every list is an exact scan");
}

#[test]
fn tuned_setting_reaches_the_target_when_measured_again() {
    let data = synthetic(3000, 100, 16, 10);
    let mut workload = Workload::new(&data, 10, 1).unwrap();
    workload.sample_queries = 50;
    let options = TuneOptions::for_dataset(workload.n(), workload.dim(), 0.9);
    let (outcome, report) = run_tune(&workload, &options, None).unwrap();
    let best = outcome.best.expect("0.9 is reachable on clustered data");
    assert!(best.result.recall >= 0.9);
    assert_eq!(report.results.len(), outcome.trace.len());
    assert!(report.results.len() >= 3);

    // Build the chosen settings afresh and measure on every query.
    let built = build_index(&workload, best.build).unwrap();
    let again = measure(&workload, &built, best.search, false).unwrap();
    assert!(again.recall >= 0.9, "{again:?}");
    assert_eq!(
        again.recall, best.result.recall,
        "builds are deterministic per seed"
    );
}

#[test]
fn workload_refuses_missing_or_short_ground_truth() {
    let mut data = synthetic(200, 5, 8, 5);
    assert!(Workload::new(&data, 10, 1).is_err());
    assert!(Workload::new(&data, 5, 0).is_err());
    data.groundtruth = None;
    assert!(Workload::new(&data, 5, 1).is_err());
}

/// `shoal bench` from flags, as a user runs it, on a folder written by the datasets module
/// (generator, `.fvecs` writer, no ground truth file: the command computes it exactly).
#[test]
fn command_line_run_writes_json_and_plot() {
    use crate::datasets::{GenerateConfig, GeneratorKind, generate, writer::write_fvecs};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: super::cli::BenchArgs,
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toy");
    std::fs::create_dir(&data).unwrap();
    let (base, queries) = generate(&GenerateConfig {
        kind: GeneratorKind::SiftLike,
        n: 4000,
        queries: 50,
        dim: 32,
        seed: 3,
        clusters: 0,
        difficulty: Default::default(),
    })
    .unwrap();
    write_fvecs(&data.join("base.fvecs"), base.view()).unwrap();
    write_fvecs(&data.join("query.fvecs"), queries.view()).unwrap();

    let json = dir.path().join("toy.json");
    let png = dir.path().join("toy.png");
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cli = Cli::try_parse_from([
        "bench".to_string(),
        "--dataset".into(),
        arg(&data),
        "--nlist".into(),
        "32".into(),
        "--pq-m".into(),
        "8".into(),
        "--nprobe".into(),
        "1,32".into(),
        "--rerank".into(),
        "0,8".into(),
        "--threads".into(),
        "2".into(),
        "--json".into(),
        arg(&json),
        "--plot".into(),
        arg(&png),
    ])
    .unwrap();
    super::cli::run(cli.bench).unwrap();

    let report = BenchReport::read(&json).unwrap();
    assert_eq!(
        (report.dataset.as_str(), report.n, report.dim),
        ("toy", 4000, 32)
    );
    assert_eq!(
        (report.nlist, report.pq_m, report.pq_bits),
        (Some(32), Some(8), Some(4))
    );
    assert_eq!(report.results.len(), 4);
    let all_lists_reranked = report
        .results
        .iter()
        .find(|r| r.nprobe == 32 && r.rerank == 8)
        .unwrap();
    assert!(all_lists_reranked.recall >= 0.9, "{all_lists_reranked:?}");
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");

    // `shoal bench plot` draws existing reports.
    let svg = dir.path().join("again.svg");
    let cli = Cli::try_parse_from([
        "bench".to_string(),
        "plot".into(),
        "--json".into(),
        arg(&json),
        arg(&json),
        "--out".into(),
        arg(&svg),
    ])
    .unwrap();
    super::cli::run(cli.bench).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("shoal #2"));

    // The sweep's index flags are refused by a database run, naming the shard engine's own.
    for (flag, value, instead) in [
        ("--pq-bits", "8", "--shard-pq-bits"),
        ("--nlist", "64", "--shard-nlist"),
        ("--pq-m", "8", "--shard-pq-m"),
    ] {
        let cli = Cli::try_parse_from([
            "bench".to_string(),
            "--engine".into(),
            "shard".into(),
            "--dataset".into(),
            arg(&data),
            flag.into(),
            value.into(),
        ])
        .unwrap();
        let err = super::cli::run(cli.bench).unwrap_err().to_string();
        assert!(err.contains(flag) && err.contains(instead), "{err}");
    }

    // --dataset is required unless plotting, and --recall needs --tune.
    assert!(Cli::try_parse_from(["bench", "--k", "5"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--dataset", "x", "--recall", "0.9"]).is_err());
}
