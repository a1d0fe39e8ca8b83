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
