//! The Raft log of every group on a node, in one redb file.
//!
//! Layout (`raft-log.redb`):
//! - `logs`: `(group_id, index) → postcard(Entry)`;
//! - `meta`: `(group_id, kind) → postcard(value)` with kind `0` = vote, `1` = committed log id,
//!   `2` = last purged log id;
//! - `info`: `"format_version" → u64`, refused with [`LogStoreError::UnsupportedFormat`] when
//!   unknown.
//!
//! Durability contract (what openraft relies on):
//! - every write (append, vote, committed, truncate, purge) is one redb transaction committed with
//!   [`Durability::Immediate`] (checksummed commit slot + fsync) before its caller is told;
//! - writes of all groups go through one writer thread, in submission order, and the thread
//!   commits everything queued at once (group commit: one fsync for many groups' appends);
//! - `append` returns only after the commit, so the entries are readable on return, and the
//!   `IOFlushed` callback fires right after the fsync; `save_vote` likewise returns after the
//!   fsync;
//! - truncate and purge are single transactions, so the log never has a hole, and purge persists
//!   `last_purged` in the same transaction that deletes the entries.
//!
//! A failed write (a full disk, an I/O error) is answered as an error to every request of its
//! batch, so nothing of it is acknowledged, and openraft stops the core of each group that sees
//! it. redb latches the failure: after one failed write every later operation on that
//! `Database` answers `PreviousIo` until it is closed and opened again. [`LogDb`] therefore
//! records the failure ([`LogDb::failure`]) and [`LogDb::reopen`] closes the database, opens it
//! again (redb repairs a database that was not closed cleanly from its last durable commit) and
//! proves it writable with a small durable transaction before any group uses it again; the
//! supervisor in [`crate::raft::recovery`] calls it and restarts the stopped groups.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::raft::types::{Entry, GroupId, LogId, TypeConfig, Vote};

const LOGS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<(u64, u8), &[u8]> = TableDefinition::new("meta");
const INFO: TableDefinition<&str, u64> = TableDefinition::new("info");

const META_VOTE: u8 = 0;
const META_COMMITTED: u8 = 1;
const META_PURGED: u8 = 2;

/// Version of the table layout above; bump on any incompatible change.
pub const LOG_FORMAT_VERSION: u64 = 1;

/// Opening the node's log database failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// redb could not open or create the file.
    #[error("cannot open raft log database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file was written by an incompatible shoal version.
    #[error("raft log database {path} has format version {found}, this build reads {expected}")]
    UnsupportedFormat {
        /// The database file.
        path: PathBuf,
        /// Version stored in the file.
        found: u64,
        /// Version this build understands.
        expected: u64,
    },
    /// Any other redb failure while preparing the file.
    #[error("raft log database {path}: {message}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(io_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// One write queued for the writer thread.
enum WriteOp {
    Append {
        group: GroupId,
        entries: Vec<(u64, Vec<u8>)>,
    },
    Meta {
        group: GroupId,
        kind: u8,
        value: Option<Vec<u8>>,
    },
    TruncateFrom {
        group: GroupId,
        from: u64,
    },
    Purge {
        group: GroupId,
        upto: u64,
        purged: Vec<u8>,
    },
    DropGroup {
        group: GroupId,
    },
}

type Reply = Box<dyn FnOnce(io::Result<()>) + Send>;

struct WriteReq {
    op: WriteOp,
    reply: Reply,
}

/// The open database and its health, shared by [`LogDb`] handles and the writer thread.
struct Slot {
    path: PathBuf,
    /// `None` while a reopen is under way (every operation then fails at once).
    db: RwLock<Option<Arc<Database>>>,
    /// Why the log cannot be written, from the first failed operation until a reopen succeeds.
    failure: Mutex<Option<String>>,
    /// Successful reopens since the process started.
    reopens: AtomicU64,
}

impl Slot {
    fn current(&self) -> io::Result<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| io_err("raft log database is closed after a storage error; it reopens when the disk can be written"))
    }

    /// Records a storage failure (the first one wins) and returns it as an `io::Error`.
    fn fail(&self, e: impl std::fmt::Display) -> io::Error {
        let msg = e.to_string();
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(path = %self.path.display(), error = %msg, "raft log write failed; groups using it stop until it is reopened");
            *f = Some(msg.clone());
        }
        io_err(msg)
    }
}

/// The node-wide log database: one redb file and one writer thread shared by all groups.
///
/// Cheap to clone; the writer thread stops when the last clone (and every [`GroupLogStore`]) is
/// dropped.
#[derive(Clone)]
pub struct LogDb {
    slot: Arc<Slot>,
    tx: mpsc::UnboundedSender<WriteReq>,
}

/// Opens (or creates) the database at `path` and checks its format version, in one durable
/// transaction, which also proves the file writable.
fn open_db(path: &Path) -> Result<Database, LogStoreError> {
    let db = Database::create(path).map_err(|source| LogStoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    let storage = |e: &dyn std::fmt::Display| LogStoreError::Storage {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut txn = db.begin_write().map_err(|e| storage(&e))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| storage(&e))?;
    {
        let mut info = txn.open_table(INFO).map_err(|e| storage(&e))?;
        let found = info
            .get("format_version")
            .map_err(|e| storage(&e))?
            .map(|v| v.value());
        match found {
            Some(v) if v != LOG_FORMAT_VERSION => {
                return Err(LogStoreError::UnsupportedFormat {
                    path: path.to_owned(),
                    found: v,
                    expected: LOG_FORMAT_VERSION,
                });
            }
            Some(_) => {}
            None => {
                info.insert("format_version", LOG_FORMAT_VERSION)
                    .map_err(|e| storage(&e))?;
            }
        }
        // A write in every open, so that a reopen after a failure is proven durable before
        // any group trusts the database again.
        let opens = info
            .get("opens")
            .map_err(|e| storage(&e))?
            .map_or(0, |v| v.value());
        info.insert("opens", opens.wrapping_add(1))
            .map_err(|e| storage(&e))?;
        txn.open_table(LOGS).map_err(|e| storage(&e))?;
        txn.open_table(META).map_err(|e| storage(&e))?;
    }
    txn.commit().map_err(|e| storage(&e))?;
    Ok(db)
}

impl LogDb {
    /// Open (or create) the log database at `path` and start its writer thread.
    pub fn open(path: &Path) -> Result<Self, LogStoreError> {
        let db = open_db(path)?;
        let slot = Arc::new(Slot {
            path: path.to_owned(),
            db: RwLock::new(Some(Arc::new(db))),
            failure: Mutex::new(None),
            reopens: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = slot.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| LogStoreError::Storage {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self { slot, tx })
    }

    /// Why the log cannot be written, if an operation failed and no reopen succeeded since.
    pub fn failure(&self) -> Option<String> {
        self.slot
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Successful [`Self::reopen`]s since the process started.
    pub fn reopens(&self) -> u64 {
        self.slot.reopens.load(Ordering::Relaxed)
    }

    /// After a failure, close the database and open it again (blocking: call it off the async
    /// workers). The open commits a small durable transaction, so `Ok` means the log can be
    /// written again; on `Err` the failure stays recorded and every operation keeps failing
    /// until a later call succeeds. Does nothing when no failure is recorded.
    pub fn reopen(&self) -> Result<(), LogStoreError> {
        if self.failure().is_none() {
            return Ok(());
        }
        // Take the failed database out first: redb releases the file only when the last
        // handle is dropped (an operation still running holds one; the open below then fails
        // with "already open" and a later call tries again).
        let old = self
            .slot
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(old);
        let db = open_db(&self.slot.path)?;
        *self.slot.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        *self.slot.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.slot.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(path = %self.slot.path.display(), "raft log database reopened after a storage failure");
        Ok(())
    }

    /// The log store of one group (created lazily: an unknown group has an empty log).
    pub fn group(&self, group: GroupId) -> GroupLogStore {
        GroupLogStore {
            group,
            db: self.clone(),
        }
    }

    /// Delete every entry and all metadata of `group` (the replica was removed from this node).
    pub async fn drop_group(&self, group: GroupId) -> io::Result<()> {
        self.submit_wait(WriteOp::DropGroup { group }).await
    }

    async fn submit_wait(&self, op: WriteOp) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            op,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.await.map_err(|_| io_err("raft log writer stopped"))?
    }

    fn submit(&self, op: WriteOp, reply: Reply) -> io::Result<()> {
        self.tx
            .send(WriteReq { op, reply })
            .map_err(|_| io_err("raft log writer stopped"))
    }

    /// A read transaction on the current database; a redb failure is recorded.
    fn begin_read(&self) -> io::Result<redb::ReadTransaction> {
        self.slot
            .current()?
            .begin_read()
            .map_err(|e| self.slot.fail(e))
    }

    fn read_meta<T: DeserializeOwned>(&self, group: GroupId, kind: u8) -> io::Result<Option<T>> {
        let fail = |e: redb::Error| self.slot.fail(e);
        let txn = self.begin_read()?;
        let table = txn.open_table(META).map_err(|e| fail(e.into()))?;
        match table.get((group, kind)).map_err(|e| fail(e.into()))? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn read_range(&self, group: GroupId, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let fail = |e: redb::Error| self.slot.fail(e);
        let txn = self.begin_read()?;
        let table = txn.open_table(LOGS).map_err(|e| fail(e.into()))?;
        let mut out = Vec::new();
        for item in table
            .range((group, start)..(group, end))
            .map_err(|e| fail(e.into()))?
        {
            let (_, v) = item.map_err(|e| fail(e.into()))?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn last_entry(&self, group: GroupId) -> io::Result<Option<Entry>> {
        let fail = |e: redb::Error| self.slot.fail(e);
        let txn = self.begin_read()?;
        let table = txn.open_table(LOGS).map_err(|e| fail(e.into()))?;
        let last = table
            .range((group, 0)..=(group, u64::MAX))
            .map_err(|e| fail(e.into()))?
            .next_back();
        match last {
            Some(item) => {
                let (_, v) = item.map_err(|e| fail(e.into()))?;
                Ok(Some(decode(v.value())?))
            }
            None => Ok(None),
        }
    }
}

fn writer_loop(slot: Arc<Slot>, mut rx: mpsc::UnboundedReceiver<WriteReq>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // Nothing of a failed batch is acknowledged: every request in it hears the error.
        let result = slot
            .current()
            .and_then(|db| commit_batch(&db, &batch).map_err(|e| slot.fail(e)));
        for req in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            (req.reply)(r);
        }
    }
}

fn commit_batch(db: &Database, batch: &[WriteReq]) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut logs = txn.open_table(LOGS).map_err(io_err)?;
        let mut meta = txn.open_table(META).map_err(io_err)?;
        for req in batch {
            match &req.op {
                WriteOp::Append { group, entries } => {
                    for (index, bytes) in entries {
                        logs.insert((*group, *index), bytes.as_slice())
                            .map_err(io_err)?;
                    }
                }
                WriteOp::Meta { group, kind, value } => match value {
                    Some(v) => {
                        meta.insert((*group, *kind), v.as_slice()).map_err(io_err)?;
                    }
                    None => {
                        meta.remove((*group, *kind)).map_err(io_err)?;
                    }
                },
                WriteOp::TruncateFrom { group, from } => {
                    logs.retain_in((*group, *from)..=(*group, u64::MAX), |_, _| false)
                        .map_err(io_err)?;
                }
                WriteOp::Purge {
                    group,
                    upto,
                    purged,
                } => {
                    logs.retain_in((*group, 0)..=(*group, *upto), |_, _| false)
                        .map_err(io_err)?;
                    meta.insert((*group, META_PURGED), purged.as_slice())
                        .map_err(io_err)?;
                }
                WriteOp::DropGroup { group } => {
                    logs.retain_in((*group, 0)..=(*group, u64::MAX), |_, _| false)
                        .map_err(io_err)?;
                    meta.retain_in((*group, 0)..=(*group, u8::MAX), |_, _| false)
                        .map_err(io_err)?;
                }
            }
        }
    }
    txn.commit().map_err(io_err)
}

/// The log of one group: openraft's [`RaftLogStorage`] (and its own [`RaftLogReader`]) over the
/// node's [`LogDb`].
#[derive(Clone)]
pub struct GroupLogStore {
    group: GroupId,
    db: LogDb,
}

impl GroupLogStore {
    /// The group this log belongs to.
    pub fn group_id(&self) -> GroupId {
        self.group
    }
}

fn range_to_start_end<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_start_end(&range);
        let db = self.db.clone();
        let group = self.group;
        tokio::task::spawn_blocking(move || db.read_range(group, start, end))
            .await
            .map_err(io_err)?
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.db.read_meta(self.group, META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.db.read_meta(self.group, META_PURGED)?;
        let last = self.db.last_entry(self.group)?.map(|e| e.log_id);
        Ok(LogState {
            last_log_id: last.or(last_purged),
            last_purged_log_id: last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let value = Some(encode(vote)?);
        self.db
            .submit_wait(WriteOp::Meta {
                group: self.group,
                kind: META_VOTE,
                value,
            })
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let value = match committed {
            Some(c) => Some(encode(&c)?),
            None => None,
        };
        self.db
            .submit_wait(WriteOp::Meta {
                group: self.group,
                kind: META_COMMITTED,
                value,
            })
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.db.read_meta(self.group, META_COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = <TypeConfig as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, encode(&e)?));
        }
        if encoded.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        // Wait for the commit before returning so the entries are readable on return; the
        // callback fires right after the fsync, from the writer thread.
        let (tx, rx) = oneshot::channel();
        self.db.submit(
            WriteOp::Append {
                group: self.group,
                entries: encoded,
            },
            Box::new(move |r: io::Result<()>| {
                let copy = match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                callback.io_completed(copy);
                let _ = tx.send(r);
            }),
        )?;
        rx.await.map_err(|_| io_err("raft log writer stopped"))?
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        self.db
            .submit_wait(WriteOp::TruncateFrom {
                group: self.group,
                from,
            })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let current: Option<LogId> = self.db.read_meta(self.group, META_PURGED)?;
        if current.as_ref().is_some_and(|c| c.index >= log_id.index) {
            return Ok(());
        }
        self.db
            .submit_wait(WriteOp::Purge {
                group: self.group,
                upto: log_id.index,
                purged: encode(&log_id)?,
            })
            .await
    }
}
