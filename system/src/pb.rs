//! Generated protobuf and gRPC code (`system/proto/`; the API is in `ordeal-wire`).
#![allow(missing_docs)]
#![allow(clippy::all)]

/// The client, admin and peer API (generated in `ordeal-wire`).
pub use ordeal_wire::pb::broker;

/// What the raft log and the state machine persist.
pub mod cmd {
    tonic::include_proto!("ordeal.command.v1");
}
