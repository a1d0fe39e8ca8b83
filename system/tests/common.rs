//! A real cluster of `ordeal-broker` processes for integration tests: ephemeral ports, a temp
//! dir, every process killed and the dir removed on drop (also when a test panics).
#![allow(dead_code)]

use ordeal_system::client::{Client, ClientOptions};
use ordeal_system::launch::{ClusterSpec, NodeProcess, find_binary};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub spec: ClusterSpec,
    pub procs: BTreeMap<u64, NodeProcess>,
    // Dropped after the processes (fields drop in declaration order).
    pub dir: tempfile::TempDir,
}

/// A failed test says why before the temp dir goes: the tail of every node's log.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in &self.spec.nodes {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("== node {} (last 40 lines)\n{}", node.id, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

impl Cluster {
    pub fn start(n: usize, tweak: impl FnOnce(&mut ClusterSpec)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let binary = find_binary().expect("ordeal-broker is built beside the tests");
        let mut spec = ClusterSpec::local(binary, n, dir.path()).unwrap();
        tweak(&mut spec);
        let procs = spec.nodes.iter().map(|n| (n.id, spec.spawn(n.id).unwrap())).collect();
        Cluster { spec, procs, dir }
    }

    pub fn client(&self) -> Client {
        let opts = ClientOptions {
            deadline: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        Client::new(self.spec.peers(), opts)
    }

    pub fn restart(&mut self, id: u64) {
        self.procs.insert(id, self.spec.spawn(id).unwrap());
    }

    /// Waits until some node reports itself leader of group 0, and every live node agrees.
    pub async fn leader(&self, client: &Client) -> u64 {
        wait_for(Duration::from_secs(15), "a leader", || async {
            let mut leader = None;
            for id in self.procs.keys() {
                let s = client.status(*id).await.ok()?;
                let g = &s.groups[0];
                if !g.has_leader || leader.is_some_and(|l| l != g.leader_id) {
                    return None;
                }
                leader = Some(g.leader_id);
            }
            leader.filter(|l| self.procs.contains_key(l))
        })
        .await
    }

    /// Waits until every node has applied everything the leader committed, as the nodes' published
    /// views say. A view is published after the loop iteration that answered a write, so it can
    /// trail the acknowledgement of the last write: a test that needs every acknowledged write
    /// applied everywhere waits for those writes themselves.
    pub async fn converged(&self, client: &Client) {
        wait_for(Duration::from_secs(15), "replicas to converge", || async {
            let mut indices = Vec::new();
            for id in self.procs.keys() {
                let s = client.status(*id).await.ok()?;
                indices.push((s.groups[0].applied_index, s.groups[0].commit_index));
            }
            let max_commit = indices.iter().map(|(_, c)| *c).max()?;
            indices.iter().all(|(a, _)| *a >= max_commit).then_some(())
        })
        .await
    }
}

/// Every record of partition 0 of `topic` in `node`'s local state, from offset 0.
pub async fn local_log(client: &Client, node: u64, topic: &str) -> Vec<ordeal_system::pb::broker::Record> {
    let mut log = Vec::new();
    loop {
        // Small batches: records may be large, and a response is limited to 4 MB.
        let r = client.fetch_local(node, topic, 0, log.len() as u64, 50).await.unwrap();
        if r.records.is_empty() {
            return log;
        }
        log.extend(r.records);
    }
}

pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled-but-for-node counter in a metrics page.
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The node's `/metrics` page.
pub async fn metrics(http: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(http)).await.unwrap().unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await.unwrap().unwrap();
    body
}
