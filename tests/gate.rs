//! `ordeal gate`: a candidate equal to the baseline passes; a candidate with a bug fails,
//! naming the run that shows it.

mod common;

use common::{json, ordeal};
use std::path::{Path, PathBuf};

fn broker() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ordeal")).with_file_name("ordeal-broker")
}

/// A gate suite small enough for CI: one configuration that exposes stale reads. Its figure
/// thresholds are loose: other tests load the machine while the two builds run one after the
/// other, and what a figure regression does is the unit tests' to show.
const SUITE: &str = r#"
args = ["--env", "local", "--time-limit", "5", "--nemesis-interval", "1", "--fault-duration", "1.5", "--rate", "500"]
[gate]
max_gap_ratio = 4.0
gap_slack_ms = 2000.0
max_p99_ratio = 10.0
p99_slack_ms = 500.0
min_throughput_ratio = 0.3
[[entry]]
name = "register"
args = ["--workload", "register", "--nemesis", "pause-follower"]
expect = "valid"
"#;

fn gate(dir: &Path, candidate: &Path) -> (i32, String, String) {
    let suite = dir.join("gate.toml");
    std::fs::write(&suite, SUITE).unwrap();
    ordeal(&[
        "gate",
        "--baseline",
        broker().to_str().unwrap(),
        "--candidate",
        candidate.to_str().unwrap(),
        "--suite",
        suite.to_str().unwrap(),
        "--store",
        dir.join("store").to_str().unwrap(),
    ])
}

fn gate_json(dir: &Path) -> serde_json::Value {
    let root = dir.join("store/gates/gate");
    let run = std::fs::read_dir(&root).unwrap().flatten().next().unwrap().path();
    json(&run.join("gate.json"))
}

#[test]
fn the_same_build_passes_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = gate(dir.path(), &broker());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("gate: PASS"), "{out}");
    let checks = gate_json(dir.path())["checks"].as_array().unwrap().clone();
    assert!(checks.iter().any(|c| c["name"].as_str().unwrap().starts_with("p99 latency")), "{checks:?}");
}

#[test]
fn a_candidate_with_stale_reads_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    std::fs::write(&candidate, format!("#!/bin/sh\nexec '{}' \"$@\" --bug=stale-reads\n", broker().display())).unwrap();
    let mut p = std::fs::metadata(&candidate).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(&candidate, p).unwrap();
    let (code, out, err) = gate(dir.path(), &candidate);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("gate: FAIL") && out.contains("verdict: register"), "{out}");
    assert!(out.contains("cannot be linearized"), "the evidence is named: {out}");
}

#[test]
fn a_missing_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = gate(dir.path(), &dir.path().join("nope"));
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("--candidate") && err.contains("no such file"), "{err}");
}
