//! The settings a launcher passes to `ordeal-broker serve` that both sides must agree on: raft's
//! timing and the deliberate bugs.

use std::time::Duration;

/// Raft's timing, in ticks of `tick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// One logical clock tick.
    pub tick: Duration,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// A follower campaigns after hearing nothing for a random number of ticks in
    /// `[election_ticks, max_election_ticks)`.
    pub election_ticks: usize,
    /// Upper bound of the randomized election timeout; 0 means `2 * election_ticks`.
    pub max_election_ticks: usize,
}

impl Default for RaftTiming {
    /// etcd's defaults: heartbeat 100 ms, election timeout 1 s.
    fn default() -> Self {
        RaftTiming { tick: Duration::from_millis(100), heartbeat_ticks: 1, election_ticks: 10, max_election_ticks: 0 }
    }
}

impl RaftTiming {
    /// The election timeout's lower bound as a duration.
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks as u32
    }

    /// The randomized election timeout's upper bound (exclusive), in ticks.
    pub fn max_election_ticks(&self) -> usize {
        if self.max_election_ticks == 0 { 2 * self.election_ticks } else { self.max_election_ticks }
    }
}

/// A deliberate bug the broker can be started with (`--bug NAME`). Each takes effect at one
/// point of the broker, named in its doc; `docs/broker.md` pairs each with a configuration that
/// exposes it (`suites/detection.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Bug {
    /// Serve `Get`, `Fetch` and `ListCommittedOffsets` from the local state on any node,
    /// without ReadIndex: stale reads from followers and deposed leaders (`read_barrier`).
    #[value(alias = "stale-read")]
    StaleReads,
    /// Forget idempotent-producer state: a retried produce lands twice (`StateMachine::produce`).
    #[value(alias = "no-idempotence")]
    NoDedupe,
    /// Acknowledge a write once the leader appended it to its own log, before a quorum has:
    /// writes are lost when that leader fails (`seeded::Seeded::on_propose`).
    AckBeforeCommit,
    /// The leader assigns a record's offset when it appends it, counting from its applied state
    /// at its election: two records at one offset after a leader change
    /// (`seeded::Seeded::on_propose`).
    OffsetBeforeCommit,
    /// Keep committed consumer offsets on the node that took the commit instead of replicating
    /// them: they regress after a failover (`seeded::commit_offsets_locally`).
    LocalOffsets,
    /// Promote a learner once it has received anything (its snapshot, entries): the leader
    /// judges it by its match index, as etcd 3.4 does, and neither asks what it applied nor
    /// checks `min_applied_index`.
    LaxPromote,
    /// Switch the cluster to this release's cluster version (and its new formats) as soon as
    /// this node leads, without waiting until every member supports it.
    EarlyFeature,
    /// Write the raft log without fsync while still acknowledging as if it were durable: a
    /// crash that loses un-fsynced writes (the `crash-*` faults) loses acknowledged ones
    /// (`seeded::syncs_log`).
    FsyncLie,
    /// Step every peer's raft message unchecked, as raft-rs alone would: a forged one can kill
    /// the raft thread (which then stops the process) or depose the leader.
    TrustPeers,
}

impl Bug {
    /// The flag value naming it.
    ///
    /// ```
    /// assert_eq!(ordeal_wire::config::Bug::AckBeforeCommit.name(), "ack-before-commit");
    /// ```
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|v| v.get_name().to_owned()).unwrap_or_default()
    }

    /// Every bug's flag value, for error messages. The issue's names are aliases.
    ///
    /// ```
    /// use clap::ValueEnum;
    /// use ordeal_wire::config::Bug;
    /// assert!(Bug::names().iter().any(|n| n == "ack-before-commit"));
    /// assert_eq!(Bug::from_str("stale-read", false), Ok(Bug::StaleReads));
    /// assert_eq!(Bug::from_str("no-idempotence", false), Ok(Bug::NoDedupe));
    /// ```
    pub fn names() -> Vec<String> {
        <Bug as clap::ValueEnum>::value_variants().iter().map(|b| b.name()).collect()
    }
}
