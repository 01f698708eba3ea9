//! Crash-safe file replacement: write a temporary file in the target's directory, fsync it,
//! rename it over the target, fsync the directory.
//!
//! After a crash at any point the target is either its complete old version (or absent) or its
//! complete new version, never a mix: the new bytes are durable before the rename makes them
//! visible, and the rename itself is atomic on POSIX file systems. The final directory fsync makes
//! the rename durable. A crash before the rename leaves a temporary file behind, recognisable by
//! [`TEMP_SUFFIX`]; [`remove_temp_files`] deletes those when a directory is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StorageError;

/// Suffix of every temporary file this module creates. Nothing else in a data directory may end
/// with it, because [`remove_temp_files`] deletes whatever does.
pub const TEMP_SUFFIX: &str = ".shoal-tmp";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written that replaces `target` only when [`commit`](Self::commit) succeeds.
///
/// Dropping it without committing removes the temporary file and leaves the target untouched, so
/// an error half-way through a write changes nothing.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates a fresh temporary file next to `target`.
    ///
    /// The name is unique per process and call (`.<name>.<pid>.<n>.shoal-tmp`), so concurrent
    /// writers of different targets never collide.
    pub fn create(target: impl AsRef<Path>) -> Result<Self, StorageError> {
        let target = target.as_ref().to_path_buf();
        let file_name = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            StorageError::InvalidPath {
                path: target.clone(),
            }
        })?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = parent_dir(&target).join(format!(
            ".{file_name}.{}.{n}{TEMP_SUFFIX}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| StorageError::io(&temp, e))?;
        Ok(Self {
            target,
            temp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file's path, for error messages.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already committed"))
    }

    /// Flushes, fsyncs the temporary file, renames it over the target and fsyncs the directory.
    ///
    /// When this returns `Ok`, the new content is durable under the target's name.
    pub fn commit(mut self) -> Result<(), StorageError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StorageError::io(&self.temp, io::Error::other("no writer")))?;
        let file = writer
            .into_inner()
            .map_err(|e| StorageError::io(&self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io(&self.temp, e))?;
        drop(file);
        fs::rename(&self.temp, &self.target).map_err(|e| StorageError::io(&self.target, e))?;
        // The temporary name no longer exists; make Drop a no-op.
        self.temp = PathBuf::new();
        sync_dir(parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer()?.seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            self.writer = None;
            // Best effort: a leftover is removed by `remove_temp_files` on the next open.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Atomically replaces `target` with `bytes` (for small files: tombstones, manifests).
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<(), StorageError> {
    let mut file = AtomicFile::create(target)?;
    file.write_all(bytes)
        .map_err(|e| StorageError::io(file.temp_path(), e))?;
    file.commit()
}

/// Fsyncs a directory so that entries created, renamed or removed in it survive a crash.
///
/// On non-Unix platforms directories cannot be opened for syncing; there this is a no-op and
/// durability of renames rests on the file system.
pub fn sync_dir(dir: impl AsRef<Path>) -> Result<(), StorageError> {
    let dir = dir.as_ref();
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether `path` names a temporary file of this module.
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
}

/// Removes the temporary files an interrupted write left in `dir` and returns their paths.
///
/// Call it only while no writer is active in `dir` (when a shard opens its directory), since it
/// cannot tell a leftover from a write in progress. Syncs the directory if anything was removed.
pub fn remove_temp_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, StorageError> {
    let dir = dir.as_ref();
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        if is_temp_file(&path) && path.is_file() {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        write_atomic(&target, b"first").unwrap();
        write_atomic(&target, b"second, longer").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second, longer");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_writer_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        write_atomic(&target, b"old").unwrap();
        {
            let mut file = AtomicFile::create(&target).unwrap();
            file.write_all(b"new but never committed").unwrap();
            file.flush().unwrap();
            assert!(file.temp_path().exists());
        }
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftover_temp_files_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("seg.bin");
        write_atomic(&target, b"intact").unwrap();
        // An interrupted write: the temporary file exists, the rename never happened.
        let file = AtomicFile::create(&target).unwrap();
        let leftover = file.temp_path().to_path_buf();
        std::mem::forget(file);
        fs::write(&leftover, b"partial").unwrap();
        fs::write(dir.path().join("other.txt"), b"keep").unwrap();

        let removed = remove_temp_files(dir.path()).unwrap();
        assert_eq!(removed, vec![leftover.clone()]);
        assert!(!leftover.exists());
        assert_eq!(fs::read(&target).unwrap(), b"intact");
        assert!(dir.path().join("other.txt").exists());
        assert!(remove_temp_files(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn bare_file_names_use_the_current_directory() {
        assert_eq!(parent_dir(Path::new("x.bin")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/x.bin")), Path::new("/a"));
    }
}
