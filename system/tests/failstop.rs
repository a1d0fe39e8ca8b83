//! A node never steps a message raft-rs would die of, nor one from a stranger; and a node whose
//! raft loop dies anyway stops: it never keeps serving the state it last had (issue 17).

mod common;

use common::{Cluster, counter, metrics, wait_for};
use ordeal_system::launch::ClusterSpec;
use ordeal_system::pb::broker::Envelope;
use ordeal_system::pb::broker::raft_client::RaftClient;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::time::Duration;

/// A raft message of `kind` from `from` to `to` at `term`, tweaked by `f`.
fn message(kind: MessageType, from: u64, to: u64, term: u64, f: impl FnOnce(&mut Message)) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    (m.from, m.to, m.term) = (from, to, term);
    f(&mut m);
    m
}

/// Sends `messages` to `to` in envelopes claiming to come from `from`, one stream.
async fn send(spec: &ClusterSpec, from: u64, to: u64, messages: Vec<Message>) {
    let envelopes = messages.iter().map(|m| Envelope {
        wire_version: ordeal_system::version::Release::current().wire_max,
        from,
        to,
        group: 0,
        messages: vec![m.write_to_bytes().unwrap().into()],
        release: 0,
        from_address: String::new(),
    });
    let addr = format!("http://{}", spec.node(to).unwrap().addr);
    let mut raft = RaftClient::connect(addr).await.unwrap();
    // The stream may end with an error as a process goes: what matters is what the node does.
    let _ = tokio::time::timeout(Duration::from_secs(5), raft.send(tokio_stream::iter(envelopes.collect::<Vec<_>>())))
        .await;
}

/// A heartbeat from the leader whose commit index lies far past the follower's log: raft-rs
/// panics on it ("to_commit ... is out of range").
fn fatal_heartbeat(leader: u64, follower: u64, term: u64) -> Message {
    message(MessageType::MsgHeartbeat, leader, follower, term, |m| m.commit = 1 << 40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_out_of_range_and_stranger_messages_are_dropped_and_counted() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    let term = client.status(leader).await.unwrap().groups[0].term;
    let spec = &cluster.spec.clone();
    // Out of range, from the real leader: a commit past the log's end, an ack of entries the
    // leader never wrote, entries that skip indices.
    send(spec, leader, follower, vec![fatal_heartbeat(leader, follower, term)]).await;
    let skip = |m: &mut Message| {
        m.index = 1 << 30;
        m.entries = vec![raft::eraftpb::Entry { index: 5, term, ..Default::default() }].into();
    };
    send(spec, leader, follower, vec![message(MessageType::MsgAppend, leader, follower, term, skip)]).await;
    let ack = |m: &mut Message| m.index = 1 << 40;
    send(spec, follower, leader, vec![message(MessageType::MsgAppendResponse, follower, leader, term, ack)]).await;
    // From a stranger, with a term far ahead: a vote request and a heartbeat.
    let stranger = 77;
    let far = term + 1000;
    for kind in [MessageType::MsgRequestVote, MessageType::MsgHeartbeat, MessageType::MsgRequestPreVote] {
        send(spec, stranger, leader, vec![message(kind, stranger, leader, far, |m| m.log_term = far)]).await;
    }
    // A member's name in the message, another's on the envelope; and a snapshot on the message stream.
    send(spec, stranger, follower, vec![fatal_heartbeat(leader, follower, term)]).await;
    let snapshot = message(MessageType::MsgSnapshot, leader, follower, term, |_| {});
    send(spec, leader, follower, vec![snapshot]).await;

    // No raft thread died, no term jumped (an election of its own on a busy machine may add
    // one or two), and the cluster serves.
    client.put(b"after", b"1").await.unwrap();
    for (id, process) in &mut cluster.procs {
        assert!(process.has_exited().unwrap().is_none(), "node {id} is still running");
        let g = &client.status(*id).await.unwrap().groups[0];
        assert!(g.has_leader && g.term < far, "node {id}: {g:?}");
    }
    let rejected = |id: u64| async move {
        counter(&metrics(spec.node(id).unwrap().http).await, "ordeal_peer_messages_rejected_total")
    };
    assert!(rejected(follower).await >= 4, "the follower counted what it dropped");
    assert!(rejected(leader).await >= 4, "the leader counted what it dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_raft_loop_panics_exits() {
    // Stepping every message unchecked, as raft-rs alone would, lets a forged heartbeat kill
    // the follower's raft thread: the process must then exit at once.
    let mut cluster = Cluster::start(3, |spec| spec.bugs.push(ordeal_system::config::Bug::TrustPeers));
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    let term = client.status(follower).await.unwrap().groups[0].term;
    send(&cluster.spec, leader, follower, vec![fatal_heartbeat(leader, follower, term)]).await;
    let process = cluster.procs.get_mut(&follower).unwrap();
    let status = wait_for(Duration::from_secs(10), "the follower to exit", || {
        let exited = process.has_exited().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(70), "{status}");
    // The others keep serving.
    client.put(b"after", b"1").await.unwrap();
}
