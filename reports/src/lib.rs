//! What a run leaves behind, and how people and CI read it.
//!
//! * [`store`]: the run store layout, `store/<test>/<timestamp>/` and `store/latest`;
//! * [`results`]: analysing a run directory (every checker, statistics, fault windows) into
//!   `results.json`, whose schema is a compatibility promise (`docs/results.md`);
//! * [`junit`], [`summary`]: `junit.xml` and `summary.md` for CI;
//! * [`exits`]: node processes that ended without the harness ending them;
//! * [`upgrade`]: the rolling-upgrade checks (the feature gate, the final cluster version,
//!   progress after every step, refused nodes);
//! * [`html`]: the self-contained `report.html`, the store's `index.html`, and `ordeal gate`'s
//!   `gate.html`;
//! * [`gate`]: `gate.json`, what the gate decided and on what evidence.
//!
//! **Architecture Invariant:** everything here reads a run directory only; nothing talks to a
//! cluster. `ordeal report DIR` regenerates every file from the directory alone.
#![warn(missing_docs)]

pub mod exits;
pub mod gate;
pub mod html;
pub mod junit;
mod plot;
pub mod results;
pub mod store;
pub mod summary;
pub mod upgrade;

use std::path::Path;

/// A figure to `decimals` places followed by `unit` (" ms", or ""), or `-` where there is none (no
/// sample to take it from): how every view (report, summary, terminal) shows a missing figure.
pub fn shown(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}{unit}"))
}

/// A run directory that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file is missing or unreadable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ReportError {
    pub(crate) fn file(path: &Path, e: impl std::fmt::Display) -> Self {
        ReportError::File { path: path.display().to_string(), message: e.to_string() }
    }
}

/// Analyses `dir` with its workload's `checkers` and `writes` (see [`results::analyze`]) and
/// writes `results.json`, `junit.xml`, `summary.md` and `report.html` into it, then refreshes the
/// store's index when `dir` lies in a store.
pub fn write_all(
    dir: &Path,
    checkers: Vec<Box<dyn ordeal_checker::Checker>>,
    writes: &[&str],
) -> Result<results::Results, ReportError> {
    let analysis = results::analyze(dir, checkers, writes)?;
    let results = &analysis.results;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| ReportError::file(&dir.join(name), e))
    };
    write(store::RESULTS, serde_json::to_string_pretty(results).map_err(|e| ReportError::file(dir, e))?)?;
    write(store::JUNIT, junit::render(results))?;
    write(store::SUMMARY, summary::render(results))?;
    write(store::REPORT, html::report(dir, &analysis)?)?;
    if let Some(root) = store::root_of(dir) {
        html::write_index(&root)?;
    }
    Ok(analysis.results)
}
