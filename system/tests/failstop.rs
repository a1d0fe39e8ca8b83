//! A node never steps a message raft-rs would die of, nor one from a stranger; and a node whose
//! raft loop dies anyway stops: it never keeps serving the state it last had; and a peer that
//! cannot show a certificate of the cluster naming the sender it claims is refused (issue 17).

mod common;

use common::{Cluster, counter, metrics, wait_for};
use ordeal_system::certs::ClusterCa;
use ordeal_system::launch::ClusterSpec;
use ordeal_system::pb::broker::raft_client::RaftClient;
use ordeal_system::pb::broker::{Envelope, SnapshotChunk};
use ordeal_system::peer_auth::{self, PeerTls};
use ordeal_system::storage::keys;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A raft message of `kind` from `from` to `to` at `term`, tweaked by `f`.
fn message(kind: MessageType, from: u64, to: u64, term: u64, f: impl FnOnce(&mut Message)) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    (m.from, m.to, m.term) = (from, to, term);
    f(&mut m);
    m
}

/// Envelopes claiming to come from `from`, one per message.
fn envelopes(from: u64, to: u64, messages: &[Message]) -> Vec<Envelope> {
    let envelope = |m: &Message| Envelope {
        wire_version: ordeal_system::version::Release::current().wire_max,
        from,
        to,
        group: 0,
        messages: vec![m.write_to_bytes().unwrap().into()],
        release: 0,
        from_address: String::new(),
    };
    messages.iter().map(envelope).collect()
}

/// A connection to node `to`'s raft service, made with `tls` (plain without).
async fn raft_client(spec: &ClusterSpec, tls: Option<&PeerTls>, to: u64) -> Result<RaftClient<Channel>, String> {
    let addr = spec.node(to).unwrap().addr.to_string();
    let channel = peer_auth::endpoint(tls, to, &addr).unwrap().connect().await.map_err(|e| format!("{e:?}"))?;
    Ok(RaftClient::new(channel))
}

/// Sends `messages` to node `to` in one stream of envelopes claiming `from`, over a connection
/// made with `tls` (plain without); returns how the stream ended.
async fn send_with(
    spec: &ClusterSpec,
    tls: Option<&PeerTls>,
    from: u64,
    to: u64,
    messages: Vec<Message>,
) -> Result<(), String> {
    let mut raft = raft_client(spec, tls, to).await?;
    let sent = raft.send(tokio_stream::iter(envelopes(from, to, &messages)));
    match tokio::time::timeout(Duration::from_secs(5), sent).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("timed out".into()),
    }
}

/// Node `id`'s credentials from the cluster CA (issued now for an id that has none: a
/// stranger holding a certificate of the cluster).
fn credentials(spec: &ClusterSpec, id: u64) -> PeerTls {
    let ca = spec.tls.as_ref().expect("test clusters authenticate their peers");
    PeerTls::load(&ca.ensure(id, "127.0.0.1".parse().unwrap()).unwrap()).unwrap()
}

/// Sends `messages` to `to` in envelopes claiming to come from `from`, authenticated as `from`.
async fn send(spec: &ClusterSpec, from: u64, to: u64, messages: Vec<Message>) {
    // The stream may end with an error as a process goes: what matters is what the node does.
    let _ = send_with(spec, Some(&credentials(spec, from)), from, to, messages).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_the_clusters_certificate_for_their_id_are_refused_and_counted() {
    let cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let (target, other) = {
        let mut followers = cluster.procs.keys().copied().filter(|id| *id != leader);
        (followers.next().unwrap(), followers.next().unwrap())
    };
    let spec = &cluster.spec;
    let term = client.status(target).await.unwrap().groups[0].term;
    // What each forger sends: a vote request from the leader's id with a term far ahead.
    let vote = || vec![message(MessageType::MsgRequestVote, leader, target, term + 1000, |m| m.log_term = term + 1000)];

    // No certificate at all: a plain connection.
    let plain = send_with(spec, None, leader, target, vote()).await;
    assert!(plain.as_ref().is_err_and(|e| e.contains("Unauthenticated")), "{plain:?}");
    // A certificate for the right id, from another CA: the handshake fails.
    let foreign = ClusterCa::new(&cluster.dir.path().join("foreign")).unwrap();
    let foreign_files = foreign.issue(leader, "127.0.0.1".parse().unwrap()).unwrap();
    let ours = spec.tls.as_ref().unwrap().files(leader);
    let forged = PeerTls::load(&ordeal_system::certs::NodeFiles { ca: ours.ca, ..foreign_files }).unwrap();
    let wrong_ca = send_with(spec, Some(&forged), leader, target, vote()).await;
    assert!(wrong_ca.is_err(), "a certificate from another CA was accepted");
    // A valid certificate of another member, claiming the leader's id.
    let impostor = send_with(spec, Some(&credentials(spec, other)), leader, target, vote()).await;
    assert!(impostor.as_ref().is_err_and(|e| e.contains("PermissionDenied")), "{impostor:?}");

    let m = metrics(spec.node(target).unwrap().http).await;
    assert!(counter(&m, "ordeal_peer_auth_rejected_total") >= 3, "every refusal is counted:\n{m}");
    assert_eq!(counter(&m, "ordeal_peer_auth_enabled"), 1);
    // The cluster keeps serving, under the same term, with peer authentication on everywhere.
    client.put(b"after", b"1").await.unwrap();
    for id in cluster.procs.keys() {
        let s = client.status(*id).await.unwrap();
        assert!(s.peer_auth, "node {id} reports its peers authenticated");
        assert!(s.groups[0].term < term + 1000, "node {id}: {:?}", s.groups[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_credentials_still_runs_and_says_its_peers_are_unauthenticated() {
    let mut cluster = Cluster::start(1, |spec| spec.tls = None);
    let client = cluster.client();
    cluster.leader(&client).await;
    client.put(b"k", b"v").await.unwrap();
    assert!(!client.status(1).await.unwrap().peer_auth);
    let process = cluster.procs.get_mut(&1).unwrap();
    process.terminate(Duration::from_secs(5)).unwrap();
    let log = std::fs::read_to_string(&cluster.spec.node(1).unwrap().log).unwrap();
    assert_eq!(log.matches("peer traffic is not authenticated").count(), 1, "warned once:\n{log}");
}

/// Streams `chunks` to `to` as a snapshot from `from` (authenticated as `from`).
async fn stream_snapshot(
    spec: &ClusterSpec,
    from: u64,
    to: u64,
    chunks: Vec<SnapshotChunk>,
) -> Result<(), tonic::Status> {
    let mut raft = raft_client(spec, Some(&credentials(spec, from)), to).await.unwrap();
    let sent = raft.snapshot(tokio_stream::iter(chunks));
    tokio::time::timeout(Duration::from_secs(30), sent).await.expect("the receiver answers").map(|_| ())
}

/// The first chunk of a snapshot stream of `version` from `from` to `to`, at `index` and `term`.
fn snapshot_header(version: u32, from: u64, to: u64, index: u64, term: u64) -> SnapshotChunk {
    let m = message(MessageType::MsgSnapshot, from, to, term, |m| {
        let meta = m.mut_snapshot().mut_metadata();
        (meta.index, meta.term) = (index, term);
    });
    SnapshotChunk {
        wire_version: ordeal_system::version::Release::current().wire_max,
        snapshot_version: version,
        from,
        to,
        group: 0,
        header: m.write_to_bytes().unwrap().into(),
        ..Default::default()
    }
}

/// The pairs of a format 1 snapshot stream, in one chunk, of a group at applied index `applied`
/// with the empty configuration [`snapshot_header`] names and one record.
fn snapshot_pairs(applied: u64) -> SnapshotChunk {
    SnapshotChunk {
        keys: vec![
            keys::applied(0).to_vec().into(),
            keys::conf_state(0).to_vec().into(),
            keys::state(0, b'K', &[b"old"]).into(),
        ],
        values: vec![applied.to_be_bytes().to_vec().into(), Default::default(), b"1".to_vec().into()],
        done: true,
        total_pairs: 3,
        ..Default::default()
    }
}

/// The files in `node`'s directory of received snapshots.
fn received_files(spec: &ClusterSpec, node: u64) -> Vec<std::ffi::OsString> {
    let dir = ordeal_system::snapshot::incoming_dir(&spec.node(node).unwrap().data_dir);
    std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default()
}

/// A snapshot stream that breaks off leaves no part of its file behind, and a whole one that raft
/// does not need (its index is long applied) leaves no file either: before a restart nothing else
/// would remove them, and each failed or unneeded transfer would keep a full copy of the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_that_break_off_or_are_not_needed_leave_no_file() {
    let cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    client.put(b"k", b"v").await.unwrap();
    let term = client.status(leader).await.unwrap().groups[0].term;
    let spec = &cluster.spec;

    let data = SnapshotChunk { data: vec![7u8; 3 << 20].into(), total_bytes: 4 << 20, ..Default::default() };
    let cut = stream_snapshot(spec, leader, follower, vec![snapshot_header(2, leader, follower, 1 << 20, term), data]);
    let err = cut.await.unwrap_err();
    assert!(err.message().contains("ended before its last chunk"), "{err}");
    assert_eq!(received_files(spec, follower), Vec::<std::ffi::OsString>::new(), "a partial file was left");

    // A whole stream (format 1: the pairs) whose pairs record index 1 under a header of index 2:
    // refused, and its file removed.
    let pairs = snapshot_pairs(1);
    let err =
        stream_snapshot(spec, leader, follower, vec![snapshot_header(1, leader, follower, 2, term), pairs.clone()])
            .await
            .unwrap_err();
    assert!(err.message().contains("applied index 1 is not the header's snapshot index 2"), "{err}");
    assert_eq!(received_files(spec, follower), Vec::<std::ffi::OsString>::new(), "a refused file was left");

    // A whole stream of a snapshot at index 1, which the follower applied.
    stream_snapshot(spec, leader, follower, vec![snapshot_header(1, leader, follower, 1, term), pairs]).await.unwrap();
    wait_for(Duration::from_secs(30), "the follower to drop the snapshot it does not need", || async {
        received_files(spec, follower).is_empty().then_some(())
    })
    .await;
    client.put(b"k", b"after").await.unwrap();
}

/// A node of one group receives at most `MAX_INCOMING_STREAMS` snapshot streams at once: one more is refused
/// at once (RESOURCE_EXHAUSTED, which its sender takes as a sign to wait and try again), before
/// anything of it is written, and counted; once the streams end, it takes one again. Without the
/// cap a peer could open streams without end, each holding a file and its queued chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_over_the_cap_are_refused_at_once_and_leave_no_file() {
    let cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    let term = client.status(leader).await.unwrap().groups[0].term;
    let spec = &cluster.spec;
    let cap = ordeal_system::snapshot::MAX_INCOMING_STREAMS;
    let header = || snapshot_header(2, leader, follower, 1 << 20, term);

    // A stream that sends nothing holds no slot: the slot is taken once a header shows who sends.
    let (_silent, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(1);
    let mut raft = raft_client(spec, Some(&credentials(spec, leader)), follower).await.unwrap();
    let silent = tokio::spawn(async move { raft.snapshot(ReceiverStream::new(rx)).await.map(|_| ()) });
    // Streams that send their header and then wait, holding their slots.
    let mut open = Vec::new();
    for _ in 0..cap {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(header()).await.unwrap();
        let mut raft = raft_client(spec, Some(&credentials(spec, leader)), follower).await.unwrap();
        let call = tokio::spawn(async move { raft.snapshot(ReceiverStream::new(rx)).await.map(|_| ()) });
        open.push((tx, call));
    }
    wait_for(Duration::from_secs(30), "the open streams' files", || async {
        (received_files(spec, follower).len() == cap).then_some(())
    })
    .await;

    let whole =
        SnapshotChunk { data: vec![7u8; 1 << 20].into(), total_bytes: 1 << 20, done: true, ..Default::default() };
    let err = stream_snapshot(spec, leader, follower, vec![header(), whole.clone()]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("as many as it takes at once"), "{err}");
    assert_eq!(received_files(spec, follower).len(), cap, "the refused stream wrote nothing");
    let m = metrics(spec.node(follower).unwrap().http).await;
    assert_eq!(counter(&m, "ordeal_snapshot_streams_refused_total"), 1, "{m}");

    // The open streams end early: their files and their slots go.
    for (tx, call) in open {
        drop(tx);
        let err = call.await.unwrap().unwrap_err();
        assert!(err.message().contains("ended before its last chunk"), "{err}");
    }
    assert_eq!(received_files(spec, follower), Vec::<std::ffi::OsString>::new(), "a partial file was left");
    // A stream is taken again, and refused for what it holds (not an SST file), not for the cap.
    let err = stream_snapshot(spec, leader, follower, vec![header(), whole]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(received_files(spec, follower), Vec::<std::ffi::OsString>::new(), "a refused file was left");
    silent.abort();
}
