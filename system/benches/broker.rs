//! Broker benchmark: `cargo bench -p ordeal-system --bench broker` (or `scripts/bench-broker.sh`).
//!
//! Three real `ordeal-broker` processes on loopback, fsync on, 256-byte records:
//! one producer (latency), 16 concurrent producers (throughput and latency), and the write gap
//! after `kill -9` of the leader (election timeout 500 ms), repeated. Prints a markdown table.
//!
//! Knobs: `ORDEAL_BENCH_SEQUENTIAL` (produces of the single producer, default 5000),
//! `ORDEAL_BENCH_SECONDS` (of the 16-producer phase, default 10), `ORDEAL_BENCH_KILLS` (default
//! 5), `ORDEAL_BENCH_TICK_MS`, `ORDEAL_BENCH_SYNC=false`, `ORDEAL_BENCH_KEEP=1` (keep the cluster's
//! directory and logs), `ORDEAL_BENCH_DUMP=FILE` (single-producer latencies in µs, in order),
//! `ORDEAL_BENCH_METRICS=1` (print each node's counters).

use ordeal_system::client::{Client, ClientOptions};
use ordeal_system::launch::{ClusterSpec, NodeProcess, find_binary};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Cluster {
    spec: ClusterSpec,
    procs: BTreeMap<u64, NodeProcess>,
    _dir: tempfile::TempDir,
}

/// The leader every node agrees on.
async fn leader(client: &Client, nodes: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut views = Vec::new();
        for id in nodes {
            if let Ok(s) = client.status(*id).await {
                views.push(s.groups[0].leader_id);
            }
        }
        if views.len() == nodes.len() && views[0] != 0 && views.iter().all(|l| *l == views[0]) {
            return views[0];
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("ORDEAL_BENCH_KEEP").is_some())
        .tempdir()
        .expect("temp dir");
    eprintln!("cluster in {}", dir.path().display());
    let binary = find_binary().expect("ordeal-broker is built beside the bench");
    let mut spec = ClusterSpec::local(binary, 3, dir.path()).expect("ports");
    // Election timeout 500 ms (randomized up to 600 ms), heartbeats every 50 ms, 10 ms ticks.
    spec.timing.max_election_ticks = 60;
    // ORDEAL_BENCH_SYNC=false shows what the disk costs (never for the recorded figures).
    spec.sync = std::env::var("ORDEAL_BENCH_SYNC").map_or(true, |v| v != "false");
    if let Ok(tick) = std::env::var("ORDEAL_BENCH_TICK_MS") {
        let tick: u64 = tick.parse().expect("tick ms");
        spec.timing.tick = Duration::from_millis(tick);
        spec.timing.heartbeat_ticks = (50 / tick as usize).max(1);
        spec.timing.election_ticks = 500 / tick as usize;
        spec.timing.max_election_ticks = 600 / tick as usize;
    }
    let procs = spec.nodes.iter().map(|n| (n.id, spec.spawn(n.id).expect("spawn"))).collect();
    let mut cluster = Cluster { spec, procs, _dir: dir };
    let opts = ClientOptions { deadline: Duration::from_secs(10), ..Default::default() };
    let client = Arc::new(Client::new(cluster.spec.peers(), opts));
    let nodes: Vec<u64> = cluster.procs.keys().copied().collect();
    let l = leader(&client, &nodes).await;
    client.prefer(l);
    let value = vec![b'x'; 256];

    // Warm up connections, RocksDB and the allocator.
    for i in 0..500u64 {
        client.produce("warm", 0, b"", &value, Some((1, i))).await.expect("warm-up produce");
    }

    // 1 producer.
    let n = env_usize("ORDEAL_BENCH_SEQUENTIAL", 5000);
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n as u64 {
        let s = Instant::now();
        client.produce("one", 0, b"", &value, Some((2, i))).await.expect("produce");
        lat.push(s.elapsed());
    }
    let rate1 = n as f64 / t.elapsed().as_secs_f64();
    if let Ok(path) = std::env::var("ORDEAL_BENCH_DUMP") {
        let text: Vec<String> = lat.iter().map(|d| format!("{}", d.as_micros())).collect();
        std::fs::write(path, text.join("\n")).expect("dump");
    }
    lat.sort();
    println!("| 3 nodes, fsync on, 256-byte records | result | floor |\n|---|---|---|");
    println!(
        "| 1 producer, {n} produces: p50 / p99 latency | **{:.2} ms / {:.2} ms** ({rate1:.0}/s) | p99 ≤ 5 ms |",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99)
    );

    // 16 producers.
    let secs = env_usize("ORDEAL_BENCH_SECONDS", 10) as u64;
    let stop = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..16u64)
        .map(|p| {
            let client = client.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut seq = 0;
                while Instant::now() < stop {
                    let s = Instant::now();
                    client.produce("many", p as u32 % 4, b"", &value, Some((100 + p, seq))).await.expect("produce");
                    lat.push(s.elapsed());
                    seq += 1;
                }
                lat
            })
        })
        .collect();
    let t = Instant::now();
    let mut lat: Vec<Duration> = Vec::new();
    for task in tasks {
        lat.extend(task.await.expect("producer task"));
    }
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "| 16 producers, {secs} s: acknowledged produces per second, p50 / p99 latency | **{rate:.0}/s, {:.2} ms / {:.2} ms** | ≥ 3,000/s at p99 ≤ 20 ms |",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99)
    );

    if std::env::var_os("ORDEAL_BENCH_METRICS").is_some() {
        for node in &cluster.spec.nodes {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(node.http).await.expect("metrics");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.expect("request");
            let mut body = String::new();
            s.read_to_string(&mut body).await.expect("response");
            for line in body.lines().filter(|l| {
                !l.starts_with('#') && (l.contains("drops") || l.contains("commit_latency") || l.contains("proposals"))
            }) {
                eprintln!("node {}: {line}", node.id);
            }
        }
    }

    // Write gap after kill -9 of the leader.
    let rounds = env_usize("ORDEAL_BENCH_KILLS", 5);
    let mut gaps = Vec::new();
    for round in 0..rounds {
        let l = leader(&client, &nodes).await;
        client.prefer(l);
        let writer = {
            let client = client.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                let end = Instant::now() + Duration::from_secs(6);
                let mut seq = 0;
                while Instant::now() < end {
                    if let Ok(a) = client.produce("gap", 0, b"", &value, Some((1000 + round as u64, seq))).await {
                        acks.push((Instant::now(), a.node));
                    }
                    seq += 1;
                }
                acks
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let killed_at = Instant::now();
        cluster.procs.get_mut(&l).expect("leader process").kill().expect("kill -9");
        let acks = writer.await.expect("writer");
        // The first write a surviving node acknowledged: an ack already on its way from the
        // killed leader says nothing about availability.
        let first = acks.iter().find(|(t, node)| *t > killed_at && *node != l).expect("writes resumed after the kill");
        gaps.push(first.0.duration_since(killed_at));
        let proc = cluster.spec.spawn(l).expect("restart");
        cluster.procs.insert(l, proc);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let shown: Vec<String> = gaps.iter().map(|g| format!("{:.0}", g.as_secs_f64() * 1e3)).collect();
    gaps.sort();
    println!(
        "| write gap after kill -9 of the leader (election timeout 500 ms), median of {rounds} | **{:.0} ms** (each: {} ms) | ≤ 1 s |",
        quantile(&gaps, 0.5),
        shown.join(", ")
    );
}
