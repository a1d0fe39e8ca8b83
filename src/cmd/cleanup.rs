//! `ordeal cleanup`: remove what a hard-killed run left behind.
//!
//! It touches only what an abandoned run of this store created: node processes (of any system)
//! whose run directory is one of those runs, lazyfs mounts under them, and the runs themselves
//! (marked by an `ordeal.pid` whose lock no harness holds). A run whose harness still runs is
//! left alone, and so is a directory that is not a store. What it could not remove makes it
//! fail: it never exits 0 while residue stays.

use crate::cli::CleanupArgs;
use crate::exit::{BadInput, Outcome};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordeal_faults::layout::RUN_ENV;
use ordeal_faults::lazyfs;
use ordeal_reports::store::{self, RunInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a killed node may take to be gone from `/proc`.
const DEATH_BOUND: Duration = Duration::from_secs(5);

/// Kills the store's leftover node processes and closes abandoned runs.
pub fn cleanup(args: CleanupArgs) -> anyhow::Result<Outcome> {
    let Ok(root) = std::fs::canonicalize(&args.store) else {
        say!("nothing to clean: {} does not exist", args.store.display());
        return Ok(Outcome::Valid);
    };
    if !root.join(store::STORE_MARKER).exists() {
        let why = format!(
            "{}: not a store of ordeal runs (no {}), so nothing in it is ours",
            root.display(),
            store::STORE_MARKER
        );
        return Err(BadInput(why).into());
    }
    let (live, abandoned): (Vec<PathBuf>, Vec<PathBuf>) =
        run_dirs(&root).into_iter().partition(|r| crate::execute::harness_holds(r));
    for run in &live {
        say!("skipping {}: its run is still in progress", run.display());
    }
    let mut failures = Vec::new();
    let killed = kill_nodes_of(&root, &live, &mut failures);
    for (pid, cmd) in &killed {
        say!("killed node process {pid}: {cmd}");
    }
    // After the nodes: a mount their harness left is dead, and its directory unusable.
    let held = |m: &PathBuf| m.ancestors().take_while(|a| a.starts_with(&root)).any(crate::execute::harness_holds);
    for mount in lazyfs::leftovers(&root).into_iter().filter(|m| !live.iter().any(|l| m.starts_with(l)) && !held(m)) {
        match lazyfs::unmount(&mount) {
            Ok(()) => say!("unmounted lazyfs at {}", mount.display()),
            Err(e) => failures.push(format!("could not unmount lazyfs at {}: {e}", mount.display())),
        }
    }
    let mut closed = 0;
    for run in &abandoned {
        match close(run, args.data) {
            Ok(true) => closed += 1,
            Ok(false) => {}
            Err(e) => failures.push(format!("{}: {e:#}", run.display())),
        }
    }
    say!("cleanup done: {} node process(es) killed, {closed} abandoned run(s) closed", killed.len());
    if failures.is_empty() {
        return Ok(Outcome::Valid);
    }
    for f in &failures {
        say!("left behind: {f}");
    }
    Ok(Outcome::HarnessFailed)
}

/// Every run directory of the store: one with a `test.json`, or with an `ordeal.pid` (a harness
/// killed while it set the cluster up had not written its `test.json` yet).
fn run_dirs(root: &Path) -> Vec<PathBuf> {
    store::runs_where(root, |run| run.join(store::TEST).exists() || run.join(store::PID).exists())
}

/// Closes an abandoned run: removes its nodes' data and keys, records why it ended, analyses
/// it, and removes its `ordeal.pid` last, once its residue is gone. A run that was closed before
/// only loses its data, with `--data`. Returns whether it closed the run.
fn close(run: &Path, data: bool) -> anyhow::Result<bool> {
    let pid_file = run.join(store::PID);
    if !pid_file.exists() {
        if data {
            store::remove_data(run)?;
        }
        return Ok(false);
    }
    store::remove_data(run)?;
    remove_host_files(run)?;
    if !run.join(store::RUN).exists() {
        let info = RunInfo {
            harness_error: Some("the harness was killed; closed by `ordeal cleanup`".into()),
            ..RunInfo::default()
        };
        std::fs::write(run.join(store::RUN), serde_json::to_string_pretty(&info)?)?;
    }
    // An analysis that fails leaves no residue: the run is closed, its report missing.
    if let Err(e) = super::report::write_all(run) {
        say!("could not analyse {}: {e:#}", run.display());
    }
    std::fs::remove_file(&pid_file)?;
    say!("closed abandoned run {}", run.display());
    Ok(true)
}

/// Removes what an `--env ssh` run put on its hosts (its nodes died with their sessions, their
/// files did not); a host that does not answer fails the cleanup, and the run stays open for the
/// next try.
fn remove_host_files(run: &Path) -> anyhow::Result<()> {
    let Ok(test) = store::read_json::<ordeal_history::Test>(&run.join(store::TEST)) else { return Ok(()) };
    if test.env != "ssh" {
        return Ok(());
    }
    let stays = crate::execute::ssh_layout(&test, &run.join("nodes"))?.remove_host_files();
    anyhow::ensure!(stays.is_empty(), "{}", stays.join("; "));
    Ok(())
}

/// The run directory a process belongs to: the harness gives each node it starts `ORDEAL_RUN`
/// in its environment. `None` for any other process, or one whose environment cannot be read.
fn run_of(proc_dir: &Path) -> Option<PathBuf> {
    let environ = std::fs::read(proc_dir.join("environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|var| {
        let var = String::from_utf8_lossy(var);
        let run = var.strip_prefix(RUN_ENV)?.strip_prefix('=')?;
        std::fs::canonicalize(run).ok()
    })
}

/// Kills every node process (of any system) whose run directory lies under `root` and is not one
/// of the `live` runs, and waits until each is gone. Returns (pid, command line); a process that
/// would not die goes to `failures`.
fn kill_nodes_of(root: &Path, live: &[PathBuf], failures: &mut Vec<String>) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Some(run) = run_of(&p.path()) else { continue };
        // Asked again per process: a run that started after the live ones were listed holds its
        // lock before it starts any node.
        if !run.starts_with(root) || live.iter().any(|l| run.starts_with(l)) || crate::execute::harness_holds(&run) {
            continue;
        }
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A paused node dies of SIGKILL too, but continuing it first lets its exit be reaped.
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) if gone(&p.path()) => out.push((pid, cmd.join(" ").trim().to_owned())),
            Ok(()) => failures.push(format!("node process {pid} still runs {DEATH_BOUND:?} after SIGKILL")),
            Err(e) => failures.push(format!("could not kill node process {pid}: {e}")),
        }
    }
    out
}

/// Whether the process at `proc_dir` is gone (or a zombie awaiting its parent) within
/// [`DEATH_BOUND`].
fn gone(proc_dir: &Path) -> bool {
    let began = Instant::now();
    loop {
        let state = std::fs::read_to_string(proc_dir.join("stat")).ok();
        // The state follows the command name in parentheses: Z is dead, only not reaped.
        let dead = state
            .as_deref()
            .is_none_or(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')));
        if dead {
            return true;
        }
        if began.elapsed() >= DEATH_BOUND {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_of_a_run_that_started_after_the_live_runs_were_listed_is_spared() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let run = root.join("t").join("b");
        std::fs::create_dir_all(&run).unwrap();
        let _held = crate::execute::hold_pid(&run).unwrap();
        let mut node = std::process::Command::new("sleep").arg("30").env(RUN_ENV, &run).spawn().unwrap();
        let mut failures = Vec::new();
        let killed = kill_nodes_of(&root, &[], &mut failures);
        assert!(killed.is_empty() && failures.is_empty(), "{killed:?} {failures:?}");
        assert!(node.try_wait().unwrap().is_none(), "the live run's node still runs");
        node.kill().unwrap();
        node.wait().unwrap();
    }
}
