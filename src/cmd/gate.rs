//! `ordeal gate --baseline A --candidate B --suite FILE.toml`: is build B safe to ship after A?
//!
//! The suite runs against both builds (the same cases, the same seeds). The candidate fails the
//! gate when any of its verdicts contradicts what the suite expects, or when, for a
//! configuration expected valid, its median write gap, p99 latency or throughput over the seeds
//! is worse than the baseline's beyond the suite's `[gate]` thresholds. The gate fails closed: a
//! run that did not complete, did not decide or left no figures is not a pass. It writes
//! `gate.json`, `gate.html` (both builds side by side, every run linked) and `junit.xml`.

use super::suite::{self, CaseState, SuiteFile, SuiteState};
use crate::cli::GateArgs;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_checker::Verdict;
use ordeal_reports::gate::{Check, ConfigPair, GateReport, RunRef, Side, Spread};
use ordeal_reports::junit::{self, Case};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

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

/// The cases of each configuration, in the suite's order.
fn configurations(state: &SuiteState) -> Vec<(&str, Vec<&CaseState>)> {
    let mut out: Vec<(&str, Vec<&CaseState>)> = Vec::new();
    for case in &state.cases {
        match out.iter_mut().find(|(config, _)| *config == case.config) {
            Some((_, cases)) => cases.push(case),
            None => out.push((&case.config, vec![case])),
        }
    }
    out
}

fn results(case: &CaseState) -> Option<Value> {
    let text = std::fs::read_to_string(case.run_dir.as_ref()?.join("results.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// `link` followed from `dir`, without the `..` steps.
fn resolve(dir: &Path, link: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(link).components() {
        match c {
            Component::ParentDir => _ = out.pop(),
            c => out.push(c),
        }
    }
    out
}

/// `to` as a link from the directory `from` (both made absolute first).
fn link(from: &Path, to: &Path) -> String {
    let (Ok(from), Ok(to)) = (std::path::absolute(from), std::path::absolute(to)) else {
        return to.display().to_string();
    };
    let (from, to): (Vec<Component>, Vec<Component>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    rel.extend(std::iter::repeat_n(Component::ParentDir, from.len() - common));
    rel.extend(&to[common..]);
    rel.display().to_string()
}

fn report_link(dir: &Path, case: &CaseState) -> Option<String> {
    case.run_dir.as_ref().map(|run| link(dir, &run.join("report.html")))
}

/// One build's runs of a configuration, with their figures' spread.
fn side(dir: &Path, cases: &[&CaseState]) -> Side {
    let runs: Vec<Value> = cases.iter().filter_map(|c| results(c)).collect();
    let all = |f: fn(&Value) -> Option<f64>| Spread::of(runs.iter().filter_map(f).collect());
    Side {
        runs: cases.iter().map(|c| RunRef { seed: c.seed, verdict: c.verdict, report: report_link(dir, c) }).collect(),
        gap_ms: all(|r| r["failover"]["gap_ms_median"].as_f64()),
        p99_ms: all(|r| r["stats"]["total"]["latency"]["p99_ms"].as_f64()),
        throughput_per_s: all(|r| r["stats"]["throughput_per_s"].as_f64()),
    }
}

/// Every configuration of the candidate beside the baseline's.
fn pairs(dir: &Path, baseline: &SuiteState, candidate: &SuiteState) -> Vec<ConfigPair> {
    let base = configurations(baseline);
    configurations(candidate)
        .into_iter()
        .map(|(config, cases)| {
            let b = base.iter().find(|(c, _)| *c == config).map_or(&[][..], |(_, cases)| cases.as_slice());
            ConfigPair {
                config: config.to_owned(),
                expect: format!("{:?}", cases[0].expect).to_lowercase(),
                baseline: side(dir, b),
                candidate: side(dir, &cases),
            }
        })
        .collect()
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
    Some(Check { name, outcome, detail, evidence: vec![] })
}

/// What a run's checkers found: every invalid checker's summary (the log checker's names the
/// lost records).
fn findings(case: &CaseState) -> String {
    let Some(results) = results(case) else { return String::new() };
    let checkers = results["checkers"].as_array().map_or(&[][..], Vec::as_slice);
    checkers
        .iter()
        .filter(|c| c["verdict"] == "invalid")
        .map(|c| format!("{}: {}", c["name"].as_str().unwrap_or("?"), c["summary"].as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The candidate's verdicts against the suite's expectations; a contradicted one carries what its
/// run found and links its report.
fn verdict_checks(dir: &Path, candidate: &SuiteState) -> Vec<Check> {
    candidate
        .cases
        .iter()
        .map(|c| {
            let passed = c.outcome() == Verdict::Valid;
            let found = if passed { String::new() } else { findings(c) };
            let detail = match c.verdict {
                Some(v) if !found.is_empty() => format!("expected {:?}, got {v}: {found}", c.expect),
                _ => c.explain(),
            };
            Check {
                name: format!("verdict: {}", c.id),
                outcome: c.outcome(),
                detail,
                evidence: if passed { vec![] } else { report_link(dir, c).into_iter().collect() },
            }
        })
        .collect()
}

/// The candidate's figures against the baseline's medians, per configuration expected valid.
fn figure_checks(pairs: &[ConfigPair], t: &Thresholds) -> Vec<Check> {
    let median = |s: Option<Spread>| s.map(|s| s.median);
    let mut checks = Vec::new();
    for p in pairs.iter().filter(|p| p.expect == "valid") {
        let (b, c, config) = (&p.baseline, &p.candidate, &p.config);
        checks.extend(compare(format!("write gap: {config}"), median(b.gap_ms), median(c.gap_ms), |c, b| {
            c > b * t.max_gap_ratio + t.gap_slack_ms
        }));
        checks.extend(compare(format!("p99 latency: {config}"), median(b.p99_ms), median(c.p99_ms), |c, b| {
            c > b * t.max_p99_ratio + t.p99_slack_ms
        }));
        let (bt, ct) = (median(b.throughput_per_s), median(c.throughput_per_s));
        checks.extend(compare(format!("throughput: {config}"), bt, ct, |c, b| c < b * t.min_throughput_ratio));
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
    let name = suite::name(&args.suite, &file);
    let dir = args.store.join("gates").join(&name).join(stamp);
    let baseline = run_build(&args, &file, &dir, "baseline", base_bin)?;
    let candidate = run_build(&args, &file, &dir, "candidate", cand_bin)?;
    let configs = pairs(&dir, &baseline, &candidate);
    let mut checks = verdict_checks(&dir, &candidate);
    checks.extend(figure_checks(&configs, &file.gate));
    let report = GateReport {
        verdict: verdict(&checks),
        suite: name,
        thresholds: serde_json::to_value(&file.gate)?,
        checks,
        configs,
    };
    write(&dir, &report)?;
    Ok(summarize(&dir, &report))
}

/// Valid when every check passed, invalid when one failed, else unknown.
fn verdict(checks: &[Check]) -> Verdict {
    let worst = |v| checks.iter().any(|c| c.outcome == v);
    if worst(Verdict::Invalid) {
        Verdict::Invalid
    } else if worst(Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Valid
    }
}

fn write(dir: &Path, report: &GateReport) -> anyhow::Result<()> {
    std::fs::write(dir.join("gate.json"), serde_json::to_string_pretty(report)?).context("writing gate.json")?;
    std::fs::write(dir.join("gate.html"), ordeal_reports::html::gate(report)).context("writing gate.html")?;
    let cases: Vec<Case> = report
        .checks
        .iter()
        .map(|c| {
            let evidence = c.evidence.iter().map(|e| format!("; evidence: {}", resolve(dir, e).display()));
            Case {
                name: c.name.clone(),
                outcome: c.outcome,
                message: format!("{}{}", c.detail, evidence.collect::<String>()),
                time_s: 0.0,
            }
        })
        .collect();
    std::fs::write(dir.join("junit.xml"), junit::suite("ordeal.gate", 0.0, &cases)).context("writing junit.xml")
}

/// Prints every check that did not pass, with its evidence, and the verdict: exit 0 the candidate
/// passes, 1 it failed a check, 2 something could not be decided (which is not a pass either).
fn summarize(dir: &Path, report: &GateReport) -> Outcome {
    let checks = &report.checks;
    for c in checks.iter().filter(|c| c.outcome != Verdict::Valid) {
        say!("{:<8} {}: {}", c.outcome.to_string().to_uppercase(), c.name, c.detail);
        for e in &c.evidence {
            say!("         evidence: {}", resolve(dir, e).display());
        }
    }
    let failed = checks.iter().filter(|c| c.outcome == Verdict::Invalid).count();
    let undecided = checks.iter().filter(|c| c.outcome == Verdict::Unknown).count();
    let word = match report.verdict {
        Verdict::Valid => "PASS",
        Verdict::Unknown => "UNDECIDED (not a pass)",
        Verdict::Invalid => "FAIL",
    };
    say!("gate: {word}: {} checks, {failed} failed, {undecided} undecided", checks.len());
    say!("  side by side: {}", dir.join("gate.html").display());
    match report.verdict {
        Verdict::Valid => Outcome::Valid,
        Verdict::Unknown => Outcome::Unknown,
        Verdict::Invalid => Outcome::Invalid,
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
    }

    #[test]
    fn links_climb_to_the_common_directory() {
        assert_eq!(link(Path::new("/s/gates/g/t"), Path::new("/s/run/1/report.html")), "../../../run/1/report.html");
        assert_eq!(link(Path::new("/s/gates/g/t"), Path::new("/s/gates/g/t/x")), "x");
        assert_eq!(resolve(Path::new("/s/gates/g/t"), "../../../run/1"), Path::new("/s/run/1"));
    }
}
