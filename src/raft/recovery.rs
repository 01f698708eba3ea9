//! Recovering from a full (or failing) disk inside the running process.
//!
//! What happens without this: one failed write to the node's shared redb log (every group's
//! log is in it) latches redb (every later operation answers `PreviousIo` until the database
//! is reopened) and openraft stops the core of every group that touches it (any storage error
//! is `Fatal` to a core). The node kept serving HTTP but could take no write until restarted.
//!
//! [`supervise`] runs beside the groups: every [`PERIOD`] it looks for a recorded log failure
//! or a group stopped on a storage error ([`RaftNode::groups_stopped_on_storage`]); if there is
//! one, it proves the
//! disk writable ([`probe_disk`]: [`PROBE_BYTES`] written and fsynced next to the log),
//! reopens the log ([`RaftNode::reopen_log`], itself a durable transaction) and restarts each
//! group stopped on a storage error from its persisted state ([`RaftNode::restart_group`]).
//! Nothing acknowledged is at risk: a write is acknowledged only after its log commit was
//! fsynced, and a failed commit is answered as an error to every request in it.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::raft::group::RaftNode;

/// How often the supervisor looks.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Bytes the disk probe writes: room for a batch of entries, not just a few bytes (a disk with
/// a few bytes free would pass a tiny probe and fail the next append again).
pub const PROBE_BYTES: usize = 1 << 20;

/// What one look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No failure recorded, no group stopped.
    Healthy,
    /// The disk cannot be written yet (the probe or the reopen failed).
    Waiting(String),
    /// The log is writable; this many stopped groups were restarted.
    Restarted(usize),
}

/// Writes and fsyncs [`PROBE_BYTES`] in `dir`, then removes the file.
pub fn probe_disk(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".disk-probe");
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    written
}

/// One look: if the log failed or a group stopped on a storage error, probe the disk, reopen
/// the log and restart those groups. (A group stopped by a panic is not restarted: it stays
/// reported by [`RaftNode::stopped_groups`].)
pub async fn recover_once(node: &RaftNode) -> Recovery {
    let failed = node.log_failure();
    let stopped = node.groups_stopped_on_storage();
    if failed.is_none() && stopped.is_empty() {
        return Recovery::Healthy;
    }
    let n = node.clone();
    let writable = tokio::task::spawn_blocking(move || {
        probe_disk(n.data_dir()).map_err(|e| format!("disk probe: {e}"))?;
        n.reopen_log().map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(why) = writable {
        return Recovery::Waiting(why);
    }
    let mut restarted = 0;
    for group in stopped {
        match node.restart_group(group).await {
            Ok(true) => restarted += 1,
            Ok(false) => {}
            Err(e) => return Recovery::Waiting(format!("restarting group {group}: {e}")),
        }
    }
    Recovery::Restarted(restarted)
}

/// Runs [`recover_once`] every [`PERIOD`] until `stop` completes. Logs when the node starts
/// waiting for its disk and when it recovered, not at every look.
pub async fn supervise(node: RaftNode, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut waiting = false;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
        match recover_once(&node).await {
            Recovery::Healthy => {}
            Recovery::Waiting(why) => {
                if !waiting {
                    tracing::warn!(node = node.node_id(), %why, "raft storage failed; waiting for the disk to take writes again");
                }
                waiting = true;
            }
            Recovery::Restarted(groups) => {
                if waiting || groups > 0 {
                    tracing::info!(
                        node = node.node_id(),
                        groups,
                        "raft storage writable again; stopped groups restarted"
                    );
                }
                waiting = false;
            }
        }
    }
}
