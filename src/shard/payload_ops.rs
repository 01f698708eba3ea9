//! Payload indexes and payload updates as a shard applies them.
//!
//! - **Schema** ([`ShardCommand::CreateFieldIndex`], [`ShardCommand::DeleteFieldIndex`]): the
//!   shard's [`PayloadSchema`] is state its log produces, like its points, and goes into
//!   snapshots. Changing it brings every segment's indexes to it ([`sync_segment`]); a segment
//!   built or compacted later builds its indexes for the schema of that moment.
//! - **Updates** (`SetPayload`, `OverwritePayload`, `DeletePayload`, `ClearPayload`): a point
//!   whose payload changes is written again, vector and id unchanged, into the mutable segment
//!   (the old row is tombstoned, as an upsert does). Sealed segments stay immutable, so their
//!   indexes never need patching, and the mutable segment's indexes take the new row as any
//!   write. A point whose payload the update leaves as it was is not touched.
//! - **Reads**: [`Shard::payload_schema`] (what `payload_schema` in collection info shows) and
//!   [`Shard::scroll_ordered`] (scroll with `order_by` on an indexed numeric field).

use super::command::{PointSelector, ShardCommand};
use super::filter::Filter;
use super::payload_index::{PayloadFieldInfo, PayloadIndex, PayloadSchema};
use super::planner;
use super::point::{Payload, PointId};
use super::segment::{IvfSeg, SegBody, Segment};
use super::values::JsonPath;
use super::{CompiledFilter, PointWrite, Record, Shard, ShardError, State};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Brings a segment's payload indexes to `schema` (a no-op when they already follow it).
pub(super) fn sync_segment(seg: &mut Segment, schema: &PayloadSchema) {
    match &mut seg.body {
        SegBody::Ivf(ivf) => {
            let current = ivf.payload_index();
            if !current.follows(schema) {
                let mut index = (*current).clone();
                sync_ivf(&mut index, ivf, schema);
                ivf.set_payload_index(Arc::new(index));
            }
        }
        SegBody::Flat(chunks) => {
            for chunk in chunks.iter_mut() {
                if !chunk.index.follows(schema) {
                    let chunk = Arc::make_mut(chunk);
                    let n = chunk.len();
                    let payloads = &chunk.payloads;
                    chunk
                        .index
                        .sync(schema, n, |r| payloads.get(r).and_then(|p| p.as_deref()));
                }
            }
        }
    }
}

/// Builds a built segment's payload indexes for `schema` (before it is swapped in, outside the
/// shard's lock).
pub(super) fn index_ivf(ivf: &IvfSeg, schema: &PayloadSchema) {
    let mut index = PayloadIndex::default();
    sync_ivf(&mut index, ivf, schema);
    ivf.set_payload_index(Arc::new(index));
}

fn sync_ivf(index: &mut PayloadIndex, ivf: &IvfSeg, schema: &PayloadSchema) {
    index.sync(schema, ivf.points.len(), |r| {
        ivf.payloads.get(r).and_then(|p| p.as_deref())
    });
}

/// Checks a payload-index or payload-update command (see [`Shard::validate`]).
pub(super) fn validate(command: &ShardCommand) -> Result<(), ShardError> {
    let bad = |m: String| Err(ShardError::Payload(m));
    let selector = |p: &PointSelector| -> Result<(), ShardError> {
        if let PointSelector::Filter(f) = p {
            f.compile()?;
        }
        Ok(())
    };
    let plain = |k: &str| !k.is_empty() && !k.contains('[') && !k.split('.').any(str::is_empty);
    match command {
        ShardCommand::CreateFieldIndex { field, .. } => {
            if JsonPath::parse(field).is_none() {
                return bad(format!(
                    "invalid field name {field:?}: expected dotted names, with [] or [n] to reach into arrays"
                ));
            }
            Ok(())
        }
        ShardCommand::DeleteFieldIndex { .. } => Ok(()),
        ShardCommand::SetPayload { points, key, .. } => {
            if let Some(k) = key
                && !plain(k)
            {
                return bad(format!(
                    "invalid payload key {k:?}: expected a dotted path of object keys"
                ));
            }
            selector(points)
        }
        ShardCommand::DeletePayload { keys, points } => {
            if let Some(k) = keys.iter().find(|k| !plain(k)) {
                return bad(format!(
                    "invalid payload key {k:?}: expected a key or a dotted path of object keys"
                ));
            }
            selector(points)
        }
        ShardCommand::OverwritePayload { points, .. }
        | ShardCommand::ClearPayload { points }
        | ShardCommand::DeleteVectors { points, .. } => selector(points),
        _ => Ok(()),
    }
}

/// The payload after `command` (a payload update) given the payload before.
fn updated(command: &ShardCommand, old: Option<&Payload>) -> Option<Payload> {
    match command {
        ShardCommand::SetPayload { payload, key, .. } => {
            let mut p = old.cloned().unwrap_or_default();
            let path: Vec<&str> = key.iter().flat_map(|k| k.split('.')).collect();
            set_at(&mut p, &path, payload);
            Some(p)
        }
        ShardCommand::OverwritePayload { payload, .. } => Some(payload.clone()),
        ShardCommand::DeletePayload { keys, .. } => {
            let mut p = old.cloned()?;
            for key in keys {
                if p.remove(key).is_some() {
                    continue;
                }
                let parts: Vec<&str> = key.split('.').collect();
                let Some((last, path)) = parts.split_last() else {
                    continue;
                };
                let mut target = Some(&mut p);
                for part in path {
                    target = target.and_then(|t| t.get_mut(*part)?.as_object_mut());
                }
                if let Some(t) = target {
                    t.remove(*last);
                }
            }
            Some(p)
        }
        _ => None,
    }
}

/// Merges `payload` into the object at `path` under `map`, creating (or replacing non-object
/// values with) objects on the way.
fn set_at(map: &mut Payload, path: &[&str], payload: &Payload) {
    match path.split_first() {
        None => {
            for (k, v) in payload {
                map.insert(k.clone(), v.clone());
            }
        }
        Some((first, rest)) => {
            let slot = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Payload::new()));
            if !slot.is_object() {
                *slot = Value::Object(Payload::new());
            }
            if let Value::Object(inner) = slot {
                set_at(inner, rest, payload);
            }
        }
    }
}

pub(super) fn selected(state: &State, points: &PointSelector) -> Result<Vec<PointId>, ShardError> {
    Ok(match points {
        PointSelector::Ids(ids) => ids
            .iter()
            .filter(|id| state.ids.contains_key(id))
            .copied()
            .collect(),
        PointSelector::Filter(f) => matching_ids(state, f)?,
    })
}

/// Every live point passing `filter`.
pub(super) fn matching_ids(state: &State, filter: &Filter) -> Result<Vec<PointId>, ShardError> {
    let filter = filter.compile()?;
    Ok(state
        .segments
        .iter()
        .flat_map(|seg| {
            planner::allowed(seg, Some(&filter))
                .iter()
                .filter_map(|row| seg.body.point(row))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Scroll `order_by`: a numeric (integer, float or datetime) indexed key and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// The indexed key.
    pub key: String,
    /// Largest values first.
    pub descending: bool,
    /// Start from this value (inclusive): the smallest value returned when ascending, the
    /// largest when descending.
    pub start_from: Option<f64>,
}

/// A point as [`Shard::scroll_ordered`] returns it: with the value it was ordered by, so that
/// the pages of several shards can be merged.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedRecord {
    /// The field's value (date-times as microseconds since the Unix epoch).
    pub value: f64,
    /// The point.
    pub record: Record,
}

impl Shard {
    /// Applies a payload-index or payload-update command under the write lock; returns whether
    /// rows were tombstoned.
    pub(super) fn apply_payload(
        &self,
        state: &mut State,
        command: &ShardCommand,
    ) -> Result<bool, ShardError> {
        match command {
            ShardCommand::CreateFieldIndex { field, field_type } => {
                state.schema.insert(field.clone(), *field_type);
                self.sync_indexes(state);
                Ok(false)
            }
            ShardCommand::DeleteFieldIndex { field } => {
                if state.schema.remove(field).is_some() {
                    self.sync_indexes(state);
                }
                Ok(false)
            }
            ShardCommand::SetPayload { points, .. }
            | ShardCommand::OverwritePayload { points, .. }
            | ShardCommand::DeletePayload { points, .. }
            | ShardCommand::ClearPayload { points } => {
                let mut tombstoned = false;
                for id in selected(state, points)? {
                    let Some(loc) = state.ids.get(&id).copied() else {
                        continue;
                    };
                    let Some(seg) = state.segment(loc.seg) else {
                        continue;
                    };
                    let row = loc.row as usize;
                    let old = seg.body.payload(row).map(|p| &**p);
                    let new = updated(command, old).filter(|p| !p.is_empty());
                    if new.as_ref() == old.filter(|p| !p.is_empty()) {
                        continue;
                    }
                    let Some(vector) = seg.body.vector(row).map(<[f32]>::to_vec) else {
                        continue;
                    };
                    // A point without its vector stays without it (see `Shard::append`).
                    let vector = if seg.is_vectorless(row) {
                        Vec::new()
                    } else {
                        vector
                    };
                    let write = PointWrite {
                        id,
                        vector,
                        payload: new,
                    };
                    tombstoned |= self.append(state, &write)?;
                }
                Ok(tombstoned)
            }
            _ => Ok(false),
        }
    }

    /// Brings every segment's payload indexes to the schema.
    pub(super) fn sync_indexes(&self, state: &mut State) {
        let schema = state.schema.clone();
        for seg in &mut state.segments {
            sync_segment(seg, &schema);
        }
    }

    /// The indexed payload fields: type and how many live points hold a value of that type.
    pub fn payload_schema(&self) -> BTreeMap<String, PayloadFieldInfo> {
        let state = super::read(&self.inner.state);
        state
            .schema
            .iter()
            .map(|(key, t)| {
                let points = state
                    .segments
                    .iter()
                    .map(|s| planner::indexed_points(s, key))
                    .sum();
                (
                    key.clone(),
                    PayloadFieldInfo {
                        data_type: *t,
                        points,
                    },
                )
            })
            .collect()
    }

    /// Up to `limit` live points passing `filter`, ordered by their values in the indexed
    /// numeric field `order.key` (ties by id). As in Qdrant, a point holding several values
    /// appears once per value, and points without a value are not returned. Refused when the
    /// key has no integer, float or datetime index.
    pub fn scroll_ordered(
        &self,
        order: &OrderBy,
        limit: usize,
        filter: Option<&CompiledFilter>,
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<OrderedRecord>, ShardError> {
        use super::payload_index::PayloadFieldType as T;
        let kind = super::read(&self.inner.state)
            .schema
            .get(&order.key)
            .copied();
        if !matches!(kind, Some(T::Integer | T::Float | T::Datetime)) {
            return Err(ShardError::Payload(format!(
                "order_by key `{}` needs an integer, float or datetime payload index",
                order.key
            )));
        }
        let view = self.view();
        let mut all: Vec<(f64, PointId, usize, u32)> = Vec::new();
        for (i, seg) in view.iter().enumerate() {
            let rows = planner::allowed(seg, filter);
            let values = planner::ordered_values(seg, &order.key, &rows).ok_or_else(|| {
                ShardError::Payload(format!("order_by key `{}` is being re-indexed", order.key))
            })?;
            all.extend(values.into_iter().filter_map(|(v, r)| {
                let keep = order
                    .start_from
                    .is_none_or(|s| if order.descending { v <= s } else { v >= s });
                keep.then(|| seg.body.point(r).map(|id| (v, id, i, r as u32)))
                    .flatten()
            }));
        }
        all.sort_by(|a, b| {
            let by = if order.descending {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            by.then(a.1.cmp(&b.1))
        });
        Ok(all
            .into_iter()
            .take(limit)
            .filter_map(|(value, id, i, row)| {
                super::record_in(&view[i], id, row, with_payload, with_vector)
                    .map(|record| OrderedRecord { value, record })
            })
            .collect())
    }
}
