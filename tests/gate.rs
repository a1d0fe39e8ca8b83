//! `ordeal gate`: a candidate equal to the baseline passes; a candidate that acknowledges writes
//! before they are committed fails, naming the lost writes and linking the runs that show them.

mod common;

use common::{json, ordeal};
use std::path::{Path, PathBuf};

fn broker() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ordeal")).with_file_name("ordeal-broker")
}

/// Gate thresholds loose enough for CI: other tests load the machine while the two builds run
/// one after the other, and what a figure regression does is the unit tests' to show.
const THRESHOLDS: &str = r#"
[gate]
max_gap_ratio = 4.0
gap_slack_ms = 2000.0
max_p99_ratio = 10.0
p99_slack_ms = 500.0
min_throughput_ratio = 0.3
"#;

/// A gate suite small enough for CI: one register configuration on loopback.
const REGISTER: &str = r#"
args = ["--env", "local", "--time-limit", "5", "--nemesis-interval", "1", "--fault-duration", "1.5", "--rate", "500"]
[[entry]]
name = "register"
args = ["--workload", "register", "--nemesis", "pause-follower"]
expect = "valid"
"#;

/// The leader cut off from the others while it takes appends: what it acknowledged alone is lost.
const PARTITIONED: &str = r#"
args = ["--env", "netns", "--nemesis-order", "cycle", "--fault-rounds", "2", "--time-limit", "60", "--nemesis-interval", "1",
  "--fault-duration", "1.5", "--rate", "500"]
[[entry]]
name = "partitioned log"
args = ["--workload", "log", "--nemesis", "partition-leader"]
expect = "valid"
"#;

fn gate(dir: &Path, suite_text: &str, candidate: &Path) -> (i32, String, String) {
    let suite = dir.join("gate.toml");
    std::fs::write(&suite, format!("{suite_text}{THRESHOLDS}")).unwrap();
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

fn gate_dir(dir: &Path) -> PathBuf {
    let root = dir.join("store/gates/gate");
    std::fs::read_dir(&root).unwrap().flatten().next().unwrap().path()
}

#[test]
fn the_same_build_passes_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = gate(dir.path(), REGISTER, &broker());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("gate: PASS"), "{out}");
    let run = gate_dir(dir.path());
    let checks = json(&run.join("gate.json"))["checks"].as_array().unwrap().clone();
    assert!(checks.iter().any(|c| c["name"].as_str().unwrap().starts_with("p99 latency")), "{checks:?}");
    let page = std::fs::read_to_string(run.join("gate.html")).unwrap();
    assert!(page.contains("GATE PASS") && page.matches("report.html").count() == 2, "both runs linked: {page}");
}

#[test]
fn a_candidate_that_acknowledges_before_commit_fails_naming_the_lost_writes() {
    if let Some(why) = ordeal_faults::net::unavailable() {
        println!("SKIPPED: network namespaces are not available here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    let script = format!("#!/bin/sh\nexec '{}' \"$@\" --bug=ack-before-commit\n", broker().display());
    std::fs::write(&candidate, script).unwrap();
    let mut p = std::fs::metadata(&candidate).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(&candidate, p).unwrap();
    let (code, out, err) = gate(dir.path(), PARTITIONED, &candidate);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("gate: FAIL") && out.contains("verdict: partitioned log"), "{out}");
    assert!(out.contains("; lost: "), "the lost writes are named: {out}");
    let evidence = out.lines().find_map(|l| l.trim().strip_prefix("evidence: ")).expect("evidence linked");
    assert!(Path::new(evidence).exists(), "{evidence}");
    let run = gate_dir(dir.path());
    let check = &json(&run.join("gate.json"))["checks"][0];
    assert_eq!(check["outcome"], "invalid", "{check}");
    let page = std::fs::read_to_string(run.join("gate.html")).unwrap();
    let report = check["evidence"][0].as_str().unwrap();
    assert!(page.contains("GATE FAIL") && page.contains(&format!("href=\"{report}\"")), "{page}");
    assert!(run.join(report).exists(), "the page's link resolves: {report}");
}

#[test]
fn a_missing_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = gate(dir.path(), REGISTER, &dir.path().join("nope"));
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("--candidate") && err.contains("no such file"), "{err}");
}
