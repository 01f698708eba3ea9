//! Finding and loading a dataset: an ann-benchmarks HDF5 file, an `.npz` archive, or a folder
//! holding `base`, `query` and `groundtruth` files in any format [`VectorFile`] reads.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::npy;
use super::reader::{Backing, Format, VectorFile};
use super::{Dataset, DatasetError, LoadOptions, dataset_name, metric_from_name};
use crate::index::Metric;

/// The part of a dataset a file in a folder holds, judged from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Base,
    Query,
    GroundTruth,
}

fn tokens(name: &str) -> Vec<String> {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn role_of(name: &str) -> Option<Role> {
    let t = tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    if has(&["learn", "distances"]) {
        return None; // texmex training vectors; rapids' separate distance files
    }
    if has(&["groundtruth", "gt", "gnd", "neighbors"]) {
        Some(Role::GroundTruth)
    } else if has(&["query", "queries"]) {
        Some(Role::Query)
    } else if has(&["base", "database"]) {
        Some(Role::Base)
    } else {
        None
    }
}

/// The base, query and ground-truth files a folder holds.
#[derive(Debug, Clone)]
pub struct FolderParts {
    /// The base vectors.
    pub base: PathBuf,
    /// The query vectors.
    pub query: PathBuf,
    /// Exact neighbours, if the folder has them.
    pub groundtruth: Option<PathBuf>,
    /// The metric named by a `metric` file, if any.
    pub metric: Option<Metric>,
}

/// Finds the dataset files in `dir` (names with or without a common prefix: `sift_base.fvecs`,
/// `base.1B.fbin`, `query.public.10K.fbin`, `groundtruth.public.10K.ibin`; `learn` files are
/// ignored).
pub fn find_parts(dir: &Path) -> Result<FolderParts, DatasetError> {
    let mut found: [Vec<PathBuf>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut metric = None;
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "metric" || name == "metric.txt" {
            let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, e))?;
            let text = text.trim();
            metric = Some(metric_from_name(text).ok_or_else(|| {
                DatasetError::unsupported(
                    &path,
                    format!("unknown metric `{text}` (want l2, cosine or dot)"),
                )
            })?);
            continue;
        }
        if Format::from_path(&path).is_none() || !path.is_file() {
            continue;
        }
        if let Some(role) = role_of(&name) {
            found[role as usize].push(path);
        }
    }
    let mut pick = |role: Role, what: &str| -> Result<Option<PathBuf>, DatasetError> {
        let list = &mut found[role as usize];
        list.sort();
        match list.len() {
            0 => Ok(None),
            1 => Ok(list.pop()),
            _ => Err(DatasetError::inconsistent(
                dir,
                format!(
                    "several {what} files: {}",
                    list.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    };
    let base = pick(Role::Base, "base")?;
    let query = pick(Role::Query, "query")?;
    let groundtruth = pick(Role::GroundTruth, "ground-truth")?;
    let base = base.ok_or_else(|| {
        DatasetError::inconsistent(dir, "no base file (a name containing `base`)")
    })?;
    let query = query.ok_or_else(|| {
        DatasetError::inconsistent(dir, "no query file (a name containing `query`)")
    })?;
    Ok(FolderParts {
        base,
        query,
        groundtruth,
        metric,
    })
}

/// Reads the first `max` rows (all when `None`) of `file`.
fn read_prefix(file: &VectorFile, max: Option<usize>) -> Result<Array2<f32>, DatasetError> {
    let rows = max.map_or(file.rows(), |m| m.min(file.rows()));
    file.read_rows_f32(0, rows)
}

/// Checks that the parts agree and builds the [`Dataset`].
fn assemble(
    origin: &Path,
    metric: Metric,
    base: &VectorFile,
    queries: &VectorFile,
    groundtruth: Option<&VectorFile>,
    options: &LoadOptions,
) -> Result<Dataset, DatasetError> {
    if base.dim() != queries.dim() {
        return Err(DatasetError::inconsistent(
            origin,
            format!(
                "base has dimension {}, queries have {}",
                base.dim(),
                queries.dim()
            ),
        ));
    }
    let truncated = options.max_base.is_some_and(|m| m < base.rows());
    let base_rows = read_prefix(base, options.max_base)?;
    let query_rows = queries.read_all_f32()?;
    let groundtruth = match groundtruth {
        // Ground truth over the full base says nothing about a prefix of it.
        Some(gt) if !truncated => {
            let ids = gt.read_all_u32()?;
            if ids.nrows() != query_rows.nrows() {
                return Err(DatasetError::inconsistent(
                    origin,
                    format!(
                        "ground truth has {} rows for {} queries",
                        ids.nrows(),
                        query_rows.nrows()
                    ),
                ));
            }
            if let Some(bad) = ids.iter().find(|&&v| v as usize >= base_rows.nrows()) {
                return Err(DatasetError::inconsistent(
                    origin,
                    format!(
                        "ground truth holds id {bad}, the base has {} rows",
                        base_rows.nrows()
                    ),
                ));
            }
            Some(ids)
        }
        _ => None,
    };
    Ok(Dataset {
        name: dataset_name(origin),
        metric,
        base: base_rows,
        queries: query_rows,
        groundtruth,
    })
}

/// Loads a folder of base/query/groundtruth files.
pub fn load_folder(dir: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let parts = find_parts(dir)?;
    let base = VectorFile::open(&parts.base)?;
    let queries = VectorFile::open(&parts.query)?;
    let gt = parts
        .groundtruth
        .as_deref()
        .map(VectorFile::open)
        .transpose()?;
    let metric = options.metric.or(parts.metric).unwrap_or(Metric::L2);
    assemble(dir, metric, &base, &queries, gt.as_ref(), options)
}

/// The metric a file name implies (`...-cos.f16.npz`, `glove-100-angular`), if any.
fn metric_from_file_name(path: &Path) -> Option<Metric> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    tokens(&name).iter().find_map(|t| match t.as_str() {
        "cos" | "cosine" | "angular" => Some(Metric::Cosine),
        "dot" | "ip" => Some(Metric::Dot),
        "l2" | "euclidean" => Some(Metric::L2),
        _ => None,
    })
}

/// Opens the first of `names` that the archive holds.
fn npz_member(
    path: &Path,
    backing: &Backing,
    names: &[&str],
) -> Result<Option<VectorFile>, DatasetError> {
    for name in names {
        if let Some(f) = npy::open_npz_member(path, backing, name)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

const NPZ_BASE: &[&str] = &["base", "train"];
const NPZ_QUERY: &[&str] = &["query", "queries", "test"];
const NPZ_GT: &[&str] = &["groundtruth", "neighbors", "gt"];

/// Loads a `.npz` archive with arrays `base` (or `train`), `query` (or `test`) and optionally
/// `groundtruth` (or `neighbors`); the metric comes from the options, then the file name
/// (`cos`, `angular`, `dot`, `ip`, `l2`, `euclidean`), then defaults to L2.
pub fn load_npz(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let backing = Backing::map(path)?;
    let missing = |what: &str, names: &[&str]| {
        DatasetError::inconsistent(path, format!("no {what} array (looked for {names:?})"))
    };
    let base = npz_member(path, &backing, NPZ_BASE)?.ok_or_else(|| missing("base", NPZ_BASE))?;
    let queries =
        npz_member(path, &backing, NPZ_QUERY)?.ok_or_else(|| missing("query", NPZ_QUERY))?;
    let gt = npz_member(path, &backing, NPZ_GT)?;
    let metric = options
        .metric
        .or_else(|| metric_from_file_name(path))
        .unwrap_or(Metric::L2);
    assemble(path, metric, &base, &queries, gt.as_ref(), options)
}

/// How a path is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// One ann-benchmarks `.hdf5` file.
    Hdf5,
    /// One numpy `.npz` archive.
    Npz,
    /// A folder of base/query/groundtruth files.
    Folder,
    /// One vector file ([`Format`]: `.fvecs`, `.bvecs`, `.ivecs`, `.fbin`, `.npy`, ...): a part
    /// of a dataset, which `shoal dataset info` describes but [`load`](super::load) cannot use
    /// alone (a dataset needs base and queries).
    File,
}

/// Decides how `path` is stored from what it is and its extension.
pub fn container_of(path: &Path) -> Result<Container, DatasetError> {
    if path.is_dir() {
        return Ok(Container::Folder);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        _ if !path.exists() => Err(DatasetError::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )),
        Some("hdf5" | "h5") => Ok(Container::Hdf5),
        Some("npz") => Ok(Container::Npz),
        _ if Format::from_path(path).is_some() => Ok(Container::File),
        _ => Err(DatasetError::unsupported(
            path,
            "not a folder, an .hdf5 file, an .npz archive or a vector file \
             (.fvecs, .ivecs, .bvecs, .fbin, .u8bin, .i8bin, .ibin, .npy)",
        )),
    }
}

/// The error for loading one vector file as a whole dataset.
pub fn single_file_error(path: &Path) -> DatasetError {
    DatasetError::unsupported(
        path,
        "one vector file is not a dataset (it needs base and query vectors): give the folder \
         holding it, an .hdf5 file or an .npz archive (`shoal dataset info` describes the file)",
    )
}

/// One file of a dataset as `shoal dataset info` reports it.
#[derive(Debug, Clone)]
pub struct PartSummary {
    /// `base`, `query`, `groundtruth`, or `vectors` for a file whose name gives no role.
    pub role: &'static str,
    /// File (or archive member).
    pub path: PathBuf,
    /// Rows and elements per row.
    pub shape: (usize, usize),
    /// Stored element type.
    pub dtype: String,
    /// Size on disk in bytes (the archive's for members).
    pub bytes: u64,
}

/// What a dataset holds, read from headers only.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How it is stored.
    pub container: Container,
    /// The metric it would load with (attribute, `metric` file, file name, or the L2 default).
    pub metric: Metric,
    /// Its parts.
    pub parts: Vec<PartSummary>,
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn part(role: &'static str, f: &VectorFile, bytes: u64) -> PartSummary {
    let dtype = if f.has_distances() {
        format!("{} + f32 distances", f.elem().name())
    } else {
        f.elem().name().to_string()
    };
    PartSummary {
        role,
        path: f.origin().to_path_buf(),
        shape: (f.rows(), f.dim()),
        dtype,
        bytes,
    }
}

/// Summarises a dataset without loading its vectors.
pub fn summarize(path: &Path) -> Result<Summary, DatasetError> {
    match container_of(path)? {
        Container::Folder => {
            let parts = find_parts(path)?;
            let mut out = Vec::new();
            for (role, p) in [
                ("base", Some(&parts.base)),
                ("query", Some(&parts.query)),
                ("groundtruth", parts.groundtruth.as_ref()),
            ] {
                if let Some(p) = p {
                    let f = VectorFile::open(p)?;
                    out.push(part(role, &f, file_size(p)));
                }
            }
            Ok(Summary {
                container: Container::Folder,
                metric: parts.metric.unwrap_or(Metric::L2),
                parts: out,
            })
        }
        Container::Npz => {
            let backing = Backing::map(path)?;
            let size = file_size(path);
            let mut out = Vec::new();
            for (role, names) in [
                ("base", NPZ_BASE),
                ("query", NPZ_QUERY),
                ("groundtruth", NPZ_GT),
            ] {
                if let Some(f) = npz_member(path, &backing, names)? {
                    out.push(part(role, &f, size));
                }
            }
            Ok(Summary {
                container: Container::Npz,
                metric: metric_from_file_name(path).unwrap_or(Metric::L2),
                parts: out,
            })
        }
        Container::File => {
            let f = VectorFile::open(path)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let role = match role_of(&name) {
                Some(Role::Base) => "base",
                Some(Role::Query) => "query",
                Some(Role::GroundTruth) => "groundtruth",
                None => "vectors",
            };
            Ok(Summary {
                container: Container::File,
                metric: metric_from_file_name(path).unwrap_or(Metric::L2),
                parts: vec![part(role, &f, file_size(path))],
            })
        }
        Container::Hdf5 => summarize_hdf5_container(path),
    }
}

#[cfg(feature = "hdf5")]
fn summarize_hdf5_container(path: &Path) -> Result<Summary, DatasetError> {
    let s = super::hdf5::summarize_hdf5(path)?;
    let size = file_size(path);
    let metric = match &s.distance {
        Some(d) => metric_from_name(d)
            .ok_or_else(|| DatasetError::unsupported(path, format!("distance `{d}`")))?,
        None => Metric::L2,
    };
    let ann_benchmarks = [
        ("train", "base"),
        ("test", "query"),
        ("neighbors", "groundtruth"),
    ];
    let part = |role, (name, shape, dtype): &(String, _, String)| PartSummary {
        role,
        path: path.join(name),
        shape: *shape,
        dtype: dtype.clone(),
        bytes: size,
    };
    let mut parts: Vec<PartSummary> = ann_benchmarks
        .iter()
        .filter_map(|&(name, role)| Some(part(role, s.datasets.iter().find(|(n, ..)| n == name)?)))
        .collect();
    if parts.is_empty() {
        // Not the ann-benchmarks layout: one file of vectors under other names.
        parts = s.datasets.iter().map(|d| part("vectors", d)).collect();
    }
    if parts.is_empty() {
        return Err(DatasetError::inconsistent(
            path,
            "no two-dimensional numeric dataset in the root group",
        ));
    }
    Ok(Summary {
        container: Container::Hdf5,
        metric,
        parts,
    })
}

#[cfg(not(feature = "hdf5"))]
fn summarize_hdf5_container(path: &Path) -> Result<Summary, DatasetError> {
    Err(super::no_hdf5(path))
}
