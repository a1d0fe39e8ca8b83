//! The HTML report in a real browser (headless Chromium, installed by `scripts/setup.sh`), and
//! the store served over HTTP, for a real run with leader kills.

mod common;

use common::{load, ordeal, run_args};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let code = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body)
}

#[test]
fn report_of_a_run_with_leader_kills_renders_in_chromium_and_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let (code, out, err) =
        ordeal(&run_args(store_arg, "2", &["--workload", "register", "--nemesis", "kill-leader", "--seed", "4"]));
    assert_eq!(code, 0, "{out}\n{err}");

    let report = std::fs::canonicalize(store.join("latest/report.html")).unwrap();
    let (dom, log) = load(&format!("file://{}", report.display()), &dir.path().join("profile"));
    assert!(dom.contains("data-ready=\"yes\""), "the report's script ran to its end");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(dom.contains("<header class=\"banner valid\" id=\"verdict\"><h1>VALID</h1>"), "the verdict banner shows");
    for plot in ["latency", "quantiles", "throughput", "gaps", "raft-0"] {
        let at = dom
            .find(&format!("<figure class=\"plot\" id=\"{plot}\">"))
            .unwrap_or_else(|| panic!("plot {plot} is missing"));
        let end = at + dom[at..].find("</figure>").unwrap();
        let figure = &dom[at..end];
        let marks = ["<circle", "<polyline", "<rect", "<path"].iter().map(|m| figure.matches(m).count()).sum::<usize>();
        assert!(figure.contains("<svg") && marks > 8, "plot {plot} is empty ({marks} marks)");
        if plot == "latency" {
            assert!(figure.matches("<circle").count() > 100, "every op is a point");
        }
    }
    assert!(dom.matches("class=\"box ok\"").count() > 100, "the history timeline rendered its ops");
    assert!(dom.contains("kill-leader"), "fault bands are labelled");

    // The store over HTTP.
    let (_serve, addr) = serve_store(store_arg);
    let (code, index) = http_get(&addr, "/");
    assert_eq!(code, 200);
    assert!(index.contains("register-kill-leader") && index.contains("report.html"), "{index}");
    let (code, page) = http_get(&addr, "/latest/report.html");
    assert_eq!(code, 200);
    assert!(page.contains("id=\"verdict\""));
    assert_eq!(http_get(&addr, "/latest/results.json").0, 200);
    assert_eq!(http_get(&addr, "/latest/../../etc/passwd").0, 400);
    assert_eq!(http_get(&addr, "/nothing-here").0, 404);
}

/// An `ordeal serve` process, killed when the test ends, passed or failed.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ordeal serve --store STORE` started; its address, from the line it prints.
fn serve_store(store: &str) -> (Served, String) {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ordeal"))
        .args(["serve", "--store", store, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 200];
    let n = serve.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let addr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    (Served(serve), addr)
}

/// Two analysed runs of one store, a valid one and one with an impossible read, side by side
/// in `ordeal serve`: both verdicts, the settings that differ marked, both checkers' findings,
/// both reports' plots; and in Chromium.
#[test]
fn serve_compares_two_runs_side_by_side() {
    let store = tempfile::tempdir().unwrap();
    let text = |lines: &[String]| (lines.join("\n") + "\n").into_bytes();
    for (name, read, seed) in [("good", 1, 1), ("bad", 7, 2)] {
        let run = run_dir(&text(&register_history(read)), Some(finished(4)));
        let mut test = common::json(&run.path().join("test.json"));
        test["seed"] = seed.into();
        std::fs::write(run.path().join("test.json"), test.to_string()).unwrap();
        let code = ordeal(&["report", run.path().to_str().unwrap()]).0;
        assert_eq!(code, if read == 1 { 0 } else { 1 });
        let to = store.path().join("register-none").join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(run.keep(), &to).unwrap();
    }
    let (_serve, addr) = serve_store(store.path().to_str().unwrap());
    let url = "/compare?a=register-none/good&b=register-none/bad";
    let (code, page) = http_get(&addr, url);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<h1>A valid — B invalid</h1>"), "{page}");
    assert!(page.contains("<th>seed</th><td class=\"differs\">1</td><td class=\"differs\">2</td>"), "{page}");
    assert!(page.contains("<th>workload</th><td class=\"\">register</td>"), "equal settings are not marked");
    let b_checker = page.split("id=\"checkers\"").nth(1).unwrap_or("");
    assert!(b_checker.contains("<span class=\"tag invalid\">invalid</span>"), "B's finding: {page}");
    assert!(page.contains("src=\"/register-none/good/report.html#plots\""), "A's plots");
    assert!(page.contains("src=\"/register-none/bad/report.html#plots\""), "B's plots");
    assert_eq!(http_get(&addr, "/compare?a=register-none/good&b=../../etc").0, 400);
    assert_eq!(http_get(&addr, "/compare?a=register-none/good&b=register-none").0, 404, "not a run");
    assert_eq!(http_get(&addr, "/compare?a=register-none/good").0, 400, "b is missing");
    let profile = store.path().join("profile");
    let (dom, log) = load(&format!("http://{addr}{url}"), &profile);
    assert!(dom.contains("data-ready=\"yes\"") && dom.contains("A valid"), "{dom}");
    assert!(!log.contains("Uncaught"), "{log}");
}

/// A rolling upgrade from the emulated predecessor to this build, one node rolled back on the
/// way, leader kills between the steps: valid, the gate flipped only after the last step, and
/// the upgrade timeline renders in Chromium.
#[test]
fn a_rolling_upgrade_with_a_rollback_is_valid_and_its_timeline_renders() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = common::rolling_upgrade(&store, &["--rollback"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let results = common::json(&store.join("latest/results.json"));
    let upgrade = common::checker(&results, "upgrade");
    let d = &upgrade["details"];
    assert_eq!(upgrade["verdict"], "valid", "{upgrade}");
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.iter().filter(|s| s["rollback"] == true).count(), 1, "one rollback: {steps:?}");
    assert_eq!(steps.len(), 5, "three upgrades, one rollback, the rolled-back node again: {steps:?}");
    assert!(d["gate"]["at_s"].as_f64().unwrap() >= d["every_node_new_from_s"].as_f64().unwrap(), "{d}");
    // Without --from the old release is this build emulating its predecessor; the harness does
    // not link the broker, so its release (system/src/version.rs) is named here.
    let release = 3;
    assert_eq!(d["final"]["cluster_version"], release);

    let report = std::fs::canonicalize(store.join("latest/report.html")).unwrap();
    let (dom, _) = load(&format!("file://{}", report.display()), &dir.path().join("profile"));
    let at = dom.find("<figure class=\"plot\" id=\"upgrade\">").expect("the upgrade timeline is drawn");
    let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
    assert!(figure.matches("<rect").count() > 20, "lanes are drawn");
    let (old, new) = (format!("release {}", release - 1), format!("release {release}"));
    assert!(figure.contains(&old) && figure.contains(&new) && figure.contains(&format!("cluster version {release}")));
    let next = &dom[at + figure.len()..];
    assert!(next.find("id=\"throughput\"") < next.find("id=\"quantiles\""), "throughput right beneath");

    // The same faults named with --nemesis instead of the scenario are judged the same way.
    let test_json = store.join("latest/test.json");
    let mut test = common::json(&test_json);
    test["scenario"] = serde_json::Value::Null;
    std::fs::write(&test_json, test.to_string()).unwrap();
    let (code, out, _) = ordeal(&["report", store.join("latest").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(common::checker(&common::json(&store.join("latest/results.json")), "upgrade")["verdict"], "valid");
}

/// A register history of `ops` lines: a write of 1, then a read of `read`.
fn register_history(read: u64) -> Vec<String> {
    let op = |index: u64, kind: &str, f: &str, value: serde_json::Value| {
        serde_json::json!({"index": index, "time": index * 1000, "process": 0, "type": kind, "f": f, "value": value})
            .to_string()
    };
    let kv = |v: Option<u64>| serde_json::json!({"key": "k0", "value": v});
    vec![
        op(0, "invoke", "write", kv(Some(1))),
        op(1, "ok", "write", kv(Some(1))),
        op(2, "invoke", "read", kv(None)),
        op(3, "ok", "read", kv(Some(read))),
    ]
}

/// A run directory as `ordeal run` leaves it, with `history` verbatim and `run` as its
/// `run.json` (none when `None`).
fn run_dir(history: &[u8], run: Option<serde_json::Value>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let test = serde_json::json!({
        "name": "register-none", "workload": "register", "nemesis": [], "env": "local", "nodes": 3,
        "groups": 1, "concurrency": 1, "rate": 10.0, "time_limit_s": 1.0, "seed": 1, "op_timeout_ms": 100,
        "nemesis_interval_s": 1.0, "fault_duration_s": 1.0, "keys": 1, "tick_ms": 10, "heartbeat_ticks": 2,
        "election_ticks": 10, "bugs": [], "broker_binary": "broker", "broker_version": "0", "ordeal_version": "0",
        "command": "", "started_at": "",
    });
    std::fs::write(dir.path().join("test.json"), test.to_string()).unwrap();
    std::fs::write(dir.path().join("history.jsonl"), history).unwrap();
    if let Some(run) = run {
        std::fs::write(dir.path().join("run.json"), run.to_string()).unwrap();
    }
    dir
}

/// How a complete run of `events` ops ended, as `run.json` says.
fn finished(events: usize) -> serde_json::Value {
    serde_json::json!({"interrupted": false, "heal_error": null, "final_reads_complete": true,
        "nemesis_errors": [], "events": events, "elapsed_s": 1.0, "harness_error": null})
}

/// `ordeal report` of a run directory: the exit code, the defects it says, and the JUnit run case.
fn check(history: &[u8], run: Option<serde_json::Value>, code: i32, defect: &str, why: &str) {
    let dir = run_dir(history, run);
    let (got, out, err) = ordeal(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(got, code, "{why}: {out}{err}");
    let results = common::json(&dir.path().join("results.json"));
    let kinds: Vec<&str> = results["defects"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&defect), "{why}: defects {kinds:?} lack {defect}");
    assert_ne!(results["verdict"], "valid", "{why}");
    let reason = results["reason"].as_str().unwrap();
    let checkers = results["checkers"].as_array().unwrap();
    let by_checker = checkers.iter().any(|c| reason.starts_with(&format!("{}:", c["name"].as_str().unwrap())));
    assert!(!by_checker, "{why}: the record's defect comes first, not a checker's: {reason}");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    // The run's case at least; a checker that had nothing to check is an error case too.
    assert!(!junit.contains(r#"failures="0" errors="0""#), "{why}: {junit}");
    assert!(junit.contains("<error message=\""), "{why}: the run case says why: {junit}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("the record is incomplete"), "{why}: the report shows it");
}

#[test]
fn issue_17_report_fails_closed_on_a_broken_record() {
    let good = register_history(1);
    let text = |lines: &[String]| (lines.join("\n") + "\n").into_bytes();
    // The baseline: the same history, whole, is valid.
    let dir = run_dir(&text(&good), Some(finished(4)));
    let (code, out, _) = ordeal(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    let mut garbage = good[..2].to_vec();
    garbage.push("{\"this is\": not an op".into());
    garbage.extend(register_history(7)[2..].iter().cloned()); // an impossible read behind it
    check(&text(&garbage), Some(finished(5)), 254, "unreadable", "a garbage line");
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    check(&random, Some(finished(4)), 254, "unreadable", "random bytes");
    let mut cut = text(&good);
    cut.truncate(cut.len() - 10);
    check(&cut, None, 2, "truncated", "a last line cut short by a crash");
    check(&text(&good[..2]), Some(finished(4)), 2, "truncated", "fewer ops than the run recorded");
    check(b"", Some(finished(0)), 2, "empty", "an empty history");
    check(&text(&good), None, 2, "unfinished", "no run.json: the harness died");
    let mut interrupted = finished(4);
    interrupted["interrupted"] = true.into();
    check(&text(&good), Some(interrupted), 2, "interrupted", "Ctrl-C");
    let mut unhealed = finished(4);
    unhealed["heal_error"] = "n2 did not come back".into();
    check(&text(&good), Some(unhealed), 2, "unhealed", "a cluster that did not heal");
}

#[test]
fn a_report_that_cannot_be_made_sets_the_earlier_one_aside() {
    let dir = run_dir((register_history(1).join("\n") + "\n").as_bytes(), Some(finished(4)));
    assert_eq!(ordeal(&["report", dir.path().to_str().unwrap()]).0, 0);
    std::fs::remove_file(dir.path().join("history.jsonl")).unwrap();
    let (code, out, err) = ordeal(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(code, 254, "{out}{err}");
    for name in ["results.json", "junit.xml", "summary.md", "report.html"] {
        assert!(!dir.path().join(name).exists(), "{name} would still say valid");
        assert!(dir.path().join(format!("{name}.stale")).is_file(), "{name} is kept, set aside: {err}");
    }
}

#[test]
fn a_run_cut_short_before_its_fault_rounds_is_not_valid() {
    let history = (register_history(1).join("\n") + "\n").into_bytes();
    let with_errors = |errors: serde_json::Value| {
        let mut run = finished(4);
        run["nemesis_errors"] = errors;
        let dir = run_dir(&history, Some(run));
        let (code, out, err) = ordeal(&["report", dir.path().to_str().unwrap()]);
        (code, format!("{out}{err}"), common::json(&dir.path().join("results.json")))
    };
    // A fault that found no target is noted, as Jepsen notes one: routine with several groups.
    let (code, out, _) = with_errors(serde_json::json!(["start pause-follower: no follower to target"]));
    assert_eq!(code, 0, "{out}");
    let (code, out, results) = with_errors(serde_json::json!(["the time limit came after 1 of 4 faults"]));
    assert_eq!(code, 2, "{out}");
    assert_eq!(results["defects"][0]["kind"], "faults-failed", "{results}");
    assert!(results["reason"].as_str().unwrap().contains("the time limit came after 1 of 4 faults"), "{results}");
}

#[test]
fn a_run_in_which_nothing_succeeded_or_a_final_read_never_did_is_not_valid() {
    let text = |lines: &[String]| (lines.join("\n") + "\n").into_bytes();
    // Every op was refused: a system that commits nothing verifies nothing.
    let refused: Vec<String> = register_history(1)
        .iter()
        .map(|l| {
            let mut op: serde_json::Value = serde_json::from_str(l).unwrap();
            if op["type"] == "ok" {
                (op["type"], op["value"]["value"]) = ("fail".into(), serde_json::Value::Null);
            }
            op.to_string()
        })
        .collect();
    check(&text(&refused), Some(finished(4)), 2, "nothing-acknowledged", "every op was refused");
    let mut unread = finished(4);
    unread["final_reads_complete"] = false.into();
    check(&text(&register_history(1)), Some(unread), 2, "final-reads-incomplete", "no final read succeeded");
}

#[test]
fn a_run_whose_every_fault_failed_to_start_is_not_valid() {
    let nemesis = |index: u64, kind: &str, error: Option<&str>| {
        let mut op = serde_json::json!({"index": index, "time": index * 1000, "process": "nemesis", "type": kind,
            "f": "start", "value": {"fault": "partition-leader"}});
        if let Some(e) = error {
            op["error"] = e.into();
        }
        op.to_string()
    };
    let mut lines = register_history(1);
    lines.push(nemesis(4, "invoke", None));
    lines.push(nemesis(5, "info", Some("partition-leader: nft: permission denied")));
    let dir = run_dir((lines.join("\n") + "\n").as_bytes(), Some(finished(6)));
    let (code, out, err) = ordeal(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    let results = common::json(&dir.path().join("results.json"));
    assert_eq!(results["defects"][0]["kind"], "no-fault-ran", "{results}");
    assert!(results["reason"].as_str().unwrap().contains("nft: permission denied"), "{results}");
}
