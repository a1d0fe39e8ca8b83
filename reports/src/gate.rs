//! `gate.json`: what `ordeal gate` decided, and on what evidence: every check, and every
//! configuration of the suite side by side, the baseline's runs beside the candidate's with
//! their figures' spread. `gate.html` ([`crate::html::gate`]) is drawn from it alone.

use ordeal_checker::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `gate.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateReport {
    /// Valid: the candidate passes; invalid: a check failed; unknown: one could not be decided
    /// (not a pass either).
    pub verdict: Verdict,
    /// The suite's name.
    #[serde(default)]
    pub suite: String,
    /// The suite's `[gate]` thresholds.
    pub thresholds: Value,
    /// Every check of the candidate.
    pub checks: Vec<Check>,
    /// Every configuration of the suite, both builds side by side.
    #[serde(default)]
    pub configs: Vec<ConfigPair>,
}

/// One check: a verdict of the candidate against the suite's expectation, or a figure against
/// the baseline's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed (valid), failed (invalid) or undecided (unknown).
    pub outcome: Verdict,
    /// Both sides of the comparison, and for a failed verdict what the run found.
    pub detail: String,
    /// The reports that show it, as links relative to the gate's directory.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// One configuration of the suite, run against both builds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigPair {
    /// `ENTRY [FLAG=VALUE ...]`.
    pub config: String,
    /// The verdict the suite expects.
    pub expect: String,
    /// The baseline's runs.
    pub baseline: Side,
    /// The candidate's runs.
    pub candidate: Side,
}

/// One build's runs of a configuration and their figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Side {
    /// Every run, by seed.
    pub runs: Vec<RunRef>,
    /// Median write gap after a fault over the runs.
    pub gap_ms: Option<Spread>,
    /// p99 latency of the acknowledged ops over the runs.
    pub p99_ms: Option<Spread>,
    /// Throughput over the runs: every completed op, whatever its outcome.
    pub throughput_per_s: Option<Spread>,
    /// p99 latency of every op, whatever its outcome (timeouts included), over the runs.
    #[serde(default)]
    pub p99_all_ms: Option<Spread>,
    /// Acknowledged ops per second over the runs: what the gate's throughput check compares.
    #[serde(default)]
    pub ok_per_s: Option<Spread>,
    /// Faults after which writes never resumed, summed over the runs with figures.
    #[serde(default)]
    pub unrecovered_faults: Option<usize>,
}

/// One run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRef {
    /// Its seed.
    pub seed: u64,
    /// Its verdict; none when it did not finish.
    pub verdict: Option<Verdict>,
    /// Its report, relative to the gate's directory.
    pub report: Option<String>,
    /// Whether its figures count: it decided (valid or invalid) and its record is whole (no
    /// defects). A run that failed to start, or could not decide, measured nothing.
    #[serde(default)]
    pub figures: bool,
}

/// A figure over repeated runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (the upper one of an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many runs had the figure.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`, none when empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use ordeal_reports::gate::Spread;
    /// let s = Spread::of(vec![3.0, 1.0, 2.0]).unwrap();
    /// assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    /// assert!(Spread::of(vec![]).is_none());
    /// ```
    pub fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.sort_by(f64::total_cmp);
        Some(Spread {
            median: *values.get(values.len() / 2)?,
            min: *values.first()?,
            max: *values.last()?,
            n: values.len(),
        })
    }
}
