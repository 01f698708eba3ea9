//! The replicated state machine of one group: openraft's [`RaftStateMachine`] over an
//! application ([`StateMachineApp`]) that knows nothing of Raft.
//!
//! ## Durability model
//! The application's state is made durable **only by snapshots** (the shard engine keeps its
//! mutable segment in memory and hands sealed segment files to snapshots). So:
//! - `last_applied` and the membership are kept in memory while applying and are persisted
//!   *with* each snapshot, in its manifest, atomically with the application's files. Persisting
//!   them on every apply would be wrong here: after a crash they would claim entries that the
//!   application's durable state does not hold.
//! - On restart, [`GroupStateMachine::applied_state`] reports nothing applied; openraft then
//!   installs the current snapshot (which calls [`StateMachineApp::restore`]) and re-applies the
//!   log from the snapshot up to the persisted committed index (the log store saves it). No
//!   committed command is lost and none is applied twice to the restored state.
//!
//! ## Snapshot layout
//! `<group dir>/snapshots/snap-<last index>-<seq>/` holds the application's files plus
//! `MANIFEST`: postcard(last_log_id, membership, file list with lengths) framed by
//! [`super::manifest`] (version 2: the storage envelope's 32-byte header with the magic
//! `\x89SHR\r\n\x1a\n`; version 1, `SHOALSNP`, still read). A snapshot is
//! built or received in a `tmp-*`/`incoming-*` directory, fsynced, then renamed into place and the
//! parent directory fsynced; on open the valid snapshot with the greatest last log id wins and
//! leftovers are deleted, so a crash never leaves a half-installed snapshot in use. Received
//! snapshots are checked against their manifest ([`verify_snapshot_dir`]) before openraft sees
//! them, since a failed install stops the group: every path in a manifest must be a plain
//! relative path inside the snapshot directory ([`check_snapshot_path`], checked when the
//! manifest is decoded, before any file is touched), and the directory must hold exactly the
//! listed files.
//!
//! Building a snapshot holds the apply lock while [`StateMachineApp::snapshot`] runs, so the files
//! match the recorded `last_applied` exactly; applications should make `snapshot` cheap (hard
//! links of immutable files plus a small dump).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use crate::raft::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};

/// The replicated application (a shard engine, the metadata store). Deterministic.
///
/// Methods are synchronous and may block (disk I/O): the state machine calls them from tokio's
/// blocking pool, never on an async worker.
pub trait StateMachineApp: Send + Sync + 'static {
    /// Apply one committed command at log `index`; must be idempotent for an index already
    /// applied (replay after restart). Returns the response bytes for the writer.
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8>;
    /// Write a consistent snapshot of the whole state into the empty directory `dir` (fsynced).
    /// Applies are paused while this runs.
    fn snapshot(&self, dir: &Path) -> io::Result<()>;
    /// Replace the whole state with the snapshot in `dir`. The directory stays in place until a
    /// newer snapshot replaces it, so the application may keep hard links or maps into it.
    fn restore(&self, dir: &Path) -> io::Result<()>;
}

/// The snapshot data openraft moves around: a handle to a snapshot directory, never its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHandle {
    /// The directory holding the application's snapshot files and the `MANIFEST`.
    pub dir: PathBuf,
}

/// File name of a snapshot's manifest inside its directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
pub use super::manifest::{MANIFEST_MAGIC, MANIFEST_VERSION, ManifestError};
/// Largest manifest read: a manifest lists file names and lengths, never data.
pub const MAX_MANIFEST_LEN: u64 = 16 << 20;

/// What a snapshot directory holds, recorded in its `MANIFEST`: the Raft position it covers and
/// every application file with its length, so a receiver can tell a complete copy from a torn
/// one before installing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Last log id and membership the snapshot covers.
    pub meta: SnapshotMeta,
    /// `(relative '/'-separated path, length)` of every application file, sorted.
    pub files: Vec<(String, u64)>,
}

fn invalid(m: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot manifest: {m}"),
    )
}

/// Serialise a snapshot manifest: its postcard body, framed as the current version
/// ([`super::manifest::frame`]).
pub fn encode_manifest(m: &Manifest) -> io::Result<Vec<u8>> {
    let body = postcard::to_allocvec(&(&m.meta.last_log_id, &m.meta.last_membership, &m.files))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(super::manifest::frame(&body))
}

/// Parse and verify a manifest written by [`encode_manifest`] (or, version 1, by an earlier
/// build). Every listed path is checked
/// with [`check_snapshot_path`] here, before any caller touches the file system with it, and
/// the list must be sorted without duplicates. Pure and panic-free on any input (fuzzed by the
/// `raft_manifest` target).
pub fn decode_manifest(bytes: &[u8]) -> io::Result<Manifest> {
    let (_, body) = super::manifest::unframe(bytes)?;
    let (last_log_id, last_membership, files): (
        Option<LogId>,
        StoredMembership,
        Vec<(String, u64)>,
    ) = postcard::from_bytes(body).map_err(invalid)?;
    for (path, _) in &files {
        check_snapshot_path(path)?;
    }
    if files.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(invalid("file list is not sorted and unique"));
    }
    Ok(Manifest {
        meta: SnapshotMeta {
            last_log_id,
            last_membership,
        },
        files,
    })
}

/// Checks a path named by a manifest or a sender: relative, `/`-separated, every component a
/// plain name (no `..`, `.`, empty part, root, drive prefix or backslash), and not the manifest
/// itself. Pure: it touches no file.
pub fn check_snapshot_path(rel: &str) -> io::Result<()> {
    let refuse = |why: &str| invalid(format!("refused path {rel:?}: {why}"));
    if rel.is_empty() {
        return Err(refuse("empty"));
    }
    if rel == MANIFEST_FILE {
        return Err(refuse("the manifest is not an application file"));
    }
    for part in rel.split('/') {
        let mut components = Path::new(part).components();
        let plain = matches!(components.next(), Some(Component::Normal(c)) if c == part)
            && components.next().is_none();
        if !plain || part.contains('\\') || part.contains('\0') {
            return Err(refuse("not a plain relative path"));
        }
    }
    Ok(())
}

/// `root` joined with a checked relative path ([`check_snapshot_path`]).
pub fn snapshot_path(root: &Path, rel: &str) -> io::Result<PathBuf> {
    if rel != MANIFEST_FILE {
        check_snapshot_path(rel)?;
    }
    let mut out = root.to_owned();
    out.extend(rel.split('/'));
    Ok(out)
}

/// Read and verify the manifest of the snapshot in `dir`.
pub fn read_manifest(dir: &Path) -> io::Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let file = File::open(&path)?;
    if file.metadata()?.len() > MAX_MANIFEST_LEN {
        return Err(invalid(format!("longer than {MAX_MANIFEST_LEN} bytes")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_LEN + 1).read_to_end(&mut bytes)?;
    decode_manifest(&bytes)
}

/// Check that `dir` holds exactly a complete snapshot for `meta`: a valid manifest for the same
/// log id (its paths checked before anything else is read) and, besides the manifest, exactly
/// the listed files with their recorded lengths, nothing missing and nothing more. Run before
/// handing a received snapshot to openraft, because a failed install stops the group.
pub fn verify_snapshot_dir(dir: &Path, meta: &SnapshotMeta) -> io::Result<()> {
    let m = read_manifest(dir)?;
    if m.meta.last_log_id != meta.last_log_id {
        return Err(invalid("it is for another log id"));
    }
    let present = list_app_files(dir)?;
    if present != m.files {
        let listed: std::collections::BTreeMap<_, _> = m.files.iter().cloned().collect();
        let found: std::collections::BTreeMap<_, _> = present.into_iter().collect();
        let missing = listed.keys().find(|p| !found.contains_key(*p));
        let extra = found.keys().find(|p| !listed.contains_key(*p));
        let why = match (missing, extra) {
            (Some(p), _) => format!("listed file {p} is missing"),
            (None, Some(p)) => format!("file {p} is not in the manifest"),
            (None, None) => match listed.iter().find(|(p, len)| found.get(*p) != Some(len)) {
                Some((p, len)) => format!("file {p}: {} bytes, manifest says {len}", found[p]),
                None => "file list differs".to_owned(),
            },
        };
        return Err(invalid(why));
    }
    Ok(())
}

/// Application files under `dir` (everything but the manifest and interrupted writes) with
/// their lengths, sorted. Symbolic links are not followed (and a snapshot never holds any).
fn list_app_files(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            let kind = e.file_type()?;
            if kind.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let rel = parts.join("/");
                if rel != MANIFEST_FILE && rel != MANIFEST_TMP {
                    out.push((rel, e.metadata()?.len()));
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The manifest while it is written (never listed as an application file).
const MANIFEST_TMP: &str = "MANIFEST.tmp";

/// Writes the manifest crash-safely: temporary file, fsync, rename, fsync of the directory.
fn write_manifest(dir: &Path, m: &Manifest) -> io::Result<()> {
    let tmp = dir.join(MANIFEST_TMP);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_manifest(m)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(MANIFEST_FILE))?;
    fsync_dir(dir)
}

/// fsync a directory so that renames and new entries in it survive a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsync every file and directory under `dir` (received or copied snapshots).
fn fsync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fsync_tree(&path)?;
        } else {
            File::open(&path)?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Current {
    meta: SnapshotMeta,
    dir: PathBuf,
}

struct Shared {
    app: Arc<dyn StateMachineApp>,
    root: PathBuf,
    /// Held while applying a batch and while the application writes a snapshot.
    applied: Mutex<Applied>,
    current: Mutex<Option<Current>>,
    seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic inside the application while holding the lock leaves the data as it was; keep
    // serving rather than cascading the poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn next_dir(&self, prefix: &str) -> PathBuf {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("{prefix}-{seq:020}"))
    }

    fn final_dir(&self, meta: &SnapshotMeta) -> PathBuf {
        let index = meta.last_log_id.as_ref().map(|l| l.index).unwrap_or(0);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("snap-{index:020}-{seq:020}"))
    }

    /// Make `dir` the current snapshot if it is newer and delete every other snapshot.
    fn set_current(&self, meta: SnapshotMeta, dir: PathBuf) {
        let mut cur = lock(&self.current);
        let newer = cur
            .as_ref()
            .is_none_or(|c| meta.last_log_id >= c.meta.last_log_id);
        if !newer {
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        *cur = Some(Current {
            meta,
            dir: dir.clone(),
        });
        drop(cur);
        if let Ok(read) = fs::read_dir(&self.root) {
            for e in read.flatten() {
                let p = e.path();
                let is_snap = e.file_name().to_string_lossy().starts_with("snap-");
                if is_snap && p != dir {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
    }

    fn build(&self) -> io::Result<(SnapshotMeta, PathBuf)> {
        let tmp = self.next_dir("tmp");
        fs::create_dir_all(&tmp)?;
        let meta = {
            let applied = lock(&self.applied);
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            if let Err(e) = self.app.snapshot(&tmp) {
                drop(applied);
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
            meta
        };
        let files = list_app_files(&tmp)?;
        write_manifest(
            &tmp,
            &Manifest {
                meta: meta.clone(),
                files,
            },
        )?;
        fsync_tree(&tmp)?;
        let dir = self.final_dir(&meta);
        fs::rename(&tmp, &dir)?;
        fsync_dir(&self.root)?;
        self.set_current(meta.clone(), dir.clone());
        Ok((meta, dir))
    }

    fn install(&self, meta: &SnapshotMeta, src: &Path) -> io::Result<()> {
        let is_current = lock(&self.current).as_ref().is_some_and(|c| c.dir == src);
        let dir = if is_current {
            src.to_owned()
        } else {
            let staging = if src.parent() == Some(self.root.as_path()) {
                // Received by our transport into `incoming-*`: take it over in place.
                src.to_owned()
            } else {
                let tmp = self.next_dir("tmp");
                copy_tree(src, &tmp)?;
                tmp
            };
            // Keep the sender's file list when it has one (verified by the transport before the
            // install); otherwise record what is there.
            let files = match read_manifest(&staging) {
                Ok(m) if m.meta.last_log_id == meta.last_log_id => m.files,
                _ => list_app_files(&staging)?,
            };
            write_manifest(
                &staging,
                &Manifest {
                    meta: meta.clone(),
                    files,
                },
            )?;
            fsync_tree(&staging)?;
            let dir = self.final_dir(meta);
            fs::rename(&staging, &dir)?;
            fsync_dir(&self.root)?;
            dir
        };
        {
            let mut applied = lock(&self.applied);
            self.app.restore(&dir)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.set_current(meta.clone(), dir);
        Ok(())
    }
}

/// openraft's state machine for one group. Cheap to clone (shared state).
#[derive(Clone)]
pub struct GroupStateMachine {
    shared: Arc<Shared>,
}

impl GroupStateMachine {
    /// Open the state machine whose snapshots live in `dir` (created if missing), applying to
    /// `app`. Picks the newest valid snapshot and deletes leftovers of interrupted builds and
    /// transfers; the application is restored from it later, when openraft starts the group.
    pub fn open(app: Arc<dyn StateMachineApp>, dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut best: Option<(SnapshotMeta, PathBuf)> = None;
        let mut max_seq = 0u64;
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if let Some(seq) = name.rsplit('-').next().and_then(|s| s.parse::<u64>().ok()) {
                max_seq = max_seq.max(seq);
            }
            if !name.starts_with("snap-") {
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            match read_manifest(&path)
                .and_then(|m| verify_snapshot_dir(&path, &m.meta).map(|()| m.meta))
            {
                Ok(meta) => {
                    let better = best
                        .as_ref()
                        .is_none_or(|(b, bp)| (meta.last_log_id, &path) > (b.last_log_id, bp));
                    if better {
                        best = Some((meta, path));
                    }
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "dropping unreadable snapshot");
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        let shared = Arc::new(Shared {
            app,
            root: dir.to_owned(),
            applied: Mutex::new(Applied {
                last_applied: None,
                membership: StoredMembership::default(),
            }),
            current: Mutex::new(None),
            seq: AtomicU64::new(max_seq + 1),
        });
        if let Some((meta, path)) = best {
            shared.set_current(meta, path);
        }
        Ok(Self { shared })
    }

    /// A fresh, empty directory inside this group's snapshot area where a transport writes a
    /// snapshot it receives; [`RaftStateMachine::install_snapshot`] then renames it into place
    /// instead of copying.
    pub fn incoming_dir(&self) -> io::Result<PathBuf> {
        let dir = self.shared.next_dir("incoming");
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The log index the application has applied (in memory), if any.
    pub fn last_applied_index(&self) -> Option<u64> {
        lock(&self.shared.applied)
            .last_applied
            .as_ref()
            .map(|l| l.index)
    }
}

/// Builds a snapshot of a [`GroupStateMachine`]; see the module doc for consistency.
pub struct GroupSnapshotBuilder {
    shared: Arc<Shared>,
}

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotHandle>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    type SnapshotData = SnapshotHandle;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        let (meta, dir) = blocking(move || shared.build()).await?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotHandle { dir },
        })
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = SnapshotHandle;
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let a = lock(&self.shared.applied);
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut chunks = entries.ready_chunks(256);
        while let Some(chunk) = chunks.next().await {
            let mut work = Vec::with_capacity(chunk.len());
            let mut responders = Vec::with_capacity(chunk.len());
            for item in chunk {
                let (entry, responder) = item?;
                work.push(entry);
                responders.push(responder);
            }
            let shared = self.shared.clone();
            let responses = blocking(move || {
                let mut applied = lock(&shared.applied);
                let mut out = Vec::with_capacity(work.len());
                for entry in work {
                    // An index already applied is skipped: after a core restart
                    // (`RaftNode::restart_group`) the stopped core's worker may still finish a
                    // chunk the new core's worker also applies; nobody waits on its answer.
                    if applied
                        .last_applied
                        .is_some_and(|l| l.index >= entry.log_id.index)
                    {
                        out.push(Vec::new());
                        continue;
                    }
                    let resp = match entry.payload {
                        EntryPayload::Blank => Vec::new(),
                        EntryPayload::Normal(cmd) => shared.app.apply(entry.log_id.index, &cmd.0),
                        EntryPayload::Membership(m) => {
                            applied.membership = StoredMembership::new(Some(entry.log_id), m);
                            Vec::new()
                        }
                    };
                    applied.last_applied = Some(entry.log_id);
                    out.push(resp);
                }
                Ok(out)
            })
            .await?;
            for (responder, resp) in responders.into_iter().zip(responses) {
                if let Some(r) = responder {
                    r.send(resp);
                }
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(GroupSnapshotBuilder {
            shared: self.shared.clone(),
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        GroupSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotHandle,
    ) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || shared.install(&meta, &snapshot.dir)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(lock(&self.shared.current).as_ref().map(|c| Snapshot {
            meta: c.meta.clone(),
            snapshot: SnapshotHandle { dir: c.dir.clone() },
        }))
    }
}
