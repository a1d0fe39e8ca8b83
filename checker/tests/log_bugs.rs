//! A log history from a broker with a deliberate bug is invalid by linearizability itself, not
//! only by the final-read checker (issue 16).
//!
//! `data/log-ack-before-commit.jsonl` was recorded from a real run:
//! `ordeal run --env netns --workload log --nemesis partition-leader --rate 200 --concurrency 5
//! --time-limit 6 --nemesis-interval 1 --fault-duration 1.5 --bug ack-before-commit --seed 1`,
//! keeping the ops of partition 3 and the nemesis ops (linearizability is checked per partition,
//! so the other partitions cannot change this one's verdict).
//! The isolated leader acknowledged `append 121 -> offset 30` alone, before a quorum had it; the
//! majority's new leader then put 126 at offset 30. Linearizability sees the loss because reads
//! observe it: op 421 read `[126]` from offset 30 and op 431 read `[113, 116, 126, 130]` from
//! offset 28, so two acknowledged appends claim offset 30 and 121 is in no read.
//! A lost write that no read or acknowledged offset contradicts would be invisible to
//! linearizability (it may legally never have happened); this history was chosen because a
//! read observes the loss.

use ordeal_checker::Verdict;
use ordeal_checker::formats;
use ordeal_checker::linear::{Method, Methods, Options, check_history};
use std::path::Path;

fn check(methods: Methods) -> ordeal_checker::linear::Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/log-ack-before-commit.jsonl");
    let (history, _) = formats::import(&path, None).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options { methods, ..Options::default() };
    check_history("log", &serde_json::Value::Null, &history, &opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ack_before_commit_loses_an_acknowledged_append_that_reads_contradict() {
    let report = check(Methods::Any);
    assert_eq!(report.verdict, Verdict::Invalid, "{}", report.summary());
    let failure = &report.failures[0];
    assert_eq!(failure.method, Method::VersionOrder);
    assert_eq!(failure.partition.as_deref(), Some("3"));
    // The proof names the lost record (121) and the one that took its offset (126).
    let involved: Vec<&str> = failure.involved.iter().map(|o| o.op.as_str()).collect();
    assert!(involved.contains(&"append 121 -> offset 30"), "{involved:?}");
    assert!(involved.contains(&"append 126 -> offset 30"), "{involved:?}");
}

#[test]
fn the_search_alone_agrees_and_names_the_reads_that_saw_the_loss() {
    let report = check(Methods::SearchOnly);
    assert_eq!(report.verdict, Verdict::Invalid, "{}", report.summary());
    let failure = &report.failures[0];
    assert_eq!(failure.method, Method::Search);
    assert!(failure.explanation.contains("offset 30"), "{}", failure.explanation);
    // The read of [126] at offset 30 is among the orders tried, so the loss is observed.
    let tried: Vec<&str> = failure.concurrent.iter().map(|o| o.op.as_str()).collect();
    assert!(tried.iter().any(|op| op.starts_with("read from 30 -> [126]")), "{tried:?}");
}
