//! Knossos/Jepsen EDN histories: one vector or list of op maps, or a bare sequence of them.
//!
//! Semantics: `:fail` ops did not happen; `:info` ops may or may not have. An `:ok :read` whose
//! value is `nil` means the value read is unknown: such a read constrains nothing, so it is left
//! out with its invocation. Nemesis ops are skipped. File order is the real order; `:time` is
//! kept when every op has one and they never go back in file order, else an op's time is its
//! position. `:node` and `:error` are kept. Initial register value: 0.
//!
//! A file that ordeal exported states its model and initial value on its first line
//! ([`super::stated`]) and is read as it was written: `nil` reads and nemesis ops are kept, and
//! `jepsen.independent` tuples become keyed values again.

use super::edn::{Edn, Parser};
use super::stated::{self, Stated};
use super::{LineError, edn_to_json, name_of};
use ordeal_history::{History, Op, OpType, Process};
use serde_json::Value;

/// Parses a Knossos EDN history.
pub fn parse(text: &str) -> Result<History, LineError> {
    let mut p = Parser::new(text);
    let mut maps: Vec<(usize, Edn<'_>)> = Vec::new();
    let syntax = |e: super::edn::ParseError| LineError::at(e.line, format!("column {}: {}", e.column, e.message));
    while !p.at_end() {
        let line = p.line();
        // The history's one collection, each op with the line it starts on.
        if maps.is_empty()
            && let Some(items) = p.next_seq_with_lines()
        {
            maps = items.map_err(syntax)?;
            continue;
        }
        match p.next_value().map_err(syntax)? {
            m @ (Edn::Map(_) | Edn::Tagged(..)) => maps.push((line, m)),
            other => return Err(LineError::at(line, format!("expected op maps, found {}", other.kind()))),
        }
    }
    let stated = Stated::of(text).transpose().map_err(|e| LineError::at(1, e))?;
    let mut ops = Vec::with_capacity(maps.len());
    let mut times = Vec::with_capacity(maps.len());
    for (position, (line, m)) in maps.iter().enumerate() {
        // An ordeal export keeps its nemesis ops; Knossos histories drop them.
        let op = match process_of(m) {
            Ok(Process::Nemesis) if stated.is_none() => Ok(None),
            Ok(process) => op_of(m, process, position as u64).map(Some),
            Err(e) => Err(e),
        };
        if let Some(mut op) = op.map_err(|e| LineError::at(*line, e))? {
            if stated.as_ref().is_some_and(|s| s.independent) && op.is_client() {
                op.value = stated::unindependent(&op.f, std::mem::take(&mut op.value));
            }
            times.push(match m.get("time") {
                Some(Edn::Int(t)) => u64::try_from(*t).ok(),
                _ => None,
            });
            ops.push(op);
        }
    }
    keep_times(&mut ops, &times);
    // An ordeal export states what a nil read means; in a Knossos history it means unknown.
    let unknown = if stated.is_some() { Default::default() } else { unknown_reads(&ops) };
    let mut h = History::new();
    for (i, op) in ops.into_iter().enumerate() {
        if !unknown.contains(&i) {
            h.push(op);
        }
    }
    Ok(h)
}

/// Gives the ops the file's `:time`s when every op has one and each is later than the one before.
/// Equal times would lose the file's order, which is the real one: a completion and the next
/// invocation at one time would count as concurrent.
fn keep_times(ops: &mut [Op], times: &[Option<u64>]) {
    let rising = |last: Option<u64>, t: &Option<u64>| t.filter(|t| last.is_none_or(|l| *t > l)).map(Some);
    let monotone = times.iter().try_fold(None, rising).is_some();
    if monotone {
        for (op, t) in ops.iter_mut().zip(times) {
            op.time = t.unwrap_or(op.time);
        }
    }
}

/// Positions of `:ok :read nil` completions (also `[k nil]`, Jepsen's `independent` tuple) and
/// their invocations.
fn unknown_reads(ops: &[Op]) -> std::collections::HashSet<usize> {
    let mut in_flight = std::collections::HashMap::new();
    let mut out = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if op.kind == OpType::Invoke {
            in_flight.insert(op.process, i);
        } else if let Some(invoke) = in_flight.remove(&op.process)
            && op.kind == OpType::Ok
            && op.f == "read"
            && (op.value.is_null() || matches!(op.value.as_array().map(Vec::as_slice), Some([_, Value::Null])))
        {
            out.insert(invoke);
            out.insert(i);
        }
    }
    out
}

/// One op map; `None` for nemesis ops.
pub(crate) fn op_from_map(m: &Edn<'_>, position: u64) -> Result<Option<Op>, String> {
    match process_of(m)? {
        Process::Nemesis => Ok(None),
        process => op_of(m, process, position).map(Some),
    }
}

fn process_of(m: &Edn<'_>) -> Result<Process, String> {
    if !matches!(m, Edn::Map(_) | Edn::Tagged(..)) {
        return Err(format!("expected an op map, found {}", m.kind()));
    }
    match m.get("process") {
        Some(Edn::Int(p)) if *p >= 0 => Ok(Process::Client(*p as u64)),
        Some(Edn::Keyword(k)) if k.as_ref() == "nemesis" => Ok(Process::Nemesis),
        Some(other) => Err(format!(":process must be a non-negative integer or :nemesis, found {other}")),
        None => Err("op map has no :process".into()),
    }
}

/// The op of a map whose process is known, at time `position`.
fn op_of(m: &Edn<'_>, process: Process, position: u64) -> Result<Op, String> {
    let kind = match m.get("type").and_then(name_of) {
        Some("invoke") => OpType::Invoke,
        Some("ok") => OpType::Ok,
        Some("fail") => OpType::Fail,
        Some("info") => OpType::Info,
        Some(other) => return Err(format!(":type must be :invoke, :ok, :fail or :info, found :{other}")),
        None => return Err("op map has no :type keyword".into()),
    };
    let f = m.get("f").and_then(name_of).ok_or(":f must be a keyword")?.to_owned();
    let value = m.get("value").map(edn_to_json).unwrap_or_default();
    let mut op = Op::invoke(process, f, value).at(position).completed(kind);
    op.error = m.get("error").map(|e| match e {
        Edn::Str(s) => s.to_string(),
        other => other.to_string(),
    });
    op.node = match m.get("node") {
        Some(Edn::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    Ok(op)
}
