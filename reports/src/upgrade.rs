//! The rolling-upgrade checks, from a run directory: the history's upgrade steps, the status
//! samples (`status.jsonl`), the main phases (`run.json`) and the nodes' logs.
//!
//! Invalid when:
//!
//! * **the gate**: a group reports the new cluster version before the step that left every
//!   node on the new build began;
//! * **the final cluster version**: once every node runs the new build, the last sample shows a
//!   group below the lowest release among them;
//! * **progress**: after a step, client ops invoked after it completed before the next step
//!   began or the main phase ended, and none succeeded (the final reads, after the heal, do not
//!   count; a window in which none completed at all is too short to tell, and one after a step
//!   that other faults started with may have been stopped by them: unknown);
//! * **refusals**: a node stopped because it met a format newer than it reads (its log says
//!   so), which is how an old build meets a feature switched on too early.
//!
//! Unknown, because the evidence for a verdict is missing, when an upgrade step failed, the
//! steps left a node on the old build, there are no status samples (or none showing a node up
//! after its last step), a node's log is missing, or a system that reports releases (the
//! broker) reported none. A system that numbers no releases (etcd) has no gate to judge: those
//! checks are skipped and the summary says so.

use ordeal_checker::checker::CheckError;
use ordeal_checker::{Checker, CheckerResult, Verdict};
use ordeal_history::{Op, OpType, PhaseKind, Process, Test};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Phrases of the broker's refusals (`ordeal-broker`'s storage errors).
const REFUSALS: [&str; 3] =
    ["the cluster moved to a newer version", "stopping rather than diverging", "an old build cannot rejoin"];

/// Systems whose status reports each node's release and cluster versions: a run of one of
/// them without those figures left its gate unjudged, rather than having no gate.
const REPORTS_RELEASES: [&str; 1] = ["broker"];

/// One node in one status sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSample {
    pub(crate) up: bool,
    pub(crate) version: String,
    pub(crate) release: Option<u32>,
    /// Each group's cluster version (by group id), where it reports one.
    pub(crate) cluster_versions: BTreeMap<u64, u32>,
}

impl NodeSample {
    /// The highest cluster version over its groups: one group switching early is enough to
    /// break the gate, whatever the others show.
    fn highest(&self) -> Option<u32> {
        self.cluster_versions.values().copied().max()
    }
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
            let node = NodeSample {
                up: n["up"].as_bool().unwrap_or(false),
                version: n["version"].as_str().unwrap_or_default().to_owned(),
                release: small(&n["release"]),
                cluster_versions: cluster_versions(&n["groups"]),
            };
            Some((id.parse().ok()?, node))
        })
        .collect();
    Sample { time_s: secs(v["time"].as_u64().unwrap_or(0)), nodes }
}

/// A group list's cluster versions by group id (a group without an id goes by its position).
fn cluster_versions(groups: &Value) -> BTreeMap<u64, u32> {
    let groups = groups.as_array().into_iter().flatten().enumerate();
    groups.filter_map(|(i, g)| Some((g["group"].as_u64().unwrap_or(i as u64), small(&g["cluster_version"])?))).collect()
}

/// A release or version number; `None` when absent or out of range.
fn small(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The release the new build brings, and the first sample at which a group reported it as the
/// cluster version: `None` when no node ever ran an older release (there was no gate to flip).
pub(crate) fn gate_flip(samples: &[Sample]) -> Option<(u32, f64)> {
    let releases = || samples.iter().flat_map(|s| s.nodes.values()).filter(|n| n.up);
    let newest = releases().filter_map(|n| n.release).max()?;
    let older = releases().any(|n| n.release.is_none_or(|r| r < newest));
    let flipped = samples.iter().find(|s| s.nodes.values().any(|n| n.highest() >= Some(newest)))?;
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
    /// Whether other faults started with it (a set such as `upgrade+pause-majority`), which may
    /// stop the cluster for as long as the step's window lasts.
    #[serde(skip)]
    pub(crate) in_set: bool,
}

/// Whether a fault's name (one fault, or a set `a+b`) names an upgrade or a rollback.
fn is_upgrade(fault: &str) -> bool {
    fault.split('+').any(|f| f.starts_with("upgrade") || f == "rollback")
}

/// The upgrade steps of a history's nemesis completions (parts of fault sets included).
pub(crate) fn step_of(op: &Op, start_s: f64) -> Vec<Step> {
    let parts = match op.value["parts"].as_array() {
        Some(p) => p.clone(),
        None => vec![op.value.clone()],
    };
    let in_set = parts.len() > 1;
    parts
        .iter()
        .filter(|p| p["fault"].as_str().is_some_and(is_upgrade))
        .filter_map(|p| {
            Some(Step {
                node: p["targets"].as_array()?.first()?.as_u64()?,
                to: p["to"].as_str()?.to_owned(),
                start_s,
                end_s: secs(op.time),
                rollback: p["rollback"].as_bool().unwrap_or(false),
                in_set,
            })
        })
        .collect()
}

/// An upgrade step whose nemesis op ended in an error: where its node went, and whether it
/// caught up, is not known.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailedStep {
    pub(crate) fault: String,
    pub(crate) start_s: f64,
    pub(crate) end_s: f64,
    pub(crate) error: String,
}

/// What the nodes' logs say: the refusal lines, and the logs that could not be read.
#[derive(Debug, Default)]
struct Logs {
    refusals: Vec<String>,
    missing: Vec<String>,
}

/// Reads every node's log; bytes that are not UTF-8 (a line cut off by a crash) are replaced,
/// so that the refusal lines around them still count.
fn read_logs(dir: &Path, nodes: &[u64], system: &str) -> Logs {
    let mut logs = Logs::default();
    for n in nodes {
        let path = dir.join("nodes").join(format!("n{n}")).join(format!("{system}.log"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines = text.lines().filter(|l| REFUSALS.iter().any(|r| l.contains(r)));
                logs.refusals.extend(lines.take(3).map(|l| format!("node {n}: {}", l.trim())));
            }
            Err(e) => logs.missing.push(format!("no log of node {n} (nodes/n{n}/{system}.log: {e})")),
        }
    }
    logs
}

/// When the client ops succeeded, and the bounds of each step's progress window.
#[derive(Debug, Default)]
struct Progress {
    /// The main phases, from `run.json`; empty for a run from before phases were recorded.
    main_phases_s: Vec<(f64, f64)>,
    /// When the first heal of everything began, which ends the main phase of a run without
    /// recorded phases.
    heal_s: Option<f64>,
    /// The longest the main phase may last, for a history with neither of the above.
    time_limit_s: f64,
    /// Each client process's op in flight: when it was invoked.
    invoked_s: BTreeMap<u64, f64>,
    /// (invoked, completed, whether it succeeded) of each client op that completed.
    done_s: Vec<(f64, f64, bool)>,
}

impl Progress {
    fn client(&mut self, process: u64, kind: OpType, t_s: f64) {
        match kind {
            OpType::Invoke => {
                self.invoked_s.insert(process, t_s);
            }
            kind => self.done_s.extend(self.invoked_s.remove(&process).map(|i| (i, t_s, kind == OpType::Ok))),
        }
    }

    /// The end of the main phase that an instant falls in.
    fn main_end_s(&self, t_s: f64) -> f64 {
        if self.main_phases_s.is_empty() {
            return self.heal_s.unwrap_or(self.time_limit_s);
        }
        self.main_phases_s.iter().map(|(_, end)| *end).find(|end| *end >= t_s).unwrap_or(t_s)
    }

    /// When the window after a step that ended at `end_s` closes, and why: at the next step
    /// (`next_s`), which is judged on its own, or at the main phase's end, since the final reads
    /// come after the heal. The other faults between two steps lie inside the window: a cluster
    /// they stop for a while still makes progress before the next step.
    fn window_end_s(&self, end_s: f64, next_s: Option<f64>) -> (f64, &'static str) {
        let phase_end = self.main_end_s(end_s);
        match next_s {
            Some(t) if t < phase_end => (t, "the next step began"),
            _ => (phase_end, "the main phase ended"),
        }
    }

    /// The steps after which client ops, invoked after the step, completed in its window and
    /// none succeeded (`out.invalid`), or none even completed, so that the window was too short
    /// to tell (`out.unknown`).
    fn stalled(&self, steps: &[Step], out: &mut Findings) {
        for (i, s) in steps.iter().enumerate() {
            let (until, why) = self.window_end_s(s.end_s, steps.get(i + 1).map(|n| n.start_s));
            let within = || self.done_s.iter().filter(|(invoked, done, _)| *invoked >= s.end_s && *done <= until);
            let step = format!("step {} (node {} to {}) ended at {:.1} s", i + 1, s.node, s.to, s.end_s);
            match (within().count(), within().filter(|op| op.2).count()) {
                (0, _) => out.unknown.push(format!(
                    "no operation invoked after {step} completed before {why} at {until:.1} s, so its progress is not known"
                )),
                (n, 0) if s.in_set => out.unknown.push(format!(
                    "no operation invoked after {step} succeeded before {why} at {until:.1} s ({n} failed or timed \
                     out), but faults started with it may have stopped the cluster that long"
                )),
                (n, 0) => out.invalid.push(format!(
                    "no operation invoked after {step} succeeded before {why} at {until:.1} s ({n} failed or timed out)"
                )),
                _ => {}
            }
        }
    }
}

/// The check's findings: what breaks the upgrade's rules, and what keeps it from being judged.
#[derive(Debug, Default)]
struct Findings {
    invalid: Vec<String>,
    unknown: Vec<String>,
}

/// The rolling-upgrade checker of one run directory.
pub struct UpgradeCheck {
    samples: Vec<Sample>,
    logs: Logs,
    reports_releases: bool,
    from: String,
    to: String,
    nodes: Vec<u64>,
    steps: Vec<Step>,
    failed: Vec<FailedStep>,
    /// The start of the nemesis op in flight.
    nemesis_start_s: f64,
    progress: Progress,
}

impl UpgradeCheck {
    /// The checker for the run in `dir` of `test`: its samples, phases and node logs are read
    /// now.
    pub fn new(dir: &Path, test: &Test) -> UpgradeCheck {
        let status = std::fs::read_to_string(dir.join(crate::store::STATUS)).unwrap_or_default();
        let nodes: Vec<u64> = (1..=test.nodes as u64).collect();
        let progress =
            Progress { main_phases_s: main_phases_s(dir), time_limit_s: test.time_limit_s, ..Progress::default() };
        UpgradeCheck {
            logs: read_logs(dir, &nodes, &test.system),
            samples: samples(&status),
            reports_releases: REPORTS_RELEASES.contains(&test.system.as_str()),
            from: test.broker_binary.clone(),
            to: test.upgrade_binary.clone().unwrap_or_default(),
            nodes,
            steps: Vec::new(),
            failed: Vec::new(),
            nemesis_start_s: 0.0,
            progress,
        }
    }

    /// Takes a nemesis `start` completion: its upgrade steps, and a failure if it has an error.
    fn started(&mut self, op: &Op) {
        self.steps.extend(step_of(op, self.nemesis_start_s));
        // Any upgrade op with an error failed, whatever partial value it kept (a step cut off
        // by the runner's bound, a node that did not catch up). A failed start whose fault is
        // not named may have been an upgrade too.
        let fault = op.value["fault"].as_str();
        if let Some(error) = &op.error
            && fault.is_none_or(is_upgrade)
        {
            self.failed.push(FailedStep {
                fault: fault.unwrap_or("?").to_owned(),
                start_s: self.nemesis_start_s,
                end_s: secs(op.time),
                error: error.clone(),
            });
        }
    }

    /// Each node's build before any step: the old one.
    fn first_builds(&self) -> BTreeMap<u64, &str> {
        self.nodes.iter().map(|n| (*n, self.from.as_str())).collect()
    }

    /// Each node's build after every step.
    fn builds(&self) -> BTreeMap<u64, &str> {
        let mut build = self.first_builds();
        for s in &self.steps {
            build.insert(s.node, &s.to);
        }
        build
    }

    /// When the step that left every node on the new build began, if one did.
    fn all_new_from(&self) -> Option<f64> {
        let mut build = self.first_builds();
        let mut since = None;
        for s in &self.steps {
            build.insert(s.node, &s.to);
            let all = build.values().all(|b| *b == self.to);
            since = match (since, all) {
                (None, true) => Some(s.start_s),
                (_, false) => None,
                (kept, true) => kept,
            };
        }
        since
    }

    /// The gate: a switch before every node ran the new build is a violation, unless a failed
    /// step came first (its node may have moved, and the steps cannot say when).
    fn gate(&self, all_new: Option<f64>, out: &mut Findings) {
        let Some((version, at)) = gate_flip(&self.samples) else { return };
        if all_new.is_some_and(|from| at >= from) {
            return;
        }
        let when = all_new.map_or("no step left every node on the new build".into(), |f| {
            format!("the last node began moving at {f:.1} s")
        });
        let early = format!(
            "the cluster switched to version {version} at {at:.1} s, before every node ran the new build ({when})"
        );
        match self.failed.iter().find(|f| f.start_s <= at) {
            Some(f) => out.unknown.push(format!("{early}, after a failed step at {:.1} s", f.start_s)),
            None => out.invalid.push(early),
        }
    }

    /// The steps that failed, and the nodes no step moved to the new build.
    fn unfinished(&self, out: &mut Findings) {
        for f in &self.failed {
            out.unknown.push(format!("the {} step begun at {:.1} s failed: {}", f.fault, f.start_s, f.error));
        }
        let old: Vec<String> =
            self.builds().into_iter().filter(|(_, b)| *b != self.to).map(|(n, _)| n.to_string()).collect();
        if !old.is_empty() {
            let nodes = if old.len() == 1 { "node" } else { "nodes" };
            out.unknown.push(format!("the upgrade did not finish: {nodes} {} still on the old build", old.join(", ")));
        }
    }

    /// What the samples and logs lack for a verdict: samples at all, a sample showing each
    /// moved node up after its last step, releases from a system that reports them.
    fn missing_evidence(&self, final_version: Option<(u32, u32)>, out: &mut Findings) {
        // The logs' absence is said last: the other gaps say more about the run.
        let logs = self.logs.missing.iter().cloned();
        if self.samples.is_empty() {
            out.unknown.push("no status samples (status.jsonl is missing, empty or unreadable)".into());
            out.unknown.extend(logs);
            return;
        }
        let mut last_step_s: BTreeMap<u64, f64> = BTreeMap::new();
        for s in &self.steps {
            last_step_s.insert(s.node, s.end_s);
        }
        for (node, end_s) in last_step_s {
            let seen = self.samples.iter().any(|s| s.time_s > end_s && s.nodes.get(&node).is_some_and(|n| n.up));
            if !seen {
                out.unknown.push(format!("no status sample after its last step at {end_s:.1} s shows node {node} up"));
            }
        }
        if self.reports_releases && final_version.is_none() {
            let any = self.samples.iter().flat_map(|s| s.nodes.values()).any(|n| n.release.is_some());
            out.unknown.push(if any {
                "the final cluster version is not known: a node's release or every group's version is missing after the last step".into()
            } else {
                "no node reported a release: the feature gate and the final cluster version cannot be judged".into()
            });
        }
        out.unknown.extend(logs);
    }

    fn findings(&self) -> (Findings, Value) {
        let mut out = Findings::default();
        out.invalid.extend(self.logs.refusals.iter().map(|r| format!("a node refused to go on: {r}")));
        let all_new = self.all_new_from();
        self.gate(all_new, &mut out);
        let last_step_s = self.steps.iter().map(|s| s.end_s).fold(f64::NEG_INFINITY, f64::max);
        let final_version = self.final_version(last_step_s);
        if let Some((expected, found)) = final_version
            && found < expected
        {
            out.invalid.push(format!("every node runs release {expected} but the cluster version stayed at {found}"));
        }
        self.progress.stalled(&self.steps, &mut out);
        self.unfinished(&mut out);
        self.missing_evidence(final_version, &mut out);
        let details = json!({
            "steps": self.steps,
            "failed_steps": self.failed,
            "every_node_new_from_s": all_new,
            "gate": gate_flip(&self.samples).map(|(v, t)| json!({"version": v, "at_s": t})),
            "final": final_version.map(|(e, f)| json!({"expected": e, "cluster_version": f})),
            "refusals": self.logs.refusals,
        });
        (out, details)
    }

    /// (the lowest of the nodes' last reported releases, the cluster version of the last sample
    /// after `after_s` that reports one): per group the highest any node reports, since a
    /// version once applied is committed and one node reporting it is enough; then the lowest
    /// over the groups, so that one group left behind shows. A node down at the end is judged
    /// by the build it last ran.
    fn final_version(&self, after_s: f64) -> Option<(u32, u32)> {
        let mut release: BTreeMap<u64, Option<u32>> = BTreeMap::new();
        for (id, n) in self.samples.iter().flat_map(|s| &s.nodes) {
            if n.up {
                release.insert(*id, n.release);
            }
        }
        let lowest = release.values().copied().min().flatten()?;
        let version = self.samples.iter().rev().take_while(|s| s.time_s > after_s).find_map(group_floor)?;
        Some((lowest, version))
    }

    fn summary(&self, out: &Findings) -> String {
        if let Some(first) = out.invalid.first().or(out.unknown.first()) {
            return first.clone();
        }
        match gate_flip(&self.samples) {
            Some((v, at)) => format!(
                "{} steps; cluster version {v} from {at:.1} s, after every node ran the new build; progress after each",
                self.steps.len()
            ),
            None => format!("{} steps, progress after each; no release change reported (no gate)", self.steps.len()),
        }
    }
}

/// The lowest, over a sample's groups, of the highest cluster version any node reports for it.
fn group_floor(s: &Sample) -> Option<u32> {
    let mut groups: BTreeMap<u64, u32> = BTreeMap::new();
    for (g, v) in s.nodes.values().flat_map(|n| &n.cluster_versions) {
        let highest = groups.entry(*g).or_insert(*v);
        *highest = (*highest).max(*v);
    }
    groups.values().copied().min()
}

/// The main phases' spans in seconds, from `run.json` (none when it is missing or from before
/// phases were recorded: the history's heal then marks the main phase's end).
fn main_phases_s(dir: &Path) -> Vec<(f64, f64)> {
    let Ok(Some(info)) = crate::store::run_info(dir) else { return Vec::new() };
    info.phases.iter().filter(|p| p.kind == PhaseKind::Main).map(|p| (secs(p.start), secs(p.end))).collect()
}

impl Checker for UpgradeCheck {
    fn name(&self) -> &str {
        "upgrade"
    }

    fn observe(&mut self, op: &Op) {
        let t_s = secs(op.time);
        match (op.process, op.kind) {
            (Process::Nemesis, OpType::Invoke) if op.f == "start" => {
                self.nemesis_start_s = t_s;
            }
            (Process::Nemesis, OpType::Info) if op.f == "start" => self.started(op),
            (Process::Nemesis, OpType::Invoke) if op.f == "stop" && op.value["fault"] == "all" => {
                self.progress.heal_s.get_or_insert(t_s);
            }
            (Process::Client(p), kind) => self.progress.client(p, kind, t_s),
            _ => {}
        }
    }

    fn finish(self: Box<Self>) -> Result<CheckerResult, CheckError> {
        let (out, mut details) = self.findings();
        let verdict = match (out.invalid.is_empty(), out.unknown.is_empty()) {
            (false, _) => Verdict::Invalid,
            (true, false) => Verdict::Unknown,
            (true, true) => Verdict::Valid,
        };
        let summary = self.summary(&out);
        details["violations"] = json!(out.invalid);
        details["unknown"] = json!(out.unknown);
        Ok(CheckerResult { name: "upgrade".into(), verdict, summary, details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_history::{PhaseKind, PhaseSpan};

    const NS: f64 = 1e9;

    /// One node in a status line: its release (if it reports one) and each group's version.
    fn node(release: Option<u32>, groups: &[u32]) -> Value {
        let groups: Vec<Value> =
            groups.iter().enumerate().map(|(g, cv)| json!({"group": g, "cluster_version": cv})).collect();
        let mut n = json!({"up": true, "version": "0.1.0", "groups": groups});
        if let Some(r) = release {
            n["release"] = json!(r);
        }
        n
    }

    fn line(t_s: f64, nodes: &[Value]) -> String {
        let nodes: serde_json::Map<String, Value> =
            nodes.iter().enumerate().map(|(i, n)| ((i + 1).to_string(), n.clone())).collect();
        json!({"time": (t_s * NS) as u64, "nodes": nodes}).to_string()
    }

    /// Three nodes moving from release 2 to 3 in `groups` groups, one per step (ending at 3, 6
    /// and 9 s), the cluster version rising after the last; `early` is node 1's groups at 4 s.
    fn status(groups: usize, early: Option<&[u32]>) -> String {
        let (old, new) = (vec![2; groups], vec![3; groups]);
        let n = |r: u32, g: &[u32]| node(Some(r), g);
        [
            line(1.0, &[n(2, &old), n(2, &old), n(2, &old)]),
            line(4.0, &[n(3, early.unwrap_or(&old)), n(2, &old), n(2, &old)]),
            line(7.0, &[n(3, &old), n(3, &old), n(2, &old)]),
            line(10.0, &[n(3, &new), n(3, &new), n(3, &new)]),
        ]
        .join("\n")
    }

    /// A run directory's inputs to the check, and its history.
    struct Run {
        system: &'static str,
        groups: u32,
        /// `status.jsonl`; `None`: no file.
        status: Option<String>,
        logs: BTreeMap<u64, Vec<u8>>,
        /// The main phases' spans, in seconds (`run.json`).
        main: Vec<(f64, f64)>,
        ops: Vec<Op>,
    }

    impl Run {
        /// A clean rolling upgrade of nodes 1, 2, 3 (steps at 2-3, 5-6, 8-9 s, each followed by
        /// a successful write), a main phase of 0-11 s and the final reads at 20 s.
        fn clean() -> Run {
            let mut run = Run {
                system: "broker",
                groups: 1,
                status: Some(status(1, None)),
                logs: (1..=3).map(|n| (n, b"INFO serving\n".to_vec())).collect(),
                main: vec![(0.0, 11.0)],
                ops: Vec::new(),
            };
            run.ok(0.1);
            for (node, start) in [(1, 2.0), (2, 5.0), (3, 8.0)] {
                run.step(node, start, start + 1.0).ok(start + 1.1).fault_stop(start + 1.5);
            }
            run.ok(20.0);
            run
        }

        fn at(&mut self, op: Op, t_s: f64) -> &mut Run {
            self.ops.push(op.at((t_s * NS) as u64));
            self
        }

        /// A client write invoked at `t_s` and acknowledged 10 ms later.
        fn ok(&mut self, t_s: f64) -> &mut Run {
            let op = Op::invoke(Process::Client(0), "write", json!({"key": "k0", "value": 1}));
            self.at(op.clone(), t_s).at(op.completed(OpType::Ok), t_s + 0.01)
        }

        /// A client write invoked at `t_s` that timed out 10 ms later.
        fn timeout(&mut self, t_s: f64) -> &mut Run {
            let op = Op::invoke(Process::Client(0), "write", json!({"key": "k0", "value": 1}));
            self.at(op.clone(), t_s).at(op.completed(OpType::Info), t_s + 0.01)
        }

        /// The upgrade of `node` from `start_s` to `end_s`.
        fn step(&mut self, node: u64, start_s: f64, end_s: f64) -> &mut Run {
            let value = json!({"fault": "upgrade", "targets": [node], "from": "A", "to": "B", "down": []});
            self.at(Op::invoke(Process::Nemesis, "start", json!({"fault": "upgrade"})), start_s)
                .at(Op::invoke(Process::Nemesis, "start", value).completed(OpType::Info), end_s)
        }

        /// The upgrade of `node` from `start_s` to `end_s`, started with a pause of the majority.
        fn step_in_set(&mut self, node: u64, start_s: f64, end_s: f64) -> &mut Run {
            let upgrade = json!({"fault": "upgrade", "targets": [node], "from": "A", "to": "B", "down": []});
            let pause = json!({"fault": "pause-majority", "targets": [1, 2], "down": [1, 2]});
            let value = json!({"fault": "upgrade+pause-majority", "targets": [1, 2], "parts": [upgrade, pause]});
            let name = json!({"fault": "upgrade+pause-majority"});
            self.at(Op::invoke(Process::Nemesis, "start", name), start_s)
                .at(Op::invoke(Process::Nemesis, "start", value).completed(OpType::Info), end_s)
        }

        /// An upgrade that failed with `error` (the runner keeps only the fault's name).
        fn failed_step(&mut self, start_s: f64, end_s: f64, error: &str) -> &mut Run {
            let value = json!({"fault": "upgrade"});
            let done = Op::invoke(Process::Nemesis, "start", value.clone()).completed(OpType::Info);
            self.at(Op::invoke(Process::Nemesis, "start", value), start_s).at(done.with_error(error), end_s)
        }

        /// The (no-op) stop of an upgrade.
        fn fault_stop(&mut self, t_s: f64) -> &mut Run {
            let value = json!({"fault": "upgrade"});
            self.at(Op::invoke(Process::Nemesis, "stop", value.clone()), t_s)
                .at(Op::invoke(Process::Nemesis, "stop", value).completed(OpType::Info), t_s + 0.01)
        }

        /// Another fault starting at `t_s`.
        fn fault(&mut self, t_s: f64) -> &mut Run {
            let value = json!({"fault": "pause-follower"});
            self.at(Op::invoke(Process::Nemesis, "start", value.clone()), t_s)
                .at(Op::invoke(Process::Nemesis, "start", value).completed(OpType::Info), t_s + 0.01)
        }
    }

    fn test_json(run: &Run) -> Test {
        serde_json::from_value(json!({
            "name": "rolling-upgrade-register-pause-follower", "system": run.system, "workload": "register",
            "nemesis": ["upgrade", "pause-follower"], "env": "local", "nodes": 3, "groups": run.groups,
            "concurrency": 1, "rate": 10.0, "time_limit_s": 120.0, "seed": 1, "op_timeout_ms": 100,
            "nemesis_interval_s": 1.0, "fault_duration_s": 1.0, "keys": 1, "tick_ms": 10, "heartbeat_ticks": 2,
            "election_ticks": 10, "bugs": [], "broker_binary": "A", "broker_version": "0.1.0",
            "ordeal_version": "0.1.0", "command": "", "started_at": "", "scenario": "rolling-upgrade",
            "upgrade_binary": "B"
        }))
        .unwrap()
    }

    /// Writes `run` into a fresh run directory and checks it.
    fn check(run: &Run) -> CheckerResult {
        let dir = tempfile::tempdir().unwrap();
        let test = test_json(run);
        if let Some(status) = &run.status {
            std::fs::write(dir.path().join(crate::store::STATUS), status).unwrap();
        }
        for (n, log) in &run.logs {
            let node = dir.path().join("nodes").join(format!("n{n}"));
            std::fs::create_dir_all(&node).unwrap();
            std::fs::write(node.join(format!("{}.log", run.system)), log).unwrap();
        }
        let phases = run
            .main
            .iter()
            .map(|(s, e)| PhaseSpan { kind: PhaseKind::Main, start: (s * NS) as u64, end: (e * NS) as u64, rate: 0.0 })
            .collect();
        let info = crate::store::RunInfo { phases, ..Default::default() };
        std::fs::write(dir.path().join(crate::store::RUN), serde_json::to_string(&info).unwrap()).unwrap();
        let mut c = Box::new(UpgradeCheck::new(dir.path(), &test));
        let mut ops = run.ops.clone();
        ops.sort_by_key(|o| o.time);
        for op in &ops {
            c.observe(op);
        }
        c.finish().unwrap()
    }

    /// `check` of `run`, whose verdict must be `verdict` and whose summary must contain `says`.
    fn expect(run: &Run, verdict: Verdict, says: &str) {
        let r = check(run);
        assert_eq!(r.verdict, verdict, "{r:#?}");
        assert!(r.summary.contains(says), "{says:?} not in {:?}", r.summary);
    }

    #[test]
    fn a_clean_rolling_upgrade_is_valid() {
        expect(&Run::clean(), Verdict::Valid, "3 steps");
    }

    #[test]
    fn the_gate_may_flip_only_once_the_last_node_moved() {
        let early = Run { status: Some(status(1, Some(&[3]))), ..Run::clean() };
        expect(&early, Verdict::Invalid, "before every node ran the new build");
        let n = |r: u32, g: u32| node(Some(r), &[g]);
        let stuck = [line(1.0, &[n(2, 2), n(2, 2), n(2, 2)]), line(10.0, &[n(3, 2), n(3, 2), n(3, 2)])];
        expect(&Run { status: Some(stuck.join("\n")), ..Run::clean() }, Verdict::Invalid, "stayed at 2");
    }

    /// Review finding 2: each node's lowest version over its groups hid one group switching
    /// early when there are two.
    #[test]
    fn one_group_of_two_switching_early_is_caught() {
        let early = Run { groups: 2, status: Some(status(2, Some(&[3, 2]))), ..Run::clean() };
        expect(&early, Verdict::Invalid, "before every node ran the new build");
        // And the final check takes every group: one stuck at 2 while the other rose.
        let mut stuck = status(2, None);
        stuck.push('\n');
        let n = |g: &[u32]| node(Some(3), g);
        stuck.push_str(&line(11.0, &[n(&[3, 2]), n(&[3, 2]), n(&[3, 2])]));
        expect(&Run { groups: 2, status: Some(stuck), ..Run::clean() }, Verdict::Invalid, "stayed at 2");
    }

    /// Review finding 1: one node of three moved (the time limit cut the scenario), or none.
    #[test]
    fn an_unfinished_upgrade_is_unknown() {
        let first_two = status(1, None).lines().take(2).collect::<Vec<_>>().join("\n");
        let mut partial = Run { ops: Vec::new(), status: Some(first_two), ..Run::clean() };
        partial.ok(0.1).step(1, 2.0, 3.0).ok(3.1).ok(20.0);
        expect(&partial, Verdict::Unknown, "the upgrade did not finish: nodes 2, 3 still on the old build");
        let first = status(1, None).lines().take(1).collect::<Vec<_>>().join("\n");
        let mut nothing = Run { ops: Vec::new(), status: Some(first), ..Run::clean() };
        nothing.ok(0.1).ok(20.0);
        expect(&nothing, Verdict::Unknown, "nodes 1, 2, 3 still on the old build");
    }

    /// Review finding 1: an upgrade step that failed vanished from the check.
    #[test]
    fn a_failed_upgrade_step_is_unknown() {
        let mut run = Run::clean();
        run.failed_step(12.0, 42.0, "node 1 did not catch up within 30s of its upgrade");
        expect(&run, Verdict::Unknown, "node 1 did not catch up within 30s");
    }

    /// Review finding 3: without releases, or without samples, the gate checks were skipped.
    #[test]
    fn a_broker_run_without_releases_or_samples_is_unknown() {
        let m = |g: u32| node(None, &[g]);
        let no_release =
            [line(1.0, &[m(2), m(2), m(2)]), line(4.0, &[m(3), m(3), m(3)]), line(10.0, &[m(3), m(3), m(3)])];
        let run = Run { status: Some(no_release.join("\n")), ..Run::clean() };
        expect(&run, Verdict::Unknown, "no node reported a release");
        // A system that numbers no releases has no gate to judge.
        expect(&Run { system: "etcd", ..run }, Verdict::Valid, "no gate");
        expect(&Run { status: None, ..Run::clean() }, Verdict::Unknown, "no status samples");
        expect(&Run { status: Some("{not json".into()), ..Run::clean() }, Verdict::Unknown, "no status samples");
        let before_last = status(1, None).lines().take(3).collect::<Vec<_>>().join("\n");
        expect(&Run { status: Some(before_last), ..Run::clean() }, Verdict::Unknown, "no status sample after");
    }

    /// Review finding 4: a log with a byte that is not UTF-8 was skipped whole.
    #[test]
    fn a_refusal_is_found_in_a_log_that_is_not_utf8_and_a_missing_log_is_unknown() {
        let refusal = b"ERROR the cluster moved to a newer version; stopping rather than diverging\n";
        let mut run = Run::clean();
        run.logs.insert(3, [&b"\xff\xfe garbage\n"[..], refusal].concat());
        expect(&run, Verdict::Invalid, "a node refused to go on");
        let mut run = Run::clean();
        run.logs.remove(&2);
        expect(&run, Verdict::Unknown, "no log of node 2");
    }

    /// Review finding 5: the final reads after the heal counted as progress after every step.
    #[test]
    fn progress_after_a_step_must_show_before_the_next_fault_and_in_the_main_phase() {
        let mut stalled = Run { ops: Vec::new(), ..Run::clean() };
        stalled.ok(0.1).step(1, 2.0, 3.0).timeout(3.5).fault(4.0).timeout(4.5);
        stalled.step(2, 5.0, 6.0).ok(6.1).step(3, 8.0, 9.0).ok(9.1);
        expect(&stalled, Verdict::Invalid, "no operation invoked after step 1 (node 1 to B) ended at 3.0 s succeeded");
        // Another fault between the steps stopped the cluster for a while; it came back.
        let mut paused = Run { ops: Vec::new(), ..Run::clean() };
        paused.ok(0.1).step(1, 2.0, 3.0).timeout(3.5).fault(4.0).ok(4.5);
        paused.step(2, 5.0, 6.0).ok(6.1).step(3, 8.0, 9.0).ok(9.1);
        expect(&paused, Verdict::Valid, "progress after each");
        let mut late = Run { ops: Vec::new(), ..Run::clean() };
        late.ok(0.1).step(1, 2.0, 3.0).ok(3.1).step(2, 5.0, 6.0).ok(6.1).step(3, 8.0, 9.0).timeout(9.5).ok(20.0);
        expect(&late, Verdict::Invalid, "no operation invoked after step 3");
        // A window in which nothing completed (the next step came at once) tells nothing.
        let mut short = Run { ops: Vec::new(), ..Run::clean() };
        short.ok(0.1).step(1, 2.0, 3.0).step(2, 3.005, 6.0).ok(6.1).step(3, 8.0, 9.0).ok(9.1);
        expect(&short, Verdict::Unknown, "so its progress is not known");
        // The last step came with a pause of the majority, which held until the phase ended.
        let mut paused_with_it = Run { ops: Vec::new(), ..Run::clean() };
        paused_with_it.ok(0.1).step(1, 2.0, 3.0).ok(3.1).step(2, 5.0, 6.0).ok(6.1);
        paused_with_it.step_in_set(3, 8.0, 9.0).timeout(9.5);
        expect(&paused_with_it, Verdict::Unknown, "faults started with it may have stopped the cluster");
    }
}
