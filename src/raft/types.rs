//! The openraft type configuration shared by every shoal Raft group.
//!
//! Commands and responses are opaque bytes: the Raft layer never looks inside them, so the same
//! configuration serves the shard groups and the metadata group.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a Raft group (a shard replica group or the metadata group) within the cluster.
pub type GroupId = u64;

/// Identifies a node (a `shoal serve` process) within the cluster. Never reused after a node is
/// wiped: a reused id can make an old vote count twice.
pub type NodeId = u64;

/// Where a node can be reached: recorded in every membership so that any member can dial any
/// other one without a separate directory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's `--internal-listen` socket (Raft and node-to-node traffic).
    pub internal_addr: String,
    /// `host:port` of the node's public REST API, so routers can redirect clients to a leader.
    pub api_addr: String,
}

impl NodeInfo {
    /// A node reachable at `internal_addr` whose REST API is at `api_addr`.
    pub fn new(internal_addr: impl Into<String>, api_addr: impl Into<String>) -> Self {
        Self {
            internal_addr: internal_addr.into(),
            api_addr: api_addr.into(),
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{internal: {}, api: {}}}",
            self.internal_addr, self.api_addr
        )
    }
}

/// One replicated command: opaque bytes that the application encodes and decodes.
///
/// A newtype because openraft wants its log payload to be `Display` (for its tracing), and a
/// byte vector is not.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Command(#[serde(with = "serde_bytes_compat")] pub Vec<u8>);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// Serialises a byte vector as one byte string rather than a sequence of numbers (compact in
/// postcard, and readable in any self-describing format).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of every shoal group: `u64` node ids, [`NodeInfo`]
    /// addresses, opaque [`Command`] bytes in, response bytes out.
    pub TypeConfig:
        D = Command,
        R = Vec<u8>,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// A log id (leader term + node, index) under [`TypeConfig`].
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote under [`TypeConfig`].
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry under [`TypeConfig`].
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A membership config with the log id that introduced it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: its last log id and membership.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A membership config (voters and learners with their addresses).
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
/// The openraft handle of one group.
pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::GroupStateMachine>;
