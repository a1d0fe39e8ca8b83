//! `ordeal run` end to end: real broker processes, real faults, the checkers, the run store, and
//! the pipeline's ability to say "invalid" when the system is broken.

mod common;

use common::{checker, json, ordeal, run_args, spawn_ordeal, wait_for_history};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn results(store: &Path) -> Value {
    json(&store.join("latest/results.json"))
}

/// The pid and command line of every live broker whose command line names `root`.
fn brokers_under(root: &Path) -> Vec<(i32, String)> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let zombie = std::fs::read_to_string(p.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
            let pid = p.file_name().to_str().and_then(|p| p.parse().ok());
            if let Some(pid) =
                pid.filter(|_| cmd.contains("ordeal-broker") && cmd.contains(root.to_str().unwrap()) && !zombie)
            {
                out.push((pid, cmd));
            }
        }
    }
    out
}

#[test]
fn register_under_leader_kills_and_pauses_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let (code, out, err) =
        ordeal(&run_args(store, "1", &["--workload", "register", "--nemesis", "kill-leader,pause", "--seed", "7"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let r = results(dir.path());
    assert_eq!(r["verdict"], "valid");
    assert_eq!(r["checkers"][0]["name"], "linearizability");
    assert_eq!(checker(&r, "node-exits")["verdict"], "valid", "the killed leaders were killed by the harness");
    assert!(r["failover"]["faults"].as_u64().unwrap() >= 2, "{}", r["faults"]);
    assert!(r["faults"].as_array().unwrap().iter().any(|f| f["gap_ms"].is_number()), "write gaps recorded");
    assert!(r["stats"]["total"]["ok"].as_u64().unwrap() > 300);
    for file in [
        "test.json",
        "history.jsonl",
        "status.jsonl",
        "run.json",
        "junit.xml",
        "summary.md",
        "report.html",
        "nodes/n1/broker.log",
    ] {
        assert!(dir.path().join("latest").join(file).exists(), "{file} written");
    }
    assert!(!dir.path().join("latest/nodes/n1/data").exists(), "data directories are removed");
    assert!(!dir.path().join("latest/ordeal.pid").exists());
    assert!(brokers_under(dir.path()).is_empty());
    peers_authenticated_and_no_key_left(&dir.path().join("latest"));
    // The run can be analysed again from its directory alone.
    let (code, out, _) = ordeal(&["report", dir.path().join("latest").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn log_under_leader_kills_and_pauses_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let (code, out, err) =
        ordeal(&run_args(store, "1", &["--workload", "log", "--nemesis", "kill-leader,pause", "--seed", "8"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let r = results(dir.path());
    let names: Vec<&str> = r["checkers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["linearizability", "offsets", "log", "node-exits"]);
    let log = &r["checkers"][2]["details"];
    assert!(log["acknowledged"].as_u64().unwrap() > 100, "{log}");
    assert_eq!(log["verdict"], "valid");
    assert!(r["run"]["final_reads_complete"].as_bool().unwrap());
}

#[test]
fn stale_reads_are_caught_and_the_offending_op_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let args = run_args(
        store,
        "2",
        &[
            "--workload",
            "register",
            "--nemesis",
            "pause-follower",
            "--bug",
            "stale-reads",
            "--rate",
            "500",
            "--seed",
            "21",
        ],
    );
    let (code, out, err) = ordeal(&args);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with("INVALID: linearizability: invalid: op "), "{out}");
    let r = results(dir.path());
    let failure = &r["checkers"][0]["details"]["failures"][0];
    let index = failure["op"]["index"].as_u64().unwrap();
    let history = std::fs::read_to_string(dir.path().join("latest/history.jsonl")).unwrap();
    let op: Value = serde_json::from_str(history.lines().nth(index as usize).unwrap()).unwrap();
    assert_eq!(op["f"], "read", "the offending op is a read: {op}");
    assert_eq!(op["index"].as_u64(), Some(index));
    let junit = std::fs::read_to_string(dir.path().join("latest/junit.xml")).unwrap();
    assert!(junit.contains("<failure message=\"invalid: op "), "{junit}");
}

/// A process the test started by hand, killed when the test ends, passed or failed.
struct Orphan(std::process::Child);

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_that_dies_unasked_makes_the_run_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut run = spawn_ordeal(&run_args(store, "3", &["--nemesis", "pause-follower", "--seed", "7"]));
    wait_for_history(dir.path(), "the run never got going", |h| h.lines().count() >= 100);
    // Something outside the run kills node 2: the broker crashing would look the same.
    let (pid, _) = brokers_under(dir.path()).into_iter().find(|(_, cmd)| cmd.contains("--id=2 ")).expect("node 2 runs");
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let code = run.wait().unwrap().code();
    assert_eq!(code, Some(1), "a crashed node is a finding: invalid");
    let r = results(dir.path());
    assert_eq!(r["verdict"], "invalid", "{r}");
    let exits = checker(&r, "node-exits");
    assert_eq!(exits["verdict"], "invalid", "{exits}");
    assert_eq!(exits["details"]["exits"][0]["node"], 2, "{exits}");
    assert!(exits["summary"].as_str().unwrap().contains("signal: 9"), "{exits}");
    assert!(brokers_under(dir.path()).is_empty());
}

#[test]
fn a_cluster_that_never_started_is_a_harness_failure_not_a_crash_finding() {
    let dir = tempfile::tempdir().unwrap();
    let broker = dir.path().join("exits");
    std::fs::write(&broker, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&broker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = ordeal(&[
        "run",
        "--store",
        store.to_str().unwrap(),
        "--broker",
        broker.to_str().unwrap(),
        "--time-limit",
        "3",
        "--no-progress",
    ]);
    assert_eq!(code, 255, "{out}\n{err}");
    assert!(err.contains("exited at start with exit status: 3"), "{err}");
    let r = results(&store);
    assert_eq!(r["verdict"], "unknown", "{r}");
    assert!(r["checkers"].as_array().unwrap().iter().all(|c| c["name"] != "node-exits"), "{r}");
}

#[test]
fn cleanup_after_kill_9_leaves_no_broker() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut run = spawn_ordeal(&[
        "run",
        "--store",
        store,
        "--no-progress",
        "--time-limit",
        "60",
        "--nemesis",
        "pause",
        "--seed",
        "3",
    ]);
    wait_for_history(dir.path(), "the run never got going", |h| h.lines().count() >= 200);
    assert_eq!(brokers_under(dir.path()).len(), 3);
    // While its harness runs, the run is not residue: cleanup leaves its nodes alone.
    let (code, out, err) = ordeal(&["cleanup", "--store", store]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("its run is still in progress") && !out.contains("killed node process"), "{out}");
    assert_eq!(brokers_under(dir.path()).len(), 3, "a live run's nodes were killed");
    // A directory that is not a store holds nothing of ours.
    let (code, _, err) = ordeal(&["cleanup", "--store", dir.path().join("latest").to_str().unwrap()]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("not a store of ordeal runs"), "{err}");
    run.kill().unwrap(); // SIGKILL: no chance to clean up
    run.wait().unwrap();
    // A node the kernel did not take down with its parent: it carries the run directory in its
    // environment, as every node the harness starts does, whatever its flags.
    let broker = PathBuf::from(env!("CARGO_BIN_EXE_ordeal")).with_file_name("ordeal-broker");
    let orphan_dir = dir.path().join("latest/nodes/orphan/data");
    let mut orphan = Orphan(
        Command::new(broker)
            .args(["serve", "--id=1", "--listen=127.0.0.1:0", "--peers=1=127.0.0.1:1"])
            .arg(format!("--data-dir={}", orphan_dir.display()))
            .env("ORDEAL_RUN", dir.path().join("latest"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = ordeal(&["cleanup", "--store", store]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("killed node process") && out.contains("ordeal-broker"), "{out}");
    assert!(out.contains("closed abandoned run"), "{out}");
    orphan.0.wait().unwrap();
    let t = Instant::now();
    while !brokers_under(dir.path()).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "brokers left: {:?}", brokers_under(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let run_json = std::fs::read_to_string(dir.path().join("latest/run.json")).unwrap();
    assert!(run_json.contains("the harness was killed"), "{run_json}");
    assert!(!dir.path().join("latest/ordeal.pid").exists());
    assert!(!dir.path().join("latest/nodes/n1/data").exists());
    let keys: Vec<_> = std::fs::read_dir(dir.path().join("latest/nodes/tls"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
        .collect();
    assert!(keys.is_empty(), "the nodes' private keys stayed: {keys:?}");
}

#[test]
fn issue_17_a_run_interrupted_with_ctrl_c_is_not_valid() {
    // SIGTERM (a cancelled CI job, `timeout`, `docker stop`) stops a run as Ctrl-C does.
    for signal in ["-INT", "-TERM"] {
        interrupted_with(signal);
    }
}

/// A 60 s run of seed `seed` into `store`, in the background, its output kept.
fn long_run(store: &Path, seed: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ordeal"))
        .args(["run", "--store", store.to_str().unwrap(), "--no-progress", "--time-limit", "60", "--seed", seed])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Sends `signal` (`-INT`, `-TERM`) to `run` and waits for it: its exit code and stdout.
fn signalled(run: std::process::Child, signal: &str) -> (Option<i32>, String) {
    assert!(Command::new("kill").args([signal, &run.id().to_string()]).status().unwrap().success());
    let out = run.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn interrupted_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = long_run(dir.path(), "5");
    wait_for_history(dir.path(), "the run never got going", |h| h.lines().count() >= 100);
    let (code, stdout) = signalled(run, signal);
    assert_eq!(code, Some(2), "{signal}: an interrupted run is unknown: {stdout}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert_eq!(results(dir.path())["defects"][0]["kind"], "interrupted");
    // Analysed again later, it still is.
    let (code, out, _) = ordeal(&["report", dir.path().join("latest").to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(brokers_under(dir.path()).is_empty());
    peers_authenticated_and_no_key_left(&dir.path().join("latest"));
}

#[test]
fn ctrl_c_while_the_cluster_is_set_up_stops_the_run_once_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let run = long_run(dir.path(), "6");
    // The pid file is the run's first file: the nodes are not up yet, and nothing listens.
    let began = Instant::now();
    while !dir.path().join("latest/ordeal.pid").exists() {
        assert!(began.elapsed() < Duration::from_secs(30), "the run never began");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (code, stdout) = signalled(run, "-INT");
    assert_eq!(code, Some(2), "interrupted, and closed as such: {stdout}");
    let defects = results(dir.path())["defects"].clone();
    assert!(defects.as_array().unwrap().iter().any(|d| d["kind"] == "interrupted"), "{defects}");
    assert!(brokers_under(dir.path()).is_empty());
}

/// The run's nodes authenticated their peers with the run's CA (each node's log says so at
/// every start, and its `/v1/status` says `peer_auth`), and no private key outlived the run.
fn peers_authenticated_and_no_key_left(run: &Path) {
    let tls = run.join("nodes/tls");
    assert!(tls.join("ca.crt").is_file() && tls.join("node-1.crt").is_file(), "the run's CA issued certificates");
    let keys: Vec<_> = std::fs::read_dir(&tls)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
        .collect();
    assert!(keys.is_empty(), "private keys left: {keys:?}");
    let log = std::fs::read_to_string(run.join("nodes/n1/broker.log")).unwrap();
    assert!(log.contains("peers authenticate with mutual TLS"), "{log}");
    assert!(!log.contains("not authenticated"), "{log}");
}
