//! The broker's partition log, one partition per key.
//!
//! History values: `append` invokes with `{"key": p, "value": v}` and completes `ok` with the
//! offset it landed at (`{"key": p, "value": v, "offset": o}`); `read` invokes with
//! `{"key": p, "from": o}` and completes with `{"key": p, "from": o, "values": [...], "hw": h}`:
//! the values at offsets `o, o+1, ...` and the high watermark (the log's length) when read.
//!
//! An `ok` append is legal only at its offset; an append whose outcome is unknown may land at
//! any offset. A read is legal when the log then had length `hw` and held `values` from `from`.
//! The state is a persistent list, so stepping shares the prefix instead of copying the log.

use super::{Model, ModelError, Val, field, key_of};
use crate::linear::Call;
use crate::linear::order::Derivation;
use ordeal_history::Op;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A log op with its output (its key is its partition's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOp {
    /// Appended `value`, at `offset` when known.
    Append {
        /// The record.
        value: Val,
        /// Where it landed, when the append was acknowledged.
        offset: Option<u64>,
    },
    /// Read from `from`.
    Read {
        /// The first offset read.
        from: u64,
        /// The values read.
        values: Vec<Val>,
        /// The log length when read.
        hw: u64,
    },
}

struct Node {
    value: Val,
    prev: Option<Arc<Node>>,
}

/// A log: its length, a hash of its contents, and the records, newest first.
#[derive(Clone)]
pub struct LogState {
    len: u64,
    hash: u64,
    last: Option<Arc<Node>>,
}

impl PartialEq for LogState {
    /// Two logs are equal when they hold the same records. The length and the chained hash
    /// settle almost every comparison; the records are compared only when both match, from the
    /// newest back to a node the two share. (The hash is invertible, so colliding logs are easy
    /// to make, and a false match would prune the search: a false "invalid".)
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len || self.hash != other.hash {
            return false;
        }
        let (mut a, mut b) = (&self.last, &other.last);
        loop {
            match (a, b) {
                (Some(x), Some(y)) if Arc::ptr_eq(x, y) => return true,
                (Some(x), Some(y)) if x.value == y.value => (a, b) = (&x.prev, &y.prev),
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}
impl Eq for LogState {}

impl Hash for LogState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash ^ self.len);
    }
}

impl std::fmt::Debug for LogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log of {} records", self.len)
    }
}

fn mix(hash: u64, v: &Val) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    v.hash(&mut h);
    (hash.rotate_left(5) ^ h.finish()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl LogState {
    /// The records from `from` on, oldest first; `None` when `from` is past the end.
    fn suffix(&self, from: u64) -> Option<Vec<&Val>> {
        if from > self.len {
            return None;
        }
        let mut out = Vec::with_capacity((self.len - from) as usize);
        let mut node = self.last.as_deref();
        for _ in from..self.len {
            let n = node?;
            out.push(&n.value);
            node = n.prev.as_deref();
        }
        out.reverse();
        Some(out)
    }
}

/// The log model.
#[derive(Debug, Clone, Default)]
pub struct LogModel;

/// Consumer-offset ops of the log workload are registers, checked on their own.
fn is_consumer_offset(invoke: &Op) -> bool {
    matches!(invoke.f.as_str(), "commit" | "list")
}

impl Model for LogModel {
    type Op = LogOp;
    type State = LogState;

    fn op(&self, invoke: &Op, ok: Option<&Op>) -> Result<Option<LogOp>, ModelError> {
        if is_consumer_offset(invoke) {
            return Ok(None);
        }
        match invoke.f.as_str() {
            "append" | "produce" | "send" => {
                let value = Val::required(field(&invoke.value, "value")?, "appended value")?;
                let offset =
                    match ok {
                        Some(ok) => Some(field(&ok.value, "offset")?.as_u64().ok_or_else(|| {
                            ModelError(format!("offset must be a non-negative integer in {}", ok.value))
                        })?),
                        None => None,
                    };
                Ok(Some(LogOp::Append { value, offset }))
            }
            "read" | "fetch" | "poll" => {
                let Some(ok) = ok else { return Ok(None) };
                let num = |name: &str| {
                    field(&ok.value, name)?
                        .as_u64()
                        .ok_or_else(|| ModelError(format!("{name} must be a non-negative integer in {}", ok.value)))
                };
                let values = field(&ok.value, "values")?
                    .as_array()
                    .ok_or_else(|| ModelError(format!("values must be a list in {}", ok.value)))?
                    .iter()
                    .map(|v| Val::required(v, "read value"))
                    .collect::<Result<_, _>>()?;
                Ok(Some(LogOp::Read { from: num("from")?, values, hw: num("hw")? }))
            }
            f => Err(ModelError(format!("unknown log operation {f:?}: expected append or read"))),
        }
    }

    fn partition<'o>(&self, invoke: &'o Op) -> Result<Option<Cow<'o, str>>, ModelError> {
        if is_consumer_offset(invoke) { Ok(None) } else { key_of(&invoke.value).map(Some) }
    }

    fn is_read_only(&self, op: &LogOp) -> bool {
        matches!(op, LogOp::Read { .. })
    }

    fn versions(&self, calls: &[Call<LogOp>]) -> Derivation {
        super::versions::log(calls)
    }

    fn init(&self) -> LogState {
        LogState { len: 0, hash: 0, last: None }
    }

    fn step(&self, s: &LogState, op: &LogOp) -> Option<LogState> {
        match op {
            LogOp::Append { value, offset, .. } => {
                if offset.is_some_and(|o| o != s.len) {
                    return None;
                }
                let node = Node { value: value.clone(), prev: s.last.clone() };
                Some(LogState { len: s.len + 1, hash: mix(s.hash, value), last: Some(Arc::new(node)) })
            }
            LogOp::Read { from, values, hw, .. } => {
                if *hw != s.len || from + values.len() as u64 > s.len {
                    return None;
                }
                let suffix = s.suffix(*from)?;
                values.iter().zip(suffix).all(|(a, b)| a == b).then(|| s.clone())
            }
        }
    }

    fn describe_op(&self, op: &LogOp) -> String {
        match op {
            LogOp::Append { value, offset: Some(o), .. } => format!("append {value} -> offset {o}"),
            LogOp::Append { value, offset: None, .. } => format!("append {value} -> offset ?"),
            LogOp::Read { from, values, hw, .. } => {
                let shown: Vec<String> = values.iter().take(8).map(Val::to_string).collect();
                let more = if values.len() > 8 { format!(", ... {} more", values.len() - 8) } else { String::new() };
                format!("read from {from} -> [{}{more}] (hw {hw})", shown.join(", "))
            }
        }
    }

    fn describe_state(&self, s: &LogState) -> String {
        let tail: Vec<String> =
            s.suffix(s.len.saturating_sub(5)).unwrap_or_default().into_iter().map(Val::to_string).collect();
        let dots = if s.len > 5 { "..., " } else { "" };
        format!("{} records [{dots}{}]", s.len, tail.join(", "))
    }
}
