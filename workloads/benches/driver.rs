//! Driver benchmark: `cargo bench -p ordeal-workloads --bench driver`.
//!
//! Runs the interpreter with a client that acknowledges everything at once and no cluster, so
//! what is measured is the harness itself: generator, rate limiter (off), client tasks, and the
//! recorder writing every op to `history.jsonl`, flushed. Medians of `ORDEAL_BENCH_RUNS` (5).

use async_trait::async_trait;
use ordeal_faults::{Compose, NodeView, System, SystemError};
use ordeal_workloads::client::NoopClients;
use ordeal_workloads::phases::PlanPhase;
use ordeal_workloads::recorder::Recorder;
use ordeal_workloads::runner::{self, Plan};
use ordeal_workloads::workload;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No nodes at all.
struct NoCluster;

#[async_trait]
impl System for NoCluster {
    fn name(&self) -> &'static str {
        "none"
    }
    fn nodes(&self) -> Vec<u64> {
        Vec::new()
    }
    fn addresses(&self) -> BTreeMap<u64, String> {
        BTreeMap::new()
    }
    fn log_file(&self, _node: u64) -> Option<&Path> {
        None
    }
    async fn setup(&self) -> Result<(), SystemError> {
        Ok(())
    }
    async fn statuses(&self, _timeout: Duration) -> BTreeMap<u64, NodeView> {
        BTreeMap::new()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("ORDEAL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let secs = 3;
    let mut rates = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    for concurrency in [10, 50] {
        for _ in 0..runs {
            let path = dir.path().join("history.jsonl");
            let recorder = Arc::new(Recorder::create(&path).expect("history file"));
            let plan =
                Plan { concurrency, phases: vec![PlanPhase::main(Duration::from_secs(secs), 0.0)], ..Plan::default() };
            let clients = Arc::new(NoopClients);
            let (_tx, interrupt) = tokio::sync::watch::channel(false);
            let t = Instant::now();
            let s = runner::run(
                &plan,
                Arc::new(NoCluster),
                Box::new(Compose(Vec::new())),
                workload::by_name("noop").expect("the noop workload").generator(1, 1),
                clients,
                recorder.clone(),
                interrupt,
            )
            .await;
            let events = recorder.finish().expect("history written");
            let elapsed = t.elapsed().as_secs_f64();
            let lines = std::fs::read_to_string(&path).expect("history").lines().count() as u64;
            assert_eq!(lines, events, "every op is on disk");
            rates.push((concurrency, (s.counts.ok as f64) / elapsed, events as f64 / elapsed));
        }
    }
    println!(
        "| no-op client, {secs} s, history.jsonl flushed per op | ops/s (invoke + completion pairs) | history lines/s |\n|---|---|---|"
    );
    for concurrency in [10, 50] {
        let mut ops: Vec<f64> = rates.iter().filter(|r| r.0 == concurrency).map(|r| r.1).collect();
        let mut lines: Vec<f64> = rates.iter().filter(|r| r.0 == concurrency).map(|r| r.2).collect();
        ops.sort_by(f64::total_cmp);
        lines.sort_by(f64::total_cmp);
        println!(
            "| {concurrency} client processes, median of {runs} | **{:.0}** | {:.0} |",
            ops[ops.len() / 2],
            lines[lines.len() / 2]
        );
    }
}
