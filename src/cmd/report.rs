//! `ordeal report`: regenerate a run's analysis and report from its directory alone.

use crate::cli::ReportArgs;
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_faults::FaultSpec;
use ordeal_history::Test;
use ordeal_reports::results::Results;
use ordeal_reports::store;
use ordeal_workloads::workload;
use std::path::Path;

/// Re-analyses a run directory; the exit code is its verdict.
pub fn report(args: ReportArgs) -> anyhow::Result<Outcome> {
    let dir = &args.run_dir;
    if !dir.join(store::TEST).is_file() {
        return Err(BadInput(format!("{} is not a run directory (it has no {})", dir.display(), store::TEST)).into());
    }
    let r = match write_all(dir) {
        Ok(r) => r,
        Err(e) => {
            set_aside(dir);
            return Err(BadInput(format!("{e:#}")).into());
        }
    };
    say!("{}: {}", r.verdict.to_string().to_uppercase(), r.reason);
    for d in &r.defects {
        say!("  {d}");
    }
    say!("  report: {}", dir.join(store::REPORT).display());
    Ok(outcome(&r))
}

/// Renames the report files an earlier analysis left (`NAME.stale`), after this one failed: they
/// would still give that analysis's verdict for a record that no longer bears it out, and a CI
/// job reading `junit.xml` would pass.
fn set_aside(dir: &Path) {
    for name in [store::RESULTS, store::JUNIT, store::SUMMARY, store::REPORT] {
        let (path, stale) = (dir.join(name), dir.join(format!("{name}.stale")));
        if !path.is_file() {
            continue;
        }
        match std::fs::rename(&path, &stale) {
            Ok(()) => eprintln!(
                "ordeal: {} set aside as {}: it no longer describes this run",
                path.display(),
                stale.display()
            ),
            Err(e) => eprintln!("ordeal: warning: {} still holds an earlier verdict ({e})", path.display()),
        }
    }
}

/// The exit code of a run's results: its verdict, except that a history that cannot be read is
/// bad input (254) whatever was checked before its first bad line.
pub fn outcome(r: &Results) -> Outcome {
    if r.unreadable() { Outcome::BadInput } else { r.verdict.into() }
}

/// Analyses a run directory with the checkers of its test's workload and writes every report
/// file into it (`ordeal_reports::write_all`, which knows no workloads).
pub fn write_all(dir: &Path) -> anyhow::Result<Results> {
    let path = dir.join(store::TEST);
    let test: Test = store::read_json(&path)?;
    let workload = workload::by_name(&test.workload).with_context(|| path.display().to_string())?;
    let mut checkers = workload.checkers(&test);
    // Membership faults leave their evidence in the nemesis ops, whatever the workload.
    let faults = crate::execute::fault_sets(&test).with_context(|| path.display().to_string())?;
    let membership: Vec<String> =
        faults.iter().filter(|s| s.any(FaultSpec::is_membership)).map(ToString::to_string).collect();
    if !membership.is_empty() {
        let samples = catch_up_samples(&dir.join(store::CATCHUP));
        checkers.push(Box::new(ordeal_checker::membership::MembershipChecker::for_run(membership, samples)));
    }
    // Upgrade faults are judged wherever they ran: the rolling-upgrade scenario names them in the
    // test's nemesis as `--nemesis` does.
    if faults.iter().any(|s| s.any(FaultSpec::is_upgrade)) {
        checkers.push(Box::new(ordeal_reports::upgrade::UpgradeCheck::new(dir, &test)));
    }
    if let Some(exits) = store::run_info(dir)?.and_then(|run| run.node_exits) {
        checkers.push(Box::new(ordeal_reports::exits::ExitCheck::new(exits)));
    }
    Ok(ordeal_reports::write_all(dir, checkers, workload.writes())?)
}

/// The lines of a run's `catchup.jsonl` (none when the run wrote none), or which line failed to
/// parse and why.
fn catch_up_samples(path: &Path) -> Result<Vec<ordeal_history::membership::CatchUpSample>, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}
