//! The membership checks, from the figures the membership nemesis recorded in its ops
//! ([`ordeal_history::membership`]):
//!
//! * every premature promote (a learner paused far behind the leader's commit index, promoted
//!   with that index as `min_applied_index`) was refused;
//! * every accepted promote met its gate: the learner's applied index right after the answer was
//!   at least `min_applied_index` (applied indices only grow, so the gate cannot have seen more);
//! * the voter set never shrank while a learner caught up, and in the catch-up samples
//!   (`catchup.jsonl`) no leader lost a voter within its reign unless a removal of that voter was
//!   asked ([`LeaderProgress::lost_voters`]);
//! * no write was committed by a quorum that counts a learner: in the catch-up samples, wherever
//!   the same leader in the same term raised its commit index between two of its answers, the new
//!   commit index is at most what a majority of the *voters* hold
//!   ([`LeaderProgress::counted_a_learner`]);
//!
//! and, as figures, each learner's time to promotable and catch-up rate.
//!
//! Missing evidence is `unknown`, never `valid`: a run that named membership faults but never
//! tried its premature promote (the refusal it should show is missing); a promote the system did
//! not answer, or a membership fault the runner gave up waiting for (a change may be off the
//! record); and a run with catch-ups in which no sample pair could judge the quorum, none could
//! judge the voter set, or no accepted promote carried a figure to judge its gate by. Each of
//! these asks only for *some* judgeable evidence, since a loaded machine loses single samples.
//!
//! The two promote checks hold a system to `min_applied_index` only when it takes it as its
//! gate. A system with a gate of its own (etcd 3.4: the learner's match index within 10% of the
//! leader's) is measured against it instead: a premature promote it accepts, or a promote it
//! accepts below `min_applied_index`, is named in the summary and in `details.laxer_than_ours`,
//! not counted as a violation. The voter-set and learner-quorum checks hold for every system.

use crate::Verdict;
use crate::checker::{CheckError, Checker, CheckerResult};
use ordeal_history::membership::{
    CATCH_UP, CatchUpRecord, CatchUpSample, LeaderProgress, PREMATURE, PROMOTE, PromoteRecord, REMOVED, REMOVING,
};
use ordeal_history::{Op, OpType, Process, TIMED_OUT};
use serde_json::{Value, json};

/// The membership checker.
#[derive(Debug, Default)]
pub struct MembershipChecker {
    premature: Vec<PromoteRecord>,
    promotes: Vec<PromoteRecord>,
    catch_ups: Vec<CatchUpRecord>,
    /// Every member removed, or asked to be: (node, when the op ended, ns since the run started).
    removals: Vec<(u64, u64)>,
    /// The leader progress of every catch-up sample, in time order.
    progress: Vec<(u64, LeaderProgress)>,
    /// How many catch-up samples there were.
    samples: usize,
    /// The names of the run's fault sets that change the membership.
    membership_faults: Vec<String>,
    /// Membership faults the runner gave up waiting for: what they changed is not all on record.
    timed_out: Vec<String>,
    /// Records that did not parse: evidence the check cannot read.
    unreadable: Vec<String>,
}

impl MembershipChecker {
    /// A checker for a run whose fault sets named `membership_faults` change the membership,
    /// that also judges the leader progress in `samples` (the lines of `catchup.jsonl`, or why
    /// they could not be read, which makes the verdict unknown).
    pub fn for_run(membership_faults: Vec<String>, samples: Result<Vec<CatchUpSample>, String>) -> Self {
        let mut checker = MembershipChecker { membership_faults, ..MembershipChecker::default() };
        match samples {
            Ok(mut samples) => {
                samples.sort_by_key(|s| s.time);
                checker.samples = samples.len();
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
            _ => value.get(REMOVED).and_then(Value::as_u64),
        };
        let asked = value.get(REMOVING).and_then(Value::as_u64);
        for node in removed.into_iter().chain(asked) {
            if !self.removals.contains(&(node, time)) {
                self.removals.push((node, time));
            }
        }
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
        // A fault the runner cut off may have asked for a removal it never recorded.
        if self.timed_out.is_empty() {
            out.extend(self.lost_voters());
        }
        for (time, before, after) in self.reign_pairs() {
            if after.counted_a_learner(before) {
                out.push(format!(
                    "commit {} by leader {} in term {} at {:.3} s counted a learner: the voters' majority held only {} ({:?})",
                    after.commit_index,
                    after.leader,
                    after.term,
                    time as f64 / 1e9,
                    after.voter_quorum_index(),
                    after.members.iter().map(|m| (m.id, m.learner, m.match_index)).collect::<Vec<_>>(),
                ));
            }
        }
        out
    }

    /// The voters a leader lost within its reign with no removal of them asked.
    fn lost_voters(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (time, before, after) in self.reign_pairs() {
            for voter in after.lost_voters(before).into_iter().filter(|v| !self.removals.iter().any(|r| r.0 == *v)) {
                out.push(format!(
                    "leader {} in term {} lost voter {voter} at {:.3} s, and no removal of it was asked: voters {:?} before, {:?} after",
                    after.leader,
                    after.term,
                    time as f64 / 1e9,
                    before.voters(),
                    after.voters(),
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

    /// Each sampled answer with the previous answer of the same reign (leader and known term),
    /// and the later one's time: the pairs the sample checks compare. Answers of another reign
    /// in between (a stale leader's, one without its term) do not break a reign's chain.
    fn reign_pairs(&self) -> Vec<(u64, &LeaderProgress, &LeaderProgress)> {
        let mut last: Vec<&LeaderProgress> = Vec::new();
        let mut pairs = Vec::new();
        for (time, after) in &self.progress {
            match last.iter_mut().find(|before| after.same_reign(before)) {
                Some(before) => pairs.push((*time, std::mem::replace(before, after), after)),
                None => last.push(after),
            }
        }
        pairs
    }

    /// Pairs of answers of one reign with a rising commit: how often the learner-quorum check
    /// had something to judge.
    fn commits_judged(&self) -> usize {
        self.reign_pairs().iter().filter(|(_, a, b)| b.commit_index > a.commit_index).count()
    }

    /// How often the voter set was judged: catch-ups that saw the voters, and pairs of answers
    /// of one reign.
    fn voter_sets_judged(&self) -> usize {
        let catch_ups = self.catch_ups.iter().filter(|c| !c.voters_before.is_empty() && !c.voter_sets.is_empty());
        catch_ups.count() + self.reign_pairs().len()
    }

    /// Why the evidence cannot support a verdict of valid, though nothing in it is a violation.
    fn gaps(&self) -> Vec<String> {
        let mut out = self.timed_out.clone();
        if !self.timed_out.is_empty() {
            out.extend(self.lost_voters());
        }
        let promotes = || self.premature.iter().chain(&self.promotes);
        for p in promotes().filter(|p| p.unanswered) {
            out.push(format!(
                "the promote of node {} got no answer ({}), so whether it became a voter is not known",
                p.node,
                p.reason.as_deref().unwrap_or("no reason")
            ));
        }
        if self.catch_ups.is_empty() {
            return out;
        }
        if self.commits_judged() == 0 {
            out.push(format!(
                "no two sampled answers of one leader in one term showed a commit, so no commit was judged for a quorum \
                 counting a learner ({} samples, {} with the leader's progress)",
                self.samples,
                self.progress.len()
            ));
        }
        if self.voter_sets_judged() == 0 {
            out.push("no catch-up and no two sampled answers of one reign showed the voters, so the voter set was not judged".into());
        }
        let accepted: Vec<&PromoteRecord> = promotes().filter(|p| p.accepted && p.asserted()).collect();
        if !accepted.is_empty() && !accepted.iter().any(|p| p.judgeable()) {
            out.push(format!(
                "none of the {} accepted promote(s) carried the learner's applied index, so no gate was judged",
                accepted.len()
            ));
        }
        out
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
        if op.process != Process::Nemesis || op.f != "start" || op.kind == OpType::Invoke {
            return;
        }
        // A fault that failed part way still carries what it did before (`NemesisError::Partial`).
        self.take(&op.value, op.time);
        let fault = op.value.get("fault").and_then(Value::as_str).unwrap_or_default();
        if op.value.get(TIMED_OUT) == Some(&Value::Bool(true)) && self.membership_faults.iter().any(|f| f == fault) {
            self.timed_out.push(format!(
                "the runner gave up waiting for `{fault}` at {:.3} s ({}), so a change it made may be off the record",
                op.time as f64 / 1e9,
                op.error.as_deref().unwrap_or("no error")
            ));
        }
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let violations = self.violations();
        let laxer = self.gate_findings(false);
        let gaps = self.gaps();
        let (verdict, summary) = if !violations.is_empty() {
            (Verdict::Invalid, violations[0].clone())
        } else if !self.unreadable.is_empty() {
            (Verdict::Unknown, format!("unreadable membership records: {}", self.unreadable.join("; ")))
        } else if !gaps.is_empty() {
            (Verdict::Unknown, gaps.join("; "))
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
            "gaps": gaps,
            "commits_judged": self.commits_judged(),
            "voter_sets_judged": self.voter_sets_judged(),
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
        let ops: Vec<(Value, Option<&str>)> = values.iter().map(|v| (v.clone(), None)).collect();
        check("", &ops)
    }

    /// The verdict on the catch-up samples `trace` and the completions of nemesis starts with
    /// these values and errors, in a run whose membership fault is `replace`.
    fn check(trace: &str, ops: &[(Value, Option<&str>)]) -> CheckerResult {
        let samples = trace.lines().map(|l| serde_json::from_str(l).map_err(|e| e.to_string())).collect();
        let mut c = Box::new(MembershipChecker::for_run(vec!["replace".into()], samples));
        for (time, (value, error)) in ops.iter().enumerate() {
            let invoke = Op::invoke(Process::Nemesis, "start", json!({"fault": value["fault"]}));
            c.observe(&invoke);
            let error = error.map(String::from);
            c.observe(&Op { value: value.clone(), error, time: time as u64, ..invoke.completed(OpType::Info) });
        }
        c.finish().unwrap()
    }

    /// A promote to `min_applied_index` 100 whose gate saw the learner one short of `after`.
    fn promote(accepted: bool, after: u64) -> Value {
        json!({"node": 4, "min_applied_index": 100, "learner_applied_before": 10,
               "learner_applied_after": after, "paused": false, "accepted": accepted, "reason": null,
               "gate_saw": after - 1})
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
        check(trace, &[(json!({"fault": "replace", "premature": promote(false, 10), "catch_up": catch_up()}), None)])
    }

    fn catch_up() -> Value {
        json!({"node": 4, "start": 0, "target_index": 411, "promotable_ms": 300.0, "applied_index": 440,
               "snapshot_seen": true, "voters_before": [1, 2, 3], "voter_sets": [[1, 2, 3]], "samples": 3})
    }

    /// `trace` with the sample taken at `time` (ns) changed by `edit`.
    fn doctor(trace: &str, time: u64, edit: impl Fn(&mut Value)) -> String {
        let lines = trace.lines().map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["time"] == json!(time) {
                edit(&mut v);
            }
            v.to_string()
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn a_voter_lost_within_a_reign_is_named_unless_its_removal_was_asked() {
        // At 5.538 s leader n3 (term 2) counts n1..n4 as voters; make it count n2 a learner.
        let demoted = doctor(RECORDED, 5538651841, |v| v["progress"]["members"][1]["learner"] = json!(true));
        let bad = judge(&demoted);
        assert_eq!(bad.verdict, Verdict::Invalid, "{}", bad.summary);
        assert!(
            bad.summary.starts_with("leader 3 in term 2 lost voter 2 at 5.539 s, and no removal of it was asked"),
            "{}",
            bad.summary
        );
        // The same, after a replace that asked to remove n2 and got no answer: not evidence.
        let asked = json!({"fault": "replace", "targets": [5], "removing": 2});
        let premature = json!({"fault": "replace", "premature": promote(false, 10), "catch_up": catch_up()});
        let excused = check(&demoted, &[(premature.clone(), None), (asked, Some("replace: no answer"))]);
        assert_eq!(excused.verdict, Verdict::Valid, "{}", excused.summary);
        assert!(excused.details["voter_sets_judged"].as_u64().unwrap() >= 10, "{}", excused.details);
        // After a replace the runner cut off (its removal may have gone unrecorded): unknown.
        let cut = json!({"fault": "replace", "timed_out": true});
        let unsure = check(&demoted, &[(premature, None), (cut, Some("timed out after 30 s"))]);
        assert_eq!(unsure.verdict, Verdict::Unknown, "{}", unsure.summary);
        assert!(unsure.summary.contains("lost voter 2"), "{}", unsure.summary);
    }

    #[test]
    fn a_catch_up_whose_samples_judge_nothing_is_unknown() {
        // No catchup.jsonl at all.
        let none = judge("");
        assert_eq!(none.verdict, Verdict::Unknown, "{}", none.summary);
        assert!(none.summary.contains("no commit was judged"), "{}", none.summary);
        // Every sample without its leader's term (a loaded machine: the status missed its budget).
        let termless: Vec<String> = RECORDED
            .lines()
            .map(|l| {
                doctor(l, serde_json::from_str::<Value>(l).unwrap()["time"].as_u64().unwrap(), |v| {
                    if v["progress"].is_object() {
                        v["progress"]["term"] = json!(0)
                    }
                })
            })
            .collect();
        let termless = termless.join("\n");
        let blind = judge(&termless);
        assert_eq!(blind.verdict, Verdict::Unknown, "{}", blind.summary);
        assert!(blind.summary.contains("no commit was judged"), "{}", blind.summary);
        // ... and a catch-up that saw no voters either.
        let mut unseen = catch_up();
        unseen["voter_sets"] = json!([]);
        let value = json!({"fault": "replace", "premature": promote(false, 10), "catch_up": unseen});
        let voterless = check(&termless, &[(value, None)]);
        assert!(voterless.summary.contains("so the voter set was not judged"), "{}", voterless.summary);
        // One sample of a reign without its term between two with it still leaves a pair.
        let one_gap = doctor(RECORDED, 3182627004, |v| v["progress"]["term"] = json!(0));
        assert_eq!(judge(&one_gap).verdict, Verdict::Valid);
    }

    #[test]
    fn a_promote_without_an_answer_or_a_figure_and_a_fault_cut_off_are_unknown() {
        let base = json!({"fault": "replace", "premature": promote(false, 10), "catch_up": catch_up()});
        let with = |promote: Value| {
            let mut v = base.clone();
            v["promote"] = promote;
            check(RECORDED, &[(v, None)])
        };
        let mut unanswered = promote(false, 120);
        (unanswered["unanswered"], unanswered["reason"], unanswered["gate_saw"]) =
            (json!(true), json!("no answer within 5s"), Value::Null);
        let lost = with(unanswered);
        assert_eq!(lost.verdict, Verdict::Unknown, "{}", lost.summary);
        assert!(lost.summary.contains("the promote of node 4 got no answer (no answer within 5s)"), "{}", lost.summary);
        let mut blind = promote(true, 120);
        (blind["learner_applied_after"], blind["gate_saw"]) = (Value::Null, Value::Null);
        let unjudged = with(blind);
        assert_eq!(unjudged.verdict, Verdict::Unknown, "{}", unjudged.summary);
        assert!(unjudged.summary.contains("none of the 1 accepted promote(s)"), "{}", unjudged.summary);
        assert_eq!(with(promote(true, 120)).verdict, Verdict::Valid);
        // The runner gave up on a replace: unknown. On a fault that changes no membership: not.
        let cut = |fault: &str| {
            let timed_out = json!({"fault": fault, "timed_out": true});
            check(RECORDED, &[(base.clone(), None), (timed_out, Some("timed out after 30 s"))])
        };
        let replace = cut("replace");
        assert_eq!(replace.verdict, Verdict::Unknown, "{}", replace.summary);
        assert!(replace.summary.contains("the runner gave up waiting for `replace`"), "{}", replace.summary);
        assert_eq!(cut("kill-leader").verdict, Verdict::Valid);
    }

    #[test]
    fn a_fault_that_failed_part_way_keeps_its_evidence() {
        // The premature promote was refused, then the replace failed: its records still count.
        let partial =
            json!({"fault": "replace", "targets": [4], "premature": promote(true, 12), "catch_up": catch_up()});
        let bad = check(RECORDED, &[(partial, Some("replace: no learner to target"))]);
        assert_eq!(bad.verdict, Verdict::Invalid, "{}", bad.summary);
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
