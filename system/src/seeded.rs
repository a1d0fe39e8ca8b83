//! The seeded bugs (`--bug NAME`) that act in the Ready loop or the API, each at one named point
//! called from the correct path, so that the correct path reads as it would without them.
//!
//! * `ack-before-commit`: [`Seeded::on_propose`] decides a write's reply when the leader
//!   proposes it, and the loop sends it once the entry is in the leader's own log
//!   (`Group::ack_appended`), not after a quorum has it and it is applied.
//! * `offset-before-commit`: [`Seeded::on_propose`] stamps the offset the leader chose into the
//!   produce, which apply then obeys. The leader counts from its applied state as it was when it
//!   won its election, so the records of earlier terms it has not applied yet share offsets
//!   with its own.
//! * `local-offsets`: [`commit_offsets_locally`] writes a consumer-offset commit into the
//!   serving node's database instead of the raft log.
//! * `fsync-lie`: [`syncs_log`] turns off the fsync behind every acknowledgement, while the
//!   node still answers and votes as if its log were durable.
//!
//! `stale-reads` (`api::NodeState::read_barrier`) and `no-dedupe` (`StateMachine::produce`) are a
//! single test each where the correct code already decides.

use crate::api::NodeState;
use crate::config::Bug;
use crate::error::BrokerError;
use crate::fsm::{self, Applied, PartitionId, StateMachine};
use crate::pb::cmd::{self, Command, command::Kind};
use crate::storage::{RaftStorage, StorageError};
use prost::Message as _;
use raft::eraftpb::EntryType;
use raft::{GetEntriesContext, RaftLog};
use rocksdb::WriteBatch;
use std::collections::{BTreeSet, HashMap};

/// Says once, at start, which bugs are on: a run with a bug must never pass for a clean one.
pub fn announce(bugs: &BTreeSet<Bug>) {
    for bug in bugs {
        tracing::warn!("DELIBERATE BUG ENABLED: --bug {}: this node is broken on purpose", bug.name());
    }
}

/// Whether the Ready loop fsyncs the raft log before it acknowledges, given `--sync`:
/// `fsync-lie` says no, and nothing else changes (RocksDB still writes every entry to its WAL,
/// so a killed process loses nothing; a crash that drops the page cache's dirty data does).
pub fn syncs_log(sync: bool, bugs: &BTreeSet<Bug>) -> bool {
    sync && !bugs.contains(&Bug::FsyncLie)
}

/// A group's seeded bugs of the Ready loop and the leader's state they need.
pub struct Seeded {
    ack_before_commit: bool,
    offset_before_commit: bool,
    /// The leader's own count of each partition's next offset: copied from the applied state
    /// when this node wins an election, then advanced by every produce it proposes.
    next_offsets: HashMap<PartitionId, u64>,
}

impl Seeded {
    /// The bugs of the loop among `bugs`.
    pub fn new(bugs: &BTreeSet<Bug>) -> Self {
        Seeded {
            ack_before_commit: bugs.contains(&Bug::AckBeforeCommit),
            offset_before_commit: bugs.contains(&Bug::OffsetBeforeCommit),
            next_offsets: HashMap::new(),
        }
    }

    /// Whether replies go out at the leader's append (`ack-before-commit`).
    pub fn acks_early(&self) -> bool {
        self.ack_before_commit
    }

    /// Call when this node becomes leader, before it applies anything more. With
    /// `ack-before-commit` alone the count also covers the produces in its log not applied yet,
    /// so that its early replies name the offsets apply will give, and what the bug loses is the
    /// writes themselves; `offset-before-commit` counts from the applied state only: its bug.
    pub fn on_elected(&mut self, sm: &mut StateMachine, log: &RaftLog<RaftStorage>) -> Result<(), StorageError> {
        if !(self.ack_before_commit || self.offset_before_commit) {
            return Ok(());
        }
        self.next_offsets = sm.known_next_offsets();
        if self.offset_before_commit {
            return Ok(());
        }
        let unapplied = log
            .entries(log.applied + 1, None, GetEntriesContext::empty(false))
            .map_err(|e| StorageError::Corrupt { key: "unapplied log entries".into(), what: e.to_string() })?;
        for e in unapplied.iter().filter(|e| e.get_entry_type() == EntryType::EntryNormal) {
            match Command::decode(&e.data[..]) {
                Ok(Command { kind: Some(Kind::Produce(p)), .. }) => {
                    self.assign_offset(&p, sm)?;
                }
                Ok(Command { kind: Some(Kind::ProduceBatch(b)), .. }) => {
                    for p in &b.records {
                        self.assign_offset(p, sm)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Call as the leader proposes `command`: with `offset-before-commit`, stamps the offset the
    /// leader assigns; with `ack-before-commit`, returns the reply to send once the entry is in
    /// the leader's log (none for a compare-and-set, whose outcome needs the state).
    pub fn on_propose(
        &mut self,
        command: &mut Command,
        sm: &mut StateMachine,
    ) -> Result<Option<Applied>, StorageError> {
        if !(self.ack_before_commit || self.offset_before_commit) {
            return Ok(None);
        }
        let early = match &mut command.kind {
            Some(Kind::Produce(p)) => Some(self.stamp(p, sm)?),
            Some(Kind::ProduceBatch(b)) => {
                let stamped = b.records.iter_mut().map(|p| self.stamp(p, sm));
                Some(Applied::Batch(stamped.collect::<Result<_, _>>()?))
            }
            Some(Kind::Put(_) | Kind::CommitOffsets(_)) => Some(Applied::Done),
            Some(Kind::Cas(_) | Kind::SetClusterVersion(_)) | None => None,
        };
        Ok(early.filter(|_| self.ack_before_commit))
    }

    /// Assigns a produce its offset as this leader counts (and stamps it, with
    /// `offset-before-commit`); returns the reply `ack-before-commit` sends.
    fn stamp(&mut self, p: &mut cmd::Produce, sm: &mut StateMachine) -> Result<Applied, StorageError> {
        let offset = self.assign_offset(p, sm)?;
        if self.offset_before_commit {
            p.assigned_offset = Some(offset);
        }
        Ok(Applied::Produced { offset, duplicate: false })
    }

    fn assign_offset(&mut self, p: &cmd::Produce, sm: &mut StateMachine) -> Result<u64, StorageError> {
        let id = (p.topic.clone(), p.partition);
        let offset = match self.next_offsets.get(&id) {
            Some(&o) => o,
            None => sm.next_offset(&p.topic, p.partition)?,
        };
        self.next_offsets.insert(id, offset + 1);
        Ok(offset)
    }
}

/// `local-offsets`: once this node confirmed it leads `group`, writes the commit into its own
/// database only. A later leader never saw it, so committed offsets regress after a failover.
pub async fn commit_offsets_locally(
    state: &NodeState,
    group: u32,
    commit: &cmd::CommitOffsets,
) -> Result<(), BrokerError> {
    let _guard = state.read_barrier(group, false).await?;
    let mut batch = WriteBatch::default();
    fsm::put_consumer_offsets(&mut batch, group, commit);
    state.db.write(batch).map_err(|e| BrokerError::OutcomeUnknown(format!("storage: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open_db;
    use crate::version::Release;
    use bytes::Bytes;

    fn produce(value: &'static [u8]) -> Command {
        Command {
            version: crate::version::command_format(1),
            kind: Some(Kind::Produce(cmd::Produce {
                topic: "t".into(),
                value: Bytes::from_static(value),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn stamped(c: &Command) -> Option<u64> {
        match &c.kind {
            Some(Kind::Produce(p)) => p.assigned_offset,
            _ => None,
        }
    }

    #[test]
    fn without_bugs_nothing_is_stamped_or_answered_early() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::new(open_db(dir.path()).unwrap(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut seeded = Seeded::new(&BTreeSet::new());
        let mut c = produce(b"a");
        assert_eq!(seeded.on_propose(&mut c, &mut sm).unwrap(), None);
        assert_eq!(stamped(&c), None);
        assert!(!seeded.acks_early());
    }

    #[test]
    fn ack_before_commit_answers_writes_with_the_offset_apply_will_give() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::new(open_db(dir.path()).unwrap(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut seeded = Seeded::new(&[Bug::AckBeforeCommit].into());
        let (mut a, mut b) = (produce(b"a"), produce(b"b"));
        assert_eq!(
            seeded.on_propose(&mut a, &mut sm).unwrap(),
            Some(Applied::Produced { offset: 0, duplicate: false })
        );
        assert_eq!(
            seeded.on_propose(&mut b, &mut sm).unwrap(),
            Some(Applied::Produced { offset: 1, duplicate: false })
        );
        assert_eq!(stamped(&b), None, "the offset is only predicted");
        let mut put = Command { kind: Some(Kind::Put(cmd::Put::default())), ..Default::default() };
        assert_eq!(seeded.on_propose(&mut put, &mut sm).unwrap(), Some(Applied::Done));
    }

    #[test]
    fn the_bugs_act_on_every_record_of_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::new(open_db(dir.path()).unwrap(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut seeded = Seeded::new(&[Bug::AckBeforeCommit, Bug::OffsetBeforeCommit].into());
        let mut single = produce(b"a");
        seeded.on_propose(&mut single, &mut sm).unwrap();
        let records: Vec<cmd::Produce> = [b"b", b"c"]
            .into_iter()
            .map(|v| cmd::Produce { topic: "t".into(), value: Bytes::from_static(v), ..Default::default() })
            .collect();
        let mut batch = Command { kind: Some(Kind::ProduceBatch(cmd::ProduceBatch { records })), ..Default::default() };
        let produced = |offset| Applied::Produced { offset, duplicate: false };
        assert_eq!(
            seeded.on_propose(&mut batch, &mut sm).unwrap(),
            Some(Applied::Batch(vec![produced(1), produced(2)]))
        );
        let Some(Kind::ProduceBatch(b)) = &batch.kind else { unreachable!() };
        assert_eq!(b.records.iter().map(|p| p.assigned_offset).collect::<Vec<_>>(), [Some(1), Some(2)]);
    }

    #[test]
    fn offset_before_commit_puts_two_records_at_one_offset_after_an_election() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachine::new(db.clone(), 0, BTreeSet::new(), Release::current()).unwrap();
        let mut old_leader = Seeded::new(&[Bug::OffsetBeforeCommit].into());
        let mut new_leader = Seeded::new(&[Bug::OffsetBeforeCommit].into());
        // The new leader was elected before it applied the old leader's last entry.
        let storage = crate::storage::RaftStorage::open(db.clone(), 0, &[]).unwrap();
        let log = RaftLog::new(storage, crate::logging::raft_logger(1, 0));
        new_leader.on_elected(&mut sm, &log).unwrap();
        let (mut a, mut b) = (produce(b"a"), produce(b"b"));
        assert_eq!(old_leader.on_propose(&mut a, &mut sm).unwrap(), None);
        new_leader.on_propose(&mut b, &mut sm).unwrap();
        assert_eq!((stamped(&a), stamped(&b)), (Some(0), Some(0)));
        let mut batch = WriteBatch::default();
        assert_eq!(sm.apply(&mut batch, 1, &a).unwrap(), Applied::Produced { offset: 0, duplicate: false });
        assert_eq!(sm.apply(&mut batch, 2, &b).unwrap(), Applied::Produced { offset: 0, duplicate: false });
    }
}
