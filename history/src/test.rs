//! The description of a test run, as stored in `test.json`: everything needed to understand and
//! reproduce it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The hosts of an `ssh` run (Jepsen's nodes, seen from its control node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshHosts {
    /// One address per node, in order, then one per spare node.
    pub hosts: Vec<String>,
    /// The user to log in as.
    pub user: String,
    /// The hosts' SSH port.
    pub port: u16,
    /// The private key to log in with; the user's own keys when `None`.
    #[serde(default)]
    pub identity: Option<String>,
    /// The known-hosts file the hosts' keys must be in; the user's own when `None`.
    #[serde(default)]
    pub known_hosts: Option<String>,
}

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
    /// Where the nodes run: `local` (processes on 127.0.0.1), `netns` (each in a network
    /// namespace of its own), `ssh` (each on a host of `ssh`) or `ssh-lab` (as `ssh`, on hosts
    /// the run makes: an `sshd` in each node's namespace).
    pub env: String,
    /// With `env` `ssh`: the hosts and how to log in to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshHosts>,
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
    /// A preset the test was built from (`rolling-upgrade`), if any.
    #[serde(default)]
    pub scenario: Option<String>,
    /// The build the `upgrade` faults move nodes to (the nodes start on `broker_binary`).
    #[serde(default)]
    pub upgrade_binary: Option<String>,
    /// Places kept for nodes that join during the run (membership faults), beside `nodes`.
    #[serde(default)]
    pub spare_nodes: usize,
    /// The broker compacts its raft log after this many entries (`--snapshot-entries`), so that
    /// a joining node catches up from a snapshot; `None` leaves the broker's default.
    #[serde(default)]
    pub snapshot_entries: Option<u64>,
    /// The run's phases in order (Jepsen's `phases`); empty means one main phase of
    /// `time_limit_s` at `rate` with the workload's own op mix. With phases, `time_limit_s` is
    /// the sum of their durations. Either way the run ends by healing everything and making the
    /// workload's final reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// The system's binary that ran (`ordeal-broker`, `etcd`).
    pub broker_binary: String,
    /// The version the system reported.
    pub broker_version: String,
    /// The history format the run wrote ([`crate::FORMAT_VERSION`] of the harness that ran it).
    #[serde(default = "format_one")]
    pub history_format: u32,
    /// The harness's version.
    pub ordeal_version: String,
    /// The command line that reproduces the run.
    pub command: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
}

/// One phase of a run: how long it lasts, how fast and which ops the clients send, and what the
/// nemesis does meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// What the nemesis does.
    pub kind: PhaseKind,
    /// Length, in seconds.
    pub duration_s: f64,
    /// Total client ops per second; `None`: the test's `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Op kind of the workload (`read`, `write`, `cas`; `append`, ...) → relative weight; empty:
    /// the workload's own weights (of its read-only kinds, in a final-reads phase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mix: BTreeMap<String, f64>,
}

/// What the nemesis does during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// Faults are injected.
    Main,
    /// Every fault is healed as the phase starts; the load goes on.
    Heal,
    /// No faults; the clients only read.
    FinalReads,
}

impl std::fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PhaseKind::Main => "main",
            PhaseKind::Heal => "heal",
            PhaseKind::FinalReads => "final-reads",
        })
    }
}

/// When a phase ran, on the history's clock (ns): an op belongs to the phase its invocation's
/// time falls in, `start <= time < end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// The phase's kind.
    pub kind: PhaseKind,
    /// Its first instant.
    pub start: u64,
    /// The instant the next phase (or the closing heal) began.
    pub end: u64,
    /// The rate it asked for; 0 means no limit.
    pub rate: f64,
}

impl PhaseSpan {
    /// Whether an op invoked at `time` belongs to this phase.
    pub fn holds(&self, time: u64) -> bool {
        (self.start..self.end).contains(&time)
    }
}

/// A node's process that ended without the harness ending it (no kill, stop or restart on another
/// binary asked for it): the system crashed, or something outside the run killed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExit {
    /// The node.
    pub node: u64,
    /// How its process ended (`exit status: 70`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// Whether the harness started it again (healing a fault); else it was found ended when the
    /// run did.
    pub restarted: bool,
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

/// Runs recorded before the field existed wrote format 1.
fn format_one() -> u32 {
    1
}

impl Test {
    /// Whether this build reads the run's history: formats up to [`crate::FORMAT_VERSION`].
    pub fn check_format(&self) -> Result<(), String> {
        if self.history_format > crate::FORMAT_VERSION {
            return Err(format!(
                "the history is in format {}, newer than this ordeal reads ({}): check it with a newer ordeal",
                self.history_format,
                crate::FORMAT_VERSION
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `test.json` written before `system`, `nemesis_order`, `ops_per_key` and
    /// `history_format` existed.
    const OLD: &str = r#"{"name":"register-none","workload":"register","nemesis":[],"env":"local","nodes":3,
        "groups":1,"concurrency":10,"rate":200.0,"time_limit_s":30.0,"seed":1,"op_timeout_ms":1000,
        "nemesis_interval_s":3.0,"fault_duration_s":3.0,"keys":10,"tick_ms":10,"heartbeat_ticks":5,
        "election_ticks":50,"bugs":[],"broker_binary":"b","broker_version":"0.1.0",
        "ordeal_version":"0.1.0","command":"ordeal run","started_at":"2026-11-23T00:00:00Z"}"#;

    #[test]
    fn old_test_files_read_with_the_defaults_they_ran_with_and_newer_formats_are_refused() {
        let mut test: Test = serde_json::from_str(OLD).unwrap();
        assert_eq!((test.system.as_str(), test.nemesis_order.as_str(), test.ops_per_key), ("broker", "random", 200));
        assert_eq!(test.history_format, 1);
        assert!(test.phases.is_empty(), "a test from before phases is one main phase");
        assert!(test.check_format().is_ok());
        test.history_format = crate::FORMAT_VERSION + 1;
        let err = test.check_format().unwrap_err();
        assert!(err.contains("newer than this ordeal reads"), "{err}");
    }

    #[test]
    fn phases_round_trip_and_runs_without_them_write_none() {
        let mut test: Test = serde_json::from_str(OLD).unwrap();
        assert!(!serde_json::to_string(&test).unwrap().contains("phases"));
        let mix = BTreeMap::from([("read".to_owned(), 1.0)]);
        test.phases = vec![
            Phase { kind: PhaseKind::Main, duration_s: 6.0, rate: None, mix: BTreeMap::new() },
            Phase { kind: PhaseKind::FinalReads, duration_s: 1.5, rate: Some(50.0), mix },
        ];
        let text = serde_json::to_string(&test).unwrap();
        assert!(text.contains(r#"{"kind":"final-reads","duration_s":1.5,"rate":50.0,"mix":{"read":1.0}}"#), "{text}");
        assert_eq!(serde_json::from_str::<Test>(&text).unwrap(), test);
    }
}
