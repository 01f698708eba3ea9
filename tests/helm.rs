//! The Helm chart (`helm/shoal/`), checked offline in the normal test run:
//! `tests/python/helm_check.py` lints it and renders it with the real Helm library
//! (`helm-python-sdk`, Helm's Go SDK in a bundled shared library: no helm binary, no cluster),
//! validates every manifest against the Kubernetes schemas of a pinned version
//! (`kubernetes-validate`, strict), and asserts the properties the cluster depends on (one peer
//! per replica with node ids 1..N and the pods' DNS names, probe paths, secrets referenced and
//! never inlined, PVC sizes, the entry command's node id). This side then loads the rendered
//! `config.toml` with shoal's own configuration loader, so a key the chart writes that shoal does
//! not know fails here and not in a pod.
//!
//! The virtualenv is created once under Cargo's per-target temporary directory from the pinned
//! `tests/python/helm-requirements.txt` and reused while that file is unchanged; set
//! `SHOAL_HELM_VENV` to use another one, `SHOAL_SKIP_HELM_TEST=1` to skip the test on machines
//! without Python or access to PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIREMENTS: &str = include_str!("python/helm-requirements.txt");

/// Returns the venv's python, creating the venv when it is missing or was made from other pins.
fn venv() -> PathBuf {
    let dir = std::env::var_os("SHOAL_HELM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-venv"));
    let python = dir.join("bin/python");
    // Written only after a complete install: an interrupted one is redone from scratch.
    let marker = dir.join("shoal-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == REQUIREMENTS) {
        return python;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&dir)
        .status()
        .expect("python3 not found (set SHOAL_SKIP_HELM_TEST=1 to skip)");
    assert!(ok.success(), "python3 -m venv failed");
    let reqs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/helm-requirements.txt");
    let ok = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&reqs)
        .status()
        .expect("pip");
    assert!(
        ok.success(),
        "pip install -r {} failed (set SHOAL_SKIP_HELM_TEST=1 to skip)",
        reqs.display()
    );
    std::fs::write(&marker, REQUIREMENTS).unwrap();
    python
}

#[test]
fn helm_chart_lints_renders_and_validates() {
    if std::env::var_os("SHOAL_SKIP_HELM_TEST").is_some() {
        eprintln!("skipped: SHOAL_SKIP_HELM_TEST is set");
        return;
    }
    let python = venv();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(python)
        .arg(root.join("tests/python/helm_check.py"))
        .arg(root.join("helm/shoal"))
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helm chart checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("helm chart: ok"), "{stdout}");

    // The chart's rendered config file must load with shoal's own loader (unknown keys and
    // out-of-range values are refused there), and carry the chart's values.
    let config = out_dir.path().join("config.toml");
    let loaded = shoal::config::ServeConfig::load(shoal::config::ServeArgs {
        config: Some(config.clone()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("the chart's config.toml does not load: {e}"));
    assert_eq!(loaded.index.nlist, 256);
    assert_eq!(loaded.index.seal_threshold, 50_000);
    assert_eq!(loaded.log_format, shoal::config::LogFormat::Json);
    assert_eq!(loaded.api.body_limit, 33_554_432);
    // The chart's request caps are shoal's defaults.
    assert_eq!(
        loaded.api.limits,
        shoal::collection::limits::RequestLimits::default()
    );
    // No key in the config file: the chart passes keys through its Secret, into the environment.
    assert!(loaded.api.api_key.is_none());
}
