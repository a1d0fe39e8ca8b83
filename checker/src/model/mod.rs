//! Sequential specifications the linearizability search checks histories against.
//!
//! A [`Model`] turns history ops into its own op type, says which partition each belongs to
//! (P-compositionality: ops on different partitions commute, so each partition is checked on
//! its own), and steps a state. Adding a model never touches the search.

use crate::linear::Call;
use crate::linear::order::Derivation;
use ordeal_history::Op;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;

mod log;
mod multi_register;
mod mutex;
mod register;
mod versions;

pub use log::LogModel;
pub use multi_register::MultiRegister;
pub use mutex::Mutex;
pub use register::{RegisterKind, RegisterModel};

/// A history op the model cannot interpret. Its message quotes the op's value, which may be
/// megabytes: shown, it is cut to [`ModelError::SHOWN_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ModelError(pub String);

impl ModelError {
    /// The most characters of the message that are shown.
    pub const SHOWN_CHARS: usize = 300;
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(Self::SHOWN_CHARS) {
            Some((cut, _)) => write!(f, "{}... ({} bytes in all)", &self.0[..cut], self.0.len()),
            None => f.write_str(&self.0),
        }
    }
}

/// A sequential specification.
pub trait Model: Sync {
    /// One operation with its observed output.
    type Op: Debug + Send + Sync;
    /// The object's state. Hashed into the search's memo key.
    type State: Clone + Eq + Hash + Debug + Send;

    /// Converts a client operation. `ok` is its completion when that was `ok`, and `None` when
    /// the output is unknown (`info`, or never completed): the op may then take effect or not.
    /// Returns `None` for ops that cannot affect the verdict (a read whose output is unknown).
    fn op(&self, invoke: &Op, ok: Option<&Op>) -> Result<Option<Self::Op>, ModelError>;

    /// The partition of a client operation, read from its invocation before [`Model::op`] (the
    /// key is borrowed, not copied into every op); ops of different partitions must commute.
    /// `None`: one partition.
    fn partition<'o>(&self, _invoke: &'o Op) -> Result<Option<Cow<'o, str>>, ModelError> {
        Ok(None)
    }

    /// Whether `op` never changes any state (a read). The search then linearizes it as soon as
    /// it is legal and never tries it elsewhere: moving a legal read to the front of any valid
    /// order keeps the order valid, so other placements add nothing.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// One partition as versions, for the version-order decision ([`crate::linear::order`]),
    /// when the model's written values identify its writes. The default: it cannot say, and the
    /// search decides.
    fn versions(&self, _calls: &[Call<Self::Op>]) -> Derivation {
        Derivation::Search("the model has no version order".into())
    }

    /// The initial state of every partition.
    fn init(&self) -> Self::State;

    /// The state after `op`, or `None` if `op` is illegal in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// A short human-readable rendering of an op, e.g. `cas 1 -> 2`.
    fn describe_op(&self, op: &Self::Op) -> String;

    /// A short human-readable rendering of a state.
    fn describe_state(&self, state: &Self::State) -> String;
}

/// A register value: integers and strings, the kinds Jepsen workloads write.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Val {
    /// An integer.
    Int(i64),
    /// A string.
    Str(Arc<str>),
}

impl Val {
    /// `null` is `None` (absent); numbers and strings are values; anything else is an error.
    pub fn from_json(v: &Value) -> Result<Option<Val>, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_i64()
                .map(|i| Some(Val::Int(i)))
                .ok_or_else(|| ModelError(format!("value {n} is not a 64-bit integer"))),
            Value::String(s) => Ok(Some(Val::Str(s.as_str().into()))),
            other => Err(ModelError(format!("expected an integer, a string or null, found {other}"))),
        }
    }

    /// Like [`Val::from_json`], but `null` is an error.
    pub fn required(v: &Value, what: &str) -> Result<Val, ModelError> {
        Val::from_json(v)?.ok_or_else(|| ModelError(format!("{what} is null")))
    }

    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Val::Int(i) => Value::from(*i),
            Val::Str(s) => Value::from(&**s),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Int(i) => write!(f, "{i}"),
            Val::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Renders an optional value, `absent` for `None`.
pub fn show(v: &Option<Val>) -> String {
    v.as_ref().map_or_else(|| "absent".to_owned(), Val::to_string)
}

/// A key as a string: JSON strings as they are, numbers in decimal.
pub(crate) fn key_of(value: &Value) -> Result<Cow<'_, str>, ModelError> {
    match value.get("key") {
        Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
        Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Some(other) => Err(ModelError(format!("key must be a string or an integer, found {other}"))),
        None => Err(ModelError(format!("expected an object with a \"key\", found {value}"))),
    }
}

/// The field `name` of an op's value object.
pub(crate) fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value, ModelError> {
    value.get(name).ok_or_else(|| ModelError(format!("expected a \"{name}\" field in {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_17_a_wrong_model_error_never_quotes_a_huge_value() {
        let huge = serde_json::json!({"value": "x".repeat(50 << 20)});
        let shown = key_of(&huge).unwrap_err().to_string();
        assert!(shown.len() < 400, "{} bytes", shown.len());
        assert!(shown.starts_with("expected an object with a \"key\", found {\"value\":\"xxx"), "{shown:.80}");
        assert!(shown.ends_with(" bytes in all)"), "{}", &shown[300..]);
        let short = key_of(&serde_json::json!(3)).unwrap_err().to_string();
        assert_eq!(short, "expected an object with a \"key\", found 3");
    }
}
