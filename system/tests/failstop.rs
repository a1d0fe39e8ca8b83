//! A node whose raft loop dies stops: it never keeps serving the state it last had.

mod common;

use common::{Cluster, wait_for};
use ordeal_system::pb::broker::Envelope;
use ordeal_system::pb::broker::raft_client::RaftClient;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_raft_loop_panics_exits() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    let term = client.status(follower).await.unwrap().groups[0].term;
    // A heartbeat from the leader whose commit index lies far past the follower's log: raft-rs
    // panics on it ("to_commit ... is out of range"), which kills the follower's raft thread.
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = leader;
    m.to = follower;
    m.term = term;
    m.commit = 1 << 40;
    let envelope = Envelope {
        wire_version: ordeal_system::version::Release::current().wire_max,
        from: leader,
        to: follower,
        group: 0,
        messages: vec![m.write_to_bytes().unwrap().into()],
        release: 0,
    };
    let addr = format!("http://{}", cluster.spec.node(follower).unwrap().addr);
    let mut raft = RaftClient::connect(addr).await.unwrap();
    // The stream may end with an error as the process goes: either way, it must exit.
    let _ = tokio::time::timeout(Duration::from_secs(5), raft.send(tokio_stream::iter(vec![envelope]))).await;
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
