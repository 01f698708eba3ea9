//! The rows of a chosen part of an index (a payload value's posting), ascending: what the exact
//! scan of a selective filter's matches reads when a payload index names them.
//!
//! A segment's payload postings hold segment rows; the index numbers its rows list after list.
//! The exact scan of a posting's matches therefore first translates each match to its index row
//! (a read at a random place of a table of every row) and then reads the rows' codes or vectors
//! in posting order, scattered. [`SubsetMembers`] is that translation made once, kept in the
//! index's own order: 4 bytes a row. On 1M × 128 at 0.1% (1,000 matches, the exact plan) the
//! translation and the pass over the posting were about a fifth of a query in perf.
//!
//! With 8-bit codes in the index, the members can also keep a copy of each row's codes (and
//! L2 norm) in their order ([`Sq8::copy_row`], as [`super::SubsetRows`] keeps per list): the
//! exact scan then reads one run instead of a row of codes at a random place per member (two
//! or three cache lines and, a thousand rows apart in a million, a page each), and re-ranks the
//! best exactly as [`Sq8::exact_top_k`] does: the same answer.

use super::IvfPqIndex;
use crate::index::sq8::{RowCopies, Sq8};
use crate::index::{Neighbor, RowSet};
use std::borrow::Cow;

/// The index rows whose id is in a chosen set, ascending (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetMembers {
    rows: Vec<u32>,
    /// Rows of the index it was made from: another index's members answer nothing.
    of: usize,
    /// A copy of each row's 8-bit codes ([`Sq8::copy_row`]), row after row in `rows`' order;
    /// empty when not asked for or when the index has no 8-bit codes.
    copies: RowCopies,
}

impl SubsetMembers {
    /// Rows held.
    pub fn entries(&self) -> usize {
        self.rows.len()
    }

    /// Bytes held, copies included.
    pub fn memory_bytes(&self) -> usize {
        self.rows.len() * 4 + self.copies.memory_bytes()
    }

    /// Bytes held by the copies of the rows' 8-bit codes (included in
    /// [`SubsetMembers::memory_bytes`]).
    pub fn copy_memory_bytes(&self) -> usize {
        self.copies.memory_bytes()
    }

    /// About the bytes of `chosen` rows' members, before they are made, without their copies
    /// ([`SubsetMembers::estimated_copy_bytes`]).
    pub fn estimated_bytes(chosen: usize) -> usize {
        chosen * 4
    }

    /// About the bytes of the copies of `chosen` of `index`'s rows' 8-bit codes (0 without
    /// 8-bit codes).
    pub fn estimated_copy_bytes(index: &IvfPqIndex, chosen: usize) -> usize {
        chosen * index.sq8.as_ref().map_or(0, Sq8::copy_bytes)
    }

    /// The rows, ascending.
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }
}

impl IvfPqIndex {
    /// The rows whose *id* is in `ids`, ascending (see the module doc). Spilled copies are not
    /// rows of their own: each row is held once. With `with_copies` and 8-bit codes in the
    /// index, each row's codes are copied beside ([`Sq8::copy_row`]).
    pub fn subset_members(&self, ids: &RowSet, with_copies: bool) -> SubsetMembers {
        let chosen = self.id_in(ids);
        let rows: Vec<u32> = (0..self.len())
            .filter(|&r| chosen(r))
            .map(|r| r as u32)
            .collect();
        let sq8 = self.sq8.as_ref().filter(|_| with_copies);
        let copies = RowCopies::of(sq8, rows.iter().copied());
        SubsetMembers {
            rows,
            of: self.len(),
            copies,
        }
    }

    /// The exact `k` nearest of `members`' rows whose ids are in `ids` (all of them without
    /// `ids`), as `(id, distance)` sorted by distance: what [`exact_among`](Self::exact_among)
    /// answers for those rows, without translating a posting's rows first, and from the
    /// members' copies of their 8-bit codes when they keep them.
    pub fn exact_among_members(
        &self,
        query: &[f32],
        k: usize,
        members: &SubsetMembers,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        if members.of != self.len() {
            return Vec::new();
        }
        if let Some(sq8) = self.sq8.as_ref().filter(|_| !members.copies.is_empty()) {
            return self.exact_among_member_copies(query, k, members, sq8, ids);
        }
        match self.admitted_members(members, ids) {
            Some(rows) => self.exact_among(query, k, &rows),
            None => Vec::new(),
        }
    }

    /// [`exact_among_members`](Self::exact_among_members) over the members' copies of their
    /// rows' 8-bit codes: every admitted row scored in one pass over the copies (a run the
    /// hardware prefetcher follows), then the best re-scored exactly as
    /// [`Sq8::exact_top_k`] does: the same distances from the same codes, so the same answer.
    fn exact_among_member_copies(
        &self,
        query: &[f32],
        k: usize,
        members: &SubsetMembers,
        sq8: &Sq8,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        let Some(q) = self.prepared(query, k) else {
            return Vec::new();
        };
        let sq8_query = sq8.query(&q);
        let admitted = ids.map(|ids| self.id_in(ids));
        let approx: Vec<(f32, u32)> = members
            .rows
            .iter()
            .zip(members.copies.records())
            .filter(|&(&row, _)| admitted.as_ref().is_none_or(|a| a(row as usize)))
            .map(|(&row, copy)| (sq8_query.approx_of_copy(copy), row))
            .collect();
        self.refined(&q, k, sq8, &sq8_query, approx)
    }

    /// The exact `k` nearest of `members`' rows whose ids are in `ids` (all of them without
    /// `ids`) and that lie in the `nprobe` lists nearest the query (by
    /// `probe_approx`), their own or, spilled, their second: what
    /// [`exact_among_probed`](Self::exact_among_probed) answers for those rows, without
    /// translating a posting's rows first. The members ascend, so their lists are looked up in
    /// the order they are stored rather than at random.
    pub fn exact_among_probed_members(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
        members: &SubsetMembers,
        ids: Option<&RowSet>,
    ) -> Vec<Neighbor> {
        match self.admitted_members(members, ids) {
            Some(rows) => self.exact_among_probed(query, k, nprobe, &rows),
            None => Vec::new(),
        }
    }

    /// `members`' rows whose ids are in `ids` (all of them without `ids`); `None` when the
    /// members were made from another index.
    fn admitted_members<'m>(
        &self,
        members: &'m SubsetMembers,
        ids: Option<&RowSet>,
    ) -> Option<Cow<'m, [u32]>> {
        if members.of != self.len() {
            return None;
        }
        Some(match ids {
            None => Cow::Borrowed(&members.rows),
            Some(ids) => {
                let admitted = self.id_in(ids);
                Cow::Owned(
                    members
                        .rows
                        .iter()
                        .copied()
                        .filter(|&r| admitted(r as usize))
                        .collect(),
                )
            }
        })
    }
}
