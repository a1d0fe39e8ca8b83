//! The replicated state machine: partition logs, idempotent producers, consumer offsets and
//! key-value registers.
//!
//! [`StateMachine::apply`] is deterministic in (state, command): every replica that applies the
//! same log assigns the same offsets. Its writes go into the Ready loop's batch together with
//! the applied index, so a restart never applies an entry twice. Reads ([`read`]) go straight to
//! RocksDB; the API only calls them after ReadIndex confirmed that this node has applied
//! everything committed before the read began.

use crate::config::Bug;
use crate::pb::broker::{PartitionOffset, Record};
use crate::pb::cmd::{self, Command, ProducerState, StoredRecord, command::Kind};
use crate::storage::{StorageError, decode_u64, keys, storage_format};
use crate::version::{self, Release};
use bytes::Bytes;
use prost::Message;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

const RECORDS: u8 = b'P';
const NEXT_OFFSET: u8 = b'N';
const PRODUCERS: u8 = b'Q';
const CONSUMER_OFFSETS: u8 = b'O';
const REGISTERS: u8 = b'K';
/// The group's cluster version (`u32`; absent means 1).
const CLUSTER_VERSION: u8 = b'V';

/// The result of applying one command, sent to the client that proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A produce landed at `offset` (or had landed, when `duplicate`).
    Produced {
        /// The record's offset.
        offset: u64,
        /// Whether this (producer, sequence) had already landed.
        duplicate: bool,
    },
    /// A batch of produces (`ProduceBatch`): one [`Applied::Produced`] or [`Applied::Rejected`]
    /// per record, in the batch's order.
    Batch(Vec<Applied>),
    /// A put or an offset commit took effect.
    Done,
    /// A compare-and-set found another value and changed nothing.
    CasMismatch {
        /// The value found, `None` when absent.
        current: Option<Bytes>,
    },
    /// The command was refused at apply time and changed nothing.
    Rejected(String),
    /// A membership change took effect at log index `index`.
    Membership {
        /// The voters after it.
        voters: Vec<u64>,
        /// The learners after it.
        learners: Vec<u64>,
        /// Its log index.
        index: u64,
    },
}

fn record_key(group: u32, topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    keys::state(group, RECORDS, &[topic.as_bytes(), &[0], &partition.to_be_bytes(), &offset.to_be_bytes()])
}

fn partition_prefix(group: u32, topic: &str, partition: u32) -> Vec<u8> {
    keys::state(group, RECORDS, &[topic.as_bytes(), &[0], &partition.to_be_bytes()])
}

fn next_offset_key(group: u32, topic: &str, partition: u32) -> Vec<u8> {
    keys::state(group, NEXT_OFFSET, &[topic.as_bytes(), &[0], &partition.to_be_bytes()])
}

fn producer_key(group: u32, producer: u64, topic: &str, partition: u32) -> Vec<u8> {
    keys::state(group, PRODUCERS, &[&producer.to_be_bytes(), topic.as_bytes(), &[0], &partition.to_be_bytes()])
}

fn consumer_prefix(group: u32, name: &str) -> Vec<u8> {
    keys::state(group, CONSUMER_OFFSETS, &[name.as_bytes(), &[0]])
}

fn register_key(group: u32, key: &[u8]) -> Vec<u8> {
    keys::state(group, REGISTERS, &[key])
}

/// A partition: topic and number.
pub type PartitionId = (String, u32);

/// One group's state machine.
pub struct StateMachine {
    db: Arc<DB>,
    group: u32,
    bugs: BTreeSet<Bug>,
    /// Authoritative once loaded: only `apply` changes next offsets.
    next_offsets: HashMap<PartitionId, u64>,
    /// Authoritative once loaded: the last (sequence, offset) per idempotent producer and
    /// partition, so that a retry applied in the same batch as its original is still caught.
    producers: HashMap<(u64, PartitionId), (u64, u64)>,
    /// Register writes of the batch being built, so that later entries in it see them.
    pending_registers: HashMap<Vec<u8>, Option<Bytes>>,
    /// What this node reads and supports.
    release: Release,
    /// The group's cluster version: which formats it writes. Only raised, by `SetClusterVersion`.
    cluster_version: u32,
}

impl StateMachine {
    /// The state machine of `group` as release `release` runs it. Refuses a state whose cluster
    /// version the release does not support (an old build restarted on a newer cluster's data,
    /// or a snapshot from it), and raises the directory's storage format to the state's.
    pub fn new(db: Arc<DB>, group: u32, bugs: BTreeSet<Bug>, release: Release) -> Result<Self, StorageError> {
        let key = keys::state(group, CLUSTER_VERSION, &[]);
        let cluster_version = match db.get(&key)? {
            Some(v) => {
                v.as_slice().try_into().map(u32::from_be_bytes).map_err(|_| corrupt(&key, "expected 4 bytes"))?
            }
            None => 1,
        };
        if cluster_version > release.release {
            return Err(StorageError::ClusterTooNew { group, found: cluster_version, supported: release.release });
        }
        // A snapshot brings its state's cluster version but not the directory's format marker.
        if storage_format(&db)? < version::storage_format(cluster_version) {
            db.put(keys::FORMAT, version::storage_format(cluster_version).to_be_bytes())?;
        }
        Ok(StateMachine {
            db,
            group,
            bugs,
            next_offsets: HashMap::new(),
            producers: HashMap::new(),
            pending_registers: HashMap::new(),
            release,
            cluster_version,
        })
    }

    /// The group's cluster version.
    pub fn cluster_version(&self) -> u32 {
        self.cluster_version
    }

    /// The last applied index, as persisted.
    pub fn applied_index(&self) -> Result<u64, StorageError> {
        read::applied_index(&self.db, self.group)
    }

    /// Adds the applied index to `batch`.
    pub fn set_applied(&self, batch: &mut WriteBatch, index: u64) {
        batch.put(keys::applied(self.group), index.to_be_bytes());
    }

    /// Call after the batch holding the applied commands is written.
    pub fn batch_written(&mut self) {
        self.pending_registers.clear();
    }

    /// Applies one command, the entry at `index`, adding its writes to `batch`. A command this
    /// release cannot read is an error that stops the node: skipping it would diverge.
    pub fn apply(&mut self, batch: &mut WriteBatch, index: u64, command: &Command) -> Result<Applied, StorageError> {
        if command.version > self.release.command_max {
            return Err(StorageError::CommandTooNew {
                index,
                found: command.version,
                supported: self.release.command_max,
            });
        }
        match &command.kind {
            Some(Kind::Produce(p)) => self.produce(batch, p),
            // Record by record, each de-duplicated on its own: a retried batch, or a record of it
            // retried alone, lands once, whatever else the retry carries.
            Some(Kind::ProduceBatch(b)) => {
                b.records.iter().map(|p| self.produce(batch, p)).collect::<Result<_, _>>().map(Applied::Batch)
            }
            Some(Kind::CommitOffsets(c)) => {
                put_consumer_offsets(batch, self.group, c);
                Ok(Applied::Done)
            }
            Some(Kind::Put(p)) => {
                self.write_register(batch, &p.key, p.value.clone());
                Ok(Applied::Done)
            }
            Some(Kind::Cas(c)) => {
                let current = self.register(&c.key)?;
                let expected = c.expected_present.then(|| c.expected.clone());
                if current != expected {
                    return Ok(Applied::CasMismatch { current });
                }
                self.write_register(batch, &c.key, c.value.clone());
                Ok(Applied::Done)
            }
            Some(Kind::SetClusterVersion(v)) => self.set_cluster_version(batch, v.version),
            // A kind from a newer build: the replicas that know it apply it, so skipping it here
            // would diverge. The cluster version keeps new kinds off until every member reads them.
            None => Err(StorageError::UnknownCommand { index, format: command.version }),
        }
    }

    /// The feature gate: raises the group's cluster version (never lowers it) and the data
    /// directory's storage format with it, in the same batch.
    fn set_cluster_version(&mut self, batch: &mut WriteBatch, to: u32) -> Result<Applied, StorageError> {
        if to > self.release.release {
            return Err(StorageError::ClusterTooNew { group: self.group, found: to, supported: self.release.release });
        }
        if to > self.cluster_version {
            batch.put(keys::state(self.group, CLUSTER_VERSION, &[]), to.to_be_bytes());
            let format = version::storage_format(to);
            if storage_format(&self.db)? < format {
                batch.put(keys::FORMAT, format.to_be_bytes());
            }
            tracing::info!(group = self.group, from = self.cluster_version, to, "cluster version raised");
            self.cluster_version = to;
        }
        Ok(Applied::Done)
    }

    fn produce(&mut self, batch: &mut WriteBatch, p: &cmd::Produce) -> Result<Applied, StorageError> {
        let dedupe = p.producer_id != 0 && !self.bugs.contains(&Bug::NoDedupe);
        let pkey = producer_key(self.group, p.producer_id, &p.topic, p.partition);
        let id = (p.producer_id, (p.topic.clone(), p.partition));
        if dedupe && let Some((sequence, offset)) = self.producer(&pkey, &id)? {
            if p.sequence == sequence {
                return Ok(Applied::Produced { offset, duplicate: true });
            }
            if p.sequence < sequence {
                return Ok(Applied::Rejected(format!(
                    "producer {} sequence {} is older than its last sequence {sequence}",
                    p.producer_id, p.sequence
                )));
            }
        }
        let next = self.next_offset(&p.topic, p.partition)?;
        // Only a leader with `--bug offset-before-commit` assigns offsets (crate::seeded).
        let offset = p.assigned_offset.unwrap_or(next);
        let format = version::storage_format(self.cluster_version);
        let crc32c = if format >= 2 { record_checksum(&p.key, &p.value, p.timestamp_ms) } else { 0 };
        let record = StoredRecord {
            version: format,
            key: p.key.clone(),
            value: p.value.clone(),
            timestamp_ms: p.timestamp_ms,
            crc32c,
        };
        batch.put(record_key(self.group, &p.topic, p.partition, offset), record.encode_to_vec());
        let next = next.max(offset + 1);
        batch.put(next_offset_key(self.group, &p.topic, p.partition), next.to_be_bytes());
        self.next_offsets.insert((p.topic.clone(), p.partition), next);
        if dedupe {
            let st = ProducerState { version: format, sequence: p.sequence, offset };
            batch.put(pkey, st.encode_to_vec());
            self.producers.insert(id, (p.sequence, offset));
        }
        Ok(Applied::Produced { offset, duplicate: false })
    }

    fn producer(&mut self, key: &[u8], id: &(u64, PartitionId)) -> Result<Option<(u64, u64)>, StorageError> {
        if let Some(&st) = self.producers.get(id) {
            return Ok(Some(st));
        }
        let Some(v) = self.db.get_pinned(key)? else {
            return Ok(None);
        };
        let st = ProducerState::decode(&*v).map_err(|e| corrupt(key, e))?;
        self.producers.insert(id.clone(), (st.sequence, st.offset));
        Ok(Some((st.sequence, st.offset)))
    }

    /// The next offsets of the partitions this state machine has seen since it started, as
    /// applied so far.
    pub fn known_next_offsets(&self) -> HashMap<PartitionId, u64> {
        self.next_offsets.clone()
    }

    /// The offset the next record of a partition lands at, as applied so far.
    pub fn next_offset(&mut self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        if let Some(&o) = self.next_offsets.get(&(topic.to_owned(), partition)) {
            return Ok(o);
        }
        let o = read_next_offset(&self.db, self.group, topic, partition)?;
        self.next_offsets.insert((topic.to_owned(), partition), o);
        Ok(o)
    }

    fn register(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        match self.pending_registers.get(key) {
            Some(v) => Ok(v.clone()),
            None => read::register(&self.db, self.group, key),
        }
    }

    fn write_register(&mut self, batch: &mut WriteBatch, key: &Bytes, value: Bytes) {
        batch.put(register_key(self.group, key), &value);
        self.pending_registers.insert(key.to_vec(), Some(value));
    }
}

/// Adds a consumer group's offset commit to `batch`.
pub fn put_consumer_offsets(batch: &mut WriteBatch, group: u32, c: &cmd::CommitOffsets) {
    for o in &c.offsets {
        let key = keys::state(
            group,
            CONSUMER_OFFSETS,
            &[c.group.as_bytes(), &[0], o.topic.as_bytes(), &[0], &o.partition.to_be_bytes()],
        );
        batch.put(key, o.offset.to_be_bytes());
    }
}

/// The checksum of a stored record (storage format 2).
fn record_checksum(key: &[u8], value: &[u8], timestamp_ms: u64) -> u32 {
    version::crc32c(&[key, value, &timestamp_ms.to_be_bytes()])
}

fn corrupt(key: &[u8], e: impl ToString) -> StorageError {
    StorageError::Corrupt { key: key.escape_ascii().to_string(), what: e.to_string() }
}

fn read_next_offset(db: &DB, group: u32, topic: &str, partition: u32) -> Result<u64, StorageError> {
    let key = next_offset_key(group, topic, partition);
    match db.get_pinned(&key)? {
        Some(v) => decode_u64(&key, &v),
        None => Ok(0),
    }
}

/// Reads of applied state. Linearizable only after ReadIndex (see the module docs).
pub mod read {
    use super::*;

    /// A group's last applied index, as persisted (0 before anything was applied).
    pub fn applied_index(db: &DB, group: u32) -> Result<u64, StorageError> {
        let key = keys::applied(group);
        match db.get(key)? {
            Some(v) => decode_u64(&key, &v),
            None => Ok(0),
        }
    }

    /// A register's value, `None` when absent.
    pub fn register(db: &DB, group: u32, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(db.get_pinned(register_key(group, key))?.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Up to `max` records of a partition from offset `from` on, and the high watermark.
    pub fn fetch(
        db: &DB,
        group: u32,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<(Vec<Record>, u64), StorageError> {
        // One snapshot, so that the records and the watermark agree.
        let snap = db.snapshot();
        let hw = match snap.get(next_offset_key(group, topic, partition))? {
            Some(v) => decode_u64(b"next offset", &v)?,
            None => 0,
        };
        let prefix = partition_prefix(group, topic, partition);
        let start = record_key(group, topic, partition, from);
        let mut records = Vec::new();
        for item in snap.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || records.len() >= max {
                break;
            }
            let offset = decode_u64(&k, &k[prefix.len()..])?;
            let r = StoredRecord::decode(&*v).map_err(|e| corrupt(&k, e))?;
            if r.version >= 2 && r.crc32c != record_checksum(&r.key, &r.value, r.timestamp_ms) {
                return Err(corrupt(&k, "record checksum mismatch"));
            }
            records.push(Record { key: r.key, value: r.value, timestamp_ms: r.timestamp_ms, offset });
        }
        Ok((records, hw))
    }

    /// A consumer group's committed offsets, `None` when it never committed any.
    pub fn committed_offsets(db: &DB, group: u32, name: &str) -> Result<Option<Vec<PartitionOffset>>, StorageError> {
        let prefix = consumer_prefix(group, name);
        let mut out = Vec::new();
        for item in db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            let bad = || corrupt(&k, "malformed consumer offset key");
            let split = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
            let topic = std::str::from_utf8(&rest[..split]).map_err(|_| bad())?;
            let partition: [u8; 4] = rest[split + 1..].try_into().map_err(|_| bad())?;
            out.push(PartitionOffset {
                topic: topic.to_owned(),
                partition: u32::from_be_bytes(partition),
                offset: decode_u64(&k, &v)?,
            });
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open_db;

    fn produce(topic: &str, pid: u64, seq: u64, value: &'static [u8]) -> Command {
        Command {
            version: 1,
            request_id: 1,
            proposer: 1,
            kind: Some(Kind::Produce(cmd::Produce {
                topic: topic.into(),
                partition: 0,
                key: Bytes::new(),
                value: Bytes::from_static(value),
                producer_id: pid,
                sequence: seq,
                timestamp_ms: 0,
                assigned_offset: None,
            })),
        }
    }

    fn cas(key: &'static [u8], expected: Option<&'static [u8]>, value: &'static [u8]) -> Command {
        Command {
            kind: Some(Kind::Cas(cmd::Cas {
                key: Bytes::from_static(key),
                expected: Bytes::from_static(expected.unwrap_or_default()),
                expected_present: expected.is_some(),
                value: Bytes::from_static(value),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn offsets_are_dense_and_retries_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachine::new(db.clone(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut b = WriteBatch::default();
        let r: Vec<Applied> =
            [produce("t", 7, 1, b"a"), produce("t", 7, 1, b"a"), produce("t", 0, 0, b"b"), produce("u", 0, 0, b"c")]
                .iter()
                .map(|c| sm.apply(&mut b, 1, c).unwrap())
                .collect();
        db.write(b).unwrap();
        sm.batch_written();
        assert_eq!(
            r,
            vec![
                Applied::Produced { offset: 0, duplicate: false },
                Applied::Produced { offset: 0, duplicate: true },
                Applied::Produced { offset: 1, duplicate: false },
                Applied::Produced { offset: 0, duplicate: false },
            ]
        );
        let mut b = WriteBatch::default();
        let mut fresh = StateMachine::new(db.clone(), 0, BTreeSet::new(), Release::current()).unwrap();
        assert_eq!(
            fresh.apply(&mut b, 1, &produce("t", 7, 1, b"a")).unwrap(),
            Applied::Produced { offset: 0, duplicate: true }
        );
        assert!(matches!(sm.apply(&mut b, 1, &produce("t", 7, 0, b"a")).unwrap(), Applied::Rejected(_)));
        let (records, hw) = read::fetch(&db, 0, "t", 0, 1, 10).unwrap();
        assert_eq!(hw, 2);
        assert_eq!(records.iter().map(|r| (r.offset, r.value.as_ref())).collect::<Vec<_>>(), vec![(1, &b"b"[..])]);
    }

    #[test]
    fn cas_sees_earlier_writes_of_its_own_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachine::new(db.clone(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut b = WriteBatch::default();
        assert_eq!(sm.apply(&mut b, 1, &cas(b"k", None, b"1")).unwrap(), Applied::Done);
        assert_eq!(sm.apply(&mut b, 1, &cas(b"k", Some(b"1"), b"2")).unwrap(), Applied::Done);
        assert_eq!(
            sm.apply(&mut b, 1, &cas(b"k", None, b"3")).unwrap(),
            Applied::CasMismatch { current: Some(Bytes::from_static(b"2")) }
        );
        db.write(b).unwrap();
        sm.batch_written();
        assert_eq!(read::register(&db, 0, b"k").unwrap(), Some(Bytes::from_static(b"2")));
    }

    fn set_cluster_version(version: u32) -> Command {
        Command {
            version: 2,
            kind: Some(Kind::SetClusterVersion(cmd::SetClusterVersion { version })),
            ..Default::default()
        }
    }

    fn stored(db: &DB, offset: u64) -> StoredRecord {
        StoredRecord::decode(&*db.get(record_key(0, "t", 0, offset)).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn the_gate_switches_the_record_format_on_once_and_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachine::new(db.clone(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut b = WriteBatch::default();
        sm.apply(&mut b, 1, &produce("t", 0, 0, b"old")).unwrap();
        assert_eq!(sm.apply(&mut b, 2, &set_cluster_version(2)).unwrap(), Applied::Done);
        sm.apply(&mut b, 3, &produce("t", 0, 0, b"new")).unwrap();
        assert_eq!(sm.apply(&mut b, 4, &set_cluster_version(1)).unwrap(), Applied::Done);
        db.write(b).unwrap();
        assert_eq!(sm.cluster_version(), 2, "never lowered");
        assert_eq!((stored(&db, 0).version, stored(&db, 0).crc32c), (1, 0));
        let new = stored(&db, 1);
        assert_eq!((new.version, new.crc32c), (2, record_checksum(b"", b"new", 0)));
        assert_eq!(storage_format(&db).unwrap(), 2);
        let (records, _) = read::fetch(&db, 0, "t", 0, 0, 10).unwrap();
        assert_eq!(records.len(), 2, "both formats read back");
        // A flipped bit in a checksummed record is caught on read.
        let mut bad = new.clone();
        bad.value = Bytes::from_static(b"nex");
        db.put(record_key(0, "t", 0, 1), bad.encode_to_vec()).unwrap();
        assert!(matches!(read::fetch(&db, 0, "t", 0, 0, 10), Err(StorageError::Corrupt { .. })));
        // Release 1 refuses to run this state, whether found on disk or arriving in the log.
        let old = Release::emulate(1).unwrap();
        let err = StateMachine::new(db.clone(), 0, BTreeSet::new(), old).err().unwrap();
        assert!(matches!(err, StorageError::ClusterTooNew { found: 2, supported: 1, .. }), "{err}");
    }

    #[test]
    fn an_old_release_stops_at_a_newer_command_instead_of_skipping_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let old = Release::emulate(1).unwrap();
        let mut sm = StateMachine::new(db.clone(), 0, BTreeSet::new(), old).unwrap();
        let mut b = WriteBatch::default();
        let err = sm.apply(&mut b, 7, &set_cluster_version(2)).err().unwrap();
        assert!(matches!(err, StorageError::CommandTooNew { index: 7, found: 2, supported: 1 }), "{err}");
        let unknown = Command { version: 1, kind: None, ..Default::default() };
        let err = sm.apply(&mut b, 8, &unknown).err().unwrap();
        assert!(matches!(err, StorageError::UnknownCommand { index: 8, .. }), "{err}");
        // Even a format-1 gate entry above the release is refused (a forged or buggy proposal).
        let gate = Command { version: 1, ..set_cluster_version(2) };
        assert!(matches!(sm.apply(&mut b, 9, &gate), Err(StorageError::ClusterTooNew { .. })));
    }
}
