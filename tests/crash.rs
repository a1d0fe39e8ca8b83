//! The crash faults on real brokers whose data directories are lazyfs mounts: the clean build
//! keeps every acknowledged write through whole-cluster crashes that lose un-fsynced data, the
//! `fsync-lie` build loses them, and no mount outlives the run.

mod common;

use common::{checker, json, jsonl, ordeal};
use ordeal_faults::lazyfs;
use std::path::Path;

/// Two rounds of `crash-all` under appends, into `store`, then `extra`: the run ends once both
/// crashes ran (the time limit only bounds it).
fn crash_run(store: &Path, extra: &[&str]) -> (i32, String, String) {
    // Faults by count, not by clock: whatever the load, each run crashes the cluster twice.
    let mut args = vec![
        "run",
        "--store",
        store.to_str().unwrap(),
        "--no-progress",
        "--time-limit",
        "60",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1.5",
        "--env",
        "local",
        "--workload",
        "log",
        "--nemesis",
        "crash-all",
        "--nemesis-order",
        "cycle",
        "--fault-rounds",
        "2",
        "--rate",
        "300",
        "--seed",
        "1",
    ];
    args.extend_from_slice(extra);
    ordeal(&args)
}

/// What each crash of the run's history says its nodes lost.
fn losses(store: &Path) -> Vec<serde_json::Value> {
    let history = jsonl(&store.join("latest/history.jsonl"));
    history.iter().filter_map(|op| op["value"].get("lost_unsynced").cloned()).collect()
}

#[test]
fn crashes_lose_acknowledged_writes_only_of_a_broker_that_lies_about_fsync() {
    if !common::runs_here(
        "crashes_lose_acknowledged_writes_only_of_a_broker_that_lies_about_fsync",
        lazyfs::unavailable(),
    ) {
        return;
    }
    let clean = tempfile::tempdir().unwrap();
    let (code, out, err) = crash_run(clean.path(), &[]);
    assert_eq!(code, 0, "the clean build keeps what it acknowledged:\n{out}\n{err}");
    assert_eq!(losses(clean.path()).len(), 2, "two crashes, each naming what its nodes lost");

    let lying = tempfile::tempdir().unwrap();
    let (code, out, err) = crash_run(lying.path(), &["--bug", "fsync-lie"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let results = json(&lying.path().join("latest/results.json"));
    let log = checker(&results, "log");
    assert_eq!(log["verdict"], "invalid", "{log}");
    assert!(log["details"]["lost"].as_array().is_some_and(|l| !l.is_empty()), "the lost writes are named: {log}");
    let lost_bytes: u64 = losses(lying.path())
        .iter()
        .flat_map(|l| l.as_object().unwrap().values())
        .map(|n| n["bytes"].as_u64().unwrap())
        .sum();
    assert!(lost_bytes > 0, "the crashes dropped the raft log's unsynced tail");

    for store in [clean.path(), lying.path()] {
        assert!(lazyfs::leftovers(store).is_empty(), "no mount outlives its run");
    }
}

#[test]
fn cleanup_unmounts_what_a_killed_harness_left() {
    if !common::runs_here("cleanup_unmounts_what_a_killed_harness_left", lazyfs::unavailable()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut run = common::spawn_ordeal(&[
        "run",
        "--store",
        store,
        "--no-progress",
        "--env",
        "local",
        "--nemesis",
        "crash-all",
        "--time-limit",
        "60",
    ]);
    common::wait_for_history(dir.path(), "the run never got going", |h| h.lines().count() >= 100);
    assert_eq!(lazyfs::leftovers(dir.path()).len(), 3, "one mount per node");
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(lazyfs::leftovers(dir.path()).len(), 3, "a harness killed hard leaves its mounts");
    let (code, out, err) = ordeal(&["cleanup", "--store", store]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("unmounted lazyfs at"), "{out}");
    assert!(lazyfs::leftovers(dir.path()).is_empty(), "{out}");
}
