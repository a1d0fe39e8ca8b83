//! Op schedules. A generator decides what the next invocation is; it never reads the clock,
//! sleeps or touches the network, and every random choice comes from the RNG it is given, so a
//! run's schedule follows from its seed. Each workload's schedule lives with the workload
//! ([`crate::workload`]).

use crate::phases::Mix;
use ordeal_history::Op;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// An op schedule.
pub trait Generator: Send {
    /// The next invocation, its `f` drawn from `mix` (the workload's own when `None`): its `f`
    /// and value.
    fn op(&mut self, rng: &mut ChaCha8Rng, mix: Option<&Mix>) -> (&'static str, Value);
    /// Learns from a completed op (e.g. the offsets a log has reached).
    fn update(&mut self, _invoke: &Op, _completion: &Op) {}
    /// The final phase's reads, made once the cluster is healed.
    fn final_ops(&self) -> Vec<(&'static str, Value)>;
}
