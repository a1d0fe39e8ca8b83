//! Registers: `register` (read, write), `cas-register` (also compare-and-set) and `kv` (a
//! cas-register per key, partitioned by key; also Porcupine's `append`).
//!
//! Values in the history: for `register` and `cas-register` the bare value (`write 3`,
//! `cas [1 2]`, a read's completion holds what it read, `null` meaning absent); for `kv` an object:
//! `{"key": k, "value": v}` for read, write and append, `{"key": k, "from": a, "to": b}` for cas,
//! or Jepsen's `independent` tuples `[k, v]` (as `ordeal export --to edn` writes them).

use super::{Model, ModelError, Val, key_of, show};
use crate::linear::Call;
use crate::linear::order::Derivation;
use ordeal_history::Op;
use serde_json::Value;

/// Which register model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterKind {
    /// Read and write.
    Register,
    /// Read, write and compare-and-set.
    CasRegister,
    /// A cas-register per key, checked per key.
    Kv,
}

/// A register operation with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// Read and saw this value (`None`: absent).
    Read(Option<String>, Option<Val>),
    /// Wrote a value.
    Write(Option<String>, Val),
    /// Replaced `from` (`None`: absent) with `to`. Only successful cas ops reach the model.
    Cas(Option<String>, Option<Val>, Val),
    /// Appended a string suffix.
    Append(Option<String>, Val),
}

/// A keyed value as (key, bare value): `{"key": k, "value": v}` gives `v`, `{"key": k, "from": a,
/// "to": b}` gives `[a, b]`, and a Jepsen `independent` tuple `[k, v]` gives `v`.
fn keyed_value(v: &Value) -> Result<(String, Value), ModelError> {
    if let Some([k, inner]) = v.as_array().map(Vec::as_slice) {
        let key = match k {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok((key, inner.clone()));
    }
    let key = key_of(v)?;
    let inner = match (v.get("from"), v.get("to")) {
        (Some(from), Some(to)) => Value::Array(vec![from.clone(), to.clone()]),
        _ => v.get("value").cloned().unwrap_or(Value::Null),
    };
    Ok((key, inner))
}

/// The register models.
#[derive(Debug, Clone)]
pub struct RegisterModel {
    kind: RegisterKind,
    init: Option<Val>,
}

impl RegisterModel {
    /// A model of `kind` whose registers start at `init` (`None`: absent).
    pub fn new(kind: RegisterKind, init: Option<Val>) -> Self {
        RegisterModel { kind, init }
    }
}

impl Model for RegisterModel {
    type Op = RegisterOp;
    type State = Option<Val>;

    fn op(&self, invoke: &Op, ok: Option<&Op>) -> Result<Option<RegisterOp>, ModelError> {
        let keyed = self.kind == RegisterKind::Kv;
        // Keyed values become (key, bare value), so that one path serves both kinds.
        let split = |v: &Value| -> Result<(Option<String>, Value), ModelError> {
            if keyed { keyed_value(v).map(|(k, inner)| (Some(k), inner)) } else { Ok((None, v.clone())) }
        };
        let (key, arg) = split(&invoke.value)?;
        match invoke.f.as_str() {
            "read" | "get" => {
                let Some(ok) = ok else { return Ok(None) };
                Ok(Some(RegisterOp::Read(key, Val::from_json(&split(&ok.value)?.1)?)))
            }
            "write" | "put" => Ok(Some(RegisterOp::Write(key, Val::required(&arg, "written value")?))),
            "append" => {
                let v = Val::required(&arg, "appended value")?;
                if !matches!(v, Val::Str(_)) {
                    return Err(ModelError(format!("append needs a string, found {v}")));
                }
                Ok(Some(RegisterOp::Append(key, v)))
            }
            "cas" if self.kind != RegisterKind::Register => match arg.as_array().map(Vec::as_slice) {
                Some([from, to]) => {
                    Ok(Some(RegisterOp::Cas(key, Val::from_json(from)?, Val::required(to, "cas target")?)))
                }
                _ => Err(ModelError(format!("cas value must be [from, to], found {}", invoke.value))),
            },
            "cas" => Err(ModelError("the register model has no cas; use cas-register".into())),
            f => Err(ModelError(format!("unknown register operation {f:?}: expected read, write, cas or append"))),
        }
    }

    fn partition<'o>(&self, op: &'o RegisterOp) -> Option<&'o str> {
        match op {
            RegisterOp::Read(k, _) | RegisterOp::Write(k, _) | RegisterOp::Cas(k, _, _) | RegisterOp::Append(k, _) => {
                k.as_deref()
            }
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(..))
    }

    fn versions(&self, calls: &[Call<RegisterOp>]) -> Derivation {
        super::versions::registers(&self.init, calls)
    }

    fn init(&self) -> Option<Val> {
        self.init.clone()
    }

    fn step(&self, state: &Option<Val>, op: &RegisterOp) -> Option<Option<Val>> {
        match op {
            RegisterOp::Read(_, v) => (v == state).then(|| state.clone()),
            RegisterOp::Write(_, v) => Some(Some(v.clone())),
            RegisterOp::Cas(_, from, to) => (from == state).then(|| Some(to.clone())),
            RegisterOp::Append(_, Val::Str(suffix)) => {
                let base = match state {
                    None => "",
                    Some(Val::Str(s)) => s,
                    Some(Val::Int(_)) => return None,
                };
                Some(Some(Val::Str(format!("{base}{suffix}").into())))
            }
            RegisterOp::Append(_, Val::Int(_)) => None,
        }
    }

    fn describe_op(&self, op: &RegisterOp) -> String {
        match op {
            RegisterOp::Read(_, v) => format!("read -> {}", show(v)),
            RegisterOp::Write(_, v) => format!("write {v}"),
            RegisterOp::Cas(_, from, to) => format!("cas {} -> {to}", show(from)),
            RegisterOp::Append(_, v) => format!("append {v}"),
        }
    }

    fn describe_state(&self, state: &Option<Val>) -> String {
        show(state)
    }
}
