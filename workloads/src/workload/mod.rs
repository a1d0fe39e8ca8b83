//! The workloads, each one unit: its generator, the operations that count as writes, and the
//! checkers its histories get. Adding a workload is a module here and a line in [`WORKLOADS`];
//! the clients that perform its operations on each system live with the system
//! ([`crate::systems`]).

mod log;
mod noop;
mod register;

use crate::generator::Generator;
use crate::phases::OpKind;
use ordeal_checker::checker::{Checker, Linearizable, Select};
use ordeal_checker::linear::Options;
use ordeal_history::Test;
use std::time::Duration;

/// What a workload is made of.
pub trait Workload: Sync {
    /// Its `--workload` name, also `test.json`'s `workload`.
    fn name(&self) -> &'static str;
    /// The write-like operations whose first acknowledgement after a fault ends its write gap.
    fn writes(&self) -> &'static [&'static str];
    /// The op kinds its generator makes, with their weights in its own mix.
    fn ops(&self) -> &'static [OpKind];
    /// Keys (or partitions) in use when `--keys` is not given.
    fn default_keys(&self) -> usize;
    /// Its op schedule over `keys` keys, moving to a fresh key after `ops_per_key` ops where
    /// it rotates keys.
    fn generator(&self, keys: usize, ops_per_key: usize) -> Box<dyn Generator>;
    /// The checkers a history of `test` goes through, each fed the same single pass.
    fn checkers(&self, test: &Test) -> Vec<Box<dyn Checker>>;
}

/// Every workload, in the order help lists them.
pub const WORKLOADS: &[&dyn Workload] = &[&register::Register, &log::Log, &noop::Noop];

/// A workload name nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown workload {name:?}: expected one of {}", names().collect::<Vec<_>>().join(", "))]
pub struct UnknownWorkload {
    /// The name asked for.
    pub name: String,
}

/// The workload called `name`.
///
/// # Examples
///
/// ```
/// let log = ordeal_workloads::workload::by_name("log").unwrap();
/// assert_eq!(log.writes(), ["append"]);
/// assert!(ordeal_workloads::workload::by_name("queue").is_err());
/// ```
pub fn by_name(name: &str) -> Result<&'static dyn Workload, UnknownWorkload> {
    WORKLOADS.iter().copied().find(|w| w.name() == name).ok_or_else(|| UnknownWorkload { name: name.to_owned() })
}

/// The names of every workload.
pub fn names() -> impl Iterator<Item = &'static str> {
    WORKLOADS.iter().map(|w| w.name())
}

/// How long a linearizability search may take before it answers `unknown`.
const SEARCH_BUDGET: Duration = Duration::from_secs(300);

/// Linearizability of the ops `select` keeps against `model`, within [`SEARCH_BUDGET`].
fn linearizable(name: &str, model: &str, select: Select) -> Box<dyn Checker> {
    let opts = Options { timeout: Some(SEARCH_BUDGET), ..Options::default() };
    Box::new(Linearizable::new(name, model, select, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut seen: Vec<_> = names().collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), WORKLOADS.len());
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let e = by_name("queue").err().expect("no queue workload").to_string();
        assert_eq!(e, "unknown workload \"queue\": expected one of register, log, noop");
    }

    #[test]
    fn each_name_finds_its_workload() {
        for name in names() {
            assert_eq!(by_name(name).map(|w| w.name()).ok(), Some(name));
        }
    }
}
