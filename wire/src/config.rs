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
}

/// A deliberate bug the broker can be started with (`--bug NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Bug {
    /// Serve `Get`, `Fetch` and `ListCommittedOffsets` from the local state on any node,
    /// without ReadIndex: stale reads from followers and deposed leaders.
    StaleReads,
    /// Forget idempotent-producer state: a retried produce lands twice.
    NoDedupe,
    /// Step every peer's raft message unchecked, as raft-rs alone would: a forged one can kill
    /// the raft thread (which then stops the process) or depose the leader.
    TrustPeers,
}
