//! `ordeal run` and `ordeal demo`: resolve the flags into a test, run it, analyse it.

use crate::cli::RunArgs;
use crate::execute::{self, Options};
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_faults::{FaultSet, FaultSpec, LIBFAKETIME, net};
use ordeal_history::{Phase, SshHosts, Test};
use ordeal_reports::store;
use ordeal_wire::launch::{ANSWER_BOUND, output_within};
use ordeal_workloads::{systems, workload};
use std::path::{Path, PathBuf};

fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

/// Where the nodes run: netns where asked for or available, else local.
fn environment(asked: &str) -> anyhow::Result<String> {
    let netns_missing = net::unavailable();
    Ok(match (asked, &netns_missing) {
        ("local", _) => "local",
        ("netns", None) | ("auto", None) => "netns",
        ("netns", Some(why)) => return Err(bad(format!("--env netns is not available here: {why}"))),
        ("ssh", _) => "ssh",
        ("ssh-lab", _) => match ordeal_faults::sshlab::unavailable() {
            None => "ssh-lab",
            Some(why) => return Err(bad(format!("--env ssh-lab is not available here: {why}"))),
        },
        ("auto", Some(why)) => {
            eprintln!("ordeal: network namespaces are not available ({why}); running the nodes as local processes");
            "local"
        }
        (other, _) => return Err(bad(format!("--env {other:?}: expected auto, netns, local, ssh or ssh-lab"))),
    }
    .into())
}

/// Checks phases against the workload's op kinds; `scenario`: whether a scenario (which runs a
/// main phase of its own) is asked for. Fault rounds end each main phase early, and the phases
/// after it move up.
pub(super) fn check_phases(workload: &str, phases: &[Phase], scenario: bool) -> Result<(), String> {
    let w = workload::by_name(workload).map_err(|e| format!("--workload: {e}"))?;
    ordeal_workloads::phases::plan(w.ops(), phases, 0.0).map_err(|e| e.to_string())?;
    if scenario && !phases.is_empty() {
        return Err("phases: a --scenario runs a single main phase of its own; use one or the other".into());
    }
    Ok(())
}

/// Gives `test` its phases; its time limit becomes their total length.
pub(super) fn set_phases(test: &mut Test, phases: &[Phase]) {
    if !phases.is_empty() {
        test.time_limit_s = phases.iter().map(|p| p.duration_s).sum();
        test.phases = phases.to_vec();
    }
}

/// Checks a test's settings, whether they came from flags or from a `test.json`.
/// The slowest pace a run may ask for: a slot every 100 s (slower is a typo, and the interval of
/// a far smaller rate does not fit a `Duration`).
const MIN_RATE: f64 = 0.01;

fn validate(test: &Test) -> Result<(), String> {
    check_phases(&test.workload, &test.phases, test.scenario.is_some())?;
    let registration = systems::by_name(&test.system).map_err(|e| format!("--system: {e}"))?;
    (registration.validate)(test).map_err(|e| e.to_string())?;
    let faults = execute::fault_sets(test).map_err(|e| format!("--nemesis: {e}"))?;
    let any = |p| first_fault(&faults, p);
    check_environment(test, &faults)?;
    if any(FaultSpec::needs_clock).is_some() && !Path::new(LIBFAKETIME).exists() {
        return Err(format!("clock faults need libfaketime at {LIBFAKETIME} (scripts/setup.sh installs it)"));
    }
    if let Some(f) = any(FaultSpec::needs_disk)
        && let Some(why) = ordeal_faults::lazyfs::unavailable()
    {
        return Err(format!("--nemesis {f} keeps the data directories on lazyfs (FUSE), which cannot mount: {why}"));
    }
    if !matches!(test.nemesis_order.as_str(), "random" | "cycle") {
        return Err(format!("--nemesis-order {:?}: expected random or cycle", test.nemesis_order));
    }
    if any(FaultSpec::is_upgrade).is_some() && test.upgrade_binary.is_none() {
        return Err("upgrade faults need --to BIN, the build to move nodes to".into());
    }
    if any(FaultSpec::is_membership).is_some() && test.spare_nodes == 0 {
        return Err("membership faults need --spare-nodes N, places for the nodes that join".into());
    }
    if test.nodes + test.spare_nodes > 9 {
        return Err("--nodes and --spare-nodes together must be at most 9".into());
    }
    if test.fault_rounds.is_some() && test.nemesis_order != "cycle" {
        return Err("--fault-rounds needs --nemesis-order cycle".into());
    }
    // Zero rounds would end the main phase at once, and the run would verify next to nothing.
    if test.fault_rounds == Some(0) || (test.fault_rounds.is_some() && test.nemesis.is_empty()) {
        return Err("--fault-rounds needs at least one round of at least one fault".into());
    }
    if test.ops_per_key == 0 {
        return Err("--ops-per-key must be at least 1".into());
    }
    if test.nodes == 0 || test.nodes > 9 {
        return Err("--nodes must be between 1 and 9".into());
    }
    if test.concurrency == 0 || test.concurrency > 1000 {
        return Err("--concurrency must be between 1 and 1000".into());
    }
    for (flag, v) in [
        ("--time-limit", test.time_limit_s),
        ("--nemesis-interval", test.nemesis_interval_s),
        ("--fault-duration", test.fault_duration_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{flag} must be a positive number of seconds"));
        }
    }
    if !(test.rate.is_finite() && (test.rate == 0.0 || test.rate >= MIN_RATE)) {
        return Err(format!("--rate must be zero (unlimited) or at least {MIN_RATE} ops/s"));
    }
    if test.op_timeout_ms == 0 {
        return Err("--op-timeout-ms must be positive".into());
    }
    if test.election_ticks <= test.heartbeat_ticks || test.heartbeat_ticks == 0 || test.tick_ms == 0 {
        return Err("--election-ticks must exceed --heartbeat-ticks, and both and --tick-ms must be positive".into());
    }
    Ok(())
}

/// The first fault of `faults` for which `p` holds.
fn first_fault(faults: &[FaultSet], p: fn(&FaultSpec) -> bool) -> Option<&FaultSpec> {
    faults.iter().flat_map(|s| &s.0).find(|f| p(f))
}

/// Checks where the nodes run against the faults asked for: over SSH the harness drives
/// processes and cuts the network with nft, but has no namespace, clock or disk of the nodes'
/// to fault; and each node needs a host.
fn check_environment(test: &Test, faults: &[FaultSet]) -> Result<(), String> {
    let any = |p| first_fault(faults, p);
    let over_ssh = matches!(test.env.as_str(), "ssh" | "ssh-lab");
    if !over_ssh && !matches!(test.env.as_str(), "local" | "netns") {
        return Err(format!("env {:?}: expected local, netns, ssh or ssh-lab", test.env));
    }
    if test.env == "local"
        && let Some(f) = any(FaultSpec::needs_network)
    {
        return Err(format!("--nemesis {f} cuts the network, which needs --env netns"));
    }
    let host_faults = [FaultSpec::needs_namespace, FaultSpec::needs_clock, FaultSpec::needs_disk];
    if over_ssh && let Some(f) = host_faults.into_iter().find_map(any) {
        return Err(format!(
            "--nemesis {f}: over SSH the harness kills, pauses, restarts, upgrades, replaces and \
             partitions nodes, but does not yet delay or slow packets, move clocks or crash disks; use --env netns"
        ));
    }
    match (&test.ssh, test.env.as_str()) {
        (None, "ssh") => Err("--env ssh needs --ssh-hosts".into()),
        (Some(_), env) if env != "ssh" => Err("--ssh-hosts belongs to --env ssh".into()),
        (Some(ssh), _) => execute::ssh_hosts(ssh, test.nodes + test.spare_nodes).map(drop),
        (None, _) => Ok(()),
    }
}

/// The fault sets `--nemesis` names (`none` names none).
pub(super) fn fault_sets_named(args: &RunArgs) -> impl Iterator<Item = &str> {
    args.nemesis.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none")
}

/// The `--ssh-*` flags, when hosts are named; paths made absolute, so that `test.json` repeats
/// the run from any directory.
fn ssh_settings(args: &RunArgs) -> anyhow::Result<Option<SshHosts>> {
    if args.ssh_hosts.is_empty() {
        return Ok(None);
    }
    let absolute = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        Ok(p.as_deref().map(std::path::absolute).transpose()?.map(|p| p.display().to_string()))
    };
    Ok(Some(SshHosts {
        hosts: args.ssh_hosts.clone(),
        user: args.ssh_user.clone(),
        port: args.ssh_port,
        identity: absolute(&args.ssh_key)?,
        known_hosts: absolute(&args.ssh_known_hosts)?,
    }))
}

/// The test the flags describe, with the seed drawn.
fn resolve(args: &RunArgs) -> anyhow::Result<Test> {
    let workload = workload::by_name(&args.workload).map_err(|e| bad(format!("--workload: {e}")))?;
    let nemesis: Vec<String> = fault_sets_named(args).map(String::from).collect();
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11);
    let mut command: Vec<String> = std::env::args().collect();
    if args.seed.is_none() {
        command.push(format!("--seed={seed}"));
    }
    let name = format!("{}-{}", workload.name(), if nemesis.is_empty() { "none".into() } else { nemesis.join("+") });
    let name = if args.system == "broker" { name } else { format!("{}-{name}", args.system) };
    let mut test = Test {
        name,
        system: args.system.clone(),
        workload: workload.name().into(),
        nemesis,
        nemesis_order: args.nemesis_order.clone(),
        fault_rounds: args.fault_rounds,
        env: environment(&args.env)?,
        ssh: ssh_settings(args)?,
        nodes: args.nodes,
        groups: args.groups,
        concurrency: args.concurrency,
        rate: args.rate,
        time_limit_s: args.time_limit,
        seed,
        op_timeout_ms: args.op_timeout_ms,
        nemesis_interval_s: args.nemesis_interval,
        fault_duration_s: args.fault_duration,
        keys: args.keys.unwrap_or(workload.default_keys()),
        ops_per_key: args.ops_per_key,
        tick_ms: args.tick_ms,
        heartbeat_ticks: args.heartbeat_ticks,
        election_ticks: args.election_ticks,
        bugs: args.bug.clone(),
        etcd_reads: args.etcd_reads.clone(),
        broker_binary: String::new(),
        broker_version: String::new(),
        history_format: ordeal_history::FORMAT_VERSION,
        ordeal_version: env!("CARGO_PKG_VERSION").into(),
        command: command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "),
        started_at: String::new(),
        scenario: args.scenario.clone(),
        upgrade_binary: None,
        spare_nodes: args.spare_nodes.unwrap_or(0),
        snapshot_entries: args.snapshot_entries,
        phases: Vec::new(),
    };
    if let Some(to) = &args.to {
        if !to.is_file() {
            return Err(bad(format!("--to {}: no such file", to.display())));
        }
        test.upgrade_binary = Some(std::path::absolute(to)?.display().to_string());
    }
    match args.scenario.as_deref() {
        None if args.rollback => return Err(bad("--rollback belongs to --scenario rolling-upgrade")),
        None => {}
        Some("rolling-upgrade") => rolling_upgrade(&mut test, args.rollback),
        Some("learner-catchup") => learner_catchup(&mut test),
        Some(other) => return Err(bad(format!("--scenario {other:?}: expected rolling-upgrade or learner-catchup"))),
    }
    let membership = execute::fault_sets(&test).is_ok_and(|f| f.iter().any(|s| s.any(FaultSpec::is_membership)));
    if args.spare_nodes.is_none() && membership && test.spare_nodes == 0 {
        test.spare_nodes = 3;
    }
    Ok(test)
}

/// The learner-catchup preset: a `replace` (a fresh learner attached, caught up, promoted, an
/// old voter removed) before each of the other faults in turn, for `--fault-rounds` rounds
/// (default 2), with a spare place per replace and a log compacted early enough that every
/// learner needs a snapshot.
fn learner_catchup(test: &mut Test) {
    let rounds = *test.fault_rounds.get_or_insert(2);
    test.nemesis.insert(0, "replace".into());
    test.nemesis_order = "cycle".into();
    test.spare_nodes = test.spare_nodes.max(rounds);
    bound_rounds(test, rounds, REPLACE_BOUND_S);
    test.snapshot_entries.get_or_insert(LEARNER_SNAPSHOT_ENTRIES);
    test.name = format!("learner-catchup-{}", test.name);
}

/// The rounds end a preset's main phase; the time limit only bounds it, with room for
/// `fault_bound_s` of each fault's own steps beyond its interval and duration (a replace attaches,
/// catches up, promotes and removes; an upgrade restarts a node and waits for it to catch up), so
/// that a short `--time-limit` cannot cut every run of the preset short.
fn bound_rounds(test: &mut Test, rounds: usize, fault_bound_s: f64) {
    let faults = test.nemesis.len() as f64;
    let round_s = faults * (test.nemesis_interval_s + test.fault_duration_s + fault_bound_s);
    test.time_limit_s = test.time_limit_s.max(rounds as f64 * round_s);
}

/// What one fault of the learner-catchup preset may take beyond its interval and duration, for
/// the time limit that bounds the run.
const REPLACE_BOUND_S: f64 = 15.0;

/// What one fault of the rolling-upgrade preset may take beyond its interval and duration: an
/// upgrade step waits up to 30 s for the restarted node to catch up.
const UPGRADE_BOUND_S: f64 = 30.0;

/// The learner-catchup preset's `--snapshot-entries`: small, so that the log is compacted
/// before the first learner joins and it catches up from a snapshot.
const LEARNER_SNAPSHOT_ENTRIES: u64 = 100;

/// The rolling-upgrade preset: an `upgrade` step before each of the other faults in turn, as
/// many rounds as there are nodes (one more with a rollback), so the main phase ends once every
/// node runs the new build.
fn rolling_upgrade(test: &mut Test, rollback: bool) {
    test.nemesis.insert(0, "upgrade".into());
    if rollback {
        test.nemesis.insert(1, "rollback".into());
    }
    test.nemesis_order = "cycle".into();
    let rounds = test.nodes + usize::from(rollback);
    test.fault_rounds = Some(rounds);
    bound_rounds(test, rounds, UPGRADE_BOUND_S);
    test.name = format!("rolling-upgrade-{}", test.name);
}

/// Rolling-upgrade's builds when not given: B is the system's binary, A the same binary as its
/// previous release (a wrapper script in the store that sets `ORDEAL_BROKER_EMULATE_VERSION`).
fn upgrade_builds(args: &RunArgs, test: &mut Test, binary: PathBuf) -> anyhow::Result<PathBuf> {
    let to = match &test.upgrade_binary {
        Some(to) => PathBuf::from(to),
        None => binary.clone(),
    };
    test.upgrade_binary = Some(to.display().to_string());
    if args.from.is_some() {
        return Ok(binary);
    }
    let release = release_of(&to)?;
    if release < 2 {
        return Err(bad(format!(
            "--to {} is release {release}, which has no predecessor to emulate; pass --from",
            to.display()
        )));
    }
    let dir = args.store.join(".bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        to.hash(&mut h);
        h.finish() & 0xffff_ffff
    };
    let wrapper = dir.join(format!("ordeal-broker-release-{}-{tag:08x}", release - 1));
    let script = format!(
        "#!/bin/sh\n# {} behaving as release {} (ordeal run --scenario rolling-upgrade without --from)\nORDEAL_BROKER_EMULATE_VERSION={} exec {} \"$@\"\n",
        to.display(),
        release - 1,
        release - 1,
        shell_quote(&to.display().to_string())
    );
    std::fs::write(&wrapper, script).with_context(|| format!("writing {}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(wrapper)
}

/// The release a broker build names in `--version` (`... (release N; ...)`).
fn release_of(binary: &Path) -> anyhow::Result<u32> {
    let mut cmd = std::process::Command::new(binary);
    let out = output_within(cmd.arg("--version"), None, ANSWER_BOUND)
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("release ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{} does not name its release in --version ({:?}); pass --from BIN",
                binary.display(),
                text.trim()
            ))
        })
}

/// The test a `test.json` describes; its environment is re-resolved on this machine.
fn load(path: &Path) -> anyhow::Result<Test> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("--test {}: {e}", path.display())))?;
    let mut test: Test =
        serde_json::from_str(&text).map_err(|e| bad(format!("--test {}: not a test.json: {e}", path.display())))?;
    // The run writes this build's format, whatever the test it repeats recorded.
    test.history_format = ordeal_history::FORMAT_VERSION;
    test.env = environment(&test.env)?;
    Ok(test)
}

/// The system's binary: --broker, else the one the test recorded if it still exists, else the
/// system's own search.
fn binary(args: &RunArgs, test: &Test) -> anyhow::Result<PathBuf> {
    if let Some(b) = args.from.as_ref().or(args.broker.as_ref()) {
        return if b.is_file() {
            Ok(std::path::absolute(b)?)
        } else {
            Err(bad(format!("--broker/--from {}: no such file", b.display())))
        };
    }
    let recorded = PathBuf::from(&test.broker_binary);
    if args.test.is_some() && recorded.is_file() {
        return Ok(recorded);
    }
    let registration = systems::by_name(&test.system).map_err(|e| bad(e.to_string()))?;
    (registration.find_binary)().ok_or_else(|| {
        anyhow::anyhow!("cannot find the {} binary beside ordeal or on PATH; pass --broker", test.system)
    })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The test and the options to run it with, from flags or a `test.json`, with `phases` when
/// given (a suite entry's): checked, the binary found, nothing started.
pub fn prepare(args: &RunArgs, phases: &[Phase]) -> anyhow::Result<(Test, Options)> {
    let mut test = match &args.test {
        Some(path) => load(path)?,
        None => resolve(args)?,
    };
    set_phases(&mut test, phases);
    let mut binary = binary(args, &test)?;
    if args.test.is_none() && test.scenario.as_deref() == Some("rolling-upgrade") {
        binary = upgrade_builds(args, &mut test, binary)?;
    }
    validate(&test).map_err(bad)?;
    test.broker_binary = binary.display().to_string();
    test.started_at = chrono::Utc::now().to_rfc3339();
    let opts = Options {
        store: args.store.clone(),
        keep_data: args.keep_data,
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    Ok((test, opts))
}

/// Runs a test from flags, or from a `test.json`.
pub fn run(args: RunArgs) -> anyhow::Result<Outcome> {
    let (test, opts) = prepare(&args, &[])?;
    let dir = execute::run_test(test, &opts)?;
    let results = super::report::write_all(&dir).context("analysing the run")?;
    print_outcome(&dir, &results);
    if let Some(e) = results.run.as_ref().and_then(|r| r.harness_error.as_ref()) {
        anyhow::bail!("the run failed: {e} (partial results in {})", dir.display());
    }
    Ok(super::report::outcome(&results))
}

fn print_outcome(dir: &Path, r: &ordeal_reports::results::Results) {
    say!("{}: {}", r.verdict.to_string().to_uppercase(), r.reason);
    for c in &r.checkers {
        say!("  {:<16} {:<8} {}", c.name, c.verdict.to_string(), c.summary);
    }
    for d in &r.defects {
        say!("  {d}");
    }
    let s = &r.stats.total;
    say!("  ops: {} ok, {} fail, {} info ({:.0}/s)", s.ok, s.fail, s.info, r.stats.throughput_per_s);
    if r.failover.faults > 0 {
        let gap = |v: Option<f64>| ordeal_reports::shown(v, 0, " ms");
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
    let outcome = run(*run_args)?;
    say!("\nEverything about this run is in {store}/latest/ (open report.html in a browser).");
    Ok(outcome)
}
