//! Checker benchmark: `cargo bench -p ordeal-checker` (or `scripts/bench-checker.sh`).
//!
//! Prints a markdown table of medians over `ORDEAL_BENCH_RUNS` runs (default 5), each case by
//! both methods (the version order with the search as fallback, and the search alone):
//! the corpus's etcd histories one by one and all together, Porcupine's kv files, generated
//! cas-register histories over 1,000 keys with 50 processes, and generated busy-key kv histories
//! (`testing::BusyKv`), end to end (read the JSON Lines file, check) with the peak memory of the
//! process that checked them.

use ordeal_checker::Verdict;
use ordeal_checker::formats;
use ordeal_checker::linear::{Method, Methods, Options, check_by_name};
use ordeal_checker::testing::corpus_dir;
use ordeal_history::jsonl;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn runs() -> usize {
    std::env::var("ORDEAL_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

fn check_file(path: &Path, model: &str, methods: Methods) -> Verdict {
    let (ops, format) = formats::open(path, None).expect("corpus file opens");
    let ops = ops.map(|r| r.expect("corpus file parses"));
    let opts = Options { methods, ..Options::default() };
    check_by_name(model, &format.default_init(), ops, &opts).expect("checks").verdict
}

const METHODS: [(Methods, &str); 2] = [(Methods::Any, "version order"), (Methods::SearchOnly, "search only")];

fn methods_named(name: &str) -> Methods {
    if name == "search only" { Methods::SearchOnly } else { Methods::Any }
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// In a child process, so that the peak memory is this case's alone: `ORDEAL_BENCH_CHILD` names
/// the file, `ORDEAL_BENCH_INIT` the registers' initial value (JSON), `ORDEAL_BENCH_METHODS` the
/// methods, `ORDEAL_BENCH_TIMEOUT_S` a time budget.
fn child_check(path: &str) {
    let file = || std::fs::File::open(path).expect("generated history opens");
    let methods = methods_named(&std::env::var("ORDEAL_BENCH_METHODS").unwrap_or_default());
    let timeout =
        std::env::var("ORDEAL_BENCH_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).map(std::time::Duration::from_secs);
    let t = Instant::now();
    let events = jsonl::Reader::<_, Value>::new(file()).count();
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let ops = jsonl::Reader::new(file()).map(|r| r.expect("generated history parses"));
    let opts = Options { methods, timeout, ..Options::default() };
    let init: Value =
        std::env::var("ORDEAL_BENCH_INIT").ok().and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
    let r = check_by_name("kv", &init, ops, &opts).expect("checks");
    let total_ms = t.elapsed().as_secs_f64() * 1e3;
    let by_order = r.decided_by.iter().filter(|d| d.method == Method::VersionOrder).count();
    println!(
        "{}",
        json!({"parse_ms": parse_ms, "total_ms": total_ms, "verdict": r.verdict, "rss_mb": ordeal_checker::testing::peak_rss_mb(),
               "events": events, "by_order": by_order, "partitions": r.partitions})
    );
}

/// Medians of `n` child runs on `path`: (parse ms, read + check ms, peak MiB, verdict, partitions
/// decided by the version order).
fn child_runs(
    path: &Path,
    init: &str,
    methods: &str,
    n: usize,
    timeout_s: Option<u64>,
) -> (f64, f64, f64, String, String) {
    let (mut parse, mut total, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut verdict, mut by_order) = (String::new(), String::new());
    for _ in 0..n {
        let mut cmd = std::process::Command::new(std::env::current_exe().expect("exe"));
        cmd.env("ORDEAL_BENCH_CHILD", path).env("ORDEAL_BENCH_METHODS", methods).env("ORDEAL_BENCH_INIT", init);
        if let Some(t) = timeout_s {
            cmd.env("ORDEAL_BENCH_TIMEOUT_S", t.to_string());
        }
        let out = cmd.output().expect("child runs");
        let v: Value = serde_json::from_slice(&out.stdout).expect("child prints JSON");
        parse.push(v["parse_ms"].as_f64().unwrap_or(0.0));
        total.push(v["total_ms"].as_f64().unwrap_or(0.0));
        rss.push(v["rss_mb"].as_f64().unwrap_or(0.0));
        verdict = v["verdict"].as_str().unwrap_or("?").to_owned();
        by_order = format!("{}/{}", v["by_order"], v["partitions"]);
    }
    (median(parse), median(total), median(rss), verdict, by_order)
}

fn main() {
    if let Ok(path) = std::env::var("ORDEAL_BENCH_CHILD") {
        child_check(&path);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (nextest probes benches this way)
    }
    let n = runs();
    println!("Checker benchmark, medians of {n} runs (release build).\n");

    // etcd: the 51 Porcupine files and their 51 raw-console twins: 102 files, like Porcupine's set.
    let mut etcd: Vec<PathBuf> = Vec::new();
    for dir in ["porcupine/jepsen", "ahorn-lc/jepsen-raw"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(corpus_dir().join(dir)).expect("corpus").map(|e| e.unwrap().path()).collect();
        files.sort();
        etcd.extend(files);
    }
    let mut per_file: Vec<(String, f64, Verdict)> = Vec::new();
    for f in etcd.iter().filter(|p| p.starts_with(corpus_dir().join("porcupine"))) {
        let mut verdict = Verdict::Valid;
        let t = median((0..n).map(|_| time_ms(|| verdict = check_file(f, "cas-register", Methods::Any))).collect());
        per_file.push((f.file_name().unwrap().to_string_lossy().into_owned(), t, verdict));
    }
    println!("| etcd histories (import + check) | version order | search only |\n|---|---|---|");
    let all = METHODS.map(|(m, _)| {
        median(
            (0..n)
                .map(|_| {
                    time_ms(|| {
                        etcd.iter().for_each(|f| {
                            check_file(f, "cas-register", m);
                        })
                    })
                })
                .collect(),
        )
    });
    println!("| all {} files together | **{:.1} ms** | {:.1} ms |", etcd.len(), all[0], all[1]);
    per_file.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, t, v) in per_file.iter().take(3) {
        println!("| {name} ({v}), one of the slowest | {t:.2} ms | |");
    }

    println!("\n| Porcupine kv | method | check (parsed history) | import + check |\n|---|---|---|---|");
    for name in ["c10-ok.txt", "c10-bad.txt", "c01-ok.txt", "c01-bad.txt"] {
        let path = corpus_dir().join("porcupine/kv").join(name);
        let (history, _) = formats::import(&path, None).expect("corpus file imports");
        for (m, label) in METHODS {
            let mut verdict = Verdict::Valid;
            let total = median((0..n).map(|_| time_ms(|| verdict = check_file(&path, "kv", m))).collect());
            let opts = Options { methods: m, ..Options::default() };
            let check = median(
                (0..n)
                    .map(|_| {
                        let ops = history.ops().to_vec();
                        time_ms(|| drop(check_by_name("kv", &json!(""), ops, &opts).expect("checks")))
                    })
                    .collect(),
            );
            println!("| {name} ({verdict}) | {label} | **{check:.3} ms** | {total:.3} ms |");
        }
    }

    println!(
        "\n| generated history (1,000 keys, 50 processes) | method | read only | read + check | peak RSS | verdict |\n|---|---|---|---|---|---|"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    for ops in [100_000, 1_000_000] {
        let path = dir.path().join(format!("h{ops}.jsonl"));
        ordeal_checker::testing::write_register_history(&path, ops, 1000, 50).expect("history written");
        for (_, label) in METHODS {
            let (parse, total, rss, verdict, _) = child_runs(&path, "null", label, n, None);
            println!(
                "| {ops} ops ({} events) | {label} | {parse:.0} ms | **{total:.0} ms** | {rss:.0} MiB | {verdict} |",
                2 * ops
            );
        }
    }

    println!(
        "\n| busy-key kv history (2 keys x 5,000 ops, 50 clients) | method | read only | read + check | peak RSS | verdict | by version order |\n|---|---|---|---|---|---|---|"
    );
    for seed in 1..=3 {
        for stale_read in [false, true] {
            let path = dir.path().join(format!("busy-{seed}-{stale_read}.jsonl"));
            let busy = ordeal_checker::testing::BusyKv { keys: 2, ops_per_key: 5000, clients: 50, seed, stale_read };
            let stale = busy.write(&path).expect("history written");
            let expected = if stale.is_some() { "invalid" } else { "valid" };
            let (parse, total, rss, verdict, by_order) = child_runs(&path, "\"\"", "version order", n, None);
            println!(
                "| seed {seed}, {} (expected {expected}) | version order | {parse:.0} ms | **{total:.0} ms** | {rss:.0} MiB | {verdict} | {by_order} |",
                if stale_read { "one stale read" } else { "valid" }
            );
            if seed == 1 {
                // The search alone, for comparison: bounded by a 60 s budget and the default 1 GiB.
                let (parse, total, rss, verdict, _) = child_runs(&path, "\"\"", "search only", 1, Some(60));
                println!(
                    "| seed 1, {} | search only | {parse:.0} ms | {total:.0} ms | {rss:.0} MiB | {verdict} | |",
                    if stale_read { "one stale read" } else { "valid" }
                );
            }
        }
    }
}
