//! A node's configuration, parsed from flags by `main.rs` and validated here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use ordeal_wire::config::{Bug, RaftTiming};

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's raft id (non-zero, unique in the cluster).
    pub id: u64,
    /// Where the gRPC server (clients, admin and peers) listens.
    pub listen: SocketAddr,
    /// Where the HTTP status and metrics server listens, if anywhere.
    pub http: Option<SocketAddr>,
    /// Every initial voter's id and gRPC address, this node included.
    pub peers: BTreeMap<u64, String>,
    /// The RocksDB directory.
    pub data_dir: PathBuf,
    /// The number of raft groups (shards).
    pub groups: u32,
    /// Raft's clock.
    pub timing: RaftTiming,
    /// fsync the raft log before acknowledging anything.
    pub sync: bool,
    /// The largest record (key plus value) a produce or put may carry.
    pub max_record_bytes: usize,
    /// When set, admin calls must present it as `authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// How long a request may wait for its proposal to apply before the outcome is reported as
    /// unknown.
    pub request_timeout: Duration,
    /// Deliberate bugs, for showing that the harness catches them.
    pub bugs: BTreeSet<Bug>,
    /// Membership and log compaction.
    pub membership: MembershipConfig,
    /// The release whose formats and features this node uses: its own, or an older one under
    /// `--emulate-version`.
    pub release: crate::version::Release,
    /// The node's cluster CA, certificate and key: peers then authenticate with mutual TLS
    /// ([`crate::peer_auth`]); `None` leaves them unauthenticated.
    pub tls: Option<ordeal_wire::certs::NodeFiles>,
}

/// How a node joins, how strict promotion is, and when the log is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Start with no membership of its own and wait to be added (`--peers` is then only an
    /// address book).
    pub join: bool,
    /// This node expects to stay a learner: finding itself a voter is logged and counted.
    pub join_as_learner: bool,
    /// A learner is promoted only within this many entries of the leader's commit index.
    pub max_promote_lag: u64,
    /// Compact the log once this many applied entries are in it.
    pub snapshot_entries: u64,
    /// ... or once the entries appended since the last compaction reach this many bytes.
    pub snapshot_bytes: u64,
    /// Paces snapshots: at most this many bytes a second of file written while making one and
    /// sent while sending one; 0 paces nothing.
    pub snapshot_max_bytes_per_s: u64,
}

/// The default snapshot pace, in MB a second of file (`--snapshot-max-mb-per-s`): a catch-up should
/// not cost the load its latency. On a 2-core machine an unpaced 200 MB transfer (~450 MB/s) raised
/// the load's p99 ~6-fold while it ran, one at 250 MB/s under 2-fold, in under 1 s
/// (docs/benchmarks.md). Compressible state moves faster, the pace being on the file's bytes.
pub const DEFAULT_SNAPSHOT_MAX_MB_PER_S: u64 = 250;

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            join: false,
            join_as_learner: false,
            max_promote_lag: 1000,
            snapshot_entries: 10_000,
            snapshot_bytes: 64 * 1024 * 1024,
            snapshot_max_bytes_per_s: DEFAULT_SNAPSHOT_MAX_MB_PER_S * 1_000_000,
        }
    }
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
///
/// ```
/// let peers = ordeal_system::config::parse_peers("1=a:1,2=b:2").unwrap();
/// assert_eq!(peers[&2], "b:2");
/// assert!(ordeal_system::config::parse_peers("1=a:1,1=b:2").is_err());
/// assert!(ordeal_system::config::parse_peers("1=notanaddr").is_err());
/// assert!(ordeal_system::config::parse_peers("1=host:0").is_err());
/// ```
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| format!("peer {item:?} is not ID=ADDRESS"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("peer {item:?}: id {id:?} is not a positive integer"))?;
        if id == 0 {
            return Err(format!("peer {item:?}: id 0 is reserved"));
        }
        if addr.trim().is_empty() {
            return Err(format!("peer {item:?} has an empty address"));
        }
        let port_ok = addr
            .trim()
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
        if !port_ok {
            return Err(format!("peer {item:?}: address {addr:?} is not HOST:PORT"));
        }
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

impl NodeConfig {
    /// Checks the combination of settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("--id must be positive".into());
        }
        if !self.peers.contains_key(&self.id) {
            return Err(format!("--peers does not list this node's id {}", self.id));
        }
        if self.groups == 0 || self.groups > 1024 {
            return Err("--groups must be between 1 and 1024".into());
        }
        let t = &self.timing;
        if t.tick.is_zero() {
            return Err("--tick-ms must be positive".into());
        }
        if t.heartbeat_ticks == 0 || t.election_ticks <= t.heartbeat_ticks {
            return Err("--election-ticks must exceed --heartbeat-ticks, which must be positive".into());
        }
        if t.max_election_ticks != 0 && t.max_election_ticks <= t.election_ticks {
            return Err("--max-election-ticks must exceed --election-ticks".into());
        }
        if self.membership.snapshot_entries < 2 {
            return Err("--snapshot-entries must be at least 2".into());
        }
        Ok(())
    }
}
