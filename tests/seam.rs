//! The system seam from the outside: faults that run at the same time, and a run reproduced from
//! its `test.json` alone.

mod common;

use common::{json, jsonl, nemesis_ops, ordeal, run_args};
use serde_json::Value;
use std::path::Path;

/// The nemesis's completed `start` ops: (fault, what it did).
fn fault_starts(run: &Path) -> Vec<Value> {
    nemesis_ops(&jsonl(&run.join("history.jsonl")), "start").into_iter().cloned().collect()
}

#[test]
fn two_faults_at_once_run_and_heal() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let (code, out, err) = ordeal(&[
        "run",
        "--store",
        store,
        "--no-progress",
        "--env",
        "local",
        "--nemesis",
        "kill-follower+pause-leader",
        "--nemesis-order",
        "cycle",
        "--fault-rounds",
        "2",
        "--time-limit",
        "120",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1.5",
        "--seed",
        "11",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let run = dir.path().join("latest");
    let starts = fault_starts(&run);
    assert_eq!(starts.len(), 2, "two rounds, then the main phase ended: {starts:?}");
    for start in &starts {
        assert!(start.get("error").is_none(), "{start}");
        let parts = start["value"]["parts"].as_array().expect("one part per fault");
        let names: Vec<&str> = parts.iter().map(|p| p["fault"].as_str().unwrap()).collect();
        assert_eq!(names, ["kill-follower", "pause-leader"]);
        // Two different nodes were down at once: the follower killed and the leader paused.
        let targets = start["value"]["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 2, "{start}");
    }
    let history = jsonl(&run.join("history.jsonl"));
    let stops = nemesis_ops(&history, "stop");
    assert!(stops.iter().all(|s| s.get("error").is_none()), "every fault healed: {stops:?}");
    let results = json(&run.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    assert!(results["run"]["heal_error"].is_null());
}

/// The main phase's schedule of a run with one client: each op's name, key and new value (a
/// cas's expected value depends on what earlier ops returned, so it is left out), in order.
fn schedule(run: &Path) -> Vec<String> {
    // Client ops invoked in the run's phases: the closing final reads come after the last.
    let phases = json(&run.join("run.json"))["phases"].as_array().cloned().unwrap_or_default();
    let in_phase = |t: u64| phases.iter().any(|p| p["start"].as_u64() <= Some(t) && Some(t) < p["end"].as_u64());
    jsonl(&run.join("history.jsonl"))
        .iter()
        .filter(|o| o["type"] == "invoke" && o["process"].is_u64() && o["time"].as_u64().is_some_and(in_phase))
        .map(|o| {
            let v = &o["value"];
            format!("{} {} {}", o["f"], v["key"], if o["f"] == "cas" { &v["to"] } else { &v["value"] })
        })
        .collect()
}

#[test]
fn a_run_is_reproduced_from_its_test_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let extra = ["--env", "local", "--nemesis", "kill,pause", "--concurrency", "1", "--ops-per-key", "20"];
    let (code, out, err) = ordeal(&run_args(store, "1", &[&extra[..], &["--seed", "42"]].concat()));
    assert_eq!(code, 0, "{out}\n{err}");
    let first = std::fs::canonicalize(dir.path().join("latest")).unwrap();
    let test_json = first.join("test.json");
    let (code, out, err) = ordeal(&["run", "--test", test_json.to_str().unwrap(), "--store", store, "--no-progress"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let second = std::fs::canonicalize(dir.path().join("latest")).unwrap();
    assert_ne!(first, second, "a new run directory");
    let (a, b) = (json(&first.join("test.json")), json(&second.join("test.json")));
    for field in
        ["seed", "nemesis", "ops_per_key", "nemesis_order", "fault_rounds", "concurrency", "workload", "system"]
    {
        assert_eq!(a[field], b[field], "{field}");
    }
    let faults = |run: &Path| -> Vec<String> {
        fault_starts(run).iter().map(|s| format!("{} {}", s["value"]["fault"], s["value"]["targets"])).collect()
    };
    let (fa, fb) = (faults(&first), faults(&second));
    let n = fa.len().min(fb.len());
    assert!(n >= 2, "faults ran: {fa:?} {fb:?}");
    assert_eq!(fa[..n], fb[..n], "the same faults on the same nodes, in the same order");
    let (sa, sb) = (schedule(&first), schedule(&second));
    let n = sa.len().min(sb.len());
    assert!(n > 100, "ops ran: {} and {}", sa.len(), sb.len());
    assert_eq!(sa[..n], sb[..n], "the same ops in the same order");
}

#[test]
fn a_bad_test_json_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.json");
    std::fs::write(&path, "{\"name\": 3}").unwrap();
    let (code, _, err) = ordeal(&["run", "--test", path.to_str().unwrap(), "--store", dir.path().to_str().unwrap()]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("test.json") && err.contains("not a test.json"), "{err}");
    let (code, _, err) = ordeal(&["run", "--system", "cassandra"]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("unknown system") && err.contains("broker"), "{err}");
    let (code, _, err) = ordeal(&["run", "--nemesis", "kill-leader@x"]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("group number"), "{err}");
}

/// A copy of the broker (a "new build") in `dir`; with `bug`, a wrapper that starts the broker
/// with that deliberate bug, standing for a candidate build that broke something.
fn candidate(dir: &Path, bug: Option<&str>) -> std::path::PathBuf {
    let broker = Path::new(env!("CARGO_BIN_EXE_ordeal")).with_file_name("ordeal-broker");
    let path = dir.join("candidate");
    match bug {
        None => {
            std::fs::copy(&broker, &path).unwrap();
        }
        Some(bug) => {
            std::fs::write(&path, format!("#!/bin/sh\nexec '{}' \"$@\" --bug={bug}\n", broker.display())).unwrap();
            let mut p = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
            std::fs::set_permissions(&path, p).unwrap();
        }
    }
    path
}

fn rolling_upgrade(store: &str, to: &Path, seed: &str) -> (i32, String, String) {
    ordeal(&[
        "run",
        "--scenario",
        "rolling-upgrade",
        "--to",
        to.to_str().unwrap(),
        "--nemesis",
        "pause-follower",
        "--env",
        "local",
        "--rate",
        "500",
        "--time-limit",
        "120",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1.5",
        "--store",
        store,
        "--no-progress",
        "--seed",
        seed,
    ])
}

#[test]
fn a_rolling_upgrade_moves_every_node_once_leader_last_and_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let to = candidate(dir.path(), None);
    let (code, out, err) = rolling_upgrade(dir.path().join("store").to_str().unwrap(), &to, "2");
    assert_eq!(code, 0, "{out}\n{err}");
    let run = dir.path().join("store/latest");
    let upgrades: Vec<Value> = fault_starts(&run).into_iter().filter(|s| s["value"]["fault"] == "upgrade").collect();
    let mut moved: Vec<u64> = upgrades.iter().map(|u| u["value"]["targets"][0].as_u64().unwrap()).collect();
    assert!(upgrades.iter().all(|u| u["value"]["to"] == to.to_str().unwrap() && u.get("error").is_none()));
    moved.sort_unstable();
    assert_eq!(moved, [1, 2, 3], "every node once: {upgrades:?}");
    assert_eq!(json(&run.join("results.json"))["verdict"], "valid");
}

#[test]
fn a_rolling_upgrade_to_a_broken_build_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let to = candidate(dir.path(), Some("stale-reads"));
    let (code, out, err) = rolling_upgrade(dir.path().join("store").to_str().unwrap(), &to, "3");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("cannot be linearized"), "{out}");
}

/// A candidate that switches the new format on before every node reads it: the old nodes stop
/// with the reason, and the run is invalid with that evidence.
#[test]
fn an_early_feature_gate_is_caught_with_the_refusal_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = common::rolling_upgrade(&store, &["--bug", "early-feature"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("upgrade          invalid"), "{out}");
    let results = json(&store.join("latest/results.json"));
    let upgrade = common::checker(&results, "upgrade").clone();
    let refusals = upgrade["details"]["refusals"].as_array().unwrap();
    assert!(refusals.iter().any(|r| r.as_str().unwrap().contains("this build reads up to")), "{upgrade}");
    let report = std::fs::read_to_string(store.join("latest/report.html")).unwrap();
    assert!(report.contains("this build reads up to"), "the report shows the refusal");
}
