//! What the membership nemesis records: the evidence of each promotion and catch-up, carried in
//! the values of its nemesis ops in the history, and the catch-up samples it writes beside the
//! history (`catchup.jsonl`, one [`CatchUpSample`] per line). Both are read back by the checks
//! and the report; fields are only ever added, with defaults (`docs/formats.md`).

use serde::{Deserialize, Serialize};

/// The key of a [`PromoteRecord`] in a nemesis op's value.
pub const PROMOTE: &str = "promote";
/// The key of the deliberately premature [`PromoteRecord`] in a nemesis op's value.
pub const PREMATURE: &str = "premature";
/// The key of a [`CatchUpRecord`] in a nemesis op's value.
pub const CATCH_UP: &str = "catch_up";
/// The key of the member a nemesis op asked the system to remove, before it answered: a removal
/// whose answer never came (an error, a timeout) may still have happened.
pub const REMOVING: &str = "removing";
/// The key of the member a nemesis op removed, once the system said so.
pub const REMOVED: &str = "removed";

/// One promotion the nemesis asked for, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRecord {
    /// The learner.
    pub node: u64,
    /// The gate asked for: the leader's commit index when the promote was sent.
    pub min_applied_index: u64,
    /// The learner's applied index just before (as it reported it), when it answered.
    pub learner_applied_before: Option<u64>,
    /// The learner's applied index just after the answer, when it answered: the gate cannot have
    /// seen more (applied indices only grow).
    pub learner_applied_after: Option<u64>,
    /// Whether the learner was paused while the promote was decided (it could apply nothing).
    #[serde(default)]
    pub paused: bool,
    /// Whether the system made it a voter.
    pub accepted: bool,
    /// The system's reason for a refusal, or the error.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the answer came, in ns since the run started.
    #[serde(default)]
    pub time: u64,
    /// The system's own gate, when it does not take `min_applied_index` (etcd's): the promote
    /// is measured against `min_applied_index`, not held to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_gate: Option<String>,
    /// The learner's applied index as the system's gate saw it, where the system says (the
    /// broker's gate asks the learner; a refusal without it never reached the comparison).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_saw: Option<u64>,
    /// Whether the system gave no answer (its error is the `reason`): whether it made the
    /// learner a voter is not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
}

impl PromoteRecord {
    /// Whether an accepted promote is shown to have missed its gate: the learner's applied index
    /// as the gate saw it, or right after the answer, is still below `min_applied_index`.
    pub fn missed_gate(&self) -> bool {
        self.accepted && self.gate_figures().any(|a| a < self.min_applied_index)
    }

    /// Whether an accepted promote carries a figure that [`missed_gate`](Self::missed_gate) can
    /// judge it by.
    pub fn judgeable(&self) -> bool {
        self.gate_figures().next().is_some()
    }

    /// The learner's applied indexes the gate cannot have been past: what it saw, and what the
    /// learner had applied right after the answer (applied indices only grow).
    fn gate_figures(&self) -> impl Iterator<Item = u64> {
        self.gate_saw.into_iter().chain(self.learner_applied_after)
    }

    /// Whether the system was held to `min_applied_index` (it takes it as its gate).
    pub fn asserted(&self) -> bool {
        self.own_gate.is_none()
    }

    /// Whether this premature promote shows the gate at work: refused by a gate that compared the
    /// learner's figures (any refusal, for a system with its own gate), or accepted while the
    /// gate saw the learner below `min_applied_index` (a violation). A refusal that never reached
    /// the comparison (the learner did not answer), or an acceptance of a learner that had caught
    /// up by the time the gate looked, shows nothing either way.
    pub fn shows_gate(&self) -> bool {
        match (self.accepted, self.gate_saw) {
            (false, saw) => saw.is_some() || !self.asserted(),
            (true, Some(saw)) => saw < self.min_applied_index,
            (true, None) => true,
        }
    }
}

/// One learner's catch-up, from attachment until it had applied what the leader had committed
/// when it was attached (or the bound ran out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUpRecord {
    /// The learner.
    pub node: u64,
    /// When it was attached, in ns since the run started.
    pub start: u64,
    /// The leader's commit index then: the target.
    pub target_index: u64,
    /// How long until it had applied the target, in ms; `None` when the bound ran out first.
    pub promotable_ms: Option<f64>,
    /// The learner's applied index at the last sample.
    pub applied_index: u64,
    /// Whether a snapshot was seen on its way to it.
    pub snapshot_seen: bool,
    /// The voter set the leader reported when the catch-up began.
    pub voters_before: Vec<u64>,
    /// Every distinct voter set the leader reported during the catch-up.
    pub voter_sets: Vec<Vec<u64>>,
    /// Samples taken.
    pub samples: usize,
    /// Bytes of state the learner had received in snapshots when it caught up, where the system
    /// counts them.
    #[serde(default)]
    pub snapshot_bytes: Option<u64>,
}

impl CatchUpRecord {
    /// Entries applied per second while catching up, when it caught up.
    pub fn entries_per_s(&self) -> Option<f64> {
        self.promotable_ms.filter(|ms| *ms > 0.0).map(|ms| self.target_index as f64 / (ms / 1e3))
    }

    /// Snapshot bytes received per second while catching up, in MB/s (10^6 bytes), when it
    /// caught up and the system counts snapshot bytes.
    pub fn mb_per_s(&self) -> Option<f64> {
        let ms = self.promotable_ms.filter(|ms| *ms > 0.0)?;
        Some(self.snapshot_bytes? as f64 / 1e6 / (ms / 1e3))
    }

    /// The voter sets that lack a voter of `voters_before`: the quorum shrank while it caught up.
    pub fn shrunk(&self) -> Vec<&Vec<u64>> {
        self.voter_sets.iter().filter(|s| self.voters_before.iter().any(|v| !s.contains(v))).collect()
    }
}

/// One sample of a learner's catch-up, every ≤ 100 ms while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpSample {
    /// When, in ns since the run started (the history's clock).
    pub time: u64,
    /// The learner.
    pub node: u64,
    /// Its applied index, when it answered.
    pub applied_index: Option<u64>,
    /// The leader, when one was agreed on.
    pub leader: Option<u64>,
    /// The leader's commit index, when it answered.
    pub leader_commit: Option<u64>,
    /// Whether the leader was sending it a snapshot; `None` when the leader did not say in time.
    pub snapshot: Option<bool>,
    /// The voters, as the leader reported them.
    pub voters: Vec<u64>,
    /// The learners, as the leader reported them.
    pub learners: Vec<u64>,
    /// The leader's replication progress, from one answer, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<LeaderProgress>,
    /// Bytes of state the learner has received in snapshots, where the system counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_bytes: Option<u64>,
}

/// A leader's commit index and every member's match index, as one answer gave them: the
/// evidence that no commit was carried by a quorum that counts a learner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderProgress {
    /// The leader that answered.
    pub leader: u64,
    /// Its term, from its status in the same sample (0 when it did not say).
    pub term: u64,
    /// Its commit index.
    pub commit_index: u64,
    /// Every member, the leader itself included.
    pub members: Vec<MemberMatch>,
}

/// One member's match index as its leader knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMatch {
    /// The member.
    pub id: u64,
    /// Whether it is a learner (its acks must not count toward a commit).
    pub learner: bool,
    /// The highest index the leader knows it holds.
    pub match_index: u64,
}

impl LeaderProgress {
    /// The highest index a majority of the voters hold: the most the voters alone can commit.
    pub fn voter_quorum_index(&self) -> u64 {
        let mut matches: Vec<u64> = self.members.iter().filter(|m| !m.learner).map(|m| m.match_index).collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches.get(matches.len() / 2).copied().unwrap_or(0)
    }

    /// Whether this answer shows a commit only a quorum counting a learner could have made: the
    /// commit rose since `before` (the same leader in the same term, whose followers' match
    /// indexes only grow, so a carried-over commit of an earlier term is not mistaken for one)
    /// beyond what a majority of the voters hold. The voters must be the same in both answers:
    /// across a promote, the old voters may have committed what the new majority does not hold
    /// yet (seen: voters 1, 4, 5 committed 16765, then 6 joined them holding 16764).
    pub fn counted_a_learner(&self, before: &LeaderProgress) -> bool {
        self.same_reign(before)
            && self.voters() == before.voters()
            && self.commit_index > before.commit_index
            && self.commit_index > self.voter_quorum_index()
    }

    /// Whether both answers come from the same leader in the same known term. Only then do they
    /// compare: within one reign the leader's configuration moves only by the changes it
    /// applies, while a new leader may not yet have applied a change its predecessor had.
    pub fn same_reign(&self, before: &LeaderProgress) -> bool {
        self.leader == before.leader && self.term == before.term && self.term != 0
    }

    /// The voters of `before` that this answer, of the same reign, no longer counts as voters:
    /// only a removal may take a voter away (a promotion only adds one).
    pub fn lost_voters(&self, before: &LeaderProgress) -> Vec<u64> {
        if !self.same_reign(before) {
            return Vec::new();
        }
        let now = self.voters();
        before.voters().into_iter().filter(|v| !now.contains(v)).collect()
    }

    /// The voters' ids, in order.
    pub fn voters(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.members.iter().filter(|m| !m.learner).map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_shrinks_are_judged_from_the_figures() {
        let p = PromoteRecord {
            node: 4,
            min_applied_index: 100,
            learner_applied_before: Some(10),
            learner_applied_after: Some(12),
            paused: true,
            accepted: true,
            reason: None,
            time: 0,
            own_gate: None,
            gate_saw: Some(11),
            unanswered: false,
        };
        assert!(p.missed_gate() && p.judgeable());
        // The gate at work: refused with the learner's figure, or accepted below the gate.
        assert!(p.shows_gate() && PromoteRecord { accepted: false, ..p.clone() }.shows_gate());
        assert!(!PromoteRecord { accepted: false, gate_saw: None, ..p.clone() }.shows_gate(), "no answer");
        assert!(!PromoteRecord { gate_saw: Some(100), ..p.clone() }.shows_gate(), "caught up by then");
        assert!(!PromoteRecord { accepted: false, ..p.clone() }.missed_gate());
        assert!(!PromoteRecord { learner_applied_after: Some(100), gate_saw: Some(100), ..p.clone() }.missed_gate());
        // The gate's own figure is enough: it saw the learner behind and let it through.
        assert!(PromoteRecord { learner_applied_after: None, ..p.clone() }.missed_gate());
        assert!(!PromoteRecord { learner_applied_after: None, gate_saw: None, ..p }.judgeable(), "nothing to judge by");
        let c = CatchUpRecord {
            node: 4,
            start: 0,
            target_index: 500,
            promotable_ms: Some(250.0),
            applied_index: 520,
            snapshot_seen: true,
            voters_before: vec![1, 2, 3],
            voter_sets: vec![vec![1, 2, 3], vec![1, 3]],
            samples: 3,
            snapshot_bytes: Some(1_000_000),
        };
        assert_eq!(c.mb_per_s(), Some(4.0));
        assert_eq!(c.entries_per_s(), Some(2000.0));
        assert_eq!(c.shrunk(), vec![&vec![1, 3]]);
    }

    fn progress(term: u64, commit: u64, matches: &[(u64, bool, u64)]) -> LeaderProgress {
        let members = matches.iter().map(|&(id, learner, match_index)| MemberMatch { id, learner, match_index });
        LeaderProgress { leader: 1, term, commit_index: commit, members: members.collect() }
    }

    #[test]
    fn a_commit_beyond_the_voters_majority_counted_a_learner() {
        let before = progress(2, 100, &[(1, false, 100), (2, false, 100), (3, false, 90), (4, true, 90)]);
        // Voters 1 and 2 hold 150: a majority of three.
        let fine = progress(2, 150, &[(1, false, 150), (2, false, 150), (3, false, 90), (4, true, 150)]);
        assert_eq!(fine.voter_quorum_index(), 150);
        assert!(!fine.counted_a_learner(&before));
        // Only the leader and the learner hold 150.
        let counted = progress(2, 150, &[(1, false, 150), (2, false, 100), (3, false, 90), (4, true, 150)]);
        assert!(counted.counted_a_learner(&before));
        // A promote between the answers (the one seen in a broker run): voters 1 and 2 of 1, 2, 3
        // carried 150, then learner 4 became a voter holding 140, like 3.
        let learner = progress(2, 100, &[(1, false, 100), (2, false, 100), (3, false, 90), (4, true, 90)]);
        let promoted = progress(2, 150, &[(1, false, 150), (2, false, 151), (3, false, 140), (4, false, 140)]);
        assert_eq!(promoted.voter_quorum_index(), 140);
        assert!(!promoted.counted_a_learner(&learner), "the old voters committed it");
        // A new term resets the followers' matches while the commit carries over: not evidence.
        assert!(!progress(3, 150, &[(1, false, 150), (2, false, 0), (3, false, 0)]).counted_a_learner(&before));
    }

    #[test]
    fn a_voter_is_lost_only_within_one_reign() {
        let before = progress(2, 100, &[(1, false, 100), (2, false, 100), (3, false, 90), (4, true, 90)]);
        let demoted = progress(2, 120, &[(1, false, 120), (2, false, 120), (3, true, 110), (4, false, 120)]);
        assert_eq!(demoted.lost_voters(&before), vec![3], "3 became a learner while 4 was promoted");
        let gone = progress(2, 120, &[(1, false, 120), (2, false, 120), (4, true, 120)]);
        assert_eq!(gone.lost_voters(&before), vec![3]);
        let grown = progress(2, 120, &[(1, false, 120), (2, false, 120), (3, false, 110), (4, false, 120)]);
        assert!(grown.lost_voters(&before).is_empty());
        // A new leader, or a term not known, compares nothing: it may not have applied a change
        // its predecessor had.
        assert!(progress(3, 120, &[(1, false, 120), (2, false, 120)]).lost_voters(&before).is_empty());
        assert!(
            progress(0, 120, &[(1, false, 120), (2, false, 120)])
                .lost_voters(&progress(0, 100, &[(3, false, 1)]))
                .is_empty()
        );
    }
}
