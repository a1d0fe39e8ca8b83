//! Porcupine's kv logs: one EDN map per line,
//! `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`, with `:type` `:invoke`
//! or `:ok` and `:f` `:get`, `:put` or `:append`.
//!
//! They become `read`/`write`/`append` ops with `{"key": k, "value": v}` values, for the `kv`
//! model. State per key: a string, initially `""`.

use super::LineError;
use super::edn::Parser;
use super::knossos::op_from_map;
use ordeal_history::History;
use serde_json::{Value, json};

/// Parses a Porcupine kv log.
pub fn parse(text: &str) -> Result<History, LineError> {
    let mut h = History::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let m = Parser::new(line)
            .next_value()
            .map_err(|e| LineError::at(n, format!("column {}: {}", e.column, e.message)))?;
        let key = match m.get("key") {
            Some(super::edn::Edn::Str(k)) => k.to_string(),
            _ => return Err(LineError::at(n, "expected a string :key")),
        };
        let Some(mut op) = op_from_map(&m, n as u64).map_err(|e| LineError::at(n, e))? else { continue };
        op.f = match op.f.as_str() {
            "get" => "read".into(),
            "put" => "write".into(),
            "append" => "append".into(),
            other => return Err(LineError::at(n, format!(":f must be :get, :put or :append, found :{other}"))),
        };
        op.value = json!({ "key": key, "value": std::mem::take(&mut op.value) });
        if op.value["value"] == Value::Null && op.f == "read" && op.kind == ordeal_history::OpType::Ok {
            op.value["value"] = Value::from("");
        }
        h.push(op);
    }
    Ok(h)
}
