//! The write commands a shard applies, in the order its log (Raft, or the local write-ahead log
//! before Raft) fixes. Commands are encoded with `postcard` — compact, deterministic and
//! versioned by the enum's variant order, so new variants are only ever appended.

use super::filter::Filter;
use super::point::{Payload, PointId, json_text, payload_text};
use serde::{Deserialize, Serialize};

/// One point to insert or replace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointWrite {
    /// The point's id; an existing point with this id is replaced.
    pub id: PointId,
    /// The vector, already checked for dimension and finiteness by the caller.
    pub vector: Vec<f32>,
    /// The payload, if any.
    #[serde(with = "payload_text")]
    pub payload: Option<Payload>,
}

/// A write to one shard. Every replica applies the same sequence and reaches the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Insert or replace points (an update tombstones the old row and appends a new one).
    Upsert {
        /// The points, with distinct ids.
        points: Vec<PointWrite>,
    },
    /// Delete points by id; unknown ids are ignored.
    Delete {
        /// The ids to delete.
        ids: Vec<PointId>,
    },
    /// Delete every point the filter matches, as of the moment the command is applied.
    DeleteByFilter {
        /// The filter; it was compiled successfully before the command was logged. Carried as JSON
        /// text because its untagged parts need a self-describing format.
        #[serde(with = "json_text")]
        filter: Filter,
    },
    /// Insert or replace points at a version: each point is applied only if `version` is at
    /// least the version stored for its id (0 if never seen). (Minimal stand-in until the
    /// `segments` branch lands its own, which also persists versions in snapshots.)
    UpsertAt {
        /// The points, with distinct ids.
        points: Vec<PointWrite>,
        /// Hybrid-logical-clock version of the write.
        version: u64,
    },
    /// Delete ids at a version: for each id with `version` at least its stored version, delete
    /// it if present and record `version` even if absent (so an older upsert arriving later
    /// loses).
    DeleteAt {
        /// The ids.
        ids: Vec<PointId>,
        /// Hybrid-logical-clock version of the delete.
        version: u64,
    },
}

/// Why command bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupted shard command: {0}")]
pub struct DecodeError(#[from] postcard::Error);

impl ShardCommand {
    /// The compact binary form that goes into the log.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail: every field has a fixed serde form
        // (payloads are carried as JSON text produced by serde_json from a valid map).
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes bytes produced by [`ShardCommand::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let filter: Filter = serde_json::from_str(
            r#"{"must":[{"key":"a","match":{"value":"x"}},{"key":"n","range":{"gte":1.5}}]}"#,
        )
        .unwrap();
        let payload = serde_json::json!({"a": "x", "nested": {"k": [1, 2.5, null]}});
        let cmds = vec![
            ShardCommand::Upsert {
                points: vec![
                    PointWrite {
                        id: PointId::Num(3),
                        vector: vec![1.0, -2.5],
                        payload: None,
                    },
                    PointWrite {
                        id: PointId::Uuid(42),
                        vector: vec![0.0, 1.0],
                        payload: payload.as_object().cloned(),
                    },
                ],
            },
            ShardCommand::Delete {
                ids: vec![PointId::Num(3), PointId::Uuid(9)],
            },
            ShardCommand::DeleteByFilter { filter },
        ];
        for c in cmds {
            let bytes = c.encode();
            assert_eq!(ShardCommand::decode(&bytes).unwrap(), c);
        }
        assert!(ShardCommand::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
