//! Node-to-node Raft transport over TCP (`--internal-listen`).
//!
//! ## Wire format
//! Every message is a frame: `u32` little-endian length, then `postcard(WireMsg)`; frames above
//! [`MAX_FRAME`] are refused. A connection starts with [`WireMsg::Hello`] carrying the protocol
//! version and the cluster secret; the server answers `HelloOk` or `HelloRejected` and closes.
//!
//! - RPC connections: one per peer, shared by every group. The client sends
//!   `Request { id, group, rpc }` frames and may have many in flight; the server answers each with
//!   `Response { id, reply }` in any order.
//! - Snapshot connections: opened per transfer so a large snapshot never delays heartbeats.
//!   `SnapshotBegin { group, vote, meta }`, then per file `FileStart { path, len }`,
//!   `Chunk(bytes)`…, `FileEnd { crc32 }`, then `SnapshotEnd`; the server writes the files into
//!   a fresh incoming directory, checks every length and CRC, installs, and answers
//!   `SnapshotDone`. Any error aborts the transfer; openraft retries it.
//!
//! - Application RPCs share the RPC connection: `AppRequest { id, service, payload }` is handed
//!   to the [`AppService`] registered for `service` on the receiving node (1 = cluster metadata,
//!   2 = router data plane), and answered with `AppResponse { id, ok, body }`. Payloads are
//!   opaque bytes (postcard by convention); an unknown service is answered with an error.
//!
//! The secret keeps stray or misconfigured nodes out; it is sent in clear, so the internal
//! network must be private (no TLS here).
//!
//! ## Fault injection
//! [`TcpTransport::set_blocked`] cuts this node off from a set of peers for tests: outgoing calls
//! to them fail as unreachable at once, and the server closes (and refuses) connections whose
//! handshake named one of them, so a partition holds in both directions as long as every node
//! blocks the other side.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::raft::SnapshotResponse;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::raft::group::RaftNode;
use crate::raft::network::{BoxFuture, RaftReply, RaftRpc, Transport, TransportError};
use crate::raft::state_machine::{MANIFEST_FILE, read_manifest};
use crate::raft::types::{GroupId, NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};

/// Largest frame accepted (an append batch or a snapshot chunk).
pub const MAX_FRAME: usize = 64 << 20;
/// Wire protocol version, checked in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;
const SNAPSHOT_CHUNK: usize = 1 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A snapshot receiver gives up when the sender is silent this long.
const SNAPSHOT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every message on an internal connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireMsg {
    /// First frame from the client.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
        /// The client's node id (for logs).
        from: NodeId,
        /// The cluster secret.
        secret: Vec<u8>,
    },
    /// Handshake accepted.
    HelloOk,
    /// Handshake refused, with the reason; the server closes the connection.
    HelloRejected(String),
    /// An RPC for one group.
    Request {
        /// Matches the response to the request.
        id: u64,
        /// The target group.
        group: GroupId,
        /// The RPC.
        rpc: RaftRpc,
    },
    /// The answer to `Request` `id`.
    Response {
        /// The request id.
        id: u64,
        /// The answer.
        reply: RaftReply,
    },
    /// Start of a snapshot transfer.
    SnapshotBegin {
        /// The target group.
        group: GroupId,
        /// The leader's vote.
        vote: Vote,
        /// What the snapshot covers.
        meta: SnapshotMeta,
    },
    /// Start of one file of the snapshot directory.
    FileStart {
        /// Path relative to the snapshot directory, `/`-separated.
        path: String,
        /// File length in bytes.
        len: u64,
    },
    /// File bytes.
    Chunk(#[serde(with = "serde_bytes_vec")] Vec<u8>),
    /// End of the current file.
    FileEnd {
        /// CRC32 of the whole file.
        crc32: u32,
    },
    /// All files sent: install.
    SnapshotEnd,
    /// Outcome of the installation.
    SnapshotDone(Result<SnapshotResponse<TypeConfig>, String>),
    /// An application RPC for the service registered under `service` on the receiver.
    AppRequest {
        /// Matches the response to the request.
        id: u64,
        /// Which [`AppService`] handles it.
        service: u8,
        /// Opaque request bytes.
        #[serde(with = "serde_bytes_vec")]
        payload: Vec<u8>,
    },
    /// The answer to `AppRequest` `id`.
    AppResponse {
        /// The request id.
        id: u64,
        /// Whether the service ran; if not, `body` is the error message.
        ok: bool,
        /// The service's answer bytes, or the error text.
        #[serde(with = "serde_bytes_vec")]
        body: Vec<u8>,
    },
}

/// A boxed future as [`AppService`] handlers return it.
pub type AppFuture = futures_util::future::BoxFuture<'static, Vec<u8>>;

/// A node-to-node application service reached through [`TcpTransport::call_app`]: the cluster
/// metadata service, the router's data plane. Registered per service byte on the node that
/// serves the internal port, so every layer shares one authenticated connection per peer.
pub trait AppService: Send + Sync + 'static {
    /// Answer one request from node `from`. Errors are part of the answer bytes (the transport
    /// only fails when the request cannot be delivered).
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> AppFuture;
}

mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A framing or protocol failure on an internal connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    /// A frame did not decode.
    #[error("bad frame: {0}")]
    Decode(String),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &WireMsg) -> Result<(), WireError> {
    let body = postcard::to_allocvec(msg).map_err(|e| WireError::Decode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_le_bytes()).await?;
    w.write_all(&body).await?;
    Ok(())
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<WireMsg, WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map_err(|e| WireError::Decode(e.to_string()))
}

fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn client_handshake(
    stream: &mut TcpStream,
    from: NodeId,
    secret: &[u8],
) -> Result<(), WireError> {
    write_frame(
        stream,
        &WireMsg::Hello {
            version: PROTOCOL_VERSION,
            from,
            secret: secret.to_vec(),
        },
    )
    .await?;
    match read_frame(stream).await? {
        WireMsg::HelloOk => Ok(()),
        WireMsg::HelloRejected(why) => {
            Err(WireError::Protocol(format!("handshake rejected: {why}")))
        }
        other => Err(WireError::Protocol(format!(
            "unexpected handshake answer {other:?}"
        ))),
    }
}

/// What a pending request on a multiplexed connection waits for.
enum Answer {
    Raft(RaftReply),
    App(Result<Vec<u8>, String>),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// One live multiplexed RPC connection to a peer.
struct Conn {
    addr: String,
    tx: mpsc::Sender<WireMsg>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    /// When a frame last arrived on it, in [`TcpInner::now_ms`].
    last_heard: Arc<AtomicU64>,
    /// Stops the reader of a connection given up on.
    closed: Arc<Notify>,
}

impl Conn {
    /// Gives up on the connection: the next call dials afresh, resolving the name again.
    fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.closed.notify_one();
    }
}

/// The client side of the TCP transport: one RPC connection per peer, (re)dialled lazily and
/// shared by every group. Cheap to clone.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<TcpInner>,
}

struct TcpInner {
    /// This node's id, sent in handshakes (0 until [`TcpTransport::set_node_id`]).
    node_id: AtomicU64,
    secret: Arc<Vec<u8>>,
    conns: tokio::sync::Mutex<HashMap<NodeId, Arc<Conn>>>,
    next_id: AtomicU64,
    connect_timeout: Duration,
    services: RwLock<HashMap<u8, Arc<dyn AppService>>>,
    blocked: RwLock<HashSet<NodeId>>,
    /// Origin of the connections' `last_heard` clocks.
    epoch: Instant,
}

impl TcpInner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

impl TcpTransport {
    /// A transport that authenticates with `secret` and gives up dialling after
    /// `connect_timeout`.
    pub fn new(secret: impl Into<Vec<u8>>, connect_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(TcpInner {
                node_id: AtomicU64::new(0),
                secret: Arc::new(secret.into()),
                conns: tokio::sync::Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                connect_timeout,
                services: RwLock::new(HashMap::new()),
                blocked: RwLock::new(HashSet::new()),
                epoch: Instant::now(),
            }),
        }
    }

    /// Record this node's id: it is sent in handshakes (peers use it for fault injection and
    /// logs) and used as the sender of [`Self::call_app`].
    pub fn set_node_id(&self, id: NodeId) {
        self.inner.node_id.store(id, Ordering::Release);
    }

    /// This node's id as set by [`Self::set_node_id`].
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id.load(Ordering::Acquire)
    }

    /// Serve incoming `AppRequest`s for `service` with `handler` (replaces an earlier one).
    pub fn register_service(&self, service: u8, handler: Arc<dyn AppService>) {
        self.inner
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service, handler);
    }

    /// The handler registered for `service`, if any (for calls a node makes to itself).
    pub fn service(&self, service: u8) -> Option<Arc<dyn AppService>> {
        self.inner
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&service)
            .cloned()
    }

    /// Fault injection: drop all internal traffic to and from `nodes` (replacing the previous
    /// set; empty heals). Open connections to them are closed.
    pub async fn set_blocked(&self, nodes: HashSet<NodeId>) {
        *self
            .inner
            .blocked
            .write()
            .unwrap_or_else(|p| p.into_inner()) = nodes.clone();
        let mut conns = self.inner.conns.lock().await;
        conns.retain(|id, _| !nodes.contains(id));
    }

    /// The nodes currently cut off by [`Self::set_blocked`].
    pub fn blocked(&self) -> HashSet<NodeId> {
        self.inner
            .blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Call `service` on node `target` (reachable at `addr`, its internal address) with
    /// `payload`, waiting at most `timeout`; shares the multiplexed connection Raft uses.
    pub async fn call_app(
        &self,
        target: NodeId,
        addr: &str,
        service: u8,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let inner = self.inner.clone();
        let from = self.node_id();
        let answer = inner
            .request(from, target, addr, timeout, |id| WireMsg::AppRequest {
                id,
                service,
                payload,
            })
            .await?;
        match answer {
            Answer::App(Ok(body)) => Ok(body),
            Answer::App(Err(e)) => Err(TransportError::Remote(target, e)),
            Answer::Raft(_) => Err(TransportError::Remote(
                target,
                "raft reply to an app request".into(),
            )),
        }
    }

    /// Serve this node's internal port: Raft RPCs and snapshots for `node`, and the registered
    /// app services, until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: TcpListener,
        node: RaftNode,
        shutdown: impl Future<Output = ()>,
    ) {
        serve_with(listener, node, self.inner.clone(), shutdown).await;
    }
}

impl TcpInner {
    fn is_blocked(&self, node: NodeId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&node)
    }

    fn check_blocked(&self, target: NodeId) -> Result<(), TransportError> {
        if self.is_blocked(target) {
            return Err(TransportError::Unreachable(
                target,
                "cut off by fault injection".into(),
            ));
        }
        Ok(())
    }

    /// Send one request frame (built from its id) on the shared connection to `target` and
    /// wait for its answer, at most `timeout` in all.
    async fn request(
        self: Arc<Self>,
        from: NodeId,
        target: NodeId,
        addr: &str,
        timeout: Duration,
        frame: impl FnOnce(u64) -> WireMsg,
    ) -> Result<Answer, TransportError> {
        self.check_blocked(target)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.conn(from, target, addr, timeout))
            .await
            .map_err(|_| TransportError::Timeout(target, timeout))??;
        let sent = self.now_ms();
        let work = async {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
            let _guard = PendingGuard {
                pending: conn.pending.clone(),
                id,
            };
            conn.tx
                .send(frame(id))
                .await
                .map_err(|_| TransportError::Unreachable(target, "connection closed".into()))?;
            rx.await
                .map_err(|_| TransportError::Unreachable(target, "connection lost".into()))
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(answer) => answer,
            Err(_) => {
                // Nothing at all came back on the connection while this call waited: the peer
                // is presumed gone without a reset (a cut network, a frozen host, an address
                // that moved), and a connection like that would swallow every later call.
                if conn.last_heard.load(Ordering::Acquire) < sent {
                    conn.close();
                }
                Err(TransportError::Timeout(target, timeout))
            }
        }
    }

    async fn dial(
        &self,
        from: NodeId,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<TcpStream, TransportError> {
        let t = timeout.min(self.connect_timeout);
        let unreachable = |m: String| TransportError::Unreachable(target, m);
        let mut stream = tokio::time::timeout(t, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(format!("connect to {addr} timed out")))?
            .map_err(|e| unreachable(format!("connect to {addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(t, client_handshake(&mut stream, from, &self.secret))
            .await
            .map_err(|_| unreachable(format!("handshake with {addr} timed out")))?
            .map_err(|e| unreachable(format!("handshake with {addr}: {e}")))?;
        Ok(stream)
    }

    async fn conn(
        &self,
        from: NodeId,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<Arc<Conn>, TransportError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&target)
            && c.alive.load(Ordering::Acquire)
            && c.addr == addr
        {
            return Ok(c.clone());
        }
        conns.remove(&target);
        let stream = self.dial(from, target, addr, timeout).await?;
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(1024);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let last_heard = Arc::new(AtomicU64::new(self.now_ms()));
        let closed = Arc::new(Notify::new());
        tokio::spawn(conn_writer(write, rx, alive.clone()));
        tokio::spawn(conn_reader(
            read,
            pending.clone(),
            alive.clone(),
            Arc::clone(&last_heard),
            Arc::clone(&closed),
            self.epoch,
        ));
        let c = Arc::new(Conn {
            addr: addr.to_owned(),
            tx,
            pending,
            alive,
            last_heard,
            closed,
        });
        conns.insert(target, c.clone());
        Ok(c)
    }
}

async fn conn_writer(
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<WireMsg>,
    alive: Arc<AtomicBool>,
) {
    let mut w = BufWriter::new(write);
    while let Some(msg) = rx.recv().await {
        let mut ok = write_frame(&mut w, &msg).await.is_ok();
        // Coalesce what is already queued into one flush.
        while ok && let Ok(more) = rx.try_recv() {
            ok = write_frame(&mut w, &more).await.is_ok();
        }
        if !ok || w.flush().await.is_err() {
            break;
        }
    }
    alive.store(false, Ordering::Release);
}

async fn conn_reader(
    read: OwnedReadHalf,
    pending: Pending,
    alive: Arc<AtomicBool>,
    last_heard: Arc<AtomicU64>,
    closed: Arc<Notify>,
    epoch: Instant,
) {
    let mut r = BufReader::new(read);
    loop {
        let msg = tokio::select! {
            m = read_frame(&mut r) => match m {
                Ok(m) => m,
                Err(_) => break,
            },
            () = closed.notified() => break,
        };
        last_heard.store(epoch.elapsed().as_millis() as u64, Ordering::Release);
        let (id, answer) = match msg {
            WireMsg::Response { id, reply } => (id, Answer::Raft(reply)),
            WireMsg::AppResponse { id, ok, body } => (
                id,
                Answer::App(if ok {
                    Ok(body)
                } else {
                    Err(String::from_utf8_lossy(&body).into_owned())
                }),
            ),
            _ => break,
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(answer);
        }
    }
    alive.store(false, Ordering::Release);
    // Dropping the waiters fails their calls as unreachable.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

struct PendingGuard {
    pending: Pending,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Transport for TcpTransport {
    fn call(
        &self,
        from: NodeId,
        target: NodeId,
        node: &NodeInfo,
        group: GroupId,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> BoxFuture<Result<RaftReply, TransportError>> {
        let this = self.inner.clone();
        let addr = node.internal_addr.clone();
        Box::pin(async move {
            let answer = this
                .request(from, target, &addr, timeout, |id| WireMsg::Request {
                    id,
                    group,
                    rpc,
                })
                .await?;
            match answer {
                Answer::Raft(reply) => Ok(reply),
                Answer::App(_) => Err(TransportError::Remote(
                    target,
                    "app reply to a raft request".into(),
                )),
            }
        })
    }

    fn send_snapshot(
        &self,
        from: NodeId,
        target: NodeId,
        node: &NodeInfo,
        group: GroupId,
        vote: Vote,
        meta: SnapshotMeta,
        dir: PathBuf,
        timeout: Duration,
    ) -> BoxFuture<Result<SnapshotResponse<TypeConfig>, TransportError>> {
        let this = self.inner.clone();
        let addr = node.internal_addr.clone();
        Box::pin(async move {
            this.check_blocked(target)?;
            let work = async {
                let stream = this.dial(from, target, &addr, timeout).await?;
                stream_snapshot(stream, group, vote, meta, &dir)
                    .await
                    .map_err(|e| TransportError::Remote(target, e.to_string()))?
                    .map_err(|e| TransportError::Remote(target, e))
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| TransportError::Timeout(target, timeout))?
        })
    }
}

async fn stream_snapshot(
    stream: TcpStream,
    group: GroupId,
    vote: Vote,
    meta: SnapshotMeta,
    dir: &Path,
) -> Result<Result<SnapshotResponse<TypeConfig>, String>, WireError> {
    let (read, write) = stream.into_split();
    let mut w = BufWriter::new(write);
    let mut r = BufReader::new(read);
    write_frame(&mut w, &WireMsg::SnapshotBegin { group, vote, meta }).await?;
    // Send exactly what the manifest lists (plus the manifest): if the snapshot is replaced and
    // deleted meanwhile, opening a file fails and the transfer is retried with the new one.
    let dir_owned = dir.to_owned();
    let manifest = tokio::task::spawn_blocking(move || read_manifest(&dir_owned))
        .await
        .map_err(|e| WireError::Protocol(e.to_string()))??;
    let files =
        std::iter::once(MANIFEST_FILE.to_owned()).chain(manifest.files.into_iter().map(|(p, _)| p));
    for rel in files {
        let mut f = tokio::fs::File::open(dir.join(&rel)).await?;
        let len = f.metadata().await?.len();
        write_frame(&mut w, &WireMsg::FileStart { path: rel, len }).await?;
        let mut hasher = crc32fast::Hasher::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; SNAPSHOT_CHUNK];
        while sent < len {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Err(WireError::Protocol(
                    "snapshot file shrank while sending".into(),
                ));
            }
            hasher.update(&buf[..n]);
            sent += n as u64;
            write_frame(&mut w, &WireMsg::Chunk(buf[..n].to_vec())).await?;
        }
        write_frame(
            &mut w,
            &WireMsg::FileEnd {
                crc32: hasher.finalize(),
            },
        )
        .await?;
    }
    write_frame(&mut w, &WireMsg::SnapshotEnd).await?;
    w.flush().await?;
    match read_frame(&mut r).await? {
        WireMsg::SnapshotDone(result) => Ok(result),
        other => Err(WireError::Protocol(format!("unexpected answer {other:?}"))),
    }
}

/// Turn a received relative path into a path under `root`, refusing anything that escapes it.
fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, WireError> {
    let mut out = root.to_owned();
    let mut any = false;
    for part in rel.split('/') {
        match Path::new(part).components().next() {
            Some(Component::Normal(c)) if Path::new(part).components().count() == 1 => {
                out.push(c);
                any = true;
            }
            _ => {
                return Err(WireError::Protocol(format!(
                    "refused snapshot path {rel:?}"
                )));
            }
        }
    }
    if !any {
        return Err(WireError::Protocol("empty snapshot path".into()));
    }
    Ok(out)
}

async fn recv_next<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<WireMsg, WireError> {
    tokio::time::timeout(SNAPSHOT_IDLE_TIMEOUT, read_frame(r))
        .await
        .map_err(|_| WireError::Protocol("snapshot sender went silent".into()))?
}

/// Receive the files of a snapshot into `dir`; returns when `SnapshotEnd` arrives.
async fn receive_files<R: AsyncReadExt + Unpin>(r: &mut R, dir: &Path) -> Result<(), WireError> {
    loop {
        match recv_next(r).await? {
            WireMsg::SnapshotEnd => return Ok(()),
            WireMsg::FileStart { path, len } => {
                let target = safe_join(dir, &path)?;
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                let mut f = tokio::fs::File::create(&target).await?;
                let mut hasher = crc32fast::Hasher::new();
                let mut got = 0u64;
                loop {
                    match recv_next(r).await? {
                        WireMsg::Chunk(bytes) => {
                            got += bytes.len() as u64;
                            if got > len {
                                return Err(WireError::Protocol(format!(
                                    "{path}: more bytes than announced"
                                )));
                            }
                            hasher.update(&bytes);
                            f.write_all(&bytes).await?;
                        }
                        WireMsg::FileEnd { crc32 } => {
                            if got != len || hasher.finalize() != crc32 {
                                return Err(WireError::Protocol(format!(
                                    "{path}: length or checksum mismatch"
                                )));
                            }
                            f.sync_all().await?;
                            break;
                        }
                        other => {
                            return Err(WireError::Protocol(format!(
                                "unexpected {other:?} inside a file"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(WireError::Protocol(format!(
                    "unexpected {other:?} in a snapshot"
                )));
            }
        }
    }
}

/// Serve Raft traffic for `node` on `listener` until `shutdown` resolves. Connections must
/// present `secret`.
pub async fn serve(
    listener: TcpListener,
    node: RaftNode,
    secret: Vec<u8>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = TcpTransport::new(secret, HANDSHAKE_TIMEOUT).inner;
    serve_with(listener, node, ctx, shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    node: RaftNode,
    ctx: Arc<TcpInner>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let node = node.clone();
                    let ctx = ctx.clone();
                    conns.spawn(async move {
                        if let Err(e) = serve_conn(stream, node, ctx).await {
                            tracing::debug!(%peer, error = %e, "internal connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_conn(
    stream: TcpStream,
    node: RaftNode,
    ctx: Arc<TcpInner>,
) -> Result<(), WireError> {
    let secret: &[u8] = &ctx.secret;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut r = BufReader::new(read);
    let mut w = BufWriter::new(write);
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut r))
        .await
        .map_err(|_| WireError::Protocol("no handshake".into()))??;
    let peer = match &hello {
        WireMsg::Hello { from, .. } => *from,
        _ => 0,
    };
    let refusal = match &hello {
        WireMsg::Hello { version, .. } if *version != PROTOCOL_VERSION => Some(format!(
            "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
        )),
        WireMsg::Hello { secret: s, .. } if !secrets_equal(s, secret) => {
            Some("wrong cluster secret".to_owned())
        }
        WireMsg::Hello { from, .. } if ctx.is_blocked(*from) => {
            Some(format!("node {from} is cut off by fault injection"))
        }
        WireMsg::Hello { .. } => None,
        _ => Some("expected Hello".to_owned()),
    };
    if let Some(why) = refusal {
        write_frame(&mut w, &WireMsg::HelloRejected(why.clone())).await?;
        w.flush().await?;
        return Err(WireError::Protocol(why));
    }
    write_frame(&mut w, &WireMsg::HelloOk).await?;
    w.flush().await?;

    let first = read_frame(&mut r).await?;
    if let WireMsg::SnapshotBegin { group, vote, meta } = first {
        let dir = node
            .incoming_snapshot_dir(group)
            .map_err(|e| WireError::Protocol(e.to_string()))?;
        let result = match receive_files(&mut r, &dir).await {
            Ok(()) => node.install_snapshot(group, vote, meta, dir).await,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(e.to_string())
            }
        };
        write_frame(&mut w, &WireMsg::SnapshotDone(result)).await?;
        w.flush().await?;
        return Ok(());
    }

    // An RPC connection: answer requests concurrently, one writer task serialises replies.
    let (tx, mut rx) = mpsc::channel::<WireMsg>(1024);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut ok = write_frame(&mut w, &msg).await.is_ok();
            while ok && let Ok(more) = rx.try_recv() {
                ok = write_frame(&mut w, &more).await.is_ok();
            }
            if !ok || w.flush().await.is_err() {
                break;
            }
        }
    });
    let mut next = Some(first);
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match read_frame(&mut r).await {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        if ctx.is_blocked(peer) {
            // Partitioned meanwhile: drop the connection without answering.
            break;
        }
        match msg {
            WireMsg::Request { id, group, rpc } => {
                let node = node.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let reply = node.handle_rpc(group, rpc).await;
                    let _ = tx.send(WireMsg::Response { id, reply }).await;
                });
            }
            WireMsg::AppRequest {
                id,
                service,
                payload,
            } => {
                let handler = ctx
                    .services
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&service)
                    .cloned();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (ok, body) = match handler {
                        Some(h) => (true, h.handle(peer, payload).await),
                        None => (
                            false,
                            format!("no service {service} on this node").into_bytes(),
                        ),
                    };
                    let _ = tx.send(WireMsg::AppResponse { id, ok, body }).await;
                });
            }
            other => {
                drop(tx);
                writer.abort();
                return Err(WireError::Protocol(format!(
                    "unexpected {other:?} on an RPC connection"
                )));
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let root = Path::new("/data/in");
        assert_eq!(
            safe_join(root, "a/b.seg").unwrap(),
            Path::new("/data/in/a/b.seg")
        );
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "a//b", "."] {
            assert!(safe_join(root, bad).is_err(), "{bad:?} must be refused");
        }
    }

    struct Echo;

    impl AppService for Echo {
        fn handle(&self, from: NodeId, payload: Vec<u8>) -> AppFuture {
            Box::pin(async move {
                let mut out = from.to_le_bytes().to_vec();
                out.extend_from_slice(&payload);
                out
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn app_calls_share_the_connection_and_fault_injection_cuts_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let server = TcpTransport::new(b"s".to_vec(), Duration::from_secs(1));
        server.set_node_id(2);
        server.register_service(7, Arc::new(Echo));
        let node = RaftNode::open(
            2,
            dir.path(),
            Arc::new(server.clone()),
            crate::raft::RaftConfig::fast(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let served = tokio::spawn({
            let server = server.clone();
            async move {
                server
                    .serve(listener, node, async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            }
        });
        let client = TcpTransport::new(b"s".to_vec(), Duration::from_secs(1));
        client.set_node_id(1);
        let t = Duration::from_secs(2);
        let call = |payload: &'static [u8], service: u8| {
            let client = client.clone();
            let addr = addr.clone();
            async move {
                client
                    .call_app(2, &addr, service, payload.to_vec(), t)
                    .await
            }
        };
        let mut want = 1u64.to_le_bytes().to_vec();
        want.extend_from_slice(b"hi");
        assert_eq!(call(b"hi", 7).await.unwrap(), want);
        // Many calls in flight on the one connection.
        let many = futures_util::future::join_all((0..50).map(|_| call(b"hi", 7))).await;
        assert!(many.iter().all(|r| r.as_ref().is_ok_and(|b| *b == want)));
        assert!(matches!(
            call(b"x", 9).await,
            Err(TransportError::Remote(2, _))
        ));

        // Client side cut: fails at once, without dialling.
        client.set_blocked([2].into()).await;
        assert!(matches!(
            call(b"hi", 7).await,
            Err(TransportError::Unreachable(2, _))
        ));
        client.set_blocked(HashSet::new()).await;
        assert!(call(b"hi", 7).await.is_ok());

        // Server side cut: the open connection is dropped and new handshakes are refused.
        server.set_blocked([1].into()).await;
        assert!(call(b"hi", 7).await.is_err());
        assert!(call(b"hi", 7).await.is_err());
        server.set_blocked(HashSet::new()).await;
        let healed = async {
            loop {
                if call(b"hi", 7).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), healed)
            .await
            .expect("calls work again after healing");

        // A wrong secret is refused.
        let stranger = TcpTransport::new(b"nope".to_vec(), Duration::from_secs(1));
        assert!(stranger.call_app(2, &addr, 7, Vec::new(), t).await.is_err());

        let _ = stop_tx.send(());
        served.await.unwrap();
    }

    #[test]
    fn secret_compare() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
