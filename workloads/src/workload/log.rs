//! The log workload: appends, reads, consumer-offset commits and listings on a few partitions,
//! checked as partition logs (linearizability against the `log` model, and every acknowledged
//! record read back once by the final reads) and as a register of consumer offsets per
//! partition.

use super::{Workload, linearizable};
use crate::generator::Generator;
use crate::phases::{Mix, OpKind};
use ordeal_checker::Checker;
use ordeal_checker::checker::FinalReads;
use ordeal_history::{Op, OpType, Test};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::borrow::Cow;

/// Produce, fetch, commit and list offsets on a few partitions.
pub struct Log;

impl Workload for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn writes(&self) -> &'static [&'static str] {
        &["append"]
    }

    fn ops(&self) -> &'static [OpKind] {
        OPS
    }

    fn default_keys(&self) -> usize {
        4
    }

    fn generator(&self, partitions: usize, _ops_per_key: usize) -> Box<dyn Generator> {
        Box::new(LogGen::new(partitions))
    }

    fn checkers(&self, _test: &Test) -> Vec<Box<dyn Checker>> {
        vec![
            linearizable("linearizability", "log", records),
            linearizable("offsets", "kv", offsets),
            Box::new(FinalReads::new("log")),
        ]
    }
}

/// The ops on the records of a partition.
fn records(op: &Op) -> Option<Cow<'_, Op>> {
    matches!(op.f.as_str(), "append" | "read").then_some(Cow::Borrowed(op))
}

/// Consumer offsets: a register per partition, written by commits, read by listings.
fn offsets(op: &Op) -> Option<Cow<'_, Op>> {
    let f = match op.f.as_str() {
        "commit" => "write",
        "list" => "read",
        _ => return None,
    };
    Some(Cow::Owned(Op { f: f.into(), ..op.clone() }))
}

/// Appends, reads from near the end, consumer-offset commits and listings.
const OPS: &[OpKind] = &[
    OpKind { name: "append", weight: 55.0, read_only: false },
    OpKind { name: "read", weight: 30.0, read_only: true },
    OpKind { name: "commit", weight: 10.0, read_only: false },
    OpKind { name: "list", weight: 5.0, read_only: true },
];

/// Partition logs: appends of unique values, reads from near the end, and consumer-offset
/// commits and listings, over a few partitions.
pub struct LogGen {
    hw: Vec<u64>,
    next_value: i64,
    /// The next committed offset. Commits write values no other commit writes, as appends do: a
    /// listing then names the one commit it saw, and the offsets register is checked by its
    /// version order. Offsets drawn from below the high watermark repeat (all 0 until the first
    /// append), which sends every check to the search and lets a stale listing pass as a later
    /// commit of the same value.
    next_commit: u64,
}

impl LogGen {
    /// A schedule over `partitions` partitions.
    pub fn new(partitions: usize) -> Self {
        LogGen { hw: vec![0; partitions.max(1)], next_value: 1, next_commit: 1 }
    }
}

impl Generator for LogGen {
    fn op(&mut self, rng: &mut ChaCha8Rng, mix: Option<&Mix>) -> (&'static str, Value) {
        let p = rng.random_range(0..self.hw.len());
        match Mix::pick(OPS, mix, rng.random()) {
            "append" => {
                let value = self.next_value;
                self.next_value += 1;
                ("append", json!({"key": p, "value": value}))
            }
            "read" => {
                let back = rng.random_range(0..8u64);
                ("read", json!({"key": p, "from": self.hw[p].saturating_sub(back)}))
            }
            "commit" => {
                let value = self.next_commit;
                self.next_commit += 1;
                ("commit", json!({"key": p, "value": value}))
            }
            _ => ("list", json!({"key": p})),
        }
    }

    fn update(&mut self, invoke: &Op, completion: &Op) {
        if completion.kind != OpType::Ok {
            return;
        }
        let Some(p) = invoke.value["key"].as_u64().map(|p| p as usize).filter(|p| *p < self.hw.len()) else { return };
        let reached = match invoke.f.as_str() {
            "append" => completion.value["offset"].as_u64().map(|o| o + 1),
            "read" => completion.value["hw"].as_u64(),
            _ => None,
        };
        if let Some(r) = reached {
            self.hw[p] = self.hw[p].max(r);
        }
    }

    fn final_ops(&self) -> Vec<(&'static str, Value)> {
        (0..self.hw.len()).map(|p| ("read", json!({"key": p, "from": 0, "final": true}))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_history::Process;

    fn op(f: &str) -> Op {
        Op::invoke(Process::Client(0), f, json!({"key": 0}))
    }

    #[test]
    fn offsets_are_a_register_written_by_commits_and_read_by_listings() {
        assert_eq!(offsets(&op("commit")).map(|o| o.f.clone()).as_deref(), Some("write"));
        assert_eq!(offsets(&op("list")).map(|o| o.f.clone()).as_deref(), Some("read"));
        assert!(offsets(&op("append")).is_none());
    }

    #[test]
    fn no_two_commits_write_the_same_offset() {
        use rand::SeedableRng;
        let mut generator = LogGen::new(1);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let commits: Vec<Value> =
            (0..5000).map(|_| generator.op(&mut rng, None)).filter(|(f, _)| *f == "commit").map(|(_, v)| v).collect();
        let distinct: std::collections::BTreeSet<String> = commits.iter().map(|v| v["value"].to_string()).collect();
        assert!(commits.len() > 100, "only {} commits drawn", commits.len());
        assert_eq!(distinct.len(), commits.len(), "repeated commit values");
    }

    #[test]
    fn records_are_appends_and_reads_as_they_are() {
        assert!(matches!(records(&op("append")), Some(Cow::Borrowed(_))));
        assert!(records(&op("commit")).is_none());
    }
}
