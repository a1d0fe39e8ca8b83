//! The membership checks, from the figures the membership nemesis recorded in its ops
//! ([`ordeal_history::membership`]):
//!
//! * every premature promote (a learner paused far behind the leader's commit index, promoted
//!   with that index as `min_applied_index`) was refused;
//! * every accepted promote met its gate: the learner's applied index right after the answer was
//!   at least `min_applied_index` (applied indices only grow, so the gate cannot have seen more);
//! * the voter set never shrank while a learner caught up;
//! * no write was committed by a quorum that counts a learner: in the catch-up samples
//!   (`catchup.jsonl`), wherever the same leader in the same term raised its commit index between
//!   two answers, the new commit index is at most what a majority of the *voters* hold
//!   ([`LeaderProgress::counted_a_learner`]);
//!
//! and, as figures, each learner's time to promotable and catch-up rate. A run that named
//! membership faults but never tried its premature promote is `unknown`: the refusal it should
//! show is missing.
//!
//! The two promote checks hold a system to `min_applied_index` only when it takes it as its
//! gate. A system with a gate of its own (etcd 3.4: the learner's match index within 10% of the
//! leader's) is measured against it instead: a premature promote it accepts, or a promote it
//! accepts below `min_applied_index`, is named in the summary and in `details.laxer_than_ours`,
//! not counted as a violation. The voter-set and learner-quorum checks hold for every system.

use crate::Verdict;
use crate::checker::{CheckError, Checker, CheckerResult};
use ordeal_history::membership::{
    CATCH_UP, CatchUpRecord, CatchUpSample, LeaderProgress, PREMATURE, PROMOTE, PromoteRecord,
};
use ordeal_history::{Op, OpType, Process};
use serde_json::{Value, json};

/// The membership checker.
#[derive(Debug, Default)]
pub struct MembershipChecker {
    premature: Vec<PromoteRecord>,
    promotes: Vec<PromoteRecord>,
    catch_ups: Vec<CatchUpRecord>,
    /// Every member removed: (node, when the removal was answered, ns since the run started).
    removals: Vec<(u64, u64)>,
    /// The leader progress of every catch-up sample, in time order.
    progress: Vec<(u64, LeaderProgress)>,
    /// Records that did not parse: evidence the check cannot read.
    unreadable: Vec<String>,
}

impl MembershipChecker {
    /// A checker with nothing seen yet.
    pub fn new() -> Self {
        MembershipChecker::default()
    }

    /// A checker that also judges the leader progress in `samples` (the lines of
    /// `catchup.jsonl`, or why they could not be read, which makes the verdict unknown).
    pub fn with_samples(samples: Result<Vec<CatchUpSample>, String>) -> Self {
        let mut checker = MembershipChecker::default();
        match samples {
            Ok(mut samples) => {
                samples.sort_by_key(|s| s.time);
                checker.progress = samples.into_iter().filter_map(|s| Some((s.time, s.progress?))).collect();
            }
            Err(e) => checker.unreadable.push(e),
        }
        checker
    }

    /// Takes the records of one fault's value (a set's value holds its parts').
    fn take(&mut self, value: &Value, time: u64) {
        for part in value.get("parts").and_then(Value::as_array).into_iter().flatten() {
            self.take(part, time);
        }
        let removed = match value.get("fault").and_then(Value::as_str) {
            Some("remove") => value["targets"][0].as_u64(),
            _ => value.get("removed").and_then(Value::as_u64),
        };
        self.removals.extend(removed.map(|node| (node, time)));
        read(value, PREMATURE, &mut self.premature, &mut self.unreadable);
        read(value, PROMOTE, &mut self.promotes, &mut self.unreadable);
        read(value, CATCH_UP, &mut self.catch_ups, &mut self.unreadable);
    }

    /// Every violation, named with its figures.
    fn violations(&self) -> Vec<String> {
        let mut out = self.gate_findings(true);
        for c in &self.catch_ups {
            for set in c.shrunk() {
                out.push(format!(
                    "voter set shrank while node {} caught up: {:?} before, {:?} during",
                    c.node, c.voters_before, set
                ));
            }
        }
        for pair in self.progress.windows(2) {
            let ((_, before), (time, after)) = (&pair[0], &pair[1]);
            if after.counted_a_learner(before) {
                out.push(format!(
                    "commit {} by leader {} in term {} at {:.3} s counted a learner: the voters' majority held only {} ({:?})",
                    after.commit_index,
                    after.leader,
                    after.term,
                    *time as f64 / 1e9,
                    after.voter_quorum_index(),
                    after.members.iter().map(|m| (m.id, m.learner, m.match_index)).collect::<Vec<_>>(),
                ));
            }
        }
        out
    }

    /// The accepted premature promotes and the promotes accepted below `min_applied_index`, of
    /// the systems held to it (`asserted`: violations) or of those with their own gate (not:
    /// how much laxer their gate is than ours, as measured).
    fn gate_findings(&self, asserted: bool) -> Vec<String> {
        let held = |p: &&PromoteRecord| p.asserted() == asserted;
        let mut out = Vec::new();
        for p in self.premature.iter().filter(held).filter(|p| p.accepted && p.shows_gate()) {
            out.push(format!(
                "premature promote of node {} accepted{}: min_applied_index {}, learner applied {} before and {} after{}",
                p.node,
                by_gate(p),
                p.min_applied_index,
                shown(p.learner_applied_before),
                shown(p.learner_applied_after),
                if p.paused { " (paused throughout)" } else { "" },
            ));
        }
        for p in self.premature.iter().chain(&self.promotes).filter(held).filter(|p| p.missed_gate()) {
            out.push(format!(
                "promote of node {} accepted below its gate{}: min_applied_index {} but the learner had applied {} after",
                p.node,
                by_gate(p),
                p.min_applied_index,
                shown(p.learner_applied_after),
            ));
        }
        out
    }

    /// Pairs of successive answers of one leader in one term with a rising commit: how often
    /// the learner-quorum check had something to judge.
    fn commits_judged(&self) -> usize {
        self.progress
            .windows(2)
            .filter(|p| {
                let (a, b) = (&p[0].1, &p[1].1);
                a.leader == b.leader && a.term == b.term && b.term != 0 && b.commit_index > a.commit_index
            })
            .count()
    }
}

/// Why a premature promote showed nothing of the gate.
fn unexercised(p: &PromoteRecord) -> String {
    match (p.accepted, p.gate_saw) {
        (true, Some(saw)) => format!(
            "node {} had applied {saw} of min_applied_index {} when the gate looked, so its acceptance was due",
            p.node, p.min_applied_index
        ),
        _ => format!(
            "node {} refused without the learner's figures: {}",
            p.node,
            p.reason.as_deref().unwrap_or("no reason")
        ),
    }
}

/// Whose gate let a promote through, when it was the system's own.
fn by_gate(p: &PromoteRecord) -> String {
    p.own_gate.as_ref().map_or_else(String::new, |g| format!(" by the system's own gate ({g})"))
}

fn shown(index: Option<u64>) -> String {
    index.map_or_else(|| "unknown".into(), |i| i.to_string())
}

fn read<T: serde::de::DeserializeOwned>(value: &Value, key: &str, into: &mut Vec<T>, bad: &mut Vec<String>) {
    let Some(v) = value.get(key) else { return };
    match serde_json::from_value(v.clone()) {
        Ok(record) => into.push(record),
        Err(e) => bad.push(format!("{key}: {e}")),
    }
}

impl Checker for MembershipChecker {
    fn name(&self) -> &str {
        "membership"
    }

    fn observe(&mut self, op: &Op) {
        if op.process == Process::Nemesis && op.f == "start" && op.kind != OpType::Invoke {
            self.take(&op.value, op.time);
        }
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let violations = self.violations();
        let laxer = self.gate_findings(false);
        let (verdict, summary) = if !violations.is_empty() {
            (Verdict::Invalid, violations[0].clone())
        } else if !self.unreadable.is_empty() {
            (Verdict::Unknown, format!("unreadable membership records: {}", self.unreadable.join("; ")))
        } else if self.premature.is_empty() {
            (Verdict::Unknown, "no premature promote was tried, so the gate's refusal is not shown".into())
        } else if !self.premature.iter().any(PromoteRecord::shows_gate) {
            let why: Vec<String> = self.premature.iter().map(unexercised).collect();
            (Verdict::Unknown, format!("no premature promote reached the gate's comparison: {}", why.join("; ")))
        } else {
            let refused = self.premature.iter().filter(|p| !p.accepted && p.shows_gate()).count();
            let accepted = self.promotes.iter().filter(|p| p.accepted).count();
            let mut summary = format!(
                "{refused} premature promote(s) refused, {accepted} promote(s) accepted, {} catch-up(s) kept every voter, \
                 {} sampled commit(s) carried by the voters alone",
                self.catch_ups.len(),
                self.commits_judged(),
            );
            if !laxer.is_empty() {
                summary += &format!("; measured, not asserted: {}", laxer.join("; "));
            }
            (Verdict::Valid, summary)
        };
        let learners: Vec<Value> = self
            .catch_ups
            .iter()
            .map(|c| {
                json!({
                    "node": c.node,
                    "promotable_ms": c.promotable_ms,
                    "entries": c.target_index,
                    "entries_per_s": c.entries_per_s(),
                    "snapshot_bytes": c.snapshot_bytes,
                    "mb_per_s": c.mb_per_s(),
                    "snapshot_seen": c.snapshot_seen,
                    "samples": c.samples,
                })
            })
            .collect();
        let details = json!({
            "violations": violations,
            "laxer_than_ours": laxer,
            "commits_judged": self.commits_judged(),
            "removals": self.removals.iter().map(|(node, time)| json!({"node": node, "time": time})).collect::<Vec<_>>(),
            "learners": learners,
            "premature": self.premature,
            "promotes": self.promotes,
            "catch_ups": self.catch_ups,
        });
        Ok(CheckerResult { name: "membership".into(), verdict, summary, details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(values: &[Value]) -> CheckerResult {
        let mut c = Box::new(MembershipChecker::new());
        for v in values {
            let invoke = Op::invoke(Process::Nemesis, "start", json!({"fault": "replace"}));
            c.observe(&invoke);
            c.observe(&Op { value: v.clone(), ..invoke.completed(OpType::Info) });
        }
        c.finish().unwrap()
    }

    fn promote(accepted: bool, after: u64) -> Value {
        json!({"node": 4, "min_applied_index": 100, "learner_applied_before": 10,
               "learner_applied_after": after, "paused": false, "accepted": accepted, "reason": null,
               "gate_saw": 11})
    }

    #[test]
    fn a_premature_promote_counts_only_where_the_gate_compared_the_learners_figures() {
        let with = |accepted: bool, saw: Value, reason: &str| {
            let mut p = promote(accepted, 120);
            (p["gate_saw"], p["reason"]) = (saw, json!(reason));
            json!({"fault": "replace", "premature": p})
        };
        // Refused because the learner did not answer: the comparison never ran.
        let unanswered = finish(&[with(false, Value::Null, "the learner did not answer")]);
        assert_eq!(unanswered.verdict, Verdict::Unknown, "{}", unanswered.summary);
        assert!(unanswered.summary.contains("refused without the learner's figures: the learner did not answer"));
        // Accepted once the learner had caught up: due, and no evidence either way.
        let due = finish(&[with(true, json!(150), "")]);
        assert_eq!(due.verdict, Verdict::Unknown, "{}", due.summary);
        assert!(due.summary.contains("had applied 150 of min_applied_index 100"), "{}", due.summary);
        // Accepted while the gate saw it behind: a violation, whatever it applied after.
        let lax = finish(&[with(true, json!(11), "")]);
        assert_eq!(lax.verdict, Verdict::Invalid, "{}", lax.summary);
        let refused = finish(&[with(false, json!(11), "applied index 11 is below min_applied_index 100")]);
        assert_eq!(refused.verdict, Verdict::Valid, "{}", refused.summary);
    }

    #[test]
    fn a_refused_premature_promote_is_valid_and_an_accepted_one_is_named() {
        let ok = finish(&[json!({"fault": "replace", "premature": promote(false, 10), "promote": promote(true, 120)})]);
        assert_eq!(ok.verdict, Verdict::Valid, "{}", ok.summary);
        let bad = finish(&[json!({"fault": "replace", "premature": promote(true, 12)})]);
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert!(bad.summary.contains("premature promote of node 4 accepted"), "{}", bad.summary);
        assert_eq!(bad.details["violations"].as_array().unwrap().len(), 2, "also below its gate");
        let nested =
            finish(&[json!({"fault": "a+b", "parts": [{"fault": "replace", "premature": promote(true, 12)}]})]);
        assert_eq!(nested.verdict, Verdict::Invalid, "a set's parts are read");
    }

    #[test]
    fn a_system_with_its_own_gate_is_measured_not_held_to_min_applied_index() {
        let own = |accepted: bool, after: u64| {
            let mut p = promote(accepted, after);
            p["own_gate"] = json!("match index within 10%");
            p
        };
        let lax = finish(&[json!({"fault": "replace", "premature": own(true, 12), "promote": own(true, 90)})]);
        assert_eq!(lax.verdict, Verdict::Valid, "{}", lax.summary);
        let found = lax.details["laxer_than_ours"].as_array().unwrap();
        assert_eq!(found.len(), 3, "the premature promote, and both promotes below the gate: {found:?}");
        assert!(lax.summary.contains("measured, not asserted: premature promote of node 4 accepted by the system's own gate (match index within 10%)"), "{}", lax.summary);
        let strict = finish(&[json!({"fault": "replace", "premature": own(false, 10), "promote": own(true, 120)})]);
        assert_eq!(strict.verdict, Verdict::Valid);
        assert!(strict.details["laxer_than_ours"].as_array().unwrap().is_empty(), "{}", strict.details);
    }

    #[test]
    fn missing_or_unreadable_evidence_is_unknown() {
        assert_eq!(finish(&[json!({"fault": "kill"})]).verdict, Verdict::Unknown);
        let garbled = finish(&[json!({"fault": "replace", "premature": {"node": "x"}})]);
        assert_eq!(garbled.verdict, Verdict::Unknown);
        assert!(garbled.summary.contains("unreadable"), "{}", garbled.summary);
    }

    /// `catchup.jsonl` of a real run (`ordeal run --scenario learner-catchup --nemesis
    /// partition,kill-leader --env netns --seed 24`): learners n4 and n5 catch up and are promoted.
    const RECORDED: &str = include_str!("../tests/data/catchup-recorded.jsonl");

    fn judge(trace: &str) -> CheckerResult {
        let samples = trace.lines().map(|l| serde_json::from_str(l).map_err(|e| e.to_string())).collect();
        let mut c = Box::new(MembershipChecker::with_samples(samples));
        let invoke = Op::invoke(Process::Nemesis, "start", json!({"fault": "replace"}));
        c.observe(&invoke);
        let value = json!({"fault": "replace", "premature": promote(false, 10)});
        c.observe(&Op { value, ..invoke.completed(OpType::Info) });
        c.finish().unwrap()
    }

    #[test]
    fn a_commit_carried_by_a_learner_in_a_recorded_trace_is_named() {
        let clean = judge(RECORDED);
        assert_eq!(clean.verdict, Verdict::Valid, "{}", clean.summary);
        assert!(clean.details["commits_judged"].as_u64().unwrap() >= 10, "{}", clean.details);
        // The same trace, but at 3.283 s leader n3 commits 440 while voters n1 and n2 still hold
        // 427 and only learner n4 holds 440 beside it: what a leader counting learners' acks shows.
        let doctored: String = RECORDED
            .lines()
            .map(|l| {
                if !l.starts_with(r#"{"time":3283444805,"#) {
                    return l.to_owned();
                }
                let mut v: Value = serde_json::from_str(l).unwrap();
                for m in v["progress"]["members"].as_array_mut().unwrap().iter_mut().take(2) {
                    m["match_index"] = json!(427);
                }
                v.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let bad = judge(&doctored);
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert!(
            bad.summary.starts_with(
                "commit 440 by leader 3 in term 2 at 3.283 s counted a learner: the voters' majority held only 427"
            ),
            "{}",
            bad.summary
        );
        let garbled = judge("{\"time\": 1, \"node\":");
        assert_eq!(garbled.verdict, Verdict::Unknown, "an unreadable trace is not valid");
    }
}
