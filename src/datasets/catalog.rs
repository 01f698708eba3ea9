//! The catalog of public benchmark sets (`datasets/catalog.toml`): where each file comes from,
//! what it holds and, where known, its sha256, so `shoal dataset fetch NAME` can download and
//! verify it. A checksum is only ever written into the catalog from a real download; an empty one
//! means "not verified", and fetch says so.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::fetch::FetchError;

/// The catalog that ships with shoal, compiled in so `fetch` works from any directory.
pub const DEFAULT_CATALOG: &str = include_str!("../../datasets/catalog.toml");

/// A parsed catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    /// The datasets, in file order.
    #[serde(rename = "dataset", default)]
    pub datasets: Vec<CatalogEntry>,
}

/// How a fetched dataset is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One ann-benchmarks `.hdf5` file, stored as `DIR/<file>`.
    Hdf5,
    /// A folder `DIR/<name>/` of base/query/groundtruth files.
    Folder,
}

/// One dataset of the catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEntry {
    /// The name `fetch` takes, e.g. `sift-128-euclidean`.
    pub name: String,
    /// One line on what the set is.
    #[serde(default)]
    pub description: String,
    /// Base rows.
    pub n: u64,
    /// Query rows.
    pub queries: u64,
    /// Dimension.
    pub dim: u64,
    /// `l2`, `cosine` or `dot`.
    pub metric: String,
    /// Rough download size for people choosing a set (`~501 MB`).
    #[serde(default)]
    pub approx_size: String,
    /// How the files are laid out.
    pub layout: Layout,
    /// The files to download.
    pub files: Vec<CatalogFile>,
}

/// One downloadable file.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogFile {
    /// Source URL (`http`/`https`; other schemes are listed for reference and refused by fetch).
    pub url: String,
    /// Name to store the file under.
    pub file: String,
    /// Expected size in bytes after any slicing, if known (0 = unknown).
    #[serde(default)]
    pub size: u64,
    /// Expected sha256 (lowercase hex) of the stored file; empty = unknown, fetch prints the
    /// computed one and reports it as not verified.
    #[serde(default)]
    pub sha256: String,
    /// For a big-ann `.fbin`/`.u8bin` base: keep only the first `rows` rows (downloaded with an
    /// HTTP Range request) and rewrite the header's row count.
    #[serde(default)]
    pub rows: Option<u64>,
    /// Bytes per element of a sliced file (4 for fbin, 1 for u8bin); needed with `rows`.
    #[serde(default)]
    pub elem_size: Option<u64>,
}

impl CatalogFile {
    /// The number of bytes a sliced download keeps: header plus `rows` rows.
    pub fn slice_bytes(&self, dim: u64) -> Option<u64> {
        Some(8 + self.rows? * dim * self.elem_size?)
    }
}

impl Catalog {
    /// Parses catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, FetchError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| FetchError::Catalog {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
        for d in &catalog.datasets {
            if super::metric_from_name(&d.metric).is_none() {
                return Err(FetchError::Catalog {
                    path: origin.to_path_buf(),
                    reason: format!("{}: unknown metric `{}`", d.name, d.metric),
                });
            }
            for f in &d.files {
                let hex = f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !(f.sha256.is_empty() || hex) {
                    return Err(FetchError::Catalog {
                        path: origin.to_path_buf(),
                        reason: format!("{}: sha256 of {} is not 64 hex digits", d.name, f.file),
                    });
                }
                if f.rows.is_some() != f.elem_size.is_some() {
                    return Err(FetchError::Catalog {
                        path: origin.to_path_buf(),
                        reason: format!(
                            "{}: {} needs both `rows` and `elem_size` to slice",
                            d.name, f.file
                        ),
                    });
                }
            }
        }
        Ok(catalog)
    }

    /// The built-in catalog, or the one at `path`.
    pub fn load(path: Option<&Path>) -> Result<Self, FetchError> {
        match path {
            None => Self::parse(
                DEFAULT_CATALOG,
                Path::new("datasets/catalog.toml (built in)"),
            ),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| FetchError::Io {
                    path: p.to_path_buf(),
                    source: e,
                })?;
                Self::parse(&text, p)
            }
        }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.datasets.iter().find(|d| d.name == name)
    }
}

impl CatalogEntry {
    /// Where `fetch` puts this dataset under `dir`: the `.hdf5` file, or the folder.
    pub fn local_path(&self, dir: &Path) -> PathBuf {
        match self.layout {
            Layout::Hdf5 => dir.join(
                self.files
                    .first()
                    .map_or(self.name.as_str(), |f| f.file.as_str()),
            ),
            Layout::Folder => dir.join(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalog_parses_and_lists_the_agreed_sets() {
        let c = Catalog::load(None).unwrap();
        for name in [
            "sift-128-euclidean",
            "glove-100-angular",
            "glove-200-angular",
            "gist-960-euclidean",
            "deep-image-96-angular",
            "fashion-mnist-784-euclidean",
            "mnist-784-euclidean",
            "nytimes-256-angular",
            "lastfm-64-dot",
        ] {
            let d = c.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(
                d.files[0].url,
                format!("http://ann-benchmarks.com/{name}.hdf5")
            );
        }
        assert!(c.datasets.iter().any(|d| d.name.starts_with("bigann")));
    }

    #[test]
    fn bad_checksum_field_is_refused() {
        let text = r#"
[[dataset]]
name = "x"
n = 1
queries = 1
dim = 1
metric = "l2"
layout = "hdf5"
files = [{ url = "http://127.0.0.1/x", file = "x.hdf5", sha256 = "abc" }]
"#;
        assert!(Catalog::parse(text, Path::new("t.toml")).is_err());
    }
}
