//! Jepsen etcd console logs: `INFO  jepsen.util - <process> <type> <f> <value>`, fields split by
//! any whitespace, possibly among unrelated console output (which is ignored, as are nemesis
//! lines).
//!
//! Semantics: `:ok :read nil` means the key was absent (initial state: absent); `:fail :cas` is
//! a definite failure; `:info` leaves the op pending; `:fail :read :timed-out` is a read whose
//! output is unknown (dropped like every `fail`). Text after the value is the op's error, which
//! newer Jepsens append after a tab; it is kept, not refused.

use super::edn::Parser;
use super::{LineError, edn_to_json};
use ordeal_history::{History, Op, OpType, Process};

const MARKER: &str = "jepsen.util - ";

/// Whether a line is Jepsen console output: a log line of a `jepsen.*` namespace.
pub fn is_jepsen_line(line: &str) -> bool {
    line.contains("jepsen.util -") || (line.starts_with("INFO") && line.contains(" jepsen."))
}

/// Parses an etcd console log.
pub fn parse(text: &str) -> Result<History, LineError> {
    not_a_jepsen_log(text)?;
    let mut h = History::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some(at) = line.find(MARKER) else { continue };
        let rest = &line[at + MARKER.len()..];
        let mut fields = rest.split_whitespace();
        let Some(process) = fields.next() else { continue };
        let Ok(process) = process.parse::<u64>() else {
            continue; // `:nemesis` and other non-client lines
        };
        let kind = match fields.next() {
            Some(":invoke") => OpType::Invoke,
            Some(":ok") => OpType::Ok,
            Some(":fail") => OpType::Fail,
            Some(":info") => OpType::Info,
            other => {
                let found = found(other);
                return Err(LineError::at(
                    n,
                    format!("expected :invoke, :ok, :fail or :info after the process, found {found}"),
                ));
            }
        };
        let f = match fields.next() {
            Some(f) if f.starts_with(':') && f.len() > 1 => f[1..].to_owned(),
            other => {
                return Err(LineError::at(
                    n,
                    format!("expected an operation keyword like :read, found {}", found(other)),
                ));
            }
        };
        let (value, error) = value_and_error(after_fields(rest, 3).trim(), n)?;
        let mut op = Op::invoke(Process::Client(process), f, value).at(n as u64).completed(kind);
        op.error = error;
        h.push(op);
    }
    Ok(h)
}

/// A field as an error shows it: quoted, or `nothing` when the line ends first.
fn found(field: Option<&str>) -> String {
    field.map_or_else(|| "nothing".to_owned(), |f| format!("`{f}`"))
}

/// What follows the first `n` whitespace-separated fields of `line`.
fn after_fields(mut line: &str, n: usize) -> &str {
    for _ in 0..n {
        line = line.trim_start();
        line = &line[line.find(char::is_whitespace).unwrap_or(line.len())..];
    }
    line
}

/// The value (EDN) at the start of `text`, and the text after it: Jepsen's `op->str` writes an
/// op's error there, after a tab (`:timed-out`, an exception's message), so it is kept as the
/// op's error rather than refused as junk.
fn value_and_error(text: &str, n: usize) -> Result<(serde_json::Value, Option<String>), LineError> {
    if text.is_empty() {
        return Ok((serde_json::Value::Null, None));
    }
    let mut p = Parser::new(text);
    let v = p.next_value().map_err(|e| LineError::at(n, format!("value `{text}`: {}", e.message)))?;
    let error = text[p.offset()..].trim();
    Ok((edn_to_json(&v), (!error.is_empty()).then(|| error.to_owned())))
}

/// A file with text but not one line of Jepsen console output is some other file (a native
/// history, say), not a log of a Jepsen run: reading it as one would give an empty history, as
/// if the run had recorded nothing. The error points at its first line of text.
fn not_a_jepsen_log(text: &str) -> Result<(), LineError> {
    if text.lines().any(is_jepsen_line) {
        return Ok(());
    }
    match text.lines().position(|l| !l.trim().is_empty()) {
        Some(i) => Err(LineError::at(
            i + 1,
            "not a Jepsen etcd log: no line of the file is Jepsen console output \
             like `INFO  jepsen.util - 3 :invoke :read nil`",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(line: &str) -> Op {
        let h = parse(&format!("INFO  jepsen.util - {line}")).unwrap();
        h.ops()[0].clone()
    }

    #[test]
    fn the_text_after_the_value_is_the_ops_error() {
        let o = op("3\t:info\t:cas\t[1 4]\tindeterminate: Read timed out");
        assert_eq!((o.value, o.error.as_deref()), (json!([1, 4]), Some("indeterminate: Read timed out")));
        let o = op("3\t:info\t:write\t:timed-out");
        assert_eq!((o.value, o.error), (json!("timed-out"), None));
    }

    #[test]
    fn the_value_is_found_after_the_third_field() {
        // An f that is the start of the type keyword (`:in` in `:invoke`).
        assert_eq!(op("0 :invoke :in 5").value, json!(5));
        assert_eq!(op("0 :ok :read").value, serde_json::Value::Null);
    }
}
