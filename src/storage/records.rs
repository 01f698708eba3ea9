//! Variable-length records (payloads) stored in a container as two sections.
//!
//! Record `i` of a column named `p` is `p.bytes[p.offsets[i]..p.offsets[i + 1]]`, with
//! `p.offsets` a `u64` section of `n + 1` entries starting at 0. Sealed segments use it for
//! point payloads (JSON bytes per row); reading one record is two loads from the map, with no
//! parsing at open.

use super::{Container, ContainerWriter, StorageError};
use crate::index::Slab;

const OFFSETS_SUFFIX: &str = ".offsets";
const BYTES_SUFFIX: &str = ".bytes";

fn section_names(name: &str) -> (String, String) {
    (
        format!("{name}{OFFSETS_SUFFIX}"),
        format!("{name}{BYTES_SUFFIX}"),
    )
}

/// Writes `records` as the column `name` (at most 24 bytes, so both section names fit).
///
/// The bytes are streamed to the file; only the offsets (8 bytes a record) are held in memory
/// until the end.
pub fn write_records<'a>(
    writer: &mut ContainerWriter,
    name: &str,
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), StorageError> {
    let (offsets_name, bytes_name) = section_names(name);
    let mut offsets = vec![0u64];
    let mut section = writer.begin_section::<u8>(&bytes_name)?;
    let mut end = 0u64;
    for record in records {
        section.write(record)?;
        end += record.len() as u64;
        offsets.push(end);
    }
    section.finish();
    writer.write_section(&offsets_name, &offsets)
}

/// A read-only column of variable-length records, viewed in place in a container.
#[derive(Debug, Clone)]
pub struct Records {
    offsets: Slab<u64>,
    bytes: Slab<u8>,
}

impl Records {
    /// Opens column `name` and checks that its offsets start at 0, never decrease and end at the
    /// byte section's length (one pass over the offsets), so that [`get`](Self::get) is always
    /// in bounds.
    pub fn open(container: &Container, name: &str) -> Result<Self, StorageError> {
        let (offsets_name, bytes_name) = section_names(name);
        let offsets = container.section::<u64>(&offsets_name)?;
        let bytes = container.section::<u8>(&bytes_name)?;
        let valid = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last().copied() == Some(bytes.len() as u64);
        if !valid {
            return Err(StorageError::Corrupted {
                path: container.path().to_path_buf(),
                reason: format!(
                    "record column {name:?} has offsets that do not partition its bytes"
                ),
            });
        }
        Ok(Self { offsets, bytes })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the column holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let start = usize::try_from(*self.offsets.get(i)?).ok()?;
        let end = usize::try_from(*self.offsets.get(i + 1)?).ok()?;
        self.bytes.get(start..end)
    }

    /// Bytes held by the records (not counting offsets).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_including_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.shoal");
        let payloads: Vec<Vec<u8>> = vec![
            br#"{"a":1}"#.to_vec(),
            Vec::new(),
            "ünïcødé".as_bytes().to_vec(),
            vec![0xff; 1000],
        ];
        let mut w = ContainerWriter::create(&path).unwrap();
        write_records(&mut w, "payload", payloads.iter().map(Vec::as_slice)).unwrap();
        write_records(&mut w, "none", std::iter::empty()).unwrap();
        w.finish(b"{}").unwrap();

        let c = Container::open(&path).unwrap();
        c.verify().unwrap();
        let r = Records::open(&c, "payload").unwrap();
        assert_eq!(r.len(), 4);
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(r.get(i).unwrap(), p.as_slice());
        }
        assert_eq!(r.get(4), None);
        assert_eq!(r.byte_len(), payloads.iter().map(Vec::len).sum::<usize>());
        let none = Records::open(&c, "none").unwrap();
        assert!(none.is_empty() && none.get(0).is_none());
        assert!(matches!(
            Records::open(&c, "absent"),
            Err(StorageError::MissingSection { .. })
        ));
    }

    #[test]
    fn inconsistent_offsets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for offsets in [vec![1u64, 3], vec![0, 3, 2, 3], vec![0, 4], vec![]] {
            let path = dir.path().join("bad.shoal");
            let mut w = ContainerWriter::create(&path).unwrap();
            w.write_section("p.bytes", b"abc").unwrap();
            w.write_section("p.offsets", &offsets).unwrap();
            w.finish(b"{}").unwrap();
            let c = Container::open(&path).unwrap();
            assert!(
                matches!(Records::open(&c, "p"), Err(StorageError::Corrupted { .. })),
                "{offsets:?}"
            );
        }
    }
}
