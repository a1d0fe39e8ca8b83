//! Errors the broker returns to clients, and their encoding as gRPC statuses.
//!
//! Every status carries an [`ErrorDetail`], packed in a `google.rpc.Status` (gRPC's rich error
//! model), so that a client can act on it without parsing messages. The split that matters to a tester is [`BrokerError::is_definite`]: a definite
//! error means the request did not take effect and may be retried anywhere.

use crate::pb::broker::{ErrorDetail, error_detail::Kind};
use bytes::Bytes;
use prost::Message;
use tonic::{Code, Status};

/// A typed broker error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// This node does not lead `group`; the leader, when known, is named.
    #[error("not the leader of group {group}{}", leader_hint(*leader_id, leader_address))]
    NotLeader {
        /// The raft group.
        group: u32,
        /// The leader's id, or 0 when unknown.
        leader_id: u64,
        /// The leader's client address, or empty when unknown.
        leader_address: String,
    },
    /// The group has no leader (an election is under way).
    #[error("group {group} has no leader")]
    NoLeader {
        /// The raft group.
        group: u32,
    },
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A compare-and-set found another value.
    #[error("compare-and-set mismatch")]
    CasMismatch {
        /// The value found, or `None` when the key was absent.
        current: Option<Bytes>,
    },
    /// No raft group with this id on this node.
    #[error("unknown raft group {0}")]
    UnknownGroup(u32),
    /// No consumer group of this name has committed offsets.
    #[error("unknown consumer group {0:?}")]
    UnknownConsumerGroup(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node's queue is full.
    #[error("node is overloaded")]
    Overloaded,
    /// The request was proposed, but whether it took effect is unknown.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The proposal lost its place in the log to another entry and will never commit.
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// An admin call without the right token.
    #[error("unauthenticated")]
    Unauthenticated,
    /// A read could not be confirmed in time; nothing changed.
    #[error("read timed out")]
    ReadTimeout,
    /// A membership change that does not fit the group's current membership; nothing changed.
    #[error("membership change refused for group {group}: {reason}")]
    MembershipRefused {
        /// The raft group.
        group: u32,
        /// Why (e.g. the id is already a member).
        reason: String,
    },
    /// A learner did not pass the promotion gate; nothing changed.
    #[error(
        "promotion of node {node} in group {group} refused: {reason} (learner applied {learner_applied}, leader commit {leader_commit})"
    )]
    PromoteRefused {
        /// The raft group.
        group: u32,
        /// The learner.
        node: u64,
        /// Which condition failed.
        reason: String,
        /// The learner's applied index, as it reported it (0 when unknown).
        learner_applied: u64,
        /// The leader's commit index.
        leader_commit: u64,
    },
    /// The node to add did not answer at its address as the expected node; nothing changed.
    #[error("node {node} is not reachable at {address}: {reason}")]
    PeerUnreachable {
        /// The node's id.
        node: u64,
        /// The address tried.
        address: String,
        /// What happened.
        reason: String,
    },
}

fn leader_hint(id: u64, address: &str) -> String {
    if id == 0 { String::new() } else { format!(" (leader is {id} at {address})") }
}

impl BrokerError {
    /// Whether the request certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, BrokerError::OutcomeUnknown(_))
    }

    /// Whether another attempt (maybe on another node) could succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            BrokerError::NotLeader { .. }
                | BrokerError::NoLeader { .. }
                | BrokerError::ShuttingDown
                | BrokerError::Overloaded
                | BrokerError::ProposalDropped(_)
                | BrokerError::ReadTimeout
        )
    }

    fn code(&self) -> Code {
        match self {
            BrokerError::NotLeader { .. } => Code::FailedPrecondition,
            BrokerError::NoLeader { .. } | BrokerError::ShuttingDown => Code::Unavailable,
            BrokerError::InvalidArgument(_) => Code::InvalidArgument,
            BrokerError::CasMismatch { .. } => Code::FailedPrecondition,
            BrokerError::UnknownGroup(_) | BrokerError::UnknownConsumerGroup(_) => Code::NotFound,
            BrokerError::Overloaded => Code::ResourceExhausted,
            BrokerError::OutcomeUnknown(_) => Code::Unknown,
            BrokerError::ProposalDropped(_) => Code::Aborted,
            BrokerError::Unauthenticated => Code::Unauthenticated,
            BrokerError::ReadTimeout => Code::DeadlineExceeded,
            BrokerError::MembershipRefused { .. }
            | BrokerError::PromoteRefused { .. }
            | BrokerError::PeerUnreachable { .. } => Code::FailedPrecondition,
        }
    }

    /// The error as the detail a broker sends: in a status, or in one record's result of a
    /// produce batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use ordeal_wire::error::BrokerError;
    /// let e = BrokerError::InvalidArgument("topic name is empty".into());
    /// assert_eq!(BrokerError::from_detail(e.to_detail()), Some(e));
    /// ```
    pub fn to_detail(&self) -> ErrorDetail {
        let mut d = ErrorDetail { message: self.to_string(), ..Default::default() };
        d.kind = match self {
            BrokerError::NotLeader { group, leader_id, leader_address } => {
                d.group = *group;
                d.leader_id = *leader_id;
                d.leader_address = leader_address.clone();
                Kind::NotLeader
            }
            BrokerError::NoLeader { group } => {
                d.group = *group;
                Kind::NoLeader
            }
            BrokerError::InvalidArgument(reason) => {
                d.reason = reason.clone();
                Kind::InvalidArgument
            }
            BrokerError::CasMismatch { current } => {
                d.current_present = current.is_some();
                d.current = current.clone().unwrap_or_default();
                Kind::CasMismatch
            }
            BrokerError::UnknownGroup(g) => {
                d.group = *g;
                Kind::UnknownGroup
            }
            BrokerError::UnknownConsumerGroup(name) => {
                d.reason = name.clone();
                Kind::UnknownConsumerGroup
            }
            BrokerError::ShuttingDown => Kind::ShuttingDown,
            BrokerError::Overloaded => Kind::Overloaded,
            BrokerError::OutcomeUnknown(reason) => {
                d.reason = reason.clone();
                Kind::OutcomeUnknown
            }
            BrokerError::ProposalDropped(reason) => {
                d.reason = reason.clone();
                Kind::ProposalDropped
            }
            BrokerError::Unauthenticated => Kind::Unauthenticated,
            BrokerError::ReadTimeout => Kind::ReadTimeout,
            BrokerError::MembershipRefused { group, reason } => {
                d.group = *group;
                d.reason = reason.clone();
                Kind::MembershipRefused
            }
            BrokerError::PromoteRefused { group, node, reason, learner_applied, leader_commit } => {
                d.group = *group;
                d.node_id = *node;
                d.reason = reason.clone();
                d.applied_index = *learner_applied;
                d.commit_index = *leader_commit;
                Kind::PromoteRefused
            }
            BrokerError::PeerUnreachable { node, address, reason } => {
                d.node_id = *node;
                d.address = address.clone();
                d.reason = reason.clone();
                Kind::PeerUnreachable
            }
        } as i32;
        d
    }

    /// Decodes the detail a broker attached to `status`; `None` for statuses from elsewhere
    /// (the transport, a proxy), whose meaning the caller must judge itself.
    pub fn from_status(status: &Status) -> Option<BrokerError> {
        BrokerError::from_detail(detail_of(status.details())?)
    }

    /// The error a detail describes; `None` for a kind this build does not know.
    pub fn from_detail(d: ErrorDetail) -> Option<BrokerError> {
        let reason = d.reason;
        Some(match Kind::try_from(d.kind).ok()? {
            Kind::Unspecified => return None,
            Kind::NotLeader => {
                BrokerError::NotLeader { group: d.group, leader_id: d.leader_id, leader_address: d.leader_address }
            }
            Kind::NoLeader => BrokerError::NoLeader { group: d.group },
            Kind::InvalidArgument => BrokerError::InvalidArgument(reason),
            Kind::CasMismatch => BrokerError::CasMismatch { current: d.current_present.then_some(d.current) },
            Kind::UnknownGroup => BrokerError::UnknownGroup(d.group),
            Kind::UnknownConsumerGroup => BrokerError::UnknownConsumerGroup(reason),
            Kind::ShuttingDown => BrokerError::ShuttingDown,
            Kind::Overloaded => BrokerError::Overloaded,
            Kind::OutcomeUnknown => BrokerError::OutcomeUnknown(reason),
            Kind::ProposalDropped => BrokerError::ProposalDropped(reason),
            Kind::Unauthenticated => BrokerError::Unauthenticated,
            Kind::ReadTimeout => BrokerError::ReadTimeout,
            Kind::MembershipRefused => BrokerError::MembershipRefused { group: d.group, reason },
            Kind::PromoteRefused => BrokerError::PromoteRefused {
                group: d.group,
                node: d.node_id,
                reason,
                learner_applied: d.applied_index,
                leader_commit: d.commit_index,
            },
            Kind::PeerUnreachable => BrokerError::PeerUnreachable { node: d.node_id, address: d.address, reason },
        })
    }
}

/// `google.rpc.Status`, gRPC's rich error model: what standard clients (grpcio's
/// `rpc_status.from_call`, grpc-go's `status.FromError`) read from `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// The type URL of [`ErrorDetail`] inside a `google.rpc.Status`.
const DETAIL_TYPE_URL: &str = "type.googleapis.com/ordeal.broker.v1.ErrorDetail";

/// The broker's detail in a status's details: inside a `google.rpc.Status`, or bare, as older
/// brokers sent it (a client must keep reading older nodes during a rolling upgrade).
fn detail_of(details: &[u8]) -> Option<ErrorDetail> {
    let wrapped = RpcStatus::decode(details).ok().and_then(|s| {
        s.details
            .into_iter()
            .find(|a| a.type_url == DETAIL_TYPE_URL)
            .and_then(|a| ErrorDetail::decode(&a.value[..]).ok())
    });
    wrapped.or_else(|| ErrorDetail::decode(details).ok())
}

impl From<BrokerError> for Status {
    fn from(e: BrokerError) -> Status {
        let code = e.code();
        let detail = Any { type_url: DETAIL_TYPE_URL.into(), value: e.to_detail().encode_to_vec() };
        let status = RpcStatus { code: code as i32, message: e.to_string(), details: vec![detail] };
        Status::with_details(code, e.to_string(), status.encode_to_vec().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_status_round_trip() {
        let all = [
            BrokerError::NotLeader { group: 2, leader_id: 3, leader_address: "127.0.0.1:9".into() },
            BrokerError::NoLeader { group: 1 },
            BrokerError::InvalidArgument("topic name is empty".into()),
            BrokerError::CasMismatch { current: Some(Bytes::from_static(b"7")) },
            BrokerError::CasMismatch { current: None },
            BrokerError::UnknownGroup(9),
            BrokerError::UnknownConsumerGroup("billing".into()),
            BrokerError::OutcomeUnknown("leadership changed".into()),
            BrokerError::ShuttingDown,
            BrokerError::Overloaded,
            BrokerError::ProposalDropped("index 4 holds another entry".into()),
            BrokerError::Unauthenticated,
            BrokerError::ReadTimeout,
            BrokerError::MembershipRefused { group: 0, reason: "node 4 is already a learner".into() },
            BrokerError::PromoteRefused {
                group: 0,
                node: 4,
                reason: "lags by 900 entries".into(),
                learner_applied: 100,
                leader_commit: 1000,
            },
            BrokerError::PeerUnreachable { node: 4, address: "127.0.0.1:1".into(), reason: "refused".into() },
        ];
        for e in all {
            let status = Status::from(e.clone());
            assert_eq!(BrokerError::from_status(&status), Some(e));
        }
        assert_eq!(BrokerError::from_status(&Status::unavailable("connection reset")), None);
    }

    #[test]
    fn details_are_a_google_rpc_status_and_bare_details_still_read() {
        let e = BrokerError::NotLeader { group: 1, leader_id: 2, leader_address: "a:1".into() };
        let status = Status::from(e.clone());
        let rpc = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(rpc.code, Code::FailedPrecondition as i32);
        assert_eq!(rpc.message, e.to_string());
        assert_eq!(rpc.details.len(), 1);
        assert_eq!(rpc.details[0].type_url, DETAIL_TYPE_URL);
        // What an older broker sent: the detail alone.
        let bare = Status::with_details(Code::FailedPrecondition, "x", e.to_detail().encode_to_vec().into());
        assert_eq!(BrokerError::from_status(&bare), Some(e));
    }
}
