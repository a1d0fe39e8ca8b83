//! Every history of the shared external corpus (`../shared/corpus`, read in place) gets the
//! verdict its authors' own tests assert.

use ordeal_checker::Verdict;
use ordeal_checker::formats::{self, Format};
use ordeal_checker::linear::{Options, check_history};
use serde_json::{Value, json};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let dir = ordeal_checker::testing::corpus_dir();
    assert!(dir.is_dir(), "the shared corpus must be checked out beside the repository at {}", dir.display());
    dir
}

/// (model, format, init) for an EXPECTED.tsv model description.
fn setup(file: &str, description: &str) -> (&'static str, Format, Value) {
    if description.starts_with("etcd-cas-register") {
        ("cas-register", Format::Etcd, Value::Null)
    } else if description.starts_with("kv-get/put/append") {
        ("kv", Format::Porcupine, json!(""))
    } else if description.starts_with("multi-register") {
        ("multi-register", Format::Edn, json!({"x": 0, "y": 0}))
    } else if description.starts_with("cas-register") {
        // The corpus README: rethink-fail*.edn start at nil, every other Knossos file at 0.
        let init = if file.contains("rethink-fail") { Value::Null } else { json!(0) };
        ("cas-register", Format::Edn, init)
    } else {
        panic!("no setup for model {description:?}")
    }
}

#[test]
fn every_corpus_file_gets_its_expected_verdict() {
    let root = corpus();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for folder in ["porcupine", "ahorn-lc", "knossos"] {
        let tsv = std::fs::read_to_string(root.join(folder).join("EXPECTED.tsv")).unwrap();
        for row in tsv.lines().skip(1) {
            let cols: Vec<&str> = row.split('\t').collect();
            let (file, description, expected) = (cols[0], cols[1], cols[2]);
            let expected = match expected {
                "true" => Verdict::Valid,
                "false" => Verdict::Invalid,
                _ => continue,
            };
            let (model, format, init) = setup(file, description);
            let path = root.join(folder).join(file);
            let detected = formats::detect(&std::fs::read_to_string(&path).unwrap());
            assert_eq!(detected, format, "{} detected as {detected:?}", path.display());
            let (history, _) = formats::import(&path, None).unwrap_or_else(|e| panic!("{e}"));
            let report =
                check_history(model, &init, &history, &Options::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
            checked += 1;
            if report.verdict != expected {
                wrong.push(format!("{folder}/{file}: expected {expected}, got {}", report.summary()));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} wrong:\n{}", wrong.len(), wrong.join("\n"));
    // porcupine: 50 etcd + 4 kv; ahorn-lc: 50 raw etcd; knossos: 65 (the two empty logs have none)
    assert_eq!(checked, 54 + 50 + 65, "every file with a verdict was checked");
}

#[test]
fn invalid_histories_come_with_a_counterexample() {
    let path = corpus().join("knossos/cas-register/bad/cas-failure.edn");
    let (history, format) = formats::import(&path, None).unwrap();
    let report = check_history("cas-register", &format.default_init(), &history, &Options::default()).unwrap();
    assert_eq!(report.verdict, Verdict::Invalid);
    let f = &report.failures[0];
    assert!(f.explanation.contains("cannot be linearized"), "{}", f.explanation);
    assert_eq!(f.prefix_len, f.prefix.len().max(f.prefix_len));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "invalid");
    assert!(json["failures"][0]["op"]["index"].is_u64());
}

#[test]
fn the_empty_log_has_no_ops() {
    let (history, _) = formats::import(&corpus().join("porcupine/jepsen/etcd_095.log"), Some(Format::Etcd)).unwrap();
    assert!(history.is_empty());
}
