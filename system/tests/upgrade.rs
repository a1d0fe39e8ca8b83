//! Mixed releases in one cluster: the cluster version waits for the last member, an old
//! release that meets the new format stops instead of misreading it, and peers one wire version
//! apart talk in the older one.

mod common;

use common::{Cluster, wait_for};
use ordeal_system::client::Client;
use ordeal_system::version::RELEASE;
use std::time::Duration;

const EMULATE: &str = "ORDEAL_BROKER_EMULATE_VERSION";

/// Node `id` runs as release 1 from its next start on (or as itself, with `None`).
fn emulate(cluster: &mut Cluster, id: u64, release: Option<&str>) {
    let node = cluster.spec.nodes.iter_mut().find(|n| n.id == id).unwrap();
    node.env.retain(|(k, _)| k != EMULATE);
    if let Some(r) = release {
        node.env.push((EMULATE.into(), r.into()));
    }
}

/// Every node's (release, cluster version of group 0).
async fn versions(cluster: &Cluster, client: &Client) -> Option<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for id in cluster.procs.keys() {
        let s = client.status(*id).await.ok()?;
        out.push((s.release, s.groups[0].cluster_version));
    }
    Some(out)
}

/// Writes `value` to key `k` until a write of it is acknowledged: a put is not idempotent, so one
/// whose outcome a loaded machine left unknown (an attempt's timeout, a leader moving) is an
/// error, and writing the same value again is harmless here.
async fn put(client: &Client, value: &[u8]) {
    wait_for(Duration::from_secs(20), "an acknowledged put", || async { client.put(b"k", value).await.ok() }).await;
}

/// Node `id`'s status, asked until it answers (one attempt may time out on a loaded machine).
async fn status(client: &Client, id: u64) -> ordeal_wire::status::NodeStatus {
    wait_for(Duration::from_secs(10), &format!("node {id}'s status"), || async { client.status(id).await.ok() }).await
}

fn log_of(cluster: &Cluster, id: u64) -> String {
    std::fs::read_to_string(&cluster.spec.node(id).unwrap().log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_version_waits_for_the_last_member_and_an_old_node_cannot_come_back() {
    let mut cluster = Cluster::start(3, |spec| {
        spec.nodes[2].env.push((EMULATE.into(), "1".into()));
    });
    let client = cluster.client();
    cluster.leader(&client).await;
    put(&client, b"1").await;
    // Node 3 speaks wire version 1 only: the others fall back to it, and it keeps up.
    cluster.converged(&client).await;
    // Mixed: node 3 is release 1, so the cluster stays at version 1 (several gate rounds pass).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let v = versions(&cluster, &client).await.unwrap_or_default();
        assert!(v.iter().all(|(_, cv)| *cv <= 1), "the gate flipped with a release-1 member: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = status(&client, 3).await;
    assert_eq!((s.release, s.wire_version, s.storage_version_max), (1, 1, 1));
    // Node 3 moves to this release: the gate flips everywhere.
    cluster.procs.get_mut(&3).unwrap().terminate(Duration::from_secs(5)).unwrap();
    emulate(&mut cluster, 3, None);
    cluster.restart(3);
    wait_for(Duration::from_secs(20), "this release's cluster version on every node", || async {
        versions(&cluster, &client).await.filter(|v| v.iter().all(|(r, cv)| (*r, *cv) == (RELEASE, RELEASE)))
    })
    .await;
    put(&client, b"2").await;
    let s = status(&client, 3).await;
    assert_eq!((s.storage_version, s.wire_version, s.wire_version_min), (2, 2, 1));
    // Rolling node 3 back now is refused: its data is in the new format.
    cluster.procs.get_mut(&3).unwrap().terminate(Duration::from_secs(5)).unwrap();
    emulate(&mut cluster, 3, Some("1"));
    cluster.restart(3);
    let process = cluster.procs.get_mut(&3).unwrap();
    let status = wait_for(Duration::from_secs(10), "the rolled-back node to exit", || {
        let exited = process.has_exited().unwrap();
        async move { exited }
    })
    .await;
    assert!(!status.success(), "{status}");
    let log = log_of(&cluster, 3);
    assert!(log.contains("storage format 2; this build reads up to 1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_gate_stops_the_old_node_with_the_reason() {
    let mut cluster = Cluster::start(3, |spec| {
        spec.nodes[2].env.push((EMULATE.into(), "1".into()));
        spec.bugs = vec![ordeal_system::config::Bug::EarlyFeature];
    });
    let client = cluster.client();
    // Whoever leads first among this release's nodes switches its version on; node 3 then meets a
    // command it cannot read, and stops rather than skipping it.
    let process = cluster.procs.get_mut(&3).unwrap();
    let status = wait_for(Duration::from_secs(30), "the release-1 node to stop", || {
        let exited = process.has_exited().unwrap();
        let client = &client;
        async move {
            if exited.is_none() && client.status(3).await.is_ok_and(|s| s.groups[0].is_leader) {
                // Release 1's gate has nothing newer to switch on: a newer node must lead.
                let _ = client.transfer_leader(3, 0, 1).await;
            }
            exited
        }
    })
    .await;
    assert_eq!(status.code(), Some(70), "{status}");
    let log = log_of(&cluster, 3);
    assert!(log.contains(&format!("holds a command of format {RELEASE}; this build reads up to 1")), "{log}");
    cluster.procs.remove(&3);
    cluster.leader(&client).await;
    client.put(b"after", b"1").await.unwrap();
}

/// With `ORDEAL_OLD_BROKER` (a build of an earlier commit, `scripts/build-release.sh REF`) the
/// old node runs that build; without it, this build emulating release 1.
const OLD_BROKER: &str = "ORDEAL_OLD_BROKER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_node_catches_up_through_a_snapshot_it_reads_while_the_gate_is_off() {
    let old = std::env::var_os(OLD_BROKER).map(std::path::PathBuf::from);
    let mut cluster = Cluster::start(3, |spec| {
        match &old {
            Some(binary) => spec.binary = binary.clone(),
            None => spec.nodes[2].env.push((EMULATE.into(), "1".into())),
        }
        spec.env.push(("ORDEAL_BROKER_SNAPSHOT_ENTRIES".into(), "50".into()));
    });
    let client = cluster.client();
    cluster.leader(&client).await;
    let new = ordeal_system::launch::find_binary().unwrap();
    if old.is_some() {
        // Nodes 1 and 2 move to this build; node 3 stays on the old one.
        for id in [1, 2] {
            cluster.procs.get_mut(&id).unwrap().terminate(Duration::from_secs(5)).unwrap();
            cluster.spec.binary = new.clone();
            cluster.restart(id);
            cluster.converged(&client).await;
        }
    }
    cluster.procs.get_mut(&3).unwrap().terminate(Duration::from_secs(5)).unwrap();
    cluster.procs.remove(&3);
    // Past the compaction point: node 3's next entries are gone from the leader's log.
    for i in 0..200u32 {
        client.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
    }
    cluster.spec.binary = old.unwrap_or(new);
    cluster.restart(3);
    // The leader (this build, cluster version 1) sends format 1, which the old node reads; a
    // format 2 stream would be refused and node 3 would never catch up.
    cluster.converged(&client).await;
    let m = common::metrics(cluster.spec.node(3).unwrap().http).await;
    assert!(common::counter(&m, "ordeal_snapshots_installed_total") >= 1, "{m}");
    let leader = cluster.leader(&client).await;
    assert_ne!(leader, 3);
    let sent = common::metrics(cluster.spec.node(leader).unwrap().http).await;
    assert!(common::counter(&sent, "ordeal_snapshots_sent_total") >= 1, "{sent}");
    for id in [1, 2] {
        assert_eq!(client.status(id).await.unwrap().groups[0].cluster_version, 1);
    }
}
