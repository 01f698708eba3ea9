//! Framing and codec of the internal port: length-prefixed postcard frames, read with a cap
//! chosen by the caller *before* anything is allocated.
//!
//! A frame is a `u32` little-endian body length, then the body. Two caps apply:
//! [`MAX_HANDSHAKE_FRAME`] until the peer has authenticated (the server then holds at most one
//! such buffer per connection), [`MAX_FRAME`] afterwards. A length above the cap is refused as
//! soon as its four bytes arrive; below it the body buffer grows only as bytes actually arrive,
//! so a peer that announces a large frame and sends nothing costs nothing.
//!
//! [`decode_handshake`] and [`decode_message`] are the pure decoders of the two phases (fuzzed
//! by `tests/fuzz` targets `wire_handshake` and `wire_message`). No message type is recursive,
//! so decoding depth is bounded by the types; allocation is bounded by the frame length
//! (postcard never pre-allocates more than the input can fill).

use openraft::raft::SnapshotResponse;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::raft::network::{RaftReply, RaftRpc};
use crate::raft::types::{GroupId, NodeId, SnapshotMeta, TypeConfig, Vote};

/// Largest frame accepted after the handshake (an append batch or a snapshot chunk).
pub const MAX_FRAME: usize = 64 << 20;
/// Largest frame accepted before the peer has authenticated: every handshake message fits.
pub const MAX_HANDSHAKE_FRAME: usize = 256;
/// Wire protocol version, checked in the handshake. 2: challenge-response handshake.
pub const PROTOCOL_VERSION: u32 = 2;
/// Length of a handshake nonce and of an HMAC-SHA256 proof.
pub const NONCE_LEN: usize = 32;

/// The handshake, before any [`WireMsg`]: see [`super::handshake`] for the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Client → server, first frame: who is calling, and the client's fresh nonce.
    ClientHello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
        /// The client's node id (for fault injection and logs; bound into the proofs).
        from: NodeId,
        /// Fresh random bytes from the client.
        nonce: [u8; NONCE_LEN],
    },
    /// Server → client: the server's fresh nonce.
    Challenge {
        /// Fresh random bytes from the server.
        nonce: [u8; NONCE_LEN],
    },
    /// Client → server: HMAC proving the client holds the secret.
    ClientProof {
        /// `HMAC-SHA256(secret, "shoal client" ‖ transcript)`.
        mac: [u8; NONCE_LEN],
    },
    /// Server → client: accepted, with the HMAC proving the server holds the secret.
    ServerProof {
        /// `HMAC-SHA256(secret, "shoal server" ‖ transcript)`.
        mac: [u8; NONCE_LEN],
    },
    /// Either side: refused, with the reason (at most [`MAX_REASON`] bytes); the connection
    /// closes.
    Rejected(String),
}

/// Longest refusal reason sent, so a `Rejected` frame always fits [`MAX_HANDSHAKE_FRAME`].
pub const MAX_REASON: usize = 160;

/// Every message on an authenticated internal connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireMsg {
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
        /// Which [`super::AppService`] handles it.
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
    /// A frame announced more bytes than the current cap.
    #[error("frame of {len} bytes exceeds the limit of {cap}")]
    FrameTooLarge {
        /// Announced (or encoded) length.
        len: usize,
        /// The cap in force.
        cap: usize,
    },
    /// A frame did not decode.
    #[error("bad frame: {0}")]
    Decode(String),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Decodes one pre-authentication frame body.
pub fn decode_handshake(body: &[u8]) -> Result<Handshake, WireError> {
    if body.len() > MAX_HANDSHAKE_FRAME {
        return Err(WireError::FrameTooLarge {
            len: body.len(),
            cap: MAX_HANDSHAKE_FRAME,
        });
    }
    postcard::from_bytes(body).map_err(|e| WireError::Decode(e.to_string()))
}

/// Decodes one post-authentication frame body.
pub fn decode_message(body: &[u8]) -> Result<WireMsg, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge {
            len: body.len(),
            cap: MAX_FRAME,
        });
    }
    postcard::from_bytes(body).map_err(|e| WireError::Decode(e.to_string()))
}

/// `msg` as one frame (length prefix and body), refused above `cap` bytes of body.
pub fn encode_frame<T: Serialize>(msg: &T, cap: usize) -> Result<Vec<u8>, WireError> {
    let mut frame =
        postcard::to_extend(msg, vec![0u8; 4]).map_err(|e| WireError::Decode(e.to_string()))?;
    let len = frame.len() - 4;
    if len > cap {
        return Err(WireError::FrameTooLarge { len, cap });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// One post-handshake frame of `msg` (cap [`MAX_FRAME`]), for [`write_queued`]. Whoever queues
/// a message encodes it, so an oversized one is refused to its sender (issue 14, finding 2),
/// never discovered by the writer of a connection shared by every group and service.
pub fn encode_message(msg: &WireMsg) -> Result<Vec<u8>, WireError> {
    encode_frame(msg, MAX_FRAME)
}

/// Writes `msg` as one frame of at most `cap` bytes.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, cap: usize) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    w.write_all(&encode_frame(msg, cap)?).await?;
    Ok(())
}

/// Reads the length prefix of the next frame and refuses it above `cap`, allocating nothing.
pub async fn read_frame_len<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<usize, WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > cap {
        return Err(WireError::FrameTooLarge { len, cap });
    }
    Ok(len)
}

/// Reads a frame body of `len` bytes, growing the buffer only as bytes arrive.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let got = (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if got != len {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Reads one handshake frame (cap [`MAX_HANDSHAKE_FRAME`]).
pub async fn read_handshake<R: AsyncRead + Unpin>(r: &mut R) -> Result<Handshake, WireError> {
    let len = read_frame_len(r, MAX_HANDSHAKE_FRAME).await?;
    decode_handshake(&read_frame_body(r, len).await?)
}

/// Writes one handshake frame.
pub async fn write_handshake<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Handshake,
) -> Result<(), WireError> {
    write_frame(w, msg, MAX_HANDSHAKE_FRAME).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one post-handshake message (cap [`MAX_FRAME`]).
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<WireMsg, WireError> {
    let len = read_frame_len(r, MAX_FRAME).await?;
    decode_message(&read_frame_body(r, len).await?)
}

/// Writes one post-handshake message (not flushed: callers coalesce).
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &WireMsg,
) -> Result<(), WireError> {
    write_frame(w, msg, MAX_FRAME).await
}

/// Writes every frame `rx` yields ([`encode_message`]) until it closes or a write fails: what
/// is already queued goes out in one flush. The one writer loop of both ends of a connection.
pub async fn write_queued<W: AsyncWrite + Unpin>(
    w: &mut W,
    rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    while let Some(frame) = rx.recv().await {
        let mut ok = w.write_all(&frame).await.is_ok();
        while ok && let Ok(more) = rx.try_recv() {
            ok = w.write_all(&more).await.is_ok();
        }
        if !ok || w.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields a length prefix and then never anything more.
    struct Stalled {
        prefix: [u8; 4],
        at: usize,
    }

    impl AsyncRead for Stalled {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.at < 4 {
                let at = self.at;
                let n = (4 - at).min(buf.remaining());
                buf.put_slice(&self.prefix[at..at + n]);
                self.at += n;
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn oversized_handshake_frame_is_refused_from_its_length_alone() {
        // 63 MiB announced before authentication: refused as soon as the prefix is read; the
        // reader never yields more, so reaching the body would hang this test.
        let mut r = Stalled {
            prefix: ((63u32 << 20).to_le_bytes()),
            at: 0,
        };
        let err = read_handshake(&mut r).await.unwrap_err();
        assert!(
            matches!(err, WireError::FrameTooLarge { len, cap } if len == 63 << 20 && cap == MAX_HANDSHAKE_FRAME),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_short_bodies_fail() {
        let mut buf = Vec::new();
        let hello = Handshake::ClientHello {
            version: PROTOCOL_VERSION,
            from: u64::MAX,
            nonce: [7; NONCE_LEN],
        };
        write_frame(&mut buf, &hello, MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let reason = "x".repeat(MAX_REASON);
        write_frame(
            &mut buf,
            &Handshake::Rejected(reason.clone()),
            MAX_HANDSHAKE_FRAME,
        )
        .await
        .unwrap();
        let mut r = &buf[..];
        assert_eq!(read_handshake(&mut r).await.unwrap(), hello);
        assert_eq!(
            read_handshake(&mut r).await.unwrap(),
            Handshake::Rejected(reason)
        );
        // A body cut short is an error, not a hang or a short frame.
        let mut r = &buf[..buf.len() / 2];
        assert!(read_handshake(&mut r).await.is_ok());
        assert!(read_handshake(&mut r).await.is_err());
        // A message frame is not a handshake and vice versa.
        let mut msg = Vec::new();
        write_message(&mut msg, &WireMsg::SnapshotEnd)
            .await
            .unwrap();
        assert!(matches!(
            read_message(&mut &msg[..]).await.unwrap(),
            WireMsg::SnapshotEnd
        ));
    }
}
