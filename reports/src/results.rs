//! `results.json`: every checker's verdict with its evidence, statistics, and fault windows.
//! Its schema is documented in `docs/results.md`; fields are only ever added.

use crate::ReportError;
use crate::store::{self, RunInfo};
use ordeal_checker::Verdict;
use ordeal_checker::checker::{self, Checker, Compose};
use ordeal_checker::perf::{Digest, FaultWindow, Stats};
use ordeal_history::{Op, Test, jsonl};
use serde::{Deserialize, Serialize};
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

/// Runs `checkers` (the workload's) over the run's history, in the one pass that also digests
/// it; a fault's write gap ends with the first acknowledged op of `writes`.
pub fn analyze(dir: &Path, checkers: Vec<Box<dyn Checker>>, writes: &[&str]) -> Result<Analysis, ReportError> {
    let test: Test = store::read_json(&dir.join(store::TEST))?;
    test.check_format().map_err(|e| ReportError::file(&dir.join(store::TEST), e))?;
    let run: Option<RunInfo> = store::read_json(&dir.join(store::RUN)).ok();
    let path = dir.join(store::HISTORY);
    let (stream, warning) = ops(&path)?;
    let mut checking = Compose::new(checkers);
    let digest = Digest::of(stream.inspect(|op| checking.observe(op))).map_err(|e| ReportError::file(&path, e))?;
    let checkers = checking.finish().map_err(|e| ReportError::file(&path, e))?;
    let truncated = warning.borrow().clone();
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
