//! Histories in the formats of other tools, and their semantics.
//!
//! | format | reader | nil read | default initial value |
//! |---|---|---|---|
//! | `jsonl` (native) | [`ordeal_history::jsonl`] | `null` = absent | absent |
//! | `edn` (Knossos/Jepsen) | [`knossos`] | unknown value (always legal) | `0` |
//! | `etcd` (Jepsen console log) | [`etcd`] | absent | absent |
//! | `porcupine` (kv log) | [`porcupine`] | n/a | `""` per key |
//!
//! Every importer produces a native [`History`]; the differences in meaning are resolved there
//! (a Knossos `:ok :read nil` becomes an `info` read, which constrains nothing), so the models
//! see one semantics. File order is the real order; an imported op keeps its `:time` when the
//! file's times never go back, else its time is its position. An EDN file that ordeal exported
//! states its model and initial value ([`stated`]), so checking it gives the original's verdict.

pub mod edn;
pub mod etcd;
pub mod knossos;
pub mod porcupine;
pub mod stated;

use ordeal_history::{History, Op, jsonl};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A history file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ordeal's JSON Lines.
    Jsonl,
    /// A Knossos/Jepsen EDN history.
    Edn,
    /// Jepsen etcd console output (`INFO jepsen.util - <process> <type> <f> <value>`).
    Etcd,
    /// Porcupine's kv test logs.
    Porcupine,
}

impl Format {
    /// Parses a `--format` name; `auto` is `None`.
    pub fn parse(name: &str) -> Result<Option<Format>, String> {
        Ok(Some(match name {
            "auto" => return Ok(None),
            "jsonl" | "json" => Format::Jsonl,
            "edn" | "knossos" => Format::Edn,
            "etcd" | "jepsen-log" => Format::Etcd,
            "porcupine" | "porcupine-kv" => Format::Porcupine,
            other => return Err(format!("unknown format `{other}`: expected auto, jsonl, edn, etcd or porcupine")),
        }))
    }

    /// The initial register value histories in this format assume.
    pub fn default_init(self) -> Value {
        match self {
            Format::Edn => Value::from(0),
            Format::Porcupine => Value::from(""),
            Format::Jsonl | Format::Etcd => Value::Null,
        }
    }

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::Etcd => "etcd",
            Format::Porcupine => "porcupine",
        }
    }
}

/// Guesses the format from the start of a file.
pub fn detect(head: &str) -> Format {
    // Jepsen console output: log lines of `jepsen.*` namespaces, even when no op line is among
    // them (a run whose cluster never started).
    if head.lines().any(etcd::is_jepsen_line) {
        return Format::Etcd;
    }
    let first = head.lines().map(str::trim_start).find(|l| !l.is_empty() && !l.starts_with(';')).unwrap_or("");
    if first.starts_with("{\"") || first.starts_with("{ \"") {
        Format::Jsonl
    } else if first.starts_with("{:") && first.contains(":key") && first.trim_end().ends_with('}') {
        Format::Porcupine
    } else if first.is_empty() {
        Format::Jsonl
    } else {
        Format::Edn
    }
}

/// A file that could not be imported: `path:line: what was wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ImportError {
    /// The file.
    pub path: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What was wrong and what was expected.
    pub message: String,
}

/// A problem at a line, before the path is known.
#[derive(Debug)]
pub struct LineError {
    /// 1-based line.
    pub line: Option<usize>,
    /// What was wrong.
    pub message: String,
}

impl LineError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        LineError { line: Some(line), message: message.into() }
    }
}

/// The ops of a history file, in order; the first error ends the stream.
pub type OpStream = Box<dyn Iterator<Item = Result<Op, ImportError>>>;

/// Opens a history file in `format` (detected when `None`). JSON Lines and Porcupine's kv logs
/// are streamed, so a history need not fit in memory; other formats are parsed whole first.
pub fn open(path: &Path, format: Option<Format>) -> Result<(OpStream, Format), ImportError> {
    let err = |line: Option<usize>, message: String| ImportError { path: path.to_owned(), line, message };
    let mut file = std::fs::File::open(path).and_then(skip_bom).map_err(|e| err(None, e.to_string()))?;
    let format = match format {
        Some(f) => f,
        None => {
            use std::io::Read;
            // A handle of its own: a clone would share the offset and move the reader's start.
            let mut head = Vec::with_capacity(64 * 1024);
            std::fs::File::open(path)
                .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
                .map_err(|e| err(None, e.to_string()))?;
            detect(String::from_utf8_lossy(&head).trim_start_matches(BOM))
        }
    };
    if format == Format::Jsonl {
        return Ok((Box::new(jsonl_ops(path.to_owned(), file)), format));
    }
    if format == Format::Porcupine {
        return Ok((Box::new(porcupine_ops(path.to_owned(), file)), format));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(|e| err(None, e.to_string()))?;
    let parsed = match format {
        Format::Edn => knossos::parse(&text),
        Format::Etcd => etcd::parse(&text),
        Format::Porcupine | Format::Jsonl => unreachable!("streamed above"),
    };
    let history = parsed.map_err(|e| err(e.line, e.message))?;
    Ok((Box::new(history.into_ops().into_iter().map(Ok)), format))
}

/// The UTF-8 byte order mark some editors (Notepad) put at the start of a file: no part of any
/// format, so every reader starts after it rather than failing on it.
const BOM: char = '\u{feff}';

/// `file`, positioned after its byte order mark if it starts with one.
fn skip_bom(mut file: std::fs::File) -> std::io::Result<std::fs::File> {
    use std::io::{Read, Seek, SeekFrom};
    let mut head = Vec::with_capacity(3);
    (&mut file).take(3).read_to_end(&mut head)?;
    let start = if head == BOM.to_string().as_bytes() { 3 } else { 0 };
    file.seek(SeekFrom::Start(start))?;
    Ok(file)
}

/// A native history's ops. Their indices must rise: the checker orders an op's calls by index and
/// reports name ops by it, so a repeated index (two ops that are one) or one that goes back
/// would give a wrong order or an ambiguous name. Gaps are allowed (a history filtered by key).
fn jsonl_ops(path: PathBuf, file: std::fs::File) -> impl Iterator<Item = Result<Op, ImportError>> {
    let mut reader = jsonl::Reader::new(file);
    let mut previous: Option<u64> = None;
    std::iter::from_fn(move || {
        let op = match reader.next()? {
            Ok(op) => op,
            Err(e) => {
                return Some(Err(ImportError { path: path.clone(), line: Some(e.line), message: e.kind.to_string() }));
            }
        };
        if let Some(p) = previous.filter(|p| op.index <= *p) {
            let message = format!(
                "index {} is not after the previous op's ({p}): an op's index is its position in the history",
                op.index
            );
            return Some(Err(ImportError { path: path.clone(), line: Some(reader.line()), message }));
        }
        previous = Some(op.index);
        Some(Ok(op))
    })
}

/// A Porcupine kv log's ops, read a line at a time into one buffer.
fn porcupine_ops(path: PathBuf, file: std::fs::File) -> impl Iterator<Item = Result<Op, ImportError>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let (mut line, mut n, mut index, mut failed) = (String::new(), 0, 0, false);
    std::iter::from_fn(move || {
        while !failed {
            line.clear();
            n += 1;
            let mut err = |message: String| {
                failed = true;
                ImportError { path: path.clone(), line: Some(n), message }
            };
            match reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(err(e.to_string()))),
            }
            match porcupine::parse_line(line.trim_end_matches(['\n', '\r']), n) {
                Ok(None) => continue,
                Ok(Some(mut op)) => {
                    op.index = index;
                    index += 1;
                    return Some(Ok(op));
                }
                Err(e) => return Some(Err(err(e.message))),
            }
        }
        None
    })
}

/// Reads a whole history file in `format` (detected when `None`).
pub fn import(path: &Path, format: Option<Format>) -> Result<(History, Format), ImportError> {
    let (ops, format) = open(path, format)?;
    Ok((History::from_ops(ops.collect::<Result<_, _>>()?), format))
}

/// Converts an EDN value to JSON: keywords and symbols become strings, collections arrays,
/// maps objects (keys rendered as strings), tags are dropped.
pub fn edn_to_json(v: &edn::Edn<'_>) -> Value {
    use edn::Edn;
    match v {
        Edn::Nil => Value::Null,
        Edn::Bool(b) => Value::Bool(*b),
        Edn::Int(i) => Value::from(*i),
        Edn::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.to_string()),
        Edn::Vector(items) | Edn::List(items) | Edn::Set(items) => {
            Value::Array(items.iter().map(edn_to_json).collect())
        }
        Edn::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    (key, edn_to_json(v))
                })
                .collect(),
        ),
        Edn::Tagged(_, inner) => edn_to_json(inner),
    }
}

/// A keyword or string field's text.
fn name_of<'e>(v: &'e edn::Edn<'_>) -> Option<&'e str> {
    match v {
        edn::Edn::Keyword(s) | edn::Edn::Str(s) | edn::Edn::Symbol(s) => Some(s),
        _ => None,
    }
}

/// Writes a history as a Knossos/Jepsen EDN vector of op maps, so that Knossos and Elle can
/// re-check it, under a first line that states the `model` it is checked with and the registers'
/// `init`ial value ([`stated`]), so that `ordeal check` of the export gives the original's
/// verdict. Keyed register values (`{"key": k, "value": v}`, or `from`/`to` for a cas) become
/// `jepsen.independent` tuples `[k v]` (`[k [from to]]`); other values are written whole.
pub fn export_edn(history: &History, model: &str, init: &Value) -> String {
    use edn::Edn;
    let keyed = |op: &Op| op.is_client() && op.value.as_object().is_some_and(stated::is_register_shaped);
    let independent = history.ops().iter().any(keyed);
    let mut out = stated::Stated { model: model.into(), init: init.clone(), independent }.header();
    out.push('[');
    let kw = |s: &str| Edn::keyword(s.to_owned());
    for (i, op) in history.ops().iter().enumerate() {
        let process = match op.process {
            ordeal_history::Process::Client(p) => Edn::Int(p as i64),
            ordeal_history::Process::Nemesis => kw("nemesis"),
        };
        let value = if keyed(op) { tuple(&op.value) } else { json_to_edn(&op.value) };
        let mut entries = vec![
            (kw("index"), Edn::Int(op.index as i64)),
            (kw("time"), Edn::Int(op.time as i64)),
            (kw("process"), process),
            (kw("type"), kw(&op.kind.to_string())),
            (kw("f"), kw(&op.f)),
            (kw("value"), value),
        ];
        if let Some(e) = &op.error {
            entries.push((kw("error"), Edn::Str(e.as_str().into())));
        }
        if let Some(n) = op.node {
            entries.push((kw("node"), Edn::Int(n as i64)));
        }
        if i > 0 {
            out.push_str("\n ");
        }
        edn::write(&Edn::Map(entries), &mut out);
    }
    out.push_str("]\n");
    out
}

/// A keyed register value as a `jepsen.independent` tuple.
fn tuple(v: &Value) -> edn::Edn<'_> {
    use edn::Edn;
    let inner = match (v.get("from"), v.get("to")) {
        (Some(from), Some(to)) => Edn::Vector(vec![json_to_edn(from), json_to_edn(to)]),
        _ => v.get("value").map_or(Edn::Nil, json_to_edn),
    };
    Edn::Vector(vec![v.get("key").map_or(Edn::Nil, json_to_edn), inner])
}

/// What the file at `path` states about its history, if it is an ordeal export.
pub fn stated(path: &Path) -> Result<Option<stated::Stated>, ImportError> {
    use std::io::{BufRead, Read};
    let err = |line, message| ImportError { path: path.to_owned(), line, message };
    let file = std::fs::File::open(path).map_err(|e| err(None, e.to_string()))?;
    let mut first = Vec::new();
    // The header is one short line; a history without one may have no newline for megabytes.
    std::io::BufReader::new(file.take(4096)).read_until(b'\n', &mut first).map_err(|e| err(None, e.to_string()))?;
    stated::Stated::of(String::from_utf8_lossy(&first).trim_start_matches(BOM)).transpose().map_err(|e| err(Some(1), e))
}

/// Converts JSON to EDN: object keys become keywords.
pub fn json_to_edn(v: &Value) -> edn::Edn<'_> {
    use edn::Edn;
    match v {
        Value::Null => Edn::Nil,
        Value::Bool(b) => Edn::Bool(*b),
        Value::Number(n) => n.as_i64().map_or_else(|| Edn::Float(n.as_f64().unwrap_or(0.0)), Edn::Int),
        Value::String(s) => Edn::Str(s.as_str().into()),
        Value::Array(items) => Edn::Vector(items.iter().map(json_to_edn).collect()),
        Value::Object(map) => Edn::Map(map.iter().map(|(k, v)| (Edn::keyword(k.as_str()), json_to_edn(v))).collect()),
    }
}
