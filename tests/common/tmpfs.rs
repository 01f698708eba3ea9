//! A small file system of its own for a test that fills its disk: a tmpfs mounted on a fresh
//! directory, unmounted however the test ends. Mounting needs root (or `CAP_SYS_ADMIN`); where
//! it fails, [`Tmpfs::mount`] says why and the caller prints a SKIPPED line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (and its mount point removed) on drop.
pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size_mib` MiB owned by the current user.
    pub fn mount(size_mib: u64) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(&format!("size={size_mib}m"))
    }

    /// A tmpfs of `size_mib` MiB whose root belongs to `uid`:`uid` with mode 0700 (a
    /// container's user, when the directory is bind-mounted into one).
    pub fn mount_for(size_mib: u64, uid: u32) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(&format!("size={size_mib}m,uid={uid},gid={uid},mode=0700"))
    }

    fn mount_with(options: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open: detach now, the kernel frees it when released.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Fills the file system holding `path` with one file, down to the last page; returns the
/// bytes written.
pub fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create ballast");
    let mut written = 0u64;
    for chunk in [1 << 20, 4096] {
        let buf = vec![0xA5u8; chunk];
        while f.write_all(&buf).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = f.sync_all();
    written
}
