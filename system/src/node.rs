//! The Ready loop: one OS thread per raft group owns its `RawNode` and state machine.
//!
//! Everything reaches the loop through one bounded channel ([`Request`]): client proposals and
//! reads, peer messages, admin commands. The loop drains every waiting request before it asks
//! raft for a `Ready`, so that concurrent proposals share one RocksDB write and one fsync (group
//! commit). It follows raft-rs's order for a `Ready` (numbered comments in [`Group::on_ready`]).
//! Replies go out after apply, never after append: an appended entry can still be truncated.
//!
//! A dedicated thread (not a tokio task) because the fsync blocks; the rest of the node never
//! waits on this thread except through the channel and reply oneshots.

use crate::config::{Bug, NodeConfig, RaftTiming};
use crate::error::BrokerError;
use crate::fsm::{Applied, StateMachine};
use crate::logging::raft_logger;
use crate::membership::{self, Change, LeaderFacts, MemberProgress, MembersView};
use crate::metrics::Metrics;
use crate::pb::cmd::{Command, command::Kind};
use crate::seeded::Seeded;
use crate::snapshot;
use crate::storage::{RaftStorage, StorageError};
use crate::transport::Transport;
use crate::version::{self, Feature};
use crate::vet;
pub use ordeal_wire::status::{GroupView, PeerView};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, HardState, Message, MessageType};
use raft::{RawNode, StateRole};
use rocksdb::{DB, WriteBatch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How many requests may wait for a group's loop before callers are told it is overloaded.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// A leader considers raising the cluster version every this many ticks (a gate entry that
/// was lost with a leadership change is proposed again).
const GATE_TICKS: usize = 10;

/// The node ids and client addresses of every known peer, for leader hints.
pub type PeerTable = Arc<RwLock<BTreeMap<u64, String>>>;

/// A reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, BrokerError>>;

/// What the loop can be asked to do.
pub enum Request {
    /// Replicate and apply a command; the reply comes after apply.
    Propose {
        /// The command; the loop fills in `request_id`.
        command: Command,
        /// Gets the result of applying it.
        reply: Reply<Applied>,
    },
    /// Confirm leadership (ReadIndex) and wait until everything committed before the request is
    /// applied; the caller then reads the state machine.
    Read {
        /// Gets `Ok` when reading is linearizable.
        reply: Reply<()>,
    },
    /// A raft message from a peer.
    Raft(Box<Message>),
    /// Hand leadership to `to`.
    TransferLeader {
        /// The target voter.
        to: u64,
        /// Gets `Ok` once the transfer started.
        reply: Reply<()>,
    },
    /// Propose a membership change, once it passes [`membership::check`]; the reply comes after
    /// it is applied.
    ChangeMembership {
        /// The change.
        change: Change,
        /// Gets [`Applied::Membership`].
        reply: Reply<Applied>,
    },
    /// The leader's view of every member.
    Members {
        /// Gets the view, or NOT_LEADER.
        reply: Reply<MembersView>,
    },
    /// A snapshot stream to `to` ended, sent in full or not.
    SnapshotSent {
        /// The peer.
        to: u64,
        /// Whether it arrived.
        ok: bool,
    },
    /// RocksDB was flushed after `index` was applied, so the log up to it can go; or the flush
    /// failed, which stops the node.
    Flushed {
        /// The compaction point.
        index: u64,
        /// The flush's outcome.
        result: Result<(), String>,
    },
    /// The peer's port refused a connection: its process is gone.
    PeerGone(u64),
    /// Member `by` ended this node's stream: its configuration as of its applied index
    /// `applied_index` has no such member ([`Group::heed_removal`] judges whether to believe it).
    RemovedAsOf {
        /// The member that said so.
        by: u64,
        /// Its applied index.
        applied_index: u64,
    },
    /// Before a graceful stop: hand leadership to the most up-to-date voter, if leading.
    StepDown {
        /// Gets the transferee, if a transfer started.
        reply: oneshot::Sender<Option<u64>>,
    },
    /// Leave the loop.
    Stop,
}

/// The caller's side of a group's loop.
pub struct GroupHandle {
    /// The group id.
    pub group: u32,
    tx: SyncSender<Request>,
    view: watch::Receiver<GroupView>,
    switching: Switching,
}

/// Held for writing while a snapshot replaces the group's state (its clearing, then its ingest,
/// which waits for a flush), and for reading by every read of that state outside the loop: such a
/// read sees the state before or after, never the group half cleared.
type Switching = Arc<std::sync::RwLock<()>>;

impl GroupHandle {
    /// Queues a request without waiting; a full queue is [`BrokerError::Overloaded`].
    pub fn send(&self, request: Request) -> Result<(), BrokerError> {
        self.tx.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => BrokerError::Overloaded,
            TrySendError::Disconnected(_) => BrokerError::ShuttingDown,
        })
    }

    /// The group's cluster version as last published: never ahead of the state machine's.
    pub fn cluster_version(&self) -> u32 {
        self.view.borrow().cluster_version
    }

    /// The latest published view.
    pub fn view(&self) -> GroupView {
        self.view.borrow().clone()
    }

    /// Runs `read`, a read of the group's state from the database, where no snapshot is being
    /// switched in meanwhile.
    pub fn read_state<T>(&self, read: impl FnOnce() -> T) -> T {
        let _steady = self.switching.read().unwrap_or_else(|e| e.into_inner());
        read()
    }

    /// Asks the loop to stop once it has handled what is queued before this.
    pub fn stop(&self) {
        let _ = self.tx.send(Request::Stop);
    }
}

/// Everything a group's loop shares with the rest of the node.
pub struct GroupContext {
    /// The node's database.
    pub db: Arc<DB>,
    /// The node's configuration.
    pub config: Arc<NodeConfig>,
    /// Peer addresses for leader hints.
    pub peers: PeerTable,
    /// Outgoing raft messages.
    pub transport: Arc<Transport>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
}

/// Opens group `group`'s storage and starts its loop on a thread of its own; join the thread
/// after [`GroupHandle::stop`] so that the database closes before the process exits.
pub fn spawn(group: u32, ctx: &GroupContext) -> Result<(GroupHandle, JoinHandle<()>), StorageError> {
    let (mut g, rx, handle) = open(group, ctx)?;
    let thread = std::thread::Builder::new()
        .name(format!("raft-g{group}"))
        .spawn(move || {
            let span = tracing::info_span!("group", node = g.id, group);
            let _enter = span.enter();
            if let Err(e) = g.run(rx) {
                // raft-rs's contract: after a storage error the node is unusable. Stop the
                // process rather than serve from a state that may not be on disk.
                tracing::error!("storage failed, stopping the node: {e}");
                std::process::exit(70);
            }
        })
        .expect("spawning a thread only fails when the system is out of resources");
    Ok((handle, thread))
}

/// Opens group `group`'s storage and its loop, not yet running.
fn open(group: u32, ctx: &GroupContext) -> Result<(Group, Receiver<Request>, GroupHandle), StorageError> {
    if !ctx.config.membership.join {
        RaftStorage::bootstrap(&ctx.db, group, &ctx.config.peers)?;
    }
    // A joining node starts with no configuration; it learns one from the log or a snapshot.
    let mut storage = RaftStorage::open(ctx.db.clone(), group, &[])?;
    storage.pace_snapshots(ctx.config.membership.snapshot_max_bytes_per_s);
    let sm = StateMachine::new(ctx.db.clone(), group, ctx.config.bugs.clone(), ctx.config.release)?;
    // From here on the loop follows the cluster version (`Group::follow_snapshot_format`).
    storage.snapshot_format(version::snapshot_format(sm.cluster_version()));
    let applied = sm.applied_index()?;
    storage.cover_applied(applied)?;
    let cfg = raft_config(ctx.config.id, &ctx.config.timing, applied);
    let logger = raft_logger(ctx.config.id, group);
    let node = RawNode::new(&cfg, storage, &logger).map_err(|e| StorageError::Corrupt {
        key: format!("group {group}"),
        what: format!("raft refused the stored state: {e}"),
    })?;
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let own_tx = tx.clone();
    let (view_tx, view) = watch::channel(GroupView { group, ..Default::default() });
    let switching = Switching::default();
    let mut g = Group {
        id: ctx.config.id,
        group,
        node,
        sm,
        peers: ctx.peers.clone(),
        transport: ctx.transport.clone(),
        metrics: ctx.metrics.clone(),
        sync: ctx.config.sync,
        read_timeout: ctx.config.request_timeout,
        tick: ctx.config.timing.tick,
        pending: HashMap::new(),
        pending_by_index: BTreeMap::new(),
        next_request_id: initial_request_id(),
        reads_queued: Vec::new(),
        reads_in_flight: HashMap::new(),
        reads_ready: Vec::new(),
        next_read_ctx: 1,
        leader_id: 0,
        view: view_tx,
        config: ctx.config.clone(),
        tx: own_tx,
        compacting: false,
        failure: None,
        lag: LagClock::default(),
        campaign_at: None,
        ordered_for: (0, raft::INVALID_ID),
        seeded: Seeded::new(&ctx.config.bugs),
        gate_ticks: GATE_TICKS,
        switching: switching.clone(),
        strangers: BTreeSet::new(),
        removed_as_of: None,
    };
    g.learn_addresses(g.node.store().peer_addresses().clone());
    g.on_membership_changed();
    Ok((g, rx, GroupHandle { group, tx, view, switching }))
}

fn raft_config(id: u64, t: &RaftTiming, applied: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: t.election_ticks,
        heartbeat_tick: t.heartbeat_ticks,
        min_election_tick: t.election_ticks,
        max_election_tick: t.max_election_ticks(),
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        // Followers learn a new commit index from the next append or heartbeat instead of from a
        // message of its own after every commit: two messages per write, and the thread wake-ups
        // behind them on every node, which on a two-core machine put the single-producer p99 at
        // ~4.7 ms instead of ~2.8 ms (docs/benchmarks.md). Nothing waits for a follower to apply:
        // reads are confirmed by ReadIndex on the leader.
        skip_bcast_commit: true,
        ..Default::default()
    }
}

/// This node's place among the voters other than `leader`, in the order of their ids: the order in
/// which followers campaign when the leader goes (0 first).
fn rank(raft: &raft::Raft<impl raft::Storage>, leader: u64) -> u32 {
    let id = raft.id;
    raft.prs().conf().voters().ids().iter().filter(|v| *v != leader && *v < id).count() as u32
}

/// Request ids must not repeat across restarts (an old entry in the log could otherwise answer a
/// new request), so they start from the wall clock in microseconds.
fn initial_request_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(1)
}

/// A proposal waiting for its apply; its log index is its key in `pending_by_index`.
struct Pending {
    proposed_at: Instant,
    reply: Reply<Applied>,
    /// `--bug ack-before-commit`: the reply sent as soon as the entry is in this node's log.
    early: Option<Applied>,
}

struct ReadWaiter {
    deadline: Instant,
    reply: Reply<()>,
}

struct Group {
    id: u64,
    /// Taken for writing while a snapshot is switched in ([`GroupHandle::read_state`]).
    switching: Switching,
    /// Non-members whose messages were dropped, warned of once.
    strangers: BTreeSet<u64>,
    group: u32,
    node: RawNode<RaftStorage>,
    sm: StateMachine,
    peers: PeerTable,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    sync: bool,
    read_timeout: Duration,
    tick: Duration,
    /// request id -> the proposal waiting for its apply.
    pending: HashMap<u64, Pending>,
    /// log index -> request id, to find proposals whose slot another entry took.
    pending_by_index: BTreeMap<u64, u64>,
    next_request_id: u64,
    /// Reads not yet handed to raft (the leader has not committed in its term yet).
    reads_queued: Vec<ReadWaiter>,
    /// Read batches handed to raft, by context.
    reads_in_flight: HashMap<u64, Vec<ReadWaiter>>,
    /// Confirmed reads waiting for the applied index to reach theirs.
    reads_ready: Vec<(u64, Vec<ReadWaiter>)>,
    next_read_ctx: u64,
    leader_id: u64,
    view: watch::Sender<GroupView>,
    config: Arc<NodeConfig>,
    /// The loop's own queue, for answers from its helper tasks (snapshot sends, flushes).
    tx: SyncSender<Request>,
    /// A flush for a compaction is under way.
    compacting: bool,
    /// A storage failure reported by a helper; the loop stops with it.
    failure: Option<StorageError>,
    /// When the leader's last index reached which value, for peers' lag in time.
    lag: LagClock,
    /// When to campaign, the leader's process being gone (see [`Group::leader_gone`]).
    campaign_at: Option<Instant>,
    /// The (term, leader) for which this follower's election timeout was last put in rank order
    /// (see [`Group::order_election`]).
    ordered_for: (u64, u64),
    /// The seeded bugs that act here (`--bug`); inert without them.
    seeded: Seeded,
    /// Ticks until the leader next considers raising the cluster version.
    gate_ticks: usize,
    /// The applied index as of which a member's configuration has no place for this node, while
    /// this node's own log ends before it: it was removed while it could not hear of it. It
    /// campaigns no more until its own log reaches that index (only a leader that has it as a
    /// member again could bring it there).
    removed_as_of: Option<u64>,
}

/// How long followers wait for each other, by rank, when their leader is gone (a refused
/// connection, [`Group::leader_gone`]) or silent (the election timeout,
/// [`Group::order_election`]): one election round on a busy machine. Campaigning all at once would split the vote and cost a full
/// randomized election timeout.
const CAMPAIGN_STAGGER: Duration = Duration::from_millis(25);

/// Samples of (last index, when it was reached), one per tick over the last minute: a peer whose
/// match index is `m` lags by the age of the first sample past `m`.
#[derive(Default)]
struct LagClock {
    samples: std::collections::VecDeque<(u64, Instant)>,
}

impl LagClock {
    const WINDOW: Duration = Duration::from_secs(60);

    fn sample(&mut self, last_index: u64, now: Instant) {
        if self.samples.back().is_none_or(|(i, _)| *i < last_index) {
            self.samples.push_back((last_index, now));
        }
        while self.samples.front().is_some_and(|(_, t)| now.duration_since(*t) > Self::WINDOW) {
            self.samples.pop_front();
        }
    }

    /// How long a peer at `matched` has lagged; a peer older than the window lags by all of it.
    fn of(&self, matched: u64) -> Duration {
        match self.samples.back() {
            Some((last, _)) if *last > matched => {
                let since = self.samples.iter().find(|(i, _)| *i > matched).map(|(_, t)| *t);
                since.map_or(Self::WINDOW, |t| t.elapsed())
            }
            _ => Duration::ZERO,
        }
    }
}

impl Group {
    fn run(&mut self, rx: Receiver<Request>) -> Result<(), StorageError> {
        let mut next_tick = Instant::now() + self.tick;
        self.publish();
        loop {
            let wake = self.campaign_at.map_or(next_tick, |c| c.min(next_tick));
            let wait = wake.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(r) => {
                    self.handle(r);
                    // Group commit: everything already queued joins this Ready.
                    for _ in 0..QUEUE_CAPACITY {
                        match rx.try_recv() {
                            Ok(Request::Stop) => return Ok(()),
                            Ok(r) => self.handle(r),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if self.campaign_at.is_some_and(|c| now >= c) {
                self.campaign_at = None;
                self.campaign();
            }
            if now >= next_tick {
                self.tick();
                next_tick = (next_tick + self.tick).max(now);
                self.expire(now);
                self.record_lag(now);
                self.maybe_raise_cluster_version();
                self.step_down_if_removed();
            }
            self.issue_reads_and_ready()?;
            self.order_election();
            if let Some(e) = self.failure.take().or_else(|| self.node.store().take_failure()) {
                return Err(e);
            }
            self.maybe_compact();
            self.publish();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Propose { command, reply } => self.propose(command, reply),
            Request::Read { reply } => {
                self.reads_queued.push(ReadWaiter { deadline: Instant::now() + self.read_timeout, reply })
            }
            Request::Raft(m) => self.step(*m),
            Request::TransferLeader { to, reply } => {
                let result = self.transfer_leader(to);
                let _ = reply.send(result);
            }
            Request::ChangeMembership { change, reply } => self.change_membership(change, reply),
            Request::Members { reply } => {
                let _ = reply.send(self.members());
            }
            Request::SnapshotSent { to, ok } => {
                let status = if ok { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                self.node.report_snapshot(to, status);
            }
            Request::Flushed { index, result } => self.compact(index, result),
            Request::PeerGone(peer) => self.leader_gone(peer),
            Request::RemovedAsOf { by, applied_index } => self.heed_removal(by, applied_index),
            Request::StepDown { reply } => {
                let to = self.best_transferee();
                if let Some(to) = to {
                    self.node.transfer_leader(to);
                }
                let _ = reply.send(to);
            }
            Request::Stop => unreachable!("handled by the loop"),
        }
    }

    /// Raft's clock. A node removed while it could not hear of it ([`Group::heed_removal`]) keeps
    /// it stopped, so that no election timeout makes it campaign.
    fn tick(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        if self.removed_as_of.take_if(|as_of| applied >= *as_of).is_some() {
            tracing::info!(
                applied,
                "this node applied up to the index a removal notice named; its own configuration speaks again"
            );
        }
        if self.removed_as_of.is_none() {
            self.node.tick();
        }
    }

    /// Member `by`'s notice that its configuration as of its applied index `as_of` has no place
    /// for this node. Believed only while this node's own configuration still names it and it has
    /// applied less than `as_of`: the log the two share then changed this node's configuration
    /// between the two indices, and one of those changes removed it. A node that has applied as
    /// much (one added or promoted since `by` last applied) knows better, and goes on. A node that
    /// believes it leads (a leader cut off while the others removed it) steps down at once: no
    /// quorum is left to commit what it would take.
    fn heed_removal(&mut self, by: u64, as_of: u64) {
        let raft = &self.node.raft;
        let applied = raft.raft_log.applied;
        let cs = raft.prs().conf().to_conf_state();
        let named = cs.voters.contains(&self.id) || cs.learners.contains(&self.id);
        if self.removed_as_of.is_some() || !named || as_of <= applied {
            return;
        }
        tracing::error!(
            by,
            as_of,
            applied,
            "node {by} has no place for this node in its configuration as of index {as_of}, and this node applied only up to {applied}: it was removed while it could not hear of it, and campaigns no more"
        );
        self.removed_as_of = Some(as_of);
        if self.node.raft.state == StateRole::Leader {
            let term = self.node.raft.term;
            self.node.raft.become_follower(term, raft::INVALID_ID);
        }
    }

    /// A follower whose leader's process is gone stops honouring its lease and campaigns without
    /// waiting out the election timeout. Through pre-vote the campaign only wins where a quorum
    /// has seen the leader go too: the other followers still honour the lease of a leader they
    /// hear from, so one follower's broken link never deposes a live leader. The followers
    /// campaign one after another in the order of their ids, so that their votes do not split.
    fn leader_gone(&mut self, peer: u64) {
        let raft = &mut self.node.raft;
        if raft.state != raft::StateRole::Follower || raft.leader_id != peer || !raft.promotable() {
            return;
        }
        let rank = rank(raft, peer);
        tracing::info!(leader = peer, rank, "the leader's port refuses connections; campaigning");
        raft.leader_id = raft::INVALID_ID;
        raft.election_elapsed = raft.election_timeout();
        self.campaign_at = Some(Instant::now() + CAMPAIGN_STAGGER * rank);
    }

    /// Followers of one leader time out in the order of their ids, one stagger apart, instead of
    /// at random points of `[election, max_election)`: the first campaigns one tick after the
    /// lease it must break has run out on every follower (their ticks are out of phase by less
    /// than one), so a silent leader (paused, cut off) is replaced about one election timeout
    /// after its last heartbeat instead of a third of one later on average (the minimum of two
    /// uniform draws), and the votes still do not split. raft-rs draws the timeout anew whenever
    /// the term or the leader changes, so it is set again then. Candidates keep raft's random
    /// draw: they only exist once this order failed.
    fn order_election(&mut self) {
        let raft = &mut self.node.raft;
        let key = (raft.term, raft.leader_id);
        if raft.state != raft::StateRole::Follower || raft.leader_id == raft::INVALID_ID || self.ordered_for == key {
            return;
        }
        self.ordered_for = key;
        let timing = &self.config.timing;
        let stagger = (CAMPAIGN_STAGGER.as_micros() / timing.tick.as_micros().max(1)).max(1) as usize;
        let ticks = raft.election_timeout() + 1 + stagger * rank(raft, raft.leader_id) as usize;
        raft.set_randomized_election_timeout(ticks.min(timing.max_election_ticks() - 1));
    }

    /// Campaigns, unless a leader was heard of since the campaign was planned.
    fn campaign(&mut self) {
        let raft = &self.node.raft;
        if raft.state != raft::StateRole::Follower || raft.leader_id != raft::INVALID_ID || self.removed_as_of.is_some()
        {
            return;
        }
        self.metrics.fast_campaigns.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.node.campaign() {
            tracing::debug!("campaign refused: {e}");
        }
    }

    /// Steps a peer's message into raft once [`vet`] finds nothing wrong with it. A received
    /// snapshot's file, and that of one it replaces, goes unless raft holds it to install.
    fn step(&mut self, m: Message) {
        if m.get_msg_type() != MessageType::MsgSnapshot {
            return self.vet_and_step(m);
        }
        let offered = m.get_snapshot().clone();
        let held = self.node.raft.raft_log.unstable.snapshot.clone();
        self.vet_and_step(m);
        let pending = self.node.raft.raft_log.unstable.snapshot.as_ref();
        for snap in std::iter::once(&offered).chain(&held) {
            snapshot::discard_unless_pending(snap, pending);
        }
    }

    fn vet_and_step(&mut self, m: Message) {
        let raft = &self.node.raft;
        // A joining node knows no members until the leader's snapshot names them.
        let knows_members = raft.prs().iter().next().is_some();
        let local = vet::Local {
            is_member: |id| !knows_members || raft.prs().get(id).is_some(),
            term: raft.term,
            leads: raft.state == raft::StateRole::Leader,
            last_index: raft.raft_log.last_index(),
        };
        if !self.config.bugs.contains(&Bug::TrustPeers)
            && let Err(why) = vet::message(&m, &local)
        {
            self.metrics.peer_messages_rejected.fetch_add(1, Ordering::Relaxed);
            // A removed node that missed its removal campaigns on until told (by the transport,
            // which does not dial non-members): said once per sender, counted every time.
            let stranger = matches!(why, vet::Rejected::NotMember(_));
            if stranger {
                self.transport.tell_removed(m.from, self.group, raft.raft_log.applied);
            }
            let again = stranger && !self.strangers.insert(m.from);
            if again {
                tracing::debug!(from = m.from, group = self.group, "raft message dropped: {why}");
            } else {
                tracing::warn!(from = m.from, group = self.group, "raft message dropped: {why}");
            }
            return;
        }
        if let Err(e) = self.node.step(m) {
            tracing::debug!("dropped a raft message: {e}");
        }
    }

    fn not_leader(&self) -> BrokerError {
        let leader = self.node.raft.leader_id;
        if leader == 0 || leader == self.id {
            return BrokerError::NoLeader { group: self.group };
        }
        let address = self.peers.read().map(|p| p.get(&leader).cloned()).ok().flatten();
        BrokerError::NotLeader { group: self.group, leader_id: leader, leader_address: address.unwrap_or_default() }
    }

    fn propose(&mut self, mut command: Command, reply: Reply<Applied>) {
        if self.node.raft.state != StateRole::Leader {
            self.metrics.proposals_failed.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let batch_records = match &command.kind {
            Some(Kind::ProduceBatch(b)) => Some(b.records.len() as u64),
            _ => None,
        };
        // The API only sends a batch once the gate is on (its view never runs ahead of the state
        // machine); a batch below it would stop the members that cannot read it.
        if batch_records.is_some() && !Feature::ProduceBatch.on(self.sm.cluster_version()) {
            let why = format!("cluster version {} has no produce batches", self.sm.cluster_version());
            let _ = reply.send(Err(BrokerError::ProposalDropped(why)));
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        command.request_id = request_id;
        command.proposer = self.id;
        command.version = version::command_format(self.sm.cluster_version());
        let early = match self.seeded.on_propose(&mut command, &mut self.sm) {
            Ok(early) => early,
            Err(e) => {
                let _ = reply.send(Err(BrokerError::ProposalDropped(e.to_string())));
                self.failure = Some(e);
                return;
            }
        };
        if let Err(e) = self.node.propose(vec![], command.encode_to_vec()) {
            // Refused before it entered the log (e.g. a leader transfer is under way).
            self.metrics.proposals_failed.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Err(BrokerError::ProposalDropped(e.to_string())));
            return;
        }
        let index = self.node.raft.raft_log.last_index();
        self.metrics.proposals.fetch_add(1, Ordering::Relaxed);
        if let Some(records) = batch_records {
            self.metrics.produce_batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.produce_batch_records.fetch_add(records, Ordering::Relaxed);
        }
        self.pending_by_index.insert(index, request_id);
        self.pending.insert(request_id, Pending { proposed_at: Instant::now(), reply, early });
    }

    /// `--bug ack-before-commit`: replies to this leader's proposals up to `appended`, now that
    /// they are in its own log; their apply later finds nobody waiting.
    fn ack_appended(&mut self, appended: u64) {
        if !self.seeded.acks_early() {
            return;
        }
        for (_, request_id) in self.pending_by_index.range(..=appended) {
            if let Some(applied) = self.pending.get_mut(request_id).and_then(|p| p.early.take())
                && let Some(p) = self.pending.remove(request_id)
            {
                let _ = p.reply.send(Ok(applied));
            }
        }
    }

    /// The feature gate, on the leader: once every member of the group runs a release newer
    /// than the group's cluster version (as their peer envelopes say), propose the minimum of
    /// their releases as the new one. Never proposes a lower version; `--bug early-feature`
    /// proposes this node's release without asking the members.
    fn maybe_raise_cluster_version(&mut self) {
        self.gate_ticks = self.gate_ticks.saturating_sub(1);
        if self.gate_ticks > 0 || self.node.raft.state != StateRole::Leader {
            return;
        }
        self.gate_ticks = GATE_TICKS;
        let own = self.config.release.release;
        let target = if self.config.bugs.contains(&Bug::EarlyFeature) {
            own
        } else {
            let cs = self.node.raft.prs().conf().to_conf_state();
            let others = cs.voters.iter().chain(&cs.learners).filter(|m| **m != self.id);
            others.map(|m| self.transport.peer_release(*m).unwrap_or(0)).fold(own, u32::min)
        };
        if target <= self.sm.cluster_version() {
            return;
        }
        let kind = Kind::SetClusterVersion(crate::pb::cmd::SetClusterVersion { version: target });
        let command =
            Command { version: version::command_format(target), request_id: 0, proposer: self.id, kind: Some(kind) };
        match self.node.propose(vec![], command.encode_to_vec()) {
            Ok(()) => tracing::info!(from = self.sm.cluster_version(), to = target, "proposed a cluster version"),
            Err(e) => tracing::debug!("cluster version proposal dropped: {e}"),
        }
    }

    fn leader_facts(&self, target: u64) -> LeaderFacts {
        let raft = &self.node.raft;
        LeaderFacts {
            group: self.group,
            leader: self.id,
            conf: raft.prs().conf().to_conf_state(),
            commit: raft.raft_log.committed,
            target: raft.prs().get(target).map(|p| p.state),
        }
    }

    fn change_membership(&mut self, change: Change, reply: Reply<Applied>) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if self.node.raft.has_pending_conf() {
            // raft-rs would turn a second pending change into an empty entry.
            let reason = "another membership change is not applied yet; retry".into();
            let _ = reply.send(Err(BrokerError::MembershipRefused { group: self.group, reason }));
            return;
        }
        let target = match &change {
            Change::AddLearner { id, .. } | Change::Promote { id, .. } | Change::Remove { id } => *id,
        };
        if let Err(e) = membership::check(&change, &self.leader_facts(target)) {
            let _ = reply.send(Err(e));
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let cc = membership::conf_change(&change, request_id, self.id);
        if let Err(e) = self.node.propose_conf_change(vec![], cc) {
            let _ = reply.send(Err(BrokerError::ProposalDropped(e.to_string())));
            return;
        }
        tracing::info!(?change, "membership change proposed");
        let index = self.node.raft.raft_log.last_index();
        self.pending_by_index.insert(index, request_id);
        self.pending.insert(request_id, Pending { proposed_at: Instant::now(), reply, early: None });
    }

    fn members(&self) -> Result<MembersView, BrokerError> {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        let cs = raft.prs().conf().to_conf_state();
        let mut members: Vec<MemberProgress> = raft
            .prs()
            .iter()
            .map(|(id, p)| MemberProgress {
                id: *id,
                is_learner: cs.learners.contains(id),
                match_index: p.matched,
                state: membership::state_name(p.state),
                lag: self.lag.of(p.matched),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        Ok(MembersView { leader_id: self.id, commit: raft.raft_log.committed, members })
    }

    /// Records addresses learned from the log or storage: leader hints and the transport's
    /// address book. Each caller then calls [`Group::on_membership_changed`], which connects the
    /// members: the table also names removed nodes, which are not to be dialled.
    fn learn_addresses(&mut self, addresses: BTreeMap<u64, String>) {
        if let Ok(mut peers) = self.peers.write() {
            peers.extend(addresses.iter().map(|(id, a)| (*id, a.clone())));
        }
        self.transport.record_addresses(addresses);
    }

    /// After the configuration changed (or at start): tell the transport who the members are,
    /// and report a `--join-as-learner` node that finds itself a voter.
    fn on_membership_changed(&mut self) {
        let cs = self.node.raft.prs().conf().to_conf_state();
        let members: BTreeSet<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
        self.transport.set_members(self.group, members);
        if self.config.membership.join_as_learner && cs.voters.contains(&self.id) && first_found_voter(&self.metrics) {
            tracing::error!(voters = ?cs.voters, "started with --join-as-learner but this node is a voter; it keeps running");
        }
    }

    /// A leader that applied its own removal (a follower that won an election while the change
    /// was in flight) hands leadership to a voter: raft-rs keeps such a node leading, and a leader
    /// outside its own configuration would go on taking proposals and membership changes. Asked
    /// on every tick until a voter takes over (the transfer is aborted after an election timeout
    /// if the transferee does not campaign).
    fn step_down_if_removed(&mut self) {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader || self.votes() || raft.lead_transferee.is_some() {
            return;
        }
        if let Some(to) = self.best_transferee() {
            tracing::warn!(to, "this leader is no longer a voter of its group; handing leadership over");
            self.node.transfer_leader(to);
        }
    }

    /// Whether this node is a voter of its group (in either half of a joint configuration).
    fn votes(&self) -> bool {
        self.node.raft.prs().conf().voters().contains(self.id)
    }

    fn transfer_leader(&mut self, to: u64) -> Result<(), BrokerError> {
        if self.node.raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        let cs = self.node.raft.prs().conf().to_conf_state();
        if !cs.voters.contains(&to) {
            return Err(BrokerError::InvalidArgument(format!(
                "node {to} is not a voter of group {} (voters: {:?})",
                self.group, cs.voters
            )));
        }
        if to != self.id {
            self.node.transfer_leader(to);
        }
        Ok(())
    }

    fn best_transferee(&self) -> Option<u64> {
        if self.node.raft.state != StateRole::Leader {
            return None;
        }
        let voters = self.node.raft.prs().conf().to_conf_state().voters;
        self.node
            .raft
            .prs()
            .iter()
            // Recently heard from: a voter that is down keeps its last match index, and a
            // transfer to it would hold every proposal until raft-rs gave it up, again and again.
            .filter(|(id, p)| **id != self.id && voters.contains(id) && p.recent_active)
            .max_by_key(|(_, p)| p.matched)
            .map(|(id, _)| *id)
    }

    /// Hands queued reads to raft, then handles the Ready.
    fn issue_reads_and_ready(&mut self) -> Result<(), StorageError> {
        self.issue_reads();
        self.on_ready()?;
        // A single voter commits in a new term only as the Ready that elected it is handled,
        // after `issue_reads` kept the reads of that iteration queued: they go now, not a tick
        // later.
        let raft = &self.node.raft;
        if !self.reads_queued.is_empty() && raft.state == StateRole::Leader && raft.commit_to_current_term() {
            self.issue_reads();
            self.on_ready()?;
        }
        Ok(())
    }

    /// Hands queued reads to raft as one ReadIndex request.
    fn issue_reads(&mut self) {
        if self.reads_queued.is_empty() {
            return;
        }
        if self.node.raft.state != StateRole::Leader {
            let queued = std::mem::take(&mut self.reads_queued);
            self.refuse_reads(queued);
            return;
        }
        // raft-rs silently drops ReadIndex on a leader that has not committed in its term yet;
        // keep the reads queued until it has.
        if !self.node.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.node.read_index(ctx.to_be_bytes().to_vec());
        let batch = std::mem::take(&mut self.reads_queued);
        self.reads_in_flight.insert(ctx, batch);
    }

    /// Fails reads past their deadline, and forgets reads whose caller has gone. (A proposal is
    /// settled when its index is applied, whoever waits for it.)
    fn expire(&mut self, now: Instant) {
        let expired = |w: &ReadWaiter| now >= w.deadline || w.reply.is_closed();
        let mut timed_out = Vec::new();
        let mut split = |ws: &mut Vec<ReadWaiter>| {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(ws).into_iter().partition(|w| expired(w));
            *ws = keep;
            timed_out.extend(gone);
        };
        split(&mut self.reads_queued);
        self.reads_in_flight.values_mut().for_each(&mut split);
        self.reads_ready.iter_mut().for_each(|(_, ws)| split(ws));
        self.reads_in_flight.retain(|_, ws| !ws.is_empty());
        self.reads_ready.retain(|(_, ws)| !ws.is_empty());
        for w in timed_out {
            let _ = w.reply.send(Err(BrokerError::ReadTimeout));
        }
    }

    /// Processes one `Ready`, in raft-rs's order.
    fn on_ready(&mut self) -> Result<(), StorageError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        // 1. Messages the leader may send before its own fsync, unless its term or vote is new:
        // a single voter elects itself and appends to its learners in one step, and if those
        // appends left before the term was durable, a crash would let it take the same term
        // again with other entries at the same indices.
        let new_term = votes_anew(self.node.store().hard_state(), rd.hs());
        if !new_term {
            self.send(rd.take_messages());
        }
        // 2. A snapshot: switch the state machine and the log over to it.
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot())?;
        }
        // 3. Apply what is committed (already durable on a quorum). A leader does it before its
        // fsync, so that its replies leave sooner; a follower after, so that its append
        // responses, which the leader's next commit waits for, do not wait for applying.
        let leader = self.node.raft.state == StateRole::Leader;
        let mut committed = rd.take_committed_entries();
        if leader {
            self.apply(std::mem::take(&mut committed))?;
        }
        // 4. Persist new entries and the hard state in one write: the fsync behind every ack.
        let mut batch = WriteBatch::default();
        let store = self.node.mut_store();
        store.append(&mut batch, rd.entries());
        if let Some(hs) = rd.hs() {
            store.set_hard_state(&mut batch, hs);
        }
        if !batch.is_empty() {
            store.write(batch, self.sync && rd.must_sync())?;
        }
        if new_term {
            self.send(rd.take_messages());
        }
        if let Some(appended) = rd.entries().last().filter(|_| leader) {
            self.ack_appended(appended.index);
        }
        // 5. Messages that must wait for the fsync (votes, append responses).
        self.send(rd.take_persisted_messages());
        self.apply(committed)?;
        // 6. Confirmed reads wait for their index to be applied; a deposed leader's others fail.
        let leads = self.node.raft.state == StateRole::Leader;
        let orphaned = settle_reads(&mut self.reads_in_flight, &mut self.reads_ready, rd.take_read_states(), leads);
        self.refuse_reads(orphaned);
        // 7. Advance; the light ready carries what became committed meanwhile.
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.answer_reads();
        Ok(())
    }

    /// Once a tick on the leader: every peer's lag in time, for `/metrics` and `members`.
    fn record_lag(&mut self, now: Instant) {
        if self.node.raft.state != StateRole::Leader {
            return;
        }
        self.lag.sample(self.node.raft.raft_log.last_index(), now);
        let lags =
            self.node.raft.prs().iter().filter(|(id, _)| **id != self.id).map(|(id, p)| (*id, self.lag.of(p.matched)));
        self.metrics.set_peer_lag(self.group, lags.collect());
    }

    fn send_snapshot(&mut self, m: Message) {
        let to = m.to;
        let Some(address) = self.transport.address(to) else {
            snapshot::not_sent(&m);
            self.node.report_snapshot(to, raft::SnapshotStatus::Failure);
            return;
        };
        let ctx = snapshot::SendContext {
            from: self.id,
            address,
            done: self.tx.clone(),
            metrics: self.metrics.clone(),
            max_bytes_per_s: self.config.membership.snapshot_max_bytes_per_s,
            format: version::snapshot_format(self.sm.cluster_version()),
            tls: self.transport.tls(),
        };
        snapshot::spawn_send(ctx, self.group, m);
    }

    fn install_snapshot(&mut self, snap: &raft::eraftpb::Snapshot) -> Result<(), StorageError> {
        let started = Instant::now();
        let index = snap.get_metadata().index;
        {
            let _switching = self.switching.write().unwrap_or_else(|e| e.into_inner());
            self.node.mut_store().apply_snapshot(snap)?;
        }
        // The state machine's caches describe the state that was just replaced.
        self.sm = StateMachine::new(
            self.node.store().db().clone(),
            self.group,
            self.config.bugs.clone(),
            self.config.release,
        )?;
        // Proposals at indices the snapshot covers: their entries may be in it (a leader cut off
        // after replicating them, whose successor committed them), or another leader's may.
        settle_through(&mut self.pending, &mut self.pending_by_index, index, |at| {
            BrokerError::OutcomeUnknown(format!(
                "log index {at} was replaced by a snapshot up to {index}: whether it held this entry is not known"
            ))
        });
        // The installed state brings its own cluster version.
        self.follow_snapshot_format();
        self.learn_addresses(self.node.store().peer_addresses().clone());
        self.on_membership_changed();
        self.metrics.observe_snapshot_installed(started.elapsed());
        tracing::info!(index, took = ?started.elapsed(), "snapshot installed");
        Ok(())
    }

    /// Makes the next snapshots for the stream format the group's cluster version allows. Called
    /// where that version changes (a raise applied, a snapshot installed), not every tick;
    /// [`spawn`] sets the first from the state it opens. A file being made meanwhile, for the
    /// older format, streams in the newer one too.
    fn follow_snapshot_format(&mut self) {
        let format = version::snapshot_format(self.sm.cluster_version());
        self.node.mut_store().snapshot_format(format);
    }

    /// Starts a compaction when the log holds `--snapshot-entries` applied entries or
    /// `--snapshot-bytes` were appended: a flush off the loop (applied state bypasses the WAL, so
    /// it is only durable once flushed), then [`Group::compact`].
    fn maybe_compact(&mut self) {
        let limits = &self.config.membership;
        let store = self.node.store();
        let applied = self.node.raft.raft_log.applied;
        let in_log = applied.saturating_sub(store.first_index_cached() - 1);
        if self.compacting || (in_log < limits.snapshot_entries && store.appended_bytes() < limits.snapshot_bytes) {
            return;
        }
        // Every stored entry, applied or not: `appended_bytes` counts them all.
        let stored = store.last_index_cached().saturating_sub(store.first_index_cached() - 1);
        let keep = entries_to_keep(limits.snapshot_entries, limits.snapshot_bytes, stored, store.appended_bytes());
        let floor = self.snapshots_in_flight();
        let index = compaction_index(applied, keep, floor, store.appended_bytes(), limits.snapshot_bytes);
        if index < store.first_index_cached() {
            return;
        }
        self.compacting = true;
        let (db, tx) = (store.db().clone(), self.tx.clone());
        // Named, or it shows in top and perf as the raft loop that started it.
        let thread = std::thread::Builder::new().name(format!("flush-g{}", self.group));
        let flushing = thread.spawn(move || {
            let result = db.flush().map_err(|e| e.to_string());
            let _ = tx.send(Request::Flushed { index, result });
        });
        if let Err(e) = flushing {
            self.compact(index, Err(format!("no thread to flush on: {e}")));
        }
    }

    /// On the leader, the lowest index of a snapshot being sent to a peer: the peer goes on from
    /// the entry after it.
    fn snapshots_in_flight(&self) -> Option<u64> {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return None;
        }
        let sending = raft.prs().iter().filter(|(_, p)| p.state == raft::ProgressState::Snapshot);
        sending.map(|(_, p)| p.pending_snapshot).filter(|s| *s > 0).min()
    }

    fn compact(&mut self, index: u64, flushed: Result<(), String>) {
        self.compacting = false;
        let result = flushed
            .map_err(|what| StorageError::Corrupt { key: "flush before compaction".into(), what })
            .and_then(|()| self.node.mut_store().compact(index));
        match result {
            Ok(()) => {
                self.metrics.compactions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(index, "log compacted");
            }
            Err(e) => self.failure = Some(e),
        }
    }

    fn on_soft_state(&mut self, leader_id: u64, role: StateRole) {
        if leader_id != self.leader_id {
            self.leader_id = leader_id;
            self.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(leader = leader_id, ?role, term = self.node.raft.term, "leader changed");
            if role == StateRole::Leader
                && let Err(e) = self.seeded.on_elected(&mut self.sm, &self.node.raft.raft_log)
            {
                self.failure = Some(e);
            }
        }
    }

    /// Answers reads this node cannot serve, naming the leader if it knows one.
    fn refuse_reads(&self, reads: Vec<ReadWaiter>) {
        if reads.is_empty() {
            return;
        }
        let err = self.not_leader();
        for w in reads {
            let _ = w.reply.send(Err(err.clone()));
        }
    }

    fn send(&mut self, mut msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        // Snapshots travel on streams of their own, never in the peer queue.
        for m in msgs.extract_if(.., |m| m.get_msg_type() == MessageType::MsgSnapshot) {
            self.send_snapshot(m);
        }
        for unreachable in self.transport.send(self.group, msgs) {
            self.metrics.peer_drops.fetch_add(1, Ordering::Relaxed);
            self.node.report_unreachable(unreachable);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let version = self.sm.cluster_version();
        let mut batch = WriteBatch::default();
        let mut results = Vec::new();
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {} // a new leader's empty entry
                EntryType::EntryNormal => {
                    // Committed bytes that do not decode were damaged on this disk: skipping
                    // them would let this replica diverge from the others, so the node stops.
                    let command = Command::decode(&e.data[..]).map_err(|err| corrupt_entry(e.index, err))?;
                    let applied = self.sm.apply(&mut batch, e.index, &command)?;
                    if command.proposer == self.id {
                        results.push((command.request_id, e.index, applied));
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| corrupt_entry(e.index, err))?;
                    let cs = self.node.apply_conf_change(&cc);
                    self.persist_conf_state(&mut batch, e.index, cs)?;
                }
                EntryType::EntryConfChangeV2 => {
                    if let Some(result) = self.apply_conf_change_v2(&mut batch, &e)? {
                        results.push(result);
                    }
                }
            }
        }
        self.sm.set_applied(&mut batch, last);
        self.node.store().write_applied(batch)?;
        self.sm.batch_written();
        if self.sm.cluster_version() != version {
            self.follow_snapshot_format();
        }
        for (request_id, index, applied) in results {
            if let Some(p) = proposed_at(&mut self.pending, &mut self.pending_by_index, request_id, index) {
                self.metrics.observe_commit(p.proposed_at.elapsed());
                let _ = p.reply.send(Ok(applied));
            }
        }
        // Proposals whose slot is now applied with another entry can never commit.
        let dropped = settle_through(&mut self.pending, &mut self.pending_by_index, last, |index| {
            BrokerError::ProposalDropped(format!("log index {index} was taken by another leader's entry"))
        });
        self.metrics.proposals_failed.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a ConfChangeV2 entry: the configuration, the addresses it carries, and the
    /// proposer's reply.
    fn apply_conf_change_v2(
        &mut self,
        batch: &mut WriteBatch,
        e: &Entry,
    ) -> Result<Option<(u64, u64, Applied)>, StorageError> {
        let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| corrupt_entry(e.index, err))?;
        let context = membership::decode_context(&cc.context).map_err(|err| corrupt_entry(e.index, err))?;
        let cs = self.node.apply_conf_change(&cc);
        self.persist_conf_state(batch, e.index, cs)?;
        if !context.peers.is_empty() {
            let store = self.node.mut_store();
            store.add_peer_addresses(batch, context.peers.into_iter().map(|p| (p.id, p.address)));
            let addresses = store.peer_addresses().clone();
            self.learn_addresses(addresses);
        }
        self.on_membership_changed();
        let mut cs = self.node.raft.prs().conf().to_conf_state();
        cs.voters.sort_unstable();
        cs.learners.sort_unstable();
        tracing::info!(index = e.index, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
        if context.proposer != self.id || context.request_id == 0 {
            return Ok(None);
        }
        let applied = Applied::Membership { voters: cs.voters, learners: cs.learners, index: e.index };
        Ok(Some((context.request_id, e.index, applied)))
    }

    fn persist_conf_state(
        &mut self,
        batch: &mut WriteBatch,
        index: u64,
        cs: raft::Result<raft::eraftpb::ConfState>,
    ) -> Result<(), StorageError> {
        let cs = cs.map_err(|e| corrupt_entry(index, format!("conf change refused: {e}")))?;
        self.node.mut_store().set_conf_state(batch, &cs);
        Ok(())
    }

    fn answer_reads(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads_ready).into_iter().partition(|(index, _)| *index <= applied);
        self.reads_ready = waiting;
        for (_, ws) in done {
            for w in ws {
                self.metrics.reads.fetch_add(1, Ordering::Relaxed);
                let _ = w.reply.send(Ok(()));
            }
        }
    }

    fn publish(&self) {
        let raft = &self.node.raft;
        let is_leader = raft.state == StateRole::Leader;
        let cs = raft.prs().conf().to_conf_state();
        let leader_address = if raft.leader_id == 0 {
            String::new()
        } else {
            self.peers.read().ok().and_then(|p| p.get(&raft.leader_id).cloned()).unwrap_or_default()
        };
        let mut progress: Vec<PeerView> = if is_leader {
            raft.prs()
                .iter()
                .map(|(id, p)| PeerView {
                    id: *id,
                    match_index: p.matched,
                    next_index: p.next_idx,
                    is_learner: cs.learners.contains(id),
                })
                .collect()
        } else {
            Vec::new()
        };
        progress.sort_by_key(|p| p.id);
        let mut voters = cs.voters.clone();
        voters.sort_unstable();
        let mut learners = cs.learners.clone();
        learners.sort_unstable();
        // raft-rs keeps a node that applied its own removal a follower of the last leader it
        // knew, whose heartbeats have stopped: it is no member, and leads to nothing. So is one
        // that a member told of a removal it missed.
        let removed =
            (!voters.is_empty() && !self.votes() && !learners.contains(&self.id)) || self.removed_as_of.is_some();
        let view = GroupView {
            group: self.group,
            role: if removed { "removed" } else { role_name(raft.state) }.to_owned(),
            is_leader,
            has_leader: raft.leader_id != 0 && !removed,
            leader_id: raft.leader_id,
            leader_address,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            voters,
            learners,
            progress,
            cluster_version: self.sm.cluster_version(),
        };
        self.view.send_if_modified(|old| {
            let changed = *old != view;
            if changed {
                *old = view;
            }
            changed
        });
    }
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

fn corrupt_entry(index: u64, e: impl ToString) -> StorageError {
    StorageError::Corrupt { key: format!("log entry {index}"), what: e.to_string() }
}

/// How many applied entries a compaction keeps so that a peer a little behind catches up from
/// entries: a quarter of `--snapshot-entries`, and no more than about a quarter of
/// `--snapshot-bytes` at the mean size of the `in_log` entries (`appended` bytes of them were
/// appended since the last compaction), or large entries would keep the log far above its byte
/// limit.
fn entries_to_keep(limit_entries: u64, limit_bytes: u64, in_log: u64, appended: u64) -> u64 {
    let mean = (appended / in_log.max(1)).max(1);
    (limit_entries / 4).min((limit_bytes / 4).div_ceil(mean))
}

/// The index to compact through: `keep` entries below `applied`, and no further than a snapshot
/// in flight (`floor`), whose peer would otherwise find the entry after it gone and need another
/// snapshot, and another, while the leader's log moves on; unless the log holds twice its byte
/// limit (`appended` of `limit_bytes`), which bounds what a slow transfer can hold back.
fn compaction_index(applied: u64, keep: u64, floor: Option<u64>, appended: u64, limit_bytes: u64) -> u64 {
    let index = applied.saturating_sub(keep);
    match floor {
        Some(floor) if appended < limit_bytes.saturating_mul(2) => index.min(floor),
        _ => index,
    }
}

/// Whether a Ready's hard state `new` changes the term or the vote of `stored`: its messages then
/// wait for the write.
fn votes_anew(stored: &HardState, new: Option<&HardState>) -> bool {
    new.is_some_and(|hs| hs.term != stored.term || hs.vote != stored.vote)
}

/// The pending proposal `request_id` if it took log index `index`, taken out of both maps. Matched
/// by both: request ids count on from the clock at the node's start, which a clock fault can set
/// back, so an entry this node proposed in an earlier life may carry the id of a caller of this
/// one, and must not answer it.
fn proposed_at(
    pending: &mut HashMap<u64, Pending>,
    by_index: &mut BTreeMap<u64, u64>,
    request_id: u64,
    index: u64,
) -> Option<Pending> {
    if by_index.get(&index) != Some(&request_id) {
        return None;
    }
    by_index.remove(&index);
    pending.remove(&request_id)
}

/// Counts a `--join-as-learner` node found a voter; whether this was the first time since its
/// start. Once per node, not per group: the operator has one node to look at, however many of its
/// groups promoted it.
fn first_found_voter(metrics: &Metrics) -> bool {
    metrics.learner_found_voter.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// Moves the reads raft `confirmed` from `in_flight` to `ready`, to be served once their index is
/// applied, even if this node no longer leads: raft confirmed them while it led (a Ready can
/// carry a step-down with the read states of the same batch of messages). Returns the reads left
/// in flight if it no longer `leads`: those will never be confirmed.
fn settle_reads(
    in_flight: &mut HashMap<u64, Vec<ReadWaiter>>,
    ready: &mut Vec<(u64, Vec<ReadWaiter>)>,
    confirmed: Vec<raft::ReadState>,
    leads: bool,
) -> Vec<ReadWaiter> {
    for rs in confirmed {
        let ctx = rs.request_ctx.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
        if let Some(ws) = in_flight.remove(&ctx) {
            ready.push((rs.index, ws));
        }
    }
    if leads {
        return Vec::new();
    }
    in_flight.drain().flat_map(|(_, ws)| ws).collect()
}

/// Answers every pending proposal at an index up to `last` with `error(index)`; returns how many.
fn settle_through(
    pending: &mut HashMap<u64, Pending>,
    by_index: &mut BTreeMap<u64, u64>,
    last: u64,
    error: impl Fn(u64) -> BrokerError,
) -> u64 {
    let mut settled = 0;
    while let Some((&index, &request_id)) = by_index.first_key_value().filter(|(index, _)| **index <= last) {
        by_index.remove(&index);
        if let Some(p) = pending.remove(&request_id) {
            settled += 1;
            let _ = p.reply.send(Err(error(index)));
        }
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_a_snapshot_covers_are_answered_unknown_and_later_ones_wait() {
        let (mut pending, mut by_index) = (HashMap::new(), BTreeMap::new());
        let mut replies = Vec::new();
        for (request_id, index) in [(1, 5), (2, 9)] {
            let (reply, answer) = oneshot::channel();
            pending.insert(request_id, Pending { proposed_at: Instant::now(), reply, early: None });
            by_index.insert(index, request_id);
            replies.push(answer);
        }
        let unknown = |at: u64| BrokerError::OutcomeUnknown(format!("index {at}"));
        assert_eq!(settle_through(&mut pending, &mut by_index, 7, unknown), 1);
        let answer = replies[0].try_recv().unwrap();
        assert!(matches!(answer, Err(BrokerError::OutcomeUnknown(ref m)) if m == "index 5"), "{answer:?}");
        assert!(replies[1].try_recv().is_err(), "index 9 is past the snapshot: still pending");
        assert_eq!(by_index.keys().copied().collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn a_single_voter_appends_to_its_learners_in_the_ready_that_raises_its_term() {
        use raft::Storage as _;
        use raft::eraftpb::ConfState;
        use raft::storage::MemStorage;
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1], vec![2])));
        let stored = storage.initial_state().unwrap().hard_state;
        let cfg = raft::Config { id: 1, ..raft::Config::default() };
        let mut node = RawNode::new(&cfg, storage, &raft_logger(1, 0)).unwrap();
        node.campaign().unwrap();
        let rd = node.ready();
        assert!(!rd.messages().is_empty(), "the append to learner 2 may leave before the fsync");
        assert!(votes_anew(&stored, rd.hs()), "so the new term holds it back");
        assert!(!votes_anew(rd.hs().unwrap(), rd.hs()));
    }

    /// A single voter's group 0 in `dir`, opened but not running, its first Ready handled.
    fn single_voter(dir: &std::path::Path) -> Group {
        let peers: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
        let config = NodeConfig {
            id: 1,
            listen: "127.0.0.1:1".parse().unwrap(),
            http: None,
            peers: peers.clone(),
            data_dir: dir.to_path_buf(),
            groups: 1,
            timing: RaftTiming::default(),
            sync: false,
            max_record_bytes: 1 << 20,
            admin_token: None,
            request_timeout: Duration::from_secs(60),
            bugs: BTreeSet::new(),
            membership: Default::default(),
            release: version::Release::current(),
            tls: None,
        };
        let ctx = GroupContext {
            db: crate::storage::open_db(dir).unwrap(),
            config: Arc::new(config),
            peers: Arc::new(RwLock::new(peers.clone())),
            transport: Transport::start(1, &peers, version::Release::current(), None),
            metrics: Arc::default(),
        };
        let mut g = open(0, &ctx).unwrap().0;
        g.issue_reads_and_ready().unwrap();
        g
    }

    #[tokio::test]
    async fn a_single_voter_serves_the_reads_queued_in_the_iteration_that_elected_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = single_voter(dir.path());
        let (reply, mut answer) = oneshot::channel();
        g.handle(Request::Read { reply });
        // As an election timeout in the same iteration of the loop would.
        g.node.campaign().unwrap();
        assert_eq!(g.node.raft.state, StateRole::Leader);
        g.issue_reads_and_ready().unwrap();
        assert!(matches!(answer.try_recv(), Ok(Ok(()))), "the read waits for the next iteration");
    }

    #[tokio::test]
    async fn a_removal_notice_is_believed_only_from_further_on_and_stops_the_clock_until_the_log_gets_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = single_voter(dir.path());
        let (applied, term) = (g.node.raft.raft_log.applied, g.node.raft.term);
        g.handle(Request::RemovedAsOf { by: 2, applied_index: applied });
        assert_eq!(g.removed_as_of, None, "a member that applied no further knows no more of the configuration");
        g.handle(Request::RemovedAsOf { by: 2, applied_index: applied + 1 });
        assert_eq!(g.removed_as_of, Some(applied + 1));
        g.publish();
        assert_eq!(g.view.borrow().role, "removed");
        // Well past any election timeout, a single voter would have elected itself.
        for _ in 0..4 * RaftTiming::default().max_election_ticks() {
            g.tick();
            g.issue_reads_and_ready().unwrap();
        }
        assert_eq!((g.node.raft.state, g.node.raft.term), (StateRole::Follower, term), "it did not campaign");
        // Once its own log reaches the notice's index, its own configuration (here: itself) speaks.
        g.node.campaign().unwrap();
        g.issue_reads_and_ready().unwrap();
        assert!(g.node.raft.raft_log.applied > applied);
        g.tick();
        assert_eq!(g.removed_as_of, None);
        // A leader told steps down, and does not campaign even as a follower whose leader is gone.
        assert_eq!(g.node.raft.state, StateRole::Leader);
        let applied = g.node.raft.raft_log.applied;
        g.handle(Request::RemovedAsOf { by: 2, applied_index: applied + 1 });
        assert_eq!(g.node.raft.state, StateRole::Follower);
        g.campaign();
        g.issue_reads_and_ready().unwrap();
        assert_eq!(g.node.raft.state, StateRole::Follower);
    }

    #[tokio::test]
    async fn a_campaign_from_outside_the_configuration_asks_for_a_removal_notice_and_a_new_leader_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = single_voter(dir.path());
        let message = |ty: MessageType, from: u64, term: u64| {
            let mut m = Message::default();
            m.set_msg_type(ty);
            (m.from, m.to, m.term) = (from, 1, term);
            Request::Raft(Box::new(m))
        };
        let term = g.node.raft.term;
        g.handle(message(MessageType::MsgRequestPreVote, 9, term + 1));
        let applied_index = g.node.raft.raft_log.applied;
        let notice = g.transport.take_notice(9).expect("a notice for node 9");
        assert_eq!(notice.groups, [crate::pb::broker::RemovedAsOf { group: 0, applied_index }]);
        assert!(g.transport.take_notice(9).is_none(), "one notice per ask");
        // A leader of a later term that this node does not know yet (it joined while this node
        // lagged) is followed, not told off.
        g.handle(message(MessageType::MsgHeartbeat, 5, term + 1));
        assert!(g.transport.take_notice(5).is_none());
        assert_eq!(g.node.raft.leader_id, 5);
    }

    #[test]
    fn a_join_as_learner_node_reports_finding_itself_a_voter_once_whatever_its_groups() {
        let metrics = Metrics::default();
        assert!(first_found_voter(&metrics), "the first group to find it reports it");
        assert!(!first_found_voter(&metrics), "a second group does not");
        assert_eq!(metrics.learner_found_voter.load(Ordering::Relaxed), 1);
    }

    /// A read waiting in flight under context `ctx`, and where its answer arrives.
    fn read_in_flight(
        in_flight: &mut HashMap<u64, Vec<ReadWaiter>>,
        ctx: u64,
    ) -> oneshot::Receiver<Result<(), BrokerError>> {
        let (reply, answer) = oneshot::channel();
        in_flight
            .entry(ctx)
            .or_default()
            .push(ReadWaiter { deadline: Instant::now() + Duration::from_secs(60), reply });
        answer
    }

    fn read_state(ctx: u64, index: u64) -> raft::ReadState {
        raft::ReadState { index, request_ctx: ctx.to_be_bytes().to_vec() }
    }

    #[test]
    fn a_deposed_leader_keeps_the_reads_raft_confirmed_and_gives_up_the_rest() {
        let (mut in_flight, mut ready) = (HashMap::new(), Vec::new());
        let _confirmed = read_in_flight(&mut in_flight, 1);
        let _unconfirmed = read_in_flight(&mut in_flight, 2);
        let orphaned = settle_reads(&mut in_flight, &mut ready, vec![read_state(1, 40)], false);
        assert_eq!(ready.iter().map(|(index, ws)| (*index, ws.len())).collect::<Vec<_>>(), [(40, 1)]);
        assert_eq!(orphaned.len(), 1, "only the unconfirmed read fails");
        assert!(in_flight.is_empty());
    }

    #[test]
    fn a_leader_keeps_its_unconfirmed_reads_in_flight() {
        let (mut in_flight, mut ready) = (HashMap::new(), Vec::new());
        let _confirmed = read_in_flight(&mut in_flight, 1);
        let _unconfirmed = read_in_flight(&mut in_flight, 2);
        let orphaned = settle_reads(&mut in_flight, &mut ready, vec![read_state(1, 40), read_state(9, 41)], true);
        assert!(orphaned.is_empty());
        assert_eq!(ready.len(), 1, "a context no read waits under is ignored");
        assert_eq!(in_flight.keys().copied().collect::<Vec<_>>(), [2]);
    }

    /// Handles a Ready as the loop does, on memory: persist, then advance.
    fn persist(node: &mut RawNode<raft::storage::MemStorage>) {
        let mut rd = node.ready();
        let store = node.store().clone();
        store.wl().append(rd.entries()).unwrap();
        if let Some(hs) = rd.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        rd.take_messages();
        let mut light = node.advance(rd);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        light.take_messages();
        node.advance_apply();
    }

    fn message(ty: MessageType, from: u64, term: u64) -> Message {
        let mut m = Message { from, to: 1, term, ..Default::default() };
        m.set_msg_type(ty);
        m
    }

    #[test]
    fn a_ready_can_carry_a_step_down_with_reads_confirmed_before_it() {
        use raft::eraftpb::ConfState;
        use raft::storage::MemStorage;
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let cfg = raft::Config { id: 1, ..raft::Config::default() };
        let mut node = RawNode::new(&cfg, storage, &raft_logger(1, 0)).unwrap();
        node.campaign().unwrap();
        persist(&mut node);
        let term = node.raft.term;
        node.step(message(MessageType::MsgRequestVoteResponse, 2, term)).unwrap();
        persist(&mut node);
        let mut appended = message(MessageType::MsgAppendResponse, 2, term);
        appended.index = node.raft.raft_log.last_index();
        node.step(appended).unwrap();
        persist(&mut node);
        assert!(node.raft.commit_to_current_term());
        node.read_index(7u64.to_be_bytes().to_vec());
        persist(&mut node);
        // In one batch: node 2 confirms the read, then node 3's heartbeat of a later term deposes.
        let mut confirms = message(MessageType::MsgHeartbeatResponse, 2, term);
        confirms.context = 7u64.to_be_bytes().to_vec().into();
        node.step(confirms).unwrap();
        node.step(message(MessageType::MsgHeartbeat, 3, term + 1)).unwrap();
        let mut rd = node.ready();
        assert_eq!(rd.ss().map(|ss| ss.raft_state), Some(StateRole::Follower));
        let (mut in_flight, mut ready) = (HashMap::new(), Vec::new());
        let _read = read_in_flight(&mut in_flight, 7);
        let orphaned = settle_reads(&mut in_flight, &mut ready, rd.take_read_states(), false);
        assert!(orphaned.is_empty(), "the confirmed read is not failed");
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn an_applied_entry_answers_only_the_proposal_at_its_index() {
        let (mut pending, mut by_index) = (HashMap::new(), BTreeMap::new());
        let (reply, _answer) = oneshot::channel();
        pending.insert(7, Pending { proposed_at: Instant::now(), reply, early: None });
        by_index.insert(9, 7);
        // An entry of an earlier life with the same request id, at another index.
        assert!(proposed_at(&mut pending, &mut by_index, 7, 5).is_none());
        assert!(proposed_at(&mut pending, &mut by_index, 8, 9).is_none(), "another id at its index");
        assert!(proposed_at(&mut pending, &mut by_index, 7, 9).is_some());
        assert!(pending.is_empty() && by_index.is_empty());
    }

    #[test]
    fn a_compaction_keeps_a_quarter_of_the_limit_that_binds() {
        // Small entries: a quarter of the entries.
        assert_eq!(entries_to_keep(10_000, 64 << 20, 10_000, 10_000 * 100), 2_500);
        // 1 MB entries: about 16 MB of them, not 2,500 MB.
        assert_eq!(entries_to_keep(10_000, 64 << 20, 64, 64 << 20), 16);
        // Entries kept from before the last compaction count in the mean but not in the bytes:
        // the log still settles near a third of its byte limit instead of growing.
        let mut kept = 0;
        for _ in 0..20 {
            kept = entries_to_keep(10_000, 64 << 20, kept + 64, 64 << 20);
        }
        assert!((16..=22).contains(&kept), "{kept}");
        assert_eq!(entries_to_keep(10_000, 64 << 20, 0, 0), 2_500, "nothing appended since a restart");
    }

    #[test]
    fn a_compaction_keeps_the_entry_after_a_snapshot_in_flight_up_to_twice_the_byte_limit() {
        assert_eq!(compaction_index(10_000, 2_500, None, 0, 64 << 20), 7_500);
        assert_eq!(compaction_index(10_000, 2_500, Some(5_000), 0, 64 << 20), 5_000);
        assert_eq!(compaction_index(10_000, 2_500, Some(9_000), 0, 64 << 20), 7_500);
        assert_eq!(compaction_index(10_000, 2_500, Some(5_000), 128 << 20, 64 << 20), 7_500, "held back no more");
    }

    #[test]
    fn a_peers_lag_is_the_age_of_the_first_entry_it_lacks() {
        let mut clock = LagClock::default();
        let now = Instant::now();
        let t0 = now - Duration::from_secs(5);
        clock.sample(10, t0);
        clock.sample(10, t0 + Duration::from_secs(1));
        clock.sample(20, t0 + Duration::from_secs(3));
        assert_eq!(clock.of(20), Duration::ZERO);
        let lag = clock.of(15);
        // Since index 20 arrived (2 s before `now`), however long the machine took since.
        assert!(lag >= Duration::from_secs(2) && lag <= Duration::from_secs(2) + now.elapsed(), "{lag:?}");
        assert!(clock.of(5) >= Duration::from_secs(5));
    }
}
