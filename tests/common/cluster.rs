//! A cluster of real `shoal serve` processes on loopback for tests: N nodes formed with
//! `--peers` (more can `--join`), each with its own data directory and free ports, all with
//! `--fault-injection`. Nodes are killed by PID (`kill9`), restarted on the same ports and data
//! (`restart`), wiped, cut off (`partition`, through every node's `POST /debug/partition`) and
//! healed. Dropping the cluster kills every process by PID.

#![allow(dead_code)]

use super::{free_port, request};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `(node, points, applied)` of one replica, as `GET /cluster` reports it.
pub type ReplicaState = (u64, Option<u64>, Option<u64>);

/// One node of a [`TestCluster`].
pub struct Node {
    /// Node id.
    pub id: u64,
    /// REST address.
    pub api: String,
    /// Internal (Raft) address.
    pub internal: String,
    /// Data directory.
    pub dir: PathBuf,
    /// `--peers` or `--join` flags it starts with.
    pub membership: Vec<String>,
    child: Option<Child>,
}

/// N `shoal serve` processes forming one cluster.
pub struct TestCluster {
    /// The nodes, index `i` has id `i + 1` unless added otherwise.
    pub nodes: Vec<Node>,
    /// Extra flags given to every node.
    pub flags: Vec<String>,
    root: tempfile::TempDir,
}

impl TestCluster {
    /// Start `n` nodes (ids 1..=n) with `--peers` and `flags`, and wait until all are ready.
    pub fn start(n: usize, flags: &[&str]) -> TestCluster {
        let root = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=n as u64)
            .map(|id| Node {
                id,
                api: format!("127.0.0.1:{}", free_port()),
                internal: format!("127.0.0.1:{}", free_port()),
                dir: root.path().join(format!("node{id}")),
                membership: Vec::new(),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.internal))
            .collect::<Vec<_>>()
            .join(",");
        for n in &mut nodes {
            n.membership = vec!["--peers".into(), peers.clone()];
        }
        let mut c = TestCluster {
            nodes,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            root,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        std::fs::create_dir_all(&n.dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args([
                "serve",
                "--listen",
                &n.api,
                "--internal-listen",
                &n.internal,
            ])
            .args(["--node-id", &n.id.to_string(), "--fault-injection"])
            .arg("--data-dir")
            .arg(&n.dir)
            .args(&n.membership)
            .args(&self.flags)
            .env(
                "SHOAL_LOG_LEVEL",
                std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal");
        n.child = Some(child);
    }

    /// Add a node with id `id` that `--join`s through node `via`; waits until it is ready.
    /// Returns its index.
    pub fn join(&mut self, id: u64, via: usize) -> usize {
        let node = Node {
            id,
            api: format!("127.0.0.1:{}", free_port()),
            internal: format!("127.0.0.1:{}", free_port()),
            dir: self.root.path().join(format!("node{id}")),
            membership: vec!["--join".into(), self.nodes[via].internal.clone()],
            child: None,
        };
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.spawn(i);
        self.wait_ready(i);
        i
    }

    /// Index of the node with id `id`.
    pub fn index_of(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("no such node")
    }

    /// Wait until node `i` answers `/readyz` with 200 (60 s at most).
    pub fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = request(&self.nodes[i].api, "GET", "/readyz", None) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not become ready",
                self.nodes[i].id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL node `i` by PID and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Start node `i` again on the same ports and data (kills it first if it runs); waits
    /// until ready.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Kill node `i` and delete its data directory.
    pub fn wipe(&mut self, i: usize) {
        self.kill9(i);
        let _ = std::fs::remove_dir_all(&self.nodes[i].dir);
    }

    /// Cut node `i` off: it drops traffic to and from every other node and they drop it.
    pub fn partition(&self, i: usize) {
        let me = self.nodes[i].id;
        for (j, n) in self.nodes.iter().enumerate() {
            if n.child.is_none() {
                continue;
            }
            let blocked: Vec<u64> = if j == i {
                self.nodes
                    .iter()
                    .map(|n| n.id)
                    .filter(|id| *id != me)
                    .collect()
            } else {
                vec![me]
            };
            self.ok(j, "POST", "/debug/partition", json!({ "blocked": blocked }));
        }
    }

    /// Undo every partition.
    pub fn heal(&self) {
        for (j, n) in self.nodes.iter().enumerate() {
            if n.child.is_some() {
                self.ok(j, "POST", "/debug/partition", json!({ "blocked": [] }));
            }
        }
    }

    /// A JSON request to node `i`; status and parsed body (Null if not JSON).
    pub fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        match request(&self.nodes[i].api, method, path, bytes.as_deref()) {
            Ok((status, out)) => (status, serde_json::from_slice(&out).unwrap_or(Value::Null)),
            Err(e) => (0, json!({ "connection_error": e.to_string() })),
        }
    }

    /// A JSON request to node `i` that must succeed; returns `result`.
    pub fn ok(&self, i: usize, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { None } else { Some(body) };
        let (status, v) = self.call(i, method, path, body);
        assert_eq!(
            status, 200,
            "node {}: {method} {path}: {v}",
            self.nodes[i].id
        );
        v["result"].clone()
    }

    /// `GET /cluster` on node `i`.
    pub fn status(&self, i: usize) -> Value {
        self.ok(i, "GET", "/cluster", Value::Null)
    }

    /// Every replica of every shard of `collection` as node `i` reports them, each as
    /// [`ReplicaState`].
    pub fn replicas(&self, i: usize, collection: &str) -> Vec<Vec<ReplicaState>> {
        self.status(i)["collections"][collection]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sh| {
                sh["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["node"].as_u64().unwrap(),
                            r["points"].as_u64(),
                            r["applied"].as_u64(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// The leader of shard `shard` of `collection` as node `i` sees it.
    pub fn shard_leader(&self, i: usize, collection: &str, shard: usize) -> Option<u64> {
        self.status(i)["collections"][collection]["shards"][shard]["leader"].as_u64()
    }

    /// Index of a running node.
    pub fn any_running(&self) -> usize {
        (0..self.nodes.len())
            .find(|i| self.is_running(*i))
            .expect("no node runs")
    }
}

/// Poll `f` every 100 ms until it returns `Some`, at most `timeout`; panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}
