//! Broker benchmark: `cargo bench -p ordeal-system --bench broker` (or `scripts/bench-broker.sh`).
//!
//! Three real `ordeal-broker` processes on loopback, fsync on, 256-byte records:
//! one producer (latency), 16 and 64 concurrent producers (throughput and latency), and the write gap
//! after `kill -9` of the leader (election timeout 500 ms), repeated. When an `etcd` binary is
//! there, a three-member etcd cluster runs the same single- and 16-client phases in the same run
//! (alternating round by round with the broker), since this machine's disk is too noisy for
//! figures taken at different times to be compared. Prints a markdown table.
//!
//! Knobs: `ORDEAL_BENCH_ROUNDS` (single-producer rounds, default 5),
//! `ORDEAL_BENCH_SEQUENTIAL` (produces per round, default 3000), `ORDEAL_BENCH_ETCD` (etcd binary),
//! `ORDEAL_BENCH_SECONDS` (of the 16-producer phase, default 10), `ORDEAL_BENCH_KILLS` (default
//! 5), `ORDEAL_BENCH_TICK_MS`, `ORDEAL_BENCH_SYNC=false`, `ORDEAL_BENCH_KEEP=1` (keep the cluster's
//! directory and logs), `ORDEAL_BENCH_DUMP=FILE` (the broker's single-producer latencies in µs, in order),
//! `ORDEAL_BENCH_METRICS=1` (print each node's counters), `ORDEAL_BENCH_COALESCE=off` (the shared
//! client sends every produce on its own, as before release 3: the "before" of the batching) or
//! `=N` (up to N requests per raft group in flight, instead of the default).
//!
//! The 16- and 64-producer phases share one `Client`, whose concurrent produces to one raft group
//! go as one batch ([`ordeal_system::client::Coalesce`]); a third phase runs 16 producers with a
//! `Client` each, across which nothing can be coalesced.

// Each benchmark uses part of the etcd helpers.
#[allow(dead_code)]
mod etcd;

use ordeal_system::client::{Client, ClientOptions, Coalesce};
use ordeal_system::launch::{ClusterSpec, NodeProcess, find_binary};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// One run's latencies, sorted.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut lat: Vec<Duration>) -> Latencies {
        lat.sort();
        Latencies(lat)
    }

    fn q(&self, q: f64) -> f64 {
        quantile(&self.0, q)
    }

    /// How many took longer than [`SLOW`], and how many of those a second.
    fn slow(&self) -> String {
        let n = self.0.iter().filter(|d| **d > SLOW).count();
        let secs: f64 = self.0.iter().map(Duration::as_secs_f64).sum();
        format!("{n} over {} ms ({:.1}/s)", SLOW.as_millis(), n as f64 / secs)
    }

    /// "p50 / p99 of all rounds together (each round's p99; the slow ones)".
    fn rounds(rounds: &[Latencies]) -> String {
        if rounds.is_empty() {
            return "–".into();
        }
        let each: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.q(0.99))).collect();
        let all = Latencies::new(rounds.iter().flat_map(|r| r.0.iter().copied()).collect());
        format!("{:.2} ms / {:.2} ms (rounds: {}; {})", all.q(0.5), all.q(0.99), each.join(", "), all.slow())
    }
}

/// Throughput and latency of a closed-loop phase.
struct Load {
    rate: f64,
    lat: Latencies,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}/s, {:.2} ms / {:.2} ms", self.rate, self.lat.q(0.5), self.lat.q(0.99))
    }
}

/// `n` operations one after another.
async fn sequential(n: usize, mut op: impl AsyncFnMut(u64)) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let s = Instant::now();
        op(i).await;
        lat.push(s.elapsed());
    }
    lat
}

/// `producers` producers, each issuing `op(producer, seq)` back to back for `secs` seconds.
async fn concurrent<F, Fut>(producers: u64, secs: u64, op: F) -> Load
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut seq = 0;
                while Instant::now() < stop {
                    let s = Instant::now();
                    op(p, seq).await;
                    lat.push(s.elapsed());
                    seq += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.expect("producer task"));
    }
    Load { rate: lat.len() as f64 / t.elapsed().as_secs_f64(), lat: Latencies::new(lat) }
}

/// `producers` producers with a `Client` each (connected and warmed up before the clock starts).
async fn separate_clients(
    cluster: &Cluster,
    opts: &ClientOptions,
    leader: u64,
    producers: u64,
    secs: u64,
    value: &Arc<Vec<u8>>,
) -> Load {
    let mut clients = Vec::new();
    for p in 0..producers {
        let c = Client::new(cluster.spec.peers(), opts.clone());
        c.prefer(leader);
        c.produce("alone", p as u32 % 4, b"", value, Some((5000 + p, 0))).await.expect("warm-up produce");
        clients.push(Arc::new(c));
    }
    let (clients, value) = (Arc::new(clients), value.clone());
    concurrent(producers, secs, move |p, seq| {
        let (clients, value) = (clients.clone(), value.clone());
        async move {
            let producer = Some((5000 + p, seq + 1));
            clients[p as usize].produce("alone", p as u32 % 4, b"", &value, producer).await.expect("produce");
        }
    })
    .await
}

/// Requests slower than this count as having met one of the disk's stalls.
const SLOW: Duration = Duration::from_millis(3);

/// The disk alone, for comparison in the same run: three threads (standing for the three nodes'
/// raft logs), each appending 300 bytes and fdatasyncing `rate` times a second for `secs`.
fn disk_probe(dir: &std::path::Path, rate: f64, secs: u64) -> std::io::Result<Latencies> {
    use std::io::Write;
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let path = dir.join(format!("disk-probe-{i}"));
            std::thread::spawn(move || -> std::io::Result<Vec<Duration>> {
                let mut f = std::fs::File::create(&path)?;
                let n = (rate * secs as f64) as u32;
                let mut lat = Vec::with_capacity(n as usize);
                let start = Instant::now();
                for k in 0..n {
                    let due = start + Duration::from_secs_f64(f64::from(k) / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let s = Instant::now();
                    f.write_all(&[b'x'; 300])?;
                    f.sync_data()?;
                    lat.push(s.elapsed());
                }
                std::fs::remove_file(&path)?;
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.join().expect("a probe thread panicked")?);
    }
    Ok(Latencies::new(all))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Cluster {
    spec: ClusterSpec,
    procs: BTreeMap<u64, NodeProcess>,
    dir: tempfile::TempDir,
}

/// The leader every node agrees on.
/// Waits until every node runs group 0 at this build's cluster version (batches are on).
async fn cluster_version(client: &Client, nodes: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in nodes {
        while client.status(*id).await.map_or(true, |s| s.groups[0].cluster_version != ordeal_system::version::RELEASE)
        {
            assert!(Instant::now() < deadline, "the cluster version did not reach this release's");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

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
    // On Ctrl-C the benchmark's future is dropped, and with it the clusters: their processes are
    // killed and their directories removed.
    tokio::select! {
        _ = bench() => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
    }
}

async fn bench() {
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
    let mut cluster = Cluster { spec, procs, dir };
    let coalesce = match std::env::var("ORDEAL_BENCH_COALESCE").as_deref() {
        Ok("off") => Coalesce::Off,
        Ok(n) => Coalesce::WhileInFlight(n.parse().expect("ORDEAL_BENCH_COALESCE: off or a number")),
        Err(_) => ClientOptions::default().coalesce,
    };
    let opts = ClientOptions { deadline: Duration::from_secs(10), coalesce, ..Default::default() };
    let client = Arc::new(Client::new(cluster.spec.peers(), opts.clone()));
    let nodes: Vec<u64> = cluster.procs.keys().copied().collect();
    let l = leader(&client, &nodes).await;
    client.prefer(l);
    cluster_version(&client, &nodes).await;
    let value = Arc::new(vec![b'x'; 256]);

    // Warm up connections, RocksDB and the allocator.
    for i in 0..500u64 {
        client.produce("warm", 0, b"", &value, Some((1, i))).await.expect("warm-up produce");
    }
    let etcd = match etcd::find_binary() {
        Some(binary) => {
            let etcd = etcd::Etcd::start(&binary).expect("start etcd");
            let mut c = etcd.leader().await.expect("etcd leader");
            for i in 0..500u64 {
                c.put(format!("warm/{i}").into_bytes(), value.to_vec()).await.expect("warm-up put");
            }
            Some((etcd, c))
        }
        None => {
            eprintln!("no etcd binary (ORDEAL_BENCH_ETCD or etcd on the PATH): the reference column stays empty");
            None
        }
    };

    // 1 producer, alternating with etcd's one client round by round so that both see the same
    // machine.
    let rounds = env_usize("ORDEAL_BENCH_ROUNDS", 5).max(1);
    let n = env_usize("ORDEAL_BENCH_SEQUENTIAL", 3000).max(1);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut dump = Vec::new();
    for round in 0..rounds as u64 {
        let lat = sequential(n, async |i| {
            client.produce("one", 0, b"", &value, Some((2 + round, i))).await.expect("produce");
        })
        .await;
        dump.extend(lat.iter().map(|d| d.as_micros().to_string()));
        ours.push(Latencies::new(lat));
        if let Some((_, c)) = &etcd {
            let mut c = c.clone();
            let lat = sequential(n, async |i| {
                c.put(format!("one/{round}/{i}").into_bytes(), value.to_vec()).await.expect("etcd put");
            })
            .await;
            theirs.push(Latencies::new(lat));
        }
    }
    if let Ok(path) = std::env::var("ORDEAL_BENCH_DUMP") {
        std::fs::write(path, dump.join("\n")).expect("dump");
    }
    println!("| 3 nodes, fsync on, 256-byte records | ordeal-broker | etcd, same run | floor |\n|---|---|---|---|");
    println!(
        "| 1 producer, {rounds} rounds of {n}: p50 / p99 latency of all produces (each round's p99) | **{}** | {} | p99 ≤ 5 ms |",
        Latencies::rounds(&ours),
        Latencies::rounds(&theirs)
    );

    // The disk alone, at the rate each node just fsynced at.
    let rate = (n * rounds) as f64 / ours.iter().flat_map(|r| r.0.iter()).map(Duration::as_secs_f64).sum::<f64>();
    let probe_dir = cluster.dir.path().to_path_buf();
    let probe = tokio::task::spawn_blocking(move || disk_probe(&probe_dir, rate, 5))
        .await
        .expect("disk probe")
        .expect("disk probe I/O");
    println!(
        "| the disk alone, same run: 3 threads, each appending 300 bytes with fdatasync {rate:.0} times a second for 5 s: p50 / p99 | {:.2} ms / {:.2} ms ({}) | | |",
        probe.q(0.5),
        probe.q(0.99),
        probe.slow()
    );

    // 16 and 64 producers, the broker then etcd at each count.
    let secs = env_usize("ORDEAL_BENCH_SECONDS", 10) as u64;
    for producers in [16u64, 64] {
        let mut theirs_rate = f64::NAN;
        let ours = {
            let (client, value) = (client.clone(), value.clone());
            concurrent(producers, secs, move |p, seq| {
                let (client, value) = (client.clone(), value.clone());
                async move {
                    let producer = Some((100 + producers * 100 + p, seq));
                    client.produce("many", p as u32 % 4, b"", &value, producer).await.expect("produce");
                }
            })
            .await
        };
        let theirs = match &etcd {
            Some((_, c)) => {
                let (c, value) = (c.clone(), value.clone());
                let r = concurrent(producers, secs, move |p, seq| {
                    let (mut c, value) = (c.clone(), value.clone());
                    async move {
                        c.put(format!("many{producers}/{p}/{seq}").into_bytes(), value.to_vec())
                            .await
                            .expect("etcd put")
                    }
                })
                .await;
                let ratio = ours.rate / r.rate;
                theirs_rate = r.rate;
                format!("{r} (broker / etcd: {ratio:.2}×)")
            }
            None => "–".into(),
        };
        println!(
            "| {producers} producers, {secs} s, one shared client ({coalesce:?}): acknowledged writes per second, p50 / p99 latency | **{ours}** | {theirs} | ≥ 3,000/s at p99 ≤ 20 ms |"
        );
        if producers == 16 {
            let (alone, etcd_rate) = (separate_clients(&cluster, &opts, l, producers, secs, &value).await, theirs_rate);
            println!(
                "| {producers} producers, {secs} s, a client each (nothing to coalesce across clients): writes per second, p50 / p99 | **{alone}** | (broker / etcd's {producers}-producer rate above: {:.2}×) | |",
                alone.rate / etcd_rate
            );
        }
    }
    drop(etcd);

    if std::env::var_os("ORDEAL_BENCH_METRICS").is_some() {
        for node in &cluster.spec.nodes {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(node.http).await.expect("metrics");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.expect("request");
            let mut body = String::new();
            s.read_to_string(&mut body).await.expect("response");
            for line in body.lines().filter(|l| {
                !l.starts_with('#')
                    && (l.contains("drops")
                        || l.contains("commit_latency")
                        || l.contains("proposals")
                        || l.contains("batch"))
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
    if gaps.is_empty() {
        return;
    }
    let shown: Vec<String> = gaps.iter().map(|g| format!("{:.0}", g.as_secs_f64() * 1e3)).collect();
    gaps.sort();
    println!(
        "| write gap after kill -9 of the leader (election timeout 500 ms), median of {rounds} | **{:.0} ms** (each: {} ms) | – | ≤ 1 s |",
        quantile(&gaps, 0.5),
        shown.join(", ")
    );
}
