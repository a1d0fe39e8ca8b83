//! The upgrade nemesis: a rolling upgrade, one node per fault. Each `upgrade` moves the next
//! node still on the old build to the new one (followers first, the leader last), after handing
//! its leadership away, waits until it has caught up, and, while old nodes remain, hands it the
//! leadership, so that a new build leads old followers; a node stays upgraded (nothing to
//! heal). One `rollback` per run moves the node upgraded last back to the old build (a later
//! `upgrade` moves it forward again). Faults of the other nemeses run between and beside the
//! steps.

use crate::system::{self, System, SystemError};
use crate::{Action, FaultSpec, Nemesis, NemesisError};
use async_trait::async_trait;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a restarted node may take to catch up before the step fails.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The upgrade nemesis.
pub struct UpgradeNemesis {
    system: Arc<dyn System>,
    from: PathBuf,
    to: PathBuf,
    /// The node the last `upgrade` moved.
    last_upgraded: Option<u64>,
    rolled_back: bool,
    /// The node a step is moving, from before it is stopped until it runs again: a step that the
    /// runner's bound cuts off (this future dropped) or that fails between the two has its stop
    /// start the node again, instead of leaving it down until the run's final heal.
    moving: Option<u64>,
}

impl UpgradeNemesis {
    /// Moves nodes of `system` from `from` to `to`, one per fault.
    pub fn new(system: Arc<dyn System>, from: PathBuf, to: PathBuf) -> Self {
        UpgradeNemesis { system, from, to, last_upgraded: None, rolled_back: false, moving: None }
    }

    fn unsupported(&self, power: &'static str) -> NemesisError {
        SystemError::Unsupported { system: self.system.name(), power }.into()
    }

    /// The next node to move: one still on another binary, followers before the leader.
    async fn next(&self) -> Result<Option<(u64, Option<u64>)>, NemesisError> {
        let power = self.system.upgrade().ok_or_else(|| self.unsupported("restart on another binary"))?;
        let leader = system::leader(&*self.system, 0).await;
        let mut old: Vec<u64> =
            self.system.nodes().into_iter().filter(|n| power.binary(*n).as_ref() != Some(&self.to)).collect();
        old.sort_by_key(|n| (Some(*n) == leader, *n));
        Ok(old.first().map(|n| (*n, leader)))
    }

    /// Hands leadership of group 0 from `node` to `to` (another node when `None`), and waits
    /// (bounded) until it moved.
    async fn move_leader(&self, node: u64, to: Option<u64>) -> Result<(), NemesisError> {
        let Some(leaders) = self.system.leaders() else { return Ok(()) };
        let Some(to) = to.or_else(|| self.system.nodes().into_iter().find(|n| *n != node)) else { return Ok(()) };
        leaders.transfer_leader(node, 0, to).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while system::leader(&*self.system, 0).await == Some(node) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until `node` has applied what the leader had committed when it came back.
    async fn catch_up(&self, node: u64) -> Result<f64, NemesisError> {
        let started = Instant::now();
        // The leader's commit index at the first sample that names a leader.
        let mut target: Option<u64> = None;
        while started.elapsed() < CATCH_UP {
            let views = self.system.statuses(Duration::from_millis(500)).await;
            if target.is_none() {
                target = system::agreed_leader(&views, 0)
                    .and_then(|l| views.get(&l)?.groups.first().map(|g| g.commit_index));
            }
            let applied = views.get(&node).and_then(|v| v.groups.first()).map(|g| g.applied_index);
            if let (Some(t), Some(a)) = (target, applied)
                && a >= t
            {
                return Ok(started.elapsed().as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(SystemError::NotReady(format!("node {node} did not catch up within {CATCH_UP:?} of its upgrade")).into())
    }

    /// Moves `node` to `binary`: leadership away first, SIGKILL first with `kill`, then the
    /// restart and the catch-up. Returns the binary it left and the catch-up time.
    async fn restart(&mut self, node: u64, binary: &Path, kill: bool) -> Result<(Option<PathBuf>, f64), NemesisError> {
        if system::leader(&*self.system, 0).await == Some(node) && self.system.nodes().len() > 1 {
            self.move_leader(node, None).await?;
        }
        let power = self.system.upgrade().ok_or_else(|| self.unsupported("restart on another binary"))?;
        let from = power.binary(node);
        self.moving = Some(node);
        if kill {
            self.system.processes().ok_or_else(|| self.unsupported("kill"))?.kill(node).await?;
        }
        power.restart_on(node, binary).await?;
        self.moving = None;
        Ok((from, self.catch_up(node).await?))
    }

    async fn upgrade(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let name = fault.to_string();
        let Some((node, _)) = self.next().await? else {
            return Ok(
                json!({"fault": name, "targets": [], "to": self.to, "note": "every node runs the new build", "down": []}),
            );
        };
        let to = self.to.clone();
        let (from, catch_up_ms) = self.restart(node, &to, fault.action == Action::UpgradeKill).await?;
        self.last_upgraded = Some(node);
        // A mixed cluster led by the new build: its messages and entries must suit the old
        // followers (and a feature switched on too early shows at once).
        let old_remain = self.next().await?.is_some();
        let leads = old_remain && self.move_leader_to(node).await;
        // The last step: the cluster version should now rise; wait for it, so that the status
        // samples show where it settled before the next fault.
        let gate_ms = if old_remain { None } else { self.wait_cluster_version().await };
        Ok(json!({
            "fault": name, "targets": [node], "from": from, "to": to, "catch_up_ms": catch_up_ms, "leads": leads,
            "cluster_version_ms": gate_ms, "down": [],
        }))
    }

    /// Waits (bounded) until every node reports a cluster version of at least the lowest
    /// release among them; how long it took, or `None` when the system reports no releases or
    /// the version did not rise in time (the upgrade checker then says so from the samples).
    async fn wait_cluster_version(&self) -> Option<f64> {
        let started = Instant::now();
        while started.elapsed() < CATCH_UP {
            let views = self.system.statuses(Duration::from_millis(500)).await;
            let lowest = views.values().map(|v| v.release).min()??;
            let versions = || views.values().flat_map(|v| v.groups.iter().map(|g| g.cluster_version));
            if views.len() == self.system.nodes().len() && versions().all(|c| c >= Some(lowest)) {
                return Some(started.elapsed().as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Hands leadership of group 0 to `node`; whether it took it (a failed transfer is no error:
    /// the step's purpose, the upgrade, is done).
    async fn move_leader_to(&self, node: u64) -> bool {
        let Some(leader) = system::leader(&*self.system, 0).await else { return false };
        if leader != node && self.move_leader(leader, Some(node)).await.is_err() {
            return false;
        }
        system::leader(&*self.system, 0).await == Some(node)
    }

    async fn rollback(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let name = fault.to_string();
        let Some(node) = self.last_upgraded.filter(|_| !self.rolled_back) else {
            return Ok(
                json!({"fault": name, "targets": [], "note": "one rollback per run, and only after an upgrade", "down": []}),
            );
        };
        let from_binary = self.from.clone();
        let (from, catch_up_ms) = self.restart(node, &from_binary, false).await?;
        self.rolled_back = true;
        Ok(
            json!({"fault": name, "targets": [node], "from": from, "to": from_binary, "catch_up_ms": catch_up_ms, "rollback": true, "down": []}),
        )
    }
}

#[async_trait]
impl Nemesis for UpgradeNemesis {
    fn handles(&self, fault: &FaultSpec) -> bool {
        fault.is_upgrade()
    }

    async fn start(&mut self, fault: &FaultSpec, _rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        match fault.action {
            Action::Rollback => self.rollback(fault).await,
            _ => self.upgrade(fault).await,
        }
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let mut value = json!({"fault": fault.to_string()});
        if let Some(node) = self.moving.take()
            && !self.system.is_running(node).await
        {
            self.system.start(node).await?;
            value["restarted"] = json!(node);
        }
        Ok(value)
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        for node in self.system.nodes() {
            if !self.system.is_running(node).await {
                self.system.start(node).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Down;
    use rand::SeedableRng as _;

    #[tokio::test]
    async fn a_step_cut_off_between_stopping_and_starting_its_node_has_its_stop_start_it() {
        let system = Arc::new(Down::default());
        system.started.lock().unwrap().extend([1, 2, 3]);
        let mut nemesis = UpgradeNemesis::new(system.clone(), "old".into(), "new".into());
        let fault = FaultSpec::parse("upgrade").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // As the runner's bound does: the step's future dropped while the new build starts.
        let step = nemesis.start(&fault, &mut rng);
        assert!(tokio::time::timeout(Duration::from_millis(50), step).await.is_err());
        assert!(!system.started.lock().unwrap().contains(&1), "node 1 was stopped");
        assert_eq!(nemesis.stop(&fault).await.unwrap()["restarted"], 1);
        assert!(system.started.lock().unwrap().contains(&1), "the step's stop started node 1 again");
        assert_eq!(nemesis.stop(&fault).await.unwrap().get("restarted"), None, "once");
    }
}
