//! The rolling-upgrade checks, from a run directory: the history's upgrade steps, the status
//! samples (`status.jsonl`) and the nodes' logs.
//!
//! * **the gate**: no group reports the new cluster version before the step that left every
//!   node on the new build began;
//! * **the final cluster version**: once every node runs the new build, the last sample in
//!   which every node answered shows the lowest release among them as every group's version;
//! * **progress**: an operation succeeded after every step;
//! * **no refusals**: no node stopped because it met a format newer than it reads (its log
//!   says so), which is how an old build meets a feature switched on too early.
//!
//! The checks need a system that reports releases and cluster versions; without them the gate
//! checks are skipped and said so.

use ordeal_checker::checker::CheckError;
use ordeal_checker::{Checker, CheckerResult, Verdict};
use ordeal_history::{Op, OpType, Process, Test};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Phrases of the broker's refusals (`ordeal-broker`'s storage errors).
const REFUSALS: [&str; 3] =
    ["the cluster moved to a newer version", "stopping rather than diverging", "an old build cannot rejoin"];

/// One node in one status sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSample {
    pub(crate) up: bool,
    pub(crate) version: String,
    pub(crate) release: Option<u32>,
    /// The lowest cluster version over its groups, if it reports any.
    pub(crate) cluster_version: Option<u32>,
}

/// One status sample: seconds since the start, and every node.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) time_s: f64,
    pub(crate) nodes: BTreeMap<u64, NodeSample>,
}

/// Parses `status.jsonl` (lines that do not parse are skipped: the file may end mid-line).
pub(crate) fn samples(status: &str) -> Vec<Sample> {
    status.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).map(|v| sample(&v)).collect()
}

fn sample(v: &Value) -> Sample {
    let nodes = v["nodes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, n)| {
            let cluster_version = n["groups"]
                .as_array()
                .and_then(|gs| gs.iter().map(|g| g["cluster_version"].as_u64().map(|c| c as u32)).min().flatten());
            let node = NodeSample {
                up: n["up"].as_bool().unwrap_or(false),
                version: n["version"].as_str().unwrap_or_default().to_owned(),
                release: n["release"].as_u64().map(|r| r as u32),
                cluster_version,
            };
            Some((id.parse().ok()?, node))
        })
        .collect();
    Sample { time_s: v["time"].as_u64().unwrap_or(0) as f64 / 1e9, nodes }
}

/// The release the new build brings, and the first sample at which a group reported it as the
/// cluster version: `None` when no node ever ran an older release (there was no gate to flip).
pub(crate) fn gate_flip(samples: &[Sample]) -> Option<(u32, f64)> {
    let releases = || samples.iter().flat_map(|s| s.nodes.values()).filter(|n| n.up);
    let newest = releases().filter_map(|n| n.release).max()?;
    let older = releases().any(|n| n.release.is_none_or(|r| r < newest));
    let flipped = samples.iter().find(|s| s.nodes.values().any(|n| n.cluster_version >= Some(newest)))?;
    older.then_some((newest, flipped.time_s))
}

/// One upgrade or rollback step, as the history recorded it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub(crate) node: u64,
    pub(crate) to: String,
    pub(crate) start_s: f64,
    pub(crate) end_s: f64,
    pub(crate) rollback: bool,
}

/// The upgrade steps of a history's nemesis completions (parts of fault sets included).
pub(crate) fn step_of(op: &Op, start_s: f64) -> Vec<Step> {
    let parts = match op.value["parts"].as_array() {
        Some(p) => p.clone(),
        None => vec![op.value.clone()],
    };
    parts
        .iter()
        .filter(|p| p["fault"].as_str().is_some_and(|f| f.starts_with("upgrade") || f == "rollback"))
        .filter_map(|p| {
            Some(Step {
                node: p["targets"].as_array()?.first()?.as_u64()?,
                to: p["to"].as_str()?.to_owned(),
                start_s,
                end_s: op.time as f64 / 1e9,
                rollback: p["rollback"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// The rolling-upgrade checker of one run directory.
pub struct UpgradeCheck {
    samples: Vec<Sample>,
    refusals: Vec<String>,
    from: String,
    to: String,
    nodes: Vec<u64>,
    steps: Vec<Step>,
    /// The start of the nemesis op in flight.
    nemesis_start_s: f64,
    /// When each client op completed ok.
    oks_s: Vec<f64>,
}

impl UpgradeCheck {
    /// The checker for the run in `dir` of `test`: its samples and node logs are read now.
    pub fn new(dir: &Path, test: &Test) -> UpgradeCheck {
        let status = std::fs::read_to_string(dir.join(crate::store::STATUS)).unwrap_or_default();
        let samples = samples(&status);
        let nodes: Vec<u64> = (1..=test.nodes as u64).collect();
        UpgradeCheck {
            refusals: refusals(dir, &nodes, &test.system),
            samples,
            from: test.broker_binary.clone(),
            to: test.upgrade_binary.clone().unwrap_or_default(),
            nodes,
            steps: Vec::new(),
            nemesis_start_s: 0.0,
            oks_s: Vec::new(),
        }
    }

    /// When the step that left every node on the new build began, if one did.
    fn all_new_from(&self) -> Option<f64> {
        let mut binary: BTreeMap<u64, &str> = self.nodes.iter().map(|n| (*n, self.from.as_str())).collect();
        let mut since = None;
        for s in &self.steps {
            binary.insert(s.node, &s.to);
            let all = binary.values().all(|b| *b == self.to);
            since = match (since, all) {
                (None, true) => Some(s.start_s),
                (_, false) => None,
                (kept, true) => kept,
            };
        }
        since
    }

    fn violations(&self) -> (Vec<String>, Value) {
        let mut out: Vec<String> = self.refusals.iter().map(|r| format!("a node refused to go on: {r}")).collect();
        let all_new = self.all_new_from();
        let flip = gate_flip(&self.samples);
        if let Some((version, at)) = flip
            && all_new.is_none_or(|from| at < from)
        {
            let when = all_new.map_or("no step left every node on the new build".into(), |f| {
                format!("the last node began moving at {f:.1} s")
            });
            out.push(format!(
                "the cluster switched to version {version} at {at:.1} s, before every node ran the new build ({when})"
            ));
        }
        let final_version = self.final_version();
        if let Some((expected, found)) = final_version
            && found < expected
        {
            out.push(format!("every node runs release {expected} but the cluster version stayed at {found}"));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if !self.oks_s.iter().any(|t| *t > s.end_s) {
                out.push(format!("no operation succeeded after step {} (node {} to {})", i + 1, s.node, s.to));
            }
        }
        let details = json!({
            "steps": self.steps,
            "every_node_new_from_s": all_new,
            "gate": flip.map(|(v, t)| json!({"version": v, "at_s": t})),
            "final": final_version.map(|(e, f)| json!({"expected": e, "cluster_version": f})),
            "refusals": self.refusals,
        });
        (out, details)
    }

    /// (the lowest of the nodes' last reported releases, the highest cluster version reported
    /// in the last sample that has one): a version once applied is committed, so one node
    /// reporting it is enough, and a node down at the end is judged by the build it last ran.
    fn final_version(&self) -> Option<(u32, u32)> {
        let mut release: BTreeMap<u64, Option<u32>> = BTreeMap::new();
        for n in self.samples.iter().flat_map(|s| &s.nodes) {
            if n.1.up {
                release.insert(*n.0, n.1.release);
            }
        }
        let lowest = release.values().copied().min().flatten()?;
        let version =
            self.samples.iter().rev().find_map(|s| s.nodes.values().filter_map(|n| n.cluster_version).max())?;
        Some((lowest, version))
    }
}

/// The refusal lines of every node's log.
fn refusals(dir: &Path, nodes: &[u64], system: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        let path = dir.join("nodes").join(format!("n{n}")).join(format!("{system}.log"));
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let lines = text.lines().filter(|l| REFUSALS.iter().any(|r| l.contains(r)));
        out.extend(lines.take(3).map(|l| format!("node {n}: {}", l.trim())));
    }
    out
}

impl Checker for UpgradeCheck {
    fn name(&self) -> &str {
        "upgrade"
    }

    fn observe(&mut self, op: &Op) {
        match (op.process, op.kind) {
            (Process::Nemesis, OpType::Invoke) if op.f == "start" => self.nemesis_start_s = op.time as f64 / 1e9,
            (Process::Nemesis, OpType::Info) if op.f == "start" => {
                self.steps.extend(step_of(op, self.nemesis_start_s));
            }
            (Process::Client(_), OpType::Ok) => self.oks_s.push(op.time as f64 / 1e9),
            _ => {}
        }
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let (violations, mut details) = self.violations();
        let verdict = if violations.is_empty() { Verdict::Valid } else { Verdict::Invalid };
        let summary = match (violations.first(), gate_flip(&self.samples)) {
            (Some(v), _) => v.clone(),
            (None, Some((v, at))) => format!(
                "{} steps; cluster version {v} from {at:.1} s, after every node ran the new build; progress after each",
                self.steps.len()
            ),
            (None, None) => {
                format!("{} steps, progress after each; no release change reported (no gate)", self.steps.len())
            }
        };
        details["violations"] = json!(violations);
        Ok(CheckerResult { name: "upgrade".into(), verdict, summary, details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t_s: u64, nodes: &[(u64, u32, u32)]) -> String {
        let nodes: serde_json::Map<String, Value> = nodes
            .iter()
            .map(|(id, r, cv)| {
                (
                    id.to_string(),
                    json!({"up": true, "version": "0.1.0", "release": r, "groups": [{"cluster_version": cv}]}),
                )
            })
            .collect();
        json!({"time": t_s * 1_000_000_000, "nodes": nodes}).to_string()
    }

    fn check(status: &[String], steps: &[(u64, f64, f64)]) -> CheckerResult {
        let c = UpgradeCheck {
            samples: samples(&status.join("\n")),
            refusals: vec![],
            from: "A".into(),
            to: "B".into(),
            nodes: vec![1, 2],
            steps: steps
                .iter()
                .map(|(node, start_s, end_s)| Step {
                    node: *node,
                    to: "B".into(),
                    start_s: *start_s,
                    end_s: *end_s,
                    rollback: false,
                })
                .collect(),
            nemesis_start_s: 0.0,
            oks_s: vec![100.0],
        };
        Box::new(c).finish().unwrap()
    }

    #[test]
    fn the_gate_may_flip_only_once_the_last_node_moved() {
        let status =
            [line(1, &[(1, 1, 1), (2, 1, 1)]), line(5, &[(1, 2, 1), (2, 1, 1)]), line(9, &[(1, 2, 2), (2, 2, 2)])];
        let good = check(&status, &[(1, 2.0, 3.0), (2, 6.0, 8.0)]);
        assert_eq!(good.verdict, Verdict::Valid, "{good:?}");
        let early =
            [line(1, &[(1, 1, 1), (2, 1, 1)]), line(5, &[(1, 2, 2), (2, 1, 1)]), line(9, &[(1, 2, 2), (2, 2, 2)])];
        let bad = check(&early, &[(1, 2.0, 3.0), (2, 6.0, 8.0)]);
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert!(bad.summary.contains("before every node ran the new build"), "{}", bad.summary);
        let stuck = [line(1, &[(1, 1, 1), (2, 1, 1)]), line(9, &[(1, 2, 1), (2, 2, 1)])];
        let bad = check(&stuck, &[(1, 2.0, 3.0), (2, 6.0, 8.0)]);
        assert!(bad.summary.contains("stayed at 1"), "{}", bad.summary);
    }
}
