//! One event of a history.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Whether an op is an invocation or a completion, and if a completion, how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The process asked for the operation.
    Invoke,
    /// The operation took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Unknown whether the operation took effect (a timeout, a dropped connection).
    Info,
}

impl OpType {
    /// Whether this is one of the three completion types.
    pub fn is_completion(self) -> bool {
        !matches!(self, OpType::Invoke)
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        })
    }
}

/// The key, in the value of a nemesis op's completion, saying that the runner gave up waiting
/// for the fault (`true`): what the fault did is not all on record.
pub const TIMED_OUT: &str = "timed_out";

/// How the runner's error begins, in `run.json`'s `nemesis_errors`, when the time limit came
/// before a run with fault rounds had run every fault it promised.
pub const ROUNDS_CUT_SHORT: &str = "the time limit came after";

/// Who performed an op: a logical client process, or the nemesis that injects faults.
///
/// Serialized as the client's number, or as the string `"nemesis"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A logical client process. Ids are never reused within a history.
    Client(u64),
    /// The fault injector.
    Nemesis,
}

impl Process {
    /// The client id, or `None` for the nemesis.
    pub fn client(self) -> Option<u64> {
        match self {
            Process::Client(id) => Some(id),
            Process::Nemesis => None,
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(id) => write!(f, "{id}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(id) => s.serialize_u64(*id),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ProcessVisitor;
        impl Visitor<'_> for ProcessVisitor {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative client number or \"nemesis\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v).map(Process::Client).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
                match v {
                    "nemesis" => Ok(Process::Nemesis),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(ProcessVisitor)
    }
}

/// One event of a history: an invocation or a completion.
///
/// `V` is the workload's value type. Readers that do not know the workload use the default,
/// [`serde_json::Value`], and convert per model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op<V = serde_json::Value> {
    /// Position in the history: dense and ascending from 0.
    pub index: u64,
    /// Nanoseconds since the test started, from a monotonic clock.
    pub time: u64,
    /// The process that performed the op.
    pub process: Process,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The operation's name, e.g. `read`, `write`, `cas`, `produce`, `kill`.
    pub f: String,
    /// The operation's argument (on invoke) or result (on completion).
    pub value: V,
    /// Why an op failed or is indeterminate, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node the op was sent to, when it was sent to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
}

impl<V> Op<V> {
    /// An invocation at time 0 with index 0; the recorder assigns both.
    pub fn invoke(process: Process, f: impl Into<String>, value: V) -> Self {
        Op { index: 0, time: 0, process, kind: OpType::Invoke, f: f.into(), value, error: None, node: None }
    }

    /// The same op with `time` set, in nanoseconds.
    pub fn at(mut self, time: u64) -> Self {
        self.time = time;
        self
    }

    /// The same op with its type set to `kind`.
    pub fn completed(mut self, kind: OpType) -> Self {
        self.kind = kind;
        self
    }

    /// The same op with an error message.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Whether this op was performed by a client (not the nemesis).
    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}
