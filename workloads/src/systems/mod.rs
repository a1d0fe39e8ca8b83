//! The systems the harness can test, one module each: a [`System`] (how to run and observe its
//! cluster) and the clients that perform the workloads' operations on it. Adding a system is one
//! module and one line in [`SYSTEMS`].

pub mod broker;
pub mod etcd;

use crate::client::ClientFactory;
use ordeal_faults::System;
use ordeal_faults::layout::Layout;
use ordeal_history::Test;
use std::path::PathBuf;
use std::sync::Arc;

/// A system ready to set up, with its clients.
pub struct Sut {
    /// The cluster.
    pub system: Arc<dyn System>,
    /// Clients of the test's workload.
    pub clients: Arc<dyn ClientFactory>,
}

/// A system that cannot be built for this test.
#[derive(Debug, thiserror::Error)]
pub enum SutError {
    /// No system of this name.
    #[error("unknown system {0:?}: expected one of {names}", names = names().join(", "))]
    Unknown(String),
    /// The system does not run this workload.
    #[error("{system} has no client for the {workload} workload")]
    Workload {
        /// The system.
        system: &'static str,
        /// The workload.
        workload: String,
    },
    /// A setting of the test that the system does not accept.
    #[error("{0}")]
    Setting(String),
    /// The system's binary was not found.
    #[error("cannot find {0}; pass --broker PATH")]
    Binary(&'static str),
}

/// Builds a system from the test, its layout and its binary.
pub type Build = fn(&Test, &Layout, PathBuf) -> Result<Sut, SutError>;

/// A registered system.
pub struct Registration {
    /// Its `--system` name.
    pub name: &'static str,
    /// Finds its binary when none is given.
    pub find_binary: fn() -> Option<PathBuf>,
    /// Checks the test's settings before anything starts.
    pub validate: fn(&Test) -> Result<(), SutError>,
    /// Builds it.
    pub build: Build,
}

/// Every system, by name.
pub const SYSTEMS: &[Registration] = &[broker::REGISTRATION, etcd::REGISTRATION];

/// The names, for help and errors.
pub fn names() -> Vec<&'static str> {
    SYSTEMS.iter().map(|s| s.name).collect()
}

/// The system called `name`.
pub fn by_name(name: &str) -> Result<&'static Registration, SutError> {
    SYSTEMS.iter().find(|s| s.name == name).ok_or_else(|| SutError::Unknown(name.into()))
}
