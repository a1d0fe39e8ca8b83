//! ordeal-broker: its cluster ([`BrokerSystem`], every power: kill and pause, leaders per group,
//! restart on another binary) and its clients for the register and log workloads.

use super::{Registration, Sut, SutError};
use crate::client::{Client, ClientFactory, Completion, NoopClients, ok};
use async_trait::async_trait;
use ordeal_faults::layout::Layout;
use ordeal_faults::supervise::Supervisor;
use ordeal_faults::system::{self, GroupState, Leaders, NodeView, System, SystemError};
use ordeal_history::{OpType, Test};
use ordeal_wire::client::{Client as BrokerClient, ClientError, ClientOptions, Suspects};
use ordeal_wire::config::{Bug, RaftTiming};
use ordeal_wire::error::BrokerError;
use ordeal_wire::launch::{ClusterSpec, NodeSpec, find_binary};
use ordeal_wire::pb::broker::PartitionOffset;
use ordeal_wire::status::NodeStatus;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The topic the log workload uses.
pub const TOPIC: &str = "ordeal";

/// The broker's registration.
pub const REGISTRATION: Registration = Registration { name: "broker", find_binary, validate, build };

fn bugs(test: &Test) -> Result<Vec<Bug>, SutError> {
    test.bugs
        .iter()
        .map(|b| {
            clap::ValueEnum::from_str(b, true)
                .map_err(|_| SutError::Setting(format!("--bug {b:?}: expected stale-reads or no-dedupe")))
        })
        .collect()
}

fn validate(test: &Test) -> Result<(), SutError> {
    bugs(test)?;
    if test.etcd_reads != "linearizable" {
        return Err(SutError::Setting("--etcd-reads is for --system etcd".into()));
    }
    Ok(())
}

fn build(test: &Test, layout: &Layout, binary: PathBuf) -> Result<Sut, SutError> {
    let nodes = layout
        .slots
        .iter()
        .map(|s| NodeSpec {
            id: s.id,
            addr: s.addr(0),
            http: s.addr(1),
            data_dir: s.dir.join("data"),
            log: s.log("broker"),
            netns: s.netns.clone(),
            env: s.env.clone(),
        })
        .collect();
    let timing = RaftTiming {
        tick: Duration::from_millis(test.tick_ms),
        heartbeat_ticks: test.heartbeat_ticks,
        election_ticks: test.election_ticks,
        max_election_ticks: 0,
    };
    let spec = ClusterSpec { binary, nodes, groups: test.groups, timing, sync: true, bugs: bugs(test)?, env: vec![] };
    let timeout = Duration::from_millis(test.op_timeout_ms);
    let clients: Arc<dyn ClientFactory> = match test.workload.as_str() {
        "register" | "log" => Arc::new(BrokerClients::new(spec.peers(), timeout)),
        "noop" => Arc::new(NoopClients),
        other => return Err(SutError::Workload { system: "broker", workload: other.into() }),
    };
    Ok(Sut { system: Arc::new(BrokerSystem::new(spec)), clients })
}

/// A cluster of broker processes.
pub struct BrokerSystem {
    spec: ClusterSpec,
    processes: Supervisor,
    status: Arc<BrokerClient>,
}

impl BrokerSystem {
    /// A cluster as `spec` describes it; nothing runs until [`System::setup`].
    pub fn new(spec: ClusterSpec) -> Self {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(200),
            attempt_timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        let status = Arc::new(BrokerClient::new(spec.peers(), opts));
        let ids: Vec<u64> = spec.nodes.iter().map(|n| n.id).collect();
        let launcher = spec.clone();
        let processes = Supervisor::new(
            &ids,
            &spec.binary,
            Box::new(move |id, binary| {
                let node = launcher.node(id).ok_or_else(|| std::io::Error::other(format!("no node {id}")))?;
                Ok(launcher.launch(node, binary))
            }),
        );
        BrokerSystem { spec, processes, status }
    }
}

/// The neutral view of a broker node's status.
fn view(s: NodeStatus) -> NodeView {
    let groups = s
        .groups
        .into_iter()
        .map(|g| GroupState {
            group: g.group,
            role: g.role,
            leader_id: g.leader_id,
            term: g.term,
            commit_index: g.commit_index,
            applied_index: g.applied_index,
            voters: g.voters,
            learners: g.learners,
            // Builds from before the cluster version report 0.
            cluster_version: (g.cluster_version > 0).then_some(g.cluster_version),
        })
        .collect();
    let release = (s.release > 0).then_some(s.release);
    NodeView { id: s.id, version: s.version, release, time_ms: Some(s.time_ms), groups }
}

#[async_trait]
impl System for BrokerSystem {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn nodes(&self) -> Vec<u64> {
        self.spec.nodes.iter().map(|n| n.id).collect()
    }

    fn addresses(&self) -> BTreeMap<u64, String> {
        self.spec.peers()
    }

    fn log_file(&self, node: u64) -> Option<&Path> {
        self.spec.node(node).map(|n| n.log.as_path())
    }

    async fn setup(&self) -> Result<(), SystemError> {
        let logs = |n: u64| self.log_file(n).map(|p| p.display().to_string()).unwrap_or_default();
        self.processes
            .start_all(Duration::from_secs(30), logs, || async { system::leader(self, 0).await.is_some() })
            .await
    }

    async fn statuses(&self, timeout: Duration) -> BTreeMap<u64, NodeView> {
        // All nodes at once: a paused one costs the timeout, not the timeout times its rank.
        let mut probes = tokio::task::JoinSet::new();
        for node in self.nodes() {
            let client = self.status.clone();
            probes.spawn(async move { (node, tokio::time::timeout(timeout, client.status(node)).await) });
        }
        let mut out = BTreeMap::new();
        while let Some(joined) = probes.join_next().await {
            if let Ok((node, Ok(Ok(s)))) = joined {
                out.insert(node, view(s));
            }
        }
        out
    }

    fn supervisor(&self) -> Option<&Supervisor> {
        Some(&self.processes)
    }

    fn leaders(&self) -> Option<&dyn Leaders> {
        Some(self)
    }
}

#[async_trait]
impl Leaders for BrokerSystem {
    fn groups(&self) -> u32 {
        self.spec.groups
    }

    async fn transfer_leader(&self, node: u64, group: u32, to: u64) -> Result<(), SystemError> {
        self.status
            .transfer_leader(node, group, to)
            .await
            .map_err(|e| SystemError::Request { node, message: format!("transfer leader to {to}: {e}") })
    }
}

/// Broker clients for the register and log workloads.
pub struct BrokerClients {
    nodes: BTreeMap<u64, String>,
    timeout: Duration,
    /// Shared by every process: a node one process found unresponsive, the others avoid.
    suspects: Arc<Suspects>,
}

impl BrokerClients {
    /// Clients for the cluster at `nodes`, with a per-op timeout.
    pub fn new(nodes: BTreeMap<u64, String>, timeout: Duration) -> Self {
        BrokerClients { nodes, timeout, suspects: Arc::default() }
    }
}

impl ClientFactory for BrokerClients {
    fn open(&self, process: u64) -> Box<dyn Client> {
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

/// The key of a register op, as bytes (shared with the other systems' clients, so every system
/// stores the same bytes for the same op).
pub(crate) fn key_bytes(value: &Value) -> Vec<u8> {
    match &value["key"] {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// A stored value read back: the integer it encodes, else its text.
pub(crate) fn int(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or_else(|| Value::from(String::from_utf8_lossy(bytes)), Value::from)
}

/// A value as stored: strings as they are, anything else as JSON text.
pub(crate) fn encode(v: &Value) -> Vec<u8> {
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
