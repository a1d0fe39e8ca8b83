//! The SSH scale-out path (`--env ssh`), tested on one machine: `--env ssh-lab` gives each node's
//! network namespace an `sshd`, and the run drives every node through it as it would real hosts
//! (binary and certificates sent over SSH; nodes started, signalled and stopped over SSH).
//! Needs root and openssh-server (scripts/setup.sh); bad settings are checked everywhere.

mod common;

use common::{json, jsonl, nemesis_ops, ordeal, run_args, spawn_ordeal, wait_for_history};
use std::path::Path;
use std::time::{Duration, Instant};

fn lab_missing() -> Option<String> {
    ordeal_faults::sshlab::unavailable().map(|why| format!("the SSH lab cannot run here: {why}"))
}

/// Processes of a run in `store`: their command line names it (nodes: their binaries were sent
/// into it; the lab's daemons: their configuration is in it) or their environment does (every
/// node, and every connection a lab's daemon took).
fn processes_of(store: &Path) -> Vec<String> {
    let store = std::fs::canonicalize(store).unwrap().display().to_string();
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let read =
            |f: &str| String::from_utf8_lossy(&std::fs::read(p.path().join(f)).unwrap_or_default()).replace('\0', " ");
        let (cmd, environ) = (read("cmdline"), read("environ"));
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if (cmd.contains(&store) || environ.contains(&format!("ORDEAL_RUN={store}"))) && !zombie {
            out.push(cmd);
        }
    }
    out
}

/// Waits until nothing of the run in `store`, begun since `since`, runs: a killed session's node
/// is killed by its watcher on the host an instant later, and a daemon's connection whose client
/// vanished (a `kill -9`) ends within 6 s. The connections' processes hide their environment
/// (`sshd: user@notty`), so any orphaned `sshd` started since counts.
fn assert_nothing_runs(store: &Path, since: u64) {
    let began = Instant::now();
    let orphans = || common::orphans(since, |cmd| cmd.starts_with(b"sshd:"));
    while !processes_of(store).is_empty() || !orphans().is_empty() {
        let left = (processes_of(store), orphans());
        assert!(began.elapsed() < Duration::from_secs(30), "left running: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files under `dir` whose path ends with one of `names`.
fn files_named(dir: &Path, names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            let text = path.display().to_string();
            if names.iter().any(|n| text.ends_with(n)) {
                found.push(text);
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn nodes_driven_over_ssh_are_killed_paused_and_cut_off_and_nothing_is_left() {
    if !common::runs_here("nodes_driven_over_ssh", lab_missing()) {
        return;
    }
    let since = common::boot_ticks_now();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let nemesis = "kill-leader,pause-follower,partition-leader";
    let extra = ["--env", "ssh-lab", "--nemesis", nemesis, "--rate", "300", "--seed", "3"];
    let (code, out, err) = ordeal(&run_args(store, "1", &extra));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("VALID"), "{out}");
    let run = dir.path().join("latest");
    assert_eq!(json(&run.join("test.json"))["env"], "ssh-lab");
    // Every node was started through its host's daemon, by the run's key.
    for node in 1..=3 {
        let log = std::fs::read_to_string(run.join(format!("ssh/sshd-n{node}.log"))).unwrap();
        assert!(log.contains("Accepted publickey"), "node {node}'s daemon let nobody in:\n{log}");
        let broker = std::fs::read_to_string(run.join(format!("nodes/n{node}/broker.log"))).unwrap();
        assert!(!broker.is_empty(), "node {node}'s output did not come back over its session");
    }
    let history = jsonl(&run.join("history.jsonl"));
    let faults: Vec<&str> =
        nemesis_ops(&history, "start").iter().map(|op| op["value"]["fault"].as_str().unwrap()).collect();
    assert_eq!(faults, ["kill-leader", "pause-follower", "partition-leader"], "each fault once, in turn");
    assert_nothing_runs(dir.path(), since);
    let left = files_named(dir.path(), &["/data", "/bin", ".pid", "_key", ".key", "mux-"]);
    assert!(left.is_empty(), "the run's files and keys stayed: {left:#?}");
}

#[test]
fn a_broker_that_serves_stale_reads_is_caught_over_ssh() {
    if !common::runs_here("stale_reads_over_ssh", lab_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let extra = ["--env", "ssh-lab", "--nemesis", "pause-follower", "--bug", "stale-reads", "--rate", "500"];
    let (code, out, err) = ordeal(&run_args(store, "2", &[&extra[..], &["--seed", "21"]].concat()));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with("INVALID: linearizability: invalid: op "), "{out}");
}

#[test]
fn a_leader_that_acknowledges_before_commit_is_caught_cut_off_over_ssh() {
    if !common::runs_here("ack_before_commit_over_ssh", lab_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let extra = ["--env", "ssh-lab", "--workload", "log", "--nemesis", "partition-leader", "--rate", "500"];
    let (code, out, err) =
        ordeal(&run_args(store, "3", &[&extra[..], &["--bug", "ack-before-commit", "--seed", "1"]].concat()));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with("INVALID"), "{out}");
}

#[test]
fn kill_9_of_an_ssh_lab_run_leaves_nothing_after_cleanup() {
    if !common::runs_here("kill_9_of_an_ssh_lab_run", lab_missing()) {
        return;
    }
    let since = common::boot_ticks_now();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut run = spawn_ordeal(&["run", "--env", "ssh-lab", "--store", store, "--no-progress", "--time-limit", "60"]);
    wait_for_history(dir.path(), "no op completed", |h| h.contains("\"ok\""));
    assert!(!processes_of(dir.path()).is_empty(), "the nodes run before the kill");
    run.kill().unwrap();
    run.wait().unwrap();
    // The sessions die with the harness, and each node with its session.
    assert_nothing_runs(dir.path(), since);
    let (code, out, _) = ordeal(&["cleanup", "--store", store]);
    assert_eq!(code, 0, "{out}");
    let left = files_named(dir.path(), &["/data", "/bin", "_key", ".key", "mux-"]);
    assert!(left.is_empty(), "cleanup left the run's data, binaries, keys or sockets: {left:#?}");
}

#[test]
fn bad_ssh_settings_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let three = "127.0.0.2,127.0.0.3,127.0.0.4";
    for (args, want) in [
        (&["--env", "ssh"][..], "--env ssh needs --ssh-hosts"),
        (&["--env", "ssh", "--ssh-hosts", "127.0.0.2"], "names 1 host(s); the run has 3 node(s)"),
        (&["--env", "ssh", "--ssh-hosts", "n1,n2,n3"], "\"n1\" is not an IP address"),
        (&["--env", "ssh", "--ssh-hosts", "127.0.0.2,127.0.0.3,127.0.0.2"], "127.0.0.2 is named twice"),
        (&["--env", "ssh", "--ssh-hosts", three, "--nemesis", "delay"], "does not yet delay or slow packets"),
        (&["--env", "local", "--ssh-hosts", three], "--ssh-hosts belongs to --env ssh"),
    ] {
        let (code, out, err) = ordeal(&[&["run", "--store", store, "--time-limit", "1"], args].concat());
        assert_eq!(code, 254, "{args:?}: {out}\n{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A host that does not answer: the run fails, naming the host and what it was doing.
    let args = ["run", "--store", store, "--time-limit", "1", "--env", "ssh", "--ssh-hosts", three, "--ssh-port", "1"];
    let (code, out, err) = ordeal(&args);
    assert_eq!(code, 255, "{out}\n{err}");
    assert!(err.contains("ssh 127.0.0.2: sending") && err.contains("Connection refused"), "{err}");
}
