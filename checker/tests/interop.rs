//! Export → import keeps every field Jepsen's format has (time, process, node, error), and an
//! export states its model and initial value, so checking it gives the original's verdict: on
//! generated register (kv) and log histories, valid and invalid (issue 17).

use ordeal_checker::Verdict;
use ordeal_checker::formats::{self, knossos};
use ordeal_checker::linear::{Options, check_history};
use ordeal_history::{History, Op, OpType, Process};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One generated op before its completion is placed: who, what, and how it ends.
#[derive(Debug, Clone)]
struct Call {
    process: u64,
    f: &'static str,
    invoke: Value,
    ok: Value,
    kind: OpType,
    node: Option<u64>,
}

/// Calls run in rounds of up to three concurrent processes: every invocation of a round, then
/// every completion in reverse, at rising times. Random reads make some histories invalid.
fn history(rounds: Vec<Vec<Call>>) -> History {
    let mut h = History::new();
    let mut time = 0;
    for round in rounds {
        let mut seen = std::collections::HashSet::new();
        let round: Vec<Call> = round.into_iter().filter(|c| seen.insert(c.process)).collect();
        for c in &round {
            time += 7;
            let mut op = Op::invoke(Process::Client(c.process), c.f, c.invoke.clone()).at(time);
            op.node = c.node;
            h.push(op);
        }
        for c in round.iter().rev() {
            time += 11;
            let mut op = Op::invoke(Process::Client(c.process), c.f, c.ok.clone()).at(time).completed(c.kind);
            op.node = c.node;
            if c.kind != OpType::Ok {
                op.error = Some(format!("timeout on n{}", c.node.unwrap_or(0)));
            }
            h.push(op);
        }
        time += 5;
        h.push(Op::invoke(Process::Nemesis, "start", json!({"fault": "kill", "targets": [1]})).at(time));
    }
    h
}

fn kind() -> impl Strategy<Value = OpType> {
    prop_oneof![8 => Just(OpType::Ok), 1 => Just(OpType::Fail), 1 => Just(OpType::Info)]
}

fn register_call() -> impl Strategy<Value = Call> {
    let key = prop_oneof![Just("a"), Just("b")];
    let v = 0..3i64;
    (0..3u64, key, 0..3u8, v.clone(), v, kind(), proptest::option::of(1..4u64)).prop_map(
        |(process, key, f, x, y, kind, node)| {
            let (f, invoke, ok) = match f {
                0 => ("write", json!({"key": key, "value": x}), json!({"key": key, "value": x})),
                1 => ("cas", json!({"key": key, "from": x, "to": y}), json!({"key": key, "from": x, "to": y})),
                // A read of nothing (absent) or of a value.
                _ => (
                    "read",
                    json!({"key": key}),
                    json!({"key": key, "value": if y == 2 { Value::Null } else { x.into() }}),
                ),
            };
            Call { process, f, invoke, ok, kind, node }
        },
    )
}

fn log_call() -> impl Strategy<Value = Call> {
    (0..3u64, any::<bool>(), 0..4u64, 0..3u64, kind(), proptest::option::of(1..4u64)).prop_map(
        |(process, append, value, offset, kind, node)| {
            let (f, invoke, ok) = if append {
                ("append", json!({"key": "t", "value": value}), json!({"key": "t", "value": value, "offset": offset}))
            } else {
                let values: Vec<u64> = (0..value % 3).collect();
                ("read", json!({"key": "t", "from": 0}), json!({"key": "t", "from": 0, "values": values, "hw": offset}))
            };
            // A read that fails or is unsure carries no result to check.
            let kind = if append { kind } else { OpType::Ok };
            Call { process, f, invoke, ok, kind, node }
        },
    )
}

/// The verdict of `history` under `model` from absent registers, and of its export read back,
/// which must also keep every op's fields.
fn round_trip(history: &History, model: &str) -> Result<(), TestCaseError> {
    let init = Value::Null;
    let original = check_history(model, &init, history, &Options::default()).map(|r| r.verdict);
    let text = formats::export_edn(history, model, &init);
    let stated = formats::stated::Stated::of(&text).expect("the export states itself").unwrap();
    prop_assert_eq!(&stated.model, model);
    let back = knossos::parse(&text).map_err(|e| TestCaseError::fail(e.message))?;
    prop_assert_eq!(back.ops().len(), history.ops().len());
    for (a, b) in history.ops().iter().zip(back.ops()) {
        prop_assert_eq!((a.index, a.time, a.process, a.kind, &a.f), (b.index, b.time, b.process, b.kind, &b.f));
        prop_assert_eq!((a.node, &a.error), (b.node, &b.error));
    }
    let exported = check_history(&stated.model, &stated.init, &back, &Options::default()).map(|r| r.verdict);
    prop_assert_eq!(original.map_err(|e| e.to_string()), exported.map_err(|e| e.to_string()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn register_exports_check_the_same(rounds in prop::collection::vec(prop::collection::vec(register_call(), 1..4), 0..8)) {
        round_trip(&history(rounds), "kv")?;
    }

    #[test]
    fn log_exports_check_the_same(rounds in prop::collection::vec(prop::collection::vec(log_call(), 1..4), 0..8)) {
        round_trip(&history(rounds), "log")?;
    }
}

/// The generators make both verdicts, so the property is not vacuous.
#[test]
fn generated_histories_are_valid_and_invalid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    for (model, strategy) in [
        ("kv", prop::collection::vec(prop::collection::vec(register_call(), 1..4), 1..8).boxed()),
        ("log", prop::collection::vec(prop::collection::vec(log_call(), 1..4), 1..8).boxed()),
    ] {
        let mut runner = TestRunner::deterministic();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..300 {
            let h = history(strategy.new_tree(&mut runner).unwrap().current());
            if let Ok(r) = check_history(model, &Value::Null, &h, &Options::default()) {
                seen.insert(r.verdict);
            }
        }
        assert!(seen.contains(&Verdict::Valid) && seen.contains(&Verdict::Invalid), "{model}: {seen:?}");
    }
}
