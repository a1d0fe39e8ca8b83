//! What a node reports about itself: the `Status` RPC and `GET /v1/status` carry the same
//! [`NodeStatus`], with one [`GroupView`] per raft group.

use crate::pb::broker::{GroupStatus, PeerProgress, StatusResponse};
use serde::{Deserialize, Serialize};

/// The JSON body of `GET /v1/status`, and of `ordeal-broker status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: u64,
    /// Its gRPC address.
    pub address: String,
    /// Its build version.
    pub version: String,
    /// The peer protocol version it speaks.
    pub wire_version: u32,
    /// The storage format version it writes now (its groups' cluster version decides).
    pub storage_version: u32,
    /// The release whose formats and features it uses (an older one under
    /// `--emulate-version`); 0 from builds older than release numbers.
    #[serde(default)]
    pub release: u32,
    /// The oldest peer protocol version it speaks (`wire_version` is the newest).
    #[serde(default)]
    pub wire_version_min: u32,
    /// The newest storage format it reads.
    #[serde(default)]
    pub storage_version_max: u32,
    /// Whether its peers must authenticate (mutual TLS with the cluster CA); a node started
    /// without credentials accepts raft traffic from anyone who can reach its port.
    #[serde(default)]
    pub peer_auth: bool,
    /// One entry per raft group.
    pub groups: Vec<GroupView>,
    /// The node's wall clock when it answered, in ms since the Unix epoch (raft never reads
    /// it; it is here to show clock skew).
    #[serde(default)]
    pub time_ms: u64,
}

/// One peer's replication progress, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The peer's id.
    pub id: u64,
    /// The highest index known to be replicated on it.
    pub match_index: u64,
    /// The next index the leader will send it.
    pub next_index: u64,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// A group's state as published by its loop after every step: the source of `Status`,
/// `/v1/status`, `/metrics` and leader hints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The group.
    pub group: u32,
    /// `leader`, `follower`, `candidate` or `pre-candidate`; `removed` on a node that applied
    /// its own removal from the group.
    pub role: String,
    /// Whether this node leads the group.
    pub is_leader: bool,
    /// Whether any leader is known (never on a removed node).
    pub has_leader: bool,
    /// The known leader's id, 0 when none.
    pub leader_id: u64,
    /// The known leader's client address, empty when none.
    pub leader_address: String,
    /// The current term.
    pub term: u64,
    /// The commit index.
    pub commit_index: u64,
    /// The applied index.
    pub applied_index: u64,
    /// The last log index.
    pub last_index: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// On the leader only: each peer's progress.
    pub progress: Vec<PeerView>,
    /// The cluster version the group agreed on through its log; 0 from builds older than it.
    #[serde(default)]
    pub cluster_version: u32,
}

impl From<NodeStatus> for StatusResponse {
    fn from(s: NodeStatus) -> Self {
        StatusResponse {
            id: s.id,
            address: s.address,
            version: s.version,
            wire_version: s.wire_version,
            storage_version: s.storage_version,
            release: s.release,
            peer_auth: s.peer_auth,
            wire_version_min: s.wire_version_min,
            storage_version_max: s.storage_version_max,
            group_count: s.groups.len() as u32,
            groups: s.groups.into_iter().map(Into::into).collect(),
            time_ms: s.time_ms,
        }
    }
}

impl From<StatusResponse> for NodeStatus {
    fn from(s: StatusResponse) -> NodeStatus {
        NodeStatus {
            id: s.id,
            address: s.address,
            version: s.version,
            wire_version: s.wire_version,
            storage_version: s.storage_version,
            release: s.release,
            peer_auth: s.peer_auth,
            wire_version_min: s.wire_version_min,
            storage_version_max: s.storage_version_max,
            groups: s.groups.into_iter().map(GroupView::from).collect(),
            time_ms: s.time_ms,
        }
    }
}

impl From<GroupView> for GroupStatus {
    fn from(v: GroupView) -> GroupStatus {
        GroupStatus {
            group: v.group,
            is_leader: v.is_leader,
            has_leader: v.has_leader,
            leader_id: v.leader_id,
            leader_address: v.leader_address,
            term: v.term,
            commit_index: v.commit_index,
            applied_index: v.applied_index,
            voters: v.voters,
            learners: v.learners,
            progress: v
                .progress
                .into_iter()
                .map(|p| PeerProgress {
                    id: p.id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    is_learner: p.is_learner,
                })
                .collect(),
            role: v.role,
            last_index: v.last_index,
            cluster_version: v.cluster_version,
        }
    }
}

impl From<GroupStatus> for GroupView {
    fn from(s: GroupStatus) -> GroupView {
        GroupView {
            group: s.group,
            role: s.role,
            is_leader: s.is_leader,
            has_leader: s.has_leader,
            leader_id: s.leader_id,
            leader_address: s.leader_address,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_index: s.last_index,
            voters: s.voters,
            learners: s.learners,
            progress: s
                .progress
                .into_iter()
                .map(|p| PeerView {
                    id: p.id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    is_learner: p.is_learner,
                })
                .collect(),
            cluster_version: s.cluster_version,
        }
    }
}
