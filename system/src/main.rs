//! `ordeal-broker`: run a node (`serve`), or talk to one (`status`, `produce`, `fetch`, `put`,
//! `get`, `cas`, `commit-offsets`, `list-offsets`, `transfer-leader`), or change a group's
//! membership (`add-learner`, `promote`, `remove-node`, `members`).
//!
//! Exit codes: 0 success; 1 the request was refused or no node answered (it did not take
//! effect); 2 the outcome is unknown; 254 bad arguments; 255 the node failed.

use clap::{Args, Parser, Subcommand};
use ordeal_system::certs::NodeFiles;
use ordeal_system::client::{Client, ClientError, ClientOptions};
use ordeal_system::config::{Bug, MembershipConfig, NodeConfig, RaftTiming, parse_peers};
use ordeal_system::pb::broker::PartitionOffset;
use ordeal_system::version::Release;
use ordeal_system::{peer_auth, storage};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A Raft-replicated log, key-value and consumer-offset store.
#[derive(Parser)]
#[command(name = "ordeal-broker", version = ordeal_system::version::LONG_VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(Box<ServeArgs>),
    /// Print a node's view of its raft groups.
    Status(Target),
    /// Append a record to a partition; prints its offset.
    Produce {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        at: Partition,
        /// The record's key.
        #[arg(long, default_value = "")]
        key: String,
        /// Idempotent producer id (with --sequence).
        #[arg(long, requires = "sequence")]
        producer_id: Option<u64>,
        #[arg(long)]
        sequence: Option<u64>,
        /// The record's value.
        value: String,
    },
    /// Read records of a partition from an offset on.
    Fetch {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        at: Partition,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        max: u32,
    },
    /// Write a register.
    Put {
        #[command(flatten)]
        target: Target,
        key: String,
        value: String,
    },
    /// Read a register.
    Get {
        #[command(flatten)]
        target: Target,
        key: String,
    },
    /// Compare-and-set a register: write VALUE if it holds --expected (or is absent, --absent).
    Cas {
        #[command(flatten)]
        target: Target,
        key: String,
        #[arg(long, conflicts_with = "absent", required_unless_present = "absent")]
        expected: Option<String>,
        #[arg(long)]
        absent: bool,
        value: String,
    },
    /// Commit a consumer group's offset for one partition.
    CommitOffsets {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        group: String,
        #[command(flatten)]
        at: Partition,
        #[arg(long)]
        offset: u64,
    },
    /// List a consumer group's committed offsets.
    ListOffsets {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        group: String,
    },
    /// Ask the node at --addr (the leader of --group) to hand leadership to --to.
    TransferLeader {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 0)]
        group: u32,
        #[arg(long)]
        to: u64,
        #[arg(long, env = "ORDEAL_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Add node --id, listening at --node-addr, as a learner of --group.
    AddLearner {
        #[command(flatten)]
        member: MemberTarget,
        /// The new node's gRPC address (HOST:PORT); it must answer there as node --id.
        #[arg(long)]
        node_addr: String,
    },
    /// Make learner --id a voter of --group, once it has caught up.
    Promote {
        #[command(flatten)]
        member: MemberTarget,
        /// The learner must have applied at least this index (and be within the leader's
        /// --max-promote-lag of its commit index).
        #[arg(long, required_unless_present = "skip_catch_up_check")]
        min_applied_index: Option<u64>,
        /// Promote without checking that the learner caught up.
        #[arg(long, conflicts_with = "min_applied_index")]
        skip_catch_up_check: bool,
    },
    /// Remove node --id (voter or learner) from --group.
    RemoveNode {
        #[command(flatten)]
        member: MemberTarget,
    },
    /// List --group's voters and learners with their progress.
    Members {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 0)]
        group: u32,
        #[arg(long, env = "ORDEAL_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
}

/// A membership change's target: any node of the cluster (the call follows leader hints), the
/// group and the node changed.
#[derive(Args)]
struct MemberTarget {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 0)]
    group: u32,
    /// The node to add, promote or remove.
    #[arg(long)]
    id: u64,
    #[arg(long, env = "ORDEAL_ADMIN_TOKEN")]
    admin_token: Option<String>,
}

/// A topic partition.
#[derive(Args)]
struct Partition {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The partition.
    #[arg(long, default_value_t = 0)]
    partition: u32,
}

#[derive(Args)]
struct Target {
    /// The node to contact (host:port). Repeat it, or give a comma-separated list, to let the
    /// client follow leader hints across nodes.
    #[arg(long, required = true, value_delimiter = ',')]
    addr: Vec<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
    /// Give up after this many milliseconds (retries included).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(Args)]
struct ServeArgs {
    /// This node's id (positive, unique).
    #[arg(long)]
    id: u64,
    /// gRPC address to listen on (clients, admin and peers).
    #[arg(long)]
    listen: SocketAddr,
    /// HTTP address for /v1/status and /metrics.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Every initial voter: ID=ADDR,ID=ADDR,... including this node. With --join, only an
    /// address book: this node itself and at least one member to answer.
    #[arg(long)]
    peers: String,
    /// Start without membership and wait to be added (`add-learner`) by the cluster's leader.
    #[arg(long, env = "ORDEAL_BROKER_JOIN")]
    join: bool,
    /// This node means to stay a learner: if it finds itself a voter (in any group) it logs an
    /// error and counts it (`ordeal_learner_found_voter_total`) once per start, and keeps running.
    #[arg(long, env = "ORDEAL_BROKER_JOIN_AS_LEARNER")]
    join_as_learner: bool,
    /// As leader: promote a learner only within this many entries of the commit index.
    #[arg(long, default_value_t = 1000, env = "ORDEAL_BROKER_MAX_PROMOTE_LAG")]
    max_promote_lag: u64,
    /// Compact the raft log once it holds this many applied entries; peers further behind
    /// catch up from a snapshot.
    #[arg(long, default_value_t = 10_000, env = "ORDEAL_BROKER_SNAPSHOT_ENTRIES")]
    snapshot_entries: u64,
    /// ... or once the entries appended since the last compaction reach this many bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, env = "ORDEAL_BROKER_SNAPSHOT_BYTES")]
    snapshot_bytes: u64,
    /// Pace snapshots to this many MB a second of file (written while making one, sent while
    /// sending one), so that the node's own load keeps the CPU and disk; 0: unpaced.
    #[arg(long, default_value_t = ordeal_system::config::DEFAULT_SNAPSHOT_MAX_MB_PER_S, env = "ORDEAL_BROKER_SNAPSHOT_MAX_MB_PER_S")]
    snapshot_max_mb_per_s: u64,
    /// Where RocksDB keeps this node's data.
    #[arg(long)]
    data_dir: PathBuf,
    /// Number of raft groups (shards).
    #[arg(long, default_value_t = 1)]
    groups: u32,
    /// Length of one raft tick.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Heartbeat interval, in ticks.
    #[arg(long, default_value_t = 1)]
    heartbeat_ticks: usize,
    /// Minimum election timeout, in ticks.
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    /// Maximum election timeout, in ticks (default twice the minimum).
    #[arg(long, default_value_t = 0)]
    max_election_ticks: usize,
    /// fsync the raft log before acknowledging (`--sync false` for throwaway clusters).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync: bool,
    /// Largest record (key plus value) in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_record_bytes: usize,
    /// Require this token on admin calls.
    #[arg(long, env = "ORDEAL_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// How long a request may wait to be applied before its outcome is reported unknown.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Enable a deliberate bug (for testing the tester).
    #[arg(long, value_enum)]
    bug: Vec<Bug>,
    /// Behave as release N (formats written and read, peer protocol, features), to test an
    /// upgrade from the previous release with this one binary.
    #[arg(long, env = "ORDEAL_BROKER_EMULATE_VERSION")]
    emulate_version: Option<u32>,
    /// The cluster CA's certificate (PEM): with --tls-cert and --tls-key, peers authenticate
    /// each other with mutual TLS (docs/broker.md "Peer authentication").
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), issued by the cluster CA for its id.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Log filter (`RUST_LOG` syntax).
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(254) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordeal-broker: cannot start the runtime: {e}");
            return ExitCode::from(255);
        }
    };
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log);
            fail_stop_on_panic();
            let config = node_config(*args);
            // A setting that cannot work is bad input (254), said once, before anything starts.
            if let Err(e) = config.validate() {
                eprintln!("ordeal-broker: {e}");
                return ExitCode::from(254);
            }
            let result = runtime.block_on(ordeal_system::server::run(config));
            // Dropping the runtime drops every task's handle on the database, so RocksDB closes
            // before the process exits.
            runtime.shutdown_timeout(Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once: the log goes to stderr too.
                    eprintln!("ordeal-broker: {e:#}");
                    // Another node's data directory is a setting that cannot work, as a bad flag is.
                    let wrong_node =
                        e.chain().any(|c| matches!(c.downcast_ref(), Some(storage::StorageError::WrongNode { .. })));
                    // So is a credential file that does not load.
                    let bad_credentials = e.chain().any(|c| c.downcast_ref::<peer_auth::TlsError>().is_some());
                    ExitCode::from(if wrong_node || bad_credentials { 254 } else { 255 })
                }
            }
        }
        command => runtime.block_on(client_command(command)),
    }
}

/// A panic anywhere in a serving node stops the process (exit code 70, as a storage error does):
/// raft-rs panics on a message it cannot accept, and a node whose raft loop died must not keep
/// answering status and requests with the state it last had.
fn fail_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!("panicked, stopping the node: {info}");
        std::process::exit(70);
    }));
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).init();
}

/// Exits on a flag whose value cannot be used: the message, and 254 (bad arguments).
fn bad_flag(what: impl std::fmt::Display) -> ! {
    eprintln!("ordeal-broker: {what}");
    std::process::exit(254)
}

fn node_config(a: ServeArgs) -> NodeConfig {
    let peers = parse_peers(&a.peers).unwrap_or_else(|e| bad_flag(format!("--peers: {e}")));
    let release = match a.emulate_version.map(Release::emulate) {
        None => Release::current(),
        Some(r) => r.unwrap_or_else(|e| bad_flag(e)),
    };
    // Absolute: a snapshot install's marker names its file by this path, and a restart from
    // another working directory must find it.
    let data_dir = std::path::absolute(&a.data_dir)
        .unwrap_or_else(|e| bad_flag(format!("--data-dir {}: {e}", a.data_dir.display())));
    NodeConfig {
        id: a.id,
        listen: a.listen,
        http: a.http,
        peers,
        data_dir,
        groups: a.groups,
        timing: RaftTiming {
            tick: Duration::from_millis(a.tick_ms),
            heartbeat_ticks: a.heartbeat_ticks,
            election_ticks: a.election_ticks,
            max_election_ticks: a.max_election_ticks,
        },
        sync: ordeal_system::seeded::syncs_log(a.sync, &a.bug.iter().copied().collect()),
        max_record_bytes: a.max_record_bytes,
        admin_token: a.admin_token,
        request_timeout: Duration::from_millis(a.request_timeout_ms),
        bugs: a.bug.into_iter().collect(),
        membership: MembershipConfig {
            join: a.join,
            join_as_learner: a.join_as_learner,
            max_promote_lag: a.max_promote_lag,
            snapshot_entries: a.snapshot_entries,
            snapshot_bytes: a.snapshot_bytes,
            snapshot_max_bytes_per_s: a.snapshot_max_mb_per_s.saturating_mul(1_000_000),
        },
        release,
        tls: match (a.tls_ca, a.tls_cert, a.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(NodeFiles { ca, cert, key }),
            // clap requires all three or none.
            _ => None,
        },
    }
}

async fn client(target: &Target, admin_token: Option<String>) -> Client {
    let deadline = Duration::from_millis(target.timeout_ms);
    let opts = ClientOptions { deadline, attempt_timeout: deadline, admin_token, ..Default::default() };
    Client::from_addresses(&target.addr, opts).await
}

/// The node named first by `--addr`.
fn first(c: &Client) -> u64 {
    c.node_ids().first().copied().unwrap_or_default()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn client_command(command: Command) -> ExitCode {
    let (result, json) = match command {
        Command::Serve(_) => unreachable!("handled in main"),
        Command::Status(t) => {
            let c = client(&t, None).await;
            (c.status(first(&c)).await.map(|s| serde_json::to_value(s).unwrap_or_default()), t.json)
        }
        Command::Produce { target, at: Partition { topic, partition }, key, producer_id, sequence, value } => {
            let c = client(&target, None).await;
            let idem = producer_id.zip(sequence);
            let r = c.produce(&topic, partition, key.as_bytes(), value.as_bytes(), idem).await;
            (r.map(|a| json!({"offset": a.value.offset, "duplicate": a.value.duplicate, "node": a.node})), target.json)
        }
        Command::Fetch { target, at: Partition { topic, partition }, from, max } => {
            let c = client(&target, None).await;
            let r = c.fetch(&topic, partition, from, max).await.map(|a| {
                let records: Vec<_> = a
                    .value
                    .records
                    .iter()
                    .map(|r| json!({"offset": r.offset, "key": text(&r.key), "value": text(&r.value), "timestamp_ms": r.timestamp_ms}))
                    .collect();
                json!({"records": records, "high_watermark": a.value.high_watermark})
            });
            (r, target.json)
        }
        Command::Put { target, key, value } => {
            let c = client(&target, None).await;
            (c.put(key.as_bytes(), value.as_bytes()).await.map(|_| json!({"ok": true})), target.json)
        }
        Command::Get { target, key } => {
            let c = client(&target, None).await;
            let r = c.get(key.as_bytes()).await.map(|a| match a.value {
                Some(v) => json!({"found": true, "value": text(&v)}),
                None => json!({"found": false}),
            });
            (r, target.json)
        }
        Command::Cas { target, key, expected, absent: _, value } => {
            let c = client(&target, None).await;
            let r = c.cas(key.as_bytes(), expected.as_deref().map(str::as_bytes), value.as_bytes()).await;
            (r.map(|_| json!({"ok": true})), target.json)
        }
        Command::CommitOffsets { target, group, at: Partition { topic, partition }, offset } => {
            let c = client(&target, None).await;
            let r = c.commit_offsets(&group, vec![PartitionOffset { topic, partition, offset }]).await;
            (r.map(|_| json!({"ok": true})), target.json)
        }
        Command::ListOffsets { target, group } => {
            let c = client(&target, None).await;
            let r = c.list_committed_offsets(&group).await.map(|a| {
                let offsets: Vec<_> = a
                    .value
                    .iter()
                    .map(|o| json!({"topic": o.topic, "partition": o.partition, "offset": o.offset}))
                    .collect();
                json!({ "offsets": offsets })
            });
            (r, target.json)
        }
        Command::TransferLeader { target, group, to, admin_token } => {
            let c = client(&target, admin_token).await;
            (c.transfer_leader(first(&c), group, to).await.map(|()| json!({"ok": true})), target.json)
        }
        Command::AddLearner { member: m, node_addr } => {
            let c = client(&m.target, m.admin_token.clone()).await;
            (c.add_learner(m.group, m.id, &node_addr).await.map(|r| membership_json(&r)), m.target.json)
        }
        Command::Promote { member: m, min_applied_index, skip_catch_up_check } => {
            let c = client(&m.target, m.admin_token.clone()).await;
            let r = c.promote(m.group, m.id, min_applied_index.unwrap_or(0), skip_catch_up_check).await;
            (r.map(|r| membership_json(&r)), m.target.json)
        }
        Command::RemoveNode { member: m } => {
            let c = client(&m.target, m.admin_token.clone()).await;
            (c.remove_node(m.group, m.id).await.map(|r| membership_json(&r)), m.target.json)
        }
        Command::Members { target, group, admin_token } => {
            let c = client(&target, admin_token).await;
            (c.members(group).await.map(|r| members_json(&r)), target.json)
        }
    };
    match result {
        Ok(v) => {
            if json {
                println!("{v}");
            } else {
                println!("{}", human(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => report(e, json),
    }
}

fn membership_json(r: &ordeal_system::pb::broker::MembershipResponse) -> serde_json::Value {
    json!({"voters": r.voters, "learners": r.learners, "index": r.index})
}

fn members_json(r: &ordeal_system::pb::broker::MembersResponse) -> serde_json::Value {
    let members: Vec<_> = r
        .members
        .iter()
        .map(|m| {
            json!({"id": m.id, "address": m.address, "role": if m.is_learner { "learner" } else { "voter" },
                "match_index": m.match_index, "applied_index": m.applied_index, "reachable": m.reachable,
                "progress": m.progress_state})
        })
        .collect();
    json!({"group": r.group, "leader": r.leader_id, "commit_index": r.commit_index, "members": members})
}

fn human(v: &serde_json::Value) -> String {
    if let Some(offset) = v.get("offset") {
        return format!("offset {offset}");
    }
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn report(e: ClientError, json: bool) -> ExitCode {
    let definite = e.is_definite();
    if json {
        println!("{}", json!({"error": e.to_string(), "definite": definite}));
    }
    eprintln!("ordeal-broker: {e}");
    ExitCode::from(if definite { 1 } else { 2 })
}
