//! Knossos/Jepsen EDN histories: one vector or list of op maps, or a bare sequence of them.
//!
//! Semantics: `:fail` ops did not happen; `:info` ops may or may not have. An `:ok :read` whose
//! value is `nil` means the value read is unknown: such a read constrains nothing, so it is left
//! out with its invocation. Nemesis ops are skipped. `:time` is ignored (not monotone in file
//! order); file order is the real order. Initial register value: 0.

use super::edn::{Edn, Parser};
use super::{LineError, edn_to_json, name_of};
use ordeal_history::{History, Op, OpType, Process};

/// Parses a Knossos EDN history.
pub fn parse(text: &str) -> Result<History, LineError> {
    let mut p = Parser::new(text);
    let mut maps: Vec<(usize, Edn<'_>)> = Vec::new();
    while !p.at_end() {
        let line = p.line();
        let v = p.next_value().map_err(|e| LineError::at(e.line, format!("column {}: {}", e.column, e.message)))?;
        match v {
            Edn::Vector(items) | Edn::List(items) if maps.is_empty() => {
                // Ops inside one collection carry no line of their own; number them from the
                // collection's line so errors still point near them.
                maps.extend(items.into_iter().enumerate().map(|(i, m)| (line + i, m)));
            }
            m @ (Edn::Map(_) | Edn::Tagged(..)) => maps.push((line, m)),
            other => return Err(LineError::at(line, format!("expected op maps, found {}", other.kind()))),
        }
    }
    let mut ops = Vec::with_capacity(maps.len());
    for (position, (line, m)) in maps.iter().enumerate() {
        if let Some(op) = op_from_map(m, position as u64).map_err(|e| LineError::at(*line, e))? {
            ops.push(op);
        }
    }
    let unknown = unknown_reads(&ops);
    let mut h = History::new();
    for (i, op) in ops.into_iter().enumerate() {
        if !unknown.contains(&i) {
            h.push(op);
        }
    }
    Ok(h)
}

/// Positions of `:ok :read nil` completions and their invocations.
fn unknown_reads(ops: &[Op]) -> std::collections::HashSet<usize> {
    let mut in_flight = std::collections::HashMap::new();
    let mut out = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if op.kind == OpType::Invoke {
            in_flight.insert(op.process, i);
        } else if let Some(invoke) = in_flight.remove(&op.process)
            && op.kind == OpType::Ok
            && op.f == "read"
            && op.value.is_null()
        {
            out.insert(invoke);
            out.insert(i);
        }
    }
    out
}

/// One op map; `None` for nemesis ops.
pub(crate) fn op_from_map(m: &Edn<'_>, position: u64) -> Result<Option<Op>, String> {
    if !matches!(m, Edn::Map(_) | Edn::Tagged(..)) {
        return Err(format!("expected an op map, found {}", m.kind()));
    }
    let process = match m.get("process") {
        Some(Edn::Int(p)) if *p >= 0 => Process::Client(*p as u64),
        Some(Edn::Keyword(k)) if k.as_ref() == "nemesis" => return Ok(None),
        Some(other) => return Err(format!(":process must be a non-negative integer or :nemesis, found {other}")),
        None => return Err("op map has no :process".into()),
    };
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
    Ok(Some(op))
}
