//! The workload driver.
//!
//! * [`workload`]: each workload as one unit (`register`, `log`, `noop`): its generator, its
//!   writes and its checkers, found by name;
//! * [`generator`]: pure op schedules: every random choice comes from a seeded RNG the runner
//!   passes in;
//! * [`phases`]: a test's phases checked against the workload's op kinds, as the runner drives
//!   them;
//! * [`client`]: turns an invocation into a completion against the broker, telling `ok` from a
//!   definite `fail` from an indeterminate `info`;
//! * [`recorder`]: assigns index and time and streams every op to `history.jsonl`, flushed;
//! * [`systems`]: each system under test with its clients (`broker`, `etcd`);
//! * [`runner`]: the interpreter, the only place with real time and tasks: client workers under a
//!   rate limit, the nemesis schedule, status sampling, healing, final reads.
#![warn(missing_docs)]

pub mod client;
pub mod generator;
pub mod phases;
pub mod recorder;
pub mod runner;
pub mod systems;
pub mod workload;

pub use workload::Workload;
