//! Clients: turn an invocation into a completion, after Jepsen's `Client` protocol.
//!
//! The classification is the whole point: `ok` took effect, `fail` definitely did not, `info`
//! may have. A write whose outcome is unknown must be `info`, never `fail`, or the checker
//! would accept lost writes. Reads change nothing, so a read that got no answer is a `fail`.

use async_trait::async_trait;
use ordeal_history::OpType;
use serde_json::Value;

/// How an op completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `ok`, `fail` or `info`.
    pub kind: OpType,
    /// The result (reads: what was read; appends: with the offset).
    pub value: Value,
    /// Why it failed or is unknown.
    pub error: Option<String>,
    /// The node that answered, when one did.
    pub node: Option<u64>,
}

/// A client process's connection to the system under test.
#[async_trait]
pub trait Client: Send {
    /// Performs the invocation `f(value)` and says how it completed.
    async fn invoke(&mut self, f: &str, value: &Value) -> Completion;
}

/// Opens a client per process.
pub trait ClientFactory: Send + Sync {
    /// A client for logical process `process`.
    fn open(&self, process: u64) -> Box<dyn Client>;
}

/// Acknowledges everything at once: the driver's own cost.
pub struct NoopClient;

#[async_trait]
impl Client for NoopClient {
    async fn invoke(&mut self, _f: &str, value: &Value) -> Completion {
        Completion { kind: OpType::Ok, value: value.clone(), error: None, node: None }
    }
}

/// Opens [`NoopClient`]s.
pub struct NoopClients;

impl ClientFactory for NoopClients {
    fn open(&self, _process: u64) -> Box<dyn Client> {
        Box::new(NoopClient)
    }
}

/// An ok completion from `node`.
pub fn ok(value: Value, node: u64) -> Completion {
    Completion { kind: OpType::Ok, value, error: None, node: Some(node) }
}
