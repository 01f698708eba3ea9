//! A real full disk under the Raft layer: a node's log on a small tmpfs that the test fills.
//! Writes fail and the group stops, the supervisor waits while the disk is full, and once space
//! is freed it reopens the log and restarts the group in the same process; every acknowledged
//! write is applied exactly once and is still there after a restart of the node.
//!
//! Mounting needs root: where `mount` fails the test prints a SKIPPED line and passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::raft::recovery::{Recovery, recover_once};
use crate::raft::tests::{ListApp, cmd, info, open_node, wait_leader, wait_until};
use crate::raft::{InProcessRouter, RaftConfig, RaftGroupError};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
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
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Fills the filesystem holding `path` with one file, down to the last page.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create ballast");
    for chunk in [1 << 20, 4096] {
        let buf = vec![0xA5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
}

/// A command carrying `v` and 16 KiB of padding, so the log must grow soon.
fn padded(v: u64) -> Vec<u8> {
    let mut c = cmd(v);
    c.resize(16 << 10, 0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_group_and_it_restarts_in_process_once_space_is_freed() {
    let fs = match Tmpfs::mount(16) {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let dir = fs.dir.join("raft");
    let router = InProcessRouter::new();
    let config = RaftConfig::fast();
    let node = open_node(1, &dir, &router, &config).await;
    let app = Arc::new(ListApp::default());
    let group = node.start_group(9, app.clone()).await.unwrap();
    group
        .initialize(BTreeMap::from([(1, info(1))]))
        .await
        .unwrap();
    wait_leader(&[&group]).await;
    let mut acked = Vec::new();
    for v in 0..20u64 {
        group.write(padded(v)).await.unwrap();
        acked.push(v);
    }

    let ballast = fs.dir.join("ballast");
    fill(&ballast);
    let mut failed = None;
    for v in 20..2_000u64 {
        match group.write(padded(v)).await {
            Ok(_) => acked.push(v),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("no write failed on a full disk");
    assert!(
        matches!(
            err,
            RaftGroupError::Stopped { .. } | RaftGroupError::OutcomeUnknown { .. }
        ),
        "{err}"
    );
    assert!(node.log_failure().is_some(), "the log failure is recorded");
    wait_until("the group reported stopped", || {
        node.stopped_groups().iter().any(|(g, _)| *g == 9)
    })
    .await;
    assert!(matches!(
        group.write(cmd(10_000)).await,
        Err(RaftGroupError::Stopped { .. })
    ));
    // While the disk is full, the supervisor waits and restarts nothing.
    assert!(matches!(recover_once(&node).await, Recovery::Waiting(_)));
    assert!(!node.stopped_groups().is_empty());

    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(recover_once(&node).await, Recovery::Restarted(1));
    assert_eq!(node.log_failure(), None);
    assert_eq!(node.log_reopens(), 1);
    assert!(node.stopped_groups().is_empty());
    // The handle held before the restart drives the new core.
    wait_leader(&[&group]).await;
    let v = 5_000;
    group.write(cmd(v)).await.unwrap();
    acked.push(v);
    assert_eq!(
        app.values(),
        acked,
        "every acknowledged write, once, in order"
    );
    assert_eq!(app.duplicate_applies.load(Ordering::SeqCst), 0);

    // Durable: a fresh process (node and application) replays the same.
    node.shutdown().await;
    drop(group);
    drop(node);
    let node = open_node(1, &dir, &router, &config).await;
    let app2 = Arc::new(ListApp::default());
    let group = node.start_group(9, app2.clone()).await.unwrap();
    wait_leader(&[&group]).await;
    group.linearizable_read().await.unwrap();
    assert_eq!(app2.values(), acked, "acknowledged writes after a restart");
    node.shutdown().await;
    drop(group);
    drop(node);
    drop(fs);
}
