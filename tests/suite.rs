//! `ordeal suite`: the shipped detection suite passes in its quick form, and a suite whose
//! expectation is wrong fails with the evidence in its JUnit file.

mod common;

use common::{json, jsonl, nemesis_ops, ordeal};
use std::path::{Path, PathBuf};

fn suite_dir(store: &Path) -> PathBuf {
    find_suite_dir(store).unwrap_or_else(|| panic!("no suite run under {}", store.display()))
}

/// The one suite run in `store`, if it wrote one (a suite that failed early may not have).
fn find_suite_dir(store: &Path) -> Option<PathBuf> {
    let first = |dir: &Path| Some(std::fs::read_dir(dir).ok()?.flatten().next()?.path());
    first(&first(&store.join("suites"))?)
}

/// Writes `text` as a suite of one case into `dir`, runs it (it must pass) into `dir/store`, and
/// returns the store and the case's run directory.
fn run_one_case(dir: &Path, text: &str) -> (PathBuf, PathBuf) {
    let file = dir.join("suite.toml");
    std::fs::write(&file, text).unwrap();
    let store = dir.join("store");
    let (code, out, err) = ordeal(&["suite", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let state = json(&suite_dir(&store).join("suite.json"));
    let run = PathBuf::from(state["cases"][0]["run_dir"].as_str().unwrap());
    (store, run)
}

#[test]
fn the_detection_suite_catches_every_seeded_bug_and_passes_the_clean_build() {
    // Its partition entries cut the network: they need namespaces (CI runs as root).
    if let Some(why) = ordeal_faults::net::unavailable() {
        println!("SKIPPED: network namespaces are not available here: {why}");
        return;
    }
    // Its crash entries keep the nodes' data on lazyfs (FUSE, root).
    if let Some(why) = ordeal_faults::lazyfs::unavailable() {
        println!("SKIPPED: lazyfs cannot mount here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/detection.toml");
    let (code, out, err) =
        ordeal(&["suite", suite.to_str().unwrap(), "--quick", "--store", dir.path().to_str().unwrap()]);
    if code != 0 {
        print_contradicted(dir.path());
    }
    assert_eq!(code, 0, "{out}\n{err}");
    let state = json(&suite_dir(dir.path()).join("suite.json"));
    let cases = state["cases"].as_array().unwrap();
    for bug in ["stale-reads", "no-dedupe", "ack-before-commit", "offset-before-commit", "local-offsets", "fsync-lie"] {
        let caught = cases.iter().any(|c| c["config"].as_str().unwrap().ends_with(&format!("bug={bug}")));
        assert!(caught, "every seeded bug has its configuration: {bug} in {state}");
    }
    assert!(cases.iter().all(|c| c["verdict"] == c["expect"]), "{state}");
    assert!(cases.iter().all(|c| Path::new(c["run_dir"].as_str().unwrap()).join("report.html").exists()));
}

/// Prints what the checkers said of every run whose verdict contradicts its expectation: the
/// store goes with the temp dir, and a rare contradiction is worth its evidence.
fn print_contradicted(store: &Path) {
    let Some(run) = find_suite_dir(store) else { return };
    let Ok(text) = std::fs::read_to_string(run.join("suite.json")) else { return };
    let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    for case in state["cases"].as_array().into_iter().flatten().filter(|c| c["verdict"] != c["expect"]) {
        let run = Path::new(case["run_dir"].as_str().unwrap_or_default()).to_path_buf();
        for file in ["summary.md", "results.json"] {
            let text = std::fs::read_to_string(run.join(file)).unwrap_or_default();
            eprintln!("== {} {file}:\n{}", case["config"], text.chars().take(20_000).collect::<String>());
        }
    }
}

#[test]
fn a_contradicted_expectation_fails_the_suite_and_resume_skips_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        r#"args = ["--env", "local", "--time-limit", "3", "--nemesis", "none"]
[[entry]]
name = "clean but expected broken"
expect = "invalid"
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = ordeal(&["suite", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    let run = suite_dir(&store);
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.contains("expected Invalid, got valid"), "{junit}");
    // Resuming a finished suite runs nothing again and keeps its verdict.
    let (code, out, err) = ordeal(&[
        "suite",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--resume",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("0 of 1 runs to go"), "{err}");
}

#[test]
fn ctrl_c_between_two_runs_stops_the_suite_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.toml");
    std::fs::write(
        &file,
        r#"args = ["--env", "local", "--time-limit", "3", "--nemesis", "none"]
[[entry]]
name = "clean"
seeds = [1, 2]
expect = "valid"
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let suite = std::process::Command::new(env!("CARGO_BIN_EXE_ordeal"))
        .args(["suite", file.to_str().unwrap(), "--store", store.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first run has ended (its run.json is written before it is analysed): the signal comes
    // while no run listens for it.
    let began = std::time::Instant::now();
    while !store.join("latest/run.json").exists() {
        assert!(began.elapsed() < std::time::Duration::from_secs(120), "the first run never ended");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::process::Command::new("kill").args(["-INT", &suite.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = suite.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("interrupted: resume with"), "{err}");
    let state = json(&suite_dir(&store).join("suite.json"));
    assert!(state["cases"][1]["verdict"].is_null(), "the second run did not run: {state}");
    // A signal that lands as the next run is being created stops that run at once: it may exist,
    // but only the first ran to its end.
    let completed = std::fs::read_dir(store.join("register-none"))
        .unwrap()
        .map(|run| run.unwrap().path().join("run.json"))
        .filter(|info| info.exists())
        .map(|info| json(&info))
        .filter(|info| info["interrupted"] == false && info["harness_error"].is_null())
        .count();
    assert_eq!(completed, 1, "runs that ran to their end");
}

#[test]
fn bad_suite_files_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (text, expected) in [
        ("[[entry]]\nname = \"x\"\n", "missing field `expect`"),
        ("[[entry]]\nname = \"x\"\nexpect = \"maybe\"\n", "unknown variant"),
        ("name = \"empty\"\n", "no [[entry]]"),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\nseeds = []\n",
            "entry \"x\": seeds = []: the entry would run no case",
        ),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\nmatrix = { nemesis = [\"kill\"], bug = [] }\n",
            "entry \"x\": matrix bug = []: the entry would run no case",
        ),
        ("[[entry]]\nname = \"x\"\nexpect = \"valid\"\nargs = [\"--nodes\", \"many\"]\n", "--nodes"),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\n[[entry.phase]]\nkind = \"main\"\nduration_s = 0\n",
            "entry \"x\": phases[0] (main).duration_s: 0 is not a positive number of seconds",
        ),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\n[[entry.phase]]\nkind = \"heal\"\nduration_s = 1\nrate = 0\n",
            "entry \"x\": phases[0] (heal).rate: 0 ops/s is not positive",
        ),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\n[[entry.phase]]\nkind = \"main\"\nduration_s = 1\nmix = { append = 1 }\n",
            "entry \"x\": phases[0] (main).mix: unknown op kind \"append\": this workload's are read, write, cas",
        ),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\n[[entry.phase]]\nkind = \"final-reads\"\nduration_s = 1\nmix = { write = 1 }\n",
            "entry \"x\": phases[0] (final-reads).mix: write is not a read",
        ),
        (
            "[[entry]]\nname = \"x\"\nexpect = \"valid\"\n[[entry.phase]]\nkind = \"later\"\nduration_s = 1\n",
            "unknown variant `later`",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = ordeal(&["suite", file.to_str().unwrap(), "--store", dir.path().to_str().unwrap()]);
        assert_eq!(code, 254, "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
}

/// A suite entry with phases: writes only under faults, then a heal with the load going on, then
/// reads only at a lower rate. The history shows each phase's mix and rate.
#[test]
fn an_entry_with_phases_runs_each_with_its_own_mix_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = run_one_case(
        dir.path(),
        r#"args = ["--env", "local", "--workload", "register", "--nemesis", "pause-follower",
  "--nemesis-interval", "0.5", "--fault-duration", "1", "--rate", "200", "--time-limit", "30"]
[[entry]]
name = "phased"
expect = "valid"
[[entry.phase]]
kind = "main"
duration_s = 2.5
mix = { write = 1 }
[[entry.phase]]
kind = "heal"
duration_s = 1
rate = 100
[[entry.phase]]
kind = "final-reads"
duration_s = 1.5
rate = 40
"#,
    );
    let test = json(&run.join("test.json"));
    assert_eq!(test["phases"].as_array().unwrap().len(), 3, "{test}");
    assert_eq!(test["time_limit_s"], 5.0, "the phases' total replaces --time-limit");

    // The phases' spans, and every client op invoked in each, straight from the history.
    let spans = json(&run.join("run.json"))["phases"].as_array().unwrap().clone();
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["main", "heal", "final-reads"]);
    let history = jsonl(&run.join("history.jsonl"));
    let invoked_in = |span: &serde_json::Value| -> Vec<String> {
        let (start, end) = (span["start"].as_u64().unwrap(), span["end"].as_u64().unwrap());
        history
            .iter()
            .filter(|op| op["type"] == "invoke" && op["process"].is_u64())
            .filter(|op| (start..end).contains(&op["time"].as_u64().unwrap()))
            .map(|op| op["f"].as_str().unwrap().to_owned())
            .collect()
    };
    let (main, heal, reads) = (invoked_in(&spans[0]), invoked_in(&spans[1]), invoked_in(&spans[2]));
    assert!(!main.is_empty() && main.iter().all(|f| f == "write"), "main writes only: {main:?}");
    assert!(!reads.is_empty() && reads.iter().all(|f| f == "read"), "final reads only read: {reads:?}");
    assert!(!heal.is_empty(), "the load goes on while healing");
    // The heal phase begins by healing every fault.
    let heal_start = spans[1]["start"].as_u64().unwrap();
    assert!(history.iter().any(|op| op["process"] == "nemesis"
        && op["f"] == "stop"
        && op["value"]["fault"] == "all"
        && op["time"].as_u64().unwrap() >= heal_start));

    // results.json sums each phase up; the rate limiter holds each phase to its own rate.
    let results = json(&run.join("results.json"));
    let phases = results["phases"].as_array().unwrap();
    for (p, asked) in phases.iter().zip([200.0, 100.0, 40.0]) {
        assert_eq!(p["rate"], asked, "{p}");
        let seconds = p["end_s"].as_f64().unwrap() - p["start_s"].as_f64().unwrap();
        let invoked: u64 = p["invoked"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        // At most one op per slot of the rate, plus the slot at the phase's start.
        assert!(invoked as f64 <= asked * seconds + 1.0, "{p}");
    }
    assert_eq!(phases[2]["invoked"].as_object().unwrap().keys().collect::<Vec<_>>(), ["read"]);
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("<h2>Phases</h2>") && report.contains("final-reads"), "the report shows the phases");

    // The phases are part of the test value: a test.json whose final reads would write is refused.
    let mut test = test;
    test["phases"][2]["mix"] = serde_json::json!({"write": 1.0});
    let path = dir.path().join("test.json");
    std::fs::write(&path, test.to_string()).unwrap();
    let (code, _, err) = ordeal(&["run", "--test", path.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("phases[2] (final-reads).mix: write is not a read"), "{err}");
}

/// Fault rounds end a main phase once its faults ran, its length only bounding it, and the phase
/// after it starts then and lasts its own length.
#[test]
fn fault_rounds_end_a_main_phase_and_the_phases_after_it_move_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = run_one_case(
        dir.path(),
        r#"args = ["--env", "local", "--workload", "register", "--nemesis", "pause-follower", "--nemesis-order", "cycle",
  "--fault-rounds", "2", "--nemesis-interval", "0.5", "--fault-duration", "1", "--rate", "200"]
[[entry]]
name = "rounds then reads"
expect = "valid"
[[entry.phase]]
kind = "main"
duration_s = 120
[[entry.phase]]
kind = "final-reads"
duration_s = 1
"#,
    );
    let info = json(&run.join("run.json"));
    assert_eq!(info["nemesis_errors"].as_array().unwrap().len(), 0, "the bound was not reached: {info}");
    let spans = info["phases"].as_array().unwrap();
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["main", "final-reads"]);
    let at = |span: &serde_json::Value, edge: &str| span[edge].as_u64().unwrap();
    // Two pauses, both healed inside the main phase, which ended with the second.
    let history = jsonl(&run.join("history.jsonl"));
    let nemesis = |f: &str| -> Vec<u64> {
        nemesis_ops(&history, f)
            .into_iter()
            .filter(|op| op["value"]["fault"] == "pause-follower")
            .map(|op| op["time"].as_u64().unwrap())
            .collect()
    };
    let (started, stopped) = (nemesis("start"), nemesis("stop"));
    assert_eq!((started.len(), stopped.len()), (2, 2), "{started:?} {stopped:?}");
    assert!(stopped.iter().all(|t| *t <= at(&spans[0], "end")), "healed in the main phase");
    // The reads-only phase lasted its own second from then, not up to the main phase's bound.
    let reads = at(&spans[1], "end") - at(&spans[1], "start");
    assert!((1_000_000_000..60_000_000_000).contains(&reads), "the final-reads phase lasted {reads} ns");
    assert_eq!(at(&spans[0], "end"), at(&spans[1], "start"));
}
