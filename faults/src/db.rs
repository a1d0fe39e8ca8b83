//! Cluster control, after Jepsen's `Db` protocol with its `Kill` and `Pause` powers.

use async_trait::async_trait;
use ordeal_system::http::NodeStatus;
use std::collections::BTreeMap;
use std::time::Duration;

/// A cluster operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No node with this id.
    #[error("unknown node {0}")]
    UnknownNode(u64),
    /// Starting, signalling or stopping a process failed.
    #[error("node {node}: {message}")]
    Process {
        /// The node.
        node: u64,
        /// What went wrong.
        message: String,
    },
    /// The cluster did not reach the wanted state in time.
    #[error("{0}")]
    Timeout(String),
}

/// A broker cluster the harness controls.
#[async_trait]
pub trait Db: Send + Sync {
    /// The nodes' ids.
    fn nodes(&self) -> Vec<u64>;
    /// Each node's client address.
    fn addresses(&self) -> BTreeMap<u64, String>;
    /// Starts every node and waits until a leader is elected.
    async fn setup(&self) -> Result<(), DbError>;
    /// Stops every node (gracefully, then by force); removes nothing the report needs.
    async fn teardown(&self) -> Result<(), DbError>;
    /// SIGKILL.
    async fn kill(&self, node: u64) -> Result<(), DbError>;
    /// Starts a stopped node again from its data directory.
    async fn start(&self, node: u64) -> Result<(), DbError>;
    /// SIGSTOP.
    async fn pause(&self, node: u64) -> Result<(), DbError>;
    /// SIGCONT.
    async fn resume(&self, node: u64) -> Result<(), DbError>;
    /// SIGTERM, and waits for the graceful exit (bounded).
    async fn terminate(&self, node: u64) -> Result<(), DbError>;
    /// Whether the node's process is running (paused counts as running).
    async fn is_running(&self, node: u64) -> bool;
    /// Each reachable node's status.
    async fn statuses(&self, timeout: Duration) -> BTreeMap<u64, NodeStatus>;
    /// The leader of `group` that the reachable nodes agree on, if any.
    async fn leader(&self, group: u32) -> Option<u64> {
        let statuses = self.statuses(Duration::from_millis(500)).await;
        let mut leaders = statuses.values().filter_map(|s| s.groups.get(group as usize)).map(|g| g.leader_id);
        let first = leaders.next().filter(|l| *l != 0)?;
        leaders.all(|l| l == first).then_some(first)
    }
    /// Asks `node`, the leader of `group`, to hand leadership to `to`.
    async fn transfer_leader(&self, node: u64, group: u32, to: u64) -> Result<(), DbError>;
    /// Waits until every node runs, answers, agrees on the leader of every group, and has applied
    /// everything committed.
    async fn wait_healthy(&self, timeout: Duration) -> Result<(), DbError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.nodes().is_empty() {
            return Ok(());
        }
        loop {
            let statuses = self.statuses(Duration::from_millis(500)).await;
            let healthy = statuses.len() == self.nodes().len()
                && statuses.values().next().is_some_and(|first| {
                    first.groups.iter().enumerate().all(|(g, view)| {
                        view.leader_id != 0
                            && statuses.values().all(|s| {
                                s.groups.get(g).is_some_and(|v| {
                                    v.leader_id == view.leader_id
                                        && v.applied_index >= view.commit_index.min(v.commit_index)
                                })
                            })
                    })
                });
            if healthy {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DbError::Timeout(format!(
                    "the cluster did not become healthy within {timeout:?} ({} of {} nodes answered)",
                    statuses.len(),
                    self.nodes().len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
