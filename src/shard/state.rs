//! What the shard's log produces, as it sits behind the shard's one lock: the segments, the id
//! map, the versions of versioned writes and the payload schema ([`State`]), and the helpers
//! that read a point out of a segment. Every other part of the shard works on a `State` it was
//! handed or took through [`read`]/[`write`].

use super::Record;
use super::payload_index::PayloadSchema;
use super::point::PointId;
use super::segment::{SegBody, Segment};
use crate::index::RowSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) seg: u32,
    pub(super) row: u32,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) last_applied: u64,
    pub(super) next_segment: u32,
    /// Sealed (frozen or indexed) segments, then the mutable one last.
    pub(super) segments: Vec<Segment>,
    pub(super) ids: BTreeMap<PointId, Loc>,
    /// Version of the last versioned write of each id (deletes of absent ids included).
    pub(super) versions: HashMap<PointId, u64>,
    /// Indexed payload fields ([`payload_ops`](super::payload_ops)).
    pub(super) schema: PayloadSchema,
}

impl State {
    pub(super) fn new() -> Self {
        State {
            last_applied: 0,
            next_segment: 1,
            segments: vec![empty_segment(0)],
            ids: BTreeMap::new(),
            versions: HashMap::new(),
            schema: PayloadSchema::new(),
        }
    }

    pub(super) fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    pub(super) fn segment_mut(&mut self, id: u32) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.id == id)
    }

    pub(super) fn tombstone(&mut self, id: &PointId) -> bool {
        let Some(loc) = self.ids.remove(id) else {
            return false;
        };
        if let Some(seg) = self.segment_mut(loc.seg)
            && seg.live.contains(loc.row as usize)
        {
            // Copies the set only if a query still reads the old one.
            Arc::make_mut(&mut seg.live).remove(loc.row as usize);
            seg.live_count -= 1;
        }
        true
    }

    pub(super) fn record(
        &self,
        id: PointId,
        loc: Loc,
        with_payload: bool,
        with_vector: bool,
    ) -> Option<Record> {
        record_in(
            self.segment(loc.seg)?,
            id,
            loc.row,
            with_payload,
            with_vector,
        )
    }

    /// Whether a versioned write of `id` at `version` wins over what was applied before.
    pub(super) fn wins(&self, id: &PointId, version: u64) -> bool {
        version >= self.versions.get(id).copied().unwrap_or(0)
    }
}

pub(super) fn empty_segment(id: u32) -> Segment {
    Segment {
        id,
        body: SegBody::Flat(Vec::new()),
        live: Arc::new(RowSet::new(0)),
        live_count: 0,
        rows: 0,
        vectorless: Arc::new(RowSet::new(0)),
        busy: false,
    }
}

pub(super) fn record_in(
    seg: &Segment,
    id: PointId,
    row: u32,
    with_payload: bool,
    with_vector: bool,
) -> Option<Record> {
    let row = row as usize;
    if row >= seg.rows {
        return None;
    }
    Some(Record {
        id,
        payload: if with_payload {
            seg.body.payload(row).cloned()
        } else {
            None
        },
        // A row without a vector reads as NaNs, which no stored vector holds: through the
        // lanes' packed vectors they tell "no vector" apart from "not asked for".
        vector: if with_vector {
            let v = seg.body.vector(row);
            if seg.is_vectorless(row) {
                v.map(|v| vec![f32::NAN; v.len()])
            } else {
                v.map(<[f32]>::to_vec)
            }
        } else {
            None
        },
    })
}

pub(super) fn read(lock: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn write(lock: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
