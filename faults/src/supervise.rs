//! Process supervision for any system whose nodes are local processes: start, signal, stop and
//! restart each node on its own binary, owning every child (killed on drop, killed by the kernel
//! if the harness dies).
//!
//! A system supplies only how to launch one node on one binary ([`LaunchFn`]); the rest is the
//! same for every system, and the [`Processes`] and [`Upgrade`] powers come with it.

use crate::system::{Processes, SystemError, Upgrade};
use async_trait::async_trait;
use nix::sys::signal::Signal;
use ordeal_history::NodeExit;
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
    /// Processes found ended before the supervisor ended them: when starting, stopping or
    /// killing a node. A heal that restarts every node that does not run would otherwise hide a
    /// crash.
    unasked: Mutex<Vec<NodeExit>>,
    /// Nodes that may end by themselves: etcd members being removed.
    may_end: Mutex<std::collections::BTreeSet<u64>>,
}

// No invariant spans a panic in these maps: they only hold owned processes and paths.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    /// Supervises `nodes`, each starting on `binary`.
    pub fn new(nodes: &[u64], binary: &Path, launch: LaunchFn) -> Self {
        let binaries = nodes.iter().map(|n| (*n, binary.to_path_buf())).collect();
        Supervisor {
            launch,
            binaries: Mutex::new(binaries),
            procs: Mutex::new(BTreeMap::new()),
            unasked: Mutex::new(Vec::new()),
            may_end: Mutex::new(Default::default()),
        }
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
        lock(&self.may_end).remove(&node);
        Ok(())
    }

    /// Says whether `node` may end by itself from now on (an etcd member ends once it learns it
    /// was removed, even when the removal's answer is lost); its end is then not noted.
    pub fn may_end(&self, node: u64, may: bool) {
        let mut nodes = lock(&self.may_end);
        if may {
            nodes.insert(node)
        } else {
            nodes.remove(&node)
        };
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
        if !self.noted_unasked(node, true) && self.is_running(node) {
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
        if !lock(&self.procs).contains_key(&node) || self.noted_unasked(node, false) {
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
                return self.kill_now(node, false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL; `note` whether the process had already ended by itself (not when the stop that
    /// asked it to end gives up waiting).
    fn kill_now(&self, node: u64, note: bool) -> Result<(), SystemError> {
        self.known(node)?;
        if note {
            self.noted_unasked(node, false);
        }
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

    /// Records the node's process if it ended before the supervisor ended it (the supervisor
    /// drops the processes it ends), and says whether it had; `restarted` if it is about to be
    /// started again.
    fn noted_unasked(&self, node: u64, restarted: bool) -> bool {
        let Ok(Some(status)) = self.exited(node) else { return false };
        // Noted once: the next look finds no process.
        lock(&self.procs).remove(&node);
        if !lock(&self.may_end).contains(&node) {
            tracing::warn!(node, "the node's process ended by itself ({status})");
            lock(&self.unasked).push(NodeExit { node, status: status.to_string(), restarted });
        }
        true
    }

    /// Every node process that ended without being asked to: those noted so far, then those
    /// found ended now.
    pub fn unasked_exits(&self) -> Vec<NodeExit> {
        let mut exits = lock(&self.unasked).clone();
        let may_end = lock(&self.may_end).clone();
        for (&node, p) in lock(&self.procs).iter_mut().filter(|(n, _)| !may_end.contains(n)) {
            if let Ok(Some(status)) = p.has_exited() {
                exits.push(NodeExit { node, status: status.to_string(), restarted: false });
            }
        }
        exits
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
        self.kill_now(node, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A supervisor of `nodes` whose nodes are `sleep 600` processes logging into `dir`.
    fn sleepers(nodes: &[u64], dir: &Path) -> Supervisor {
        let dir = dir.to_path_buf();
        let launch: LaunchFn = Box::new(move |node, binary| {
            let args = vec!["600".into()];
            let log = dir.join(format!("{node}.log"));
            Ok(Launch { binary: binary.into(), args, env: vec![], log, netns: None, remote: None, files: vec![] })
        });
        Supervisor::new(nodes, Path::new("/bin/sleep"), launch)
    }

    /// Kills node's process from outside the supervisor, and waits until it has ended.
    async fn killed_behind_its_back(s: &Supervisor, node: u64) {
        let pid = lock(&s.procs)[&node].pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while s.is_running(node) {
            assert!(tokio::time::Instant::now() < deadline, "SIGKILL did not end node {node}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_process_that_ended_unasked_is_noted_once_whoever_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = sleepers(&[1, 2, 3, 4], dir.path());
        for node in 1..=4 {
            s.start(node).unwrap();
        }
        killed_behind_its_back(&s, 1).await;
        let found = s.unasked_exits();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].restarted && found[0].status.contains("9"), "{found:?}");
        // Started again by a heal: noted as restarted, and only once.
        s.start(1).unwrap();
        assert!(s.is_running(1));
        let exits = s.unasked_exits();
        assert_eq!(exits, vec![NodeExit { node: 1, status: found[0].status.clone(), restarted: true }]);
        // Ended unasked, then stopped or killed by a fault: noted too.
        killed_behind_its_back(&s, 2).await;
        s.stop(2).await.unwrap();
        killed_behind_its_back(&s, 3).await;
        Processes::kill(&s, 3).await.unwrap();
        let nodes: Vec<(u64, bool)> = s.unasked_exits().iter().map(|e| (e.node, e.restarted)).collect();
        assert_eq!(nodes, vec![(1, true), (2, false), (3, false)]);
        // What the supervisor ends is asked for, and so is a member being removed ending by itself.
        s.start(3).unwrap();
        Processes::kill(&s, 3).await.unwrap();
        s.stop(1).await.unwrap();
        s.may_end(4, true);
        killed_behind_its_back(&s, 4).await;
        s.forget(4).await.unwrap();
        assert_eq!(s.unasked_exits().len(), 3, "nothing asked for is noted");
    }
}
