//! Tests of versions (last writer wins), lock-free searches, compaction and file snapshots.

use super::tests::{Model, assert_exact_matches_model, config, point, random_vec, req};
use super::*;
use crate::index::Metric;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Every live point with its vector and payload, in id order: what two equal shards share.
fn contents(shard: &Shard) -> Vec<Record> {
    shard.scroll(None, usize::MAX, None, true, true).0
}

fn upsert_at(ids: &[u64], version: u64, value: f32) -> ShardCommand {
    upsert_at_dim(ids, version, value, 2)
}

fn upsert_at_dim(ids: &[u64], version: u64, value: f32, dim: usize) -> ShardCommand {
    ShardCommand::UpsertAt {
        points: ids
            .iter()
            .map(|&i| {
                let mut v = vec![0.0; dim];
                v[0] = value;
                v[1] = i as f32;
                point(i, v, i % 3)
            })
            .collect(),
        version,
    }
}

fn delete_at(ids: &[u64], version: u64) -> ShardCommand {
    ShardCommand::DeleteAt {
        ids: ids.iter().map(|&i| PointId::Num(i)).collect(),
        version,
    }
}

fn num(id: u64) -> PointId {
    PointId::Num(id)
}

#[test]
fn an_older_upsert_after_a_newer_delete_loses() {
    let shard = Shard::new_inline_builds(config(2, Metric::L2, 0));
    shard.apply(1, &upsert_at(&[1], 5, 1.0)).unwrap();
    // The delete records its version for the absent id 2 as well.
    shard.apply(2, &delete_at(&[1, 2], 7)).unwrap();
    assert!(shard.get(&[num(1)], false, false).is_empty());
    assert_eq!(shard.version(&num(2)), 7);
    shard.apply(3, &upsert_at(&[1, 2], 6, 2.0)).unwrap();
    assert!(shard.get(&[num(1), num(2)], false, false).is_empty());
    // An equal or newer version wins; the older one then loses against it.
    shard.apply(4, &upsert_at(&[2], 7, 3.0)).unwrap();
    shard.apply(5, &upsert_at(&[1], 9, 4.0)).unwrap();
    shard.apply(6, &upsert_at(&[1], 8, 5.0)).unwrap();
    let got = shard.get(&[num(1), num(2)], false, true);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].vector.as_deref(), Some(&[4.0, 1.0][..]));
    assert_eq!(got[1].vector.as_deref(), Some(&[3.0, 2.0][..]));
    // Version-less writes always apply and leave versions alone.
    shard
        .apply(7, &ShardCommand::Delete { ids: vec![num(1)] })
        .unwrap();
    assert_eq!(shard.version(&num(1)), 9);
    shard.apply(8, &upsert_at(&[1], 8, 6.0)).unwrap();
    assert!(shard.get(&[num(1)], false, false).is_empty());
    // validate checks versioned upserts like plain ones.
    let dup = ShardCommand::UpsertAt {
        points: vec![point(3, vec![0.0, 0.0], 0), point(3, vec![1.0, 0.0], 0)],
        version: 10,
    };
    assert!(matches!(
        shard.validate(&dup),
        Err(ShardError::DuplicateId(_))
    ));
    let short = ShardCommand::UpsertAt {
        points: vec![point(3, vec![0.0], 0)],
        version: 10,
    };
    assert!(shard.apply(9, &short).is_err());
    assert_eq!(shard.version(&num(3)), 0);
}

fn random_versioned(rng: &mut ChaCha8Rng, version: u64) -> ShardCommand {
    let ids: Vec<u64> = (0..rng.random_range(1..6))
        .map(|_| rng.random_range(0..40u64))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if rng.random_range(0..3) == 0 {
        delete_at(&ids, version)
    } else {
        upsert_at(&ids, version, version as f32)
    }
}

#[test]
fn versioned_writes_converge_whatever_the_order_or_repetition() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Commands with distinct versions, in a random order.
    let mut log: Vec<ShardCommand> = (1..=300).map(|v| random_versioned(&mut rng, v)).collect();
    let reference = Shard::new_inline_builds(config(2, Metric::L2, 64));
    for (i, c) in log.iter().enumerate() {
        reference.apply(i as u64 + 1, c).unwrap();
    }
    // The same log delivered twice (a retried write logged again) gives the same state.
    let twice = Shard::new_inline_builds(config(2, Metric::L2, 64));
    for (i, c) in log.iter().chain(log.iter()).enumerate() {
        twice.apply(i as u64 + 1, c).unwrap();
    }
    assert_eq!(contents(&twice), contents(&reference));
    // Any interleaving of the same commands gives the same state, equal to the model's.
    for round in 0..4 {
        for i in (1..log.len()).rev() {
            log.swap(i, rng.random_range(0..=i));
        }
        let shuffled = Shard::new_inline_builds(config(2, Metric::L2, 64));
        let mut model = Model::default();
        for (i, c) in log.iter().enumerate() {
            shuffled.apply(i as u64 + 1, c).unwrap();
            model.apply(c);
        }
        assert_eq!(contents(&shuffled), contents(&reference), "round {round}");
        assert_eq!(shuffled.count(None), model.points.len());
        for id in 0..40 {
            assert_eq!(shuffled.version(&num(id)), reference.version(&num(id)));
        }
    }
    // Both orders of one pair: an upsert and a delete of the same id, and two upserts.
    for (a, b) in [
        (upsert_at(&[1, 2], 5, 1.0), delete_at(&[2, 3], 6)),
        (upsert_at(&[1], 8, 1.0), upsert_at(&[1], 4, 2.0)),
        (delete_at(&[1], 3), upsert_at(&[1], 2, 2.0)),
    ] {
        let x = Shard::new_inline_builds(config(2, Metric::L2, 0));
        let y = Shard::new_inline_builds(config(2, Metric::L2, 0));
        x.apply(1, &a).unwrap();
        x.apply(2, &b).unwrap();
        y.apply(1, &b).unwrap();
        y.apply(2, &a).unwrap();
        assert_eq!(contents(&x), contents(&y));
    }
}

#[test]
fn a_write_completes_while_a_search_is_in_progress() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let shard = Shard::new(config(dim, Metric::L2, 500));
    let points: Vec<PointWrite> = (0..1200u64)
        .map(|i| point(i, random_vec(&mut rng, dim), 0))
        .collect();
    shard.apply(1, &ShardCommand::Upsert { points }).unwrap();
    shard.wait_for_builds();
    // The search stops right after taking its view, as a long scan would.
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    *shard.inner.hooks.search.lock().unwrap() = Some((reached_tx, go_rx));
    let q = random_vec(&mut rng, dim);
    let searcher = {
        let shard = shard.clone();
        let q = q.clone();
        std::thread::spawn(move || shard.search(&req(&q, 5000, None, true)).unwrap())
    };
    reached.recv().unwrap();
    let (done_tx, done) = mpsc::channel();
    let writer = {
        let shard = shard.clone();
        std::thread::spawn(move || {
            let p = point(5000, vec![0.0; 8], 0);
            shard
                .apply(2, &ShardCommand::Upsert { points: vec![p] })
                .unwrap();
            shard
                .apply(3, &ShardCommand::Delete { ids: vec![num(0)] })
                .unwrap();
            done_tx.send(()).unwrap();
        })
    };
    // With the lock held for the whole search, the write could not finish before `go`: this
    // would time out instead (the timeout only keeps a broken build from hanging).
    done.recv_timeout(Duration::from_secs(60))
        .expect("the write waited for the search");
    assert!(!searcher.is_finished());
    go.send(()).unwrap();
    writer.join().unwrap();
    let old = searcher.join().unwrap();
    // The search answered from its view: the state before the writes.
    assert_eq!(old.len(), 1200);
    assert!(old.iter().any(|h| h.record.id == num(0)));
    let new = shard.search(&req(&q, 5000, None, true)).unwrap();
    assert_eq!(new.len(), 1200);
    assert!(new.iter().any(|h| h.record.id == num(5000)));
    assert!(!new.iter().any(|h| h.record.id == num(0)));
}

/// Total bytes of segment files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// One hit as the answer comparison sees it.
type Answer = (PointId, f32, Option<Arc<Payload>>);

fn exact_answers(shard: &Shard, queries: &[Vec<f32>]) -> Vec<Vec<Answer>> {
    queries
        .iter()
        .map(|q| {
            shard
                .search(&req(q, 20, None, true))
                .unwrap()
                .into_iter()
                .map(|h| (h.record.id, h.distance, h.record.payload))
                .collect()
        })
        .collect()
}

fn pause_compaction(shard: &Shard) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    *shard.inner.hooks.compaction.lock().unwrap() = Some((reached_tx, go_rx));
    (reached, go)
}

#[test]
fn compaction_drops_deleted_rows_and_keeps_the_answers() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let data = tempfile::tempdir().unwrap();
    let shard = Shard::open(config(dim, Metric::L2, 500), data.path()).unwrap();
    let mut model = Model::default();
    let up = ShardCommand::Upsert {
        points: (0..2000u64)
            .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
            .collect(),
    };
    shard.apply(1, &up).unwrap();
    model.apply(&up);
    shard.wait_for_builds();
    let before = shard.stats();
    assert_eq!((before.segments, before.indexed_segments), (5, 4));
    let bytes_before = dir_bytes(data.path());
    let (reached, go) = pause_compaction(&shard);
    // 40% of the first segment's rows deleted: over the 20% default.
    let del = ShardCommand::Delete {
        ids: (0..200).map(num).collect(),
    };
    shard.apply(2, &del).unwrap();
    model.apply(&del);
    reached.recv().unwrap();
    let s = shard.stats();
    assert_eq!(
        (s.compacting, s.deleted_rows, s.compacting_rows),
        (1, 200, 500)
    );
    let queries: Vec<Vec<f32>> = (0..10).map(|_| random_vec(&mut rng, dim)).collect();
    let answers = exact_answers(&shard, &queries);
    go.send(()).unwrap();
    shard.wait_for_builds();
    let after = shard.stats();
    assert_eq!(after.compactions, 1);
    assert_eq!(after.compacted_deleted_rows, 200);
    assert_eq!(
        (after.deleted_rows, after.stored_rows, after.points),
        (0, 1800, 1800)
    );
    assert_eq!(after.segments, 5);
    assert_eq!(exact_answers(&shard, &queries), answers);
    // The old file is gone once nothing holds it; the new one is smaller.
    let files = std::fs::read_dir(data.path()).unwrap().count();
    assert_eq!(files, 4);
    assert!(dir_bytes(data.path()) < bytes_before);
    super::tests::assert_exact_matches_model(&shard, &model, &mut rng, Metric::L2, dim);
}

#[test]
fn writes_during_a_compaction_are_neither_lost_nor_resurrected() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let data = tempfile::tempdir().unwrap();
    let shard = Shard::open(config(dim, Metric::Cosine, 400), data.path()).unwrap();
    let mut model = Model::default();
    let mut index = 0;
    let mut apply = |cmd: ShardCommand, model: &mut Model| {
        index += 1;
        shard.apply(index, &cmd).unwrap();
        model.apply(&cmd);
    };
    apply(
        ShardCommand::Upsert {
            points: (0..1600u64)
                .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
                .collect(),
        },
        &mut model,
    );
    shard.wait_for_builds();
    let (reached, go) = pause_compaction(&shard);
    // Half of segment 0 and of segment 1 deleted: both dirty, merged together.
    apply(
        ShardCommand::Delete {
            ids: (0..800).filter(|i| i % 2 == 0).map(num).collect(),
        },
        &mut model,
    );
    reached.recv().unwrap();
    assert_eq!(shard.stats().compacting, 1);
    // Meanwhile: new points, updates and deletes of rows being compacted, a versioned delete.
    apply(
        ShardCommand::Upsert {
            points: (2000..2100u64)
                .map(|i| point(i, random_vec(&mut rng, dim), 1))
                .collect(),
        },
        &mut model,
    );
    apply(
        ShardCommand::Upsert {
            points: (1..200u64)
                .step_by(4)
                .map(|i| point(i, random_vec(&mut rng, dim), 2))
                .collect(),
        },
        &mut model,
    );
    apply(
        ShardCommand::Delete {
            ids: (3..800).step_by(4).map(num).collect(),
        },
        &mut model,
    );
    apply(delete_at(&[701, 703], 1), &mut model);
    // The search path still answers from the old segments while the merge is held.
    super::tests::assert_exact_matches_model(&shard, &model, &mut rng, Metric::Cosine, dim);
    go.send(()).unwrap();
    shard.wait_for_builds();
    let s = shard.stats();
    assert!(s.compactions >= 1, "{s:?}");
    assert_eq!(s.points, model.points.len());
    super::tests::assert_exact_matches_model(&shard, &model, &mut rng, Metric::Cosine, dim);
    for (id, (_, payload)) in &model.points {
        let got = shard.get(&[*id], true, false);
        assert_eq!(got.len(), 1, "{id} lost");
        assert_eq!(got[0].payload.as_deref(), Some(payload));
    }
    for id in (0..800).filter(|i| i % 2 == 0 || i % 4 == 3) {
        assert!(
            shard.get(&[num(id)], false, false).is_empty(),
            "{id} came back"
        );
    }
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_snapshot_hard_links_the_segment_files_and_restores_identically() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let root = tempfile::tempdir().unwrap();
    let (data, snap, data2) = (
        root.path().join("data"),
        root.path().join("snap"),
        root.path().join("data2"),
    );
    let shard = Shard::open(config(dim, Metric::Dot, 500), &data).unwrap();
    let up = ShardCommand::Upsert {
        points: (0..1700u64)
            .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
            .collect(),
    };
    shard.apply(1, &up).unwrap();
    shard.apply(2, &delete_at(&[3, 4, 9999], 40)).unwrap();
    shard.apply(3, &upsert_at_dim(&[10], 30, 1.0, dim)).unwrap();
    shard.wait_for_builds();
    assert_eq!(shard.stats().indexed_segments, 3);
    assert_eq!(shard.snapshot(&snap).unwrap(), 3);
    let mut linked = 0;
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        let copy = snap.join(e.file_name());
        assert_eq!(
            inode(&e.path()),
            inode(&copy),
            "{:?} not linked",
            e.file_name()
        );
        linked += 1;
    }
    assert_eq!(linked, 3);
    let restored = Shard::restore_into(&snap, true, Some(&data2)).unwrap();
    assert_eq!(
        super::tests::layout(&restored),
        super::tests::layout(&shard)
    );
    assert_eq!(restored.version(&num(9999)), 40);
    assert_eq!(restored.version(&num(10)), 30);
    // The restored shard has its own links, in its own data directory.
    assert_eq!(std::fs::read_dir(&data2).unwrap().count(), 3);
    for _ in 0..10 {
        let q = random_vec(&mut rng, dim);
        for exact in [false, true] {
            let a = shard.search(&req(&q, 10, None, exact)).unwrap();
            let b = restored.search(&req(&q, 10, None, exact)).unwrap();
            assert_eq!(a, b);
        }
    }
    assert_eq!(contents(&restored), contents(&shard));
    // Versions survive: an old upsert of a deleted id still loses after the restore.
    restored
        .apply(4, &upsert_at_dim(&[3], 39, 1.0, dim))
        .unwrap();
    assert!(restored.get(&[num(3)], false, false).is_empty());
    // A damaged segment file is refused (on a copy: the snapshot's file is the live one).
    let bad = root.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(&snap).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bad.join(e.file_name())).unwrap();
    }
    let victim = std::fs::read_dir(&bad)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    assert!(Shard::restore_into(&bad, true, Some(&root.path().join("data3"))).is_err());
}

#[test]
fn snapshots_taken_while_jobs_run_are_consistent() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let root = tempfile::tempdir().unwrap();
    let shard = Shard::open(config(dim, Metric::L2, 300), &root.path().join("data")).unwrap();
    let mut model = Model::default();
    let mut index = 0;
    let mut snaps = Vec::new();
    let mut held = 0;
    for round in 0..6u64 {
        let ids: Vec<u64> = (0..400).map(|_| rng.random_range(0..1500u64)).collect();
        let cmds = [
            ShardCommand::Upsert {
                points: ids
                    .iter()
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .map(|&i| point(i, random_vec(&mut rng, dim), i % 5))
                    .collect(),
            },
            ShardCommand::Delete {
                ids: (0..150).map(|_| num(rng.random_range(0..1500))).collect(),
            },
        ];
        // In odd rounds a compaction is held half-way while the snapshot is taken (the hook is
        // armed with no job running, so the first compaction to start takes it).
        let paused = (round % 2 == 1).then(|| {
            shard.wait_for_builds();
            pause_compaction(&shard)
        });
        for c in &cmds {
            index += 1;
            shard.apply(index, c).unwrap();
            model.apply(c);
        }
        let dir = root.path().join(format!("snap{round}"));
        if let Some((reached, go)) = paused {
            if shard.stats().compacting > 0 {
                reached.recv().unwrap();
                held += 1;
            }
            shard.snapshot(&dir).unwrap();
            shard.inner.hooks.compaction.lock().unwrap().take();
            let _ = go.send(());
        } else {
            // Builds of the segments just sealed may still be running.
            shard.snapshot(&dir).unwrap();
        }
        snaps.push((dir, contents_of_model(&model), index));
    }
    shard.wait_for_builds();
    assert!(held >= 1, "no snapshot was taken during a compaction");
    for (i, (dir, want, last)) in snaps.iter().enumerate() {
        let restored =
            Shard::restore_into(dir, false, Some(&root.path().join(format!("r{i}")))).unwrap();
        assert_eq!(restored.last_applied(), *last);
        let got: Vec<(PointId, Vec<f32>)> = contents(&restored)
            .into_iter()
            .map(|r| (r.id, r.vector.unwrap()))
            .collect();
        assert_eq!(&got, want, "snapshot {i}");
    }
}

fn contents_of_model(model: &Model) -> Vec<(PointId, Vec<f32>)> {
    let mut v: Vec<(PointId, Vec<f32>)> = model
        .points
        .iter()
        .map(|(id, (v, _))| (*id, v.clone()))
        .collect();
    v.sort_by_key(|a| a.0);
    v
}

/// Every built segment keeps its 8-bit codes: in the mapped copy made right after its file is
/// written, and after a restart; and a filter's exact scans through them answer exactly as brute
/// force, for every metric (the filter `assert_exact_matches_model` uses matches few enough rows
/// per segment to be searched exactly).
#[test]
fn built_segments_keep_their_8_bit_codes_through_persist_and_restart() {
    let dim = 16;
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let data = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let cmd = ShardCommand::Upsert {
            points: (0..1500u64)
                .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
                .collect(),
        };
        model.apply(&cmd);
        let codes = |shard: &Shard| -> Vec<bool> {
            shard
                .view()
                .iter()
                .filter_map(|s| match &s.body {
                    segment::SegBody::Ivf(ivf) => Some(ivf.index.sq8().is_some()),
                    segment::SegBody::Flat(_) => None,
                })
                .collect()
        };
        let snap = tempfile::tempdir().unwrap();
        {
            let shard = Shard::open(config(dim, metric, 500), data.path()).unwrap();
            shard.apply(1, &cmd).unwrap();
            shard.wait_for_builds();
            assert_eq!(codes(&shard), [true; 3], "{metric:?}");
            // ... in the copy mapped back from each segment's file.
            assert!(shard.view().iter().all(|s| match &s.body {
                segment::SegBody::Ivf(ivf) => ivf.file.is_some(),
                segment::SegBody::Flat(_) => true,
            }));
            assert_exact_matches_model(&shard, &model, &mut rng, metric, dim);
            shard.snapshot(snap.path()).unwrap();
        }
        // A restart opens the segment files a snapshot hard-linked.
        let shard = Shard::restore(snap.path(), true).unwrap();
        assert_eq!(codes(&shard), [true; 3], "{metric:?} after a restart");
        assert_exact_matches_model(&shard, &model, &mut rng, metric, dim);
    }
}

/// Holds every worker of the build pool until the returned sender is dropped, so that the jobs
/// submitted meanwhile queue up (as they do while a load outruns the builds).
fn hold_the_build_pool() -> mpsc::Sender<()> {
    let (started_tx, started) = mpsc::channel();
    let (release, wait) = mpsc::channel::<()>();
    let wait = Arc::new(std::sync::Mutex::new(wait));
    for _ in 0..build_pool::threads() {
        let (started_tx, wait) = (started_tx.clone(), Arc::clone(&wait));
        build_pool::submit(move || {
            started_tx.send(()).unwrap();
            // Every holder returns once the sender is dropped.
            let _ = wait.lock().unwrap().recv();
        });
    }
    for _ in 0..build_pool::threads() {
        started.recv_timeout(Duration::from_secs(120)).unwrap();
    }
    release
}

#[test]
fn queued_builds_are_built_as_one_segment_and_lose_no_write() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(dim, Metric::L2, 300);
    cfg.compaction.tiers = true;
    let shard = Shard::open(cfg, data.path()).unwrap();
    let mut model = Model::default();
    let mut index = 0;
    let mut apply = |shard: &Shard, model: &mut Model, cmd: ShardCommand| {
        index += 1;
        shard.apply(index, &cmd).unwrap();
        model.apply(&cmd);
    };
    let release = hold_the_build_pool();
    // Four segments sealed while no worker is free: four builds queue.
    for batch in 0..4u64 {
        let up = ShardCommand::Upsert {
            points: (batch * 300..(batch + 1) * 300)
                .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
                .collect(),
        };
        apply(&shard, &mut model, up);
    }
    // Deletes and updates of queued rows, before any build starts.
    apply(
        &shard,
        &mut model,
        ShardCommand::Delete {
            ids: (0..40).chain(650..670).map(num).collect(),
        },
    );
    let update = ShardCommand::Upsert {
        points: (900..930)
            .map(|i| point(i, random_vec(&mut rng, dim), 1))
            .collect(),
    };
    apply(&shard, &mut model, update);
    let s = shard.stats();
    assert_eq!((s.segments, s.indexed_segments, s.building), (5, 0, 4));
    drop(release);
    shard.wait_for_builds();
    let s = shard.stats();
    // One training for the four: one indexed segment of their 1,200 rows, and the mutable one
    // with the updates.
    assert_eq!(
        (s.segments, s.indexed_segments, s.building, s.compacting),
        (2, 1, 0, 0)
    );
    assert_eq!(s.points, 1200 - 60);
    assert_eq!(s.indexed_points, 1200 - 60 - 30);
    assert_exact_matches_model(&shard, &model, &mut rng, Metric::L2, dim);
    // Every queued build is reported done, as is the merge that did them.
    let jobs = shard.optimizations();
    assert!(jobs.running.is_empty(), "{jobs:?}");
    let builds = |kind: JobKind| jobs.completed.iter().filter(|j| j.kind == kind).count();
    assert_eq!(
        (builds(JobKind::IndexBuild), builds(JobKind::Merge)),
        (4, 1)
    );
}

#[test]
fn a_queued_build_takes_the_others_within_the_cap() {
    let mut queued = vec![(3, 100), (4, 300), (5, 100), (6, 50)];
    // Its own entry first, then the oldest that fit.
    assert_eq!(build::claim_queued(&mut queued, 5, 260), vec![5, 3, 6]);
    assert_eq!(queued, vec![(4, 300)]);
    // Gone: taken by an earlier job.
    assert!(build::claim_queued(&mut queued, 5, 1000).is_empty());
    // No cap: only its own.
    let mut queued = vec![(1, 10), (2, 10)];
    assert_eq!(build::claim_queued(&mut queued, 2, 0), vec![2]);
    assert_eq!(queued, vec![(1, 10)]);
}

#[test]
fn at_rest_a_load_s_segments_are_merged_into_one() {
    let dim = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(dim, Metric::L2, 300);
    cfg.compaction.tiers = true;
    cfg.compaction.idle_seal_ms = 200;
    let shard = Shard::open(cfg, data.path()).unwrap();
    let mut model = Model::default();
    for batch in 0..3u64 {
        let up = ShardCommand::Upsert {
            points: (batch * 300..(batch + 1) * 300)
                .map(|i| point(i, random_vec(&mut rng, dim), i % 5))
                .collect(),
        };
        shard.apply(batch + 1, &up).unwrap();
        model.apply(&up);
        if batch == 0 {
            // Built alone, so the other two end as a segment of another tier (600 rows, by
            // a tier merge or built together): one segment per tier, which tiers leave be.
            shard.wait_for_builds();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let settled = loop {
        shard.wait_for_builds();
        let s = shard.stats();
        if s.segments == 2 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (settled.segments, settled.indexed_segments, settled.points),
        (2, 1, 900),
        "segments with the mutable one, indexed ones, points"
    );
    assert_exact_matches_model(&shard, &model, &mut rng, Metric::L2, dim);
}
