//! The membership nemesis: nodes join as learners, catch up, are promoted and removed, through
//! the system's [`Membership`] power, while the other nemeses' faults run beside it.
//!
//! * `add-learner`: a fresh node from a spare slot is attached as a learner, and its catch-up is
//!   sampled every [`SAMPLE_EVERY`] until it has applied what the leader had committed when it
//!   was attached (bounded by [`CATCH_UP`]);
//! * `promote`: a learner is promoted with the leader's commit index at that moment as
//!   `min_applied_index`;
//! * `remove`: a learner, else a voter that does not lead, is removed;
//! * `replace`: `add-learner`, then `promote` (asked again while the gate refuses, bounded), then
//!   the removal of an old voter.
//!
//! Once per run, after the first catch-up, it promotes a learner it made fall behind on purpose
//! (paused while the leader commits on): the gate must refuse (a system with a gate of its own,
//! [`Membership::own_gate`], is measured against ours instead: whatever it answers is recorded). Every promotion's figures go
//! into the fault's value ([`PromoteRecord`], [`CatchUpRecord`]), so they land in the history
//! as a nemesis op, and the samples go to `catchup.jsonl` ([`CatchUpSample`]).

use crate::system::{Members, Membership, System, SystemError};
use crate::{Action, FaultSpec, Nemesis, NemesisError};
use async_trait::async_trait;
use ordeal_history::membership::{
    CATCH_UP, CatchUpRecord, CatchUpSample, LeaderProgress, MemberMatch, PREMATURE, PROMOTE, PromoteRecord, REMOVED,
    REMOVING,
};
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often a catch-up is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long a learner may take to catch up before the nemesis goes on without it.
const CATCH_UP_BOUND: Duration = Duration::from_secs(12);
/// How long the premature promote waits for the leader to commit past the paused learner.
const FALL_BEHIND: Duration = Duration::from_secs(3);
/// How far (entries) the paused learner should fall behind before its premature promote.
const BEHIND_BY: u64 = 50;
/// How far past the leader's commit index the premature promote of a system whose gate asks the
/// learner sets `min_applied_index`: an index no member has committed, so that no learner can
/// have applied it by the time the gate asks, however fast it catches up once resumed.
const BEYOND_COMMIT: u64 = 1_000_000;
/// How long a `replace` keeps asking for a promotion the gate refuses (the learner lags).
const PROMOTE_BOUND: Duration = Duration::from_secs(5);

/// The run's clock: the instant the history's times count from, set once the history starts.
pub type RunClock = Arc<OnceLock<Instant>>;

/// The membership nemesis.
pub struct MembershipNemesis {
    system: Arc<dyn System>,
    samples: Option<PathBuf>,
    clock: RunClock,
    /// Whether the premature promote was tried this run.
    premature_tried: bool,
    /// A learner paused for the premature promote and not resumed yet.
    paused: Option<u64>,
}

impl MembershipNemesis {
    /// Changes the membership of `system`; catch-up samples are appended to `samples`, timed by
    /// `clock`.
    pub fn new(system: Arc<dyn System>, samples: Option<PathBuf>, clock: RunClock) -> Self {
        MembershipNemesis { system, samples, clock, premature_tried: false, paused: None }
    }

    fn power(&self) -> Result<&dyn Membership, NemesisError> {
        self.system
            .membership()
            .ok_or_else(|| SystemError::Unsupported { system: self.system.name(), power: "change membership" }.into())
    }

    fn now(&self) -> u64 {
        self.clock.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    /// Attaches a fresh node and follows its catch-up.
    async fn add(&mut self) -> Result<(u64, CatchUpRecord), NemesisError> {
        let node = *self.power()?.spares().first().ok_or(NemesisError::NoTarget("spare slot"))?;
        // Timed from the attachment's answer, with the leader's commit then as the target: a
        // system may take a while to accept it (etcd refuses while a voter is newly connected).
        self.power()?.add_learner(node).await?;
        let start = self.now();
        let before = self.power()?.members().await?;
        let record = self.catch_up(node, start, &before).await;
        Ok((node, record))
    }

    /// Samples `node` until it has applied the leader's commit index of the start, or the bound.
    async fn catch_up(&self, node: u64, start: u64, before: &Members) -> CatchUpRecord {
        let began = Instant::now();
        let mut record = CatchUpRecord {
            node,
            start,
            target_index: before.commit_index,
            promotable_ms: None,
            applied_index: 0,
            snapshot_seen: false,
            voters_before: before.voters(),
            voter_sets: Vec::new(),
            samples: 0,
            snapshot_bytes: None,
        };
        while began.elapsed() < CATCH_UP_BOUND {
            let next = tokio::time::Instant::now() + SAMPLE_EVERY;
            let sample = self.sample(node).await;
            record.samples += 1;
            record.snapshot_seen |= sample.snapshot == Some(true);
            record.applied_index = sample.applied_index.unwrap_or(record.applied_index);
            if !sample.voters.is_empty() && !record.voter_sets.contains(&sample.voters) {
                record.voter_sets.push(sample.voters.clone());
            }
            record.snapshot_bytes = sample.snapshot_bytes.or(record.snapshot_bytes);
            self.write(&sample);
            if sample.applied_index.is_some_and(|a| a >= record.target_index) {
                record.promotable_ms = Some(began.elapsed().as_secs_f64() * 1e3);
                break;
            }
            tokio::time::sleep_until(next).await;
        }
        record
    }

    /// One sample: every node's status at once, and the leader's word on snapshots, both
    /// bounded so that a sample takes less than [`SAMPLE_EVERY`].
    async fn sample(&self, node: u64) -> CatchUpSample {
        let time = self.now();
        let bound = SAMPLE_EVERY * 9 / 10;
        let members = async {
            match self.system.membership() {
                Some(m) => tokio::time::timeout(bound, m.members()).await.ok().and_then(Result::ok),
                None => None,
            }
        };
        let bytes = async {
            match self.system.membership() {
                Some(m) => tokio::time::timeout(bound, m.snapshot_bytes(node)).await.ok().flatten(),
                None => None,
            }
        };
        let (views, members, snapshot_bytes) = tokio::join!(self.system.statuses(bound), members, bytes);
        let leader = self_reported_leader(&views);
        let leader_group = leader.and_then(|l| views.get(&l)?.groups.first().cloned());
        let progress = members.as_ref().map(|m| LeaderProgress {
            leader: m.leader,
            // The term of the same leader's status; 0 (never compared) when it did not say.
            term: views.get(&m.leader).and_then(|v| v.groups.first()).map_or(0, |g| g.term),
            commit_index: m.commit_index,
            members: m
                .members
                .iter()
                .map(|p| MemberMatch { id: p.id, learner: p.learner, match_index: p.match_index })
                .collect(),
        });
        CatchUpSample {
            time,
            node,
            applied_index: views.get(&node).and_then(|v| v.groups.first()).map(|g| g.applied_index),
            leader,
            leader_commit: leader_group.as_ref().map(|g| g.commit_index),
            snapshot: members.as_ref().and_then(|m| m.get(node)).map(|m| m.snapshot),
            voters: leader_group.as_ref().map(|g| g.voters.clone()).unwrap_or_default(),
            learners: leader_group.map(|g| g.learners).unwrap_or_default(),
            progress,
            snapshot_bytes,
        }
    }

    fn write(&self, sample: &CatchUpSample) {
        let Some(path) = &self.samples else { return };
        let line = serde_json::to_string(sample).unwrap_or_default();
        let appended =
            std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            tracing::warn!("{}: {e}", path.display());
        }
    }

    /// `node`'s applied index, as it reports it.
    async fn applied(&self, node: u64) -> Option<u64> {
        let views = self.system.statuses(Duration::from_millis(500)).await;
        views.get(&node).and_then(|v| v.groups.first()).map(|g| g.applied_index)
    }

    /// The leader's commit index, as it reports it.
    async fn leader_commit(&self) -> Option<u64> {
        let views = self.system.statuses(Duration::from_millis(500)).await;
        let leader = self_reported_leader(&views)?;
        views.get(&leader)?.groups.first().map(|g| g.commit_index)
    }

    /// Promotes `node` with the leader's commit index plus `beyond` as the gate, recording the
    /// figures.
    async fn promote(
        &self,
        node: u64,
        paused: bool,
        before: Option<u64>,
        beyond: u64,
    ) -> Result<PromoteRecord, NemesisError> {
        let commit = self.leader_commit().await.ok_or(NemesisError::NoTarget("leader"))?;
        let min_applied_index = commit + beyond;
        let outcome = self.power()?.promote(node, min_applied_index).await;
        let time = self.now();
        if paused && let Some(p) = self.system.processes() {
            p.resume(node).await?;
        }
        let sample = self.sample(node).await;
        self.write(&sample);
        let after = sample.applied_index;
        let (accepted, reason, gate_saw, unanswered) = match outcome {
            Ok(saw) => (true, None, saw, false),
            Err(SystemError::Refused { reason, gate_saw, .. }) => (false, Some(reason), gate_saw, false),
            // Definitely not done (no leader yet, say): a gated promote asks again.
            Err(e @ SystemError::Unavailable { .. }) => (false, Some(e.to_string()), None, false),
            // No answer: the members say whether it happened, unless it may still commit.
            Err(e) => {
                let voter = self.is_voter(node).await;
                (voter, Some(e.to_string()), None, !voter)
            }
        };
        Ok(PromoteRecord {
            node,
            min_applied_index,
            learner_applied_before: before,
            learner_applied_after: after,
            paused,
            accepted,
            reason,
            time,
            own_gate: self.power()?.own_gate().map(String::from),
            gate_saw,
            unanswered,
        })
    }

    /// Whether the leader counts `node` as a voter (false when it does not answer).
    async fn is_voter(&self, node: u64) -> bool {
        match self.power() {
            Ok(m) => m.members().await.is_ok_and(|m| m.voters().contains(&node)),
            Err(_) => false,
        }
    }

    /// The premature promote: `node` is paused until the leader has committed well past it, then
    /// promoted with the leader's commit index as the gate, and resumed. A system whose gate asks
    /// the learner itself (the broker's: its applied index, not the leader's view of its log) gets
    /// the learner resumed just before the promote, or its gate could only refuse for want of an
    /// answer; a resumed learner catches up within milliseconds, so its gate is set
    /// [`BEYOND_COMMIT`] past the commit, and the gate's figure says how far below it was.
    async fn premature(&mut self, node: u64) -> Result<PromoteRecord, NemesisError> {
        self.premature_tried = true;
        let before = self.applied(node).await;
        let processes = self
            .system
            .processes()
            .ok_or(SystemError::Unsupported { system: self.system.name(), power: "pause a learner" })?;
        processes.pause(node).await?;
        self.paused = Some(node);
        let began = Instant::now();
        while began.elapsed() < FALL_BEHIND {
            let next = tokio::time::Instant::now() + SAMPLE_EVERY;
            let sample = self.sample(node).await;
            self.write(&sample);
            if sample.leader_commit.is_some_and(|c| c >= before.unwrap_or(0) + BEHIND_BY) {
                break;
            }
            tokio::time::sleep_until(next).await;
        }
        let asks_learner = self.power()?.own_gate().is_none();
        if asks_learner {
            processes.resume(node).await?;
        }
        let beyond = if asks_learner { BEYOND_COMMIT } else { 0 };
        let record = self.promote(node, !asks_learner, before, beyond).await;
        if record.is_err() && !asks_learner {
            processes.resume(node).await?;
        }
        self.paused = None;
        record
    }

    /// Promotes `node`, asking again (bounded) while the gate refuses because it lags, or the
    /// system cannot take the change now.
    async fn promote_gated(&self, node: u64) -> Result<PromoteRecord, NemesisError> {
        let began = Instant::now();
        loop {
            let before = self.applied(node).await;
            let record = self.promote(node, false, before, 0).await?;
            if record.accepted || record.unanswered || began.elapsed() >= PROMOTE_BOUND {
                return Ok(record);
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// A member to remove: a learner if any (other than `keep`), else a voter that neither leads
    /// nor is `keep`.
    async fn removable(&self, keep: Option<u64>, rng: &mut ChaCha8Rng) -> Result<u64, NemesisError> {
        let members = self.power()?.members().await?;
        let others = |ids: Vec<u64>| -> Vec<u64> {
            ids.into_iter().filter(|id| Some(*id) != keep && *id != members.leader).collect()
        };
        let learners = others(members.learners());
        let voters = others(members.voters());
        let pool = if learners.is_empty() { voters } else { learners };
        pool.choose(rng).copied().ok_or(NemesisError::NoTarget("member to remove"))
    }

    /// Attaches a learner, follows its catch-up, and tries the premature promote once per run.
    /// An error after the attachment keeps what was recorded ([`NemesisError::Partial`]).
    async fn add_learner(&mut self, name: String) -> Result<Value, NemesisError> {
        let (node, catch_up) = self.add().await?;
        let mut value = json!({"fault": name, "targets": [node], CATCH_UP: catch_up});
        if !self.premature_tried {
            value[PREMATURE] = json!(self.premature(node).await.map_err(|e| e.after(&value))?);
        }
        Ok(value)
    }

    async fn replace(&mut self, name: String, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        let mut value = self.add_learner(name).await?;
        let node = value["targets"][0].as_u64().unwrap_or_default();
        let promoted_early = value[PREMATURE]["accepted"] == Value::Bool(true);
        if !promoted_early {
            let record = self.promote_gated(node).await.map_err(|e| e.after(&value))?;
            let accepted = record.accepted;
            value[PROMOTE] = json!(record);
            if !accepted {
                return Ok(value);
            }
        }
        let old = self.removable(Some(node), rng).await.map_err(|e| e.after(&value))?;
        // Asked before it is answered: a removal whose answer is lost may still happen.
        value[REMOVING] = json!(old);
        self.power()?.remove(old).await.map_err(|e| NemesisError::from(e).after(&value))?;
        value[REMOVED] = json!(old);
        Ok(value)
    }
}

/// The node that says it leads group 0, in the highest term (a fresh learner knows no leader
/// yet, so the nodes need not agree).
fn self_reported_leader(views: &std::collections::BTreeMap<u64, crate::NodeView>) -> Option<u64> {
    views
        .values()
        .filter_map(|v| v.groups.first().filter(|g| g.role == "leader").map(|g| (g.term, v.id)))
        .max()
        .map(|(_, id)| id)
}

#[async_trait]
impl Nemesis for MembershipNemesis {
    fn handles(&self, fault: &FaultSpec) -> bool {
        fault.is_membership()
    }

    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        let name = fault.to_string();
        match fault.action {
            Action::AddLearner => self.add_learner(name).await,
            Action::Promote => {
                let learners = self.power()?.members().await?.learners();
                let node = *learners.choose(rng).ok_or(NemesisError::NoTarget("learner"))?;
                let before = self.applied(node).await;
                let record = self.promote(node, false, before, 0).await?;
                Ok(json!({"fault": name, "targets": [node], PROMOTE: record}))
            }
            Action::Remove => {
                let node = self.removable(None, rng).await?;
                let asked = json!({"fault": name, "targets": [node], REMOVING: node});
                self.power()?.remove(node).await.map_err(|e| NemesisError::from(e).after(&asked))?;
                Ok(json!({"fault": name, "targets": [node]}))
            }
            _ => self.replace(name, rng).await,
        }
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        // A membership change stays done: nothing to repair.
        Ok(json!({"fault": fault.to_string()}))
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        if let (Some(node), Some(p)) = (self.paused.take(), self.system.processes()) {
            p.resume(node).await?;
        }
        let members: BTreeSet<u64> = self.system.nodes().into_iter().collect();
        for node in members {
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
    use crate::testing::Promotes;
    use std::sync::atomic::Ordering;

    fn nemesis(system: &Arc<Promotes>) -> MembershipNemesis {
        MembershipNemesis::new(system.clone(), None, RunClock::default())
    }

    #[tokio::test]
    async fn a_gated_promote_asks_again_after_not_now_and_a_lagging_refusal_until_granted() {
        let refused = SystemError::Refused { node: 4, reason: "applied 7 < 10".into(), gate_saw: Some(7) };
        let not_now = SystemError::Unavailable { node: 4, message: "no leader".into() };
        let system = Arc::new(Promotes::answering(vec![Err(not_now), Err(refused), Ok(Some(10))]));
        let record = nemesis(&system).promote_gated(4).await.unwrap();
        assert_eq!(system.asked.load(Ordering::SeqCst), 3);
        assert!(record.accepted && !record.unanswered, "{record:?}");
        assert_eq!((record.gate_saw, record.min_applied_index), (Some(10), 10));
    }

    #[tokio::test]
    async fn a_promote_without_an_answer_is_recorded_unanswered_and_not_asked_again() {
        let lost = SystemError::Request { node: 1, message: "deadline exceeded".into() };
        let system = Arc::new(Promotes::answering(vec![Err(lost), Ok(Some(10))]));
        let record = nemesis(&system).promote_gated(4).await.unwrap();
        // Asking again could turn an unknown outcome into a granted one, hiding it.
        assert_eq!(system.asked.load(Ordering::SeqCst), 1);
        assert!(record.unanswered && !record.accepted, "the members still show a learner: {record:?}");
    }
}
