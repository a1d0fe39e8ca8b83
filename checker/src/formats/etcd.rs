//! Jepsen etcd console logs: `INFO  jepsen.util - <process> <type> <f> <value>`, fields split by
//! any whitespace, possibly among unrelated console output (which is ignored, as are nemesis
//! lines).
//!
//! Semantics: `:ok :read nil` means the key was absent (initial state: absent); `:fail :cas` is
//! a definite failure; `:info` leaves the op pending; `:fail :read :timed-out` is a read whose
//! output is unknown (dropped like every `fail`).

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
                return Err(LineError::at(
                    n,
                    format!("expected :invoke, :ok, :fail or :info after the process, found {other:?}"),
                ));
            }
        };
        let f = match fields.next() {
            Some(f) if f.starts_with(':') && f.len() > 1 => f[1..].to_owned(),
            other => {
                return Err(LineError::at(n, format!("expected an operation keyword like :read, found {other:?}")));
            }
        };
        // The value is the rest of the line after the f field.
        let value_text = rest.split_once(&format!(":{f}")).map(|(_, v)| v.trim()).unwrap_or("");
        let value = if value_text.is_empty() {
            serde_json::Value::Null
        } else {
            let mut p = Parser::new(value_text);
            let v = p.next_value().map_err(|e| LineError::at(n, format!("value {value_text:?}: {}", e.message)))?;
            edn_to_json(&v)
        };
        h.push(Op::invoke(Process::Client(process), f, value).at(n as u64).completed(kind));
    }
    Ok(h)
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
