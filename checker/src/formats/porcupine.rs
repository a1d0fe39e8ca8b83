//! Porcupine's kv logs: one EDN map per line,
//! `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`, with `:type` `:invoke`
//! or `:ok` and `:f` `:get`, `:put` or `:append`.
//!
//! They become `read`/`write`/`append` ops whose value is the tuple `[k, v]` (as Jepsen's
//! `independent` ops; two JSON values instead of an object with two named fields, which costs a
//! tenth of the memory), for the `kv` model. State per key: a string, initially `""`.
//! [`write_line`] writes such ops back, for histories that both ordeal and Porcupine check.
//!
//! Lines in Porcupine's own layout (the one its parser's regular expressions expect) are read by
//! a direct scan; any other EDN map by the general EDN parser.

use super::LineError;
use super::edn::{Edn, Parser};
use super::knossos::op_from_map;
use ordeal_history::{History, Op, OpType, Process};
use serde_json::Value;
use std::io::{self, Write};

/// Parses a Porcupine kv log.
pub fn parse(text: &str) -> Result<History, LineError> {
    let mut h = History::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(op) = parse_line(line, i + 1)? {
            h.push(op);
        }
    }
    Ok(h)
}

/// Parses line `n` (1-based) of a Porcupine kv log: `None` for a blank line. The op's time is
/// `n`; its index is left for the caller to set.
pub fn parse_line(line: &str, n: usize) -> Result<Option<Op>, LineError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let mut op = match scan(line) {
        Some(op) => op,
        None => match general(line, n)? {
            Some(op) => op,
            None => return Ok(None),
        },
    };
    op.time = n as u64;
    // Porcupine writes a read of the empty string as `""`; a nil one means the same.
    if op.kind == OpType::Ok && op.f == "read" && op.value[1] == Value::Null {
        op.value[1] = Value::from("");
    }
    Ok(Some(op))
}

/// Porcupine's own layout, fields in its order, strings without escapes; `None` otherwise.
fn scan(line: &str) -> Option<Op> {
    let rest = line.trim().strip_prefix("{:process ")?;
    let (process, rest) = rest.split_at(rest.find(',')?);
    let process: u64 = process.parse().ok()?;
    let rest = rest.strip_prefix(", :type :")?;
    let (kind, rest) = rest.split_at(rest.find(',')?);
    let kind = match kind {
        "invoke" => OpType::Invoke,
        "ok" => OpType::Ok,
        _ => return None,
    };
    let rest = rest.strip_prefix(", :f :")?;
    let (f, rest) = rest.split_at(rest.find(',')?);
    let f = kv_f(f).ok()?;
    let (key, rest) = plain_string(rest.strip_prefix(", :key ")?)?;
    let value = match rest.strip_prefix(", :value ")?.strip_suffix('}')? {
        "nil" => Value::Null,
        v => match plain_string(v)? {
            (s, "") => Value::String(s.to_owned()),
            _ => return None,
        },
    };
    let op = Op::invoke(Process::Client(process), f, Value::Array(vec![Value::String(key.to_owned()), value]));
    Some(op.completed(kind))
}

/// A string at the start of `s` that has no escapes, and what follows it.
fn plain_string(s: &str) -> Option<(&str, &str)> {
    let (inner, rest) = s.strip_prefix('"')?.split_once('"')?;
    (!inner.contains('\\')).then_some((inner, rest))
}

/// Porcupine's `:f` as ordeal's.
fn kv_f(f: &str) -> Result<&'static str, String> {
    match f {
        "get" => Ok("read"),
        "put" => Ok("write"),
        "append" => Ok("append"),
        other => Err(format!(":f must be :get, :put or :append, found :{other}")),
    }
}

/// What a line of the format looks like, for errors on a line that is not one.
const EXAMPLE: &str = r#"{:process 0, :type :invoke, :f :get, :key "0", :value nil}"#;

/// Any EDN map with `:process`, `:type`, `:f`, `:key` and `:value`.
fn general(line: &str, n: usize) -> Result<Option<Op>, LineError> {
    let m = Parser::new(line).next_value().map_err(|e| {
        LineError::at(
            n,
            format!("column {}: {} (a Porcupine kv log has one op map per line, like {EXAMPLE})", e.column, e.message),
        )
    })?;
    // Some other file (plain text, a native history) fails here rather than on a missing field.
    if !matches!(m, Edn::Map(_)) || m.get("process").is_none() {
        return Err(LineError::at(n, format!("expected a Porcupine kv op map like {EXAMPLE}, found {}", what(&m))));
    }
    let key = match m.get("key") {
        Some(Edn::Str(k)) => k.to_string(),
        _ => return Err(LineError::at(n, "expected a string :key")),
    };
    let Some(mut op) = op_from_map(&m, n as u64).map_err(|e| LineError::at(n, e))? else { return Ok(None) };
    op.f = kv_f(&op.f).map_err(|e| LineError::at(n, e))?.into();
    op.value = Value::Array(vec![Value::String(key), std::mem::take(&mut op.value)]);
    Ok(Some(op))
}

/// What a value is, for an error: a map without `:process`, or the kind of anything else.
fn what(v: &Edn<'_>) -> &'static str {
    match v {
        Edn::Map(_) => "a map without :process",
        other => other.kind(),
    }
}

/// Writes a kv op (`read`/`write`/`append` with `{"key": k, "value": v}` or `[k, v]`) as one line of
/// Porcupine's kv log. An `info` completion writes nothing: in that format an op without a
/// completion may or may not have taken effect. A `fail`, a non-string key or value, or a string
/// Porcupine's parser would misread (quotes, backslashes, line breaks) is an error.
pub fn write_line(w: &mut impl Write, op: &Op) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, format!("op {}: {what}", op.index));
    let kind = match op.kind {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Info => return Ok(()),
        OpType::Fail => return Err(bad("Porcupine's kv log cannot say an op failed".into())),
    };
    let f = match op.f.as_str() {
        "read" => "get",
        "write" => "put",
        "append" => "append",
        other => return Err(bad(format!("f must be read, write or append, found `{other}`"))),
    };
    let plain = |v: &Value| match v.as_str() {
        Some(s) if !s.contains(['"', '\\', '\n', '\r']) => Ok(format!("\"{s}\"")),
        _ => Err(bad(format!("expected a string without quotes, backslashes or line breaks, found {v}"))),
    };
    let (key, value) = match &op.value {
        Value::Array(kv) if kv.len() == 2 => (&kv[0], &kv[1]),
        v => (&v["key"], &v["value"]),
    };
    let key = plain(key)?;
    let value = match value {
        Value::Null if op.kind == OpType::Invoke && f == "get" => "nil".to_owned(),
        v => plain(v)?,
    };
    let process = op.process.client().ok_or_else(|| bad("only client ops have a place in the log".into()))?;
    writeln!(w, "{{:process {process}, :type :{kind}, :f :{f}, :key {key}, :value {value}}}")
}
