//! `report.html` (one self-contained file: inline CSS, SVG and script, no network fetches) and
//! the store's `index.html`.

use crate::ReportError;
use crate::junit::escape;
use crate::plot;
use crate::results::{Analysis, Results};
use crate::store;
use ordeal_checker::Verdict;
use ordeal_checker::linear::{Counterexample, OpRef};
use ordeal_checker::perf::Digest;
use ordeal_history::OpType;
use serde_json::{Value, json};
use std::fmt::Write;
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

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    }
}

fn tag(v: Verdict) -> String {
    format!("<span class=\"tag {}\">{v}</span>", verdict_class(v))
}

fn op_link(o: &OpRef) -> String {
    format!(
        "<a class=\"op\" href=\"#op-{0}\" onclick=\"return showOp({0})\">op {0}</a> <span class=\"mono\">process {1}: {2}</span>",
        o.index,
        o.process,
        escape(&o.op)
    )
}

fn test_section(r: &Results) -> String {
    let t = &r.test;
    let system = match t.system.as_str() {
        "etcd" => format!("etcd, {} reads", t.etcd_reads),
        other => other.to_owned(),
    };
    let rows = [
        ("system", system),
        ("workload", t.workload.clone()),
        ("nemesis", if t.nemesis.is_empty() { "none".into() } else { t.nemesis.join(", ") }),
        (
            "nodes",
            format!("{} ({} raft group{}), env {}", t.nodes, t.groups, if t.groups == 1 { "" } else { "s" }, t.env),
        ),
        (
            "clients",
            format!("{} processes, at most {} ops/s, op timeout {} ms", t.concurrency, t.rate, t.op_timeout_ms),
        ),
        (
            "duration",
            format!(
                "{:.0} s main phase; faults every {:.1} s for {:.1} s",
                t.time_limit_s, t.nemesis_interval_s, t.fault_duration_s
            ),
        ),
        (
            "raft",
            format!(
                "tick {} ms, heartbeat {} ticks, election {} ticks",
                t.tick_ms, t.heartbeat_ticks, t.election_ticks
            ),
        ),
        ("versions", format!("ordeal {}, {} {} ({})", t.ordeal_version, t.system, t.broker_version, t.broker_binary)),
        ("deliberate bugs", if t.bugs.is_empty() { "none".into() } else { t.bugs.join(", ") }),
        ("seed", t.seed.to_string()),
        ("started", t.started_at.clone()),
    ];
    let mut s = String::from("<section id=\"test\"><h2>Test</h2><table>");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    let _ = write!(
        s,
        "<tr><th>reproduce</th><td><code>{}</code><br>or <code>ordeal run --test DIR/test.json</code></td></tr>",
        escape(&t.command)
    );
    if let Some(run) = &r.run {
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
        if !notes.is_empty() {
            let _ = write!(s, "<tr><th>run</th><td>{}</td></tr>", escape(&notes.join("; ")));
        }
    }
    s.push_str("</table></section>");
    s
}

fn counterexample(c: &Counterexample) -> String {
    let mut s = String::new();
    let _ = write!(s, "<p><b>{}</b></p>", escape(&c.explanation));
    let _ = write!(
        s,
        "<p>Partition <code>{}</code>: {} cannot be linearized in state <code>{}</code>.</p>",
        escape(c.partition.as_deref().unwrap_or("(whole history)")),
        op_link(&c.op),
        escape(&c.state)
    );
    let _ = write!(
        s,
        "<p>The longest legal order found has {} ops; its last {} steps, with the state after each:</p><table><tr><th>#</th><th>op</th><th>state after</th></tr>",
        c.prefix_len,
        c.prefix.len()
    );
    let first = c.prefix_len - c.prefix.len();
    for (i, step) in c.prefix.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            first + i + 1,
            op_link(&step.op),
            escape(&step.state)
        );
    }
    let _ = write!(s, "<tr><td>✗</td><td>{}</td><td>impossible</td></tr></table>", op_link(&c.op));
    if !c.concurrent.is_empty() {
        let ops: Vec<String> = c.concurrent.iter().map(op_link).collect();
        let _ = write!(s, "<p>Ops concurrent with it, tried in every order: {}</p>", ops.join("; "));
    }
    s
}

fn checkers_section(r: &Results) -> String {
    let mut s = String::from(
        "<section id=\"checkers\"><h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>summary</th></tr>",
    );
    for c in &r.checkers {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.name),
            tag(c.verdict),
            escape(&c.summary)
        );
    }
    s.push_str("</table>");
    for c in &r.checkers {
        if let Some(failures) = c.details.get("failures").and_then(Value::as_array) {
            for f in failures.iter().filter_map(|f| serde_json::from_value::<Counterexample>(f.clone()).ok()) {
                let _ = write!(
                    s,
                    "<h2 id=\"counterexample\">Counterexample ({})</h2>{}",
                    escape(&c.name),
                    counterexample(&f)
                );
            }
        }
        if let Some(undecided) = c.details.get("undecided").and_then(Value::as_array).filter(|u| !u.is_empty()) {
            let _ = write!(s, "<h2>Undecided partitions ({})</h2><ul>", escape(&c.name));
            for u in undecided {
                let _ = write!(
                    s,
                    "<li><code>{}</code> ({} ops): {}</li>",
                    escape(u["partition"].as_str().unwrap_or("-")),
                    u["ops"],
                    escape(u["reason"].as_str().unwrap_or(""))
                );
            }
            s.push_str("</ul>");
        }
        for kind in ["lost", "misplaced", "duplicated", "unexpected"] {
            let Some(list) = c.details.get(kind).and_then(Value::as_array).filter(|l| !l.is_empty()) else { continue };
            let _ = write!(
                s,
                "<h2>{} records ({})</h2><table><tr><th>partition</th><th>value</th><th>acknowledged at</th><th>found at</th><th>append</th></tr>",
                kind,
                list.len()
            );
            for a in list.iter().take(100) {
                let op = a["op_index"]
                    .as_u64()
                    .map(|i| format!("<a class=\"op\" href=\"#op-{i}\" onclick=\"return showOp({i})\">op {i}</a>"))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{op}</td></tr>",
                    escape(&a["partition"].to_string()),
                    escape(&a["value"].to_string()),
                    a["acked_offset"],
                    escape(&a["found_at"].to_string())
                );
            }
            s.push_str("</table>");
        }
    }
    let st = &r.stats;
    let _ = write!(
        s,
        "<h2>Operations</h2><table><tr><th>op</th><th>ok</th><th>fail</th><th>info</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>"
    );
    for (f, o) in st.by_f.iter().chain(std::iter::once((&"all".to_owned(), &st.total))) {
        let l = &o.latency;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.1} ms</td></tr>",
            escape(f),
            o.ok,
            o.fail,
            o.info,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.max_ms
        );
    }
    let _ = write!(s, "</table><p class=\"muted\">{:.0} ops/s over {:.1} s.</p>", st.throughput_per_s, st.duration_s);
    if !r.faults.is_empty() {
        s.push_str("<h2>Faults</h2><table><tr><th>#</th><th>fault</th><th>targets</th><th>at</th><th>healed</th><th>write gap</th><th>old leader</th></tr>");
        for (i, f) in r.faults.iter().enumerate() {
            let gap = f.gap_ms.map_or_else(|| "no write acknowledged after it".into(), |g| format!("{g:.0} ms"));
            let healed = f.stop.map_or_else(|| "-".into(), |t| format!("{:.2} s", t as f64 / 1e9));
            let leader = match (f.stepped_down, f.stepped_down_ms) {
                (Some(true), Some(ms)) => format!("stepped down after {ms:.0} ms"),
                (Some(false), _) => "still claimed leadership when healed".into(),
                _ => String::new(),
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{:.2} s</td><td>{healed}</td><td>{gap}</td><td>{leader}</td></tr>",
                i + 1,
                escape(&f.fault),
                f.targets,
                f.start as f64 / 1e9
            );
        }
        let fo = &r.failover;
        let _ = write!(
            s,
            "</table><p class=\"muted\">Median write gap {}, max {}.</p>",
            fo.gap_ms_median.map_or("-".into(), |v| format!("{v:.0} ms")),
            fo.gap_ms_max.map_or("-".into(), |v| format!("{v:.0} ms"))
        );
    }
    s.push_str("</section>");
    s
}

fn figure(id: &str, svg: &str, caption: &str) -> String {
    format!("<figure class=\"plot\" id=\"{id}\">{svg}<figcaption>{}</figcaption></figure>", escape(caption))
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

/// Renders `report.html` for the run in `dir`.
pub fn report(dir: &Path, a: &Analysis) -> Result<String, ReportError> {
    let r = &a.results;
    let d = &a.digest;
    let plot_err = |e: String| ReportError::file(&dir.join(store::REPORT), e);
    let status = std::fs::read_to_string(dir.join(store::STATUS)).unwrap_or_default();
    let mut figures = Vec::new();
    let (svg, caption) = plot::latency(d, &r.faults).map_err(plot_err)?;
    figures.push(figure("latency", &svg, &caption));
    let (svg, caption) = plot::quantiles(d, &r.faults).map_err(plot_err)?;
    figures.push(figure("quantiles", &svg, &caption));
    let (svg, caption) = plot::throughput(d, &r.faults).map_err(plot_err)?;
    figures.push(figure("throughput", &svg, &caption));
    if !r.faults.is_empty() {
        let (svg, caption) = plot::gaps(&r.faults).map_err(plot_err)?;
        figures.push(figure("gaps", &svg, &caption));
    }
    for (i, (svg, caption)) in plot::raft_timeline(&status, d, &r.faults).map_err(plot_err)?.into_iter().enumerate() {
        figures.push(figure(&format!("raft-{i}"), &svg, &caption));
    }
    let data = timeline_data(d, r).to_string().replace("</", "<\\/");
    let embedded = data.len();
    let mut html = String::with_capacity(embedded + figures.iter().map(String::len).sum::<usize>() + 20_000);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>ordeal: {name} — {verdict}</title><style>{STYLE}</style></head><body data-ready=\"no\">\
         <header class=\"banner {class}\" id=\"verdict\"><h1>{upper}</h1><p>{reason}</p></header>\
         <nav><a href=\"#test\">test</a><a href=\"#checkers\">checkers</a><a href=\"#plots\">plots</a><a href=\"#timeline\">history timeline</a>\
         <a href=\"results.json\">results.json</a><a href=\"history.jsonl\">history.jsonl</a><a href=\"../../index.html\">all runs</a></nav><main>",
        name = escape(&r.test.name),
        verdict = r.verdict,
        class = verdict_class(r.verdict),
        upper = r.verdict.to_string().to_uppercase(),
        reason = escape(&r.reason),
    );
    if let Some(w) = &r.history_warning {
        let _ = write!(html, "<section><b>History warning:</b> {}</section>", escape(w));
    }
    html.push_str(&test_section(r));
    html.push_str(&checkers_section(r));
    let _ = write!(html, "<section id=\"plots\"><h2>Plots</h2>{}</section>", figures.join(""));
    let _ = write!(
        html,
        "<section id=\"timeline\"><h2>History timeline</h2><p class=\"muted\">One lane per process; each op a box from invocation to \
         completion (green ok, red fail, amber info); hover for details. {} of {} ops are embedded; all are in history.jsonl.</p>\
         <div class=\"controls\"><button id=\"prev\">◀ earlier</button><button id=\"next\">later ▶</button>\
         <input id=\"goto\" type=\"number\" placeholder=\"op index\" style=\"width:110px\"><button id=\"go\">show op</button>\
         <span id=\"window\" class=\"muted\"></span></div><div id=\"lanes\"></div></section>",
        d.spans.len().min(TIMELINE_MAX),
        d.spans.len()
    );
    let _ = write!(
        html,
        "</main><script type=\"application/json\" id=\"ops\">{data}</script><script>{SCRIPT}</script></body></html>"
    );
    Ok(html)
}

/// Writes `index.html` into the store at `root`: every run, newest first.
pub fn write_index(root: &Path) -> Result<(), ReportError> {
    let mut rows = String::new();
    for run in store::runs(root) {
        let rel = run.strip_prefix(root).unwrap_or(&run).display().to_string();
        let results: Option<Results> = store::read_json(&run.join(store::RESULTS)).ok();
        let test: Option<ordeal_history::Test> = store::read_json(&run.join(store::TEST)).ok();
        let (verdict, reason, gap, ops) = match &results {
            Some(r) => (
                tag(r.verdict),
                escape(&r.reason),
                r.failover.gap_ms_median.map_or("-".into(), |g| format!("{g:.0} ms")),
                (r.stats.total.ok + r.stats.total.fail + r.stats.total.info).to_string(),
            ),
            None if run.join(store::PID).exists() => ("running".into(), String::new(), "-".into(), "-".into()),
            None => ("<span class=\"tag unknown\">no results</span>".into(), String::new(), "-".into(), "-".into()),
        };
        let (name, started, nemesis, duration) = test.as_ref().map_or_else(
            || (rel.clone(), String::new(), String::new(), String::new()),
            |t| (t.name.clone(), t.started_at.clone(), t.nemesis.join(", "), format!("{:.0} s", t.time_limit_s)),
        );
        let _ = write!(
            rows,
            "<tr><td>{verdict}</td><td><a href=\"{rel}/report.html\">{}</a></td><td>{}</td><td>{}</td><td>{duration}</td><td>{ops}</td><td>{gap}</td><td class=\"muted\">{reason}</td></tr>",
            escape(&name),
            escape(&started),
            escape(&nemesis)
        );
    }
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ordeal runs</title><style>{STYLE}</style></head>\
         <body data-ready=\"yes\"><header class=\"banner valid\" style=\"background:#232b3a\"><h1>ordeal runs</h1><p>{}</p></header><main><section>\
         <table><tr><th>verdict</th><th>test</th><th>started</th><th>nemesis</th><th>length</th><th>ops</th><th>median write gap</th><th>why</th></tr>{rows}</table>\
         </section></main></body></html>",
        escape(&root.display().to_string())
    );
    let path = root.join(store::INDEX);
    std::fs::write(&path, html).map_err(|e| ReportError::file(&path, e))
}
