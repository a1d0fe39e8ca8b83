//! ordeal-broker: the Raft-replicated system that ordeal verifies.
//!
//! A node hosts one or more raft groups (tikv raft-rs, `RawNode`). Each group replicates a log of
//! [`pb::cmd::Command`]s; applying them builds the state machine in RocksDB: partition logs of
//! records, idempotent-producer state, consumer-group offsets and key-value registers. Clients
//! talk gRPC (tonic) to [`api`]; peers exchange raft messages over the same port ([`transport`]).
//!
//! The pieces, from the inside out:
//!
//! * [`storage`]: `raft::Storage` over RocksDB, and the key layout of everything persisted;
//! * [`fsm`]: the state machine, deterministic in (state, entry);
//! * [`node`]: the one thread per group that owns the `RawNode` (the Ready loop);
//! * [`transport`]: peer streams that never block the Ready loop;
//! * [`peer_auth`]: mutual TLS between peers on the shared port;
//! * [`vet`]: raft messages from peers checked before raft-rs sees them;
//! * [`api`], [`http`]: the client, admin and status surfaces;
//! * [`version`]: releases, format versions and the cluster version that gates new formats;
//! * [`membership`]: adding learners, promoting them, removing nodes;
//! * [`snapshot`]: log compaction's other half: state machine snapshots, streamed and switched in;
//! * `ordeal-wire` (re-exported as [`client`], [`error`], [`shard`], [`launch`]): the protos, the
//!   client library and the status types, shared with the harness;
//! * [`server`]: wires a node together and runs it until SIGTERM.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod fsm;
pub mod http;
mod logging;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pb;
pub mod peer_auth;
pub mod seeded;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod transport;
pub mod version;
pub mod vet;

// The client-facing pieces live in `ordeal-wire`, which the harness uses without the server.
pub use ordeal_wire::{certs, client, error, launch, shard};

/// This build's version, reported by `Status` so that upgrade tests can see who runs what.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
