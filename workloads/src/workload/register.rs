//! The register workload: reads, writes of unique values and compare-and-sets over many keys,
//! checked per key as a cas-register (the `kv` model).

use super::{Workload, linearizable};
use crate::generator::Generator;
use crate::phases::{Mix, OpKind};
use ordeal_checker::Checker;
use ordeal_history::{Op, OpType, Test};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Read, write and compare-and-set over many keys.
pub struct Register;

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn writes(&self) -> &'static [&'static str] {
        &["write", "cas"]
    }

    fn ops(&self) -> &'static [OpKind] {
        OPS
    }

    fn default_keys(&self) -> usize {
        10
    }

    fn generator(&self, keys: usize, ops_per_key: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen::new(keys, ops_per_key))
    }

    fn checkers(&self, _test: &Test) -> Vec<Box<dyn Checker>> {
        vec![linearizable("linearizability", "kv", |op| Some(Cow::Borrowed(op)))]
    }
}

/// Half reads, then writes, then compare-and-sets.
const OPS: &[OpKind] = &[
    OpKind { name: "read", weight: 5.0, read_only: true },
    OpKind { name: "write", weight: 3.0, read_only: false },
    OpKind { name: "cas", weight: 2.0, read_only: false },
];

/// Registers: reads, writes of unique values, and compare-and-sets, over a rotating set of keys.
///
/// `active` keys are in use at a time; each takes `ops_per_key` ops and is then replaced by a
/// fresh key, which keeps every partition the checker searches small (Jepsen's
/// `independent` keys).
pub struct RegisterGen {
    active: Vec<(u64, usize)>,
    ops_per_key: usize,
    next_key: u64,
    next_value: i64,
    last_written: BTreeMap<u64, i64>,
}

impl RegisterGen {
    /// `active` keys at a time, `ops_per_key` ops each.
    pub fn new(active: usize, ops_per_key: usize) -> Self {
        let active = active.max(1);
        RegisterGen {
            active: (0..active as u64).map(|k| (k, ops_per_key)).collect(),
            ops_per_key: ops_per_key.max(1),
            next_key: active as u64,
            next_value: 1,
            last_written: BTreeMap::new(),
        }
    }

    /// The name of key `k`.
    pub fn key_name(k: u64) -> String {
        format!("k{k}")
    }
}

impl Generator for RegisterGen {
    fn op(&mut self, rng: &mut ChaCha8Rng, mix: Option<&Mix>) -> (&'static str, Value) {
        let slot = rng.random_range(0..self.active.len());
        let key = self.active[slot].0;
        self.active[slot].1 -= 1;
        if self.active[slot].1 == 0 {
            self.active[slot] = (self.next_key, self.ops_per_key);
            self.next_key += 1;
        }
        let name = Self::key_name(key);
        let f = Mix::pick(OPS, mix, rng.random());
        if f == "read" {
            return ("read", json!({"key": name}));
        }
        let value = self.next_value;
        self.next_value += 1;
        if f == "write" {
            return ("write", json!({"key": name, "value": value}));
        }
        let from = self.last_written.get(&key).copied();
        ("cas", json!({"key": name, "from": from, "to": value}))
    }

    fn update(&mut self, invoke: &Op, completion: &Op) {
        if completion.kind != OpType::Ok {
            return;
        }
        let key = invoke.value["key"].as_str().and_then(|k| k.strip_prefix('k')).and_then(|k| k.parse().ok());
        let written = match invoke.f.as_str() {
            "write" => invoke.value["value"].as_i64(),
            "cas" => invoke.value["to"].as_i64(),
            _ => None,
        };
        if let (Some(key), Some(v)) = (key, written) {
            self.last_written.insert(key, v);
        }
    }

    fn final_ops(&self) -> Vec<(&'static str, Value)> {
        (0..self.next_key).map(|k| ("read", json!({"key": Self::key_name(k)}))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedules_follow_from_the_seed() {
        let run = |seed| {
            let mut g = RegisterGen::new(3, 5);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50).map(|_| g.op(&mut rng, None)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn register_keys_rotate_and_writes_are_unique() {
        let mut g = RegisterGen::new(2, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ops: Vec<_> = (0..60).map(|_| g.op(&mut rng, None)).collect();
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        let mut written = std::collections::BTreeSet::new();
        for (f, v) in &ops {
            *per_key.entry(v["key"].as_str().unwrap().to_owned()).or_default() += 1;
            let w = if *f == "cas" { &v["to"] } else { &v["value"] };
            if *f != "read" {
                assert!(written.insert(w.as_i64().unwrap()), "value written twice");
            }
        }
        assert!(per_key.values().all(|n| *n <= 3));
        assert_eq!(g.final_ops().len(), g.next_key as usize);
    }
}
