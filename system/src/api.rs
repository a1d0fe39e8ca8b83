//! The client-facing gRPC services: `Broker` and `Admin`.
//!
//! Handlers validate input, route it to the raft group that owns it ([`crate::shard`]), and
//! either propose a command or wait for a linearizable read barrier before reading RocksDB.
//! Validation happens before anything is proposed, so a bad request never reaches the log.

use crate::config::{Bug, NodeConfig};
use crate::error::BrokerError;
use crate::fsm::{self, Applied};
use crate::membership;
use crate::node::{GroupHandle, GroupView, PeerTable, Request};
use crate::pb::broker::admin_server::Admin;
use crate::pb::broker::broker_server::Broker;
use crate::pb::broker::*;
use crate::pb::cmd::{self, Command, command::Kind};
use crate::seeded;
use crate::shard;
use crate::storage::StorageError;
use crate::version::Feature;
use rocksdb::DB;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::oneshot;
use tonic::{Request as GrpcRequest, Response, Status};

/// The longest key a register or record may have.
pub const MAX_KEY_BYTES: usize = 4096;
const DEFAULT_FETCH: usize = 1000;
const MAX_FETCH: usize = 10_000;

/// What the services of one node share.
pub struct NodeState {
    /// The node's configuration.
    pub config: Arc<NodeConfig>,
    /// The node's database.
    pub db: Arc<DB>,
    /// The raft groups, indexed by group id.
    pub groups: Arc<Vec<GroupHandle>>,
    /// Set at SIGTERM: new requests are refused.
    pub shutting_down: AtomicBool,
    /// Requests being served, for a graceful stop to wait on.
    pub in_flight: AtomicUsize,
    /// Every known node's address (leader hints, probing members).
    pub peers: PeerTable,
}

/// Counts a request as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl NodeState {
    pub(crate) fn group(&self, group: u32) -> Result<&GroupHandle, BrokerError> {
        self.groups.get(group as usize).ok_or(BrokerError::UnknownGroup(group))
    }

    /// The number of raft groups.
    pub fn group_count(&self) -> u32 {
        self.groups.len() as u32
    }

    pub(crate) fn admit(&self) -> Result<InFlight<'_>, BrokerError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&self.in_flight);
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(BrokerError::ShuttingDown);
        }
        Ok(guard)
    }

    async fn propose(&self, group: u32, kind: Kind) -> Result<Applied, BrokerError> {
        let _guard = self.admit()?;
        let (reply, rx) = oneshot::channel();
        // The loop sets the command format (and the request id) when it proposes.
        let command = Command { version: 0, request_id: 0, proposer: self.config.id, kind: Some(kind) };
        self.group(group)?.send(Request::Propose { command, reply })?;
        match tokio::time::timeout(self.config.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BrokerError::OutcomeUnknown("the raft group stopped".into())),
            Err(_) => Err(BrokerError::OutcomeUnknown(format!("not applied within {:?}", self.config.request_timeout))),
        }
    }

    /// Waits until reading group `group`'s state is linearizable; with `local`, only checks the
    /// group exists (the caller asked for this node's possibly stale state).
    pub(crate) async fn read_barrier(&self, group: u32, local: bool) -> Result<InFlight<'_>, BrokerError> {
        let guard = self.admit()?;
        let handle = self.group(group)?;
        if local || self.config.bugs.contains(&Bug::StaleReads) {
            return Ok(guard);
        }
        let (reply, rx) = oneshot::channel();
        handle.send(Request::Read { reply })?;
        match tokio::time::timeout(self.config.request_timeout, rx).await {
            Ok(Ok(result)) => result.map(|()| guard),
            Ok(Err(_)) | Err(_) => Err(BrokerError::ReadTimeout),
        }
    }

    /// Every group's published view.
    pub fn views(&self) -> Vec<GroupView> {
        self.groups.iter().map(GroupHandle::view).collect()
    }

    /// The `Status` response.
    pub fn status(&self) -> StatusResponse {
        crate::http::node_status(self).into()
    }
}

/// Partitions of a topic are numbered `0..MAX_PARTITIONS`: a partition comes into being with
/// its first record, so an unbounded number would let a typo or a hostile client create state
/// without end.
pub const MAX_PARTITIONS: u32 = 1024;

/// Refuses a partition number outside `0..MAX_PARTITIONS`.
pub fn validate_partition(partition: u32) -> Result<(), BrokerError> {
    if partition >= MAX_PARTITIONS {
        return Err(BrokerError::InvalidArgument(format!(
            "partition {partition} is out of range: partitions are numbered 0 to {}",
            MAX_PARTITIONS - 1
        )));
    }
    Ok(())
}

/// Topic and consumer-group names: Kafka's rule, 1 to 249 of `[A-Za-z0-9._-]`.
pub fn validate_name(what: &str, name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::InvalidArgument(format!("{what} name is empty")));
    }
    if name.len() > 249 {
        return Err(BrokerError::InvalidArgument(format!(
            "{what} name is {} bytes long; the limit is 249",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(BrokerError::InvalidArgument(format!(
            "{what} name {name:?} contains {c:?}; allowed are letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn validate_record(config: &NodeConfig, key: &[u8], value: &[u8]) -> Result<(), BrokerError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(BrokerError::InvalidArgument(format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len())));
    }
    let size = key.len() + value.len();
    if size > config.max_record_bytes {
        return Err(BrokerError::InvalidArgument(format!(
            "record is {size} bytes; the limit is {} (--max-record-bytes)",
            config.max_record_bytes
        )));
    }
    Ok(())
}

/// Checks a produce and makes its command; returns the group it belongs to.
fn produce_command(state: &NodeState, r: ProduceRequest) -> Result<(u32, cmd::Produce), BrokerError> {
    validate_name("topic", &r.topic)?;
    validate_partition(r.partition)?;
    validate_record(&state.config, &r.key, &r.value)?;
    let group = shard::group_of_partition(&r.topic, r.partition, state.group_count());
    let produce = cmd::Produce {
        topic: r.topic,
        partition: r.partition,
        key: r.key,
        value: r.value,
        producer_id: r.producer_id,
        sequence: r.sequence,
        timestamp_ms: now_ms(),
        assigned_offset: None,
    };
    Ok((group, produce))
}

/// The most records one produce batch may carry.
pub const MAX_BATCH_RECORDS: usize = 1024;

/// A produce batch, checked record by record.
struct CheckedBatch {
    /// The group of its valid records; none when no record is valid.
    group: Option<u32>,
    /// A result per record, in which the invalid records' refusals are already set.
    results: Vec<ProduceResult>,
    /// The valid records' commands, with their positions in the batch.
    produces: Vec<(usize, cmd::Produce)>,
}

/// Checks a produce batch. Refuses it whole when it is empty, too long, or spans groups.
fn batch_commands(state: &NodeState, records: Vec<ProduceRequest>) -> Result<CheckedBatch, BrokerError> {
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        let n = records.len();
        return Err(BrokerError::InvalidArgument(format!("a batch holds 1 to {MAX_BATCH_RECORDS} records, not {n}")));
    }
    let mut results = vec![ProduceResult::default(); records.len()];
    let mut produces = Vec::with_capacity(records.len());
    let mut group = None;
    for (i, r) in records.into_iter().enumerate() {
        if r.producer_id == 0 {
            results[i] = refused(BrokerError::InvalidArgument("a batched record needs a producer id".into()));
            continue;
        }
        match produce_command(state, r) {
            Ok((g, _)) if group.is_some_and(|first| first != g) => {
                return Err(BrokerError::InvalidArgument("the records of a batch span raft groups".into()));
            }
            Ok((g, p)) => {
                group = Some(g);
                produces.push((i, p));
            }
            Err(e) => results[i] = refused(e),
        }
    }
    Ok(CheckedBatch { group, results, produces })
}

fn refused(e: BrokerError) -> ProduceResult {
    ProduceResult { offset: 0, duplicate: false, error: Some(e.to_detail()) }
}

fn storage_failure(e: StorageError) -> Status {
    tracing::error!("read failed: {e}");
    Status::internal(format!("storage: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn unexpected(applied: Applied) -> Status {
    match applied {
        Applied::Rejected(reason) => BrokerError::InvalidArgument(reason).into(),
        other => Status::internal(format!("unexpected apply result {other:?}")),
    }
}

/// The `Broker` service.
pub struct BrokerService(pub Arc<NodeState>);

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(&self, request: GrpcRequest<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        let (group, produce) = produce_command(&self.0, request.into_inner())?;
        match self.0.propose(group, Kind::Produce(produce)).await? {
            Applied::Produced { offset, duplicate } => Ok(Response::new(ProduceResponse { offset, duplicate })),
            other => Err(unexpected(other)),
        }
    }

    async fn produce_batch(
        &self,
        request: GrpcRequest<ProduceBatchRequest>,
    ) -> Result<Response<ProduceBatchResponse>, Status> {
        // What an older release says, since it has no such call: the client then sends the
        // records one by one. Likewise until the group's cluster version has the feature, so
        // that no member ever meets an entry it cannot read.
        if !Feature::ProduceBatch.in_release(&self.0.config.release) {
            return Err(Status::unimplemented("produce batches need release 3"));
        }
        let CheckedBatch { group, mut results, produces } = batch_commands(&self.0, request.into_inner().records)?;
        let Some(group) = group else {
            return Ok(Response::new(ProduceBatchResponse { results }));
        };
        let cluster = self.0.group(group)?.cluster_version();
        if !Feature::ProduceBatch.on(cluster) {
            return Err(Status::unimplemented(format!("group {group} is at cluster version {cluster}, below 3")));
        }
        let (positions, records): (Vec<usize>, Vec<cmd::Produce>) = produces.into_iter().unzip();
        let applied = match self.0.propose(group, Kind::ProduceBatch(cmd::ProduceBatch { records })).await? {
            Applied::Batch(applied) if applied.len() == positions.len() => applied,
            other => return Err(unexpected(other)),
        };
        for (i, a) in positions.into_iter().zip(applied) {
            results[i] = match a {
                Applied::Produced { offset, duplicate } => ProduceResult { offset, duplicate, error: None },
                Applied::Rejected(why) => refused(BrokerError::InvalidArgument(why)),
                other => return Err(unexpected(other)),
            };
        }
        Ok(Response::new(ProduceBatchResponse { results }))
    }

    async fn fetch(&self, request: GrpcRequest<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let r = request.into_inner();
        validate_name("topic", &r.topic)?;
        validate_partition(r.partition)?;
        let group = shard::group_of_partition(&r.topic, r.partition, self.0.group_count());
        let _guard = self.0.read_barrier(group, r.local).await?;
        let max = match r.max_records as usize {
            0 => DEFAULT_FETCH,
            n => n.min(MAX_FETCH),
        };
        let read = || fsm::read::fetch(&self.0.db, group, &r.topic, r.partition, r.from_offset, max);
        let (records, high_watermark) = self.0.group(group)?.read_state(read).map_err(storage_failure)?;
        Ok(Response::new(FetchResponse { records, high_watermark }))
    }

    async fn commit_offsets(
        &self,
        request: GrpcRequest<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let r = request.into_inner();
        validate_name("consumer group", &r.group)?;
        for o in &r.offsets {
            validate_name("topic", &o.topic)?;
            validate_partition(o.partition)?;
        }
        let group = shard::group_of_consumer_group(&r.group, self.0.group_count());
        let offsets = r
            .offsets
            .into_iter()
            .map(|o| cmd::PartitionOffset { topic: o.topic, partition: o.partition, offset: o.offset })
            .collect();
        let commit = cmd::CommitOffsets { group: r.group, offsets };
        if self.0.config.bugs.contains(&Bug::LocalOffsets) {
            seeded::commit_offsets_locally(&self.0, group, &commit).await?;
            return Ok(Response::new(CommitOffsetsResponse {}));
        }
        match self.0.propose(group, Kind::CommitOffsets(commit)).await? {
            Applied::Done => Ok(Response::new(CommitOffsetsResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn list_committed_offsets(
        &self,
        request: GrpcRequest<ListCommittedOffsetsRequest>,
    ) -> Result<Response<ListCommittedOffsetsResponse>, Status> {
        let r = request.into_inner();
        validate_name("consumer group", &r.group)?;
        let group = shard::group_of_consumer_group(&r.group, self.0.group_count());
        let _guard = self.0.read_barrier(group, false).await?;
        let read = || fsm::read::committed_offsets(&self.0.db, group, &r.group);
        match self.0.group(group)?.read_state(read).map_err(storage_failure)? {
            Some(offsets) => Ok(Response::new(ListCommittedOffsetsResponse { offsets })),
            None => Err(BrokerError::UnknownConsumerGroup(r.group).into()),
        }
    }

    async fn put(&self, request: GrpcRequest<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.into_inner();
        validate_record(&self.0.config, &r.key, &r.value)?;
        let group = shard::group_of_key(&r.key, self.0.group_count());
        match self.0.propose(group, Kind::Put(cmd::Put { key: r.key, value: r.value })).await? {
            Applied::Done => Ok(Response::new(PutResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn get(&self, request: GrpcRequest<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = request.into_inner();
        validate_record(&self.0.config, &r.key, &[])?;
        let group = shard::group_of_key(&r.key, self.0.group_count());
        let _guard = self.0.read_barrier(group, r.local).await?;
        let read = || fsm::read::register(&self.0.db, group, &r.key);
        let value = self.0.group(group)?.read_state(read).map_err(storage_failure)?;
        Ok(Response::new(GetResponse { found: value.is_some(), value: value.unwrap_or_default() }))
    }

    async fn cas(&self, request: GrpcRequest<CasRequest>) -> Result<Response<CasResponse>, Status> {
        let r = request.into_inner();
        validate_record(&self.0.config, &r.key, &r.value)?;
        let group = shard::group_of_key(&r.key, self.0.group_count());
        let kind = Kind::Cas(cmd::Cas {
            key: r.key,
            expected: r.expected,
            expected_present: r.expected_present,
            value: r.value,
        });
        match self.0.propose(group, kind).await? {
            Applied::Done => Ok(Response::new(CasResponse {})),
            Applied::CasMismatch { current } => Err(BrokerError::CasMismatch { current }.into()),
            other => Err(unexpected(other)),
        }
    }

    async fn status(&self, _request: GrpcRequest<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.0.status()))
    }
}

/// The `Admin` service. Token checks happen in [`check_admin_token`], before it.
pub struct AdminService(pub Arc<NodeState>);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn transfer_leader(
        &self,
        request: GrpcRequest<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let r = request.into_inner();
        let _guard = self.0.admit()?;
        let (reply, rx) = oneshot::channel();
        self.0.group(r.group)?.send(Request::TransferLeader { to: r.to, reply })?;
        match rx.await {
            Ok(result) => result.map(|()| Response::new(TransferLeaderResponse {})).map_err(Status::from),
            Err(_) => Err(BrokerError::ShuttingDown.into()),
        }
    }

    async fn add_learner(
        &self,
        request: GrpcRequest<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Ok(Response::new(membership::add_learner(&self.0, request.into_inner()).await?))
    }

    async fn promote(&self, request: GrpcRequest<PromoteRequest>) -> Result<Response<MembershipResponse>, Status> {
        Ok(Response::new(membership::promote(&self.0, request.into_inner()).await?))
    }

    async fn remove_node(
        &self,
        request: GrpcRequest<RemoveNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Ok(Response::new(membership::remove_node(&self.0, request.into_inner()).await?))
    }

    async fn members(&self, request: GrpcRequest<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(membership::members(&self.0, request.into_inner()).await?))
    }
}

/// An interceptor that admits admin calls carrying `authorization: Bearer <token>`.
pub fn check_admin_token(token: Option<String>) -> impl Fn(GrpcRequest<()>) -> Result<GrpcRequest<()>, Status> + Clone {
    move |request| {
        let Some(expected) = &token else {
            return Ok(request);
        };
        let presented = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match presented.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => Ok(request),
            _ => Err(BrokerError::Unauthenticated.into()),
        }
    }
}

/// Compares secrets in time that depends on their length only, not on where they first differ
/// (`==` stops at the first difference, which a caller can time byte by byte).
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len() && presented.iter().zip(expected).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
