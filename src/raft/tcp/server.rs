//! The server side of the internal port: the accept loop (at most [`MAX_CONNECTIONS`] at once),
//! the handshake, then either a multiplexed RPC connection or one snapshot transfer.
//!
//! Memory: before authentication a connection holds at most one [`MAX_HANDSHAKE_FRAME`] buffer
//! and is closed after [`HANDSHAKE_TIMEOUT`]; after it, the frames a connection has read but not
//! yet answered total at most [`MAX_CONNECTION_INFLIGHT`] bytes (the reader waits for answers
//! to go out before reading more).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

#[cfg(doc)]
use super::wire::MAX_HANDSHAKE_FRAME;
use super::wire::{
    MAX_FRAME, WireError, WireMsg, decode_message, encode_message, read_frame_body, read_frame_len,
    read_message, write_message, write_queued,
};
use super::{HANDSHAKE_TIMEOUT, SNAPSHOT_IDLE_TIMEOUT, TcpInner, handshake};
use crate::raft::group::RaftNode;
use crate::raft::network::RaftReply;
use crate::raft::state_machine::snapshot_path;

/// Most internal connections served at once; further ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Most bytes of received, not yet answered frames per connection.
pub const MAX_CONNECTION_INFLIGHT: usize = 2 * MAX_FRAME;

/// Serve Raft traffic for `node` on `listener` until `shutdown` resolves.
pub(super) async fn serve_with(
    listener: TcpListener,
    node: RaftNode,
    ctx: Arc<TcpInner>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, max = MAX_CONNECTIONS, "internal connection refused: too many open");
                        drop(stream);
                        continue;
                    };
                    let node = node.clone();
                    let ctx = ctx.clone();
                    conns.spawn(async move {
                        if let Err(e) = serve_conn(stream, node, ctx).await {
                            tracing::debug!(%peer, error = %e, "internal connection closed");
                        }
                        drop(slot);
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
    mut stream: TcpStream,
    node: RaftNode,
    ctx: Arc<TcpInner>,
) -> Result<(), WireError> {
    stream.set_nodelay(true)?;
    let admit = |from| {
        ctx.is_blocked(from)
            .then(|| format!("node {from} is cut off by fault injection"))
    };
    let peer = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(&mut stream, &ctx.secret, &admit),
    )
    .await
    .map_err(|_| WireError::Protocol("no handshake".into()))??;

    let (read, write) = stream.into_split();
    let mut r = BufReader::new(read);
    let mut w = BufWriter::new(write);
    let first = read_message(&mut r).await?;
    if let WireMsg::SnapshotBegin { group, vote, meta } = first {
        // The vote first: a stale leader's transfer is answered unread.
        let early = match node.stale_snapshot_vote(group, &vote) {
            Ok(None) => None,
            Ok(Some(answer)) => Some(Ok(answer)),
            Err(e) => Some(Err(e)),
        };
        if let Some(result) = early {
            write_message(&mut w, &WireMsg::SnapshotDone(result)).await?;
            w.flush().await?;
            return Ok(());
        }
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
        write_message(&mut w, &WireMsg::SnapshotDone(result)).await?;
        w.flush().await?;
        return Ok(());
    }

    // An RPC connection: answer requests concurrently, one writer task serialises replies.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::spawn(async move { write_queued(&mut w, &mut rx).await });
    let budget = Arc::new(Semaphore::new(MAX_CONNECTION_INFLIGHT));
    let mut next = Some((first, None));
    loop {
        let (msg, permit) = match next.take() {
            Some(m) => m,
            None => match read_budgeted(&mut r, &budget).await {
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
                    send_reply(&tx, WireMsg::Response { id, reply }).await;
                    drop(permit);
                });
            }
            WireMsg::AppRequest {
                id,
                service,
                payload,
            } => {
                let handler = ctx.service(service);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (ok, body) = match handler {
                        Some(h) => (true, h.handle(peer, payload).await),
                        None => (
                            false,
                            format!("no service {service} on this node").into_bytes(),
                        ),
                    };
                    send_reply(&tx, WireMsg::AppResponse { id, ok, body }).await;
                    drop(permit);
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

/// Reads one message once the connection's in-flight budget has room for its bytes; the permit
/// travels with the request and is released when it has been answered.
async fn read_budgeted<R: AsyncRead + Unpin>(
    r: &mut R,
    budget: &Arc<Semaphore>,
) -> Result<(WireMsg, Option<tokio::sync::OwnedSemaphorePermit>), WireError> {
    let len = read_frame_len(r, MAX_FRAME).await?;
    let permit = budget
        .clone()
        .acquire_many_owned(len.max(1) as u32)
        .await
        .map_err(|_| WireError::Protocol("connection closing".into()))?;
    let msg = decode_message(&read_frame_body(r, len).await?)?;
    Ok((msg, Some(permit)))
}

async fn recv_next<R: AsyncRead + Unpin>(r: &mut R) -> Result<WireMsg, WireError> {
    tokio::time::timeout(SNAPSHOT_IDLE_TIMEOUT, read_message(r))
        .await
        .map_err(|_| WireError::Protocol("snapshot sender went silent".into()))?
}

/// Receive the files of a snapshot into `dir`; returns when `SnapshotEnd` arrives. Each path is
/// checked ([`snapshot_path`]) before anything is created; a path sent twice is refused.
async fn receive_files<R: AsyncRead + Unpin>(r: &mut R, dir: &Path) -> Result<(), WireError> {
    let mut seen = std::collections::HashSet::new();
    loop {
        match recv_next(r).await? {
            WireMsg::SnapshotEnd => return Ok(()),
            WireMsg::FileStart { path, len } => {
                let target =
                    snapshot_path(dir, &path).map_err(|e| WireError::Protocol(e.to_string()))?;
                if !seen.insert(path.clone()) {
                    return Err(WireError::Protocol(format!("{path}: sent twice")));
                }
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

/// Queues a reply for the connection's writer. A reply over the frame cap is never written (the
/// connection is shared by every group and service): its caller gets an error reply naming the
/// sizes instead, so it fails at once rather than waiting out its deadline.
async fn send_reply(tx: &mpsc::Sender<Vec<u8>>, reply: WireMsg) {
    let frame = match encode_message(&reply) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "an internal reply is over the frame cap; answering an error");
            match encode_message(&refusal(reply, &e.to_string())) {
                Ok(frame) => frame,
                Err(e) => return tracing::warn!(error = %e, "dropped an internal reply"),
            }
        }
    };
    let _ = tx.send(frame).await;
}

/// The error reply that stands for `reply`, which could not be sent: `why`.
fn refusal(reply: WireMsg, why: &str) -> WireMsg {
    let message = format!("the reply could not be sent: {why}");
    match reply {
        WireMsg::Response { id, .. } => WireMsg::Response {
            id,
            reply: RaftReply::Error(message),
        },
        WireMsg::AppResponse { id, .. } => WireMsg::AppResponse {
            id,
            ok: false,
            body: message.into_bytes(),
        },
        // Only responses are sent as replies.
        other => other,
    }
}
