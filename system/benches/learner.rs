//! Learner catch-up benchmark: `cargo bench -p ordeal-system --bench learner`.
//!
//! A three-node cluster holds `ORDEAL_BENCH_STATE_MB` (default 200) MB of 64 KB records in one
//! partition and takes `ORDEAL_BENCH_RATE` (default 1,000) writes of 256 bytes a second, paced
//! (open loop). A fourth node, started with `--join` before the fill, waits to be added; after
//! `ORDEAL_BENCH_BEFORE_S` (default 5) seconds of load it is added as a learner (the join), and
//! the benchmark then asks for its promotion every 20 ms under the strict gate (its applied index
//! at least the leader's commit index at the join) until it is granted.
//!
//! Reported: the time from the join to a granted promotion; the snapshot's size and rate as the
//! learner received it (and, for the broker, with the time its leader took to make the file
//! added); the load's p50/p99 before the join and between the join and the promotion, per round
//! and with every round's writes pooled; and how often the load alone fails the p99 floor: of
//! the windows before the join as long as the catch-up, those whose p99 is over 2× the p99 before.
//! `ORDEAL_BENCH_RUNS` rounds (default 1), each the broker then etcd; every figure is the median
//! over the rounds, followed by each round's. etcd 3.4 runs the same schedule in the same run
//! (`member add --learner`, then `member promote` until granted; etcd promotes once the learner's
//! match index is within 10% of the leader's), started with `--snapshot-count=1000` so that its
//! log is compacted and the learner, too, catches up from a snapshot. etcd's learner can only
//! start after `member add`, so its process's start falls inside its window.
//!
//! After the fill, `ORDEAL_BENCH_BURST` (default 10,000) small writes lengthen the log past the
//! 5,000 entries etcd keeps behind every snapshot, so that its learner needs a snapshot whatever
//! the timing. The benchmark says per round whether each learner received a snapshot (etcd's
//! learner serves its metrics only once it has applied the snapshot, after etcd granted the
//! promotion: the benchmark waits for them) and fails, instead of printing a rate, when one did
//! not.
//!
//! Between the systems' turns, each round also measures the machine's one-copy ceiling: the
//! state's size in incompressible bytes through one loopback socket into a synced file beside the
//! nodes', with nothing else running, to set the rates (and 2× etcd's) against.
//!
//! `ORDEAL_BENCH_LEARNER_DIR=D` puts the broker's learner's data directory under `D` (another
//! file system: a learner has its own disk in a deployment) instead of beside the voters'.
//!
//! `ORDEAL_BENCH_PEER_TLS=off` runs the broker's peers without TLS (to measure its cost).
//!
//! `ORDEAL_BENCH_TRACE=1` prints every write of the load that took longer than
//! `ORDEAL_BENCH_TRACE_MS` (default 20) ms, with its wall-clock time, to set beside the nodes'
//! logs (kept with `ORDEAL_BENCH_KEEP=1`).
//!
//! `ORDEAL_BENCH_PAYLOAD=random` fills the records with pseudo-random bytes instead of one
//! repeated byte, `ORDEAL_BENCH_PAYLOAD=text` with JSON log lines: the broker's snapshot files are
//! compressed, etcd's are not, so the default payload flatters the broker, the random one shows
//! the incompressible case, and text one in between.

#[allow(dead_code)]
mod etcd;

use ordeal_system::client::{Client, ClientOptions};
use ordeal_system::launch::{ClusterSpec, NodeProcess, NodeSpec, find_binary, free_ports};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const RECORD_BYTES: usize = 64 * 1024;
const LOAD_BYTES: usize = 256;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One paced write: when it started, how long it took, whether it succeeded.
type Sample = (Instant, Duration, bool);

/// Starts `rate` calls of `op` a second, each on its own task, until `stop`.
fn paced<F, Fut>(rate: u64, stop: Arc<AtomicBool>, op: F) -> tokio::task::JoinHandle<Vec<Sample>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let (tx, call) = (tx.clone(), op(i));
            tokio::spawn(async move {
                let started = Instant::now();
                let ok = call.await;
                let _ = tx.send((started, started.elapsed(), ok));
            });
            i += 1;
        }
        drop(tx);
        let mut out = Vec::new();
        while let Some(s) = rx.recv().await {
            out.push(s);
        }
        out
    })
}

/// The load's writes started in one window: the latencies of those that succeeded (sorted), and
/// how many failed.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: usize,
}

impl Window {
    /// The writes started in `[from, to)`.
    fn of(samples: &[Sample], from: Instant, to: Instant) -> Window {
        let within = |t: &Instant| *t >= from && *t < to;
        let mut latencies: Vec<Duration> = samples.iter().filter(|(t, _, ok)| *ok && within(t)).map(|s| s.1).collect();
        latencies.sort();
        Window { latencies, failed: samples.iter().filter(|(t, _, ok)| !*ok && within(t)).count() }
    }

    /// Every round's window as one.
    fn pooled<'a>(windows: impl Iterator<Item = &'a Window>) -> Window {
        let mut all = Window::default();
        for w in windows {
            all.latencies.extend(&w.latencies);
            all.failed += w.failed;
        }
        all.latencies.sort();
        all
    }

    /// The writes started in `[from, to)`, cut into consecutive windows of `len` (the last, shorter
    /// one left out).
    fn slices(samples: &[Sample], from: Instant, to: Instant, len: Duration) -> Vec<Window> {
        if len.is_zero() {
            return Vec::new();
        }
        let starts = std::iter::successors(Some(from), |t| Some(*t + len)).take_while(|t| *t + len <= to);
        starts.map(|t| Window::of(samples, t, t + len)).collect()
    }

    /// The `q` quantile in ms (nearest rank); NaN for an empty window.
    fn ms(&self, q: f64) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1e3
    }
}

/// With `ORDEAL_BENCH_TRACE` set: every write slower than `ORDEAL_BENCH_TRACE_MS` from 1 s before
/// the join to the promotion, with its start as UTC time of day and relative to the join.
fn trace(system: &str, samples: &[Sample], joined: Instant, done: Instant) {
    if std::env::var_os("ORDEAL_BENCH_TRACE").is_none() {
        return;
    }
    let slow = Duration::from_millis(env_u64("ORDEAL_BENCH_TRACE_MS", 20));
    let wall = std::time::SystemTime::now();
    let now = Instant::now();
    eprintln!("{system}: join at {}, promotion {:.3} s later", utc(wall, now, joined), (done - joined).as_secs_f64());
    for (t, d, ok) in samples.iter().filter(|(t, d, _)| *t + Duration::from_secs(1) >= joined && *t < done && *d > slow)
    {
        let rel =
            t.saturating_duration_since(joined).as_secs_f64() - joined.saturating_duration_since(*t).as_secs_f64();
        eprintln!(
            "  {system} slow write at {} (join {rel:+.3} s): {:.1} ms{}",
            utc(wall, now, *t),
            d.as_secs_f64() * 1e3,
            if *ok { "" } else { " FAILED" }
        );
    }
}

/// `at` as UTC time of day, given that `now` is `wall`.
fn utc(wall: std::time::SystemTime, now: Instant, at: Instant) -> String {
    let t = wall - (now - at);
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()) % 86_400_000;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// GET `path` from `addr` (HTTP/1.0, 5 s timeout).
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.ok().flatten().unwrap_or_default()
}

/// `addr`'s metrics page once `ready` holds for it, asked every 20 ms for at most `timeout`.
async fn metrics_when(addr: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let m = http_get(addr, "/metrics").await;
        if ready(&m) {
            return Some(m);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of every sample of metric `name` (all label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A 64 KB record, different for every `i` unless it is the default's one repeated byte:
/// `ORDEAL_BENCH_PAYLOAD=random` fills it with pseudo-random bytes that no compressor shrinks,
/// `text` with JSON log lines drawn from a small vocabulary (LZ4 shrinks them a few times, as it
/// does real logs).
fn record(i: u64) -> Vec<u8> {
    let mut rng = Xorshift(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    match std::env::var("ORDEAL_BENCH_PAYLOAD").as_deref() {
        Ok("random") => (0..RECORD_BYTES / 8).flat_map(|_| rng.next().to_le_bytes()).collect(),
        Ok("text") => log_lines(&mut rng),
        _ => vec![b'x'; RECORD_BYTES],
    }
}

/// xorshift64*: reproducible bytes for the records, without a dependency.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// One of `choices`.
    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

/// `RECORD_BYTES` of JSON log lines (the last one cut short).
fn log_lines(rng: &mut Xorshift) -> Vec<u8> {
    const LEVELS: [&str; 4] = ["debug", "info", "info", "warn"];
    const SERVICES: [&str; 8] = ["checkout", "billing", "search", "auth", "cart", "ledger", "mailer", "gateway"];
    const WORDS: [&str; 32] = [
        "order",
        "accepted",
        "rejected",
        "for",
        "customer",
        "after",
        "retry",
        "payment",
        "timeout",
        "cache",
        "miss",
        "hit",
        "session",
        "renewed",
        "expired",
        "token",
        "invoice",
        "sent",
        "queued",
        "shard",
        "rebalanced",
        "request",
        "served",
        "in",
        "slow",
        "upstream",
        "connection",
        "reset",
        "by",
        "peer",
        "item",
        "reserved",
    ];
    let mut out = Vec::with_capacity(RECORD_BYTES + 256);
    while out.len() < RECORD_BYTES {
        let (ts, user, ms) = (1_764_600_000_000 + rng.next() % 86_400_000, rng.next() % 100_000, rng.next() % 2_000);
        let (level, service) = (rng.pick(&LEVELS), rng.pick(&SERVICES));
        let words: Vec<&str> = (0..4 + rng.next() % 8).map(|_| rng.pick(&WORDS)).collect();
        let line = format!(
            "{{\"ts\":{ts},\"level\":\"{level}\",\"service\":\"{service}\",\"user\":{user},\"took_ms\":{ms},\"msg\":\"{}\"}}\n",
            words.join(" ")
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(RECORD_BYTES);
    out
}

/// A round's windows of the load: before the join (from 1 s after the load started, once it runs
/// steadily), from the join to the promotion, and the time before cut into windows as long as
/// the catch-up.
fn windows(samples: &[Sample], load_started: Instant, joined: Instant, done: Instant) -> (Window, Window, Vec<Window>) {
    let steady = load_started + Duration::from_secs(1);
    (
        Window::of(samples, steady, joined),
        Window::of(samples, joined, done),
        Window::slices(samples, steady, joined, done - joined),
    )
}

/// What one system did.
struct Outcome {
    promotable: Duration,
    /// Snapshots the learner received: 0 means it caught up from the log, and its rate is none.
    snapshots: f64,
    snapshot_bytes: f64,
    snapshot_secs: f64,
    /// The broker's: the compressed file's bytes, and the time from its leader starting to make
    /// it to the learner having it checked (the file streams while it is made).
    snapshot_file: Option<(f64, f64)>,
    before: Window,
    during: Window,
    /// The time before the join cut into windows as long as the catch-up: the load alone, at the
    /// catch-up's own window length.
    before_slices: Vec<Window>,
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::select! {
        _ = bench() => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
    }
}

async fn bench() {
    let state_mb = env_u64("ORDEAL_BENCH_STATE_MB", 200);
    let rate = env_u64("ORDEAL_BENCH_RATE", 1000);
    let before = Duration::from_secs(env_u64("ORDEAL_BENCH_BEFORE_S", 5));
    let runs = env_u64("ORDEAL_BENCH_RUNS", 1).max(1);
    let etcd_binary = etcd::find_binary();
    let (mut ours, mut theirs, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    // Round by round, so that both systems see the same phases of the machine's load.
    for run in 1..=runs {
        ours.push(broker(state_mb, rate, before).await);
        ceilings.push(tokio::task::spawn_blocking(move || copy_ceiling(state_mb)).await.expect("ceiling"));
        if let Some(binary) = &etcd_binary {
            theirs.push(etcd_run(binary, state_mb, rate, before).await);
        }
        let said = |o: &Outcome| {
            format!("{} snapshot(s), {:.1} MB in {:.2} s", o.snapshots, o.snapshot_bytes / 1e6, o.snapshot_secs)
        };
        let etcd_said = theirs.last().map_or("not run".to_string(), said);
        eprintln!(
            "round {run} of {runs} done: broker's learner {}; etcd's learner {etcd_said}",
            said(&ours[ours.len() - 1])
        );
    }
    println!("| {state_mb} MB, {rate} writes/s; median of {runs} (each round) | ordeal-broker | etcd 3.4 |");
    println!("|---|---|---|");
    let row = |name: &str, unit: &str, f: &dyn Fn(&Outcome) -> f64| {
        let t = if theirs.is_empty() { "–".to_string() } else { cell(theirs.iter().map(f).collect(), unit) };
        println!("| {name} | {} | {t} |", cell(ours.iter().map(f).collect(), unit));
    };
    row("join to promotion granted", " s", &|o| o.promotable.as_secs_f64());
    row("snapshots the learner received", "", &|o| o.snapshots);
    row("snapshot received: state MB / receive time", " MB/s", &|o| o.snapshot_bytes / 1e6 / o.snapshot_secs);
    row("snapshot made + received (etcd makes it while it streams)", " MB/s", &|o| {
        o.snapshot_bytes / 1e6 / o.snapshot_file.map_or(o.snapshot_secs, |f| f.1)
    });
    row("snapshot state moved", " MB", &|o| o.snapshot_bytes / 1e6);
    if let Some(o) = ours.first()
        && o.snapshot_file.is_some()
    {
        let file = cell(ours.iter().map(|o| o.snapshot_file.map_or(0.0, |f| f.0) / 1e6).collect(), " MB");
        println!("| snapshot file on the wire (compressed) | {file} | (the state) |");
    }
    row("load p50 before", " ms", &|o| o.before.ms(0.5));
    row("load p99 before", " ms", &|o| o.before.ms(0.99));
    row("load p50 from join to promotion", " ms", &|o| o.during.ms(0.5));
    row("load p99 from join to promotion", " ms", &|o| o.during.ms(0.99));
    row("p99 during / before", "×", &|o| o.during.ms(0.99) / o.before.ms(0.99));
    pooled_rows(&ours, &theirs);
    alone_rows(&ours, &theirs);
    let failed: usize = ours.iter().chain(&theirs).map(|o| o.before.failed + o.during.failed).sum();
    println!("| failed writes, all rounds and systems | {failed} | |");
    if !theirs.is_empty() {
        let ratio =
            |f: &dyn Fn(&Outcome) -> f64| cell(ours.iter().zip(&theirs).map(|(a, b)| f(a) / f(b)).collect(), "×");
        println!(
            "| snapshot rate, broker / etcd in the same round: received; made + received | {}; {} | |",
            ratio(&|o| o.snapshot_bytes / o.snapshot_secs),
            ratio(&|o| o.snapshot_bytes / o.snapshot_file.map_or(o.snapshot_secs, |f| f.1)),
        );
    }
    ceiling_rows(&ceilings, &theirs);
    floors(&ours, &theirs);
    let missing: Vec<String> = ours
        .iter()
        .map(|o| ("broker", o))
        .enumerate()
        .chain(theirs.iter().map(|o| ("etcd", o)).enumerate())
        .filter(|(_, (_, o))| o.snapshots < 1.0)
        .map(|(i, (system, _))| format!("{system} in round {}", i + 1))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "NO RATE: a learner caught up without a snapshot ({}); its rate figures are not measurements",
            missing.join(", ")
        );
        std::process::exit(1);
    }
}

/// The load's p99 over every round's writes at once: a window from join to promotion holds only
/// ~150 writes when the catch-up takes 0.15 s, so one round's p99 is its second slowest write; all
/// rounds' together give a p99 that one stall does not decide.
fn pooled_rows(ours: &[Outcome], theirs: &[Outcome]) {
    let p99 = |outcomes: &[Outcome], during: bool| {
        Window::pooled(outcomes.iter().map(|o| if during { &o.during } else { &o.before })).ms(0.99)
    };
    let cells = |outcomes: &[Outcome]| {
        if outcomes.is_empty() {
            return "–".to_string();
        }
        let (before, during) = (p99(outcomes, false), p99(outcomes, true));
        format!("{before:.2} / {during:.2} ms: **{:.2}×**", during / before)
    };
    let writes: usize = ours.iter().map(|o| o.during.latencies.len()).sum();
    println!(
        "| load p99 before / during, all rounds' writes pooled ({writes} during); ratio | {} | {} |",
        cells(ours),
        cells(theirs)
    );
}

/// How often the load alone, with no catch-up, fails the p99 floor at the catch-up's own window
/// length: of the windows before the join as long as the round's catch-up, those whose p99 is over
/// 2× the round's p99 before. A window of 0.15 s holds ~150 writes, so one burst of slow writes
/// is its p99: this row says how much of the floor's verdict is the window, not the catch-up.
fn alone_rows(ours: &[Outcome], theirs: &[Outcome]) {
    let cells = |outcomes: &[Outcome]| {
        let over = |o: &Outcome| o.before_slices.iter().filter(|w| w.ms(0.99) > 2.0 * o.before.ms(0.99)).count();
        let (failing, all): (usize, usize) =
            outcomes.iter().map(|o| (over(o), o.before_slices.len())).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        if all == 0 {
            return "–".to_string();
        }
        format!("{failing} of {all} ({:.0}%)", 100.0 * failing as f64 / all as f64)
    };
    println!(
        "| the load alone before the join: windows as long as the catch-up whose p99 is over 2× the p99 before | {} | {} |",
        cells(ours),
        cells(theirs)
    );
}

/// What the machine allows: its one-copy ceiling, and what 2× etcd's rate asks of it.
fn ceiling_rows(ceilings: &[f64], theirs: &[Outcome]) {
    println!(
        "| the machine's one-copy ceiling: incompressible bytes over one loopback socket into a synced file, no load, no TLS | {} | |",
        cell(ceilings.to_vec(), " MB/s")
    );
    if !theirs.is_empty() {
        let asked = ceilings.iter().zip(theirs).map(|(c, o)| 2.0 * o.snapshot_bytes / 1e6 / o.snapshot_secs / c);
        println!(
            "| 2× etcd's received rate as a share of that ceiling, same round | {} | |",
            cell(asked.collect(), "×")
        );
    }
}

/// The machine's ceiling for moving a snapshot of `state_mb` MB, measured between the systems'
/// turns: incompressible bytes through one loopback TCP connection into a file beside the nodes',
/// written around the page cache (where the file system allows) and synced, timed from the first
/// byte received to the sync, as the learners' receive rates are. Neither TLS, nor a checksum,
/// nor a load shares the cores: no design moves the state faster here.
fn copy_ceiling(state_mb: u64) -> f64 {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const CHUNK: usize = 1 << 20;
    let chunks = (state_mb as usize * 1_000_000).div_ceil(CHUNK);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let addr = listener.local_addr().expect("listener address");
    let mut rng = Xorshift(0x5EED);
    let pattern: Vec<u8> = (0..4 * CHUNK / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
    let sender = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect on loopback");
        for i in 0..chunks {
            socket.write_all(&pattern[(i % 4) * CHUNK..][..CHUNK]).expect("send");
        }
    });
    let (mut socket, _) = listener.accept().expect("accept");
    let dir = round_dir(std::env::temp_dir());
    let path = dir.path().join("ceiling");
    let direct = std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(nix::libc::O_DIRECT).open(&path);
    let mut file = direct.or_else(|_| std::fs::File::create(&path)).expect("ceiling file");
    // O_DIRECT takes a buffer aligned to the block size: a 4 KB-aligned chunk inside a larger one.
    let mut buf = vec![0u8; CHUNK + 4096];
    let start = buf.as_ptr().align_offset(4096);
    let chunk = &mut buf[start..start + CHUNK];
    let mut first = None;
    for _ in 0..chunks {
        socket.read_exact(chunk).expect("receive");
        first.get_or_insert_with(Instant::now);
        file.write_all(chunk).expect("write the ceiling file");
    }
    file.sync_data().expect("sync the ceiling file");
    let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    sender.join().expect("sender");
    (chunks * CHUNK) as f64 / 1e6 / secs
}

/// The floors of the issue (#12), each judged on its strictest figure: the slowest round's
/// promotion, the median of the same-round rate ratios, the p99 of every round's writes pooled.
fn floors(ours: &[Outcome], theirs: &[Outcome]) {
    let slowest = ours.iter().map(|o| o.promotable.as_secs_f64()).fold(0.0, f64::max);
    let rate = |o: &Outcome| o.snapshot_bytes / o.snapshot_secs;
    let ratio = median(ours.iter().zip(theirs).map(|(a, b)| rate(a) / rate(b)).collect());
    let p99 = |during: bool| Window::pooled(ours.iter().map(|o| if during { &o.during } else { &o.before })).ms(0.99);
    let tail = p99(true) / p99(false);
    println!();
    println!("| floor | broker's figure | holds |");
    println!("|---|---|---|");
    let row = |floor: &str, figure: String, holds: bool| {
        println!("| {floor} | {figure} | {} |", if holds { "yes" } else { "**no**" })
    };
    row("promotable within 3 s (strict gate), slowest round", format!("{slowest:.2} s"), slowest <= 3.0);
    if !theirs.is_empty() {
        row("snapshot ≥ 2× etcd's rate (received), median of the rounds' ratios", format!("{ratio:.2}×"), ratio >= 2.0);
    }
    row("load p99 during ≤ 2× before, all rounds' writes pooled", format!("{tail:.2}×"), tail <= 2.0);
}

/// The median of the finite figures (NaN if none).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// "median (each round's figure)"; a round without the figure (NaN: etcd's learner caught up
/// without a snapshot) is listed but left out of the median.
fn cell(v: Vec<f64>, unit: &str) -> String {
    let each: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    let finite = v.iter().filter(|x| x.is_finite()).count();
    let median = median(v);
    match finite {
        0 => format!("– ({})", each.join(", ")),
        1 => format!("{median:.2}{unit}"),
        _ => format!("**{median:.2}{unit}** ({})", each.join(", ")),
    }
}

/// A directory for one round's files under `parent`, removed at the round's end unless
/// `ORDEAL_BENCH_KEEP` is set.
fn round_dir(parent: impl AsRef<Path>) -> tempfile::TempDir {
    let keep = std::env::var_os("ORDEAL_BENCH_KEEP").is_some();
    tempfile::Builder::new().disable_cleanup(keep).tempdir_in(parent).expect("temp dir")
}

async fn broker(state_mb: u64, rate: u64, before: Duration) -> Outcome {
    let dir = round_dir(std::env::temp_dir());
    eprintln!("broker cluster in {}", dir.path().display());
    let binary = find_binary().expect("ordeal-broker is built beside the bench");
    let mut spec = ClusterSpec::local(binary, 3, dir.path()).expect("ports");
    // Never for the recorded figures: shows what peer TLS costs (etcd's peers here run without).
    if std::env::var("ORDEAL_BENCH_PEER_TLS").is_ok_and(|v| v == "off") {
        spec.tls = None;
    }
    let mut procs: Vec<NodeProcess> = spec.nodes.iter().map(|n| spec.spawn(n.id).expect("spawn")).collect();
    let opts = ClientOptions { deadline: Duration::from_secs(10), ..Default::default() };
    let client = Arc::new(Client::new(spec.peers(), opts.clone()));
    let leader = loop {
        if let Ok(s) = client.status(1).await
            && s.groups[0].has_leader
        {
            break s.groups[0].leader_id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    client.prefer(leader);
    let learner_dir = std::env::var_os("ORDEAL_BENCH_LEARNER_DIR").map(round_dir);
    let (addr, http) =
        start_learner(&mut spec, &mut procs, learner_dir.as_ref().map_or(dir.path(), |d| d.path())).await;
    let c = client.clone();
    // Not idempotent: concurrent writers would present one producer's sequences out of order.
    fill(state_mb, move |i| {
        let c = c.clone();
        async move { c.produce("big", 0, b"", &record(i), None).await.is_ok() }
    })
    .await;
    let c = client.clone();
    burst(move |_| {
        let c = c.clone();
        async move { c.produce("burst", 0, b"", &[b'z'; LOAD_BYTES], None).await.is_ok() }
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let c = client.clone();
    let load = paced(rate, stop.clone(), move |_| {
        let c = c.clone();
        async move { c.produce("load", 0, b"", &[b'y'; LOAD_BYTES], None).await.is_ok() }
    });
    let load_started = Instant::now();
    tokio::time::sleep(before).await;

    let joined = Instant::now();
    let commit = client.status(leader).await.expect("leader status").groups[0].commit_index;
    let admin = Client::new(spec.peers(), opts);
    let promoted = loop {
        match admin.add_learner(0, 4, &addr).await {
            Ok(_) => {}
            Err(e) => {
                // Until the process listens, it is unreachable.
                assert!(e.is_definite(), "add-learner: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        break loop {
            if admin.promote(0, 4, commit, false).await.is_ok() {
                break joined.elapsed();
            }
            assert!(joined.elapsed() < Duration::from_secs(300), "no promotion in 5 minutes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
    };
    let done = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let samples = load.await.expect("load task");
    let (before, during, before_slices) = windows(&samples, load_started, joined, done);
    trace("broker", &samples, joined, done);
    let m = http_get(&http.to_string(), "/metrics").await;
    let leader_http = spec.nodes.iter().find(|n| n.id == leader).expect("the leader is a node").http;
    // The leader counts a send once the learner has answered it, which can come after the
    // promotion was granted: wait for the count (a leader that moved has none; its send time then
    // reads as 0).
    let sent = metrics_when(&leader_http.to_string(), Duration::from_secs(10), |m| {
        metric(m, "ordeal_snapshots_sent_total") >= 1.0
    })
    .await
    .unwrap_or_default();
    drop(procs);
    Outcome {
        promotable: promoted,
        snapshots: metric(&m, "ordeal_snapshots_received_total"),
        snapshot_bytes: metric(&m, "ordeal_snapshot_received_bytes_total"),
        snapshot_secs: metric(&m, "ordeal_snapshot_receive_milliseconds_total") / 1e3,
        snapshot_file: Some((
            metric(&m, "ordeal_snapshot_received_file_bytes_total"),
            metric(&sent, "ordeal_snapshot_send_milliseconds_total") / 1e3,
        )),
        before,
        during,
        before_slices,
    }
}

/// Starts node 4 with `--join` (it waits to be added) and waits until it serves; returns its
/// address and its HTTP address. Started before the load, as an operator starts a node before
/// adding it: the catch-up measured is from `add-learner` on, and the process's own start (its
/// RocksDB, its connections: a few ms of both cores) falls in neither of the load's windows. etcd's
/// learner can only start after `member add`, so its start stays inside its window.
async fn start_learner(spec: &mut ClusterSpec, procs: &mut Vec<NodeProcess>, dir: &Path) -> (String, SocketAddr) {
    let ports = free_ports(2).expect("ports");
    let http = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let node = NodeSpec {
        id: 4,
        addr: SocketAddr::from(([127, 0, 0, 1], ports[0])),
        http,
        data_dir: dir.join("n4/data"),
        log: dir.join("n4/broker.log"),
        netns: None,
        env: vec![("ORDEAL_BROKER_JOIN".into(), "true".into())],
        remote: None,
    };
    let addr = node.addr.to_string();
    spec.nodes.push(node);
    procs.push(spec.spawn(4).expect("spawn node 4"));
    metrics_when(&http.to_string(), Duration::from_secs(30), |m| !m.is_empty())
        .await
        .expect("the learner served no metrics within 30 s");
    (addr, http)
}

/// Writes 64 KB records with 16 writers until `state_mb` MB are in.
async fn fill<F, Fut>(state_mb: u64, op: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    writes("records of 64 KB", state_mb * 1_000_000 / RECORD_BYTES as u64, 16, op).await;
}

/// `ORDEAL_BENCH_BURST` small writes with 64 writers, to lengthen the log past what etcd keeps.
async fn burst<F, Fut>(op: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    writes("small writes", env_u64("ORDEAL_BENCH_BURST", 10_000), 64, op).await;
}

/// Calls `op` for 0 to `records` with `writers` concurrent writers, each until it succeeds.
async fn writes<F, Fut>(what: &str, records: u64, writers: usize, op: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..writers)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= records {
                        return;
                    }
                    while !op(i).await {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("fill worker");
    }
    eprintln!("{records} {what} written in {:.1} s", started.elapsed().as_secs_f64());
}

async fn etcd_run(binary: &std::path::Path, state_mb: u64, rate: u64, before: Duration) -> Outcome {
    let extra = ["--snapshot-count=1000", "--quota-backend-bytes=8589934592"];
    let mut etcd = etcd::Etcd::start_with(binary, &extra).expect("start etcd");
    let client = etcd.leader().await.expect("etcd leader");
    let c = client.clone();
    fill(state_mb, move |i| {
        let mut c = c.clone();
        async move { c.put(format!("big/{i}").into_bytes(), record(i)).await.is_ok() }
    })
    .await;
    let c = client.clone();
    burst(move |i| {
        let mut c = c.clone();
        async move { c.put(format!("burst/{}", i % 1000).into_bytes(), vec![b'z'; LOAD_BYTES]).await.is_ok() }
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let c = client.clone();
    let load = paced(rate, stop.clone(), move |i| {
        let mut c = c.clone();
        async move { c.put(format!("load/{}", i % 1000).into_bytes(), vec![b'y'; LOAD_BYTES]).await.is_ok() }
    });
    let load_started = Instant::now();
    tokio::time::sleep(before).await;
    // etcd refuses reconfiguration until every member has been connected for 5 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (joined, id) = loop {
        let attempt = Instant::now();
        match etcd.add_learner(binary, &extra).await {
            Ok(id) => break (attempt, id),
            Err(e) if e.contains("unhealthy cluster") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("etcd member add --learner: {e}"),
        }
    };
    let promoted = loop {
        if etcd.promote(id).await.is_ok() {
            break joined.elapsed();
        }
        assert!(joined.elapsed() < Duration::from_secs(300), "etcd: no promotion in 5 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let done = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let samples = load.await.expect("load task");
    let (before, during, before_slices) = windows(&samples, load_started, joined, done);
    trace("etcd", &samples, joined, done);
    let learner = etcd.endpoint(3).trim_start_matches("http://").to_string();
    // etcd grants the promotion once the learner has the snapshot, before it serves clients
    // (its /metrics too): wait until it does.
    let m = metrics_when(&learner, Duration::from_secs(60), |m| m.contains("etcd_server_has_leader"))
        .await
        .expect("etcd's learner served no metrics within 60 s");
    Outcome {
        promotable: promoted,
        snapshots: metric(&m, "etcd_network_snapshot_receive_total_duration_seconds_count"),
        snapshot_bytes: metric(&m, "etcd_mvcc_db_total_size_in_bytes"),
        snapshot_secs: metric(&m, "etcd_network_snapshot_receive_total_duration_seconds_sum"),
        snapshot_file: None,
        before,
        during,
        before_slices,
    }
}
