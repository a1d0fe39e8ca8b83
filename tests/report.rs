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
