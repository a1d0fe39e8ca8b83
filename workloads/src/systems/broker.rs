//! ordeal-broker: its cluster ([`BrokerSystem`], every power: kill and pause, leaders per group,
//! restart on another binary, membership) and its clients for the register and log workloads.

use super::{Registration, Sut, SutError};
use crate::client::{Client, ClientFactory, Completion, NoopClients, ok};
use async_trait::async_trait;
use ordeal_faults::layout::Layout;
use ordeal_faults::supervise::Supervisor;
use ordeal_faults::system::{
    self, GroupState, Leaders, Member, Members, Membership, NodeView, SpareSlots, System, SystemError,
};
use ordeal_history::{OpType, Test};
use ordeal_wire::certs::{ClusterCa, binary_supports_tls};
use ordeal_wire::client::{Client as BrokerClient, ClientError, ClientOptions, Suspects};
use ordeal_wire::config::{Bug, RaftTiming};
use ordeal_wire::error::BrokerError;
use ordeal_wire::launch::{ClusterSpec, NodeSpec, find_binary};
use ordeal_wire::pb::broker::PartitionOffset;
use ordeal_wire::status::NodeStatus;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
                .map_err(|_| SutError::Setting(format!("--bug {b:?}: expected one of {}", Bug::names().join(", "))))
        })
        .collect()
}

/// The broker's bug names, for errors.
fn validate(test: &Test) -> Result<(), SutError> {
    bugs(test)?;
    if test.etcd_reads != "linearizable" {
        return Err(SutError::Setting("--etcd-reads is for --system etcd".into()));
    }
    Ok(())
}

/// A node's spec from its slot.
fn node_spec(s: &ordeal_faults::layout::Slot) -> NodeSpec {
    NodeSpec {
        id: s.id,
        addr: s.addr(0),
        http: s.addr(1),
        data_dir: s.data_dir(),
        log: s.log("broker"),
        netns: s.netns.clone(),
        env: s.env.clone(),
        remote: s.remote.clone(),
    }
}

fn build(test: &Test, layout: &Layout, binary: PathBuf) -> Result<Sut, SutError> {
    let nodes = layout.slots.iter().map(node_spec).collect();
    let spares = layout.spares.iter().map(node_spec).collect();
    let timing = RaftTiming {
        tick: Duration::from_millis(test.tick_ms),
        heartbeat_ticks: test.heartbeat_ticks,
        election_ticks: test.election_ticks,
        max_election_ticks: 0,
    };
    let mut env = vec![];
    if let Some(n) = test.snapshot_entries {
        env.push(("ORDEAL_BROKER_SNAPSHOT_ENTRIES".to_string(), n.to_string()));
    }
    let tls = cluster_ca(test, layout, &binary).map_err(|e| SutError::Setting(format!("peer TLS: {e}")))?;
    let spec = ClusterSpec { binary, nodes, groups: test.groups, timing, sync: true, bugs: bugs(test)?, env, tls };
    for node in spec.nodes.iter().chain(&spares) {
        spec.credentials(node).map_err(|e| SutError::Setting(format!("node {} certificate: {e}", node.id)))?;
    }
    let timeout = Duration::from_millis(test.op_timeout_ms);
    let clients: Arc<dyn ClientFactory> = match test.workload.as_str() {
        "register" | "log" => Arc::new(BrokerClients::new(spec.peers(), timeout)),
        "noop" => Arc::new(NoopClients),
        other => return Err(SutError::Workload { system: "broker", workload: other.into() }),
    };
    Ok(Sut { system: Arc::new(BrokerSystem::new(spec, spares)), clients })
}

/// The run's cluster CA, in the nodes' directory beside their own (`nodes/tls/`), so that peers
/// authenticate with mutual TLS; `None` when a build the run uses predates the TLS flags (a
/// rolling upgrade from an old release): a node that dials TLS cannot reach one that does not
/// speak it, so the whole cluster then runs without.
fn cluster_ca(test: &Test, layout: &Layout, binary: &Path) -> std::io::Result<Option<ClusterCa>> {
    let upgrade = test.upgrade_binary.as_deref().map(Path::new);
    if let Some(old) = std::iter::once(binary).chain(upgrade).find(|b| !binary_supports_tls(b)) {
        tracing::warn!("{} has no --tls-ca: this run's peers are not authenticated", old.display());
        return Ok(None);
    }
    let Some(nodes_dir) = layout.slots.first().and_then(|s| s.dir.parent()) else { return Ok(None) };
    ClusterCa::new(&nodes_dir.join("tls")).map(Some)
}

/// How long a membership change may take (it probes the node concerned, then commits).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster of broker processes.
pub struct BrokerSystem {
    /// The initial voters.
    spec: ClusterSpec,
    /// Places for nodes that join; each started with `--join`.
    spares: Vec<NodeSpec>,
    /// The nodes now in the cluster: the initial ones, plus those that joined, less those removed.
    current: Mutex<BTreeSet<u64>>,
    /// The spare slots handed out.
    used: SpareSlots,
    processes: Supervisor,
    status: Arc<BrokerClient>,
    admin: BrokerClient,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BrokerSystem {
    /// A cluster as `spec` describes it, with `spares` to join later; nothing runs until
    /// [`System::setup`].
    pub fn new(spec: ClusterSpec, spares: Vec<NodeSpec>) -> Self {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(200),
            attempt_timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        let mut everyone = spec.peers();
        everyone.extend(spares.iter().map(|n| (n.id, n.addr.to_string())));
        let status = Arc::new(BrokerClient::new(everyone.clone(), opts.clone()));
        let admin_opts = ClientOptions { attempt_timeout: ADMIN_TIMEOUT, deadline: ADMIN_TIMEOUT, ..opts };
        let admin = BrokerClient::new(everyone, admin_opts);
        let ids: Vec<u64> = spec.nodes.iter().map(|n| n.id).collect();
        let (launcher, joiners) = (spec.clone(), spares.clone());
        let processes = Supervisor::new(
            &ids,
            &spec.binary,
            Box::new(move |id, binary| {
                if let Some(node) = launcher.node(id) {
                    return Ok(launcher.launch(node, binary));
                }
                let node = joiners
                    .iter()
                    .find(|n| n.id == id)
                    .ok_or_else(|| std::io::Error::other(format!("no node {id}")))?;
                Ok(joining(&launcher, node, binary))
            }),
        );
        let current = Mutex::new(ids.into_iter().collect());
        BrokerSystem { spec, spares, current, used: SpareSlots::default(), processes, status, admin }
    }

    fn remove_keys(&self) {
        if let Some(Err(e)) = self.spec.tls.as_ref().map(ClusterCa::remove_keys) {
            tracing::warn!("removing the nodes' private keys: {e}");
        }
    }

    fn spare(&self, node: u64) -> Result<&NodeSpec, SystemError> {
        self.spares.iter().find(|n| n.id == node).ok_or(SystemError::UnknownNode(node))
    }

    /// Waits (bounded) until `node` answers its status.
    async fn answers(&self, node: u64) -> Result<(), SystemError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.status.status(node).await.is_err() {
            if let Some(status) = self.processes.exited(node)? {
                return Err(SystemError::Process { node, message: format!("exited at start with {status}") });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SystemError::NotReady(format!("node {node} did not answer within 15 s of starting")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for BrokerSystem {
    /// Also on a panic or an early error: no private key outlives the run.
    fn drop(&mut self) {
        self.remove_keys();
    }
}

/// The launch of a node that joins: `--join`, and an address book of the initial voters and
/// itself.
fn joining(initial: &ClusterSpec, node: &NodeSpec, binary: &Path) -> ordeal_wire::launch::Launch {
    let mut spec = initial.clone();
    let mut node = node.clone();
    node.env.push(("ORDEAL_BROKER_JOIN".into(), "true".into()));
    spec.nodes.push(node.clone());
    spec.launch(&node, binary)
}

/// The learner's applied index as a broker's promote gate saw it: 0 is none (the learner did not
/// answer, no gate was asked for, or the broker predates the figure).
fn gate_figure(learner_applied: u64) -> Option<u64> {
    Some(learner_applied).filter(|a| *a > 0)
}

/// A broker's answer to a membership change, as a system error.
fn membership_error(node: u64, e: ClientError) -> SystemError {
    match e {
        ClientError::Broker { error: error @ BrokerError::PromoteRefused { learner_applied, .. }, .. } => {
            SystemError::Refused { node, reason: error.to_string(), gate_saw: gate_figure(learner_applied) }
        }
        ClientError::Broker { error: error @ BrokerError::MembershipRefused { .. }, .. } => {
            SystemError::Refused { node, reason: error.to_string(), gate_saw: None }
        }
        ClientError::Broker { ref error, .. } if error.is_definite() && error.is_retriable() => {
            SystemError::Unavailable { node, message: e.to_string() }
        }
        ClientError::Unreachable(_) => SystemError::Unavailable { node, message: e.to_string() },
        other => SystemError::Request { node, message: other.to_string() },
    }
}

#[async_trait]
impl Membership for BrokerSystem {
    fn spares(&self) -> Vec<u64> {
        self.used.free(self.spares.iter().map(|n| n.id))
    }

    async fn add_learner(&self, node: u64) -> Result<(), SystemError> {
        let address = self.spare(node)?.addr.to_string();
        self.used.claim(node)?;
        self.processes.add(node, &self.spec.binary);
        self.processes.start(node)?;
        self.answers(node).await?;
        match self.admin.add_learner(0, node, &address).await {
            Err(e @ ClientError::Broker { .. }) if e.is_definite() => {
                self.processes.forget(node).await?;
                Err(membership_error(node, e))
            }
            // Unsure or done: it runs, so it is a node of the cluster either way.
            other => {
                lock(&self.current).insert(node);
                other.map(|_| ()).map_err(|e| membership_error(node, e))
            }
        }
    }

    async fn promote(&self, node: u64, min_applied_index: u64) -> Result<Option<u64>, SystemError> {
        let done =
            self.admin.promote(0, node, min_applied_index, false).await.map_err(|e| membership_error(node, e))?;
        Ok(gate_figure(done.learner_applied))
    }

    async fn remove(&self, node: u64) -> Result<(), SystemError> {
        self.admin.remove_node(0, node).await.map_err(|e| membership_error(node, e))?;
        lock(&self.current).remove(&node);
        self.processes.forget(node).await
    }

    async fn members(&self) -> Result<Members, SystemError> {
        let r = self.admin.members(0).await.map_err(|e| membership_error(0, e))?;
        let members = r
            .members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                learner: m.is_learner,
                match_index: m.match_index,
                applied_index: m.reachable.then_some(m.applied_index),
                snapshot: m.progress_state == "snapshot",
            })
            .collect();
        Ok(Members { leader: r.leader_id, commit_index: r.commit_index, members })
    }

    async fn snapshot_bytes(&self, node: u64) -> Option<u64> {
        let http = self.spare(node).ok()?.http;
        let text = http_get(http, "/metrics").await.map_err(|e| tracing::debug!("{http}/metrics: {e}")).ok()?;
        metric(&text, "ordeal_snapshot_received_bytes_total")
    }
}

/// The body of `GET path` from a node's HTTP listener (HTTP/1.0: the server closes when done).
pub(super) async fn http_get(address: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.take(1 << 20).read_to_string(&mut answer).await?;
    Ok(answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// The value of counter `name` (labelled or not) in a Prometheus text exposition.
pub(super) fn metric(text: &str, name: &str) -> Option<u64> {
    let value = |l: &str| -> Option<f64> {
        let rest = l.strip_prefix(name)?;
        let rest = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
        rest.strip_prefix(' ')?.trim().parse().ok()
    };
    text.lines().find_map(value).map(|v| v as u64)
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
        lock(&self.current).iter().copied().collect()
    }

    fn addresses(&self) -> BTreeMap<u64, String> {
        let all = self.spec.nodes.iter().chain(&self.spares);
        all.filter(|n| lock(&self.current).contains(&n.id)).map(|n| (n.id, n.addr.to_string())).collect()
    }

    fn log_file(&self, node: u64) -> Option<&Path> {
        self.spec.node(node).or_else(|| self.spares.iter().find(|n| n.id == node)).map(|n| n.log.as_path())
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

    /// Stops every node, then removes their private keys (a restart would need them until now).
    async fn teardown(&self) -> Result<(), SystemError> {
        let stopped = self.processes.stop_all().await;
        self.remove_keys();
        stopped
    }

    fn leaders(&self) -> Option<&dyn Leaders> {
        Some(self)
    }

    fn membership(&self) -> Option<&dyn Membership> {
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

/// An attempt that hangs (on a paused or cut-off node) is given up after this fraction of the
/// op's timeout, so that reads, and appends with their producer id and sequence, are retried on
/// another node within the op's time, as an idempotent producer retries: a broker that forgets
/// sequences (`--bug no-dedupe`) then lands the append twice. Plain writes still complete
/// `info` after an attempt with no answer.
const ATTEMPTS: u32 = 4;

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
            attempt_timeout: self.timeout / ATTEMPTS,
            deadline: self.timeout,
            admin_token: None,
            suspects: self.suspects.clone(),
            reads_at_home: true,
            // As users get it. A process has one op at a time, so nothing of it is ever
            // coalesced: the harness's produces go as single requests (and single entries).
            coalesce: ClientOptions::default().coalesce,
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
        let (mut values, mut offsets) = (Vec::new(), Vec::new());
        // Where the next fetch starts: past the last record read, at the offset the broker named
        // (not counted from `from`: a log with a hole must show it, not shift what follows).
        let mut next = from;
        let mut hw;
        let mut node;
        loop {
            match self.client.fetch(TOPIC, p, next, 1000).await {
                Ok(a) => {
                    hw = a.value.high_watermark;
                    node = a.node;
                    let before = next;
                    for r in &a.value.records {
                        values.push(int(&r.value));
                        offsets.push(r.offset);
                        next = next.max(r.offset.saturating_add(1));
                    }
                    if whole && next == before && next < hw {
                        // A final read is the whole log or nothing: a short one would hide its
                        // tail from the checks. A read changes nothing, so it definitely failed.
                        let error = format!("partition {p}: no records at {next} below high watermark {hw}");
                        return Completion {
                            kind: OpType::Fail,
                            value: Value::Null,
                            error: Some(error),
                            node: Some(node),
                        };
                    }
                    if !whole || next == before || next >= hw {
                        break;
                    }
                }
                Err(e) => return failed(&e, true),
            }
        }
        let mut out = json!({"key": p, "from": from, "values": values, "offsets": offsets, "hw": hw});
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_the_broker_could_not_take_now_is_unavailable_and_an_unknown_outcome_is_not() {
        let broker = |error| ClientError::Broker { node: 1, error };
        let dropped = membership_error(4, broker(BrokerError::ProposalDropped("leader changed".into())));
        assert!(matches!(dropped, SystemError::Unavailable { node: 4, .. }), "{dropped}");
        let unreachable = membership_error(4, ClientError::Unreachable("connection refused".into()));
        assert!(matches!(unreachable, SystemError::Unavailable { .. }), "{unreachable}");
        let unknown = membership_error(4, broker(BrokerError::OutcomeUnknown("timed out".into())));
        assert!(matches!(unknown, SystemError::Request { .. }), "it may still happen: {unknown}");
    }

    #[test]
    fn counters_are_read_with_or_without_labels() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{node=\"4\"} 1234\nab_total 7\nb 2\n";
        assert_eq!(metric(text, "a_total"), Some(1234));
        assert_eq!(metric(text, "ab_total"), Some(7));
        assert_eq!(metric(text, "c"), None);
    }
}
