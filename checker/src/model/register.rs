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
use std::borrow::Cow;

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

/// A register operation with its output (its key, for `kv`, is its partition's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// Read and saw this value (`None`: absent).
    Read(Option<Val>),
    /// Wrote a value.
    Write(Val),
    /// Replaced `from` (`None`: absent) with `to`. Only successful cas ops reach the model.
    Cas(Option<Val>, Val),
    /// Appended a string suffix.
    Append(Val),
}

/// The bare value of an op, borrowed from the history: a value, or a cas's `from` and `to`.
#[derive(Clone, Copy)]
enum Bare<'v> {
    Value(&'v Value),
    Cas(&'v Value, &'v Value),
}

impl<'v> Bare<'v> {
    /// The bare value of a keyed value: `{"key": k, "value": v}` gives `v`, `{"key": k, "from":
    /// a, "to": b}` gives `a` and `b`, and a Jepsen `independent` tuple `[k, v]` gives `v`.
    fn of_keyed(v: &'v Value) -> Self {
        if let Some([_, inner]) = v.as_array().map(Vec::as_slice) {
            return Bare::Value(inner);
        }
        match (v.get("from"), v.get("to")) {
            (Some(from), Some(to)) => Bare::Cas(from, to),
            _ => Bare::Value(v.get("value").unwrap_or(&Value::Null)),
        }
    }

    /// A single value; a cas's pair is an error.
    fn value(self) -> Result<&'v Value, ModelError> {
        match self {
            Bare::Value(v) => Ok(v),
            Bare::Cas(..) => Err(ModelError("expected a single value, found a cas's \"from\" and \"to\"".into())),
        }
    }
}

/// Whether a keyed value says a value: a `[k, v]` tuple, or a map with `"value"`.
fn says_a_value(v: &Value) -> bool {
    matches!(v.as_array().map(Vec::as_slice), Some([_, _])) || v.get("value").is_some()
}

/// The key of a keyed value (see [`Bare::of_keyed`]).
fn key_of_keyed(v: &Value) -> Result<Cow<'_, str>, ModelError> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(k), _]) => Ok(Cow::Borrowed(k)),
        Some([k, _]) => Ok(Cow::Owned(k.to_string())),
        _ => key_of(v),
    }
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
        let bare = |v| if keyed { Bare::of_keyed(v) } else { Bare::Value(v) };
        let arg = bare(&invoke.value);
        match invoke.f.as_str() {
            "read" | "get" => {
                let Some(ok) = ok else { return Ok(None) };
                if keyed && !says_a_value(&ok.value) {
                    // Taken as absent, a read that says nothing would check as a read of nothing.
                    return Err(ModelError(format!(
                        "a read's completion needs its \"value\" (null when absent), found {}",
                        ok.value
                    )));
                }
                Ok(Some(RegisterOp::Read(Val::from_json(bare(&ok.value).value()?)?)))
            }
            "write" | "put" => Ok(Some(RegisterOp::Write(Val::required(arg.value()?, "written value")?))),
            "append" => {
                let v = Val::required(arg.value()?, "appended value")?;
                if !matches!(v, Val::Str(_)) {
                    return Err(ModelError(format!("append needs a string, found {v}")));
                }
                Ok(Some(RegisterOp::Append(v)))
            }
            "cas" if self.kind != RegisterKind::Register => {
                let (from, to) = match arg {
                    Bare::Cas(from, to) => (from, to),
                    Bare::Value(v) => match v.as_array().map(Vec::as_slice) {
                        Some([from, to]) => (from, to),
                        _ => return Err(ModelError(format!("cas value must be [from, to], found {}", invoke.value))),
                    },
                };
                Ok(Some(RegisterOp::Cas(Val::from_json(from)?, Val::required(to, "cas target")?)))
            }
            "cas" => Err(ModelError("the register model has no cas; use cas-register".into())),
            f => Err(ModelError(format!("unknown register operation {f:?}: expected read, write, cas or append"))),
        }
    }

    fn partition<'o>(&self, invoke: &'o Op) -> Result<Option<Cow<'o, str>>, ModelError> {
        if self.kind == RegisterKind::Kv { key_of_keyed(&invoke.value).map(Some) } else { Ok(None) }
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
            RegisterOp::Read(v) => (v == state).then(|| state.clone()),
            RegisterOp::Write(v) => Some(Some(v.clone())),
            RegisterOp::Cas(from, to) => (from == state).then(|| Some(to.clone())),
            RegisterOp::Append(Val::Str(suffix)) => {
                let base = match state {
                    None => "",
                    Some(Val::Str(s)) => s,
                    Some(Val::Int(_)) => return None,
                };
                Some(Some(Val::Str(format!("{base}{suffix}").into())))
            }
            RegisterOp::Append(Val::Int(_)) => None,
        }
    }

    fn describe_op(&self, op: &RegisterOp) -> String {
        match op {
            RegisterOp::Read(v) => format!("read -> {}", show(v)),
            RegisterOp::Write(v) => format!("write {v}"),
            RegisterOp::Cas(from, to) => format!("cas {} -> {to}", show(from)),
            RegisterOp::Append(v) => format!("append {v}"),
        }
    }

    fn describe_state(&self, state: &Option<Val>) -> String {
        show(state)
    }
}
