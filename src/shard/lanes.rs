//! [`Lanes`]: the engines of one shard replica, one per vector of the collection (Qdrant's named
//! vectors), all fed by one log.
//!
//! A collection with one unnamed vector has one lane. A collection with named vectors has one
//! lane per name, each a whole [`Shard`] with its own dimension, metric, segments, IVF-PQ
//! indexes and calibration, so every named vector is indexed and tuned on its own. Every lane
//! holds every point and its payload: a filter is planned inside the lane that is searched,
//! with that lane's payload indexes, exactly as in a one-vector shard. (The price is the
//! payload stored once per lane; sharing it is left for later.)
//!
//! **One log entry carries all of a point's vectors.** In an upsert to a shard with several
//! lanes, a point's `vector` is its lanes' vectors end to end, in lane order (its *packed*
//! vector); [`Lanes::apply`] gives each lane its part. A vector update names the lanes it
//! changes, and each lane gets the points that change its vector. Every other command goes to
//! every lane as it is. The lanes apply the same entries in the same order, so they hold the
//! same points, and a command one lane would refuse is refused by all of them before any
//! applies it (each still records the index, so replay stays idempotent). Since Raft pauses
//! applies while a snapshot is written, the lanes of one snapshot cover the same index.
//!
//! **Files.** Lane 0 lives where a one-lane shard lives (its data directory, its snapshot
//! directory), so one-lane shards are unchanged; lane `i > 0` lives in `lanes/<i>/` under both.
//!
//! **Reads.** Searches run in one lane. Reads that return vectors read lane 0 and then join the
//! other lanes' vectors into a packed vector; a point deleted between the two reads is left out.
//!
//! **Points without some vectors.** A point may lack a lane's vector: an upsert whose part for
//! the lane is NaNs ([`is_absent`]; the lane stores the point with an empty vector), or a
//! [`ShardCommand::DeleteVectors`] naming the lane. The lane keeps the point and its payload but
//! never returns it from a search, and reads give its part as NaNs. `has_vector` is answered
//! here, not in a lane: the router gives each such condition its lane, and
//! [`Lanes::resolve_filter`] turns it into "none of the points lacking that lane's vector"
//! before any lane compiles the filter (for a write, once, before any lane applies it).

use super::apply::check_each;
use super::command::{ShardCommand, VectorUpdate};
use super::filter::{Condition, Filter, OneOrMany};
use super::{Hit, PointId, Record, Shard, ShardConfig, ShardError, ShardStats, check_vector};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The lanes of one shard replica (never empty; lane 0 is the first vector).
#[derive(Debug, Clone)]
pub struct Lanes {
    lanes: Vec<Shard>,
}

/// Where lane `lane`'s files live under a shard's data or snapshot directory `root`.
pub fn lane_dir(root: &Path, lane: usize) -> PathBuf {
    if lane == 0 {
        root.to_path_buf()
    } else {
        root.join("lanes").join(lane.to_string())
    }
}

impl Lanes {
    /// One lane: a one-vector shard.
    pub fn single(shard: Shard) -> Self {
        Lanes { lanes: vec![shard] }
    }

    /// These shards as lanes, lane 0 first (tests build them with inline builds).
    #[cfg(test)]
    pub(crate) fn from_shards(lanes: Vec<Shard>) -> Self {
        Lanes { lanes }
    }

    /// Empty lanes of these shapes (at least one), lane `i`'s segment files in
    /// [`lane_dir`]`(data_dir, i)`.
    pub fn open(configs: Vec<ShardConfig>, data_dir: &Path) -> Result<Self, ShardError> {
        if configs.is_empty() {
            return Err(ShardError::Config("a shard needs at least one lane".into()));
        }
        let lanes = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Shard::open(c, &lane_dir(data_dir, i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lanes { lanes })
    }

    /// Lane 0: the one-vector shard, or the first named vector. Every lane holds the same
    /// points and payloads, so reads that need no vector of another lane go here.
    pub fn primary(&self) -> &Shard {
        &self.lanes[0]
    }

    /// Lane `i`, if the shard has it.
    pub fn lane(&self, i: usize) -> Option<&Shard> {
        self.lanes.get(i)
    }

    /// How many lanes.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Whether there are no lanes (never, once made).
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Index builds and compactions swapped in over every lane ([`Shard::segment_changes`]).
    pub fn segment_changes(&self) -> u64 {
        self.lanes.iter().map(Shard::segment_changes).sum()
    }

    /// Whether any lane is building or compacting a segment.
    pub fn busy(&self) -> bool {
        let s = self.stats();
        s.building > 0 || s.compacting > 0
    }

    /// The shard's counters: lane 0's, with the work in flight summed over every lane and a
    /// point counted as indexed only when every lane has indexed it (the fewest indexed).
    pub fn stats(&self) -> ShardStats {
        let mut out = self.lanes[0].stats();
        for lane in &self.lanes[1..] {
            let s = lane.stats();
            out.building += s.building;
            out.compacting += s.compacting;
            out.compacting_rows += s.compacting_rows;
            out.indexed_points = out.indexed_points.min(s.indexed_points);
        }
        out
    }

    /// Waits until no lane has an index build or compaction in flight.
    pub fn wait_for_builds(&self) {
        for lane in &self.lanes {
            lane.wait_for_builds();
        }
    }

    /// The length of a packed vector: every lane's dimension summed.
    pub fn packed_dim(&self) -> usize {
        self.lanes.iter().map(|l| l.config().dim).sum()
    }

    /// What lane `lane` applies of `command`: its part of every packed vector of an upsert, the
    /// points of a vector update that change its vector, every other command as it is.
    fn part<'c>(&self, lane: usize, command: &'c ShardCommand) -> Cow<'c, ShardCommand> {
        if self.lanes.len() == 1 && !has_absent_vector(command) {
            return Cow::Borrowed(command);
        }
        let start: usize = self.lanes[..lane].iter().map(|l| l.config().dim).sum();
        let end = start + self.lanes[lane].config().dim;
        // A part of NaNs is a vector the point does not have: the lane gets an empty one.
        let slice = |points: &[super::PointWrite]| {
            points
                .iter()
                .map(|p| {
                    let part = p.vector.get(start..end).unwrap_or_default();
                    super::PointWrite {
                        id: p.id,
                        vector: if is_absent(part) {
                            Vec::new()
                        } else {
                            part.to_vec()
                        },
                        payload: p.payload.clone(),
                    }
                })
                .collect()
        };
        match command {
            ShardCommand::Upsert { points } => Cow::Owned(ShardCommand::Upsert {
                points: slice(points),
            }),
            ShardCommand::UpsertAt { points, version } => Cow::Owned(ShardCommand::UpsertAt {
                points: slice(points),
                version: *version,
            }),
            // Each lane gets the points that change its vector, as its lane 0.
            ShardCommand::UpdateVectors { points } => Cow::Owned(ShardCommand::UpdateVectors {
                points: points
                    .iter()
                    .filter_map(|p| {
                        let (_, v) = p.vectors.iter().find(|(l, _)| *l as usize == lane)?;
                        Some(VectorUpdate {
                            id: p.id,
                            vectors: vec![(0, v.clone())],
                        })
                    })
                    .collect(),
            }),
            // Each lane named loses its vector, as its lane 0; the others only record the index.
            ShardCommand::DeleteVectors { points, lanes } => {
                Cow::Owned(ShardCommand::DeleteVectors {
                    points: points.clone(),
                    lanes: if lanes.contains(&(lane as u32)) {
                        vec![0]
                    } else {
                        Vec::new()
                    },
                })
            }
            other => Cow::Borrowed(other),
        }
    }

    /// `filter` with every resolved `has_vector` (one the router gave a lane) turned into what
    /// the shard can evaluate: "none of the points without that lane's vector". Borrowed when
    /// the filter has no such condition.
    pub fn resolve_filter<'f>(&self, filter: &'f Filter) -> Result<Cow<'f, Filter>, ShardError> {
        let mut lanes = Vec::new();
        filter.visit_conditions(&mut |c| {
            if let (Some(_), Some(l)) = (&c.has_vector, c.has_vector_lane) {
                lanes.push(l);
            }
        });
        if lanes.is_empty() {
            return Ok(Cow::Borrowed(filter));
        }
        let mut without: HashMap<u32, Vec<PointId>> = HashMap::new();
        for l in lanes {
            let lane = self.lanes.get(l as usize).ok_or_else(|| {
                ShardError::Param(format!(
                    "has_vector names lane {l}; the shard has {}",
                    self.lanes.len()
                ))
            })?;
            without.entry(l).or_insert_with(|| lane.vectorless_points());
        }
        let mut out = filter.clone();
        out.visit_conditions_mut(&mut |c| {
            if let (Some(_), Some(l)) = (&c.has_vector, c.has_vector_lane) {
                let lacking = Condition {
                    has_id: Some(without.get(&l).cloned().unwrap_or_default()),
                    ..Condition::default()
                };
                *c = Condition {
                    must_not: Some(OneOrMany::One(Box::new(lacking))),
                    ..Condition::default()
                };
            }
        });
        Ok(Cow::Owned(out))
    }

    /// `command` with its filter resolved ([`Self::resolve_filter`]).
    fn resolve_command<'c>(
        &self,
        command: &'c ShardCommand,
    ) -> Result<Cow<'c, ShardCommand>, ShardError> {
        let Some(filter) = command.filter() else {
            return Ok(Cow::Borrowed(command));
        };
        match self.resolve_filter(filter)? {
            Cow::Borrowed(_) => Ok(Cow::Borrowed(command)),
            Cow::Owned(resolved) => {
                let mut owned = command.clone();
                if let Some(f) = owned.filter_mut() {
                    *f = resolved;
                }
                Ok(Cow::Owned(owned))
            }
        }
    }

    /// Checks a command against every lane without applying it (a packed vector of the wrong
    /// length is refused with the packed dimension). An upsert's packed vectors are checked in
    /// place, a command every lane gets as it is once, on lane 0.
    pub fn validate(&self, command: &ShardCommand) -> Result<(), ShardError> {
        let command = &*self.resolve_command(command)?;
        match command {
            ShardCommand::Upsert { points } | ShardCommand::UpsertAt { points, .. } => {
                let packed = self.packed_dim();
                check_each(points, |p| p.id, |p| self.check_packed(packed, &p.vector))
            }
            ShardCommand::UpdateVectors { points } => {
                for p in points {
                    if !self.distinct_lanes(p.vectors.iter().map(|(l, _)| *l)) {
                        return Err(ShardError::Param(format!(
                            "point {}: new vectors must name distinct lanes below {}",
                            p.id,
                            self.lanes.len()
                        )));
                    }
                }
                for (i, lane) in self.lanes.iter().enumerate() {
                    lane.validate(&self.part(i, command))?;
                }
                Ok(())
            }
            ShardCommand::DeleteVectors { lanes, .. } => {
                if !self.distinct_lanes(lanes.iter().copied()) {
                    return Err(ShardError::Param(format!(
                        "vectors to delete must name distinct lanes below {}",
                        self.lanes.len()
                    )));
                }
                self.lanes[0].validate(command)
            }
            _ => self.lanes[0].validate(command),
        }
    }

    /// Whether `lanes` are lanes of this shard, none twice (what a command naming lanes needs).
    fn distinct_lanes(&self, lanes: impl Iterator<Item = u32>) -> bool {
        let mut seen = vec![false; self.lanes.len()];
        lanes.into_iter().all(|l| {
            seen.get_mut(l as usize)
                .is_some_and(|s| !std::mem::replace(s, true))
        })
    }

    /// A packed vector: `packed` long, each lane's part finite or (a vector the point does not
    /// have) all NaN.
    fn check_packed(&self, packed: usize, v: &[f32]) -> Result<(), ShardError> {
        if v.len() != packed {
            return Err(ShardError::Dimension {
                expected: packed,
                got: v.len(),
            });
        }
        let mut start = 0;
        for lane in &self.lanes {
            let dim = lane.config().dim;
            let part = &v[start..start + dim];
            if !is_absent(part) {
                check_vector(dim, part)?;
            }
            start += dim;
        }
        Ok(())
    }

    /// Applies the command at log `index` to every lane (see [`Shard::apply`]): all of them or,
    /// when any lane would refuse it, none (each records the index either way).
    pub fn apply(&self, index: u64, command: &ShardCommand) -> Result<bool, ShardError> {
        // Resolved once, before any lane applies it: every lane selects the same points.
        let command = match self.resolve_command(command) {
            Ok(c) => c,
            Err(e) => {
                for lane in &self.lanes {
                    lane.skip(index);
                }
                return Err(e);
            }
        };
        let command = &*command;
        if self.lanes.len() == 1 {
            return self.lanes[0].apply(index, &self.part(0, command));
        }
        if let Err(e) = self.validate(command) {
            for lane in &self.lanes {
                lane.skip(index);
            }
            return Err(e);
        }
        let mut applied = false;
        for (i, lane) in self.lanes.iter().enumerate() {
            applied |= lane.apply(index, &self.part(i, command))?;
        }
        Ok(applied)
    }

    /// Packs the vectors of lane 0's records with the other lanes' vectors of the same points
    /// (records without a vector pass as they are; one whose point another lane no longer
    /// holds, deleted meanwhile, is dropped).
    pub fn join_records(&self, records: Vec<Record>) -> Vec<Record> {
        self.join(records, |r| (r.id, r.vector.as_mut()))
    }

    /// [`Self::join_records`] for search hits.
    pub fn join_hits(&self, hits: Vec<Hit>) -> Vec<Hit> {
        self.join(hits, |h| (h.record.id, h.record.vector.as_mut()))
    }

    /// [`Self::join_records`] for anything holding a point's id and maybe its lane-0 vector
    /// (ordered rows, sampled points).
    pub fn join<T>(
        &self,
        mut items: Vec<T>,
        vector: impl Fn(&mut T) -> (PointId, Option<&mut Vec<f32>>),
    ) -> Vec<T> {
        if self.lanes.len() == 1 {
            return items;
        }
        let ids: Vec<PointId> = items
            .iter_mut()
            .filter_map(|item| match vector(item) {
                (id, Some(_)) => Some(id),
                (_, None) => None,
            })
            .collect();
        if ids.is_empty() {
            return items;
        }
        let others: Vec<HashMap<PointId, Vec<f32>>> = self.lanes[1..]
            .iter()
            .map(|lane| {
                lane.get(&ids, false, true)
                    .into_iter()
                    .filter_map(|r| Some((r.id, r.vector?)))
                    .collect()
            })
            .collect();
        items.retain_mut(|item| {
            let (id, Some(v)) = vector(item) else {
                return true;
            };
            for lane in &others {
                match lane.get(&id) {
                    Some(part) => v.extend_from_slice(part),
                    None => return false,
                }
            }
            true
        });
        items
    }

    /// Writes every lane's snapshot under `dir` (lane `i` in [`lane_dir`]`(dir, i)`); returns
    /// the last applied index they cover.
    pub fn snapshot(&self, dir: &Path) -> Result<u64, ShardError> {
        let last = self.lanes[0].snapshot(dir)?;
        for (i, lane) in self.lanes.iter().enumerate().skip(1) {
            lane.snapshot(&lane_dir(dir, i))?;
        }
        Ok(last)
    }

    /// Loads `lanes` lanes from a snapshot written by [`Self::snapshot`], lane `i`'s segment
    /// files linked into [`lane_dir`]`(data_dir, i)` when a data directory is given.
    pub fn restore_into(
        dir: &Path,
        lanes: usize,
        background: bool,
        data_dir: Option<&Path>,
    ) -> Result<Self, ShardError> {
        let lanes = (0..lanes.max(1))
            .map(|i| {
                let from = lane_dir(dir, i);
                if i > 0 && !Shard::has_snapshot(&from) {
                    return Err(ShardError::Corrupted(format!(
                        "the snapshot holds no lane {i} (expected {lanes} lanes)"
                    )));
                }
                let to = data_dir.map(|d| lane_dir(d, i));
                Shard::restore_into(&from, background, to.as_deref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lanes { lanes })
    }
}

/// Whether an upsert holds a point without a vector (see [`is_absent`]).
fn has_absent_vector(command: &ShardCommand) -> bool {
    match command {
        ShardCommand::Upsert { points } | ShardCommand::UpsertAt { points, .. } => {
            points.iter().any(|p| is_absent(&p.vector))
        }
        _ => false,
    }
}

/// Whether a lane's part of a packed vector stands for a vector the point does not have: NaNs,
/// which no stored vector holds (writes refuse them) and reads of such a point return.
pub fn is_absent(part: &[f32]) -> bool {
    !part.is_empty() && part.iter().all(|x| x.is_nan())
}
