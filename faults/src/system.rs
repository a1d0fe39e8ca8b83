//! The system under test, after Jepsen's `DB` protocol with its optional powers.
//!
//! [`System`] is what every system can do: start and stop its nodes and say how they are. The
//! powers only some systems have are separate traits, reached through accessors that return
//! `None` when the system lacks them: [`Processes`] (kill, pause, resume: any system whose nodes
//! are local processes), [`Leaders`] (leaders per group, and moving them), [`Upgrade`]
//! (restart a node on another binary) and [`Membership`] (learners joining, promoted, removed). The nemeses ask for the power a fault needs and report a
//! fault the system cannot take as [`SystemError::Unsupported`].
//!
//! What the harness reads of a running cluster is system-neutral: a [`NodeView`] per node with a
//! [`GroupState`] per replication group. Status sampling, the nemeses and the plots read nothing
//! else.

use crate::supervise::Supervisor;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A cluster operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// No node with this id.
    #[error("unknown node {0}")]
    UnknownNode(u64),
    /// Starting, signalling or stopping a node's process failed.
    #[error("node {node}: {message}")]
    Process {
        /// The node.
        node: u64,
        /// What went wrong.
        message: String,
    },
    /// A request to a node (status, leadership transfer) failed.
    #[error("node {node}: {message}")]
    Request {
        /// The node asked.
        node: u64,
        /// What it answered, or why it did not.
        message: String,
    },
    /// The cluster did not reach the wanted state within the bound.
    #[error("{0}")]
    NotReady(String),
    /// The system refused a membership change (definitely: nothing changed), saying why.
    #[error("node {node}: refused: {reason}")]
    Refused {
        /// The node the change was about.
        node: u64,
        /// The system's reason, with its figures.
        reason: String,
        /// For a promote: the learner's applied index as the system's gate saw it, where the
        /// system says (a gate that could not ask the learner saw none).
        gate_saw: Option<u64>,
    },
    /// The system answered that it cannot make the change now (no leader, shutting down,
    /// overloaded) or could not be reached: definitely nothing changed, and asking again may
    /// succeed.
    #[error("node {node}: not now: {message}")]
    Unavailable {
        /// The node the change was about.
        node: u64,
        /// What the system answered, or why it could not be reached.
        message: String,
    },
    /// The system does not have the power the operation needs.
    #[error("{system} cannot {power}")]
    Unsupported {
        /// The system's name.
        system: &'static str,
        /// What it was asked to do.
        power: &'static str,
    },
}

/// One replication group's state on one node, as any system reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The group (0 for systems with one).
    pub group: u32,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `learner`.
    pub role: String,
    /// The leader this node knows of, 0 when none.
    pub leader_id: u64,
    /// The current term.
    pub term: u64,
    /// The commit index.
    pub commit_index: u64,
    /// The applied index.
    pub applied_index: u64,
    /// Voting members.
    #[serde(default)]
    pub voters: Vec<u64>,
    /// Non-voting members.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// The cluster version the group agreed on, where the system has one (the feature gate of
    /// a rolling upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<u32>,
}

/// One node's state: the build it runs and its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's id.
    pub id: u64,
    /// The build version it reports.
    pub version: String,
    /// The release whose formats and features it uses, where the system numbers them (an
    /// emulated older release shows here, not in `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u32>,
    /// Its wall clock when it answered, in ms since the Unix epoch, where it reports one (shows
    /// clock faults).
    pub time_ms: Option<u64>,
    /// One entry per group.
    pub groups: Vec<GroupState>,
}

/// A system under test: a cluster of nodes the harness starts, stops and observes.
///
/// A system whose nodes are local processes returns its [`Supervisor`] from
/// [`System::supervisor`]; starting, stopping, tearing down and the [`Processes`] and [`Upgrade`]
/// powers then come from it, and the system writes only what is its own: how to set up, how to
/// read its status, and its other powers.
#[async_trait]
pub trait System: Send + Sync {
    /// The system's name (`broker`, `etcd`).
    fn name(&self) -> &'static str;
    /// The nodes' ids.
    fn nodes(&self) -> Vec<u64>;
    /// Each node's client address.
    fn addresses(&self) -> BTreeMap<u64, String>;
    /// The node's log file, for the report.
    fn log_file(&self, node: u64) -> Option<&Path>;
    /// Starts every node and waits until the cluster serves.
    async fn setup(&self) -> Result<(), SystemError>;
    /// Each reachable node's state.
    async fn statuses(&self, timeout: Duration) -> BTreeMap<u64, NodeView>;
    /// The supervisor of the nodes' processes, when they are local processes.
    fn supervisor(&self) -> Option<&Supervisor> {
        None
    }
    /// Stops every node (gracefully, then by force); removes nothing the report needs.
    async fn teardown(&self) -> Result<(), SystemError> {
        supervised(self, "tear down")?.stop_all().await
    }
    /// Starts a stopped node again from its data.
    async fn start(&self, node: u64) -> Result<(), SystemError> {
        supervised(self, "start a node")?.start(node)
    }
    /// Stops a node gracefully (SIGTERM; bounded, then killed).
    async fn stop(&self, node: u64) -> Result<(), SystemError> {
        supervised(self, "stop a node")?.stop(node).await
    }
    /// Whether the node's process is running (paused counts as running).
    async fn is_running(&self, node: u64) -> bool {
        self.supervisor().is_some_and(|s| s.is_running(node))
    }
    /// The power to kill and pause nodes, if the system has it.
    fn processes(&self) -> Option<&dyn Processes> {
        self.supervisor().map(|s| s as &dyn Processes)
    }
    /// The power to find and move leaders, if the system has it.
    fn leaders(&self) -> Option<&dyn Leaders> {
        None
    }
    /// The power to restart a node on another binary, if the system has it.
    fn upgrade(&self) -> Option<&dyn Upgrade> {
        self.supervisor().map(|s| s as &dyn Upgrade)
    }
    /// The power to add learners, promote and remove members, if the system has it.
    fn membership(&self) -> Option<&dyn Membership> {
        None
    }
}

/// How long [`voters`] waits for the system's word on its membership.
const MEMBERS_BOUND: Duration = Duration::from_secs(2);

/// The voters (of group 0, where membership changes), as the system's membership power reports
/// them; every node when it has no such power, or does not answer within [`MEMBERS_BOUND`] (no
/// leader yet, a paused node asked). Quorums are counted over these: a learner never counts
/// toward one, so a fault meant for a majority or a minority picks among the voters.
pub async fn voters<S: System + ?Sized>(system: &S) -> Vec<u64> {
    if let Some(power) = system.membership()
        && let Ok(Ok(members)) = tokio::time::timeout(MEMBERS_BOUND, power.members()).await
    {
        let voters = members.voters();
        if !voters.is_empty() {
            return voters;
        }
    }
    system.nodes()
}

/// The system's supervisor, or why the operation cannot be done without one.
fn supervised<'a, S: System + ?Sized>(system: &'a S, power: &'static str) -> Result<&'a Supervisor, SystemError> {
    system.supervisor().ok_or(SystemError::Unsupported { system: system.name(), power })
}

/// Signals to a node's process.
#[async_trait]
pub trait Processes: Send + Sync {
    /// SIGKILL.
    async fn kill(&self, node: u64) -> Result<(), SystemError>;
    /// SIGSTOP.
    async fn pause(&self, node: u64) -> Result<(), SystemError>;
    /// SIGCONT.
    async fn resume(&self, node: u64) -> Result<(), SystemError>;
}

/// Leaders of replication groups.
#[async_trait]
pub trait Leaders: Send + Sync {
    /// How many groups the cluster runs.
    fn groups(&self) -> u32;
    /// Asks `node`, the leader of `group`, to hand leadership to `to`.
    async fn transfer_leader(&self, node: u64, group: u32, to: u64) -> Result<(), SystemError>;
}

/// Restarting a node on another build.
#[async_trait]
pub trait Upgrade: Send + Sync {
    /// Stops `node` if it runs and starts it again on `binary`, with the same data.
    async fn restart_on(&self, node: u64, binary: &Path) -> Result<(), SystemError>;
    /// The binary the node runs (or last ran).
    fn binary(&self, node: u64) -> Option<std::path::PathBuf>;
}

/// Changing who is a member of the cluster (group 0): nodes join from spare slots of the layout
/// as learners, are promoted to voters, and are removed. [`System::nodes`] follows the changes:
/// a joined node is a node, a removed one is not.
#[async_trait]
pub trait Membership: Send + Sync {
    /// The spare slots no node has joined from yet.
    fn spares(&self) -> Vec<u64>;
    /// Starts a fresh node in spare slot `node` and attaches it as a learner.
    async fn add_learner(&self, node: u64) -> Result<(), SystemError>;
    /// Makes learner `node` a voter if it has applied `min_applied_index` (the system's gate);
    /// a refusal is [`SystemError::Refused`]. Returns the learner's applied index as the gate saw
    /// it, where the system says.
    async fn promote(&self, node: u64, min_applied_index: u64) -> Result<Option<u64>, SystemError>;
    /// Removes member `node` and stops its process.
    async fn remove(&self, node: u64) -> Result<(), SystemError>;
    /// The members as the leader sees them.
    async fn members(&self) -> Result<Members, SystemError>;
    /// The system's own promotion gate, when it does not take `min_applied_index` (etcd 3.4's
    /// API has no such field): its promotes are measured against the harness's gate, not held
    /// to it.
    fn own_gate(&self) -> Option<&'static str> {
        None
    }
    /// Bytes of state `node` has received in snapshots, where the system counts them (the
    /// catch-up rate in MB/s).
    async fn snapshot_bytes(&self, _node: u64) -> Option<u64> {
        None
    }
}

/// Which spare slots a [`Membership`] power has handed out. Each slot is used once: a removed
/// node's place (its directory, ports and log) is not used again.
#[derive(Debug, Default)]
pub struct SpareSlots(std::sync::Mutex<std::collections::BTreeSet<u64>>);

impl SpareSlots {
    fn used(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids among `spares` not handed out yet ([`Membership::spares`]).
    pub fn free(&self, spares: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let used = self.used();
        spares.into_iter().filter(|id| !used.contains(id)).collect()
    }

    /// Hands out slot `node`, or refuses one handed out already.
    pub fn claim(&self, node: u64) -> Result<(), SystemError> {
        if self.used().insert(node) {
            Ok(())
        } else {
            Err(SystemError::Refused { node, reason: "its place was used already".into(), gate_saw: None })
        }
    }
}

/// A cluster's members as its leader sees them, system-neutral.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The leader that answered.
    pub leader: u64,
    /// Its commit index.
    pub commit_index: u64,
    /// Every voter and learner.
    pub members: Vec<Member>,
}

/// One member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: u64,
    /// Whether it is a learner (else a voter).
    pub learner: bool,
    /// The highest index the leader knows it holds.
    pub match_index: u64,
    /// The index it reports having applied, when it answered.
    pub applied_index: Option<u64>,
    /// Whether the leader is sending it a snapshot right now.
    pub snapshot: bool,
}

impl Members {
    /// The voters' ids.
    pub fn voters(&self) -> Vec<u64> {
        self.members.iter().filter(|m| !m.learner).map(|m| m.id).collect()
    }

    /// The learners' ids.
    pub fn learners(&self) -> Vec<u64> {
        self.members.iter().filter(|m| m.learner).map(|m| m.id).collect()
    }

    /// Member `id`, if it is one.
    pub fn get(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// The leader of `group` that every reachable node agrees on, if any.
pub async fn leader(system: &dyn System, group: u32) -> Option<u64> {
    agreed_leader(&system.statuses(Duration::from_millis(500)).await, group)
}

/// The leader of `group` in `views`, if every node that reports the group names the same one.
pub fn agreed_leader(views: &BTreeMap<u64, NodeView>, group: u32) -> Option<u64> {
    let mut leaders = views.values().filter_map(|v| v.groups.iter().find(|g| g.group == group)).map(|g| g.leader_id);
    let first = leaders.next().filter(|l| *l != 0)?;
    leaders.all(|l| l == first).then_some(first)
}

/// Whether every node answered, agrees on the leader of every group, and has applied what it
/// committed up to what the leader committed.
pub fn healthy(views: &BTreeMap<u64, NodeView>, nodes: usize) -> bool {
    let Some(first) = views.values().next() else { return nodes == 0 };
    views.len() == nodes
        && first.groups.iter().all(|group| {
            let Some(leader) = agreed_leader(views, group.group) else { return false };
            let leader_commit = views
                .get(&leader)
                .and_then(|v| v.groups.iter().find(|g| g.group == group.group))
                .map_or(0, |g| g.commit_index);
            views.values().all(|v| {
                v.groups
                    .iter()
                    .find(|g| g.group == group.group)
                    .is_some_and(|g| g.applied_index >= leader_commit.min(g.commit_index))
            })
        })
}

/// Waits until the cluster is [`healthy`]; polls every 50 ms, up to `timeout`.
pub async fn wait_healthy(system: &dyn System, timeout: Duration) -> Result<(), SystemError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let nodes = system.nodes().len();
    loop {
        let views = system.statuses(Duration::from_millis(500)).await;
        if healthy(&views, nodes) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SystemError::NotReady(format!(
                "the cluster did not become healthy within {timeout:?} ({} of {nodes} nodes answered)",
                views.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, leader: u64, commit: u64, applied: u64) -> NodeView {
        let g = GroupState { leader_id: leader, commit_index: commit, applied_index: applied, ..GroupState::default() };
        NodeView { id, groups: vec![g], ..NodeView::default() }
    }

    #[test]
    fn health_needs_every_node_one_leader_and_applied_commits() {
        let views: BTreeMap<u64, NodeView> = [(1, view(1, 1, 10, 10)), (2, view(2, 1, 10, 10))].into();
        assert!(healthy(&views, 2));
        assert!(!healthy(&views, 3), "a node did not answer");
        let split: BTreeMap<u64, NodeView> = [(1, view(1, 1, 10, 10)), (2, view(2, 2, 10, 10))].into();
        assert!(!healthy(&split, 2), "two leaders");
        let lagging: BTreeMap<u64, NodeView> = [(1, view(1, 1, 10, 10)), (2, view(2, 1, 10, 7))].into();
        assert!(!healthy(&lagging, 2), "applied behind commit");
        assert_eq!(agreed_leader(&views, 0), Some(1));
        assert_eq!(agreed_leader(&split, 0), None);
    }
}
