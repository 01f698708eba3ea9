//! Tombstone files: which rows of a sealed segment are deleted, as of an operation stamp.
//!
//! As in tantivy, a segment file is never rewritten to delete a point: deletes go into a separate
//! `<segment-stem>.<opstamp>.del` file next to it, one per commit that changed them, each a
//! complete [`RowSet`] (not a delta), written atomically as a [`Container`] (so it has the magic,
//! version and checksums of every shoal file). The newest opstamp wins; older ones are garbage
//! once the newest is durable ([`remove_stale_tombstones`]). Compaction drops them with the
//! segment.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Container, ContainerWriter, StorageError};
use crate::index::RowSet;

/// Section holding the set's words (row `r` at bit `r % 64` of word `r / 64`).
const SECTION: &str = "deleted_rows";
/// `kind` in the metadata, so that a segment is never read as tombstones or the reverse.
const KIND: &str = "tombstones";
const EXTENSION: &str = "del";

#[derive(Serialize, Deserialize)]
struct Meta {
    kind: String,
    /// Capacity of the set: the segment's row count.
    rows: u64,
    opstamp: u64,
}

/// The tombstone file of `segment` at `opstamp`: `<dir>/<segment stem>.<opstamp>.del`.
pub fn tombstone_path(segment: &Path, opstamp: u64) -> Result<PathBuf, StorageError> {
    let stem = segment
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| StorageError::InvalidPath {
            path: segment.to_path_buf(),
        })?;
    Ok(segment.with_file_name(format!("{stem}.{opstamp}.{EXTENSION}")))
}

/// Atomically writes the deleted rows of `segment` as of `opstamp`; returns the file's path.
pub fn write_tombstones(
    segment: &Path,
    opstamp: u64,
    deleted: &RowSet,
) -> Result<PathBuf, StorageError> {
    let path = tombstone_path(segment, opstamp)?;
    let meta = Meta {
        kind: KIND.into(),
        rows: deleted.len() as u64,
        opstamp,
    };
    let meta = serde_json::to_vec(&meta).map_err(|e| StorageError::InvalidSection {
        path: path.clone(),
        reason: format!("metadata: {e}"),
    })?;
    let mut writer = ContainerWriter::create(&path)?;
    writer.write_section(SECTION, deleted.words())?;
    writer.finish(&meta)?;
    Ok(path)
}

/// Reads a tombstone file, verifying every checksum (the file is one bit per row, so a full check
/// costs little). Returns the set and its opstamp.
pub fn read_tombstones(path: &Path) -> Result<(RowSet, u64), StorageError> {
    let container = Container::open(path)?;
    container.verify()?;
    let corrupted = |reason: String| StorageError::Corrupted {
        path: path.to_path_buf(),
        reason,
    };
    let meta: Meta = container.metadata_json()?;
    if meta.kind != KIND {
        return Err(corrupted(format!("a {:?} file, not tombstones", meta.kind)));
    }
    let rows = usize::try_from(meta.rows)
        .map_err(|_| corrupted(format!("{} rows do not fit in memory", meta.rows)))?;
    let words = container.section::<u64>(SECTION)?.to_vec();
    let set = RowSet::from_words(rows, words).ok_or_else(|| {
        corrupted(format!(
            "deleted-row bits do not describe a set of {rows} rows"
        ))
    })?;
    Ok((set, meta.opstamp))
}

/// The tombstone files of `segment` present on disk, sorted by opstamp.
pub fn list_tombstones(segment: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let stem = segment
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| StorageError::InvalidPath {
            path: segment.to_path_buf(),
        })?;
    let dir = match segment.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let opstamp = name
            .strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(EXTENSION))
            .and_then(|rest| rest.strip_suffix('.'))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(opstamp) = opstamp {
            found.push((opstamp, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads the newest tombstone file of `segment`, if any.
pub fn latest_tombstones(segment: &Path) -> Result<Option<(RowSet, u64)>, StorageError> {
    match list_tombstones(segment)?.pop() {
        Some((_, path)) => read_tombstones(&path).map(Some),
        None => Ok(None),
    }
}

/// Deletes the tombstone files of `segment` older than `keep_opstamp` (call once the file at
/// `keep_opstamp` is committed); returns what was removed.
pub fn remove_stale_tombstones(
    segment: &Path,
    keep_opstamp: u64,
) -> Result<Vec<PathBuf>, StorageError> {
    let mut removed = Vec::new();
    for (opstamp, path) in list_tombstones(segment)? {
        if opstamp < keep_opstamp {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            removed.push(path);
        }
    }
    if let Some(dir) = removed.first().and_then(|p| p.parent()) {
        super::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_round_trip_and_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("seg-7.ivfpq");
        assert!(latest_tombstones(&segment).unwrap().is_none());

        let first = RowSet::from_rows(130, [0, 64, 129]);
        let path = write_tombstones(&segment, 5, &first).unwrap();
        assert_eq!(path, dir.path().join("seg-7.5.del"));
        let mut second = first.clone();
        second.insert(77);
        write_tombstones(&segment, 12, &second).unwrap();
        // Another segment's deletes and unrelated files are not picked up.
        write_tombstones(&dir.path().join("seg-70.ivfpq"), 99, &RowSet::new(3)).unwrap();
        fs::write(dir.path().join("seg-7.x.del"), b"junk").unwrap();

        let (set, opstamp) = latest_tombstones(&segment).unwrap().unwrap();
        assert_eq!((set, opstamp), (second.clone(), 12));
        assert_eq!(read_tombstones(&path).unwrap(), (first, 5));

        let removed = remove_stale_tombstones(&segment, 12).unwrap();
        assert_eq!(removed, vec![path]);
        assert_eq!(list_tombstones(&segment).unwrap().len(), 1);
        assert_eq!(latest_tombstones(&segment).unwrap().unwrap().0, second);
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("seg-1.ivfpq");
        let path = write_tombstones(&segment, 1, &RowSet::from_rows(100, [3, 50])).unwrap();
        let good = fs::read(&path).unwrap();

        // A flipped bit among the deleted rows: caught by the section checksum.
        let mut bytes = good.clone();
        bytes[64] ^= 0x08;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_tombstones(&path),
            Err(StorageError::ChecksumMismatch { .. })
        ));

        // A container of another kind is not tombstones.
        let other = dir.path().join("seg-1.2.del");
        let mut w = ContainerWriter::create(&other).unwrap();
        w.write_section(SECTION, &[0u64; 2]).unwrap();
        w.finish(br#"{"kind":"ivfpq-segment","rows":100,"opstamp":2}"#)
            .unwrap();
        assert!(matches!(
            read_tombstones(&other),
            Err(StorageError::Corrupted { .. })
        ));

        // Bits past the row count mean the file does not match its metadata.
        let mut w = ContainerWriter::create(&other).unwrap();
        w.write_section(SECTION, &[0u64, 1 << 40]).unwrap();
        w.finish(br#"{"kind":"tombstones","rows":100,"opstamp":2}"#)
            .unwrap();
        assert!(matches!(
            read_tombstones(&other),
            Err(StorageError::Corrupted { .. })
        ));
    }
}
