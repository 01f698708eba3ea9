//! `shoal dataset fetch`: downloads the files of a catalog entry over HTTP(S) with a progress bar,
//! resumes a partial download with an HTTP Range request, slices big-ann base files to their
//! first rows, and checks the sha256 before the file takes its final name.
//!
//! A download lives in `FILE.partial` until it is complete and verified; a checksum mismatch
//! deletes it and fails, so a bad file never sits under the name `load` reads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::catalog::{CatalogEntry, CatalogFile, Layout};

/// Why a catalog could not be read or a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog file is not valid.
    #[error("catalog {path}: {reason}")]
    Catalog {
        /// The catalog.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No dataset of that name in the catalog.
    #[error("no dataset `{0}` in the catalog (see `shoal dataset list`)")]
    UnknownDataset(String),
    /// The URL's scheme is not HTTP(S).
    #[error("{url}: only http and https downloads are supported; fetch this file by hand")]
    UnsupportedScheme {
        /// The URL.
        url: String,
    },
    /// The server or the connection failed.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The downloaded bytes do not hash to the catalog's checksum; the file was deleted.
    #[error("{path}: sha256 mismatch: expected {expected}, got {actual}; the download was deleted")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The catalog's checksum.
        expected: String,
        /// The computed one.
        actual: String,
    },
    /// The download's size differs from what the catalog or the server promised.
    #[error("{path}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Expected size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> FetchError + '_ {
    move |e| FetchError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// How a file's checksum turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Matched the catalog's sha256.
    Verified,
    /// The catalog has no checksum: this is the computed one, unverified.
    Unverified(String),
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub struct FetchedFile {
    /// Where it now is.
    pub path: PathBuf,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes that came over the network in this call (0 if it was already complete).
    pub downloaded: u64,
    /// Checksum result.
    pub verification: Verification,
}

/// Options of a fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Hex sha256 of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Downloads every file of `entry` into `dir` (see [`CatalogEntry::local_path`]) and returns the
/// dataset path `load` takes, with what happened to each file.
pub fn fetch_entry(
    entry: &CatalogEntry,
    dir: &Path,
    options: &FetchOptions,
) -> Result<(PathBuf, Vec<FetchedFile>), FetchError> {
    let target = entry.local_path(dir);
    let folder = match entry.layout {
        Layout::Hdf5 => dir.to_path_buf(),
        Layout::Folder => target.clone(),
    };
    std::fs::create_dir_all(&folder).map_err(io_err(&folder))?;
    let mut out = Vec::new();
    for file in &entry.files {
        out.push(fetch_file(
            file,
            &folder.join(&file.file),
            entry.dim,
            options,
        )?);
    }
    if entry.layout == Layout::Folder {
        let metric = folder.join("metric");
        std::fs::write(&metric, format!("{}\n", entry.metric)).map_err(io_err(&metric))?;
    }
    Ok((target, out))
}

fn verify(path: &Path, expected: &str) -> Result<Verification, FetchError> {
    let actual = sha256_file(path)?;
    if expected.is_empty() {
        Ok(Verification::Unverified(actual))
    } else if actual.eq_ignore_ascii_case(expected) {
        Ok(Verification::Verified)
    } else {
        Err(FetchError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Downloads one file to `dest`, resuming `dest.partial` if present.
pub fn fetch_file(
    file: &CatalogFile,
    dest: &Path,
    dim: u64,
    options: &FetchOptions,
) -> Result<FetchedFile, FetchError> {
    let len_of = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    if let Some(bytes) = len_of(dest) {
        // Already in place: a complete file is only renamed there after verification, but check
        // again in case it was replaced by hand.
        let verification = verify(dest, &file.sha256)?;
        return Ok(FetchedFile {
            path: dest.to_path_buf(),
            bytes,
            downloaded: 0,
            verification,
        });
    }
    if !(file.url.starts_with("http://") || file.url.starts_with("https://")) {
        return Err(FetchError::UnsupportedScheme {
            url: file.url.clone(),
        });
    }
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let limit = file.slice_bytes(dim);
    let downloaded = download(&file.url, &partial, limit, file.size, options)?;
    if let Some(rows) = file.rows {
        // A slice of a big-ann file: the header still counts the full file's rows.
        let rows = u32::try_from(rows).map_err(|_| FetchError::Catalog {
            path: dest.to_path_buf(),
            reason: format!("{rows} rows do not fit a big-ann header"),
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .open(&partial)
            .map_err(io_err(&partial))?;
        f.seek(SeekFrom::Start(0)).map_err(io_err(&partial))?;
        f.write_all(&rows.to_le_bytes()).map_err(io_err(&partial))?;
        f.sync_all().map_err(io_err(&partial))?;
    }
    let bytes = len_of(&partial).unwrap_or(0);
    let expected = file.size.max(limit.unwrap_or(0));
    if expected > 0 && bytes != expected {
        return Err(FetchError::SizeMismatch {
            path: partial,
            expected,
            actual: bytes,
        });
    }
    let verification = match verify(&partial, &file.sha256) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, dest).map_err(io_err(dest))?;
    Ok(FetchedFile {
        path: dest.to_path_buf(),
        bytes,
        downloaded,
        verification,
    })
}

/// Appends the rest of `url` to `partial` (up to `limit` bytes in all, if given); returns the
/// bytes received.
fn download(
    url: &str,
    partial: &Path,
    limit: Option<u64>,
    size_hint: u64,
    options: &FetchOptions,
) -> Result<u64, FetchError> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if let Some(l) = limit
        && have >= l
    {
        if have > l {
            let f = OpenOptions::new()
                .write(true)
                .open(partial)
                .map_err(io_err(partial))?;
            f.set_len(l).map_err(io_err(partial))?;
        }
        return Ok(0);
    }
    if size_hint > 0 && have == size_hint {
        return Ok(0);
    }
    let http = |reason: String| FetchError::Http {
        url: url.to_string(),
        reason,
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = agent.get(url);
    let range = match (have, limit) {
        (0, None) => None,
        (h, None) => Some(format!("bytes={h}-")),
        (h, Some(l)) => Some(format!("bytes={h}-{}", l - 1)),
    };
    if let Some(r) = &range {
        request = request.header("Range", r);
    }
    let response = request.call().map_err(|e| http(e.to_string()))?;
    let status = response.status().as_u16();
    let (start, append) = match status {
        206 => (have, true),
        200 => (0, false), // the server ignored the range: start over
        416 if size_hint == 0 && have > 0 => {
            // Nothing past what we have: the partial file is complete.
            return Ok(0);
        }
        s => return Err(http(format!("HTTP status {s}"))),
    };
    if append {
        // The range must start where the partial file ends, or the file would be corrupted.
        let content_range = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let first = content_range
            .strip_prefix("bytes ")
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.trim().parse::<u64>().ok());
        if first != Some(have) {
            return Err(http(format!(
                "asked for bytes from {have}, got Content-Range `{content_range}`"
            )));
        }
    }
    let body_len = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let total = limit
        .or(body_len.map(|b| b + start))
        .or((size_hint > 0).then_some(size_hint));
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .map_err(io_err(partial))?;
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar.set_position(start);
        Some(bar)
    } else {
        None
    };
    let want = limit.map_or(u64::MAX, |l| l - start);
    let mut reader = response.into_body().into_reader().take(want);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| http(format!("after {got} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).map_err(io_err(partial))?;
        got += n as u64;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    }
    f.sync_all().map_err(io_err(partial))?;
    if let Some(b) = bar {
        b.finish();
    }
    Ok(got)
}
