//! Flags as typed: a plain clap-derived structure, with no side effects while parsing.

use crate::exit::Outcome;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The README's exit-code table in one line, under every command's help.
const EXIT_CODES: &str =
    "Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments or input, 255 the harness failed.";

/// A Jepsen-style verification harness for a Raft-replicated message broker.
///
/// Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments or input, 255 harness failure.
#[derive(Debug, Parser)]
#[command(
    name = "ordeal",
    version,
    about,
    long_about = None,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Log verbosity for the harness itself (error, warn, info, debug, trace); `RUST_LOG` wins.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a test: start a cluster, drive a workload under faults, check it, write a report.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Check recorded histories for linearizability (native JSONL, Jepsen EDN, etcd logs,
    /// Porcupine kv logs).
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Convert a history to another tool's format (EDN for Knossos and Elle, or JSON Lines).
    #[command(after_help = EXIT_CODES)]
    Export(ExportArgs),
    /// Regenerate report.html, results.json, junit.xml and summary.md from a run directory.
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
    /// Browse the run store over HTTP.
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
    /// Remove what a hard-killed run left behind: broker processes, namespaces, rules.
    #[command(after_help = EXIT_CODES)]
    Cleanup(CleanupArgs),
    /// The README's main job: a short register test with leader kills on a local 3-node cluster.
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
    /// Run a suite of tests (a matrix of `ordeal run` flags × seeds, each with the verdict it
    /// expects) and write one index, one JUnit file and one exit code for the whole suite.
    #[command(after_help = EXIT_CODES)]
    Suite(SuiteArgs),
    /// Is the candidate build safe to ship after the baseline? Runs a suite against both (a
    /// rolling-upgrade case from the baseline to each; a case may not name a build itself) and
    /// fails on any contradicted verdict or a regression of write gap, faults without writes
    /// after, p99 latency or acknowledged throughput; a figure the baseline lacks is undecided.
    #[command(after_help = EXIT_CODES)]
    Gate(GateArgs),
    /// Explore a model of the broker's protocol exhaustively within bounds (stateright) and say
    /// whether its safety properties hold in every reachable state; `--bug` switches one rule
    /// off to see the counterexample it allows.
    #[command(after_help = EXIT_CODES)]
    Model(ModelArgs),
}

/// Flags of `ordeal run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run the test a `test.json` describes (e.g. `store/latest/test.json`): same system,
    /// workload, faults and seed. Only --store, --keep-data, --no-progress and --broker apply
    /// beside it.
    #[arg(long, value_name = "TEST.JSON")]
    pub test: Option<PathBuf>,
    /// A preset: `rolling-upgrade` moves every node, one at a time (followers first, the leader
    /// last), from the --from build to the --to build while the workload and the --nemesis
    /// faults run; the main phase ends once every node runs --to. `learner-catchup` replaces a
    /// voter by a fresh learner (attached, caught up through a snapshot, promoted under the
    /// gate) before each of the --nemesis faults in turn, --fault-rounds times (default 2), and
    /// tries one premature promote that must be refused.
    #[arg(long)]
    pub scenario: Option<String>,
    /// rolling-upgrade: the build the nodes start on (default: the --to build emulating its
    /// previous release, `--emulate-version`).
    #[arg(long, value_name = "BIN")]
    pub from: Option<PathBuf>,
    /// rolling-upgrade (or any `upgrade` fault): the build the nodes move to (rolling-upgrade's
    /// default: as --broker).
    #[arg(long, value_name = "BIN")]
    pub to: Option<PathBuf>,
    /// rolling-upgrade: after the first node moved, move it back to the --from build once (a
    /// later step moves it forward again).
    #[arg(long)]
    pub rollback: bool,
    /// The system under test: `broker` (ordeal-broker) or `etcd` (etcd 3.4, from Debian's
    /// etcd-server).
    #[arg(long, default_value = "broker")]
    pub system: String,
    /// The workload: `register` (read/write/cas over many keys) or `log` (produce, fetch,
    /// commit and list offsets on a few partitions).
    #[arg(long, default_value = "register")]
    pub workload: String,
    /// Faults to inject, comma-separated (`none` for none): kill, kill-leader, kill-follower,
    /// kill-minority, kill-majority, kill-all, pause, pause-leader, pause-follower, ...,
    /// terminate, terminate-leader, transfer-leader, partitions, loss, delay, slow, clock faults,
    /// membership changes (add-learner, promote, remove, replace).
    /// A leader fault may name its group (`kill-leader@2`, `kill-leader@all`); faults joined by
    /// `+` run at the same time (`partition-halves+kill-follower`).
    #[arg(long, default_value = "none")]
    pub nemesis: String,
    /// Broker nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Raft groups per node.
    #[arg(long, default_value_t = 1)]
    pub groups: u32,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Total client operations per second (0: as fast as the clients go).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of the main phase.
    #[arg(long, default_value_t = 30.0)]
    pub time_limit: f64,
    /// Seed of every random choice (default: drawn, and recorded in test.json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per-operation timeout in milliseconds; an op that takes longer completes `info`.
    #[arg(long, default_value_t = 1000)]
    pub op_timeout_ms: u64,
    /// Take the faults of --nemesis in turn (`cycle`) instead of at random (`random`).
    #[arg(long, default_value = "random")]
    pub nemesis_order: String,
    /// With `--nemesis-order cycle`: end the main phase once every fault has run and healed
    /// this many times; --time-limit then only bounds the run (reaching it first is an error).
    #[arg(long)]
    pub fault_rounds: Option<usize>,
    /// Places for nodes that join (membership faults); default: 3 when a membership fault is
    /// named, else none.
    #[arg(long)]
    pub spare_nodes: Option<usize>,
    /// Broker: compact the raft log after this many entries, so that joining nodes catch up
    /// from a snapshot (default: the broker's own).
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// Seconds of quiet before each fault.
    #[arg(long, default_value_t = 3.0)]
    pub nemesis_interval: f64,
    /// Seconds each fault lasts before it is healed.
    #[arg(long, default_value_t = 3.0)]
    pub fault_duration: f64,
    /// Keys in use at a time (register) or partitions (log).
    #[arg(long)]
    pub keys: Option<usize>,
    /// Operations per key before the register workload moves to a fresh key.
    #[arg(long, default_value_t = 200)]
    pub ops_per_key: usize,
    /// Where nodes run: `netns` (each node in its own network namespace, so the network can be
    /// cut; rootless when not root), `local` (processes on 127.0.0.1), or `auto`: netns where
    /// available, else local. `ssh`: each node on a host of `--ssh-hosts`, driven over SSH;
    /// `ssh-lab`: the same on this machine, over an `sshd` in each node's namespace (root).
    #[arg(long, default_value = "auto")]
    pub env: String,
    /// With `--env ssh`: the hosts' IP addresses, one per node, then one per spare node.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub ssh_hosts: Vec<String>,
    /// With `--env ssh`: the user to log in as.
    #[arg(long, default_value = "root")]
    pub ssh_user: String,
    /// With `--env ssh`: the hosts' SSH port.
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    /// With `--env ssh`: the private key to log in with (default: the user's own keys).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// With `--env ssh`: the known-hosts file the hosts' keys must be in (default: the user's).
    #[arg(long, value_name = "FILE")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Raft tick of the nodes, in milliseconds (the harness runs fast settings).
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Heartbeat interval, in ticks.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_ticks: usize,
    /// Minimum election timeout, in ticks.
    #[arg(long, default_value_t = 50)]
    pub election_ticks: usize,
    /// Start the brokers with a deliberate bug (stale-reads, no-dedupe, ack-before-commit,
    /// offset-before-commit, local-offsets), to see the harness catch it.
    #[arg(long)]
    pub bug: Vec<String>,
    /// etcd only: `linearizable` reads (Range through the leader's read index) or
    /// `serializable` ones (served from the member's local state: known to be stale under
    /// partitions, for seeing the harness catch it).
    #[arg(long, default_value = "linearizable")]
    pub etcd_reads: String,
    /// The system's binary (default: `ordeal-broker` beside `ordeal`, then on PATH; `etcd` on
    /// PATH).
    #[arg(long)]
    pub broker: Option<PathBuf>,
    /// The run store.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Keep the nodes' data directories after the run.
    #[arg(long)]
    pub keep_data: bool,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
}

/// Flags of `ordeal check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The sequential model: register, cas-register, multi-register, kv, log or mutex. Needed
    /// unless the file states it (an `ordeal export` does).
    #[arg(long)]
    pub model: Option<String>,
    /// The files' format: auto, jsonl, edn (Knossos/Jepsen), etcd (Jepsen console log) or
    /// porcupine (kv log).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// The registers' initial value as JSON (`null`: absent). Default per format: 0 for EDN, ""
    /// for Porcupine kv, absent otherwise; what an `ordeal export` states.
    #[arg(long)]
    pub init: Option<String>,
    /// Give up with `unknown` after this many seconds per file.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Give up with `unknown` when the checker's resident memory (measured) would exceed this many MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: usize,
    /// Check every partition and report every illegal one, instead of stopping at the first.
    #[arg(long)]
    pub all: bool,
    /// Print one JSON line per file instead of text: `file`, `format`, `read_ms`, `report` and
    /// `error` (null, or why the file has no report). Several files: the exit code is the most
    /// severe: 1 if any is invalid, else 254 if any is unreadable, else 2 if any is unknown.
    #[arg(long)]
    pub json: bool,
    /// Decide every partition by the search alone, never by the version order (to compare them).
    #[arg(long)]
    pub search_only: bool,
    /// History files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Flags of `ordeal export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The input's format (as for `check`).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// The output format: edn (Knossos/Elle) or jsonl.
    #[arg(long, default_value = "edn")]
    pub to: String,
    /// The model an EDN export states it is checked with (default: log for a history of
    /// appends, else kv).
    #[arg(long)]
    pub model: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The history to convert.
    pub file: PathBuf,
}

/// Flags of `ordeal report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run directory, e.g. `store/latest`.
    pub run_dir: PathBuf,
}

/// Flags of `ordeal serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The run store to browse.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
}

/// Flags of `ordeal cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The run store whose runs to clean up after.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Also delete the nodes' data directories of finished runs.
    #[arg(long)]
    pub data: bool,
}

/// Flags of `ordeal demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The run store to write into.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Seconds of the main phase.
    #[arg(long, default_value_t = 30.0)]
    pub time_limit: f64,
}

/// Flags of `ordeal model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model: `membership` (learners, gated promotion, removal, one change at a time).
    #[arg(default_value = "membership")]
    pub name: String,
    /// Switch one rule off: `count-learners` (a learner's copy counts toward the majority),
    /// `no-gate` (promote however far behind), `no-pending-check` (a change while the last one
    /// is unapplied), `early-change` (a new leader's change before its first entry applies).
    #[arg(long)]
    pub bug: Option<String>,
    /// Nodes in all (at most 8): the first --voters start as voters, the others outside.
    #[arg(long, default_value_t = 4)]
    pub nodes: u8,
    /// Nodes that start as voters.
    #[arg(long, default_value_t = 3)]
    pub voters: u8,
    /// No term goes past this (terms bound the elections explored).
    #[arg(long, default_value_t = 2)]
    pub max_term: u8,
    /// No log grows past this many entries.
    #[arg(long, default_value_t = 4)]
    pub max_log: u8,
    /// Give up with `unknown` after about this many states generated (repeats included; each
    /// distinct state is generated several times). Memory grows by a few hundred bytes per
    /// distinct state.
    #[arg(long, default_value_t = 500_000_000)]
    pub max_states: usize,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `ordeal suite`.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// The suite file (TOML; see docs/suites.md), e.g. `suites/detection.toml`.
    pub file: PathBuf,
    /// Run only the first seed of each entry.
    #[arg(long)]
    pub quick: bool,
    /// Continue the suite in this directory (`store/suites/<name>/<time>`): cases that already
    /// have a verdict are not run again.
    #[arg(long, value_name = "SUITE_DIR")]
    pub resume: Option<PathBuf>,
    /// The run store.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// Flags of `ordeal gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The build shipped today (the system's binary, e.g. the last release's `ordeal-broker`).
    #[arg(long, value_name = "BIN")]
    pub baseline: PathBuf,
    /// The build to ship.
    #[arg(long, value_name = "BIN")]
    pub candidate: PathBuf,
    /// The suite to run against both (its `[gate]` table sets the thresholds).
    #[arg(long, value_name = "FILE.toml")]
    pub suite: PathBuf,
    /// Run only the first seed of each entry.
    #[arg(long)]
    pub quick: bool,
    /// The run store.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// Parses the command line. Help and version print and exit 0; any other parse error prints
/// clap's message and exits 254, Jepsen's code for bad arguments.
pub fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() { Outcome::BadInput.exit_code() } else { ExitCode::SUCCESS }
    })
}

/// Logs go to stderr so that stdout stays machine-readable (`--json`).
pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
