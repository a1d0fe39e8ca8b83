//! `ordeal run` and `ordeal demo`: resolve the flags into a test, run it, analyse it.

use crate::cli::RunArgs;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_checker::Verdict;
use ordeal_faults::local::LocalCluster;
use ordeal_faults::net::{self, Network};
use ordeal_faults::{Db, FaultSpec, LIBFAKETIME, Nemeses, Nemesis, NetNemesis, ProcessNemesis, faketime_env};
use ordeal_history::Test;
use ordeal_reports::store::{self, RunInfo};
use ordeal_system::config::Bug;
use ordeal_system::launch::{ClusterSpec, find_binary};
use ordeal_workloads::Workload;
use ordeal_workloads::client::BrokerClients;
use ordeal_workloads::generator::{Generator, LogGen, NoopGen, RegisterGen};
use ordeal_workloads::recorder::Recorder;
use ordeal_workloads::runner::{self, Plan};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run, resolved from flags: every value checked, the seed drawn.
struct Resolved {
    test: Test,
    workload: Workload,
    faults: Vec<FaultSpec>,
    cycle: bool,
    bugs: Vec<Bug>,
    binary: PathBuf,
    args: RunArgs,
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

fn resolve(args: RunArgs) -> anyhow::Result<Resolved> {
    let workload = Workload::parse(&args.workload).map_err(|e| bad(format!("--workload: {e}")))?;
    let faults: Vec<FaultSpec> = args
        .nemesis
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "none")
        .map(|n| FaultSpec::parse(n).map_err(|e| bad(format!("--nemesis: {e}"))))
        .collect::<Result<_, _>>()?;
    let cycle = match args.nemesis_order.as_str() {
        "random" => false,
        "cycle" => true,
        other => return Err(bad(format!("--nemesis-order {other:?}: expected random or cycle"))),
    };
    let netns_missing = net::unavailable();
    let env = match (args.env.as_str(), &netns_missing) {
        ("local", _) => "local",
        ("netns", None) | ("auto", None) => "netns",
        ("netns", Some(why)) => return Err(bad(format!("--env netns is not available here: {why}"))),
        ("auto", Some(why)) => {
            eprintln!("ordeal: network namespaces are not available ({why}); running the nodes as local processes");
            "local"
        }
        (other, _) => return Err(bad(format!("--env {other:?}: expected auto, netns or local"))),
    };
    if env == "local"
        && let Some(f) = faults.iter().find(|f| f.needs_network())
    {
        return Err(bad(format!("--nemesis {f} cuts the network, which needs --env netns")));
    }
    if faults.iter().any(FaultSpec::needs_clock) && !Path::new(LIBFAKETIME).exists() {
        return Err(bad(format!("clock faults need libfaketime at {LIBFAKETIME} (scripts/setup.sh installs it)")));
    }
    if args.nodes == 0 || args.nodes > 9 {
        return Err(bad("--nodes must be between 1 and 9"));
    }
    if args.concurrency == 0 || args.concurrency > 1000 {
        return Err(bad("--concurrency must be between 1 and 1000"));
    }
    for (flag, v) in [
        ("--time-limit", args.time_limit),
        ("--nemesis-interval", args.nemesis_interval),
        ("--fault-duration", args.fault_duration),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(bad(format!("{flag} must be a positive number of seconds")));
        }
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(bad("--rate must be zero (unlimited) or positive"));
    }
    if args.op_timeout_ms == 0 {
        return Err(bad("--op-timeout-ms must be positive"));
    }
    if args.election_ticks <= args.heartbeat_ticks || args.heartbeat_ticks == 0 || args.tick_ms == 0 {
        return Err(bad("--election-ticks must exceed --heartbeat-ticks, and both and --tick-ms must be positive"));
    }
    let bugs: Vec<Bug> = args
        .bug
        .iter()
        .map(|b| {
            clap::ValueEnum::from_str(b, true)
                .map_err(|_| bad(format!("--bug {b:?}: expected stale-reads or no-dedupe")))
        })
        .collect::<Result<_, _>>()?;
    let binary = match &args.broker {
        Some(b) if b.is_file() => b.clone(),
        Some(b) => return Err(bad(format!("--broker {}: no such file", b.display()))),
        None => find_binary()
            .ok_or_else(|| anyhow::anyhow!("cannot find ordeal-broker beside ordeal or on PATH; pass --broker"))?,
    };
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11);
    let keys = args.keys.unwrap_or(if workload == Workload::Log { 4 } else { 10 });
    let name = format!(
        "{}-{}",
        workload.name(),
        if faults.is_empty() { "none".into() } else { args.nemesis.replace(',', "+") }
    );
    let mut command: Vec<String> = std::env::args().collect();
    if args.seed.is_none() {
        command.push(format!("--seed={seed}"));
    }
    let test = Test {
        name,
        workload: workload.name().into(),
        nemesis: faults.iter().map(|f| f.to_string()).collect(),
        env: env.into(),
        nodes: args.nodes,
        groups: args.groups,
        concurrency: args.concurrency,
        rate: args.rate,
        time_limit_s: args.time_limit,
        seed,
        op_timeout_ms: args.op_timeout_ms,
        nemesis_interval_s: args.nemesis_interval,
        fault_duration_s: args.fault_duration,
        keys,
        tick_ms: args.tick_ms,
        heartbeat_ticks: args.heartbeat_ticks,
        election_ticks: args.election_ticks,
        bugs: args.bug.clone(),
        broker_binary: binary.display().to_string(),
        broker_version: String::new(),
        ordeal_version: env!("CARGO_PKG_VERSION").into(),
        command: command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "),
        started_at: chrono::Utc::now().to_rfc3339(),
    };
    Ok(Resolved { test, workload, faults, cycle, bugs, binary, args })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Runs a test from flags.
pub fn run(args: RunArgs) -> anyhow::Result<Outcome> {
    let resolved = resolve(args)?;
    if resolved.test.env == "netns" {
        // Before any thread exists: the kernel grants a user namespace to single-threaded
        // processes only. Everything the run builds lives in this namespace and dies with it.
        net::enter_private_network().context("isolating the run's network")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(execute(resolved))
}

async fn execute(r: Resolved) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let dir = store::create_run_dir(&r.args.store, &r.test.name)
        .with_context(|| format!("creating a run in {}", r.args.store.display()))?;
    std::fs::write(dir.join(store::PID), std::process::id().to_string())?;
    let mut spec = ClusterSpec::local(r.binary.clone(), r.test.nodes, &dir.join("nodes")).context("reserving ports")?;
    let ids: Vec<u64> = spec.nodes.iter().map(|n| n.id).collect();
    let network = match r.test.env.as_str() {
        "netns" => {
            let id = run_id(&dir);
            let net = Network::create(&id, &ids).context("building the run's network")?;
            for node in &mut spec.nodes {
                node.addr = SocketAddr::new(net::node_ip(node.id).into(), 7000);
                node.http = SocketAddr::new(net::node_ip(node.id).into(), 8000);
                node.netns = net.ns_path(node.id);
            }
            Some(Arc::new(net))
        }
        _ => None,
    };
    let mut clocks = BTreeMap::new();
    if r.faults.iter().any(FaultSpec::needs_clock) {
        for node in &mut spec.nodes {
            let control = dir.join("nodes").join(format!("n{}", node.id)).join("faketime.rc");
            std::fs::create_dir_all(control.parent().expect("a node directory"))?;
            std::fs::write(&control, "+0\n")?;
            node.env.extend(faketime_env(&control));
            clocks.insert(node.id, control);
        }
    }
    spec.groups = r.test.groups;
    spec.timing.tick = Duration::from_millis(r.test.tick_ms);
    spec.timing.heartbeat_ticks = r.test.heartbeat_ticks;
    spec.timing.election_ticks = r.test.election_ticks;
    spec.bugs = r.bugs.clone();
    let cluster = Arc::new(LocalCluster::new(spec));
    let db: Arc<dyn Db> = cluster.clone();

    let (interrupt_tx, interrupt) = tokio::sync::watch::channel(false);
    let interrupts = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nordeal: interrupted: healing, stopping the nodes and checking what was recorded (Ctrl-C again to abort)"
            );
            let _ = interrupt_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                // The nodes die with this process (parent-death signal); `ordeal cleanup` does the rest.
                std::process::exit(130);
            }
        }
    });

    let mut test = r.test.clone();
    let mut info = RunInfo::default();
    let outcome = match db.setup().await {
        Err(e) => Err(anyhow::Error::new(e).context("starting the cluster")),
        Ok(()) => {
            if let Some(s) = db.statuses(Duration::from_secs(1)).await.values().next() {
                test.broker_version = s.version.clone();
            }
            std::fs::write(dir.join(store::TEST), serde_json::to_string_pretty(&test)?)?;
            let nemesis = Box::new(Nemeses::new(
                ProcessNemesis::new(db.clone()),
                NetNemesis::new(db.clone(), network.clone(), clocks),
            ));
            drive(&r, db.clone(), nemesis, &dir, interrupt.clone()).await
        }
    };
    if !dir.join(store::TEST).exists() {
        std::fs::write(dir.join(store::TEST), serde_json::to_string_pretty(&test)?)?;
    }
    if let Err(e) = db.teardown().await {
        tracing::warn!("teardown: {e}");
    }
    drop(db);
    drop(cluster);
    // After the nodes: tearing the namespaces down under running brokers would be a fault of
    // its own.
    drop(network);
    interrupts.abort();
    if !r.args.keep_data {
        store::remove_data(&dir);
    }
    match outcome {
        Ok(summary) => {
            info.interrupted = summary.interrupted;
            info.heal_error = summary.healed.err();
            info.final_reads_complete = summary.final_reads_complete;
            info.nemesis_errors = summary.nemesis_errors;
            info.events = summary.counts.events;
        }
        Err(e) => info.harness_error = Some(format!("{e:#}")),
    }
    info.elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(store::RUN), serde_json::to_string_pretty(&info)?)?;
    if !dir.join(store::HISTORY).exists() {
        std::fs::write(dir.join(store::HISTORY), "")?;
    }
    let results = ordeal_reports::write_all(&dir).context("analysing the run")?;
    let _ = std::fs::remove_file(dir.join(store::PID));
    print_outcome(&dir, &results);
    if let Some(e) = &info.harness_error {
        anyhow::bail!("the run failed: {e} (partial results in {})", dir.display());
    }
    Ok(match results.verdict {
        Verdict::Valid => Outcome::Valid,
        Verdict::Invalid => Outcome::Invalid,
        Verdict::Unknown => Outcome::Unknown,
    })
}

async fn drive(
    r: &Resolved,
    db: Arc<dyn Db>,
    nemesis: Box<dyn Nemesis>,
    dir: &Path,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<runner::Summary> {
    let recorder = Arc::new(Recorder::create(&dir.join(store::HISTORY)).context("creating history.jsonl")?);
    let generator: Box<dyn Generator> = match r.workload {
        Workload::Register => Box::new(RegisterGen::new(r.test.keys, r.args.ops_per_key)),
        Workload::Log => Box::new(LogGen::new(r.test.keys)),
        Workload::Noop => Box::new(NoopGen::new()),
    };
    let timeout = Duration::from_millis(r.test.op_timeout_ms);
    let clients = Arc::new(BrokerClients::new(r.workload, db.addresses(), timeout));
    let plan = Plan {
        seed: r.test.seed,
        concurrency: r.test.concurrency,
        rate: r.test.rate,
        time_limit: Duration::from_secs_f64(r.test.time_limit_s),
        op_timeout: timeout,
        faults: r.faults.clone(),
        cycle_faults: r.cycle,
        nemesis_interval: Duration::from_secs_f64(r.test.nemesis_interval_s),
        fault_duration: Duration::from_secs_f64(r.test.fault_duration_s),
        status_log: Some(dir.join(store::STATUS)),
        progress: !r.args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..Plan::default()
    };
    let summary = runner::run(&plan, db, nemesis, generator, clients, recorder.clone(), interrupt).await;
    recorder.finish().context("writing history.jsonl")?;
    Ok(summary)
}

/// A short id for names in the run's network (bridge, links): a hash of its directory.
fn run_id(dir: &Path) -> String {
    let h = dir
        .display()
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:05x}", h & 0xf_ffff)
}

fn print_outcome(dir: &Path, r: &ordeal_reports::results::Results) {
    say!("{}: {}", r.verdict.to_string().to_uppercase(), r.reason);
    for c in &r.checkers {
        say!("  {:<16} {:<8} {}", c.name, c.verdict.to_string(), c.summary);
    }
    let s = &r.stats.total;
    say!("  ops: {} ok, {} fail, {} info ({:.0}/s)", s.ok, s.fail, s.info, r.stats.throughput_per_s);
    if r.failover.faults > 0 {
        let gap = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"));
        say!(
            "  faults: {}, write gap median {}, max {}",
            r.failover.faults,
            gap(r.failover.gap_ms_median),
            gap(r.failover.gap_ms_max)
        );
    }
    say!("  report: {}", dir.join(store::REPORT).display());
}

/// `ordeal demo`: a register test with leader kills on a local three-node cluster.
pub fn demo(args: crate::cli::DemoArgs) -> anyhow::Result<Outcome> {
    use clap::Parser;
    let time_limit = args.time_limit.to_string();
    let store = args.store.display().to_string();
    let argv = [
        "ordeal",
        "run",
        "--workload",
        "register",
        "--nemesis",
        "kill-leader",
        "--nodes",
        "3",
        "--time-limit",
        &time_limit,
        "--store",
        &store,
    ];
    let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| bad(e.to_string()))?;
    let crate::cli::Command::Run(run_args) = cli.command else { unreachable!("parsed a run command") };
    eprintln!("ordeal demo: a {time_limit} s register test on a 3-node cluster, killing the leader every few seconds");
    let outcome = run(run_args)?;
    say!("\nEverything about this run is in {store}/latest/ (open report.html in a browser).");
    Ok(outcome)
}
