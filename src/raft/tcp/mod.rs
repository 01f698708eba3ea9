//! Node-to-node Raft transport over TCP (`--internal-listen`).
//!
//! ## Wire format
//! Every message is a frame: `u32` little-endian length, then postcard ([`wire`]). A connection
//! starts with the [`handshake`]: a mutual HMAC challenge-response over the cluster secret
//! (which never crosses the wire), its frames capped at [`wire::MAX_HANDSHAKE_FRAME`]; after it
//! frames carry [`WireMsg`]s of at most [`MAX_FRAME`] bytes.
//!
//! - RPC connections: one per peer, shared by every group. The client sends
//!   `Request { id, group, rpc }` frames and may have many in flight; the server answers each with
//!   `Response { id, reply }` in any order.
//! - Snapshot connections: opened per transfer so a large snapshot never delays heartbeats.
//!   `SnapshotBegin { group, vote, meta }`, then per file `FileStart { path, len }`,
//!   `Chunk(bytes)`…, `FileEnd { crc32 }`, then `SnapshotEnd`; the server writes the files into
//!   a fresh incoming directory, checks every path, length and CRC, installs, and answers
//!   `SnapshotDone`. Any error aborts the transfer; openraft retries it.
//! - Application RPCs share the RPC connection: `AppRequest { id, service, payload }` is handed
//!   to the [`AppService`] registered for `service` on the receiving node (1 = cluster metadata,
//!   2 = router data plane), and answered with `AppResponse { id, ok, body }`. Payloads are
//!   opaque bytes (postcard by convention); an unknown service is answered with an error.
//!
//! The handshake authenticates both ends but nothing is encrypted (no TLS here): the internal
//! network must still be private against eavesdroppers.
//!
//! ## Pieces
//! - [`wire`]: framing, the message types and their bounded decoders.
//! - [`handshake`]: the challenge-response.
//! - [`client`]: the per-peer connection pool, requests, snapshot sending.
//! - [`server`]: the accept loop with its connection and memory caps, snapshot receiving.
//! - [`secret`]: the generated per-user key of a loopback cluster without a configured secret.
//!
//! ## Fault injection
//! [`TcpTransport::set_blocked`] cuts this node off from a set of peers for tests: outgoing calls
//! to them fail as unreachable at once, and the server closes (and refuses) connections whose
//! handshake named one of them, so a partition holds in both directions as long as every node
//! blocks the other side.

pub mod client;
pub mod handshake;
pub mod secret;
pub mod server;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::raft::group::RaftNode;
use crate::raft::network::TransportError;
use crate::raft::types::NodeId;
use client::{Answer, Conn};

pub use server::{MAX_CONNECTION_INFLIGHT, MAX_CONNECTIONS};
pub use wire::{MAX_FRAME, PROTOCOL_VERSION, WireError, WireMsg};

const SNAPSHOT_CHUNK: usize = 1 << 20;
/// A peer must complete the handshake within this time or be disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A snapshot receiver gives up when the sender is silent this long.
const SNAPSHOT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    fn service(&self, service: u8) -> Option<Arc<dyn AppService>> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&service)
            .cloned()
    }

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
        self.inner.service(service)
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
        server::serve_with(listener, node, self.inner.clone(), shutdown).await;
    }
}

/// Serve Raft traffic for `node` on `listener` until `shutdown` resolves. Connections must
/// prove they hold `secret`.
pub async fn serve(
    listener: TcpListener,
    node: RaftNode,
    secret: Vec<u8>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = TcpTransport::new(secret, HANDSHAKE_TIMEOUT).inner;
    server::serve_with(listener, node, ctx, shutdown).await;
}

#[cfg(test)]
mod tests;
