//! The membership checks, from the figures the membership nemesis recorded in its ops
//! ([`ordeal_history::membership`]):
//!
//! * every premature promote (a learner paused far behind the leader's commit index, promoted
//!   with that index as `min_applied_index`) was refused;
//! * every accepted promote met its gate: the learner's applied index right after the answer was
//!   at least `min_applied_index` (applied indices only grow, so the gate cannot have seen more);
//! * the voter set never shrank while a learner caught up;
//!
//! and, as figures, each learner's time to promotable and catch-up rate. A run that named
//! membership faults but never tried its premature promote is `unknown`: the refusal it should
//! show is missing.

use crate::Verdict;
use crate::checker::{CheckError, Checker, CheckerResult};
use ordeal_history::membership::{CATCH_UP, CatchUpRecord, PREMATURE, PROMOTE, PromoteRecord};
use ordeal_history::{Op, OpType, Process};
use serde_json::{Value, json};

/// The membership checker.
#[derive(Debug, Default)]
pub struct MembershipChecker {
    premature: Vec<PromoteRecord>,
    promotes: Vec<PromoteRecord>,
    catch_ups: Vec<CatchUpRecord>,
    /// Records that did not parse: evidence the check cannot read.
    unreadable: Vec<String>,
}

impl MembershipChecker {
    /// A checker with nothing seen yet.
    pub fn new() -> Self {
        MembershipChecker::default()
    }

    /// Takes the records of one fault's value (a set's value holds its parts').
    fn take(&mut self, value: &Value) {
        for part in value.get("parts").and_then(Value::as_array).into_iter().flatten() {
            self.take(part);
        }
        read(value, PREMATURE, &mut self.premature, &mut self.unreadable);
        read(value, PROMOTE, &mut self.promotes, &mut self.unreadable);
        read(value, CATCH_UP, &mut self.catch_ups, &mut self.unreadable);
    }

    /// Every violation, named with its figures.
    fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.premature.iter().filter(|p| p.accepted) {
            out.push(format!(
                "premature promote of node {} accepted: min_applied_index {}, learner applied {} before and {} after{}",
                p.node,
                p.min_applied_index,
                shown(p.learner_applied_before),
                shown(p.learner_applied_after),
                if p.paused { " (paused throughout)" } else { "" },
            ));
        }
        for p in self.premature.iter().chain(&self.promotes).filter(|p| p.missed_gate()) {
            out.push(format!(
                "promote of node {} accepted below its gate: min_applied_index {} but the learner had applied {} after",
                p.node,
                p.min_applied_index,
                shown(p.learner_applied_after),
            ));
        }
        for c in &self.catch_ups {
            for set in c.shrunk() {
                out.push(format!(
                    "voter set shrank while node {} caught up: {:?} before, {:?} during",
                    c.node, c.voters_before, set
                ));
            }
        }
        out
    }
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
            self.take(&op.value);
        }
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let violations = self.violations();
        let (verdict, summary) = if !violations.is_empty() {
            (Verdict::Invalid, violations[0].clone())
        } else if !self.unreadable.is_empty() {
            (Verdict::Unknown, format!("unreadable membership records: {}", self.unreadable.join("; ")))
        } else if self.premature.is_empty() {
            (Verdict::Unknown, "no premature promote was tried, so the gate's refusal is not shown".into())
        } else {
            let refused = self.premature.iter().filter(|p| !p.accepted).count();
            let accepted = self.promotes.iter().filter(|p| p.accepted).count();
            let summary = format!(
                "{refused} premature promote(s) refused, {accepted} promote(s) met their gate, {} catch-up(s) kept every voter",
                self.catch_ups.len()
            );
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
                    "snapshot_seen": c.snapshot_seen,
                    "samples": c.samples,
                })
            })
            .collect();
        let details = json!({
            "violations": violations,
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
               "learner_applied_after": after, "paused": true, "accepted": accepted, "reason": null})
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
    fn missing_or_unreadable_evidence_is_unknown() {
        assert_eq!(finish(&[json!({"fault": "kill"})]).verdict, Verdict::Unknown);
        let garbled = finish(&[json!({"fault": "replace", "premature": {"node": "x"}})]);
        assert_eq!(garbled.verdict, Verdict::Unknown);
        assert!(garbled.summary.contains("unreadable"), "{}", garbled.summary);
    }
}
