//! Checker benchmark: `cargo bench -p ordeal-checker` (or `scripts/bench-checker.sh`).
//!
//! Prints a markdown table of medians over `ORDEAL_BENCH_RUNS` runs (default 5):
//! the corpus's etcd histories one by one and all together, Porcupine's kv `c10` files, and
//! generated cas-register histories over 1,000 keys with 50 processes, end to end (read the JSON
//! Lines file, check), with the peak memory of the process that checked them.

use ordeal_checker::Verdict;
use ordeal_checker::formats;
use ordeal_checker::linear::{Options, check_by_name};
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

fn check_file(path: &Path, model: &str) -> Verdict {
    let (ops, format) = formats::open(path, None).expect("corpus file opens");
    let ops = ops.map(|r| r.expect("corpus file parses"));
    check_by_name(model, &format.default_init(), ops, &Options::default()).expect("checks").verdict
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// In a child process, so that the peak memory is this case's alone.
fn child_check(path: &str) {
    let file = || std::fs::File::open(path).expect("generated history opens");
    let t = Instant::now();
    let events = jsonl::Reader::<_, Value>::new(file()).count();
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let ops = jsonl::Reader::new(file()).map(|r| r.expect("generated history parses"));
    let r = check_by_name("kv", &Value::Null, ops, &Options::default()).expect("checks");
    let total_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "{}",
        json!({"parse_ms": parse_ms, "total_ms": total_ms, "verdict": r.verdict, "rss_mb": ordeal_checker::testing::peak_rss_mb(), "events": events})
    );
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
        let t = median((0..n).map(|_| time_ms(|| verdict = check_file(f, "cas-register"))).collect());
        per_file.push((f.file_name().unwrap().to_string_lossy().into_owned(), t, verdict));
    }
    let total = median(
        (0..n)
            .map(|_| {
                time_ms(|| {
                    etcd.iter().for_each(|f| {
                        check_file(f, "cas-register");
                    })
                })
            })
            .collect(),
    );
    per_file.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("| etcd histories (import + check) | median |\n|---|---|");
    println!("| all {} files together | **{total:.1} ms** |", etcd.len());
    for (name, t, v) in per_file.iter().take(5) {
        println!("| {name} ({v}), one of the slowest | {t:.2} ms |");
    }
    let sum: f64 = per_file.iter().map(|x| x.1).sum();
    println!("| the {} Porcupine files one by one, sum of medians | {sum:.1} ms |", per_file.len());

    println!("\n| Porcupine kv | check (parsed history) | import + check |\n|---|---|---|");
    for name in ["c10-ok.txt", "c10-bad.txt", "c01-ok.txt", "c01-bad.txt"] {
        let path = corpus_dir().join("porcupine/kv").join(name);
        let mut verdict = Verdict::Valid;
        let total = median((0..n).map(|_| time_ms(|| verdict = check_file(&path, "kv"))).collect());
        let (history, _) = formats::import(&path, None).expect("corpus file imports");
        let check = median(
            (0..n)
                .map(|_| {
                    let ops = history.ops().to_vec();
                    time_ms(|| {
                        check_by_name("kv", &json!(""), ops, &Options::default()).expect("checks");
                    })
                })
                .collect(),
        );
        println!("| {name} ({verdict}) | **{check:.3} ms** | {total:.3} ms |");
    }

    println!(
        "\n| generated kv history (1,000 keys, 50 processes) | read only | read + check | peak RSS | verdict |\n|---|---|---|---|---|"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    for ops in [100_000, 1_000_000] {
        let path = dir.path().join(format!("h{ops}.jsonl"));
        ordeal_checker::testing::write_register_history(&path, ops, 1000, 50).expect("history written");
        let mut parse = Vec::new();
        let mut total = Vec::new();
        let mut rss = Vec::new();
        let mut verdict = String::new();
        for _ in 0..n {
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .env("ORDEAL_BENCH_CHILD", &path)
                .output()
                .expect("child runs");
            let v: Value = serde_json::from_slice(&out.stdout).expect("child prints JSON");
            parse.push(v["parse_ms"].as_f64().unwrap_or(0.0));
            total.push(v["total_ms"].as_f64().unwrap_or(0.0));
            rss.push(v["rss_mb"].as_f64().unwrap_or(0.0));
            verdict = v["verdict"].as_str().unwrap_or("?").to_owned();
        }
        println!(
            "| {ops} ops ({} events) | {:.0} ms | **{:.0} ms** | {:.0} MiB | {verdict} |",
            2 * ops,
            median(parse),
            median(total),
            median(rss)
        );
    }
}
