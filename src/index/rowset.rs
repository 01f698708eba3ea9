//! [`RowSet`]: a fixed-capacity bitset over segment rows.
//!
//! Filters (rows whose payload matches) and tombstones (deleted rows) are both "a set of rows",
//! tested once per candidate inside the scan loops. A plain `Vec<u64>` of bits makes `contains` a
//! shift and a mask, costs one bit per row, and is trivially persisted (see [`RowSet::words`]).

/// A set of row numbers in `0..len`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RowSet {
    words: Vec<u64>,
    len: usize,
}

impl std::fmt::Debug for RowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowSet")
            .field("len", &self.len)
            .field("count", &self.count())
            .finish()
    }
}

impl RowSet {
    /// An empty set over rows `0..len`.
    pub fn new(len: usize) -> Self {
        RowSet {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// A set holding every row in `0..len`.
    pub fn full(len: usize) -> Self {
        let mut s = RowSet {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        s.clear_tail();
        s
    }

    /// A set over `0..len` holding `rows`; rows at or past `len` are ignored.
    pub fn from_rows(len: usize, rows: impl IntoIterator<Item = usize>) -> Self {
        let mut s = RowSet::new(len);
        for r in rows {
            if r < len {
                s.insert(r);
            }
        }
        s
    }

    /// Rebuilds a set from its [`words`](RowSet::words) (e.g. read back from disk). Returns
    /// `None` if the word count does not match `len` or bits past `len` are set.
    pub fn from_words(len: usize, words: Vec<u64>) -> Option<Self> {
        if words.len() != len.div_ceil(64) {
            return None;
        }
        let s = RowSet { words, len };
        let mut check = s.clone();
        check.clear_tail();
        (check == s).then_some(s)
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << rem) - 1;
        }
    }

    /// Adds `row`.
    ///
    /// # Panics
    /// If `row >= len()`: rows are internal positions, so this is a caller bug.
    #[inline]
    pub fn insert(&mut self, row: usize) {
        assert!(
            row < self.len,
            "row {row} outside RowSet of {} rows",
            self.len
        );
        self.words[row / 64] |= 1u64 << (row % 64);
    }

    /// Removes `row` (no effect if absent or past the end).
    #[inline]
    pub fn remove(&mut self, row: usize) {
        if row < self.len {
            self.words[row / 64] &= !(1u64 << (row % 64));
        }
    }

    /// Whether `row` is in the set; rows past the end are not (so a filter built before rows were
    /// appended to a mutable segment simply excludes the new rows).
    #[inline(always)]
    pub fn contains(&self, row: usize) -> bool {
        match self.words.get(row / 64) {
            Some(w) => (w >> (row % 64)) & 1 == 1,
            None => false,
        }
    }

    /// The capacity: rows `0..len()` can be members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the capacity is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many rows are in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Grows (or shrinks) the capacity to `len`; new rows are absent.
    pub fn resize(&mut self, len: usize) {
        self.words.resize(len.div_ceil(64), 0);
        self.len = len;
        self.clear_tail();
    }

    /// The raw bits, row `r` at bit `r % 64` of word `r / 64`; bits past `len` are zero.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Keeps only rows also in `other` (rows past `other.len()` are dropped).
    pub fn intersect_with(&mut self, other: &RowSet) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// Adds every row of `other` that fits in this set's capacity.
    pub fn union_with(&mut self, other: &RowSet) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
        self.clear_tail();
    }

    /// Removes every row that is in `other` (e.g. filter minus tombstones).
    pub fn difference_with(&mut self, other: &RowSet) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= !o;
        }
    }

    /// The rows in the set, ascending.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            words: &self.words,
            index: 0,
            current: self.words.first().copied().unwrap_or(0),
        }
    }
}

/// Iterator over the rows of a [`RowSet`], ascending.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    words: &'a [u64],
    index: usize,
    current: u64,
}

impl Iterator for Iter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.current == 0 {
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
        let bit = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some(self.index * 64 + bit)
    }
}

impl<'a> IntoIterator for &'a RowSet {
    type Item = usize;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Collects rows into a set whose capacity is one past the largest row.
impl FromIterator<usize> for RowSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let rows: Vec<usize> = iter.into_iter().collect();
        let len = rows.iter().max().map_or(0, |&m| m + 1);
        RowSet::from_rows(len, rows)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn behaves_like_a_btreeset() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [0usize, 1, 63, 64, 65, 200, 1000] {
            let mut s = RowSet::new(len);
            let mut model = BTreeSet::new();
            for _ in 0..2 * len {
                let r = rng.random_range(0..len.max(1));
                if len == 0 {
                    break;
                }
                if rng.random::<bool>() {
                    s.insert(r);
                    model.insert(r);
                } else {
                    s.remove(r);
                    model.remove(&r);
                }
            }
            assert_eq!(s.count(), model.len());
            assert_eq!(
                s.iter().collect::<Vec<_>>(),
                model.iter().copied().collect::<Vec<_>>()
            );
            for r in 0..len + 70 {
                assert_eq!(s.contains(r), model.contains(&r), "len {len} row {r}");
            }
            assert_eq!(RowSet::from_words(len, s.words().to_vec()), Some(s.clone()));
        }
    }

    #[test]
    fn full_has_exactly_len_rows() {
        for len in [0usize, 1, 63, 64, 65, 130] {
            let s = RowSet::full(len);
            assert_eq!(s.count(), len);
            assert_eq!(s.len(), len);
            assert!(!s.contains(len));
            assert_eq!(s.iter().collect::<Vec<_>>(), (0..len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn from_iter_and_set_operations() {
        let a: RowSet = [3usize, 70, 5].into_iter().collect();
        assert_eq!(a.len(), 71);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 5, 70]);
        let b = RowSet::from_rows(100, [5usize, 70, 99, 1000]);
        assert_eq!(b.count(), 3);
        let mut i = a.clone();
        i.intersect_with(&b);
        assert_eq!(i.iter().collect::<Vec<_>>(), vec![5, 70]);
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![3, 5, 70]);
        let mut d = b.clone();
        d.difference_with(&a);
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![99]);
        let mut g = a.clone();
        g.resize(200);
        g.insert(150);
        assert_eq!(g.iter().collect::<Vec<_>>(), vec![3, 5, 70, 150]);
        g.resize(10);
        assert_eq!(g.iter().collect::<Vec<_>>(), vec![3, 5]);
    }

    #[test]
    fn from_words_refuses_bad_input() {
        assert!(RowSet::from_words(10, vec![]).is_none());
        assert!(RowSet::from_words(10, vec![1 << 12]).is_none());
        assert!(RowSet::from_words(10, vec![1 << 9]).is_some());
    }

    #[test]
    #[should_panic(expected = "outside RowSet")]
    fn insert_out_of_range_panics() {
        RowSet::new(5).insert(5);
    }
}
