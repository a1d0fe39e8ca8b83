//! Process faults: kill, pause, graceful stop, and leadership transfer, aimed at a group's
//! leader or follower, one node, a minority, a majority or all. Several may be active at once.

use crate::lazyfs::Disks;
use crate::lazyfs::Lost;
use crate::system::{self, System};
use crate::{Action, FaultSpec, Groups, Nemesis, NemesisError, Target};
use async_trait::async_trait;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The process nemesis. It remembers what it broke so that `stop` and `heal_all` repair exactly
/// that.
pub struct ProcessNemesis {
    system: Arc<dyn System>,
    active: Vec<(FaultSpec, Vec<u64>)>,
    /// Every node this nemesis killed, stopped or paused and has not repaired yet.
    broken: BTreeSet<u64>,
    /// The nodes' lazyfs mounts, which a crash makes lose their un-fsynced writes.
    disks: Option<Arc<Disks>>,
}

/// The nodes a leader or follower fault aims at.
pub(crate) async fn leaders(system: &dyn System, groups: Groups) -> Result<Vec<u64>, NemesisError> {
    let count = system.leaders().map_or(1, |l| l.groups());
    let wanted: Vec<u32> = match groups.one() {
        Some(g) => vec![g],
        None => (0..count).collect(),
    };
    let views = system.statuses(std::time::Duration::from_millis(500)).await;
    let mut out = BTreeSet::new();
    for g in wanted {
        out.insert(system::agreed_leader(&views, g).ok_or(NemesisError::NoTarget("leader"))?);
    }
    Ok(out.into_iter().collect())
}

impl ProcessNemesis {
    /// A nemesis acting on `system`.
    pub fn new(system: Arc<dyn System>) -> Self {
        ProcessNemesis { system, active: Vec::new(), broken: BTreeSet::new(), disks: None }
    }

    /// Crashes lose the un-fsynced writes of these disks.
    pub fn with_disks(mut self, disks: Arc<Disks>) -> Self {
        self.disks = Some(disks);
        self
    }

    async fn targets(&self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Vec<u64>, NemesisError> {
        let nodes = self.system.nodes();
        let n = nodes.len();
        let pick = |k: usize, rng: &mut ChaCha8Rng| {
            let mut chosen: Vec<u64> = nodes.choose_multiple(rng, k).copied().collect();
            chosen.sort_unstable();
            chosen
        };
        Ok(match fault.target {
            Target::Leader => leaders(&*self.system, fault.groups).await?,
            Target::Follower => {
                let leaders = leaders(&*self.system, fault.groups).await?;
                let followers: Vec<u64> = nodes.iter().copied().filter(|n| !leaders.contains(n)).collect();
                vec![*followers.choose(rng).ok_or(NemesisError::NoTarget("follower"))?]
            }
            Target::One => pick(1, rng),
            Target::Minority => pick((n - 1) / 2, rng),
            Target::Majority => pick(n / 2 + 1, rng),
            Target::All => nodes,
        })
    }

    async fn transfer(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        let power = self
            .system
            .leaders()
            .ok_or(system::SystemError::Unsupported { system: self.system.name(), power: "transfer leadership" })?;
        let group = fault.groups.one().unwrap_or(0);
        let leader = leaders(&*self.system, Groups::One(group)).await?[0];
        let others: Vec<u64> = self.system.nodes().into_iter().filter(|n| *n != leader).collect();
        let to = *others.choose(rng).ok_or(NemesisError::NoTarget("other voter"))?;
        power.transfer_leader(leader, group, to).await?;
        Ok(json!({"fault": fault.to_string(), "targets": [leader], "to": to, "down": []}))
    }

    /// Breaks `node`; a crash answers with what its disk lost.
    async fn break_node(&self, action: Action, node: u64) -> Result<Option<Lost>, NemesisError> {
        let unsupported = |power| system::SystemError::Unsupported { system: self.system.name(), power };
        match action {
            Action::Kill => self.system.processes().ok_or(unsupported("kill"))?.kill(node).await?,
            Action::Crash => {
                let disks = self.disks.as_ref().ok_or_else(|| NemesisError::NotSetUp {
                    fault: "crash".into(),
                    what: "data directories on lazyfs",
                })?;
                // Dead and reaped first: no write of it may land after the loss.
                self.system.processes().ok_or(unsupported("kill"))?.kill(node).await?;
                return Ok(Some(disks.lose_unsynced(node)?));
            }
            Action::Pause => self.system.processes().ok_or(unsupported("pause"))?.pause(node).await?,
            _ => self.system.stop(node).await?,
        }
        Ok(None)
    }

    async fn repair(&mut self, action: Action, nodes: &[u64]) -> Result<(), NemesisError> {
        for &node in nodes {
            match action {
                Action::Kill | Action::Crash | Action::Terminate => self.system.start(node).await?,
                Action::Pause => {
                    if let Some(p) = self.system.processes() {
                        p.resume(node).await?;
                    }
                }
                _ => {}
            }
            self.broken.remove(&node);
        }
        Ok(())
    }
}

#[async_trait]
impl Nemesis for ProcessNemesis {
    fn handles(&self, fault: &FaultSpec) -> bool {
        fault.is_process()
    }

    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        if self.active.iter().any(|(f, _)| f == fault) {
            return Err(NemesisError::Busy(fault.to_string()));
        }
        if fault.action == Action::TransferLeader {
            let value = self.transfer(fault, rng).await?;
            self.active.push((*fault, vec![]));
            return Ok(value);
        }
        let targets = self.targets(fault, rng).await?;
        let mut lost = serde_json::Map::new();
        for &node in &targets {
            self.broken.insert(node);
            if let Some(l) = self.break_node(fault.action, node).await? {
                lost.insert(node.to_string(), json!(l));
            }
        }
        self.active.push((*fault, targets.clone()));
        // Killed, paused and stopped nodes serve nothing until the fault heals.
        let mut value = json!({"fault": fault.to_string(), "targets": targets, "down": targets});
        if !lost.is_empty() {
            value["lost_unsynced"] = Value::Object(lost);
        }
        Ok(value)
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let Some(i) = self.active.iter().position(|(f, _)| f == fault) else { return Ok(Value::Null) };
        let (fault, targets) = self.active.remove(i);
        self.repair(fault.action, &targets).await?;
        Ok(json!({"fault": fault.to_string(), "targets": targets}))
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        self.active.clear();
        let broken: Vec<u64> = std::mem::take(&mut self.broken).into_iter().collect();
        for node in broken {
            // Whatever was done to it, a resumed and running node is healed.
            if let Some(p) = self.system.processes() {
                p.resume(node).await.ok();
            }
            if !self.system.is_running(node).await {
                self.system.start(node).await?;
            }
        }
        Ok(())
    }
}
