//! Membership end to end, on real processes: a node joins a loaded cluster as a learner, catches
//! up, is promoted under the gate; learners refuse writes; one voter and a learner keep
//! committing; removing voters shrinks the quorum; bad changes are refused and change nothing.

mod common;

use common::{Cluster, counter, metrics, wait_for};
use ordeal_system::client::{Client, ClientError, ClientOptions};
use ordeal_system::error::BrokerError;
use ordeal_system::launch::{NodeProcess, NodeSpec, free_ports};
use ordeal_system::pb::broker::ProduceRequest;
use ordeal_system::pb::broker::broker_client::BrokerClient;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Adds node `id` to the cluster's spec and starts it with `--join` (plus `env`); returns its
/// address once it answers.
async fn start_joining(cluster: &mut Cluster, id: u64, env: &[(&str, &str)]) -> String {
    let ports = free_ports(2).unwrap();
    let dir = cluster.dir.path().join(format!("n{id}"));
    let mut vars = vec![("ORDEAL_BROKER_JOIN".to_string(), "true".to_string())];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let node = NodeSpec {
        id,
        addr: SocketAddr::from(([127, 0, 0, 1], ports[0])),
        http: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        data_dir: dir.join("data"),
        log: dir.join("broker.log"),
        netns: None,
        env: vars,
        remote: None,
    };
    let addr = node.addr.to_string();
    cluster.spec.nodes.push(node);
    cluster.restart(id);
    let client = cluster.client();
    wait_for(Duration::from_secs(15), "the new node to answer", || async { client.status(id).await.ok() }).await;
    addr
}

fn admin_client(cluster: &Cluster) -> Client {
    let opts = ClientOptions {
        deadline: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    Client::new(cluster.spec.peers(), opts)
}

/// Records produced in the background until stopped: offset -> value of every acknowledged one.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<u64, String>>,
    acked: Arc<Mutex<usize>>,
}

impl Load {
    fn start(client: Client) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(0));
        let (s, a) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut out = BTreeMap::new();
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                let value = format!("v{seq}");
                // Idempotent: a retried record lands once, so every ack names its one offset.
                if let Ok(r) = client.produce("t", 0, b"", value.as_bytes(), Some((9, seq))).await {
                    out.insert(r.value.offset, value);
                    *a.lock().unwrap() += 1;
                }
                seq += 1;
            }
            out
        });
        Load { stop, task, acked }
    }

    fn count(&self) -> usize {
        *self.acked.lock().unwrap()
    }

    async fn finish(self) -> BTreeMap<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A three-node cluster that has written a key everywhere, then had a follower stopped by `stop`:
/// the cluster, a client, the leader and that follower.
async fn a_follower_stopped(
    stop: impl FnOnce(&mut NodeProcess) -> std::io::Result<std::process::ExitStatus>,
) -> (Cluster, Client, u64, u64) {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let away = (1..=3).find(|id| *id != leader).unwrap();
    client.put(b"k", b"0").await.unwrap();
    cluster.converged(&client).await;
    stop(cluster.procs.get_mut(&away).unwrap()).unwrap();
    (cluster, client, leader, away)
}

/// An admin client that does not try node `away`, which is down.
fn admin_without(cluster: &Cluster, away: u64) -> Client {
    let mut up = cluster.spec.peers();
    up.remove(&away);
    Client::new(up, ClientOptions { deadline: Duration::from_secs(10), ..Default::default() })
}

async fn applied(client: &Client, node: u64) -> Option<(u64, u64)> {
    let s = client.status(node).await.ok()?;
    Some((s.groups[0].applied_index, s.groups[0].commit_index))
}

/// Every acknowledged record is on `node` at its offset, read from its local state once it holds
/// as many records as were acknowledged: a node may still be applying the last ones even after
/// `converged`, whose commit index is the nodes' published view, which can trail the
/// acknowledgement of the last write by a loop iteration.
async fn assert_has_all(client: &Client, node: u64, acked: &BTreeMap<u64, String>) {
    let want = acked.keys().next_back().map_or(0, |last| *last as usize + 1);
    let log = wait_for(Duration::from_secs(10), &format!("node {node} to apply every acknowledged record"), || async {
        let log = common::local_log(client, node, "t").await;
        (log.len() >= want).then_some(log)
    })
    .await;
    for (offset, value) in acked {
        let got = log.get(*offset as usize).map(|r| String::from_utf8_lossy(&r.value).into_owned());
        assert_eq!(got.as_deref(), Some(value.as_str()), "node {node}: acknowledged offset {offset}");
    }
}

/// Sets every node (joiners too) to compact its log after `entries` entries.
fn compact_after(entries: u64) -> impl FnOnce(&mut ordeal_system::launch::ClusterSpec) {
    move |spec| spec.env.push(("ORDEAL_BROKER_SNAPSHOT_ENTRIES".into(), entries.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_a_loaded_cluster_catches_up_through_a_snapshot_and_is_promoted() {
    // A short log: by the time the learner joins, its beginning is compacted away.
    let mut cluster = Cluster::start(3, compact_after(100));
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let load = Load::start(cluster.client());
    wait_for(Duration::from_secs(30), "some load", || async { (load.count() >= 300).then_some(()) }).await;

    let addr = start_joining(&mut cluster, 4, &[("ORDEAL_BROKER_JOIN_AS_LEARNER", "true")]).await;
    // Clients made from here on know the new node.
    let client = cluster.client();
    let admin = admin_client(&cluster);
    let added = admin.add_learner(0, 4, &addr).await.unwrap();
    assert_eq!((added.voters, added.learners), (vec![1, 2, 3], vec![4]));

    // Caught up while the load runs: promotable under the strict gate.
    let target = applied(&client, leader).await.unwrap().1;
    let caught_up = wait_for(Duration::from_secs(30), "the learner to catch up", || async {
        applied(&client, 4).await.filter(|(a, _)| *a >= target).map(|(a, _)| a)
    })
    .await;
    // A learner (which heard from the leader by now) refuses writes, naming the leader.
    let mut direct = BrokerClient::connect(format!("http://{addr}")).await.unwrap();
    let refused = direct.produce(ProduceRequest { topic: "t".into(), ..Default::default() }).await.unwrap_err();
    match BrokerError::from_status(&refused) {
        Some(BrokerError::NotLeader { leader_id, leader_address, .. }) => {
            assert_eq!(leader_id, leader);
            assert_eq!(leader_address, cluster.spec.node(leader).unwrap().addr.to_string());
        }
        other => panic!("a learner answered a write with {other:?}"),
    }

    let promoted = wait_for(Duration::from_secs(30), "a promotion", || async {
        match admin.promote(0, 4, caught_up, false).await {
            Ok(r) => Some(r),
            // The gate may see the learner a little behind under load; it catches up.
            Err(ClientError::Broker { error: BrokerError::PromoteRefused { .. }, .. }) => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    assert_eq!((promoted.voters, promoted.learners), (vec![1, 2, 3, 4], vec![]));
    wait_for(Duration::from_secs(30), "more load after the promotion", || async {
        (load.count() >= 600).then_some(())
    })
    .await;
    let acked = load.finish().await;
    cluster.converged(&client).await;
    for node in 1..=4 {
        assert_has_all(&client, node, &acked).await;
    }
    let m = metrics(cluster.spec.node(4).unwrap().http).await;
    assert!(m.contains("ordeal_learner_found_voter_total{node=\"4\"} 1"), "{m}");
    assert!(counter(&m, "ordeal_snapshots_installed_total") >= 1, "{m}");
    let leader_metrics = metrics(cluster.spec.node(leader).unwrap().http).await;
    assert!(counter(&leader_metrics, "ordeal_log_compactions_total") >= 1, "{leader_metrics}");
    assert!(counter(&leader_metrics, "ordeal_snapshots_sent_total") >= 1, "{leader_metrics}");
    assert!(leader_metrics.contains("ordeal_peer_lag_seconds{"), "{leader_metrics}");
    // A new cluster starts at cluster version 1, whose snapshots are made on the disk; the leader
    // raised it before the learner joined, and made the learner's snapshot in the format that
    // allows: in memory.
    assert!(client.status(leader).await.unwrap().groups[0].cluster_version >= 2);
    let log = std::fs::read_to_string(&cluster.spec.node(leader).unwrap().log).unwrap_or_default();
    let made: Vec<_> = log.lines().filter(|l| l.contains("snapshot made")).collect();
    assert!(!made.is_empty() && made.iter().all(|l| l.contains("in_memory=true")), "{made:#?}");
    let members = admin.members(0).await.unwrap();
    assert_eq!(members.members.len(), 4);
    assert!(members.members.iter().all(|m| m.reachable && !m.is_learner), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_a_lagging_learner_is_refused_with_its_figures() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    cluster.leader(&client).await;
    for i in 0..50 {
        client.produce("t", 0, b"", format!("r{i}").as_bytes(), None).await.unwrap();
    }
    let addr = start_joining(&mut cluster, 4, &[]).await;
    // Clients made from here on know the new node.
    let client = cluster.client();
    let admin = admin_client(&cluster);
    admin.add_learner(0, 4, &addr).await.unwrap();
    // Paused, the learner stops applying while the leader commits on.
    cluster.procs.get_mut(&4).unwrap().signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
    for i in 0..50 {
        client.produce("t", 0, b"", format!("s{i}").as_bytes(), None).await.unwrap();
    }
    let commit = applied(&client, 1).await.unwrap().1;
    match admin.promote(0, 4, commit, false).await {
        Err(ClientError::Broker { error: BrokerError::PromoteRefused { node, reason, leader_commit, .. }, .. }) => {
            assert_eq!(node, 4);
            assert!(leader_commit >= commit, "{leader_commit} < {commit}");
            assert!(reason.contains("did not answer"), "{reason}");
        }
        other => panic!("a paused learner was promoted: {other:?}"),
    }
    cluster.procs.get_mut(&4).unwrap().signal(nix::sys::signal::Signal::SIGCONT).unwrap();
    let (learner_applied, _) =
        wait_for(Duration::from_secs(15), "the learner to answer", || async { applied(&client, 4).await }).await;
    let want = commit + 1_000_000;
    match admin.promote(0, 4, want, false).await {
        Err(ClientError::Broker {
            error: BrokerError::PromoteRefused { reason, learner_applied: a, leader_commit, .. },
            ..
        }) => {
            assert!(reason.contains(&format!("below min_applied_index {want}")), "{reason}");
            assert!(a >= learner_applied && leader_commit >= commit, "figures {a} {leader_commit}");
        }
        other => panic!("{other:?}"),
    }
    let members = admin.members(0).await.unwrap();
    assert!(members.members.iter().any(|m| m.id == 4 && m.is_learner), "refusals changed nothing: {members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_and_a_learner_keep_committing() {
    let mut cluster = Cluster::start(1, |_| {});
    let client = cluster.client();
    cluster.leader(&client).await;
    let addr = start_joining(&mut cluster, 2, &[]).await;
    // Clients made from here on know the new node.
    let client = cluster.client();
    let admin = admin_client(&cluster);
    admin.add_learner(0, 2, &addr).await.unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        let v = format!("r{i}");
        acked.insert(client.produce("t", 0, b"", v.as_bytes(), None).await.unwrap().value.offset, v);
    }
    // The learner does not count toward the quorum: with it dead, the voter still commits.
    cluster.procs.get_mut(&2).unwrap().kill().unwrap();
    for i in 50..100 {
        let v = format!("r{i}");
        acked.insert(client.produce("t", 0, b"", v.as_bytes(), None).await.unwrap().value.offset, v);
    }
    assert_eq!(client.get(b"k").await.unwrap().value, None, "linearizable reads need no learner");
    cluster.restart(2);
    cluster.converged(&client).await;
    assert_has_all(&client, 2, &acked).await;
    // The last voter cannot be removed.
    match admin.remove_node(0, 1).await {
        Err(ClientError::Broker { error: BrokerError::MembershipRefused { reason, .. }, .. }) => {
            assert!(reason.contains("last voter"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_voters_shrinks_the_quorum_and_the_cluster_keeps_working() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    // Clients made from here on know the new node.
    let client = cluster.client();
    let admin = admin_client(&cluster);
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    client.put(b"k", b"0").await.unwrap();
    let after = admin.remove_node(0, followers[0]).await.unwrap();
    assert_eq!(after.voters.len(), 2);
    let after = admin.remove_node(0, followers[1]).await.unwrap();
    assert_eq!(after.voters, vec![leader]);
    // Both removed nodes die: a quorum of one still commits and serves linearizable reads.
    for f in &followers {
        cluster.procs.get_mut(f).unwrap().kill().unwrap();
    }
    client.put(b"k", b"1").await.unwrap();
    assert_eq!(client.get(b"k").await.unwrap().value.as_deref(), Some(&b"1"[..]));
}

/// A voter removed while it was down never receives its removal (the leader sends nothing to a
/// non-member), so on restart it campaigns at members that drop its messages. The first member it
/// campaigns at tells it, and it reports itself removed and campaigns no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_removed_while_down_learns_it_from_a_member_when_it_returns() {
    let (mut cluster, client, _, away) = a_follower_stopped(|p| p.kill()).await;
    let after = admin_without(&cluster, away).remove_node(0, away).await.unwrap();
    assert!(!after.voters.contains(&away), "{after:?}");
    client.put(b"k", b"1").await.unwrap();
    cluster.restart(away);
    let status = wait_for(Duration::from_secs(30), &format!("node {away} to learn that it was removed"), || async {
        let g = client.status(away).await.ok()?.groups.swap_remove(0);
        (g.role == "removed").then_some(g)
    })
    .await;
    assert!(!status.has_leader && !status.is_leader, "{status:?}");
    assert!(status.voters.contains(&away), "its own configuration still names it: {status:?}");
    // It campaigns no more: the members stop dropping its messages. Settled means no new drop for
    // three election timeouts (it campaigned once every one or two before it was told).
    let members: Vec<u64> = (1..=3).filter(|id| *id != away).collect();
    let dropped = || async {
        let mut n = 0;
        for id in &members {
            n += counter(&metrics(cluster.spec.node(*id).unwrap().http).await, "ordeal_peer_messages_rejected_total");
        }
        n
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut seen, mut since) = (dropped().await, std::time::Instant::now());
    while since.elapsed() < Duration::from_millis(1500) {
        assert!(std::time::Instant::now() < deadline, "node {away} campaigns on: {seen} of its messages dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = dropped().await;
        if now != seen {
            (seen, since) = (now, std::time::Instant::now());
        }
    }
    client.put(b"k", b"2").await.unwrap();
    assert_eq!(client.get(b"k").await.unwrap().value.as_deref(), Some(&b"2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_membership_changes_are_refused_and_change_nothing() {
    let mut cluster = Cluster::start(3, |_| {});
    cluster.leader(&cluster.client()).await;
    let admin = admin_client(&cluster);
    let before = admin.members(0).await.unwrap();
    let refused = |r: Result<_, ClientError>| match r {
        Err(ClientError::Broker { error, .. }) => error,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let existing = cluster.spec.node(2).unwrap().addr.to_string();
    assert!(matches!(refused(admin.add_learner(0, 2, &existing).await), BrokerError::MembershipRefused { .. }));
    assert!(matches!(refused(admin.promote(0, 2, 0, true).await), BrokerError::PromoteRefused { .. }));
    assert!(matches!(refused(admin.remove_node(0, 9).await), BrokerError::MembershipRefused { .. }));
    assert!(matches!(refused(admin.add_learner(7, 4, "127.0.0.1:1").await), BrokerError::UnknownGroup(7)));
    let unreachable = free_ports(1).unwrap()[0];
    match refused(admin.add_learner(0, 4, &format!("127.0.0.1:{unreachable}")).await) {
        BrokerError::PeerUnreachable { node: 4, .. } => {}
        other => panic!("{other:?}"),
    }
    // A live node that is not the one named is refused too.
    match refused(admin.add_learner(0, 4, &existing).await) {
        BrokerError::PeerUnreachable { reason, .. } => assert!(reason.contains("is node 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let addr = start_joining(&mut cluster, 4, &[]).await;
    admin.add_learner(0, 4, &addr).await.unwrap();
    match refused(admin.promote(0, 4, 0, false).await) {
        BrokerError::PromoteRefused { reason, .. } => assert!(reason.contains("min_applied_index 0"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let after = admin.members(0).await.unwrap();
    let ids = |m: &ordeal_system::pb::broker::MembersResponse| {
        m.members.iter().map(|m| (m.id, m.is_learner)).collect::<Vec<_>>()
    };
    assert_eq!(ids(&before), vec![(1, false), (2, false), (3, false)]);
    assert_eq!(ids(&after), vec![(1, false), (2, false), (3, false), (4, true)]);
}

/// The files in node `id`'s incoming snapshot directory.
fn incoming(cluster: &Cluster, id: u64) -> Vec<String> {
    let data = cluster.spec.node(id).unwrap().data_dir.display().to_string();
    let dir = std::path::PathBuf::from(format!("{data}.snapshots/in"));
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_snapshot_transfer_and_install_restarts_and_catches_up() {
    let mut cluster = Cluster::start(3, compact_after(50));
    let client = cluster.client();
    cluster.leader(&client).await;
    // About 24 MB of state, so that a transfer takes long enough to be interrupted.
    let value = vec![b'x'; 48 * 1024];
    let mut acked = BTreeMap::new();
    for i in 0..500u32 {
        let mut v = value.clone();
        v.extend_from_slice(i.to_string().as_bytes());
        let offset = client.produce("t", 0, b"", &v, Some((5, u64::from(i)))).await.unwrap().value.offset;
        acked.insert(offset, String::from_utf8(v).unwrap());
    }
    let addr = start_joining(&mut cluster, 4, &[]).await;
    let client = cluster.client();
    admin_client(&cluster).add_learner(0, 4, &addr).await.unwrap();
    // Kill it as soon as a transfer is under way, then as soon as a complete file is there (the
    // install), whichever of those it gets to see.
    for (what, done) in [("a partial file", ".tmp"), ("a complete file", ".sst")] {
        let seen = wait_for(Duration::from_secs(30), what, || async {
            if incoming(&cluster, 4).iter().any(|f| f.ends_with(done)) {
                return Some(true);
            }
            let caught_up = applied(&client, 4).await.is_some_and(|(a, _)| a > 500);
            caught_up.then_some(false)
        })
        .await;
        cluster.procs.get_mut(&4).unwrap().kill().unwrap();
        eprintln!("killed node 4 on {what}: seen {seen}");
        cluster.restart(4);
    }
    let commit = wait_for(Duration::from_secs(15), "the leader's commit", || async {
        applied(&client, 1).await.map(|(_, c)| c)
    })
    .await;
    wait_for(Duration::from_secs(60), "the restarted node to catch up", || async {
        applied(&client, 4).await.filter(|(a, _)| *a >= commit).map(|_| ())
    })
    .await;
    assert_has_all(&client, 4, &acked).await;
}

/// Adds a started joiner `id` as a learner and waits until it has applied what the group had
/// committed when it was added; returns that index.
async fn add_and_catch_up(cluster: &Cluster, admin: &Client, leader: u64, id: u64, addr: &str) -> u64 {
    let client = cluster.client();
    admin.add_learner(0, id, addr).await.unwrap();
    let target = applied(&client, leader).await.unwrap().1;
    wait_for(Duration::from_secs(30), &format!("learner {id} to catch up"), || async {
        applied(&client, id).await.filter(|(a, _)| *a >= target).map(|(a, _)| a)
    })
    .await
}

/// A leader that joined after a learner's address book was written (here node 4, itself joined
/// through a snapshot, promoted and made leader) still catches that learner up: the learner
/// learns the leader's address from its envelopes and answers, so the leader sends a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_answers_a_leader_missing_from_its_address_book_and_gets_a_snapshot() {
    let mut cluster = Cluster::start(3, compact_after(100));
    let client = cluster.client();
    let first = cluster.leader(&client).await;
    let load = Load::start(cluster.client());
    wait_for(Duration::from_secs(30), "some load", || async { (load.count() >= 300).then_some(()) }).await;

    // Node 4 joins through a snapshot, is promoted and made the leader.
    let addr = start_joining(&mut cluster, 4, &[("ORDEAL_BROKER_JOIN_AS_LEARNER", "true")]).await;
    let admin = admin_client(&cluster);
    let caught_up = add_and_catch_up(&cluster, &admin, first, 4, &addr).await;
    wait_for(Duration::from_secs(30), "node 4's promotion", || async {
        admin.promote(0, 4, caught_up, false).await.ok()
    })
    .await;
    let client = cluster.client();
    wait_for(Duration::from_secs(30), "node 4 to lead", || async {
        let leader = cluster.leader(&client).await;
        if leader != 4 {
            let _ = client.transfer_leader(leader, 0, 4).await;
            return None;
        }
        Some(())
    })
    .await;
    let m = metrics(cluster.spec.node(4).unwrap().http).await;
    assert!(counter(&m, "ordeal_snapshots_installed_total") >= 1, "{m}");
    let written = load.count();
    wait_for(Duration::from_secs(30), "load under node 4", || async { (load.count() >= written + 300).then_some(()) })
        .await;

    // Node 5 joins behind node 4's first log entry: node 4 must make and send it a snapshot.
    // Its address book names the initial voters only (as `--join` allows), not its leader.
    let joined = cluster.spec.nodes.remove(3);
    let addr = start_joining(&mut cluster, 5, &[("ORDEAL_BROKER_JOIN_AS_LEARNER", "true")]).await;
    cluster.spec.nodes.insert(3, joined);
    let admin = admin_client(&cluster);
    add_and_catch_up(&cluster, &admin, 4, 5, &addr).await;
    let acked = load.finish().await;
    let client = cluster.client();
    cluster.converged(&client).await;
    assert_has_all(&client, 5, &acked).await;
    let m = metrics(cluster.spec.node(4).unwrap().http).await;
    assert!(counter(&m, "ordeal_snapshots_sent_total") >= 1, "{m}");
}

/// A node that applies several membership changes in one batch (here a joiner that catches up
/// from the log) keeps every address they carry: each change adds to the table the one before it
/// left in the same batch, not to the one on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_membership_changes_keeps_every_address_it_carries() {
    let mut cluster = Cluster::start(1, |_| {});
    let client = cluster.client();
    cluster.leader(&client).await;
    for id in [2, 3] {
        let addr = start_joining(&mut cluster, id, &[]).await;
        admin_client(&cluster).add_learner(0, id, &addr).await.unwrap();
    }
    cluster.converged(&cluster.client()).await;
    for id in [1, 2, 3] {
        cluster.procs.get_mut(&id).unwrap().terminate(Duration::from_secs(10)).unwrap();
        let db = ordeal_system::storage::open_db(&cluster.spec.node(id).unwrap().data_dir).unwrap();
        let stored = db.get(ordeal_system::storage::keys::peers(0)).unwrap().expect("an address table");
        let table = ordeal_system::membership::decode_addresses(&stored).unwrap();
        assert_eq!(table.keys().copied().collect::<Vec<u64>>(), [1, 2, 3], "node {id}'s address table on disk");
    }
}

/// A voter that was down while another node joined and took the lead follows that leader when it
/// comes back, though its own applied configuration does not name the leader yet: it learns of the
/// leader only from the leader's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_voter_follows_a_leader_that_joined_while_it_was_down() {
    let (mut cluster, _, leader, away) = a_follower_stopped(|p| p.terminate(Duration::from_secs(10))).await;
    let addr = start_joining(&mut cluster, 4, &[]).await;
    let admin = admin_without(&cluster, away);
    let caught_up = add_and_catch_up(&cluster, &admin, leader, 4, &addr).await;
    admin.promote(0, 4, caught_up, false).await.unwrap();
    let client = cluster.client();
    wait_for(Duration::from_secs(30), "node 4 to lead", || async {
        let status = client.status(4).await.ok()?;
        if status.groups[0].is_leader {
            return Some(());
        }
        let _ = client.transfer_leader(leader, 0, 4).await;
        None
    })
    .await;
    cluster.restart(away);
    client.put(b"k", b"1").await.unwrap();
    let target = applied(&client, 4).await.unwrap().1;
    wait_for(Duration::from_secs(30), &format!("node {away} to follow node 4 and catch up"), || async {
        let g = client.status(away).await.ok()?.groups.swap_remove(0);
        (g.leader_id == 4 && g.applied_index >= target && g.voters.contains(&4)).then_some(())
    })
    .await;
}

/// A follower that installs a snapshot over state it holds answers its reads from the state before
/// the install or after it, never from the group half cleared (between the install's clearing and
/// its ingest, which waits for a flush): a key it held throughout is never missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_a_snapshot_install_see_the_state_before_or_after_it() {
    let mut cluster = Cluster::start(3, compact_after(50));
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    client.put(b"held", b"1").await.unwrap();
    wait_for(Duration::from_secs(15), "the follower to hold the key", || async {
        client.get_local(follower, b"held").await.ok().flatten()
    })
    .await;
    // Its log is compacted past it while it is paused, so it catches up through a snapshot of some
    // megabytes, whose ingest has a memtable to flush.
    let signal = |cluster: &mut Cluster, s| cluster.procs.get_mut(&follower).unwrap().signal(s).unwrap();
    signal(&mut cluster, nix::sys::signal::Signal::SIGSTOP);
    let value = vec![b'x'; 16 * 1024];
    for i in 0..300u32 {
        client.put(format!("k{i}").as_bytes(), &value).await.unwrap();
    }
    let commit = applied(&client, leader).await.unwrap().1;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = tokio::spawn({
        let (client, stop) = (cluster.client(), stop.clone());
        async move {
            let (mut found, mut missing) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match client.get_local(follower, b"held").await {
                    Ok(Some(_)) => found += 1,
                    Ok(None) => missing += 1,
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            (found, missing)
        }
    });
    signal(&mut cluster, nix::sys::signal::Signal::SIGCONT);
    wait_for(Duration::from_secs(60), "the follower to install the snapshot and catch up", || async {
        applied(&client, follower).await.filter(|(a, _)| *a >= commit).map(|_| ())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (found, missing) = reads.await.unwrap();
    let m = metrics(cluster.spec.node(follower).unwrap().http).await;
    assert!(counter(&m, "ordeal_snapshots_installed_total") >= 1, "the follower caught up without a snapshot:\n{m}");
    assert_eq!(missing, 0, "reads of a key the follower held throughout found nothing ({found} found it)");
}

/// Paused processes (SIGSTOP), resumed when dropped, so that a failed test leaves none stopped.
struct Paused(Vec<u32>);

impl Paused {
    /// Returns once every thread of every one of them has stopped: a SIGSTOP takes effect only
    /// when a thread of the process is scheduled to take it, and until then the others serve.
    fn pause(cluster: &mut Cluster, ids: &[u64]) -> Paused {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        let mut paused = Paused(Vec::new());
        for id in ids {
            let proc = cluster.procs.get_mut(id).unwrap();
            proc.signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
            paused.0.push(proc.pid());
            let pid = nix::unistd::Pid::from_raw(proc.pid() as i32);
            let status = waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap();
            assert!(matches!(status, WaitStatus::Stopped(..)), "node {id}: {status:?}");
        }
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// `members` is for incidents, when several members may hang: it asks them all at once, so it
/// answers within about one probe's timeout, not one per hanging member (a CLI call has 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_answers_within_one_probe_while_several_members_hang() {
    let mut cluster = Cluster::start(3, |_| {});
    let client = cluster.client();
    let leader = cluster.leader(&client).await;
    for id in [4, 5] {
        let addr = start_joining(&mut cluster, id, &[]).await;
        admin_client(&cluster).add_learner(0, id, &addr).await.unwrap();
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // A quorum of voters stays: the leader keeps leading and answers.
    let hanging = [follower, 4, 5];
    // An admin client that does not try the hanging nodes.
    let mut up = cluster.spec.peers();
    up.retain(|id, _| !hanging.contains(id));
    let admin = Client::new(up, admin_client(&cluster).options().clone());
    let _paused = Paused::pause(&mut cluster, &hanging);
    let started = std::time::Instant::now();
    let members = admin.members(0).await.unwrap();
    let took = started.elapsed();
    // A hanging member costs a whole probe timeout (1 s): one after another, three cost 3 s.
    assert!(took < Duration::from_secs(3), "members took {took:?} with {} members hanging", hanging.len());
    let unreachable: Vec<u64> = members.members.iter().filter(|m| !m.reachable).map(|m| m.id).collect();
    let mut want = hanging.to_vec();
    want.sort_unstable();
    assert_eq!(unreachable, want, "{members:?}");
    let ids: Vec<u64> = members.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "in the leader's order");
}
