//! Mutual authentication of an internal connection by challenge-response over the cluster
//! secret. The secret itself never crosses the wire.
//!
//! ```text
//! client                                   server
//!   ClientHello { version, from, nonce_c } →
//!                                          ← Challenge { nonce_s }       (or Rejected: version)
//!   ClientProof { mac_c }                  →
//!                                          ← ServerProof { mac_s }       (or Rejected: secret)
//! ```
//!
//! `transcript = "shoal-internal/2" ‖ nonce_c ‖ nonce_s ‖ from (u64 LE)`,
//! `mac_c = HMAC-SHA256(secret, "client" ‖ transcript)`, `mac_s = HMAC-SHA256(secret, "server" ‖
//! transcript)`. Both nonces are 32 fresh random bytes, so a recorded handshake cannot be
//! replayed (the other side's nonce differs), and the distinct labels keep one side's proof from
//! passing as the other's. The client proves itself first: a peer without the secret never gets
//! a MAC out of the server (nothing to grind offline), and the server's proof then tells the
//! client it reached a real member, not an impostor. Proofs are compared in constant time.
//!
//! Every handshake frame is read with the cap [`MAX_HANDSHAKE_FRAME`]; the caller bounds the
//! whole exchange with a timeout.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(doc)]
use super::wire::MAX_HANDSHAKE_FRAME;
use super::wire::{
    Handshake, MAX_REASON, NONCE_LEN, PROTOCOL_VERSION, WireError, read_handshake, write_handshake,
};
use crate::raft::types::NodeId;

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"shoal-internal/2";

fn mac(
    secret: &[u8],
    label: &[u8],
    nonce_c: &[u8; NONCE_LEN],
    nonce_s: &[u8; NONCE_LEN],
    from: NodeId,
) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(label);
    m.update(DOMAIN);
    m.update(nonce_c);
    m.update(nonce_s);
    m.update(&from.to_le_bytes());
    m
}

fn proof(
    secret: &[u8],
    label: &[u8],
    nonce_c: &[u8; NONCE_LEN],
    nonce_s: &[u8; NONCE_LEN],
    from: NodeId,
) -> [u8; NONCE_LEN] {
    mac(secret, label, nonce_c, nonce_s, from)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a received proof.
fn verify(
    secret: &[u8],
    label: &[u8],
    nonce_c: &[u8; NONCE_LEN],
    nonce_s: &[u8; NONCE_LEN],
    from: NodeId,
    got: &[u8; NONCE_LEN],
) -> bool {
    mac(secret, label, nonce_c, nonce_s, from)
        .verify_slice(got)
        .is_ok()
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

fn reason(why: impl Into<String>) -> String {
    let mut why = why.into();
    if why.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
    }
    why
}

fn unexpected(what: &Handshake) -> WireError {
    WireError::Protocol(format!("unexpected handshake message {what:?}"))
}

/// Runs the client side on a fresh connection: proves knowledge of `secret` and checks that the
/// server knows it too.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    from: NodeId,
    secret: &[u8],
) -> Result<(), WireError> {
    let nonce_c = fresh_nonce();
    write_handshake(
        stream,
        &Handshake::ClientHello {
            version: PROTOCOL_VERSION,
            from,
            nonce: nonce_c,
        },
    )
    .await?;
    let nonce_s = match read_handshake(stream).await? {
        Handshake::Challenge { nonce } => nonce,
        Handshake::Rejected(why) => {
            return Err(WireError::Protocol(format!("handshake rejected: {why}")));
        }
        other => return Err(unexpected(&other)),
    };
    let mac_c = proof(secret, b"client", &nonce_c, &nonce_s, from);
    write_handshake(stream, &Handshake::ClientProof { mac: mac_c }).await?;
    match read_handshake(stream).await? {
        Handshake::ServerProof { mac }
            if verify(secret, b"server", &nonce_c, &nonce_s, from, &mac) =>
        {
            Ok(())
        }
        Handshake::ServerProof { .. } => Err(WireError::Protocol(
            "the server does not know the cluster secret".into(),
        )),
        Handshake::Rejected(why) => Err(WireError::Protocol(format!("handshake rejected: {why}"))),
        other => Err(unexpected(&other)),
    }
}

/// What the server decides about a peer once it has said hello: `Some(reason)` refuses it
/// (fault injection).
pub type Admit<'a> = &'a (dyn Fn(NodeId) -> Option<String> + Sync);

/// Runs the server side on a fresh connection. Returns the authenticated peer's node id; on
/// any failure the peer has been told why (when it got that far) and the caller closes.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
    admit: Admit<'_>,
) -> Result<NodeId, WireError> {
    let (from, nonce_c) = match read_handshake(stream).await? {
        Handshake::ClientHello {
            version,
            from,
            nonce,
        } => {
            if version != PROTOCOL_VERSION {
                let why = reason(format!(
                    "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
                ));
                write_handshake(stream, &Handshake::Rejected(why.clone())).await?;
                return Err(WireError::Protocol(why));
            }
            (from, nonce)
        }
        other => return Err(unexpected(&other)),
    };
    let nonce_s = fresh_nonce();
    write_handshake(stream, &Handshake::Challenge { nonce: nonce_s }).await?;
    let mac_c = match read_handshake(stream).await? {
        Handshake::ClientProof { mac } => mac,
        other => return Err(unexpected(&other)),
    };
    let refusal = if !verify(secret, b"client", &nonce_c, &nonce_s, from, &mac_c) {
        Some("wrong cluster secret".to_owned())
    } else {
        admit(from)
    };
    if let Some(why) = refusal {
        let why = reason(why);
        write_handshake(stream, &Handshake::Rejected(why.clone())).await?;
        return Err(WireError::Protocol(why));
    }
    let mac_s = proof(secret, b"server", &nonce_c, &nonce_s, from);
    write_handshake(stream, &Handshake::ServerProof { mac: mac_s }).await?;
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &[u8] = b"correct horse battery staple";

    fn admit_all(_: NodeId) -> Option<String> {
        None
    }

    /// Runs a client and a server handshake over an in-memory pipe, recording every byte either
    /// side sent.
    async fn run(
        client_secret: &[u8],
        server_secret: &[u8],
    ) -> (Result<(), WireError>, Result<NodeId, WireError>, Vec<u8>) {
        let (mut c, c_far) = tokio::io::duplex(4096);
        let (mut s, s_far) = tokio::io::duplex(4096);
        // A tap between the two: forwards and records both directions.
        let tap = tokio::spawn(async move {
            let (mut cr, mut cw) = tokio::io::split(c_far);
            let (mut sr, mut sw) = tokio::io::split(s_far);
            let up = async {
                let mut seen = Vec::new();
                let mut buf = [0u8; 512];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = sw.shutdown().await;
                seen
            };
            let down = async {
                let mut seen = Vec::new();
                let mut buf = [0u8; 512];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = cw.shutdown().await;
                seen
            };
            let (mut a, b) = tokio::join!(up, down);
            a.extend(b);
            a
        });
        let client_secret = client_secret.to_vec();
        let server_secret = server_secret.to_vec();
        let srv = tokio::spawn(async move {
            let r = server(&mut s, &server_secret, &admit_all).await;
            drop(s);
            r
        });
        let cr = client(&mut c, 42, &client_secret).await;
        drop(c);
        let sr = srv.await.unwrap();
        (cr, sr, tap.await.unwrap())
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways_and_never_sends_it() {
        let (c, s, wire) = run(SECRET, SECRET).await;
        c.unwrap();
        assert_eq!(s.unwrap(), 42);
        assert!(!wire.is_empty());
        assert!(
            !wire.windows(SECRET.len()).any(|w| w == SECRET),
            "the secret crossed the wire"
        );
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_either_side() {
        let (c, s, _) = run(b"guess", SECRET).await;
        assert!(c.is_err());
        assert!(
            matches!(s, Err(WireError::Protocol(ref m)) if m.contains("secret")),
            "{s:?}"
        );
    }

    #[tokio::test]
    async fn an_impostor_server_is_detected_by_the_client() {
        // The server answers the client's proof with a forged one.
        let (mut c, mut s) = tokio::io::duplex(4096);
        let fake = tokio::spawn(async move {
            let _ = read_handshake(&mut s).await;
            write_handshake(
                &mut s,
                &Handshake::Challenge {
                    nonce: [1; NONCE_LEN],
                },
            )
            .await
            .unwrap();
            let _ = read_handshake(&mut s).await;
            write_handshake(
                &mut s,
                &Handshake::ServerProof {
                    mac: [0; NONCE_LEN],
                },
            )
            .await
            .unwrap();
        });
        let r = client(&mut c, 1, SECRET).await;
        assert!(
            matches!(r, Err(WireError::Protocol(ref m)) if m.contains("does not know")),
            "{r:?}"
        );
        fake.await.unwrap();
    }

    #[tokio::test]
    async fn a_replayed_client_proof_is_refused() {
        // Record a good client's proof, then replay it on a new connection: the server's nonce
        // differs, so the proof no longer matches.
        let (mut c, mut s) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move { server(&mut s, SECRET, &admit_all).await });
        let nonce_c = [9u8; NONCE_LEN];
        write_handshake(
            &mut c,
            &Handshake::ClientHello {
                version: PROTOCOL_VERSION,
                from: 5,
                nonce: nonce_c,
            },
        )
        .await
        .unwrap();
        let Handshake::Challenge { nonce: first_s } = read_handshake(&mut c).await.unwrap() else {
            panic!()
        };
        let recorded = proof(SECRET, b"client", &nonce_c, &first_s, 5);
        write_handshake(&mut c, &Handshake::ClientProof { mac: recorded })
            .await
            .unwrap();
        assert!(matches!(
            read_handshake(&mut c).await.unwrap(),
            Handshake::ServerProof { .. }
        ));
        assert_eq!(srv.await.unwrap().unwrap(), 5);

        let (mut c, mut s) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move { server(&mut s, SECRET, &admit_all).await });
        write_handshake(
            &mut c,
            &Handshake::ClientHello {
                version: PROTOCOL_VERSION,
                from: 5,
                nonce: nonce_c,
            },
        )
        .await
        .unwrap();
        let Handshake::Challenge { nonce: second_s } = read_handshake(&mut c).await.unwrap() else {
            panic!()
        };
        assert_ne!(first_s, second_s, "server nonces are fresh");
        write_handshake(&mut c, &Handshake::ClientProof { mac: recorded })
            .await
            .unwrap();
        assert!(matches!(
            read_handshake(&mut c).await.unwrap(),
            Handshake::Rejected(_)
        ));
        assert!(srv.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn other_versions_and_refused_peers_are_told_why() {
        let (mut c, mut s) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move { server(&mut s, SECRET, &admit_all).await });
        write_handshake(
            &mut c,
            &Handshake::ClientHello {
                version: 1,
                from: 5,
                nonce: [0; NONCE_LEN],
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(read_handshake(&mut c).await.unwrap(), Handshake::Rejected(m) if m.contains("version"))
        );
        assert!(srv.await.unwrap().is_err());

        let (mut c, mut s) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move {
            let cut = |id: NodeId| (id == 3).then(|| "cut off".to_owned());
            server(&mut s, SECRET, &cut).await
        });
        let r = client(&mut c, 3, SECRET).await;
        assert!(
            matches!(r, Err(WireError::Protocol(ref m)) if m.contains("cut off")),
            "{r:?}"
        );
        assert!(srv.await.unwrap().is_err());
    }
}
