//! Process supervision for any system whose nodes are local processes: start, signal, stop and
//! restart each node on its own binary, owning every child (killed on drop, killed by the kernel
//! if the harness dies).
//!
//! A system supplies only how to launch one node on one binary ([`LaunchFn`]); the rest is the
//! same for every system, and the [`Processes`] and [`Upgrade`] powers come with it.

use crate::system::{Processes, SystemError, Upgrade};
use async_trait::async_trait;
use nix::sys::signal::Signal;
use ordeal_wire::launch::{Launch, NodeProcess};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long a graceful stop may take before the node is killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// Builds the launch of node `id` on `binary`.
pub type LaunchFn = Box<dyn Fn(u64, &Path) -> std::io::Result<Launch> + Send + Sync>;

/// The processes of one cluster.
pub struct Supervisor {
    launch: LaunchFn,
    /// The binary each node runs; a node starts on its entry here.
    binaries: Mutex<BTreeMap<u64, PathBuf>>,
    procs: Mutex<BTreeMap<u64, NodeProcess>>,
}

// No invariant spans a panic in these maps: they only hold owned processes and paths.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    /// Supervises `nodes`, each starting on `binary`.
    pub fn new(nodes: &[u64], binary: &Path, launch: LaunchFn) -> Self {
        let binaries = nodes.iter().map(|n| (*n, binary.to_path_buf())).collect();
        Supervisor { launch, binaries: Mutex::new(binaries), procs: Mutex::new(BTreeMap::new()) }
    }

    /// The nodes' ids.
    pub fn nodes(&self) -> Vec<u64> {
        lock(&self.binaries).keys().copied().collect()
    }

    /// Supervises one more node (one that joins the cluster), starting on `binary`.
    pub fn add(&self, node: u64, binary: &Path) {
        lock(&self.binaries).entry(node).or_insert_with(|| binary.to_path_buf());
    }

    /// Stops supervising `node` (removed from the cluster), stopping it first.
    pub async fn forget(&self, node: u64) -> Result<(), SystemError> {
        self.stop(node).await?;
        lock(&self.binaries).remove(&node);
        Ok(())
    }

    fn known(&self, node: u64) -> Result<PathBuf, SystemError> {
        lock(&self.binaries).get(&node).cloned().ok_or(SystemError::UnknownNode(node))
    }

    fn signal(&self, node: u64, signal: Signal) -> Result<(), SystemError> {
        self.known(node)?;
        let mut procs = lock(&self.procs);
        let Some(p) = procs.get_mut(&node) else { return Ok(()) };
        p.signal(signal).map_err(|e| SystemError::Process { node, message: format!("{signal}: {e}") })
    }

    /// Starts the node on its binary unless it runs already.
    pub fn start(&self, node: u64) -> Result<(), SystemError> {
        let binary = self.known(node)?;
        if let Some(p) = lock(&self.procs).get_mut(&node)
            && matches!(p.has_exited(), Ok(None))
        {
            return Ok(());
        }
        // Forked from a runtime worker, which lives as long as the runtime as long as nothing
        // blocks in place on it (the network nemesis does not): the child's parent-death signal
        // is tied to the thread that forks it.
        let process = (self.launch)(node, &binary)
            .and_then(|l| l.spawn(node))
            .map_err(|e| SystemError::Process { node, message: e.to_string() })?;
        lock(&self.procs).insert(node, process);
        Ok(())
    }

    /// SIGTERM (after SIGCONT), then waits up to [`GRACE`] before SIGKILL.
    pub async fn stop(&self, node: u64) -> Result<(), SystemError> {
        self.known(node)?;
        if !lock(&self.procs).contains_key(&node) {
            return Ok(());
        }
        self.signal(node, Signal::SIGCONT)?;
        self.signal(node, Signal::SIGTERM)?;
        let deadline = tokio::time::Instant::now() + GRACE;
        loop {
            if self.exited(node)?.is_some() {
                lock(&self.procs).remove(&node);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(node, "no graceful exit within {GRACE:?}; killing it");
                return self.kill_now(node);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill_now(&self, node: u64) -> Result<(), SystemError> {
        self.known(node)?;
        let Some(mut p) = lock(&self.procs).remove(&node) else { return Ok(()) };
        p.kill().map_err(|e| SystemError::Process { node, message: format!("kill: {e}") })?;
        Ok(())
    }

    /// How the node's process ended, if it has (reaping it); `None` while it runs or when it
    /// was never started.
    pub fn exited(&self, node: u64) -> Result<Option<std::process::ExitStatus>, SystemError> {
        let mut procs = lock(&self.procs);
        let Some(p) = procs.get_mut(&node) else { return Ok(None) };
        p.has_exited().map_err(|e| SystemError::Process { node, message: e.to_string() })
    }

    /// Whether the node's process runs (paused counts as running).
    pub fn is_running(&self, node: u64) -> bool {
        lock(&self.procs).get_mut(&node).is_some_and(|p| matches!(p.has_exited(), Ok(None)))
    }

    /// Stops every running node.
    pub async fn stop_all(&self) -> Result<(), SystemError> {
        let nodes: Vec<u64> = lock(&self.procs).keys().copied().collect();
        for node in nodes {
            self.stop(node).await?;
        }
        Ok(())
    }

    /// Starts every node, then waits until `ready` says the cluster serves, failing early when a
    /// node exits at start (its log says why).
    pub async fn start_all<F, Fut>(
        &self,
        timeout: Duration,
        logs: impl Fn(u64) -> String,
        ready: F,
    ) -> Result<(), SystemError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for node in self.nodes() {
            self.start(node)?;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !ready().await {
            if tokio::time::Instant::now() >= deadline {
                return Err(SystemError::NotReady(format!("the cluster did not serve within {timeout:?} of starting")));
            }
            for node in self.nodes() {
                if let Some(status) = self.exited(node)? {
                    let message = format!("exited at start with {status}; see {}", logs(node));
                    return Err(SystemError::Process { node, message });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Processes for Supervisor {
    async fn kill(&self, node: u64) -> Result<(), SystemError> {
        self.kill_now(node)
    }

    async fn pause(&self, node: u64) -> Result<(), SystemError> {
        self.signal(node, Signal::SIGSTOP)
    }

    async fn resume(&self, node: u64) -> Result<(), SystemError> {
        self.signal(node, Signal::SIGCONT)
    }
}

#[async_trait]
impl Upgrade for Supervisor {
    async fn restart_on(&self, node: u64, binary: &Path) -> Result<(), SystemError> {
        self.known(node)?;
        if !binary.is_file() {
            return Err(SystemError::Process { node, message: format!("{}: no such binary", binary.display()) });
        }
        self.stop(node).await?;
        lock(&self.binaries).insert(node, binary.to_path_buf());
        self.start(node)
    }

    fn binary(&self, node: u64) -> Option<PathBuf> {
        lock(&self.binaries).get(&node).cloned()
    }
}
