//! The `netns` environment: nodes in network namespaces of their own, real partitions (nft),
//! packet loss, NFQUEUE delay, bandwidth caps and clock faults; and no residue afterwards.
//! Runs as root in CI; the rootless test runs the same topology as an unprivileged user.

mod common;

use common::{boot_ticks_now, json, jsonl, nemesis_ops, ordeal, spawn_ordeal, wait_for_history};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What this machine lacks to build namespaces, if anything.
fn netns_missing() -> Option<String> {
    ordeal_faults::net::unavailable().map(|why| format!("network namespaces are not available here: {why}"))
}

/// Processes started since `since` (in clock ticks after boot) that are `sleep infinity`
/// orphans: namespace holders that outlived their run.
fn orphan_holders(since: u64) -> Vec<u32> {
    common::orphans(since, |cmd| cmd == b"sleep\0infinity\0")
}

fn assert_no_residue(since: u64, store: &Path) {
    let t = Instant::now();
    while !orphan_holders(since).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "namespace holders left: {:?}", orphan_holders(since));
        std::thread::sleep(Duration::from_millis(50));
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.lines().any(|l| l.contains(": ob") && l.contains("v")), "run links in the host namespace: {links}");
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("ordeal"), "nft tables left in the host namespace");
    let store = std::fs::canonicalize(store).unwrap();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd =
            String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        assert!(!(cmd.contains("ordeal-broker") && cmd.contains(store.to_str().unwrap())), "broker left: {cmd}");
    }
}

#[test]
fn every_network_and_clock_fault_keeps_the_history_valid_and_leaves_nothing() {
    if !common::runs_here("every_network_and_clock_fault", netns_missing()) {
        return;
    }
    {
        let since = boot_ticks_now();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().to_str().unwrap();
        let all = "partition,partition-halves,partition-one,partition-leader,partition-ring,partition-bridge,partition-oneway,loss,delay,slow,clock-skew,clock-bump,clock-strobe";
        let (code, out, err) = ordeal(&[
            "run",
            "--env",
            "netns",
            "--store",
            store,
            "--no-progress",
            "--workload",
            "register",
            "--nemesis",
            all,
            "--nemesis-order",
            "cycle",
            "--fault-rounds",
            "1",
            "--time-limit",
            "600",
            "--nemesis-interval",
            "0.3",
            "--fault-duration",
            "1.2",
            "--seed",
            "5",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        let history = jsonl(&dir.path().join("latest/history.jsonl"));
        let started: Vec<&str> = nemesis_ops(&history, "start")
            .into_iter()
            .map(|o| {
                assert!(o.get("error").is_none(), "fault failed: {o}");
                o["value"]["fault"].as_str().unwrap()
            })
            .collect();
        for fault in all.split(',') {
            assert!(started.contains(&fault), "{fault} never ran: {started:?}");
        }
        // Clock faults move a node's wall clock (raft only reads the monotonic one).
        let status = jsonl(&dir.path().join("latest/status.jsonl"));
        let skewed = status.iter().any(|s| {
            let times: Vec<i64> =
                s["nodes"].as_object().unwrap().values().filter_map(|n| n["time_ms"].as_i64()).collect();
            times.iter().max().zip(times.iter().min()).is_some_and(|(a, b)| a - b > 3_600_000)
        });
        assert!(skewed, "clock-bump skewed no node's wall clock by an hour");
        assert_eq!(json(&dir.path().join("latest/test.json"))["env"], "netns");
        assert_no_residue(since, dir.path());
    }
}

#[test]
fn an_isolated_leader_acknowledges_nothing_steps_down_and_rejoins_as_follower() {
    if !common::runs_here("an_isolated_leader", netns_missing()) {
        return;
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().to_str().unwrap();
        let (code, out, err) = ordeal(&[
            "run",
            "--env",
            "netns",
            "--store",
            store,
            "--no-progress",
            "--workload",
            "register",
            "--nemesis",
            "partition-leader",
            // Three whole partitions, however long the machine takes; the limit only bounds it.
            "--nemesis-order",
            "cycle",
            "--fault-rounds",
            "3",
            "--time-limit",
            "60",
            "--nemesis-interval",
            "1",
            // Long enough for a loaded machine to elect a new leader before the heal.
            "--fault-duration",
            "4",
            "--rate",
            "300",
            "--seed",
            "9",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        let history = jsonl(&dir.path().join("latest/history.jsonl"));
        let status = jsonl(&dir.path().join("latest/status.jsonl"));
        let results = json(&dir.path().join("latest/results.json"));
        let faults = results["faults"].as_array().unwrap();
        assert_eq!(faults.len(), 3, "{faults:?}");
        // Writes sent to an isolated node that timed out there, over all the partitions: a
        // write it got just before it stepped down is redirected and completes elsewhere.
        let mut reached = 0;
        for (i, f) in faults.iter().enumerate() {
            let target = f["targets"][0].as_u64().unwrap();
            let (start, stop) = (f["start"].as_u64().unwrap(), f["stop"].as_u64().unwrap());
            assert_eq!(f["stepped_down"], true, "the isolated leader steps down (check-quorum): {f}");
            // Writes served while the node was cut off, by whether that node served them.
            let writes = |kind: &str, on_target: bool| {
                history
                    .iter()
                    .filter(|o| {
                        o["node"].as_u64().is_some_and(|n| (n == target) == on_target)
                            && o["type"] == kind
                            && matches!(o["f"].as_str(), Some("write" | "cas"))
                    })
                    .filter(|o| (start + 100_000_000..stop).contains(&o["time"].as_u64().unwrap()))
                    .count()
            };
            assert!(writes("ok", false) > 0, "the majority elected a leader and took writes: {f}");
            // The isolated node acknowledged none...
            assert_eq!(writes("ok", true), 0, "node {target} acknowledged a write while isolated");
            reached += writes("info", true) + writes("fail", true);
            let during: Vec<&Value> =
                status.iter().filter(|s| (start..stop).contains(&s["time"].as_u64().unwrap())).collect();
            assert!(
                during.iter().any(|s| s["nodes"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .any(|(n, v)| *n != target.to_string() && v["groups"][0]["role"] == "leader")),
                "a new leader was elected on the majority side"
            );
            // Links come back as the transport reconnects; then the old leader hears the new term
            // and follows, however long that takes. The run ends soon after the last heal, so
            // that one may have no status sample left to show it.
            if i + 1 == faults.len() {
                continue;
            }
            let rejoined = status.iter().filter(|s| s["time"].as_u64().unwrap() >= stop).any(|s| {
                let me = &s["nodes"][target.to_string()]["groups"][0];
                me["role"] == "follower" && me["leader_id"].as_u64().is_some_and(|l| l != 0 && l != target)
            });
            assert!(rejoined, "after healing, node {target} rejoins as a follower of the new leader");
        }
        // ...though clients did send the isolated leaders some, which timed out.
        assert!(reached > 0, "no write reached an isolated node");
    }
}

/// A follower whose connections to the live leader are reset (what it would see were the leader's
/// process gone) campaigns at once, but cannot depose a leader the other followers still hear.
#[test]
fn a_follower_whose_link_to_a_live_leader_breaks_does_not_depose_it() {
    if !common::runs_here("reset_follower", netns_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let (code, out, err) = ordeal(&[
        "run",
        "--env",
        "netns",
        "--store",
        store,
        "--no-progress",
        "--nemesis",
        "reset-follower",
        "--nemesis-order",
        "cycle",
        "--fault-rounds",
        "2",
        "--time-limit",
        "120",
        "--nemesis-interval",
        "0.5",
        // Long enough for a follower's keep-alive ping to meet the reset and its reconnect the
        // refusal on a machine busy with a parallel build (2 s was not, once in CI).
        "--fault-duration",
        "5",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let history = jsonl(&dir.path().join("latest/history.jsonl"));
    let status = jsonl(&dir.path().join("latest/status.jsonl"));
    let leader_at = |t: u64| {
        let s = status.iter().rev().find(|s| s["time"].as_u64().unwrap() <= t).expect("a status sample");
        let groups = s["nodes"].as_object().unwrap().iter().map(|(n, v)| (n.clone(), v["groups"][0].clone()));
        groups.filter(|(_, g)| g["role"] == "leader").map(|(n, g)| (n, g["term"].clone())).collect::<Vec<_>>()
    };
    let starts = nemesis_ops(&history, "start");
    assert_eq!(starts.len(), 2, "{starts:?}");
    for start in starts {
        let (t, leader) = (start["time"].as_u64().unwrap(), start["value"]["leader"].as_u64().unwrap());
        let stop = history
            .iter()
            .find(|o| o["f"] == "stop" && o["type"] == "info" && o["time"].as_u64().unwrap() > t)
            .expect("the fault healed")["time"]
            .as_u64()
            .unwrap();
        let before = leader_at(t);
        assert_eq!(before.len(), 1, "one leader before the fault: {before:?}");
        assert_eq!(before[0].0, leader.to_string());
        assert_eq!(leader_at(stop), before, "the live leader kept its term and leadership through the fault");
    }
    let campaigned = (1..=3).any(|n| {
        let log = std::fs::read_to_string(dir.path().join(format!("latest/nodes/n{n}/broker.log"))).unwrap_or_default();
        log.contains("the leader's port refuses connections")
    });
    assert!(campaigned, "no follower saw its leader refuse it: the fault did not bite");
}

#[test]
fn the_same_topology_runs_rootless() {
    if !common::runs_here("the_same_topology_runs_rootless", netns_missing()) {
        return;
    }
    // Under /tmp, whatever TMPDIR says: the unprivileged user must be able to reach it.
    let dir = tempfile::Builder::new().prefix("ordeal-rootless").tempdir_in("/tmp").unwrap();
    let bin = dir.path().join("bin");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let ordeal_bin = Path::new(env!("CARGO_BIN_EXE_ordeal"));
    for name in ["ordeal", "ordeal-broker"] {
        std::fs::copy(ordeal_bin.with_file_name(name), bin.join(name)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), bin.as_path(), store.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let args = [
        "run",
        "--env",
        "netns",
        "--no-progress",
        "--nemesis",
        "partition",
        "--nemesis-order",
        "cycle",
        "--fault-rounds",
        "1",
        "--time-limit",
        "60",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1",
    ];
    let mut cmd = if nix::unistd::geteuid().is_root() {
        // Drop to nobody: the run must build its namespaces through a user namespace.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bin.join("ordeal"));
        c
    } else {
        Command::new(bin.join("ordeal"))
    };
    let out = cmd.args(args).arg("--store").arg(&store).env("HOME", dir.path()).stdin(Stdio::null()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if stderr.contains("creating a user and network namespace (rootless)") {
        println!(
            "SKIPPED the_same_topology_runs_rootless: this machine refuses unprivileged user namespaces: {stderr}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(json(&store.join("latest/test.json"))["env"], "netns");
    let history = std::fs::read_to_string(store.join("latest/history.jsonl")).unwrap();
    assert!(history.contains("\"fault\":\"partition\",\"grudge\""), "the partition ran");
    use std::os::unix::fs::MetadataExt;
    let expected = if nix::unistd::geteuid().is_root() { 65534 } else { nix::unistd::getuid().as_raw() };
    let owner = std::fs::metadata(store.join("latest/history.jsonl")).unwrap().uid();
    assert_eq!(owner, expected, "the run's files belong to the unprivileged user");
}

#[test]
fn kill_9_of_a_netns_run_leaves_nothing() {
    if !common::runs_here("kill_9_of_a_netns_run", netns_missing()) {
        return;
    }
    {
        let since = boot_ticks_now();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().to_str().unwrap();
        let mut run = spawn_ordeal(&[
            "run",
            "--env",
            "netns",
            "--store",
            store,
            "--no-progress",
            "--time-limit",
            "60",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "0.5",
        ]);
        wait_for_history(dir.path(), "the partition never started", |h| h.contains("grudge"));
        run.kill().unwrap();
        run.wait().unwrap();
        let (code, out, _) = ordeal(&["cleanup", "--store", store]);
        assert_eq!(code, 0, "{out}");
        assert_no_residue(since, dir.path());
    }
}
