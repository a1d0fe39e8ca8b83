//! The operation history: the contract between the workload driver, the checkers and the reports.
//!
//! A history is a sequence of [`Op`]s in the order they happened, modelled on Jepsen's. A client
//! process first records an [`OpType::Invoke`], then exactly one completion:
//!
//! * [`OpType::Ok`]: the operation took effect;
//! * [`OpType::Fail`]: the operation definitely did not take effect;
//! * [`OpType::Info`]: the outcome is unknown. It may have taken effect at any point after its
//!   invocation, or never. A process that gets `info` never invokes again; a fresh process id
//!   takes its place.
//!
//! Histories are stored as JSON Lines (see [`jsonl`] and `docs/formats.md`), one op per line,
//! written as the ops happen so that a crashed run keeps what it recorded.
//!
//! # Examples
//!
//! ```
//! use ordeal_history::{History, Op, OpType, Process};
//! use serde_json::json;
//!
//! let mut h = History::new();
//! h.push(Op::invoke(Process::Client(0), "write", json!(3)).at(10));
//! h.push(Op::invoke(Process::Client(0), "write", json!(3)).at(25).completed(OpType::Ok));
//! let pairs = h.pairs().unwrap();
//! assert_eq!(pairs.len(), 1);
//! assert_eq!(pairs[0].completion, Some(1));
//! ```
#![warn(missing_docs)]

mod history;
pub mod jsonl;
pub mod membership;
mod op;
mod test;

pub use history::{History, HistoryError, Pair, Paired, Protocol};
pub use op::{Op, OpType, Process, ROUNDS_CUT_SHORT, TIMED_OUT};
pub use test::{NodeExit, Phase, PhaseKind, PhaseSpan, SshHosts, Test};

/// The version of the on-disk history format written by this crate.
///
/// A run records it in `test.json` (`history_format`); readers refuse a newer version with a
/// clear error ([`Test::check_format`]) and accept every version up to this one. Unknown fields
/// are ignored, so fields can be added without a new version; a new version means a change of
/// meaning.
pub const FORMAT_VERSION: u32 = 1;
