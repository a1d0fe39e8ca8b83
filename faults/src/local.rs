//! The `local` environment: broker processes on 127.0.0.1, each with its own ports and data
//! directory under the run directory.

use crate::{Db, DbError};
use async_trait::async_trait;
use nix::sys::signal::Signal;
use ordeal_system::client::{Client, ClientOptions};
use ordeal_system::http::NodeStatus;
use ordeal_system::launch::{ClusterSpec, NodeProcess};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a graceful stop may take before the node is killed.
const GRACE: Duration = Duration::from_secs(10);

/// A cluster of local broker processes. Every process is owned: dropping the cluster kills them.
pub struct LocalCluster {
    spec: ClusterSpec,
    procs: Mutex<BTreeMap<u64, NodeProcess>>,
    status: Client,
}

impl LocalCluster {
    /// A cluster as `spec` describes it; nothing runs until [`Db::setup`].
    pub fn new(spec: ClusterSpec) -> Self {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(200),
            attempt_timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        let status = Client::new(spec.peers(), opts);
        LocalCluster { spec, procs: Mutex::new(BTreeMap::new()), status }
    }

    /// The cluster's specification.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, NodeProcess>> {
        // No invariant spans a panic: the map only holds owned processes.
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal(&self, node: u64, signal: Signal) -> Result<(), DbError> {
        let mut procs = self.procs();
        let p = procs.get_mut(&node).ok_or(DbError::UnknownNode(node))?;
        p.signal(signal).map_err(|e| DbError::Process { node, message: format!("{signal}: {e}") })
    }

    fn check_node(&self, node: u64) -> Result<(), DbError> {
        if self.spec.node(node).is_none() {
            return Err(DbError::UnknownNode(node));
        }
        Ok(())
    }
}

#[async_trait]
impl Db for LocalCluster {
    fn nodes(&self) -> Vec<u64> {
        self.spec.nodes.iter().map(|n| n.id).collect()
    }

    fn addresses(&self) -> BTreeMap<u64, String> {
        self.spec.peers()
    }

    async fn setup(&self) -> Result<(), DbError> {
        for node in self.nodes() {
            self.start(node).await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.leader(0).await.is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(DbError::Timeout("no leader was elected within 30 s of starting the cluster".into()));
            }
            for (node, p) in self.procs().iter_mut() {
                if let Ok(Some(status)) = p.has_exited() {
                    let log = self.spec.node(*node).map(|n| n.log.display().to_string()).unwrap_or_default();
                    return Err(DbError::Process {
                        node: *node,
                        message: format!("exited at start with {status}; see {log}"),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn teardown(&self) -> Result<(), DbError> {
        let nodes: Vec<u64> = self.procs().keys().copied().collect();
        for node in nodes {
            self.terminate(node).await?;
        }
        Ok(())
    }

    async fn kill(&self, node: u64) -> Result<(), DbError> {
        self.check_node(node)?;
        let Some(mut p) = self.procs().remove(&node) else { return Ok(()) };
        p.kill().map_err(|e| DbError::Process { node, message: format!("kill: {e}") })?;
        Ok(())
    }

    async fn start(&self, node: u64) -> Result<(), DbError> {
        self.check_node(node)?;
        if let Some(p) = self.procs().get_mut(&node)
            && matches!(p.has_exited(), Ok(None))
        {
            return Ok(()); // already running
        }
        // Spawned from a runtime worker thread, which lives as long as the run: the child's
        // parent-death signal is tied to the spawning thread.
        let p = self.spec.spawn(node).map_err(|e| DbError::Process { node, message: e.to_string() })?;
        self.procs().insert(node, p);
        Ok(())
    }

    async fn pause(&self, node: u64) -> Result<(), DbError> {
        self.signal(node, Signal::SIGSTOP)
    }

    async fn resume(&self, node: u64) -> Result<(), DbError> {
        self.signal(node, Signal::SIGCONT)
    }

    async fn terminate(&self, node: u64) -> Result<(), DbError> {
        self.check_node(node)?;
        if self.procs().get(&node).is_none() {
            return Ok(());
        }
        self.signal(node, Signal::SIGCONT)?;
        self.signal(node, Signal::SIGTERM)?;
        let deadline = tokio::time::Instant::now() + GRACE;
        loop {
            let exited = {
                let mut procs = self.procs();
                match procs.get_mut(&node) {
                    Some(p) => p.has_exited().map_err(|e| DbError::Process { node, message: e.to_string() })?.is_some(),
                    None => true,
                }
            };
            if exited {
                self.procs().remove(&node);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(node, "no graceful exit within {GRACE:?}; killing it");
                return self.kill(node).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn is_running(&self, node: u64) -> bool {
        self.procs().get_mut(&node).is_some_and(|p| matches!(p.has_exited(), Ok(None)))
    }

    async fn statuses(&self, timeout: Duration) -> BTreeMap<u64, NodeStatus> {
        let probes = self.nodes().into_iter().map(|node| async move {
            let status = tokio::time::timeout(timeout, self.status.status(node)).await;
            (node, status.ok().and_then(Result::ok))
        });
        let mut out = BTreeMap::new();
        for probe in probes {
            if let (node, Some(s)) = probe.await {
                out.insert(node, s);
            }
        }
        out
    }

    async fn transfer_leader(&self, node: u64, group: u32, to: u64) -> Result<(), DbError> {
        self.status
            .transfer_leader(node, group, to)
            .await
            .map_err(|e| DbError::Process { node, message: format!("transfer leader to {to}: {e}") })
    }
}
