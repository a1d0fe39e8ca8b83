//! The checker against an independent oracle, stateright's `LinearizabilityTester`, on random
//! small cas-register histories with concurrency and crashed (indeterminate) ops; and property
//! tests that need no oracle.

use ordeal_checker::Verdict;
use ordeal_checker::linear::{Options, check_history};
use ordeal_history::{History, Op, OpType, Process};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

#[derive(Clone, Debug, Default)]
struct CasRegister(Option<u8>);

#[derive(Clone, Debug, PartialEq)]
enum RegOp {
    Read,
    Write(u8),
    Cas(Option<u8>, u8),
}

#[derive(Clone, Debug, PartialEq)]
enum RegRet {
    Value(Option<u8>),
    Done,
    CasFailed,
}

impl SequentialSpec for CasRegister {
    type Op = RegOp;
    type Ret = RegRet;
    fn invoke(&mut self, op: &RegOp) -> RegRet {
        match op {
            RegOp::Read => RegRet::Value(self.0),
            RegOp::Write(v) => {
                self.0 = Some(*v);
                RegRet::Done
            }
            RegOp::Cas(from, to) if *from == self.0 => {
                self.0 = Some(*to);
                RegRet::Done
            }
            RegOp::Cas(..) => RegRet::CasFailed,
        }
    }
}

/// An invocation (`ret: None, done: false`) or a completion (`ret: None` means crashed).
#[derive(Clone, Debug)]
struct Event {
    id: usize,
    process: u64,
    op: RegOp,
    done: bool,
    ret: Option<RegRet>,
}

/// Clients of a real register: each op takes effect at a random instant inside its interval, so
/// the history is linearizable. About one op in ten crashes, before or after taking effect; its
/// process is then replaced by a fresh one.
fn generate(rng: &mut ChaCha8Rng) -> Vec<Event> {
    let processes = rng.random_range(2..=4);
    let max_ops = rng.random_range(4..=15); // two events per op: at most 30
    let mut register = CasRegister(None);
    let mut ids: Vec<u64> = (0..processes as u64).collect();
    let mut next_id = processes as u64;
    // slot -> (op id, op, result once it took effect)
    let mut in_flight: Vec<Option<(usize, RegOp, Option<RegRet>)>> = vec![None; processes];
    let mut events = Vec::new();
    let mut invoked = 0;
    while invoked < max_ops || in_flight.iter().any(Option::is_some) {
        let slot = rng.random_range(0..processes);
        let process = ids[slot];
        let mut crash = |ids: &mut Vec<u64>| {
            ids[slot] = next_id;
            next_id += 1;
        };
        match in_flight[slot].take() {
            None if invoked < max_ops => {
                let op = match rng.random_range(0..3) {
                    0 => RegOp::Read,
                    1 => RegOp::Write(rng.random_range(0..3)),
                    _ => RegOp::Cas(
                        if rng.random_bool(0.2) { None } else { Some(rng.random_range(0..3)) },
                        rng.random_range(0..3),
                    ),
                };
                events.push(Event { id: invoked, process, op: op.clone(), done: false, ret: None });
                in_flight[slot] = Some((invoked, op, None));
                invoked += 1;
            }
            None => {}
            Some((id, op, None)) if rng.random_bool(0.1) => {
                events.push(Event { id, process, op, done: true, ret: None });
                crash(&mut ids);
            }
            Some((id, op, None)) => {
                let ret = register.invoke(&op);
                in_flight[slot] = Some((id, op, Some(ret)));
            }
            Some((id, op, Some(ret))) => {
                let crashed = rng.random_bool(0.1);
                events.push(Event { id, process, op, done: true, ret: (!crashed).then_some(ret) });
                if crashed {
                    crash(&mut ids);
                }
            }
        }
    }
    // A failed cas did not happen (Jepsen's semantics): leave it out for both checkers.
    let failed: Vec<usize> = events.iter().filter(|e| e.ret == Some(RegRet::CasFailed)).map(|e| e.id).collect();
    events.retain(|e| !failed.contains(&e.id));
    events
}

/// Changes the value one read returned.
fn corrupt(rng: &mut ChaCha8Rng, events: &mut [Event]) {
    let reads: Vec<usize> = (0..events.len()).filter(|i| matches!(events[*i].ret, Some(RegRet::Value(_)))).collect();
    if !reads.is_empty() {
        let i = reads[rng.random_range(0..reads.len())];
        let v = if rng.random_bool(0.2) { None } else { Some(rng.random_range(0..3)) };
        events[i].ret = Some(RegRet::Value(v));
    }
}

fn ours(events: &[Event]) -> Verdict {
    let mut h = History::new();
    for (t, e) in events.iter().enumerate() {
        let p = Process::Client(e.process);
        let (f, arg) = match &e.op {
            RegOp::Read => ("read", Value::Null),
            RegOp::Write(v) => ("write", json!(v)),
            RegOp::Cas(from, to) => ("cas", json!([from, to])),
        };
        let op = match (&e.ret, e.done) {
            (_, false) => Op::invoke(p, f, arg),
            (None, true) => Op::invoke(p, f, arg).completed(OpType::Info),
            (Some(RegRet::Value(v)), true) => Op::invoke(p, f, json!(v)).completed(OpType::Ok),
            (Some(_), true) => Op::invoke(p, f, arg).completed(OpType::Ok),
        };
        h.push(op.at(t as u64));
    }
    let opts = Options { threads: 1, ..Default::default() };
    check_history("cas-register", &Value::Null, &h, &opts).unwrap().verdict
}

fn oracle(events: &[Event]) -> Verdict {
    let mut t = LinearizabilityTester::new(CasRegister(None));
    for e in events {
        match (&e.ret, e.done) {
            (_, false) => {
                t.on_invoke(e.process, e.op.clone()).unwrap();
            }
            (Some(ret), true) => {
                t.on_return(e.process, ret.clone()).unwrap();
            }
            (None, true) => {} // crashed: stays in flight, may or may not have happened
        }
    }
    if t.is_consistent() { Verdict::Valid } else { Verdict::Invalid }
}

#[test]
fn agrees_with_stateright_on_10000_random_histories() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xdea1);
    let (mut valid, mut invalid) = (0, 0);
    for i in 0..10_000 {
        let mut events = generate(&mut rng);
        if i % 2 == 1 {
            corrupt(&mut rng, &mut events);
        }
        let expected = oracle(&events);
        assert_eq!(ours(&events), expected, "history {i} disagrees with stateright:\n{events:#?}");
        if expected == Verdict::Valid { valid += 1 } else { invalid += 1 }
    }
    // Both verdicts must be well represented, or the comparison proves little.
    assert!(valid > 4000 && invalid > 1500, "valid {valid}, invalid {invalid}");
}

/// A sequential run of a cas-register over `ops` (0 read, 1 write, 2 cas), by rotating
/// processes, each op completing before the next starts. Writes are unique values.
fn sequential(ops: &[(u8, u8)]) -> History {
    let mut h = History::new();
    let mut state: Option<i64> = None;
    let mut fresh = 100;
    for (i, (kind, arg)) in ops.iter().enumerate() {
        let p = Process::Client(i as u64 % 5);
        let t = 2 * i as u64;
        match kind % 3 {
            0 => {
                h.push(Op::invoke(p, "read", Value::Null).at(t));
                h.push(Op::invoke(p, "read", json!(state)).at(t + 1).completed(OpType::Ok));
            }
            1 => {
                fresh += 1;
                h.push(Op::invoke(p, "write", json!(fresh)).at(t));
                h.push(Op::invoke(p, "write", json!(fresh)).at(t + 1).completed(OpType::Ok));
                state = Some(fresh);
            }
            _ => {
                let from = if arg % 2 == 0 { state } else { Some(i64::from(*arg)) };
                fresh += 1;
                let ok = from == state;
                h.push(Op::invoke(p, "cas", json!([from, fresh])).at(t));
                let done = if ok { OpType::Ok } else { OpType::Fail };
                h.push(Op::invoke(p, "cas", json!([from, fresh])).at(t + 1).completed(done));
                if ok {
                    state = Some(fresh);
                }
            }
        }
    }
    h
}

proptest! {
    #[test]
    fn sequential_executions_are_valid(ops in prop::collection::vec((0u8..3, 0u8..4), 1..200)) {
        let h = sequential(&ops);
        let r = check_history("cas-register", &Value::Null, &h, &Options::default()).unwrap();
        prop_assert_eq!(r.verdict, Verdict::Valid);
    }

    #[test]
    fn one_corrupted_read_makes_it_invalid(ops in prop::collection::vec((0u8..3, 0u8..4), 1..200), pick in any::<prop::sample::Index>(), bogus in 0i64..1000) {
        let h = sequential(&ops);
        let reads: Vec<usize> = h.ops().iter().enumerate()
            .filter(|(_, o)| o.kind == OpType::Ok && o.f == "read").map(|(i, _)| i).collect();
        prop_assume!(!reads.is_empty());
        let mut ops = h.into_ops();
        let i = reads[pick.index(reads.len())];
        let new = if ops[i].value == json!(bogus) { json!(bogus + 1) } else { json!(bogus) };
        ops[i].value = new;
        let r = check_history("cas-register", &Value::Null, &History::from_ops(ops), &Options::default()).unwrap();
        prop_assert_eq!(r.verdict, Verdict::Invalid);
        // The search names the read as blocked; the version order names it among the ops of its proof.
        let f = &r.failures[0];
        let read = (i - 1) as u64;
        prop_assert!(f.op.index == read || f.involved.iter().any(|o| o.index == read), "{f:?}");
    }
}
