//! Writes busy-key kv histories (see `ordeal_checker::testing::BusyKv`): for each seed, a valid
//! one from a simulated linearizable store and the same run with one stale read.
//!
//! Usage: `cargo run --release -p ordeal-checker --example busy_kv -- DIR [SEEDS] [KEYS] [OPS_PER_KEY] [CLIENTS] [FORMAT]`
//! (defaults: 3 seeds, 2 keys, 5,000 ops per key, 50 clients, `jsonl`; FORMAT `porcupine` writes
//! Porcupine's kv log, `.txt`). Prints one line per file: its path, the expected verdict, and the
//! index of the stale read.

use ordeal_checker::testing::{BusyKv, FileFormat};
use std::path::PathBuf;

const USAGE: &str = "usage: busy_kv DIR [SEEDS] [KEYS] [OPS_PER_KEY] [CLIENTS] [jsonl|porcupine]";

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else { usage("") };
    let num = |i: usize, default: usize| -> usize {
        args.get(i)
            .map_or(Some(default), |a| a.parse().ok())
            .unwrap_or_else(|| usage(&format!("argument {i} must be a number, found {:?}", args[i])))
    };
    let (seeds, keys, ops_per_key, clients) = (num(1, 3), num(2, 2), num(3, 5000), num(4, 50));
    let (format, ext) = match args.get(5).map(String::as_str) {
        None | Some("jsonl") => (FileFormat::Jsonl, "jsonl"),
        Some("porcupine") => (FileFormat::Porcupine, "txt"),
        Some(other) => usage(&format!("FORMAT must be jsonl or porcupine, found {other:?}")),
    };
    std::fs::create_dir_all(&dir)?;
    for seed in 1..=seeds as u64 {
        for stale_read in [false, true] {
            let name = format!("busy-kv-s{seed}-{}.{ext}", if stale_read { "stale" } else { "ok" });
            let path = dir.join(name);
            let stale = BusyKv { keys, ops_per_key, clients, seed, stale_read }.write_as(&path, format)?;
            let expected = if stale.is_some() { "invalid" } else { "valid" };
            println!("{}\t{expected}\t{}", path.display(), stale.map_or("-".into(), |i| i.to_string()));
        }
    }
    Ok(())
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("busy_kv: {problem}");
    }
    eprintln!("{USAGE}");
    std::process::exit(254)
}
