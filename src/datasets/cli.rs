//! `shoal dataset ...`: generate synthetic sets, compute ground truth, inspect, list and fetch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::catalog::Catalog;
use super::fetch::{FetchOptions, Verification, fetch_entry};
use super::generate::{Difficulty, GenerateConfig, GeneratorKind, generate};
use super::groundtruth::try_exact_knn;
use super::writer::{write_fbin, write_fvecs, write_ibin, write_ivecs};
use super::{LoadOptions, load_with, metric_from_name};
use crate::index::Metric;

/// Arguments of `shoal dataset`.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    command: DatasetCommand,
}

fn parse_metric(s: &str) -> Result<Metric, String> {
    metric_from_name(s).ok_or_else(|| format!("unknown metric `{s}` (want l2, cosine or dot)"))
}

/// File formats a generated folder can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FolderFormat {
    /// texmex: base.fvecs, query.fvecs, groundtruth.ivecs.
    Fvecs,
    /// big-ann: base.fbin, query.fbin, groundtruth.ibin (ids then distances).
    Bin,
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Generate a seeded synthetic dataset with exact ground truth, as a folder or (`.hdf5`) one
    /// ann-benchmarks file.
    Generate {
        /// Shape of the data.
        #[arg(long, value_enum, default_value = "sift-like")]
        kind: GeneratorKind,
        /// Base vectors.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Query vectors.
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// Dimension.
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// Seed; the same seed writes the same data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Clusters (gaussian, sift-like); 0 picks a default.
        #[arg(long, default_value_t = 0)]
        clusters: usize,
        /// How hard a sift-like set is for an inverted index: `easy` (well-separated clusters,
        /// as every earlier sift-like set), `sift` (about SIFT1M's IVF-Flat recall curve) or
        /// `hard`.
        #[arg(long, value_enum, default_value = "easy")]
        difficulty: Difficulty,
        /// Ground-truth neighbours per query.
        #[arg(long, default_value_t = 100)]
        k: usize,
        /// Metric of the ground truth.
        #[arg(long, value_parser = parse_metric, default_value = "l2")]
        metric: Metric,
        /// Folder layout when `--out` is not an `.hdf5` file.
        #[arg(long, value_enum, default_value = "fvecs")]
        format: FolderFormat,
        /// Output: a folder, or a file ending in `.hdf5`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Compute exact ground truth for a dataset's queries.
    Groundtruth {
        /// Dataset: `.hdf5`, `.npz` or a folder.
        #[arg(long)]
        dataset: PathBuf,
        /// Neighbours per query.
        #[arg(long, default_value_t = 100)]
        k: usize,
        /// Override the dataset's metric.
        #[arg(long, value_parser = parse_metric)]
        metric: Option<Metric>,
        /// Use only the first rows of the base.
        #[arg(long)]
        max_base: Option<usize>,
        /// Output: `.ivecs`, `.ibin` (with distances) or `.hdf5` (an existing file gets its
        /// neighbors/distances replaced; a new one gets the whole dataset).
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a dataset (sizes, dimension, metric, element types, ground truth) or one vector
    /// file (rows, dimension, element type).
    Info {
        /// Dataset: `.hdf5`, `.npz` or a folder; or one vector file (`.fvecs`, `.ivecs`, `.bvecs`,
        /// `.fbin`, `.u8bin`, `.i8bin`, `.ibin`, `.npy`).
        path: PathBuf,
    },
    /// List the catalog's datasets.
    List {
        /// Use this catalog instead of the built-in one.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Download a catalog dataset (resumable, checksummed).
    Fetch {
        /// Dataset name from the catalog.
        name: String,
        /// Where to store it.
        #[arg(long, default_value = "datasets/cache")]
        dir: PathBuf,
        /// Use this catalog instead of the built-in one.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

fn is_hdf5(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("hdf5") || e.eq_ignore_ascii_case("h5"))
}

/// Runs `shoal dataset ...`.
pub fn run(args: DatasetArgs) -> anyhow::Result<()> {
    match args.command {
        DatasetCommand::Generate {
            kind,
            n,
            queries,
            dim,
            seed,
            clusters,
            difficulty,
            k,
            metric,
            format,
            out,
        } => {
            let t = Instant::now();
            let (base, q) = generate(&GenerateConfig {
                kind,
                n,
                queries,
                dim,
                seed,
                clusters,
                difficulty,
            })?;
            eprintln!(
                "generated {n} x {dim} base and {queries} queries in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let t = Instant::now();
            let (ids, dists) = try_exact_knn(base.view(), q.view(), k, metric)?;
            eprintln!(
                "exact top-{k} ({metric:?}) in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            if is_hdf5(&out) {
                write_hdf5(&out, &base, &q, &ids, &dists, metric)?;
            } else {
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                match format {
                    FolderFormat::Fvecs => {
                        write_fvecs(&out.join("base.fvecs"), base.view())?;
                        write_fvecs(&out.join("query.fvecs"), q.view())?;
                        write_ivecs(&out.join("groundtruth.ivecs"), ids.view())?;
                    }
                    FolderFormat::Bin => {
                        write_fbin(&out.join("base.fbin"), base.view())?;
                        write_fbin(&out.join("query.fbin"), q.view())?;
                        write_ibin(
                            &out.join("groundtruth.ibin"),
                            ids.view(),
                            Some(dists.view()),
                        )?;
                    }
                }
                let name = match metric {
                    Metric::L2 => "l2",
                    Metric::Cosine => "cosine",
                    Metric::Dot => "dot",
                };
                std::fs::write(out.join("metric"), format!("{name}\n"))?;
            }
            println!("wrote {}", out.display());
            Ok(())
        }
        DatasetCommand::Groundtruth {
            dataset,
            k,
            metric,
            max_base,
            out,
        } => {
            let ds = load_with(&dataset, LoadOptions { metric, max_base })?;
            let t = Instant::now();
            let (ids, dists) = try_exact_knn(ds.base.view(), ds.queries.view(), k, ds.metric)?;
            eprintln!(
                "exact top-{k} of {} queries over {} x {} ({:?}) in {:.1} s",
                ds.queries.nrows(),
                ds.base.nrows(),
                ds.base.ncols(),
                ds.metric,
                t.elapsed().as_secs_f64()
            );
            let ext = out
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            match ext.as_deref() {
                Some("ivecs") => write_ivecs(&out, ids.view())?,
                Some("ibin") => write_ibin(&out, ids.view(), Some(dists.view()))?,
                _ if is_hdf5(&out) => {
                    if out.exists() {
                        replace_hdf5_groundtruth(&out, ds.metric, &ids, &dists)?;
                    } else {
                        write_hdf5(&out, &ds.base, &ds.queries, &ids, &dists, ds.metric)?;
                    }
                }
                _ => bail!(
                    "{}: output must end in .ivecs, .ibin or .hdf5",
                    out.display()
                ),
            }
            println!("wrote {}", out.display());
            Ok(())
        }
        DatasetCommand::Info { path } => {
            let s = super::load::summarize(&path)?;
            println!("dataset:   {}", path.display());
            println!("stored as: {:?}", s.container);
            let single = s.container == super::load::Container::File;
            if !single {
                // A lone vector file names no metric; a dataset's default is L2.
                println!("metric:    {:?}", s.metric);
            }
            if s.container != super::load::Container::Folder {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                println!("file size: {size} bytes");
            }
            println!(
                "{:<12} {:>11}   {:<5} {:<18} {:>14}  source",
                "part", "rows", "dim", "dtype", "bytes"
            );
            for p in &s.parts {
                let bytes = if s.container == super::load::Container::Folder {
                    p.bytes.to_string()
                } else {
                    "-".into()
                };
                println!(
                    "{:<12} {:>11} x {:<5} {:<18} {:>14}  {}",
                    p.role,
                    p.shape.0,
                    p.shape.1,
                    p.dtype,
                    bytes,
                    p.path.display()
                );
            }
            match s.parts.iter().find(|p| p.role == "groundtruth") {
                Some(gt) => println!("groundtruth: yes, k = {}", gt.shape.1),
                None if single => {}
                None => println!("groundtruth: no (compute it with `shoal dataset groundtruth`)"),
            }
            Ok(())
        }
        DatasetCommand::List { catalog } => {
            let c = Catalog::load(catalog.as_deref())?;
            for d in &c.datasets {
                println!(
                    "{:<30} {:>10} x {:<4} {:>7} q  {:<7} {:<20} {}",
                    d.name, d.n, d.dim, d.queries, d.metric, d.approx_size, d.description
                );
            }
            Ok(())
        }
        DatasetCommand::Fetch { name, dir, catalog } => {
            let c = Catalog::load(catalog.as_deref())?;
            let entry = c
                .get(&name)
                .ok_or_else(|| super::fetch::FetchError::UnknownDataset(name.clone()))?;
            let (path, files) = fetch_entry(entry, &dir, &FetchOptions { progress: true })?;
            for f in &files {
                match &f.verification {
                    Verification::Verified => {
                        println!("{}: {} bytes, sha256 verified", f.path.display(), f.bytes)
                    }
                    Verification::Unverified(sum) => println!(
                        "{}: {} bytes, sha256 {sum} NOT verified (the catalog has no checksum for it)",
                        f.path.display(),
                        f.bytes
                    ),
                }
            }
            println!("dataset ready: shoal bench --dataset {}", path.display());
            Ok(())
        }
    }
}

#[cfg(feature = "hdf5")]
fn write_hdf5(
    out: &Path,
    base: &ndarray::Array2<f32>,
    queries: &ndarray::Array2<f32>,
    ids: &ndarray::Array2<u32>,
    dists: &ndarray::Array2<f32>,
    metric: Metric,
) -> anyhow::Result<()> {
    Ok(super::hdf5::write_hdf5(
        out,
        base.view(),
        queries.view(),
        Some((ids.view(), dists.view())),
        metric,
    )?)
}

#[cfg(feature = "hdf5")]
fn replace_hdf5_groundtruth(
    out: &Path,
    metric: Metric,
    ids: &ndarray::Array2<u32>,
    dists: &ndarray::Array2<f32>,
) -> anyhow::Result<()> {
    Ok(super::hdf5::write_hdf5_groundtruth(
        out,
        metric,
        ids.view(),
        dists.view(),
    )?)
}

#[cfg(not(feature = "hdf5"))]
fn write_hdf5(
    out: &Path,
    _: &ndarray::Array2<f32>,
    _: &ndarray::Array2<f32>,
    _: &ndarray::Array2<u32>,
    _: &ndarray::Array2<f32>,
    _: Metric,
) -> anyhow::Result<()> {
    Err(super::no_hdf5(out).into())
}

#[cfg(not(feature = "hdf5"))]
fn replace_hdf5_groundtruth(
    out: &Path,
    _: Metric,
    _: &ndarray::Array2<u32>,
    _: &ndarray::Array2<f32>,
) -> anyhow::Result<()> {
    Err(super::no_hdf5(out).into())
}
