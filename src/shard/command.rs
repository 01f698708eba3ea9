//! The write commands a shard applies, in the order its log (Raft, or the local write-ahead log
//! before Raft) fixes. Commands are encoded with `postcard` — compact, deterministic and
//! versioned by the enum's variant order, so new variants are only ever appended.

use super::filter::Filter;
use super::payload_index::PayloadFieldType;
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

/// New vectors for one point of [`ShardCommand::UpdateVectors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorUpdate {
    /// The point.
    pub id: PointId,
    /// `(lane, vector)` for each vector that changes (lane 0 in a one-vector shard, see
    /// [`super::Lanes`]); the others stay.
    pub vectors: Vec<(u32, Vec<f32>)>,
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
    /// Insert or replace points, last writer wins: each point is applied only if `version` is
    /// at least the version stored for its id (that of the last applied `UpsertAt` or `DeleteAt`
    /// of the id, 0 if none), and then records `version`; otherwise that point is skipped.
    /// Versions are hybrid-logical-clock values, so concurrent writers through different routers
    /// resolve to one winner whatever order their commands reach the log in.
    UpsertAt {
        /// The points, with distinct ids.
        points: Vec<PointWrite>,
        /// The writer's version of every point in the batch.
        version: u64,
    },
    /// Delete points by id, last writer wins: for each id whose stored version is at most
    /// `version`, the point (if present) is deleted and `version` recorded, even for an absent
    /// id, so that an older upsert arriving later loses.
    DeleteAt {
        /// The ids to delete.
        ids: Vec<PointId>,
        /// The deleter's version.
        version: u64,
    },
    /// Index a payload field (replacing an index of another type on it). Every segment builds
    /// the index; later writes keep it up to date.
    CreateFieldIndex {
        /// The payload key (a filter key: `a.b`, `items[].sku`).
        field: String,
        /// The index type.
        field_type: PayloadFieldType,
    },
    /// Drop a payload field's index (nothing if the field has none).
    DeleteFieldIndex {
        /// The payload key.
        field: String,
    },
    /// Merge `payload` into the payload of the selected points (keys given replace those
    /// present; others stay). With `key`, merge it into the object at that dotted path instead,
    /// creating the objects on the way.
    SetPayload {
        /// The keys to set.
        #[serde(with = "json_text")]
        payload: Payload,
        /// The points.
        points: PointSelector,
        /// A dotted path of object keys to set the payload under.
        key: Option<String>,
    },
    /// Replace the whole payload of the selected points.
    OverwritePayload {
        /// The new payload.
        #[serde(with = "json_text")]
        payload: Payload,
        /// The points.
        points: PointSelector,
    },
    /// Remove keys (top-level, or dotted paths into nested objects) from the selected points'
    /// payloads.
    DeletePayload {
        /// The keys to remove.
        keys: Vec<String>,
        /// The points.
        points: PointSelector,
    },
    /// Remove the whole payload of the selected points.
    ClearPayload {
        /// The points.
        points: PointSelector,
    },
    /// Replace vectors of existing points, keeping their payloads (Qdrant's `update_vectors`;
    /// unknown ids are ignored, versions are untouched, as for payload updates). Appended after
    /// `ClearPayload`.
    UpdateVectors {
        /// The points, with distinct ids.
        points: Vec<VectorUpdate>,
    },
    /// Remove vectors from the selected points, keeping the points and their payloads
    /// (Qdrant's `delete_vectors`): a point without a vector is never a search hit in that
    /// vector and reads show it without it, until an upsert or vector update gives it one
    /// again. Unknown ids are ignored, versions untouched. Appended after `UpdateVectors`.
    DeleteVectors {
        /// The points.
        points: PointSelector,
        /// The lanes whose vector goes (lane 0 in a one-vector shard, see [`super::Lanes`]).
        lanes: Vec<u32>,
    },
}

/// Which points a payload update applies to, as of the moment the command is applied. Unknown
/// ids are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PointSelector {
    /// These ids.
    Ids(Vec<PointId>),
    /// Every point the filter matches (compiled successfully before the command was logged).
    Filter(#[serde(with = "json_text")] Filter),
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

    /// [`Self::filter`], to rewrite in place.
    pub fn filter_mut(&mut self) -> Option<&mut Filter> {
        match self {
            ShardCommand::SetPayload { points, .. }
            | ShardCommand::OverwritePayload { points, .. }
            | ShardCommand::DeletePayload { points, .. }
            | ShardCommand::ClearPayload { points }
            | ShardCommand::DeleteVectors { points, .. } => match points {
                PointSelector::Filter(f) => Some(f),
                PointSelector::Ids(_) => None,
            },
            ShardCommand::DeleteByFilter { filter } => Some(filter),
            _ => None,
        }
    }

    /// The filter that selects the points this command changes: a delete by filter, or a
    /// payload update by filter.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            ShardCommand::SetPayload { points, .. }
            | ShardCommand::OverwritePayload { points, .. }
            | ShardCommand::DeletePayload { points, .. }
            | ShardCommand::ClearPayload { points }
            | ShardCommand::DeleteVectors { points, .. } => match points {
                PointSelector::Filter(f) => Some(f),
                PointSelector::Ids(_) => None,
            },
            ShardCommand::DeleteByFilter { filter } => Some(filter),
            _ => None,
        }
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
            ShardCommand::DeleteByFilter {
                filter: filter.clone(),
            },
            ShardCommand::UpsertAt {
                points: vec![PointWrite {
                    id: PointId::Num(4),
                    vector: vec![0.5, 0.5],
                    payload: None,
                }],
                version: u64::MAX - 1,
            },
            ShardCommand::DeleteAt {
                ids: vec![PointId::Uuid(1)],
                version: 17,
            },
            ShardCommand::CreateFieldIndex {
                field: "items[].sku".into(),
                field_type: PayloadFieldType::Datetime,
            },
            ShardCommand::DeleteFieldIndex { field: "a".into() },
            ShardCommand::SetPayload {
                payload: payload.as_object().cloned().unwrap(),
                points: PointSelector::Ids(vec![PointId::Num(1)]),
                key: Some("x.y".into()),
            },
            ShardCommand::OverwritePayload {
                payload: Payload::new(),
                points: PointSelector::Filter(filter.clone()),
            },
            ShardCommand::DeletePayload {
                keys: vec!["a".into(), "b.c".into()],
                points: PointSelector::Filter(filter.clone()),
            },
            ShardCommand::UpdateVectors {
                points: vec![VectorUpdate {
                    id: PointId::Num(8),
                    vectors: vec![(0, vec![0.25, -1.0]), (2, vec![3.0])],
                }],
            },
            ShardCommand::ClearPayload {
                points: PointSelector::Ids(vec![]),
            },
            ShardCommand::DeleteVectors {
                points: PointSelector::Filter(filter.clone()),
                lanes: vec![1, 0],
            },
        ];
        for c in cmds {
            let bytes = c.encode();
            assert_eq!(ShardCommand::decode(&bytes).unwrap(), c);
        }
        assert!(ShardCommand::decode(&[0xff, 0xff, 0xff]).is_err());
    }

    /// Entries logged before the payload commands existed still decode the same (postcard
    /// numbers variants by position: new ones are only appended).
    #[test]
    fn old_entries_still_decode() {
        let delete = ShardCommand::Delete {
            ids: vec![PointId::Num(7)],
        };
        assert_eq!(delete.encode(), vec![1, 1, 0, 7]);
        assert_eq!(ShardCommand::decode(&[1, 1, 0, 7]).unwrap(), delete);
        let at = ShardCommand::DeleteAt {
            ids: vec![],
            version: 5,
        };
        assert_eq!(ShardCommand::decode(&[4, 0, 5]).unwrap(), at);
    }
}
