//! Produce batches end to end: concurrent producers sharing one client are coalesced into
//! `ProduceBatch` requests (one raft entry each) and still get distinct, dense offsets; a batch
//! refused or retried never lands a record twice; and a cluster whose version is below the
//! feature gets no batch entry at all.

mod common;

use common::{Cluster, counter, metrics, wait_for};
use ordeal_system::client::Client;
use ordeal_system::error::BrokerError;
use ordeal_system::pb::broker::broker_client::BrokerClient;
use ordeal_system::pb::broker::{ProduceBatchRequest, ProduceRequest};
use ordeal_system::version::RELEASE;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const EMULATE: &str = "ORDEAL_BROKER_EMULATE_VERSION";
const PRODUCERS: u64 = 16;
const EACH: u64 = 40;

/// Waits until every node's group 0 is at cluster version `version`.
async fn at_cluster_version(cluster: &Cluster, client: &Client, version: u32) {
    wait_for(Duration::from_secs(20), "the cluster version", || async {
        for id in cluster.procs.keys() {
            if client.status(*id).await.ok()?.groups[0].cluster_version != version {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// `PRODUCERS` tasks producing to partition 0 of "t" through `client`, one record at a time per
/// producer id, each `EACH` records and then on until `enough()`; returns the acknowledged
/// (offset, value) pairs.
async fn produce_concurrently(
    client: &Arc<Client>,
    enough: impl Fn() -> bool + Clone + Send + Sync + 'static,
) -> BTreeMap<u64, String> {
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (client, enough) = (client.clone(), enough.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for seq in (0..).take_while(|seq| *seq < EACH || !enough()) {
                    let value = format!("p{p}/{seq}");
                    let a = client.produce("t", 0, b"", value.as_bytes(), Some((100 + p, seq))).await.unwrap();
                    assert!(!a.value.duplicate, "{value} answered as a duplicate");
                    acked.push((a.value.offset, value));
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for t in tasks {
        for (offset, value) in t.await.unwrap() {
            if let Some(other) = acked.insert(offset, value.clone()) {
                panic!("offset {offset} acknowledged for {other} and {value}");
            }
        }
    }
    acked
}

/// Every record is at the offset it was acknowledged at, and the log holds nothing else.
async fn read_back(client: &Client, acked: &BTreeMap<u64, String>) {
    let total = acked.len() as u64;
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>(), "offsets are not dense");
    let mut log = Vec::new();
    while (log.len() as u64) < total + 1 {
        let r = client.fetch("t", 0, log.len() as u64, 1000).await.unwrap().value;
        if r.records.is_empty() {
            break;
        }
        log.extend(r.records);
    }
    assert_eq!(log.len() as u64, total, "the log holds records nobody was told of (a record landed twice)");
    for r in log {
        assert_eq!(acked[&r.offset].as_bytes(), &r.value[..], "offset {}", r.offset);
    }
}

/// The batches (and their records) accepted by every node's leader.
async fn batches(cluster: &Cluster) -> (u64, u64) {
    let mut sum = (0, 0);
    for id in cluster.procs.keys() {
        let m = metrics(cluster.spec.node(*id).unwrap().http).await;
        sum.0 += counter(&m, "ordeal_produce_batches_total");
        sum.1 += counter(&m, "ordeal_produce_batch_records_total");
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_share_batches_and_get_dense_offsets_across_leader_changes() {
    let cluster = Cluster::start(3, |_| {});
    let client = Arc::new(cluster.client());
    cluster.leader(&client).await;
    at_cluster_version(&cluster, &client, RELEASE).await;
    // Leadership moves twice while the producers run, who go on until it has: batches in flight
    // on the old leader are answered NOT_LEADER or with an unknown outcome, and are sent again
    // to the new one.
    let (moved, mover_done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mover = {
        let client = cluster.client();
        let ids: Vec<u64> = cluster.procs.keys().copied().collect();
        let (moved, done) = (moved.clone(), mover_done.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for round in 0.. {
                if moved.load(Ordering::Relaxed) >= 2 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                let Ok(s) = client.status(ids[0]).await else { continue };
                let leader = s.groups[0].leader_id;
                let to = ids[(round + 1) % ids.len()];
                if leader != 0 && leader != to && client.transfer_leader(leader, 0, to).await.is_ok() {
                    moved.fetch_add(1, Ordering::Relaxed);
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let enough = {
        let (moved, done) = (moved.clone(), mover_done.clone());
        move || moved.load(Ordering::Relaxed) >= 2 || done.load(Ordering::Relaxed)
    };
    let acked = produce_concurrently(&client, enough).await;
    mover.await.unwrap();
    assert!(moved.load(Ordering::Relaxed) >= 2, "leadership did not move twice while the producers ran");
    read_back(&client, &acked).await;
    let (entries, records) = batches(&cluster).await;
    assert!(entries > 0 && records > entries, "no batch was proposed: {entries} entries, {records} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_by_a_follower_then_retried_lands_each_record_once() {
    let cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    at_cluster_version(&cluster, &client, RELEASE).await;
    let follower = *cluster.procs.keys().find(|id| **id != leader).unwrap();
    let record = |producer: u64, topic: &str| ProduceRequest {
        topic: topic.into(),
        partition: 0,
        value: format!("from {producer}").into(),
        producer_id: producer,
        sequence: 1,
        ..Default::default()
    };
    let batch =
        ProduceBatchRequest { records: vec![record(1, "t"), record(2, "bad/topic"), record(0, "t"), record(3, "t")] };
    let connect = |id: u64| BrokerClient::connect(format!("http://{}", cluster.spec.node(id).unwrap().addr));
    let refused = connect(follower).await.unwrap().produce_batch(batch.clone()).await.unwrap_err();
    match BrokerError::from_status(&refused) {
        Some(BrokerError::NotLeader { leader_id, .. }) => assert_eq!(leader_id, leader),
        other => panic!("a follower answered a batch with {other:?}"),
    }
    let mut at_leader = connect(leader).await.unwrap();
    let first = at_leader.produce_batch(batch.clone()).await.unwrap().into_inner().results;
    let landed: Vec<_> = first.iter().map(|r| (r.offset, r.duplicate, r.error.is_some())).collect();
    // Records 2 (bad topic) and 3 (no producer id) are refused alone; 1 and 4 land in order.
    assert_eq!(landed, [(0, false, false), (0, false, true), (0, false, true), (1, false, false)]);
    let again = at_leader.produce_batch(batch).await.unwrap().into_inner().results;
    let repeated: Vec<_> = again.iter().map(|r| (r.offset, r.duplicate, r.error.is_some())).collect();
    assert_eq!(repeated, [(0, true, false), (0, false, true), (0, false, true), (1, true, false)]);
    assert_eq!(client.fetch("t", 0, 0, 10).await.unwrap().value.records.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_below_the_feature_gets_no_batch_entries() {
    // Node 3 runs as release 2, so the group's cluster version stays at 2.
    let cluster = Cluster::start(3, |spec| spec.nodes[2].env.push((EMULATE.into(), "2".into())));
    let client = Arc::new(cluster.client());
    let leader = cluster.leader(&client).await;
    at_cluster_version(&cluster, &client, 2).await;
    // The batch call is refused as UNIMPLEMENTED, as an older release answers it.
    let addr = cluster.spec.node(leader).unwrap().addr;
    let mut direct = BrokerClient::connect(format!("http://{addr}")).await.unwrap();
    let one = ProduceRequest { topic: "t".into(), producer_id: 1, sequence: 1, ..Default::default() };
    let refused = direct.produce_batch(ProduceBatchRequest { records: vec![one] }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    // The client falls back to single produces: every record lands once, in no batch entry.
    let acked = produce_concurrently(&client, || true).await;
    read_back(&client, &acked).await;
    assert_eq!(batches(&cluster).await, (0, 0));
    for id in cluster.procs.keys() {
        assert_eq!(client.status(*id).await.unwrap().groups[0].cluster_version, 2);
    }
}
