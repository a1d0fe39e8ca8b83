//! Linearizability: is there a total order of the history's operations, consistent with their
//! real-time order, that the model accepts?
//!
//! [`check`] splits the history into the model's partitions and decides each one on a pool of
//! threads, largest first: by the version order ([`order::decide`], near-linear) when the model
//! describes the partition as versions (its written values are unique), else, or when that
//! cannot tell, by the search ([`search::search`]). It aggregates: `invalid` if any partition is
//! illegal, else `unknown` if any search ran out of budget, else `valid`; [`Report::decided_by`]
//! names the method of each partition.
//!
//! Semantics: intervals are closed; `fail` completions did not happen and are dropped; `info`
//! completions and ops that never completed may take effect at any point after their
//! invocation, or never.

pub mod order;
pub mod search;

use crate::Verdict;
use crate::model::{Model, ModelError};
use ordeal_history::{History, HistoryError, Op, OpType, Paired, Process, Protocol};
use order::{Decision, Derivation, Span, Violation};
use rustc_hash::FxHashMap;
use search::{Budget, Outcome};
use serde::{Deserialize, Serialize};
use std::borrow::{Borrow, Cow};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One operation as the search sees it, with what a report needs to name it.
#[derive(Debug)]
pub struct Call<O> {
    /// The model's op, with its output.
    pub op: O,
    /// When it was invoked.
    pub call: u64,
    /// When it returned; `None` when its outcome is unknown.
    pub ret: Option<u64>,
    /// The invocation's index.
    pub invoke: u64,
    /// The completion's index, if any.
    pub completion: Option<u64>,
    /// The process.
    pub process: Process,
    /// The operation's name.
    pub f: Arc<str>,
}

/// A history the checker cannot interpret.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The history breaks the invoke/complete protocol.
    #[error("malformed history: {0}")]
    Malformed(#[from] HistoryError),
    /// The model cannot interpret an op.
    #[error("op {index} ({f}): {message}")]
    Op {
        /// The invocation's index.
        index: u64,
        /// Its `f`.
        f: String,
        /// What was wrong.
        message: String,
    },
}

/// Limits and choices for a check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Give up (`unknown`) after this long.
    pub timeout: Option<Duration>,
    /// Give up (`unknown`) when the process's resident memory, measured, would exceed this many
    /// bytes, or when the allocator refuses the search memory.
    pub memory_limit: usize,
    /// Worker threads for partitions.
    pub threads: usize,
    /// Stop at the first illegal partition instead of checking (and reporting) all.
    pub stop_at_first_failure: bool,
    /// Which methods may decide a partition.
    pub methods: Methods,
}

/// Which methods may decide a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Methods {
    /// The version order where it applies and decides, else the search.
    #[default]
    Any,
    /// The search alone (to compare the two, and for benchmarks of the search).
    SearchOnly,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: None,
            memory_limit: 1 << 30,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop_at_first_failure: true,
            methods: Methods::Any,
        }
    }
}

/// An op as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRef {
    /// The invocation's index in the history.
    pub index: u64,
    /// The completion's index, if it completed.
    pub completion: Option<u64>,
    /// The process.
    pub process: Process,
    /// The operation name.
    pub f: String,
    /// The model's rendering of the op with its output.
    pub op: String,
    /// Invocation time (ns).
    pub call: u64,
    /// Completion time (ns), `null` when the outcome is unknown.
    pub ret: Option<u64>,
}

/// One step of a linearization: an op and the state after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The op.
    pub op: OpRef,
    /// The model state after it.
    pub state: String,
}

/// Why one partition is not linearizable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    /// The partition (e.g. the key), `null` when the model has one partition.
    pub partition: Option<String>,
    /// The op that cannot be linearized after the longest legal prefix.
    pub op: OpRef,
    /// The length of the longest legal prefix found.
    pub prefix_len: usize,
    /// Its last steps (at most 32), with the state after each.
    pub prefix: Vec<Step>,
    /// The state the blocked op met.
    pub state: String,
    /// Ops that were concurrent with the blocked one and not in the prefix: the orders tried.
    pub concurrent: Vec<OpRef>,
    /// A sentence for people.
    pub explanation: String,
    /// The method that found it.
    #[serde(default)]
    pub method: Method,
    /// The ops of the version order's proof (a cycle, two conflicting ops, an impossible read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub involved: Vec<OpRef>,
}

/// How a partition was decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The version order: values identify writes, no search ([`order`]).
    VersionOrder,
    /// The Wing–Gong/Lowe search ([`search`]).
    #[default]
    Search,
}

/// Which method decided a partition, and why the search was needed when it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    /// The partition.
    pub partition: Option<String>,
    /// The method.
    pub method: Method,
    /// Why the version order did not apply (values repeat, ...), when the search decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_search: Option<String>,
}

/// A partition whose search ran out of budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undecided {
    /// The partition.
    pub partition: Option<String>,
    /// Its size in ops.
    pub ops: usize,
    /// Why the search stopped.
    pub reason: String,
}

/// The result of a linearizability check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The model's name.
    pub model: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Client ops considered (after dropping `fail`s and unknown reads).
    pub ops: usize,
    /// Partitions in the history.
    pub partitions: usize,
    /// Partitions whose search finished.
    pub partitions_checked: usize,
    /// Wall time of the check, in milliseconds.
    pub elapsed_ms: f64,
    /// Illegal partitions (the first one only when stopping at the first failure).
    pub failures: Vec<Counterexample>,
    /// Partitions that ran out of budget.
    pub undecided: Vec<Undecided>,
    /// How each partition was decided (those a cancelled check never reached are absent).
    #[serde(default)]
    pub decided_by: Vec<Decided>,
}

impl Report {
    /// One line for a terminal: the verdict and why.
    pub fn summary(&self) -> String {
        match self.verdict {
            Verdict::Valid => {
                let searched = self.decided_by.iter().filter(|d| d.method == Method::Search).count();
                format!(
                    "valid ({} ops in {} partitions); decided by the version order: {}, by the search: {searched}",
                    self.ops,
                    self.partitions,
                    self.decided_by.len() - searched
                )
            }
            Verdict::Invalid => match self.failures.first() {
                Some(f) => format!("invalid: {}", f.explanation),
                None => "invalid".into(),
            },
            Verdict::Unknown => match self.undecided.first() {
                Some(u) => format!("unknown: {}", u.reason),
                None => "unknown".into(),
            },
        }
    }
}

/// The model's partitions of calls, largest first.
pub type Partitions<O> = Vec<(Option<String>, Vec<Call<O>>)>;

/// Turns ops, pushed one at a time in history order, into the model's partitions of calls. Only
/// invocations in flight are held, so a history need not fit in memory as ops. The ops are owned
/// (`B` = [`Op`], a history streamed from a file) or borrowed (`&Op`, a history in memory,
/// which is then neither copied nor freed here).
pub struct Preparer<'m, M: Model, B: Borrow<Op> = Op> {
    model: &'m M,
    protocol: Protocol,
    /// Invocations in flight, by token; freed slots are reused.
    pending: Vec<Option<B>>,
    free: Vec<usize>,
    /// Calls by partition, in order of first appearance; the model's single partition, if it
    /// has no keys, is named `None`.
    parts: Partitions<M::Op>,
    /// Partition name -> its place in `parts`.
    keyed: FxHashMap<String, usize>,
    /// The place of the partition named `None`.
    unkeyed: Option<usize>,
    /// The distinct `f`s, shared by the calls: a handful (those the model knows), so a scan
    /// finds one sooner than a hash would.
    names: Vec<Arc<str>>,
}

impl<'m, M: Model, B: Borrow<Op>> Preparer<'m, M, B> {
    /// An empty preparer for `model`.
    pub fn new(model: &'m M) -> Self {
        Preparer {
            model,
            protocol: Protocol::default(),
            pending: Vec::new(),
            free: Vec::new(),
            parts: Vec::new(),
            keyed: FxHashMap::default(),
            unkeyed: None,
            names: Vec::new(),
        }
    }

    /// Takes the next op of the history.
    pub fn push(&mut self, op: B) -> Result<(), PrepareError> {
        let token = self.free.last().copied().unwrap_or(self.pending.len());
        match self.protocol.push(op.borrow(), token)? {
            Paired::Invoked => {
                if self.free.pop().is_none() {
                    self.pending.push(None);
                }
                self.pending[token] = Some(op);
            }
            Paired::Completed { token } => {
                let invoke = self.pending[token].take().expect("the protocol pairs tokens it handed out");
                self.free.push(token);
                self.add(invoke.borrow(), Some(op.borrow()))?;
            }
        }
        Ok(())
    }

    /// Ends the history: invocations never completed may or may not have taken effect.
    pub fn finish(mut self) -> Result<Partitions<M::Op>, PrepareError> {
        let open: Vec<usize> = self.protocol.in_flight().collect();
        for token in open {
            if let Some(invoke) = self.pending[token].take() {
                self.add(invoke.borrow(), None)?;
            }
        }
        let mut parts = self.parts;
        for (_, calls) in &mut parts {
            // Calls arrive in order of completion: nearly sorted by invocation.
            calls.sort_by_key(|c| c.invoke);
        }
        // Largest first, so that the longest search starts at once; ties by name for determinism.
        parts.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(parts)
    }

    fn add(&mut self, invoke: &Op, completion: Option<&Op>) -> Result<(), PrepareError> {
        if !invoke.is_client() {
            return Ok(());
        }
        let (ok, ret) = match completion.map(|c| c.kind) {
            Some(OpType::Fail) => return Ok(()),
            Some(OpType::Ok) => (completion, completion.map(|c| c.time)),
            _ => (None, None),
        };
        let bad = |e: ModelError| PrepareError::Op { index: invoke.index, f: invoke.f.clone(), message: e.0 };
        // The key first: a malformed one is an error even on an op that cannot matter.
        let key = self.model.partition(invoke).map_err(bad)?;
        let Some(op) = self.model.op(invoke, ok).map_err(bad)? else { return Ok(()) };
        let f = match self.names.iter().find(|f| ***f == *invoke.f) {
            Some(f) => f.clone(),
            None => {
                let f: Arc<str> = invoke.f.as_str().into();
                self.names.push(f.clone());
                f
            }
        };
        let place = match key.as_deref() {
            None => self.unkeyed,
            Some(k) => self.keyed.get(k).copied(),
        };
        let place = place.unwrap_or_else(|| {
            let key = key.map(Cow::into_owned);
            match &key {
                None => self.unkeyed = Some(self.parts.len()),
                Some(k) => drop(self.keyed.insert(k.clone(), self.parts.len())),
            }
            self.parts.push((key, Vec::new()));
            self.parts.len() - 1
        });
        let call = Call {
            call: invoke.time,
            ret,
            invoke: invoke.index,
            completion: completion.map(|c| c.index),
            process: invoke.process,
            f,
            op,
        };
        self.parts[place].1.push(call);
        Ok(())
    }
}

/// Checks the ops of a history, in history order (owned or borrowed), against `model`.
pub fn check<M: Model, B: Borrow<Op>>(
    model: &M,
    name: &str,
    ops: impl IntoIterator<Item = B>,
    opts: &Options,
) -> Result<Report, PrepareError> {
    let started = Instant::now();
    let mut preparer = Preparer::new(model);
    for op in ops {
        preparer.push(op)?;
    }
    let parts = preparer.finish()?;
    let budget = Budget {
        deadline: opts.timeout.map(|t| started + t),
        memory_limit: opts.memory_limit,
        memory_used: AtomicUsize::new(0),
        cancel: AtomicBool::new(false),
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Ended<M::State>)>> = Mutex::new(Vec::new());
    // Threads pay off only for big histories: spawning costs more than checking a small one.
    let ops: usize = parts.iter().map(|(_, c)| c.len()).sum();
    let threads = opts.threads.min(parts.len()).min(ops / 2000 + 1).max(1);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, calls)) = parts.get(i) else { break };
            if budget.cancel.load(Ordering::Relaxed) {
                break;
            }
            let ended = decide(model, calls, &budget, opts.methods);
            if ended.is_illegal() && opts.stop_at_first_failure {
                budget.cancel.store(true, Ordering::Relaxed);
            }
            results.lock().unwrap_or_else(|e| e.into_inner()).push((i, ended));
        }
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| (0..threads).for_each(|_| drop(s.spawn(work))));
    }
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);

    let mut report = Report {
        model: name.to_owned(),
        verdict: Verdict::Valid,
        ops,
        partitions: parts.len(),
        partitions_checked: 0,
        elapsed_ms: 0.0,
        failures: Vec::new(),
        undecided: Vec::new(),
        decided_by: Vec::new(),
    };
    let cancelled = budget.cancel.load(Ordering::Relaxed);
    for (i, ended) in results {
        let (key, calls) = &parts[i];
        let (method, why_search) = match ended {
            Ended::Order(None) => (Method::VersionOrder, None),
            Ended::Order(Some(v)) => {
                report.failures.push(order_counterexample(model, key.clone(), calls, v));
                (Method::VersionOrder, None)
            }
            Ended::Search(Outcome::Linearizable, why) => (Method::Search, why),
            Ended::Search(Outcome::Illegal(f), why) => {
                report.failures.push(counterexample(model, key.clone(), calls, f));
                (Method::Search, why)
            }
            Ended::Search(Outcome::Aborted(_), _) if cancelled => continue,
            Ended::Search(Outcome::Aborted(reason), _) => {
                report.undecided.push(Undecided { partition: key.clone(), ops: calls.len(), reason });
                continue;
            }
        };
        report.partitions_checked += 1;
        report.decided_by.push(Decided { partition: key.clone(), method, why_search });
    }
    report.verdict = if !report.failures.is_empty() {
        Verdict::Invalid
    } else if !report.undecided.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

/// How one partition ended, by either method.
enum Ended<S> {
    /// The version order decided: `None` linearizable, else the violation.
    Order(Option<order::Violation>),
    /// The search decided or gave up; why the version order did not apply.
    Search(Outcome<S>, Option<String>),
}

impl<S> Ended<S> {
    fn is_illegal(&self) -> bool {
        matches!(self, Ended::Order(Some(_)) | Ended::Search(Outcome::Illegal(_), _))
    }
}

/// Decides one partition: by the version order when the model describes it as versions and the
/// order decides, else by the search.
fn decide<M: Model>(model: &M, calls: &[Call<M::Op>], budget: &Budget, methods: Methods) -> Ended<M::State> {
    if methods == Methods::SearchOnly {
        return Ended::Search(search::search(model, calls, budget), Some("asked for the search alone".into()));
    }
    let why = match model.versions(calls) {
        Derivation::Versions(versions) => {
            let spans: Vec<Span> = calls.iter().map(|c| Span { call: c.call, ret: c.ret }).collect();
            match order::decide(&spans, versions) {
                Decision::Linearizable => return Ended::Order(None),
                Decision::Illegal(v) => return Ended::Order(Some(v)),
                Decision::Search(why) => why,
            }
        }
        Derivation::Illegal(v) => return Ended::Order(Some(v)),
        Derivation::Search(why) => why,
    };
    Ended::Search(search::search(model, calls, budget), Some(why))
}

fn op_ref<M: Model>(model: &M, c: &Call<M::Op>) -> OpRef {
    OpRef {
        index: c.invoke,
        completion: c.completion,
        process: c.process,
        f: c.f.to_string(),
        op: model.describe_op(&c.op),
        call: c.call,
        ret: c.ret,
    }
}

fn counterexample<M: Model>(
    model: &M,
    partition: Option<String>,
    calls: &[Call<M::Op>],
    failure: search::Failure<M::State>,
) -> Counterexample {
    let blocked = &calls[failure.blocked];
    let state = failure.prefix.last().map_or_else(|| model.init(), |(_, s)| s.clone());
    let in_prefix: std::collections::HashSet<usize> = failure.prefix.iter().map(|(i, _)| *i).collect();
    let deadline = blocked.ret.unwrap_or(u64::MAX);
    let mut concurrent: Vec<OpRef> = calls
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != failure.blocked && !in_prefix.contains(i) && c.call <= deadline)
        .map(|(_, c)| op_ref(model, c))
        .collect();
    concurrent.sort_by_key(|o| o.call);
    concurrent.truncate(16);
    let prefix_len = failure.prefix.len();
    let prefix = failure.prefix[prefix_len.saturating_sub(32)..]
        .iter()
        .map(|(i, s)| Step { op: op_ref(model, &calls[*i]), state: model.describe_state(s) })
        .collect();
    let op = op_ref(model, blocked);
    let where_ = partition.as_ref().map(|p| format!(" on {p}")).unwrap_or_default();
    let explanation = format!(
        "op {} (process {}: {}){where_} cannot be linearized: after the longest legal order of {prefix_len} ops the state is {}, \
         and no order of the {} ops concurrent with it makes it legal",
        op.index,
        op.process,
        op.op,
        model.describe_state(&state),
        concurrent.len()
    );
    Counterexample {
        partition,
        op,
        prefix_len,
        prefix,
        state: model.describe_state(&state),
        concurrent,
        explanation,
        method: Method::Search,
        involved: Vec::new(),
    }
}

/// The version order's proof as a counterexample: the ops involved and a sentence.
fn order_counterexample<M: Model>(
    model: &M,
    partition: Option<String>,
    calls: &[Call<M::Op>],
    violation: Violation,
) -> Counterexample {
    let name = |i: usize| {
        let c = &calls[i];
        format!("op {} (process {}: {})", c.invoke, c.process, model.describe_op(&c.op))
    };
    let where_ = partition.as_ref().map(|p| format!(" on {p}")).unwrap_or_default();
    let (ops, explanation) = match violation {
        Violation::NeverWritten { op } => {
            (vec![op], format!("{}{where_} observed a state that no op produced", name(op)))
        }
        Violation::ConsumedTwice { version, ops: [a, b] } => {
            let state =
                version.map_or_else(|| "the same state".to_owned(), |c| format!("the state {} produced", name(c)));
            let mut involved = vec![a, b];
            involved.extend(version);
            (involved, format!("{} and {}{where_} both replaced {state}, which existed only once", name(a), name(b)))
        }
        Violation::TwoPlaces { op, offsets: [a, b] } => {
            (vec![op], format!("{}{where_} took effect once, yet its record is at offsets {a} and {b}", name(op)))
        }
        Violation::Diverged { op, reads: [r1, r2] } => (
            vec![op, r1, r2],
            format!("{} and {}{where_} disagree on what {} appended to", name(r1), name(r2), name(op)),
        ),
        Violation::Unreachable { ops } => {
            let shown: Vec<String> = ops.iter().take(4).map(|&i| name(i)).collect();
            (
                ops,
                format!("{}{where_} replaced states only each other produced, reached from no write", shown.join(", ")),
            )
        }
        Violation::Cycle { ops } => blame(model, calls, &name, &where_, cycle_explanation(&name, ops)),
        Violation::Interleaved { ab: None, ba: [b1, a2] } => (
            vec![b1, a2],
            format!(
                "{}{where_} cannot be linearized: it observed the initial state, yet was invoked after {} returned, which observed or made a later state",
                name(a2),
                name(b1)
            ),
        ),
        Violation::Interleaved { ab: Some([a1, b2]), ba: [b1, a2] } => {
            let why = format!(
                "{} returned before {} was invoked, and {} before {}: each chain of states (a write and what observed it) must wholly precede the other",
                name(a1),
                name(b2),
                name(b1),
                name(a2)
            );
            blame(model, calls, &name, &where_, (vec![a1, b2, b1, a2], why))
        }
    };
    // The op a reader would blame comes last: the read, else the op that could not be placed.
    let key_op = *ops.last().expect("a violation names ops");
    let mut seen = std::collections::HashSet::new();
    let ops: Vec<usize> = ops.into_iter().filter(|op| seen.insert(*op)).collect();
    Counterexample {
        partition,
        op: op_ref(model, &calls[key_op]),
        prefix_len: 0,
        prefix: Vec::new(),
        state: "n/a (decided by the version order)".into(),
        concurrent: Vec::new(),
        explanation,
        method: Method::VersionOrder,
        involved: ops.iter().map(|&i| op_ref(model, &calls[i])).collect(),
    }
}

/// A cycle: the first op precedes the next and so on (one chain of states, or chains that must
/// follow one another), yet the last returned before the first was invoked.
fn cycle_explanation(name: &dyn Fn(usize) -> String, mut ops: Vec<usize>) -> (Vec<usize>, String) {
    let (first, last) = (ops[0], *ops.last().expect("a cycle has ops"));
    let between = ops.len().saturating_sub(2);
    let between = if between == 0 { String::new() } else { format!(" through {between} ops") };
    let explanation = format!(
        "{} comes after {} in every order the states allow{between}, yet it returned before {} was invoked",
        name(last),
        name(first),
        name(first).split(" (").next().unwrap_or_default()
    );
    if ops.len() > 32 {
        ops.drain(16..ops.len() - 16);
    }
    (ops, explanation)
}

/// Names the op that cannot be linearized, as the search would: the first read among `ops` (a
/// stale read is what people look for), else the last op; it moves to the end of `ops`.
fn blame<M: Model>(
    model: &M,
    calls: &[Call<M::Op>],
    name: &dyn Fn(usize) -> String,
    where_: &str,
    (mut ops, why): (Vec<usize>, String),
) -> (Vec<usize>, String) {
    let last = *ops.last().expect("a violation names ops");
    let culprit = ops.iter().copied().find(|&i| model.is_read_only(&calls[i].op)).unwrap_or(last);
    ops.push(culprit);
    (ops, format!("{}{where_} cannot be linearized: {why}", name(culprit)))
}

/// The models `ordeal check --model` knows.
pub const MODELS: &[&str] = &["register", "cas-register", "multi-register", "kv", "log", "mutex"];

/// A model name or initial value that does not fit.
#[derive(Debug, thiserror::Error)]
pub enum ModelChoiceError {
    /// No model of this name.
    #[error("unknown model `{name}`: expected one of {models}", name = .0, models = MODELS.join(", "))]
    UnknownModel(String),
    /// The initial value does not suit the model.
    #[error("initial value for {model}: {message}")]
    BadInit {
        /// The model.
        model: String,
        /// What was wrong.
        message: String,
    },
    /// The history does not suit the model.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
}

/// Checks `history` against the model called `name` (see [`check_by_name`]).
pub fn check_history(
    name: &str,
    init: &serde_json::Value,
    history: &History,
    opts: &Options,
) -> Result<Report, ModelChoiceError> {
    check_by_name(name, init, history.ops(), opts)
}

/// Checks the ops of a history, in history order (owned or borrowed), against the model called
/// `name`, whose registers start at `init`.
pub fn check_by_name<B: Borrow<Op>>(
    name: &str,
    init: &serde_json::Value,
    history: impl IntoIterator<Item = B>,
    opts: &Options,
) -> Result<Report, ModelChoiceError> {
    use crate::model::*;
    let bad_init = |e: ModelError| ModelChoiceError::BadInit { model: name.to_owned(), message: e.0 };
    let kind = match name {
        "register" => Some(RegisterKind::Register),
        "cas-register" => Some(RegisterKind::CasRegister),
        "kv" => Some(RegisterKind::Kv),
        _ => None,
    };
    match name {
        _ if kind.is_some() => {
            let init = Val::from_json(init).map_err(bad_init)?;
            let model = RegisterModel::new(kind.expect("matched"), init);
            Ok(check(&model, name, history, opts)?)
        }
        "multi-register" => Ok(check(&MultiRegister::new(init).map_err(bad_init)?, name, history, opts)?),
        "log" => Ok(check(&LogModel, name, history, opts)?),
        "mutex" => Ok(check(&Mutex, name, history, opts)?),
        other => Err(ModelChoiceError::UnknownModel(other.to_owned())),
    }
}
