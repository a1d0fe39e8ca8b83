//! Raft messages between peers, over gRPC client streams.
//!
//! Sending: one task and one bounded queue per peer; the queue is the body of the peer's gRPC
//! stream. The Ready loop only ever `try_send`s: when a peer's queue is full or its connection is
//! down the messages are dropped (raft retransmits) and the peer is reported unreachable, so a
//! slow or dead peer never blocks the loop. The task reconnects with exponential backoff.
//!
//! A peer whose port refuses a connection has no process behind it (a paused or cut-off peer
//! does not refuse: its kernel still answers or nothing does). The groups hear of it at once
//! ([`Request::PeerGone`]), so a follower need not wait out the election timeout for a leader
//! that is certainly gone.
//!
//! Receiving: [`RaftService`] decodes each envelope and hands its messages to the group's loop.
//! Anything malformed ends that stream with a status and leaves the node serving.
//!
//! Versions: each connection speaks one wire version. A sender starts at the newest its release
//! speaks; a receiver refuses a version it does not speak with FAILED_PRECONDITION, and the
//! sender then reconnects one version lower (down to its oldest), so a peer one release apart is
//! served in the older protocol. Any other end of the stream (the peer restarted, perhaps on
//! another build) starts again from the newest. From wire version 2 on an envelope carries its
//! sender's release; the receiver keeps the latest per peer while the stream lasts
//! ([`PeerReleases`]), which is what a leader's feature gate reads.

use crate::node::{GroupHandle, Request};
use crate::pb::broker::raft_client::RaftClient;
use crate::pb::broker::raft_server::Raft;
use crate::pb::broker::{Envelope, RemovedAsOf, RemovedNotice, SendAck, SnapshotAck, SnapshotChunk};
use crate::peer_auth::{self, PeerAuth, PeerTls, Sender};
use crate::snapshot;
use crate::version::Release;
use bytes::Bytes;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

const PEER_QUEUE: usize = 4096;
/// About this many bytes of raft messages per envelope (one message may exceed it alone).
const ENVELOPE_BYTES: usize = 1024 * 1024;
/// The largest gRPC message a peer may send: one raft message holds at most one record of
/// `--max-record-bytes` beyond raft's 1 MB per message, and a snapshot chunk about 4 MB plus one pair.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// The status metadata that carries a [`RemovedNotice`].
const REMOVED_KEY: &str = "ordeal-removed-bin";
/// The version of [`RemovedNotice`] this build writes; fields are only ever added.
const REMOVED_NOTICE_VERSION: u32 = 1;
/// At most one [`RemovedNotice`] per sender in this long: each ends the sender's stream, and a
/// sender that does not believe it (a node promoted since the group last applied) or cannot read
/// it (an older build) would otherwise reconnect at every message.
const NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// The queue into a peer's current stream; `None` while there is no connection. The stream
/// reads this queue directly, so a message crosses no task between the Ready loop and gRPC.
type Slot = Mutex<Option<mpsc::Sender<Envelope>>>;

/// The groups to tell that a peer is gone; set once they run.
type Listeners = Arc<OnceLock<Arc<Vec<GroupHandle>>>>;

/// The sending half: a queue and a connection task per peer. Peers come and go as membership
/// changes apply ([`Transport::record_addresses`], [`Transport::set_members`]).
pub struct Transport {
    id: u64,
    /// This node's own address as `--peers` names it (empty if it does not), sent with every
    /// envelope (see [`Transport::learn_address`]).
    addr: String,
    peers: RwLock<HashMap<u64, Peer>>,
    /// Each group's members, so that a node removed from every group it was in is dropped.
    members: Mutex<BTreeMap<u32, BTreeSet<u64>>>,
    /// Every peer address known, kept after its peer is dropped: a group that has (or takes
    /// again) a member that another group's change dropped connects it again
    /// ([`Transport::set_members`]).
    book: Mutex<BTreeMap<u64, String>>,
    runtime: tokio::runtime::Handle,
    listeners: Listeners,
    release: Release,
    releases: Arc<PeerReleases>,
    /// This node's credentials for dialing peers, when peers authenticate.
    tls: Option<Arc<PeerTls>>,
    /// Senders that groups found outside their configuration ([`Transport::tell_removed`]).
    notices: Mutex<Notices>,
}

/// Removal notices asked for and sent, by sender.
#[derive(Default)]
struct Notices {
    /// The groups that found the sender outside their configuration, each with its applied index.
    asked: BTreeMap<u64, BTreeMap<u32, u64>>,
    /// When the sender was last sent a notice.
    sent: BTreeMap<u64, std::time::Instant>,
}

struct Peer {
    addr: String,
    slot: Arc<Slot>,
    /// The wire version this connection speaks, negotiated by its task.
    wire: Arc<AtomicU32>,
}

/// The release each connected peer last announced (wire version 1 peers count as release 1).
#[derive(Default)]
pub struct PeerReleases(Mutex<HashMap<u64, u32>>);

impl PeerReleases {
    fn set(&self, peer: u64, release: u32) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(peer, release);
        }
    }

    fn forget(&self, peer: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&peer);
        }
    }

    fn get(&self, peer: u64) -> Option<u32> {
        self.0.lock().ok()?.get(&peer).copied()
    }
}

impl Transport {
    /// Starts a sender task per peer other than `id`, on the current tokio runtime. A task ends
    /// when its peer is dropped or the transport is.
    /// `release` decides the wire versions spoken; with `tls` every peer is dialled over TLS.
    pub fn start(
        id: u64,
        peers: &BTreeMap<u64, String>,
        release: Release,
        tls: Option<Arc<PeerTls>>,
    ) -> Arc<Transport> {
        let t = Transport {
            id,
            addr: peers.get(&id).cloned().unwrap_or_default(),
            peers: RwLock::new(HashMap::new()),
            members: Mutex::new(BTreeMap::new()),
            book: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::current(),
            listeners: Arc::default(),
            release,
            releases: Arc::default(),
            tls,
            notices: Mutex::default(),
        };
        for (peer, addr) in peers {
            t.set_address(*peer, addr);
        }
        Arc::new(t)
    }

    /// Connects to `peer` at `addr`, replacing a connection to another address. Callable from
    /// any thread.
    pub fn set_address(&self, peer: u64, addr: &str) {
        if peer == self.id {
            return;
        }
        self.record_addresses([(peer, addr.to_owned())]);
        let Ok(mut peers) = self.peers.write() else { return };
        self.connect(&mut peers, peer, addr);
    }

    /// Starts a connection to `peer` at `addr` unless there is one to that address.
    fn connect(&self, peers: &mut HashMap<u64, Peer>, peer: u64, addr: &str) {
        if peers.get(&peer).is_some_and(|p| p.addr == addr) {
            return;
        }
        let slot = Arc::new(Mutex::new(None));
        let wire = Arc::new(AtomicU32::new(self.release.wire_max));
        self.runtime.spawn(peer_loop(
            peer,
            addr.to_owned(),
            Arc::downgrade(&slot),
            wire.clone(),
            self.release,
            self.listeners.clone(),
            self.tls.clone(),
        ));
        // Replacing the entry drops the old slot, which ends the old connection's task.
        peers.insert(peer, Peer { addr: addr.to_owned(), slot, wire });
        tracing::info!(peer, addr, "peer address set");
    }

    /// Records addresses from the log or a snapshot's address table without dialling them: the
    /// table keeps every node ever added, removed ones too. [`Transport::set_members`], which
    /// follows every such change, connects the members among them.
    pub fn record_addresses(&self, addresses: impl IntoIterator<Item = (u64, String)>) {
        if let Ok(mut book) = self.book.lock() {
            book.extend(addresses.into_iter().filter(|(peer, _)| *peer != self.id));
        }
    }

    /// Connects to `peer` at `addr` (an envelope's sender address) unless its address is known
    /// already: addresses from the log and `--peers` take precedence, and a node the log knows
    /// that is no member (a removed one) is not dialled.
    pub fn learn_address(&self, peer: u64, addr: &str) {
        let known = self.book.lock().map_or(true, |book| book.contains_key(&peer));
        if !known && !addr.is_empty() {
            self.set_address(peer, addr);
        }
    }

    /// Records `group`'s members; a peer that was a member of some group and now is of none is
    /// disconnected. Peers that never were members (addresses from `--peers`) stay. A member is
    /// connected at its address in the book: it may have none yet (its address just learned),
    /// another group's change may have dropped it since, or its address may have changed.
    pub fn set_members(&self, group: u32, members: BTreeSet<u64>) {
        self.forget_notices(group, &members);
        let Ok(mut all) = self.members.lock() else { return };
        let union = |m: &BTreeMap<u32, BTreeSet<u64>>| m.values().flatten().copied().collect::<BTreeSet<u64>>();
        let before = union(&all);
        all.insert(group, members);
        let after = union(&all);
        let book = self.book.lock().map(|b| b.clone()).unwrap_or_default();
        let Ok(mut peers) = self.peers.write() else { return };
        for gone in before.difference(&after) {
            if peers.remove(gone).is_some() {
                tracing::info!(peer = gone, "peer removed from every group; disconnected");
            }
        }
        for member in after.into_iter().filter(|m| *m != self.id) {
            if let Some(addr) = book.get(&member) {
                self.connect(&mut peers, member, addr);
            }
        }
    }

    /// From now on, tells `groups` of every peer found gone.
    pub fn tell(&self, groups: Arc<Vec<GroupHandle>>) {
        let _ = self.listeners.set(groups);
    }

    /// The release `peer` announced on its current stream to this node, if it is connected.
    pub fn peer_release(&self, peer: u64) -> Option<u32> {
        self.releases.get(peer)
    }

    /// What the receiving side records peers' releases in.
    pub fn releases(&self) -> Arc<PeerReleases> {
        self.releases.clone()
    }

    /// This node's credentials for dialing peers, when peers authenticate.
    pub fn tls(&self) -> Option<Arc<PeerTls>> {
        self.tls.clone()
    }

    /// The runtime the transport's tasks run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Says that `peer` sent group `group` a message although the group's configuration, as of
    /// `applied_index`, has no such member: after the peer's next envelope its stream is ended
    /// with a [`RemovedNotice`], since this node does not dial non-members to answer them.
    pub fn tell_removed(&self, peer: u64, group: u32, applied_index: u64) {
        if let Ok(mut n) = self.notices.lock() {
            n.asked.entry(peer).or_default().insert(group, applied_index);
        }
    }

    /// The notice for `peer`, if a group asked for one and none went to it in the last
    /// [`NOTICE_INTERVAL`].
    pub(crate) fn take_notice(&self, peer: u64) -> Option<RemovedNotice> {
        let mut n = self.notices.lock().ok()?;
        let now = std::time::Instant::now();
        if !n.asked.contains_key(&peer) || n.sent.get(&peer).is_some_and(|at| now - *at < NOTICE_INTERVAL) {
            return None;
        }
        n.sent.insert(peer, now);
        let groups = n.asked.remove(&peer).unwrap_or_default();
        let groups = groups.into_iter().map(|(group, applied_index)| RemovedAsOf { group, applied_index }).collect();
        Some(RemovedNotice { version: REMOVED_NOTICE_VERSION, groups })
    }

    /// Forgets the notices asked for `group`'s `members`: a node added again is no stranger.
    fn forget_notices(&self, group: u32, members: &BTreeSet<u64>) {
        let Ok(mut n) = self.notices.lock() else { return };
        for member in members {
            if let Some(groups) = n.asked.get_mut(member) {
                groups.remove(&group);
                if groups.is_empty() {
                    n.asked.remove(member);
                    n.sent.remove(member);
                }
            }
        }
    }

    /// The address of `peer`, if known.
    pub fn address(&self, peer: u64) -> Option<String> {
        self.peers.read().ok()?.get(&peer).map(|p| p.addr.clone())
    }

    /// Queues `msgs` for their peers; returns the peers that could not take them.
    pub fn send(&self, group: u32, msgs: Vec<Message>) -> Vec<u64> {
        let mut by_peer: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
        for m in msgs {
            match m.write_to_bytes() {
                Ok(b) => by_peer.entry(m.to).or_default().push(b.into()),
                Err(e) => tracing::error!("raft message did not encode: {e}"),
            }
        }
        let mut unreachable = Vec::new();
        let Ok(peers) = self.peers.read() else { return unreachable };
        for (to, messages) in by_peer {
            let Some(Peer { slot, wire, .. }) = peers.get(&to) else {
                // A node just removed, or one whose address has not arrived yet.
                tracing::debug!(to, "message for an unknown peer dropped");
                continue;
            };
            let wire_version = wire.load(Ordering::Relaxed);
            // Wire version 1 has no release field: leave it at its default.
            let release = if wire_version >= 2 { self.release.release } else { 0 };
            for messages in split(messages) {
                let from_address = self.addr.clone();
                let env = Envelope { wire_version, from: self.id, to, group, messages, release, from_address };
                let queued = match slot.lock() {
                    Ok(queue) => queue.as_ref().is_some_and(|q| q.try_send(env).is_ok()),
                    Err(_) => false,
                };
                if !queued {
                    unreachable.push(to);
                    break;
                }
            }
        }
        unreachable
    }
}

/// Splits one peer's messages into envelopes of about [`ENVELOPE_BYTES`]: a leader catching a
/// peer up sends up to `max_inflight_msgs` appends of up to 1 MB each in one Ready, far beyond
/// what one gRPC message may carry.
fn split(messages: Vec<Bytes>) -> Vec<Vec<Bytes>> {
    let mut out: Vec<Vec<Bytes>> = Vec::new();
    let mut size = usize::MAX;
    for m in messages {
        if size.saturating_add(m.len()) > ENVELOPE_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += m.len();
        if let Some(last) = out.last_mut() {
            last.push(m);
        }
    }
    out
}

fn set_slot(slot: &Slot, queue: Option<mpsc::Sender<Envelope>>) {
    if let Ok(mut s) = slot.lock() {
        *s = queue;
    }
}

/// After a stream to `peer` ended: one version lower if the peer refused this one, else the
/// newest again (the peer may have restarted on another build).
fn negotiate(peer: u64, wire: &AtomicU32, release: Release, ended: &Result<Response<SendAck>, Status>) {
    let current = wire.load(Ordering::Relaxed);
    let refused = matches!(ended, Err(s) if s.code() == tonic::Code::FailedPrecondition);
    let next = if refused { current.saturating_sub(1).max(release.wire_min) } else { release.wire_max };
    if next != current {
        tracing::info!(peer, from = current, to = next, "peer protocol version changed");
        wire.store(next, Ordering::Relaxed);
    }
}

async fn peer_loop(
    peer: u64,
    addr: String,
    slot: Weak<Slot>,
    wire: Arc<AtomicU32>,
    release: Release,
    listeners: Listeners,
    tls: Option<Arc<PeerTls>>,
) {
    let mut backoff = BACKOFF_MIN;
    let endpoint = match peer_auth::endpoint(tls.as_deref(), peer, &addr) {
        Ok(e) => e
            .connect_timeout(Duration::from_millis(250))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true),
        Err(e) => {
            tracing::error!(peer, addr, "invalid peer address: {e}");
            return;
        }
    };
    loop {
        match endpoint.connect().await {
            Ok(channel) => {
                let Some(s) = slot.upgrade() else { return };
                tracing::info!(peer, addr, "connected to peer");
                backoff = BACKOFF_MIN;
                let (queue, stream) = mpsc::channel(PEER_QUEUE);
                set_slot(&s, Some(queue));
                // Only the transport may keep the slot alive: dropping it ends the stream.
                drop(s);
                let mut client = RaftClient::new(channel).max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
                let res = client.send(ReceiverStream::new(stream)).await;
                negotiate(peer, &wire, release, &res);
                if let Err(status) = &res {
                    heed_notice(peer, status, &listeners);
                }
                tracing::info!(peer, "peer stream ended: {:?}", res.err());
                match slot.upgrade() {
                    Some(s) => set_slot(&s, None),
                    None => return,
                }
            }
            Err(e) => {
                tracing::debug!(peer, "connect failed: {e}");
                if refused(&e) {
                    for g in listeners.get().map(|g| g.as_slice()).unwrap_or_default() {
                        let _ = g.send(Request::PeerGone(peer));
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The status that ends the stream of `peer` with `notice` in its metadata.
fn removed_status(peer: u64, notice: &RemovedNotice) -> Status {
    let groups: Vec<String> =
        notice.groups.iter().map(|g| format!("group {} as of index {}", g.group, g.applied_index)).collect();
    let mut status = Status::aborted(format!("node {peer} is not a member of {} here", groups.join(", ")));
    let value = tonic::metadata::MetadataValue::from_bytes(&notice.encode_to_vec());
    status.metadata_mut().insert_bin(REMOVED_KEY, value);
    status
}

/// The [`RemovedNotice`] in `status`, if it carries one.
fn notice_of(status: &Status) -> Result<Option<RemovedNotice>, String> {
    let Some(value) = status.metadata().get_bin(REMOVED_KEY) else { return Ok(None) };
    let bytes = value.to_bytes().map_err(|e| e.to_string())?;
    RemovedNotice::decode(bytes).map(Some).map_err(|e| e.to_string())
}

/// Hands the [`RemovedNotice`] that `peer` ended this node's stream with, if any, to the groups
/// it names; each judges it against its own log.
fn heed_notice(peer: u64, status: &Status, listeners: &Listeners) {
    let notice = match notice_of(status) {
        Ok(Some(notice)) => notice,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(peer, "undecodable removal notice: {e}");
            return;
        }
    };
    let groups = listeners.get().map(|g| g.as_slice()).unwrap_or_default();
    for g in notice.groups {
        if let Some(handle) = groups.get(g.group as usize) {
            let _ = handle.send(Request::RemovedAsOf { by: peer, applied_index: g.applied_index });
        }
    }
}

/// Whether the peer's port refused the connection: nothing listens there.
fn refused(e: &tonic::transport::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = err.source();
    }
    false
}

/// The receiving half: the `Raft` gRPC service.
pub struct RaftService {
    id: u64,
    groups: Arc<Vec<GroupHandle>>,
    stopped: watch::Receiver<bool>,
    inbox: Arc<snapshot::Inbox>,
    release: Release,
    releases: Arc<PeerReleases>,
    /// Where senders' addresses are learned, if anywhere.
    transport: Option<Arc<Transport>>,
    /// Whether callers must present a certificate naming the sender they claim.
    auth: PeerAuth,
}

impl RaftService {
    /// A service routing to `groups` (indexed by group id); its streams end when `stopped`
    /// turns true, so that a stopping server can drain.
    pub fn new(
        id: u64,
        groups: Arc<Vec<GroupHandle>>,
        stopped: watch::Receiver<bool>,
        inbox: Arc<snapshot::Inbox>,
    ) -> Self {
        RaftService {
            id,
            groups,
            stopped,
            release: Release::current(),
            releases: Arc::default(),
            transport: None,
            auth: PeerAuth { required: false, metrics: inbox.metrics.clone() },
            inbox,
        }
    }

    /// Requires every caller to present a certificate from the cluster CA naming the sender it
    /// claims ([`crate::peer_auth`]).
    pub fn with_peer_auth(self) -> Self {
        RaftService { auth: PeerAuth { required: true, ..self.auth.clone() }, ..self }
    }

    /// Speaks the wire versions of `release`, records each peer's announced release in
    /// `transport` (for the feature gate) and teaches it the addresses of senders it lacks.
    pub fn with_transport(self, release: Release, transport: Arc<Transport>) -> Self {
        RaftService { release, releases: transport.releases(), transport: Some(transport), ..self }
    }

    /// Serves one peer stream; the peer's release is known while it lasts.
    async fn receive(
        &self,
        stream: &mut Streaming<Envelope>,
        sender: &Sender,
        from: &mut Option<u64>,
    ) -> Result<(), Status> {
        let mut stopped = self.stopped.clone();
        loop {
            let env = tokio::select! {
                m = stream.message() => match m? {
                    Some(env) => env,
                    None => return Ok(()),
                },
                _ = stopped.wait_for(|s| *s) => return Err(Status::unavailable("node is stopping")),
            };
            let (min, max) = (self.release.wire_min, self.release.wire_max);
            if env.wire_version < min || env.wire_version > max {
                return Err(Status::failed_precondition(format!(
                    "peer protocol version {} is not supported (this build speaks {min}..={max})",
                    env.wire_version
                )));
            }
            if env.to != self.id {
                return Err(Status::invalid_argument(format!("envelope for node {} reached node {}", env.to, self.id)));
            }
            let Some(group) = self.groups.get(env.group as usize) else {
                return Err(Status::not_found(format!("unknown raft group {}", env.group)));
            };
            if *from != Some(env.from) {
                sender.check(env.from)?;
                if let Some(t) = &self.transport {
                    t.learn_address(env.from, &env.from_address);
                }
            }
            *from = Some(env.from);
            self.releases.set(env.from, if env.wire_version >= 2 { env.release } else { 1 });
            for bytes in env.messages {
                let m = Message::parse_from_bytes(&bytes)
                    .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
                if let Err(why) = crate::vet::envelope(&m, env.from, env.to) {
                    self.inbox.metrics.peer_messages_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(from = env.from, "raft message dropped: {why}");
                    continue;
                }
                // A full queue drops the message; raft retransmits.
                let _ = group.send(Request::Raft(Box::new(m)));
            }
            // After the envelope's messages, which may be for groups that have the sender.
            if let Some(notice) = self.transport.as_ref().and_then(|t| t.take_notice(env.from)) {
                return Err(removed_status(env.from, &notice));
            }
        }
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(&self, request: GrpcRequest<Streaming<Envelope>>) -> Result<Response<SendAck>, Status> {
        let sender = self.auth.sender(&request)?;
        let mut from = None;
        let result = self.receive(&mut request.into_inner(), &sender, &mut from).await;
        // Until it connects again (perhaps on another build), the peer's release is unknown.
        if let Some(peer) = from {
            self.releases.forget(peer);
        }
        result.map(|()| Response::new(SendAck {}))
    }

    async fn snapshot(&self, request: GrpcRequest<Streaming<SnapshotChunk>>) -> Result<Response<SnapshotAck>, Status> {
        let sender = self.auth.sender(&request)?;
        let mut stopped = self.stopped.clone();
        tokio::select! {
            r = snapshot::receive(&self.inbox, &self.groups, request.into_inner(), &sender) => r.map(Response::new),
            _ = stopped.wait_for(|s| *s) => Err(Status::unavailable("node is stopping")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_stay_near_a_megabyte_and_keep_every_message_in_order() {
        let m = |n: usize, tag: u8| Bytes::from(vec![tag; n]);
        let messages = vec![m(600_000, 1), m(600_000, 2), m(100, 3), m(3_000_000, 4), m(10, 5)];
        let envelopes = split(messages.clone());
        let sizes: Vec<usize> = envelopes.iter().map(|e| e.iter().map(Bytes::len).sum()).collect();
        assert_eq!(sizes, vec![600_000, 600_100, 3_000_000, 10]);
        assert_eq!(envelopes.concat(), messages);
        assert!(split(vec![]).is_empty());
    }

    #[tokio::test]
    async fn a_member_another_groups_change_dropped_is_connected_again() {
        let t = Transport::start(1, &BTreeMap::new(), Release::current(), None);
        // Group 1 learns node 4's address (its learner); group 0 then removes node 4, before
        // group 1 records its members.
        t.set_address(4, "127.0.0.1:1");
        t.set_members(0, [1, 4].into());
        t.set_members(0, [1].into());
        assert_eq!(t.address(4), None, "a member of no group is dropped");
        t.set_members(1, [1, 4].into());
        assert_eq!(t.address(4).as_deref(), Some("127.0.0.1:1"), "group 1's learner is connected again");
    }

    #[tokio::test]
    async fn removal_notices_go_at_most_once_an_interval_and_never_to_a_member_again() {
        let t = Transport::start(1, &BTreeMap::new(), Release::current(), None);
        assert!(t.take_notice(9).is_none(), "none asked for");
        t.tell_removed(9, 0, 5);
        let notice = t.take_notice(9).expect("asked for");
        assert_eq!(notice.groups, [RemovedAsOf { group: 0, applied_index: 5 }]);
        assert_eq!(notice_of(&removed_status(9, &notice)), Ok(Some(notice)), "it travels in the status");
        t.tell_removed(9, 0, 6);
        assert!(t.take_notice(9).is_none(), "one notice per interval");
        t.set_members(0, [1, 9].into());
        assert!(t.take_notice(9).is_none(), "added again, it is no stranger");
        t.tell_removed(9, 0, 7);
        assert!(t.take_notice(9).is_some(), "removed again, it is told at once");
    }

    #[tokio::test]
    async fn of_the_addresses_learned_only_members_are_dialled() {
        let t = Transport::start(1, &BTreeMap::new(), Release::current(), None);
        // A stored address table names every node ever added: here node 5 was removed.
        t.record_addresses([(4, "127.0.0.1:1".to_string()), (5, "127.0.0.1:2".to_string())]);
        t.set_members(0, [1, 4].into());
        assert_eq!(t.address(4).as_deref(), Some("127.0.0.1:1"), "a member is dialled");
        assert_eq!(t.address(5), None, "a removed node is not");
        t.learn_address(5, "127.0.0.1:3");
        assert_eq!(t.address(5), None, "nor when it sends: the log's address book knows it");
        t.record_addresses([(4, "127.0.0.1:4".to_string())]);
        t.set_members(0, [1, 4].into());
        assert_eq!(t.address(4).as_deref(), Some("127.0.0.1:4"), "a member that moved is dialled where it is now");
    }
}
