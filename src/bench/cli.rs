//! `shoal bench`: the flags, and the glue from flags to a report on disk and on the terminal.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::db::{DbOptions, ShardDefaults, filtered_workloads, run_shard_db};
use super::engine::Workload;
use super::filters::selectivities;
use super::plot;
use super::remote::{RemoteOptions, run_remote_defaults, run_remote_sweep};
use super::run::{run_sweep, run_tune};
use super::sharded::{
    PlacementKind, ShardedOptions, auto_shard_nlist, run_sharded_sweep, sharded_table,
};
use super::sweep::SweepGrid;
use super::tune::TuneOptions;
use super::{BenchError, BenchReport};
use crate::collection::IndexDefaults;
use crate::datasets::{self, LoadOptions};
use crate::index::Metric;

/// Measure shoal on a dataset: build IVF-PQ indexes in process (every core), or through a running
/// server's REST API with `--server`, and run the queries one per call on client threads,
/// reporting recall@k, QPS and latency percentiles per setting.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    /// Plot existing reports instead of measuring.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Dataset: an ann-benchmarks .hdf5 file, a .npz archive, or a folder of base, query and
    /// groundtruth files (.fvecs/.bvecs/.ivecs, .fbin/.u8bin/.ibin, .npy).
    #[arg(long, required = true)]
    pub dataset: Option<PathBuf>,
    /// Neighbours per query; recall is recall@k.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Lists probed per query, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub nprobe: Vec<usize>,
    /// Re-ranking factors (k*rerank candidates re-ranked exactly; 0 = none), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,4")]
    pub rerank: Vec<usize>,
    /// Inverted lists, comma-separated [default: about 4*sqrt(n), a power of two].
    #[arg(long, value_delimiter = ',')]
    pub nlist: Vec<usize>,
    /// PQ sub-quantisers, comma-separated; each must divide the dimension [default: dim/2].
    #[arg(long = "pq-m", value_delimiter = ',')]
    pub pq_m: Vec<usize>,
    /// Bits per PQ code, 4 (fast-scan) or 8, comma-separated [default: 4].
    #[arg(long = "pq-bits", value_delimiter = ',')]
    pub pq_bits: Vec<u8>,
    /// A sweep file (.toml or .json) with any of the keys nlist, pq_m, pq_bits, nprobe,
    /// rerank; the keys it sets replace the flags.
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    /// Client threads issuing queries (in process; with --server use --concurrency).
    #[arg(long, default_value_t = 1, conflicts_with = "server")]
    pub threads: usize,
    /// Measure a running shoal server at this URL (e.g. http://127.0.0.1:6333) instead of
    /// building indexes in process: the base is upserted through the REST API into one
    /// collection per build setting, and queries are sent one per request.
    #[arg(long, conflicts_with = "tune")]
    pub server: Option<String>,
    /// Concurrent HTTP clients issuing queries (with --server), each with its own connection.
    #[arg(long, default_value_t = 1, requires = "server")]
    pub concurrency: usize,
    /// Queries per search request (with --server): 1 sends each query alone to
    /// `/points/query`; more sends them in batches to `/points/query/batch` (latencies are then
    /// per batch).
    #[arg(long, default_value_t = 1, requires = "server")]
    pub query_batch: usize,
    /// Points per upsert request (with --server) or per upsert command (--engine shard).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Concurrent upsert clients while loading the base (with --server), each with its own
    /// connection; every upsert is sent with `wait=true`.
    #[arg(long, default_value_t = 1, requires = "server")]
    pub ingest_concurrency: usize,
    /// Collection name on the server [default: shoal-bench-<dataset>-<nlist>-<pq_m>-<pq_bits>];
    /// an existing collection is refused, never overwritten.
    #[arg(long, requires = "server")]
    pub collection: Option<String>,
    /// Keep the collections on the server after measuring (default: delete them).
    #[arg(long, requires = "server")]
    pub keep: bool,
    /// With --server: create the collection with only `size` and `distance`, load it through
    /// the REST API and send every query without `params`, as a user does (the sweep flags
    /// --nlist, --pq-m, --pq-bits, --nprobe and --rerank do not apply).
    #[arg(long, requires = "server", conflicts_with_all = ["shards", "tune", "sweep"])]
    pub defaults: bool,
    /// What runs in process: `index` (IVF-PQ indexes built directly, the sweep) or `shard`
    /// (shoal's shard engine as the database uses it: writes through its write path, sealing and
    /// merging as the server does, queries without params; see the "Shard engine" flags).
    #[arg(long, value_enum, default_value = "index", conflicts_with_all = ["server", "tune", "shards"])]
    pub engine: EngineKind,
    /// Filtered workloads to measure after the unfiltered one (--engine shard or --server
    /// --defaults): selectivities as fractions, comma-separated, e.g. 0.001,0.01,0.1,0.5. Each
    /// point gets an integer payload field per selectivity and each query filters on one value.
    #[arg(long, value_delimiter = ',')]
    pub filters: Vec<f64>,
    /// Longest wait, after the last write (--engine shard) or once the server reports no build
    /// running (--server --defaults), for the database to index every point; points still
    /// unindexed then are searched exactly, and the report says how many.
    #[arg(long, default_value_t = 10.0)]
    pub settle: f64,
    /// Rows of the mutable segment before it seals (--engine shard) [default: the server's,
    /// 50000].
    #[arg(long, help_heading = "Shard engine")]
    pub seal_threshold: Option<usize>,
    /// Inverted lists per sealed segment (--engine shard) [default: the server's, 256].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_nlist: Option<usize>,
    /// PQ sub-spaces (--engine shard) [default: the 4-bit fast-scan rule for the dimension, as
    /// the server's].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_pq_m: Option<usize>,
    /// PQ bits per code (--engine shard) [default: the server's, 4].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_pq_bits: Option<u8>,
    /// Lists probed by a query without params, fixed (--engine shard) [default: as the
    /// server, each sealed segment's calibrated choice].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_nprobe: Option<usize>,
    /// Re-rank factor of a query without params, fixed (--engine shard) [default: calibrated].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_rerank: Option<usize>,
    /// Recall@10 the calibrated choices aim for (--engine shard) [default: the server's, 0.95].
    #[arg(long, help_heading = "Shard engine")]
    pub shard_recall_target: Option<f64>,
    /// In-process index engine: also keep 8-bit codes of the raw vectors, as the database's
    /// sealed segments do (a quarter of the raw vectors' size, memory-mapped like them): the
    /// re-rank scores its candidates through them and reads raw only those that can still make
    /// the top k. The same answers; fewer raw reads.
    #[arg(long)]
    pub sq8: bool,
    /// In-process index engine: store every vector in a second list too, chosen by SOAR with
    /// this λ (1.5 is a good value; see `IvfPqConfig::soar_lambda`): twice the codes, far fewer
    /// lists probed for the same recall.
    #[arg(long, value_name = "LAMBDA")]
    pub soar: Option<f32>,
    /// Filter without payload indexes (--engine shard or --defaults with --filters): by
    /// default an integer index is created on every filtered field before the load.
    #[arg(long, requires = "filters")]
    pub no_payload_index: bool,
    /// Seconds to wait for the server's index builds after the last upsert (with --server).
    #[arg(long, default_value_t = 3600, requires = "server")]
    pub index_timeout: u64,
    /// API key for the server, sent as `api-key` (with --server).
    #[arg(long, env = "SHOAL_API_KEY", hide_env_values = true)]
    pub api_key: Option<super::remote::ApiKey>,
    /// Metric, overriding the dataset's: l2, cosine or dot (ground truth is then recomputed).
    #[arg(long, value_parser = parse_metric)]
    pub metric: Option<Metric>,
    /// Index only the first N base vectors (ground truth is then recomputed exactly).
    #[arg(long)]
    pub max_base: Option<usize>,
    /// Run only the first N queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw recall vs QPS here (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Other reports (peers, earlier runs) to draw on the same plot, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "plot")]
    pub compare: Vec<PathBuf>,
    /// Search for the fastest settings reaching --recall instead of sweeping a grid.
    #[arg(long)]
    pub tune: bool,
    /// Target recall@k for --tune.
    #[arg(long, requires = "tune", default_value_t = 0.95)]
    pub recall: f64,
    /// Timed passes over the queries for every reported row (not the tuner's samples); the
    /// pass with the median wall time is reported. A thousand queries at tens of thousands a
    /// second take tens of milliseconds, too short a time to compare builds on a shared machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub passes: u64,
    /// Queries per tuning measurement (the winner is confirmed on all of them).
    #[arg(long, default_value_t = 1000)]
    pub tune_queries: usize,
    /// A label for this run in reports and plots.
    #[arg(long)]
    pub label: Option<String>,
    /// Seed of the index builds.
    #[arg(long, default_value_t = 0x5ba1)]
    pub seed: u64,
    /// Split the base into this many shards in process, each its own IVF-PQ index built with
    /// the (per-shard) --nlist/--pq-m/--pq-bits [default nlist: the usual rule on the mean
    /// shard size]; each query asks the shards the placement probes and merges their top-k.
    /// With --server: the collection's `shard_number` (hash placement; ids are chosen so that
    /// every shard holds the same number of points), to measure the router's fan-out.
    #[arg(long, conflicts_with = "tune")]
    pub shards: Option<u32>,
    /// How --shards places points: hash (consistent-hash ring over ids; queries ask every shard)
    /// or centroid (nearest of a coarse quantiser's balanced clusters; queries ask --shard-probe).
    #[arg(long, value_enum, default_value = "hash", requires = "shards")]
    pub placement: PlacementKind,
    /// Shards asked per query with --placement centroid, comma-separated [default: all].
    #[arg(long = "shard-probe", value_delimiter = ',', requires = "shards")]
    pub shard_probe: Vec<usize>,
    /// Clusters of the centroid placement [default: 64 per shard, at least 39 sample points each].
    #[arg(long, requires = "shards")]
    pub placement_clusters: Option<usize>,
    /// Base vectors (drawn at random) the centroid placement is trained on.
    #[arg(long, default_value_t = 100_000, requires = "shards")]
    pub placement_sample: usize,
}

/// What `shoal bench` runs in process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// IVF-PQ indexes built directly on the whole base, swept over settings.
    Index,
    /// Shoal's shard engine used as the database uses it, with the collection defaults.
    Shard,
}

/// `shoal bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Draw recall vs QPS from existing reports (shoal runs and peer engines) on one chart.
    Plot(PlotArgs),
}

/// `shoal bench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Reports to draw, one series per engine or label.
    #[arg(long, num_args = 1.., required = true)]
    pub json: Vec<PathBuf>,
    /// Output file, .png or .svg.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    datasets::metric_from_name(name)
        .ok_or_else(|| format!("unknown metric {name:?}: use l2, cosine or dot"))
}

/// Runs `shoal bench` as the flags say.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    if let Some(BenchCommand::Plot(p)) = args.command {
        plot::plot_files(&p.json, &p.out)?;
        eprintln!("wrote {}", p.out.display());
        return Ok(());
    }
    let path = args
        .dataset
        .clone()
        .ok_or_else(|| BenchError::InvalidParameter("--dataset is required".into()))?;
    let mut dataset = datasets::load_with(
        &path,
        LoadOptions {
            metric: None,
            max_base: args.max_base,
        },
    )?;
    if let Some(metric) = args.metric
        && metric != dataset.metric
    {
        // Stored ground truth was computed under the dataset's own metric: recompute it.
        dataset.metric = metric;
        dataset.groundtruth = None;
    }
    if let Some(max) = args.max_queries
        && max < dataset.queries.nrows()
    {
        dataset.queries = dataset.queries.slice(ndarray::s![..max, ..]).to_owned();
        dataset.groundtruth = dataset
            .groundtruth
            .map(|gt| gt.slice(ndarray::s![..max, ..]).to_owned());
    }
    if dataset
        .groundtruth
        .as_ref()
        .is_none_or(|gt| gt.ncols() < args.k)
    {
        eprintln!(
            "computing exact ground truth ({} queries x {} base vectors, k = {})",
            dataset.queries.nrows(),
            dataset.base.nrows(),
            args.k
        );
        dataset.groundtruth = Some(
            datasets::try_exact_knn(
                dataset.base.view(),
                dataset.queries.view(),
                args.k,
                dataset.metric,
            )?
            .0,
        );
    }
    let clients = if args.server.is_some() {
        args.concurrency
    } else {
        args.threads
    };
    let mut workload = Workload::new(&dataset, args.k, clients)?;
    workload.seed = args.seed;
    workload.sample_queries = args.tune_queries.max(1);
    workload.sq8 = args.sq8;
    workload.soar_lambda = args.soar;
    workload.passes = args.passes as usize;
    let database = args.engine == EngineKind::Shard || args.defaults;
    if args.sq8 && (database || args.server.is_some()) {
        return Err(BenchError::InvalidParameter(
            "--sq8 applies to the in-process index engine; the database's sealed segments \
             always keep 8-bit codes"
                .into(),
        ));
    }
    if args.soar.is_some() && (database || args.server.is_some()) {
        return Err(BenchError::InvalidParameter(
            "--soar applies to the in-process index engines; the database's segments follow \
             their collection's settings"
                .into(),
        ));
    }
    if !args.filters.is_empty() && !database {
        return Err(BenchError::InvalidParameter(
            "--filters needs --engine shard or --server URL --defaults".into(),
        ));
    }
    if database {
        refuse_sweep_flags(&args)?;
        let report = run_database(&workload, &args)?;
        print!("{}", report.table());
        return finish(&report, &args);
    }

    let report = if args.tune {
        let mut options = TuneOptions::for_dataset(workload.n(), workload.dim(), args.recall);
        options.sampling = workload.sample_queries < dataset.queries.nrows();
        let (outcome, report) = run_tune(&workload, &options, args.label.clone())?;
        print!("{}", report.table());
        match outcome.best {
            Some(best) => {
                println!(
                    "\nfastest setting reaching recall@{} >= {} (confirmed on all {} queries):",
                    args.k,
                    args.recall,
                    dataset.queries.nrows()
                );
                let text = serde_json::to_string_pretty(&best.settings_json())
                    .map_err(|e| BenchError::InvalidParameter(e.to_string()))?;
                println!("{text}");
            }
            None => println!(
                "\nno setting reached recall@{} >= {}: try a larger pq_m, pq_bits 8 or more rerank",
                args.k, args.recall
            ),
        }
        report
    } else {
        let mut grid = SweepGrid {
            nlist: args.nlist.clone(),
            pq_m: args.pq_m.clone(),
            pq_bits: args.pq_bits.clone(),
            nprobe: args.nprobe.clone(),
            rerank: args.rerank.clone(),
        };
        if let Some(file) = &args.sweep {
            grid = grid.override_from_file(file)?;
        }
        if let Some(shards) = args.shards
            && grid.nlist.is_empty()
        {
            grid.nlist = vec![auto_shard_nlist(workload.n(), shards)];
        }
        let grid = grid.resolve(workload.n(), workload.dim())?;
        let report = match &args.server {
            Some(url) => {
                let options = RemoteOptions {
                    url: url.clone(),
                    concurrency: args.concurrency,
                    batch_size: args.batch_size,
                    ingest_concurrency: args.ingest_concurrency,
                    collection: args.collection.clone(),
                    keep: args.keep,
                    index_timeout: Duration::from_secs(args.index_timeout),
                    api_key: args.api_key.clone(),
                    shards: args.shards.unwrap_or(1),
                    query_batch: args.query_batch,
                    settle: Duration::from_secs_f64(args.settle.max(0.0)),
                    payload_indexes: true,
                };
                if args.shards.is_some() && args.placement != PlacementKind::Hash {
                    return Err(BenchError::InvalidParameter(
                        "--server with --shards measures hash placement only (the server trains \
                         centroid placement itself when the collection first fills)"
                            .into(),
                    ));
                }
                run_remote_sweep(&workload, &grid, &options, args.label.clone())?
            }
            None => match args.shards {
                Some(shards) => {
                    let options = ShardedOptions {
                        shard_probe: args.shard_probe.clone(),
                        clusters: args.placement_clusters,
                        sample: args.placement_sample,
                        ..ShardedOptions::new(shards, args.placement)
                    };
                    run_sharded_sweep(&workload, &grid, &options, args.label.clone())?
                }
                None => run_sweep(&workload, &grid, args.label.clone())?,
            },
        };
        if args.shards.is_some() && args.server.is_none() {
            print!("{}", sharded_table(&report));
        } else {
            print!("{}", report.table());
        }
        report
    };
    finish(&report, &args)
}

/// `--engine shard` or `--server URL --defaults`: one database loaded with the defaults and
/// queried without params, unfiltered and under each `--filters` selectivity.
/// The index sweep's flags say nothing to a database run, which builds with a collection's
/// settings: each is refused by name (with the shard engine's own flag where there is one) rather
/// than silently ignored.
fn refuse_sweep_flags(args: &BenchArgs) -> Result<(), BenchError> {
    let given = [
        ("--nlist", !args.nlist.is_empty(), "--shard-nlist"),
        ("--pq-m", !args.pq_m.is_empty(), "--shard-pq-m"),
        ("--pq-bits", !args.pq_bits.is_empty(), "--shard-pq-bits"),
        (
            "--sweep",
            args.sweep.is_some(),
            "--shard-nprobe/--shard-rerank",
        ),
    ];
    match given.iter().find(|g| g.1) {
        Some((flag, _, instead)) => Err(BenchError::InvalidParameter(format!(
            "{flag} sweeps the index engines and does not apply to a database run \
             (--engine shard or --defaults); with --engine shard use {instead}"
        ))),
        None => Ok(()),
    }
}

fn run_database(workload: &Workload<'_>, args: &BenchArgs) -> Result<BenchReport, BenchError> {
    if !(args.settle >= 0.0 && args.settle.is_finite()) {
        return Err(BenchError::InvalidParameter(format!(
            "--settle {}: give seconds, 0 or more",
            args.settle
        )));
    }
    let settle = Duration::from_secs_f64(args.settle);
    let filters = selectivities(&args.filters)?;
    match &args.server {
        Some(url) => {
            let filtered = filtered_workloads(workload, &filters)?;
            let options = RemoteOptions {
                url: url.clone(),
                concurrency: args.concurrency,
                batch_size: args.batch_size,
                ingest_concurrency: args.ingest_concurrency,
                collection: args.collection.clone(),
                keep: args.keep,
                index_timeout: Duration::from_secs(args.index_timeout),
                api_key: args.api_key.clone(),
                shards: 1,
                query_batch: args.query_batch,
                settle,
                payload_indexes: !args.no_payload_index,
            };
            run_remote_defaults(workload, &options, &filtered, args.label.clone())
        }
        None => {
            let options = DbOptions {
                defaults: {
                    // Unset flags: the server's own defaults.
                    let d = IndexDefaults::default();
                    ShardDefaults {
                        index: IndexDefaults {
                            seal_threshold: args.seal_threshold.unwrap_or(d.seal_threshold),
                            nlist: args.shard_nlist.unwrap_or(d.nlist),
                            pq_bits: args.shard_pq_bits.unwrap_or(d.pq_bits),
                            nprobe: args.shard_nprobe,
                            rerank: args.shard_rerank,
                            recall_target: args.shard_recall_target.unwrap_or(d.recall_target),
                        },
                        pq_m: args.shard_pq_m,
                    }
                },
                batch_size: args.batch_size,
                settle,
                filters,
                payload_indexes: !args.no_payload_index,
            };
            run_shard_db(workload, &options, args.label.clone())
        }
    }
}

fn finish(report: &BenchReport, args: &BenchArgs) -> Result<(), BenchError> {
    if let Some(rss) = report.peak_rss_bytes {
        println!("peak RSS: {}", super::report::human_bytes(rss));
    }
    if let Some(path) = &args.json {
        report.write(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(out) = &args.plot {
        let mut reports = vec![report.clone()];
        for path in &args.compare {
            reports.push(BenchReport::read(path)?);
        }
        plot::plot(
            &plot::series_from_reports(&reports),
            &plot::title_for(&reports),
            out,
        )?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
