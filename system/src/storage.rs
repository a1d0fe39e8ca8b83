//! Everything a node persists, in one RocksDB instance, and `raft::Storage` on top of it.
//!
//! Key layout (every integer big-endian, so that iteration follows numeric order):
//!
//! | key | value |
//! |---|---|
//! | `m/format` | storage format version, `u32` |
//! | `m/node` | the id of the node the directory belongs to, `u64` |
//! | `L` group index | raft log entry (raft's protobuf codec) |
//! | `H` group | raft hard state |
//! | `C` group | raft conf state (voters and learners: membership lives here only) |
//! | `T` group | index and term of the last entry removed by compaction |
//! | `A` group | last applied index, written with the state changes it covers |
//! | `P` group | known node addresses (`PeerAddresses`, versioned), written with the conf state |
//! | `I` group | a snapshot install under way (`SnapshotInstall`, versioned; see [`crate::snapshot`]) |
//! | `S` group ... | the state machine (see [`crate::fsm`]) |

use crate::snapshot::Generator;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A storage failure. raft-rs's contract: after one, the node must stop.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value does not decode.
    #[error("corrupt data at {key}: {what}")]
    Corrupt {
        /// The key, escaped.
        key: String,
        /// What was wrong.
        what: String,
    },
    /// The data directory belongs to another node: its log and votes are that node's.
    #[error(
        "the data directory belongs to node {found}, not node {id}: start node {found} on it, or give node {id} a directory of its own"
    )]
    WrongNode {
        /// The node the directory belongs to.
        found: u64,
        /// The id this node was started with.
        id: u64,
    },
    /// The data directory was written by a newer build.
    #[error(
        "data directory has storage format {found}; this build reads up to {supported} (the cluster moved to a newer version: run a newer build)"
    )]
    FormatTooNew {
        /// The version on disk.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// A log entry holds a command in a format newer than this build reads.
    #[error(
        "log entry {index} holds a command of format {found}; this build reads up to {supported} (the cluster moved to a newer version without this node: run a newer build)"
    )]
    CommandTooNew {
        /// The entry's index.
        index: u64,
        /// Its command format.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// A log entry holds a command kind this build does not know: applying it as a no-op would
    /// make this replica diverge from those that know it.
    #[error(
        "log entry {index} holds a command kind this build does not know (format {format}); stopping rather than diverging from the replicas that apply it"
    )]
    UnknownCommand {
        /// The entry's index.
        index: u64,
        /// Its command format.
        format: u32,
    },
    /// The group's state (from the log or a snapshot) is at a cluster version newer than this
    /// build's release supports.
    #[error(
        "group {group} runs at cluster version {found}; this build supports up to {supported} (an old build cannot rejoin a cluster that moved on: run a newer build)"
    )]
    ClusterTooNew {
        /// The group.
        group: u32,
        /// Its cluster version.
        found: u32,
        /// This build's release.
        supported: u32,
    },
}

impl From<StorageError> for raft::Error {
    fn from(e: StorageError) -> raft::Error {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}

/// Builders for every key. See the module docs for the layout.
pub mod keys {
    /// The storage format version.
    pub const FORMAT: &[u8] = b"m/format";
    /// The node the directory belongs to.
    pub const NODE: &[u8] = b"m/node";

    fn tagged(tag: u8, group: u32) -> [u8; 5] {
        let g = group.to_be_bytes();
        [tag, g[0], g[1], g[2], g[3]]
    }

    /// The prefix of a group's raft log.
    pub fn log_prefix(group: u32) -> [u8; 5] {
        tagged(b'L', group)
    }

    /// One raft log entry.
    pub fn log(group: u32, index: u64) -> [u8; 13] {
        let mut k = [0u8; 13];
        k[..5].copy_from_slice(&log_prefix(group));
        k[5..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The hard state.
    pub fn hard_state(group: u32) -> [u8; 5] {
        tagged(b'H', group)
    }

    /// The conf state.
    pub fn conf_state(group: u32) -> [u8; 5] {
        tagged(b'C', group)
    }

    /// The compaction point.
    pub fn truncated(group: u32) -> [u8; 5] {
        tagged(b'T', group)
    }

    /// The applied index.
    pub fn applied(group: u32) -> [u8; 5] {
        tagged(b'A', group)
    }

    /// The node addresses learned from membership changes.
    pub fn peers(group: u32) -> [u8; 5] {
        tagged(b'P', group)
    }

    /// The marker of a snapshot install under way.
    pub fn installing(group: u32) -> [u8; 5] {
        tagged(b'I', group)
    }

    /// The group whose install marker `key` is, if it is one.
    pub fn installing_group(key: &[u8]) -> Option<u32> {
        match key {
            [b'I', group @ ..] => group.try_into().ok().map(u32::from_be_bytes),
            _ => None,
        }
    }

    /// The bounds (inclusive, exclusive) of a group's state machine keys.
    pub fn state_range(group: u32) -> ([u8; 5], [u8; 5]) {
        (tagged(b'S', group), tagged(b'S', group + 1))
    }

    /// A state machine key: `S`, group, a one-byte table tag, then `rest`.
    pub fn state(group: u32, table: u8, rest: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(6 + rest.iter().map(|r| r.len()).sum::<usize>());
        k.extend_from_slice(&tagged(b'S', group));
        k.push(table);
        for r in rest {
            k.extend_from_slice(r);
        }
        k
    }
}

/// Opens (or creates) the node's database and checks its format version: this build's.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, StorageError> {
    open_db_reading(dir, crate::version::Release::current().storage_max)
}

/// Opens (or creates) the node's database, refusing a storage format newer than `readable`. A
/// new directory starts at format 1: the newer formats come with the cluster version.
pub fn open_db_reading(dir: &Path, readable: u32) -> Result<Arc<DB>, StorageError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_max_background_jobs(2);
    // LZ4 rather than the default Snappy: both are cheap to write, but LZ4 reads back several
    // times faster on repetitive data, and snapshots read the whole state (`crate::snapshot`).
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = DB::open(&opts, dir)?;
    let found = storage_format(&db)?;
    if found > readable {
        return Err(StorageError::FormatTooNew { found, supported: readable });
    }
    if db.get(keys::FORMAT)?.is_none() {
        db.put(keys::FORMAT, 1u32.to_be_bytes())?;
    }
    Ok(Arc::new(db))
}

/// The data directory's storage format (1 when not yet written).
pub fn storage_format(db: &DB) -> Result<u32, StorageError> {
    match db.get(keys::FORMAT)? {
        Some(v) => decode_u32(keys::FORMAT, &v),
        None => Ok(1),
    }
}

/// Claims the database for node `id`, or refuses one another node wrote: a node that took over
/// another's log and votes would vote twice in a term and ack entries it never had.
pub fn claim(db: &DB, id: u64) -> Result<(), StorageError> {
    match db.get(keys::NODE)? {
        Some(v) => match decode_u64(keys::NODE, &v)? {
            found if found == id => Ok(()),
            found => Err(StorageError::WrongNode { found, id }),
        },
        None => Ok(db.put(keys::NODE, id.to_be_bytes())?),
    }
}

/// The address table `group` has on disk.
fn stored_addresses(db: &DB, group: u32) -> Result<BTreeMap<u64, String>, StorageError> {
    let key = keys::peers(group);
    match db.get(key)? {
        Some(v) => crate::membership::decode_addresses(&v).map_err(|e| corrupt(&key, e)),
        None => Ok(BTreeMap::new()),
    }
}

/// The index and term of the last entry compaction (or a snapshot's install) removed from
/// `group`'s log; (0, 0) before any.
pub fn compaction_point(db: &DB, group: u32) -> Result<(u64, u64), StorageError> {
    let t_key = keys::truncated(group);
    match db.get(t_key)? {
        Some(v) if v.len() == 16 => Ok((decode_u64(&t_key, &v[..8])?, decode_u64(&t_key, &v[8..])?)),
        Some(_) => Err(corrupt(&t_key, "expected 16 bytes")),
        None => Ok((0, 0)),
    }
}

fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn corrupt(key: &[u8], what: impl ToString) -> StorageError {
    StorageError::Corrupt { key: escape(key), what: what.to_string() }
}

/// Decodes a big-endian `u64` stored at `key`.
pub fn decode_u64(key: &[u8], v: &[u8]) -> Result<u64, StorageError> {
    v.try_into().map(u64::from_be_bytes).map_err(|_| corrupt(key, "expected 8 bytes"))
}

fn decode_u32(key: &[u8], v: &[u8]) -> Result<u32, StorageError> {
    v.try_into().map(u32::from_be_bytes).map_err(|_| corrupt(key, "expected 4 bytes"))
}

fn decode_pb<M: protobuf::Message>(key: &[u8], v: &[u8]) -> Result<M, StorageError> {
    M::parse_from_bytes(v).map_err(|e| corrupt(key, e))
}

fn encode_pb<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding an in-memory message into a Vec cannot fail: rust-protobuf only errors on
    // missing required fields, and proto3 has none.
    m.write_to_bytes().expect("proto3 messages always encode")
}

/// One group's raft log and raft state: `raft::Storage` over RocksDB.
///
/// The Ready loop is its only writer. Writes go into a caller's [`WriteBatch`] so that entries and
/// hard state land in one fsync; the cached bounds are updated as the batch is built, which is
/// safe because a failed write stops the node.
pub struct RaftStorage {
    db: Arc<DB>,
    group: u32,
    hard_state: HardState,
    conf_state: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    last_term: u64,
    /// Bytes of entries appended since the log was last compacted (or the node started).
    appended_bytes: u64,
    /// The node addresses the group learned from its log, as of the batch being built: several
    /// conf changes applied in one batch each add to what the one before left.
    peers: BTreeMap<u64, String>,
    snapshots: Generator,
}

impl RaftStorage {
    /// Loads group `group`'s state. A group that has never been started gets `initial_voters` as
    /// its membership (every node of a new cluster starts with the same one).
    pub fn open(db: Arc<DB>, group: u32, initial_voters: &[u64]) -> Result<Self, StorageError> {
        let hs_key = keys::hard_state(group);
        let hard_state = match db.get(hs_key)? {
            Some(v) => decode_pb(&hs_key, &v)?,
            None => HardState::default(),
        };
        let cs_key = keys::conf_state(group);
        let conf_state = match db.get(cs_key)? {
            Some(v) => decode_pb(&cs_key, &v)?,
            None => {
                let cs = ConfState::from((initial_voters.to_vec(), vec![]));
                db.put(cs_key, encode_pb(&cs))?;
                cs
            }
        };
        let (truncated_index, truncated_term) = compaction_point(&db, group)?;
        let mut s = RaftStorage {
            db: db.clone(),
            group,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            last_index: truncated_index,
            last_term: truncated_term,
            appended_bytes: 0,
            peers: stored_addresses(&db, group)?,
            snapshots: Generator::new(db.clone(), group),
        };
        if let Some(last) = s.last_stored_entry()? {
            s.last_index = last.index;
            s.last_term = last.term;
        }
        Ok(s)
    }

    /// Writes a new cluster's first entries (see [`crate::membership::bootstrap_entries`]),
    /// committed, with the configuration and addresses they make, unless the group has state
    /// already. Every initial voter writes the same ones.
    pub fn bootstrap(db: &DB, group: u32, peers: &BTreeMap<u64, String>) -> Result<(), StorageError> {
        if db.get(keys::conf_state(group))?.is_some() {
            return Ok(());
        }
        let entries = crate::membership::bootstrap_entries(peers);
        let mut batch = WriteBatch::default();
        for e in &entries {
            batch.put(keys::log(group, e.index), encode_pb(e));
        }
        let hs = HardState { term: 1, vote: 0, commit: entries.len() as u64, ..Default::default() };
        batch.put(keys::hard_state(group), encode_pb(&hs));
        let voters: Vec<u64> = peers.keys().copied().collect();
        batch.put(keys::conf_state(group), encode_pb(&ConfState::from((voters, vec![]))));
        batch.put(keys::peers(group), crate::membership::encode_addresses(peers));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// The node addresses this group learned from its log.
    pub fn peer_addresses(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Adds `peers` to the address table and the table to `batch` (it goes with the conf state
    /// it belongs to).
    pub fn add_peer_addresses(&mut self, batch: &mut WriteBatch, peers: impl IntoIterator<Item = (u64, String)>) {
        self.peers.extend(peers);
        batch.put(keys::peers(self.group), crate::membership::encode_addresses(&self.peers));
    }

    fn last_stored_entry(&self) -> Result<Option<Entry>, StorageError> {
        let prefix = keys::log_prefix(self.group);
        let upper = keys::log(self.group, u64::MAX);
        let mut it = self.db.iterator(IteratorMode::From(&upper, Direction::Reverse));
        match it.next() {
            Some(Ok((k, v))) if k.starts_with(&prefix) => Ok(Some(decode_pb(&k, &v)?)),
            Some(Err(e)) => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// The database this storage lives in.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The persisted conf state.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The index of the last entry.
    pub fn last_index_cached(&self) -> u64 {
        self.last_index
    }

    /// Adds `entries` to `batch`, removing any stored entries they replace beyond their end.
    pub fn append(&mut self, batch: &mut WriteBatch, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        for e in entries {
            batch.put(keys::log(self.group, e.index), encode_pb(e));
            self.appended_bytes += e.data.len() as u64;
        }
        if last.index < self.last_index {
            // A new leader overwrote a suffix: the stale tail must not survive a restart.
            batch.delete_range(keys::log(self.group, last.index + 1), keys::log(self.group, self.last_index + 1));
        }
        debug_assert!(first.index <= self.last_index + 1, "gap in the raft log");
        self.last_index = last.index;
        self.last_term = last.term;
    }

    /// Adds the hard state to `batch` when its term or vote changed; a new commit index alone is
    /// only kept in memory (see [`RaftStorage::set_commit`]).
    pub fn set_hard_state(&mut self, batch: &mut WriteBatch, hs: &HardState) {
        if hs.term != self.hard_state.term || hs.vote != self.hard_state.vote {
            batch.put(keys::hard_state(self.group), encode_pb(hs));
        }
        self.hard_state = hs.clone();
    }

    /// Records a new commit index in memory; it reaches disk with the next term or vote. A
    /// restarted node that remembers an older one learns the current one from the leader, or
    /// from its own applied index ([`RaftStorage::cover_applied`]), so this saves a write on
    /// every node for every commit.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Raises the commit index to `applied` when a crash left it behind. Applied state is written
    /// without the WAL and the commit index only rides along with other writes, so the state
    /// machine on disk can be ahead of the stored commit index; since only committed entries are
    /// applied, the log is committed at least that far (and raft-rs refuses to start otherwise).
    pub fn cover_applied(&mut self, applied: u64) -> Result<(), StorageError> {
        if applied > self.last_index {
            return Err(StorageError::Corrupt {
                key: escape(&keys::applied(self.group)),
                what: format!("applied index {applied} is past the last log entry {}", self.last_index),
            });
        }
        self.hard_state.commit = self.hard_state.commit.max(applied);
        Ok(())
    }

    /// Adds a new membership to `batch`.
    pub fn set_conf_state(&mut self, batch: &mut WriteBatch, cs: &ConfState) {
        batch.put(keys::conf_state(self.group), encode_pb(cs));
        self.conf_state = cs.clone();
    }

    /// Writes `batch`, with fsync when `sync`.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Writes the state changes of applied entries, with their applied index, bypassing the
    /// write-ahead log. A crash may lose such a batch, but only whole (a memtable reaches disk
    /// atomically) and together with its applied index: the node then applies those entries
    /// again from the raft log, which is durable. This saves a WAL write on every apply.
    pub fn write_applied(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// The first index still in the log.
    pub fn first_index_cached(&self) -> u64 {
        self.truncated_index + 1
    }

    /// Bytes of entries appended since the last compaction.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Removes the entries up to `index`, which must be applied and durable in the state machine
    /// (the caller flushed RocksDB after applying it).
    pub fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.truncated_index || index > self.last_index {
            return Ok(());
        }
        let term = raft::Storage::term(self, index).map_err(|e| corrupt(&keys::log(self.group, index), e))?;
        let mut batch = WriteBatch::default();
        batch.delete_range(keys::log(self.group, 0), keys::log(self.group, index + 1));
        let mut t = index.to_be_bytes().to_vec();
        t.extend_from_slice(&term.to_be_bytes());
        batch.put(keys::truncated(self.group), t);
        self.write(batch, true)?;
        self.truncated_index = index;
        self.truncated_term = term;
        self.appended_bytes = 0;
        Ok(())
    }

    /// Switches to the snapshot raft handed over (see [`crate::snapshot`]): the state machine,
    /// the configuration and addresses come from its file; the log starts after it.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        crate::snapshot::install(&self.db, self.group, snap)?;
        let meta = snap.get_metadata();
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.appended_bytes = 0;
        self.peers = stored_addresses(&self.db, self.group)?;
        Ok(())
    }

    /// Paces the making of snapshots to `bytes_per_s` bytes of state a second (0: unpaced).
    pub fn pace_snapshots(&mut self, bytes_per_s: u64) {
        self.snapshots.pace(bytes_per_s);
    }

    /// Makes the next snapshots for streams of `format` ([`Generator::set_format`]).
    pub fn snapshot_format(&mut self, format: u32) {
        self.snapshots.set_format(format);
    }

    /// A failure of making a snapshot in the background, which stops the node like any other.
    pub fn take_failure(&self) -> Option<StorageError> {
        self.snapshots.take_failure()
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        let key = keys::log(self.group, index);
        match self.db.get_pinned(key).map_err(StorageError::from)? {
            Some(v) => Ok(decode_pb(&key, &v)?),
            None => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let start = keys::log(self.group, low);
        let end = keys::log(self.group, high);
        for item in self.db.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            if *k >= end[..] {
                break;
            }
            let e: Entry = decode_pb(&k, &v)?;
            if e.index != low + out.len() as u64 {
                return Err(corrupt(&k, format!("log gap: expected entry {}", low + out.len() as u64)).into());
            }
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.is_empty() && low < high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if idx == self.last_index {
            return Ok(self.last_term);
        }
        Ok(self.entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Made in the background; raft-rs asks again with the peer's next heartbeat response.
        match self.snapshots.poll(request_index) {
            Some(snap) => {
                tracing::info!(to, index = snap.get_metadata().index, "sending a snapshot");
                Ok(snap)
            }
            None => Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8; 10].into(), ..Default::default() }
    }

    #[test]
    fn log_survives_reopen_and_overwrites_drop_the_stale_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut s = RaftStorage::open(db.clone(), 0, &[1, 2, 3]).unwrap();
        let mut b = WriteBatch::default();
        s.append(&mut b, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let hs = HardState { term: 1, ..Default::default() };
        s.set_hard_state(&mut b, &hs);
        s.write(b, true).unwrap();
        let mut b = WriteBatch::default();
        s.append(&mut b, &[entry(3, 2)]);
        s.write(b, true).unwrap();
        drop(s);

        let s = RaftStorage::open(db, 0, &[]).unwrap();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 1);
        assert_eq!(s.initial_state().unwrap().hard_state.term, 1);
        assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
        let es = s.entries(1, 4, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(es.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 2)]);
        let one = s.entries(1, 4, Some(1), GetEntriesContext::empty(false)).unwrap();
        assert_eq!(one.len(), 1, "max_size still returns at least one entry");
        assert!(s.entries(1, 5, None, GetEntriesContext::empty(false)).is_err());
    }

    #[test]
    fn a_commit_index_behind_the_applied_one_is_raised_so_raft_starts() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut s = RaftStorage::open(db.clone(), 0, &[1, 2, 3]).unwrap();
        let mut b = WriteBatch::default();
        s.append(&mut b, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        s.set_hard_state(&mut b, &HardState { term: 1, commit: 2, ..Default::default() });
        s.write(b, true).unwrap();
        drop(s);

        let mut s = RaftStorage::open(db, 0, &[]).unwrap();
        assert!(s.cover_applied(6).is_err(), "applied past the log is corruption");
        s.cover_applied(4).unwrap();
        let cfg = raft::Config { id: 1, applied: 4, ..Default::default() };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = raft::RawNode::new(&cfg, s, &logger).unwrap();
        assert_eq!(node.raft.raft_log.committed, 4);
        assert_eq!(node.raft.raft_log.applied, 4);
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        assert_eq!(storage_format(&db).unwrap(), 1, "a new directory starts at format 1");
        db.put(keys::FORMAT, 2u32.to_be_bytes()).unwrap();
        drop(db);
        // Release 1 (emulated) refuses what release 2 reads.
        let err = open_db_reading(dir.path(), 1).err().unwrap();
        assert!(matches!(err, StorageError::FormatTooNew { found: 2, supported: 1 }), "{err}");
        drop(open_db(dir.path()).unwrap());
        let db = open_db(dir.path()).unwrap();
        db.put(keys::FORMAT, 3u32.to_be_bytes()).unwrap();
        drop(db);
        let err = open_db(dir.path()).err().unwrap();
        assert!(matches!(err, StorageError::FormatTooNew { found: 3, supported: 2 }), "{err}");
    }
}
