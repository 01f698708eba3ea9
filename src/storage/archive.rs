//! Snapshot archives: one file holding a set of named member files and a caller's description
//! of them. A user's collection, shard or full snapshot (`snapshots/**/*.snapshot`) is one.
//!
//! Why a container of shoal's own rather than a tar: the members are segment files of any size
//! plus small manifests, the reader must refuse any name that could leave the directory it
//! extracts into *before* touching a byte, and every other framed file of shoal already has an
//! envelope with typed too-old/too-new errors. The layout (version 1, little-endian):
//!
//! | part | bytes | meaning |
//! |------|-------|---------|
//! | envelope header | 32 | kind [`envelope::SNAPSHOT_ARCHIVE`], magic `\x89SHA\r\n\x1a\n`, version, body length and CRCs (the storage module doc's "Envelope files") |
//! | manifest | `body_len` | postcard [`Manifest`]: `meta` (the caller's description, JSON text) and the members `{name, len, crc}` in file order |
//! | members | `Σ len` | each member's bytes, one after the other, in manifest order; nothing follows |
//!
//! A member name is a relative path of 1 to [`MAX_DEPTH`] components joined by `/`, each 1 to
//! 255 bytes of `[A-Za-z0-9._-]` and neither `.` nor `..`: it can only name a file inside the
//! directory an archive is extracted into. No two members have the same name.
//!
//! [`decode`] is pure (fuzzed by `tests/fuzz` target `archive_decode`): from the file's first
//! bytes and its length it returns the manifest and where the members start, or a typed
//! [`FormatError`] — the manifest's envelope is checked, every name, and that the members fill
//! the file exactly. [`extract`] then checks each member's CRC-32 as it copies it out. The whole
//! file's SHA-256 (what a user's `checksum` names) is computed by [`write`] as it writes.

use super::envelope::{self, HEADER_LEN, SNAPSHOT_ARCHIVE};
use super::format::{FormatError, u64_at};
use super::{StorageError, atomic::AtomicFile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The archive format version written by this build.
pub const FORMAT_VERSION: u32 = SNAPSHOT_ARCHIVE.version;
/// The largest manifest a reader accepts (a manifest lists files, it never holds data).
pub const MAX_MANIFEST: u64 = 64 << 20;
/// Path components a member name may have.
pub const MAX_DEPTH: usize = 8;

/// One member file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Relative path inside the archive (`0/1/shard.snap`).
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 of its bytes.
    pub crc: u32,
}

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The caller's description of the archive (JSON text; opaque here).
    pub meta: String,
    /// The members, in file order.
    pub members: Vec<Member>,
}

/// A decoded archive head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The format version it was written with.
    pub version: u32,
    /// The manifest.
    pub manifest: Manifest,
    /// Offset of the first member's bytes.
    pub data_start: u64,
}

/// Checks a member name (see the module doc).
pub fn check_member_name(name: &str) -> Result<(), FormatError> {
    let bad = |why: &str| FormatError::Corrupted(format!("member name {name:?}: {why}"));
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad("too many path components"));
    }
    for p in parts {
        if p.is_empty() || p.len() > 255 {
            return Err(bad("a path component is empty or longer than 255 bytes"));
        }
        if p == "." || p == ".." {
            return Err(bad("`.` and `..` are not allowed"));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("only A-Z a-z 0-9 . _ - and `/` between components"));
        }
    }
    Ok(())
}

/// The length of the archive head (envelope header and manifest) from the first
/// [`HEADER_LEN`] bytes, bounded by [`MAX_MANIFEST`]; the header itself is checked by
/// [`decode`].
pub fn head_len(first: &[u8]) -> Result<u64, FormatError> {
    if first.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            expected: HEADER_LEN as u64,
            actual: first.len() as u64,
        });
    }
    let body = u64_at(first, 16);
    if body > MAX_MANIFEST {
        return Err(FormatError::Corrupted(format!(
            "manifest of {body} bytes (at most {MAX_MANIFEST})"
        )));
    }
    Ok(HEADER_LEN as u64 + body)
}

/// Decodes an archive head from `bytes` (at least the head; more is ignored) of a file of
/// `file_len` bytes. Pure; never panics.
pub fn decode(bytes: &[u8], file_len: u64) -> Result<Archive, FormatError> {
    if bytes.len() >= 8 && bytes[..8] != SNAPSHOT_ARCHIVE.magic {
        return Err(FormatError::BadMagic);
    }
    let head = head_len(bytes)?;
    if (bytes.len() as u64) < head || file_len < head {
        return Err(FormatError::Truncated {
            expected: head,
            actual: (bytes.len() as u64).min(file_len),
        });
    }
    let decoded = envelope::decode(&SNAPSHOT_ARCHIVE, &bytes[..head as usize])?;
    let manifest: Manifest = postcard::from_bytes(decoded.body)
        .map_err(|e| FormatError::Corrupted(format!("archive manifest: {e}")))?;
    let mut names = HashSet::new();
    let mut total: u64 = 0;
    for m in &manifest.members {
        check_member_name(&m.name)?;
        if !names.insert(m.name.as_str()) {
            return Err(FormatError::Corrupted(format!(
                "member {:?} listed twice",
                m.name
            )));
        }
        total = total
            .checked_add(m.len)
            .ok_or_else(|| FormatError::Corrupted("member lengths overflow".into()))?;
    }
    let expected = head
        .checked_add(total)
        .ok_or_else(|| FormatError::Corrupted("member lengths overflow".into()))?;
    if file_len < expected {
        return Err(FormatError::Truncated {
            expected,
            actual: file_len,
        });
    }
    if file_len > expected {
        return Err(FormatError::Corrupted(format!(
            "{} bytes after the last member",
            file_len - expected
        )));
    }
    Ok(Archive {
        version: decoded.version,
        manifest,
        data_start: head,
    })
}

/// The manifest framed as the archive's head.
pub fn encode_head(manifest: &Manifest) -> Result<Vec<u8>, FormatError> {
    let body = postcard::to_stdvec(manifest)
        .map_err(|e| FormatError::Corrupted(format!("archive manifest: {e}")))?;
    Ok(envelope::encode(&SNAPSHOT_ARCHIVE, &body))
}

/// Writes `sink` through while hashing what passes.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn crc_of(path: &Path) -> Result<(u64, u32), StorageError> {
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize()))
}

/// Writes an archive of `members` (name in the archive, file to copy) described by `meta` to
/// `target`, atomically (temporary file, fsync, rename, fsync of the directory). Returns the
/// SHA-256 of the whole file, lower-case hex.
pub fn write(
    target: &Path,
    meta: &str,
    members: &[(String, PathBuf)],
) -> Result<String, StorageError> {
    let mut listed = Vec::with_capacity(members.len());
    for (name, path) in members {
        check_member_name(name).map_err(|e| StorageError::from_format(target, e))?;
        let (len, crc) = crc_of(path)?;
        listed.push(Member {
            name: name.clone(),
            len,
            crc,
        });
    }
    let manifest = Manifest {
        meta: meta.to_owned(),
        members: listed,
    };
    let head = encode_head(&manifest).map_err(|e| StorageError::from_format(target, e))?;
    let file = AtomicFile::create(target)?;
    let mut out = Hashing {
        inner: file,
        sha: Sha256::new(),
    };
    out.write_all(&head)
        .map_err(|e| StorageError::io(target, e))?;
    for ((_, path), m) in members.iter().zip(&manifest.members) {
        let f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
        // Exactly the length listed: a file that changed since it was measured is an error,
        // not an archive that lies.
        let copied =
            std::io::copy(&mut f.take(m.len), &mut out).map_err(|e| StorageError::io(path, e))?;
        if copied != m.len {
            return Err(StorageError::io(
                path,
                std::io::Error::other("the file shrank while it was archived"),
            ));
        }
    }
    let Hashing { inner, sha } = out;
    inner.commit()?;
    Ok(hex(&sha.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a whole file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, StorageError> {
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    Ok(hex(&sha.finalize()))
}

/// Reads and checks the head of the archive at `path`.
pub fn read(path: &Path) -> Result<Archive, StorageError> {
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| StorageError::io(path, e))?.len();
    let mut first = vec![0u8; HEADER_LEN];
    let got = read_up_to(&mut f, &mut first).map_err(|e| StorageError::io(path, e))?;
    first.truncate(got);
    if got >= 8 && first[..8] != SNAPSHOT_ARCHIVE.magic {
        return Err(StorageError::from_format(path, FormatError::BadMagic));
    }
    let head = head_len(&first).map_err(|e| StorageError::from_format(path, e))?;
    if head > file_len {
        return Err(StorageError::from_format(
            path,
            FormatError::Truncated {
                expected: head,
                actual: file_len,
            },
        ));
    }
    let mut bytes = first;
    bytes.resize(head as usize, 0);
    f.read_exact(&mut bytes[HEADER_LEN..])
        .map_err(|e| StorageError::io(path, e))?;
    decode(&bytes, file_len).map_err(|e| StorageError::from_format(path, e))
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Copies every member of the archive at `path` (head `archive`, from [`read`]) into `dir`
/// under its name, checking each member's CRC-32; a member that fails leaves `dir` partly
/// written (the caller extracts into a directory of its own and removes it on error).
pub fn extract(path: &Path, archive: &Archive, dir: &Path) -> Result<(), StorageError> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    f.seek(std::io::SeekFrom::Start(archive.data_start))
        .map_err(|e| StorageError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    for m in &archive.manifest.members {
        // The names were checked by `decode`: each stays inside `dir`.
        let dst = dir.join(&m.name);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        let mut out = std::fs::File::create(&dst).map_err(|e| StorageError::io(&dst, e))?;
        let mut left = m.len;
        let mut crc = crc32fast::Hasher::new();
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..want])
                .map_err(|e| StorageError::io(path, e))?;
            crc.update(&buf[..want]);
            out.write_all(&buf[..want])
                .map_err(|e| StorageError::io(&dst, e))?;
            left -= want as u64;
        }
        if crc.finalize() != m.crc {
            return Err(StorageError::from_format(
                path,
                FormatError::ChecksumMismatch {
                    section: format!("member {}", m.name),
                },
            ));
        }
        out.sync_all().map_err(|e| StorageError::io(&dst, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let b = dir.path().join("b.bin");
        std::fs::write(&a, b"hello").unwrap();
        std::fs::write(&b, vec![7u8; 3_000_000]).unwrap();
        let target = dir.path().join("x.snapshot");
        let members = vec![
            ("0/a.bin".to_owned(), a.clone()),
            ("0/1/b.bin".to_owned(), b.clone()),
        ];
        let sha = write(&target, "{\"k\":1}", &members).unwrap();
        assert_eq!(sha, sha256_file(&target).unwrap());
        let archive = read(&target).unwrap();
        assert_eq!(archive.version, FORMAT_VERSION);
        assert_eq!(archive.manifest.meta, "{\"k\":1}");
        let out = dir.path().join("out");
        extract(&target, &archive, &out).unwrap();
        assert_eq!(std::fs::read(out.join("0/a.bin")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(out.join("0/1/b.bin")).unwrap(),
            vec![7u8; 3_000_000]
        );

        // Truncated, extended, and a flipped member byte are refused.
        let bytes = std::fs::read(&target).unwrap();
        assert!(matches!(
            decode(&bytes, bytes.len() as u64 - 1),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes, bytes.len() as u64 + 1),
            Err(FormatError::Corrupted(_))
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&target, &flipped).unwrap();
        let archive = read(&target).unwrap();
        assert!(matches!(
            extract(&target, &archive, &dir.path().join("out2")),
            Err(StorageError::ChecksumMismatch { .. })
        ));

        // Names that could leave the directory never get that far.
        for bad in [
            "../x",
            "/abs",
            "a//b",
            "a/./b",
            "a\\b",
            "",
            "a/b/c/d/e/f/g/h/i",
        ] {
            assert!(check_member_name(bad).is_err(), "{bad}");
        }
        let forged = Manifest {
            meta: String::new(),
            members: vec![Member {
                name: "../escape".into(),
                len: 0,
                crc: 0,
            }],
        };
        let head = encode_head(&forged).unwrap();
        assert!(decode(&head, head.len() as u64).is_err());
        // Another kind's envelope is not an archive.
        let other = envelope::encode(&envelope::SHARD_SNAPSHOT, b"x");
        assert_eq!(
            decode(&other, other.len() as u64),
            Err(FormatError::BadMagic)
        );
    }

    /// What the fuzz target `archive_decode` does, over every single-byte change and every
    /// truncation of a small archive (with the header checksums forged to match): never a
    /// panic, and anything that decodes lists checked names filling the file exactly.
    #[test]
    fn damaged_heads_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"abc").unwrap();
        let target = dir.path().join("x.snapshot");
        write(
            &target,
            "{}",
            &[("0/0/shard.snap".into(), a.clone()), ("b".into(), a)],
        )
        .unwrap();
        let bytes = std::fs::read(&target).unwrap();
        let check = |data: &[u8], len: u64| {
            if let Ok(a) = decode(data, len) {
                let total: u64 = a.manifest.members.iter().map(|m| m.len).sum();
                assert_eq!(a.data_start + total, len);
                for m in &a.manifest.members {
                    assert!(check_member_name(&m.name).is_ok());
                }
            }
        };
        for cut in 0..bytes.len() {
            check(&bytes[..cut], cut as u64);
            check(&bytes[..cut], bytes.len() as u64);
        }
        for i in 0..bytes.len() {
            for flip in [1u8, 0x80, 0xff] {
                let mut m = bytes.clone();
                m[i] ^= flip;
                check(&m, m.len() as u64);
                if m.len() >= HEADER_LEN {
                    let crc = crc32fast::hash(&m[..28]);
                    m[28..32].copy_from_slice(&crc.to_le_bytes());
                    let head = head_len(&m).unwrap_or(0) as usize;
                    if head <= m.len() && head >= HEADER_LEN {
                        let body = crc32fast::hash(&m[HEADER_LEN..head]);
                        m[24..28].copy_from_slice(&body.to_le_bytes());
                        let crc = crc32fast::hash(&m[..28]);
                        m[28..32].copy_from_slice(&crc.to_le_bytes());
                    }
                    check(&m, m.len() as u64);
                }
            }
        }
    }
}
