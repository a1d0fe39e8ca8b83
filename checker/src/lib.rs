//! Checkers for ordeal histories.
//!
//! * [`checker`]: the [`Checker`] protocol (observe each op, then finish with a verdict) and
//!   adapters of the checks below, composed to share one pass over a history;
//! * [`linear`]: linearizability against a sequential [`model`], P-compositional (each partition
//!   on its own, in parallel): by the version order where written values are unique (no search,
//!   near-linear), else by a memoized Wing–Gong/Lowe search bounded in time and measured memory;
//! * [`formats`]: importers for Jepsen/Knossos EDN, Jepsen etcd console logs and Porcupine kv
//!   logs, and an EDN exporter;
//! * [`log`]: anomalies of the broker's partition logs (lost, duplicated, misplaced records);
//! * [`membership`]: premature and gated promotions, and the voter set during catch-ups;
//! * [`perf`]: latency and throughput statistics;
//! * [`protocol`]: models of the broker's protocols (membership), explored by stateright.
//!
//! Every checker of a history is a pure function of it: no clock reads except its own budget, no
//! I/O, no cluster access.
#![warn(missing_docs)]

pub mod checker;
pub mod formats;
pub mod linear;
pub mod log;
pub mod membership;
pub mod model;
pub mod perf;
pub mod protocol;
#[doc(hidden)]
pub mod testing;

pub use checker::{Checker, CheckerResult};
use serde::{Deserialize, Serialize};

/// A checker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation found, and the check was complete.
    Valid,
    /// The check could not decide (a budget ran out, the history is incomplete).
    Unknown,
    /// A violation, with evidence.
    Invalid,
}

impl Verdict {
    /// Combines verdicts: invalid beats unknown beats valid.
    pub fn and(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        })
    }
}
