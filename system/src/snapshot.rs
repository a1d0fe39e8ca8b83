//! Raft snapshots of a group's state machine: written by the leader into one compressed SST file,
//! streamed to a peer as that file's bytes over their own gRPC stream, written beside the peer's
//! live data, and switched in by ingesting the file.
//!
//! Making one ([`Generator`]) happens off the Ready loop, on a thread of lowered CPU priority:
//! raft-rs asks `Storage::snapshot` synchronously, so the first ask starts a thread that reads the
//! applied index, its term, the configuration and the group's keys from one RocksDB snapshot (a
//! consistent view that needs no flush) and writes them into an LZ4-compressed SST file; until
//! that file is open raft-rs hears "temporarily unavailable" and asks again with the next
//! heartbeat. The file is made in memory ([`in_memory`]: a memfd, bounded by its sender's
//! progress), except for format 1 streams, whose file is on the disk. The snapshot's `data` only
//! names the file ([`SnapshotHeader`]); the state never sits in a raft message. The file is made
//! once and then moved as it is (the layout TiKV uses): neither side decodes or re-encodes a pair
//! while it travels, and compressible state moves compressed.
//!
//! Sending ([`spawn_send`]): the loop hands every `MsgSnapshot` to a task that streams the file
//! in chunks of [`CHUNK_BYTES`] (a bounded queue, so memory stays bounded), then reports the
//! outcome to raft (`report_snapshot`). The file is streamed while it is being written (an SST
//! file is written front to back; its index and footer come last), so making and moving it
//! overlap; a writer that fails fails the stream. Transfers run on their own runtime at lowered
//! priority (both sides). The file is read once: behind the sender it is punched out of memory
//! (or, on the disk, written out and dropped from the page cache) a chunk at a time
//! ([`DropBehind`]).
//!
//! Receiving ([`receive`]): a node takes [`MAX_INCOMING_STREAMS`] at once ([`StreamSlots`]), each
//! with [`RECEIVE_QUEUED`] chunks queued at most; the bytes go into a file under `snap-in/`,
//! written around the page cache where the file system allows ([`Sink`]), then synced, then
//! checked ([`check_written`]):
//! its bytes against the CRC-32 the sender's last chunk carries, its structure and its first and
//! last keys; from an older sender, without a CRC, every block and every key; either way, that the
//! applied index and configuration it records are the stream header's ([`FileMeta`]). Only then
//! is the raft message handed to the group, its `data` naming the file. A transfer that breaks off
//! leaves a partial file, which the next start removes.
//!
//! Formats: the SST file's bytes are stream format 2, which release 1 cannot read. Until the
//! cluster version reaches 2 ([`crate::version::snapshot_format`]) a leader streams format 1
//! instead, the file's key-value pairs, and the receiver writes them into an SST itself; a node
//! of release 1 (or emulating it) refuses a format 2 stream before writing any of it.
//!
//! Installing ([`switch_in`]): a marker naming the file is written (synced) first; then the
//! group's old state and log are deleted and the file is ingested (one atomic step in RocksDB);
//! then the marker is deleted. A node that finds a marker at start finishes the switch
//! ([`recover`]): from the file, given back the bytes it was received with if an ingest cut short
//! had written into it, or only by deleting the marker if the ingest was done; so a crash at any
//! point leaves it either on its old state or on the new one.

use crate::metrics::Metrics;
use crate::node::{GroupHandle, Request};
use crate::pb::broker::raft_client::RaftClient;
use crate::pb::broker::{FileSummary, SnapshotAck, SnapshotChunk};
use crate::pb::cmd::{SnapshotHeader, SnapshotInstall};
use crate::storage::{StorageError, decode_u64, keys};
use bytes::{Bytes, BytesMut};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata};
use rocksdb::{
    DB, DBCompressionType, Direction, IngestExternalFileOptions, IteratorMode, Options, ReadOptions,
    SnapshotWithThreadMode, SstFileWriter, WriteBatch, WriteOptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// The version of [`SnapshotHeader`], [`SnapshotInstall`] and the newest chunk stream this build
/// writes. 2: the stream carries an SST file's bytes; 1: key-value pairs. Which one a leader
/// sends is the cluster version's choice ([`crate::version::snapshot_format`]).
pub const SNAPSHOT_VERSION: u32 = 2;
/// The chunk stream's envelope has not changed since wire version 1 (its content is told apart by
/// `snapshot_version`): it is sent as 1, which every release reads, and received in any version
/// this build speaks.
const WIRE_VERSION: u32 = 1;
/// Bytes per chunk. Each chunk costs a hop to a blocking thread and a gRPC message, so small ones
/// move slowly (256 KB: ~190 MB/s of 200 MB, against ~420 MB/s at 1 MB); each is also a burst of
/// copying, encrypting and writing on both ends that holds up the voters' work on a small machine,
/// so large ones cost the load's tail (4 MB: p99 ~14 ms during a catch-up, 1 MB: ~10 ms; figures
/// in docs/benchmarks.md). Within the 8 MB stream window of the receiving node's port.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Read-ahead of the sequential scans of a snapshot (making it, checking it).
const READAHEAD_BYTES: usize = 4 * 1024 * 1024;
/// Chunks queued between the file and the network on the sending side: 16 MB, also what an
/// in-memory file may hold ahead of its sender.
const CHUNKS_QUEUED: usize = 16;
/// Chunks queued between the network and the file's writer on the receiving side. The sender's
/// chunks are 1 MB, but a peer's message may be as large as the port decodes
/// ([`crate::transport::MAX_PEER_MESSAGE_BYTES`]), so what a stream holds is this many messages,
/// one being written and one being decoded: 4 MB from a well-behaved sender. The writer seldom
/// waits for the disk longer than the HTTP/2 window (8 MB) takes to arrive, so a deeper queue
/// would only hold more of a misbehaving sender's bytes.
const RECEIVE_QUEUED: usize = 2;
/// Incoming snapshot streams a node receives at once ([`StreamSlots`]), at least, and one more
/// than it has groups: a group's leader sends a peer one snapshot at a time, so every group of a
/// node restarted far behind catches up at once, with room for a leader's retry while the stream
/// it gave up on still ends here. Each costs a file being written and up to [`RECEIVE_QUEUED`] + 2
/// messages of memory.
pub const MAX_INCOMING_STREAMS: usize = 2;
/// How long a sender whose stream was refused because its receiver takes no more streams
/// ([`StreamSlots`]) waits before raft hears of the failure: until then raft keeps the peer in
/// its snapshot state and sends it nothing, and then makes a new snapshot and tries again.
/// Without the wait the retry comes with the next heartbeat, and so does a new file.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait for one chunk to move (either side), and for connecting.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sender waits for more of a file that is still being written before it looks again.
const TAIL_WAIT: Duration = Duration::from_millis(2);
/// A generated snapshot older than this is made again rather than sent.
const MAX_AGE: Duration = Duration::from_secs(60);
/// Snapshot files are compressed with LZ4: cheap to make and to read, and the data's own
/// compression (see [`crate::storage::open_db`]).
const COMPRESSION: DBCompressionType = DBCompressionType::Lz4;
/// The nice value of the threads that make, send and receive snapshots: on a busy machine the
/// node's foreground (the raft loop, client requests) goes first.
const GENERATE_NICE: i32 = 10;

/// Where outgoing snapshot files live: beside the live data, outside RocksDB's own directory.
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

/// `key` as one of the group's snapshot's, or why it is not.
fn group_key(group: u32, key: &[u8]) -> Result<(), String> {
    if in_snapshot(group, key) { Ok(()) } else { Err(format!("key {} is not the group's", key.escape_ascii())) }
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
    max_bytes_per_s: u64,
    /// Whether files are made in memory ([`in_memory`]) rather than on the disk.
    in_memory: bool,
    /// How long the writer of an in-memory file waits for its sender to read on.
    reader_timeout: Duration,
}

impl Generator {
    /// A generator for `group`.
    pub fn new(db: Arc<DB>, group: u32) -> Generator {
        Generator {
            db,
            group,
            slot: Arc::default(),
            max_bytes_per_s: 0,
            in_memory: false,
            reader_timeout: CHUNK_TIMEOUT,
        }
    }

    /// Writes at most `bytes_per_s` bytes of file a second while making a snapshot (0: unpaced).
    pub fn pace(&mut self, bytes_per_s: u64) {
        self.max_bytes_per_s = bytes_per_s;
    }

    /// Makes the next files for a group whose snapshots stream in `format`: in memory when the
    /// stream carries the file's bytes (format 2), on the disk for format 1, whose pairs are read
    /// from the finished file through a scratch database.
    pub fn set_format(&mut self, format: u32) {
        self.in_memory = format >= 2;
    }

    /// A snapshot at `request_index` or later if one is ready (it is handed out once); otherwise
    /// starts making one and returns `None`.
    pub fn poll(&self, request_index: u64) -> Option<Snapshot> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((made, snap)) = slot.ready.take() {
            if made.elapsed() < MAX_AGE && snap.get_metadata().index >= request_index.max(1) {
                return Some(snap);
            }
            remove_path(&header_of(&snap).path);
        }
        if !slot.generating {
            let this = self.clone();
            // Named, or it shows in top and perf as the raft loop that started it.
            let thread = std::thread::Builder::new().name(format!("snapshot-g{}", self.group));
            match thread.spawn(move || this.generate()) {
                Ok(_) => slot.generating = true,
                Err(e) => slot.failed = Some(format!("no thread to make it on: {e}")),
            }
        }
        None
    }

    /// A failure to make a snapshot, once: a storage error, which stops the node.
    pub fn take_failure(&self) -> Option<StorageError> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.failed.take().map(|what| StorageError::Corrupt { key: format!("snapshot of group {}", self.group), what })
    }

    fn generate(&self) {
        lower_priority(GENERATE_NICE);
        // Handed to raft as soon as the file is open: its sender streams the file as it grows.
        let publish = |snap: &Snapshot| {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.ready = Some((Instant::now(), snap.clone()));
        };
        let result = self.make(publish);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.generating = false;
        match result {
            Err(e) => slot.failed = Some(e.to_string()),
            // Abandoned by its sender (or nothing to make): a snapshot published at the file's
            // open would name a file that is gone.
            Ok(None) => slot.ready = None,
            Ok(Some(_)) => {}
        }
    }

    /// Writes the snapshot file from one consistent view and returns the snapshot naming it;
    /// `opened` gets that snapshot (without its final figures) once the file exists, before
    /// anything is written into it.
    fn make(&self, opened: impl FnOnce(&Snapshot)) -> Result<Option<Snapshot>, StorageError> {
        let started = Instant::now();
        let view = self.db.snapshot();
        // Raft asks only a leader for a snapshot, but the thread may take its view after the node
        // stepped down and began installing one of its new leader's. Between the install's
        // clearing and its ingest the applied index is the old one and its entry is gone, so the
        // view would read as corrupt (and stop the node); any view under the install's marker is
        // of a group that no longer leads. The marker is written before the clearing and deleted
        // after the ingest, so finding it covers the whole switch.
        if view.get(keys::installing(self.group))?.is_some() {
            tracing::info!(group = self.group, "no snapshot made: the group is installing one");
            return Ok(None);
        }
        let applied = match view.get(keys::applied(self.group))? {
            Some(v) => decode_u64(&keys::applied(self.group), &v)?,
            // Nothing applied yet: raft-rs refuses an empty snapshot.
            None => return Ok(None),
        };
        let term = term_in(&view, self.group, applied)?;
        let conf: ConfState = match view.get(keys::conf_state(self.group))? {
            Some(v) => ConfState::parse_from_bytes(&v).map_err(|e| corrupt_key(&keys::conf_state(self.group), e))?,
            None => ConfState::default(),
        };
        let (path, reader) = if self.in_memory {
            let (path, read) = in_memory::create()?;
            (path, Some(read))
        } else {
            let dir = outgoing_dir(&data_dir(&self.db));
            make_dir_durable(&dir).map_err(|e| io_error(&dir, e))?;
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            (dir.join(format!("g{}-{nanos}.sst", self.group)), None)
        };
        // An in-memory file holds what its sender has not read yet: the writer waits for it.
        let room =
            |size: u64| reader.as_ref().is_none_or(|read| in_memory::wait_for_reader(read, size, self.reader_timeout));
        let mut header =
            SnapshotHeader { version: SNAPSHOT_VERSION, path: path.display().to_string(), ..Default::default() };
        let mut snap = Snapshot { data: header.encode_to_vec().into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(conf);
        let mut pace = Pace::new(self.max_bytes_per_s);
        Writing::start(&header.path);
        let written = write_sst(&view, self.group, &path, &mut pace, || opened(&snap), room);
        let state_bytes = match written {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(
                    group = self.group,
                    "a snapshot made in memory was given up: its sender stopped, or read nothing for {:?}",
                    self.reader_timeout
                );
                Writing::end(&header.path, Err("given up: its sender stopped or read nothing".into()));
                discard_file(&header.path);
                return Ok(None);
            }
            Err(e) => {
                Writing::end(&header.path, Err(e.to_string()));
                discard_file(&header.path);
                return Err(e);
            }
        };
        header.state_bytes = state_bytes;
        header.generate_ms = started.elapsed().as_millis() as u64;
        Writing::end(&header.path, Ok(header.clone()));
        snap.data = header.encode_to_vec().into();
        let in_memory = reader.is_some();
        let took = started.elapsed();
        tracing::info!(group = self.group, index = applied, term, state_bytes, in_memory, ?took, "snapshot made");
        Ok(Some(snap))
    }
}

/// Snapshot files being written, by path, and how their writing ended: the sender of one streams
/// it while it grows (it only has raft's message, whose data names the file), and learns the
/// final figures here. A path not listed names a complete file.
static WRITING: Mutex<BTreeMap<String, Writing>> = Mutex::new(BTreeMap::new());

#[derive(Clone)]
enum Writing {
    /// Being written since then.
    Under(Instant),
    /// Written (its figures), having started then.
    Done(SnapshotHeader, Instant),
    Failed(String),
}

impl Writing {
    fn table() -> std::sync::MutexGuard<'static, BTreeMap<String, Writing>> {
        WRITING.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(path: &str) {
        Writing::table().insert(path.to_string(), Writing::Under(Instant::now()));
    }

    /// Records the end, unless the file was given up (removed) meanwhile.
    fn end(path: &str, end: Result<SnapshotHeader, String>) {
        if let Some(w) = Writing::table().get_mut(path) {
            *w = match (end, &w) {
                (Ok(header), Writing::Under(since)) => Writing::Done(header, *since),
                (Ok(_), _) => return,
                (Err(e), _) => Writing::Failed(e),
            };
        }
    }

    /// How the writing of the file at `path` stands; `None`: not written here or long complete.
    fn of(path: &str) -> Option<Writing> {
        Writing::table().get(path).cloned()
    }

    /// Whether the file at `path` is complete (a failed one is an error).
    fn complete(path: &str) -> std::io::Result<bool> {
        match Writing::of(path) {
            None | Some(Writing::Done(..)) => Ok(true),
            Some(Writing::Under(_)) => Ok(false),
            Some(Writing::Failed(e)) => Err(std::io::Error::other(format!("making the snapshot failed: {e}"))),
        }
    }

    /// Waits until the file at `path` is complete.
    fn wait(path: &str) -> std::io::Result<()> {
        while !Writing::complete(path)? {
            std::thread::sleep(TAIL_WAIT);
        }
        Ok(())
    }
}

/// Writes the group's snapshot keys as `view` sees them into an SST file at `path`; returns the
/// bytes of keys and values written, or `None` if `room` (asked with the file's size after every
/// chunk's worth) said to give up.
fn write_sst(
    view: &SnapshotWithThreadMode<'_, DB>,
    group: u32,
    path: &Path,
    pace: &mut Pace,
    opened: impl FnOnce(),
    room: impl Fn(u64) -> bool,
) -> Result<Option<u64>, StorageError> {
    let mut opts = Options::default();
    opts.set_compression_type(COMPRESSION);
    let mut sst = SstFileWriter::create(&opts);
    sst.open(path)?;
    opened();
    let mut bytes = 0u64;
    for k in snapshot_keys(group) {
        if let Some(v) = view.get(&k)? {
            sst.put(&k, &v)?;
            bytes += (k.len() + v.len()) as u64;
        }
    }
    let (lo, hi) = keys::state_range(group);
    // A sequential scan of data read once: read ahead, and keep it out of the block cache.
    let mut read = ReadOptions::default();
    read.set_readahead_size(READAHEAD_BYTES);
    read.fill_cache(false);
    read.set_iterate_upper_bound(hi.to_vec());
    let mut it = view.raw_iterator_opt(read);
    it.seek(lo);
    // Paced by the file's bytes, what goes to the disk or the wire: compressible state is made
    // (and moved) faster than the budget.
    let (mut unpaced, mut paced) = (0, 0);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        sst.put(k, v)?;
        bytes += (k.len() + v.len()) as u64;
        unpaced += k.len() + v.len();
        if unpaced >= CHUNK_BYTES {
            let size = sst.file_size();
            std::thread::sleep(pace.wait_after(size - paced));
            if !room(size) {
                return Ok(None);
            }
            (unpaced, paced) = (0, size);
        }
        it.next();
    }
    it.status()?;
    // finish() syncs the file.
    sst.finish()?;
    Ok(Some(bytes))
}

/// Keeps a stream of bytes under a budget: after each piece, how long to wait so that the bytes
/// so far have taken at least bytes / budget seconds.
struct Pace {
    bytes_per_s: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    /// A budget of `bytes_per_s` (0: none).
    fn new(bytes_per_s: u64) -> Pace {
        Pace { bytes_per_s, started: Instant::now(), bytes: 0 }
    }

    fn wait_after(&mut self, bytes: u64) -> Duration {
        if self.bytes_per_s == 0 {
            return Duration::ZERO;
        }
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_s as f64);
        due.saturating_sub(self.started.elapsed())
    }
}

/// Lowers the calling thread's CPU priority to `nice`.
fn lower_priority(nice: i32) {
    // SAFETY: setpriority only changes a scheduling attribute; on Linux, `who = 0` with
    // PRIO_PROCESS names the calling thread, not the whole process.
    let failed = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) } != 0;
    if failed {
        tracing::debug!("snapshot thread keeps its priority: {}", std::io::Error::last_os_error());
    }
}

fn corrupt_key(key: &[u8], e: impl ToString) -> StorageError {
    StorageError::Corrupt { key: key.escape_ascii().to_string(), what: e.to_string() }
}

/// The term of entry `index` as `view` holds it (the log, or its compaction point).
fn term_in(view: &SnapshotWithThreadMode<'_, DB>, group: u32, index: u64) -> Result<u64, StorageError> {
    if let Some(v) = view.get(keys::log(group, index))? {
        let e = Entry::parse_from_bytes(&v).map_err(|e| corrupt_key(&keys::log(group, index), e))?;
        return Ok(e.term);
    }
    let t = keys::truncated(group);
    match view.get(t)? {
        Some(v) if v.len() == 16 && decode_u64(&t, &v[..8])? == index => decode_u64(&t, &v[8..]),
        _ => Err(corrupt_key(&keys::log(group, index), "applied entry is neither in the log nor its compaction point")),
    }
}

fn header_of(snap: &Snapshot) -> SnapshotHeader {
    SnapshotHeader::decode(&snap.data[..]).unwrap_or_default()
}

/// Removes the file of a snapshot message that will not be sent (its peer has no address): raft
/// handed it out once, so nothing else would.
pub fn not_sent(msg: &Message) {
    remove_path(&header_of(msg.get_snapshot()).path);
}

/// Removes a snapshot file (or a version 1 checkpoint directory) and what is known of its
/// writing; an empty path names nothing.
fn remove_path(path: &str) {
    if path.is_empty() {
        return;
    }
    Writing::table().remove(path);
    discard_file(path);
}

/// Removes a snapshot file (or a version 1 checkpoint directory), in memory or on the disk. A
/// sender that has it open reads on.
fn discard_file(path: &str) {
    if in_memory::discard(path) {
        return;
    }
    let path = Path::new(path);
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

/// Snapshot files the leader makes in memory (a memfd each): only their sender reads them, once,
/// so they need not reach the disk, where writing them would delay the node's own WAL syncs (a
/// benchmark measured the load's p99 during a catch-up: docs/benchmarks.md). Memory stays bounded:
/// the sender punches out what it has read, and the writer waits while it is [`AHEAD`] bytes ahead
/// of the sender; one whose sender stopped, or reads nothing for the timeout, is given up.
mod in_memory {
    use super::*;
    use std::os::fd::{AsRawFd as _, OwnedFd};
    use std::sync::atomic::AtomicU64;

    /// How far the writer may run ahead of its sender: the file's memory, at most.
    pub(super) const AHEAD: u64 = (CHUNKS_QUEUED * CHUNK_BYTES) as u64;
    /// The count of bytes read of a file that was discarded (its send ended, failed or not): its
    /// writer stops at once. Waiting out its timeout instead kept the group from making another
    /// snapshot for that long, e.g. for a learner killed during a transfer and restarted.
    const GIVEN_UP: u64 = u64::MAX;
    /// The start of an in-memory file's path: the path names the file while [`FILES`] holds its
    /// descriptor (after that, the number may name another file).
    const PREFIX: &str = "/proc/self/fd/";

    struct File {
        /// Held, never read: closing it frees the file.
        _fd: OwnedFd,
        /// Bytes its sender has read.
        read: Arc<AtomicU64>,
    }

    static FILES: Mutex<BTreeMap<String, File>> = Mutex::new(BTreeMap::new());

    fn files() -> std::sync::MutexGuard<'static, BTreeMap<String, File>> {
        FILES.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new in-memory file: its path, and the count of bytes its sender has read.
    pub(super) fn create() -> Result<(PathBuf, Arc<AtomicU64>), StorageError> {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let fd = memfd_create("ordeal-snapshot", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| io_error(Path::new("memfd"), std::io::Error::from(e)))?;
        let path = format!("{PREFIX}{}", fd.as_raw_fd());
        let read = Arc::new(AtomicU64::new(0));
        files().insert(path.clone(), File { _fd: fd, read: read.clone() });
        Ok((PathBuf::from(path), read))
    }

    /// Opens a snapshot file to send it: an in-memory one while it is still held (with the
    /// count to advance as it is read), one on the disk by its path.
    pub(super) fn open(path: &Path) -> std::io::Result<(std::fs::File, Option<Arc<AtomicU64>>)> {
        if !is(path) {
            return Ok((std::fs::File::open(path)?, None));
        }
        let files = files();
        let Some(file) = files.get(&path.display().to_string()) else {
            return Err(std::io::Error::other("the in-memory snapshot file was given up"));
        };
        // Opened while the table holds the descriptor, so the path names this file; the new
        // descriptor reads at an offset of its own, and writes only to punch out what it read.
        let opened = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok((opened, Some(file.read.clone())))
    }

    /// Frees an in-memory file (readers that have it open read on) and stops its writer; false if
    /// `path` is not one.
    pub(super) fn discard(path: &str) -> bool {
        let removed = if is(Path::new(path)) { files().remove(path) } else { None };
        removed.map(|file| file.read.store(GIVEN_UP, Ordering::Release)).is_some()
    }

    /// Counts bytes read by the file's sender; a file given up stays given up.
    pub(super) fn advance_read(read: &AtomicU64, to: u64) {
        read.fetch_max(to, Ordering::Release);
    }

    /// Whether `path` names an in-memory file.
    pub(super) fn is(path: &Path) -> bool {
        path.to_str().is_some_and(|p| p.starts_with(PREFIX))
    }

    /// Waits until the sender has read to within [`AHEAD`] of `size` bytes; false if the file was
    /// given up, or its sender read nothing for `timeout`.
    pub(super) fn wait_for_reader(read: &AtomicU64, size: u64, timeout: Duration) -> bool {
        let (mut seen, mut since) = (read.load(Ordering::Acquire), Instant::now());
        while seen != GIVEN_UP && size > seen + AHEAD {
            if since.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(TAIL_WAIT);
            let now = read.load(Ordering::Acquire);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
        seen != GIVEN_UP
    }

    /// Frees `len` bytes from `offset` of an in-memory file (its size stays).
    pub(super) fn punch(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
        use nix::fcntl::{FallocateFlags, fallocate};
        if len == 0 {
            return Ok(());
        }
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(file, flags, offset as nix::libc::off_t, len as nix::libc::off_t)?;
        Ok(())
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
    /// File bytes a second at most (0: unpaced).
    pub max_bytes_per_s: u64,
    /// The stream format to send, as the group's cluster version allows.
    pub format: u32,
    /// This node's credentials for dialing the peer, when peers authenticate.
    pub tls: Option<Arc<crate::peer_auth::PeerTls>>,
}

/// Streams the snapshot in `msg` to its peer on the [`transfers`] runtime, then tells the loop
/// how it went.
pub fn spawn_send(ctx: SendContext, group: u32, msg: Message) {
    transfers().spawn(async move {
        let to = msg.to;
        let header = header_of(msg.get_snapshot());
        // Streamed while it is made, a send takes from the start of making the file.
        let started = match Writing::of(&header.path) {
            Some(Writing::Under(since) | Writing::Done(_, since)) => since,
            _ => Instant::now(),
        };
        let result = send(&ctx, group, msg, Path::new(&header.path)).await;
        // Made while it was sent: the final figures are the writer's.
        let made = match Writing::of(&header.path) {
            Some(Writing::Done(made, _)) => made,
            _ => header.clone(),
        };
        let path = header.path.clone();
        let _ = tokio::task::spawn_blocking(move || remove_path(&path)).await;
        let ok = match result {
            Ok(file_bytes) => {
                let generated = Duration::from_millis(made.generate_ms);
                ctx.metrics.observe_snapshot_sent(made.state_bytes, generated, started.elapsed());
                tracing::info!(to, group, made.state_bytes, file_bytes, elapsed = ?started.elapsed(), "snapshot sent");
                true
            }
            Err(e) => {
                ctx.metrics.snapshots_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(to, group, "snapshot not sent: {e}");
                if let NotSent::Busy(_) = e {
                    tokio::time::sleep(BUSY_RETRY_AFTER).await;
                }
                false
            }
        };
        // Blocking, not try_send: a lost report would leave raft waiting on this peer's
        // snapshot for good. The queue drains quickly, so the wait is short.
        let done = ctx.done.clone();
        let _ = tokio::task::spawn_blocking(move || done.send(Request::SnapshotSent { to, ok }).is_ok()).await;
    });
}

/// The runtime snapshots move on (both sides), its threads and blocking pool at
/// [`GENERATE_NICE`]: a transfer's copies, encoding and checks take the CPU the raft loops and
/// client requests leave, and its chunks queue behind their messages.
fn transfers() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("snapshot")
            .on_thread_start(|| lower_priority(GENERATE_NICE))
            .enable_all()
            .build()
            // Only fails when the process cannot start a thread, as the node's own runtime would.
            .expect("starting the snapshot runtime")
    })
}

/// Why a snapshot was not sent.
#[derive(Debug, thiserror::Error)]
enum NotSent {
    /// The receiver takes no more streams at the moment ([`StreamSlots`]).
    #[error("the receiver is busy: {0}")]
    Busy(String),
    /// Anything else: connecting, the file, the stream, the receiver's checks.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for NotSent {
    fn from(what: String) -> NotSent {
        NotSent::Failed(what)
    }
}

impl From<Status> for NotSent {
    fn from(status: Status) -> NotSent {
        match status.code() {
            tonic::Code::ResourceExhausted => NotSent::Busy(status.message().to_string()),
            code => NotSent::Failed(format!("{code}: {}", status.message())),
        }
    }
}

/// Streams the file to the peer; returns its length.
async fn send(ctx: &SendContext, group: u32, mut msg: Message, file: &Path) -> Result<u64, NotSent> {
    // The receiver names its own file; the sender's path means nothing there.
    msg.mut_snapshot().data = Bytes::new();
    let header = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let endpoint = crate::peer_auth::endpoint(ctx.tls.as_deref(), msg.to, &ctx.address)
        .map_err(|e| e.to_string())?
        .connect_timeout(CHUNK_TIMEOUT)
        .tcp_nodelay(true)
        // A receiver that stops answering (paused, partitioned) fails the stream instead of
        // holding it, and the file, forever.
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
        snapshot_version: ctx.format,
        from: ctx.from,
        to: msg.to,
        group,
        header: header.into(),
        ..Default::default()
    };
    tx.send(first).await.map_err(|_| "stream closed".to_string())?;
    let pace = Pace::new(ctx.max_bytes_per_s);
    let reader = match ctx.format {
        1 => {
            let (file, runtime) = (file.to_path_buf(), tokio::runtime::Handle::current());
            tokio::task::spawn_blocking(move || stream_pairs(&file, group, tx, pace, &runtime))
        }
        _ => tokio::spawn(stream_file(file.to_path_buf(), tx, pace)),
    };
    let mut client = RaftClient::new(channel).max_encoding_message_size(crate::transport::MAX_PEER_MESSAGE_BYTES);
    // A failed call returns at once (dropping the queue ends the reader): raft must hear of the
    // failure now.
    let sent = client.snapshot(ReceiverStream::new(rx)).await;
    if sent.is_err() {
        reader.abort();
    }
    sent?;
    Ok(reader.await.map_err(|e| e.to_string())??)
}

/// Reads the file into chunks, the last one `done` with the file's length; returns the length.
/// A file still being written is streamed as it grows.
async fn stream_file(path: PathBuf, tx: mpsc::Sender<SnapshotChunk>, mut pace: Pace) -> Result<u64, String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let (file, read) = in_memory::open(&path).map_err(failed)?;
    // The file is read once, as it is written: it leaves memory behind the reader.
    let mut file = Some((file, DropBehind::of(read)));
    let (mut total, mut crc) = (0u64, crc32fast::Hasher::new());
    loop {
        // One blocking read of a whole chunk (the file hands itself back with it).
        let Some((mut f, mut behind)) = file.take() else { return Err("the file was lost".into()) };
        let name = path.display().to_string();
        let read = move || {
            let (data, done) = read_chunk(&mut f, &name)?;
            behind.advance(&f, total + data.len() as u64)?;
            Ok::<_, std::io::Error>(((f, behind), data, done))
        };
        let (f, data, done) = tokio::task::spawn_blocking(read).await.map_err(|e| e.to_string())?.map_err(failed)?;
        file = Some(f);
        total += data.len() as u64;
        crc.update(&data);
        let summary = done.then(|| summary(&path, crc.clone().finalize())).flatten();
        let chunk = SnapshotChunk { data: data.freeze(), done, total_bytes: total, summary, ..Default::default() };
        match tokio::time::timeout(CHUNK_TIMEOUT, tx.send(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the stream ended early".into()),
            Err(_) => return Err("the peer took no chunk for 30 s".into()),
        }
        if done {
            return Ok(total);
        }
        tokio::time::sleep(pace.wait_after(CHUNK_BYTES as u64)).await;
    }
}

/// What the sender vouches for in the last chunk: the CRC-32 of the bytes it read, and the state
/// they hold as the file's maker counted it (`None` if that is not known here).
fn summary(path: &Path, crc32: u32) -> Option<FileSummary> {
    match Writing::of(&path.display().to_string()) {
        Some(Writing::Done(made, _)) => Some(FileSummary { crc32, state_bytes: made.state_bytes }),
        _ => None,
    }
}

/// Reads a chunk of [`CHUNK_BYTES`] from `f`, the file at `path`, waiting for more while it is
/// being written; returns it and whether it ends the file.
fn read_chunk(f: &mut std::fs::File, path: &str) -> std::io::Result<(BytesMut, bool)> {
    let mut data = BytesMut::zeroed(CHUNK_BYTES);
    let (mut n, mut grew) = (0, Instant::now());
    while n < CHUNK_BYTES {
        // Asked before reading: nothing to read once the writer had finished is the end.
        let complete = Writing::complete(path)?;
        match std::io::Read::read(f, &mut data[n..])? {
            0 if complete => {
                data.truncate(n);
                return Ok((data, true));
            }
            0 if grew.elapsed() > CHUNK_TIMEOUT => {
                return Err(std::io::Error::other("the snapshot file stopped growing for 30 s"));
            }
            0 => std::thread::sleep(TAIL_WAIT),
            read => (n, grew) = (n + read, Instant::now()),
        }
    }
    Ok((data, false))
}

/// Version 1: streams the file's pairs in chunks of about [`CHUNK_BYTES`], the last one `done`
/// with their count; returns the bytes of the file they came from.
fn stream_pairs(
    file: &Path,
    group: u32,
    tx: mpsc::Sender<SnapshotChunk>,
    mut pace: Pace,
    runtime: &tokio::runtime::Handle,
) -> Result<u64, String> {
    let push = |chunk: SnapshotChunk| match runtime.block_on(tokio::time::timeout(CHUNK_TIMEOUT, tx.send(chunk))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the stream ended early".to_string()),
        Err(_) => Err("the peer took no chunk for 30 s".to_string()),
    };
    if in_memory::is(file) {
        // Never made: a group streaming format 1 makes its files on the disk (`set_format`).
        return Err("an in-memory snapshot file cannot be streamed as pairs".into());
    }
    Writing::wait(&file.display().to_string()).map_err(|e| e.to_string())?;
    let (mut chunk, mut size, mut pairs) = (SnapshotChunk::default(), 0usize, 0u64);
    // The maker wrote this file, not a Sink: only a probe can tell how it may be read.
    scan_sst(file, group, &file.with_extension("pairs"), Reads::probe(file), |k, v| {
        chunk.keys.push(Bytes::copy_from_slice(k));
        chunk.values.push(Bytes::copy_from_slice(v));
        size += k.len() + v.len();
        pairs += 1;
        if size >= CHUNK_BYTES {
            push(std::mem::take(&mut chunk))?;
            std::thread::sleep(pace.wait_after(size as u64));
            size = 0;
        }
        Ok(())
    })?;
    push(SnapshotChunk { done: true, total_pairs: pairs, ..chunk })?;
    std::fs::metadata(file).map(|m| m.len()).map_err(|e| format!("{}: {e}", file.display()))
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
    /// The newest stream format this node reads (its release's, which `--emulate-version` sets).
    pub snapshot_max: u32,
    /// Room for the streams it receives at once.
    pub streams: StreamSlots,
}

/// Room for the incoming snapshot streams a node takes at once (per node: every group's streams
/// share it; [`MAX_INCOMING_STREAMS`]). A stream over the cap is refused once its header is read
/// and its sender checked, before anything of it is written, with RESOURCE_EXHAUSTED, which its
/// sender takes as a sign to wait ([`BUSY_RETRY_AFTER`]) and try again.
#[derive(Clone)]
pub struct StreamSlots {
    free: Arc<tokio::sync::Semaphore>,
    cap: usize,
}

impl StreamSlots {
    /// The slots of a node with `groups` raft groups.
    pub fn for_groups(groups: usize) -> StreamSlots {
        StreamSlots::new(MAX_INCOMING_STREAMS.max(groups + 1))
    }

    fn new(cap: usize) -> StreamSlots {
        StreamSlots { free: Arc::new(tokio::sync::Semaphore::new(cap)), cap }
    }

    /// A slot for one stream, held while it is received, or the status that refuses it.
    fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.free.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node is receiving {} snapshot streams, as many as it takes at once; try again later",
                self.cap
            ))
        })
    }
}

impl Inbox {
    /// A slot for one more stream, or its refusal, counted and logged.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.streams.take().inspect_err(|refused| {
            self.metrics.snapshot_streams_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("a snapshot stream refused: {}", refused.message());
        })
    }
}

/// What arrived: bytes of keys and values, and of the file they came in.
#[derive(Debug)]
struct Received {
    state_bytes: u64,
    file_bytes: u64,
    /// The CRC-32 of the file's bytes as written, before an ingest writes into them.
    crc32: u32,
}

/// Receives one snapshot stream into a file, then hands its message to the group.
pub async fn receive(
    inbox: &Inbox,
    groups: &[GroupHandle],
    mut stream: Streaming<SnapshotChunk>,
    sender: &crate::peer_auth::Sender,
) -> Result<SnapshotAck, Status> {
    let started = Instant::now();
    let first = next_chunk(&mut stream).await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
    if first.wire_version == 0 || first.wire_version > crate::version::Release::current().wire_max {
        return Err(Status::failed_precondition(format!(
            "peer protocol version {} is not supported",
            first.wire_version
        )));
    }
    readable(&first, inbox.snapshot_max).map_err(|refused| {
        tracing::error!("{refused}");
        Status::failed_precondition(refused)
    })?;
    let group = groups
        .get(first.group as usize)
        .ok_or_else(|| Status::not_found(format!("unknown raft group {}", first.group)))?;
    let mut msg = Message::parse_from_bytes(&first.header)
        .map_err(|e| Status::invalid_argument(format!("undecodable snapshot header: {e}")))?;
    if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != inbox.id {
        return Err(Status::invalid_argument("the header is not a snapshot for this node"));
    }
    sender.check(msg.from)?;
    // Held until the stream and its writer are done: what one stream holds is bounded, and how
    // many streams hold it is bounded here. Taken once the sender has shown a readable header
    // from the peer it is, so a stream that never sends one, or a stranger's, holds no slot.
    let _slot = inbox.admit()?;
    let meta = msg.get_snapshot().get_metadata();
    make_dir_durable(&inbox.dir).map_err(|e| Status::internal(format!("{}: {e}", inbox.dir.display())))?;
    // One name per stream: a second stream of the same snapshot (the leader retried) never
    // writes into the file of the first, which raft may hold already.
    static STREAMS: AtomicU64 = AtomicU64::new(0);
    let stream_no = STREAMS.fetch_add(1, Ordering::Relaxed);
    let name = format!("g{}-{}-{}-{}-{stream_no}.sst", first.group, meta.index, meta.term, msg.from);
    let path = inbox.dir.join(name);
    let (tx, rx) = mpsc::channel(RECEIVE_QUEUED);
    let (g, tmp, version) = (first.group, path.with_extension("tmp"), first.snapshot_version);
    let (writing, expected) = (tmp.clone(), meta.clone());
    let writer = transfers().spawn_blocking(move || match version {
        0 | 1 => write_pairs(&writing, g, &expected, rx),
        _ => write_raw(&writing, g, &expected, rx),
    });
    // The writer ends once `forward` drops its queue, whatever ended the stream.
    let streamed = forward(&mut stream, tx).await;
    let written = writer.await.map_err(|e| e.to_string()).and_then(|r| r);
    let received = match (streamed, written.and_then(|r| rename_durably(&tmp, &path).map(|()| r))) {
        (Ok(()), Ok(r)) => r,
        (streamed, written) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(streamed.err().unwrap_or_else(|| {
                let refused = format!("snapshot not written: {}", written.err().unwrap_or_default());
                tracing::warn!(from = msg.from, group = g, "{refused}");
                Status::invalid_argument(refused)
            }));
        }
    };
    let Received { state_bytes, file_bytes, crc32 } = received;
    inbox.metrics.observe_snapshot_received(state_bytes, file_bytes, started.elapsed());
    tracing::info!(from = msg.from, group = g, state_bytes, file_bytes, elapsed = ?started.elapsed(), "snapshot received");
    let header = SnapshotHeader {
        version: SNAPSHOT_VERSION,
        path: path.display().to_string(),
        crc32: Some(crc32),
        ..Default::default()
    };
    msg.mut_snapshot().data = header.encode_to_vec().into();
    group.send(Request::Raft(Box::new(msg))).map_err(|e| {
        let _ = std::fs::remove_file(&path);
        Status::from(e)
    })?;
    Ok(SnapshotAck {})
}

/// The slowest a stream may move on average once it has run for [`SLOW_AFTER`]: far below any
/// real transfer, paced or loaded (those move MB a second), so that a peer that sends a chunk just
/// within [`CHUNK_TIMEOUT`] each time cannot hold one of the node's stream slots for ever.
const MIN_BYTES_PER_S: u64 = 64 * 1024;
const SLOW_AFTER: Duration = Duration::from_secs(60);

/// Why a stream that moved `moved` bytes in `elapsed` is given up, if it is too slow.
fn too_slow(moved: u64, elapsed: Duration) -> Option<String> {
    (elapsed > SLOW_AFTER && moved < MIN_BYTES_PER_S * elapsed.as_secs()).then(|| {
        format!(
            "the snapshot stream moved {moved} bytes in {:.0} s, below the floor of {} KB/s",
            elapsed.as_secs_f64(),
            MIN_BYTES_PER_S / 1024
        )
    })
}

/// Hands the stream's chunks to the writer through `tx` up to the last one.
async fn forward(stream: &mut Streaming<SnapshotChunk>, tx: mpsc::Sender<SnapshotChunk>) -> Result<(), Status> {
    let (began, mut moved) = (Instant::now(), 0u64);
    loop {
        let Some(chunk) = next_chunk(stream).await? else {
            return Err(Status::invalid_argument("the snapshot stream ended before its last chunk"));
        };
        moved += (chunk.data.len() + chunk.keys.iter().chain(&chunk.values).map(|b| b.len()).sum::<usize>()) as u64;
        if let Some(why) = too_slow(moved, began.elapsed()) {
            return Err(Status::deadline_exceeded(why));
        }
        let done = chunk.done;
        if tx.send(chunk).await.is_err() || done {
            return Ok(());
        }
    }
}

/// Creates `dir` (and its parents) if needed, with the new entries synced into their parents:
/// an install marker names a file in it, which must still be there after a power loss.
fn make_dir_durable(dir: &Path) -> std::io::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // Its entry is synced even when it exists: another thread may have made it and not synced
    // it yet, and the on-disk maker's `create_dir_all` syncs nothing.
    if !dir.is_dir() {
        make_dir_durable(parent)?;
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    std::fs::File::open(parent)?.sync_all()
}

/// Renames a received file to its final name, synced into its directory before raft hears of it.
fn rename_durably(from: &Path, to: &Path) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", to.display());
    std::fs::rename(from, to).map_err(failed)?;
    let dir = to.parent().unwrap_or(Path::new("/"));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
}

/// Removes the received file of `offered`, a snapshot message stepped into raft, unless raft now
/// holds that snapshot (`pending`, its unstable one) to install: raft-rs ignores one it does not
/// need (stale, or its index already in the log), the vetting drops one from a node it does not
/// take messages from, and a newer one replaces one not yet installed. Nothing else would remove
/// those files before a restart.
pub fn discard_unless_pending(offered: &Snapshot, pending: Option<&Snapshot>) {
    if pending.is_some_and(|p| p.data == offered.data) {
        return;
    }
    let path = header_of(offered).path;
    if !path.is_empty() {
        let _ = std::fs::remove_file(path);
    }
}

/// Refuses a stream of a format newer than `snapshot_max` before reading any of it, as a build
/// of an older release does: it is never written, let alone misread.
fn readable(first: &SnapshotChunk, snapshot_max: u32) -> Result<(), String> {
    if first.snapshot_version > snapshot_max {
        return Err(format!(
            "a snapshot of format {} from node {} refused: this build reads up to {snapshot_max}",
            first.snapshot_version, first.from
        ));
    }
    Ok(())
}

async fn next_chunk(stream: &mut Streaming<SnapshotChunk>) -> Result<Option<SnapshotChunk>, Status> {
    tokio::time::timeout(CHUNK_TIMEOUT, stream.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no snapshot chunk within 30 s"))?
}

/// Version 2: writes the file's bytes as they come to `path`, syncs it, then checks it, and that
/// it records the snapshot `header` describes.
fn write_raw(
    path: &Path,
    group: u32,
    header: &SnapshotMetadata,
    mut rx: mpsc::Receiver<SnapshotChunk>,
) -> Result<Received, String> {
    let mut out = Sink::create(path, true).map_err(|e| e.to_string())?;
    let mut crc = crc32fast::Hasher::new();
    // Where the writer's time goes: waiting for chunks, and writing them.
    let (mut waited, mut wrote) = (Duration::ZERO, Duration::ZERO);
    loop {
        let asked = Instant::now();
        let Some(chunk) = rx.blocking_recv() else { break };
        let got = Instant::now();
        crc.update(&chunk.data);
        out.write(&chunk.data).map_err(|e| e.to_string())?;
        (waited, wrote) = (waited + (got - asked), wrote + got.elapsed());
        if chunk.done {
            if chunk.total_bytes != out.written {
                return Err(format!("{} bytes arrived of {}", out.written, chunk.total_bytes));
            }
            let started = Instant::now();
            out.finish().map_err(|e| e.to_string())?;
            let synced = started.elapsed();
            let crc32 = crc.finalize();
            let how = check_written(path, group, header, out.reads(), chunk.summary, crc32)?;
            let (file_bytes, direct) = (out.written, out.direct.is_some());
            let read_back = matches!(how, Checked::ReadBack(_));
            tracing::info!(file_bytes, direct, ?waited, ?wrote, ?synced, read_back, checked = ?started.elapsed() - synced, "snapshot file written, synced and checked");
            return Ok(Received { state_bytes: how.state_bytes(), file_bytes, crc32 });
        }
    }
    Err("the snapshot stream ended before its last chunk".into())
}

/// How a received file was checked ([`check_written`]), with the bytes of keys and values it
/// holds. The one place that decides it, so that what is logged is what was done.
enum Checked {
    /// Its bytes had the sender's CRC-32, then its structure and ends were read: the bytes are
    /// the sender's count.
    Vouched(u64),
    /// Read back pair by pair (an older sender, without a CRC): the bytes are counted here.
    ReadBack(u64),
}

impl Checked {
    fn state_bytes(&self) -> u64 {
        match self {
            Checked::Vouched(bytes) | Checked::ReadBack(bytes) => *bytes,
        }
    }
}

/// Checks a received file before raft sees it. With the sender's summary, the bytes written must
/// have its CRC, and then the file is the one the leader made from the group's keys: only its
/// structure and its ends are read ([`check_ends`]), not the whole file again, whose reading from
/// the disk right after the write delayed every WAL sync on that disk. Without one (an older
/// sender), every pair is read ([`check_sst`]). Either way the file must record the snapshot
/// `header` describes ([`FileMeta::check`]).
fn check_written(
    path: &Path,
    group: u32,
    header: &SnapshotMetadata,
    reads: Reads,
    summary: Option<FileSummary>,
    crc32: u32,
) -> Result<Checked, String> {
    let (checked, held) = match summary {
        None => check_sst(path, group, reads).map(|(bytes, held)| (Checked::ReadBack(bytes), held))?,
        Some(summary) if crc32 != summary.crc32 => {
            return Err(format!("the bytes written have CRC-32 {crc32:08x}, the sender's file {:08x}", summary.crc32));
        }
        Some(summary) => (Checked::Vouched(summary.state_bytes), check_ends(path, group, reads)?),
    };
    held.check(header).map_err(|e| e.to_string())?;
    Ok(checked)
}

/// A received file on its way to the disk: written around the page cache (`O_DIRECT`, from an
/// aligned buffer of a chunk) where the file system takes it, else through the cache and dropped
/// behind ([`WriteBehind`]). Either way the file never fills the cache, and around it the bytes
/// are not even copied into it.
struct Sink {
    file: std::fs::File,
    /// Bytes written.
    written: u64,
    /// For `O_DIRECT`: a chunk's buffer, and how much of it is filled.
    direct: Option<(Aligned, usize)>,
    behind: WriteBehind,
}

impl Sink {
    /// A new file at `path`, written around the page cache if `direct` and the file system
    /// takes it.
    fn create(path: &Path, direct: bool) -> std::io::Result<Sink> {
        use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        let opened = direct.then(|| open.clone().custom_flags(nix::libc::O_DIRECT).open(path).ok()).flatten();
        let direct = opened.and_then(|file| {
            let mut buf = Aligned::new(CHUNK_BYTES);
            // Some file systems open with O_DIRECT and refuse the write: try one block (of zeros).
            file.write_all_at(&buf.bytes()[..DIRECT_ALIGN], 0).and_then(|()| file.set_len(0)).ok()?;
            Some((file, (buf, 0)))
        });
        let (file, direct) = match direct {
            Some((file, buf)) => (file, Some(buf)),
            None => (open.open(path)?, None),
        };
        Ok(Sink { file, written: 0, direct, behind: WriteBehind::default() })
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.written += data.len() as u64;
        let Some((buf, filled)) = &mut self.direct else {
            self.file.write_all(data)?;
            return self.behind.advance(&self.file, self.written);
        };
        let buf = buf.bytes();
        while !data.is_empty() {
            let n = (buf.len() - *filled).min(data.len());
            buf[*filled..*filled + n].copy_from_slice(&data[..n]);
            (*filled, data) = (*filled + n, &data[n..]);
            if *filled == buf.len() {
                self.file.write_all(buf)?;
                *filled = 0;
            }
        }
        Ok(())
    }

    /// Writes what is left (direct writes are whole blocks: the last one padded, then the file
    /// cut to its length) and syncs the file.
    fn finish(&mut self) -> std::io::Result<()> {
        if let Some((buf, filled)) = &mut self.direct
            && *filled > 0
        {
            let (buf, padded) = (buf.bytes(), filled.next_multiple_of(DIRECT_ALIGN));
            buf[*filled..padded].fill(0);
            self.file.write_all(&buf[..padded])?;
            self.file.set_len(self.written)?;
        }
        self.file.sync_all()
    }

    /// How the file can be read back: around the page cache if the file system took `O_DIRECT` for
    /// it. [`Sink::create`] asked with a write of a block, on this very file, so the check needs no
    /// probe of its own; a file system that takes direct writes takes direct reads (a test checks
    /// that the probe agrees).
    fn reads(&self) -> Reads {
        if self.direct.is_some() { Reads::Direct } else { Reads::Cached }
    }
}

/// Frees a file's memory behind its reader as it goes, in the way its kind allows: a file on the
/// disk is written out and dropped from the page cache ([`WriteBehind`]), an in-memory file has
/// what was read punched out ([`PunchBehind`]). A sender's file is of either kind, by the format
/// it was made for; a received file is always on the disk.
enum DropBehind {
    Disk(WriteBehind),
    Memory(PunchBehind),
}

impl DropBehind {
    /// For a file opened by [`in_memory::open`], with the count it handed out (an in-memory file)
    /// or none (a file on the disk).
    fn of(read: Option<Arc<std::sync::atomic::AtomicU64>>) -> DropBehind {
        match read {
            Some(read) => DropBehind::Memory(PunchBehind { punched: 0, read }),
            None => DropBehind::Disk(WriteBehind::default()),
        }
    }

    /// Once the file is complete (or read) up to `written`: frees what is behind it.
    fn advance(&mut self, file: &std::fs::File, written: u64) -> std::io::Result<()> {
        match self {
            DropBehind::Disk(behind) => behind.advance(file, written),
            DropBehind::Memory(behind) => behind.advance(file, written),
        }
    }
}

/// Writes a file out to the disk while it is written, a chunk behind, and drops what is on the
/// disk from the page cache.
///
/// Writing out: a whole snapshot's dirty pages written back at once (by its final sync, or the
/// kernel's flusher) queue ahead of every other node's WAL sync on the same disk for as long as
/// the disk takes to write them (~0.1 s for 200 MB here); a chunk at a time they delay a WAL sync
/// by one chunk's write at most.
///
/// Dropping: a transient file read once has no use for the page cache, and growing the cache costs
/// fresh memory. On a VM that hands free memory back to its host (virtio-balloon free page
/// reporting, as on these machines) every fresh page faults in from the host: writing 200 MB into
/// new pages runs at ~300 MB/s here, into pages just freed at ~1.2 GB/s (fdatasync per chunk
/// included). Dropping each chunk once it is on the disk lets the next chunk reuse its pages.
#[derive(Default)]
struct WriteBehind {
    /// Bytes whose writeback was started.
    started: u64,
    /// Bytes dropped from the page cache.
    dropped: u64,
}

impl WriteBehind {
    /// Once the file (written by us or by another thread) is complete up to `written`: waits for
    /// the writeback started last time and drops those pages, then starts the new bytes'.
    fn advance(&mut self, file: &std::fs::File, written: u64) -> std::io::Result<()> {
        use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
        use nix::libc::{SYNC_FILE_RANGE_WAIT_AFTER, SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE};
        let (from, synced) = (self.dropped, self.started - self.dropped);
        sync_file_range(
            file,
            from,
            synced,
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
        )?;
        if synced > 0 {
            posix_fadvise(
                file,
                from as nix::libc::off_t,
                synced as nix::libc::off_t,
                PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )?;
        }
        self.dropped = self.started;
        sync_file_range(file, self.started, written - self.started, SYNC_FILE_RANGE_WRITE)?;
        self.started = written;
        Ok(())
    }
}

/// Punches out of an in-memory file what its sender has read: there is nothing to write back,
/// and memory is what the file costs. The writer waits on the count of bytes read
/// ([`in_memory::wait_for_reader`]), so each advance lets it go on.
struct PunchBehind {
    /// Bytes punched out.
    punched: u64,
    /// The file's count of bytes its sender has read, which its writer waits on.
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl PunchBehind {
    /// Once the sender has read the file up to `read_to`: punches out what it had not yet.
    fn advance(&mut self, file: &std::fs::File, read_to: u64) -> std::io::Result<()> {
        in_memory::punch(file, self.punched, read_to - self.punched)?;
        self.punched = read_to;
        in_memory::advance_read(&self.read, read_to);
        Ok(())
    }
}

fn sync_file_range(file: &std::fs::File, offset: u64, bytes: u64, flags: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    if bytes == 0 {
        return Ok(());
    }
    let (offset, bytes) = (offset as nix::libc::off64_t, bytes as nix::libc::off64_t);
    // SAFETY: the descriptor is the open file's own; sync_file_range reads no memory of ours.
    let failed = unsafe { nix::libc::sync_file_range(file.as_raw_fd(), offset, bytes, flags) } != 0;
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks a received SST file before raft sees it, so that a bad file is refused here rather
/// than failing the install after the group's old state is gone: RocksDB ingests a link to it
/// into a scratch database beside it and reads every pair (each block's checksum), and every key
/// must belong to the group's snapshot. Returns the bytes of its keys and values, and what it
/// records of the snapshot.
fn check_sst(path: &Path, group: u32, reads: Reads) -> Result<(u64, FileMeta), String> {
    let (mut bytes, mut pairs, mut held) = (0u64, 0u64, FileMeta::default());
    scan_sst(path, group, &path.with_extension("check"), reads, |k, v| {
        bytes += (k.len() + v.len()) as u64;
        pairs += 1;
        held.note(group, k, v);
        Ok(())
    })?;
    if pairs == 0 {
        return Err("an empty snapshot".into());
    }
    Ok((bytes, held))
}

/// Checks that the SST file at `path` opens (footer, index, properties) and holds only the group's
/// snapshot's keys, without reading every key: those before the state's range must be the
/// snapshot's own (at most three), and the last must be in the range, so every key between is.
/// Returns what it records of the snapshot.
fn check_ends(path: &Path, group: u32, reads: Reads) -> Result<FileMeta, String> {
    let (lo, _) = keys::state_range(group);
    in_scratch(path, &path.with_extension("check"), reads, |db| {
        let mut it = db.raw_iterator();
        it.seek_to_first();
        if !it.valid() {
            it.status().map_err(|e| format!("unreadable: {e}"))?;
            return Err("an empty snapshot".into());
        }
        while let Some(key) = it.key().filter(|k| *k < &lo[..]) {
            group_key(group, key)?;
            it.next();
        }
        it.seek_to_last();
        let last = it.key().map(<[u8]>::to_vec);
        it.status().map_err(|e| format!("unreadable: {e}"))?;
        group_key(group, &last.ok_or("an empty snapshot")?)?;
        FileMeta::read(db, group)
    })
}

/// What a snapshot file records of the snapshot it holds: the values of its applied index and
/// configuration keys. The install hands the header's metadata to raft (and to the compaction
/// point) but ingests the file's keys, which the node reads back at its next start and applies
/// on: a file that says otherwise would leave raft and the state machine disagreeing about the
/// applied index or the members, and the node disagreeing with itself across a restart.
#[derive(Debug, Default)]
struct FileMeta {
    applied: Option<Vec<u8>>,
    conf: Option<Vec<u8>>,
}

/// How a received file's own record of the snapshot differs from the header raft is handed.
#[derive(Debug, thiserror::Error)]
enum MetaMismatch {
    /// The file lacks one of the keys every made snapshot holds.
    #[error("the file holds no {0}")]
    Missing(&'static str),
    /// A key's value does not decode.
    #[error("the file's {what} does not decode: {why}")]
    Undecodable { what: &'static str, why: String },
    /// The file's applied index is not the header's snapshot index.
    #[error("the file's applied index {file} is not the header's snapshot index {header}")]
    Index { file: u64, header: u64 },
    /// The file's configuration is not the header's.
    #[error("the file's configuration {file:?} is not the header's {header:?}")]
    Conf { file: Box<Members>, header: Box<Members> },
}

/// A configuration as sets: the order of raft's lists means nothing.
#[derive(Debug, PartialEq)]
struct Members {
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    voters_outgoing: BTreeSet<u64>,
    learners_next: BTreeSet<u64>,
    auto_leave: bool,
}

impl From<&ConfState> for Members {
    fn from(conf: &ConfState) -> Members {
        let set = |ids: &[u64]| ids.iter().copied().collect();
        Members {
            voters: set(&conf.voters),
            learners: set(&conf.learners),
            voters_outgoing: set(&conf.voters_outgoing),
            learners_next: set(&conf.learners_next),
            auto_leave: conf.auto_leave,
        }
    }
}

impl FileMeta {
    /// Keeps `v` if `k` is the group's applied index or configuration key.
    fn note(&mut self, group: u32, k: &[u8], v: &[u8]) {
        if k == keys::applied(group) {
            self.applied = Some(v.to_vec());
        } else if k == keys::conf_state(group) {
            self.conf = Some(v.to_vec());
        }
    }

    /// Reads them from `db`, which holds the file.
    fn read(db: &DB, group: u32) -> Result<FileMeta, String> {
        let get = |key: &[u8]| db.get(key).map_err(|e| format!("unreadable: {e}"));
        Ok(FileMeta { applied: get(&keys::applied(group))?, conf: get(&keys::conf_state(group))? })
    }

    /// Whether the file records the snapshot `header` describes. The term is not in the file:
    /// the install takes it from the header alone.
    fn check(&self, header: &SnapshotMetadata) -> Result<(), MetaMismatch> {
        let applied = self.applied.as_deref().ok_or(MetaMismatch::Missing("applied index"))?;
        let applied: [u8; 8] = applied.try_into().map_err(|_| MetaMismatch::Undecodable {
            what: "applied index",
            why: format!("{} bytes", applied.len()),
        })?;
        let applied = u64::from_be_bytes(applied);
        if applied != header.index {
            return Err(MetaMismatch::Index { file: applied, header: header.index });
        }
        let conf = self.conf.as_deref().ok_or(MetaMismatch::Missing("configuration"))?;
        let conf = ConfState::parse_from_bytes(conf)
            .map_err(|e| MetaMismatch::Undecodable { what: "configuration", why: e.to_string() })?;
        let (file, header) = (Members::from(&conf), Members::from(header.get_conf_state()));
        if file != header {
            return Err(MetaMismatch::Conf { file: Box::new(file), header: Box::new(header) });
        }
        Ok(())
    }
}

/// Hands every pair of the SST file at `path` to `each`, in key order, read through a scratch
/// database at `scratch` (removed afterwards); a key that is not the group's snapshot's stops it.
fn scan_sst(
    path: &Path,
    group: u32,
    scratch: &Path,
    reads: Reads,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    in_scratch(path, scratch, reads, |db| {
        // Read once, front to back: large reads, and nothing kept in the block cache.
        let mut read = ReadOptions::default();
        read.set_readahead_size(READAHEAD_BYTES);
        read.fill_cache(false);
        let mut it = db.raw_iterator_opt(read);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            group_key(group, k)?;
            each(k, v)?;
            it.next();
        }
        it.status().map_err(|e| format!("unreadable: {e}"))
    })
}

/// Runs `read` on a scratch database at `scratch` (removed afterwards) that has ingested a link
/// to the SST file at `path`, which RocksDB refuses unless it is one.
fn in_scratch<T>(
    path: &Path,
    scratch: &Path,
    reads: Reads,
    read: impl FnOnce(&DB) -> Result<T, String>,
) -> Result<T, String> {
    let _ = std::fs::remove_dir_all(scratch);
    let result = open_scratch(path, scratch, reads).and_then(|db| read(&db));
    let _ = std::fs::remove_dir_all(scratch);
    result
}

fn open_scratch(path: &Path, scratch: &Path, reads: Reads) -> Result<DB, String> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_use_direct_reads(reads == Reads::Direct);
    let db = DB::open(&opts, scratch).map_err(|e| format!("scratch database: {e}"))?;
    let link = scratch.join("check.sst");
    std::fs::hard_link(path, &link).map_err(|e| e.to_string())?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_opts(&ingest, vec![&link]).map_err(|e| format!("not a readable SST file: {e}"))?;
    Ok(db)
}

/// The alignment of buffers, offsets and lengths that direct I/O asks for (a page: no device's
/// logical block is larger).
const DIRECT_ALIGN: usize = 4096;

/// How a scratch database reads an SST file. A snapshot file is read once: around the page cache
/// (`O_DIRECT`) where the file system takes it, rather than into fresh pages (a received one was
/// written around the cache too, or dropped from it behind its writer); through the cache where
/// not (tmpfs before Linux 6.6 refuses the open, some FUSE file systems the read), as with direct
/// reads RocksDB could not read the file at all.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reads {
    Direct,
    Cached,
}

impl Reads {
    /// How the file at `path` can be read, by reading a block of it around the page cache. For a
    /// file no [`Sink`] wrote; a received one's Sink already knows ([`Sink::reads`]).
    fn probe(path: &Path) -> Reads {
        use std::os::unix::fs::OpenOptionsExt as _;
        let open = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECT).open(path);
        match open.and_then(|mut file| std::io::Read::read(&mut file, Aligned::new(DIRECT_ALIGN).bytes())) {
            Ok(_) => Reads::Direct,
            Err(_) => Reads::Cached,
        }
    }
}

/// A zeroed buffer at an address aligned for direct I/O.
struct Aligned {
    buf: Vec<u8>,
    /// Where the aligned bytes start in `buf`.
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0u8; len + DIRECT_ALIGN];
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Aligned { buf, at, len }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.at..self.at + self.len]
    }
}

/// Version 1: writes the pairs of every chunk into an SST file at `path`, checking that each
/// belongs to the group's snapshot, that they come in key order, and that they record the
/// snapshot `header` describes.
fn write_pairs(
    path: &Path,
    group: u32,
    header: &SnapshotMetadata,
    mut rx: mpsc::Receiver<SnapshotChunk>,
) -> Result<Received, String> {
    let mut opts = Options::default();
    opts.set_compression_type(COMPRESSION);
    let mut sst = SstFileWriter::create(&opts);
    sst.open(path).map_err(|e| e.to_string())?;
    let mut last: Vec<u8> = Vec::new();
    let (mut pairs, mut state_bytes, mut held) = (0u64, 0u64, FileMeta::default());
    while let Some(chunk) = rx.blocking_recv() {
        if chunk.keys.len() != chunk.values.len() {
            return Err("a chunk has more keys than values".into());
        }
        for (k, v) in chunk.keys.iter().zip(&chunk.values) {
            if !in_snapshot(group, k) || (pairs > 0 && k[..] <= last[..]) {
                return Err(format!("key {} is out of order or not the group's", k.escape_ascii()));
            }
            sst.put(k, v).map_err(|e| e.to_string())?;
            held.note(group, k, v);
            last.clear();
            last.extend_from_slice(k);
            pairs += 1;
            state_bytes += (k.len() + v.len()) as u64;
        }
        if chunk.done {
            if chunk.total_pairs != pairs {
                return Err(format!("{pairs} pairs arrived of {}", chunk.total_pairs));
            }
            if pairs == 0 {
                return Err("an empty snapshot".into());
            }
            held.check(header).map_err(|e| e.to_string())?;
            // finish() syncs the file.
            sst.finish().map_err(|e| e.to_string())?;
            let file_bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
            // What the file is before an ingest writes into it, for a crash inside the ingest
            // to be undone ([`restore_ingested`]).
            let crc32 = std::fs::File::open(path).and_then(|f| crc_of(&f, None)).map_err(|e| e.to_string())?;
            return Ok(Received { state_bytes, file_bytes, crc32 });
        }
    }
    Err("the snapshot stream ended before its last chunk".into())
}

// ---------------------------------------------------------------------------------------------
// Installing (the follower or learner)

/// Switches group `group` over to the snapshot in `snap` (see the module docs).
pub fn install(db: &DB, group: u32, snap: &Snapshot) -> Result<(), StorageError> {
    let (meta, header) = (snap.get_metadata(), header_of(snap));
    // Before the marker: a marker naming no file would stop every start of the node.
    let path = Path::new(&header.path);
    if !path.is_file() {
        return Err(io_error(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let marker = SnapshotInstall {
        version: SNAPSHOT_VERSION,
        path: header.path,
        index: meta.index,
        term: meta.term,
        crc32: header.crc32,
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
    ingest(db, &path)?;
    finish(db, group, &path)
}

/// Ingests the SST file at `path` into `db`. RocksDB moves (links, then unlinks) a second hard
/// link of the file: no copy, and the file stays under its own name. But the file is not left as
/// it was: RocksDB writes the sequence number it assigns into the file it ingests, which is the
/// same file, and refuses to ingest it again until that number is zeroed ([`restore_ingested`]).
fn ingest(db: &DB, path: &Path) -> Result<(), StorageError> {
    let link = path.with_extension("ingest");
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(path, &link).map_err(|e| io_error(&link, e))?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_opts(&ingest, vec![&link])?;
    Ok(())
}

/// The install's last step: the marker goes (synced), then the file.
fn finish(db: &DB, group: u32, path: &Path) -> Result<(), StorageError> {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.delete_opt(keys::installing(group), &sync)?;
    let _ = std::fs::remove_file(path);
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

/// At start: finishes every install a crash interrupted, then removes every other snapshot file
/// (partial transfers, checkpoints of sends that were under way). Every group with a marker, not
/// only those this start runs: a node restarted with fewer `--groups` would otherwise delete the
/// file a marker names, and could not start again with the groups it had.
pub fn recover_all(db: &DB, data_dir: &Path) -> Result<(), StorageError> {
    for group in installing_groups(db)? {
        recover(db, group)?;
    }
    remove_leftovers(data_dir);
    Ok(())
}

/// The groups that have an install marker.
fn installing_groups(db: &DB) -> Result<Vec<u32>, StorageError> {
    let mut groups = Vec::new();
    for item in db.iterator(IteratorMode::From(&keys::installing(0), Direction::Forward)) {
        let Some(group) = keys::installing_group(&item?.0) else { break };
        groups.push(group);
    }
    Ok(groups)
}

/// Finishes group `group`'s install if a crash interrupted it.
fn recover(db: &DB, group: u32) -> Result<(), StorageError> {
    let Some(v) = db.get(keys::installing(group))? else {
        return Ok(());
    };
    let marker = SnapshotInstall::decode(&v[..]).map_err(|e| corrupt_key(&keys::installing(group), e))?;
    // The file carries the snapshot's applied index: if the group has it, the ingest was done
    // before the crash (and the file, changed by it, could not be ingested again). Before an
    // install a node's applied index is below the snapshot's, or raft would not have sent it.
    if crate::fsm::read::applied_index(db, group)? == marker.index {
        tracing::warn!(
            group,
            index = marker.index,
            "a snapshot install that a crash interrupted had ingested its file"
        );
        return finish(db, group, Path::new(&marker.path));
    }
    if !Path::new(&marker.path).is_file() && crate::storage::compaction_point(db, group)?.0 < marker.index {
        // The file went with the crash (its directory entry not yet durable), and the clearing,
        // which moves the compaction point to the snapshot's index in the same write, never ran:
        // the group is whole as it was, and its leader will send the snapshot again.
        tracing::warn!(
            group,
            index = marker.index,
            path = marker.path,
            "a snapshot install that a crash interrupted lost its file before it began; the group keeps its state"
        );
        return finish(db, group, Path::new(&marker.path));
    }
    tracing::warn!(group, index = marker.index, "finishing a snapshot install that a crash interrupted");
    if let Some(crc32) = marker.crc32 {
        let path = Path::new(&marker.path);
        restore_ingested(path, crc32).map_err(|what| StorageError::Corrupt { key: marker.path.clone(), what })?;
    }
    switch_in(db, group, &marker)
}

/// The name of the SST property RocksDB overwrites in a file it ingests (the sequence number it
/// assigned to the file's keys), in place, in the properties block near the file's end.
const GLOBAL_SEQNO: &[u8] = b"rocksdb.external_sst_file.global_seqno";

/// Gives a received file back the bytes it had (`crc32`) if an ingest that a crash cut short had
/// written its sequence number into it: RocksDB refuses to ingest such a file again. The property
/// is a block entry: the length of the prefix it shares with the entry before it, the rest's
/// length, a value of 8 bytes, the rest of the name, then the value, which was 0. The file is
/// changed only if zeroing that value gives it the CRC-32 it was received with; RocksDB verifies
/// the properties block's checksum with the value zeroed, so the block reads as it did.
fn restore_ingested(path: &Path, crc32: u32) -> Result<(), String> {
    use std::os::unix::fs::FileExt as _;
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(failed)?;
    let found = crc_of(&file, None).map_err(failed)?;
    if found == crc32 {
        return Ok(());
    }
    let Some(at) = global_seqno_at(&file).map_err(failed)? else {
        return Err(format!("CRC-32 {found:08x} is not the {crc32:08x} received, and no sequence number to undo"));
    };
    if crc_of(&file, Some(at)).map_err(failed)? != crc32 {
        return Err(format!("CRC-32 is not the {crc32:08x} received, with or without the ingest's sequence number"));
    }
    file.write_all_at(&[0; 8], at).and_then(|()| file.sync_all()).map_err(failed)?;
    tracing::warn!(path = %path.display(), "the ingest's sequence number, written into the file before the crash, was undone");
    Ok(())
}

/// Where the value of the [`GLOBAL_SEQNO`] property is in an SST file, if it is in the last 64 KB
/// (the properties block comes after every data, filter and index block; only the metaindex
/// block and the footer follow it). The entry shares a prefix with the property before it: its
/// length, the rest's length, 8, the rest of the name, then the value.
fn global_seqno_at(file: &std::fs::File) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    let tail_at = len.saturating_sub(64 * 1024);
    let mut tail = vec![0; (len - tail_at) as usize];
    file.read_exact_at(&mut tail, tail_at)?;
    Ok((0..GLOBAL_SEQNO.len()).find_map(|shared| {
        let mut entry = vec![shared as u8, (GLOBAL_SEQNO.len() - shared) as u8, 8];
        entry.extend_from_slice(&GLOBAL_SEQNO[shared..]);
        let i = tail.windows(entry.len()).rposition(|w| w == entry)?;
        Some(tail_at + (i + entry.len()) as u64).filter(|at| at + 8 <= len)
    }))
}

/// The CRC-32 of a file's bytes, read a chunk at a time, with the 8 bytes at `zeroed` (if any)
/// taken as zeros.
fn crc_of(file: &std::fs::File, zeroed: Option<u64>) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt as _;
    let (mut crc, mut buf, mut at) = (crc32fast::Hasher::new(), vec![0; CHUNK_BYTES], 0u64);
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(crc.finalize());
        }
        if let Some(z) = zeroed {
            for i in z.max(at)..(z + 8).min(at + n as u64) {
                buf[(i - at) as usize] = 0;
            }
        }
        crc.update(&buf[..n]);
        at += n as u64;
    }
}

/// Removes every snapshot file: call once [`recover`] has finished every install a marker names.
fn remove_leftovers(data_dir: &Path) {
    let _ = std::fs::remove_dir_all(snapshots_dir(data_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_below_the_floor_is_given_up_after_its_first_minute_only() {
        let minute = Duration::from_secs(61);
        assert_eq!(too_slow(0, Duration::from_secs(59)), None, "too early to judge");
        assert_eq!(too_slow(64 * 1024 * 61, minute), None, "at the floor");
        let why = too_slow(1024 * 1024, minute).expect("1 MB a minute is too slow");
        assert!(why.contains("1048576 bytes in 61 s"), "{why}");
    }
    use crate::storage::open_db;

    /// A database with group 0 at applied index 5 (state `old`), and a snapshot file of it at
    /// index 10 (state `new`), beside it.
    fn setup(dir: &Path) -> (Arc<DB>, SnapshotInstall) {
        setup_group(dir, 0, &dir.join("snap.sst"))
    }

    /// As [`setup`], for group `group`, with the snapshot file at `path`.
    fn setup_group(dir: &Path, group: u32, path: &Path) -> (Arc<DB>, SnapshotInstall) {
        let db = open_db(&dir.join("data")).unwrap();
        db.put(keys::applied(group), 5u64.to_be_bytes()).unwrap();
        db.put(keys::state(group, b'K', &[b"old"]), b"1").unwrap();
        db.put(keys::log(group, 5), b"entry").unwrap();
        let opts = Options::default();
        let mut sst = SstFileWriter::create(&opts);
        sst.open(path).unwrap();
        sst.put(keys::applied(group), 10u64.to_be_bytes()).unwrap();
        sst.put(keys::state(group, b'K', &[b"new"]), b"2").unwrap();
        sst.finish().unwrap();
        let marker = SnapshotInstall {
            version: SNAPSHOT_VERSION,
            path: path.display().to_string(),
            index: 10,
            term: 3,
            crc32: None,
        };
        db.put(keys::installing(group), marker.encode_to_vec()).unwrap();
        (db, marker)
    }

    fn check_switched(db: &DB) {
        check_switched_group(db, 0);
    }

    fn check_switched_group(db: &DB, group: u32) {
        assert_eq!(db.get(keys::applied(group)).unwrap().unwrap(), 10u64.to_be_bytes());
        assert_eq!(db.get(keys::state(group, b'K', &[b"old"])).unwrap(), None);
        assert_eq!(db.get(keys::state(group, b'K', &[b"new"])).unwrap().unwrap(), b"2");
        assert_eq!(db.get(keys::log(group, 5)).unwrap(), None);
        assert_eq!(db.get(keys::installing(group)).unwrap(), None, "the marker goes last");
        let t = db.get(keys::truncated(group)).unwrap().unwrap();
        assert_eq!((&t[..8], &t[8..]), (&10u64.to_be_bytes()[..], &3u64.to_be_bytes()[..]));
    }

    /// Closes the database as a crash would, opens it again and recovers: the switch is done.
    fn restart_and_recover(dir: &Path, db: Arc<DB>) {
        drop(db);
        let db = open_db(&dir.join("data")).unwrap();
        recover(&db, 0).unwrap();
        check_switched(&db);
    }

    #[test]
    fn a_crash_between_clearing_and_ingesting_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        clear(&db, 0, &marker).unwrap();
        restart_and_recover(dir.path(), db);
    }

    /// A node restarted with fewer `--groups` (here 1) while group 1's install was cut short
    /// finishes that install too, before every other snapshot file goes: the file the marker
    /// names must be there when the node starts again with its groups.
    #[test]
    fn an_interrupted_install_of_a_group_the_start_does_not_run_is_finished_too() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let incoming = incoming_dir(&data);
        std::fs::create_dir_all(&incoming).unwrap();
        let (db, marker) = setup_group(dir.path(), 1, &incoming.join("g1.sst"));
        clear(&db, 1, &marker).unwrap();
        std::fs::write(incoming.join("partial.tmp"), b"x").unwrap();
        drop(db);
        let db = open_db(&data).unwrap();
        recover_all(&db, &data).unwrap();
        check_switched_group(&db, 1);
        assert!(!snapshots_dir(&data).exists(), "the other snapshot files go");
    }

    #[test]
    fn a_crash_that_lost_the_file_before_the_clearing_keeps_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        std::fs::remove_file(&marker.path).unwrap();
        drop(db);
        let db = open_db(&dir.path().join("data")).unwrap();
        recover(&db, 0).unwrap();
        assert_eq!(db.get(keys::installing(0)).unwrap(), None, "the marker is dropped");
        assert_eq!(db.get(keys::state(0, b'K', &[b"old"])).unwrap().unwrap(), b"1");
        assert_eq!(db.get(keys::applied(0)).unwrap().unwrap(), 5u64.to_be_bytes());
        // After the clearing the group's state is gone: a missing file is then a storage error.
        for other in ["second", "third"] {
            std::fs::create_dir(dir.path().join(other)).unwrap();
        }
        let (db, marker) = setup(&dir.path().join("second"));
        clear(&db, 0, &marker).unwrap();
        std::fs::remove_file(&marker.path).unwrap();
        assert!(recover(&db, 0).is_err());
        // An install whose file is gone writes no marker.
        let snap = Snapshot {
            data: SnapshotHeader { path: marker.path.clone(), ..Default::default() }.encode_to_vec().into(),
            ..Default::default()
        };
        let (db, _) = setup(&dir.path().join("third"));
        db.delete(keys::installing(0)).unwrap();
        assert!(install(&db, 0, &snap).is_err());
        assert_eq!(db.get(keys::installing(0)).unwrap(), None);
    }

    #[test]
    fn a_crash_after_ingesting_finishes_the_switch_without_ingesting_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        clear(&db, 0, &marker).unwrap();
        // As the install does: the file overlaps what the group held, so RocksDB assigns it a
        // sequence number and writes that into the file, which a second ingest refuses.
        ingest(&db, Path::new(&marker.path)).unwrap();
        restart_and_recover(dir.path(), db);
        assert!(!Path::new(&marker.path).exists(), "the file is removed once switched in");
    }

    #[test]
    fn a_crash_inside_the_ingest_is_finished_from_the_file_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut marker) = setup(dir.path());
        let path = PathBuf::from(&marker.path);
        let received = std::fs::read(&path).unwrap();
        marker.crc32 = Some(crc32fast::hash(&received));
        db.put(keys::installing(0), marker.encode_to_vec()).unwrap();
        clear(&db, 0, &marker).unwrap();
        // The crash came after RocksDB wrote the sequence number into the file and before the
        // ingest was committed: here another database's ingest (of overlapping keys, so that it
        // assigns one) writes it.
        let other = open_db(&dir.path().join("other")).unwrap();
        other.put(keys::applied(0), 1u64.to_be_bytes()).unwrap();
        ingest(&other, &path).unwrap();
        drop(other);
        assert_ne!(std::fs::read(&path).unwrap(), received, "the ingest wrote into the file");
        restart_and_recover(dir.path(), db);
    }

    #[test]
    fn a_snapshot_asked_for_while_one_is_installed_is_given_up_without_stopping_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let (db, marker) = setup(dir.path());
        // The install's first step: the old state and log are gone, the applied index (5) is
        // still the old one, and the compaction point is the new snapshot's (10).
        clear(&db, 0, &marker).unwrap();
        let generator = Generator::new(db.clone(), 0);
        // As the maker's thread runs it: a failure here is what stops the node (exit 70).
        generator.generate();
        assert!(generator.take_failure().is_none(), "a storage error would stop the node");
        assert!(generator.slot.lock().unwrap().ready.is_none(), "nothing made");
        // Once the install is done, the group's snapshots are of its new state.
        switch_in(&db, 0, &marker).unwrap();
        let snap = generator.make(|_| {}).unwrap().unwrap();
        assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (10, 3));
        remove_path(&header_of(&snap).path);
    }

    #[test]
    fn a_files_crc_can_take_8_bytes_as_zeros_across_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..CHUNK_BYTES * 2 + 100).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(crc_of(&file, None).unwrap(), crc32fast::hash(&bytes));
        for at in [0, CHUNK_BYTES - 4, bytes.len() - 8] {
            let mut zeroed = bytes.clone();
            zeroed[at..at + 8].fill(0);
            assert_eq!(crc_of(&file, Some(at as u64)).unwrap(), crc32fast::hash(&zeroed), "at {at}");
        }
    }

    #[test]
    fn a_received_file_changed_elsewhere_is_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, marker) = setup(dir.path());
        let path = PathBuf::from(&marker.path);
        let crc32 = crc32fast::hash(&std::fs::read(&path).unwrap());
        assert!(restore_ingested(&path, crc32).is_ok(), "a file as received is left alone");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = restore_ingested(&path, crc32).unwrap_err();
        assert!(err.contains("is not the"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");
    }

    #[test]
    fn keys_of_other_groups_or_out_of_order_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |k: Vec<u8>| SnapshotChunk {
            keys: vec![k.into()],
            values: vec![Bytes::from_static(b"v")],
            ..Default::default()
        };
        let rx = queued([chunk(keys::state(1, b'K', &[b"x"]))]);
        let err = write_pairs(&dir.path().join("a.sst"), 0, &header(), rx).unwrap_err();
        assert!(err.contains("not the group's"), "{err}");
        let rx = queued([chunk(keys::state(0, b'K', &[b"b"])), chunk(keys::state(0, b'K', &[b"a"]))]);
        assert!(write_pairs(&dir.path().join("b.sst"), 0, &header(), rx).unwrap_err().contains("out of order"));
        let rx = queued([chunk(keys::state(0, b'K', &[b"a"]))]);
        assert!(
            write_pairs(&dir.path().join("c.sst"), 0, &header(), rx)
                .unwrap_err()
                .contains("ended before its last chunk")
        );
    }

    /// An SST file at `path` holding `pairs`, in order.
    fn sst(path: &Path, pairs: &[(Vec<u8>, &[u8])]) {
        let opts = Options::default();
        let mut sst = SstFileWriter::create(&opts);
        sst.open(path).unwrap();
        for (k, v) in pairs {
            sst.put(k, v).unwrap();
        }
        sst.finish().unwrap();
    }

    /// The configuration of the test snapshots: voters 1, 2 and 3.
    fn voters_1_2_3() -> ConfState {
        ConfState::from((vec![1, 2, 3], vec![]))
    }

    /// A stream that holds `chunks` and then ends, as a writer reads it.
    fn queued(chunks: impl IntoIterator<Item = SnapshotChunk>) -> mpsc::Receiver<SnapshotChunk> {
        let chunks: Vec<SnapshotChunk> = chunks.into_iter().collect();
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk).unwrap();
        }
        rx
    }

    /// The header of the test snapshots: index 7, term 2, voters 1, 2 and 3.
    fn header() -> SnapshotMetadata {
        let mut meta = SnapshotMetadata { index: 7, term: 2, ..Default::default() };
        meta.set_conf_state(voters_1_2_3());
        meta
    }

    /// An SST file at `path` holding a snapshot of group 0 that records applied index `applied`
    /// and configuration `conf`, and one record `value`; returns its bytes of keys and values.
    fn snapshot_file(path: &Path, applied: u64, conf: &ConfState, value: &[u8]) -> u64 {
        let conf = conf.write_to_bytes().unwrap();
        let pairs = [
            (keys::applied(0).to_vec(), &applied.to_be_bytes()[..]),
            (keys::conf_state(0).to_vec(), &conf[..]),
            (keys::state(0, b'K', &[b"a"]), value),
        ];
        sst(path, &pairs);
        pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Streams the bytes of the file at `from` as version 2 chunks into `write_raw` under the
    /// header [`header`], the last one with `summary`.
    fn receive_raw(from: &Path, to: &Path, group: u32, summary: Option<FileSummary>) -> Result<Received, String> {
        let bytes = std::fs::read(from).unwrap();
        let chunks = bytes.chunks(100).enumerate().map(|(i, piece)| {
            let done = (i + 1) * 100 >= bytes.len();
            SnapshotChunk {
                data: Bytes::copy_from_slice(piece),
                done,
                total_bytes: bytes.len() as u64,
                summary: summary.filter(|_| done),
                ..Default::default()
            }
        });
        write_raw(to, group, &header(), queued(chunks))
    }

    /// What a sender that made the file at `path` (holding `state_bytes`) vouches for.
    fn summary_of(path: &Path, state_bytes: u64) -> Option<FileSummary> {
        Some(FileSummary { crc32: crc32fast::hash(&std::fs::read(path).unwrap()), state_bytes })
    }

    #[test]
    fn a_received_file_is_checked_before_raft_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.sst");
        let bytes = snapshot_file(&good, 7, &voters_1_2_3(), b"v");
        let other = dir.path().join("other.sst");
        sst(&other, &[(keys::hard_state(0).to_vec(), b"x")]);
        // Its ends are the group's, but between them lies the group's vote.
        let inside = dir.path().join("inside.sst");
        let conf = voters_1_2_3().write_to_bytes().unwrap();
        let applied = 7u64.to_be_bytes();
        let pairs = [
            (keys::applied(0).to_vec(), &applied[..]),
            (keys::conf_state(0).to_vec(), &conf[..]),
            (keys::hard_state(0).to_vec(), &b"vote"[..]),
            (keys::state(0, b'K', &[b"a"]), &b"v"[..]),
        ];
        sst(&inside, &pairs);
        let garbage = dir.path().join("garbage.sst");
        std::fs::write(&garbage, vec![7u8; 5000]).unwrap();
        // Read back pair by pair (an older sender), and by its ends after the sender's CRC.
        for vouched in [false, true] {
            let summary = |path: &Path| summary_of(path, bytes).filter(|_| vouched);
            let into = |name: &str| dir.path().join(format!("{name}-{vouched}.sst"));
            let got = receive_raw(&good, &into("in"), 0, summary(&good)).unwrap();
            assert_eq!(got.state_bytes, bytes);
            assert_eq!(got.file_bytes, std::fs::metadata(&good).unwrap().len());
            let err = receive_raw(&good, &into("in1"), 1, summary(&good)).unwrap_err();
            assert!(err.contains("not the group's"), "{err}");
            let err = receive_raw(&other, &into("in2"), 0, summary(&other)).unwrap_err();
            assert!(err.contains("not the group's"), "{err}");
            let err = receive_raw(&inside, &into("in4"), 0, summary(&inside)).unwrap_err();
            assert!(err.contains("not the group's"), "{err}");
            let err = receive_raw(&garbage, &into("in3"), 0, summary(&garbage)).unwrap_err();
            assert!(err.contains("not a readable SST file"), "{err}");
            assert!(!into("in3").with_extension("check").exists(), "the scratch database is removed");
        }
        // What the check did, as its log line reports it (`read_back`).
        let crc = crc32fast::hash(&std::fs::read(&good).unwrap());
        let reads = Reads::probe(&good);
        let checked = check_written(&good, 0, &header(), reads, None, crc);
        assert!(matches!(checked, Ok(Checked::ReadBack(b)) if b == bytes));
        let checked = check_written(&good, 0, &header(), reads, summary_of(&good, bytes), crc);
        assert!(matches!(checked, Ok(Checked::Vouched(b)) if b == bytes));
    }

    #[test]
    fn a_byte_changed_on_the_way_is_refused_with_or_without_the_senders_crc() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.sst");
        let state_bytes = snapshot_file(&good, 7, &voters_1_2_3(), &[b'v'; 200]);
        let mut bytes = std::fs::read(&good).unwrap();
        // In the data block, which comes first: its own checksum no longer matches either.
        bytes[20] ^= 1;
        let changed = dir.path().join("changed.sst");
        std::fs::write(&changed, &bytes).unwrap();
        let err = receive_raw(&changed, &dir.path().join("in.sst"), 0, summary_of(&good, state_bytes)).unwrap_err();
        assert!(err.contains("CRC-32"), "{err}");
        assert!(receive_raw(&changed, &dir.path().join("in1.sst"), 0, None).is_err());
    }

    #[test]
    fn a_file_that_records_another_snapshot_than_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, applied: u64, conf: &ConfState| {
            let path = dir.path().join(name);
            let bytes = snapshot_file(&path, applied, conf, b"v");
            (path, bytes)
        };
        let voters_1_2_3_4 = ConfState::from((vec![1, 2, 3, 4], vec![]));
        let learner_4 = ConfState::from((vec![1, 2, 3], vec![4]));
        // Raft's lists are sets: another order is the same configuration.
        let (reordered, bytes) = file("reordered.sst", 7, &ConfState::from((vec![3, 1, 2], vec![])));
        let refused = [
            (file("later.sst", 9, &voters_1_2_3()), "applied index 9 is not the header's snapshot index 7"),
            (file("wider.sst", 7, &voters_1_2_3_4), "voters: {1, 2, 3, 4}"),
            (file("learner.sst", 7, &learner_4), "learners: {4}"),
        ];
        for vouched in [false, true] {
            let summary = |path: &Path, bytes| summary_of(path, bytes).filter(|_| vouched);
            let into = |name: &str| dir.path().join(format!("in-{name}-{vouched}.sst"));
            assert!(receive_raw(&reordered, &into("reordered"), 0, summary(&reordered, bytes)).is_ok());
            for ((path, bytes), expected) in &refused {
                let err = receive_raw(path, &into("refused"), 0, summary(path, *bytes)).unwrap_err();
                assert!(err.contains(expected), "vouched {vouched}: {err}");
            }
        }
        // What each check sees of a file, to the variant.
        let check = |applied: &[u8], conf: Option<ConfState>| {
            let conf = conf.map(|c| c.write_to_bytes().unwrap());
            FileMeta { applied: Some(applied.to_vec()), conf }.check(&header())
        };
        let (seven, nine) = (7u64.to_be_bytes(), 9u64.to_be_bytes());
        assert!(check(&seven, Some(voters_1_2_3())).is_ok());
        assert!(matches!(check(&nine, Some(voters_1_2_3())), Err(MetaMismatch::Index { file: 9, header: 7 })));
        assert!(matches!(check(&seven, Some(learner_4)), Err(MetaMismatch::Conf { .. })));
        assert!(matches!(check(&seven, None), Err(MetaMismatch::Missing("configuration"))));
        assert!(matches!(check(b"7", Some(voters_1_2_3())), Err(MetaMismatch::Undecodable { .. })));
        assert!(matches!(FileMeta::default().check(&header()), Err(MetaMismatch::Missing("applied index"))));
        // A format 1 stream's pairs are held to the header too.
        let conf = voters_1_2_3().write_to_bytes().unwrap();
        let pairs = SnapshotChunk {
            keys: vec![keys::applied(0).to_vec().into(), keys::conf_state(0).to_vec().into()],
            values: vec![Bytes::copy_from_slice(&9u64.to_be_bytes()), conf.into()],
            done: true,
            total_pairs: 2,
            ..Default::default()
        };
        let err = write_pairs(&dir.path().join("pairs.sst"), 0, &header(), queued([pairs])).unwrap_err();
        assert!(err.contains("applied index 9 is not the header's snapshot index 7"), "{err}");
    }

    #[test]
    fn streams_over_the_cap_are_refused_until_one_ends_and_their_senders_wait() {
        let slots = StreamSlots::new(2);
        let (first, _second) = (slots.take().unwrap(), slots.take().unwrap());
        let refused = slots.take().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("receiving 2 snapshot streams"), "{}", refused.message());
        assert!(matches!(NotSent::from(refused), NotSent::Busy(_)), "its sender waits before raft hears");
        drop(first);
        assert!(slots.take().is_ok(), "a stream that ends frees its slot");
        assert!(matches!(NotSent::from(Status::invalid_argument("bad file")), NotSent::Failed(_)));
    }

    #[test]
    fn a_file_dropped_behind_its_reader_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grown");
        let mut writer = std::fs::File::create(&path).unwrap();
        // The sender's case: another handle writes, a read-only one drops behind.
        let reader = std::fs::File::open(&path).unwrap();
        let mut behind = WriteBehind::default();
        for i in 0..4u8 {
            writer.write_all(&[i; 100_000]).unwrap();
            behind.advance(&reader, 100_000 * (i as u64 + 1)).unwrap();
        }
        // Every chunk's writeback started; all but the last one's waited for and dropped.
        assert_eq!((behind.dropped, behind.started), (300_000, 400_000));
        let got = std::fs::read(&path).unwrap();
        assert!(got.chunks(100_000).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    }

    #[test]
    fn a_file_is_checked_around_the_cache_where_it_can_and_through_it_where_not() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.sst");
        let bytes = snapshot_file(&good, 7, &voters_1_2_3(), b"v");
        assert_eq!(Reads::probe(&dir.path().join("missing.sst")), Reads::Cached);
        // A directory cannot be read at all, so the probe says no and RocksDB's own error stands.
        assert_eq!(Reads::probe(dir.path()), Reads::Cached);
        for reads in [Reads::probe(&good), Reads::Cached] {
            assert_eq!(check_sst(&good, 0, reads).unwrap().0, bytes);
        }
        // tmpfs takes O_DIRECT from Linux 6.6 on, and refuses it before: the check runs either way.
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            let copy = shm.path().join("good.sst");
            std::fs::copy(&good, &copy).unwrap();
            assert_eq!(check_sst(&copy, 0, Reads::probe(&copy)).unwrap().0, bytes);
        }
    }

    #[test]
    fn a_received_file_has_its_bytes_around_the_cache_or_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..CHUNK_BYTES + 10_000).map(|i| (i * 7 % 251) as u8).collect();
        for direct in [true, false] {
            let path = dir.path().join(format!("direct-{direct}"));
            let mut sink = Sink::create(&path, direct).unwrap();
            // Uneven pieces: a chunk's buffer fills across writes, and the tail is a part block.
            for piece in bytes.chunks(999_999) {
                sink.write(piece).unwrap();
            }
            sink.finish().unwrap();
            assert!(direct || sink.direct.is_none());
            // The check reads the file as its Sink wrote it, without a probe of its own: the two
            // must agree where the file system took O_DIRECT.
            if direct {
                assert_eq!(sink.reads(), Reads::probe(&path));
            }
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "direct: {direct}");
        }
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chunk =
            SnapshotChunk { data: Bytes::from_static(b"abc"), done: true, total_bytes: 10, ..Default::default() };
        let err = write_raw(&dir.path().join("t.sst"), 0, &header(), queued([chunk])).unwrap_err();
        assert!(err.contains("3 bytes arrived of 10"), "{err}");
    }

    #[test]
    fn a_made_snapshot_holds_the_group_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir.path().join("data")).unwrap();
        db.put(keys::applied(0), 7u64.to_be_bytes()).unwrap();
        db.put(keys::truncated(0), [7u64.to_be_bytes(), 2u64.to_be_bytes()].concat()).unwrap();
        db.put(keys::conf_state(0), voters_1_2_3().write_to_bytes().unwrap()).unwrap();
        db.put(keys::state(0, b'K', &[b"a"]), b"1").unwrap();
        db.put(keys::state(1, b'K', &[b"b"]), b"2").unwrap();
        db.put(keys::log(0, 8), b"entry").unwrap();
        let snap = Generator::new(db.clone(), 0).make(|_| {}).unwrap().unwrap();
        assert_eq!(snap.get_metadata(), &header());
        let made = header_of(&snap);
        let conf_bytes = 5 + voters_1_2_3().write_to_bytes().unwrap().len() as u64;
        assert_eq!(made.state_bytes, 5 + 8 + conf_bytes + 7 + 1);
        let (got, held) = check_sst(Path::new(&made.path), 0, Reads::Cached).unwrap();
        assert_eq!(got, made.state_bytes);
        held.check(snap.get_metadata()).unwrap();
    }

    #[test]
    fn a_format_1_stream_carries_the_made_snapshot_as_pairs_and_release_1_refuses_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir.path().join("data")).unwrap();
        db.put(keys::applied(0), 7u64.to_be_bytes()).unwrap();
        db.put(keys::truncated(0), [7u64.to_be_bytes(), 2u64.to_be_bytes()].concat()).unwrap();
        db.put(keys::conf_state(0), voters_1_2_3().write_to_bytes().unwrap()).unwrap();
        for i in 0..100u32 {
            db.put(keys::state(0, b'K', &[&i.to_be_bytes()]), [i as u8; 64]).unwrap();
        }
        let snap = Generator::new(db.clone(), 0).make(|_| {}).unwrap().unwrap();
        let made = header_of(&snap);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // As on a blocking thread of the runtime, where the sender runs it.
        let _inside = runtime.enter();
        let (tx, rx) = mpsc::channel(64);
        let file_bytes = stream_pairs(Path::new(&made.path), 0, tx, Pace::new(0), runtime.handle()).unwrap();
        assert_eq!(file_bytes, std::fs::metadata(&made.path).unwrap().len());
        let got = write_pairs(&dir.path().join("in.sst"), 0, snap.get_metadata(), rx).unwrap();
        assert_eq!(got.state_bytes, made.state_bytes);
        let written = std::fs::read(dir.path().join("in.sst")).unwrap();
        assert_eq!(got.crc32, crc32fast::hash(&written), "a crash inside its ingest can be undone");
        assert_eq!(check_sst(&dir.path().join("in.sst"), 0, Reads::Cached).unwrap().0, made.state_bytes);
        let first = |v| SnapshotChunk { snapshot_version: v, from: 3, ..Default::default() };
        let release_1 = crate::version::Release::emulate(1).unwrap().snapshot_max;
        assert!(readable(&first(1), release_1).is_ok() && readable(&first(2), SNAPSHOT_VERSION).is_ok());
        let refused = readable(&first(2), release_1).unwrap_err();
        assert!(refused.contains("format 2 from node 3 refused: this build reads up to 1"), "{refused}");
    }

    /// A database with group 0 at applied index 7 holding `records` records of 64 KB, different
    /// bytes each (so that compression does not shrink the file below what bounds its memory).
    fn big_group(dir: &Path, records: u32) -> Arc<DB> {
        let db = open_db(&dir.join("data")).unwrap();
        db.put(keys::applied(0), 7u64.to_be_bytes()).unwrap();
        db.put(keys::truncated(0), [7u64.to_be_bytes(), 2u64.to_be_bytes()].concat()).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..records {
            let value: Vec<u8> = (0..8192)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect();
            db.put(keys::state(0, b'K', &[&i.to_be_bytes()]), value).unwrap();
        }
        db
    }

    #[test]
    fn a_snapshot_made_in_memory_streams_whole_and_holds_little_memory() {
        let dir = tempfile::tempdir().unwrap();
        // 40 MB of state: more than twice what the writer may run ahead of its sender.
        let db = big_group(dir.path(), 640);
        let mut generator = Generator::new(db.clone(), 0);
        generator.set_format(2);
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let maker = std::thread::spawn(move || generator.make(|snap| opened_tx.send(header_of(snap).path).unwrap()));
        let path = PathBuf::from(opened_rx.recv().unwrap());
        assert!(in_memory::is(&path) && !outgoing_dir(&dir.path().join("data")).exists(), "nothing on the disk");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let sender = runtime.spawn(stream_file(path.clone(), tx, Pace::new(0)));
        let (mut bytes, mut most_held, mut summary) = (Vec::new(), 0u64, None);
        while let Some(chunk) = rx.blocking_recv() {
            summary = chunk.summary.or(summary);
            use std::os::unix::fs::MetadataExt as _;
            // What the file holds in memory, while it is still held.
            if let Ok(m) = std::fs::metadata(&path) {
                most_held = most_held.max(m.blocks() * 512);
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let sent = runtime.block_on(sender).unwrap().unwrap();
        let made = header_of(&maker.join().unwrap().unwrap().unwrap());
        assert_eq!(sent, bytes.len() as u64);
        assert!(bytes.len() > 2 * in_memory::AHEAD as usize, "{} bytes", bytes.len());
        assert!(most_held <= in_memory::AHEAD + 2 * CHUNK_BYTES as u64, "held {most_held} bytes at once");
        let received = dir.path().join("received.sst");
        std::fs::write(&received, &bytes).unwrap();
        assert_eq!(check_sst(&received, 0, Reads::Cached).unwrap().0, made.state_bytes);
        // The last chunk vouches for the file: the receiver checks its bytes against this.
        assert_eq!(summary, Some(FileSummary { crc32: crc32fast::hash(&bytes), state_bytes: made.state_bytes }));
        remove_path(&made.path);
        assert!(in_memory::open(&path).is_err(), "a removed in-memory file cannot be opened again");
    }

    /// A maker of in-memory snapshots of a 40 MB group (more than a window ahead of a sender)
    /// that waits `reader_timeout` for a sender to read on.
    fn in_memory_maker(dir: &Path, reader_timeout: Duration) -> Generator {
        let mut generator = Generator::new(big_group(dir, 640), 0);
        generator.set_format(2);
        generator.reader_timeout = reader_timeout;
        generator
    }

    #[test]
    fn a_snapshot_made_in_memory_that_no_sender_reads_is_given_up_without_stopping_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let generator = in_memory_maker(dir.path(), Duration::from_millis(50));
        let mut path = String::new();
        assert!(generator.make(|snap| path = header_of(snap).path).unwrap().is_none());
        let err = in_memory::open(Path::new(&path)).unwrap_err().to_string();
        assert!(err.contains("given up"), "{err}");
        assert!(matches!(Writing::of(&path), Some(Writing::Failed(_))), "a sender that had it open fails");
        assert!(generator.take_failure().is_none(), "not a storage error");
        remove_path(&path);
    }

    #[test]
    fn a_snapshot_made_in_memory_stops_at_once_when_its_sender_ends() {
        let dir = tempfile::tempdir().unwrap();
        // Long: only the sender's end can stop the writer within the test.
        let generator = in_memory_maker(dir.path(), Duration::from_secs(120));
        let started = Instant::now();
        let mut sender = None;
        let made = generator.make(|snap| {
            let path = header_of(snap).path;
            // A sender that read nothing and ended (its peer died): once the writer is a full
            // window ahead, waiting for it, the file is discarded as a send's end does.
            sender = Some(std::thread::spawn(move || {
                while std::fs::metadata(&path).map_or(0, |m| m.len()) <= in_memory::AHEAD {
                    std::thread::sleep(Duration::from_millis(1));
                }
                discard_file(&path);
                path
            }));
        });
        assert!(made.unwrap().is_none(), "a writer whose sender ended gives its file up");
        assert!(started.elapsed() < generator.reader_timeout, "stopped by the sender's end, not the timeout");
        let path = sender.unwrap().join().unwrap();
        assert!(matches!(Writing::of(&path), Some(Writing::Failed(_))));
        remove_path(&path);
    }

    /// Reads the file at `path` chunk by chunk as a sender does, until its end or an error.
    fn tail(path: &Path) -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        let mut got = Vec::new();
        loop {
            let (data, done) = read_chunk(&mut f, &path.display().to_string())?;
            got.extend_from_slice(&data);
            if done {
                return Ok(got);
            }
        }
    }

    #[test]
    fn a_file_being_written_is_streamed_to_its_end_and_a_failed_one_fails_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing.sst");
        let name = path.display().to_string();
        Writing::start(&name);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&[1; 1000]).unwrap();
        let reader = std::thread::spawn({
            let path = path.clone();
            move || tail(&path)
        });
        // The reader has read what is there and waits for the writer, which is not done.
        std::thread::sleep(TAIL_WAIT * 10);
        assert!(!reader.is_finished());
        file.write_all(&[2; CHUNK_BYTES]).unwrap();
        Writing::end(&name, Ok(SnapshotHeader::default()));
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got.len(), 1000 + CHUNK_BYTES);
        assert!(got[..1000].iter().all(|b| *b == 1) && got[1000..].iter().all(|b| *b == 2));
        remove_path(&name);
        assert!(Writing::of(&name).is_none() && !path.exists());

        Writing::start(&name);
        std::fs::write(&path, [3; 10]).unwrap();
        Writing::end(&name, Err("disk full".into()));
        let err = tail(&path).unwrap_err().to_string();
        assert!(err.contains("making the snapshot failed: disk full"), "{err}");
        remove_path(&name);
    }

    #[test]
    fn a_make_is_paced_by_the_files_bytes_so_compressible_state_is_not_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir.path().join("data")).unwrap();
        for i in 0..64u32 {
            db.put(keys::state(0, b'K', &[&i.to_be_bytes()]), [7u8; 65536]).unwrap();
        }
        let path = dir.path().join("made.sst");
        let mut pace = Pace::new(u64::MAX);
        let state = write_sst(&db.snapshot(), 0, &path, &mut pace, || {}, |_| true).unwrap().unwrap();
        let file = std::fs::metadata(&path).unwrap().len();
        assert!(state > 4_000_000 && file < state / 10, "{state} bytes of state in {file}");
        assert!(pace.bytes > 0 && pace.bytes <= file, "charged {} bytes", pace.bytes);
    }

    #[test]
    fn a_pace_waits_until_the_bytes_fit_the_budget() {
        let mut pace = Pace::new(1_000_000);
        let wait = pace.wait_after(500_000);
        // Half a second of budget, less the time gone by since the pace started, however long
        // the machine took to get here.
        let due = Duration::from_millis(500);
        assert!(wait <= due && wait + pace.started.elapsed() >= due, "{wait:?}");
        assert_eq!(Pace::new(0).wait_after(u64::MAX), Duration::ZERO);
    }
}
