//! `ordeal gate --baseline A --candidate B --suite FILE.toml`: is build B safe to ship after A?
//!
//! The suite runs against both builds (the same cases, the same seeds; a case that upgrades
//! moves the nodes from the baseline to the build it runs for, see [`build_flags`]). The
//! candidate fails the gate when any of its verdicts contradicts what the suite expects, or when,
//! for a configuration expected valid, its median write gap, faults writes never resumed after
//! (beyond one per seed), p99 latency of acknowledged ops or acknowledged throughput over the
//! seeds is worse than the baseline's beyond the suite's `[gate]` thresholds. The gate fails
//! closed: a run that did not complete, did not decide or left no figures is not a pass, on
//! either side, and neither is a gate without a single check. It writes `gate.json`, `gate.html` (both builds
//! side by side, every run linked) and `junit.xml`.

use super::suite::{self, CaseState, SuiteFile, SuiteState};
use crate::cli::{GateArgs, RunArgs};
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_checker::Verdict;
use ordeal_faults::{FaultSet, FaultSpec};
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

/// A run's results when its figures count: it decided (valid or invalid) and its record is whole.
/// A run that failed to start, was cut short or could not decide measured nothing: its zero ops
/// and empty quantiles would read as the fastest run there is.
fn measured(case: &CaseState) -> Option<Value> {
    let results = results(case)?;
    let decided = matches!(results["verdict"].as_str(), Some("valid" | "invalid"));
    let whole = results["defects"].as_array().is_some_and(Vec::is_empty);
    (decided && whole).then_some(results)
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

/// One build's runs of a configuration, with the spread of the figures of those that count.
fn side(dir: &Path, cases: &[&CaseState]) -> Side {
    let runs: Vec<Option<Value>> = cases.iter().map(|c| measured(c)).collect();
    let counted: Vec<&Value> = runs.iter().flatten().collect();
    let all = |f: fn(&Value) -> Option<f64>| Spread::of(counted.iter().filter_map(|r| f(r)).collect());
    let unrecovered = |r: &&Value| {
        let failover = &r["failover"];
        Some(failover["faults"].as_u64()?.saturating_sub(failover["recovered"].as_u64()?) as usize)
    };
    Side {
        runs: cases
            .iter()
            .zip(&runs)
            .map(|(c, r)| RunRef {
                seed: c.seed,
                verdict: c.verdict,
                report: report_link(dir, c),
                figures: r.is_some(),
            })
            .collect(),
        gap_ms: all(|r| r["failover"]["gap_ms_median"].as_f64()),
        p99_ms: all(|r| r["stats"]["total"]["latency"]["p99_ms"].as_f64()),
        throughput_per_s: all(|r| r["stats"]["throughput_per_s"].as_f64()),
        p99_all_ms: all(|r| r["stats"]["total"]["latency_all"]["p99_ms"].as_f64()),
        ok_per_s: all(|r| r["stats"]["ok_per_s"].as_f64()),
        unrecovered_faults: if counted.is_empty() { None } else { counted.iter().map(unrecovered).sum() },
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
/// figure one side lacks is missing evidence, whichever side it is: without the baseline's there
/// is nothing to compare with.
fn compare(name: String, base: Option<f64>, cand: Option<f64>, worse: impl Fn(f64, f64) -> bool) -> Option<Check> {
    let show = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") };
    let (outcome, detail) = match (base, cand) {
        (None, None) => return None,
        (Some(b), None) => (Verdict::Unknown, format!("baseline {}, candidate has no figure", show(b))),
        (None, Some(c)) => (Verdict::Unknown, format!("candidate {}, baseline has no figure", show(c))),
        (Some(b), Some(c)) if worse(c, b) => {
            (Verdict::Invalid, format!("candidate {} against baseline {}", show(c), show(b)))
        }
        (Some(b), Some(c)) => (Verdict::Valid, format!("candidate {} against baseline {}", show(c), show(b))),
    };
    Some(Check { name, outcome, detail, evidence: vec![] })
}

/// Undecided when a run of either build left no figures: the medians are then over fewer runs
/// than the suite asked for, and the missing one may be the regression.
fn missing_figures(config: &str, baseline: &Side, candidate: &Side) -> Option<Check> {
    let missing: Vec<String> = [("baseline", baseline), ("candidate", candidate)]
        .into_iter()
        .flat_map(|(build, side)| {
            side.runs.iter().filter(|r| !r.figures).map(move |r| format!("{build} seed {}", r.seed))
        })
        .collect();
    (!missing.is_empty()).then(|| Check {
        name: format!("figures: {config}"),
        outcome: Verdict::Unknown,
        detail: format!(
            "no figures from {}: a run that failed, could not decide or is not whole measured nothing",
            missing.join(", ")
        ),
        evidence: vec![],
    })
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
    let count = |n: Option<usize>| n.map(|n| n as f64);
    let mut checks = Vec::new();
    for p in pairs.iter().filter(|p| p.expect == "valid") {
        let (b, c, config) = (&p.baseline, &p.candidate, &p.config);
        checks.extend(missing_figures(config, b, c));
        checks.extend(compare(format!("write gap: {config}"), median(b.gap_ms), median(c.gap_ms), |c, b| {
            c > b * t.max_gap_ratio + t.gap_slack_ms
        }));
        // The median gap is over the faults writes resumed after; one they never resumed after
        // is no gap to take a median of, so the counts are compared on their own.
        // Only the order of faults is seeded, not their timing: a fault that starts just before
        // the run's end may leave no time for a write on one build and not on the other, so
        // each seed's run may have one more such fault than the baseline's.
        let (bu, cu) = (count(b.unrecovered_faults), count(c.unrecovered_faults));
        let slack = p.baseline.runs.len().max(p.candidate.runs.len()) as f64;
        checks.extend(compare(format!("faults without writes after: {config}"), bu, cu, |c, b| c > b + slack));
        checks.extend(compare(format!("p99 latency: {config}"), median(b.p99_ms), median(c.p99_ms), |c, b| {
            c > b * t.max_p99_ratio + t.p99_slack_ms
        }));
        // The p99 of every op is shown, not compared: with timeouts near 1 % of the ops it jumps
        // between the acknowledged ops' few ms and the timeout, so it would flap between runs.
        // Timeouts and refusals lower the acknowledged throughput, which is compared.
        // Acknowledged ops only: under a rate limit every op completes somehow, so the rate of
        // completions stays at --rate however many the candidate refuses or times out.
        let (bt, ct) = (median(b.ok_per_s), median(c.ok_per_s));
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

/// The builds one side of the gate runs its cases on.
struct Builds<'a> {
    /// The build an upgrade starts from: the baseline, on both sides.
    baseline: &'a str,
    /// The build every other case runs.
    build: &'a str,
    /// The build an upgrade moves to: the candidate, or on the baseline's side the baseline
    /// under a second path.
    upgrade_to: &'a str,
}

/// The flags that choose a case's builds. A case that upgrades (`--scenario rolling-upgrade`, or
/// an upgrade fault) gets `--from BASELINE --to BUILD`: on the baseline's side the baseline is
/// rolled onto itself under a second path (the reference: the same restarts, no new build), on
/// the candidate's the baseline is rolled onto the candidate, the upgrade being shipped. Any
/// other case gets `--broker BUILD`. A case that names a build itself is refused: the gate would
/// otherwise run it on that build, not on the one it gates.
fn build_flags(case: &CaseState, store: &Path, builds: &Builds) -> anyhow::Result<Vec<String>> {
    let args = suite::run_args(case, store)?;
    let named = [
        ("--broker", args.broker.is_some()),
        ("--from", args.from.is_some()),
        ("--to", args.to.is_some()),
        ("--test", args.test.is_some()),
    ];
    let named = named.into_iter().find(|(_, set)| *set);
    if let Some((flag, _)) = named {
        return Err(BadInput(format!(
            "case {:?} sets {flag}: the gate chooses every case's builds (--broker, or --from and --to for an \
             upgrade); remove {flag} from the suite",
            case.id
        ))
        .into());
    }
    let flags = if upgrades(&args) {
        vec!["--from", builds.baseline, "--to", builds.upgrade_to]
    } else {
        vec!["--broker", builds.build]
    };
    Ok(flags.into_iter().map(String::from).collect())
}

/// Whether a case moves nodes from one build to another.
fn upgrades(args: &RunArgs) -> bool {
    let fault = |name: &str| FaultSet::parse(name).is_ok_and(|s| s.any(FaultSpec::is_upgrade));
    args.scenario.as_deref() == Some("rolling-upgrade") || super::run::fault_sets_named(args).any(fault)
}

/// The suite's cases for one build (`role`), each with the flags that choose its builds.
fn cases_for(args: &GateArgs, file: &SuiteFile, role: &str, builds: &Builds) -> anyhow::Result<SuiteState> {
    let name = format!("{}-{role}", suite::name(&args.suite, file));
    let mut state = suite::new_state(name, &args.suite, file, args.quick);
    for case in &mut state.cases {
        let flags = build_flags(case, &args.store, builds)?;
        case.args.extend(flags);
    }
    Ok(state)
}

/// Runs the gate.
pub fn gate(args: GateArgs) -> anyhow::Result<Outcome> {
    let file = suite::read(&args.suite)?;
    let (base_bin, cand_bin) = (binary("--baseline", &args.baseline)?, binary("--candidate", &args.candidate)?);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let name = suite::name(&args.suite, &file);
    let dir = args.store.join("gates").join(&name).join(stamp);
    // The upgrade nemesis moves a node when it does not run the target's path yet: the
    // baseline rolled onto itself needs its own build under a second path, or nothing moves.
    let again = dir.join("builds").join("baseline-again");
    // Both builds' cases are settled before anything runs, so a bad case costs no run.
    let again_bin = again.display().to_string();
    let base_builds = Builds { baseline: &base_bin, build: &base_bin, upgrade_to: &again_bin };
    let mut baseline = cases_for(&args, &file, "baseline", &base_builds)?;
    let cand_builds = Builds { baseline: &base_bin, build: &cand_bin, upgrade_to: &cand_bin };
    let mut candidate = cases_for(&args, &file, "candidate", &cand_builds)?;
    second_path(&args.baseline, &again)?;
    suite::run_all(&dir.join("baseline"), &mut baseline, &args.store)?;
    suite::run_all(&dir.join("candidate"), &mut candidate, &args.store)?;
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

/// Makes `to` a second path to the build at `from`: a hard link, or a copy across file systems.
fn second_path(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Valid when every check passed, invalid when one failed, else unknown; no check at all is
/// nothing vouched for, so unknown too.
fn verdict(checks: &[Check]) -> Verdict {
    let worst = |v| checks.iter().any(|c| c.outcome == v);
    if worst(Verdict::Invalid) {
        Verdict::Invalid
    } else if worst(Verdict::Unknown) || checks.is_empty() {
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
    report.verdict.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_worse_figures_fail_and_equal_ones_pass() {
        let worse = |c: f64, b: f64| c > b * 1.5;
        assert!(compare("x".into(), None, None, worse).is_none());
        assert_eq!(compare("x".into(), Some(1.0), None, worse).unwrap().outcome, Verdict::Unknown);
        let no_baseline = compare("x".into(), None, Some(1.0), worse).unwrap();
        assert_eq!(no_baseline.outcome, Verdict::Unknown, "nothing to compare with is no pass: {no_baseline:?}");
        assert_eq!(compare("x".into(), Some(1.0), Some(1.4), worse).unwrap().outcome, Verdict::Valid);
        assert_eq!(compare("x".into(), Some(1.0), Some(1.6), worse).unwrap().outcome, Verdict::Invalid);
    }

    #[test]
    fn no_check_is_no_pass() {
        assert_eq!(verdict(&[]), Verdict::Unknown);
    }

    /// A run of one seed with figures: the gap median, unrecovered faults, p99 of the ok ops and
    /// of every op, and acknowledged and completed ops per second.
    fn figures(gap: f64, unrecovered: usize, p99: f64, p99_all: f64, ok: f64, all: f64) -> Side {
        let one = |v: f64| Spread::of(vec![v]);
        Side {
            runs: vec![RunRef { seed: 1, verdict: Some(Verdict::Valid), report: None, figures: true }],
            gap_ms: one(gap),
            p99_ms: one(p99),
            throughput_per_s: one(all),
            p99_all_ms: one(p99_all),
            ok_per_s: one(ok),
            unrecovered_faults: Some(unrecovered),
        }
    }

    /// The outcome of every figure check of one configuration, by the check's name up to `:`.
    fn outcomes(baseline: Side, candidate: Side) -> Vec<(String, Verdict)> {
        let pair = ConfigPair { config: "c".into(), expect: "valid".into(), baseline, candidate };
        let checks = figure_checks(&[pair], &Thresholds::default());
        checks.into_iter().map(|c| (c.name.trim_end_matches(": c").to_owned(), c.outcome)).collect()
    }

    fn outcome(of: &[(String, Verdict)], name: &str) -> Verdict {
        of.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} check in {of:?}")).1
    }

    #[test]
    fn a_candidate_that_refuses_or_times_out_what_the_baseline_acknowledged_fails() {
        let base = || figures(500.0, 0, 2.0, 3.0, 500.0, 500.0);
        let same = outcomes(base(), base());
        assert!(same.iter().all(|(_, v)| *v == Verdict::Valid), "{same:?}");
        // Completed ops pinned to --rate on both sides; the candidate acknowledged half.
        let refusing = outcomes(base(), figures(500.0, 0, 2.0, 3.0, 250.0, 500.0));
        assert_eq!(outcome(&refusing, "throughput"), Verdict::Invalid, "{refusing:?}");
        // Its acknowledged ops as fast as ever, but a third of its ops time out after 1 s.
        let timing_out = outcomes(base(), figures(500.0, 0, 2.0, 1000.0, 330.0, 500.0));
        assert_eq!(outcome(&timing_out, "p99 latency"), Verdict::Valid);
        assert_eq!(outcome(&timing_out, "throughput"), Verdict::Invalid, "{timing_out:?}");
        assert!(!timing_out.iter().any(|(n, _)| n.contains("every op")), "shown, not compared: it flaps");
    }

    #[test]
    fn a_fault_writes_never_resumed_after_fails_the_gap_comparison() {
        let of = outcomes(figures(500.0, 0, 2.0, 3.0, 500.0, 500.0), figures(500.0, 2, 2.0, 3.0, 500.0, 500.0));
        assert_eq!(outcome(&of, "write gap"), Verdict::Valid, "the median of the gaps there were");
        assert_eq!(outcome(&of, "faults without writes after"), Verdict::Invalid, "{of:?}");
        let at_the_end = outcomes(figures(500.0, 0, 2.0, 3.0, 500.0, 500.0), figures(500.0, 1, 2.0, 3.0, 500.0, 500.0));
        assert_eq!(outcome(&at_the_end, "faults without writes after"), Verdict::Valid, "one per seed's run");
        let both = outcomes(figures(500.0, 1, 2.0, 3.0, 500.0, 500.0), figures(500.0, 1, 2.0, 3.0, 500.0, 500.0));
        assert_eq!(outcome(&both, "faults without writes after"), Verdict::Valid, "the same schedule ends both");
    }

    #[test]
    fn a_run_without_figures_leaves_the_comparison_undecided() {
        let mut baseline = figures(500.0, 0, 2.0, 3.0, 500.0, 500.0);
        baseline.runs.push(RunRef { seed: 2, verdict: Some(Verdict::Unknown), report: None, figures: false });
        let of = outcomes(baseline, figures(500.0, 0, 2.0, 3.0, 500.0, 500.0));
        assert_eq!(outcome(&of, "figures"), Verdict::Unknown, "{of:?}");
        let empty =
            Side { runs: vec![RunRef { seed: 1, verdict: None, report: None, figures: false }], ..Side::default() };
        let of = outcomes(empty, figures(500.0, 0, 2.0, 3.0, 500.0, 500.0));
        assert!(of.iter().all(|(_, v)| *v == Verdict::Unknown), "{of:?}");
    }

    /// A case of the suite with `args`.
    fn case(args: &[&str]) -> CaseState {
        serde_json::from_value(serde_json::json!({
            "id": "e seed 1", "args": args, "expect": "valid", "verdict": null, "reason": null, "run_dir": null,
            "elapsed_s": 0.0,
        }))
        .unwrap()
    }

    #[test]
    fn an_upgrade_runs_from_the_baseline_and_a_case_that_names_a_build_is_refused() {
        let flags = |args: &[&str], build| {
            let upgrade_to = if build == "/A" { "/A-again" } else { build };
            build_flags(&case(args), Path::new("s"), &Builds { baseline: "/A", build, upgrade_to })
        };
        assert_eq!(flags(&["--nemesis", "kill-leader"], "/B").unwrap(), ["--broker", "/B"]);
        assert_eq!(flags(&["--nemesis", "kill-leader"], "/A").unwrap(), ["--broker", "/A"]);
        let upgrade = ["--scenario", "rolling-upgrade", "--nemesis", "kill-leader"];
        assert_eq!(flags(&upgrade, "/B").unwrap(), ["--from", "/A", "--to", "/B"]);
        assert_eq!(flags(&upgrade, "/A").unwrap(), ["--from", "/A", "--to", "/A-again"], "the baseline's reference");
        assert_eq!(flags(&["--nemesis", "pause-follower,upgrade-kill"], "/B").unwrap(), ["--from", "/A", "--to", "/B"]);
        for flag in ["--to", "--from", "--broker", "--test"] {
            let err = flags(&["--scenario", "rolling-upgrade", flag, "/X"], "/B").unwrap_err();
            assert_eq!(Outcome::from_error(&err), Outcome::BadInput, "{err:#}");
            assert!(err.to_string().contains(&format!("sets {flag}: the gate chooses")), "{err:#}");
        }
    }

    #[test]
    fn links_climb_to_the_common_directory() {
        assert_eq!(link(Path::new("/s/gates/g/t"), Path::new("/s/run/1/report.html")), "../../../run/1/report.html");
        assert_eq!(link(Path::new("/s/gates/g/t"), Path::new("/s/gates/g/t/x")), "x");
        assert_eq!(resolve(Path::new("/s/gates/g/t"), "../../../run/1"), Path::new("/s/run/1"));
    }
}
