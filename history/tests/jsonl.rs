//! The JSON Lines format at its boundary: files on disk, written and read back.

use ordeal_history::jsonl::{self, ErrorKind};
use ordeal_history::{History, Op, OpType, Process};
use serde_json::json;
use std::io::Write;

fn sample() -> History {
    let mut h = History::new();
    let c = Process::Client(3);
    h.push(Op::invoke(c, "cas", json!({"key": "k1", "from": 1, "to": 2})).at(5));
    h.push(
        Op::invoke(c, "cas", json!({"key": "k1", "from": 1, "to": 2}))
            .at(9)
            .completed(OpType::Fail)
            .with_error("mismatch"),
    );
    h.push(Op::invoke(c, "read", json!({"key": "k1"})).at(11));
    let mut ok = Op::invoke(c, "read", json!({"key": "k1", "value": 2})).at(12).completed(OpType::Ok);
    ok.node = Some(2);
    h.push(ok);
    h.push(Op::invoke(c, "write", json!({"key": "k1", "value": 4})).at(13));
    h.push(
        Op::invoke(c, "write", json!({"key": "k1", "value": 4})).at(20).completed(OpType::Info).with_error("timeout"),
    );
    h.push(Op::invoke(Process::Nemesis, "kill", json!({"nodes": [1]})).at(21));
    h.push(Op::invoke(Process::Nemesis, "kill", json!({"nodes": [1]})).at(22).completed(OpType::Info));
    h
}

fn write(ops: &[Op]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut w = jsonl::Writer::new(file.reopen().unwrap());
    for op in ops {
        w.write(op).unwrap();
    }
    file
}

#[test]
fn every_op_type_round_trips() {
    let h = sample();
    let kinds: Vec<OpType> = h.ops().iter().map(|o| o.kind).collect();
    for k in [OpType::Invoke, OpType::Ok, OpType::Fail, OpType::Info] {
        assert!(kinds.contains(&k), "sample lacks {k}");
    }
    let file = write(h.ops());
    let back: History = jsonl::read_file(file.path()).unwrap();
    assert_eq!(back, h);
    back.validate().unwrap();
}

#[test]
fn writer_output_is_one_line_per_op_with_documented_fields() {
    let file = write(&sample().ops()[..2]);
    let text = std::fs::read_to_string(file.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        r#"{"index":1,"time":9,"process":3,"type":"fail","f":"cas","value":{"from":1,"key":"k1","to":2},"error":"mismatch"}"#
    );
}

#[test]
fn truncated_last_line_keeps_the_ops_before_it() {
    let h = sample();
    let file = write(h.ops());
    let mut f = std::fs::OpenOptions::new().append(true).open(file.path()).unwrap();
    f.write_all(br#"{"index":8,"time":30,"process":4,"ty"#).unwrap();
    drop(f);

    let err = jsonl::read_file::<serde_json::Value>(file.path()).unwrap_err();
    assert_eq!(err.line, Some(9));
    assert!(matches!(err.kind, ErrorKind::Truncated { .. }));
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("{}:9: truncated last line", file.path().display())), "{shown}");

    let (partial, warning) = jsonl::read_file_lenient::<serde_json::Value>(file.path()).unwrap();
    assert_eq!(partial, h);
    assert_eq!(warning.unwrap().line, Some(9));
}

#[test]
fn malformed_line_names_file_line_and_expectation() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, r#"{{"index":0,"time":1,"process":0,"type":"invoke","f":"read","value":null}}"#).unwrap();
    writeln!(file).unwrap();
    writeln!(file, r#"{{"index":1,"time":2,"process":0,"type":"done","f":"read","value":null}}"#).unwrap();
    writeln!(file, r#"{{"index":2,"time":3,"process":0,"type":"ok","f":"read","value":null}}"#).unwrap();

    let err = jsonl::read_file::<serde_json::Value>(file.path()).unwrap_err();
    let shown = err.to_string();
    let prefix = format!("{}:3: column", file.path().display());
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(shown.contains("unknown variant `done`, expected one of `invoke`, `ok`, `fail`, `info`"), "{shown}");
    // A malformed line in the middle is never mistaken for a crash.
    assert!(jsonl::read_file_lenient::<serde_json::Value>(file.path()).is_err());
}

#[test]
fn missing_fields_and_bad_process_are_named() {
    for (line, expected) in [
        (r#"{"index":0,"time":1,"type":"invoke","f":"read","value":null}"#, "missing field `process`"),
        (
            r#"{"index":0,"time":1,"process":-2,"type":"invoke","f":"read","value":null}"#,
            "client number or \"nemesis\"",
        ),
        (r#"[1, 2]"#, "expected struct Op"),
    ] {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "{line}").unwrap();
        let err = jsonl::read_file::<serde_json::Value>(file.path()).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} lacks {expected}");
    }
}

#[test]
fn ops_out_of_time_order_are_refused_at_the_line_that_goes_back() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, r#"{{"index":0,"time":5,"process":0,"type":"invoke","f":"read","value":null}}"#).unwrap();
    writeln!(file, r#"{{"index":1,"time":5,"process":1,"type":"invoke","f":"read","value":null}}"#).unwrap();
    writeln!(file, r#"{{"index":2,"time":3,"process":0,"type":"ok","f":"read","value":1}}"#).unwrap();
    let err = jsonl::read_file::<serde_json::Value>(file.path()).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(matches!(err.kind, ErrorKind::TimeBackwards { time: 3, previous: 5 }), "{err}");
    assert!(err.to_string().contains("out of order"), "{err}");
    assert!(jsonl::read_file_lenient::<serde_json::Value>(file.path()).is_err(), "not mistaken for a crash");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = jsonl::read_file::<serde_json::Value>("/nonexistent/history.jsonl").unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/history.jsonl: "), "{err}");
}
