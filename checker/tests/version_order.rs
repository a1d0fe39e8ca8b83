//! The version-order decision against the search and against stateright, on random histories
//! whose written values are unique: cas-registers with crashed ops, kv keys with puts and
//! appends, and broker logs. Every history gets the same verdict from every method, and the
//! version order decides most of them on its own.

use ordeal_checker::Verdict;
use ordeal_checker::linear::{Method, Methods, Options, Report, check_history};
use ordeal_history::{History, Op, OpType, Process};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// One op of a simulated store: it takes effect at a random instant inside its interval (so the
/// history is linearizable), and may crash before or after taking effect.
#[derive(Clone, Debug)]
struct Sim {
    process: u64,
    f: &'static str,
    arg: Value,
    /// The completion's value once the op took effect; `None` before.
    done: Option<Value>,
    /// Whether it failed definitely (a cas whose `from` did not match).
    failed: bool,
}

/// Drives `processes` clients over `ops` ops; `step(state, f, arg)` applies an op to the store
/// and returns the completion value (`None`: a definite failure). Returns the history with
/// `crash` the chance that an op crashes.
fn simulate(
    rng: &mut ChaCha8Rng,
    processes: usize,
    ops: usize,
    crash: f64,
    invoke: &mut dyn FnMut(&mut ChaCha8Rng) -> (&'static str, Value),
    step: &mut dyn FnMut(&str, &Value) -> Option<Value>,
) -> History {
    let mut h = History::new();
    let mut ids: Vec<u64> = (0..processes as u64).collect();
    let mut next_id = processes as u64;
    let mut slots: Vec<Option<Sim>> = vec![None; processes];
    let (mut invoked, mut time) = (0, 0u64);
    while invoked < ops || slots.iter().any(Option::is_some) {
        time += 1;
        let s = rng.random_range(0..processes);
        match slots[s].take() {
            None if invoked < ops => {
                let (f, arg) = invoke(rng);
                h.push(Op::invoke(Process::Client(ids[s]), f, arg.clone()).at(time));
                slots[s] = Some(Sim { process: ids[s], f, arg, done: None, failed: false });
                invoked += 1;
            }
            None => {}
            Some(op) if rng.random_bool(crash) => {
                // Crashed, before or after taking effect.
                h.push(Op::invoke(Process::Client(op.process), op.f, op.arg).completed(OpType::Info).at(time));
                ids[s] = next_id;
                next_id += 1;
            }
            Some(mut op) if op.done.is_none() && !op.failed => {
                match step(op.f, &op.arg) {
                    Some(v) => op.done = Some(v),
                    None => op.failed = true,
                }
                slots[s] = Some(op);
            }
            Some(op) => {
                let (kind, value) =
                    if op.failed { (OpType::Fail, op.arg) } else { (OpType::Ok, op.done.unwrap_or_default()) };
                h.push(Op::invoke(Process::Client(op.process), op.f, value).completed(kind).at(time));
            }
        }
    }
    h
}

/// A cas-register history with unique written values, `info` ops and failed cas.
fn register_history(rng: &mut ChaCha8Rng, processes: usize, ops: usize) -> History {
    let state = std::cell::Cell::new(None::<i64>);
    let mut fresh = 0;
    let mut invoke = |rng: &mut ChaCha8Rng| -> (&'static str, Value) {
        fresh += 1;
        match rng.random_range(0..10) {
            0..=3 => ("read", Value::Null),
            4..=6 => ("write", json!(fresh)),
            _ => {
                let from = if rng.random_bool(0.6) { state.get() } else { Some(rng.random_range(0..fresh)) };
                ("cas", json!([from, fresh]))
            }
        }
    };
    let mut step = |f: &str, arg: &Value| -> Option<Value> {
        match f {
            "read" => Some(json!(state.get())),
            "write" => {
                state.set(arg.as_i64());
                Some(arg.clone())
            }
            _ => (arg[0].as_i64() == state.get()).then(|| {
                state.set(arg[1].as_i64());
                arg.clone()
            }),
        }
    };
    simulate(rng, processes, ops, 0.05, &mut invoke, &mut step)
}

/// A kv key of strings with puts and appends of unique tokens, and reads of the whole string.
fn kv_history(rng: &mut ChaCha8Rng, processes: usize, ops: usize) -> History {
    let state = std::cell::RefCell::new(String::new());
    let mut fresh = 0;
    let mut invoke = |rng: &mut ChaCha8Rng| -> (&'static str, Value) {
        fresh += 1;
        let token = format!("x {fresh} y");
        match rng.random_range(0..10) {
            0..=3 => ("read", json!({"key": "k", "value": null})),
            4 => ("write", json!({"key": "k", "value": token})),
            _ => ("append", json!({"key": "k", "value": token})),
        }
    };
    let mut step = |f: &str, arg: &Value| -> Option<Value> {
        let mut s = state.borrow_mut();
        let v = arg["value"].as_str().unwrap_or_default();
        match f {
            "read" => return Some(json!({"key": "k", "value": *s})),
            "write" => *s = v.to_owned(),
            _ => s.push_str(v),
        }
        Some(arg.clone())
    };
    simulate(rng, processes, ops, 0.05, &mut invoke, &mut step)
}

/// Replaces the value of one `ok` read with the value another read returned (a stale or future
/// read), or, when every read saw the same, with a value never written.
fn corrupt(rng: &mut ChaCha8Rng, h: History) -> History {
    let mut ops = h.into_ops();
    let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].f == "read" && ops[i].kind == OpType::Ok).collect();
    if reads.len() >= 2 {
        let (a, b) = (reads[rng.random_range(0..reads.len())], reads[rng.random_range(0..reads.len())]);
        let mut v = ops[b].value.clone();
        if v == ops[a].value {
            v = if v.is_object() { json!({"key": "k", "value": "never"}) } else { json!(-7) };
        }
        ops[a].value = v;
    }
    History::from_ops(ops)
}

fn check(model: &str, init: &Value, h: &History, methods: Methods) -> Report {
    // The search's budget bounds the whole test process's resident memory, shared by the tests
    // running beside it: a search that ends `unknown` is not compared.
    let opts = Options { threads: 1, methods, memory_limit: 256 << 20, ..Options::default() };
    check_history(model, init, h, &opts).expect("checks")
}

/// Compares both methods on `cases` histories from `generate`; returns how many the version
/// order decided alone and how many were invalid.
fn compare(
    model: &str,
    init: &Value,
    cases: usize,
    mut generate: impl FnMut(&mut ChaCha8Rng, usize) -> History,
    corrupt: fn(&mut ChaCha8Rng, History) -> History,
) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x0de1 ^ cases as u64);
    let (mut by_order, mut invalid, mut skipped) = (0, 0, 0);
    for i in 0..cases {
        let mut h = generate(&mut rng, i);
        if i % 2 == 1 {
            h = corrupt(&mut rng, h);
        }
        let fast = check(model, init, &h, Methods::Any);
        assert_ne!(fast.verdict, Verdict::Unknown);
        let search = check(model, init, &h, Methods::SearchOnly);
        // The search may run out of its budget (a few kv histories with many crashed appends).
        if search.verdict == Verdict::Unknown {
            skipped += 1;
        } else {
            assert_eq!(fast.verdict, search.verdict, "history {i} ({model}): {:#?}\n{fast:#?}", h.ops());
        }
        by_order += fast.decided_by.iter().all(|d| d.method == Method::VersionOrder) as usize;
        invalid += (fast.verdict == Verdict::Invalid) as usize;
    }
    assert!(skipped * 100 <= cases, "the search gave up on {skipped} of {cases}: too few compared");
    (by_order, invalid)
}

#[test]
fn registers_agree_with_the_search() {
    let (by_order, invalid) =
        compare("cas-register", &Value::Null, 10_000, |rng, i| register_history(rng, 2 + i % 6, 5 + i % 40), corrupt);
    assert!(invalid > 2_000 && invalid < 8_000, "invalid {invalid}");
    assert!(by_order > 9_000, "the version order decided only {by_order} of 10,000");
}

#[test]
fn kv_appends_agree_with_the_search() {
    let (by_order, invalid) =
        compare("kv", &json!(""), 5_000, |rng, i| kv_history(rng, 2 + i % 6, 5 + i % 25), corrupt);
    assert!(invalid > 1_000, "invalid {invalid}");
    assert!(by_order > 4_500, "the version order decided only {by_order} of 5,000");
}

#[derive(Clone, Debug, Default)]
struct Register(Option<i64>);

#[derive(Clone, Debug, PartialEq)]
enum RegOp {
    Read,
    Write(i64),
    Cas(Option<i64>, i64),
}

impl SequentialSpec for Register {
    type Op = RegOp;
    type Ret = Option<Option<i64>>;
    /// A read returns `Some(value)`; a write or a successful cas `None`; a failed cas
    /// `Some(None)`... never: failed cas ops are left out of the oracle's history.
    fn invoke(&mut self, op: &RegOp) -> Self::Ret {
        match op {
            RegOp::Read => Some(self.0),
            RegOp::Write(v) => {
                self.0 = Some(*v);
                None
            }
            RegOp::Cas(from, to) if *from == self.0 => {
                self.0 = Some(*to);
                None
            }
            RegOp::Cas(..) => Some(Some(i64::MIN)),
        }
    }
}

/// stateright's verdict on a cas-register history (failed cas ops left out: they did not happen).
fn oracle(h: &History) -> Verdict {
    let ops = h.ops();
    let mut pending = std::collections::HashMap::new();
    let mut failed = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op.kind {
            OpType::Invoke => drop(pending.insert(op.process, i)),
            OpType::Fail => drop(failed.insert(pending[&op.process])),
            _ => {}
        }
    }
    let mut t = LinearizabilityTester::new(Register(None));
    let mut current = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let Process::Client(p) = op.process else { continue };
        match op.kind {
            OpType::Invoke if failed.contains(&i) => {}
            OpType::Invoke => {
                let r = match op.f.as_str() {
                    "read" => RegOp::Read,
                    "write" => RegOp::Write(op.value.as_i64().expect("int")),
                    _ => RegOp::Cas(op.value[0].as_i64(), op.value[1].as_i64().expect("int")),
                };
                current.insert(p, ());
                t.on_invoke(p, r).expect("invoke");
            }
            OpType::Ok => {
                let ret = if op.f == "read" { Some(op.value.as_i64()) } else { None };
                t.on_return(p, ret).expect("return");
            }
            _ => {}
        }
    }
    if t.is_consistent() { Verdict::Valid } else { Verdict::Invalid }
}

#[test]
fn small_registers_agree_with_stateright() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x57a7e);
    let mut invalid = 0;
    for i in 0..3_000 {
        let mut h = register_history(&mut rng, 2 + i % 3, 4 + i % 10);
        if i % 2 == 1 {
            h = corrupt(&mut rng, h);
        }
        let expected = oracle(&h);
        let ours = check("cas-register", &Value::Null, &h, Methods::Any);
        assert_eq!(ours.verdict, expected, "history {i}: {:#?}", h.ops());
        invalid += (expected == Verdict::Invalid) as usize;
    }
    assert!(invalid > 600, "invalid {invalid}");
}

/// A broker log: appends return their offset, reads return the records from an offset on and
/// the log's length.
fn log_history(rng: &mut ChaCha8Rng, processes: usize, ops: usize) -> History {
    let log = std::cell::RefCell::new(Vec::<i64>::new());
    let mut fresh = 0;
    let mut invoke = |rng: &mut ChaCha8Rng| -> (&'static str, Value) {
        fresh += 1;
        if rng.random_bool(0.5) {
            ("read", json!({"key": "p", "from": rng.random_range(0..3)}))
        } else {
            ("append", json!({"key": "p", "value": fresh}))
        }
    };
    let mut step = |f: &str, arg: &Value| -> Option<Value> {
        let mut log = log.borrow_mut();
        if f == "append" {
            log.push(arg["value"].as_i64().unwrap_or_default());
            return Some(json!({"key": "p", "value": arg["value"], "offset": log.len() - 1}));
        }
        let from = (arg["from"].as_u64().unwrap_or_default() as usize).min(log.len());
        Some(json!({"key": "p", "from": from, "values": log[from..], "hw": log.len()}))
    };
    simulate(rng, processes, ops, 0.05, &mut invoke, &mut step)
}

/// Makes one read return what an earlier read returned, at its own time (a stale read), or
/// drops a record from it (a lost record).
fn corrupt_log(rng: &mut ChaCha8Rng, h: History) -> History {
    let mut ops = h.into_ops();
    let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].f == "read" && ops[i].kind == OpType::Ok).collect();
    if let [.., a, b] = reads[..] {
        if ops[a].value["hw"] != ops[b].value["hw"] && rng.random_bool(0.5) {
            ops[b].value = ops[a].value.clone();
        } else if let Some(values) = ops[b].value["values"].as_array_mut().filter(|v| !v.is_empty()) {
            values.remove(0);
        }
    }
    History::from_ops(ops)
}

#[test]
fn logs_agree_with_the_search() {
    let generate = |rng: &mut ChaCha8Rng, i: usize| log_history(rng, 2 + i % 5, 5 + i % 30);
    let (by_order, invalid) = compare("log", &Value::Null, 3_000, generate, corrupt_log);
    assert!(invalid > 600, "invalid {invalid}");
    assert!(by_order > 2_700, "the version order decided only {by_order} of 3,000");
}
