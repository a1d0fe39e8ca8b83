//! `results.json`: every checker's verdict with its evidence, statistics, and fault windows.
//! Its schema is documented in `docs/results.md`; fields are only ever added.

use crate::ReportError;
use crate::store::{self, RunInfo};
use ordeal_checker::Verdict;
use ordeal_checker::checker::{self, Checker, Compose};
use ordeal_checker::perf::{Digest, FaultWindow, Span, Stats};
use ordeal_history::{Op, OpType, PhaseKind, PhaseSpan, ROUNDS_CUT_SHORT, Test, jsonl};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The version of the `results.json` schema.
pub const RESULTS_VERSION: u32 = 1;

/// One checker's outcome; defined beside the [`Checker`] trait.
pub use ordeal_checker::CheckerResult;

/// Write gaps over all faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// Faults started.
    pub faults: usize,
    /// Faults after which writes resumed.
    pub recovered: usize,
    /// Median write gap, in ms.
    pub gap_ms_median: Option<f64>,
    /// Largest write gap, in ms.
    pub gap_ms_max: Option<f64>,
}

/// The analysis of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Schema version.
    pub version: u32,
    /// The combined verdict: invalid beats unknown beats valid.
    pub verdict: Verdict,
    /// Why, in one line.
    pub reason: String,
    /// The test's configuration.
    pub test: Test,
    /// How the run went, when known.
    pub run: Option<RunInfo>,
    /// Each checker's outcome.
    pub checkers: Vec<CheckerResult>,
    /// Op counts and latency quantiles.
    pub stats: Stats,
    /// The write gap of every fault.
    pub faults: Vec<FaultWindow>,
    /// The write gaps summarized.
    pub failover: Failover,
    /// A warning about the history file (a truncated last line), if any.
    pub history_warning: Option<String>,
    /// Why the record cannot support a verdict of valid; empty when it is complete.
    #[serde(default)]
    pub defects: Vec<Defect>,
    /// Each phase as it ran: the ops invoked in it and how fast (runs before phases: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseStats>,
}

/// One phase as it ran: the client ops invoked in it (their invocation time in its span), by
/// kind, and their rate. The closing final reads come after the last phase and count in none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// The phase's kind.
    pub kind: PhaseKind,
    /// Its start, in seconds of the test's time.
    pub start_s: f64,
    /// Its end.
    pub end_s: f64,
    /// The rate it asked for, in ops/s; 0 means no limit.
    pub rate: f64,
    /// Client ops invoked in it per second.
    pub invoked_per_s: f64,
    /// Client ops invoked in it, by `f`.
    pub invoked: BTreeMap<String, u64>,
}

/// What the clients invoked in each phase of `spans`.
fn phase_stats(spans: &[PhaseSpan], d: &Digest) -> Vec<PhaseStats> {
    spans
        .iter()
        .map(|p| {
            let mut invoked = BTreeMap::new();
            for s in d.spans.iter().filter(|s| p.holds(s.call)) {
                *invoked.entry(d.names[usize::from(s.f)].clone()).or_default() += 1;
            }
            let seconds = p.end.saturating_sub(p.start) as f64 / 1e9;
            let total: u64 = invoked.values().sum();
            PhaseStats {
                kind: p.kind,
                start_s: p.start as f64 / 1e9,
                end_s: p.end as f64 / 1e9,
                rate: p.rate,
                invoked_per_s: if seconds > 0.0 { total as f64 / seconds } else { 0.0 },
                invoked,
            }
        })
        .collect()
}

/// Why what a run left behind cannot support a verdict of valid. Any defect turns `valid` into
/// `unknown`: a verifier must not vouch for ops it did not see, nor for a cluster it left broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum Defect {
    /// A line of the history is not an op (garbage, random bytes, not UTF-8): unreadable input.
    Unreadable(String),
    /// The history stops early: its last line is cut short, or it holds fewer ops than the run
    /// recorded.
    Truncated(String),
    /// The run's phases hold no client op (the closing final reads do not count): nothing was
    /// verified.
    Empty,
    /// The run left no `run.json`: the harness died (or still runs) before its end.
    Unfinished,
    /// The run was interrupted (Ctrl-C) before its end.
    Interrupted,
    /// The cluster could not be healed at the end of the run.
    Unhealed(String),
    /// The harness failed and ended the run early.
    HarnessFailed(String),
    /// A run with fault rounds (`--fault-rounds`) that the time limit ended before every fault
    /// ran as often as it promised. (A fault that found no target counts as run: with several
    /// groups or right after a restart that is routine, and the other rounds still run.)
    FaultsFailed(String),
    /// Client ops were invoked but no write succeeded: a system that commits nothing (or a
    /// harness pointed at nothing) verifies nothing.
    NothingAcknowledged,
    /// A final read never succeeded, so what it would have shown (lost or unexpected records, a
    /// lost last write) went unchecked.
    FinalReadsIncomplete,
    /// The nemesis tried faults and every one failed to start: the run tested nothing it named.
    NoFaultRan(String),
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Defect::Unreadable(m) => write!(f, "unreadable history: {m}"),
            Defect::Truncated(m) => write!(f, "truncated history: {m}"),
            Defect::Empty => f.write_str("the run's phases hold no client op (its closing final reads do not count)"),
            Defect::Unfinished => write!(f, "the run did not finish (it left no {})", store::RUN),
            Defect::Interrupted => f.write_str("the run was interrupted before its end"),
            Defect::Unhealed(m) => write!(f, "the cluster did not heal: {m}"),
            Defect::HarnessFailed(m) => write!(f, "the run did not complete: {m}"),
            Defect::FaultsFailed(m) => write!(f, "the faults the run set out to run did not all run: {m}"),
            Defect::NothingAcknowledged => f.write_str("no write of the run's phases succeeded"),
            Defect::FinalReadsIncomplete => f.write_str("a final read never succeeded"),
            Defect::NoFaultRan(m) => write!(f, "every fault the nemesis tried failed to start: {m}"),
        }
    }
}

impl Results {
    /// Whether the history could not be read: bad input rather than an undecided check.
    pub fn unreadable(&self) -> bool {
        self.defects.iter().any(|d| matches!(d, Defect::Unreadable(_)))
    }
}

/// A run's results with the digest of its history, from which reports draw.
pub struct Analysis {
    /// What goes into `results.json`.
    pub results: Results,
    /// The history, boiled down.
    pub digest: Digest,
}

/// The error that ended the history's stream early, filled in when it does.
type StreamError = std::rc::Rc<std::cell::RefCell<Option<jsonl::Error>>>;

/// Streams the history file up to its first bad line, which shows up in the returned error.
fn ops(path: &Path) -> Result<(impl Iterator<Item = Op>, StreamError), ReportError> {
    let file = std::fs::File::open(path).map_err(|e| ReportError::file(path, e))?;
    let error = StreamError::default();
    let seen = error.clone();
    let ops = jsonl::Reader::new(file).map_while(move |r| r.map_err(|e| *seen.borrow_mut() = Some(e)).ok());
    Ok((ops, error))
}

/// Everything that keeps the record from supporting a verdict of valid: how the history's
/// stream ended after `read` ops, how many client ops it holds and how many succeeded, and how
/// the run went.
fn defects(
    shown: &Path,
    stream: Option<jsonl::Error>,
    read: u64,
    (clients, acked): (usize, usize),
    run: Option<&RunInfo>,
) -> Vec<Defect> {
    let mut out = Vec::new();
    match stream {
        // A cut-short last line after good ops is a crash mid-write; one with nothing before
        // it is no history at all.
        Some(e) if e.is_truncation() && read > 0 => out.push(Defect::Truncated(format!("{}: {e}", shown.display()))),
        Some(e) => out.push(Defect::Unreadable(format!("{}: {e}", shown.display()))),
        None => {}
    }
    if let Some(recorded) = run.map(|r| r.events).filter(|&n| n > read) {
        out.push(Defect::Truncated(format!("{} holds {read} ops; the run recorded {recorded}", shown.display())));
    }
    if clients == 0 {
        out.push(Defect::Empty);
    } else if acked == 0 {
        out.push(Defect::NothingAcknowledged);
    }
    let Some(run) = run else {
        out.push(Defect::Unfinished);
        return out;
    };
    if run.interrupted {
        out.push(Defect::Interrupted);
    }
    if let Some(e) = &run.heal_error {
        out.push(Defect::Unhealed(e.clone()));
    }
    if let Some(e) = &run.harness_error {
        out.push(Defect::HarnessFailed(e.clone()));
    }
    // An interrupted or unhealed run skips its final reads, and says so already.
    if !run.final_reads_complete && !run.interrupted && run.heal_error.is_none() {
        out.push(Defect::FinalReadsIncomplete);
    }
    let cut = run.nemesis_errors.iter().filter(|e| e.starts_with(ROUNDS_CUT_SHORT));
    out.extend(cut.map(|e| Defect::FaultsFailed(e.clone())));
    out
}

/// The client ops the run's phases invoked, and how many of them were acknowledged writes (any
/// acknowledged op, when the phases invoked none of the workload's writes: a read-only mix is
/// judged on its reads). The closing final reads, after the last phase, are left out: every
/// finished run makes them, and they succeed on an empty cluster, so they cannot show that the
/// workload verified anything. A run without phases counts every op.
fn in_phases(d: &Digest, run: Option<&RunInfo>, writes: &[&str]) -> (usize, usize) {
    let phases = run.map(|r| r.phases.as_slice()).unwrap_or_default();
    let invoked: Vec<&Span> =
        d.spans.iter().filter(|s| phases.is_empty() || phases.iter().any(|p| p.holds(s.call))).collect();
    let is_write = |s: &Span| writes.contains(&d.names[usize::from(s.f)].as_str());
    let wrote = invoked.iter().any(|s| is_write(s));
    let acked = invoked.iter().filter(|s| s.kind == OpType::Ok && (!wrote || is_write(s))).count();
    (invoked.len(), acked)
}

/// Why no fault ran, when the nemesis tried some and every start failed. (A run too short for
/// its first fault tried none, and says so by its fault count, not here.)
fn no_fault_ran(nemesis: &[Op]) -> Option<Defect> {
    let mut starts = nemesis.iter().filter(|o| o.f == "start" && o.kind == ordeal_history::OpType::Info).peekable();
    let first = starts.peek()?.error.clone()?;
    starts.all(|o| o.error.is_some()).then_some(Defect::NoFaultRan(first))
}

/// Runs `checkers` (the workload's) over the run's history, in the one pass that also digests
/// it; a fault's write gap ends with the first acknowledged op of `writes`.
pub fn analyze(dir: &Path, checkers: Vec<Box<dyn Checker>>, writes: &[&str]) -> Result<Analysis, ReportError> {
    let test: Test = store::read_json(&dir.join(store::TEST))?;
    test.check_format().map_err(|e| ReportError::file(&dir.join(store::TEST), e))?;
    let run = store::run_info(dir)?;
    let path = dir.join(store::HISTORY);
    let (stream, stream_error) = ops(&path)?;
    let mut checking = Compose::new(checkers);
    let mut read = 0u64;
    let digest = Digest::of(stream.inspect(|op| {
        read += 1;
        checking.observe(op)
    }))
    .map_err(|e| ReportError::file(&path, e))?;
    let checkers = checking.finish().map_err(|e| ReportError::file(&path, e))?;
    let stream_error = stream_error.borrow_mut().take();
    let history_warning = stream_error.as_ref().map(|e| format!("{}: {e}", path.display()));
    let stats = digest.stats();
    let clients = in_phases(&digest, run.as_ref(), writes);
    let mut defects = defects(&path, stream_error, read, clients, run.as_ref());
    defects.extend(no_fault_ran(&digest.nemesis));
    let faults = digest.fault_windows(writes);
    let mut gaps: Vec<f64> = faults.iter().filter_map(|f| f.gap_ms).collect();
    gaps.sort_by(f64::total_cmp);
    let failover = Failover {
        faults: faults.len(),
        recovered: gaps.len(),
        gap_ms_median: gaps.get(gaps.len() / 2).copied().filter(|_| !gaps.is_empty()),
        gap_ms_max: gaps.last().copied(),
    };
    let mut verdict = checker::verdict(&checkers);
    let reason = match checkers.iter().find(|c| c.verdict == verdict && verdict != Verdict::Valid) {
        Some(c) => format!("{}: {}", c.name, c.summary),
        None if checkers.is_empty() => "no checker applies to this workload".into(),
        None => format!(
            "{} checks passed over {} client ops",
            checkers.len(),
            stats.total.ok + stats.total.fail + stats.total.info
        ),
    };
    // A record that is not whole explains an unknown verdict before any checker that could not
    // decide on it does; an invalid verdict keeps its evidence first.
    let reason = match defects.first() {
        Some(d) if verdict != Verdict::Invalid => {
            verdict = Verdict::Unknown;
            d.to_string()
        }
        _ => reason,
    };
    let phases = run.as_ref().map(|r| phase_stats(&r.phases, &digest)).unwrap_or_default();
    let results = Results {
        phases,
        version: RESULTS_VERSION,
        verdict,
        reason,
        test,
        run,
        checkers,
        stats,
        faults,
        failover,
        history_warning,
        defects,
    };
    Ok(Analysis { results, digest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_history::Process;
    use serde_json::json;

    #[test]
    fn the_closing_final_reads_are_not_the_workloads_ops() {
        let op = |index, p, f: &str, kind, time| Op {
            index,
            ..Op::invoke(Process::Client(p), f, json!({})).completed(kind).at(time)
        };
        // A write whose outcome is unknown in the main phase, then a final read that succeeded.
        let ops = [
            op(0, 0, "write", OpType::Invoke, 10),
            op(1, 0, "write", OpType::Info, 20),
            op(2, 1, "read", OpType::Invoke, 200),
            op(3, 1, "read", OpType::Ok, 210),
        ];
        let d = Digest::of(ops).unwrap();
        let main = PhaseSpan { kind: PhaseKind::Main, start: 0, end: 100, rate: 0.0 };
        let run = RunInfo { phases: vec![main], ..RunInfo::default() };
        assert_eq!(in_phases(&d, Some(&run), &["write"]), (1, 0), "no write acknowledged");
        assert_eq!(in_phases(&d, None, &["write"]), (2, 0), "without phases every op counts");
        assert_eq!(in_phases(&d, None, &[]), (2, 1), "a workload naming no writes: any ok op");
        assert_eq!(in_phases(&d, None, &["cas"]), (2, 1), "phases that wrote nothing: any ok op");
        let defects = defects(Path::new("h"), None, 4, in_phases(&d, Some(&run), &["write"]), Some(&run));
        assert!(defects.contains(&Defect::NothingAcknowledged), "{defects:?}");
    }
}
