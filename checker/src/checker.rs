//! The checker protocol, after Jepsen's `checker/check`, but streaming: a [`Checker`] observes
//! each op of a history in order and then finishes with a verdict. [`Compose`] lets many
//! checkers share one pass over a history, so a history file is read once however many checkers
//! a workload has.
//!
//! Adapters over the checks of this crate:
//!
//! * [`Linearizable`]: linearizability against a model named as in
//!   [`linear::check_by_name`], over the ops a [`Select`] keeps (and renames);
//! * [`FinalReads`]: the partition-log final-read check of [`crate::log`].
//!
//! # Examples
//!
//! ```
//! use ordeal_checker::checker::{Compose, Linearizable, Select};
//! use std::borrow::Cow;
//! use ordeal_checker::{Verdict, linear::Options};
//! use ordeal_history::{Op, OpType, Process};
//! use serde_json::json;
//!
//! let write = Op::invoke(Process::Client(0), "write", json!({"key": "k0", "value": 1}));
//! let read = Op::invoke(Process::Client(1), "read", json!({"key": "k0"}));
//! let history = [
//!     write.clone(),
//!     write.completed(OpType::Ok),
//!     read.clone(),
//!     Op { value: json!({"key": "k0", "value": 1}), ..read.completed(OpType::Ok) },
//! ];
//! let everything: Select = |op| Some(Cow::Borrowed(op));
//! let kv = Linearizable::new("linearizability", "kv", everything, Options::default());
//! let mut checkers = Compose::new(vec![Box::new(kv)]);
//! for (i, op) in history.into_iter().enumerate() {
//!     checkers.observe(&Op { index: i as u64, time: i as u64, ..op });
//! }
//! let results = checkers.finish().unwrap();
//! assert_eq!(results[0].verdict, Verdict::Valid);
//! ```

use crate::Verdict;
use crate::linear::{self, ModelChoiceError, Options};
use ordeal_history::{History, HistoryError, Op, OpType, Process};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// A check of one history, fed its ops one at a time in history order.
pub trait Checker: Send {
    /// The name its result carries (`linearizability`, `offsets`, `log`).
    fn name(&self) -> &str;
    /// Takes the next op of the history.
    fn observe(&mut self, op: &Op);
    /// Ends the history and gives the verdict with its evidence.
    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError>;
}

/// One checker's outcome, as `results.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    /// `linearizability`, `offsets`, `log`.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// One line for people.
    pub summary: String,
    /// The checker's full report (a linearizability report or a log report).
    pub details: Value,
}

/// A history a checker cannot judge at all (as opposed to an `unknown` verdict).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The ops do not fit the model.
    #[error(transparent)]
    Model(#[from] ModelChoiceError),
    /// The history breaks the invoke/complete protocol.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// The verdict of several checkers together: invalid beats unknown beats valid.
pub fn verdict(results: &[CheckerResult]) -> Verdict {
    results.iter().fold(Verdict::Valid, |v, r| v.and(r.verdict))
}

/// Several checkers over one pass of a history, after Jepsen's `compose`.
pub struct Compose(Vec<Box<dyn Checker>>);

impl Compose {
    /// Feeds every op to each of `checkers`.
    pub fn new(checkers: Vec<Box<dyn Checker>>) -> Self {
        Compose(checkers)
    }

    /// Gives `op` to every checker.
    pub fn observe(&mut self, op: &Op) {
        for checker in &mut self.0 {
            checker.observe(op);
        }
    }

    /// Finishes every checker, in the order given. They finish at the same time: each search's
    /// time budget started with the pass, so one must not wait for another's search.
    pub fn finish(self) -> Result<Vec<CheckerResult>, CheckError> {
        std::thread::scope(|s| {
            let finishing: Vec<_> = self.0.into_iter().map(|c| s.spawn(move || c.finish())).collect();
            finishing.into_iter().map(|f| f.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    }
}

/// Which ops a [`Linearizable`] checker sees, and as what (e.g. renamed): `None` leaves an op
/// out.
pub type Select = fn(&Op) -> Option<Cow<'_, Op>>;

/// Linearizability of the selected ops against a model, searched on its own thread as the ops
/// stream in, so that only invocations in flight are held (not the history).
///
/// The ops cross to that thread as JSON lines, a batch to a buffer. Handing over parsed ops
/// would have the search thread free, op by op, what the reader's thread allocated, which cost
/// glibc's allocator more than writing and parsing the JSON does (measured on a 500,000-op
/// history).
pub struct Linearizable {
    name: String,
    select: Select,
    batch: Vec<u8>,
    batched: usize,
    /// Invocations `select` kept, over the whole history.
    selected: u64,
    feed: SyncSender<Feed>,
    search: JoinHandle<Result<linear::Report, ModelChoiceError>>,
}

/// Ops go to the search in batches, to pay for a channel handoff once per batch.
const BATCH: usize = 256;
/// Batches waiting for the search at most; a slow search slows the reader down.
const BATCHES_QUEUED: usize = 64;

enum Feed {
    /// Ops, one JSON object per line.
    Ops(Vec<u8>),
    End,
}

impl Linearizable {
    /// Checks the ops `select` keeps against `model` (a name of [`linear::MODELS`], registers
    /// starting empty) within the budget in `opts`; the result is called `name`.
    pub fn new(name: &str, model: &str, select: Select, opts: Options) -> Self {
        let (feed, fed) = sync_channel(BATCHES_QUEUED);
        let model = model.to_owned();
        let ops = Fed { fed, batch: Vec::new(), at: 0 };
        let search = std::thread::spawn(move || linear::check_by_name(&model, &Value::Null, ops, &opts));
        Linearizable { name: name.to_owned(), select, batch: Vec::new(), batched: 0, selected: 0, feed, search }
    }

    fn send_batch(&mut self) {
        self.batched = 0;
        // The next batch is about as long as this one.
        let next = Vec::with_capacity(self.batch.len());
        let batch = std::mem::replace(&mut self.batch, next);
        self.send(Feed::Ops(batch));
    }

    fn send(&mut self, message: Feed) {
        // A search that stopped early (the ops did not fit the model) has dropped its end; its
        // error comes out of `finish`.
        let _ = self.feed.send(message);
    }
}

impl Checker for Linearizable {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, op: &Op) {
        let Some(op) = (self.select)(op) else { return };
        serde_json::to_writer(&mut self.batch, &op).expect("an op serializes to JSON");
        self.batch.push(b'\n');
        self.batched += 1;
        self.selected += u64::from(op.kind == OpType::Invoke);
        if self.batched == BATCH {
            self.send_batch();
        }
    }

    fn finish(mut self: Box<Self>) -> Result<CheckerResult, CheckError> {
        self.send_batch();
        self.send(Feed::End);
        let report = self.search.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        // A run's checker whose ops all failed checked nothing: that is no pass, though Knossos
        // calls such a history valid. One whose ops never ran (a mix without them) has nothing
        // to say either way.
        let (verdict, summary) = match (report.partitions, self.selected) {
            (0, 0) => (Verdict::Valid, format!("valid: no {} op ran, so there was nothing to check", report.model)),
            (0, ran) => {
                (Verdict::Unknown, format!("unknown: none of the {ran} {} ops to check completed", report.model))
            }
            _ => (report.verdict, report.summary()),
        };
        Ok(CheckerResult {
            name: self.name,
            verdict,
            summary,
            details: serde_json::to_value(&report).unwrap_or_default(),
        })
    }
}

/// The search's side of the channel: the ops, until the end of the history.
struct Fed {
    fed: Receiver<Feed>,
    /// The batch being read, and where its next line starts.
    batch: Vec<u8>,
    at: usize,
}

impl Iterator for Fed {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        while self.at >= self.batch.len() {
            match self.fed.recv() {
                Ok(Feed::Ops(batch)) => (self.batch, self.at) = (batch, 0),
                Ok(Feed::End) => return None,
                Err(_) => return Some(abandoned()),
            }
        }
        let rest = &self.batch[self.at..];
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        self.at += end + 1;
        Some(serde_json::from_slice(&rest[..end]).expect("a batch parses back into the ops it was written from"))
    }
}

/// What the search gets when its checker was dropped unfinished: a completion nobody invoked,
/// which stops the search with an error at once instead of searching half a history for no one.
fn abandoned() -> Op {
    Op::invoke(Process::Client(u64::MAX), "abandoned", Value::Null).completed(OpType::Ok)
}

/// Every acknowledged append of a partition log read back once, at its offset, by the final
/// reads ([`crate::log::check`]). It needs the whole history, so it holds the ops.
pub struct FinalReads {
    name: String,
    ops: Vec<Op>,
}

impl FinalReads {
    /// The check, its result called `name`.
    pub fn new(name: &str) -> Self {
        FinalReads { name: name.to_owned(), ops: Vec::new() }
    }
}

impl Checker for FinalReads {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, op: &Op) {
        self.ops.push(op.clone());
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let report = crate::log::check(&History::from_ops(self.ops))?;
        Ok(CheckerResult {
            name: self.name,
            verdict: report.verdict,
            summary: report.summary(),
            details: serde_json::to_value(&report).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Numbers the ops of a history as the recorder would.
    fn history(ops: Vec<Op>) -> Vec<Op> {
        ops.into_iter().enumerate().map(|(i, op)| Op { index: i as u64, time: i as u64, ..op }).collect()
    }

    /// `f(value)` by client `p`, completed `kind` with `result`.
    fn call(p: u64, f: &str, value: Value, kind: OpType, result: Value) -> [Op; 2] {
        let invoke = Op::invoke(Process::Client(p), f, value);
        [invoke.clone(), Op { value: result, ..invoke.completed(kind) }]
    }

    fn check(checkers: Vec<Box<dyn Checker>>, ops: Vec<Op>) -> Vec<(String, Verdict)> {
        let mut all = Compose::new(checkers);
        history(ops).iter().for_each(|op| all.observe(op));
        all.finish().expect("a well-formed history").into_iter().map(|r| (r.name, r.verdict)).collect()
    }

    fn kv() -> Box<dyn Checker> {
        Box::new(Linearizable::new("linearizability", "kv", |op| Some(Cow::Borrowed(op)), Options::default()))
    }

    /// Commits as writes, the rest dropped: the renaming the offsets check of logs does.
    fn commits() -> Box<dyn Checker> {
        let select: Select = |op| (op.f == "commit").then(|| Cow::Owned(Op { f: "write".into(), ..op.clone() }));
        Box::new(Linearizable::new("offsets", "kv", select, Options::default()))
    }

    fn register(read: i64) -> Vec<Op> {
        let w = call(0, "write", json!({"key": "k0", "value": 1}), OpType::Ok, json!({"key": "k0", "value": 1}));
        let r = call(1, "read", json!({"key": "k0"}), OpType::Ok, json!({"key": "k0", "value": read}));
        w.into_iter().chain(r).collect()
    }

    #[test]
    fn linearizable_accepts_a_read_of_the_last_write() {
        assert_eq!(check(vec![kv()], register(1)), [("linearizability".to_owned(), Verdict::Valid)]);
    }

    #[test]
    fn linearizable_catches_a_stale_read() {
        assert_eq!(check(vec![kv()], register(0)), [("linearizability".to_owned(), Verdict::Invalid)]);
    }

    #[test]
    fn linearizable_sees_only_the_selected_ops_renamed() {
        let commit = call(0, "commit", json!({"key": "p0", "value": 3}), OpType::Ok, json!({"key": "p0", "value": 3}));
        let stale = register(0).into_iter().chain(commit).collect();
        assert_eq!(check(vec![commits()], stale), [("offsets".to_owned(), Verdict::Valid)]);
    }

    #[test]
    fn a_checker_whose_ops_all_failed_is_unknown_and_one_whose_ops_never_ran_is_not() {
        let failed = call(0, "commit", json!({"key": "p0", "value": 3}), OpType::Fail, json!({"key": "p0"}));
        assert_eq!(check(vec![commits()], failed.to_vec()), [("offsets".to_owned(), Verdict::Unknown)]);
        // A mix without commits: nothing to check, and nothing wrong.
        assert_eq!(check(vec![commits()], register(1)), [("offsets".to_owned(), Verdict::Valid)]);
    }

    fn log(final_values: Value) -> Vec<Op> {
        let append = call(0, "append", json!({"key": 0, "value": 7}), OpType::Ok, json!({"key": 0, "offset": 0}));
        let read = call(
            1,
            "read",
            json!({"key": 0, "from": 0, "final": true}),
            OpType::Ok,
            json!({"key": 0, "values": final_values}),
        );
        append.into_iter().chain(read).collect()
    }

    #[test]
    fn final_reads_accept_every_append_read_back() {
        assert_eq!(
            check(vec![Box::new(FinalReads::new("log"))], log(json!([7]))),
            [("log".to_owned(), Verdict::Valid)]
        );
    }

    #[test]
    fn final_reads_catch_a_lost_append() {
        assert_eq!(
            check(vec![Box::new(FinalReads::new("log"))], log(json!([]))),
            [("log".to_owned(), Verdict::Invalid)]
        );
    }

    #[test]
    fn invalid_beats_unknown_beats_valid() {
        let result =
            |verdict| CheckerResult { name: "c".into(), verdict, summary: String::new(), details: Value::Null };
        assert_eq!(verdict(&[]), Verdict::Valid);
        assert_eq!(verdict(&[result(Verdict::Valid), result(Verdict::Unknown)]), Verdict::Unknown);
        assert_eq!(verdict(&[result(Verdict::Invalid), result(Verdict::Unknown)]), Verdict::Invalid);
    }

    #[test]
    fn a_history_that_does_not_fit_the_model_is_an_error() {
        let mut c = Compose::new(vec![kv()]);
        history(call(0, "write", json!("no key"), OpType::Ok, json!("no key")).into())
            .iter()
            .for_each(|op| c.observe(op));
        assert!(matches!(c.finish(), Err(CheckError::Model(_))));
    }

    #[test]
    fn a_dropped_checker_stops_its_search() {
        let mut c = Linearizable::new("linearizability", "kv", |op| Some(Cow::Borrowed(op)), Options::default());
        history(register(1)).iter().for_each(|op| c.observe(op));
        let search = c.search;
        drop(c.feed);
        assert!(search.join().expect("no panic").is_err());
    }
}
