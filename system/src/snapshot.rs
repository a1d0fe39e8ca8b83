//! Raft snapshots of a group's state machine: made from RocksDB checkpoints, streamed to a peer in
//! chunks over their own gRPC stream, written beside the live data as an SST file, and switched
//! in by ingesting that file.
//!
//! Making one ([`Generator`]) happens off the Ready loop: raft-rs asks `Storage::snapshot`
//! synchronously, so the first ask starts a thread that takes a checkpoint (a flush and hard
//! links) and reads the applied index, its term and the configuration from it; until it is
//! ready raft-rs hears "temporarily unavailable" and asks again with the next heartbeat. The
//! snapshot's `data` only names the checkpoint ([`SnapshotHeader`]); the state never sits in a
//! raft message.
//!
//! Sending ([`spawn_send`]): the loop hands every `MsgSnapshot` to a task that streams the
//! group's keys from the checkpoint in chunks of about [`CHUNK_BYTES`] (a bounded queue, so
//! memory stays bounded), then reports the outcome to raft (`report_snapshot`).
//!
//! Receiving ([`receive`]): the pairs go into an SST file under `snap-in/`; only once it is
//! complete is the raft message handed to the group, its `data` naming the file. A transfer
//! that breaks off leaves a partial file, which the next start removes.
//!
//! Installing ([`switch_in`]): a marker naming the file is written (synced) first; then the
//! group's old state and log are deleted and the file is ingested (one atomic step in RocksDB);
//! then the marker is deleted. A node that finds a marker at start repeats the switch from the
//! file, so a crash at any point leaves it either on its old state or on the new one.

use crate::metrics::Metrics;
use crate::node::{GroupHandle, Request};
use crate::pb::broker::raft_client::RaftClient;
use crate::pb::broker::{SnapshotAck, SnapshotChunk};
use crate::pb::cmd::{SnapshotHeader, SnapshotInstall};
use crate::storage::{StorageError, decode_u64, keys};
use bytes::Bytes;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
use rocksdb::{
    DB, Direction, IngestExternalFileOptions, IteratorMode, Options, SstFileWriter, WriteBatch, WriteOptions,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};

/// The version of [`SnapshotHeader`], [`SnapshotInstall`] and the chunk stream.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The chunk stream has not changed since wire version 1: it is sent as 1, which every release
/// reads, and received in any version this build speaks.
const WIRE_VERSION: u32 = 1;
/// About this many bytes of pairs per chunk.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Chunks queued between reading the checkpoint and the network, on either side.
const CHUNKS_QUEUED: usize = 4;
/// The longest wait for one chunk to move (either side), and for connecting.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// A generated snapshot older than this is made again rather than sent.
const MAX_AGE: Duration = Duration::from_secs(60);

/// Where outgoing checkpoints live: beside the live data, on the same file system (checkpoints
/// are hard links), outside RocksDB's own directory.
pub fn outgoing_dir(data_dir: &Path) -> PathBuf {
    snapshots_dir(data_dir).join("out")
}

/// Where incoming snapshot files live.
pub fn incoming_dir(data_dir: &Path) -> PathBuf {
    snapshots_dir(data_dir).join("in")
}

fn snapshots_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".snapshots");
    PathBuf::from(name)
}

/// The directory RocksDB keeps the live data in.
fn data_dir(db: &DB) -> PathBuf {
    db.path().to_path_buf()
}

fn io_error(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Corrupt { key: path.display().to_string(), what: e.to_string() }
}

/// The keys a group's snapshot holds, in key order: applied index, conf state, addresses, then
/// the state machine.
fn snapshot_keys(group: u32) -> [Vec<u8>; 3] {
    [keys::applied(group).to_vec(), keys::conf_state(group).to_vec(), keys::peers(group).to_vec()]
}

fn in_snapshot(group: u32, key: &[u8]) -> bool {
    let (lo, hi) = keys::state_range(group);
    snapshot_keys(group).iter().any(|k| k == key) || (key >= &lo[..] && key < &hi[..])
}

// ---------------------------------------------------------------------------------------------
// Making a snapshot (the leader)

#[derive(Default)]
struct Slot {
    generating: bool,
    ready: Option<(Instant, Snapshot)>,
    failed: Option<String>,
}

/// Makes snapshots of one group in the background; see the module docs.
#[derive(Clone)]
pub struct Generator {
    db: Arc<DB>,
    group: u32,
    slot: Arc<Mutex<Slot>>,
}

impl Generator {
    /// A generator for `group`.
    pub fn new(db: Arc<DB>, group: u32) -> Generator {
        Generator { db, group, slot: Arc::default() }
    }

    /// A snapshot at `request_index` or later if one is ready (it is handed out once); otherwise
    /// starts making one and returns `None`.
    pub fn poll(&self, request_index: u64) -> Option<Snapshot> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((made, snap)) = slot.ready.take() {
            if made.elapsed() < MAX_AGE && snap.get_metadata().index >= request_index.max(1) {
                return Some(snap);
            }
            remove_dir(&header_path(&snap));
        }
        if !slot.generating {
            slot.generating = true;
            let this = self.clone();
            std::thread::spawn(move || this.generate());
        }
        None
    }

    /// A failure to make a snapshot, once: a storage error, which stops the node.
    pub fn take_failure(&self) -> Option<StorageError> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.failed.take().map(|what| StorageError::Corrupt { key: format!("snapshot of group {}", self.group), what })
    }

    fn generate(&self) {
        let result = self.checkpoint();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.generating = false;
        match result {
            Ok(Some(snap)) => slot.ready = Some((Instant::now(), snap)),
            Ok(None) => {}
            Err(e) => slot.failed = Some(e.to_string()),
        }
    }

    /// Takes a checkpoint and reads the snapshot's metadata from it.
    fn checkpoint(&self) -> Result<Option<Snapshot>, StorageError> {
        let dir = outgoing_dir(&data_dir(&self.db));
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("g{}-{nanos}", self.group));
        // The checkpoint flushes the memtables first: applied state is written without the WAL.
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(&path)?;
        let cp = DB::open_for_read_only(&Options::default(), &path, false)?;
        let applied = match cp.get(keys::applied(self.group))? {
            Some(v) => decode_u64(&keys::applied(self.group), &v)?,
            None => 0,
        };
        let term = term_in(&cp, self.group, applied)?;
        let conf: ConfState = match cp.get(keys::conf_state(self.group))? {
            Some(v) => ConfState::parse_from_bytes(&v).map_err(|e| corrupt_key(&keys::conf_state(self.group), e))?,
            None => ConfState::default(),
        };
        drop(cp);
        if applied == 0 {
            // Nothing applied yet: raft-rs refuses an empty snapshot.
            remove_dir(&path);
            return Ok(None);
        }
        let header = SnapshotHeader { version: SNAPSHOT_VERSION, path: path.display().to_string() };
        let mut snap = Snapshot { data: header.encode_to_vec().into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(conf);
        tracing::info!(group = self.group, index = applied, term, "snapshot made");
        Ok(Some(snap))
    }
}

fn corrupt_key(key: &[u8], e: impl ToString) -> StorageError {
    StorageError::Corrupt { key: key.escape_ascii().to_string(), what: e.to_string() }
}

/// The term of entry `index` as the checkpoint `cp` holds it (the log, or its compaction point).
fn term_in(cp: &DB, group: u32, index: u64) -> Result<u64, StorageError> {
    if let Some(v) = cp.get(keys::log(group, index))? {
        let e = Entry::parse_from_bytes(&v).map_err(|e| corrupt_key(&keys::log(group, index), e))?;
        return Ok(e.term);
    }
    let t = keys::truncated(group);
    match cp.get(t)? {
        Some(v) if v.len() == 16 && decode_u64(&t, &v[..8])? == index => decode_u64(&t, &v[8..]),
        _ => Err(corrupt_key(&keys::log(group, index), "applied entry is neither in the log nor its compaction point")),
    }
}

fn header_path(snap: &Snapshot) -> PathBuf {
    PathBuf::from(SnapshotHeader::decode(&snap.data[..]).map(|h| h.path).unwrap_or_default())
}

fn remove_dir(path: &Path) {
    if !path.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(path);
    }
}

// ---------------------------------------------------------------------------------------------
// Sending (the leader)

/// What a sending task needs.
pub struct SendContext {
    /// This node.
    pub from: u64,
    /// The peer's gRPC address.
    pub address: String,
    /// The group's loop, told the outcome.
    pub done: SyncSender<Request>,
    /// Counts snapshots sent.
    pub metrics: Arc<Metrics>,
}

/// Streams the snapshot in `msg` to its peer on `runtime`, then tells the loop how it went.
pub fn spawn_send(runtime: &tokio::runtime::Handle, ctx: SendContext, group: u32, msg: Message) {
    runtime.spawn(async move {
        let to = msg.to;
        let checkpoint = header_path(msg.get_snapshot());
        let started = Instant::now();
        let result = send(&ctx, group, msg, &checkpoint).await;
        let _ = tokio::task::spawn_blocking(move || remove_dir(&checkpoint)).await;
        let ok = match result {
            Ok(bytes) => {
                ctx.metrics.observe_snapshot_sent(bytes, started.elapsed());
                tracing::info!(to, group, bytes, elapsed = ?started.elapsed(), "snapshot sent");
                true
            }
            Err(e) => {
                ctx.metrics.snapshots_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(to, group, "snapshot not sent: {e}");
                false
            }
        };
        // Blocking, not try_send: a lost report would leave raft waiting on this peer's
        // snapshot for good. The queue drains quickly, so the wait is short.
        let done = ctx.done.clone();
        let _ = tokio::task::spawn_blocking(move || done.send(Request::SnapshotSent { to, ok }).is_ok()).await;
    });
}

async fn send(ctx: &SendContext, group: u32, mut msg: Message, checkpoint: &Path) -> Result<u64, String> {
    // The receiver names its own file; the sender's path means nothing there.
    msg.mut_snapshot().data = Bytes::new();
    let header = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let endpoint = Endpoint::from_shared(format!("http://{}", ctx.address))
        .map_err(|e| e.to_string())?
        .connect_timeout(CHUNK_TIMEOUT)
        .tcp_nodelay(true)
        // A receiver that stops answering (paused, partitioned) fails the stream instead of
        // holding it, and the checkpoint, forever.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = tokio::time::timeout(CHUNK_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let first = SnapshotChunk {
        wire_version: WIRE_VERSION,
        from: ctx.from,
        to: msg.to,
        group,
        header: header.into(),
        ..Default::default()
    };
    tx.send(first).await.map_err(|_| "stream closed".to_string())?;
    let path = checkpoint.to_path_buf();
    let runtime = tokio::runtime::Handle::current();
    let reader = tokio::task::spawn_blocking(move || stream_pairs(&path, group, tx, &runtime));
    let mut client = RaftClient::new(channel).max_encoding_message_size(crate::transport::MAX_PEER_MESSAGE_BYTES);
    // A failed call returns at once: the reader may be waiting on a queue that the transport
    // has not dropped yet (its own waits are bounded), and raft must hear of the failure now.
    client.snapshot(ReceiverStream::new(rx)).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    reader.await.map_err(|e| e.to_string())?
}

/// Reads the group's pairs from the checkpoint into chunks; returns the bytes sent.
fn stream_pairs(
    checkpoint: &Path,
    group: u32,
    tx: mpsc::Sender<SnapshotChunk>,
    runtime: &tokio::runtime::Handle,
) -> Result<u64, String> {
    let cp = DB::open_for_read_only(&Options::default(), checkpoint, false).map_err(|e| e.to_string())?;
    let mut chunk = SnapshotChunk::default();
    let (mut size, mut total, mut pairs) = (0usize, 0u64, 0u64);
    let push = |chunk: SnapshotChunk| match runtime.block_on(tokio::time::timeout(CHUNK_TIMEOUT, tx.send(chunk))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the stream ended early".to_string()),
        Err(_) => Err("the peer took no chunk for 30 s".to_string()),
    };
    let singles = snapshot_keys(group)
        .into_iter()
        .filter_map(|k| cp.get(&k).ok().flatten().map(|v| Ok((k.into_boxed_slice(), v.into_boxed_slice()))));
    let (lo, hi) = keys::state_range(group);
    // A sequential scan of data read once: read ahead, and keep it out of the block cache.
    let mut read = rocksdb::ReadOptions::default();
    read.set_readahead_size(4 * CHUNK_BYTES);
    read.fill_cache(false);
    let state = cp.iterator_opt(IteratorMode::From(&lo, Direction::Forward), read).take_while(|item| match item {
        Ok((k, _)) => k[..] < hi[..],
        Err(_) => true,
    });
    for item in singles.chain(state) {
        let (k, v) = item.map_err(|e: rocksdb::Error| e.to_string())?;
        size += k.len() + v.len();
        total += (k.len() + v.len()) as u64;
        pairs += 1;
        chunk.keys.push(Bytes::from(k.into_vec()));
        chunk.values.push(Bytes::from(v.into_vec()));
        if size >= CHUNK_BYTES {
            push(std::mem::take(&mut chunk))?;
            size = 0;
        }
    }
    chunk.done = true;
    chunk.total_pairs = pairs;
    push(chunk)?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Receiving (the follower or learner)

/// What the receiving side needs.
pub struct Inbox {
    /// This node.
    pub id: u64,
    /// Where incoming files go.
    pub dir: PathBuf,
    /// Counts snapshots received.
    pub metrics: Arc<Metrics>,
}

/// Receives one snapshot stream into a file, then hands its message to the group.
pub async fn receive(
    inbox: &Inbox,
    groups: &[GroupHandle],
    mut stream: Streaming<SnapshotChunk>,
) -> Result<SnapshotAck, Status> {
    let started = Instant::now();
    let first = next_chunk(&mut stream).await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
    if first.wire_version == 0 || first.wire_version > crate::version::Release::current().wire_max {
        return Err(Status::failed_precondition(format!(
            "peer protocol version {} is not supported",
            first.wire_version
        )));
    }
    let group = groups
        .get(first.group as usize)
        .ok_or_else(|| Status::not_found(format!("unknown raft group {}", first.group)))?;
    let mut msg = Message::parse_from_bytes(&first.header)
        .map_err(|e| Status::invalid_argument(format!("undecodable snapshot header: {e}")))?;
    if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != inbox.id {
        return Err(Status::invalid_argument("the header is not a snapshot for this node"));
    }
    let meta = msg.get_snapshot().get_metadata();
    std::fs::create_dir_all(&inbox.dir).map_err(|e| Status::internal(e.to_string()))?;
    let name = format!("g{}-{}-{}-{}.sst", first.group, meta.index, meta.term, msg.from);
    let path = inbox.dir.join(name);
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let (g, tmp) = (first.group, path.with_extension("tmp"));
    let writer = tokio::task::spawn_blocking(move || write_file(&tmp, g, rx));
    let mut bytes = 0u64;
    loop {
        let Some(chunk) = next_chunk(&mut stream).await? else {
            return Err(Status::invalid_argument("the snapshot stream ended before its last chunk"));
        };
        bytes += chunk.keys.iter().chain(&chunk.values).map(|b| b.len() as u64).sum::<u64>();
        let done = chunk.done;
        if tx.send(chunk).await.is_err() {
            break;
        }
        if done {
            break;
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| e.to_string()).and_then(|r| r);
    if let Err(e) = written.and_then(|()| std::fs::rename(path.with_extension("tmp"), &path).map_err(|e| e.to_string()))
    {
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        return Err(Status::invalid_argument(format!("snapshot not written: {e}")));
    }
    inbox.metrics.observe_snapshot_received(bytes, started.elapsed());
    tracing::info!(from = msg.from, group = g, bytes, elapsed = ?started.elapsed(), "snapshot received");
    let header = SnapshotHeader { version: SNAPSHOT_VERSION, path: path.display().to_string() };
    msg.mut_snapshot().data = header.encode_to_vec().into();
    group.send(Request::Raft(Box::new(msg))).map_err(Status::from)?;
    Ok(SnapshotAck {})
}

async fn next_chunk(stream: &mut Streaming<SnapshotChunk>) -> Result<Option<SnapshotChunk>, Status> {
    tokio::time::timeout(CHUNK_TIMEOUT, stream.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no snapshot chunk within 30 s"))?
}

/// Writes the pairs of every chunk into an SST file at `path`, checking that each belongs to the
/// group's snapshot and that they come in key order.
fn write_file(path: &Path, group: u32, mut rx: mpsc::Receiver<SnapshotChunk>) -> Result<(), String> {
    // Uncompressed: the file is read once, by the ingestion, and compressing it costs the
    // transfer's CPU; RocksDB's own compactions compress it later.
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let mut sst = SstFileWriter::create(&opts);
    sst.open(path).map_err(|e| e.to_string())?;
    let mut last: Vec<u8> = Vec::new();
    let mut pairs = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        if chunk.keys.len() != chunk.values.len() {
            return Err("a chunk has more keys than values".into());
        }
        for (k, v) in chunk.keys.iter().zip(&chunk.values) {
            if !in_snapshot(group, k) || (pairs > 0 && k[..] <= last[..]) {
                return Err(format!("key {} is out of order or not the group's", k.escape_ascii()));
            }
            sst.put(k, v).map_err(|e| e.to_string())?;
            last.clear();
            last.extend_from_slice(k);
            pairs += 1;
        }
        if chunk.done {
            if chunk.total_pairs != pairs {
                return Err(format!("{pairs} pairs arrived of {}", chunk.total_pairs));
            }
            if pairs == 0 {
                return Err("an empty snapshot".into());
            }
            // finish() syncs the file.
            return sst.finish().map_err(|e| e.to_string());
        }
    }
    Err("the snapshot stream ended before its last chunk".into())
}

// ---------------------------------------------------------------------------------------------
// Installing (the follower or learner)

/// Switches group `group` over to the snapshot in `snap` (see the module docs).
pub fn install(db: &DB, group: u32, snap: &Snapshot) -> Result<(), StorageError> {
    let path = header_path(snap);
    let meta = snap.get_metadata();
    let marker = SnapshotInstall {
        version: SNAPSHOT_VERSION,
        path: path.display().to_string(),
        index: meta.index,
        term: meta.term,
    };
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.put_opt(keys::installing(group), marker.encode_to_vec(), &opts)?;
    switch_in(db, group, &marker)
}

/// The switch itself; repeated from the marker after a crash.
fn switch_in(db: &DB, group: u32, m: &SnapshotInstall) -> Result<(), StorageError> {
    let path = PathBuf::from(&m.path);
    if !path.is_file() {
        return Err(io_error(&path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    clear(db, group, m)?;
    // RocksDB moves (links, then unlinks) a second hard link of the file: no copy, and if the
    // marker outlives a crash the file is still there under its own name to repeat from.
    let link = path.with_extension("ingest");
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(&path, &link).map_err(|e| io_error(&link, e))?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_opts(&ingest, vec![&link])?;
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.delete_opt(keys::installing(group), &sync)?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Deletes the group's state and log, and sets the compaction point to the snapshot's.
fn clear(db: &DB, group: u32, m: &SnapshotInstall) -> Result<(), StorageError> {
    let mut batch = WriteBatch::default();
    let (lo, hi) = keys::state_range(group);
    batch.delete_range(lo, hi);
    batch.delete_range(keys::log(group, 0), keys::log(group, u64::MAX));
    let mut truncated = m.index.to_be_bytes().to_vec();
    truncated.extend_from_slice(&m.term.to_be_bytes());
    batch.put(keys::truncated(group), truncated);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    Ok(())
}

/// At start: finishes an install a crash interrupted, and removes every other snapshot file
/// (partial transfers, checkpoints of sends that were under way).
pub fn recover(db: &DB, group: u32) -> Result<(), StorageError> {
    let Some(v) = db.get(keys::installing(group))? else {
        return Ok(());
    };
    let marker = SnapshotInstall::decode(&v[..]).map_err(|e| corrupt_key(&keys::installing(group), e))?;
    tracing::warn!(group, index = marker.index, "finishing a snapshot install that a crash interrupted");
    switch_in(db, group, &marker)
}

/// Removes snapshot files no install marker names; call after [`recover`] for every group.
pub fn remove_leftovers(data_dir: &Path) {
    remove_dir(&snapshots_dir(data_dir));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open_db;

    /// A database with group 0 at applied index 5 (state `old`), and a snapshot file of it at
    /// index 10 (state `new`), beside it.
    fn setup(dir: &Path) -> (Arc<DB>, SnapshotInstall) {
        let db = open_db(&dir.join("data")).unwrap();
        db.put(keys::applied(0), 5u64.to_be_bytes()).unwrap();
        db.put(keys::state(0, b'K', &[b"old"]), b"1").unwrap();
        db.put(keys::log(0, 5), b"entry").unwrap();
        let path = dir.join("snap.sst");
        let opts = Options::default();
        let mut sst = SstFileWriter::create(&opts);
        sst.open(&path).unwrap();
        sst.put(keys::applied(0), 10u64.to_be_bytes()).unwrap();
        sst.put(keys::state(0, b'K', &[b"new"]), b"2").unwrap();
        sst.finish().unwrap();
        let marker =
            SnapshotInstall { version: SNAPSHOT_VERSION, path: path.display().to_string(), index: 10, term: 3 };
        db.put(keys::installing(0), marker.encode_to_vec()).unwrap();
        (db, marker)
    }

    fn check_switched(db: &DB) {
        assert_eq!(db.get(keys::applied(0)).unwrap().unwrap(), 10u64.to_be_bytes());
        assert_eq!(db.get(keys::state(0, b'K', &[b"old"])).unwrap(), None);
        assert_eq!(db.get(keys::state(0, b'K', &[b"new"])).unwrap().unwrap(), b"2");
        assert_eq!(db.get(keys::log(0, 5)).unwrap(), None);
        assert_eq!(db.get(keys::installing(0)).unwrap(), None, "the marker goes last");
        let t = db.get(keys::truncated(0)).unwrap().unwrap();
        assert_eq!((&t[..8], &t[8..]), (&10u64.to_be_bytes()[..], &3u64.to_be_bytes()[..]));
    }

    #[test]
    fn a_crash_between_clearing_and_ingesting_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        clear(&db, 0, &marker).unwrap();
        drop(db);
        let db = open_db(&dir.path().join("data")).unwrap();
        recover(&db, 0).unwrap();
        check_switched(&db);
    }

    #[test]
    fn a_crash_after_ingesting_repeats_the_switch_harmlessly() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        clear(&db, 0, &marker).unwrap();
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(false);
        db.ingest_external_file_opts(&ingest, vec![&marker.path]).unwrap();
        drop(db);
        let db = open_db(&dir.path().join("data")).unwrap();
        recover(&db, 0).unwrap();
        check_switched(&db);
        assert!(!Path::new(&marker.path).exists(), "the file is removed once switched in");
    }

    #[test]
    fn keys_of_other_groups_or_out_of_order_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let chunk = |k: Vec<u8>| SnapshotChunk {
            keys: vec![k.into()],
            values: vec![Bytes::from_static(b"v")],
            ..Default::default()
        };
        tx.try_send(chunk(keys::state(1, b'K', &[b"x"]))).unwrap();
        drop(tx);
        let err = write_file(&dir.path().join("a.sst"), 0, rx).unwrap_err();
        assert!(err.contains("not the group's"), "{err}");
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(chunk(keys::state(0, b'K', &[b"b"]))).unwrap();
        tx.try_send(chunk(keys::state(0, b'K', &[b"a"]))).unwrap();
        drop(tx);
        assert!(write_file(&dir.path().join("b.sst"), 0, rx).unwrap_err().contains("out of order"));
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(chunk(keys::state(0, b'K', &[b"a"]))).unwrap();
        drop(tx);
        assert!(write_file(&dir.path().join("c.sst"), 0, rx).unwrap_err().contains("ended before its last chunk"));
    }
}
