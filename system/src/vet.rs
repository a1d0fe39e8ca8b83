//! Raft messages from peers, checked before raft-rs sees them.
//!
//! raft-rs trusts its peers: it panics on messages no correct peer sends (a heartbeat whose
//! commit index lies past the log's end kills the raft thread), and any sender with a higher
//! term deposes a leader, member or not. So a message from a node that is not a member of the
//! group, one whose claimed sender or addressee differs from its envelope's, one that arrives as
//! a snapshot outside the snapshot stream, and one that contradicts the local log is dropped and
//! counted (`ordeal_peer_messages_rejected_total`). Dropping is always safe: raft retransmits what
//! a correct peer meant, so a correct cluster never loses progress to these checks.
//!
//! Membership is judged on the configuration this node has applied, which may lag: a member that
//! was down while another node joined and took the lead learns of that node only from the new
//! leader's own log. So a follower (or learner, or candidate) takes a leader's messages (appends,
//! heartbeats, snapshots) of its term or a later one from a sender it does not know yet, as etcd
//! takes them from members that joined after its progress. A removed node's older term is still
//! refused, and so is anything a leader hears from a node it does not know: a leader whose
//! configuration is stale steps down through check-quorum, then follows.

use raft::eraftpb::{Message, MessageType};

/// Why a peer's raft message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The message's sender or addressee differs from its envelope's.
    #[error("message from {from} to {to} in an envelope from {envelope_from} to {envelope_to}")]
    Mismatched {
        /// The message's sender.
        from: u64,
        /// The message's addressee.
        to: u64,
        /// The envelope's sender.
        envelope_from: u64,
        /// The envelope's addressee.
        envelope_to: u64,
    },
    /// Snapshots arrive on the snapshot stream only, which stores their data first.
    #[error("a snapshot message outside the snapshot stream")]
    SnapshotOutsideStream,
    /// The sender is not a voter or learner of the group.
    #[error("node {0} is not a member of the group")]
    NotMember(u64),
    /// A commit index past the log's end (raft-rs panics on it).
    #[error("commit index {commit} lies past the log's end ({last_index})")]
    CommitPastLog {
        /// The claimed commit index.
        commit: u64,
        /// This node's last index.
        last_index: u64,
    },
    /// An acknowledgement of entries this node never had.
    #[error("acknowledges index {index} past the log's end ({last_index})")]
    AckPastLog {
        /// The acknowledged index.
        index: u64,
        /// This node's last index.
        last_index: u64,
    },
    /// Appended entries that do not follow the message's index one by one, or that carry a term
    /// later than the message's.
    #[error("entries that do not follow index {index} one by one at terms up to {term}")]
    MalformedEntries {
        /// The index the entries should follow.
        index: u64,
        /// The message's term.
        term: u64,
    },
}

/// Checks a message against the envelope it arrived in: the peer service's part.
pub fn envelope(m: &Message, envelope_from: u64, envelope_to: u64) -> Result<(), Rejected> {
    if m.from != envelope_from || m.to != envelope_to {
        return Err(Rejected::Mismatched { from: m.from, to: m.to, envelope_from, envelope_to });
    }
    if m.get_msg_type() == MessageType::MsgSnapshot {
        return Err(Rejected::SnapshotOutsideStream);
    }
    Ok(())
}

/// What the Ready loop knows that a message is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Local<F: Fn(u64) -> bool> {
    /// Whether `id` is a voter or learner of the group. A node that knows no members yet (it
    /// joins, and learns them from the leader's snapshot) passes `|_| true`.
    pub is_member: F,
    /// This node's current term.
    pub term: u64,
    /// Whether this node leads the group.
    pub leads: bool,
    /// The last index of the local log.
    pub last_index: u64,
}

/// Checks a message against the group's state: the Ready loop's part.
///
/// # Examples
///
/// ```
/// use ordeal_system::vet::{Local, Rejected, message};
/// use raft::eraftpb::{Message, MessageType};
///
/// let mut m = Message::default();
/// m.set_msg_type(MessageType::MsgHeartbeat);
/// m.from = 1;
/// m.commit = 1 << 40;
/// let local = Local { is_member: |id| id <= 3, term: 5, leads: false, last_index: 10 };
/// assert_eq!(message(&m, &local), Err(Rejected::CommitPastLog { commit: 1 << 40, last_index: 10 }));
/// m.set_msg_type(MessageType::MsgRequestVote);
/// m.from = 9;
/// assert_eq!(message(&m, &local), Err(Rejected::NotMember(9)));
/// ```
pub fn message<F: Fn(u64) -> bool>(m: &Message, local: &Local<F>) -> Result<(), Rejected> {
    let from_leader =
        matches!(m.get_msg_type(), MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot)
            && m.term >= local.term
            && !local.leads;
    if !from_leader && !(local.is_member)(m.from) {
        return Err(Rejected::NotMember(m.from));
    }
    let last_index = local.last_index;
    match m.get_msg_type() {
        MessageType::MsgHeartbeat if m.commit > last_index => {
            Err(Rejected::CommitPastLog { commit: m.commit, last_index })
        }
        MessageType::MsgAppendResponse if !m.reject && m.index > last_index => {
            Err(Rejected::AckPastLog { index: m.index, last_index })
        }
        MessageType::MsgAppend => {
            let follows = m.entries.iter().enumerate().all(|(i, e)| {
                e.index == m.index.saturating_add(1 + i as u64) && e.term <= m.term && m.log_term <= m.term
            });
            if follows { Ok(()) } else { Err(Rejected::MalformedEntries { index: m.index, term: m.term }) }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn msg(t: MessageType, f: impl FnOnce(&mut Message)) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = 2;
        m.to = 1;
        m.term = 5;
        f(&mut m);
        m
    }

    #[test]
    fn messages_a_correct_peer_sends_pass_and_others_are_named() {
        let local = Local { is_member: |id| (1..=3).contains(&id), term: 5, leads: false, last_index: 10 };
        let entry = |index, term| Entry { index, term, ..Entry::default() };
        let pass = [
            msg(MessageType::MsgHeartbeat, |m| m.commit = 10),
            msg(MessageType::MsgAppendResponse, |m| m.index = 10),
            msg(MessageType::MsgAppendResponse, |m| (m.index, m.reject) = (99, true)),
            msg(MessageType::MsgAppend, |m| (m.index, m.entries) = (10, vec![entry(11, 5), entry(12, 5)].into())),
            msg(MessageType::MsgRequestVote, |m| m.term = 1000),
            // A leader this node's applied configuration does not name yet.
            msg(MessageType::MsgAppend, |m| (m.from, m.index) = (7, 10)),
            msg(MessageType::MsgHeartbeat, |m| (m.from, m.term, m.commit) = (7, 6, 10)),
        ];
        for m in &pass {
            assert_eq!(message(m, &local), Ok(()), "{m:?}");
        }
        let fail = [
            (msg(MessageType::MsgHeartbeat, |m| m.commit = 11), "commit index 11 lies past the log's end (10)"),
            (msg(MessageType::MsgAppendResponse, |m| m.index = 11), "acknowledges index 11"),
            (msg(MessageType::MsgAppend, |m| m.entries = vec![entry(2, 5)].into()), "do not follow index 0"),
            (msg(MessageType::MsgAppend, |m| m.entries = vec![entry(1, 6)].into()), "at terms up to 5"),
            (msg(MessageType::MsgRequestVote, |m| (m.from, m.term) = (7, 1000)), "node 7 is not a member"),
            (msg(MessageType::MsgAppendResponse, |m| (m.from, m.term) = (7, 1000)), "node 7 is not a member"),
            // A removed node that still leads an older term.
            (msg(MessageType::MsgHeartbeat, |m| (m.from, m.term) = (7, 4)), "node 7 is not a member"),
        ];
        for (m, why) in &fail {
            let err = message(m, &local).unwrap_err().to_string();
            assert!(err.contains(why), "{err} lacks {why}");
        }
        // A leader takes nothing from a node it does not know.
        let leader = Local { leads: true, ..local };
        let stranger = msg(MessageType::MsgHeartbeat, |m| (m.from, m.term) = (7, 1000));
        assert_eq!(message(&stranger, &leader), Err(Rejected::NotMember(7)));
        let snapshot = msg(MessageType::MsgSnapshot, |_| {});
        assert_eq!(envelope(&snapshot, 2, 1), Err(Rejected::SnapshotOutsideStream));
        let forged = msg(MessageType::MsgHeartbeat, |m| m.from = 3);
        assert!(matches!(envelope(&forged, 2, 1), Err(Rejected::Mismatched { from: 3, .. })));
    }
}
