//! `results.json`: every checker's verdict with its evidence, statistics, and fault windows.
//! Its schema is documented in `docs/results.md`; fields are only ever added.

use crate::ReportError;
use crate::store::{self, RunInfo};
use ordeal_checker::Verdict;
use ordeal_checker::linear::{self, Options};
use ordeal_checker::perf::{Digest, FaultWindow, Stats};
use ordeal_history::{History, Op, Test, jsonl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The version of the `results.json` schema.
pub const RESULTS_VERSION: u32 = 1;

/// One checker's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    /// `linearizability`, `offsets`, `log`.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// One line for people.
    pub summary: String,
    /// The checker's full report (a linearizability report or a log report).
    pub details: Value,
}

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
}

/// Streams the history file through `f` (renamed or dropped per op by `map`) into a
/// linearizability check with `model`.
fn check_linear(
    path: &Path,
    model: &str,
    init: &Value,
    map: impl Fn(Op) -> Option<Op>,
) -> Result<linear::Report, ReportError> {
    let (ops, _) = ops(path)?;
    let ops = ops.filter_map(map);
    let opts = Options { timeout: Some(std::time::Duration::from_secs(300)), ..Options::default() };
    linear::check_by_name(model, init, ops, &opts).map_err(|e| ReportError::file(path, e))
}

fn linear_result(name: &str, r: linear::Report) -> CheckerResult {
    CheckerResult {
        name: name.into(),
        verdict: r.verdict,
        summary: r.summary(),
        details: serde_json::to_value(&r).unwrap_or_default(),
    }
}

/// A run's results with the digest of its history, from which reports draw.
pub struct Analysis {
    /// What goes into `results.json`.
    pub results: Results,
    /// The history, boiled down.
    pub digest: Digest,
}

/// A warning about the history file, filled in when its stream ends early.
type Warning = std::rc::Rc<std::cell::RefCell<Option<String>>>;

/// Streams the history file; a truncated last line (a crash mid-write) ends it, and shows up
/// in the returned warning.
fn ops(path: &Path) -> Result<(impl Iterator<Item = Op>, Warning), ReportError> {
    let file = std::fs::File::open(path).map_err(|e| ReportError::file(path, e))?;
    let warning = Warning::default();
    let seen = warning.clone();
    let shown = path.display().to_string();
    let ops = jsonl::Reader::new(file).map_while(move |r| match r {
        Ok(op) => Some(op),
        Err(e) => {
            *seen.borrow_mut() = Some(format!("{shown}: {e}"));
            None
        }
    });
    Ok((ops, warning))
}

/// Runs every checker of the run's workload over its history.
pub fn analyze(dir: &Path) -> Result<Analysis, ReportError> {
    let test: Test = store::read_json(&dir.join(store::TEST))?;
    test.check_format().map_err(|e| ReportError::file(&dir.join(store::TEST), e))?;
    let run: Option<RunInfo> = store::read_json(&dir.join(store::RUN)).ok();
    let path = dir.join(store::HISTORY);
    let (stream, warning) = ops(&path)?;
    let digest = Digest::of(stream).map_err(|e| ReportError::file(&path, e))?;
    let truncated = warning.borrow().clone();
    let mut checkers = Vec::new();
    let writes: &[&str] = match test.workload.as_str() {
        "register" => {
            checkers.push(linear_result("linearizability", check_linear(&path, "kv", &Value::Null, Some)?));
            &["write", "cas"]
        }
        "log" => {
            let log_ops = |op: Op| matches!(op.f.as_str(), "append" | "read").then_some(op);
            checkers.push(linear_result("linearizability", check_linear(&path, "log", &Value::Null, log_ops)?));
            // Consumer offsets: a register per partition, written by commits, read by listings.
            let offset_ops = |mut op: Op| {
                op.f = match op.f.as_str() {
                    "commit" => "write".into(),
                    "list" => "read".into(),
                    _ => return None,
                };
                Some(op)
            };
            checkers.push(linear_result("offsets", check_linear(&path, "kv", &Value::Null, offset_ops)?));
            let (history, _): (History, _) =
                jsonl::read_file_lenient(&path).map_err(|e| ReportError::file(&path, e))?;
            let log = ordeal_checker::log::check(&history).map_err(|e| ReportError::file(&path, e))?;
            checkers.push(CheckerResult {
                name: "log".into(),
                verdict: log.verdict,
                summary: log.summary(),
                details: serde_json::to_value(&log).unwrap_or_default(),
            });
            &["append"]
        }
        _ => &["write"],
    };
    let stats = digest.stats();
    let faults = digest.fault_windows(writes);
    let mut gaps: Vec<f64> = faults.iter().filter_map(|f| f.gap_ms).collect();
    gaps.sort_by(f64::total_cmp);
    let failover = Failover {
        faults: faults.len(),
        recovered: gaps.len(),
        gap_ms_median: gaps.get(gaps.len() / 2).copied().filter(|_| !gaps.is_empty()),
        gap_ms_max: gaps.last().copied(),
    };
    let mut verdict = checkers.iter().fold(Verdict::Valid, |v, c| v.and(c.verdict));
    let reason = match checkers.iter().find(|c| c.verdict == verdict && verdict != Verdict::Valid) {
        Some(c) => format!("{}: {}", c.name, c.summary),
        None if checkers.is_empty() => "no checker applies to this workload".into(),
        None => format!(
            "{} checks passed over {} client ops",
            checkers.len(),
            stats.total.ok + stats.total.fail + stats.total.info
        ),
    };
    let harness_error = run.as_ref().and_then(|r| r.harness_error.clone());
    let reason = match harness_error {
        Some(e) if verdict == Verdict::Valid => {
            verdict = Verdict::Unknown;
            format!("the run did not complete: {e}")
        }
        _ => reason,
    };
    let results = Results {
        version: RESULTS_VERSION,
        verdict,
        reason,
        test,
        run,
        checkers,
        stats,
        faults,
        failover,
        history_warning: truncated,
    };
    Ok(Analysis { results, digest })
}
