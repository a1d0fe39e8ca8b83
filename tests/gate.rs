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

/// A rolling upgrade of three nodes on loopback under leader kills: the run ends once every node
/// moved.
const UPGRADE: &str = r#"
args = ["--env", "local", "--rate", "300", "--time-limit", "120", "--nemesis-interval", "1", "--fault-duration", "1"]
[[entry]]
name = "upgrade"
args = ["--scenario", "rolling-upgrade", "--nemesis", "kill-leader"]
expect = "valid"
"#;

fn gate(dir: &Path, suite_text: &str, candidate: &Path) -> (i32, String, String) {
    gate_between(dir, suite_text, &broker(), candidate)
}

fn gate_between(dir: &Path, suite_text: &str, baseline: &Path, candidate: &Path) -> (i32, String, String) {
    let suite = dir.join("gate.toml");
    std::fs::write(&suite, format!("{suite_text}{THRESHOLDS}")).unwrap();
    ordeal(&[
        "gate",
        "--baseline",
        baseline.to_str().unwrap(),
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

/// An executable script at `path`.
fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut p = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(path, p).unwrap();
}

/// The `test.json` of every run of one build (`baseline` or `candidate`) of the gate in `dir`.
fn tests_run(dir: &Path, build: &str) -> Vec<serde_json::Value> {
    let suite = json(&gate_dir(dir).join(build).join("suite.json"));
    let cases = suite["cases"].as_array().unwrap();
    cases.iter().map(|c| json(&Path::new(c["run_dir"].as_str().expect("the case ran")).join("test.json"))).collect()
}

/// Review of the gate: it only added `--broker BIN` to each case, and a rolling upgrade took its
/// builds from `--from` and `--to` (or from a wrapper of `--broker` as its own previous release):
/// the candidate was never upgraded onto from the baseline.
#[test]
fn a_rolling_upgrade_runs_from_the_baseline_to_the_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    script(&candidate, &format!("#!/bin/sh\nexec '{}' \"$@\"\n", broker().display()));
    let (code, out, err) = gate(dir.path(), UPGRADE, &candidate);
    assert!(code == 0 || code == 1 || code == 2, "the gate ran: {out}\n{err}");
    let base = broker().display().to_string();
    // The baseline rolls onto itself under a second path: the nemesis moves a node only when it
    // does not run the target's path yet, and the reference must restart every node too.
    let again = gate_dir(dir.path()).join("builds").join("baseline-again").display().to_string();
    for (build, to) in [("baseline", again), ("candidate", candidate.display().to_string())] {
        for test in tests_run(dir.path(), build) {
            assert_eq!(test["broker_binary"], base.as_str(), "{build}: the nodes start on the baseline");
            assert_eq!(test["upgrade_binary"], to.as_str(), "{build}: and move to {to}");
        }
        let suite = json(&gate_dir(dir.path()).join(build).join("suite.json"));
        assert_eq!(suite["cases"][0]["verdict"], "valid", "{build}: the upgrade checked out: {out}");
        let run = Path::new(suite["cases"][0]["run_dir"].as_str().unwrap()).to_owned();
        let upgrade = json(&run.join("results.json"))["checkers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "upgrade")
            .cloned()
            .expect("the upgrade check ran");
        assert_eq!(upgrade["details"]["steps"].as_array().unwrap().len(), 3, "{build}: every node moved: {upgrade}");
    }
}

#[test]
fn a_case_that_names_its_own_build_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--broker", "--to", "--from", "--test"] {
        let text = format!(
            "[[entry]]\nname = \"u\"\nargs = [\"--scenario\", \"rolling-upgrade\", \"{flag}\", \"{}\"]\nexpect = \"valid\"\n",
            broker().display()
        );
        let (code, out, err) = gate(dir.path(), &text, &broker());
        assert_eq!(code, 254, "{flag}: {out}\n{err}");
        assert!(err.contains(&format!("sets {flag}: the gate chooses every case's builds")), "{flag}: {err}");
        assert!(!dir.path().join("store/gates").exists(), "{flag}: nothing ran");
    }
}

/// Review of the gate: a baseline that never ran (a script that exits 1) left no figures, which
/// counted as a pass; its harness-failed runs reported a p99 and a throughput of 0.
#[test]
fn a_baseline_that_measured_nothing_is_no_pass() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline");
    script(&baseline, "#!/bin/sh\nexit 1\n");
    let (code, out, err) = gate_between(dir.path(), REGISTER, &baseline, &broker());
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("gate: UNDECIDED"), "{out}");
    assert!(out.contains("figures: register") && out.contains("baseline seed 1"), "{out}");
    let report = json(&gate_dir(dir.path()).join("gate.json"));
    let side = &report["configs"][0]["baseline"];
    assert!(side["p99_ms"].is_null() && side["ok_per_s"].is_null(), "no figures from a failed run: {side}");
}

#[test]
fn a_suite_of_no_case_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for entry in ["seeds = []", "matrix = { nemesis = [] }"] {
        let text = format!("[[entry]]\nname = \"none\"\nexpect = \"valid\"\n{entry}\n");
        let (code, out, err) = gate(dir.path(), &text, &broker());
        assert_eq!(code, 254, "{entry}: {out}\n{err}");
        assert!(err.contains("the entry would run no case"), "{entry}: {err}");
    }
}

#[test]
fn a_candidate_that_acknowledges_before_commit_fails_naming_the_lost_writes() {
    if let Some(why) = ordeal_faults::net::unavailable() {
        println!("SKIPPED: network namespaces are not available here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    script(&candidate, &format!("#!/bin/sh\nexec '{}' \"$@\" --bug=ack-before-commit\n", broker().display()));
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
