//! Records the history as it happens: assigns dense indices and monotonic times, and writes each
//! op to `history.jsonl` before anything else can happen, flushed, so a crashed run keeps it.

use ordeal_history::{Op, OpType, jsonl};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// Counts of completions so far, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Ops recorded, invocations and completions.
    pub events: u64,
    /// `ok` client completions.
    pub ok: u64,
    /// `fail` client completions.
    pub fail: u64,
    /// `info` client completions.
    pub info: u64,
}

struct Inner {
    writer: jsonl::Writer<File>,
    next_index: u64,
    counts: Counts,
    error: Option<io::Error>,
}

/// The history recorder. Cheap to share behind an `Arc`.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// Creates `path` and starts the test clock.
    pub fn create(path: &Path) -> io::Result<Recorder> {
        let writer = jsonl::Writer::create(path)?;
        Ok(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner { writer, next_index: 0, counts: Counts::default(), error: None }),
        })
    }

    /// The instant the test clock counts from.
    pub fn origin(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since the test started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records `op`, setting its index and time; returns it as recorded.
    ///
    /// Index and time are assigned under one lock, so history order and time order agree. A
    /// failed write is remembered and reported by [`Recorder::finish`]; the run goes on.
    pub fn record(&self, mut op: Op) -> Op {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        op.index = inner.next_index;
        op.time = self.now();
        inner.next_index += 1;
        inner.counts.events += 1;
        if op.is_client() {
            match op.kind {
                OpType::Ok => inner.counts.ok += 1,
                OpType::Fail => inner.counts.fail += 1,
                OpType::Info => inner.counts.info += 1,
                OpType::Invoke => {}
            }
        }
        if inner.error.is_none()
            && let Err(e) = inner.writer.write(&op)
        {
            inner.error = Some(e);
        }
        op
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).counts
    }

    /// Flushes; returns the first write error of the run, if any.
    pub fn finish(&self) -> io::Result<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        inner.writer.flush()?;
        Ok(inner.next_index)
    }
}
