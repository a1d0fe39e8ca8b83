//! The no-op workload: writes that no system sees, to measure the driver itself.

use super::Workload;
use crate::generator::Generator;
use crate::phases::{Mix, OpKind};
use ordeal_checker::Checker;
use ordeal_history::Test;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// No cluster work at all.
pub struct Noop;

impl Workload for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn writes(&self) -> &'static [&'static str] {
        &["write"]
    }

    fn ops(&self) -> &'static [OpKind] {
        &[OpKind { name: "write", weight: 1.0, read_only: false }]
    }

    fn default_keys(&self) -> usize {
        10
    }

    fn generator(&self, _keys: usize, _ops_per_key: usize) -> Box<dyn Generator> {
        Box::new(NoopGen::new())
    }

    /// Nothing to check: its ops never reach a system.
    fn checkers(&self, _test: &Test) -> Vec<Box<dyn Checker>> {
        Vec::new()
    }
}

/// Writes that go nowhere, for measuring the driver.
pub struct NoopGen(i64);

impl NoopGen {
    /// A no-op schedule.
    pub fn new() -> Self {
        NoopGen(0)
    }
}

impl Default for NoopGen {
    fn default() -> Self {
        Self::new()
    }
}

impl Generator for NoopGen {
    fn op(&mut self, _rng: &mut ChaCha8Rng, _mix: Option<&Mix>) -> (&'static str, Value) {
        self.0 += 1;
        ("write", json!({"key": "k0", "value": self.0}))
    }

    fn final_ops(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
}
