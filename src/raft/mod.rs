//! Raft for shoal: the consensus layer under every shard replica group and the metadata group.
//!
//! Built on openraft 0.10 (alpha.37, pinned). The layer knows nothing of shards: a group
//! replicates opaque command bytes and applies them through [`StateMachineApp`], which the shard
//! engine and the metadata store implement.
//!
//! - [`types`]: the openraft type configuration (`u64` node ids, [`NodeInfo`] addresses).
//! - [`log_store`]: every group's log in one redb file per node, fsynced group commits.
//! - [`state_machine`]: applies entries to the app; snapshots are directories + a manifest.
//! - [`manifest`]: the framing of that manifest (version 2 with its own magic; version 1 read).
//! - [`network`]: openraft's network client over a [`Transport`]; [`InProcessRouter`] for tests.
//! - [`budget`]: replication by bytes: the largest entry, and append calls cut to a byte budget.
//! - [`tcp`]: the node-to-node TCP transport on `--internal-listen`.
//! - [`group`]: [`RaftGroup`] (one replica) and [`RaftNode`] (all groups of a node).
//! - [`recovery`]: after a storage failure, reopens the shared log and restarts the stopped
//!   groups once the disk takes writes again, inside the running process.
//!
//! Typical use by a server: `RaftNode::open(id, data_dir, transport, RaftConfig::default())`,
//! `node.start_group(gid, app)`, on one member `group.initialize(members)`, then
//! `group.write(bytes)` on the leader (follow `RaftGroupError::ForwardToLeader`) and
//! `group.linearizable_read()` before a strong read.

pub mod budget;
pub mod group;
pub mod log_store;
pub mod manifest;
pub mod network;
pub mod recovery;
pub mod state_machine;
pub mod tcp;
pub mod types;

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;

pub use group::{
    GroupMetrics, RaftConfig, RaftGroup, RaftGroupError, RaftNode, Role, WriteOutcome,
};
pub use network::{InProcessRouter, RaftReply, RaftRpc, SendFailure, Transport, TransportError};
pub use state_machine::{SnapshotHandle, StateMachineApp};
pub use types::{Command, GroupId, NodeId, NodeInfo, TypeConfig};
