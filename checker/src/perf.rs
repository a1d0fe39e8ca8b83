//! Performance and availability figures from a history: op counts, latency quantiles, and the
//! unavailability window around each fault, all computed from a compact [`Digest`].

use ordeal_history::{History, HistoryError, Op, OpType, Paired, Process, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Latency quantiles in milliseconds; each is `None` (`null` in JSON) when there was no sample:
/// a run that acknowledged nothing has no latency, and 0 would read as the best one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

impl Quantiles {
    /// Quantiles of `samples_ns` (sorted in place).
    ///
    /// # Examples
    ///
    /// ```
    /// use ordeal_checker::perf::Quantiles;
    /// let q = Quantiles::of(&mut [3_000_000, 1_000_000, 2_000_000]);
    /// assert_eq!((q.p50_ms, q.max_ms), (Some(2.0), Some(3.0)));
    /// assert_eq!(Quantiles::of(&mut []).p99_ms, None, "no samples, no quantile");
    /// ```
    pub fn of(samples_ns: &mut [u64]) -> Quantiles {
        if samples_ns.is_empty() {
            return Quantiles::default();
        }
        samples_ns.sort_unstable();
        let q = |p: f64| {
            let i = ((samples_ns.len() as f64 * p).ceil() as usize).clamp(1, samples_ns.len()) - 1;
            Some(samples_ns[i] as f64 / 1e6)
        };
        Quantiles { count: samples_ns.len(), p50_ms: q(0.50), p95_ms: q(0.95), p99_ms: q(0.99), max_ms: q(1.0) }
    }
}

/// Counts and latencies of one operation name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Completed `ok`.
    pub ok: usize,
    /// Completed `fail`.
    pub fail: usize,
    /// Completed `info` or never completed.
    pub info: usize,
    /// Latency of `ok` completions.
    pub latency: Quantiles,
    /// Latency of every op, whatever its outcome: a `fail` or `info` completion counts its own
    /// latency, an op that never completed its time until the history's end. Timeouts hide from
    /// [`OpStats::latency`]; they show here.
    #[serde(default)]
    pub latency_all: Quantiles,
}

/// Client op statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per operation name.
    pub by_f: BTreeMap<String, OpStats>,
    /// All client ops together.
    pub total: OpStats,
    /// Client ops completed per second over the whole history, whatever their outcome: under a
    /// rate limit it follows the rate, however many the system refused.
    pub throughput_per_s: f64,
    /// Client ops acknowledged (`ok`) per second over the whole history.
    #[serde(default)]
    pub ok_per_s: f64,
    /// From the first invocation to the last event, in seconds.
    pub duration_s: f64,
}

/// One client operation, compact: what plots, statistics and timelines need, without its full
/// value. A history of a million operations digests into about 100 MB.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The invocation's index.
    pub index: u64,
    /// The process.
    pub process: u64,
    /// The operation's name, as an index into [`Digest::names`].
    pub f: u16,
    /// Invocation time (ns).
    pub call: u64,
    /// Completion time (ns); `None` if it never completed.
    pub ret: Option<u64>,
    /// `Ok`, `Fail` or `Info` (never completed counts as `Info`).
    pub kind: OpType,
    /// The node that served it.
    pub node: Option<u64>,
    /// The value (completion's, else invocation's), as JSON cut to 48 characters.
    pub text: String,
}

/// A history boiled down to client [`Span`]s and the nemesis's ops, built in one streaming
/// pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Digest {
    /// Operation names; `Span::f` indexes this.
    pub names: Vec<String>,
    /// Client operations, in invocation order.
    pub spans: Vec<Span>,
    /// Nemesis ops, in history order.
    pub nemesis: Vec<Op>,
    /// Time of the last event (ns).
    pub end: u64,
}

fn cut(v: &serde_json::Value) -> String {
    let mut s = v.to_string();
    if s.len() > 48 {
        let mut at = 45;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push_str("...");
    }
    s
}

impl Digest {
    /// Digests a history streamed in order.
    pub fn of(ops: impl IntoIterator<Item = Op>) -> Result<Digest, HistoryError> {
        let mut d = Digest::default();
        let mut names: BTreeMap<String, u16> = BTreeMap::new();
        let mut protocol = Protocol::default();
        let mut open: Vec<Option<usize>> = Vec::new(); // token -> span position
        let mut free: Vec<usize> = Vec::new();
        for op in ops {
            d.end = d.end.max(op.time);
            if op.process == Process::Nemesis {
                protocol.push(&op, usize::MAX)?;
                d.nemesis.push(op);
                continue;
            }
            let token = free.last().copied().unwrap_or(open.len());
            match protocol.push(&op, token)? {
                Paired::Invoked => {
                    if free.pop().is_none() {
                        open.push(None);
                    }
                    let next = names.len() as u16;
                    let f = *names.entry(op.f.clone()).or_insert(next);
                    open[token] = Some(d.spans.len());
                    d.spans.push(Span {
                        index: op.index,
                        process: op.process.client().unwrap_or_default(),
                        f,
                        call: op.time,
                        ret: None,
                        kind: OpType::Info,
                        node: None,
                        text: cut(&op.value),
                    });
                }
                Paired::Completed { token } => {
                    free.push(token);
                    if let Some(i) = open[token].take() {
                        let s = &mut d.spans[i];
                        s.ret = Some(op.time);
                        s.kind = op.kind;
                        s.node = op.node;
                        if op.kind == OpType::Ok {
                            s.text = cut(&op.value);
                        }
                    }
                }
            }
        }
        d.names = vec![String::new(); names.len()];
        for (name, i) in names {
            d.names[i as usize] = name;
        }
        Ok(d)
    }

    /// Digests an in-memory history.
    pub fn of_history(history: &History) -> Result<Digest, HistoryError> {
        Digest::of(history.ops().iter().cloned())
    }

    /// The name of a span's operation.
    pub fn name(&self, span: &Span) -> &str {
        &self.names[span.f as usize]
    }

    /// Op counts and latency quantiles.
    pub fn stats(&self) -> Stats {
        let mut latencies: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        let (mut ok_all, mut any_all) = (Vec::with_capacity(self.spans.len()), Vec::with_capacity(self.spans.len()));
        let mut out = Stats::default();
        for s in &self.spans {
            let f = self.name(s);
            let entry = out.by_f.entry(f.to_owned()).or_default();
            let (ok, any) = latencies.entry(f).or_default();
            // An op still open at the end waited at least until then.
            let l = s.ret.unwrap_or(self.end).saturating_sub(s.call);
            any.push(l);
            any_all.push(l);
            match (s.kind, s.ret) {
                (OpType::Ok, Some(_)) => {
                    entry.ok += 1;
                    ok.push(l);
                    ok_all.push(l);
                }
                (OpType::Fail, _) => entry.fail += 1,
                _ => entry.info += 1,
            }
        }
        for (f, s) in out.by_f.iter_mut() {
            if let Some((ok, any)) = latencies.get_mut(f.as_str()) {
                s.latency = Quantiles::of(ok);
                s.latency_all = Quantiles::of(any);
            }
            out.total.ok += s.ok;
            out.total.fail += s.fail;
            out.total.info += s.info;
        }
        out.total.latency = Quantiles::of(&mut ok_all);
        out.total.latency_all = Quantiles::of(&mut any_all);
        let first = self.spans.first().map_or(0, |s| s.call);
        out.duration_s = self.end.saturating_sub(first) as f64 / 1e9;
        if out.duration_s > 0.0 {
            out.throughput_per_s = (out.total.ok + out.total.fail + out.total.info) as f64 / out.duration_s;
            out.ok_per_s = out.total.ok as f64 / out.duration_s;
        }
        out
    }

    /// For each fault the nemesis started (a `start` op that completed without error), the
    /// write gap: the time to the first `ok` completion of a write-like op (`writes`) after it,
    /// from any node that is serving. A node a fault stopped or cut off (killed, paused,
    /// terminated, on the minority side of a partition) is not serving until the fault is healed:
    /// a reply already on its way from a killed leader says nothing about availability. A node
    /// that is only slowed or has its clock moved (delay, loss, slow, clock faults) is serving.
    pub fn fault_windows(&self, writes: &[&str]) -> Vec<FaultWindow> {
        let mut write_oks: Vec<(u64, Option<u64>)> = self
            .spans
            .iter()
            .filter(|s| s.kind == OpType::Ok && writes.contains(&self.name(s)))
            .filter_map(|s| s.ret.map(|t| (t, s.node)))
            .collect();
        write_oks.sort_unstable();
        let done: Vec<&Op> = self.nemesis.iter().filter(|o| o.kind == OpType::Info).collect();
        let load = Load::of(self);
        let mut healed_before = 0;
        let mut out = Vec::new();
        for (i, op) in done.iter().enumerate() {
            if op.f != "start" || op.error.is_some() {
                continue;
            }
            let targets = node_ids(&op.value["targets"]);
            let down = not_serving(&op.value);
            let stopped = done[i + 1..].iter().find(|o| o.f == "stop");
            let stop = stopped.map(|o| o.time);
            let counts = |(t, node): &(u64, Option<u64>)| {
                *t > op.time && (node.is_none_or(|n| !down.contains(&n)) || stop.is_some_and(|s| *t > s))
            };
            let next = write_oks.iter().find(|w| counts(w)).map(|w| w.0);
            let before = write_oks.partition_point(|(t, _)| *t <= op.time);
            let prev = before.checked_sub(1).map(|i| write_oks[i].0);
            let calm_since = healed_before.max(load.first_call);
            healed_before = healed_before.max(stop.unwrap_or(self.end));
            out.push(FaultWindow {
                load: load.around(calm_since, op.time, stop.unwrap_or(self.end)),
                fault: op.value["fault"].as_str().unwrap_or(&op.f).to_owned(),
                targets,
                start: op.time,
                stop,
                gap_ms: next.map(|t| (t - op.time) as f64 / 1e6),
                window_ms: next.zip(prev).map(|(n, p)| (n - p) as f64 / 1e6),
                stepped_down: stopped.and_then(|o| o.value["stepped_down"].as_bool()),
                stepped_down_ms: stopped.and_then(|o| o.value["stepped_down_after_ms"].as_f64()),
            });
        }
        out
    }
}

fn node_ids(v: &Value) -> Vec<u64> {
    v.as_array().map(|t| t.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// The nodes a fault's start (`{"fault", "targets", "down"}`, or `{"parts": [...]}` for faults
/// that ran together) stopped or cut off: the nemesis names them in `down`.
fn not_serving(start: &Value) -> Vec<u64> {
    if let Some(parts) = start["parts"].as_array() {
        return parts.iter().flat_map(not_serving).collect();
    }
    if let Some(down) = start.get("down") {
        return node_ids(down);
    }
    // Histories recorded before the nemeses said which nodes they stopped: tell by name.
    let name = start["fault"].as_str().unwrap_or_default();
    let stops = ["kill", "pause", "terminate", "restart", "partition", "isolate"].iter().any(|p| name.starts_with(p));
    if stops { node_ids(&start["targets"]) } else { Vec::new() }
}

/// The unavailability around one fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The fault (e.g. `kill-leader`).
    pub fault: String,
    /// The nodes it hit.
    pub targets: Vec<u64>,
    /// When the fault took effect (ns since the test began): the nemesis's completion.
    pub start: u64,
    /// When it was healed, if it was.
    pub stop: Option<u64>,
    /// From the fault to the first acknowledged write after it, in ms; `null` if none came.
    pub gap_ms: Option<f64>,
    /// From the last acknowledged write before the fault to the first after it, in ms.
    pub window_ms: Option<f64>,
    /// For an isolated leader: whether it stepped down before the fault was healed
    /// (check-quorum), and how long after the cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepped_down_ms: Option<f64>,
    /// The client load while the fault lasted, beside the calm time before it.
    #[serde(default)]
    pub load: FaultLoad,
    /// For an isolated leader: whether it stepped down at all while cut off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepped_down: Option<bool>,
}

/// Client operations acknowledged while a fault lasted, beside the same length of calm time just
/// before it (after the previous fault healed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultLoad {
    /// Acknowledged (`ok`) client operations per second before the fault; `null` if there was
    /// no calm time before it.
    pub before_per_s: Option<f64>,
    /// Acknowledged client operations per second from the fault until it healed (or the end).
    pub during_per_s: f64,
    /// `during_per_s / before_per_s`.
    pub ratio: Option<f64>,
    /// Latency of the operations acknowledged while the fault lasted.
    pub latency: Quantiles,
}

/// Every acknowledged client operation's completion time and latency, in completion order.
struct Load {
    acks: Vec<(u64, u64)>,
    first_call: u64,
}

impl Load {
    fn of(d: &Digest) -> Load {
        let mut acks: Vec<(u64, u64)> = d
            .spans
            .iter()
            .filter(|s| s.kind == OpType::Ok)
            .filter_map(|s| s.ret.map(|r| (r, r.saturating_sub(s.call))))
            .collect();
        acks.sort_unstable();
        Load { acks, first_call: d.spans.first().map_or(0, |s| s.call) }
    }

    /// The acknowledgements in `(from, to]`.
    fn between(&self, from: u64, to: u64) -> &[(u64, u64)] {
        let a = self.acks.partition_point(|(t, _)| *t <= from);
        let b = self.acks.partition_point(|(t, _)| *t <= to);
        &self.acks[a..b.max(a)]
    }

    /// The load from `start` to `end`, and before it over as long a time, not reaching back past
    /// `calm_since`.
    fn around(&self, calm_since: u64, start: u64, end: u64) -> FaultLoad {
        let per_s = |n: usize, ns: u64| n as f64 / (ns as f64 / 1e9);
        let during = self.between(start, end);
        let long = end.saturating_sub(start);
        let from = start.saturating_sub(long).max(calm_since);
        let before_per_s = (start > from).then(|| per_s(self.between(from, start).len(), start - from));
        let during_per_s = if long > 0 { per_s(during.len(), long) } else { 0.0 };
        let mut latencies: Vec<u64> = during.iter().map(|(_, l)| *l).collect();
        FaultLoad {
            before_per_s,
            during_per_s,
            ratio: before_per_s.filter(|b| *b > 0.0).map(|b| during_per_s / b),
            latency: Quantiles::of(&mut latencies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_history::Op;
    use serde_json::json;

    #[test]
    fn quantiles_and_gaps() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let q = Quantiles::of(&mut v);
        assert_eq!((q.p50_ms, q.p99_ms, q.max_ms), (Some(50.0), Some(99.0), Some(100.0)));

        let mut h = History::new();
        let c = Process::Client(0);
        h.push(Op::invoke(c, "write", json!(1)).at(0));
        h.push(Op::invoke(c, "write", json!(1)).at(10_000_000).completed(OpType::Ok));
        h.push(Op::invoke(c, "write", json!(9)).at(15_000_000));
        h.push(Op::invoke(Process::Nemesis, "start", json!({"fault": "kill-leader"})).at(19_000_000));
        let started = json!({"fault": "kill-leader", "targets": [1]});
        h.push(Op::invoke(Process::Nemesis, "start", started).at(20_000_000).completed(OpType::Info));
        let mut late_ack = Op::invoke(c, "write", json!(9)).at(20_500_000).completed(OpType::Ok);
        late_ack.node = Some(1);
        h.push(late_ack);
        h.push(Op::invoke(c, "write", json!(2)).at(30_000_000));
        let mut ack = Op::invoke(c, "write", json!(2)).at(520_000_000).completed(OpType::Ok);
        ack.node = Some(2);
        h.push(ack);
        let d = Digest::of_history(&h).unwrap();
        let w = d.fault_windows(&["write"]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].targets, vec![1]);
        assert_eq!(w[0].gap_ms, Some(500.0), "the killed leader's late ack does not end the gap");
        assert_eq!(w[0].window_ms, Some(510.0));
        let s = d.stats();
        assert_eq!(s.by_f["write"].ok, 3);
    }

    /// Two acks in 1 ms, a refusal in 2 ms and a timeout after 1 s, over 2.5 s: the rate counts all
    /// four, `ok_per_s` the acks; the ok latency hides the timeout, `latency_all` does not.
    #[test]
    fn refusals_and_timeouts_show_in_ok_throughput_and_every_op_latency() {
        let mut h = History::new();
        let c = Process::Client(0);
        let ms = 1_000_000;
        for (i, (kind, took)) in
            [(OpType::Ok, 1), (OpType::Ok, 1), (OpType::Fail, 2), (OpType::Info, 1000)].into_iter().enumerate()
        {
            let call = i as u64 * 500 * ms;
            h.push(Op::invoke(c, "write", json!(i)).at(call));
            h.push(Op::invoke(c, "write", json!(i)).at(call + took * ms).completed(kind));
        }
        let s = Digest::of_history(&h).unwrap().stats();
        assert_eq!((s.duration_s, s.throughput_per_s, s.ok_per_s), (2.5, 1.6, 0.8));
        assert_eq!(s.total.latency.p99_ms, Some(1.0));
        assert_eq!(s.total.latency_all.p99_ms, Some(1000.0));
        assert_eq!(s.by_f["write"].latency_all.count, 4);
    }

    #[test]
    fn no_acknowledged_op_has_no_latency() {
        let mut h = History::new();
        h.push(Op::invoke(Process::Client(0), "write", json!(1)).at(0));
        h.push(Op::invoke(Process::Client(0), "write", json!(1)).at(5).completed(OpType::Info));
        let s = Digest::of_history(&h).unwrap().stats();
        assert_eq!((s.total.latency.count, s.total.latency.p99_ms), (0, None));
        assert_eq!(s.ok_per_s, 0.0);
        let json = serde_json::to_value(&s.total.latency).unwrap();
        assert_eq!(json["p99_ms"], Value::Null, "null, not 0: {json}");
    }

    /// A fault started at 20 ms, then acks from node 1 at 20.5 ms and node 2 at 520 ms: the
    /// write gap as `fault_windows` measures it.
    fn gap_after(started: Value) -> Option<f64> {
        let mut h = History::new();
        let c = Process::Client(0);
        h.push(Op::invoke(Process::Nemesis, "start", json!({"fault": started["fault"]})).at(19_000_000));
        h.push(Op::invoke(Process::Nemesis, "start", started).at(20_000_000).completed(OpType::Info));
        for (i, (node, at)) in [(1, 20_500_000), (2, 520_000_000)].into_iter().enumerate() {
            h.push(Op::invoke(c, "write", json!(i)).at(at - 100));
            let mut ack = Op::invoke(c, "write", json!(i)).at(at).completed(OpType::Ok);
            ack.node = Some(node);
            h.push(ack);
        }
        Digest::of_history(&h).unwrap().fault_windows(&["write"])[0].gap_ms
    }

    #[test]
    fn load_during_a_fault_beside_the_calm_before_it() {
        let mut h = History::new();
        let c = Process::Client(0);
        let ms = 1_000_000;
        // Ten 1 ms acks a second for one second, then a fault for a second with two 100 ms acks.
        let mut ack = |call: u64, ret: u64| {
            h.push(Op::invoke(c, "write", json!(call)).at(call));
            h.push(Op::invoke(c, "write", json!(call)).at(ret).completed(OpType::Ok));
        };
        (0..10).for_each(|i| ack(i * 100 * ms, i * 100 * ms + ms));
        ack(1_100 * ms, 1_200 * ms);
        ack(1_500 * ms, 1_600 * ms);
        h.push(Op::invoke(Process::Nemesis, "start", json!({"fault": "delay"})).at(999 * ms));
        let started = json!({"fault": "delay", "targets": [1], "down": []});
        h.push(Op::invoke(Process::Nemesis, "start", started).at(1_000 * ms).completed(OpType::Info));
        h.push(Op::invoke(Process::Nemesis, "stop", json!({"fault": "delay"})).at(1_999 * ms));
        h.push(Op::invoke(Process::Nemesis, "stop", json!({})).at(2_000 * ms).completed(OpType::Info));
        let w = &Digest::of_history(&h).unwrap().fault_windows(&["write"])[0];
        assert_eq!(w.load.during_per_s, 2.0);
        assert_eq!(w.load.before_per_s, Some(10.0), "the first call is at 0; its ack at 1 ms counts");
        assert_eq!(w.load.ratio, Some(0.2));
        assert_eq!((w.load.latency.count, w.load.latency.p99_ms), (2, Some(100.0)));
    }

    #[test]
    fn the_nemesis_names_the_nodes_it_stopped() {
        assert_eq!(gap_after(json!({"fault": "pause-leader", "targets": [1], "down": []})), Some(0.5));
        assert_eq!(gap_after(json!({"fault": "future-fault", "targets": [1], "down": [1]})), Some(500.0));
    }

    #[test]
    fn a_node_that_is_only_slowed_keeps_serving() {
        assert_eq!(gap_after(json!({"fault": "delay", "targets": [1, 2, 3]})), Some(0.5));
        assert_eq!(gap_after(json!({"fault": "clock-skew", "targets": [1]})), Some(0.5));
        assert_eq!(gap_after(json!({"fault": "pause-leader", "targets": [1]})), Some(500.0));
        assert_eq!(gap_after(json!({"fault": "partition-leader", "targets": [1]})), Some(500.0));
        let set = json!({"fault": "delay+partition-one", "targets": [1, 2, 3], "parts": [
            {"fault": "delay", "targets": [1, 2, 3]}, {"fault": "partition-one", "targets": [1]}]});
        assert_eq!(gap_after(set), Some(500.0), "cut off by one part, only slowed by the other");
    }
}
