//! `ordeal run --scenario learner-catchup` end to end on real broker processes: a fresh learner
//! joins under load and leader kills, catches up from a snapshot, is promoted under the gate and
//! replaces a voter; the premature promote is refused, and a broker whose gate is lax
//! (`--bug lax-promote`) is caught with the evidence named. The same scenario runs against etcd
//! (`scripts/setup.sh` installs it; this test does not skip without it), whose own gate is
//! measured, not held to ours.

mod common;

use common::{json, load, ordeal};
use serde_json::Value;
use std::path::Path;

/// One round of the scenario (a `replace`, then a leader kill) with `extra` (the system and its
/// workload), bounded by a generous time limit; the run ends as soon as both faults ran.
fn learner_catchup(store: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "run",
        "--scenario",
        "learner-catchup",
        "--nemesis",
        "kill-leader",
        "--env",
        "local",
        "--fault-rounds",
        "1",
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
        "13",
    ];
    args.extend_from_slice(extra);
    ordeal(&args)
}

/// The completed `start` ops of the membership nemesis.
fn replaces(run: &Path) -> Vec<Value> {
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    history
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|op| op["process"] == "nemesis" && op["type"] == "info" && op["value"]["fault"] == "replace")
        .collect()
}

#[test]
fn a_learner_replaces_a_voter_under_leader_kills_and_the_premature_promote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = learner_catchup(store.to_str().unwrap(), &["--workload", "log"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let run = store.join("latest");
    let replace = &replaces(&run)[0]["value"];
    assert_eq!(replace["premature"]["accepted"], false, "{replace}");
    assert!(replace["premature"]["reason"].as_str().unwrap().contains("refused"), "{replace}");
    // Refused by the gate's comparison of the learner's own figure, not for want of an answer.
    let saw = replace["premature"]["gate_saw"].as_u64().expect("the gate's figure");
    assert!(saw < replace["premature"]["min_applied_index"].as_u64().unwrap(), "{replace}");
    assert_eq!(replace["promote"]["accepted"], true, "{replace}");
    assert!(replace["removed"].is_u64(), "an old voter was removed: {replace}");
    let results = json(&run.join("results.json"));
    let membership = common::checker(&results, "membership");
    assert_eq!(membership["verdict"], "valid", "{membership}");
    let learner = &membership["details"]["learners"][0];
    assert!(learner["promotable_ms"].is_number() && learner["entries_per_s"].is_number(), "{learner}");
    assert!(learner["mb_per_s"].is_number() && learner["snapshot_bytes"].as_u64() > Some(0), "{learner}");
    assert!(
        membership["details"]["commits_judged"].as_u64() > Some(0),
        "the learner-quorum check judged: {membership}"
    );
    let samples = std::fs::read_to_string(run.join("catchup.jsonl")).unwrap();
    assert!(samples.lines().count() >= 1, "catch-up samples written");
    // The catch-up plot renders in a real browser, with the premature promote marked.
    let report = std::fs::canonicalize(run.join("report.html")).unwrap();
    let (dom, _) = load(&format!("file://{}", report.display()), &dir.path().join("profile"));
    let node = replace["targets"][0].as_u64().unwrap();
    let at = dom.find(&format!("<figure class=\"plot\" id=\"catch-up-{node}\">")).expect("a catch-up plot per learner");
    let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
    assert!(figure.contains("<svg") && figure.contains("<polyline"), "the plot has its lines");
    assert!(figure.contains("premature promote refused"), "the refusal is marked");
    assert!(figure.contains("gated promote accepted"), "the promote is marked");
    assert!(figure.contains("MB/s"), "the catch-up rate in MB/s is in the caption");
    let at = dom.find("<figure class=\"plot\" id=\"raft-0\">").expect("a raft role timeline");
    let roles = &dom[at..at + dom[at..].find("</figure>").unwrap()];
    for change in ["add-learner", "promote refused", "promote", "remove"] {
        // plotters writes each label on a line of its own inside its <text>.
        let label = format!(">\n{change}\n</text>");
        assert!(roles.contains(&label), "{change} is marked on the role timeline");
    }
    assert!(dom.contains("premature promote(s) refused"), "the membership check shows");
}

#[test]
fn a_lax_promotion_gate_is_caught_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = learner_catchup(store.to_str().unwrap(), &["--workload", "log", "--bug", "lax-promote"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("membership"), "{out}");
    assert!(out.contains("premature promote of node") && out.contains("accepted"), "{out}");
    assert!(out.contains("min_applied_index"), "the figures are named: {out}");
}

#[test]
fn etcd_learners_join_are_promoted_and_replace_a_voter_with_their_gate_measured() {
    assert!(Path::new("/usr/bin/etcd").is_file(), "etcd is missing: scripts/setup.sh installs etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = learner_catchup(store.to_str().unwrap(), &["--system", "etcd", "--workload", "register"]);
    let run = store.join("latest");
    assert_eq!(code, 0, "{out}\n{err}\n{}", common::node_logs(&run));
    let replace = &replaces(&run)[0]["value"];
    let node = replace["targets"][0].as_u64().unwrap();
    assert!(replace["catch_up"]["promotable_ms"].is_number(), "the learner caught up: {replace}");
    // etcd's gate decides (the premature promote either way); the record says it was etcd's.
    let premature = &replace["premature"];
    assert!(premature["accepted"].is_boolean() && premature["paused"] == true, "{replace}");
    assert!(premature["own_gate"].as_str().unwrap().contains("etcd"), "{replace}");
    assert!(replace["removed"].is_u64(), "an old voter was removed: {replace}");
    let results = json(&run.join("results.json"));
    let membership = common::checker(&results, "membership");
    assert_eq!(membership["verdict"], "valid", "{membership}");
    assert!(membership["details"]["commits_judged"].as_u64() > Some(0), "etcd's progress was judged: {membership}");
    assert_eq!(common::checker(&results, "linearizability")["verdict"], "valid", "{results}");
    // The learner and its promotion show in etcd's own member lists, as sampled.
    let samples = std::fs::read_to_string(run.join("catchup.jsonl")).unwrap();
    let sampled: Vec<Value> = samples.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let listed =
        |key: &str| sampled.iter().any(|s| s[key].as_array().unwrap().iter().any(|n| n.as_u64() == Some(node)));
    assert!(listed("learners") && listed("voters"), "node {node} sampled as learner, then voter");
}
