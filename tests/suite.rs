//! `ordeal suite`: the shipped detection suite passes in its quick form, and a suite whose
//! expectation is wrong fails with the evidence in its JUnit file.

mod common;

use common::{json, ordeal};
use std::path::Path;

fn suite_dir(store: &Path) -> std::path::PathBuf {
    let root = store.join("suites");
    let name = std::fs::read_dir(&root).unwrap().flatten().next().unwrap().path();
    std::fs::read_dir(name).unwrap().flatten().next().unwrap().path()
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
fn bad_suite_files_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (text, expected) in [
        ("[[entry]]\nname = \"x\"\n", "missing field `expect`"),
        ("[[entry]]\nname = \"x\"\nexpect = \"maybe\"\n", "unknown variant"),
        ("name = \"empty\"\n", "no [[entry]]"),
        ("[[entry]]\nname = \"x\"\nexpect = \"valid\"\nargs = [\"--nodes\", \"many\"]\n", "--nodes"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = ordeal(&["suite", file.to_str().unwrap(), "--store", dir.path().to_str().unwrap()]);
        assert_eq!(code, 254, "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
}
