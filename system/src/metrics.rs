//! Counters and a commit-latency histogram, rendered in Prometheus's text format.
//!
//! Hand-rolled on atomics: a handful of series does not justify a metrics framework, and the
//! Ready loop must never take a lock to count.

use crate::node::GroupView;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency buckets, in seconds.
const BUCKETS_S: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A node's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Times any group on this node saw its leader change.
    pub leader_changes: AtomicU64,
    /// Proposals accepted by a leader on this node.
    pub proposals: AtomicU64,
    /// Proposals refused or dropped.
    pub proposals_failed: AtomicU64,
    /// Produce batches (`ProduceBatch`, one raft entry each) accepted by a leader on this node.
    pub produce_batches: AtomicU64,
    /// Records in those batches.
    pub produce_batch_records: AtomicU64,
    /// Linearizable reads served.
    pub reads: AtomicU64,
    /// Batches of raft messages dropped because a peer's queue was full or its link down.
    pub peer_drops: AtomicU64,
    /// Raft messages from peers dropped unstepped ([`crate::vet`]): non-members, forged senders,
    /// messages that contradict the local log.
    pub peer_messages_rejected: AtomicU64,
    /// Peer connections and calls refused by peer authentication ([`crate::peer_auth`]): TLS
    /// handshakes that failed, raft calls without a certificate, and certificates that do not
    /// name the sender claimed.
    pub peer_auth_rejected: AtomicU64,
    /// 1 when peers must authenticate (the node has TLS credentials), else 0.
    pub peer_auth_enabled: AtomicU64,
    /// 1 once a `--join-as-learner` node found itself a voter, in any of its groups, since its start.
    pub learner_found_voter: AtomicU64,
    /// Campaigns started at once because the leader's port refused a connection.
    pub fast_campaigns: AtomicU64,
    /// Snapshots streamed to peers, their bytes and the time they took in all (ms).
    pub snapshots_sent: AtomicU64,
    /// Bytes of state sent in snapshots.
    pub snapshot_bytes_sent: AtomicU64,
    /// Time spent sending snapshots, in ms.
    pub snapshot_send_ms: AtomicU64,
    /// Time spent making the snapshots that were sent, in ms.
    pub snapshot_generate_ms: AtomicU64,
    /// Snapshots that could not be sent.
    pub snapshots_failed: AtomicU64,
    /// Incoming snapshot streams refused because the node received as many as it takes at once.
    pub snapshot_streams_refused: AtomicU64,
    /// Snapshots received in full.
    pub snapshots_received: AtomicU64,
    /// Bytes of state received in snapshots.
    pub snapshot_bytes_received: AtomicU64,
    /// Time spent receiving snapshots, in ms.
    pub snapshot_receive_ms: AtomicU64,
    /// Bytes of the files snapshots arrived in (compressed).
    pub snapshot_file_bytes_received: AtomicU64,
    /// Snapshots switched in.
    pub snapshots_installed: AtomicU64,
    /// Time spent switching snapshots in, in ms.
    pub snapshot_install_ms: AtomicU64,
    /// Log compactions.
    pub compactions: AtomicU64,
    /// On leaders: how long each peer has lagged, per group. Written once a tick, not per event.
    peer_lag: std::sync::Mutex<std::collections::BTreeMap<u32, Vec<(u64, Duration)>>>,
    commit_buckets: [AtomicU64; BUCKETS_S.len()],
    commit_count: AtomicU64,
    commit_sum_us: AtomicU64,
}

impl Metrics {
    /// Records the time from a proposal to its apply.
    pub fn observe_commit(&self, latency: Duration) {
        let s = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS_S.iter().zip(&self.commit_buckets) {
            if s <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_sum_us.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Replaces group `group`'s peer lags (empty when this node does not lead it).
    pub fn set_peer_lag(&self, group: u32, lags: Vec<(u64, Duration)>) {
        if let Ok(mut m) = self.peer_lag.lock() {
            m.insert(group, lags);
        }
    }

    /// Records a snapshot sent: its state bytes, how long making it took, and sending it.
    pub fn observe_snapshot_sent(&self, bytes: u64, generated: Duration, took: Duration) {
        self.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        self.snapshot_generate_ms.fetch_add(generated.as_millis() as u64, Ordering::Relaxed);
        self.snapshot_send_ms.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// Records a snapshot received: its state bytes, the bytes of its file, and the time it took.
    pub fn observe_snapshot_received(&self, bytes: u64, file_bytes: u64, took: Duration) {
        self.snapshots_received.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes_received.fetch_add(bytes, Ordering::Relaxed);
        self.snapshot_file_bytes_received.fetch_add(file_bytes, Ordering::Relaxed);
        self.snapshot_receive_ms.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// Records a snapshot switched in.
    pub fn observe_snapshot_installed(&self, took: Duration) {
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        self.snapshot_install_ms.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// Renders every series; per-group gauges come from the groups' published views.
    pub fn render(&self, node: u64, groups: &[GroupView]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{node=\"{node}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(&mut out, "ordeal_leader_changes_total", "Leader changes seen by this node.", &self.leader_changes);
        counter(
            &mut out,
            "ordeal_fast_campaigns_total",
            "Campaigns started at once because the leader's port refused a connection.",
            &self.fast_campaigns,
        );
        counter(&mut out, "ordeal_proposals_total", "Proposals accepted by a leader on this node.", &self.proposals);
        counter(&mut out, "ordeal_proposals_failed_total", "Proposals refused or dropped.", &self.proposals_failed);
        counter(
            &mut out,
            "ordeal_produce_batches_total",
            "Produce batches (one raft entry each) accepted by a leader on this node.",
            &self.produce_batches,
        );
        counter(
            &mut out,
            "ordeal_produce_batch_records_total",
            "Records in the produce batches accepted by a leader on this node.",
            &self.produce_batch_records,
        );
        counter(&mut out, "ordeal_reads_total", "Linearizable reads served.", &self.reads);
        counter(
            &mut out,
            "ordeal_peer_drops_total",
            "Raft message batches dropped: peer queue full or link down.",
            &self.peer_drops,
        );
        counter(
            &mut out,
            "ordeal_peer_messages_rejected_total",
            "Raft messages from peers dropped unstepped: non-members, forged senders, impossible indices.",
            &self.peer_messages_rejected,
        );
        counter(
            &mut out,
            "ordeal_peer_auth_rejected_total",
            "Peer connections and raft calls refused: failed TLS handshakes, no certificate, a certificate naming another node.",
            &self.peer_auth_rejected,
        );
        let _ = writeln!(
            out,
            "# HELP ordeal_peer_auth_enabled 1 when peers must authenticate with mutual TLS.\n# TYPE ordeal_peer_auth_enabled gauge\nordeal_peer_auth_enabled{{node=\"{node}\"}} {}",
            self.peer_auth_enabled.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "ordeal_learner_found_voter_total",
            "A --join-as-learner node found itself a voter.",
            &self.learner_found_voter,
        );
        let snapshot_counters: [(&str, &str, &AtomicU64); 13] = [
            ("ordeal_snapshots_sent_total", "Snapshots streamed to peers.", &self.snapshots_sent),
            ("ordeal_snapshot_sent_bytes_total", "State bytes sent in snapshots.", &self.snapshot_bytes_sent),
            (
                "ordeal_snapshot_send_milliseconds_total",
                "Time spent sending snapshots, from the start of making the file (it streams while it is made) to the receiver's answer.",
                &self.snapshot_send_ms,
            ),
            (
                "ordeal_snapshot_generate_milliseconds_total",
                "Time spent making the snapshots that were sent.",
                &self.snapshot_generate_ms,
            ),
            ("ordeal_snapshots_failed_total", "Snapshots that could not be sent.", &self.snapshots_failed),
            (
                "ordeal_snapshot_streams_refused_total",
                "Incoming snapshot streams refused because the node received as many as it takes at once.",
                &self.snapshot_streams_refused,
            ),
            ("ordeal_snapshots_received_total", "Snapshots received in full.", &self.snapshots_received),
            (
                "ordeal_snapshot_received_bytes_total",
                "State bytes received in snapshots.",
                &self.snapshot_bytes_received,
            ),
            (
                "ordeal_snapshot_received_file_bytes_total",
                "Bytes of the files snapshots arrived in (compressed).",
                &self.snapshot_file_bytes_received,
            ),
            (
                "ordeal_snapshot_receive_milliseconds_total",
                "Time spent receiving snapshots.",
                &self.snapshot_receive_ms,
            ),
            ("ordeal_snapshots_installed_total", "Snapshots switched in.", &self.snapshots_installed),
            (
                "ordeal_snapshot_install_milliseconds_total",
                "Time spent switching snapshots in.",
                &self.snapshot_install_ms,
            ),
            ("ordeal_log_compactions_total", "Raft log compactions.", &self.compactions),
        ];
        for (name, help, v) in snapshot_counters {
            counter(&mut out, name, help, v);
        }
        let _ = writeln!(
            out,
            "# HELP ordeal_commit_latency_seconds Time from proposal to apply.\n# TYPE ordeal_commit_latency_seconds histogram"
        );
        for (bound, bucket) in BUCKETS_S.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "ordeal_commit_latency_seconds_bucket{{node=\"{node}\",le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "ordeal_commit_latency_seconds_bucket{{node=\"{node}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "ordeal_commit_latency_seconds_sum{{node=\"{node}\"}} {}",
            self.commit_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "ordeal_commit_latency_seconds_count{{node=\"{node}\"}} {count}");
        let gauge = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&GroupView) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for g in groups {
                let _ = writeln!(out, "{name}{{node=\"{node}\",group=\"{}\"}} {}", g.group, f(g));
            }
        };
        gauge(&mut out, "ordeal_applied_index", "Last applied log index.", &|g| g.applied_index);
        gauge(&mut out, "ordeal_commit_index", "Last committed log index.", &|g| g.commit_index);
        gauge(&mut out, "ordeal_cluster_version", "The cluster version the group agreed on.", &|g| {
            u64::from(g.cluster_version)
        });
        gauge(&mut out, "ordeal_term", "Current raft term.", &|g| g.term);
        gauge(&mut out, "ordeal_is_leader", "1 when this node leads the group.", &|g| u64::from(g.is_leader));
        let _ = writeln!(
            out,
            "# HELP ordeal_peer_lag_entries Leader's last index minus a peer's match index.\n# TYPE ordeal_peer_lag_entries gauge"
        );
        for g in groups {
            for p in &g.progress {
                let _ = writeln!(
                    out,
                    "ordeal_peer_lag_entries{{node=\"{node}\",group=\"{}\",peer=\"{}\"}} {}",
                    g.group,
                    p.id,
                    g.last_index.saturating_sub(p.match_index)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ordeal_peer_lag_seconds How long a peer has been behind the leader's last index.\n# TYPE ordeal_peer_lag_seconds gauge"
        );
        let lags = self.peer_lag.lock().map(|m| m.clone()).unwrap_or_default();
        for g in groups.iter().filter(|g| g.is_leader) {
            for (peer, lag) in lags.get(&g.group).into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "ordeal_peer_lag_seconds{{node=\"{node}\",group=\"{}\",peer=\"{peer}\"}} {}",
                    g.group,
                    lag.as_secs_f64()
                );
            }
        }
        out
    }
}
