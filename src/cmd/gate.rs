//! `ordeal gate --baseline A --candidate B --suite FILE.toml`: is build B safe to ship after A?
//!
//! The suite runs against both builds (the same cases, the same seeds). The candidate fails the
//! gate when any of its verdicts contradicts what the suite expects, or when, for a
//! configuration expected valid, its median write gap, p99 latency or throughput over the seeds
//! is worse than the baseline's beyond the suite's `[gate]` thresholds. The gate fails closed: a
//! run that did not complete, did not decide or left no figures is not a pass.

use super::suite::{self, CaseState, SuiteFile, SuiteState};
use crate::cli::GateArgs;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_checker::Verdict;
use ordeal_reports::junit::{self, Case};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What the gate tolerates, per configuration, comparing medians over seeds (`[gate]` in the
/// suite file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// The candidate's write gap may be at most this many times the baseline's, plus `gap_slack_ms`.
    pub max_gap_ratio: f64,
    /// Absolute slack on write gaps, in ms (gaps move in steps of the election timeout).
    pub gap_slack_ms: f64,
    /// The candidate's p99 latency may be at most this many times the baseline's, plus `p99_slack_ms`.
    pub max_p99_ratio: f64,
    /// Absolute slack on p99 latency, in ms.
    pub p99_slack_ms: f64,
    /// The candidate's throughput must be at least this fraction of the baseline's.
    pub min_throughput_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_gap_ratio: 1.5,
            gap_slack_ms: 100.0,
            max_p99_ratio: 1.5,
            p99_slack_ms: 2.0,
            min_throughput_ratio: 0.8,
        }
    }
}

/// One finding of the gate: passed, failed, or could not be decided (which fails too).
#[derive(Debug, Clone, Serialize)]
struct Check {
    name: String,
    outcome: Verdict,
    detail: String,
}

/// A configuration's figures: medians over its seeds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Figures {
    gap_ms: Option<f64>,
    p99_ms: Option<f64>,
    throughput_per_s: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Every configuration → its runs' results.json.
fn by_configuration(state: &SuiteState) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for case in state.cases.iter().filter(|c| c.expect == suite::Expect::Valid) {
        let results = case
            .run_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("results.json")).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        out.entry(case.config.clone()).or_default().extend(results);
    }
    out
}

fn figures(runs: &[Value]) -> Figures {
    let all = |f: fn(&Value) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    Figures {
        gap_ms: all(|r| r["failover"]["gap_ms_median"].as_f64()),
        p99_ms: all(|r| r["stats"]["total"]["latency"]["p99_ms"].as_f64()),
        throughput_per_s: all(|r| r["stats"]["throughput_per_s"].as_f64()),
    }
}

/// Compares one figure: `worse(candidate, baseline)` says whether the candidate regressed. A
/// figure the baseline has and the candidate lacks is missing evidence.
fn compare(name: String, base: Option<f64>, cand: Option<f64>, worse: impl Fn(f64, f64) -> bool) -> Option<Check> {
    let (outcome, detail) = match (base, cand) {
        (None, None) => return None,
        (Some(b), None) => (Verdict::Unknown, format!("baseline {b:.2}, candidate has no figure")),
        (None, Some(c)) => (Verdict::Valid, format!("candidate {c:.2}, baseline has no figure")),
        (Some(b), Some(c)) if worse(c, b) => (Verdict::Invalid, format!("candidate {c:.2} against baseline {b:.2}")),
        (Some(b), Some(c)) => (Verdict::Valid, format!("candidate {c:.2} against baseline {b:.2}")),
    };
    Some(Check { name, outcome, detail })
}

/// The candidate's verdicts against the suite's expectations.
fn verdict_checks(candidate: &SuiteState) -> Vec<Check> {
    candidate
        .cases
        .iter()
        .map(|c: &CaseState| Check { name: format!("verdict: {}", c.id), outcome: c.outcome(), detail: c.explain() })
        .collect()
}

/// The candidate's figures against the baseline's, per configuration expected valid.
fn figure_checks(baseline: &SuiteState, candidate: &SuiteState, t: &Thresholds) -> Vec<Check> {
    let base = by_configuration(baseline);
    let mut checks = Vec::new();
    for (config, runs) in by_configuration(candidate) {
        let (b, c) = (figures(base.get(&config).map_or(&[][..], Vec::as_slice)), figures(&runs));
        checks.extend(compare(format!("write gap: {config}"), b.gap_ms, c.gap_ms, |c, b| {
            c > b * t.max_gap_ratio + t.gap_slack_ms
        }));
        checks.extend(compare(format!("p99 latency: {config}"), b.p99_ms, c.p99_ms, |c, b| {
            c > b * t.max_p99_ratio + t.p99_slack_ms
        }));
        checks.extend(compare(format!("throughput: {config}"), b.throughput_per_s, c.throughput_per_s, |c, b| {
            c < b * t.min_throughput_ratio
        }));
    }
    checks
}

fn binary(flag: &str, path: &Path) -> anyhow::Result<String> {
    if !path.is_file() {
        return Err(BadInput(format!("{flag} {}: no such file", path.display())).into());
    }
    Ok(std::path::absolute(path)?.display().to_string())
}

/// Runs the suite against one build, into `dir/ROLE`.
fn run_build(args: &GateArgs, file: &SuiteFile, dir: &Path, role: &str, bin: String) -> anyhow::Result<SuiteState> {
    let name = format!("{}-{role}", suite::name(&args.suite, file));
    let mut state = suite::new_state(name, &args.suite, file, args.quick, &["--broker".into(), bin]);
    suite::run_all(&dir.join(role), &mut state, &args.store)?;
    Ok(state)
}

/// Runs the gate.
pub fn gate(args: GateArgs) -> anyhow::Result<Outcome> {
    let file = suite::read(&args.suite)?;
    let (base_bin, cand_bin) = (binary("--baseline", &args.baseline)?, binary("--candidate", &args.candidate)?);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let dir = args.store.join("gates").join(suite::name(&args.suite, &file)).join(stamp);
    let baseline = run_build(&args, &file, &dir, "baseline", base_bin)?;
    let candidate = run_build(&args, &file, &dir, "candidate", cand_bin)?;
    let mut checks = verdict_checks(&candidate);
    checks.extend(figure_checks(&baseline, &candidate, &file.gate));
    write(&dir, &checks, &file.gate)?;
    Ok(summarize(&dir, &checks))
}

fn write(dir: &Path, checks: &[Check], thresholds: &Thresholds) -> anyhow::Result<()> {
    let report = serde_json::json!({"thresholds": thresholds, "checks": checks});
    std::fs::write(dir.join("gate.json"), serde_json::to_string_pretty(&report)?).context("writing gate.json")?;
    let cases: Vec<Case> = checks
        .iter()
        .map(|c| Case { name: c.name.clone(), outcome: c.outcome, message: c.detail.clone(), time_s: 0.0 })
        .collect();
    std::fs::write(dir.join("junit.xml"), junit::suite("ordeal.gate", 0.0, &cases)).context("writing junit.xml")
}

/// Prints every check that did not pass and the verdict: exit 0 the candidate passes, 1 it
/// failed a check, 2 something could not be decided (which is not a pass either).
fn summarize(dir: &Path, checks: &[Check]) -> Outcome {
    for c in checks.iter().filter(|c| c.outcome != Verdict::Valid) {
        say!("{:<8} {}: {}", c.outcome.to_string().to_uppercase(), c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| c.outcome == Verdict::Invalid).count();
    let undecided = checks.iter().filter(|c| c.outcome == Verdict::Unknown).count();
    let verdict = match (failed, undecided) {
        (0, 0) => "PASS",
        (0, _) => "UNDECIDED (not a pass)",
        _ => "FAIL",
    };
    say!("gate: {verdict}: {} checks, {failed} failed, {undecided} undecided", checks.len());
    say!("  evidence: {} (each run's report.html is linked from the suites' suite.json)", dir.display());
    match (failed, undecided) {
        (0, 0) => Outcome::Valid,
        (0, _) => Outcome::Unknown,
        _ => Outcome::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_worse_figures_fail_and_equal_ones_pass() {
        let worse = |c: f64, b: f64| c > b * 1.5;
        assert!(compare("x".into(), None, None, worse).is_none());
        assert_eq!(compare("x".into(), Some(1.0), None, worse).unwrap().outcome, Verdict::Unknown);
        assert_eq!(compare("x".into(), Some(1.0), Some(1.4), worse).unwrap().outcome, Verdict::Valid);
        assert_eq!(compare("x".into(), Some(1.0), Some(1.6), worse).unwrap().outcome, Verdict::Invalid);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
