//! A client library for the broker that follows leader hints and retries only where it is safe.
//!
//! Every call ends in one of three ways, and testers must keep them apart:
//!
//! * `Ok`: the request took effect (or, for a read, returned what it read);
//! * a definite error ([`ClientError::is_definite`]): it did not take effect;
//! * [`ClientError::Indeterminate`]: it was sent and may or may not have taken effect.
//!
//! Definite refusals (not the leader, no leader yet, overloaded, a node that refused the
//! connection) are retried on the right node until the call's deadline. After an indeterminate
//! attempt only idempotent calls are retried: reads, and produces with a producer id and
//! sequence, which the broker deduplicates.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), ordeal_wire::client::ClientError> {
//! use ordeal_wire::client::{Client, ClientOptions};
//! let client = Client::new([(1, "127.0.0.1:7001".to_string())].into(), ClientOptions::default());
//! let produced = client.produce("events", 0, b"k", b"v", None).await?;
//! println!("landed at offset {} via node {}", produced.value.offset, produced.node);
//! # Ok(()) }
//! ```

use crate::error::BrokerError;
use crate::lock;
use crate::pb::broker::admin_client::AdminClient;
use crate::pb::broker::broker_client::BrokerClient;
use crate::pb::broker::*;
use crate::shard;
use crate::status::NodeStatus;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

/// Nodes that recently failed to answer in time or refused connections, shared by every client
/// that holds it: a client about to pick a node to start with avoids them, so that one stuck
/// request teaches the others (and the processes that replace them) to look elsewhere.
#[derive(Debug, Default)]
pub struct Suspects(Mutex<HashMap<u64, Instant>>);

/// How long a node stays suspect after failing.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// How long an attempt may run before the client asks the other nodes whether one of them leads
/// now, and how often it asks again: a paused or cut-off leader answers nothing, and a client
/// that waited out its whole timeout on it would add that timeout to every failover.
const HEDGE_AFTER: Duration = Duration::from_millis(100);
const HEDGE_EVERY: Duration = Duration::from_millis(50);

impl Suspects {
    fn mark(&self, node: u64) {
        lock(&self.0).insert(node, Instant::now());
    }

    fn clear(&self, node: u64) {
        lock(&self.0).remove(&node);
    }

    fn is_suspect(&self, node: u64) -> bool {
        lock(&self.0).get(&node).is_some_and(|t| t.elapsed() < SUSPECT_FOR)
    }
}

/// Timeouts of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long one attempt may take before its outcome is unknown.
    pub attempt_timeout: Duration,
    /// How long a call may take in all, retries included.
    pub deadline: Duration,
    /// Sent with admin calls.
    pub admin_token: Option<String>,
    /// Shared knowledge of unresponsive nodes (see [`Suspects`]).
    pub suspects: Arc<Suspects>,
    /// Send every read to the home node first (see [`Client::prefer`]) instead of the group's
    /// last known leader, as Jepsen binds each client process to a node. A correct node that
    /// does not lead answers with a hint; a node that serves reads it should not is caught.
    pub reads_at_home: bool,
    /// Whether concurrent idempotent produces to one raft group share requests (see
    /// [`Coalesce`]).
    pub coalesce: Coalesce,
}

/// Group commit in the client: idempotent produces bound for one raft group that are issued
/// while requests to that group are in flight wait, and go together as one `ProduceBatch` (one
/// raft entry) when a request returns. No timer: a lone producer's produce goes at once, as it
/// would without coalescing. Each caller still gets its own answer.
///
/// # Examples
///
/// ```
/// use ordeal_wire::client::{ClientOptions, Coalesce};
/// // The default: one request per group in flight, the produces issued meanwhile go next, together.
/// assert_eq!(ClientOptions::default().coalesce, Coalesce::WhileInFlight(1));
/// let _every_produce_alone = ClientOptions { coalesce: Coalesce::Off, ..Default::default() };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesce {
    /// Every produce is its own request.
    Off,
    /// At most this many requests per group in flight; produces issued beyond them wait for
    /// the next batch.
    WhileInFlight(usize),
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            admin_token: None,
            suspects: Arc::default(),
            reads_at_home: false,
            // On: it changes nothing for a caller that has one produce at a time (the harness's
            // clients), and it is what lets many producers sharing a client scale.
            coalesce: Coalesce::WhileInFlight(1),
        }
    }
}

/// How a call ended when it did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A broker refused the request (definite unless [`BrokerError::OutcomeUnknown`]).
    #[error("node {node}: {error}")]
    Broker {
        /// The node that answered.
        node: u64,
        /// Its answer.
        error: BrokerError,
    },
    /// No node could be reached; nothing was sent.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The node does not serve the call (an older release, or a feature its cluster has not
    /// switched on): definite, nothing took effect.
    #[error("node {node}: unsupported: {message}")]
    Unsupported {
        /// The node that answered.
        node: u64,
        /// What it said.
        message: String,
    },
    /// The request was sent but no answer came: it may or may not have taken effect.
    #[error("node {node}: outcome unknown: {message}")]
    Indeterminate {
        /// The node it was sent to.
        node: u64,
        /// What happened.
        message: String,
    },
}

impl ClientError {
    /// Whether the request certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Broker { error, .. } => error.is_definite(),
            ClientError::Unreachable(_) | ClientError::Unsupported { .. } => true,
            ClientError::Indeterminate { .. } => false,
        }
    }

    /// The node involved, when one was.
    pub fn node(&self) -> Option<u64> {
        match self {
            ClientError::Broker { node, .. }
            | ClientError::Indeterminate { node, .. }
            | ClientError::Unsupported { node, .. } => Some(*node),
            ClientError::Unreachable(_) => None,
        }
    }
}

/// A successful call's value and the node that served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<T> {
    /// What the broker returned.
    pub value: T,
    /// The node that answered.
    pub node: u64,
}

/// Ids given to addresses whose node did not say its id.
const PLACEHOLDER_IDS: u64 = 1_000_000;

/// What kind of call: reads and idempotent writes may be repeated after an attempt whose
/// outcome is unknown; plain writes may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Read,
    Safe,
    Unsafe,
}

/// How long a client sends produces one by one after a node said it has no batches.
const BATCHES_OFF_FOR: Duration = Duration::from_secs(5);
/// The most records and bytes the client puts in one batch (the broker takes up to 1,024
/// records; a batch's bytes stay well below the gRPC message limit of 4 MB).
const MAX_BATCH_RECORDS: usize = 256;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// The longest a batch's sender holds its slot after answering, waiting for the callers it
/// answered to queue again; a caller that does not come back costs the next batch this much.
const COHORT_WAIT: Duration = Duration::from_millis(1);

/// The produces to one raft group: requests in flight, and those waiting for the next batch.
#[derive(Default)]
struct Lane {
    in_flight: usize,
    waiting: VecDeque<Waiter>,
    /// Callers of the batch just answered that have not produced again yet. Its sender holds
    /// the slot until they have: handed on at once, the slot would leave with the few produces
    /// queued meanwhile, and the producers would split into two batches that alternate, each
    /// record waiting two commit cycles (docs/benchmarks.md, "Where a batch's commit cycle goes").
    returning: usize,
    /// Told when the last of them has queued.
    gathered: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Lane {
    /// Expects `answered` callers of a batch back; the receiver is told when they all have
    /// queued.
    fn expect_back(&mut self, answered: usize) -> Option<tokio::sync::oneshot::Receiver<()>> {
        if answered == 0 {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        (self.returning, self.gathered) = (answered, Some(tx));
        Some(rx)
    }

    /// The batch's sender waits no longer: whoever has not come back is not waited for.
    fn stop_waiting(&mut self) {
        (self.returning, self.gathered) = (0, None);
    }

    /// A produce entered the lane: one caller fewer to wait for; the batch's sender is told when
    /// none is left.
    fn arrived(&mut self) {
        if self.returning == 0 {
            return;
        }
        self.returning -= 1;
        if self.returning == 0
            && let Some(gathered) = self.gathered.take()
        {
            let _ = gathered.send(());
        }
    }

    /// The produces waiting at the front of the lane that fit in one batch after `first`.
    fn take_batch(&mut self, first: &ProduceRequest) -> Vec<Waiter> {
        let mut companions = Vec::new();
        let mut bytes = first.key.len() + first.value.len();
        while let Some(next) = self.waiting.front() {
            bytes += next.request.key.len() + next.request.value.len();
            if companions.len() + 1 >= MAX_BATCH_RECORDS || bytes > MAX_BATCH_BYTES {
                break;
            }
            companions.extend(self.waiting.pop_front());
        }
        companions
    }
}

/// A produce waiting in a lane, and where its turn comes.
struct Waiter {
    request: ProduceRequest,
    turn: tokio::sync::oneshot::Sender<Turn>,
}

impl Waiter {
    fn answer(self, turn: Turn) {
        let _ = self.turn.send(turn);
    }
}

/// What a waiting produce is told.
enum Turn {
    /// Send your produce with these as one batch, and answer them.
    Lead(Vec<Waiter>),
    /// Your produce's answer, from a batch someone else sent.
    Done(Result<Answered<ProduceResponse>, ClientError>),
    /// Send your produce on its own.
    Alone,
}

/// A produce waiting in its lane. Dropped unanswered (its caller gave up), it closes its
/// channel; a slot handed to it just before is handed on with its companions, not lost.
struct Queued<'a> {
    rx: tokio::sync::oneshot::Receiver<Turn>,
    client: &'a Client,
    group: u32,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Turn::Lead(companions)) = self.rx.try_recv() {
            if let Some(lane) = lock(&self.client.lanes).get_mut(&self.group) {
                companions.into_iter().rev().for_each(|w| lane.waiting.push_front(w));
            }
            self.client.hand_on(self.group);
        }
    }
}

/// A request slot of a lane, handed on when dropped (also when the caller gives up on its
/// produce halfway).
struct Slot<'a> {
    client: &'a Client,
    group: u32,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.client.hand_on(self.group);
    }
}

/// One record's result in a batch, as its caller's turn: refusals that another attempt could
/// get past (or whose outcome is unknown) send the record again on its own, safely since it is
/// idempotent; other refusals are the caller's answer.
fn record_turn(node: u64, r: ProduceResult) -> Turn {
    let Some(detail) = r.error else {
        return Turn::Done(Ok(Answered { value: ProduceResponse { offset: r.offset, duplicate: r.duplicate }, node }));
    };
    match BrokerError::from_detail(detail) {
        Some(error) if error.is_definite() && !error.is_retriable() => {
            Turn::Done(Err(ClientError::Broker { node, error }))
        }
        _ => Turn::Alone,
    }
}

/// A broker client for a whole cluster. Cheap to share; every method takes `&self`.
pub struct Client {
    nodes: Mutex<BTreeMap<u64, String>>,
    channels: Mutex<HashMap<u64, Channel>>,
    leaders: Mutex<HashMap<u32, u64>>,
    groups: tokio::sync::OnceCell<u32>,
    /// The node tried first when a group's leader is unknown.
    home: Mutex<u64>,
    /// Produces waiting for the next batch, per raft group ([`Coalesce`]).
    lanes: Mutex<HashMap<u32, Lane>>,
    /// Until when batches are not tried: a node answered that it has none.
    batches_off_until: Mutex<Option<Instant>>,
    opts: ClientOptions,
}

impl Client {
    /// A client for the nodes `nodes` (id to gRPC address). Connections open lazily.
    pub fn new(nodes: BTreeMap<u64, String>, opts: ClientOptions) -> Client {
        let home = nodes.keys().next().copied().unwrap_or(0);
        Client {
            nodes: Mutex::new(nodes),
            channels: Mutex::new(HashMap::new()),
            leaders: Mutex::new(HashMap::new()),
            groups: tokio::sync::OnceCell::new(),
            home: Mutex::new(home),
            lanes: Mutex::new(HashMap::new()),
            batches_off_until: Mutex::new(None),
            opts,
        }
    }

    /// A client for nodes known only by address: each is asked for its id. Addresses that do
    /// not answer keep a placeholder id above 1,000,000, so that calls can still try them.
    pub async fn from_addresses(addrs: &[String], opts: ClientOptions) -> Client {
        let mut nodes = BTreeMap::new();
        for (i, addr) in addrs.iter().enumerate() {
            let placeholder = PLACEHOLDER_IDS + i as u64;
            let probe = Client::new([(placeholder, addr.clone())].into(), opts.clone());
            let id = probe.status(placeholder).await.map(|s| s.id).unwrap_or(placeholder);
            nodes.insert(id, addr.clone());
        }
        Client::new(nodes, opts)
    }

    /// The ids of the nodes this client knows.
    pub fn node_ids(&self) -> Vec<u64> {
        lock(&self.nodes).keys().copied().collect()
    }

    /// Tries `node` first whenever a group's leader is unknown (Jepsen binds each client
    /// process to one node this way).
    pub fn prefer(&self, node: u64) {
        *lock(&self.home) = node;
    }

    /// The client's timeouts.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    async fn channel(&self, node: u64) -> Result<Channel, String> {
        if let Some(c) = lock(&self.channels).get(&node) {
            return Ok(c.clone());
        }
        let addr = lock(&self.nodes).get(&node).cloned().ok_or_else(|| format!("node {node} is unknown"))?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("node {node}: bad address {addr:?}: {e}"))?
            .connect_timeout(self.opts.connect_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| format!("node {node} at {addr}: {}", chain(&e)))?;
        lock(&self.channels).insert(node, channel.clone());
        Ok(channel)
    }

    fn forget(&self, node: u64) {
        lock(&self.channels).remove(&node);
    }

    fn next_node(&self, after: u64) -> u64 {
        let nodes = lock(&self.nodes);
        nodes.range(after + 1..).next().or_else(|| nodes.iter().next()).map(|(id, _)| *id).unwrap_or(after)
    }

    fn learn_leader(&self, group: u32, leader: u64, address: &str) {
        if !address.is_empty() {
            lock(&self.nodes).entry(leader).or_insert_with(|| address.to_owned());
        }
        lock(&self.leaders).insert(group, leader);
    }

    /// The number of raft groups, asked of the first node that answers.
    pub async fn group_count(&self) -> Result<u32, ClientError> {
        self.groups
            .get_or_try_init(|| async {
                let ids: Vec<u64> = lock(&self.nodes).keys().copied().collect();
                let mut errors = Vec::new();
                for id in ids {
                    match self.status(id).await {
                        Ok(s) => return Ok(s.groups.len().max(1) as u32),
                        Err(ClientError::Unreachable(m)) => errors.push(m),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                Err(ClientError::Unreachable(errors.join("; ")))
            })
            .await
            .copied()
    }

    /// One node's status, without retries.
    pub async fn status(&self, node: u64) -> Result<NodeStatus, ClientError> {
        self.on_node(node, |mut c| async move { c.status(StatusRequest {}).await }).await.map(NodeStatus::from)
    }

    /// Sends a call to group `group`'s leader, following hints and retrying where safe.
    async fn call<T, F, Fut>(&self, group: u32, repeat: Repeat, mut attempt: F) -> Result<Answered<T>, ClientError>
    where
        F: FnMut(BrokerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.opts.deadline;
        let cached = lock(&self.leaders).get(&group).copied();
        let home = *lock(&self.home);
        let at_home = repeat == Repeat::Read && self.opts.reads_at_home;
        let mut node = match cached {
            Some(leader) if !at_home => leader,
            _ => home,
        };
        let suspects = &self.opts.suspects;
        // A read bound to its home node goes there even when the node is suspect: that is the
        // point of binding it.
        let known = if at_home { 0 } else { lock(&self.nodes).len() };
        for _ in 0..known {
            if !suspects.is_suspect(node) {
                break;
            }
            node = self.next_node(node);
        }
        let mut backoff = Duration::from_millis(5);
        let mut hops = 0;
        // Once an attempt may have taken effect, no later failure can be reported as definite.
        let mut unknown: Option<ClientError> = None;
        loop {
            // Set when an attempt was abandoned for a leader found elsewhere.
            let mut moved_to = None;
            let last = match self.channel(node).await {
                Err(e) => {
                    suspects.mark(node);
                    ClientError::Unreachable(e)
                }
                Ok(channel) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let sent = tokio::time::timeout(
                        self.opts.attempt_timeout.min(remaining),
                        attempt(BrokerClient::new(channel)),
                    );
                    tokio::select! {
                        answer = sent => match answer {
                            Ok(Ok(r)) => {
                                lock(&self.leaders).insert(group, node);
                                suspects.clear(node);
                                return Ok(Answered { value: r.into_inner(), node });
                            }
                            Ok(Err(status)) => classify(node, &status, Some(self)),
                            Err(_) => {
                                suspects.mark(node);
                                ClientError::Indeterminate { node, message: "attempt timed out".into() }
                            }
                        },
                        leader = self.leader_elsewhere(group, node), if !at_home => {
                            // The attempt may still apply on the old leader: it is indeterminate.
                            suspects.mark(node);
                            lock(&self.leaders).insert(group, leader);
                            moved_to = Some(leader);
                            let message = format!("abandoned: node {leader} leads group {group} now");
                            ClientError::Indeterminate { node, message }
                        }
                    }
                }
            };
            // A node that refused the connection never saw the request, and another one may
            // answer at once: no reason to wait before trying it.
            let mut at_once = matches!(last, ClientError::Unreachable(_));
            match &last {
                ClientError::Broker {
                    error: BrokerError::NotLeader { group: g, leader_id, leader_address }, ..
                } if *leader_id != 0 && *leader_id != node => {
                    self.learn_leader(*g, *leader_id, leader_address);
                    node = *leader_id;
                    at_once = true;
                }
                ClientError::Broker { error, .. } if !error.is_definite() || !error.is_retriable() => {
                    if error.is_definite() || repeat == Repeat::Unsafe {
                        return Err(unknown.unwrap_or(last));
                    }
                    unknown = Some(last.clone());
                }
                // Another node would be no newer; the caller falls back to a call it has.
                ClientError::Unsupported { .. } => return Err(unknown.unwrap_or(last)),
                ClientError::Indeterminate { .. } => {
                    if repeat == Repeat::Unsafe {
                        return Err(last);
                    }
                    unknown = Some(last.clone());
                    node = self.next_node(node);
                }
                _ => node = self.next_node(node),
            }
            if let Some(leader) = moved_to {
                node = leader;
                at_once = true;
            }
            if Instant::now() + backoff >= deadline {
                return Err(unknown.unwrap_or(last));
            }
            // Follow a fresh hint or pass an unreachable node at once; a chain of them means
            // stale views or a cluster that is down, so back off.
            hops = if at_once { hops + 1 } else { 0 };
            if !at_once || hops > 2 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
    }

    /// Resolves with another node that says it leads `group`, once one does: an attempt still
    /// running on `node` is stuck on a deposed or silent leader. Never resolves while `node`
    /// is the only node known.
    async fn leader_elsewhere(&self, group: u32, node: u64) -> u64 {
        tokio::time::sleep(HEDGE_AFTER).await;
        loop {
            let others: Vec<u64> = lock(&self.nodes).keys().copied().filter(|n| *n != node).collect();
            for other in others {
                let Ok(Ok(status)) = tokio::time::timeout(HEDGE_EVERY, self.status(other)).await else { continue };
                if status.groups.iter().any(|g| g.group == group && g.is_leader) {
                    return other;
                }
            }
            tokio::time::sleep(HEDGE_EVERY).await;
        }
    }

    async fn group_of(&self, f: impl FnOnce(u32) -> u32) -> Result<u32, ClientError> {
        Ok(f(self.group_count().await?))
    }

    /// Appends a record. With `idempotence = Some((producer_id, sequence))` the call is retried
    /// after unknown outcomes and lands once, and it may share a request with concurrent
    /// produces to the same raft group ([`Coalesce`]). The broker de-duplicates by a producer's
    /// last sequence only, so a producer id should have one produce in flight at a time.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        key: &[u8],
        value: &[u8],
        idempotence: Option<(u64, u64)>,
    ) -> Result<Answered<ProduceResponse>, ClientError> {
        let group = self.group_of(|n| shard::group_of_partition(topic, partition, n)).await?;
        let (producer_id, sequence) = idempotence.unwrap_or((0, 0));
        let req = ProduceRequest {
            topic: topic.into(),
            partition,
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            producer_id,
            sequence,
        };
        match (idempotence, self.opts.coalesce) {
            (Some(_), Coalesce::WhileInFlight(limit)) => self.produce_coalesced(group, req, limit).await,
            (Some(_), Coalesce::Off) => self.produce_one(group, req, Repeat::Safe).await,
            (None, _) => self.produce_one(group, req, Repeat::Unsafe).await,
        }
    }

    async fn produce_one(
        &self,
        group: u32,
        req: ProduceRequest,
        repeat: Repeat,
    ) -> Result<Answered<ProduceResponse>, ClientError> {
        self.call(group, repeat, |mut c| {
            let r = req.clone();
            async move { c.produce(r).await }
        })
        .await
    }

    /// Takes one of the group's `limit` request slots, or waits in its lane until a returning
    /// request hands it a slot with the produces queued behind it, or answers it.
    async fn produce_coalesced(
        &self,
        group: u32,
        req: ProduceRequest,
        limit: usize,
    ) -> Result<Answered<ProduceResponse>, ClientError> {
        let waiting = {
            let mut lanes = lock(&self.lanes);
            let lane = lanes.entry(group).or_default();
            lane.arrived();
            if lane.in_flight < limit {
                lane.in_flight += 1;
                None
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                lane.waiting.push_back(Waiter { request: req.clone(), turn: tx });
                Some(rx)
            }
        };
        let companions = match waiting {
            None => Vec::new(),
            Some(rx) => {
                let mut queued = Queued { rx, client: self, group };
                match (&mut queued.rx).await {
                    Ok(Turn::Done(result)) => return result,
                    Ok(Turn::Lead(companions)) => companions,
                    // Its batch was refused as a whole or its sender went away: the record is
                    // idempotent, so sending it again on its own is safe whatever happened to it.
                    Ok(Turn::Alone) | Err(_) => return self.produce_one(group, req, Repeat::Safe).await,
                }
            }
        };
        let _slot = Slot { client: self, group };
        self.send_batch(group, req, companions).await
    }

    /// Sends `own` with the produces of `companions` (after it, in the order they queued) as one
    /// batch, answers the companions, and returns `own`'s answer.
    async fn send_batch(
        &self,
        group: u32,
        own: ProduceRequest,
        companions: Vec<Waiter>,
    ) -> Result<Answered<ProduceResponse>, ClientError> {
        let batches_off = lock(&self.batches_off_until).is_some_and(|until| Instant::now() < until);
        if companions.is_empty() || batches_off {
            companions.into_iter().for_each(|w| w.answer(Turn::Alone));
            return self.produce_one(group, own, Repeat::Safe).await;
        }
        let (requests, turns): (Vec<_>, Vec<_>) = companions.into_iter().map(|w| (w.request, w.turn)).unzip();
        let batch = ProduceBatchRequest { records: std::iter::once(own.clone()).chain(requests).collect() };
        let sent = self
            .call(group, Repeat::Safe, |mut c| {
                let r = batch.clone();
                async move { c.produce_batch(r).await }
            })
            .await;
        let mut answers: Vec<Turn> = match sent {
            Ok(a) if a.value.results.len() == batch.records.len() => {
                a.value.results.into_iter().map(|r| record_turn(a.node, r)).collect()
            }
            Ok(a) => {
                let message = format!("a batch of {} got {} results", batch.records.len(), a.value.results.len());
                let e = ClientError::Indeterminate { node: a.node, message };
                batch.records.iter().map(|_| Turn::Done(Err(e.clone()))).collect()
            }
            Err(ClientError::Unsupported { .. }) => {
                // An older node, or a cluster whose version has no batches yet: singles for a
                // while, then try again (the cluster may have been upgraded meanwhile).
                *lock(&self.batches_off_until) = Some(Instant::now() + BATCHES_OFF_FOR);
                batch.records.iter().map(|_| Turn::Alone).collect()
            }
            Err(e) => batch.records.iter().map(|_| Turn::Done(Err(e.clone()))).collect(),
        };
        let mine = answers.remove(0);
        let answered = answers.iter().filter(|a| matches!(a, Turn::Done(Ok(_)))).count();
        let gathered = lock(&self.lanes).entry(group).or_default().expect_back(answered);
        for (turn, answer) in turns.into_iter().zip(answers) {
            let _ = turn.send(answer);
        }
        if let Some(gathered) = gathered {
            let _ = tokio::time::timeout(COHORT_WAIT, gathered).await;
            if let Some(lane) = lock(&self.lanes).get_mut(&group) {
                lane.stop_waiting();
            }
        }
        match mine {
            Turn::Done(result) => result,
            Turn::Alone | Turn::Lead(_) => self.produce_one(group, own, Repeat::Safe).await,
        }
    }

    /// Called when a request slot of `group` frees: hands it to the first produce still waiting
    /// there, with those queued behind it, or gives it back.
    fn hand_on(&self, group: u32) {
        let mut lanes = lock(&self.lanes);
        let Some(lane) = lanes.get_mut(&group) else { return };
        while let Some(first) = lane.waiting.pop_front() {
            let companions = lane.take_batch(&first.request);
            match first.turn.send(Turn::Lead(companions)) {
                Ok(()) => return,
                // Its caller gave up: the next one in line leads the same produces.
                Err(Turn::Lead(companions)) => companions.into_iter().rev().for_each(|w| lane.waiting.push_front(w)),
                Err(_) => unreachable!("only a Lead was sent"),
            }
        }
        lane.in_flight = lane.in_flight.saturating_sub(1);
    }

    /// Reads records of a partition from `from` on (linearizable).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: u32,
    ) -> Result<Answered<FetchResponse>, ClientError> {
        let group = self.group_of(|n| shard::group_of_partition(topic, partition, n)).await?;
        let req = FetchRequest { topic: topic.into(), partition, from_offset: from, max_records: max, local: false };
        self.call(group, Repeat::Read, |mut c| {
            let r = req.clone();
            async move { c.fetch(r).await }
        })
        .await
    }

    /// Reads records from `node`'s own applied state: possibly stale, any role. For checking
    /// what a replica holds.
    pub async fn fetch_local(
        &self,
        node: u64,
        topic: &str,
        partition: u32,
        from: u64,
        max: u32,
    ) -> Result<FetchResponse, ClientError> {
        let req = FetchRequest { topic: topic.into(), partition, from_offset: from, max_records: max, local: true };
        self.on_node(node, |mut c| async move { c.fetch(req).await }).await
    }

    /// Reads a register from `node`'s own applied state: possibly stale, any role.
    pub async fn get_local(&self, node: u64, key: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let req = GetRequest { key: Bytes::copy_from_slice(key), local: true };
        let r = self.on_node(node, |mut c| async move { c.get(req).await }).await?;
        Ok(r.found.then_some(r.value))
    }

    async fn on_node<T, Fut>(&self, node: u64, f: impl FnOnce(BrokerClient<Channel>) -> Fut) -> Result<T, ClientError>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let channel = self.channel(node).await.map_err(ClientError::Unreachable)?;
        match tokio::time::timeout(self.opts.attempt_timeout, f(BrokerClient::new(channel))).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(classify(node, &s, Some(self))),
            Err(_) => Err(ClientError::Indeterminate { node, message: "timed out".into() }),
        }
    }

    /// Stores a consumer group's offsets.
    pub async fn commit_offsets(
        &self,
        group_name: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<Answered<()>, ClientError> {
        let group = self.group_of(|n| shard::group_of_consumer_group(group_name, n)).await?;
        let req = CommitOffsetsRequest { group: group_name.into(), offsets };
        // Not repeated after an attempt that may have been applied: a repeat applied after another
        // consumer's commit would move the offsets back (65, 169, 65 again), which no single
        // commit does; the detection suite's deaf-leader run caught it. Such a commit's outcome is
        // unknown instead.
        let r = self
            .call(group, Repeat::Unsafe, |mut c| {
                let r = req.clone();
                async move { c.commit_offsets(r).await }
            })
            .await?;
        Ok(Answered { value: (), node: r.node })
    }

    /// Lists a consumer group's committed offsets (linearizable).
    pub async fn list_committed_offsets(
        &self,
        group_name: &str,
    ) -> Result<Answered<Vec<PartitionOffset>>, ClientError> {
        let group = self.group_of(|n| shard::group_of_consumer_group(group_name, n)).await?;
        let req = ListCommittedOffsetsRequest { group: group_name.into() };
        let r = self
            .call(group, Repeat::Read, |mut c| {
                let r = req.clone();
                async move { c.list_committed_offsets(r).await }
            })
            .await?;
        Ok(Answered { value: r.value.offsets, node: r.node })
    }

    /// Writes a register.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<Answered<()>, ClientError> {
        let group = self.group_of(|n| shard::group_of_key(key, n)).await?;
        let req = PutRequest { key: Bytes::copy_from_slice(key), value: Bytes::copy_from_slice(value) };
        let r = self
            .call(group, Repeat::Unsafe, |mut c| {
                let r = req.clone();
                async move { c.put(r).await }
            })
            .await?;
        Ok(Answered { value: (), node: r.node })
    }

    /// Reads a register (linearizable); `None` when absent.
    pub async fn get(&self, key: &[u8]) -> Result<Answered<Option<Bytes>>, ClientError> {
        let group = self.group_of(|n| shard::group_of_key(key, n)).await?;
        let req = GetRequest { key: Bytes::copy_from_slice(key), local: false };
        let r = self
            .call(group, Repeat::Read, |mut c| {
                let r = req.clone();
                async move { c.get(r).await }
            })
            .await?;
        Ok(Answered { value: r.value.found.then_some(r.value.value), node: r.node })
    }

    /// Compare-and-set: writes `value` if the register holds `expected` (`None`: is absent).
    /// A mismatch is the definite error [`BrokerError::CasMismatch`].
    pub async fn cas(&self, key: &[u8], expected: Option<&[u8]>, value: &[u8]) -> Result<Answered<()>, ClientError> {
        let group = self.group_of(|n| shard::group_of_key(key, n)).await?;
        let req = CasRequest {
            key: Bytes::copy_from_slice(key),
            expected: Bytes::copy_from_slice(expected.unwrap_or_default()),
            expected_present: expected.is_some(),
            value: Bytes::copy_from_slice(value),
        };
        let r = self
            .call(group, Repeat::Unsafe, |mut c| {
                let r = req.clone();
                async move { c.cas(r).await }
            })
            .await?;
        Ok(Answered { value: (), node: r.node })
    }

    /// Asks `node` (the leader of `group`) to hand leadership to `to`.
    /// Follows up to three not-the-leader hints.
    pub async fn transfer_leader(&self, mut node: u64, group: u32, to: u64) -> Result<(), ClientError> {
        for _ in 0..3 {
            match self.transfer_leader_once(node, group, to).await {
                Err(ClientError::Broker {
                    error: BrokerError::NotLeader { leader_id, leader_address, .. }, ..
                }) if leader_id != 0 => {
                    self.learn_leader(group, leader_id, &leader_address);
                    node = leader_id;
                }
                other => return other,
            }
        }
        self.transfer_leader_once(node, group, to).await
    }

    async fn transfer_leader_once(&self, node: u64, group: u32, to: u64) -> Result<(), ClientError> {
        let channel = self.channel(node).await.map_err(ClientError::Unreachable)?;
        let mut c = AdminClient::with_interceptor(channel, AdminAuth(self.opts.admin_token.clone()));
        match tokio::time::timeout(self.opts.attempt_timeout, c.transfer_leader(TransferLeaderRequest { group, to }))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(classify(node, &s, Some(self))),
            Err(_) => Err(ClientError::Indeterminate { node, message: "transfer timed out".into() }),
        }
    }

    /// Adds node `id` at `address` as a learner of `group`, at the group's leader.
    pub async fn add_learner(&self, group: u32, id: u64, address: &str) -> Result<MembershipResponse, ClientError> {
        let r = AddLearnerRequest { group, id, node_address: address.to_owned() };
        self.admin_call(group, |mut c| {
            let r = r.clone();
            async move { c.add_learner(r).await }
        })
        .await
    }

    /// Promotes learner `id` of `group` to voter, once it has applied `min_applied_index` and
    /// passes the leader's gate; `skip_check` promotes without the catch-up check.
    pub async fn promote(
        &self,
        group: u32,
        id: u64,
        min_applied_index: u64,
        skip_check: bool,
    ) -> Result<MembershipResponse, ClientError> {
        let r = PromoteRequest { group, id, min_applied_index, skip_catch_up_check: skip_check };
        self.admin_call(group, |mut c| async move { c.promote(r).await }).await
    }

    /// Removes node `id` from `group`.
    pub async fn remove_node(&self, group: u32, id: u64) -> Result<MembershipResponse, ClientError> {
        let r = RemoveNodeRequest { group, id };
        self.admin_call(group, |mut c| async move { c.remove_node(r).await }).await
    }

    /// `group`'s members as its leader sees them.
    pub async fn members(&self, group: u32) -> Result<MembersResponse, ClientError> {
        self.admin_call(group, |mut c| async move { c.members(MembersRequest { group }).await }).await
    }

    /// Sends an admin call to `group`'s leader: the cached one or the home node first, then up
    /// to three not-the-leader hints. Membership changes are not idempotent, so an attempt whose
    /// outcome is unknown is not repeated.
    async fn admin_call<T, F, Fut>(&self, group: u32, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<tonic::service::interceptor::InterceptedService<Channel, AdminAuth>>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut node = lock(&self.leaders).get(&group).copied().unwrap_or(*lock(&self.home));
        for hop in 0..4 {
            let channel = self.channel(node).await.map_err(ClientError::Unreachable)?;
            let client = AdminClient::with_interceptor(channel, AdminAuth(self.opts.admin_token.clone()));
            let error = match tokio::time::timeout(self.opts.attempt_timeout, attempt(client)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => classify(node, &s, Some(self)),
                Err(_) => ClientError::Indeterminate { node, message: "admin call timed out".into() },
            };
            match error {
                ClientError::Broker { error: BrokerError::NotLeader { leader_id, leader_address, .. }, .. }
                    if leader_id != 0 && hop < 3 =>
                {
                    self.learn_leader(group, leader_id, &leader_address);
                    node = leader_id;
                }
                e => return Err(e),
            }
        }
        unreachable!("the last hop returns")
    }
}

/// Adds `authorization: Bearer TOKEN` to admin calls when a token is set.
#[derive(Clone)]
pub struct AdminAuth(Option<String>);

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| Status::invalid_argument("admin token is not a valid header value"))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }
}

/// Turns a status into a client error. Statuses without a broker detail come from the transport:
/// a refused connection means nothing was sent; anything else may have been.
fn classify(node: u64, status: &Status, client: Option<&Client>) -> ClientError {
    if let Some(error) = BrokerError::from_status(status) {
        return ClientError::Broker { node, error };
    }
    if status.code() == tonic::Code::Unimplemented {
        return ClientError::Unsupported { node, message: status.message().to_owned() };
    }
    if let Some(c) = client {
        c.forget(node);
    }
    if refused(status) {
        ClientError::Unreachable(format!("node {node}: connection refused"))
    } else {
        ClientError::Indeterminate { node, message: format!("{}: {}", status.code(), status.message()) }
    }
}

fn refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
