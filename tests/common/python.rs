//! The Python virtualenv the client tests run in: qdrant-client and LangChain's Qdrant vector
//! store from PyPI, created once under Cargo's per-target temporary directory and reused by
//! later runs (`SHOAL_QDRANT_VENV` names another one).
//!
//! Tests in one binary run on parallel threads, and under nextest each test is its own process:
//! the venv is built in a private directory and renamed into place, so whoever finishes first
//! wins and nobody ever runs a half-installed one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// What the client tests import, and the PyPI packages that provide it.
const IMPORTS: &str = "import qdrant_client, langchain_qdrant";
const PACKAGES: &[&str] = &["qdrant-client", "langchain-qdrant"];

fn ready(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", IMPORTS])
            .status()
            .is_ok_and(|s| s.success())
}

/// The venv's `python`, creating the venv first if needed. Panics (naming
/// `SHOAL_SKIP_QDRANT_CLIENT_TEST`) where python3 or PyPI is not available.
pub fn venv() -> PathBuf {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::var_os("SHOAL_QDRANT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-venv"));
    let python = dir.join("bin/python");
    if ready(&python) {
        return python;
    }
    let building = dir.with_extension(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .status()
        .expect("python3 not found (set SHOAL_SKIP_QDRANT_CLIENT_TEST=1 to skip)");
    assert!(ok.success(), "python3 -m venv failed");
    let ok = Command::new(building.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet"])
        .args(PACKAGES)
        .status()
        .expect("pip");
    assert!(
        ok.success(),
        "pip install {} failed (set SHOAL_SKIP_QDRANT_CLIENT_TEST=1 to skip)",
        PACKAGES.join(" ")
    );
    // A stale venv without every package is replaced; if another process renamed its own into
    // place meanwhile, that one is used.
    if dir.exists() && !ready(&python) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::fs::rename(&building, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(
        ready(&python),
        "the venv at {} is not usable",
        dir.display()
    );
    python
}

/// Whether the client tests are to be skipped (`SHOAL_SKIP_QDRANT_CLIENT_TEST`); says so.
pub fn skipped() -> bool {
    let skip = std::env::var_os("SHOAL_SKIP_QDRANT_CLIENT_TEST").is_some();
    if skip {
        eprintln!("skipped: SHOAL_SKIP_QDRANT_CLIENT_TEST is set");
    }
    skip
}

/// Starts a server on a fresh data directory and runs `tests/python/<script>` in the venv with
/// the server's URL (and the data directory, when `with_data_dir`); the script must exit 0 and
/// print `done` (its last line says it got through every check).
pub fn run_script(script: &str, with_data_dir: bool, done: &str) {
    let python = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = super::Server::start(dir.path(), &[]);
    let mut cmd = Command::new(python);
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(script),
    )
    .arg(format!("http://{}", server.addr));
    if with_data_dir {
        cmd.arg(dir.path());
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(done), "{script} did not finish: {stdout}");
}
