//! Users' snapshots (Qdrant's snapshots API): one archive file per snapshot, built on the
//! segment-file snapshots every shard already makes ([`crate::shard::Shard::snapshot`]).
//!
//! ## What a snapshot is
//! A [`crate::storage::archive`] file whose `meta` is a [`SnapshotMeta`] (JSON text: the kind,
//! the node, and per collection its name, the [`CollectionSpec`] and named vectors that recreate
//! it and the shards held) and whose members are each shard's snapshot directory,
//! `<c>/<s>/shard.snap` and `<c>/<s>/seg-*.seg` (`c` the collection's index in `meta`, `s` the
//! shard number), with the lanes of named vectors after the first in `<c>/<s>/lanes/<i>/`
//! ([`crate::shard::Lanes`]; `named` is absent from snapshots of builds before them). Its
//! SHA-256 is computed as it is written and kept beside it in `<name>.checksum`.
//!
//! Three kinds, as Qdrant has them, stored under the node's data directory:
//! - **collection**: every shard of one collection, `snapshots/<collection>/<collection>-<node>-<time>.snapshot`;
//! - **shard**: one shard, `snapshots/<collection>/shards/<shard>/<collection>-shard-<shard>-<node>-<time>.snapshot`;
//! - **full**: every collection, `snapshots/full-snapshot-<node>-<time>.snapshot`.
//!
//! A snapshot holds the shard replicas **on this node**, as Qdrant's does. A collection (or full)
//! snapshot on a node that lacks a replica of some shard is refused with a 400 naming the
//! shard, never written partial. A replica holds a prefix of its group's log (what it applied);
//! on the shard's leader that is every acknowledged write.
//!
//! ## Recovery
//! [`open`] checks an archive (head, member names, each member's CRC) and restores each shard
//! from it into a temporary directory; the router then recreates the collection through the
//! metadata group and writes the points through the ordinary replicated write path
//! (`crate::router::Router::recover_collection`), so every replica of the recovered collection
//! holds the same state however many nodes there are. Which locations may be read is the
//! caller's decision: [`Snapshots::local_location`] confines `file://` locations to this node's
//! snapshots directory.

use super::Cluster;
use crate::collection::spec::{IvfPqSpec, SearchSpec, VectorSpec};
use crate::collection::{CollectionConfig, CollectionSpec, Error, NamedVector, NamedVectorSpec};
use crate::shard::Lanes;
use crate::storage::archive;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The directory below the data directory that holds users' snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// A snapshot file's extension.
pub const EXTENSION: &str = ".snapshot";
/// The extension of a snapshot's checksum file (`<name>.checksum`, the hex SHA-256).
pub const CHECKSUM_EXTENSION: &str = ".checksum";
/// The `format` field of every [`SnapshotMeta`].
pub const META_FORMAT: &str = "shoal-snapshot";

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A core error: bad request, unknown collection, unavailable, internal.
    #[error(transparent)]
    Core(#[from] Error),
    /// The snapshot named does not exist (404).
    #[error("{0}")]
    NotFound(String),
}

impl SnapshotError {
    fn bad(m: impl Into<String>) -> Self {
        SnapshotError::Core(Error::BadRequest(m.into()))
    }
    fn internal(m: impl std::fmt::Display) -> Self {
        SnapshotError::Core(Error::Internal(m.to_string()))
    }
}

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every shard of one collection.
    Collection(String),
    /// One shard of a collection.
    Shard(String, u32),
    /// Every collection.
    Full,
}

/// The kind recorded in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    /// A collection snapshot.
    Collection,
    /// A shard snapshot.
    Shard,
    /// A full snapshot.
    Full,
}

/// One collection in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapCollection {
    /// Its name when the snapshot was taken.
    pub name: String,
    /// What recreates it (every setting of its resolved configuration).
    pub spec: CollectionSpec,
    /// Its named vectors (none: one unnamed vector, `spec`'s). Absent in the snapshots of
    /// builds before named vectors, which had none.
    #[serde(default)]
    pub named: Vec<NamedVectorSpec>,
    /// Its shard count.
    pub shard_number: u32,
    /// The shards the snapshot holds (all of them but in a shard snapshot).
    pub shards: Vec<u32>,
}

/// The archive's `meta` (JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Always [`META_FORMAT`].
    pub format: String,
    /// The kind.
    pub kind: SnapshotKind,
    /// The node that took it.
    pub node: u64,
    /// The collections.
    pub collections: Vec<SnapCollection>,
}

/// Qdrant's `SnapshotDescription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotDescription {
    /// The file name (what download, delete and `file://` recovery name).
    pub name: String,
    /// When it was written, UTC, `YYYY-MM-DDTHH:MM:SS`.
    pub creation_time: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lower-case hex.
    pub checksum: Option<String>,
}

/// The spec that recreates a collection with exactly this configuration.
pub fn spec_of(config: &CollectionConfig) -> CollectionSpec {
    CollectionSpec {
        vectors: VectorSpec {
            dim: config.vectors.dim,
            metric: config.vectors.metric,
        },
        shard_number: Some(config.shard_number),
        replication_factor: Some(config.replication_factor),
        placement: Some(config.placement),
        ivf_pq: IvfPqSpec {
            nlist: Some(config.ivf_pq.nlist),
            pq_m: Some(config.ivf_pq.pq_m),
            pq_bits: Some(config.ivf_pq.pq_bits),
            seal_threshold: Some(config.ivf_pq.seal_threshold),
        },
        search: SearchSpec {
            nprobe: config.search.nprobe,
            rerank: config.search.rerank,
            shard_probe: Some(config.search.shard_probe),
            recall_target: Some(config.search.recall_target),
        },
    }
}

/// The spec that recreates a collection of this configuration and these named vectors. Each
/// named vector derived its own `pq_m` from its dimension when the create gave none, and the
/// collection's own is lane 0's: it is kept only when every named vector has that one (an
/// explicit setting, or defaults that agreed), else left for each vector to derive again.
pub fn recreating_spec(config: &CollectionConfig, named: &[NamedVector]) -> CollectionSpec {
    let mut spec = spec_of(config);
    if named.iter().any(|n| n.pq_m != config.ivf_pq.pq_m) {
        spec.ivf_pq.pq_m = None;
    }
    spec
}

/// A snapshot's spec with a `pq_m` that divides every named vector's dimension: snapshots
/// written before [`recreating_spec`] carried lane 0's `pq_m` for all of them.
pub fn recoverable_spec(spec: &CollectionSpec, named: &[NamedVectorSpec]) -> CollectionSpec {
    let mut spec = *spec;
    if let Some(m) = spec.ivf_pq.pq_m
        && named
            .iter()
            .any(|n| m == 0 || n.vectors.dim % m as u64 != 0)
    {
        spec.ivf_pq.pq_m = None;
    }
    spec
}

/// The specs that recreate these named vectors.
pub fn named_specs(named: &[NamedVector]) -> Vec<NamedVectorSpec> {
    named
        .iter()
        .map(|n| NamedVectorSpec {
            name: n.name.clone(),
            vectors: VectorSpec {
                dim: n.space.dim,
                metric: n.space.metric,
            },
        })
        .collect()
}

/// Checks a snapshot name given by a user: a file name of `[A-Za-z0-9._-]` ending in
/// [`EXTENSION`], not starting with a dot (so it can only name a snapshot file in the directory
/// it is looked up in).
pub fn check_snapshot_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.ends_with(EXTENSION)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::bad(format!(
            "invalid snapshot name {name:?}: a snapshot is a file name of A-Z a-z 0-9 . _ - ending in `{EXTENSION}`"
        )))
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `t`.
pub fn iso_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day, h, m, s) = super::status::utc_civil(secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")
}

static STAGING: AtomicU64 = AtomicU64::new(0);

/// A directory removed when dropped.
#[derive(Debug)]
pub struct Staging(PathBuf);

impl Staging {
    /// A fresh directory `.<what>-<pid>-<n>` under `root`. Directories of earlier processes
    /// (`.<what>-<other pid>-*`, left by a crash) are removed first.
    pub fn new(root: &Path, what: &str) -> Result<Staging, SnapshotError> {
        let ours = format!(".{what}-{}-", std::process::id());
        let prefix = format!(".{what}-");
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && !name.starts_with(&ours) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let n = STAGING.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!(".{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| SnapshotError::internal(format!("{}: {e}", dir.display())))?;
        Ok(Staging(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A snapshot read back for a recovery: its description and each shard restored.
pub struct Opened {
    /// The archive's description.
    pub meta: SnapshotMeta,
    /// Per collection of `meta`, its shards restored from the snapshot (shard number, the
    /// shard's lanes: one per vector).
    pub shards: Vec<Vec<(u32, Lanes)>>,
    /// The directory the shards' files were extracted into (removed when this is dropped).
    _staging: Staging,
}

/// Checks the archive at `path` against `checksum` (SHA-256 hex, if given), decodes its
/// description, and restores every shard it holds (blocking: run it off the async workers).
/// Extraction happens under `root` (the snapshots directory), in a directory of its own.
pub fn open(path: &Path, checksum: Option<&str>, root: &Path) -> Result<Opened, SnapshotError> {
    if let Some(want) = checksum {
        let got = archive::sha256_file(path).map_err(|e| SnapshotError::bad(e.to_string()))?;
        if !got.eq_ignore_ascii_case(want.trim()) {
            return Err(SnapshotError::bad(format!(
                "checksum mismatch: the snapshot's SHA-256 is {got}, the request says {want}"
            )));
        }
    }
    let head = archive::read(path)
        .map_err(|e| SnapshotError::bad(format!("not a shoal snapshot: {e}")))?;
    let meta: SnapshotMeta = serde_json::from_str(&head.manifest.meta)
        .map_err(|e| SnapshotError::bad(format!("snapshot description: {e}")))?;
    if meta.format != META_FORMAT {
        return Err(SnapshotError::bad(format!(
            "snapshot description: format {:?}, expected {META_FORMAT:?}",
            meta.format
        )));
    }
    std::fs::create_dir_all(root).map_err(SnapshotError::internal)?;
    let staging = Staging::new(root, "recover")?;
    archive::extract(path, &head, staging.path())
        .map_err(|e| SnapshotError::bad(format!("snapshot damaged: {e}")))?;
    let mut shards = Vec::with_capacity(meta.collections.len());
    for (c, col) in meta.collections.iter().enumerate() {
        let mut restored = Vec::with_capacity(col.shards.len());
        for s in &col.shards {
            let dir = staging.path().join(c.to_string()).join(s.to_string());
            let lanes = col.named.len().max(1);
            let shard = Lanes::restore_into(&dir, lanes, false, None).map_err(|e| {
                SnapshotError::bad(format!(
                    "snapshot damaged: collection {} shard {s}: {e}",
                    col.name
                ))
            })?;
            let first = col.named.first().map_or(col.spec.vectors, |n| n.vectors);
            if shard.primary().config().dim != first.dim as usize {
                return Err(SnapshotError::bad(format!(
                    "snapshot damaged: shard {s} holds vectors of dimension {}, the collection {}",
                    shard.primary().config().dim,
                    first.dim
                )));
            }
            restored.push((*s, shard));
        }
        shards.push(restored);
    }
    Ok(Opened {
        meta,
        shards,
        _staging: staging,
    })
}

/// Per shard number, the directory a shard snapshot goes to and the shard to snapshot.
type Taken = Vec<(usize, u32, Lanes)>;

/// Writes the archive of `meta` from `shards` (collection index, shard number, shard) to
/// `target`; returns its SHA-256. Blocking.
pub fn write_snapshot(
    target: &Path,
    meta: &SnapshotMeta,
    shards: &[(usize, u32, Lanes)],
    staging: &Path,
) -> Result<String, SnapshotError> {
    let mut members = Vec::new();
    for (c, s, shard) in shards {
        let rel = format!("{c}/{s}");
        let dir = staging.join(&rel);
        shard
            .snapshot(&dir)
            .map_err(|e| SnapshotError::internal(format!("snapshot of shard {s}: {e}")))?;
        add_members(&dir, &rel, &mut members)?;
    }
    let text = serde_json::to_string(meta).map_err(SnapshotError::internal)?;
    archive::write(target, &text, &members).map_err(SnapshotError::internal)
}

/// Adds every file under `dir` (lanes other than the first sit in subdirectories) as members
/// named `rel/<path>`, in name order.
fn add_members(
    dir: &Path,
    rel: &str,
    members: &mut Vec<(String, PathBuf)>,
) -> Result<(), SnapshotError> {
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(SnapshotError::internal)?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if path.is_dir() {
            add_members(&path, &format!("{rel}/{name}"), members)?;
        } else {
            members.push((format!("{rel}/{name}"), path));
        }
    }
    Ok(())
}

/// The snapshots of this node.
pub struct Snapshots<'a> {
    cluster: &'a Cluster,
}

/// Serialises snapshot creation on a node (names are chosen, then written).
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    /// This node's users' snapshots.
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { cluster: self }
    }
}

impl Snapshots<'_> {
    /// `snapshots/` under the data directory.
    pub fn root(&self) -> PathBuf {
        self.cluster.data_dir().join(SNAPSHOTS_DIR)
    }

    /// The directory of a scope's snapshots.
    pub fn dir(&self, scope: &Scope) -> PathBuf {
        match scope {
            Scope::Full => self.root(),
            Scope::Collection(c) => self.root().join(c),
            Scope::Shard(c, s) => self.root().join(c).join("shards").join(s.to_string()),
        }
    }

    /// The collection's real name (an alias resolves) and its metadata; 404 if unknown.
    fn collection(&self, name: &str) -> Result<(String, super::CollectionMeta), SnapshotError> {
        let state = self.cluster.state();
        let (n, meta) = state
            .resolve(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        Ok((n.to_owned(), meta.clone()))
    }

    /// Resolves a scope's collection (aliases to names) and checks the shard number.
    pub fn resolve(&self, scope: &Scope) -> Result<Scope, SnapshotError> {
        Ok(match scope {
            Scope::Full => Scope::Full,
            Scope::Collection(c) => Scope::Collection(self.collection(c)?.0),
            Scope::Shard(c, s) => {
                let (name, meta) = self.collection(c)?;
                if *s as usize >= meta.shards.len() {
                    return Err(SnapshotError::NotFound(format!(
                        "collection `{name}` has no shard {s} (it has {} shard(s), numbered from 0)",
                        meta.shards.len()
                    )));
                }
                Scope::Shard(name, *s)
            }
        })
    }

    /// The local replica of shard `s` of `name`, or a 400 naming what is missing.
    fn local(
        &self,
        name: &str,
        meta: &super::CollectionMeta,
        s: u32,
        what: &str,
    ) -> Result<Lanes, SnapshotError> {
        let group = meta.shards[s as usize].group;
        self.cluster
            .local_shard(group)
            .map(|l| l.app.lanes())
            .ok_or_else(|| {
                SnapshotError::bad(format!(
                    "collection `{name}`: shard {s} has no replica on this node (node {}, replicas on {:?}); \
                     a {what} snapshot holds only the shards on the node that takes it: take it on a node \
                     holding every shard, or take shard snapshots on the shards' nodes",
                    self.cluster.node_id(),
                    meta.shards[s as usize].replicas
                ))
            })
    }

    /// Creates a snapshot of `scope` (see the module doc) and describes it.
    pub async fn create(&self, scope: &Scope) -> Result<SnapshotDescription, SnapshotError> {
        let scope = self.resolve(scope)?;
        let node = self.cluster.node_id();
        let state = self.cluster.state();
        let (kind, names): (SnapshotKind, Vec<String>) = match &scope {
            Scope::Full => (
                SnapshotKind::Full,
                state.collections.keys().cloned().collect(),
            ),
            Scope::Collection(c) => (SnapshotKind::Collection, vec![c.clone()]),
            Scope::Shard(c, _) => (SnapshotKind::Shard, vec![c.clone()]),
        };
        let what = match kind {
            SnapshotKind::Full => "full",
            SnapshotKind::Collection => "collection",
            SnapshotKind::Shard => "shard",
        };
        let mut collections = Vec::new();
        let mut taken: Taken = Vec::new();
        for (c, name) in names.iter().enumerate() {
            let meta = state
                .collections
                .get(name)
                .ok_or_else(|| Error::NotFound(name.clone()))?;
            let shards: Vec<u32> = match &scope {
                Scope::Shard(_, s) => vec![*s],
                _ => (0..meta.shards.len() as u32).collect(),
            };
            for s in &shards {
                taken.push((c, *s, self.local(name, meta, *s, what)?));
            }
            collections.push(SnapCollection {
                name: name.clone(),
                spec: recreating_spec(&meta.config, &meta.named),
                named: named_specs(&meta.named),
                shard_number: meta.shards.len() as u32,
                shards,
            });
        }
        let meta = SnapshotMeta {
            format: META_FORMAT.to_owned(),
            kind,
            node,
            collections,
        };
        let dir = self.dir(&scope);
        let root = self.root();
        let _one = CREATING.lock().await;
        let now = SystemTime::now();
        let stamp = iso_time(now).replace([':', 'T'], "-");
        let base = match &scope {
            Scope::Full => format!("full-snapshot-{node}-{stamp}"),
            Scope::Collection(c) => format!("{c}-{node}-{stamp}"),
            Scope::Shard(c, s) => format!("{c}-shard-{s}-{node}-{stamp}"),
        };
        let name = (0..)
            .map(|i| match i {
                0 => format!("{base}{EXTENSION}"),
                i => format!("{base}-{i}{EXTENSION}"),
            })
            .find(|n| !dir.join(n).exists())
            .unwrap_or_default();
        let target = dir.join(&name);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(SnapshotError::internal)?;
            let staging = Staging::new(&root, "create")?;
            let sha = write_snapshot(&target, &meta, &taken, staging.path())?;
            let sum = dir.join(format!("{name}{CHECKSUM_EXTENSION}"));
            crate::storage::atomic::write_atomic(&sum, sha.as_bytes())
                .map_err(SnapshotError::internal)?;
            describe(&target)
        })
        .await
        .map_err(SnapshotError::internal)?
    }

    /// Every snapshot of `scope`, by name.
    pub fn list(&self, scope: &Scope) -> Result<Vec<SnapshotDescription>, SnapshotError> {
        let scope = self.resolve(scope)?;
        let dir = self.dir(&scope);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::internal(format!("{}: {e}", dir.display()))),
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if check_snapshot_name(&name).is_ok() && e.path().is_file() {
                out.push(describe(&e.path())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The file of snapshot `name` of `scope`: 400 for a name that is not a snapshot file
    /// name, 404 if there is none.
    pub fn path(&self, scope: &Scope, name: &str) -> Result<PathBuf, SnapshotError> {
        check_snapshot_name(name)?;
        let scope = self.resolve(scope)?;
        let path = self.dir(&scope).join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(SnapshotError::NotFound(format!(
                "snapshot `{name}` not found{}",
                match &scope {
                    Scope::Full => String::new(),
                    Scope::Collection(c) => format!(" for collection `{c}`"),
                    Scope::Shard(c, s) => format!(" for shard {s} of collection `{c}`"),
                }
            )))
        }
    }

    /// Deletes snapshot `name` of `scope` (and its checksum file).
    pub fn delete(&self, scope: &Scope, name: &str) -> Result<(), SnapshotError> {
        let path = self.path(scope, name)?;
        std::fs::remove_file(&path).map_err(SnapshotError::internal)?;
        let mut sum = path.into_os_string();
        sum.push(CHECKSUM_EXTENSION);
        let _ = std::fs::remove_file(sum);
        Ok(())
    }

    /// The local file a `file://` location names, confined to this node's snapshots
    /// directory: a 400 naming the path for anything outside it (`..`, symbolic links out,
    /// absolute paths elsewhere) or for a file that does not exist.
    pub fn local_location(&self, location: &str) -> Result<PathBuf, SnapshotError> {
        let raw = location.strip_prefix("file://").ok_or_else(|| {
            SnapshotError::bad(format!("location {location:?} is not a file:// URL"))
        })?;
        let root = self.root();
        std::fs::create_dir_all(&root).map_err(SnapshotError::internal)?;
        let root = root.canonicalize().map_err(SnapshotError::internal)?;
        let path = Path::new(raw);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        let real = path.canonicalize().map_err(|_| {
            SnapshotError::bad(format!(
                "location {location:?}: no snapshot file at {}",
                path.display()
            ))
        })?;
        if !real.starts_with(&root) || !real.is_file() {
            return Err(SnapshotError::bad(format!(
                "location {location:?}: {} is not a snapshot file inside this node's snapshots directory {} \
                 (only files there may be recovered from)",
                real.display(),
                root.display()
            )));
        }
        Ok(real)
    }
}

/// Describes the snapshot file at `path`.
pub fn describe(path: &Path) -> Result<SnapshotDescription, SnapshotError> {
    let md = std::fs::metadata(path).map_err(SnapshotError::internal)?;
    let mut sum = path.as_os_str().to_owned();
    sum.push(CHECKSUM_EXTENSION);
    let checksum = std::fs::read_to_string(&sum)
        .ok()
        .map(|s| s.trim().to_owned());
    Ok(SnapshotDescription {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        creation_time: md.modified().ok().map(iso_time),
        size: md.len(),
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        let t = |s: u64| iso_time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(t(1_659_610_150), "2022-08-04T10:49:10");
    }

    #[test]
    fn snapshot_names() {
        for ok in ["c-1-2022-08-04-10-49-10.snapshot", "a.b_c.snapshot"] {
            assert!(check_snapshot_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x.snapshot",
            "x",
            ".snapshot",
            "a/b.snapshot",
            "a b.snapshot",
            "",
        ] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
    }
}
