//! The `shoal` binary: one executable for every role (`serve`, `bench`, `dataset`, `openapi`).

use clap::{Parser, Subcommand};
use shoal::cluster::ClusterOptions;
use shoal::config::{LogFormat, ServeArgs, ServeConfig};
use shoal::node::NodeOptions;
use shoal::router::RouterConfig;

/// mimalloc instead of glibc's malloc: a search request allocates and frees a few dozen small
/// buffers (request body, look-up tables, heaps, the answer) across two worker threads, and
/// glibc's allocator cost ~7% of the server's CPU per request in perf (`_int_malloc`,
/// `_int_free`, `malloc_consolidate`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shoal: a sharded approximate-nearest-neighbour vector database.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the SIMD level the distance kernels will use.
    Version,
    /// Benchmark datasets: generate, ground truth, info, list, fetch.
    Dataset(shoal::datasets::cli::DatasetArgs),
    /// Measure recall, QPS and latency on a dataset, sweep or tune IVF-PQ settings, plot results.
    Bench(Box<shoal::bench::cli::BenchArgs>),
    /// Serve the REST API as a cluster member (`--peers` or `--join`), or as a cluster of one
    /// with no cluster flags: 127.0.0.1:6333, data in ./data.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document of the REST API.
    Openapi,
}

fn init_logs(config: &ServeConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// A benchmark logs only when `SHOAL_LOG_LEVEL` asks (its report is the output): for example
/// `shoal::shard::subsets=debug` for each regrouping, `shoal::shard::search=trace` for each
/// segment's plan.
fn init_bench_logs() {
    if let Ok(level) = std::env::var("SHOAL_LOG_LEVEL")
        && let Ok(filter) = tracing_subscriber::EnvFilter::try_new(level)
    {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn run_server(config: ServeConfig) -> anyhow::Result<()> {
    init_logs(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build_global()?;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        rt.worker_threads(config.threads);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && config.api.api_key.is_none() {
            tracing::warn!(%addr, "listening beyond loopback without an API key: anyone who can reach this port can read and write");
        }
        let mut settings = config.cluster.clone();
        if settings.advertise_api == config.listen {
            // `--listen 127.0.0.1:0`: advertise the port actually bound.
            settings.advertise_api = addr.to_string();
        }
        let options = NodeOptions {
            cluster: ClusterOptions {
                settings,
                data_dir: config.data_dir.clone(),
                raft: config.raft.clone(),
                defaults: config.index,
            },
            router: RouterConfig {
                limits: config.api.limits,
                blocking_reads: config.blocking_reads,
                ..RouterConfig::default()
            },
            api: config.api.clone(),
        };
        shoal::node::run(listener, options, shutdown_signal()).await?;
        Ok(())
    })
}

/// Runs the command; an error is printed as one line, its causes joined by `: ` (never a
/// backtrace, whatever `RUST_BACKTRACE` says), and the exit code is 1.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line (a cause whose text is already in the line is not repeated;
/// line breaks inside a message become spaces).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            println!("shoal {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Dataset(args) => shoal::datasets::cli::run(args),
        Command::Bench(args) => {
            init_bench_logs();
            Ok(shoal::bench::cli::run(*args)?)
        }
        Command::Serve(args) => run_server(ServeConfig::load(*args)?),
        Command::Openapi => {
            println!("{}", shoal::api::openapi_json());
            Ok(())
        }
    }
}
