//! `ordeal report`: regenerate a run's analysis and report from its directory alone.

use crate::cli::ReportArgs;
use crate::exit::{BadInput, Outcome};
use ordeal_checker::Verdict;
use ordeal_reports::store;

/// Re-analyses a run directory; the exit code is its verdict.
pub fn report(args: ReportArgs) -> anyhow::Result<Outcome> {
    let dir = &args.run_dir;
    if !dir.join(store::TEST).is_file() {
        return Err(BadInput(format!("{} is not a run directory (it has no {})", dir.display(), store::TEST)).into());
    }
    let r = ordeal_reports::write_all(dir).map_err(|e| BadInput(e.to_string()))?;
    say!("{}: {}", r.verdict.to_string().to_uppercase(), r.reason);
    say!("  report: {}", dir.join(store::REPORT).display());
    Ok(match r.verdict {
        Verdict::Valid => Outcome::Valid,
        Verdict::Invalid => Outcome::Invalid,
        Verdict::Unknown => Outcome::Unknown,
    })
}
