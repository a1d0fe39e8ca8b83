//! The memory budget is measured and honest: a search that outgrows it ends `unknown` with the
//! measured figure, and one the operating system refuses memory (`ulimit -v`) ends `unknown`
//! too, never with an abort. Each case runs in a child process (this test binary again), so that
//! its memory is its own.

use ordeal_checker::Verdict;
use ordeal_checker::linear::{Options, check_history};
use ordeal_history::{History, Op, OpType, Process};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::process::Command;

/// A register history the version order cannot decide (values repeat) and the search cannot
/// finish: many processes, writes of a few values, and many crashed writes that stay pending.
fn hard_history() -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut h = History::new();
    let processes = 40u64;
    let mut next = processes;
    let mut ids: Vec<u64> = (0..processes).collect();
    for round in 0..60u64 {
        for (s, id) in ids.iter_mut().enumerate() {
            let p = Process::Client(*id);
            let t = round * 1000 + s as u64;
            if rng.random_bool(0.5) {
                let v = rng.random_range(0..4);
                h.push(Op::invoke(p, "write", json!(v)).at(t));
                let done = if rng.random_bool(0.3) { OpType::Info } else { OpType::Ok };
                h.push(Op::invoke(p, "write", json!(v)).completed(done).at(t + 500));
                if done == OpType::Info {
                    *id = next;
                    next += 1;
                }
            } else {
                h.push(Op::invoke(p, "read", Value::Null).at(t));
                h.push(Op::invoke(p, "read", json!(rng.random_range(0..4))).completed(OpType::Ok).at(t + 500));
            }
        }
    }
    h
}

/// In the child: checks the hard history with `ORDEAL_BUDGET_MB` and prints the report.
#[test]
fn child() {
    let Some(mb) = std::env::var("ORDEAL_BUDGET_MB").ok().and_then(|v| v.parse::<usize>().ok()) else { return };
    let opts = Options { memory_limit: mb << 20, ..Options::default() };
    let report = check_history("register", &Value::Null, &hard_history(), &opts).expect("checks");
    println!("VERDICT {} {}", report.verdict, report.summary());
    println!("PEAK_KB {}", peak_kb());
}

fn peak_kb() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap_or("0");
    line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

/// Runs [`child`] with a budget of `mb` MiB, under `ulimit -v` of `ulimit_kb` when given.
fn run_child(mb: usize, ulimit_kb: Option<usize>) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().expect("test binary");
    let limit = ulimit_kb.map_or_else(String::new, |kb| format!("ulimit -v {kb} && "));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" --exact child --nocapture --test-threads 1"))
        .arg(exe)
        .env("ORDEAL_BUDGET_MB", mb.to_string())
        .output()
        .expect("child runs");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_search_over_its_measured_budget_answers_unknown_with_the_figure() {
    let (status, out) = run_child(300, None);
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("VERDICT {}", Verdict::Unknown)), "{out}");
    assert!(out.contains("resident memory"), "{out}");
    let peak_kb: usize = out.lines().find_map(|l| l.strip_prefix("PEAK_KB ")).and_then(|v| v.parse().ok()).unwrap_or(0);
    // The budget bounds the process, not an estimate of the memo: a little slack for one check
    // interval of the search.
    assert!(peak_kb < 400 << 10, "peak {peak_kb} kB over a 300 MiB budget\n{out}");
}

#[test]
fn a_search_refused_memory_by_ulimit_answers_unknown_not_abort() {
    // The budget alone would allow 64 GiB; the address space allows 1 GiB.
    let (status, out) = run_child(64 << 10, Some(1 << 20));
    assert!(status.success(), "exit {status:?} (an abort is 134)\n{out}");
    assert!(out.contains(&format!("VERDICT {}", Verdict::Unknown)), "{out}");
}
