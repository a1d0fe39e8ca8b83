//! Clients: turn an invocation into a completion, after Jepsen's `Client` protocol.
//!
//! The classification is the whole point: `ok` took effect, `fail` definitely did not, `info`
//! may have. A write whose outcome is unknown must be `info`, never `fail`, or the checker
//! would accept lost writes. Reads change nothing, so a read that got no answer is a `fail`.

use crate::Workload;
use async_trait::async_trait;
use ordeal_history::OpType;
use ordeal_system::client::{Client as BrokerClient, ClientError, ClientOptions, Suspects};
use ordeal_system::error::BrokerError;
use ordeal_system::pb::broker::PartitionOffset;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The topic the log workload uses.
pub const TOPIC: &str = "ordeal";

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

/// Broker clients for the register and log workloads.
pub struct BrokerClients {
    workload: Workload,
    nodes: BTreeMap<u64, String>,
    timeout: Duration,
    /// Shared by every process: a node one process found unresponsive, the others avoid.
    suspects: Arc<Suspects>,
}

impl BrokerClients {
    /// Clients of `workload` for the cluster at `nodes`, with a per-op timeout.
    pub fn new(workload: Workload, nodes: BTreeMap<u64, String>, timeout: Duration) -> Self {
        BrokerClients { workload, nodes, timeout, suspects: Arc::default() }
    }
}

impl ClientFactory for BrokerClients {
    fn open(&self, process: u64) -> Box<dyn Client> {
        if self.workload == Workload::Noop {
            return Box::new(NoopClient);
        }
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(200).min(self.timeout),
            attempt_timeout: self.timeout,
            deadline: self.timeout,
            admin_token: None,
            suspects: self.suspects.clone(),
            reads_at_home: true,
        };
        let client = BrokerClient::new(self.nodes.clone(), opts);
        // Jepsen binds each process to a node; hints then lead it to the leader.
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        if !ids.is_empty() {
            client.prefer(ids[process as usize % ids.len()]);
        }
        Box::new(Broker { client, producer_id: process + 1, sequence: 0 })
    }
}

struct Broker {
    client: BrokerClient,
    producer_id: u64,
    sequence: u64,
}

fn key_bytes(value: &Value) -> Vec<u8> {
    match &value["key"] {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn int(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or_else(|| Value::from(String::from_utf8_lossy(bytes)), Value::from)
}

fn encode(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// A completion from a client error: definite errors fail, others are unknown; reads always fail.
fn failed(e: &ClientError, read: bool) -> Completion {
    let kind = if read || e.is_definite() { OpType::Fail } else { OpType::Info };
    Completion { kind, value: Value::Null, error: Some(e.to_string()), node: e.node() }
}

impl Broker {
    async fn append(&mut self, value: &Value) -> Completion {
        let p = value["key"].as_u64().unwrap_or(0) as u32;
        self.sequence += 1;
        let r =
            self.client.produce(TOPIC, p, b"", &encode(&value["value"]), Some((self.producer_id, self.sequence))).await;
        match r {
            Ok(a) => ok(json!({"key": p, "value": value["value"], "offset": a.value.offset}), a.node),
            Err(e) => failed(&e, false),
        }
    }

    async fn read(&mut self, value: &Value) -> Completion {
        let p = value["key"].as_u64().unwrap_or(0) as u32;
        let from = value["from"].as_u64().unwrap_or(0);
        let whole = value["final"] == Value::Bool(true);
        let mut values = Vec::new();
        let mut hw;
        let mut node;
        loop {
            match self.client.fetch(TOPIC, p, from + values.len() as u64, 1000).await {
                Ok(a) => {
                    hw = a.value.high_watermark;
                    node = a.node;
                    let n = a.value.records.len();
                    values.extend(a.value.records.iter().map(|r| int(&r.value)));
                    if !whole || n == 0 || from + values.len() as u64 >= hw {
                        break;
                    }
                }
                Err(e) => return failed(&e, true),
            }
        }
        let mut out = json!({"key": p, "from": from, "values": values, "hw": hw});
        if whole {
            out["final"] = Value::Bool(true);
        }
        ok(out, node)
    }
}

fn ok(value: Value, node: u64) -> Completion {
    Completion { kind: OpType::Ok, value, error: None, node: Some(node) }
}

#[async_trait]
impl Client for Broker {
    async fn invoke(&mut self, f: &str, value: &Value) -> Completion {
        let key = key_bytes(value);
        match f {
            "read" if value.get("from").is_some() => self.read(value).await,
            "append" => self.append(value).await,
            "read" => match self.client.get(&key).await {
                Ok(a) => ok(json!({"key": value["key"], "value": a.value.as_deref().map(int)}), a.node),
                Err(e) => failed(&e, true),
            },
            "write" => match self.client.put(&key, &encode(&value["value"])).await {
                Ok(a) => ok(value.clone(), a.node),
                Err(e) => failed(&e, false),
            },
            "cas" => {
                let from = (!value["from"].is_null()).then(|| encode(&value["from"]));
                match self.client.cas(&key, from.as_deref(), &encode(&value["to"])).await {
                    Ok(a) => ok(value.clone(), a.node),
                    Err(ClientError::Broker { node, error: BrokerError::CasMismatch { current } }) => Completion {
                        kind: OpType::Fail,
                        value: value.clone(),
                        error: Some(format!(
                            "cas mismatch: found {}",
                            current.as_deref().map(int).unwrap_or(Value::Null)
                        )),
                        node: Some(node),
                    },
                    Err(e) => failed(&e, false),
                }
            }
            "commit" => {
                let p = value["key"].as_u64().unwrap_or(0) as u32;
                let offsets = vec![PartitionOffset {
                    topic: TOPIC.into(),
                    partition: p,
                    offset: value["value"].as_u64().unwrap_or(0),
                }];
                match self.client.commit_offsets(&format!("g{p}"), offsets).await {
                    Ok(a) => ok(value.clone(), a.node),
                    Err(e) => failed(&e, false),
                }
            }
            "list" => {
                let p = value["key"].as_u64().unwrap_or(0) as u32;
                match self.client.list_committed_offsets(&format!("g{p}")).await {
                    Ok(a) => {
                        let o = a.value.iter().find(|o| o.partition == p).map(|o| o.offset);
                        ok(json!({"key": p, "value": o}), a.node)
                    }
                    // Nothing committed yet: the register is absent.
                    Err(ClientError::Broker { node, error: BrokerError::UnknownConsumerGroup(_) }) => {
                        ok(json!({"key": p, "value": null}), node)
                    }
                    Err(e) => failed(&e, true),
                }
            }
            other => Completion {
                kind: OpType::Fail,
                value: value.clone(),
                error: Some(format!("unknown operation {other}")),
                node: None,
            },
        }
    }
}

/// Acknowledges everything at once: the driver's own cost.
pub struct NoopClient;

#[async_trait]
impl Client for NoopClient {
    async fn invoke(&mut self, _f: &str, value: &Value) -> Completion {
        Completion { kind: OpType::Ok, value: value.clone(), error: None, node: None }
    }
}
