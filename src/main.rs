//! The `shoal` binary: one executable for every role (`serve`, `bench`, `dataset`, `openapi`).

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("shoal {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Dataset(args) => shoal::datasets::cli::run(args),
        Command::Bench(args) => Ok(shoal::bench::cli::run(*args)?),
    }
}
