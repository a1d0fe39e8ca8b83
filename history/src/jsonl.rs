//! The native history format: JSON Lines, one [`Op`] per line.
//!
//! The [`Writer`] flushes after every op, so a run that crashes keeps every op it recorded; at
//! worst its last line is cut short. The [`Reader`] streams ops and reports such a truncated
//! last line as [`ErrorKind::Truncated`], distinct from a malformed line in the middle of a file.
//!
//! # Examples
//!
//! ```
//! use ordeal_history::{jsonl, Op, Process};
//!
//! let mut buf = Vec::new();
//! let mut w = jsonl::Writer::new(&mut buf);
//! w.write(&Op::invoke(Process::Client(0), "read", serde_json::Value::Null)).unwrap();
//! drop(w);
//! let ops: Vec<Op> = jsonl::Reader::new(&buf[..]).collect::<Result<_, _>>().unwrap();
//! assert_eq!(ops[0].f, "read");
//! ```

use crate::{History, Op};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Writes ops as JSON Lines, flushing after each one.
pub struct Writer<W: Write> {
    inner: BufWriter<W>,
}

impl Writer<File> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Writer::new(File::create(path)?))
    }
}

impl<W: Write> Writer<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> Self {
        Writer { inner: BufWriter::with_capacity(64 * 1024, inner) }
    }

    /// Appends one op and flushes it to the underlying writer.
    pub fn write<V: Serialize>(&mut self, op: &Op<V>) -> io::Result<()> {
        self.write_unflushed(op)?;
        self.inner.flush()
    }

    /// Appends one op without flushing; call [`Writer::flush`] after a batch.
    pub fn write_unflushed<V: Serialize>(&mut self, op: &Op<V>) -> io::Result<()> {
        serde_json::to_writer(&mut self.inner, op)?;
        self.inner.write_all(b"\n")
    }

    /// Flushes buffered ops to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What was wrong with a line.
#[derive(Debug, Error)]
pub enum ErrorKind {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A complete line that is not a valid op.
    #[error("column {column}: {message}")]
    Malformed {
        /// 1-based column where parsing stopped.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// An op whose time is before the previous op's: a history lists ops in the order they
    /// happened, so its times never decrease.
    #[error("time {time} is before the previous op's ({previous}): the ops are out of order")]
    TimeBackwards {
        /// The op's time.
        time: u64,
        /// The previous op's time.
        previous: u64,
    },
    /// The last line has no newline and does not parse: the writer was cut off mid-line.
    #[error("truncated last line (the run probably crashed while writing it): {message}")]
    Truncated {
        /// What the parser expected.
        message: String,
    },
}

/// A line that could not be read, with its 1-based line number.
#[derive(Debug, Error)]
#[error("line {line}: {kind}")]
pub struct Error {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    #[source]
    pub kind: ErrorKind,
}

impl Error {
    /// Whether this is a truncated last line, after which every earlier op is still good.
    pub fn is_truncation(&self) -> bool {
        matches!(self.kind, ErrorKind::Truncated { .. })
    }
}

/// Streams ops from JSON Lines. Blank lines are skipped. After the first error it stops.
pub struct Reader<R, V = serde_json::Value> {
    inner: R,
    line: usize,
    buf: String,
    done: bool,
    /// The time of the last op read.
    last_time: u64,
    _value: PhantomData<fn() -> V>,
}

impl<R: io::Read, V> Reader<BufReader<R>, V> {
    /// A reader over an unbuffered source.
    pub fn new(inner: R) -> Self {
        Reader::from_buf_read(BufReader::with_capacity(256 * 1024, inner))
    }
}

impl<R, V> Reader<R, V> {
    /// The 1-based line of the last op read (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<R: BufRead, V> Reader<R, V> {
    /// A reader over a buffered source.
    pub fn from_buf_read(inner: R) -> Self {
        Reader { inner, line: 0, buf: String::new(), done: false, last_time: 0, _value: PhantomData }
    }
}

impl<R: BufRead, V: DeserializeOwned> Iterator for Reader<R, V> {
    type Item = Result<Op<V>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            let line = self.line;
            match self.inner.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    let text = self.buf.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let complete = self.buf.ends_with('\n');
                    let op = serde_json::from_str::<Op<V>>(text).map_err(|e| {
                        let message = without_position(&e);
                        if complete {
                            ErrorKind::Malformed { column: e.column(), message }
                        } else {
                            ErrorKind::Truncated { message }
                        }
                    });
                    let op = op.and_then(|op| {
                        if op.time < self.last_time {
                            return Err(ErrorKind::TimeBackwards { time: op.time, previous: self.last_time });
                        }
                        Ok(op)
                    });
                    match &op {
                        Ok(op) => self.last_time = op.time,
                        Err(_) => self.done = true,
                    }
                    return Some(op.map_err(|kind| Error { line, kind }));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error { line, kind: e.into() }));
                }
            }
        }
        None
    }
}

/// serde_json's messages end in "at line L column C", which is always line 1 here.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// An error reading a history file: `path:line: what was wrong`.
#[derive(Debug, Error)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The line, when the problem is on one.
    pub line: Option<usize>,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.kind),
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

/// Reads a whole history file. Any bad line, including a truncated last one, is an error.
pub fn read_file<V: DeserializeOwned>(path: impl AsRef<Path>) -> Result<History<V>, FileError> {
    match read_file_lenient(path)? {
        (_, Some(truncation)) => Err(truncation),
        (history, None) => Ok(history),
    }
}

/// Reads a history file that may end in a truncated line, as a crashed run leaves it.
///
/// Returns the ops before the truncated line, and the truncation as a warning. A malformed line
/// anywhere else is still an error.
pub fn read_file_lenient<V: DeserializeOwned>(
    path: impl AsRef<Path>,
) -> Result<(History<V>, Option<FileError>), FileError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| FileError { path: path.to_owned(), line: None, kind: ErrorKind::Io(e) })?;
    let mut ops = Vec::new();
    for item in Reader::new(file) {
        match item {
            Ok(op) => ops.push(op),
            Err(e) => {
                let truncated = e.is_truncation();
                let err = FileError { path: path.to_owned(), line: Some(e.line), kind: e.kind };
                if truncated {
                    return Ok((History::from_ops(ops), Some(err)));
                }
                return Err(err);
            }
        }
    }
    Ok((History::from_ops(ops), None))
}
