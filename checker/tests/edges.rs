//! Histories at the checkers' edges, each a few ops: input that says too little to be read as a
//! pass, file times that would lose the file's order, and lengths no append made.

use ordeal_checker::Verdict;
use ordeal_checker::linear::{Options, check_by_name};
use ordeal_history::{History, Op, OpType, Process};
use serde_json::{Value, json};

/// A history of `(process, type, f, value, time)`, in order.
fn history(ops: &[(u64, OpType, &str, Value, u64)]) -> History {
    let mut h = History::new();
    for (p, kind, f, value, time) in ops {
        h.push(Op::invoke(Process::Client(*p), *f, value.clone()).completed(*kind).at(*time));
    }
    h
}

fn kv(h: &History) -> Result<Verdict, String> {
    check_by_name("kv", &Value::Null, h.ops(), &Options::default()).map(|r| r.verdict).map_err(|e| e.to_string())
}

#[test]
fn a_read_whose_completion_says_no_value_is_refused_not_taken_as_absent() {
    for said in [json!(7), json!({"key": "x", "val": 7}), json!(["x", 7, 0])] {
        let h =
            history(&[(0, OpType::Invoke, "read", json!({"key": "x"}), 1), (0, OpType::Ok, "read", said.clone(), 2)]);
        let err = kv(&h).expect_err(&said.to_string());
        assert!(err.contains("needs its \"value\""), "{err}");
    }
    let absent = history(&[
        (0, OpType::Invoke, "read", json!({"key": "x"}), 1),
        (0, OpType::Ok, "read", json!({"key": "x", "value": null}), 2),
    ]);
    assert_eq!(kv(&absent), Ok(Verdict::Valid), "null says absent");
}

fn knossos(text: &str, model: &str) -> Verdict {
    let h = ordeal_checker::formats::knossos::parse(text).unwrap();
    check_by_name(model, &json!(0), h.ops(), &Options::default()).unwrap().verdict
}

#[test]
fn a_knossos_read_of_nil_is_unknown_also_in_an_independent_tuple() {
    let read_nil = "[{:process 0, :type :invoke, :f :read, :value [0 nil]}
 {:process 0, :type :ok, :f :read, :value [0 nil]}
 {:process 1, :type :invoke, :f :write, :value [0 1]}
 {:process 1, :type :ok, :f :write, :value [0 1]}]";
    assert_eq!(knossos(read_nil, "kv"), Verdict::Valid);
}

#[test]
fn equal_knossos_times_keep_the_files_order() {
    // The read is invoked at the time the write returned, after it in the file: it must see 1.
    let stale = "[{:process 0, :type :invoke, :f :write, :value 1, :time 1}
 {:process 0, :type :ok, :f :write, :value 1, :time 2}
 {:process 1, :type :invoke, :f :read, :value nil, :time 2}
 {:process 1, :type :ok, :f :read, :value 0, :time 3}]";
    assert_eq!(knossos(stale, "register"), Verdict::Invalid);
}

#[test]
fn a_log_length_past_every_append_is_invalid_without_sizing_anything_by_it() {
    let huge = 10_000_000_000_000u64;
    let reads =
        [json!({"key": 0, "from": 0, "values": [], "hw": huge}), json!({"key": 0, "from": 0, "values": [], "hw": 0})];
    for (read, appended) in reads.into_iter().zip([0, huge]) {
        let h = history(&[
            (0, OpType::Invoke, "append", json!({"key": 0, "value": 1}), 1),
            (0, OpType::Ok, "append", json!({"key": 0, "value": 1, "offset": appended}), 2),
            (1, OpType::Invoke, "read", json!({"key": 0, "from": 0}), 3),
            (1, OpType::Ok, "read", read, 4),
        ]);
        let verdict = check_by_name("log", &Value::Null, h.ops(), &Options::default()).unwrap().verdict;
        assert_eq!(verdict, Verdict::Invalid, "offset {appended}");
    }
}
