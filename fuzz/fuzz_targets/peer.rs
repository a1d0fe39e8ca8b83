//! The peer service on arbitrary bytes: an envelope (gRPC's protobuf) of raft messages (raft-rs's
//! protobuf), checked as the broker checks them ([`ordeal_system::vet`]) and, when they pass,
//! stepped into a live raft node, as a follower or a leader. Errors and drops are fine; a panic
//! is a message the checks let through that raft-rs dies of, which would kill a node's raft thread.
//!
//! Run: `scripts/fuzz.sh peer -runs=1000000` (see it for the flags cargo-fuzz would pass).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordeal_system::pb::broker::Envelope;
use ordeal_system::vet;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode};

/// Node 1 of voters 1..=3 and learner 4, with five entries of term 2, three of them committed.
fn node(leader: bool) -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![4])));
    let entries: Vec<Entry> = (1..=5).map(|index| Entry { index, term: 2, ..Default::default() }).collect();
    storage.wl().append(&entries).expect("entries append");
    storage.wl().set_hardstate(HardState { term: 2, vote: 1, commit: 3, ..Default::default() });
    let config = Config { id: 1, election_tick: 10, heartbeat_tick: 3, pre_vote: true, check_quorum: true, ..Default::default() };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut node = RawNode::new(&config, storage, &logger).expect("a raft node");
    if leader {
        node.raft.become_candidate();
        node.raft.become_leader();
    }
    node
}

fuzz_target!(|data: &[u8]| {
    let Some((&role, rest)) = data.split_first() else { return };
    let Ok(envelope) = <Envelope as prost::Message>::decode(rest) else { return };
    let mut node = node(role & 1 == 1);
    for bytes in &envelope.messages {
        let Ok(m) = Message::parse_from_bytes(bytes) else { return };
        if vet::envelope(&m, envelope.from, 1).is_err() {
            continue;
        }
        let raft = &node.raft;
        let local = vet::Local { is_member: |id| raft.prs().get(id).is_some(), last_index: raft.raft_log.last_index() };
        if vet::message(&m, &local).is_ok() {
            let _ = node.step(m);
        }
    }
    // What the Ready loop does next must not panic either.
    if node.has_ready() {
        let mut ready = node.ready();
        let _ = node.mut_store().wl().append(ready.entries());
        let mut light = node.advance(ready);
        light.take_messages();
    }
});
