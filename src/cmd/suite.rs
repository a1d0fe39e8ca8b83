//! `ordeal suite FILE.toml`: a matrix of tests, each with the verdict it expects, run one after
//! another into the store; one `suite.json`, one `junit.xml` and one exit code for the whole.
//!
//! A suite entry is a list of `ordeal run` flags, a matrix of flags whose values multiply, the
//! seeds, and the expected verdict, so a suite can say anything `ordeal run` can, and is checked
//! the same way. The state is written after every run, so `--resume DIR` picks up where an
//! interrupted suite stopped.

use crate::cli::{Cli, Command, RunArgs, SuiteArgs};
use crate::execute;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use clap::Parser as _;
use ordeal_checker::Verdict;
use ordeal_history::Phase;
use ordeal_reports::junit::{self, Case};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SuiteFile {
    /// The suite's name (default: the file's stem).
    name: Option<String>,
    /// `ordeal run` flags every entry starts from.
    #[serde(default)]
    args: Vec<String>,
    #[serde(rename = "entry", default)]
    entries: Vec<Entry>,
    /// What `ordeal gate` tolerates between the baseline and the candidate.
    #[serde(default)]
    pub(super) gate: super::gate::Thresholds,
}

/// One entry: flags, a matrix over them, seeds, and what must come out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    args: Vec<String>,
    /// Flag (without `--`) → values; every combination is a case.
    #[serde(default)]
    matrix: BTreeMap<String, Vec<String>>,
    #[serde(default = "one_seed")]
    seeds: Vec<u64>,
    expect: Expect,
    /// The phases every case of the entry runs (default: one main phase of `--time-limit`).
    #[serde(default, rename = "phase")]
    phases: Vec<Phase>,
}

fn one_seed() -> Vec<u64> {
    vec![1]
}

/// The verdict an entry expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Expect {
    Valid,
    Invalid,
}

/// One run of the suite, as recorded in `suite.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CaseState {
    /// `ENTRY [FLAG=VALUE ...] seed N`.
    pub(super) id: String,
    /// `ENTRY [FLAG=VALUE ...]`: the configuration, shared by the case's seeds.
    #[serde(default)]
    pub(super) config: String,
    /// The `ordeal run` flags of the case.
    pub(super) args: Vec<String>,
    pub(super) expect: Expect,
    /// `valid`, `invalid` or `unknown`, once run.
    pub(super) verdict: Option<Verdict>,
    pub(super) reason: Option<String>,
    pub(super) run_dir: Option<PathBuf>,
    elapsed_s: f64,
    /// The seed, so that runs of one configuration can be grouped.
    #[serde(default)]
    pub(super) seed: u64,
    /// The entry's phases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    phases: Vec<Phase>,
}

impl CaseState {
    /// As a test outcome: as expected (valid), contradicted (invalid), or undecided (unknown:
    /// the run could not decide, or did not run).
    pub(super) fn outcome(&self) -> Verdict {
        match (self.passed(), self.verdict) {
            (true, _) => Verdict::Valid,
            (false, Some(Verdict::Unknown) | None) => Verdict::Unknown,
            (false, _) => Verdict::Invalid,
        }
    }

    /// What was expected, what came, and why.
    pub(super) fn explain(&self) -> String {
        format!(
            "expected {:?}, got {}: {}",
            self.expect,
            self.verdict.map_or("nothing".into(), |v| v.to_string()),
            self.reason.as_deref().unwrap_or("not run")
        )
    }

    pub(super) fn passed(&self) -> bool {
        matches!(
            (self.expect, self.verdict),
            (Expect::Valid, Some(Verdict::Valid)) | (Expect::Invalid, Some(Verdict::Invalid))
        )
    }
}

/// `suite.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SuiteState {
    pub(super) name: String,
    file: PathBuf,
    quick: bool,
    pub(super) cases: Vec<CaseState>,
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

pub(super) fn read(path: &Path) -> anyhow::Result<SuiteFile> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let file: SuiteFile = toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if file.entries.is_empty() {
        return Err(bad(format!("{}: no [[entry]]", path.display())));
    }
    for entry in &file.entries {
        entry.check_not_empty().map_err(|e| bad(format!("{}: entry {:?}: {e}", path.display(), entry.name)))?;
    }
    Ok(file)
}

impl Entry {
    /// An entry multiplies its matrix's lists and its seeds: one empty list and it runs no case,
    /// which would pass whatever it was meant to show.
    fn check_not_empty(&self) -> Result<(), String> {
        if self.seeds.is_empty() {
            return Err("seeds = []: the entry would run no case".into());
        }
        match self.matrix.iter().find(|(_, values)| values.is_empty()) {
            Some((flag, _)) => Err(format!("matrix {flag} = []: the entry would run no case")),
            None => Ok(()),
        }
    }
}

/// Every case of the suite, in order: entries, then matrix combinations, then seeds.
fn expand(file: &SuiteFile, quick: bool) -> Vec<CaseState> {
    let mut cases = Vec::new();
    for entry in &file.entries {
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (flag, values) in &entry.matrix {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((flag.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        let seeds = if quick { &entry.seeds[..entry.seeds.len().min(1)] } else { &entry.seeds[..] };
        for combo in &combos {
            for seed in seeds {
                let mut args = file.args.clone();
                args.extend(entry.args.iter().cloned());
                args.extend(combo.iter().flat_map(|(f, v)| [format!("--{f}"), v.clone()]));
                args.extend(["--seed".into(), seed.to_string()]);
                let shown: Vec<String> = combo.iter().map(|(f, v)| format!("{f}={v}")).collect();
                let config = format!("{}{}{}", entry.name, if shown.is_empty() { "" } else { " " }, shown.join(" "));
                cases.push(CaseState {
                    id: format!("{config} seed {seed}"),
                    config,
                    args,
                    expect: entry.expect,
                    verdict: None,
                    reason: None,
                    run_dir: None,
                    elapsed_s: 0.0,
                    seed: *seed,
                    phases: entry.phases.clone(),
                });
            }
        }
    }
    cases
}

/// The flags of one case, parsed as `ordeal run` would parse them.
pub(super) fn run_args(case: &CaseState, store: &Path) -> anyhow::Result<RunArgs> {
    let mut argv: Vec<String> = vec!["ordeal".into(), "run".into()];
    argv.extend(case.args.iter().cloned());
    argv.extend(["--store".into(), store.display().to_string(), "--no-progress".into()]);
    let cli = Cli::try_parse_from(&argv).map_err(|e| bad(format!("case {:?}: {e}", case.id)))?;
    let Command::Run(args) = cli.command else { return Err(bad("not a run")) };
    Ok(*args)
}

/// Runs one case; a run that failed to start or complete has verdict unknown, with why. Returns
/// false when the run was interrupted (Ctrl-C): the case stays without a verdict, to be run
/// again by `--resume`.
fn run_case(case: &mut CaseState, store: &Path) -> bool {
    let started = Instant::now();
    let outcome = run_args(case, store)
        .and_then(|args| super::run::prepare(&args, &case.phases))
        .and_then(|(test, opts)| execute::run_test(test, &opts))
        .and_then(|dir| Ok((super::report::write_all(&dir).context("analysing the run")?, dir)));
    match outcome {
        Ok((results, dir)) if results.run.as_ref().is_some_and(|r| r.interrupted) => {
            case.reason = Some(format!("interrupted; see {}", dir.display()));
            return false;
        }
        Ok((results, dir)) => {
            case.verdict = Some(results.verdict);
            case.reason = Some(results.reason);
            case.run_dir = Some(dir);
        }
        Err(e) => {
            case.verdict = Some(Verdict::Unknown);
            case.reason = Some(format!("{e:#}"));
        }
    }
    case.elapsed_s = started.elapsed().as_secs_f64();
    true
}

fn save(dir: &Path, state: &SuiteState) -> anyhow::Result<()> {
    std::fs::write(dir.join("suite.json"), serde_json::to_string_pretty(state)?).context("writing suite.json")?;
    let cases: Vec<Case> = state
        .cases
        .iter()
        .map(|c| Case { name: c.id.clone(), outcome: c.outcome(), message: c.explain(), time_s: c.elapsed_s })
        .collect();
    let total: f64 = state.cases.iter().map(|c| c.elapsed_s).sum();
    std::fs::write(dir.join("junit.xml"), junit::suite(&format!("ordeal.suite.{}", state.name), total, &cases))
        .context("writing junit.xml")
}

/// A new suite directory, or the state of the one to resume.
fn start(args: &SuiteArgs, file: &SuiteFile) -> anyhow::Result<(PathBuf, SuiteState)> {
    let name = name(&args.file, file);
    if let Some(dir) = &args.resume {
        let text = std::fs::read_to_string(dir.join("suite.json"))
            .map_err(|e| bad(format!("--resume {}: {e}", dir.display())))?;
        let state: SuiteState =
            serde_json::from_str(&text).map_err(|e| bad(format!("--resume {}: {e}", dir.display())))?;
        return Ok((dir.clone(), state));
    }
    let dir = args.store.join("suites").join(&name).join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string());
    Ok((dir, new_state(name, &args.file, file, args.quick)))
}

/// A suite's state before any run.
pub(super) fn new_state(name: String, path: &Path, file: &SuiteFile, quick: bool) -> SuiteState {
    SuiteState { name, file: path.to_path_buf(), quick, cases: expand(file, quick) }
}

/// The suite's name: the file's, or its stem.
pub(super) fn name(path: &Path, file: &SuiteFile) -> String {
    file.name
        .clone()
        .unwrap_or_else(|| path.file_stem().map_or_else(|| "suite".into(), |s| s.to_string_lossy().into_owned()))
}

/// Runs the suite: every case without a verdict, saving the state after each.
pub fn suite(args: SuiteArgs) -> anyhow::Result<Outcome> {
    let file = read(&args.file)?;
    let (dir, mut state) = start(&args, &file)?;
    run_all(&dir, &mut state, &args.store)?;
    Ok(summarize(&dir, &state))
}

/// Checks every case's flags, then runs every case without a verdict into `store`, saving the
/// state in `dir` after each. An interrupted run stops the suite with how to resume it.
pub(super) fn run_all(dir: &Path, state: &mut SuiteState, store: &Path) -> anyhow::Result<()> {
    for case in &state.cases {
        // Every case's flags and phases are checked before anything runs.
        let args = run_args(case, store)?;
        super::run::check_phases(&args.workload, &case.phases, args.scenario.is_some())
            .map_err(|e| bad(format!("entry {:?}: {e}", case.config)))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    save(dir, state)?;
    let todo = state.cases.iter().filter(|c| c.verdict.is_none()).count();
    eprintln!("ordeal suite {}: {todo} of {} runs to go, in {}", state.name, state.cases.len(), dir.display());
    for i in 0..state.cases.len() {
        if state.cases[i].verdict.is_some() {
            continue;
        }
        // A run interrupted, or a signal between runs (while the last was analysed).
        if execute::interrupted() || !run_case(&mut state.cases[i], store) {
            save(dir, state)?;
            anyhow::bail!(
                "interrupted: resume with `ordeal suite {} --resume {}`",
                state.file.display(),
                dir.display()
            );
        }
        let c = &state.cases[i];
        let mark = if c.passed() { "pass" } else { "FAIL" };
        say!("{mark}  {:<60} expected {:?}, got {}", c.id, c.expect, c.verdict.map_or("-".into(), |v| v.to_string()));
        save(dir, state)?;
    }
    Ok(())
}

/// Prints the outcome; exit 0 when every verdict matched, 1 when one contradicts what was
/// expected, 2 when the only misses are runs that could not decide, or when there was no run at
/// all (a `suite.json` without cases, resumed): nothing ran, so nothing passed.
fn summarize(dir: &Path, state: &SuiteState) -> Outcome {
    let passed = state.cases.iter().filter(|c| c.passed()).count();
    let undecided =
        state.cases.iter().filter(|c| !c.passed() && matches!(c.verdict, Some(Verdict::Unknown) | None)).count();
    let wrong = state.cases.len() - passed - undecided;
    say!(
        "suite {}: {passed} of {} runs as expected, {wrong} contradicted, {undecided} undecided",
        state.name,
        state.cases.len()
    );
    say!("  index: {}", dir.join("suite.json").display());
    match (wrong, undecided) {
        _ if state.cases.is_empty() => Outcome::Unknown,
        (0, 0) => Outcome::Valid,
        (0, _) => Outcome::Unknown,
        _ => Outcome::Invalid,
    }
}
