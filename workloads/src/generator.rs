//! Op schedules. A generator decides what the next invocation is; it never reads the clock,
//! sleeps or touches the network, and every random choice comes from the RNG it is given, so a
//! run's schedule follows from its seed.

use ordeal_history::{Op, OpType};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An op schedule.
pub trait Generator: Send {
    /// The next invocation: its `f` and value.
    fn op(&mut self, rng: &mut ChaCha8Rng) -> (&'static str, Value);
    /// Learns from a completed op (e.g. the offsets a log has reached).
    fn update(&mut self, _invoke: &Op, _completion: &Op) {}
    /// The final phase's reads, made once the cluster is healed.
    fn final_ops(&self) -> Vec<(&'static str, Value)>;
}

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
    fn op(&mut self, rng: &mut ChaCha8Rng) -> (&'static str, Value) {
        let slot = rng.random_range(0..self.active.len());
        let key = self.active[slot].0;
        self.active[slot].1 -= 1;
        if self.active[slot].1 == 0 {
            self.active[slot] = (self.next_key, self.ops_per_key);
            self.next_key += 1;
        }
        let name = Self::key_name(key);
        let roll: f64 = rng.random();
        if roll < 0.5 {
            return ("read", json!({"key": name}));
        }
        let value = self.next_value;
        self.next_value += 1;
        if roll < 0.8 {
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

/// Partition logs: appends of unique values, reads from near the end, and consumer-offset
/// commits and listings, over a few partitions.
pub struct LogGen {
    hw: Vec<u64>,
    next_value: i64,
}

impl LogGen {
    /// A schedule over `partitions` partitions.
    pub fn new(partitions: usize) -> Self {
        LogGen { hw: vec![0; partitions.max(1)], next_value: 1 }
    }
}

impl Generator for LogGen {
    fn op(&mut self, rng: &mut ChaCha8Rng) -> (&'static str, Value) {
        let p = rng.random_range(0..self.hw.len());
        let roll: f64 = rng.random();
        if roll < 0.55 {
            let value = self.next_value;
            self.next_value += 1;
            ("append", json!({"key": p, "value": value}))
        } else if roll < 0.85 {
            let back = rng.random_range(0..8u64);
            ("read", json!({"key": p, "from": self.hw[p].saturating_sub(back)}))
        } else if roll < 0.95 {
            ("commit", json!({"key": p, "value": rng.random_range(0..=self.hw[p])}))
        } else {
            ("list", json!({"key": p}))
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
    fn op(&mut self, _rng: &mut ChaCha8Rng) -> (&'static str, Value) {
        self.0 += 1;
        ("write", json!({"key": "k0", "value": self.0}))
    }

    fn final_ops(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
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
            (0..50).map(|_| g.op(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn register_keys_rotate_and_writes_are_unique() {
        let mut g = RegisterGen::new(2, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ops: Vec<_> = (0..60).map(|_| g.op(&mut rng)).collect();
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
