//! Generated protobuf and gRPC code (`system/proto/`).
#![allow(missing_docs)]
#![allow(clippy::all)]

/// The client, admin and peer API.
pub mod broker {
    tonic::include_proto!("ordeal.broker.v1");
}

/// What the raft log and the state machine persist.
pub mod cmd {
    tonic::include_proto!("ordeal.command.v1");
}
