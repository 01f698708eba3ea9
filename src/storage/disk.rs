//! What the file system holding a directory has room for: checked before shoal writes something
//! whose size it learns only as it arrives (a snapshot downloaded for a recovery), so that a
//! download that could never fit is refused at once, and one that turns out larger than the
//! free space stops there instead of filling the disk under the Raft logs.

use std::io;
use std::path::Path;

/// Bytes a download leaves free on the file system it writes to: room for the logs and
/// segment files the node keeps writing while the download runs.
pub const FREE_SPACE_RESERVE: u64 = 64 << 20;

/// Bytes an unprivileged process may still write on the file system holding `dir`
/// (`statvfs`'s available blocks times its fragment size).
pub fn available_bytes(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes a download into `dir` may take: what is available less [`FREE_SPACE_RESERVE`].
pub fn download_budget(dir: &Path) -> io::Result<u64> {
    Ok(available_bytes(dir)?.saturating_sub(FREE_SPACE_RESERVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figure is the file system's own: a temporary directory has some room, and the
    /// budget is that room less the reserve.
    #[test]
    fn available_bytes_follow_statvfs() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let budget = download_budget(dir.path()).unwrap();
        assert!(budget <= free.saturating_sub(FREE_SPACE_RESERVE) + (1 << 20));
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
