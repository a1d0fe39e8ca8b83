//! The run store: `store/<test>/<timestamp>/`, with `store/latest` pointing at the newest run
//! and `store/index.html` listing them all.
//!
//! A run directory holds:
//!
//! | file | written by | what |
//! |---|---|---|
//! | `test.json` | run, at start | the whole configuration ([`ordeal_history::Test`]) |
//! | `history.jsonl` | run, as it happens | every op, flushed per line |
//! | `status.jsonl` | run, every 250 ms | each node's raft status |
//! | `run.json` | run, at the end | how the run went ([`RunInfo`]) |
//! | `nodes/n<id>/<system>.log` | the nodes | each node's log (`broker.log`, `etcd.log`) |
//! | `results.json`, `junit.xml`, `summary.md`, `report.html` | run or `ordeal report` | the analysis |
//! | `ordeal.pid` | run, while it runs | the harness's pid, locked while it runs, for `ordeal cleanup` |

use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The configuration file.
pub const TEST: &str = "test.json";
/// The history.
pub const HISTORY: &str = "history.jsonl";
/// Node status samples.
pub const STATUS: &str = "status.jsonl";
/// Learner catch-up samples (`ordeal_history::membership::CatchUpSample`, one per line).
pub const CATCHUP: &str = "catchup.jsonl";
/// How the run went.
pub const RUN: &str = "run.json";
/// The analysis.
pub const RESULTS: &str = "results.json";
/// JUnit XML.
pub const JUNIT: &str = "junit.xml";
/// Markdown summary.
pub const SUMMARY: &str = "summary.md";
/// The HTML report.
pub const REPORT: &str = "report.html";
/// The store's index.
pub const INDEX: &str = "index.html";
/// Present while a run is in progress: the harness's pid.
pub const PID: &str = "ordeal.pid";
/// Marks a directory as a run store.
pub const STORE_MARKER: &str = ".ordeal-store";

/// How a run went, beyond its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The main phase was cut short (Ctrl-C).
    pub interrupted: bool,
    /// Why the cluster could not be healed, if it could not.
    pub heal_error: Option<String>,
    /// Whether every final read completed.
    pub final_reads_complete: bool,
    /// Faults the nemesis failed to start or stop.
    pub nemesis_errors: Vec<String>,
    /// History events recorded.
    pub events: u64,
    /// Wall time of the whole run, in seconds.
    pub elapsed_s: f64,
    /// A harness failure that ended the run early, if any.
    pub harness_error: Option<String>,
    /// When each phase ran, on the history's clock (runs before phases existed have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<ordeal_history::PhaseSpan>,
    /// Node processes that ended without the harness ending them; `None` when the run did not
    /// look (a system whose nodes are not its processes, a run before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_exits: Option<Vec<ordeal_history::NodeExit>>,
}

/// A run's `run.json`: absent when the run did not finish; present but unreadable is an error.
pub fn run_info(dir: &Path) -> Result<Option<RunInfo>, crate::ReportError> {
    let path = dir.join(RUN);
    if path.exists() { read_json(&path).map(Some) } else { Ok(None) }
}

/// Creates a fresh run directory `store/<test>/<timestamp>/` and points `store/latest` at it.
pub fn create_run_dir(store: &Path, test: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(store)?;
    std::fs::write(store.join(STORE_MARKER), "")?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let dir = store.join(test).join(&stamp);
    std::fs::create_dir_all(&dir)?;
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    std::os::unix::fs::symlink(Path::new(test).join(&stamp), &latest)?;
    Ok(dir)
}

/// The store a run directory lives in (two levels up, marked by [`STORE_MARKER`]).
pub fn root_of(run_dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(run_dir).ok()?;
    let root = dir.parent()?.parent()?;
    root.join(STORE_MARKER).exists().then(|| root.to_owned())
}

/// Every run directory of a store, newest first.
pub fn runs(store: &Path) -> Vec<PathBuf> {
    runs_where(store, |run| run.join(TEST).exists())
}

/// Every directory of a store where a run's directory would be (`NAME/STAMP`) that `is_run`
/// takes for one, newest first.
pub fn runs_where(store: &Path, is_run: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(tests) = std::fs::read_dir(store) else { return out };
    for test in tests.flatten() {
        let path = test.path();
        if !path.is_dir() || path.file_name().is_some_and(|n| n == "latest") {
            continue;
        }
        if let Ok(stamps) = std::fs::read_dir(&path) {
            out.extend(stamps.flatten().map(|e| e.path()).filter(|p| is_run(p)));
        }
    }
    out.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
    out
}

/// Removes the nodes' data directories of a run, the binaries sent to their hosts (`bin`), the
/// private keys (`nodes/tls/*.key`, the SSH lab's `ssh/*_key`) and SSH control sockets
/// (`ssh/mux-*`); the logs stay. Everything is tried; the first failure is returned (what was
/// not there is none).
pub fn remove_data(run_dir: &Path) -> std::io::Result<()> {
    let nodes = run_dir.join("nodes");
    let mut doomed: Vec<(PathBuf, bool)> = Vec::new();
    for node in std::fs::read_dir(&nodes).into_iter().flatten().flatten() {
        // `disk`: where a lazyfs mount kept the data of a run with crash faults.
        doomed.extend(["data", "disk", "bin"].map(|d| (node.path().join(d), true)));
    }
    let keys = std::fs::read_dir(nodes.join("tls")).into_iter().flatten().flatten().map(|e| e.path());
    doomed.extend(keys.filter(|p| p.extension().is_some_and(|x| x == "key")).map(|p| (p, false)));
    // And the SSH master connections' sockets, which a killed harness's left behind.
    let ssh = std::fs::read_dir(run_dir.join("ssh")).into_iter().flatten().flatten().map(|e| e.path());
    let named = |p: &PathBuf, f: fn(&str) -> bool| p.file_name().and_then(|n| n.to_str()).is_some_and(f);
    doomed.extend(ssh.filter(|p| named(p, |n| n.ends_with("_key") || n.starts_with("mux-"))).map(|p| (p, false)));
    let mut first = Ok(());
    for (path, dir) in doomed {
        let removed = if dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            && e.kind() != std::io::ErrorKind::NotFound
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// Reads and parses a JSON file of a run directory.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, crate::ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::ReportError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| crate::ReportError::file(path, e))
}
