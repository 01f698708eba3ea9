//! The write path: [`Shard::validate`] and [`Shard::apply`], which run log entries in order
//! (skipping indexes already applied, so replay is harmless), and the append of one point to
//! the mutable segment.

use super::planner::allowed;
use super::segment::{CHUNK_ROWS, Chunk, SegBody, no_vector_placeholder};
use super::{Loc, PointId, PointWrite, Shard, ShardCommand, ShardError, State, payload_ops, write};
use crate::index::FlatIndex;
use std::collections::HashSet;
use std::sync::Arc;

/// Checks a vector for the shard's dimension and finiteness.
pub fn check_vector(dim: usize, v: &[f32]) -> Result<(), ShardError> {
    if v.len() != dim {
        return Err(ShardError::Dimension {
            expected: dim,
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(ShardError::NonFinite);
    }
    Ok(())
}

/// Runs `check` on each point of a write and refuses an id given twice: the pass every write
/// of points gets before it is logged (and again when it is applied).
pub(super) fn check_each<T>(
    points: &[T],
    id: impl Fn(&T) -> PointId,
    check: impl Fn(&T) -> Result<(), ShardError>,
) -> Result<(), ShardError> {
    let mut seen = HashSet::with_capacity(points.len());
    for p in points {
        check(p)?;
        let id = id(p);
        if !seen.insert(id) {
            return Err(ShardError::DuplicateId(id));
        }
    }
    Ok(())
}

impl Shard {
    /// Checks a command without applying it, so that callers can refuse bad input before it is
    /// logged. `apply` runs the same checks.
    pub fn validate(&self, command: &ShardCommand) -> Result<(), ShardError> {
        match command {
            // An empty vector: the point has none (see `append`).
            ShardCommand::Upsert { points } | ShardCommand::UpsertAt { points, .. } => check_each(
                points,
                |p| p.id,
                |p| match p.vector.is_empty() {
                    true => Ok(()),
                    false => check_vector(self.inner.config.dim, &p.vector),
                },
            ),
            ShardCommand::UpdateVectors { points } => check_each(
                points,
                |p| p.id,
                |p| match p.vectors.as_slice() {
                    [(0, v)] => check_vector(self.inner.config.dim, v),
                    _ => Err(ShardError::Param(format!(
                        "point {}: a one-vector shard takes exactly one new vector, for lane 0",
                        p.id
                    ))),
                },
            ),
            ShardCommand::Delete { .. } | ShardCommand::DeleteAt { .. } => Ok(()),
            ShardCommand::DeleteByFilter { filter } => {
                filter.compile()?;
                Ok(())
            }
            _ => payload_ops::validate(command),
        }
    }

    /// Applies the command at log `index`. Indices at or below the last applied are skipped (and
    /// return `Ok(false)`), so replay is idempotent. An invalid command changes nothing but the
    /// applied index, so every replica skips it the same way.
    pub fn apply(&self, index: u64, command: &ShardCommand) -> Result<bool, ShardError> {
        let mut state = write(&self.inner.state);
        if index <= state.last_applied {
            return Ok(false);
        }
        state.last_applied = index;
        self.validate(command)?;
        if matches!(
            command,
            ShardCommand::Upsert { .. }
                | ShardCommand::UpsertAt { .. }
                | ShardCommand::UpdateVectors { .. }
        ) {
            self.touch();
        }
        let mut tombstoned = false;
        match command {
            ShardCommand::Upsert { points } => {
                for p in points {
                    tombstoned |= self.append(&mut state, p)?;
                }
            }
            ShardCommand::UpsertAt { points, version } => {
                for p in points {
                    if state.wins(&p.id, *version) {
                        state.versions.insert(p.id, *version);
                        tombstoned |= self.append(&mut state, p)?;
                    }
                }
            }
            ShardCommand::UpdateVectors { points } => {
                for p in points {
                    let Some(loc) = state.ids.get(&p.id).copied() else {
                        continue;
                    };
                    // The point is written again with its payload and the new vector.
                    let payload = state
                        .record(p.id, loc, true, false)
                        .and_then(|r| r.payload)
                        .map(|p| (*p).clone());
                    let Some((_, vector)) = p.vectors.first() else {
                        continue;
                    };
                    let write = PointWrite {
                        id: p.id,
                        vector: vector.clone(),
                        payload,
                    };
                    tombstoned |= self.append(&mut state, &write)?;
                }
            }
            ShardCommand::Delete { ids } => {
                for id in ids {
                    tombstoned |= state.tombstone(id);
                }
            }
            ShardCommand::DeleteAt { ids, version } => {
                for id in ids {
                    if state.wins(id, *version) {
                        state.versions.insert(*id, *version);
                        tombstoned |= state.tombstone(id);
                    }
                }
            }
            ShardCommand::DeleteVectors { points, lanes } => {
                if lanes.contains(&0) {
                    for id in payload_ops::selected(&state, points)? {
                        if let Some(loc) = state.ids.get(&id).copied()
                            && let Some(seg) = state.segment_mut(loc.seg)
                        {
                            seg.mark_vectorless(loc.row as usize);
                        }
                    }
                }
            }
            ShardCommand::DeleteByFilter { filter } => {
                let filter = filter.compile()?;
                let doomed: Vec<PointId> = state
                    .segments
                    .iter()
                    .flat_map(|seg| {
                        allowed(seg, Some(&filter))
                            .iter()
                            .filter_map(|row| seg.body.point(row))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                for id in &doomed {
                    tombstoned |= state.tombstone(id);
                }
            }
            _ => tombstoned |= self.apply_payload(&mut state, command)?,
        }
        if tombstoned {
            self.maybe_compact(&mut state);
        }
        Ok(true)
    }

    /// Records `index` as applied without applying anything: the entry's command was refused
    /// by another lane of the same shard ([`super::Lanes::apply`]), so this lane skips it too.
    pub(super) fn skip(&self, index: u64) {
        let mut state = write(&self.inner.state);
        state.last_applied = state.last_applied.max(index);
    }

    /// Appends one point to the mutable segment (tombstoning its old row); returns whether an
    /// old row was tombstoned. A point with an empty vector has none: its row holds a
    /// placeholder and is marked [`vectorless`](super::segment::Segment::vectorless).
    pub(super) fn append(&self, state: &mut State, p: &PointWrite) -> Result<bool, ShardError> {
        let replaced = state.tombstone(&p.id);
        let config = &self.inner.config;
        let Some(seg) = state.segments.last_mut() else {
            return Ok(replaced);
        };
        let SegBody::Flat(chunks) = &mut seg.body else {
            return Ok(replaced);
        };
        let row = seg.rows;
        if chunks.last().is_none_or(|c| c.len() >= CHUNK_ROWS) {
            let mut chunk = Chunk::new(FlatIndex::new(config.dim, config.metric));
            chunk.index.sync(&state.schema, 0, |_| None);
            chunks.push(Arc::new(chunk));
        }
        let no_vector = p.vector.is_empty();
        if let Some(last) = chunks.last_mut() {
            // Copies the chunk only if a query still reads it (at most CHUNK_ROWS rows).
            let chunk = Arc::make_mut(last);
            if no_vector {
                chunk
                    .flat
                    .add(row as u64, &no_vector_placeholder(config.dim))?;
            } else {
                chunk.flat.add(row as u64, &p.vector)?;
            }
            chunk.index.add_row(chunk.points.len(), p.payload.as_ref());
            chunk.points.push(p.id);
            chunk.payloads.push(p.payload.clone().map(Arc::new));
        }
        let live = Arc::make_mut(&mut seg.live);
        live.resize(row + 1);
        live.insert(row);
        seg.rows += 1;
        seg.live_count += 1;
        if no_vector {
            seg.mark_vectorless(row);
        }
        let seg_id = seg.id;
        state.ids.insert(
            p.id,
            Loc {
                seg: seg_id,
                row: row as u32,
            },
        );
        self.maybe_seal(state);
        Ok(replaced)
    }
}
