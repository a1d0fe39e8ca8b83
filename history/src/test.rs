//! The description of a test run, as stored in `test.json`: everything needed to understand and
//! reproduce it.

use serde::{Deserialize, Serialize};

/// A test's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// The test's name: `<workload>-<nemeses>`.
    pub name: String,
    /// The system under test: `broker` or `etcd`.
    #[serde(default = "broker")]
    pub system: String,
    /// `register` or `log`.
    pub workload: String,
    /// Fault kinds the nemesis draws from, e.g. `kill-leader`, `pause`, or sets of faults that
    /// run together, `partition-halves+kill-follower`.
    pub nemesis: Vec<String>,
    /// `random` (drawn from the seed) or `cycle` (in turn).
    #[serde(default = "random")]
    pub nemesis_order: String,
    /// With `cycle`: the main phase ends once every fault ran and healed this many times; the
    /// time limit only bounds it.
    #[serde(default)]
    pub fault_rounds: Option<usize>,
    /// Where the nodes run: `local` (processes on 127.0.0.1).
    pub env: String,
    /// Number of broker nodes.
    pub nodes: usize,
    /// Raft groups per node.
    pub groups: u32,
    /// Concurrent client processes.
    pub concurrency: usize,
    /// Total client operations per second, at most.
    pub rate: f64,
    /// Length of the main phase, in seconds.
    pub time_limit_s: f64,
    /// The seed of every random choice.
    pub seed: u64,
    /// Per-operation timeout, in milliseconds.
    pub op_timeout_ms: u64,
    /// Seconds of quiet between faults.
    pub nemesis_interval_s: f64,
    /// Seconds each fault lasts before it is healed.
    pub fault_duration_s: f64,
    /// Keys (register) or partitions (log) the workload spreads over.
    pub keys: usize,
    /// Operations per key before the register workload moves to a fresh key.
    #[serde(default = "ops_per_key")]
    pub ops_per_key: usize,
    /// Raft timing of the nodes: tick, heartbeat and election timeout in milliseconds.
    pub tick_ms: u64,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Minimum election timeout in ticks.
    pub election_ticks: usize,
    /// Deliberate broker bugs enabled for this run.
    pub bugs: Vec<String>,
    /// etcd only: `linearizable` reads (the default) or `serializable` ones, served from the
    /// member's local state (known to be stale under partitions).
    #[serde(default = "linearizable")]
    pub etcd_reads: String,
    /// The system's binary that ran (`ordeal-broker`, `etcd`).
    pub broker_binary: String,
    /// The version the system reported.
    pub broker_version: String,
    /// The harness's version.
    pub ordeal_version: String,
    /// The command line that reproduces the run.
    pub command: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
}

fn broker() -> String {
    "broker".into()
}

fn random() -> String {
    "random".into()
}

fn linearizable() -> String {
    "linearizable".into()
}

/// The register workload's default before `ops_per_key` was recorded.
fn ops_per_key() -> usize {
    200
}
