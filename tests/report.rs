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
        ordeal(&run_args(store_arg, &["--workload", "register", "--nemesis", "kill-leader", "--seed", "4"]));
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
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ordeal"))
        .args(["serve", "--store", store_arg, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 200];
    let n = serve.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let addr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let (code, index) = http_get(&addr, "/");
    assert_eq!(code, 200);
    assert!(index.contains("register-kill-leader") && index.contains("report.html"), "{index}");
    let (code, page) = http_get(&addr, "/latest/report.html");
    assert_eq!(code, 200);
    assert!(page.contains("id=\"verdict\""));
    assert_eq!(http_get(&addr, "/latest/results.json").0, 200);
    assert_eq!(http_get(&addr, "/latest/../../etc/passwd").0, 400);
    assert_eq!(http_get(&addr, "/nothing-here").0, 404);
    serve.kill().unwrap();
    serve.wait().unwrap();
}

/// A rolling upgrade from the emulated predecessor to this build, one node rolled back on the
/// way, leader kills between the steps: valid, the gate flipped only after the last step, and
/// the upgrade timeline renders in Chromium.
#[test]
fn a_rolling_upgrade_with_a_rollback_is_valid_and_its_timeline_renders() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = ordeal(&[
        "run",
        "--scenario",
        "rolling-upgrade",
        "--rollback",
        "--nemesis",
        "kill-leader",
        "--env",
        "local",
        "--rate",
        "300",
        "--time-limit",
        "120",
        "--nemesis-interval",
        "1",
        "--fault-duration",
        "1",
        "--store",
        store.to_str().unwrap(),
        "--no-progress",
        "--seed",
        "5",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let results = common::json(&store.join("latest/results.json"));
    let upgrade = results["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "upgrade").unwrap();
    let d = &upgrade["details"];
    assert_eq!(upgrade["verdict"], "valid", "{upgrade}");
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.iter().filter(|s| s["rollback"] == true).count(), 1, "one rollback: {steps:?}");
    assert_eq!(steps.len(), 5, "three upgrades, one rollback, the rolled-back node again: {steps:?}");
    assert!(d["gate"]["at_s"].as_f64().unwrap() >= d["every_node_new_from_s"].as_f64().unwrap(), "{d}");
    assert_eq!(d["final"]["cluster_version"], 2);

    let report = std::fs::canonicalize(store.join("latest/report.html")).unwrap();
    let (dom, _) = load(&format!("file://{}", report.display()), &dir.path().join("profile"));
    let at = dom.find("<figure class=\"plot\" id=\"upgrade\">").expect("the upgrade timeline is drawn");
    let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
    assert!(figure.matches("<rect").count() > 20, "lanes are drawn");
    assert!(figure.contains("release 1") && figure.contains("release 2") && figure.contains("cluster version 2"));
    let next = &dom[at + figure.len()..];
    assert!(next.find("id=\"throughput\"") < next.find("id=\"quantiles\""), "throughput right beneath");
}
