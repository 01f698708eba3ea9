//! Upsert (and vector-update) batches cut to what one replicated log entry may carry.
//!
//! A shard's upsert is one Raft entry, and an entry carries at most
//! [`MAX_ENTRY_BYTES`](crate::raft::budget::MAX_ENTRY_BYTES) (issue 14, finding 2: larger ones
//! could never be replicated to a follower). A batch over [`UPSERT_ENTRY_BYTES`] goes as several
//! entries, each applied atomically; a single point that is itself too large is left alone here
//! and refused by the router with a 413 naming the limit.

use crate::collection::Error;
use crate::raft::budget::MAX_ENTRY_BYTES;
use crate::shard::{PointId, PointWrite, VectorUpdate};
use serde::Serialize;

/// One point of a write that is cut into entries: encoded as it is logged, named by its id.
pub trait EntryPoint: Serialize {
    /// The point's id (named when it alone is too large).
    fn point_id(&self) -> PointId;
}

impl EntryPoint for PointWrite {
    fn point_id(&self) -> PointId {
        self.id
    }
}

impl EntryPoint for VectorUpdate {
    fn point_id(&self) -> PointId {
        self.id
    }
}

/// Bytes an upsert command adds around its points (variant tag, lengths, version).
const ENTRY_FRAMING: usize = 64;

/// Encoded bytes of points one upsert entry carries at most: half the entry cap, so the
/// command's own framing and a forwarded request's envelope always fit.
pub const UPSERT_ENTRY_BYTES: usize = crate::raft::budget::MAX_ENTRY_BYTES / 2;

/// `points` in order, as consecutive runs of at most `cap` encoded bytes (a point larger than
/// `cap` forms a run of its own). One run when everything fits, which is the common case.
///
/// A point that alone encodes to more than [`MAX_ENTRY_BYTES`] can never be written: the whole
/// batch is refused with [`Error::TooLarge`] naming it, before anything is sent.
pub fn split_by_bytes<P: EntryPoint>(points: Vec<P>, cap: usize) -> Result<Vec<Vec<P>>, Error> {
    let sizes: Vec<usize> = points
        .iter()
        .map(|p| postcard::experimental::serialized_size(p).unwrap_or(usize::MAX))
        .collect();
    if let Some((p, size)) = points
        .iter()
        .zip(&sizes)
        .find(|(_, s)| **s > MAX_ENTRY_BYTES - ENTRY_FRAMING)
    {
        return Err(Error::TooLarge(format!(
            "point {} encodes to {size} bytes, over the {MAX_ENTRY_BYTES}-byte limit of one replicated log entry; store large blobs elsewhere and keep a reference in the payload",
            p.point_id()
        )));
    }
    if sizes.iter().fold(0usize, |a, s| a.saturating_add(*s)) <= cap {
        return Ok(vec![points]);
    }
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut used = 0usize;
    for (p, size) in points.into_iter().zip(sizes) {
        if !run.is_empty() && used.saturating_add(size) > cap {
            runs.push(std::mem::take(&mut run));
            used = 0;
        }
        used = used.saturating_add(size);
        run.push(p);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::PointId;

    fn point(id: u64, dim: usize) -> PointWrite {
        PointWrite {
            id: PointId::Num(id),
            vector: vec![0.5; dim],
            payload: None,
        }
    }

    fn encoded(run: &[PointWrite]) -> usize {
        run.iter()
            .map(|p| postcard::experimental::serialized_size(p).unwrap())
            .sum()
    }

    #[test]
    fn a_batch_that_fits_is_one_run() {
        let pts: Vec<_> = (0..10).map(|i| point(i, 8)).collect();
        let runs = split_by_bytes(pts.clone(), 1 << 20).unwrap();
        assert_eq!(runs, vec![pts]);
        assert!(split_by_bytes(Vec::<PointWrite>::new(), 10).unwrap().len() <= 1);
    }

    #[test]
    fn a_large_batch_is_cut_into_runs_under_the_cap_in_order() {
        let pts: Vec<_> = (0..100).map(|i| point(i, 64)).collect();
        let one = encoded(&pts[..1]);
        let cap = one * 7 + one / 2;
        let runs = split_by_bytes(pts.clone(), cap).unwrap();
        assert_eq!(runs.len(), 100usize.div_ceil(7));
        for r in &runs {
            assert!(encoded(r) <= cap);
        }
        assert_eq!(runs.concat(), pts, "every point once, in order");
    }

    #[test]
    fn a_point_over_the_cap_goes_alone() {
        let pts = vec![point(1, 4), point(2, 4096), point(3, 4)];
        let runs = split_by_bytes(pts, 1000).unwrap();
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    #[test]
    fn a_point_over_the_entry_cap_refuses_the_whole_batch_by_name() {
        let pts = vec![point(1, 4), point(7, MAX_ENTRY_BYTES / 4 + 1)];
        match split_by_bytes(pts, UPSERT_ENTRY_BYTES) {
            Err(Error::TooLarge(m)) => {
                assert!(
                    m.contains("point 7") && m.contains("limit of one replicated log entry"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
