//! Every history parser on arbitrary bytes: errors are fine, panics are bugs.
//!
//! Run: `scripts/fuzz.sh parsers` (or `RUSTC_BOOTSTRAP=1 cargo fuzz run parsers`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordeal_checker::formats::{edn, etcd, knossos, porcupine};
use ordeal_history::jsonl;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut p = edn::Parser::new(&text);
    while !p.at_end() {
        if p.next_value().is_err() {
            break;
        }
    }
    let _ = knossos::parse(&text);
    let _ = etcd::parse(&text);
    let _ = porcupine::parse(&text);
    for op in jsonl::Reader::<_, serde_json::Value>::new(data) {
        if op.is_err() {
            break;
        }
    }
});
