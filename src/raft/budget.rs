//! Replication by bytes: how large one log entry and one AppendEntries call may be.
//!
//! openraft batches up to `max_payload_entries` entries per AppendEntries and knows nothing of
//! their size; the internal port refuses frames over [`MAX_FRAME`]. Without a byte budget a
//! follower that fell far enough behind was sent the same oversized batch for ever (issue 14,
//! finding 2). Two bounds keep every call well under the frame cap:
//! - one entry carries at most [`MAX_ENTRY_BYTES`]: [`crate::raft::RaftGroup::write`] refuses a
//!   larger command before it reaches the log, and the router splits large upserts below it;
//! - one call carries entries up to [`APPEND_BUDGET_BYTES`] (always at least one): [`trim`]
//!   cuts a longer batch, the connection sends the prefix and answers openraft
//!   `PartialSuccess(last sent)`, and openraft sends the rest next (its documented contract for
//!   a network that sends less than it was given).
//!
//! [`MAX_FRAME`]: crate::raft::tcp::MAX_FRAME

use openraft::raft::AppendEntriesRequest;

use crate::raft::types::{LogId, TypeConfig};

/// Largest command one log entry may carry: a quarter of the frame cap, so an entry plus the
/// framing of a forwarded write or an append call always fits one frame.
pub const MAX_ENTRY_BYTES: usize = crate::raft::tcp::MAX_FRAME / 4;

/// Bytes of entries one AppendEntries call carries at most (unless one entry alone is larger).
pub const APPEND_BUDGET_BYTES: usize = crate::raft::tcp::MAX_FRAME / 4;

const _: () = assert!(MAX_ENTRY_BYTES + APPEND_BUDGET_BYTES < crate::raft::tcp::MAX_FRAME);

/// Cuts `rpc`'s entries to the longest prefix whose encoded size stays within `budget` bytes
/// (at least one entry). Returns the id of the last entry kept when anything was cut, `None`
/// when the whole batch fits.
pub fn trim(rpc: &mut AppendEntriesRequest<TypeConfig>, budget: usize) -> Option<LogId> {
    let mut used = 0usize;
    let mut keep = rpc.entries.len();
    for (i, e) in rpc.entries.iter().enumerate() {
        // An entry that cannot be sized is counted as over budget: it then goes alone.
        let size = postcard::experimental::serialized_size(e).unwrap_or(usize::MAX);
        used = used.saturating_add(size);
        if used > budget && i > 0 {
            keep = i;
            break;
        }
    }
    if keep == rpc.entries.len() {
        return None;
    }
    rpc.entries.truncate(keep);
    rpc.entries.last().map(|e| e.log_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Command, Vote};
    use openraft::entry::RaftEntry;

    fn batch(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                crate::raft::types::Entry::new_normal(
                    openraft::testing::log_id::<TypeConfig>(1, 1, i as u64 + 1),
                    Command(vec![7u8; *n]),
                )
            })
            .collect();
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn a_batch_within_budget_is_untouched() {
        let mut rpc = batch(&[100, 200, 300]);
        assert_eq!(trim(&mut rpc, 1 << 20), None);
        assert_eq!(rpc.entries.len(), 3);
        let mut empty = batch(&[]);
        assert_eq!(trim(&mut empty, 10), None);
    }

    #[test]
    fn a_long_batch_is_cut_to_its_budget_and_reports_the_last_entry_sent() {
        let mut rpc = batch(&[4000; 10]);
        let last = trim(&mut rpc, 10_000).expect("cut");
        assert_eq!(
            rpc.entries.len(),
            2,
            "two 4 kB entries fit in 10 kB, three do not"
        );
        assert_eq!(last.index, 2);
        let sent: usize = rpc
            .entries
            .iter()
            .map(|e| postcard::experimental::serialized_size(e).unwrap())
            .sum();
        assert!(sent <= 10_000);
    }

    #[test]
    fn an_entry_larger_than_the_budget_goes_alone() {
        let mut rpc = batch(&[50_000, 10, 10]);
        let last = trim(&mut rpc, 10_000).expect("cut");
        assert_eq!((rpc.entries.len(), last.index), (1, 1));
    }
}
