//! What an ordeal export states about its history, so that checking the export gives the same
//! verdict as checking the original: the model the history is checked with, the registers'
//! initial value, and whether keyed values were written as `jepsen.independent` tuples.
//!
//! It rides in an EDN comment on the file's first line, which Knossos, Jepsen and Elle skip:
//!
//! ```text
//! ; ordeal {:model "kv", :init nil, :independent true}
//! [{:index 0, :time 1, :process 0, :type :invoke, :f :write, :value ["k" 1]}
//! ...
//! ```
//!
//! A file with this line is read with ordeal's own semantics (a `nil` read means absent when the
//! initial value is `nil`, times and nemesis ops are kept, tuples become keyed values again);
//! one without it is a Knossos history.
//!
//! # Examples
//!
//! ```
//! use ordeal_checker::formats::stated::Stated;
//!
//! let s = Stated { model: "log".into(), init: serde_json::Value::Null, independent: false };
//! assert_eq!(Stated::of(&s.header()).unwrap().unwrap(), s);
//! ```

use super::edn::{Edn, Parser};
use super::{edn_to_json, json_to_edn, name_of};
use serde_json::Value;

/// The first line's marker.
const MARKER: &str = "; ordeal ";

/// What an export states about its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Stated {
    /// The model the history is checked with (`ordeal check --model`).
    pub model: String,
    /// The registers' initial value (`null`: absent).
    pub init: Value,
    /// Keyed values were written as `[key value]` tuples (`[key [from to]]` for a cas).
    pub independent: bool,
}

impl Stated {
    /// The comment line that states it, with its newline.
    pub fn header(&self) -> String {
        let map = Edn::Map(vec![
            (Edn::keyword("model"), Edn::Str(self.model.as_str().into())),
            (Edn::keyword("init"), json_to_edn(&self.init)),
            (Edn::keyword("independent"), Edn::Bool(self.independent)),
        ]);
        let mut out = String::from(MARKER);
        super::edn::write(&map, &mut out);
        out.push('\n');
        out
    }

    /// What the first line of `text` states: `None` when it states nothing (a Knossos history),
    /// an error when it is ordeal's line but malformed (the caller names the file and line 1).
    pub fn of(text: &str) -> Option<Result<Stated, String>> {
        let line = text.lines().next()?.strip_prefix(MARKER)?;
        let parsed = Parser::new(line).next_value().map_err(|e| format!("the ordeal header: {}", e.message));
        Some(parsed.and_then(|m| {
            let model = m.get("model").and_then(name_of).ok_or("the ordeal header has no :model")?;
            Ok(Stated {
                model: model.to_owned(),
                init: m.get("init").map(edn_to_json).unwrap_or_default(),
                independent: matches!(m.get("independent"), Some(Edn::Bool(true))),
            })
        }))
    }
}

/// Whether a keyed value is one a `jepsen.independent` tuple carries whole: a key with a value,
/// or a key with a cas's `from` and `to`.
pub(crate) fn is_register_shaped(map: &serde_json::Map<String, Value>) -> bool {
    let has = |k: &str| map.contains_key(k);
    has("key") && (map.len() == 1 || (map.len() == 2 && has("value")) || (map.len() == 3 && has("from") && has("to")))
}

/// A `[key value]` tuple back to the keyed value it was written from; anything else unchanged.
pub(crate) fn unindependent(f: &str, value: Value) -> Value {
    match value {
        Value::Array(pair) if pair.len() == 2 => {
            let mut pair = pair.into_iter();
            let (key, inner) = (pair.next().unwrap_or_default(), pair.next().unwrap_or_default());
            match inner {
                Value::Array(ft) if f == "cas" && ft.len() == 2 => {
                    let mut ft = ft.into_iter();
                    let (from, to) = (ft.next().unwrap_or_default(), ft.next().unwrap_or_default());
                    serde_json::json!({"key": key, "from": from, "to": to})
                }
                inner => serde_json::json!({"key": key, "value": inner}),
            }
        }
        other => other,
    }
}
