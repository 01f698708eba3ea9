//! The cluster secret of a loopback cluster that was given none.
//!
//! There is no public default: a node whose internal port and peers are all on loopback, and
//! that has no `cluster_secret`, uses a key generated once per operating-system user and kept
//! in a file only that user can read (`$XDG_RUNTIME_DIR/shoal/cluster.key`, else
//! `$HOME/.shoal/cluster.key`; mode 0600 in a 0700 directory). Every node that user starts on
//! this host (a static `--peers` set, a `--join`, a test cluster) reads the same key and so
//! agrees on it without configuration, while other users of the host, who can reach loopback
//! ports too, cannot authenticate. The first node to start creates the key atomically (written
//! to a temporary file, then hard-linked into place, so concurrent first starts all end up
//! reading one key).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes of randomness in a generated key (stored as hex).
pub const KEY_BYTES: usize = 32;
const FILE_NAME: &str = "cluster.key";

/// Where this user's loopback key lives, from the environment.
pub fn default_key_path() -> io::Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty() && Path::new(d).is_dir())
        .map(|d| PathBuf::from(d).join("shoal"))
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join(".shoal"))
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "neither XDG_RUNTIME_DIR nor HOME is set: give cluster_secret",
            )
        })?;
    Ok(base.join(FILE_NAME))
}

/// This user's loopback cluster key (created on first use).
pub fn loopback_secret() -> io::Result<Vec<u8>> {
    load_or_create(&default_key_path()?)
}

/// Reads the key at `path`, creating it with fresh random bytes if it does not exist.
pub fn load_or_create(path: &Path) -> io::Result<Vec<u8>> {
    match read_key(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let key: [u8; KEY_BYTES] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let temp = dir.join(format!(
        ".{FILE_NAME}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    {
        let mut f = private_file(&temp)?;
        f.write_all(hex.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    // Link, not rename: it fails if another node created the key meanwhile, and then that key
    // is the one everybody reads.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            crate::raft::state_machine::fsync_dir(dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    read_key(path)
}

fn read_key(path: &Path) -> io::Result<Vec<u8>> {
    let text = fs::read_to_string(path)?;
    let key = text.trim();
    if key.len() < 2 * 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: too short to be a cluster key", path.display()),
        ));
    }
    Ok(key.as_bytes().to_vec())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_creates_a_private_key_that_every_later_use_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(FILE_NAME);
        let a = load_or_create(&path).unwrap();
        assert_eq!(a.len(), 2 * KEY_BYTES);
        assert_eq!(load_or_create(&path).unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        // Another user's (another directory's) key differs.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(&other.path().join(FILE_NAME)).unwrap(), a);
    }

    #[test]
    fn concurrent_first_starts_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }
}
