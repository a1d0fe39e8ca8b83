//! The workload driver.
//!
//! * [`generator`]: pure op schedules, one per workload (`register`, `log`, `noop`): every random
//!   choice comes from a seeded RNG the runner passes in;
//! * [`client`]: turns an invocation into a completion against the broker, telling `ok` from a
//!   definite `fail` from an indeterminate `info`;
//! * [`recorder`]: assigns index and time and streams every op to `history.jsonl`, flushed;
//! * [`systems`]: each system under test with its clients (`broker`, `etcd`);
//! * [`runner`]: the interpreter, the only place with real time and tasks: client workers under a
//!   rate limit, the nemesis schedule, status sampling, healing, final reads.
#![warn(missing_docs)]

pub mod client;
pub mod generator;
pub mod recorder;
pub mod runner;
pub mod systems;

use serde::{Deserialize, Serialize};

/// The workloads the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Read, write and compare-and-set over many keys; checked per key as a cas-register.
    Register,
    /// Produce, fetch, commit and list offsets on a few partitions; checked as partition logs.
    Log,
    /// No cluster work at all: measures the driver itself.
    Noop,
}

impl Workload {
    /// Parses a `--workload` name.
    pub fn parse(name: &str) -> Result<Workload, String> {
        match name {
            "register" => Ok(Workload::Register),
            "log" => Ok(Workload::Log),
            "noop" => Ok(Workload::Noop),
            other => Err(format!("unknown workload {other:?}: expected register or log")),
        }
    }

    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Log => "log",
            Workload::Noop => "noop",
        }
    }

    /// The write-like operations whose first acknowledgement after a fault ends its write gap.
    pub fn writes(self) -> &'static [&'static str] {
        match self {
            Workload::Register => &["write", "cas"],
            Workload::Log => &["append"],
            Workload::Noop => &["write"],
        }
    }
}
