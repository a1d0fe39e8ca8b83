//! Runs a resolved [`Test`]: the one function that `ordeal run`, `ordeal run --test` and anything
//! else that runs tests (suites, gates) call. It prints nothing; it returns the run directory,
//! from which `ordeal_reports::write_all` draws the verdict and the report.

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use ordeal_faults::layout::Layout;
use ordeal_faults::lazyfs::Disks;
use ordeal_faults::net::{self, Network};
use ordeal_faults::sshlab::SshLab;
use ordeal_faults::{
    ClockNemesis, Compose, FaultSet, MembershipNemesis, Nemesis, NetNemesis, ProcessNemesis, RunClock, System,
    UpgradeNemesis,
};
use ordeal_history::{SshHosts, Test};
use ordeal_reports::store::{self, RunInfo};
use ordeal_wire::ssh::Ssh;
use ordeal_workloads::phases::{self, PlanPhase};
use ordeal_workloads::recorder::Recorder;
use ordeal_workloads::runner::{self, Plan};
use ordeal_workloads::systems::{self, Sut};
use ordeal_workloads::workload;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How to run a test, beyond the test itself: where, and how it looks while it runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run store.
    pub store: PathBuf,
    /// Keep the nodes' data directories.
    pub keep_data: bool,
    /// Draw a live progress line.
    pub progress: bool,
}

/// The faults of a test, parsed.
pub fn fault_sets(test: &Test) -> Result<Vec<FaultSet>, ordeal_faults::SpecError> {
    test.nemesis.iter().map(|n| FaultSet::parse(n)).collect()
}

/// Runs `test` to the end (or to Ctrl-C) and returns its run directory. The directory holds
/// `test.json`, the history, status samples and `run.json`, also when the run failed; the error
/// then says why.
pub fn run_test(test: Test, opts: &Options) -> anyhow::Result<PathBuf> {
    count_interrupts_once()?;
    if matches!(test.env.as_str(), "netns" | "ssh-lab") {
        enter_private_network_once()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(execute(test, opts))
}

/// Stop signals (SIGINT, SIGTERM, SIGHUP) since [`count_interrupts_once`].
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);

/// Whether a stop signal came since the first run began: a suite then starts no further run.
pub fn interrupted() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}

/// Counts every stop signal for the rest of the process, also between runs and while a cluster
/// is set up: a run polls the count ([`watch_interrupts`]), and a suite starts no run after a
/// signal. The second signal ends the process at once.
fn count_interrupts_once() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn count(_: nix::libc::c_int) {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
            // SAFETY: _exit is async-signal-safe.
            unsafe { nix::libc::_exit(130) };
        }
    }
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let action = SigAction::new(SigHandler::Handler(count), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("handling {signal}"))?;
    }
    Ok(())
}

/// Moves the process into a private network namespace, once: everything the run builds lives
/// there and dies with it. Must run before any thread exists (the kernel grants a user namespace
/// to single-threaded processes only).
fn enter_private_network_once() -> anyhow::Result<()> {
    static ENTERED: AtomicBool = AtomicBool::new(false);
    if !ENTERED.swap(true, Ordering::SeqCst) {
        net::enter_private_network().context("isolating the run's network")?;
    }
    Ok(())
}

/// A run's cluster: the system, its network, the nemesis over both, and the test's faults.
struct Cluster {
    sut: Sut,
    network: Option<Arc<Network>>,
    /// The network the nemesis cuts (over SSH, the hosts'), let go before the SSH lab's daemons.
    cuts: Option<Arc<Network>>,
    /// The SSH lab's daemons, stopped after the nodes.
    lab: Option<SshLab>,
    /// Where the nodes ran: on their hosts, the run's files are removed after the nodes.
    layout: Layout,
    nemesis: Box<dyn Nemesis>,
    faults: Vec<FaultSet>,
    /// The nodes' lazyfs mounts when the run crashes nodes; unmounted when dropped.
    disks: Option<Arc<Disks>>,
    /// Set to the history's clock once it starts; the membership nemesis times its samples by it.
    clock: RunClock,
}

fn build_cluster(test: &Test, dir: &Path) -> anyhow::Result<Cluster> {
    // Absolute: node processes carry it (cleanup finds them by it) and run in other directories.
    let nodes_dir = std::path::absolute(dir.join("nodes")).context("resolving the run directory")?;
    let faults = fault_sets(test)?;
    // Spare slots are laid out like the nodes' (ports, namespace) and join later.
    let Places { layout, network, lab } = places(test, dir, &nodes_dir)?;
    let mut layout = layout.with_spares(test.spare_nodes);
    if faults.iter().any(|s| s.any(ordeal_faults::FaultSpec::needs_clock)) {
        layout = layout.with_clocks().context("creating the clock control files")?;
    }
    let disks = if faults.iter().any(|s| s.any(ordeal_faults::FaultSpec::needs_disk)) {
        Some(Arc::new(Disks::mount(&layout).context("putting the data directories on lazyfs")?))
    } else {
        None
    };
    let cuts = network_to_cut(&layout, network.clone(), &faults)?;
    let registration = systems::by_name(&test.system)?;
    let sut = (registration.build)(test, &layout, PathBuf::from(&test.broker_binary))?;
    let system: Arc<dyn System> = sut.system.clone();
    let clock = RunClock::default();
    let mut nemeses: Vec<Box<dyn Nemesis>> = vec![
        Box::new(NetNemesis::new(system.clone(), cuts.clone())),
        Box::new(ClockNemesis::new(system.clone(), layout.clocks.clone())),
        Box::new(match &disks {
            Some(d) => ProcessNemesis::new(system.clone()).with_disks(d.clone()),
            None => ProcessNemesis::new(system.clone()),
        }),
        Box::new(MembershipNemesis::new(system.clone(), Some(dir.join(store::CATCHUP)), clock.clone())),
    ];
    if let Some(to) = &test.upgrade_binary {
        nemeses.push(Box::new(UpgradeNemesis::new(system, PathBuf::from(&test.broker_binary), PathBuf::from(to))));
    }
    let nemesis = Box::new(Compose(nemeses));
    Ok(Cluster { sut, network, cuts, lab, nemesis, faults, disks, clock, layout })
}

/// The network the nemesis cuts: the namespaces', or the hosts' over SSH (given the run's nft
/// table only when the run has network faults: one without needs no nft on its hosts).
fn network_to_cut(
    layout: &Layout,
    namespaces: Option<Arc<Network>>,
    faults: &[FaultSet],
) -> anyhow::Result<Option<Arc<Network>>> {
    let hosts = layout.hosts();
    if hosts.is_empty() {
        return Ok(namespaces);
    }
    if !faults.iter().any(|s| s.any(ordeal_faults::FaultSpec::needs_network)) {
        return Ok(None);
    }
    Ok(Some(Arc::new(Network::hosts(hosts).context("giving the hosts the run's nft table")?)))
}

/// The addresses of an `ssh` run's hosts: one per node and spare node, each an IP address.
pub(crate) fn ssh_hosts(ssh: &SshHosts, places: usize) -> Result<Vec<std::net::IpAddr>, String> {
    if ssh.hosts.len() != places {
        return Err(format!(
            "--ssh-hosts names {} host(s); the run has {places} node(s) and spare node(s), one per host",
            ssh.hosts.len()
        ));
    }
    let parsed = ssh.hosts.iter().map(|h| h.parse().map_err(|_| format!("--ssh-hosts: {h:?} is not an IP address")));
    let hosts: Vec<std::net::IpAddr> = parsed.collect::<Result<_, _>>()?;
    if let Some(h) = hosts.iter().find(|h| hosts.iter().filter(|o| o == h).count() > 1) {
        return Err(format!("--ssh-hosts: {h} is named twice; one node per host"));
    }
    Ok(hosts)
}

/// The places of an `--env ssh` run: its hosts, with its spare nodes among the slots.
pub(crate) fn ssh_layout(test: &Test, nodes_dir: &Path) -> anyhow::Result<Layout> {
    let hosts = test.ssh.as_ref().context("--env ssh without hosts")?;
    let addrs = ssh_hosts(hosts, test.nodes + test.spare_nodes).map_err(anyhow::Error::msg)?;
    let path = |p: &Option<String>| p.as_ref().map(PathBuf::from);
    // The master connections' sockets, with the run.
    let control = nodes_dir.parent().unwrap_or(nodes_dir).join("ssh");
    std::fs::create_dir_all(&control).with_context(|| format!("creating {}", control.display()))?;
    let ssh = Ssh::new(&hosts.user, hosts.port, path(&hosts.identity), path(&hosts.known_hosts)).multiplexed(&control);
    Ok(Layout::ssh(Arc::new(ssh), &addrs, nodes_dir))
}

/// Where a run's nodes go, and what holds those places up.
struct Places {
    layout: Layout,
    network: Option<Arc<Network>>,
    lab: Option<SshLab>,
}

/// Lays the nodes and spare nodes out in the test's environment.
fn places(test: &Test, dir: &Path, nodes_dir: &Path) -> anyhow::Result<Places> {
    let places = test.nodes + test.spare_nodes;
    let ids: Vec<u64> = (1..=places as u64).collect();
    let network = || Network::create(&run_id(dir), &ids).context("building the run's network");
    Ok(match test.env.as_str() {
        "netns" => {
            let net = network()?;
            Places { layout: Layout::netns(&net, places, nodes_dir), network: Some(Arc::new(net)), lab: None }
        }
        "ssh-lab" => {
            let net = network()?;
            let lab = SshLab::start(&net, &ids, &dir.join("ssh")).context("starting the SSH lab's daemons")?;
            let layout = Layout::ssh(lab.ssh.clone(), &lab.hosts, nodes_dir);
            Places { layout, network: Some(Arc::new(net)), lab: Some(lab) }
        }
        "ssh" => Places { layout: ssh_layout(test, nodes_dir)?, network: None, lab: None },
        _ => Places { layout: Layout::local(places, nodes_dir).context("reserving ports")?, network: None, lab: None },
    })
}

/// Ctrl-C (or SIGTERM, SIGHUP; counted since the run began, by [`count_interrupts_once`]): the
/// first heals, stops the nodes and still checks what was recorded; the second aborts (the
/// nodes die with the process; `ordeal cleanup` does the rest). Polled rather than listened
/// for, so that a signal that came while the cluster was set up, before any task could listen,
/// still stops the run.
fn watch_interrupts() -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        while !interrupted() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "\nordeal: interrupted: healing, stopping the nodes and checking what was recorded (Ctrl-C again to abort)"
        );
        let _ = tx.send(true);
    });
    (rx, task)
}

async fn execute(mut test: Test, opts: &Options) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let dir = store::create_run_dir(&opts.store, &test.name)
        .with_context(|| format!("creating a run in {}", opts.store.display()))?;
    let pid = hold_pid(&dir).context("writing ordeal.pid")?;
    // Before the cluster is built: a signal while it is set up stops the run once it is, with
    // everything torn down, instead of killing the harness halfway through.
    let (interrupt, interrupts) = watch_interrupts();
    let Cluster { sut, network, cuts, lab, nemesis, faults, disks, clock, layout } = build_cluster(&test, &dir)?;
    let mut info = RunInfo::default();
    let set_up = sut.system.setup().await;
    let cluster_up = set_up.is_ok();
    let outcome = match set_up {
        Err(e) => Err(anyhow::Error::new(e).context("starting the cluster")),
        Ok(()) => {
            if let Some(s) = sut.system.statuses(Duration::from_secs(1)).await.values().next() {
                test.broker_version = s.version.clone();
            }
            match write_test(&dir, &test) {
                Ok(()) => drive(&test, opts, &sut, (nemesis, faults, clock), &dir, interrupt).await,
                Err(e) => Err(e),
            }
        }
    };
    // Whatever failed, the nodes are torn down below before any error is returned.
    let test_written = if dir.join(store::TEST).exists() { Ok(()) } else { write_test(&dir, &test) };
    // Before the teardown, which ends every node; a node that ended while the cluster was set up
    // is why the run could not start, which the harness error says.
    info.node_exits = sut.system.supervisor().filter(|_| cluster_up).map(|s| s.unasked_exits());
    if let Err(e) = sut.system.teardown().await {
        tracing::warn!("teardown: {e}");
    }
    drop(sut);
    // The hosts' nft tables first: removing the run's files there would remove them too, and
    // letting go of the network would then warn of tables that are gone.
    drop(cuts);
    if !opts.keep_data {
        for stays in layout.remove_host_files() {
            tracing::warn!("{stays}; `ordeal cleanup` tries again");
        }
    }
    layout.close_connections();
    drop(lab);
    // After the nodes: tearing the namespaces down under running nodes would be a fault of its own.
    drop(network);
    // After the nodes too (the nemesis held the other reference, and is gone with the run).
    drop(disks);
    interrupts.abort();
    if !opts.keep_data
        && let Err(e) = store::remove_data(&dir)
    {
        // The run's verdict stands; `ordeal cleanup --data` removes what is left.
        tracing::warn!("{}: the nodes' data stays: {e}", dir.display());
    }
    match outcome {
        Ok(summary) => {
            info.interrupted = summary.interrupted;
            info.heal_error = summary.healed.err();
            info.final_reads_complete = summary.final_reads_complete;
            info.nemesis_errors = summary.nemesis_errors;
            info.phases = summary.phases;
            info.events = summary.counts.events;
        }
        Err(e) => info.harness_error = Some(format!("{e:#}")),
    }
    if let Err(e) = test_written {
        info.harness_error.get_or_insert(format!("{e:#}"));
    }
    info.elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(store::RUN), serde_json::to_string_pretty(&info)?)?;
    if !dir.join(store::HISTORY).exists() {
        std::fs::write(dir.join(store::HISTORY), "")?;
    }
    let _ = std::fs::remove_file(dir.join(store::PID));
    drop(pid);
    Ok(dir)
}

/// Writes this process's pid into the run's `ordeal.pid` and holds an exclusive lock on the file
/// for as long as the returned handle lives. `ordeal cleanup` tells a running harness from a
/// dead one by that lock ([`harness_holds`]), which the kernel drops with the process, whatever
/// later reuses its pid.
pub(crate) fn hold_pid(dir: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    // Locked before it has its name: `ordeal cleanup` never sees it unlocked.
    let unnamed = dir.join(format!("{}.new", store::PID));
    let file = std::fs::File::create(&unnamed)?;
    let mut held = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    std::io::Write::write_all(&mut *held, std::process::id().to_string().as_bytes())?;
    std::fs::rename(&unnamed, dir.join(store::PID))?;
    Ok(held)
}

/// Whether a live harness holds the run's `ordeal.pid` ([`hold_pid`]).
pub fn harness_holds(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(store::PID)) else { return false };
    matches!(Flock::lock(file, FlockArg::LockExclusiveNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
}

fn write_test(dir: &Path, test: &Test) -> anyhow::Result<()> {
    std::fs::write(dir.join(store::TEST), serde_json::to_string_pretty(test)?).context("writing test.json")
}

async fn drive(
    test: &Test,
    opts: &Options,
    sut: &Sut,
    (nemesis, faults, clock): (Box<dyn Nemesis>, Vec<FaultSet>, RunClock),
    dir: &Path,
    interrupt: watch::Receiver<bool>,
) -> anyhow::Result<runner::Summary> {
    let workload = workload::by_name(&test.workload)?;
    let generator = workload.generator(test.keys, test.ops_per_key);
    let phases = if test.phases.is_empty() {
        vec![PlanPhase::main(Duration::from_secs_f64(test.time_limit_s), test.rate)]
    } else {
        phases::plan(workload.ops(), &test.phases, test.rate)?
    };
    let recorder = Arc::new(Recorder::create(&dir.join(store::HISTORY)).context("creating history.jsonl")?);
    let _ = clock.set(recorder.origin());
    let plan = Plan {
        seed: test.seed,
        concurrency: test.concurrency,
        phases,
        op_timeout: Duration::from_millis(test.op_timeout_ms),
        faults,
        cycle_faults: test.nemesis_order == "cycle",
        fault_rounds: test.fault_rounds,
        nemesis_interval: Duration::from_secs_f64(test.nemesis_interval_s),
        fault_duration: Duration::from_secs_f64(test.fault_duration_s),
        status_log: Some(dir.join(store::STATUS)),
        progress: opts.progress,
        ..Plan::default()
    };
    let summary =
        runner::run(&plan, sut.system.clone(), nemesis, generator, sut.clients.clone(), recorder.clone(), interrupt)
            .await;
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
