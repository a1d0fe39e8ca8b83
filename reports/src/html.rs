//! `report.html` (one self-contained file: inline CSS, SVG and script, no network fetches), the
//! store's `index.html`, and the directory pages of `ordeal serve`.
//!
//! Pages are maud templates, which escape every interpolated value. `PreEscaped` is kept for
//! what is markup or script by construction: our own CSS and script, the plotters SVGs, and the
//! timeline's JSON (escaped for a script element by [`script_json`]).

use crate::gate::{GateReport, Side, Spread};
use crate::plot;
use crate::results::{Analysis, CheckerResult, Failover, PhaseStats, Results};
use crate::store::{self, RunInfo};
use crate::{ReportError, shown};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use ordeal_checker::Verdict;
use ordeal_checker::linear::{Counterexample, OpRef};
use ordeal_checker::perf::{Digest, FaultLoad, FaultWindow, Stats};
use ordeal_history::membership::{CatchUpSample, PromoteRecord};
use ordeal_history::{OpType, Test};
use serde_json::{Value, json};
use std::path::Path;

/// Most ops the history timeline embeds: a window around the first counterexample, else the
/// start of the run. The whole history is always in `history.jsonl`.
pub const TIMELINE_MAX: usize = 100_000;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
main { max-width: 1160px; margin: 0 auto; padding: 0 20px 60px; }
.banner { padding: 22px 30px; color: white; }
.banner h1 { margin: 0 0 4px; font-size: 30px; letter-spacing: .04em; }
.banner p { margin: 0; font-size: 15px; max-width: 1100px; }
.valid { background: #2e7d4f; } .invalid { background: #c62828; } .unknown { background: #b7791f; }
nav { background: #232b3a; padding: 8px 30px; } nav a { color: #cfd8e6; margin-right: 18px; text-decoration: none; }
section { background: white; border: 1px solid #e1e5ec; border-radius: 6px; margin: 20px 0; padding: 14px 20px; }
h2 { font-size: 18px; margin: 4px 0 12px; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f4; vertical-align: top; }
th { color: #5b6475; font-weight: 600; } code, .mono { font-family: ui-monospace, Menlo, monospace; font-size: 12.5px; }
.tag { display: inline-block; padding: 1px 8px; border-radius: 10px; color: white; font-size: 12px; }
figure { margin: 10px 0 24px; } figcaption { color: #5b6475; font-size: 13px; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eef0f4; }
a.op { color: #1f4ea0; cursor: pointer; text-decoration: underline dotted; }
#lanes { position: relative; overflow: hidden; border: 1px solid #e1e5ec; background: #fbfcfd; }
.lane-label { position: absolute; left: 0; width: 70px; font-size: 11px; color: #5b6475; }
.box { position: absolute; height: 14px; border-radius: 2px; font-size: 10px; color: white; overflow: hidden; white-space: nowrap; opacity: .9; }
.box.ok { background: #2e8b57; } .box.fail { background: #d62728; } .box.info { background: #e69f00; }
.box.hit { outline: 3px solid #1d2330; z-index: 3; }
.band { position: absolute; top: 0; bottom: 0; background: rgba(255,120,120,.18); border-left: 1px solid rgba(220,60,60,.5); font-size: 10px; color: #b22; }
.controls { margin: 8px 0; } .controls button, .controls input { margin-right: 6px; }
.muted { color: #7a8291; }
"#;

const SCRIPT: &str = r#"
(function () {
  const data = JSON.parse(document.getElementById('ops').textContent);
  const names = data.names, ops = data.ops, faults = data.faults;
  const KIND = ['ok', 'fail', 'info'];
  const PER = 250;
  let start = 0, hit = -1;
  const lanes = document.getElementById('lanes');
  const label = document.getElementById('window');
  function render() {
    const slice = ops.slice(start, start + PER);
    lanes.innerHTML = '';
    if (!slice.length) { label.textContent = 'no ops'; return; }
    const procs = [...new Set(slice.map(o => o[1]))].sort((a, b) => a - b);
    const t0 = Math.min(...slice.map(o => o[3]));
    const t1 = Math.max(...slice.map(o => o[4] >= 0 ? o[4] : o[3]));
    const width = lanes.clientWidth - 80, span = Math.max(t1 - t0, 1);
    const x = t => 75 + (t - t0) / span * width;
    lanes.style.height = (procs.length * 18 + 20) + 'px';
    for (const f of faults) {
      if (f[1] < t0 || f[0] > t1) continue;
      const b = document.createElement('div');
      b.className = 'band';
      b.style.left = Math.max(x(f[0]), 75) + 'px';
      b.style.width = Math.max(Math.min(x(f[1]), 75 + width) - Math.max(x(f[0]), 75), 2) + 'px';
      b.textContent = f[2];
      lanes.appendChild(b);
    }
    procs.forEach((p, i) => {
      const l = document.createElement('div');
      l.className = 'lane-label'; l.style.top = (i * 18 + 14) + 'px'; l.textContent = 'process ' + p;
      lanes.appendChild(l);
    });
    for (const o of slice) {
      const b = document.createElement('div');
      const end = o[4] >= 0 ? o[4] : t1;
      b.className = 'box ' + KIND[o[5]] + (o[0] === hit ? ' hit' : '');
      b.style.left = x(o[3]) + 'px';
      b.style.width = Math.max(x(end) - x(o[3]), 3) + 'px';
      b.style.top = (procs.indexOf(o[1]) * 18 + 14) + 'px';
      b.title = 'op ' + o[0] + ' · process ' + o[1] + ' · ' + names[o[2]] + ' ' + o[7] + '\n' + KIND[o[5]] +
        (o[4] >= 0 ? ' after ' + ((o[4] - o[3]) / 1000).toFixed(2) + ' ms' : ', never completed') +
        (o[6] >= 0 ? ' · node ' + o[6] : '');
      b.textContent = names[o[2]];
      b.id = 'op-' + o[0];
      lanes.appendChild(b);
    }
    label.textContent = 'ops ' + slice[0][0] + '–' + slice[slice.length - 1][0] + ' (' + (start + 1) + '–' +
      (start + slice.length) + ' of ' + ops.length + ' embedded), ' + (t0 / 1e6).toFixed(3) + '–' + (t1 / 1e6).toFixed(3) + ' s';
  }
  window.showOp = function (index) {
    let i = ops.findIndex(o => o[0] >= index);
    if (i < 0) i = ops.length - 1;
    hit = index;
    start = Math.max(0, i - Math.floor(PER / 2));
    render();
    document.getElementById('timeline').scrollIntoView();
    return false;
  };
  document.getElementById('prev').onclick = () => { start = Math.max(0, start - PER); render(); };
  document.getElementById('next').onclick = () => { if (start + PER < ops.length) { start += PER; render(); } };
  document.getElementById('go').onclick = () => window.showOp(parseInt(document.getElementById('goto').value || '0', 10));
  render();
  document.body.dataset.ready = 'yes';
})();
"#;

/// Renders `report.html` for the run in `dir`.
pub fn report(dir: &Path, a: &Analysis) -> Result<String, ReportError> {
    let (r, d) = (&a.results, &a.digest);
    let figures = figures(dir, a)?;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { "ordeal: " (r.test.name) " — " (r.verdict) }
                style { (PreEscaped(STYLE)) }
            }
            body data-ready="no" {
                header.banner.(verdict_class(r.verdict)) #verdict {
                    h1 { (r.verdict.to_string().to_uppercase()) }
                    p { (r.reason) }
                }
                (nav())
                main {
                    @if !r.defects.is_empty() {
                        section #defects {
                            b { "Not a valid run: the record is incomplete" }
                            ul { @for d in &r.defects { li { (d.to_string()) } } }
                        }
                    }
                    (test_section(r))
                    (checkers_section(r))
                    section #plots { h2 { "Plots" } (figures) }
                    (timeline_section(d))
                }
                script type="application/json" id="ops" { (script_json(&timeline_data(d, r))) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    Ok(page.into_string())
}

/// Writes `index.html` into the store at `root`: every run, newest first.
pub fn write_index(root: &Path) -> Result<(), ReportError> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "ordeal runs" } style { (PreEscaped(STYLE)) } }
            body data-ready="yes" {
                header.banner.valid style="background:#232b3a" { h1 { "ordeal runs" } p { (root.display()) } }
                main {
                    section {
                        table {
                            (header_row(&[
                                "verdict", "test", "started", "nemesis", "length", "ops", "median write gap", "why",
                            ]))
                            @for run in store::runs(root) { (index_row(root, &run)) }
                        }
                    }
                }
            }
        }
    };
    let path = root.join(store::INDEX);
    std::fs::write(&path, page.into_string()).map_err(|e| ReportError::file(&path, e))
}

/// The page `ordeal serve` shows for the directory at URL path `/{path}`: a link per entry of
/// `names` (a directory's name ends in `/`).
///
/// # Examples
///
/// ```
/// let page = ordeal_reports::html::listing("run/nodes/", &["n1/".to_owned(), "a<b".to_owned()]);
/// assert!(page.contains(r#"<h1>/run/nodes</h1><ul><li><a href="/run/nodes/n1/">n1/</a></li>"#));
/// assert!(page.contains(r#"<a href="/run/nodes/a&lt;b">a&lt;b</a>"#));
/// ```
pub fn listing(path: &str, names: &[String]) -> String {
    let base = path.trim_end_matches('/');
    let page = html! {
        (DOCTYPE)
        meta charset="utf-8";
        title { (base) }
        h1 { "/" (base) }
        ul { @for n in names { li { a href={ "/" (base) "/" (n) } { (n) } } } }
    };
    page.into_string()
}

/// One run of the index. A run still going, or whose analysis failed, has no results.
fn index_row(root: &Path, run: &Path) -> Markup {
    let rel = run.strip_prefix(root).unwrap_or(run).display().to_string();
    let results: Option<Results> = store::read_json(&run.join(store::RESULTS)).ok();
    let test: Option<Test> = store::read_json(&run.join(store::TEST)).ok();
    let verdict = match &results {
        Some(r) => tag(r.verdict),
        None if run.join(store::PID).exists() => html! { "running" },
        None => html! { span.tag.unknown { "no results" } },
    };
    let gap = shown(results.as_ref().and_then(|r| r.failover.gap_ms_median), 0, " ms");
    let ops = results
        .as_ref()
        .map_or("-".into(), |r| (r.stats.total.ok + r.stats.total.fail + r.stats.total.info).to_string());
    let (name, started, nemesis, length) = test.map_or_else(
        || (rel.clone(), String::new(), String::new(), String::new()),
        |t| (t.name, t.started_at, t.nemesis.join(", "), format!("{:.0} s", t.time_limit_s)),
    );
    html! {
        tr {
            td { (verdict) }
            td { a href={ (rel) "/report.html" } { (name) } }
            td { (started) } td { (nemesis) } td { (length) } td { (ops) } td { (gap) }
            td.muted { (results.as_ref().map_or("", |r| r.reason.as_str())) }
        }
    }
}

/// `gate.html`: the gate's verdict, every check, and every configuration with the baseline's runs
/// and figures beside the candidate's, each run linked to its report.
pub fn gate(report: &GateReport) -> String {
    let word = match report.verdict {
        Verdict::Valid => "PASS",
        Verdict::Invalid => "FAIL",
        Verdict::Unknown => "UNDECIDED",
    };
    let failed = report.checks.iter().filter(|c| c.outcome != Verdict::Valid).count();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "ordeal gate: " (report.suite) " — " (word) } style { (PreEscaped(STYLE)) } }
            body data-ready="yes" {
                header.banner.(verdict_class(report.verdict)) {
                    h1 { "GATE " (word) }
                    p { "suite " (report.suite) ": " (report.checks.len()) " checks, " (failed) " not passed" }
                }
                nav {
                    a href="#checks" { "checks" }
                    a href="#configs" { "side by side" }
                    a href="gate.json" { "gate.json" }
                    a href="baseline/suite.json" { "baseline suite.json" }
                    a href="candidate/suite.json" { "candidate suite.json" }
                }
                main {
                    section #checks {
                        h2 { "Checks of the candidate" }
                        table {
                            (header_row(&["outcome", "check", "detail", "evidence"]))
                            @for c in &report.checks {
                                tr {
                                    td { (tag(c.outcome)) } td { (c.name) } td { (c.detail) }
                                    td { @for e in &c.evidence { a href=(e) { "report" } " " } }
                                }
                            }
                        }
                    }
                    section #configs {
                        h2 { "Baseline and candidate, configuration by configuration" }
                        p.muted { "Figures are median (min – max) over the runs that have them." }
                        table {
                            (header_row(&["configuration", "build", "runs", "write gap (ms)", "faults without writes after", "p99 latency, ok ops (ms)", "p99 latency, every op (ms)", "throughput, ok ops (ops/s)", "throughput, every op (ops/s)"]))
                            @for pair in &report.configs {
                                (side_row(&pair.config, &pair.expect, "baseline", &pair.baseline))
                                (side_row("", "", "candidate", &pair.candidate))
                            }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// One run of a comparison: where it lies in the store (its URL path) and what it found.
pub struct Compared<'a> {
    /// The run directory relative to the store, e.g. `log-kill-leader/20261130T220933.345Z`.
    pub path: &'a str,
    /// Its `results.json`.
    pub results: &'a Results,
}

/// The comparison page of `ordeal serve` (`/compare?a=RUN&b=RUN`): two runs side by side, their
/// verdicts, settings (differences marked), checkers, figures, and their reports' plots.
pub fn compare(a: &Compared, b: &Compared) -> String {
    let row = |name: &str, x: Markup, y: Markup| {
        let differ = x.0 != y.0;
        html! { tr { th { (name) } td.(if differ { "differs" } else { "" }) { (x) } td.(if differ { "differs" } else { "" }) { (y) } } }
    };
    let text = |v: String| html! { (v) };
    let (ta, tb) = (test_rows(&a.results.test), test_rows(&b.results.test));
    let mut checkers: Vec<&str> =
        a.results.checkers.iter().chain(&b.results.checkers).map(|c| c.name.as_str()).collect();
    checkers.sort_unstable();
    checkers.dedup();
    let checker = |r: &Results, name: &str| match r.checkers.iter().find(|c| c.name == name) {
        Some(c) => html! { (tag(c.verdict)) " " (c.summary) },
        None => html! { span.muted { "not run" } },
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "ordeal: " (a.path) " vs " (b.path) }
                style { (PreEscaped(STYLE)) "td.differs { background: #fff6d6; } iframe { width: 49%; height: 900px; border: 1px solid #eef0f4; }" }
            }
            body data-ready="yes" {
                header.banner.(verdict_class(a.results.verdict.and(b.results.verdict))) {
                    h1 { "A " (a.results.verdict) " — B " (b.results.verdict) }
                    p { "A: " (a.path) br; "B: " (b.path) }
                }
                nav { a href="/" { "all runs" } a href="#figures" { "figures" } a href="#checkers" { "checkers" } a href="#plots" { "plots" } }
                main {
                    section #test {
                        h2 { "Runs" }
                        table {
                            (header_row(&["", "A", "B"]))
                            (row("report", html! { a href={ "/" (a.path) "/report.html" } { (a.path) } }, html! { a href={ "/" (b.path) "/report.html" } { (b.path) } }))
                            (row("verdict", html! { (tag(a.results.verdict)) " " (a.results.reason) }, html! { (tag(b.results.verdict)) " " (b.results.reason) }))
                            @for ((k, x), (_, y)) in ta.into_iter().zip(tb) { (row(k, text(x), text(y))) }
                        }
                    }
                    section #figures {
                        h2 { "Figures" }
                        table {
                            (header_row(&["", "A", "B"]))
                            @for (name, f) in FIGURES { (row(name, text(f(a.results)), text(f(b.results)))) }
                        }
                    }
                    section #checkers {
                        h2 { "Checkers" }
                        table {
                            (header_row(&["checker", "A", "B"]))
                            @for name in checkers { (row(name, checker(a.results, name), checker(b.results, name))) }
                        }
                    }
                    section #plots {
                        h2 { "Plots" }
                        iframe src={ "/" (a.path) "/report.html#plots" } title="A" {}
                        " "
                        iframe src={ "/" (b.path) "/report.html#plots" } title="B" {}
                    }
                }
            }
        }
    };
    page.into_string()
}

/// The figures a comparison sets side by side, each as its text.
type Figure = (&'static str, fn(&Results) -> String);
const FIGURES: [Figure; 6] = [
    ("ops (ok / fail / info)", |r| format!("{} / {} / {}", r.stats.total.ok, r.stats.total.fail, r.stats.total.info)),
    ("throughput (ops/s: all / ok)", |r| format!("{:.0} / {:.0}", r.stats.throughput_per_s, r.stats.ok_per_s)),
    ("latency p50 / p99 / max (ms)", |r| {
        let l = &r.stats.total.latency;
        format!("{} / {} / {}", quantile(l.p50_ms, 1), quantile(l.p99_ms, 1), quantile(l.max_ms, 1))
    }),
    ("faults (recovered)", |r| format!("{} ({})", r.failover.faults, r.failover.recovered)),
    ("write gap median / max (ms)", |r| {
        let ms = |v: Option<f64>| shown(v, 0, "");
        format!("{} / {}", ms(r.failover.gap_ms_median), ms(r.failover.gap_ms_max))
    }),
    ("duration (s)", |r| format!("{:.1}", r.stats.duration_s)),
];

fn side_row(config: &str, expect: &str, build: &str, side: &Side) -> Markup {
    html! {
        tr {
            td { (config) @if !expect.is_empty() { br; span.muted { "expect " (expect) } } }
            td { (build) }
            td {
                @for run in &side.runs {
                    @let shown = html! {
                        "seed " (run.seed) ": " (run.verdict.map_or("not run".to_owned(), |v| v.to_string()))
                        @if !run.figures { " " span.muted { "(no figures)" } }
                    };
                    @match &run.report {
                        Some(href) => { a href=(href) { (shown) } br; }
                        None => { (shown) br; }
                    }
                }
            }
            td { (spread(side.gap_ms)) }
            td { @match side.unrecovered_faults { Some(n) => (n), None => span.muted { "-" } } }
            td { (spread(side.p99_ms)) } td { (spread(side.p99_all_ms)) }
            td { (spread(side.ok_per_s)) } td { (spread(side.throughput_per_s)) }
        }
    }
}

/// A latency quantile to `decimals` places, `-` where there was no sample to take it from.
fn quantile(v: Option<f64>, decimals: usize) -> String {
    shown(v, decimals, "")
}

fn spread(s: Option<Spread>) -> Markup {
    match s {
        Some(s) => {
            html! { (format!("{:.1}", s.median)) " " span.muted { (format!("({:.1} – {:.1}, n={})", s.min, s.max, s.n)) } }
        }
        None => html! { span.muted { "-" } },
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    }
}

fn tag(v: Verdict) -> Markup {
    html! { span.tag.(verdict_class(v)) { (v) } }
}

fn header_row(names: &[&str]) -> Markup {
    html! { tr { @for n in names { th { (n) } } } }
}

fn nav() -> Markup {
    html! {
        nav {
            a href="#test" { "test" }
            a href="#checkers" { "checkers" }
            a href="#plots" { "plots" }
            a href="#timeline" { "history timeline" }
            a href="results.json" { "results.json" }
            a href="history.jsonl" { "history.jsonl" }
            a href="../../index.html" { "all runs" }
        }
    }
}

/// A link that shows op `index` in the history timeline (`showOp` is defined by [`SCRIPT`]).
fn op_anchor(index: u64) -> Markup {
    html! { a.op href={ "#op-" (index) } onclick={ "return showOp(" (index) ")" } { "op " (index) } }
}

fn op_link(o: &OpRef) -> Markup {
    html! { (op_anchor(o.index)) " " span.mono { "process " (o.process) ": " (o.op) } }
}

fn test_section(r: &Results) -> Markup {
    let t = &r.test;
    html! {
        section #test {
            h2 { "Test" }
            table {
                @for (k, v) in test_rows(t) { tr { th { (k) } td { (v) } } }
                tr {
                    th { "reproduce" }
                    td { code { (t.command) } br; "or " code { "ordeal run --test DIR/test.json" } }
                }
                @if let Some(notes) = r.run.as_ref().and_then(run_notes) { tr { th { "run" } td { (notes) } } }
            }
        }
    }
}

/// The test's configuration, one (setting, value) row each.
fn test_rows(t: &Test) -> [(&'static str, String); 11] {
    let system = match t.system.as_str() {
        "etcd" => format!("etcd, {} reads", t.etcd_reads),
        other => other.to_owned(),
    };
    let none_or = |list: &[String]| if list.is_empty() { "none".into() } else { list.join(", ") };
    let hosts = t.ssh.as_ref().map(|s| format!(" on {} as {}", s.hosts.join(", "), s.user)).unwrap_or_default();
    let groups = if t.groups == 1 { "" } else { "s" };
    [
        ("system", system),
        ("workload", t.workload.clone()),
        ("nemesis", none_or(&t.nemesis)),
        ("nodes", format!("{} ({} raft group{groups}), env {}{hosts}", t.nodes, t.groups, t.env)),
        (
            "clients",
            format!("{} processes, at most {} ops/s, op timeout {} ms", t.concurrency, t.rate, t.op_timeout_ms),
        ),
        ("duration", duration(t)),
        (
            "raft",
            format!(
                "tick {} ms, heartbeat {} ticks, election {} ticks",
                t.tick_ms, t.heartbeat_ticks, t.election_ticks
            ),
        ),
        ("versions", format!("ordeal {}, {} {} ({})", t.ordeal_version, t.system, t.broker_version, t.broker_binary)),
        ("deliberate bugs", none_or(&t.bugs)),
        ("seed", t.seed.to_string()),
        ("started", t.started_at.clone()),
    ]
}

/// How long the main phase was set to last: a time, or, with fault rounds, an event that the
/// time only bounds (so a 40 s run is not shown as a 126 s one).
fn duration(t: &Test) -> String {
    let main = match t.fault_rounds {
        Some(n) if t.nemesis_order == "cycle" => format!(
            "main phase until every fault ran and healed {n} time{} (at most {:.0} s)",
            if n == 1 { "" } else { "s" },
            t.time_limit_s
        ),
        _ => format!("{:.0} s main phase", t.time_limit_s),
    };
    format!("{main}; faults every {:.1} s for {:.1} s", t.nemesis_interval_s, t.fault_duration_s)
}

/// What went wrong with the run itself, if anything.
fn run_notes(run: &RunInfo) -> Option<String> {
    let mut notes = Vec::new();
    if run.interrupted {
        notes.push("interrupted (Ctrl-C): the history is partial".to_owned());
    }
    if let Some(e) = &run.heal_error {
        notes.push(format!("healing failed: {e}"));
    }
    if let Some(e) = &run.harness_error {
        notes.push(format!("harness failed: {e}"));
    }
    notes.extend(run.nemesis_errors.iter().map(|e| format!("nemesis: {e}")));
    (!notes.is_empty()).then(|| notes.join("; "))
}

fn checkers_section(r: &Results) -> Markup {
    html! {
        section #checkers {
            h2 { "Checkers" }
            table {
                (header_row(&["checker", "verdict", "summary"]))
                @for c in &r.checkers { tr { td { (c.name) } td { (tag(c.verdict)) } td { (c.summary) } } }
            }
            @for c in &r.checkers { (evidence(c)) }
            (operations(&r.stats))
            @if !r.phases.is_empty() { (phases(&r.phases)) }
            @if !r.faults.is_empty() { (faults(&r.faults, &r.failover)) }
        }
    }
}

/// A checker's evidence: its counterexamples, undecided partitions and misplaced records.
fn evidence(c: &CheckerResult) -> Markup {
    let list = |key: &str| c.details.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let failures = list("failures").iter().filter_map(|f| serde_json::from_value::<Counterexample>(f.clone()).ok());
    html! {
        @for f in failures {
            h2 #counterexample { "Counterexample (" (c.name) ")" }
            (counterexample(&f))
        }
        @if !list("undecided").is_empty() { (undecided(&c.name, list("undecided"))) }
        @for kind in ["lost", "misplaced", "duplicated", "unexpected"] {
            @if !list(kind).is_empty() { (records(kind, list(kind))) }
        }
        @if !list("skipped").is_empty() { (skipped(list("skipped"))) }
    }
}

/// Offsets without a record below a partition's last one, as ranges (the first 100 of each).
fn skipped(list: &[Value]) -> Markup {
    const SHOWN: usize = 100;
    let ranges = |s: &Value| s["ranges"].as_array().map(Vec::as_slice).unwrap_or_default().to_vec();
    html! {
        h2 { "skipped offsets" }
        table {
            (header_row(&["partition", "offsets without a record, first to last", "of them"]))
            @for s in list {
                tr {
                    td { (s["partition"]) }
                    td { (Value::Array(ranges(s).into_iter().take(SHOWN).collect())) }
                    td { (s["count"]) }
                }
            }
        }
    }
}

fn counterexample(c: &Counterexample) -> Markup {
    let first = c.prefix_len - c.prefix.len();
    html! {
        p { b { (c.explanation) } }
        p {
            "Partition " code { (c.partition.as_deref().unwrap_or("(whole history)")) } ": " (op_link(&c.op))
            " cannot be linearized in state " code { (c.state) } "."
        }
        p {
            "The longest legal order found has " (c.prefix_len) " ops; its last " (c.prefix.len())
            " steps, with the state after each:"
        }
        table {
            (header_row(&["#", "op", "state after"]))
            @for (i, step) in c.prefix.iter().enumerate() {
                tr { td { (first + i + 1) } td { (op_link(&step.op)) } td { code { (step.state) } } }
            }
            tr { td { "✗" } td { (op_link(&c.op)) } td { "impossible" } }
        }
        @if !c.concurrent.is_empty() {
            p {
                "Ops concurrent with it, tried in every order: "
                @for (i, o) in c.concurrent.iter().enumerate() { @if i > 0 { "; " } (op_link(o)) }
            }
        }
    }
}

fn undecided(checker: &str, list: &[Value]) -> Markup {
    html! {
        h2 { "Undecided partitions (" (checker) ")" }
        ul {
            @for u in list {
                li {
                    code { (u["partition"].as_str().unwrap_or("-")) }
                    " (" (u["ops"]) " ops): " (u["reason"].as_str().unwrap_or(""))
                }
            }
        }
    }
}

/// Records of one `kind` gone wrong: the first 100 (`results.json` has them all).
fn records(kind: &str, list: &[Value]) -> Markup {
    html! {
        h2 { (kind) " records (" (list.len()) ")" }
        table {
            (header_row(&["partition", "value", "acknowledged at", "found at", "append"]))
            @for a in list.iter().take(100) {
                tr {
                    td { (a["partition"]) }
                    td { (a["value"]) }
                    td { (a["acked_offset"]) }
                    td { (a["found_at"]) }
                    td { @if let Some(i) = a["op_index"].as_u64() { (op_anchor(i)) } }
                }
            }
        }
    }
}

fn operations(st: &Stats) -> Markup {
    let all = "all".to_owned();
    html! {
        h2 { "Operations" }
        table {
            (header_row(&["op", "ok", "fail", "info", "p50", "p95", "p99", "max"]))
            @for (f, o) in st.by_f.iter().chain([(&all, &st.total)]) {
                @let l = &o.latency;
                tr {
                    td { (f) } td { (o.ok) } td { (o.fail) } td { (o.info) }
                    td { (quantile(l.p50_ms, 2)) " ms" }
                    td { (quantile(l.p95_ms, 2)) " ms" }
                    td { (quantile(l.p99_ms, 2)) " ms" }
                    td { (quantile(l.max_ms, 1)) " ms" }
                }
            }
        }
        p.muted { (format!("{:.0} ops/s over {:.1} s.", st.throughput_per_s, st.duration_s)) }
    }
}

fn phases(phases: &[PhaseStats]) -> Markup {
    html! {
        h2 { "Phases" }
        table {
            (header_row(&["phase", "from", "to", "rate asked", "invoked/s", "ops invoked"]))
            @for p in phases {
                tr {
                    td { (p.kind) }
                    td { (format!("{:.2} s", p.start_s)) }
                    td { (format!("{:.2} s", p.end_s)) }
                    td { @if p.rate > 0.0 { (format!("{:.0}/s", p.rate)) } @else { "no limit" } }
                    td { (format!("{:.0}", p.invoked_per_s)) }
                    td { (p.invoked.iter().map(|(f, n)| format!("{f} {n}")).collect::<Vec<_>>().join(", ")) }
                }
            }
        }
        p.muted { "Ops belong to the phase their invocation falls in; the closing final reads come after the last." }
    }
}

fn faults(faults: &[FaultWindow], fo: &Failover) -> Markup {
    let ms = |v: Option<f64>| shown(v, 0, " ms");
    html! {
        h2 { "Faults" }
        table {
            (header_row(&["#", "fault", "targets", "at", "healed", "write gap", "acks/s during (× before)", "p50 / p99 during", "old leader"]))
            @for (i, f) in faults.iter().enumerate() { (fault_row(i + 1, f)) }
        }
        p.muted { "Median write gap " (ms(fo.gap_ms_median)) ", max " (ms(fo.gap_ms_max)) "." }
    }
}

fn fault_row(number: usize, f: &FaultWindow) -> Markup {
    let gap = f.gap_ms.map_or_else(|| "no write acknowledged after it".into(), |g| format!("{g:.0} ms"));
    let healed = f.stop.map_or_else(|| "-".into(), |t| format!("{:.2} s", t as f64 / 1e9));
    let leader = match (f.stepped_down, f.stepped_down_ms) {
        (Some(true), Some(ms)) => format!("stepped down after {ms:.0} ms"),
        (Some(false), _) => "still claimed leadership when healed".into(),
        _ => String::new(),
    };
    html! {
        tr {
            td { (number) }
            td { (f.fault) }
            td { (format!("{:?}", f.targets)) }
            td { (format!("{:.2} s", f.start as f64 / 1e9)) }
            td { (healed) } td { (gap) }
            td { (throughput(&f.load)) }
            td { (quantile(f.load.latency.p50_ms, 1)) " / " (quantile(f.load.latency.p99_ms, 1)) " ms" }
            td { (leader) }
        }
    }
}

fn throughput(load: &FaultLoad) -> String {
    match load.ratio {
        Some(r) => format!("{:.0} ({r:.2}×)", load.during_per_s),
        None => format!("{:.0}", load.during_per_s),
    }
}

/// Every plot of the run as a figure.
fn figures(dir: &Path, a: &Analysis) -> Result<Markup, ReportError> {
    let (r, d) = (&a.results, &a.digest);
    let plot_err = |e: String| ReportError::file(&dir.join(store::REPORT), e);
    let status = std::fs::read_to_string(dir.join(store::STATUS)).unwrap_or_default();
    let mut plots = vec![
        ("latency".to_owned(), plot::latency(d, &r.faults).map_err(plot_err)?),
        ("quantiles".to_owned(), plot::quantiles(d, &r.faults).map_err(plot_err)?),
        ("throughput".to_owned(), plot::throughput(d, &r.faults, &r.phases).map_err(plot_err)?),
    ];
    // A rolling upgrade: its timeline first, with throughput and latency right beneath it.
    if let Some(upgrade) = plot::upgrade_timeline(&status, d, &r.faults).map_err(plot_err)? {
        plots.rotate_right(1);
        plots.insert(0, ("upgrade".to_owned(), upgrade));
    }
    if !r.faults.is_empty() {
        plots.push(("gaps".to_owned(), plot::gaps(&r.faults).map_err(plot_err)?));
    }
    let raft = plot::raft_timeline(&status, d, &r.faults, &membership_marks(r)).map_err(plot_err)?;
    plots.extend(raft.into_iter().enumerate().map(|(i, plot)| (format!("raft-{i}"), plot)));
    plots.extend(catch_up_plots(dir, r)?.into_iter().map(|(node, plot)| (format!("catch-up-{node}"), plot)));
    Ok(html! { @for (id, (svg, caption)) in &plots { (figure(id, svg, caption)) } })
}

/// A plot's SVG and its caption.
type Plot = (String, String);

/// The membership changes the membership checker found, for the raft role timeline: each
/// learner's attachment, each promote (refused ones too) and each removal.
fn membership_marks(r: &Results) -> Vec<plot::MembershipMark> {
    let Some(d) = r.checkers.iter().find(|c| c.name == "membership").map(|c| &c.details) else { return Vec::new() };
    let list = |key: &str| d[key].as_array().cloned().unwrap_or_default();
    let mark = |v: &Value, time: &str, label: &str| {
        Some(plot::MembershipMark { time: v[time].as_u64()?, node: v["node"].as_u64()?, label: label.into() })
    };
    let promote = |v: &Value| {
        let label = if v["accepted"] == Value::Bool(true) { "promote" } else { "promote refused" };
        mark(v, "time", label)
    };
    let mut marks: Vec<plot::MembershipMark> = list("catch_ups")
        .iter()
        .filter_map(|v| mark(v, "start", "add-learner"))
        .chain(list("premature").iter().chain(&list("promotes")).filter_map(promote))
        .chain(list("removals").iter().filter_map(|v| mark(v, "time", "remove")))
        .collect();
    marks.sort_by_key(|m| m.time);
    marks
}

/// A catch-up plot per learner, from `catchup.jsonl` and the membership checker's promote
/// records (none when the run changed no membership).
fn catch_up_plots(dir: &Path, r: &Results) -> Result<Vec<(u64, Plot)>, ReportError> {
    let path = dir.join(store::CATCHUP);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Vec::new()) };
    let samples: Vec<CatchUpSample> = text
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| ReportError::file(&path, format!("line {}: {e}", i + 1))))
        .collect::<Result<_, _>>()?;
    let details = r.checkers.iter().find(|c| c.name == "membership").map(|c| &c.details);
    let records = |key: &str| -> Vec<PromoteRecord> {
        details.and_then(|d| serde_json::from_value(d[key].clone()).ok()).unwrap_or_default()
    };
    let (premature, promotes) = (records("premature"), records("promotes"));
    let learners: std::collections::BTreeSet<u64> = samples.iter().map(|s| s.node).collect();
    let mut out = Vec::new();
    for node in learners {
        let own: Vec<CatchUpSample> = samples.iter().filter(|s| s.node == node).cloned().collect();
        let marks: Vec<(&str, &PromoteRecord)> = premature
            .iter()
            .map(|p| ("premature", p))
            .chain(promotes.iter().map(|p| ("gated", p)))
            .filter(|(_, p)| p.node == node)
            .collect();
        let (svg, caption) = plot::catch_up(node, &own, &marks, &r.faults).map_err(|e| ReportError::file(&path, e))?;
        let learner = details
            .and_then(|d| d["learners"].as_array())
            .and_then(|ls| ls.iter().find(|l| l["node"].as_u64() == Some(node)));
        out.push((node, (svg, format!("{caption}{}", learner.map(rate).unwrap_or_default()))));
    }
    Ok(out)
}

/// A learner's catch-up figures from the membership checker, for its plot's caption.
fn rate(learner: &Value) -> String {
    let figure = |key: &str, unit: &str, digits: usize| {
        learner[key].as_f64().map_or_else(|| format!("{key}: none"), |v| format!("{v:.digits$} {unit}"))
    };
    format!(
        " Promotable after {}; catch-up rate {} and {} (snapshot bytes received {}).",
        figure("promotable_ms", "ms", 0),
        figure("entries_per_s", "entries/s", 0),
        figure("mb_per_s", "MB/s", 2),
        learner["snapshot_bytes"].as_u64().map_or_else(|| "not counted".into(), |b| b.to_string()),
    )
}

/// `svg` is inserted as markup: plotters drew it from our own code and escapes the text in it
/// (fault names, for one).
fn figure(id: &str, svg: &str, caption: &str) -> Markup {
    html! { figure.plot #(id) { (PreEscaped(svg)) figcaption { (caption) } } }
}

fn timeline_section(d: &Digest) -> Markup {
    html! {
        section #timeline {
            h2 { "History timeline" }
            p.muted {
                "One lane per process; each op a box from invocation to completion (green ok, red fail, amber info); \
                 hover for details. " (d.spans.len().min(TIMELINE_MAX)) " of " (d.spans.len())
                " ops are embedded; all are in history.jsonl."
            }
            div.controls {
                button #prev { "◀ earlier" }
                button #next { "later ▶" }
                input #goto type="number" placeholder="op index" style="width:110px";
                button #go { "show op" }
                span id="window" class="muted" {}
            }
            div #lanes {}
        }
    }
}

/// `value` as the text of a `<script type="application/json">`, for [`SCRIPT`] to read. A script
/// element's text is not HTML-unescaped, so it cannot go through maud's escaping; instead every
/// `<` becomes the JSON escape `\u003c` (it can only occur inside JSON strings, where it means
/// the same). Then no `</script>` can end the element early, and no `<!--<script>` can make the
/// parser swallow the rest of the page, which escaping `</` alone allowed.
fn script_json(value: &Value) -> PreEscaped<String> {
    PreEscaped(value.to_string().replace('<', "\\u003c"))
}

/// The ops the timeline embeds, as compact arrays:
/// `[index, process, f, call µs, return µs or -1, kind (0 ok, 1 fail, 2 info), node or -1, value]`.
fn timeline_data(d: &Digest, r: &Results) -> Value {
    let focus = r
        .checkers
        .iter()
        .filter_map(|c| c.details.get("failures").and_then(Value::as_array)?.first()?.get("op")?.get("index")?.as_u64())
        .next();
    let center = focus.map_or(0, |i| d.spans.partition_point(|s| s.index < i));
    let from = if d.spans.len() <= TIMELINE_MAX {
        0
    } else {
        center.saturating_sub(TIMELINE_MAX / 2).min(d.spans.len() - TIMELINE_MAX)
    };
    let ops: Vec<Value> = d.spans[from..(from + TIMELINE_MAX).min(d.spans.len())]
        .iter()
        .map(|s| {
            let kind = match s.kind {
                OpType::Ok => 0,
                OpType::Fail => 1,
                _ => 2,
            };
            json!([
                s.index,
                s.process,
                s.f,
                s.call / 1000,
                s.ret.map_or(-1, |r| (r / 1000) as i64),
                kind,
                s.node.map_or(-1, |n| n as i64),
                s.text
            ])
        })
        .collect();
    let faults: Vec<Value> =
        r.faults.iter().map(|f| json!([f.start / 1000, f.stop.unwrap_or(d.end) / 1000, f.fault])).collect();
    json!({"names": d.names, "ops": ops, "faults": faults, "first": from, "total": d.spans.len()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_checker::perf::Span;

    const HOSTILE: &str = r#"<script>alert(1)</script> "x""#;
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt; &quot;x&quot;";

    fn test_config() -> Test {
        serde_json::from_value(json!({
            "name": HOSTILE, "workload": "register", "nemesis": [HOSTILE], "env": "local", "nodes": 3,
            "groups": 1, "concurrency": 2, "rate": 10.0, "time_limit_s": 1.0, "seed": 1, "op_timeout_ms": 100,
            "nemesis_interval_s": 1.0, "fault_duration_s": 1.0, "keys": 1, "tick_ms": 10, "heartbeat_ticks": 2,
            "election_ticks": 10, "bugs": [], "broker_binary": "broker", "broker_version": "0", "ordeal_version": "0",
            "command": HOSTILE, "started_at": HOSTILE,
        }))
        .unwrap()
    }

    /// A run whose every string a person or a system under test could choose is hostile.
    fn analysis() -> Analysis {
        let span = |index, text: &str| Span {
            index,
            process: 0,
            f: 0,
            call: index * 1_000_000,
            ret: Some(index * 1_000_000 + 500_000),
            kind: OpType::Ok,
            node: Some(1),
            text: text.into(),
        };
        let fault = FaultWindow {
            fault: HOSTILE.into(),
            targets: vec![1],
            start: 1_000_000,
            stop: Some(2_000_000),
            gap_ms: Some(1.0),
            window_ms: None,
            load: FaultLoad::default(),
            stepped_down_ms: None,
            stepped_down: None,
        };
        let results = Results {
            version: crate::results::RESULTS_VERSION,
            verdict: Verdict::Invalid,
            reason: HOSTILE.into(),
            test: test_config(),
            run: Some(RunInfo { harness_error: Some(HOSTILE.into()), ..RunInfo::default() }),
            checkers: vec![CheckerResult {
                name: HOSTILE.into(),
                verdict: Verdict::Invalid,
                summary: HOSTILE.into(),
                details: json!({
                    "undecided": [{"partition": HOSTILE, "ops": 2, "reason": HOSTILE}],
                    "skipped": [{"partition": HOSTILE, "ranges": [[2, 2], [5, 7]], "count": 4}],
                }),
            }],
            stats: Stats::default(),
            faults: vec![fault],
            failover: Failover::default(),
            history_warning: Some(HOSTILE.into()),
            defects: vec![crate::results::Defect::Unreadable(HOSTILE.into())],
            phases: Vec::new(),
        };
        let digest = Digest {
            names: vec![HOSTILE.into()],
            spans: vec![span(0, "<!--<script>"), span(1, HOSTILE)],
            nemesis: vec![],
            end: 3_000_000,
        };
        Analysis { results, digest }
    }

    /// The hostile strings appear only escaped, and the page's own script elements are all there
    /// are.
    fn check(page: &str, scripts: usize) {
        assert!(page.contains(ESCAPED), "{page}");
        assert!(!page.contains("<script>alert") && !page.contains("\"x\""), "{page}");
        assert_eq!(page.matches("<script").count(), scripts, "{page}");
        assert_eq!(page.matches("</script>").count(), scripts, "{page}");
    }

    #[test]
    fn names_and_reasons_are_escaped_in_report_and_index() {
        let store = tempfile::tempdir().unwrap();
        let run = store::create_run_dir(store.path(), "test").unwrap();
        let a = analysis();
        std::fs::write(run.join(store::TEST), serde_json::to_string(&a.results.test).unwrap()).unwrap();
        std::fs::write(run.join(store::RESULTS), serde_json::to_string(&a.results).unwrap()).unwrap();

        let page = report(&run, &a).unwrap();
        check(&page, 2);
        assert!(page.contains(&format!("<title>ordeal: {ESCAPED} — invalid</title>")), "{page}");
        assert!(page.contains(&format!("<h1>INVALID</h1><p>{ESCAPED}</p>")), "{page}");
        assert!(page.contains(r#""\u003c!--\u003cscript>""#), "the timeline data cannot open a script: {page}");
        assert!(page.contains("<td>[[2,2],[5,7]]</td><td>4</td>"), "the skipped offsets are shown: {page}");

        write_index(store.path()).unwrap();
        let index = std::fs::read_to_string(store.path().join(store::INDEX)).unwrap();
        check(&index, 0);
        assert!(index.contains(&format!("/report.html\">{ESCAPED}</a>")), "{index}");
        assert!(index.contains(&format!("<td class=\"muted\">{ESCAPED}</td>")), "{index}");
    }

    #[test]
    fn a_run_ended_by_fault_rounds_shows_its_end_and_its_bound() {
        let mut t = test_config();
        assert_eq!(duration(&t), "1 s main phase; faults every 1.0 s for 1.0 s");
        (t.nemesis_order, t.fault_rounds, t.time_limit_s) = ("cycle".into(), Some(2), 126.0);
        assert_eq!(
            duration(&t),
            "main phase until every fault ran and healed 2 times (at most 126 s); faults every 1.0 s for 1.0 s"
        );
    }

    #[test]
    fn a_run_over_ssh_names_its_hosts() {
        let mut t = test_config();
        t.env = "ssh".into();
        let hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(String::from).to_vec();
        t.ssh =
            Some(ordeal_history::SshHosts { hosts, user: "ci".into(), port: 22, identity: None, known_hosts: None });
        let nodes = &test_rows(&t)[3];
        assert_eq!(nodes.1, "3 (1 raft group), env ssh on 10.0.0.1, 10.0.0.2, 10.0.0.3 as ci", "{nodes:?}");
    }

    #[test]
    fn listing_escapes_names_in_links() {
        let page = listing("a\"b/", &[HOSTILE.to_owned()]);
        check(&page, 0);
        assert!(page.contains(&format!("<li><a href=\"/a&quot;b/{ESCAPED}\">{ESCAPED}</a></li>")), "{page}");
    }
}
