//! The node-exits check, from `run.json`: a node process that ended without the harness ending
//! it (no kill, stop or restart asked for) is a crash of the system under test, or of something
//! outside the run, and the run is invalid (as Jepsen flags a crash found in a node's log). The
//! harness heals a membership or upgrade run by starting every node that does not run, which
//! without this check would hide the crash.

use ordeal_checker::checker::CheckError;
use ordeal_checker::{Checker, CheckerResult, Verdict};
use ordeal_history::{NodeExit, Op};
use serde_json::json;

/// Judges the exits the run noted; it reads no op.
pub struct ExitCheck {
    exits: Vec<NodeExit>,
}

impl ExitCheck {
    /// The check of `exits`, the run's `node_exits`.
    pub fn new(exits: Vec<NodeExit>) -> Self {
        ExitCheck { exits }
    }
}

impl Checker for ExitCheck {
    fn name(&self) -> &str {
        "node-exits"
    }

    fn observe(&mut self, _: &Op) {}

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let said: Vec<String> = self
            .exits
            .iter()
            .map(|e| {
                let after = if e.restarted { "; the harness started it again" } else { "" };
                format!("node {} ended by itself ({}){after}", e.node, e.status)
            })
            .collect();
        let (verdict, summary) = match said.first() {
            None => (Verdict::Valid, "every node ran until the harness ended it".to_string()),
            Some(first) if said.len() == 1 => (Verdict::Invalid, format!("{first}; see the node's log")),
            Some(first) => (Verdict::Invalid, format!("{} node exits nobody asked for, first: {first}", said.len())),
        };
        Ok(CheckerResult { name: "node-exits".into(), verdict, summary, details: json!({"exits": self.exits}) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(exits: Vec<NodeExit>) -> CheckerResult {
        Box::new(ExitCheck::new(exits)).finish().unwrap()
    }

    #[test]
    fn an_exit_nobody_asked_for_is_invalid_and_named() {
        assert_eq!(judged(vec![]).verdict, Verdict::Valid);
        let crash = NodeExit { node: 2, status: "exit status: 70".into(), restarted: true };
        let r = judged(vec![crash.clone()]);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.summary.contains("node 2") && r.summary.contains("exit status: 70"), "{}", r.summary);
        assert!(r.summary.contains("started it again"), "{}", r.summary);
        let r = judged(vec![crash.clone(), NodeExit { node: 3, restarted: false, ..crash }]);
        assert!(r.summary.starts_with("2 node exits"), "{}", r.summary);
        assert_eq!(r.details["exits"][1]["node"], 3);
    }
}
