//! The importers on malformed input: a clear error naming the line, never a panic. (The fuzz
//! target `fuzz/fuzz_targets/parsers.rs` explores further.)

use ordeal_checker::formats::{self, Format, edn, etcd, knossos, porcupine};
use proptest::prelude::*;
use std::io::Write;

fn corpus_sample() -> String {
    let dir = ordeal_checker::testing::corpus_dir().join("knossos/cas-register/bad");
    std::fs::read_to_string(dir.join("bad-analysis.edn")).unwrap()
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let mut p = edn::Parser::new(&text);
        while !p.at_end() {
            if p.next_value().is_err() { break; }
        }
        let _ = knossos::parse(&text);
        let _ = etcd::parse(&text);
        let _ = porcupine::parse(&text);
    }

    #[test]
    fn truncated_or_corrupted_histories_never_panic(cut in 0usize..2000, byte in 0u8..128, at in 0usize..2000) {
        let mut text = corpus_sample().into_bytes();
        text.truncate(cut.min(text.len()));
        if !text.is_empty() {
            let i = at % text.len();
            text[i] = byte;
        }
        let text = String::from_utf8_lossy(&text);
        if let Err(e) = knossos::parse(&text) {
            prop_assert!(e.line.is_some(), "no line in {:?}", e.message);
        }
    }
}

#[test]
fn errors_name_file_line_and_expectation() {
    let cases = [
        (
            Format::Edn,
            "[{:process 1, :type :invoke, :f :read}\n {:process 1, :type :done, :f :read}]",
            ":2: :type must be :invoke, :ok, :fail or :info, found :done",
        ),
        (Format::Edn, "[{:process 1 :type :invoke :f :read}\n{:process 1", ":2: column 12: unexpected end of input"),
        // Two ops on the first line: the bad one is on the second, not the third.
        (
            Format::Edn,
            "[{:process 1 :type :invoke :f :read} {:process 1 :type :ok :f :read}\n {:process 2 :type :done :f :read}]",
            ":2: :type must be",
        ),
        // One op over three lines, then the bad one on the fourth, not the second.
        (
            Format::Edn,
            "; a Knossos history\n[{:process 1,\n  :type :invoke,\n  :f :read}\n {:process 2 :type :done :f :read}]",
            ":5: :type must be",
        ),
        (
            Format::Porcupine,
            "{:process 0, :type :invoke, :f :get, :key \"0\", :value nil}\n\n{:process 0, :type :ok, :f :got, :key \"0\", :value \"\"}",
            ":3: :f must be :get, :put or :append, found :got",
        ),
        (
            Format::Edn,
            "[{:process \"x\", :type :invoke, :f :read}]",
            ":1: :process must be a non-negative integer or :nemesis",
        ),
        (Format::Etcd, "INFO  jepsen.util - 3\t:invoke\tread\tnil", ":1: expected an operation keyword like :read"),
        (Format::Etcd, "INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2", ":1: value `[1 2`"),
        (Format::Porcupine, "{:process 0, :type :invoke, :f :get, :value nil}", ":1: expected a string :key"),
        (
            Format::Etcd,
            "INFO  jepsen.util - 3\t:done\t:read\tnil",
            ":1: expected :invoke, :ok, :fail or :info after the process, found `:done`",
        ),
        (
            Format::Etcd,
            "INFO  jepsen.util - 3",
            ":1: expected :invoke, :ok, :fail or :info after the process, found nothing",
        ),
        (Format::Etcd, "INFO  jepsen.util - 3\t:ok", ":1: expected an operation keyword like :read, found nothing"),
        (Format::Edn, "[{:process 1 :type :invoke :f :read :value 12abc}]", ":1: column 44: `12abc` is not a number"),
        (
            Format::Jsonl,
            "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n",
            ":1: column 59: missing field `value`",
        ),
    ];
    for (format, text, expected) in cases {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let err = formats::import(f.path(), Some(format)).unwrap_err().to_string();
        let want = format!("{}{expected}", f.path().display());
        assert!(err.starts_with(&want), "{format:?}: got {err:?}, want it to start with {want:?}");
    }
}

/// Porcupine's own layout takes the direct scan; the same map with its fields in another order
/// takes the EDN parser: both give the same op.
#[test]
fn porcupine_scan_and_edn_parser_agree() {
    let fast = r#"{:process 3, :type :ok, :f :get, :key "k1", :value "x 1 y"}"#;
    let slow = r#"{:type :ok, :process 3, :key "k1", :f :get, :value "x 1 y"}"#;
    let fast = porcupine::parse_line(fast, 1).unwrap().unwrap();
    assert_eq!(fast.value, serde_json::json!(["k1", "x 1 y"]));
    assert_eq!(fast, porcupine::parse_line(slow, 1).unwrap().unwrap());
}

/// A generated history written in Porcupine's kv format (crashed ops without completions) is
/// checked like its JSON Lines twin: valid, and invalid with one stale read.
#[test]
fn generated_porcupine_logs_check_like_their_jsonl_twins() {
    use ordeal_checker::Verdict;
    use ordeal_checker::linear::{Options, check_by_name};
    use ordeal_checker::testing::{BusyKv, FileFormat};
    let dir = tempfile::tempdir().unwrap();
    for stale_read in [false, true] {
        let busy = BusyKv { keys: 3, ops_per_key: 300, clients: 10, seed: 7, stale_read };
        let expected = if stale_read { Verdict::Invalid } else { Verdict::Valid };
        for (format, name) in [(FileFormat::Jsonl, "h.jsonl"), (FileFormat::Porcupine, "h.txt")] {
            let path = dir.path().join(name);
            assert_eq!(busy.write_as(&path, format).unwrap().is_some(), stale_read);
            let (ops, _) = formats::open(&path, None).unwrap();
            let ops = ops.map(Result::unwrap);
            let report = check_by_name("kv", &serde_json::json!(""), ops, &Options::default()).unwrap();
            assert_eq!(report.verdict, expected, "{name}, stale read: {stale_read}");
        }
    }
}
