//! etcd as the system under test (`--system etcd`): a system nobody here wrote, run through the
//! same seam as the broker. Needs etcd (Debian's `etcd-server`, which `scripts/setup.sh`
//! installs); the partition test also needs network namespaces (root in CI).

mod common;

use common::{json, jsonl, ordeal};
use serde_json::Value;
use std::path::Path;

const ETCD: &str = "/usr/bin/etcd";

/// `None` when etcd is not installed, with the reason printed.
fn etcd_or_skip(test: &str) -> Option<()> {
    if Path::new(ETCD).is_file() {
        return Some(());
    }
    println!("SKIPPED {test}: {ETCD} is missing (scripts/setup.sh installs etcd-server)");
    None
}

/// The etcd nodes of the run that are still alive: none may outlive it.
fn etcd_left_under(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let needle = store.to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("etcd") && cmd.contains("--data-dir") && cmd.contains(&needle) {
            out.push(cmd);
        }
    }
    out
}

/// `ordeal run --system etcd` into `store`, then `extra`.
fn run_etcd(store: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run", "--store", store, "--no-progress", "--system", "etcd"];
    args.extend_from_slice(extra);
    ordeal(&args)
}

#[test]
fn etcd_survives_leader_kills_and_pauses() {
    if etcd_or_skip("etcd_survives_leader_kills_and_pauses").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let (code, out, err) = run_etcd(
        store,
        &[
            "--env",
            "local",
            "--workload",
            "register",
            "--nemesis",
            "kill-leader,pause-leader",
            "--nemesis-order",
            "cycle",
            "--fault-rounds",
            "2",
            "--nemesis-interval",
            "2",
            "--fault-duration",
            "2",
            "--time-limit",
            "60",
            "--seed",
            "7",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("VALID"), "{out}");
    let latest = dir.path().join("latest");
    let r = json(&latest.join("results.json"));
    assert!(r["run"]["final_reads_complete"].as_bool().unwrap(), "{r}");
    let test = json(&latest.join("test.json"));
    assert_eq!(test["system"], "etcd");
    assert!(test["broker_version"].as_str().unwrap().starts_with("3.4"), "etcd's version is recorded: {test}");
    let history = jsonl(&latest.join("history.jsonl"));
    let ok = |f: &str| history.iter().filter(|op| op["type"] == "ok" && op["f"] == f).count();
    assert!(ok("write") > 100 && ok("read") > 100 && ok("cas") > 10, "the register ran on etcd");
    let faults: Vec<&Value> = history.iter().filter(|op| op["process"] == "nemesis" && op["type"] == "info").collect();
    let mut killed = faults.iter().filter(|op| op["f"] == "start" && op["value"]["fault"] == "kill-leader");
    assert!(killed.any(|op| op["value"]["targets"][0].is_u64()), "a leader was killed");
    // Status sampling saw a leader and named it by our node ids.
    let statuses = jsonl(&latest.join("status.jsonl"));
    let leaders: Vec<u64> = statuses
        .iter()
        .flat_map(|s| s["nodes"].as_object().cloned().unwrap_or_default())
        .filter(|(_, n)| n["groups"][0]["role"] == "leader")
        .filter_map(|(id, _)| id.parse().ok())
        .collect();
    assert!(!leaders.is_empty() && leaders.iter().all(|id| (1..=3).contains(id)), "leaders {leaders:?}");
    assert!(etcd_left_under(dir.path()).is_empty(), "etcd outlived the run: {:?}", etcd_left_under(dir.path()));
}

#[test]
fn etcd_refuses_what_it_cannot_run() {
    if etcd_or_skip("etcd_refuses_what_it_cannot_run").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for (extra, says) in [
        (&["--workload", "log"][..], "etcd has no client for the log workload"),
        (&["--bug", "stale-reads"][..], "etcd has none"),
        (&["--groups", "2"][..], "etcd runs one raft group"),
        (&["--etcd-reads", "stale"][..], "expected linearizable or serializable"),
    ] {
        let (code, out, err) = run_etcd(store, &[&["--env", "local"][..], extra].concat());
        assert_eq!(code, 254, "bad input: {extra:?}: {out}\n{err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

#[test]
fn serializable_reads_of_a_partitioned_leader_are_caught() {
    if etcd_or_skip("serializable_reads_of_a_partitioned_leader_are_caught").is_none() {
        return;
    }
    if let Some(why) = ordeal_faults::net::unavailable() {
        println!("SKIPPED serializable_reads: network namespaces are not available here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    // A cut-off leader keeps serving serializable reads from its own state while the majority
    // elects another leader and moves on. A process whose write times out is replaced by one
    // `--concurrency` ids on, bound to member `id % 3`: with 9 processes the replacement stays
    // on the cut-off leader and keeps reading from it after the majority's next write, which
    // makes a stale read near-certain in each partition (with 10 every replacement moved to
    // the next member and the reads of the old leader could end before the election). The run
    // ends once two partitions ran and healed; the time limit only bounds it.
    let (code, out, err) = run_etcd(
        store,
        &[
            "--env",
            "netns",
            "--etcd-reads",
            "serializable",
            "--workload",
            "register",
            "--nemesis",
            "partition-leader",
            "--nemesis-order",
            "cycle",
            "--fault-rounds",
            "2",
            "--nemesis-interval",
            "1",
            "--fault-duration",
            "3",
            "--time-limit",
            "60",
            "--concurrency",
            "9",
            "--rate",
            "400",
            "--seed",
            "11",
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with("INVALID: linearizability: invalid: op "), "{out}");
    let latest = dir.path().join("latest");
    let r = json(&latest.join("results.json"));
    let failure = &r["checkers"][0]["details"]["failures"][0];
    let index = failure["op"]["index"].as_u64().unwrap();
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    let op: Value = serde_json::from_str(history.lines().nth(index as usize).unwrap()).unwrap();
    assert_eq!(op["f"], "read", "the offending op is a read: {op}");
    assert!(etcd_left_under(dir.path()).is_empty(), "etcd outlived the run");
}
