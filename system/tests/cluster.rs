//! The broker end to end: three real processes, leader hints, `kill -9` of the leader, restart,
//! and every acknowledged write found on every replica.

mod common;

use bytes::Bytes;
use common::Cluster;
use ordeal_system::client::ClientError;
use ordeal_system::error::BrokerError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_leader_kill() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();

    // 1,000 records sent to a follower first: the client must follow its hint.
    client.prefer(follower);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut maybe: BTreeSet<String> = BTreeSet::new();
    for i in 0..1000 {
        let value = format!("r{i}");
        let a = client.produce("t", 0, b"", value.as_bytes(), Some((7, i))).await.unwrap();
        assert_eq!(a.node, leader, "the leader acknowledges every produce");
        assert!(acked.insert(a.value.offset, value).is_none(), "offset {} acknowledged twice", a.value.offset);
    }
    for k in 0..50u32 {
        client.put(format!("k{k}").as_bytes(), b"0").await.unwrap();
    }

    // kill -9 the leader and keep writing until a new leader acknowledges.
    cluster.procs.get_mut(&leader).unwrap().kill().unwrap();
    let killed = Instant::now();
    let mut after_kill = 0;
    let mut seq = 1000;
    let mut cas_acked: BTreeMap<String, Option<&str>> = BTreeMap::new();
    while after_kill < 200 {
        let value = format!("r{seq}");
        match client.produce("t", 0, b"", value.as_bytes(), Some((7, seq))).await {
            Ok(a) => {
                assert_ne!(a.node, leader);
                assert!(acked.insert(a.value.offset, value).is_none());
                after_kill += 1;
            }
            Err(e) if e.is_definite() => {}
            Err(_) => {
                maybe.insert(value);
            }
        }
        seq += 1;
        // A bound on the failover alone, generous for a loaded machine: the writes before the
        // kill take as long as the machine makes them.
        assert!(killed.elapsed() < Duration::from_secs(60), "no new leader took over");
    }
    for k in 0..50u32 {
        let key = format!("k{k}");
        let outcome = match client.cas(key.as_bytes(), Some(b"0"), b"1").await {
            Ok(_) => Some("1"),
            Err(e) if e.is_definite() => Some("0"),
            Err(_) => None,
        };
        cas_acked.insert(key, outcome);
    }
    // A CAS whose expectation no longer holds is a definite failure that names the value.
    match client.cas(b"k0", Some(b"0"), b"2").await {
        Err(ClientError::Broker { error: BrokerError::CasMismatch { current }, .. }) => {
            assert_eq!(current, Some(Bytes::from_static(b"1")))
        }
        other => panic!("expected a CAS mismatch, got {other:?}"),
    }

    cluster.restart(leader);
    cluster.converged(&client).await;

    for node in cluster.procs.keys().copied() {
        let log = common::local_log(&client, node, "t").await;
        for (i, r) in log.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "node {node}: gap or reorder at offset {i}");
        }
        let values: Vec<String> = log.iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()).collect();
        for (offset, value) in &acked {
            assert_eq!(values.get(*offset as usize), Some(value), "node {node}: acknowledged offset {offset}");
        }
        let distinct: BTreeSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), values.len(), "node {node}: a record landed twice");
        assert!(
            values.iter().all(|v| acked.values().any(|a| a == v) || maybe.contains(v)),
            "node {node}: a record nobody wrote"
        );
        for (key, expected) in &cas_acked {
            let got = client.get_local(node, key.as_bytes()).await.unwrap();
            let got = got.map(|b| String::from_utf8(b.to_vec()).unwrap());
            match expected {
                Some(v) => assert_eq!(got.as_deref(), Some(*v), "node {node}: register {key}"),
                None => assert!(matches!(got.as_deref(), Some("0" | "1")), "node {node}: register {key} = {got:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let definite_invalid = |r: Result<_, ClientError>, needle: &str| match r {
        Err(ClientError::Broker { error: BrokerError::InvalidArgument(m), .. }) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected invalid argument mentioning {needle:?}, got {other:?}"),
    };
    definite_invalid(
        client.produce("t", 0, b"", &vec![0u8; 1024 * 1024 + 1], None).await.map(|_| ()),
        "limit is 1048576",
    );
    definite_invalid(client.produce("", 0, b"", b"v", None).await.map(|_| ()), "topic name is empty");
    definite_invalid(client.produce("a/b", 0, b"", b"v", None).await.map(|_| ()), "contains '/'");
    // Issue 17: partitions are bounded, not created on demand at any number.
    definite_invalid(
        client.produce("t", 1 << 30, b"", b"v", None).await.map(|_| ()),
        "partition 1073741824 is out of range",
    );
    definite_invalid(client.fetch("t", 1024, 0, 1).await.map(|_| ()), "partitions are numbered 0 to 1023");
    match client.list_committed_offsets("nobody").await {
        Err(ClientError::Broker { error: BrokerError::UnknownConsumerGroup(g), .. }) => assert_eq!(g, "nobody"),
        other => panic!("{other:?}"),
    }
    match client.transfer_leader(leader, 9, 1).await {
        Err(ClientError::Broker { error: BrokerError::UnknownGroup(9), .. }) => {}
        other => panic!("{other:?}"),
    }
    match client.transfer_leader(leader, 0, 42).await {
        Err(ClientError::Broker { error: BrokerError::InvalidArgument(m), .. }) => {
            assert!(m.contains("not a voter"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    // Garbage on the peer port: the connection dies, the node does not.
    use tokio::io::AsyncWriteExt;
    let addr = cluster.spec.node(leader).unwrap().addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\xff\xff\xff\xff\xff garbage garbage garbage")
        .await
        .unwrap();
    let mut junk = tokio::net::TcpStream::connect(addr).await.unwrap();
    junk.write_all(&[0xde; 4096]).await.unwrap();
    drop((s, junk));
    let a = client.produce("t", 0, b"", b"still here", None).await.unwrap();
    assert_eq!(a.value.offset, 0);
    // A well-formed gRPC envelope with undecodable raft bytes is refused, and raft carries on.
    use ordeal_system::pb::broker::{Envelope, raft_client::RaftClient};
    // As node 2, with its certificate: peers authenticate before anything is decoded.
    let tls = ordeal_system::peer_auth::PeerTls::load(&cluster.spec.tls.as_ref().unwrap().files(2)).unwrap();
    let endpoint = ordeal_system::peer_auth::endpoint(Some(&tls), leader, &addr.to_string()).unwrap();
    let mut peer = RaftClient::new(endpoint.connect().await.unwrap());
    let env = Envelope {
        wire_version: 1,
        from: 2,
        to: leader,
        group: 0,
        messages: vec![Bytes::from_static(&[0xff; 16])],
        release: 0,
        from_address: String::new(),
    };
    let status = peer.send(tokio_stream::iter([env])).await.unwrap_err();
    assert!(status.message().contains("undecodable raft message"), "{status:?}");
    let env = Envelope {
        wire_version: 99,
        from: 2,
        to: leader,
        group: 0,
        messages: vec![],
        release: 0,
        ..Default::default()
    };
    let status = peer.send(tokio_stream::iter([env])).await.unwrap_err();
    assert!(status.message().contains("version 99 is not supported"), "{status:?}");
    assert_eq!(client.produce("t", 0, b"", b"again", None).await.unwrap().value.offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_and_exits_zero() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    client.put(b"x", b"1").await.unwrap();
    let status = cluster.procs.get_mut(&leader).unwrap().terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "graceful stop exited with {status:?}");
    let others: Vec<u64> = cluster.procs.keys().copied().filter(|id| *id != leader).collect();
    let s = client.status(others[0]).await.unwrap();
    assert!(s.groups[0].has_leader && s.groups[0].leader_id != leader, "{s:?}");
    // Asked as soon as the old leader exited, a follower already names another leader: the
    // handover happened before the exit, not through an election timeout after it. The next
    // write goes to it.
    client.put(b"x", b"2").await.unwrap();
}
