//! Anomalies of partition logs: what the final reads show about every acknowledged record.
//!
//! The log workload ends by reading each partition from offset 0 to its end in one `read` op
//! marked `"final": true`. Against those reads this checker finds:
//!
//! * **lost**: an acknowledged record that is not in the log;
//! * **misplaced**: an acknowledged record found at an offset other than the one acknowledged;
//! * **duplicated**: a record that appears more than once;
//! * **unexpected**: a record nobody appended;
//! * **skipped**: an offset below the last record read that holds no record (offsets count up one
//!   by one).
//!
//! Records sit at the offsets the read names beside its values (`"offsets"`); a history that names
//! none (an older one, another tool's) has them at 0, 1, ... in order.
//!
//! Ordering and read anomalies during the run are the linearizability checker's job (`log`
//! model); this one is cheap and explains lost data in plain words.

use crate::Verdict;
use ordeal_history::{History, HistoryError, OpType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One anomalous record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordAnomaly {
    /// The partition.
    pub partition: String,
    /// The record's value.
    pub value: Value,
    /// The offset its append was acknowledged at, if it was.
    pub acked_offset: Option<u64>,
    /// The offsets where the final read found it.
    pub found_at: Vec<u64>,
    /// The index of the append's invocation, when someone appended it.
    pub op_index: Option<u64>,
}

/// Offsets of a partition that hold no record, though a later offset does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The partition.
    pub partition: String,
    /// The empty offsets, as ranges `[first, last]` (one per hole: a read that names an absurd
    /// offset costs one range, not a list as long as the hole).
    pub ranges: Vec<[u64; 2]>,
    /// How many offsets the ranges hold.
    pub count: u64,
}

/// The result of the log check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogReport {
    /// The verdict.
    pub verdict: Verdict,
    /// Partitions with a final read.
    pub partitions: usize,
    /// Acknowledged appends.
    pub acknowledged: usize,
    /// Records in the final reads.
    pub records: usize,
    /// Acknowledged records missing from the log.
    pub lost: Vec<RecordAnomaly>,
    /// Acknowledged records at another offset.
    pub misplaced: Vec<RecordAnomaly>,
    /// Records found more than once.
    pub duplicated: Vec<RecordAnomaly>,
    /// Records nobody appended.
    pub unexpected: Vec<RecordAnomaly>,
    /// Offsets without a record, below a partition's last record.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Why the verdict is unknown, if it is.
    pub reason: Option<String>,
}

impl LogReport {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        match self.verdict {
            Verdict::Valid => {
                format!("valid ({} acknowledged records, all read back once at their offsets)", self.acknowledged)
            }
            Verdict::Unknown => format!("unknown: {}", self.reason.as_deref().unwrap_or("no final reads")),
            Verdict::Invalid => format!(
                "invalid: {} lost, {} misplaced, {} duplicated, {} unexpected of {} acknowledged records, {} \
                 offsets skipped{}{}",
                self.lost.len(),
                self.misplaced.len(),
                self.duplicated.len(),
                self.unexpected.len(),
                self.acknowledged,
                self.skipped.iter().map(|s| s.count).sum::<u64>(),
                named("lost", &self.lost),
                named("duplicated", &self.duplicated),
            ),
        }
    }
}

/// The first few records of an anomaly by value, partition and offset: the summary names the
/// lost writes themselves, so that a failed gate or suite line says what was lost.
fn named(kind: &str, list: &[RecordAnomaly]) -> String {
    const SHOWN: usize = 5;
    if list.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = list
        .iter()
        .take(SHOWN)
        .map(|a| match a.acked_offset {
            Some(o) => format!("{} (partition {}, acknowledged at offset {o})", a.value, a.partition),
            None => format!("{} (partition {})", a.value, a.partition),
        })
        .collect();
    let more = list.len().saturating_sub(SHOWN);
    format!("; {kind}: {}{}", shown.join(", "), if more > 0 { format!(" and {more} more") } else { String::new() })
}

fn key(v: &Value) -> Option<String> {
    match v.get("key")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Checks the final reads of a log history.
pub fn check(history: &History) -> Result<LogReport, HistoryError> {
    let ops = history.ops();
    // partition -> value -> (acked offset, invoke index); and values appended with unknown outcome
    let mut acked: BTreeMap<String, Vec<(Value, u64, u64)>> = BTreeMap::new();
    let mut attempted: HashMap<String, HashSet<String>> = HashMap::new();
    // Every partition anything was appended to, failed appends too: a record the system said it
    // did not write is only shown unexpected by that partition's final read.
    let mut appended_to: BTreeSet<String> = BTreeSet::new();
    let mut finals: BTreeMap<String, Vec<(u64, Value)>> = BTreeMap::new();
    // Per partition, why its longest final read is not the whole log, if it is not.
    let mut short: BTreeMap<String, Option<String>> = BTreeMap::new();
    for pair in history.pairs()? {
        let invoke = &ops[pair.invoke];
        if !invoke.is_client() {
            continue;
        }
        if is_append(&invoke.f) {
            appended_to.extend(key(&invoke.value));
        }
        let Some(c) = pair.completion.map(|c| &ops[c]) else {
            if is_append(&invoke.f) {
                attempted
                    .entry(key(&invoke.value).unwrap_or_default())
                    .or_default()
                    .insert(invoke.value["value"].to_string());
            }
            continue;
        };
        match invoke.f.as_str() {
            f if is_append(f) => {
                let Some(k) = key(&invoke.value) else { continue };
                if c.kind != OpType::Fail {
                    attempted.entry(k.clone()).or_default().insert(invoke.value["value"].to_string());
                }
                if c.kind == OpType::Ok
                    && let Some(offset) = c.value.get("offset").and_then(Value::as_u64)
                {
                    acked.entry(k).or_default().push((invoke.value["value"].clone(), offset, invoke.index));
                }
            }
            "read" | "fetch" | "poll"
                if c.kind == OpType::Ok && invoke.value.get("final") == Some(&Value::Bool(true)) =>
            {
                if let (Some(k), Some(values)) = (key(&invoke.value), c.value.get("values").and_then(Value::as_array)) {
                    // A read from further on than 0 is not the whole log.
                    if let Some(from) = c.value.get("from").and_then(Value::as_u64).filter(|f| *f > 0) {
                        let why = format!("the final read of partition {k} started at offset {from}, not 0");
                        short.entry(k).or_insert(Some(why));
                        continue;
                    }
                    let records = match placed(&c.value, values) {
                        Ok(records) => records,
                        Err(why) => {
                            short.entry(k.clone()).or_insert(Some(format!("the final read of partition {k}: {why}")));
                            continue;
                        }
                    };
                    // The longest, and of equally long ones the last: a retry that completed.
                    let longest = finals.get(&k).is_none_or(|seen| seen.len() <= records.len());
                    if longest {
                        short.insert(k.clone(), stopped_short(&k, &c.value, &records));
                        finals.insert(k, records);
                    }
                }
            }
            _ => {}
        }
    }
    let mut report = LogReport {
        verdict: Verdict::Valid,
        partitions: finals.len(),
        acknowledged: acked.values().map(Vec::len).sum(),
        records: finals.values().map(Vec::len).sum(),
        lost: vec![],
        misplaced: vec![],
        duplicated: vec![],
        unexpected: vec![],
        skipped: vec![],
        reason: None,
    };
    let missing: Vec<&String> = appended_to.iter().filter(|k| !finals.contains_key(*k)).collect();
    for (partition, records) in &finals {
        let mut positions: HashMap<String, Vec<u64>> = HashMap::new();
        for (offset, v) in records {
            positions.entry(v.to_string()).or_default().push(*offset);
        }
        if let Some(skipped) = holes(partition, records) {
            report.skipped.push(skipped);
        }
        let acks = acked.get(partition).map(Vec::as_slice).unwrap_or_default();
        let acked_index: HashMap<String, (u64, u64)> = acks.iter().map(|(v, o, i)| (v.to_string(), (*o, *i))).collect();
        for (value, offset, index) in acks {
            let found_at = positions.get(&value.to_string()).cloned().unwrap_or_default();
            let anomaly = || RecordAnomaly {
                partition: partition.clone(),
                value: value.clone(),
                acked_offset: Some(*offset),
                found_at: found_at.clone(),
                op_index: Some(*index),
            };
            if found_at.is_empty() {
                report.lost.push(anomaly());
            } else if !found_at.contains(offset) {
                report.misplaced.push(anomaly());
            }
        }
        let appended = attempted.get(partition);
        for (value, found_at) in &positions {
            let ack = acked_index.get(value);
            let parsed: Value = serde_json::from_str(value).unwrap_or(Value::Null);
            let anomaly = RecordAnomaly {
                partition: partition.clone(),
                value: parsed,
                acked_offset: ack.map(|(o, _)| *o),
                found_at: found_at.clone(),
                op_index: ack.map(|(_, i)| *i),
            };
            if found_at.len() > 1 {
                report.duplicated.push(anomaly);
            } else if !appended.is_some_and(|a| a.contains(value)) {
                report.unexpected.push(anomaly);
            }
        }
    }
    report.duplicated.sort_by_key(|a| a.found_at.first().copied());
    report.unexpected.sort_by_key(|a| a.found_at.first().copied());
    if !(report.lost.is_empty()
        && report.misplaced.is_empty()
        && report.duplicated.is_empty()
        && report.unexpected.is_empty()
        && report.skipped.is_empty())
    {
        report.verdict = Verdict::Invalid;
    } else if !missing.is_empty() {
        report.verdict = Verdict::Unknown;
        let mut why = vec![format!("no final read of partition(s) {missing:?}, which were appended to")];
        why.extend(short.into_values().flatten());
        report.reason = Some(why.join("; "));
    } else if short.values().any(Option::is_some) {
        report.verdict = Verdict::Unknown;
        report.reason = Some(short.into_values().flatten().collect::<Vec<_>>().join("; "));
    } else if report.acknowledged == 0 {
        report.verdict = Verdict::Unknown;
        report.reason = Some("no append was acknowledged, so no record's fate was checked".into());
    }
    Ok(report)
}

/// Whether an op named `f` appends a record.
fn is_append(f: &str) -> bool {
    matches!(f, "append" | "produce" | "send")
}

/// A final read's records at their offsets: those its completion names beside the values, or
/// 0, 1, ... where it names none.
fn placed(completion: &Value, values: &[Value]) -> Result<Vec<(u64, Value)>, String> {
    let Some(offsets) = completion.get("offsets") else {
        return Ok((0u64..).zip(values.iter().cloned()).collect());
    };
    let offsets: Vec<u64> = offsets
        .as_array()
        .and_then(|list| list.iter().map(Value::as_u64).collect())
        .ok_or_else(|| format!("its offsets are not a list of numbers: {offsets}"))?;
    if offsets.len() != values.len() {
        return Err(format!("{} offsets for {} values", offsets.len(), values.len()));
    }
    Ok(offsets.into_iter().zip(values.iter().cloned()).collect())
}

/// The offsets below the last of `records` that hold none.
fn holes(partition: &str, records: &[(u64, Value)]) -> Option<Skipped> {
    let held: BTreeSet<u64> = records.iter().map(|(o, _)| *o).collect();
    let (mut ranges, mut count, mut next) = (Vec::new(), 0, 0u64);
    for offset in held {
        if offset > next {
            ranges.push([next, offset - 1]);
            count += offset - next;
        }
        next = offset.saturating_add(1);
    }
    (!ranges.is_empty()).then(|| Skipped { partition: partition.to_owned(), ranges, count })
}

/// Why a final read of partition `key` that returned `records` is not the whole log: it stopped
/// below the high watermark it reported (`hw`), so its tail went unchecked.
fn stopped_short(key: &str, value: &Value, records: &[(u64, Value)]) -> Option<String> {
    let hw = value.get("hw").and_then(Value::as_u64)?;
    let end = records.iter().map(|(o, _)| o.saturating_add(1)).max().unwrap_or(0);
    (end < hw).then(|| format!("the final read of partition {key} stopped at {end} of high watermark {hw}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordeal_history::{Op, Process};
    use serde_json::json;

    fn append(h: &mut History, p: u64, value: i64, offset: Option<u64>) {
        h.push(Op::invoke(Process::Client(p), "append", json!({"key": "t-0", "value": value})));
        let done = match offset {
            Some(o) => Op::invoke(Process::Client(p), "append", json!({"key": "t-0", "value": value, "offset": o}))
                .completed(OpType::Ok),
            None => {
                Op::invoke(Process::Client(p), "append", json!({"key": "t-0", "value": value})).completed(OpType::Info)
            }
        };
        h.push(done);
    }

    fn final_read(h: &mut History, values: Vec<i64>) {
        let hw = values.len() as u64;
        final_read_below(h, values, hw);
    }

    #[test]
    fn finds_lost_misplaced_duplicated_and_unexpected_records() {
        let mut h = History::new();
        append(&mut h, 1, 10, Some(0));
        append(&mut h, 2, 11, Some(1));
        append(&mut h, 3, 12, Some(2));
        append(&mut h, 4, 13, None);
        final_read(&mut h, vec![10, 12, 12, 99]);
        let r = check(&h).unwrap();
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.lost.iter().map(|a| a.value.clone()).collect::<Vec<_>>(), vec![json!(11)]);
        assert_eq!(r.duplicated[0].found_at, vec![1, 2]);
        assert_eq!(r.unexpected[0].value, json!(99));
        assert!(r.misplaced.is_empty(), "12 is at its offset 2 too: a duplicate, not misplaced");
        assert!(
            r.summary().contains("; lost: 11 (partition t-0, acknowledged at offset 1); duplicated: 12"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_clean_log_is_valid_and_unacknowledged_records_may_appear() {
        let mut h = History::new();
        append(&mut h, 1, 10, Some(0));
        append(&mut h, 2, 13, None);
        append(&mut h, 3, 11, Some(2));
        final_read(&mut h, vec![10, 13, 11]);
        let r = check(&h).unwrap();
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        let mut missing = History::new();
        append(&mut missing, 1, 10, Some(0));
        assert_eq!(check(&missing).unwrap().verdict, Verdict::Unknown);
    }

    /// A final read whose completion says `values` from 0 below high watermark `hw`.
    fn final_read_below(h: &mut History, values: Vec<i64>, hw: u64) {
        final_read_answered(h, json!({"key": "t-0", "from": 0, "values": values, "hw": hw}));
    }

    /// A final read of partition t-0 from the offset `completion` names, answered with it.
    fn final_read_answered(h: &mut History, completion: Value) {
        let asked = json!({"key": "t-0", "from": completion["from"], "final": true});
        h.push(Op::invoke(Process::Client(99), "read", asked));
        h.push(Op::invoke(Process::Client(99), "read", completion).completed(OpType::Ok));
    }

    #[test]
    fn missing_evidence_is_unknown_not_valid() {
        // Every append failed or timed out: nothing acknowledged, nothing checked.
        let mut none = History::new();
        append(&mut none, 1, 10, None);
        final_read(&mut none, vec![10]);
        let r = check(&none).unwrap();
        assert_eq!(
            (r.verdict, r.reason.as_deref()),
            (Verdict::Unknown, Some("no append was acknowledged, so no record's fate was checked"))
        );
        // A partition appended to only by a failed append, and never read back at the end.
        let mut unread = History::new();
        append(&mut unread, 1, 10, Some(0));
        final_read(&mut unread, vec![10]);
        unread.push(Op::invoke(Process::Client(2), "append", json!({"key": "t-1", "value": 11})));
        unread
            .push(Op::invoke(Process::Client(2), "append", json!({"key": "t-1", "value": 11})).completed(OpType::Fail));
        let r = check(&unread).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.summary().contains(r#"no final read of partition(s) ["t-1"]"#), "{}", r.summary());
        // A final read that stopped below its high watermark hides its tail (a duplicate here).
        let mut short = History::new();
        append(&mut short, 1, 10, Some(0));
        append(&mut short, 2, 11, None);
        final_read_below(&mut short, vec![10], 2);
        let r = check(&short).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.summary().contains("stopped at 1 of high watermark 2"), "{}", r.summary());
        // Of several final reads of one partition, the longest is checked.
        final_read(&mut short, vec![10, 11]);
        assert_eq!(check(&short).unwrap().verdict, Verdict::Valid);
        final_read(&mut short, vec![10, 11, 11]);
        assert_eq!(check(&short).unwrap().verdict, Verdict::Invalid);
        // A final read from offset 1 does not see offset 0: neither lost nor checked.
        let mut later = History::new();
        append(&mut later, 1, 10, Some(0));
        append(&mut later, 2, 11, Some(1));
        final_read_answered(&mut later, json!({"key": "t-0", "from": 1, "values": [11], "hw": 2}));
        let r = check(&later).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.summary().contains("started at offset 1, not 0"), "{}", r.summary());
    }

    #[test]
    fn records_sit_at_the_offsets_the_read_names_and_an_empty_offset_is_skipped() {
        let mut h = History::new();
        append(&mut h, 1, 10, Some(0));
        append(&mut h, 2, 11, Some(1));
        append(&mut h, 3, 13, Some(3));
        let mut named = h.clone();
        let read = json!({"key": "t-0", "from": 0, "values": [10, 11, 13], "offsets": [0, 1, 3], "hw": 4});
        final_read_answered(&mut named, read);
        let r = check(&named).unwrap();
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert_eq!(r.skipped, vec![Skipped { partition: "t-0".into(), ranges: vec![[2, 2]], count: 1 }]);
        assert!(r.misplaced.is_empty() && r.duplicated.is_empty(), "13 is where it was acknowledged: {r:?}");
        assert!(r.summary().contains("1 offsets skipped"), "{}", r.summary());
        // A hole to an absurd offset is one range, not a list as long as the hole.
        let far = holes("t-0", &[(0, json!(1)), (u64::MAX, json!(2))]).expect("a hole");
        assert_eq!((far.ranges, far.count), (vec![[1, u64::MAX - 1]], u64::MAX - 1));
        // Without offsets, the records are taken to sit one after another: 13 looks misplaced.
        let mut unnamed = h.clone();
        final_read(&mut unnamed, vec![10, 11, 13]);
        assert_eq!(check(&unnamed).unwrap().misplaced.len(), 1);
        // Offsets that do not match the values leave the partition unchecked.
        let mut garbled = h;
        let read = json!({"key": "t-0", "from": 0, "values": [10, 11, 13], "offsets": [0, 1], "hw": 4});
        final_read_answered(&mut garbled, read);
        let r = check(&garbled).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.summary().contains("2 offsets for 3 values"), "{}", r.summary());
    }
}
