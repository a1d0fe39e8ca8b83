//! `ordeal model` at its boundary: the exit code is the exploration's verdict, a counterexample
//! is printed step by step, and bad bounds or names are bad input.

mod common;

use common::ordeal;

#[test]
fn a_rule_switched_off_exits_1_with_the_counterexample() {
    let (code, out, err) = ordeal(&["model", "membership", "--bug", "count-learners", "--max-log", "3"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("VIOLATED   always     a majority of voters holds every commit"), "{out}");
    assert!(out.contains(" 1. node "), "the counterexample's steps are numbered: {out}");
    assert!(out.contains("proposes add-learner 3"), "{out}");
    assert!(out.contains("stopped at the first counterexample"), "{out}");
}

#[test]
fn the_broker_s_rules_exit_0_and_json_says_why() {
    let (code, out, err) = ordeal(&["model", "--max-log", "3", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let e: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(e["verdict"], "valid");
    assert_eq!(e["complete"], true);
    let statuses: Vec<&str> =
        e["properties"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["holds", "holds", "holds", "holds", "reached", "reached"]);
}

#[test]
fn bounds_too_small_to_reach_an_example_exit_2() {
    let (code, out, _) = ordeal(&["model", "--max-log", "2"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unreached  sometimes  a learner is promoted"), "{out}");
    assert!(out.contains("raise --max-log"), "{out}");
}

#[test]
fn bad_names_and_bounds_exit_254() {
    let cases: &[(&[&str], &str)] = &[
        (&["model", "paxos"], "no model named \"paxos\"; known: membership"),
        (&["model", "--bug", "all"], "--bug \"all\": no such bug; known: count-learners"),
        (&["model", "--nodes", "9"], "--nodes 9: expected 1 to 8"),
        (&["model", "--voters", "5"], "--voters 5: expected 1 to 4"),
        (&["model", "--max-log", "0"], "--max-log 0: expected 1 to 30"),
    ];
    for (args, message) in cases {
        let (code, _, err) = ordeal(args);
        assert_eq!(code, 254, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
