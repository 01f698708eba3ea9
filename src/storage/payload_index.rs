//! The payload-index section of a sealed segment: byte layout, encoder and pure decoder.
//!
//! A sealed segment's payload indexes (see `shard::payload_index`) are stored beside its vectors
//! so that opening a segment maps its postings back instead of reading every payload to rebuild
//! them. This module knows nothing of payloads or filters: it stores, per field, a name, an
//! opaque kind byte (the shard's index type), roaring bitmaps keyed by typed values, and sorted
//! `(value, row)` pairs, and it checks on decode everything a reader relies on, so that no input
//! makes it panic or hand back a row outside the segment. The layout is specified in the
//! [`crate::storage`] module doc ("Payload-index section"); the constants here are its source of
//! truth. Bitmaps use roaring's portable serialization (the format shared with the C, Java and Go
//! implementations), so the bytes do not depend on this crate's version of `roaring`.

use super::format::FormatError;
use roaring::RoaringBitmap;

/// Version of the section layout this build writes and reads.
pub const PAYLOAD_INDEX_VERSION: u32 = 1;

/// Name of the section in a segment file.
pub const PAYLOAD_INDEX_SECTION: &str = "payload_index";

/// A posting key: one value a field index has a bitmap for. Keys of a field are stored in this
/// type's order (tag, then value), strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PostingKey {
    /// Tag 0: a UTF-8 string (keywords, text tokens).
    Str(String),
    /// Tag 1: a 64-bit integer.
    Int(i64),
    /// Tag 2: a boolean.
    Bool(bool),
    /// Tag 3: a UUID as its 128-bit value.
    Uuid(u128),
}

/// One field's index as stored: what `shard::payload_index::FieldIndex` holds, without meaning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredField {
    /// The field's key (a payload path), non-empty UTF-8.
    pub name: String,
    /// The index type, as the shard numbers them.
    pub kind: u8,
    /// Rows holding at least one value the index took.
    pub rows: RoaringBitmap,
    /// Rows holding a non-null value the index did not take.
    pub other: RoaringBitmap,
    /// Equality postings, keys strictly increasing.
    pub postings: Vec<(PostingKey, RoaringBitmap)>,
    /// Integer (and date-time) values with their rows, sorted by `(value, row)`.
    pub ints: Vec<(i64, u32)>,
    /// Float values with their rows, sorted by `(value.total_cmp, row)`, never NaN.
    pub floats: Vec<(f64, u32)>,
}

/// The payload indexes of one segment of `rows` rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredIndex {
    /// Rows of the segment: every row number stored is below it.
    pub rows: u32,
    /// Fields, names strictly increasing.
    pub fields: Vec<StoredField>,
}

/// Encodes `index` in the section layout. Fields and keys are written in the order given; the
/// decoder refuses anything not strictly increasing, so callers sort them (a `BTreeMap` does).
pub fn encode(index: &StoredIndex) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&PAYLOAD_INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&index.rows.to_le_bytes());
    out.extend_from_slice(&(index.fields.len() as u32).to_le_bytes());
    for f in &index.fields {
        put_str(&mut out, &f.name);
        out.push(f.kind);
        put_bitmap(&mut out, &f.rows);
        put_bitmap(&mut out, &f.other);
        out.extend_from_slice(&(f.postings.len() as u32).to_le_bytes());
        for (key, bitmap) in &f.postings {
            match key {
                PostingKey::Str(s) => {
                    out.push(0);
                    put_str(&mut out, s);
                }
                PostingKey::Int(i) => {
                    out.push(1);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                PostingKey::Bool(b) => {
                    out.push(2);
                    out.push(u8::from(*b));
                }
                PostingKey::Uuid(u) => {
                    out.push(3);
                    out.extend_from_slice(&u.to_le_bytes());
                }
            }
            put_bitmap(&mut out, bitmap);
        }
        out.extend_from_slice(&(f.ints.len() as u64).to_le_bytes());
        for (v, r) in &f.ints {
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(f.floats.len() as u64).to_le_bytes());
        for (v, r) in &f.floats {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bitmap(out: &mut Vec<u8>, b: &RoaringBitmap) {
    out.extend_from_slice(&(b.serialized_size() as u32).to_le_bytes());
    // Writing into a Vec cannot fail.
    let _ = b.serialize_into(&mut *out);
}

/// Decodes a section written by [`encode`], checking that the version is known, that every
/// length lies inside the input and nothing follows the last field, that names and string keys
/// are UTF-8, that names and keys strictly increase, that every bitmap is a valid portable
/// roaring bitmap occupying exactly its stated length, that pairs are sorted and floats are not
/// NaN, and that every row number (in bitmaps and pairs) is below `rows`. Pure; it allocates in
/// proportion to the input only.
pub fn decode(bytes: &[u8]) -> Result<StoredIndex, FormatError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32()?;
    if version > PAYLOAD_INDEX_VERSION {
        return Err(FormatError::UpgradeRequired {
            found: version,
            supported: PAYLOAD_INDEX_VERSION,
        });
    }
    if version == 0 {
        return Err(bad("payload index version 0"));
    }
    let rows = r.u32()?;
    let count = r.u32()?;
    let mut fields: Vec<StoredField> = Vec::new();
    for _ in 0..count {
        let f = r.field(rows)?;
        if fields.last().is_some_and(|prev| prev.name >= f.name) {
            return Err(bad("payload index fields out of order or repeated"));
        }
        fields.push(f);
    }
    if r.at != bytes.len() {
        return Err(bad("bytes after the last payload index field"));
    }
    Ok(StoredIndex { rows, fields })
}

fn bad(m: &str) -> FormatError {
    FormatError::Corrupted(m.to_owned())
}

/// A cursor over the section; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(FormatError::Truncated {
                expected: (self.at as u64).saturating_add(n as u64),
                actual: self.bytes.len() as u64,
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<String, FormatError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| bad("payload index string is not UTF-8"))
    }

    fn bitmap(&mut self, rows: u32) -> Result<RoaringBitmap, FormatError> {
        let n = self.u32()? as usize;
        let mut b = self.take(n)?;
        let bitmap = RoaringBitmap::deserialize_from(&mut b)
            .map_err(|e| FormatError::Corrupted(format!("payload index bitmap: {e}")))?;
        if !b.is_empty() {
            return Err(bad("payload index bitmap shorter than its length"));
        }
        if bitmap.max().is_some_and(|m| m >= rows) {
            return Err(bad("payload index bitmap names a row beyond the segment"));
        }
        Ok(bitmap)
    }

    /// A count of `size`-byte records, checked against the bytes left before anything is
    /// allocated for them.
    fn count(&mut self, size: usize) -> Result<usize, FormatError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left / size as u64 {
            return Err(FormatError::Truncated {
                expected: (self.at as u64).saturating_add(n.saturating_mul(size as u64)),
                actual: self.bytes.len() as u64,
            });
        }
        Ok(n as usize)
    }

    fn field(&mut self, rows: u32) -> Result<StoredField, FormatError> {
        let name = self.str()?;
        if name.is_empty() {
            return Err(bad("payload index field without a name"));
        }
        let kind = self.u8()?;
        let row_set = self.bitmap(rows)?;
        let other = self.bitmap(rows)?;
        let keys = self.u32()?;
        let mut postings: Vec<(PostingKey, RoaringBitmap)> = Vec::new();
        for _ in 0..keys {
            let key = match self.u8()? {
                0 => PostingKey::Str(self.str()?),
                1 => PostingKey::Int(i64::from_le_bytes(self.array()?)),
                2 => match self.u8()? {
                    0 => PostingKey::Bool(false),
                    1 => PostingKey::Bool(true),
                    _ => return Err(bad("payload index boolean key not 0 or 1")),
                },
                3 => PostingKey::Uuid(u128::from_le_bytes(self.array()?)),
                t => return Err(FormatError::Corrupted(format!("posting key tag {t}"))),
            };
            if postings.last().is_some_and(|(prev, _)| *prev >= key) {
                return Err(bad("payload index keys out of order or repeated"));
            }
            let bitmap = self.bitmap(rows)?;
            postings.push((key, bitmap));
        }
        let n = self.count(12)?;
        let mut ints = Vec::with_capacity(n);
        for _ in 0..n {
            let v = i64::from_le_bytes(self.array()?);
            let row = self.u32()?;
            ints.push((v, row));
        }
        let n = self.count(12)?;
        let mut floats = Vec::with_capacity(n);
        for _ in 0..n {
            let v = f64::from_bits(self.u64()?);
            let row = self.u32()?;
            if v.is_nan() {
                return Err(bad("payload index float value is NaN"));
            }
            floats.push((v, row));
        }
        let in_range = |row: &u32| *row < rows;
        if !ints
            .iter()
            .map(|p| &p.1)
            .chain(floats.iter().map(|p| &p.1))
            .all(in_range)
        {
            return Err(bad("payload index value names a row beyond the segment"));
        }
        if !ints.is_sorted() {
            return Err(bad("payload index integer values out of order"));
        }
        if !floats.is_sorted_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_le()) {
            return Err(bad("payload index float values out of order"));
        }
        Ok(StoredField {
            name,
            kind,
            rows: row_set,
            other,
            postings,
            ints,
            floats,
        })
    }
}

/// Whether every row number in `index` is below `index.rows`: what a decoded index always
/// satisfies (the fuzz target asserts it).
pub fn check_rows(index: &StoredIndex) -> bool {
    let ok = |b: &RoaringBitmap| b.max().is_none_or(|m| m < index.rows);
    index.fields.iter().all(|f| {
        ok(&f.rows)
            && ok(&f.other)
            && f.postings.iter().all(|(_, b)| ok(b))
            && f.ints.iter().all(|p| p.1 < index.rows)
            && f.floats.iter().all(|p| p.1 < index.rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn bitmap(rng: &mut ChaCha8Rng, rows: u32) -> RoaringBitmap {
        (0..rng.random_range(0..40))
            .map(|_| rng.random_range(0..rows))
            .collect()
    }

    fn sample(seed: u64) -> StoredIndex {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rows = 5000;
        let mut fields = Vec::new();
        for (name, kind) in [("a", 0u8), ("b.c", 1), ("d[].e", 2), ("z", 6)] {
            let mut postings: Vec<(PostingKey, RoaringBitmap)> = vec![
                (PostingKey::Str("fox".into()), bitmap(&mut rng, rows)),
                (PostingKey::Str("ä".into()), bitmap(&mut rng, rows)),
                (PostingKey::Int(-4), bitmap(&mut rng, rows)),
                (PostingKey::Bool(true), bitmap(&mut rng, rows)),
                (PostingKey::Uuid(u128::MAX - 1), bitmap(&mut rng, rows)),
            ];
            postings.sort_by(|a, b| a.0.cmp(&b.0));
            // A dense bitmap (bitmap and run containers) beside the sparse ones.
            postings.push((PostingKey::Uuid(u128::MAX), (0..4000).collect()));
            let mut ints: Vec<(i64, u32)> = (0..300)
                .map(|_| (rng.random_range(-50..50), rng.random_range(0..rows)))
                .collect();
            ints.sort_unstable();
            let mut floats: Vec<(f64, u32)> = (0..300)
                .map(|_| (rng.random_range(-1.0..1.0), rng.random_range(0..rows)))
                .chain([(-0.0, 9), (0.0, 3), (f64::INFINITY, 0)])
                .collect();
            floats.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            fields.push(StoredField {
                name: name.into(),
                kind,
                rows: bitmap(&mut rng, rows),
                other: bitmap(&mut rng, rows),
                postings,
                ints,
                floats,
            });
        }
        StoredIndex { rows, fields }
    }

    #[test]
    fn round_trips() {
        for seed in 0..4 {
            let index = sample(seed);
            assert_eq!(decode(&encode(&index)).unwrap(), index);
        }
        let empty = StoredIndex::default();
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    /// Every prefix is truncated, a newer version asks for an upgrade, and disorder or a row
    /// beyond the segment is refused.
    #[test]
    fn damage_is_a_typed_error() {
        let bytes = encode(&sample(1));
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(FormatError::Corrupted(_))));
        let mut newer = bytes.clone();
        newer[..4].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            decode(&newer),
            Err(FormatError::UpgradeRequired { found: 2, .. })
        ));
        let mut fewer_rows = sample(1);
        fewer_rows.rows = 100;
        assert!(decode(&encode(&fewer_rows)).is_err());
        let mut unsorted = sample(1);
        unsorted.fields[0].ints.swap(0, 299);
        assert!(decode(&encode(&unsorted)).is_err());
        let mut unsorted = sample(1);
        unsorted.fields.swap(0, 1);
        assert!(decode(&encode(&unsorted)).is_err());
        let mut nan = sample(1);
        nan.fields[2].floats[0].0 = f64::NAN;
        assert!(decode(&encode(&nan)).is_err());
    }

    /// The in-suite twin of the `payload_index_decode` fuzz target: random byte damage never
    /// panics, and whatever decodes names only rows of the segment.
    #[test]
    fn random_damage_never_panics() {
        let bytes = encode(&sample(2));
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            if rng.random_range(0..4) == 0 {
                b.truncate(rng.random_range(0..b.len()));
            }
            if let Ok(index) = decode(&b) {
                assert!(check_rows(&index));
            }
        }
    }

    #[test]
    fn check_rows_sees_an_out_of_range_row() {
        let mut index = sample(3);
        assert!(check_rows(&index));
        index.fields[1].other.insert(index.rows);
        assert!(!check_rows(&index));
    }
}
