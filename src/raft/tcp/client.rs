//! The client side of the internal port: one multiplexed RPC connection per peer, dialled lazily,
//! authenticated by [`handshake::client`], shared by every group and app service; snapshot
//! transfers on a connection of their own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::raft::SnapshotResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};

use super::wire::{WireError, WireMsg, encode_message, read_message, write_message, write_queued};
use super::{SNAPSHOT_CHUNK, TcpInner, TcpTransport, handshake};
use crate::raft::network::{BoxFuture, RaftReply, RaftRpc, Transport, TransportError};
use crate::raft::state_machine::{MANIFEST_FILE, read_manifest};
use crate::raft::types::{GroupId, NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};

/// What a pending request on a multiplexed connection waits for.
pub(super) enum Answer {
    Raft(RaftReply),
    App(Result<Vec<u8>, String>),
}

pub(super) type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// One live multiplexed RPC connection to a peer.
pub(super) struct Conn {
    addr: String,
    /// Encoded frames for the connection's writer.
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    /// When a frame last arrived on it, in [`TcpInner::now_ms`].
    last_heard: Arc<AtomicU64>,
    /// Stops the reader of a connection given up on.
    closed: Arc<Notify>,
}

impl Conn {
    /// Gives up on the connection: the next call dials afresh, resolving the name again.
    pub(super) fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.closed.notify_one();
    }
}

impl TcpInner {
    pub(super) fn is_blocked(&self, node: NodeId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&node)
    }

    pub(super) fn check_blocked(&self, target: NodeId) -> Result<(), TransportError> {
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
    pub(super) async fn request(
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
            // Refused here, not by the writer: the shared connection stays up.
            let frame = encode_message(&frame(id))
                .map_err(|e| TransportError::Remote(target, e.to_string()))?;
            conn.tx
                .send(frame)
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

    pub(super) async fn dial(
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
        tokio::time::timeout(t, handshake::client(&mut stream, from, &self.secret))
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
    mut rx: mpsc::Receiver<Vec<u8>>,
    alive: Arc<AtomicBool>,
) {
    write_queued(&mut BufWriter::new(write), &mut rx).await;
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
            m = read_message(&mut r) => match m {
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
    write_message(&mut w, &WireMsg::SnapshotBegin { group, vote, meta }).await?;
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
        write_message(&mut w, &WireMsg::FileStart { path: rel, len }).await?;
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
            write_message(&mut w, &WireMsg::Chunk(buf[..n].to_vec())).await?;
        }
        write_message(
            &mut w,
            &WireMsg::FileEnd {
                crc32: hasher.finalize(),
            },
        )
        .await?;
    }
    write_message(&mut w, &WireMsg::SnapshotEnd).await?;
    w.flush().await?;
    match read_message(&mut r).await? {
        WireMsg::SnapshotDone(result) => Ok(result),
        other => Err(WireError::Protocol(format!("unexpected answer {other:?}"))),
    }
}
