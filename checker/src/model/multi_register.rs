//! Several registers changed by transactions (Knossos's `:txn`): a transaction is a list of
//! `[f, key, value]` micro-ops, `f` being `read` or `write`, applied atomically in order.
//!
//! A micro-read whose value is `null` is unknown and always legal (Knossos's semantics): the
//! invocation carries `null` placeholders and the completion fills them in.

use super::{Model, ModelError, Val, show};
use ordeal_history::Op;
use serde_json::Value;
use std::sync::Arc;

/// One micro-op of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Micro {
    /// Read `key`; `None` when the value read is unknown.
    Read(Arc<str>, Option<Val>),
    /// Write `key`.
    Write(Arc<str>, Val),
}

/// The multi-register model.
#[derive(Debug, Clone)]
pub struct MultiRegister {
    init: Init,
}

/// The initial value of registers.
#[derive(Debug, Clone)]
enum Init {
    /// Every register starts with this value (`None`: absent).
    All(Option<Val>),
    /// Named registers start with these values; others are absent.
    Each(Vec<(Arc<str>, Val)>),
}

impl MultiRegister {
    /// `init` is a JSON scalar every register starts with (`null`: absent), or an object of
    /// register names to initial values.
    pub fn new(init: &Value) -> Result<Self, ModelError> {
        let init = match init {
            Value::Object(map) => {
                let mut each: Vec<(Arc<str>, Val)> = map
                    .iter()
                    .map(|(k, v)| Ok((Arc::from(k.as_str()), Val::required(v, "initial value")?)))
                    .collect::<Result<_, ModelError>>()?;
                each.sort_by(|a, b| a.0.cmp(&b.0));
                Init::Each(each)
            }
            v => Init::All(Val::from_json(v)?),
        };
        Ok(MultiRegister { init })
    }

    fn initial(&self, key: &str) -> Option<Val> {
        match &self.init {
            Init::All(v) => v.clone(),
            Init::Each(each) => each.iter().find(|(k, _)| &**k == key).map(|(_, v)| v.clone()),
        }
    }
}

/// Registers touched so far, sorted by name; untouched ones hold their initial value.
pub type MultiState = Vec<(Arc<str>, Option<Val>)>;

fn micro(v: &Value) -> Result<Micro, ModelError> {
    let parts = v.as_array().map(Vec::as_slice);
    let Some([f, k, value]) = parts else {
        return Err(ModelError(format!("a txn micro-op must be [f, key, value], found {v}")));
    };
    let key: Arc<str> = match k {
        Value::String(s) => s.as_str().into(),
        Value::Number(n) => n.to_string().into(),
        other => return Err(ModelError(format!("register name must be a string or integer, found {other}"))),
    };
    match f.as_str() {
        Some("read" | "r") => Ok(Micro::Read(key, Val::from_json(value)?)),
        Some("write" | "w") => Ok(Micro::Write(key, Val::required(value, "written value")?)),
        _ => Err(ModelError(format!("micro-op must be read or write, found {f}"))),
    }
}

impl Model for MultiRegister {
    type Op = Vec<Micro>;
    type State = MultiState;

    fn op(&self, invoke: &Op, ok: Option<&Op>) -> Result<Option<Vec<Micro>>, ModelError> {
        if invoke.f != "txn" {
            return Err(ModelError(format!("unknown multi-register operation {:?}: expected txn", invoke.f)));
        }
        let value = ok.map_or(&invoke.value, |o| &o.value);
        let items = value.as_array().ok_or_else(|| ModelError(format!("txn value must be a list, found {value}")))?;
        let ops: Vec<Micro> = items.iter().map(micro).collect::<Result<_, _>>()?;
        if ok.is_none() && ops.iter().all(|m| matches!(m, Micro::Read(..))) {
            return Ok(None); // a read-only txn with unknown output changes nothing
        }
        Ok(Some(ops))
    }

    fn is_read_only(&self, op: &Vec<Micro>) -> bool {
        op.iter().all(|m| matches!(m, Micro::Read(..)))
    }

    fn init(&self) -> MultiState {
        Vec::new()
    }

    fn step(&self, state: &MultiState, op: &Vec<Micro>) -> Option<MultiState> {
        let mut next = state.clone();
        for m in op {
            match m {
                Micro::Read(_, None) => {}
                Micro::Read(k, v) => {
                    let current = match next.binary_search_by(|(n, _)| n.cmp(k)) {
                        Ok(i) => next[i].1.clone(),
                        Err(_) => self.initial(k),
                    };
                    if &current != v {
                        return None;
                    }
                }
                Micro::Write(k, v) => match next.binary_search_by(|(n, _)| n.cmp(k)) {
                    Ok(i) => next[i].1 = Some(v.clone()),
                    Err(i) => next.insert(i, (k.clone(), Some(v.clone()))),
                },
            }
        }
        Some(next)
    }

    fn describe_op(&self, op: &Vec<Micro>) -> String {
        let parts: Vec<String> = op
            .iter()
            .map(|m| match m {
                Micro::Read(k, None) => format!("read {k} -> ?"),
                Micro::Read(k, v) => format!("read {k} -> {}", show(v)),
                Micro::Write(k, v) => format!("write {k} {v}"),
            })
            .collect();
        format!("txn [{}]", parts.join(", "))
    }

    fn describe_state(&self, state: &MultiState) -> String {
        let parts: Vec<String> = state.iter().map(|(k, v)| format!("{k}={}", show(v))).collect();
        format!("{{{}}}", parts.join(", "))
    }
}
