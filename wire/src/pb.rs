//! Generated protobuf and gRPC code (`wire/proto/`).
#![allow(missing_docs)]
#![allow(clippy::all)]

/// The client, admin and peer API.
pub mod broker {
    tonic::include_proto!("ordeal.broker.v1");
}
