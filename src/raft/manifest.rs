//! The framing of a Raft snapshot's `MANIFEST`: which bytes are a manifest, of which format
//! version, and its CRC-checked body (the body itself is [`super::state_machine`]'s).
//!
//! **Version 2** (written now) has the 32-byte header of the storage envelope
//! (`storage/envelope.rs`, specified in the storage module doc), with its own magic
//! `\x89SHR\r\n\x1a\n` (`R` for Raft; the envelope kinds are `C` and `S`):
//!
//! ```text
//! 0   magic        8   \x89 S H R \r \n \x1a \n
//! 8   u32 version      2
//! 12  u32 reserved     0
//! 16  u64 body length
//! 24  u32 CRC-32 of the body
//! 28  u32 CRC-32 of bytes 0..28
//! 32  body             postcard (last log id, membership, [(path, length)])
//! ```
//!
//! **Version 1** (read only) was framed by hand: `SHOALSNP`, `u32` version 1, `u32` body length,
//! the body, `u32` CRC-32 of the body. That magic is also the legacy magic of shard snapshots
//! (`shard.snap` versions 1 to 3), so a manifest could be mistaken for one; version 2 gives the
//! manifest an identity of its own. The body is the same in both versions.
//!
//! The envelope's code lives in `storage`, which `raft` may not name (it is a leaf: see
//! `tests/layering.rs`), hence this one-kind copy of its header. [`unframe`] is pure, allocates
//! nothing and answers every input with a body slice or a typed [`ManifestError`]: a newer
//! version is "upgrade", never a misread (the header checksum comes first).

/// Bytes 0..8 of a version 2 manifest.
pub const MANIFEST_MAGIC: [u8; 8] = [0x89, b'S', b'H', b'R', b'\r', b'\n', 0x1a, b'\n'];
/// Bytes 0..8 of a version 1 manifest (shared with legacy shard snapshots).
pub const LEGACY_MAGIC: [u8; 8] = *b"SHOALSNP";
/// The format version this build writes, and the newest it reads.
pub const MANIFEST_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_MANIFEST_VERSION: u32 = 1;
/// Length of a version 2 header.
pub const HEADER_LEN: usize = 32;

/// Why bytes are not a manifest this build reads. Nothing has been trusted when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Neither manifest magic.
    #[error("snapshot manifest: bad magic (not a MANIFEST)")]
    BadMagic,
    /// Shorter than its header or its stated length.
    #[error("snapshot manifest: truncated ({actual} of {expected} bytes)")]
    Truncated {
        /// Bytes needed.
        expected: u64,
        /// Bytes there.
        actual: u64,
    },
    /// Written by a newer build.
    #[error(
        "snapshot manifest: format version {found} is newer than this build reads (up to {supported}); upgrade this node"
    )]
    UpgradeRequired {
        /// The file's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// Older than any version this build reads.
    #[error(
        "snapshot manifest: format version {found} is older than this build reads (from {oldest})"
    )]
    TooOld {
        /// The file's version.
        found: u32,
        /// The oldest this build reads.
        oldest: u32,
    },
    /// The header or the body fails its CRC.
    #[error("snapshot manifest: {0} checksum mismatch")]
    Checksum(&'static str),
    /// Damaged in a way the checks above do not name.
    #[error("snapshot manifest: {0}")]
    Corrupted(String),
}

impl From<ManifestError> for std::io::Error {
    fn from(e: ManifestError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Frames `body` as a manifest of the current version.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MANIFEST_MAGIC);
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    let header_crc = crc32fast::hash(&out[..28]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The format version and the CRC-checked body of a manifest's bytes, either version.
///
/// Order of checks (version 2): magic, length of the header, header CRC, version, reserved
/// field, exact length, body CRC.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), ManifestError> {
    if bytes.len() >= 8 && bytes[..8] == LEGACY_MAGIC {
        return unframe_v1(bytes);
    }
    if bytes.len() < 8 || bytes[..8] != MANIFEST_MAGIC {
        return Err(if bytes.len() < 8 && MANIFEST_MAGIC.starts_with(bytes) {
            ManifestError::Truncated {
                expected: HEADER_LEN as u64,
                actual: bytes.len() as u64,
            }
        } else {
            ManifestError::BadMagic
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(ManifestError::Truncated {
            expected: HEADER_LEN as u64,
            actual: bytes.len() as u64,
        });
    }
    if crc32fast::hash(&bytes[..28]) != u32_at(bytes, 28) {
        return Err(ManifestError::Checksum("header"));
    }
    let version = u32_at(bytes, 8);
    if version > MANIFEST_VERSION {
        return Err(ManifestError::UpgradeRequired {
            found: version,
            supported: MANIFEST_VERSION,
        });
    }
    if version < OLDEST_MANIFEST_VERSION {
        return Err(ManifestError::TooOld {
            found: version,
            oldest: OLDEST_MANIFEST_VERSION,
        });
    }
    if version < MANIFEST_VERSION {
        return Err(ManifestError::Corrupted(format!(
            "version {version} predates this header (it was framed as `SHOALSNP`)"
        )));
    }
    if u32_at(bytes, 12) != 0 {
        return Err(ManifestError::Corrupted(
            "reserved header field is not zero".into(),
        ));
    }
    let body_len = u64_at(bytes, 16);
    let expected = body_len
        .checked_add(HEADER_LEN as u64)
        .ok_or_else(|| ManifestError::Corrupted(format!("body length {body_len} overflows")))?;
    if (bytes.len() as u64) < expected {
        return Err(ManifestError::Truncated {
            expected,
            actual: bytes.len() as u64,
        });
    }
    if (bytes.len() as u64) > expected {
        return Err(ManifestError::Corrupted(format!(
            "{} trailing bytes after the body",
            bytes.len() as u64 - expected
        )));
    }
    let body = &bytes[HEADER_LEN..];
    if crc32fast::hash(body) != u32_at(bytes, 24) {
        return Err(ManifestError::Checksum("body"));
    }
    Ok((version, body))
}

/// Version 1: `SHOALSNP`, `u32` version, `u32` length, body, `u32` CRC-32 of the body. Its
/// header has no checksum, so a version other than 1 there is damage, not a newer format.
fn unframe_v1(bytes: &[u8]) -> Result<(u32, &[u8]), ManifestError> {
    if bytes.len() < 20 {
        return Err(ManifestError::Truncated {
            expected: 20,
            actual: bytes.len() as u64,
        });
    }
    let version = u32_at(bytes, 8);
    if version != 1 {
        return Err(ManifestError::Corrupted(format!(
            "version {version} in the `SHOALSNP` layout, which held version 1 only"
        )));
    }
    let len = u64::from(u32_at(bytes, 12));
    let expected = 20 + len;
    if bytes.len() as u64 != expected {
        return Err(if (bytes.len() as u64) < expected {
            ManifestError::Truncated {
                expected,
                actual: bytes.len() as u64,
            }
        } else {
            ManifestError::Corrupted("trailing bytes after the checksum".into())
        });
    }
    let end = 16 + len as usize;
    let body = &bytes[16..end];
    if crc32fast::hash(body) != u32_at(bytes, end) {
        return Err(ManifestError::Checksum("body"));
    }
    Ok((1, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(body: &[u8]) -> Vec<u8> {
        let mut out = LEGACY_MAGIC.to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out
    }

    /// `bytes` with version `v` and a header checksum that matches it.
    fn with_version(bytes: &[u8], v: u32) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[8..12].copy_from_slice(&v.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn both_versions_unframe_and_versions_out_of_range_are_named() {
        let body = b"the body";
        assert_eq!(unframe(&frame(body)), Ok((2, &body[..])));
        assert_eq!(unframe(&v1(body)), Ok((1, &body[..])));
        let framed = frame(body);
        assert_eq!(
            unframe(&with_version(&framed, 3)),
            Err(ManifestError::UpgradeRequired {
                found: 3,
                supported: 2
            })
        );
        assert_eq!(
            unframe(&with_version(&framed, 0)),
            Err(ManifestError::TooOld {
                found: 0,
                oldest: 1
            })
        );
        assert!(matches!(
            unframe(&with_version(&framed, 1)),
            Err(ManifestError::Corrupted(_))
        ));
        // A damaged version field without a matching checksum is damage, not "upgrade".
        let mut damaged = framed.clone();
        damaged[8] = 9;
        assert_eq!(unframe(&damaged), Err(ManifestError::Checksum("header")));
        let mut old = v1(body);
        old[8] = 2;
        assert!(matches!(unframe(&old), Err(ManifestError::Corrupted(_))));
    }

    #[test]
    fn every_prefix_and_every_flipped_byte_is_refused_without_a_panic() {
        for bytes in [frame(b"manifest body"), v1(b"manifest body")] {
            for n in 0..bytes.len() {
                assert!(unframe(&bytes[..n]).is_err(), "prefix {n}");
            }
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x40;
                assert!(unframe(&b).is_err(), "byte {i}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(unframe(&longer).is_err());
        }
    }

    #[test]
    fn the_magic_is_not_a_storage_envelope_kind_letter() {
        // Storage kinds use `C` (cluster state) and `S` (shard snapshot); `raft` cannot name
        // them, `tests/format_fixtures.rs` checks against the list itself.
        assert_eq!(MANIFEST_MAGIC[3], b'R');
        assert_ne!(MANIFEST_MAGIC, LEGACY_MAGIC);
    }
}
