//! Report benchmark: `cargo bench -p ordeal-reports --bench report` (or
//! `scripts/bench-report.sh`).
//!
//! Builds a run directory around a generated history of 1,000,000 operations (2,000,000 lines,
//! 1,000 keys, 50 processes, 60 s of status samples from 3 nodes), then times
//! `ordeal_reports::write_all` (the register workload's linearizability checker, results.json,
//! junit.xml, summary.md and report.html) in a child process, which also reports its peak memory. Medians of
//! `ORDEAL_BENCH_RUNS` (default 3).

use ordeal_checker::checker::{Checker, Linearizable};
use ordeal_checker::linear::Options;
use ordeal_history::Test;
use serde_json::json;
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn test(ops: usize) -> Test {
    Test {
        name: "register-generated".into(),
        system: "broker".into(),
        workload: "register".into(),
        nemesis: vec![],
        nemesis_order: "random".into(),
        fault_rounds: None,
        env: "local".into(),
        ssh: None,
        nodes: 3,
        groups: 1,
        concurrency: 50,
        rate: 0.0,
        time_limit_s: 60.0,
        seed: ops as u64,
        op_timeout_ms: 1000,
        nemesis_interval_s: 3.0,
        fault_duration_s: 3.0,
        keys: 1000,
        ops_per_key: 200,
        tick_ms: 10,
        heartbeat_ticks: 5,
        election_ticks: 50,
        bugs: vec![],
        etcd_reads: "linearizable".into(),
        scenario: None,
        upgrade_binary: None,
        spare_nodes: 0,
        snapshot_entries: None,
        phases: Vec::new(),
        broker_binary: "generated".into(),
        broker_version: "generated".into(),
        history_format: 1,
        ordeal_version: env!("CARGO_PKG_VERSION").into(),
        command: "cargo bench -p ordeal-reports --bench report".into(),
        started_at: "2026-11-22T00:00:00Z".into(),
    }
}

fn build_run(dir: &Path, ops: usize) {
    ordeal_checker::testing::write_register_history(&dir.join("history.jsonl"), ops, 1000, 50).expect("history");
    std::fs::write(dir.join("test.json"), serde_json::to_string(&test(ops)).expect("json")).expect("test.json");
    let mut status = std::fs::File::create(dir.join("status.jsonl")).expect("status");
    for i in 0..240u64 {
        let group = |role: &str| json!([{"group": 0, "role": role, "term": 1, "leader_id": 1, "commit_index": i, "applied_index": i}]);
        let line = json!({"time": i * 250_000_000, "nodes": {
            "1": {"up": true, "groups": group("leader")},
            "2": {"up": true, "groups": group("follower")},
            "3": {"up": i % 40 > 4, "groups": group("follower")}}});
        writeln!(status, "{line}").expect("status line");
    }
}

/// The register workload's checker, as `ordeal report` builds it (reports cannot reach the
/// workloads crate).
fn register_checker() -> Vec<Box<dyn Checker>> {
    let opts = Options { timeout: Some(Duration::from_secs(300)), ..Options::default() };
    vec![Box::new(Linearizable::new("linearizability", "kv", |op| Some(Cow::Borrowed(op)), opts))]
}

fn main() {
    if let Ok(dir) = std::env::var("ORDEAL_BENCH_CHILD") {
        let t = Instant::now();
        let r =
            ordeal_reports::write_all(Path::new(&dir), register_checker(), &["write", "cas"]).expect("report written");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!("{}", json!({"ms": ms, "rss_mb": ordeal_checker::testing::peak_rss_mb(), "verdict": r.verdict}));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("ORDEAL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let ops: usize = std::env::var("ORDEAL_BENCH_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    build_run(dir.path(), ops);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    let mut verdict = String::new();
    for _ in 0..runs {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env("ORDEAL_BENCH_CHILD", dir.path())
            .output()
            .expect("child runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("child prints JSON");
        times.push(v["ms"].as_f64().unwrap_or(0.0));
        rss.push(v["rss_mb"].as_f64().unwrap_or(0.0));
        verdict = v["verdict"].as_str().unwrap_or("?").to_owned();
    }
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len()) as f64 / 1e6;
    println!("| report of a generated run | result | floor |\n|---|---|---|");
    println!("| history | {ops} operations, {:.0} MB history.jsonl | |", size("history.jsonl"));
    println!(
        "| `write_all` (checkers, results.json, junit.xml, summary.md, report.html), median of {runs} | **{:.1} s** ({verdict}) | ≤ 15 s |",
        times[times.len() / 2] / 1e3
    );
    println!("| report.html | **{:.1} MB** | ≤ 25 MB |", size("report.html"));
    println!("| peak memory | {:.0} MiB | |", rss[rss.len() / 2]);
}
