//! Each kind of proof the version order gives, on a small history that has that violation: the
//! verdict, the method, and the ops the proof names.

use ordeal_checker::Verdict;
use ordeal_checker::linear::{Method, Options, Report, check_history};
use ordeal_history::{History, Op, OpType, Process};
use serde_json::{Value, json};

/// `(process, f, invocation value, completion value or None for info, call, return)`.
type Spec<'a> = (u64, &'a str, Value, Option<Value>, u64, u64);

fn history(ops: &[Spec]) -> History {
    let mut events: Vec<(u64, Op)> = Vec::new();
    for (p, f, arg, done, call, ret) in ops {
        let p = Process::Client(*p);
        events.push((*call, Op::invoke(p, *f, arg.clone()).at(*call)));
        let completion = match done {
            Some(v) => Op::invoke(p, *f, v.clone()).completed(OpType::Ok),
            None => Op::invoke(p, *f, arg.clone()).completed(OpType::Info),
        };
        events.push((*ret, completion.at(*ret)));
    }
    events.sort_by_key(|(t, _)| *t);
    let mut h = History::new();
    for (_, op) in events {
        h.push(op);
    }
    h
}

/// Checks and asserts an invalid verdict by the version order whose proof names `ops` (invocation
/// indices) and whose explanation contains `words`.
fn check(model: &str, init: Value, ops: &[Spec], involved: &[u64], words: &str) -> Report {
    let r = check_history(model, &init, &history(ops), &Options::default()).expect("checks");
    assert_eq!(r.verdict, Verdict::Invalid, "{r:#?}");
    let f = &r.failures[0];
    assert_eq!(f.method, Method::VersionOrder, "{f:#?}");
    let mut named: Vec<u64> = f.involved.iter().map(|o| o.index).collect();
    named.sort();
    assert_eq!(named, involved, "{f:#?}");
    assert!(f.explanation.contains(words), "{}", f.explanation);
    r
}

#[test]
fn a_read_of_a_value_never_written() {
    let ops = [(0, "write", json!(1), Some(json!(1)), 0, 10), (1, "read", Value::Null, Some(json!(9)), 20, 30)];
    check("cas-register", Value::Null, &ops, &[2], "no op produced");
}

#[test]
fn a_stale_read_is_a_cycle_or_two_interleaved_chains() {
    // write 1, then write 2, then a read of 1: the chain of 1 must precede and follow 2's.
    let ops = [
        (0, "write", json!(1), Some(json!(1)), 0, 10),
        (0, "write", json!(2), Some(json!(2)), 20, 30),
        (1, "read", Value::Null, Some(json!(1)), 40, 50),
    ];
    check("cas-register", Value::Null, &ops, &[0, 2, 4], "must wholly precede the other");
}

#[test]
fn a_read_of_the_initial_state_after_a_write() {
    let ops = [(0, "write", json!(1), Some(json!(1)), 0, 10), (1, "read", Value::Null, Some(Value::Null), 20, 30)];
    check("cas-register", Value::Null, &ops, &[0, 2], "observed the initial state");
}

#[test]
fn a_read_before_its_write_is_a_cycle() {
    // The read returned before the write that made its value was invoked.
    let ops = [(1, "read", Value::Null, Some(json!(1)), 0, 10), (0, "write", json!(1), Some(json!(1)), 20, 30)];
    check("cas-register", Value::Null, &ops, &[0, 2], "in every order the states allow");
}

#[test]
fn two_cas_from_one_value() {
    let ops = [
        (0, "write", json!(1), Some(json!(1)), 0, 10),
        (1, "cas", json!([1, 2]), Some(json!([1, 2])), 20, 30),
        (2, "cas", json!([1, 3]), Some(json!([1, 3])), 20, 30),
    ];
    check("cas-register", Value::Null, &ops, &[0, 2, 3], "both replaced");
}

#[test]
fn cas_ops_that_only_follow_each_other() {
    // Two acknowledged cas ops, each from the other's value: reached from no write.
    let ops = [
        (1, "cas", json!([3, 2]), Some(json!([3, 2])), 20, 30),
        (2, "cas", json!([2, 3]), Some(json!([2, 3])), 20, 30),
    ];
    check("cas-register", Value::Null, &ops, &[0, 1], "reached from no write");
}

#[test]
fn reads_that_disagree_on_the_order_of_appends() {
    let kv = |v: &str| json!({"key": "k", "value": v});
    let ops = [
        (0, "append", kv("a;"), Some(kv("a;")), 0, 100),
        (1, "append", kv("b;"), Some(kv("b;")), 0, 100),
        (2, "read", kv(""), Some(kv("a;b;")), 0, 100),
        (3, "read", kv(""), Some(kv("b;a;")), 0, 100),
    ];
    check("kv", json!(""), &ops, &[1, 2, 3], "disagree on what");
}

#[test]
fn a_log_record_at_two_offsets() {
    let append = |v: i64, o: u64| json!({"key": "p", "value": v, "offset": o});
    let ops = [
        (0, "append", json!({"key": "p", "value": 7}), Some(append(7, 0)), 0, 10),
        (
            1,
            "read",
            json!({"key": "p", "from": 0}),
            Some(json!({"key": "p", "from": 0, "values": [7, 7], "hw": 2})),
            20,
            30,
        ),
    ];
    check("log", Value::Null, &ops, &[0], "at offsets 0 and 1");
}

#[test]
fn a_crashed_write_nobody_saw_is_dropped_and_one_seen_took_effect() {
    let unseen = [(0, "write", json!(5), None, 0, 10), (1, "read", Value::Null, Some(Value::Null), 20, 30)];
    let r = check_history("cas-register", &Value::Null, &history(&unseen), &Options::default()).expect("checks");
    assert_eq!((r.verdict, r.decided_by[0].method), (Verdict::Valid, Method::VersionOrder));
    let seen = [
        (0, "write", json!(5), None, 0, 10),
        (1, "read", Value::Null, Some(json!(5)), 20, 30),
        (1, "read", Value::Null, Some(Value::Null), 40, 50),
    ];
    check("cas-register", Value::Null, &seen, &[2, 4], "observed the initial state");
}
