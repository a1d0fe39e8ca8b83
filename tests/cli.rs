//! The `ordeal` command line at its boundary: help, exit codes, bad input.

mod common;

use common::ordeal;

fn corpus(path: &str) -> String {
    ordeal_checker::testing::corpus_dir().join(path).display().to_string()
}

#[test]
fn help_works_for_every_subcommand() {
    let (code, out, _) = ordeal(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["run", "check", "export", "report", "serve", "cleanup", "demo", "suite", "gate", "model"] {
        assert!(out.contains(sub), "--help lists {sub}");
        let (code, out, err) = ordeal(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub} --help: {err}");
        assert!(out.contains("Usage: ordeal"), "{sub} --help prints usage");
        assert!(
            out.contains("Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad"),
            "{sub} --help states the exit codes"
        );
    }
    assert!(ordeal(&["--help"]).1.contains("254"), "the exit codes are documented in --help");
}

#[test]
fn bad_arguments_exit_254_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--bogus"], "unexpected argument '--bogus'"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["run", "--nodes", "lots"], "invalid value 'lots'"),
        (&["run", "--workload", "queue"], "unknown workload \"queue\""),
        (&["run", "--nemesis", "kill-everyone"], "unknown fault \"kill-everyone\""),
        (&["run", "--nodes", "0"], "--nodes must be between 1 and 9"),
        (&["run", "--time-limit=-3"], "--time-limit must be a positive number"),
        (&["run", "--bug", "everything"], "--bug \"everything\""),
        (&["run", "--rate", "1e-30"], "--rate must be zero (unlimited) or at least"),
        (&["run", "--ops-per-key", "0"], "--ops-per-key must be at least 1"),
        (&["run", "--nemesis-order", "cycle", "--fault-rounds", "0"], "--fault-rounds needs at least one round"),
        (&["run", "--system", "etcd", "--nemesis", "clock-skew"], "etcd is a Go program"),
        (&["check", "--model", "queue", "x"], "--model `queue`: expected one of register, cas-register"),
        (&["check", "--model", "register", "--init", "{", "x"], "--init `{` is not JSON"),
        (&["check", "--model", "register", "/nonexistent/h.jsonl"], "/nonexistent/h.jsonl: No such file"),
        (&["check", "--model", "kv", "--timeout", "1e19", "x"], "--timeout 1e19: expected"),
        (&["check", "--model", "kv", "--memory-mb", "17592186044416", "x"], "--memory-mb 17592186044416 is more"),
        (&["check", "--format", "xml", "x"], "--format: unknown format `xml`: expected auto"),
        (&["export", "--to", "xml", "/dev/null"], "--to `xml`: expected edn or jsonl"),
        (&["report", "/tmp"], "/tmp is not a run directory"),
    ];
    for (args, expected) in cases {
        let (code, _, err) = ordeal(args);
        assert_eq!(code, 254, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err:?} lacks {expected:?}");
    }
}

#[test]
fn check_exit_codes_follow_the_verdicts() {
    let good = corpus("porcupine/jepsen/etcd_002.log");
    let bad = corpus("porcupine/jepsen/etcd_000.log");
    assert_eq!(ordeal(&["check", "--model", "cas-register", &good]).0, 0);
    let (code, out, _) = ordeal(&["check", "--model", "cas-register", &good, &bad]);
    assert_eq!(code, 1);
    assert!(out.contains("etcd_000.log: invalid: op 84 (process 11: read -> 2)"), "{out}");
    assert!(out.contains("longest legal order"), "the evidence is printed: {out}");
    let (code, out, _) = ordeal(&["check", "--model", "cas-register", "--timeout", "0.000001", &good]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown: time budget exhausted"), "{out}");
    let (code, out, _) = ordeal(&["check", "--model", "kv", "--json", &corpus("porcupine/kv/c10-bad.txt")]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["report"]["verdict"], "invalid");
    assert_eq!(v["format"], "porcupine");
}

#[test]
fn export_to_edn_round_trips_through_check() {
    let dir = tempfile::tempdir().unwrap();
    let edn = dir.path().join("h.edn");
    let src = corpus("porcupine/jepsen/etcd_000.log");
    let (code, _, err) = ordeal(&["export", "--to", "edn", "-o", edn.to_str().unwrap(), &src]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&edn).unwrap();
    assert!(
        text.starts_with(
            "; ordeal {:model \"cas-register\", :init nil, :independent false}\n\
             [{:index 0, :time 1, :process 0, :type :invoke, :f :read, :value nil}"
        ),
        "{}",
        &text[..150]
    );
    // Re-checked as EDN with the model and initial value it states: still invalid.
    let (code, out, err) = ordeal(&["check", "--format", "edn", edn.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    // A Knossos history states nothing: the model must be named.
    let (code, _, err) = ordeal(&["check", &corpus("knossos/cas-register/bad/bad-analysis.edn")]);
    assert_eq!(code, 254);
    assert!(err.contains("--model is needed"), "{err}");
    // JSON Lines cannot state a Porcupine log's initial value "": the export says how to check it.
    let jsonl = dir.path().join("kv.jsonl");
    let (code, _, err) =
        ordeal(&["export", "--to", "jsonl", "-o", jsonl.to_str().unwrap(), &corpus("porcupine/kv/c01-ok.txt")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(r#"check the export with --init '""'"#), "{err}");
    let (code, out, err) = ordeal(&["check", "--model", "kv", "--init", "\"\"", jsonl.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = ordeal(&["export", "--to", "jsonl", "-o", "/nonexistent/dir/x", &src]);
    assert_eq!(code, 254, "an unwritable output is a bad argument: {err}");
    assert!(err.contains("-o /nonexistent/dir/x: No such file"), "{err}");
}

#[test]
fn a_large_native_history_is_read_from_its_first_line() {
    // Bigger than the 64 KiB the format detector looks at.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    let mut text = String::new();
    for i in 0..2000u64 {
        let (invoke, ok) = (2 * i, 2 * i + 1);
        text += &format!(
            "{{\"index\":{invoke},\"time\":{invoke},\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":{{\"key\":\"k\",\"value\":{i}}}}}\n"
        );
        text += &format!(
            "{{\"index\":{ok},\"time\":{ok},\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":{{\"key\":\"k\",\"value\":{i}}}}}\n"
        );
    }
    assert!(text.len() > 64 * 1024);
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = ordeal(&["check", "--model", "kv", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid (2000 ops in 1 partitions)"), "{out}");
}

#[test]
fn a_keyed_history_exported_to_edn_checks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("h.jsonl");
    let ops = [
        r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","value":{"key":"k1","value":5}}"#,
        r#"{"index":1,"time":2,"process":0,"type":"ok","f":"write","value":{"key":"k1","value":5}}"#,
        r#"{"index":2,"time":3,"process":1,"type":"invoke","f":"cas","value":{"key":"k1","from":5,"to":6}}"#,
        r#"{"index":3,"time":4,"process":1,"type":"ok","f":"cas","value":{"key":"k1","from":5,"to":6}}"#,
        r#"{"index":4,"time":5,"process":0,"type":"invoke","f":"read","value":{"key":"k1"}}"#,
        r#"{"index":5,"time":6,"process":0,"type":"ok","f":"read","value":{"key":"k1","value":5}}"#,
    ];
    std::fs::write(&native, ops.join("\n") + "\n").unwrap();
    let edn = dir.path().join("h.edn");
    assert_eq!(ordeal(&["export", "--to", "edn", "-o", edn.to_str().unwrap(), native.to_str().unwrap()]).0, 0);
    assert!(
        std::fs::read_to_string(&edn).unwrap().contains(":value [\"k1\" [5 6]]"),
        "cas becomes an independent tuple"
    );
    // A stale read after the cas: invalid in both formats.
    let (code, out, _) = ordeal(&["check", "--model", "kv", native.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = ordeal(&["check", edn.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("op 4 (process 0: read -> 5) on k1 cannot be linearized"), "{out}");
}

#[test]
fn issue_17_exports_keep_time_node_and_error_and_check_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("h.jsonl");
    // A log: appends acknowledged with offsets, a read of them, a failed append.
    let ops = [
        r#"{"index":0,"time":10,"process":0,"type":"invoke","f":"append","value":{"key":"t","value":7},"node":2}"#,
        r#"{"index":1,"time":20,"process":0,"type":"ok","f":"append","value":{"key":"t","value":7,"offset":0},"node":2}"#,
        r#"{"index":2,"time":30,"process":1,"type":"invoke","f":"append","value":{"key":"t","value":8},"node":3}"#,
        r#"{"index":3,"time":40,"process":1,"type":"fail","f":"append","value":{"key":"t","value":8},"error":"not leader","node":3}"#,
        r#"{"index":4,"time":50,"process":0,"type":"invoke","f":"read","value":{"key":"t","from":0},"node":1}"#,
        r#"{"index":5,"time":60,"process":0,"type":"ok","f":"read","value":{"key":"t","from":0,"values":[7],"hw":1},"node":1}"#,
    ];
    std::fs::write(&native, ops.join("\n") + "\n").unwrap();
    let (edn, back) = (dir.path().join("h.edn"), dir.path().join("back.jsonl"));
    assert_eq!(ordeal(&["export", "-o", edn.to_str().unwrap(), native.to_str().unwrap()]).0, 0);
    let (code, out, err) = ordeal(&["check", edn.to_str().unwrap()]);
    assert_eq!(code, 0, "the export states the log model: {out}{err}");
    assert_eq!(ordeal(&["export", "--to", "jsonl", "-o", back.to_str().unwrap(), edn.to_str().unwrap()]).0, 0);
    let back = std::fs::read_to_string(back).unwrap();
    for (a, b) in ops.iter().zip(back.lines()) {
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(a).unwrap(), serde_json::from_str(b).unwrap());
        assert_eq!(a, b, "EDN -> JSON Lines keeps every field");
    }
}

#[test]
fn issue_17_check_never_passes_a_broken_history() {
    let dir = tempfile::tempdir().unwrap();
    let write = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","value":{"key":"k","value":1}}"#;
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let cases = [
        ("empty", Vec::new(), 2, "unknown: the history holds no op"),
        (
            "unacknowledged",
            format!("{write}\n{}\n", write.replace(r#""index":0"#, r#""index":1"#).replace("invoke", "info"))
                .into_bytes(),
            2,
            "no op of the history succeeded",
        ),
        (
            "all failed",
            format!("{write}\n{}\n", write.replace(r#""index":0"#, r#""index":1"#).replace("invoke", "fail"))
                .into_bytes(),
            2,
            "no op of the history succeeded",
        ),
        ("garbage", format!("{write}\nnot an op\n").into_bytes(), 254, "garbage.jsonl:2: column"),
        ("truncated", format!("{write}\n{{\"index\":1,\"ti").into_bytes(), 254, "truncated last line"),
        ("random", random, 254, "random.jsonl"),
    ];
    for (name, text, code, expected) in &cases {
        let path = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&path, text).unwrap();
        let (got, out, err) = ordeal(&["check", "--model", "kv", "--format", "jsonl", path.to_str().unwrap()]);
        assert_eq!(got, *code, "{name}: {out}{err}");
        assert!(out.contains(expected) || err.contains(expected), "{name}: {out}{err} lacks {expected:?}");
    }
    std::fs::write(dir.path().join("test.json"), "{}").unwrap();
    let (code, _, err) = ordeal(&["check", "--model", "kv", dir.path().to_str().unwrap()]);
    assert_eq!(code, 254);
    assert!(err.contains("is a run directory: `ordeal report"), "{err}");
}

#[test]
fn a_file_not_in_the_named_format_is_bad_input_at_its_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("h.jsonl");
    let op = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","value":{"key":"k","value":1}}"#;
    std::fs::write(&native, format!("\n{op}\n")).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "\nsome notes, not a history\n").unwrap();
    for file in [&native, &text] {
        for (format, expected) in [("etcd", ":2: not a Jepsen etcd log"), ("porcupine", ":2: "), ("edn", ":2: ")] {
            let (code, out, err) = ordeal(&["check", "--model", "kv", "--format", format, file.to_str().unwrap()]);
            assert_eq!(code, 254, "--format {format} {}: {out}{err}", file.display());
            let want = format!("{}{expected}", file.display());
            assert!(err.contains(&want), "--format {format}: {err:?} lacks {want:?}");
        }
    }
}

#[test]
fn errors_quote_what_they_found_without_rust_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    let invoke = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","value":{"key":"k","value":1}}"#;
    let ok = r#"{"index":1,"time":2,"process":0,"type":"ok","f":"read","value":{"key":"k","value":1}}"#;
    std::fs::write(&path, format!("{invoke}\n{ok}\n")).unwrap();
    let (code, _, err) = ordeal(&["check", "--model", "kv", path.to_str().unwrap()]);
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("op 1: completion of `read` does not match invocation of `write`"), "{err}");
    assert!(!err.contains('"'), "{err}");
}

#[test]
fn a_bad_header_is_named_once_at_line_1_as_the_files_not_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ops = "[{:index 0, :time 1, :process 0, :type :invoke, :f :read, :value nil}]\n";
    let cases = [
        ("no-model.edn", "; ordeal {:init nil}\n", "no-model.edn:1: the ordeal header has no :model"),
        ("broken.edn", "; ordeal {:model\n", "broken.edn:1: the ordeal header: "),
        (
            "queue.edn",
            "; ordeal {:model \"queue\", :init nil}\n",
            "queue.edn:1: the ordeal header's :model `queue`: expected",
        ),
    ];
    for (name, header, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}{ops}")).unwrap();
        let (code, _, err) = ordeal(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 254, "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err:?} lacks {expected:?}");
        assert!(!err.contains(":1: line 1") && !err.contains("--model"), "{name}: {err}");
    }
}

#[test]
fn an_invalid_file_is_not_hidden_by_an_unreadable_one() {
    let bad = corpus("porcupine/jepsen/etcd_000.log");
    let missing = "/nonexistent/h.jsonl";
    let args = ["check", "--model", "cas-register"];
    for files in [[bad.as_str(), missing], [missing, bad.as_str()]] {
        let (code, out, err) = ordeal(&[&args[..], &files[..]].concat());
        assert_eq!(code, 1, "a violation is the news: {out}{err}");
        assert!(out.contains("etcd_000.log: invalid"), "{out}");
        assert!(err.contains("/nonexistent/h.jsonl: No such file"), "{err}");
        assert!(out.contains("2 files: 1 invalid, 1 unreadable"), "{out}");
    }
    // Without a violation, the unreadable file decides: bad input, not unknown.
    let (code, _, err) = ordeal(&[
        "check",
        "--model",
        "cas-register",
        "--timeout",
        "0.000001",
        &corpus("porcupine/jepsen/etcd_002.log"),
        missing,
    ]);
    assert_eq!(code, 254, "{err}");
    // --json prints a line per file, of one shape; the unreadable file's says why in `error`.
    let (code, out, _) = ordeal(&["check", "--model", "cas-register", "--json", &bad, missing]);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (lines[0]["report"]["verdict"].as_str(), &lines[0]["error"]),
        (Some("invalid"), &serde_json::Value::Null)
    );
    assert_eq!(lines[1]["file"], missing);
    assert_eq!(lines[1]["report"], serde_json::Value::Null);
    assert!(lines[1]["error"].as_str().unwrap().contains("No such file"), "{out}");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&lines[0]), keys(&lines[1]), "one shape");
}

#[test]
fn a_byte_order_mark_at_the_start_is_skipped_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let native = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","value":{"key":"k","value":1}}
{"index":1,"time":2,"process":0,"type":"ok","f":"write","value":{"key":"k","value":1}}
"#;
    let edn = dir.path().join("h.edn");
    assert_eq!(ordeal(&["export", "-o", edn.to_str().unwrap(), &corpus("porcupine/jepsen/etcd_000.log")]).0, 0);
    let cases = [
        ("h.jsonl", native.to_owned(), &["--model", "kv"][..], 0),
        ("h.edn", std::fs::read_to_string(&edn).unwrap(), &[][..], 1),
        (
            "etcd.log",
            std::fs::read_to_string(corpus("porcupine/jepsen/etcd_000.log")).unwrap(),
            &["--model", "cas-register"][..],
            1,
        ),
        ("kv.txt", std::fs::read_to_string(corpus("porcupine/kv/c01-ok.txt")).unwrap(), &["--model", "kv"][..], 0),
    ];
    for (name, text, flags, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
        let (code, out, err) = ordeal(&[&["check"][..], flags, &[path.to_str().unwrap()][..]].concat());
        assert_eq!(code, expected, "{name}: {out}{err}");
    }
}

#[test]
fn a_repeated_or_backward_op_index_is_bad_input_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let op = |index: u64, time: u64, kind: &str| {
        format!(
            r#"{{"index":{index},"time":{time},"process":0,"type":"{kind}","f":"write","value":{{"key":"k","value":1}}}}"#
        )
    };
    for (name, second, expected) in [("repeated", 0, "index 0 is not after"), ("backward", 0, "index 0 is not after")] {
        let path = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(
            &path,
            format!("{}\n\n{}\n", op(if name == "backward" { 5 } else { 0 }, 1, "invoke"), op(second, 2, "ok")),
        )
        .unwrap();
        let (code, out, err) = ordeal(&["check", "--model", "kv", path.to_str().unwrap()]);
        assert_eq!(code, 254, "{name}: {out}{err}");
        assert!(err.contains(&format!("{name}.jsonl:3: {expected}")), "{name}: {err}");
    }
    // Gaps are allowed: a history filtered by key keeps its ops' indices.
    let path = dir.path().join("gap.jsonl");
    std::fs::write(&path, format!("{}\n{}\n", op(3, 1, "invoke"), op(9, 2, "ok"))).unwrap();
    assert_eq!(ordeal(&["check", "--model", "kv", path.to_str().unwrap()]).0, 0);
}
