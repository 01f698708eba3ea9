//! Test helpers: start the real `shoal` binary on a free loopback port and speak HTTP/1.1 to it
//! with a minimal std-only client.

#![allow(dead_code)]

pub mod cluster;
pub mod python;
pub mod tmpfs;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `shoal serve`, killed (by PID) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

/// Deterministic pseudo-random components in [-1, 1): point `i`'s vector of `dim` dimensions.
pub fn vec_for(i: u64, dim: usize) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A loopback port free at the time of the call, for a server the test starts next.
///
/// Taken below Linux's ephemeral range (32768–60999 by default): a port bound to 0 and released
/// comes from that range, where the kernel may hand it to one of the tests' own outgoing
/// connections before the server binds it (a cluster node once failed to start so: "Address
/// already in use"). Each test process walks the range from its own pid-spread start, so
/// binaries running at once rarely try the same port, and never hands out one port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

impl Server {
    /// Starts the server on `data_dir` with extra flags and waits until it answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let s = Server::spawn_with_env(data_dir, extra, env);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = s.try_request("GET", "/readyz", None) {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server on `data_dir` with extra flags and returns at once (it may not even
    /// listen yet).
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn_with_env(data_dir, extra, &[])
    }

    /// [`Server::spawn`] with extra environment variables.
    pub fn spawn_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .env("SHOAL_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal");
        Server {
            child,
            addr,
            data_dir: data_dir.to_owned(),
        }
    }

    /// SIGKILL by PID and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM by PID and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap()
    }

    /// One request; `Err` when the connection fails.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        request(&self.addr, method, path, body)
    }
}

/// One HTTP/1.1 request to `addr` with a JSON body (`Content-Type: application/json`);
/// `Err` when the connection fails.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    raw_request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .map(|(status, _, body)| (status, body))
}

/// One HTTP/1.1 request with exactly these headers (besides Host, Content-Length when there is
/// a body, and Connection); returns the status, the response head and the body.
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let body = body.unwrap_or(b"");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, head, body))
}

impl Server {
    /// A JSON request; returns the status and the parsed body (Null if not JSON).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, out) = self
            .try_request(method, path, bytes.as_deref())
            .expect("request");
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    }

    /// A JSON request that must succeed; returns `result`.
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.call(method, path, Some(body));
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(v["status"], "ok");
        v["result"].clone()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
