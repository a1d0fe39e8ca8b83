//! Membership changes: adding learners, promoting them, removing nodes, and who the members are.
//!
//! Every change is one ConfChangeV2 with a single step, proposed by the leader and applied by
//! every member from the log. Its context ([`ConfChangeContext`]) carries the addresses of the
//! nodes it adds, so that every member learns them from the log (and from snapshots, which carry
//! the address table), and the proposer's request id, so that the proposer can answer its caller
//! once the change is applied.
//!
//! The admin handlers here check what they can before anything is proposed (the target is
//! reachable, the learner has caught up), and the group's loop checks the rest against its own
//! configuration with [`check`] just before proposing: a change that does not fit is refused
//! with a typed error and never reaches the log.

use crate::api::NodeState;
use crate::client::{Client, ClientOptions};
use crate::config::Bug;
use crate::error::BrokerError;
use crate::fsm::Applied;
use crate::node::Request;
use crate::pb::broker::{
    AddLearnerRequest, Member, MembersRequest, MembersResponse, MembershipResponse, PromoteRequest, RemoveNodeRequest,
};
use crate::pb::cmd::{ConfChangeContext, PeerAddress, PeerAddresses};
use prost::Message as _;
use protobuf::Message as _;
use raft::ProgressState;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// The version of [`ConfChangeContext`] and [`PeerAddresses`] this build writes. A reader keeps
/// reading older versions: fields are only ever added.
pub const MEMBERSHIP_VERSION: u32 = 1;

/// How long a handler waits for a node it probes (the node to add, a learner to promote).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One membership change, as the group's loop receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add `id`, reachable at `address`, as a learner.
    AddLearner {
        /// The new node.
        id: u64,
        /// Its gRPC address.
        address: String,
    },
    /// Make learner `id` a voter; with a gate, only if it has caught up.
    Promote {
        /// The learner.
        id: u64,
        /// The catch-up check, or `None` when the operator skipped it explicitly.
        gate: Option<Gate>,
    },
    /// Remove voter or learner `id`.
    Remove {
        /// The node.
        id: u64,
    },
}

/// The catch-up figures a promotion is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The learner's applied index, as it reported it just before.
    pub learner_applied: u64,
    /// The operator's lower bound for it.
    pub min_applied: u64,
    /// How far behind the leader's commit index it may be (`--max-promote-lag`).
    pub max_lag: u64,
}

/// What the leader knows when it checks a change.
#[derive(Debug, Clone)]
pub struct LeaderFacts {
    /// The group.
    pub group: u32,
    /// The leader's own id.
    pub leader: u64,
    /// The current configuration.
    pub conf: ConfState,
    /// The leader's commit index.
    pub commit: u64,
    /// The leader's view of the target's replication, if it tracks it.
    pub target: Option<ProgressState>,
}

/// Checks `change` against the leader's view: refused changes are typed and propose nothing.
pub fn check(change: &Change, facts: &LeaderFacts) -> Result<(), BrokerError> {
    let group = facts.group;
    let refused = |reason: String| Err(BrokerError::MembershipRefused { group, reason });
    let is_voter = |id: u64| facts.conf.voters.contains(&id);
    let is_learner = |id: u64| facts.conf.learners.contains(&id);
    if !is_voter(facts.leader) {
        // It applied its own removal and is handing leadership over.
        return refused(format!("the leader, node {}, is no longer a voter; retry", facts.leader));
    }
    match change {
        Change::AddLearner { id, .. } if is_voter(*id) => refused(format!("node {id} is already a voter")),
        Change::AddLearner { id, .. } if is_learner(*id) => refused(format!("node {id} is already a learner")),
        Change::AddLearner { .. } => Ok(()),
        Change::Remove { id } if !is_voter(*id) && !is_learner(*id) => refused(format!("node {id} is not a member")),
        Change::Remove { id } if is_voter(*id) && facts.conf.voters.len() == 1 => {
            refused(format!("node {id} is the last voter"))
        }
        Change::Remove { id } if *id == facts.leader => {
            refused(format!("node {id} leads the group; transfer leadership first"))
        }
        Change::Remove { .. } => Ok(()),
        Change::Promote { id, gate } => check_promote(*id, gate.as_ref(), facts),
    }
}

fn check_promote(id: u64, gate: Option<&Gate>, facts: &LeaderFacts) -> Result<(), BrokerError> {
    let refused = |reason: String, learner_applied: u64| {
        Err(BrokerError::PromoteRefused {
            group: facts.group,
            node: id,
            reason,
            learner_applied,
            leader_commit: facts.commit,
        })
    };
    if facts.conf.voters.contains(&id) {
        return refused(format!("node {id} is already a voter"), 0);
    }
    if !facts.conf.learners.contains(&id) {
        return refused(format!("node {id} is not a learner of the group"), 0);
    }
    let Some(g) = gate else {
        return Ok(());
    };
    if g.min_applied == 0 {
        return refused("min_applied_index 0 checks nothing; pass skip_catch_up_check to mean it".into(), 0);
    }
    if facts.target == Some(ProgressState::Snapshot) {
        return refused("a snapshot to it is still in flight or not yet applied".into(), g.learner_applied);
    }
    if g.learner_applied < g.min_applied {
        let reason = format!("applied index {} is below min_applied_index {}", g.learner_applied, g.min_applied);
        return refused(reason, g.learner_applied);
    }
    let lag = facts.commit.saturating_sub(g.learner_applied);
    if lag > g.max_lag {
        let reason = format!("it lags the leader's commit by {lag} entries; at most {} allowed", g.max_lag);
        return refused(reason, g.learner_applied);
    }
    Ok(())
}

/// The ConfChangeV2 for `change`, with its context.
pub fn conf_change(change: &Change, request_id: u64, proposer: u64) -> ConfChangeV2 {
    let (id, ty, peers) = match change {
        Change::AddLearner { id, address } => {
            (*id, ConfChangeType::AddLearnerNode, vec![PeerAddress { id: *id, address: address.clone() }])
        }
        Change::Promote { id, .. } => (*id, ConfChangeType::AddNode, vec![]),
        Change::Remove { id } => (*id, ConfChangeType::RemoveNode, vec![]),
    };
    single_change(id, ty, ConfChangeContext { version: MEMBERSHIP_VERSION, request_id, proposer, peers })
}

fn single_change(id: u64, ty: ConfChangeType, context: ConfChangeContext) -> ConfChangeV2 {
    let mut single = ConfChangeSingle { node_id: id, ..Default::default() };
    single.set_change_type(ty);
    let mut cc = ConfChangeV2 { context: context.encode_to_vec().into(), ..Default::default() };
    cc.set_changes(vec![single].into());
    cc
}

/// Decodes a change's context; a change without one (never written by this build) has none.
pub fn decode_context(bytes: &[u8]) -> Result<ConfChangeContext, prost::DecodeError> {
    ConfChangeContext::decode(bytes)
}

/// The first entries of a new cluster's log, identical on every initial voter: one AddNode per
/// voter, each carrying every initial address. A node that joins later replays them (or gets a
/// snapshot that covers them) and so learns the initial configuration from the log, as etcd's
/// bootstrap does.
pub fn bootstrap_entries(peers: &BTreeMap<u64, String>) -> Vec<Entry> {
    let all: Vec<PeerAddress> = peers.iter().map(|(id, a)| PeerAddress { id: *id, address: a.clone() }).collect();
    peers
        .keys()
        .enumerate()
        .map(|(i, id)| {
            let context =
                ConfChangeContext { version: MEMBERSHIP_VERSION, request_id: 0, proposer: 0, peers: all.clone() };
            let cc = single_change(*id, ConfChangeType::AddNode, context);
            // Encoding an in-memory proto3 message cannot fail.
            let data = cc.write_to_bytes().expect("proto3 messages always encode");
            let mut e = Entry { term: 1, index: i as u64 + 1, data: data.into(), ..Default::default() };
            e.set_entry_type(EntryType::EntryConfChangeV2);
            e
        })
        .collect()
}

/// Encodes an address table for storage.
pub fn encode_addresses(peers: &BTreeMap<u64, String>) -> Vec<u8> {
    let peers = peers.iter().map(|(id, a)| PeerAddress { id: *id, address: a.clone() }).collect();
    PeerAddresses { version: MEMBERSHIP_VERSION, peers }.encode_to_vec()
}

/// Decodes a stored address table.
pub fn decode_addresses(bytes: &[u8]) -> Result<BTreeMap<u64, String>, prost::DecodeError> {
    Ok(PeerAddresses::decode(bytes)?.peers.into_iter().map(|p| (p.id, p.address)).collect())
}

/// One member as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberProgress {
    /// The member.
    pub id: u64,
    /// Whether it is a learner.
    pub is_learner: bool,
    /// The highest index known replicated on it.
    pub match_index: u64,
    /// `replicate`, `probe` or `snapshot`.
    pub state: &'static str,
    /// How long it has been behind the leader's last index.
    pub lag: Duration,
}

/// A leader's view of its group's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersView {
    /// The leader.
    pub leader_id: u64,
    /// Its commit index.
    pub commit: u64,
    /// Every voter and learner.
    pub members: Vec<MemberProgress>,
}

/// Names a progress state for operators.
pub fn state_name(s: ProgressState) -> &'static str {
    match s {
        ProgressState::Probe => "probe",
        ProgressState::Replicate => "replicate",
        ProgressState::Snapshot => "snapshot",
    }
}

fn response(applied: Applied) -> Result<MembershipResponse, BrokerError> {
    match applied {
        Applied::Membership { voters, learners, index } => {
            Ok(MembershipResponse { voters, learners, index, learner_applied: 0 })
        }
        other => Err(BrokerError::OutcomeUnknown(format!("unexpected apply result {other:?}"))),
    }
}

/// Hands `change` to the group's loop and waits until it is applied on this node.
async fn propose(state: &NodeState, group: u32, change: Change) -> Result<MembershipResponse, BrokerError> {
    let (reply, rx) = oneshot::channel();
    state.group(group)?.send(Request::ChangeMembership { change, reply })?;
    match tokio::time::timeout(state.config.request_timeout, rx).await {
        Ok(Ok(result)) => result.and_then(response),
        Ok(Err(_)) => Err(BrokerError::OutcomeUnknown("the raft group stopped".into())),
        Err(_) => Err(BrokerError::OutcomeUnknown(format!("not applied within {:?}", state.config.request_timeout))),
    }
}

/// Asks the node at `address` for its status, and checks that it is node `id`.
async fn probe(id: u64, address: &str) -> Result<crate::http::NodeStatus, String> {
    let opts = ClientOptions {
        deadline: PROBE_TIMEOUT,
        attempt_timeout: PROBE_TIMEOUT,
        connect_timeout: PROBE_TIMEOUT,
        ..Default::default()
    };
    let client = Client::new([(id, address.to_owned())].into(), opts);
    let status = client.status(id).await.map_err(|e| e.to_string())?;
    if status.id != id {
        return Err(format!("the node there is node {}", status.id));
    }
    Ok(status)
}

/// `Admin.AddLearner`.
pub async fn add_learner(state: &NodeState, r: AddLearnerRequest) -> Result<MembershipResponse, BrokerError> {
    let _guard = state.admit()?;
    if r.id == 0 {
        return Err(BrokerError::InvalidArgument("node id 0 is reserved".into()));
    }
    if r.node_address.parse::<std::net::SocketAddr>().is_err() && !r.node_address.contains(':') {
        return Err(BrokerError::InvalidArgument(format!("node address {:?} is not HOST:PORT", r.node_address)));
    }
    let view = state.group(r.group)?.view();
    if !view.is_leader {
        return Err(not_leader(r.group, &view));
    }
    let change = Change::AddLearner { id: r.id, address: r.node_address.clone() };
    let facts = LeaderFacts {
        group: r.group,
        leader: state.config.id,
        conf: ConfState::from((view.voters.clone(), view.learners.clone())),
        commit: view.commit_index,
        target: None,
    };
    // Refuse an existing id before probing: the answer should not depend on the network.
    check(&change, &facts)?;
    probe(r.id, &r.node_address).await.map_err(|reason| BrokerError::PeerUnreachable {
        node: r.id,
        address: r.node_address.clone(),
        reason,
    })?;
    propose(state, r.group, change).await
}

/// `Admin.Promote`: the learner's own applied index is asked of it here; the loop checks it.
pub async fn promote(state: &NodeState, r: PromoteRequest) -> Result<MembershipResponse, BrokerError> {
    let _guard = state.admit()?;
    let view = state.group(r.group)?.view();
    if !view.is_leader {
        return Err(not_leader(r.group, &view));
    }
    let refused = |reason: String| BrokerError::PromoteRefused {
        group: r.group,
        node: r.id,
        reason,
        learner_applied: 0,
        leader_commit: view.commit_index,
    };
    if state.config.bugs.contains(&Bug::LaxPromote)
        && !r.skip_catch_up_check
        && lax_promotable(state, r.group, r.id).await?
    {
        return propose(state, r.group, Change::Promote { id: r.id, gate: None }).await;
    }
    let gate = if r.skip_catch_up_check {
        None
    } else if !view.learners.contains(&r.id) {
        // Let the loop name what the target is instead.
        Some(Gate {
            learner_applied: 0,
            min_applied: r.min_applied_index,
            max_lag: state.config.membership.max_promote_lag,
        })
    } else {
        if r.min_applied_index == 0 {
            return Err(refused("min_applied_index 0 checks nothing; pass skip_catch_up_check to mean it".into()));
        }
        let address = state.peers.read().ok().and_then(|p| p.get(&r.id).cloned()).unwrap_or_default();
        let status = probe(r.id, &address).await.map_err(|e| refused(format!("the learner did not answer: {e}")))?;
        let applied = status.groups.iter().find(|g| g.group == r.group).map_or(0, |g| g.applied_index);
        Some(Gate {
            learner_applied: applied,
            min_applied: r.min_applied_index,
            max_lag: state.config.membership.max_promote_lag,
        })
    };
    let learner_applied = gate.as_ref().map_or(0, |g| g.learner_applied);
    let done = propose(state, r.group, Change::Promote { id: r.id, gate }).await?;
    Ok(MembershipResponse { learner_applied, ..done })
}

/// `--bug lax-promote`, the one place it acts: the leader judges the learner by what it has
/// received (its match index, which counts a snapshot as soon as it arrived) rather than by what
/// it applied, and asks nothing of it, so a learner that has received anything is promoted
/// without the gate, however far behind it is.
async fn lax_promotable(state: &NodeState, group: u32, id: u64) -> Result<bool, BrokerError> {
    let (reply, rx) = oneshot::channel();
    state.group(group)?.send(Request::Members { reply })?;
    let view = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
    Ok(view.members.iter().any(|m| m.id == id && m.is_learner && m.match_index > 0))
}

/// `Admin.RemoveNode`.
pub async fn remove_node(state: &NodeState, r: RemoveNodeRequest) -> Result<MembershipResponse, BrokerError> {
    let _guard = state.admit()?;
    propose(state, r.group, Change::Remove { id: r.id }).await
}

/// `Admin.Members`: the leader's view, with each member's applied index asked of it.
pub async fn members(state: &NodeState, r: MembersRequest) -> Result<MembersResponse, BrokerError> {
    let _guard = state.admit()?;
    let (reply, rx) = oneshot::channel();
    state.group(r.group)?.send(Request::Members { reply })?;
    let view = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
    let addresses = state.peers.read().map(|p| p.clone()).unwrap_or_default();
    let targets: Vec<(u64, String)> =
        view.members.iter().map(|m| (m.id, addresses.get(&m.id).cloned().unwrap_or_default())).collect();
    let applied = applied_indices(r.group, &targets).await;
    let members = view
        .members
        .iter()
        .zip(targets)
        .zip(applied)
        .map(|((m, (_, address)), applied)| Member {
            id: m.id,
            address,
            is_learner: m.is_learner,
            match_index: m.match_index,
            applied_index: applied.unwrap_or(0),
            reachable: applied.is_some(),
            progress_state: m.state.into(),
            lag_ms: m.lag.as_millis() as u64,
        })
        .collect();
    Ok(MembersResponse { group: r.group, leader_id: view.leader_id, commit_index: view.commit, members })
}

/// Each target's applied index in `group`, in the targets' order; `None` for one that did not
/// answer. Probed all at once: members are asked about during incidents, when several may hang
/// for the whole probe timeout, and one after another those waits add up past a caller's deadline.
async fn applied_indices(group: u32, targets: &[(u64, String)]) -> Vec<Option<u64>> {
    let mut probes = tokio::task::JoinSet::new();
    for (i, (id, address)) in targets.iter().cloned().enumerate() {
        probes.spawn(async move {
            let status = probe(id, &address).await.ok();
            (i, status.and_then(|s| s.groups.into_iter().find(|g| g.group == group)).map(|g| g.applied_index))
        });
    }
    let mut applied = vec![None; targets.len()];
    while let Some(done) = probes.join_next().await {
        // A probe that panicked answered nothing: its member stays unreachable.
        if let Ok((i, a)) = done {
            applied[i] = a;
        }
    }
    applied
}

fn not_leader(group: u32, view: &crate::node::GroupView) -> BrokerError {
    if view.has_leader {
        BrokerError::NotLeader { group, leader_id: view.leader_id, leader_address: view.leader_address.clone() }
    } else {
        BrokerError::NoLeader { group }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(voters: &[u64], learners: &[u64], commit: u64) -> LeaderFacts {
        LeaderFacts {
            group: 0,
            leader: 1,
            conf: ConfState::from((voters.to_vec(), learners.to_vec())),
            commit,
            target: Some(ProgressState::Replicate),
        }
    }

    fn gate(learner_applied: u64, min_applied: u64) -> Option<Gate> {
        Some(Gate { learner_applied, min_applied, max_lag: 100 })
    }

    #[test]
    fn changes_that_do_not_fit_are_refused() {
        let f = facts(&[1, 2, 3], &[4], 1000);
        let add = |id| Change::AddLearner { id, address: "a:1".into() };
        assert!(matches!(check(&add(2), &f), Err(BrokerError::MembershipRefused { .. })));
        assert!(matches!(check(&add(4), &f), Err(BrokerError::MembershipRefused { .. })));
        assert!(check(&add(5), &f).is_ok());
        assert!(matches!(check(&Change::Remove { id: 9 }, &f), Err(BrokerError::MembershipRefused { .. })));
        assert!(matches!(check(&Change::Remove { id: 1 }, &f), Err(BrokerError::MembershipRefused { .. })));
        assert!(check(&Change::Remove { id: 2 }, &f).is_ok());
        assert!(check(&Change::Remove { id: 4 }, &f).is_ok());
        let last = facts(&[1], &[4], 10);
        match check(&Change::Remove { id: 1 }, &last) {
            Err(BrokerError::MembershipRefused { reason, .. }) => assert!(reason.contains("last voter"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Node 1 still leads after applying its own removal: it changes nothing more.
        let removed = facts(&[2, 3], &[4], 10);
        for change in [add(5), Change::Remove { id: 4 }, Change::Promote { id: 4, gate: None }] {
            match check(&change, &removed) {
                Err(BrokerError::MembershipRefused { reason, .. }) => assert!(reason.contains("no longer a voter")),
                other => panic!("{change:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn promotion_gate_names_the_failed_condition_and_figures() {
        let f = facts(&[1, 2, 3], &[4], 1000);
        let promote = |id, gate| Change::Promote { id, gate };
        let reason = |r: Result<(), BrokerError>| match r {
            Err(BrokerError::PromoteRefused { reason, learner_applied, leader_commit, .. }) => {
                (reason, learner_applied, leader_commit)
            }
            other => panic!("{other:?}"),
        };
        assert!(reason(check(&promote(2, None), &f)).0.contains("already a voter"));
        assert!(reason(check(&promote(7, None), &f)).0.contains("not a learner"));
        assert!(reason(check(&promote(4, gate(950, 0)), &f)).0.contains("min_applied_index 0"));
        assert_eq!(reason(check(&promote(4, gate(500, 600)), &f)).1, 500);
        let (why, applied, commit) = reason(check(&promote(4, gate(800, 700)), &f));
        assert!(why.contains("lags the leader's commit by 200"), "{why}");
        assert_eq!((applied, commit), (800, 1000));
        assert!(check(&promote(4, gate(950, 900)), &f).is_ok());
        assert!(check(&promote(4, None), &f).is_ok(), "an explicit skip promotes a learner");
        let mut snapshotting = f.clone();
        snapshotting.target = Some(ProgressState::Snapshot);
        assert!(reason(check(&promote(4, gate(990, 900)), &snapshotting)).0.contains("snapshot"));
    }

    #[test]
    fn contexts_and_address_tables_round_trip() {
        let cc = conf_change(&Change::AddLearner { id: 4, address: "h:4".into() }, 77, 1);
        let ctx = decode_context(&cc.context).unwrap();
        assert_eq!((ctx.version, ctx.request_id, ctx.proposer), (MEMBERSHIP_VERSION, 77, 1));
        assert_eq!(ctx.peers, vec![PeerAddress { id: 4, address: "h:4".into() }]);
        assert_eq!(decode_context(&[]).unwrap(), ConfChangeContext::default(), "no context is an empty one");
        let table: BTreeMap<u64, String> = [(1, "a:1".to_string()), (4, "h:4".to_string())].into();
        assert_eq!(decode_addresses(&encode_addresses(&table)).unwrap(), table);
        let boot = bootstrap_entries(&table);
        assert_eq!(boot.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 1)]);
    }
}
