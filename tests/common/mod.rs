//! Helpers shared by the integration tests. Every file under `tests/` is a crate of its own that
//! includes this module and uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ordeal ARGS` to completion: (exit code, stdout, stderr).
/// Whether `test` can run on this machine: `missing` names what it lacks (namespaces, FUSE...),
/// printed as the reason the test is skipped.
pub fn runs_here(test: &str, missing: Option<String>) -> bool {
    match missing {
        Some(why) => {
            println!("SKIPPED {test}: {why}");
            false
        }
        None => true,
    }
}

pub fn ordeal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordeal")).args(args).output().expect("ordeal runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `ordeal run` with a fault every second lasting 1.5 s, the faults of `--nemesis` in turn, until
/// each ran `rounds` times (60 s only bound it: a loaded machine fits fewer faults in a fixed
/// time), into `store`, then `extra`.
pub fn run_args<'a>(store: &'a str, rounds: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--store",
        store,
        "--no-progress",
        "--nemesis-order",
        "cycle",
        "--fault-rounds",
        rounds,
        "--time-limit",
        "60",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1.5",
    ];
    args.extend_from_slice(extra);
    args
}

/// `ordeal run --scenario rolling-upgrade` on loopback under leader kills (a fault every second,
/// 300 ops/s, seed 5, a generous time limit: the run ends once every node moved), into `store`,
/// then `extra`.
pub fn rolling_upgrade(store: &Path, extra: &[&str]) -> (i32, String, String) {
    let store = store.to_str().unwrap();
    let mut args = vec![
        "run",
        "--scenario",
        "rolling-upgrade",
        "--nemesis",
        "kill-leader",
        "--env",
        "local",
        "--rate",
        "300",
        "--time-limit",
        "120",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1",
        "--store",
        store,
        "--no-progress",
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    ordeal(&args)
}

/// The entry of checker `name` in a run's `results.json`.
pub fn checker<'a>(results: &'a Value, name: &str) -> &'a Value {
    let checkers = results["checkers"].as_array().expect("results.json lists its checkers");
    checkers.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} checker in {results}"))
}

/// The last lines of every node's log in `run`: what a failed test shows, since its temporary
/// store goes with it.
pub fn node_logs(run: &Path) -> String {
    let mut out = String::new();
    for node in std::fs::read_dir(run.join("nodes")).into_iter().flatten().flatten() {
        for log in std::fs::read_dir(node.path()).into_iter().flatten().flatten() {
            let path = log.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                out += &format!("--- {}:\n{tail}\n", path.display());
            }
        }
    }
    out
}

/// Clock ticks since boot, as `/proc/<pid>/stat` counts a process's start.
pub fn boot_ticks_now() -> u64 {
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (uptime * 100.0) as u64
}

/// Processes started since `since` (clock ticks after boot) whose parent is init, and whose
/// command line `matches`: what a run left running when it ended.
pub fn orphans(since: u64, matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if !matches(&std::fs::read(p.path().join("cmdline")).unwrap_or_default()) {
            continue;
        }
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split_whitespace().collect();
        let (ppid, start) =
            (fields.get(1).and_then(|f| f.parse::<u32>().ok()), fields.get(19).and_then(|f| f.parse::<u64>().ok()));
        if ppid == Some(1) && start.is_some_and(|s| s >= since) && fields.first() != Some(&"Z") {
            out.push(pid);
        }
    }
    out
}

/// Starts `ordeal ARGS` in the background, its output discarded.
pub fn spawn_ordeal(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ordeal"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordeal starts")
}

/// A JSON file of a run directory, e.g. `latest/results.json` under a store.
pub fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every line of a JSONL file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A history's completed nemesis ops named `f` (`start` or `stop`), in order.
pub fn nemesis_ops<'a>(history: &'a [Value], f: &str) -> Vec<&'a Value> {
    history.iter().filter(|o| o["process"] == "nemesis" && o["type"] == "info" && o["f"] == f).collect()
}

/// Waits up to 30 s for the store's latest history to satisfy `ready`; `what` names the wait in
/// the failure.
pub fn wait_for_history(store: &Path, what: &str, ready: impl Fn(&str) -> bool) {
    let history = store.join("latest/history.jsonl");
    let t = Instant::now();
    while !std::fs::read_to_string(&history).is_ok_and(|h| ready(&h)) {
        assert!(t.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(Path::new(path).exists(), "{path} is missing: scripts/setup.sh installs Debian's chromium");
    path
}

/// Loads `url` in headless Chromium (installed by `scripts/setup.sh`); returns the DOM after scripts ran, and the browser's log.
pub fn load(url: &str, profile: &Path) -> (String, String) {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}
