//! Performance and availability figures from a history: op counts, latency quantiles, and the
//! unavailability window around each fault.

use ordeal_history::{History, HistoryError, OpType, Process};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Quantiles {
    /// Quantiles of `samples_ns` (sorted in place).
    pub fn of(samples_ns: &mut [u64]) -> Quantiles {
        if samples_ns.is_empty() {
            return Quantiles::default();
        }
        samples_ns.sort_unstable();
        let q = |p: f64| {
            let i = ((samples_ns.len() as f64 * p).ceil() as usize).clamp(1, samples_ns.len()) - 1;
            samples_ns[i] as f64 / 1e6
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
}

/// Client op statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per operation name.
    pub by_f: BTreeMap<String, OpStats>,
    /// All client ops together.
    pub total: OpStats,
    /// Client ops completed per second over the whole history.
    pub throughput_per_s: f64,
    /// From the first invocation to the last event, in seconds.
    pub duration_s: f64,
}

/// Computes [`Stats`].
pub fn stats(history: &History) -> Result<Stats, HistoryError> {
    let ops = history.ops();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut out = Stats::default();
    for pair in history.pairs()? {
        let invoke = &ops[pair.invoke];
        if !invoke.is_client() {
            continue;
        }
        let entry = out.by_f.entry(invoke.f.clone()).or_default();
        let completion = pair.completion.map(|c| &ops[c]);
        match completion.map(|c| c.kind) {
            Some(OpType::Ok) => {
                let c = completion.expect("matched Some");
                entry.ok += 1;
                let l = c.time.saturating_sub(invoke.time);
                latencies.entry(invoke.f.clone()).or_default().push(l);
                all.push(l);
            }
            Some(OpType::Fail) => entry.fail += 1,
            _ => entry.info += 1,
        }
    }
    for (f, s) in out.by_f.iter_mut() {
        s.latency = Quantiles::of(latencies.get_mut(f).map(Vec::as_mut_slice).unwrap_or_default());
        out.total.ok += s.ok;
        out.total.fail += s.fail;
        out.total.info += s.info;
    }
    out.total.latency = Quantiles::of(&mut all);
    let first = ops.first().map_or(0, |o| o.time);
    let last = ops.last().map_or(0, |o| o.time);
    out.duration_s = last.saturating_sub(first) as f64 / 1e9;
    if out.duration_s > 0.0 {
        out.throughput_per_s = (out.total.ok + out.total.fail + out.total.info) as f64 / out.duration_s;
    }
    Ok(out)
}

/// The unavailability around one fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The nemesis op's `f` (e.g. `kill-leader`).
    pub fault: String,
    /// The fault op's value (its targets).
    pub targets: serde_json::Value,
    /// When the fault started (ns since the test began).
    pub start: u64,
    /// From the fault to the first acknowledged write after it, in ms; `null` if none came.
    pub gap_ms: Option<f64>,
    /// From the last acknowledged write before the fault to the first after it, in ms.
    pub window_ms: Option<f64>,
}

/// For each fault the nemesis started (an `info` completion of one of `faults`), the write gap:
/// the time to the first `ok` completion of a write-like op (`writes`) after it.
pub fn fault_windows(history: &History, faults: &[&str], writes: &[&str]) -> Vec<FaultWindow> {
    let ops = history.ops();
    let write_oks: Vec<u64> = ops
        .iter()
        .filter(|o| o.is_client() && o.kind == OpType::Ok && writes.contains(&o.f.as_str()))
        .map(|o| o.time)
        .collect();
    ops.iter()
        .filter(|o| o.process == Process::Nemesis && o.kind == OpType::Invoke && faults.contains(&o.f.as_str()))
        .map(|fault| {
            let after = write_oks.partition_point(|t| *t <= fault.time);
            let next = write_oks.get(after).copied();
            let prev = after.checked_sub(1).map(|i| write_oks[i]);
            FaultWindow {
                fault: fault.f.clone(),
                targets: fault.value.clone(),
                start: fault.time,
                gap_ms: next.map(|t| (t - fault.time) as f64 / 1e6),
                window_ms: next.zip(prev).map(|(n, p)| (n - p) as f64 / 1e6),
            }
        })
        .collect()
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
        assert_eq!((q.p50_ms, q.p99_ms, q.max_ms), (50.0, 99.0, 100.0));

        let mut h = History::new();
        let c = Process::Client(0);
        h.push(Op::invoke(c, "write", json!(1)).at(0));
        h.push(Op::invoke(c, "write", json!(1)).at(10_000_000).completed(OpType::Ok));
        h.push(Op::invoke(Process::Nemesis, "kill-leader", json!({"nodes": [1]})).at(20_000_000));
        h.push(
            Op::invoke(Process::Nemesis, "kill-leader", json!({"nodes": [1]})).at(21_000_000).completed(OpType::Info),
        );
        h.push(Op::invoke(c, "write", json!(2)).at(30_000_000));
        h.push(Op::invoke(c, "write", json!(2)).at(520_000_000).completed(OpType::Ok));
        let w = fault_windows(&h, &["kill-leader"], &["write"]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].gap_ms, Some(500.0));
        assert_eq!(w[0].window_ms, Some(510.0));
        let s = stats(&h).unwrap();
        assert_eq!(s.by_f["write"].ok, 2);
    }
}
