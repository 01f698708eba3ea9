//! shoal in a container: builds an image from the test's own `shoal` binary with
//! `scripts/docker-image.sh` (`docker import` of a root file system, nothing pulled), starts it on
//! a private docker network the way the Helm chart does (read-only root file system, non-root
//! user, `/bin/sh` entry deriving the node id from a pod-style name, SHOAL_* environment), and
//! drives a create-collection / upsert / search round trip against it.
//!
//! The REST port is published on 127.0.0.1 only, so the test talks to loopback. When `docker info`
//! fails (no daemon, no permission) the test prints a SKIPPED line and passes. Containers, the
//! network and the image are removed at the end, also when an assertion fails (`Docker`'s Drop).

mod common;

use common::tmpfs::{Tmpfs, fill};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Runs docker and returns trimmed stdout; panics with stderr on failure.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Everything the test created in docker, removed on drop (containers, then network, then
/// image). On a failing test the containers' logs are printed first.
struct Docker {
    prefix: String,
    image: String,
    /// The network the REST ports are published from (every container is on it).
    network: String,
    /// Further networks created by the test.
    networks: Vec<String>,
    containers: Vec<String>,
}

impl Docker {
    /// Names everything `shoal-test-<pid>-<test>` so parallel tests and runs never collide.
    fn new(test: &str) -> Docker {
        let prefix = format!("shoal-test-{}-{test}", std::process::id());
        Docker {
            image: format!("shoal:{prefix}"),
            network: prefix.clone(),
            networks: Vec::new(),
            prefix,
            containers: Vec::new(),
        }
    }

    /// What every test begins with: the image built from this build's binary and the network the
    /// REST ports are published from. `None` (the test is skipped, saying so) without docker.
    fn start(test: &str) -> Option<Docker> {
        if !docker_available() {
            println!("SKIPPED: docker is not available (`docker info` failed)");
            return None;
        }
        let mut d = Docker::new(test);
        d.build_image();
        let net = d.network.clone();
        d.create_network(&net);
        Some(d)
    }

    /// Creates a docker network, removed on drop.
    fn create_network(&mut self, name: &str) -> String {
        docker_ok(&["network", "create", name]);
        self.networks.push(name.to_string());
        name.to_string()
    }

    fn build_image(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-image.sh");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_shoal"))
            .arg(&self.image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker-image.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{} in {:.1}s",
            String::from_utf8_lossy(&out.stdout).trim(),
            started.elapsed().as_secs_f64()
        );
    }

    /// Starts node `ordinal` as the chart would start pod `<prefix>-<ordinal>` (node id
    /// `ordinal + 1`); returns the loopback address its REST port is published on. With
    /// `cluster_net` the container is also attached to that network under the alias
    /// `node<id>`, the name its peers dial (it resolves only there, so disconnecting the
    /// container from that network cuts it off from its peers but not from the test).
    ///
    /// `data`: a host directory bind-mounted as `/data` (owned by uid 10001) instead of the
    /// container's own tmpfs, so the test can fill and free the node's disk from outside.
    fn start_node(
        &mut self,
        ordinal: u32,
        extra_env: &[(&str, String)],
        cluster_net: Option<&str>,
        data: Option<&Path>,
    ) -> String {
        let name = format!("{}-{ordinal}", self.prefix);
        let mut args: Vec<String> = vec![
            "create".into(),
            "--name".into(),
            name.clone(),
            "--hostname".into(),
            name.clone(),
            "--network".into(),
            self.network.clone(),
            "--read-only".into(),
            "--tmpfs".into(),
            "/tmp".into(),
            "--user".into(),
            "10001:10001".into(),
            "--publish".into(),
            "127.0.0.1::6333".into(),
            "--env".into(),
            format!("POD_NAME={name}"),
            "--env".into(),
            "SHOAL_LISTEN=0.0.0.0:6333".into(),
            "--env".into(),
            "SHOAL_DATA_DIR=/data".into(),
            "--env".into(),
            "SHOAL_LOG_LEVEL=warn".into(),
        ];
        match data {
            Some(dir) => args.extend([
                "--mount".into(),
                format!("type=bind,src={},dst=/data", dir.display()),
            ]),
            None => args.extend([
                "--tmpfs".into(),
                "/data:uid=10001,gid=10001,mode=0700".into(),
            ]),
        }
        for (k, v) in extra_env {
            args.push("--env".into());
            args.push(format!("{k}={v}"));
        }
        args.extend([
            "--entrypoint".into(),
            "/bin/sh".into(),
            self.image.clone(),
            "-c".into(),
            // The chart's entry command: node id = ordinal + 1.
            "ordinal=\"${POD_NAME##*-}\"; SHOAL_NODE_ID=$((ordinal + 1)); export SHOAL_NODE_ID; \
             exec /usr/local/bin/shoal serve"
                .into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        self.containers.push(name.clone());
        if let Some(net) = cluster_net {
            let alias = format!("node{}", ordinal + 1);
            docker_ok(&["network", "connect", "--alias", &alias, net, &name]);
        }
        docker_ok(&["start", &name]);
        let port = docker_ok(&["port", &name, "6333/tcp"]);
        // "127.0.0.1:49153" (possibly one line per address family).
        port.lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no loopback port for {name}: {port}"))
            .to_string()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.containers {
                let out = docker(&["logs", "--tail", "50", c]);
                eprintln!(
                    "--- logs of {c}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

/// One JSON request to `addr` with an optional API key; returns status and body (Null when
/// not JSON). `Err` when the connection fails.
fn try_call(
    addr: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    use std::io::{Read, Write};
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = key.map(|k| format!("api-key: {k}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: shoal\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    )?;
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A request that must answer 200; returns `result`.
fn ok(addr: &str, key: Option<&str>, method: &str, path: &str, body: Value) -> Value {
    let (status, v) = try_call(addr, key, method, path, Some(&body)).expect("request");
    assert_eq!(status, 200, "{method} {path}: {v}");
    v["result"].clone()
}

fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = try_call(addr, None, "GET", "/healthz", None)
            && let Ok((200, _)) = try_call(addr, None, "GET", "/readyz", None)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container at {addr} never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_container_serves_a_round_trip() {
    let Some(mut d) = Docker::start("one") else {
        return;
    };
    let addr = d.start_node(0, &[("SHOAL_API_KEY", "container-key".into())], None, None);
    wait_healthy(&addr);

    // The API key from the environment is in force (the probes stay open, as the chart needs).
    let (status, _) = try_call(&addr, None, "GET", "/collections", None).unwrap();
    assert_eq!(status, 401, "requests without the key must be refused");
    let key = Some("container-key");

    ok(
        &addr,
        key,
        "PUT",
        "/collections/docs",
        json!({"vectors": {"size": 4, "distance": "Euclid"}}),
    );
    let points: Vec<Value> = (0..50u64)
        .map(|i| {
            let x = i as f32;
            json!({"id": i, "vector": [x, x * 0.5, 1.0, -x], "payload": {"even": i % 2 == 0}})
        })
        .collect();
    ok(
        &addr,
        key,
        "PUT",
        "/collections/docs/points?wait=true",
        json!({ "points": points }),
    );
    let count = ok(
        &addr,
        key,
        "POST",
        "/collections/docs/points/count",
        json!({"exact": true}),
    );
    assert_eq!(count["count"], 50);
    // Nearest to point 17's vector among odd ids: 17 itself, then 15 and 19 (equally far).
    let hits = ok(
        &addr,
        key,
        "POST",
        "/collections/docs/points/query",
        json!({"query": [17.0, 8.5, 1.0, -17.0], "limit": 3,
               "filter": {"must": [{"key": "even", "match": {"value": false}}]}}),
    );
    let ids: Vec<u64> = hits["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{hits}");
    assert_eq!(ids[0], 17, "{hits}");
    let mut rest = ids[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, vec![15, 19], "{hits}");
}

/// A request that may fail while the cluster forms or fails over: retried until it answers 200
/// or `within` passes; returns `result`.
fn ok_within(addr: &str, method: &str, path: &str, body: Value, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let last = try_call(addr, None, method, path, Some(&body));
        if let Ok((200, v)) = &last {
            return v["result"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path} on {addr} never answered 200 within {within:?}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn points(ids: std::ops::Range<u64>) -> Value {
    let points: Vec<Value> = ids
        .map(|i| {
            let x = i as f32;
            json!({"id": i, "vector": [x, 1.0, -x, 0.5]})
        })
        .collect();
    json!({ "points": points })
}

fn count(addr: &str, collection: &str, consistency: &str) -> std::io::Result<(u16, Value)> {
    try_call(
        addr,
        None,
        "POST",
        &format!("/collections/{collection}/points/count?consistency={consistency}"),
        Some(&json!({"exact": true})),
    )
}

/// Three nodes peered over their own network (`<prefix>-raft`, where each is `node<id>`), node 3
/// with `node3_data` as its disk when given; their REST addresses, once healthy, and the
/// network's name (disconnect a container from it to cut it off).
fn start_three(d: &mut Docker, node3_data: Option<&Path>) -> (Vec<String>, String) {
    let raft_net = d.create_network(&format!("{}-raft", d.prefix));
    let peers = "1=node1:6335,2=node2:6335,3=node3:6335".to_string();
    let addrs: Vec<String> = (0..3u32)
        .map(|ordinal| {
            let env = [
                ("SHOAL_PEERS", peers.clone()),
                ("SHOAL_INTERNAL_LISTEN", "0.0.0.0:6335".into()),
                ("SHOAL_ADVERTISE", format!("node{}", ordinal + 1)),
                ("SHOAL_CLUSTER_SECRET", "docker-test-secret".into()),
            ];
            let data = if ordinal == 2 { node3_data } else { None };
            d.start_node(ordinal, &env, Some(&raft_net), data)
        })
        .collect();
    for a in &addrs {
        wait_healthy(a);
    }
    (addrs, raft_net)
}

/// Three containers form a cluster over their own network with `SHOAL_PEERS`, as the Helm chart
/// starts pods; a collection of 3 shards × 3 replicas takes writes; then node 3 is disconnected
/// from that network (its REST port stays reachable from the test). The two others keep taking
/// writes, node 3 takes none and gives no strong read; reconnected, node 3's own replicas
/// (read with `eventual`, which asks the local replica first) catch up with every write.
#[test]
fn three_containers_keep_writing_through_a_cut_and_converge() {
    let Some(mut d) = Docker::start("three") else {
        return;
    };
    let (addrs, raft_net) = start_three(&mut d, None);
    let (n1, n2, n3) = (&addrs[0], &addrs[1], &addrs[2]);
    let settle = Duration::from_secs(60);
    ok_within(
        n1,
        "PUT",
        "/collections/docs",
        json!({"vectors": {"size": 4, "distance": "Euclid"},
               "shard_number": 3, "replication_factor": 3}),
        settle,
    );
    ok_within(
        n2,
        "PUT",
        "/collections/docs/points?wait=true",
        points(0..30),
        settle,
    );

    // Cut node 3 off from its peers.
    let node3 = format!("{}-2", d.prefix);
    docker_ok(&["network", "disconnect", &raft_net, &node3]);

    // The majority elects new leaders where node 3 led and keeps acknowledging writes.
    ok_within(
        n1,
        "PUT",
        "/collections/docs/points?wait=true",
        points(30..60),
        settle,
    );
    let strong = ok_within(
        n2,
        "POST",
        "/collections/docs/points/count?consistency=strong",
        json!({"exact": true}),
        settle,
    );
    assert_eq!(strong["count"], 60, "{strong}");

    // Node 3 acknowledges no write and answers no strong read.
    let (status, v) = try_call(
        n3,
        None,
        "PUT",
        "/collections/docs/points?wait=true",
        Some(&points(1000..1001)),
    )
    .expect("node 3's REST port is still reachable");
    assert_ne!(status, 200, "the cut node acknowledged a write: {v}");
    let (status, v) = count(n3, "docs", "strong").unwrap();
    assert_ne!(status, 200, "the cut node answered a strong read: {v}");

    // Healed, node 3's replicas catch up: its eventual reads (local replicas first) see all 60.
    docker_ok(&["network", "connect", "--alias", "node3", &raft_net, &node3]);
    let deadline = Instant::now() + settle;
    loop {
        let c = count(n3, "docs", "eventual");
        if let Ok((200, v)) = &c
            && v["result"]["count"] == 60
        {
            break;
        }
        assert!(Instant::now() < deadline, "node 3 did not converge: {c:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let strong = ok_within(
        n3,
        "POST",
        "/collections/docs/points/count?consistency=strong",
        json!({"exact": true}),
        settle,
    );
    assert_eq!(
        strong["count"], 60,
        "the write refused during the cut must not appear: {strong}"
    );
}

/// Dimension and points per upsert of the large-entry test: 8,000 × 128 floats make each
/// replicated upsert about 4 MiB in the Raft log (the append budget, 16 MiB, then carries a few
/// per AppendEntries), and about 9 MiB of JSON.
const LARGE_DIM: usize = 128;
const LARGE_BATCH: u64 = 8_000;

fn large_points(ids: std::ops::Range<u64>) -> Value {
    let points: Vec<Value> = ids
        .map(|i| {
            let v: Vec<f32> = (0..LARGE_DIM as u64)
                .map(|d| ((i * 131 + d * 17) % 1009) as f32 / 1009.0)
                .collect();
            json!({"id": i, "vector": v, "payload": {"i": i}})
        })
        .collect();
    json!({ "points": points })
}

/// Upserts the next [`LARGE_BATCH`] points (ids from `acked`) through `addr` until acknowledged;
/// returns the new number of acknowledged points.
fn upsert_large(addr: &str, acked: u64, within: Duration) -> u64 {
    let ids = acked..acked + LARGE_BATCH;
    let body = large_points(ids);
    ok_within(
        addr,
        "PUT",
        "/collections/big/points?wait=true",
        body,
        within,
    );
    acked + LARGE_BATCH
}

fn readyz(addr: &str) -> Option<(u16, Value)> {
    try_call(addr, None, "GET", "/readyz", None).ok()
}

/// Issue 14: the container chaos test with large entries and a full disk. Node 3 (its disk a
/// 192 MiB tmpfs of the host's, bind-mounted) is cut off while eight ~4 MiB upserts are
/// acknowledged by the other two; its disk is filled to its last 8 MiB and it is healed, so
/// catching up fails for want of space: it must say so on `/readyz` (503) while the majority
/// keeps acknowledging writes. Then the space is freed, and without a restart node 3 must
/// catch up: every acknowledged point on every node, the refused ones nowhere.
#[test]
fn three_containers_with_large_entries_and_a_full_disk_lose_no_acknowledged_write() {
    let disk = match Tmpfs::mount_for(192, 10001) {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let Some(mut d) = Docker::start("full") else {
        return;
    };
    let (addrs, raft_net) = start_three(&mut d, Some(&disk.dir));
    let (n1, n2, n3) = (&addrs[0], &addrs[1], &addrs[2]);
    let settle = Duration::from_secs(90);
    ok_within(
        n1,
        "PUT",
        "/collections/big",
        json!({"vectors": {"size": LARGE_DIM, "distance": "Euclid"},
               "shard_number": 1, "replication_factor": 3}),
        settle,
    );
    let mut acked = 0u64;
    for _ in 0..2 {
        acked = upsert_large(n2, acked, settle);
    }

    // Cut node 3 off; the majority acknowledges eight more large upserts.
    let node3 = format!("{}-2", d.prefix);
    docker_ok(&["network", "disconnect", &raft_net, &node3]);
    for _ in 0..8 {
        acked = upsert_large(n1, acked, settle);
    }

    // Node 3's disk is filled to its last 8 MiB, then it is healed: catching up needs more.
    let ballast = disk.dir.join("ballast");
    let written = fill(&ballast);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap();
    file.set_len(written.saturating_sub(8 << 20)).unwrap();
    file.sync_all().unwrap();
    docker_ok(&["network", "connect", "--alias", "node3", &raft_net, &node3]);

    // It says it cannot make writes durable, and it has not caught up.
    let deadline = Instant::now() + settle;
    loop {
        if let Some((503, v)) = readyz(n3) {
            eprintln!("node 3 while its disk is full: {v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3's /readyz never reported the full disk: {:?}",
            readyz(n3)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The majority still acknowledges a large write.
    acked = upsert_large(n2, acked, settle);

    // Space returns; node 3 recovers by itself and catches up.
    drop(file);
    std::fs::remove_file(&ballast).unwrap();
    // Node 3's own replica, not an eventual read (which another replica may answer while the
    // local one is still catching up).
    let deadline = Instant::now() + settle;
    loop {
        let local = try_call(n3, None, "GET", "/collections/big/cluster", None);
        let ready = readyz(n3).is_some_and(|(s, _)| s == 200);
        if ready
            && let Ok((200, v)) = &local
            && v["result"]["local_shards"][0]["points_count"] == acked
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not recover and catch up after its disk was freed: {local:?}, readyz {:?}",
            readyz(n3)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for (n, addr) in addrs.iter().enumerate() {
        let strong = ok_within(
            addr,
            "POST",
            "/collections/big/points/count?consistency=strong",
            json!({"exact": true}),
            settle,
        );
        assert_eq!(strong["count"], acked, "node {}: {strong}", n + 1);
    }
    // Node 3's own copies, point by point: the first and last of every acknowledged upsert.
    let ids: Vec<u64> = (0..acked / LARGE_BATCH)
        .flat_map(|b| [b * LARGE_BATCH, (b + 1) * LARGE_BATCH - 1])
        .collect();
    let got = ok(
        n3,
        None,
        "POST",
        "/collections/big/points?consistency=eventual",
        json!({"ids": ids, "with_payload": true}),
    );
    let got = got.as_array().expect("records");
    assert_eq!(got.len(), ids.len(), "{got:?}");
    for p in got {
        assert_eq!(p["payload"]["i"], p["id"], "{p}");
    }
}
