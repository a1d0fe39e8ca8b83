//! `summary.md`: a short markdown summary, fit for a CI job summary.

use crate::results::Results;
use crate::shown;
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    shown(v, 0, " ms")
}

/// Renders the summary.
pub fn render(r: &Results) -> String {
    let t = &r.test;
    let mut out = String::new();
    let _ = writeln!(out, "## ordeal: {} — **{}**\n", t.name, r.verdict.to_string().to_uppercase());
    let _ = writeln!(out, "{}\n", r.reason);
    let _ = writeln!(
        out,
        "Workload `{}`, nemesis `{}`, {} nodes, {} clients, {:.0} s, seed {}.\n",
        t.workload,
        if t.nemesis.is_empty() { "none".into() } else { t.nemesis.join(",") },
        t.nodes,
        t.concurrency,
        t.time_limit_s,
        t.seed
    );
    out.push_str("| checker | verdict | summary |\n|---|---|---|\n");
    for c in &r.checkers {
        let _ = writeln!(out, "| {} | {} | {} |", c.name, c.verdict, c.summary.replace('|', "\\|"));
    }
    let s = &r.stats.total;
    let q = |v: Option<f64>| shown(v, 1, " ms");
    let _ = writeln!(
        out,
        "\nOps: {} ok, {} fail, {} info; {:.0} ops/s ({:.0} ok); ok latency p50 {}, p99 {}; every op's p99 {}.",
        s.ok,
        s.fail,
        s.info,
        r.stats.throughput_per_s,
        r.stats.ok_per_s,
        q(s.latency.p50_ms),
        q(s.latency.p99_ms),
        q(s.latency_all.p99_ms)
    );
    if !r.faults.is_empty() {
        let _ = writeln!(
            out,
            "\nFaults: {}; writes resumed after {} of them; write gap median {}, max {}.",
            r.failover.faults,
            r.failover.recovered,
            ms(r.failover.gap_ms_median),
            ms(r.failover.gap_ms_max)
        );
    }
    let _ = writeln!(out, "\nReproduce: `{}`", t.command);
    out
}
