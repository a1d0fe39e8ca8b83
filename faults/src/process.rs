//! Process faults: kill, pause, graceful stop, and leadership transfer, aimed at the leader, one
//! node, a minority, a majority or all.

use crate::{Action, Db, DbError, FaultSpec, Nemesis, Target};
use async_trait::async_trait;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The process nemesis. It remembers what it broke so that `stop` and `heal_all` repair exactly
/// that.
pub struct ProcessNemesis {
    db: Arc<dyn Db>,
    active: Option<(FaultSpec, Vec<u64>)>,
    /// Every node this nemesis killed, stopped or paused and has not repaired yet.
    broken: BTreeSet<u64>,
}

impl ProcessNemesis {
    /// A nemesis acting on `db`.
    pub fn new(db: Arc<dyn Db>) -> Self {
        ProcessNemesis { db, active: None, broken: BTreeSet::new() }
    }

    async fn targets(&self, target: Target, rng: &mut ChaCha8Rng) -> Result<Vec<u64>, DbError> {
        let nodes = self.db.nodes();
        let n = nodes.len();
        let pick = |k: usize, rng: &mut ChaCha8Rng| {
            let mut chosen: Vec<u64> = nodes.choose_multiple(rng, k).copied().collect();
            chosen.sort_unstable();
            chosen
        };
        Ok(match target {
            Target::Leader => {
                vec![self.db.leader(0).await.ok_or_else(|| DbError::Timeout("no leader to target".into()))?]
            }
            Target::Follower => {
                let leader =
                    self.db.leader(0).await.ok_or_else(|| DbError::Timeout("no leader, so no follower".into()))?;
                let followers: Vec<u64> = nodes.iter().copied().filter(|n| *n != leader).collect();
                followers.choose(rng).map(|f| vec![*f]).ok_or_else(|| DbError::Timeout("no follower".into()))?
            }
            Target::One => pick(1, rng),
            Target::Minority => pick((n - 1) / 2, rng),
            Target::Majority => pick(n / 2 + 1, rng),
            Target::All => nodes,
        })
    }

    async fn repair(&mut self, action: Action, nodes: &[u64]) -> Result<(), DbError> {
        for &node in nodes {
            match action {
                Action::Kill | Action::Terminate => self.db.start(node).await?,
                Action::Pause => self.db.resume(node).await?,
                _ => {}
            }
            self.broken.remove(&node);
        }
        Ok(())
    }
}

#[async_trait]
impl Nemesis for ProcessNemesis {
    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, DbError> {
        if let Some((active, _)) = &self.active {
            return Err(DbError::Timeout(format!("fault {active} is still active")));
        }
        if fault.action == Action::TransferLeader {
            let leader = self.db.leader(0).await.ok_or_else(|| DbError::Timeout("no leader to move".into()))?;
            let others: Vec<u64> = self.db.nodes().into_iter().filter(|n| *n != leader).collect();
            let to = *others.choose(rng).ok_or_else(|| DbError::Timeout("no other voter".into()))?;
            self.db.transfer_leader(leader, 0, to).await?;
            self.active = Some((*fault, vec![]));
            return Ok(json!({"fault": fault.to_string(), "targets": [leader], "to": to}));
        }
        if !matches!(fault.action, Action::Kill | Action::Pause | Action::Terminate) {
            return Err(DbError::Timeout(format!("{fault} is not a process fault")));
        }
        let targets = self.targets(fault.target, rng).await?;
        for &node in &targets {
            self.broken.insert(node);
            match fault.action {
                Action::Kill => self.db.kill(node).await?,
                Action::Pause => self.db.pause(node).await?,
                _ => self.db.terminate(node).await?,
            }
        }
        self.active = Some((*fault, targets.clone()));
        Ok(json!({"fault": fault.to_string(), "targets": targets}))
    }

    async fn stop(&mut self) -> Result<Value, DbError> {
        let Some((fault, targets)) = self.active.take() else {
            return Ok(Value::Null);
        };
        self.repair(fault.action, &targets).await?;
        Ok(json!({"fault": fault.to_string(), "targets": targets}))
    }

    async fn heal_all(&mut self) -> Result<(), DbError> {
        self.active = None;
        let broken: Vec<u64> = std::mem::take(&mut self.broken).into_iter().collect();
        for node in broken {
            // Whatever was done to it, a resumed and running node is healed.
            self.db.resume(node).await.ok();
            if !self.db.is_running(node).await {
                self.db.start(node).await?;
            }
        }
        Ok(())
    }
}
