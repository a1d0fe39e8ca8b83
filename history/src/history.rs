//! An in-memory history, its validation and its views.

use crate::{Op, OpType, Process};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use thiserror::Error;

/// A history that breaks the protocol every well-formed history follows.
///
/// Every variant names the op (by its `index`) where the problem shows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// Indices must be dense and ascending from 0.
    #[error("op at position {position} has index {found}, expected {position}")]
    IndexNotDense {
        /// Position in the history.
        position: usize,
        /// The index the op carries.
        found: u64,
    },
    /// A completion arrived for a process with no op in flight.
    #[error("op {index}: process {process} completes an op it never invoked")]
    CompletionWithoutInvoke {
        /// The completion's index.
        index: u64,
        /// Its process.
        process: Process,
    },
    /// A process invoked while its previous op was still in flight.
    #[error("op {index}: process {process} invokes while op {pending} is still in flight")]
    ConcurrentInvoke {
        /// The second invocation's index.
        index: u64,
        /// The process.
        process: Process,
        /// The index of the op still in flight.
        pending: u64,
    },
    /// A client process invoked again after an indeterminate (`info`) completion.
    #[error("op {index}: process {process} invokes again after an info completion (op {info})")]
    InvokeAfterInfo {
        /// The invocation's index.
        index: u64,
        /// The process.
        process: Process,
        /// The index of the earlier info completion.
        info: u64,
    },
    /// A completion names a different operation than its invocation.
    #[error("op {index}: completion of `{found}` does not match invocation of `{expected}`")]
    MismatchedF {
        /// The completion's index.
        index: u64,
        /// The invocation's `f`.
        expected: String,
        /// The completion's `f`.
        found: String,
    },
}

/// An invocation and its completion, as positions in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Position of the invocation.
    pub invoke: usize,
    /// Position of the completion, or `None` when the op never completed (the run ended or
    /// crashed first), which means the same as an `info` completion.
    pub completion: Option<usize>,
}

/// A sequence of ops in the order they happened.
///
/// # Examples
///
/// ```
/// use ordeal_history::{History, Op, OpType, Process};
///
/// let mut h = History::<u32>::new();
/// h.push(Op::invoke(Process::Client(1), "read", 0));
/// h.push(Op::invoke(Process::Client(1), "read", 7).completed(OpType::Ok));
/// assert!(h.validate().is_ok());
/// assert_eq!(h.by_process()[&Process::Client(1)], vec![0, 1]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct History<V = serde_json::Value> {
    ops: Vec<Op<V>>,
}

impl<V> Default for History<V> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<V> History<V> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history of ops that already carry their indices. Call [`History::validate`] to check them.
    pub fn from_ops(ops: Vec<Op<V>>) -> Self {
        History { ops }
    }

    /// Appends `op`, setting its index to the next position.
    pub fn push(&mut self, mut op: Op<V>) -> &Op<V> {
        op.index = self.ops.len() as u64;
        self.ops.push(op);
        &self.ops[self.ops.len() - 1]
    }

    /// The ops, in history order.
    pub fn ops(&self) -> &[Op<V>] {
        &self.ops
    }

    /// Takes the ops out of the history.
    pub fn into_ops(self) -> Vec<Op<V>> {
        self.ops
    }

    /// The number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the history has no ops.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks the protocol: dense indices, one op in flight per process, completions that match
    /// their invocations, and no client invoking again after an `info`.
    pub fn validate(&self) -> Result<(), HistoryError> {
        for (position, op) in self.ops.iter().enumerate() {
            if op.index != position as u64 {
                return Err(HistoryError::IndexNotDense { position, found: op.index });
            }
        }
        self.pairs().map(|_| ())
    }

    /// Matches every invocation with its completion, in invocation order.
    ///
    /// The nemesis follows the same protocol, except that its completions are always `info` and
    /// do not retire it.
    pub fn pairs(&self) -> Result<Vec<Pair>, HistoryError> {
        let mut pairs: Vec<Pair> = Vec::with_capacity(self.ops.len() / 2 + 1);
        let mut protocol = Protocol::default();
        for (position, op) in self.ops.iter().enumerate() {
            match protocol.push(op, pairs.len())? {
                Paired::Invoked => pairs.push(Pair { invoke: position, completion: None }),
                Paired::Completed { token } => pairs[token].completion = Some(position),
            }
        }
        Ok(pairs)
    }

    /// The positions of each process's ops, in history order.
    pub fn by_process(&self) -> BTreeMap<Process, Vec<usize>> {
        let mut out: BTreeMap<Process, Vec<usize>> = BTreeMap::new();
        for (position, op) in self.ops.iter().enumerate() {
            out.entry(op.process).or_default().push(position);
        }
        out
    }

    /// Groups `pairs` by a key taken from each invocation, e.g. the register a client op
    /// touches. Pairs for which `key` returns `None` (nemesis ops, say) are left out.
    pub fn by_key<K: Ord>(&self, pairs: &[Pair], key: impl Fn(&Op<V>) -> Option<K>) -> BTreeMap<K, Vec<Pair>> {
        let mut out: BTreeMap<K, Vec<Pair>> = BTreeMap::new();
        for pair in pairs {
            if let Some(k) = key(&self.ops[pair.invoke]) {
                out.entry(k).or_default().push(*pair);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: Process, kind: OpType, f: &str) -> Op {
        Op::invoke(process, f, json!(null)).completed(kind)
    }

    fn history(ops: Vec<Op>) -> History {
        let mut h = History::new();
        for o in ops {
            h.push(o);
        }
        h
    }

    #[test]
    fn pairs_interleaved_processes() {
        let (a, b) = (Process::Client(0), Process::Client(1));
        let h = history(vec![
            op(a, OpType::Invoke, "write"),
            op(b, OpType::Invoke, "read"),
            op(b, OpType::Ok, "read"),
            op(a, OpType::Info, "write"),
            op(Process::Client(2), OpType::Invoke, "read"),
        ]);
        let pairs = h.pairs().unwrap();
        assert_eq!(
            pairs,
            vec![
                Pair { invoke: 0, completion: Some(3) },
                Pair { invoke: 1, completion: Some(2) },
                Pair { invoke: 4, completion: None },
            ]
        );
    }

    #[test]
    fn rejects_protocol_violations() {
        let a = Process::Client(0);
        let double = history(vec![op(a, OpType::Invoke, "read"), op(a, OpType::Invoke, "read")]);
        assert_eq!(double.validate(), Err(HistoryError::ConcurrentInvoke { index: 1, process: a, pending: 0 }));
        let orphan = history(vec![op(a, OpType::Ok, "read")]);
        assert!(matches!(orphan.validate(), Err(HistoryError::CompletionWithoutInvoke { .. })));
        let reuse =
            history(vec![op(a, OpType::Invoke, "write"), op(a, OpType::Info, "write"), op(a, OpType::Invoke, "write")]);
        assert!(matches!(reuse.validate(), Err(HistoryError::InvokeAfterInfo { info: 1, .. })));
        let mismatch = history(vec![op(a, OpType::Invoke, "write"), op(a, OpType::Ok, "read")]);
        assert!(matches!(mismatch.validate(), Err(HistoryError::MismatchedF { .. })));
        let mut sparse = history(vec![op(a, OpType::Invoke, "read")]).into_ops();
        sparse[0].index = 4;
        assert!(matches!(
            History::from_ops(sparse).validate(),
            Err(HistoryError::IndexNotDense { position: 0, found: 4 })
        ));
    }

    #[test]
    fn nemesis_keeps_going_after_info() {
        let n = Process::Nemesis;
        let h = history(vec![
            op(n, OpType::Invoke, "kill"),
            op(n, OpType::Info, "kill"),
            op(n, OpType::Invoke, "start"),
            op(n, OpType::Info, "start"),
        ]);
        assert_eq!(h.pairs().unwrap().len(), 2);
    }

    #[test]
    fn groups_pairs_by_key() {
        let mut h = History::new();
        for (p, k) in [(0, "x"), (1, "y"), (2, "x")] {
            h.push(Op::invoke(Process::Client(p), "read", json!({ "key": k })));
        }
        let pairs = h.pairs().unwrap();
        let keyed = h.by_key(&pairs, |op| op.value["key"].as_str().map(str::to_owned));
        assert_eq!(keyed["x"].len(), 2);
        assert_eq!(keyed["y"][0].invoke, 1);
    }
}

/// What [`Protocol::push`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paired {
    /// An invocation; its token is remembered until its completion.
    Invoked,
    /// A completion of the invocation pushed with `token`.
    Completed {
        /// The token given with the invocation.
        token: usize,
    },
}

/// The invoke/complete protocol, checked one op at a time, for readers that stream a history
/// instead of holding it.
///
/// # Examples
///
/// ```
/// use ordeal_history::{Op, OpType, Paired, Process, Protocol};
///
/// let mut p = Protocol::default();
/// let invoke = Op::invoke(Process::Client(1), "read", ());
/// assert_eq!(p.push(&invoke, 7).unwrap(), Paired::Invoked);
/// let done = Op::invoke(Process::Client(1), "read", ()).completed(OpType::Ok);
/// assert_eq!(p.push(&done, 0).unwrap(), Paired::Completed { token: 7 });
/// ```
#[derive(Debug, Default)]
pub struct Protocol {
    /// process -> (token, invocation index, f's number in `names`) of its op in flight
    in_flight: ByProcess<(usize, u64, usize)>,
    /// process -> index of the info completion that retired it
    retired: FxHashMap<Process, u64>,
    /// The distinct `f`s, numbered, so that an op in flight holds no copy of its own.
    names: FxHashMap<String, usize>,
    name_list: Vec<String>,
}

impl Protocol {
    /// Checks `op` against the ops pushed before it. `token` is returned with the completion of
    /// an invocation; it is ignored for completions.
    pub fn push<V>(&mut self, op: &Op<V>, token: usize) -> Result<Paired, HistoryError> {
        if op.kind == OpType::Invoke {
            if let Some((_, pending, _)) = self.in_flight.get(op.process) {
                return Err(HistoryError::ConcurrentInvoke { index: op.index, process: op.process, pending: *pending });
            }
            if let Some(&info) = self.retired.get(&op.process) {
                return Err(HistoryError::InvokeAfterInfo { index: op.index, process: op.process, info });
            }
            let f = self.name(&op.f);
            self.in_flight.insert(op.process, (token, op.index, f));
            return Ok(Paired::Invoked);
        }
        let Some((token, _, f)) = self.in_flight.remove(op.process) else {
            return Err(HistoryError::CompletionWithoutInvoke { index: op.index, process: op.process });
        };
        if self.name_list[f] != op.f {
            return Err(HistoryError::MismatchedF {
                index: op.index,
                expected: self.name_list[f].clone(),
                found: op.f.clone(),
            });
        }
        if op.kind == OpType::Info && op.process != Process::Nemesis {
            self.retired.insert(op.process, op.index);
        }
        Ok(Paired::Completed { token })
    }

    fn name(&mut self, f: &str) -> usize {
        if let Some(&n) = self.names.get(f) {
            return n;
        }
        self.name_list.push(f.to_owned());
        self.names.insert(f.to_owned(), self.name_list.len() - 1);
        self.name_list.len() - 1
    }

    /// Tokens of the invocations still in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = usize> + '_ {
        self.in_flight.values().map(|(token, _, _)| *token)
    }
}

/// A value per process: in a vector indexed by client number for the small, dense numbers
/// histories use (a lookup per op, cheaper than hashing), in a map for the others.
#[derive(Debug)]
struct ByProcess<T> {
    dense: Vec<Option<T>>,
    sparse: FxHashMap<Process, T>,
}

impl<T> Default for ByProcess<T> {
    fn default() -> Self {
        ByProcess { dense: Vec::new(), sparse: FxHashMap::default() }
    }
}

impl<T> ByProcess<T> {
    /// Client numbers below this are kept in the vector.
    const DENSE: u64 = 1 << 16;

    fn slot(&self, p: Process) -> Option<usize> {
        p.client().filter(|&c| c < Self::DENSE).map(|c| c as usize)
    }

    fn get(&self, p: Process) -> Option<&T> {
        match self.slot(p) {
            Some(i) => self.dense.get(i).and_then(Option::as_ref),
            None => self.sparse.get(&p),
        }
    }

    fn insert(&mut self, p: Process, value: T) {
        match self.slot(p) {
            Some(i) => {
                if self.dense.len() <= i {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i] = Some(value);
            }
            None => drop(self.sparse.insert(p, value)),
        }
    }

    fn remove(&mut self, p: Process) -> Option<T> {
        match self.slot(p) {
            Some(i) => self.dense.get_mut(i).and_then(Option::take),
            None => self.sparse.remove(&p),
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.dense.iter().flatten().chain(self.sparse.values())
    }
}
