//! `ordeal cleanup`: remove what a hard-killed run left behind.
//!
//! It touches only what a run of this store created: node processes (of any system) whose run
//! directory lies in the store, lazyfs mounts under the store, and runs whose harness is gone
//! (marked by a stale `ordeal.pid`).

use crate::cli::CleanupArgs;
use crate::exit::Outcome;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordeal_faults::layout::RUN_ENV;
use ordeal_faults::lazyfs;
use ordeal_reports::store::{self, RunInfo};
use std::path::Path;

/// Kills the store's leftover node processes and closes abandoned runs.
pub fn cleanup(args: CleanupArgs) -> anyhow::Result<Outcome> {
    let Ok(root) = std::fs::canonicalize(&args.store) else {
        say!("nothing to clean: {} does not exist", args.store.display());
        return Ok(Outcome::Valid);
    };
    let killed = kill_nodes_under(&root);
    for (pid, cmd) in &killed {
        say!("killed node process {pid}: {cmd}");
    }
    // After the nodes: a mount their harness left is dead, and its directory unusable.
    for mount in lazyfs::leftovers(&root) {
        match lazyfs::unmount(&mount) {
            Ok(()) => say!("unmounted lazyfs at {}", mount.display()),
            Err(e) => say!("could not unmount lazyfs at {}: {e}", mount.display()),
        }
    }
    let mut closed = 0;
    for run in store::runs(&root) {
        let pid_file = run.join(store::PID);
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            if args.data {
                store::remove_data(&run);
            }
            continue;
        };
        let harness_alive = text.trim().parse::<i32>().is_ok_and(is_ordeal);
        if harness_alive {
            say!("skipping {}: its run is still in progress", run.display());
            continue;
        }
        store::remove_data(&run);
        if !run.join(store::RUN).exists() {
            let info = RunInfo {
                harness_error: Some("the harness was killed; closed by `ordeal cleanup`".into()),
                ..RunInfo::default()
            };
            std::fs::write(run.join(store::RUN), serde_json::to_string_pretty(&info)?)?;
        }
        if let Err(e) = super::report::write_all(&run) {
            say!("could not analyse {}: {e:#}", run.display());
        }
        std::fs::remove_file(&pid_file)?;
        say!("closed abandoned run {}", run.display());
        closed += 1;
    }
    say!("cleanup done: {} node process(es) killed, {closed} abandoned run(s) closed", killed.len());
    Ok(Outcome::Valid)
}

/// Whether `pid` is a live `ordeal` process (not a recycled pid of something else).
fn is_ordeal(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ordeal")
}

/// Kills every node process (of any system) whose run directory lies under `root`: the
/// harness gives each one `ORDEAL_RUN` in its environment. Returns (pid, command line).
fn kill_nodes_under(root: &Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(p.path().join("environ")) else { continue };
        let ours = environ.split(|b| *b == 0).any(|var| {
            String::from_utf8_lossy(var)
                .strip_prefix(RUN_ENV)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|run| std::fs::canonicalize(run).is_ok_and(|run| run.starts_with(root)))
        });
        if !ours {
            continue;
        }
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A paused node dies of SIGKILL too, but continuing it first lets its exit be reaped.
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            out.push((pid, cmd.join(" ").trim().to_owned()));
        }
    }
    out
}
