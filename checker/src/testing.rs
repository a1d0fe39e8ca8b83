//! Generated histories and the shared corpus, for benchmarks and tests of the checkers and
//! reports.
//!
//! Not part of the checking API: the generator simulates clients of a linearizable key-value
//! store, so what it writes is valid by construction.

use ordeal_history::{Op, OpType, Process, jsonl};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::io;
use std::path::{Path, PathBuf};

/// A generated op in flight: (process, key, f, invocation value, completion value, outcome).
type InFlight = (u64, usize, &'static str, Value, Value, OpType);

/// Writes to `path` a linearizable cas-register history of `ops` operations (2 * ops events) over
/// `keys` keys by `processes` concurrent processes.
pub fn write_register_history(path: &Path, ops: usize, keys: usize, processes: usize) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(ops as u64);
    let mut w = jsonl::Writer::create(path)?;
    let mut registers: Vec<Option<i64>> = vec![None; keys];
    let mut slots: Vec<Option<InFlight>> = vec![None; processes];
    let mut ids: Vec<u64> = (0..processes as u64).collect();
    let (mut next_id, mut invoked, mut index, mut time, mut fresh) = (processes as u64, 0, 0u64, 0u64, 0i64);
    let mut emit = |w: &mut jsonl::Writer<std::fs::File>, op: Op, time: u64| {
        let mut op = op.at(time);
        op.index = index;
        index += 1;
        w.write_unflushed(&op)
    };
    while invoked < ops || slots.iter().any(Option::is_some) {
        time += rng.random_range(1_000..50_000);
        let s = rng.random_range(0..processes);
        match slots[s].take() {
            None if invoked < ops => {
                let key = rng.random_range(0..keys);
                let k = format!("k{key}");
                let cur = registers[key];
                // Apply at invocation: the op takes effect inside its interval.
                let (f, arg, done, kind) = match rng.random_range(0..10) {
                    0..=3 => ("read", json!({"key": k}), json!({"key": k, "value": cur}), OpType::Ok),
                    4..=7 => {
                        fresh += 1;
                        registers[key] = Some(fresh);
                        let v = json!({"key": k, "value": fresh});
                        ("write", v.clone(), v, OpType::Ok)
                    }
                    _ => {
                        fresh += 1;
                        let from = if rng.random_bool(0.7) { cur } else { Some(-1) };
                        let v = json!({"key": k, "from": from, "to": fresh});
                        if from == cur {
                            registers[key] = Some(fresh);
                            ("cas", v.clone(), v, OpType::Ok)
                        } else {
                            ("cas", v.clone(), v, OpType::Fail)
                        }
                    }
                };
                emit(&mut w, Op::invoke(Process::Client(ids[s]), f, arg.clone()), time)?;
                slots[s] = Some((ids[s], key, f, arg, done, kind));
                invoked += 1;
            }
            None => {}
            Some((p, _, f, arg, done, kind)) => {
                let crashed = f != "read" && rng.random_bool(0.01);
                let op = if crashed {
                    ids[s] = next_id;
                    next_id += 1;
                    Op::invoke(Process::Client(p), f, arg).completed(OpType::Info)
                } else {
                    Op::invoke(Process::Client(p), f, done).completed(kind)
                };
                emit(&mut w, op, time)?;
            }
        }
    }
    w.flush()
}

/// Busy keys of a simulated linearizable kv store of strings (Porcupine's kv workload):
/// `clients` clients, `ops_per_key` ops on each of `keys` keys, half of them gets, the rest
/// appends of unique tokens and (one in five) puts; each op takes effect at an instant inside its
/// interval, and about one write in a hundred crashes (`info`), before or after taking effect.
#[derive(Debug, Clone, Copy)]
pub struct BusyKv {
    /// Keys.
    pub keys: usize,
    /// Ops per key.
    pub ops_per_key: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// The seed of every choice.
    pub seed: u64,
    /// Make one read, past the middle of the history, return the state its key had before a
    /// write that completed before the read was invoked: the history is then not linearizable.
    pub stale_read: bool,
}

/// A client's op in flight: its process, key, f, invocation value, and the completion value
/// once it took effect.
struct Pending {
    process: u64,
    key: usize,
    f: &'static str,
    arg: Value,
    done: Option<Value>,
    invoked: u64,
}

/// One key of the simulated store: its string, the string before its last change, and when the
/// op that made the last change completed (`None`: not yet, or crashed).
#[derive(Default)]
struct Key {
    value: String,
    before: String,
    changed_by: Option<u64>,
    change_completed: Option<u64>,
}

/// The file format a generated history is written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FileFormat {
    /// JSON Lines, ordeal's history format.
    #[default]
    Jsonl,
    /// Porcupine's kv test log ([`crate::formats::porcupine::write_line`]), so that Porcupine can
    /// check the very same file; crashed ops have no completion line there.
    Porcupine,
}

impl BusyKv {
    /// Writes the history to `path` as JSON Lines; returns the index of the stale read, if any.
    pub fn write(&self, path: &Path) -> io::Result<Option<u64>> {
        self.write_as(path, FileFormat::Jsonl)
    }

    /// Writes the history to `path` in `format`; returns the index of the stale read, if any
    /// (its index in the JSON Lines form).
    pub fn write_as(&self, path: &Path, format: FileFormat) -> io::Result<Option<u64>> {
        match format {
            FileFormat::Jsonl => {
                let mut w = jsonl::Writer::create(path)?;
                let stale = self.generate(|op| w.write_unflushed(op))?;
                w.flush()?;
                Ok(stale)
            }
            FileFormat::Porcupine => {
                let mut w = io::BufWriter::new(std::fs::File::create(path)?);
                let stale = self.generate(|op| crate::formats::porcupine::write_line(&mut w, op))?;
                io::Write::flush(&mut w)?;
                Ok(stale)
            }
        }
    }

    /// Runs the simulation, handing each op of the history to `emit` in order.
    fn generate(&self, mut emit: impl FnMut(&Op) -> io::Result<()>) -> io::Result<Option<u64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut keys: Vec<Key> = (0..self.keys).map(|_| Key::default()).collect();
        let mut slots: Vec<Option<Pending>> = (0..self.clients).map(|_| None).collect();
        let mut ids: Vec<u64> = (0..self.clients as u64).collect();
        let (mut next_id, mut invoked, mut index, mut time, mut fresh) = (self.clients as u64, 0, 0u64, 0u64, 0u64);
        let total = self.keys * self.ops_per_key;
        let mut stale = None;
        while invoked < total || slots.iter().any(Option::is_some) {
            time += rng.random_range(1_000..20_000);
            let s = rng.random_range(0..self.clients);
            let op = match slots[s].take() {
                None if invoked < total => {
                    invoked += 1;
                    fresh += 1;
                    let p = self.invoke(&mut rng, ids[s], fresh, time);
                    let op = Op::invoke(Process::Client(p.process), p.f, p.arg.clone());
                    slots[s] = Some(p);
                    op
                }
                None => continue,
                // A write crashes, before taking effect or after it.
                Some(p) if p.f != "read" && rng.random_bool(0.005) => {
                    ids[s] = next_id;
                    next_id += 1;
                    Op::invoke(Process::Client(p.process), p.f, p.arg).completed(OpType::Info)
                }
                Some(p) if p.done.is_none() => {
                    // Takes effect now; the completion comes at the client's next turn.
                    slots[s] = Some(apply(&mut keys[p.key], p));
                    continue;
                }
                Some(mut p) => {
                    let key = &mut keys[p.key];
                    if p.f == "read" {
                        if self.stale_read
                            && stale.is_none()
                            && 2 * invoked > total
                            && key.change_completed.is_some_and(|t| t < p.invoked)
                        {
                            p.done = Some(json!({"key": format!("k{}", p.key), "value": key.before}));
                            stale = Some(index);
                        }
                    } else if key.changed_by == Some(p.invoked) {
                        key.change_completed = Some(time);
                    }
                    Op::invoke(Process::Client(p.process), p.f, p.done.unwrap_or_default()).completed(OpType::Ok)
                }
            };
            let mut op = op.at(time);
            op.index = index;
            index += 1;
            emit(&op)?;
        }
        Ok(stale)
    }

    fn invoke(&self, rng: &mut ChaCha8Rng, process: u64, fresh: u64, time: u64) -> Pending {
        let key = rng.random_range(0..self.keys);
        let k = format!("k{key}");
        let token = format!("x {process} {fresh} y");
        let (f, arg) = match rng.random_range(0..10) {
            0..=4 => ("read", json!({"key": k, "value": null})),
            5 => ("write", json!({"key": k, "value": token})),
            _ => ("append", json!({"key": k, "value": token})),
        };
        Pending { process, key, f, arg, done: None, invoked: time }
    }
}

/// Applies an op to its key; a change remembers the string before it and its op (by invocation
/// time, unique per op).
fn apply(key: &mut Key, mut p: Pending) -> Pending {
    let token = p.arg["value"].as_str().unwrap_or_default().to_owned();
    match p.f {
        "read" => {
            p.done = Some(json!({"key": p.arg["key"], "value": key.value}));
            return p;
        }
        "write" => key.before = std::mem::replace(&mut key.value, token),
        _ => {
            key.before = key.value.clone();
            key.value.push_str(&token);
        }
    }
    key.changed_by = Some(p.invoked);
    key.change_completed = None;
    p.done = Some(p.arg.clone());
    p
}

/// The peak resident memory of this process so far, in MiB (`VmHWM`), for benchmarks.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The shared corpus of external histories (`../shared/corpus` beside the repository), found
/// from the package directory cargo gives the test or bench at run time. Not the one compiled
/// in: builds are cached outside the checkout and shared between checkouts, so a binary compiled
/// in another clone can be reused here.
pub fn corpus_dir() -> PathBuf {
    let package =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = package.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(&package);
    root.join("../shared/corpus")
}
