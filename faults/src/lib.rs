//! The system seam and the nemesis.
//!
//! * [`system`]: the [`System`] under test (after Jepsen's `DB`), its optional powers
//!   ([`Processes`], [`Leaders`], [`Upgrade`]) and the system-neutral [`NodeView`];
//! * [`supervise`]: process supervision that serves every system whose nodes are processes;
//! * [`layout`]: where each node runs (address, ports, directory, namespace, clock, host);
//! * [`sshlab`]: hosts to reach over SSH on one machine, an `sshd` in each node's namespace;
//! * [`Nemesis`]: breaks the cluster on request (`start`) and repairs what it broke (`stop`);
//!   `heal_all` repairs everything and is idempotent, so it is safe on any exit path.
//!   [`Compose`] routes each fault to the nemesis that declares it, and faults run at the same
//!   time ([`FaultSet`]);
//! * [`FaultSpec`] names a fault as the CLI does: `kill-leader`, `pause`, `kill-leader@2`, ...
//!
//! Every fault is started and stopped by the runner, which records both in the history as
//! nemesis ops; this crate never writes the history itself.
#![warn(missing_docs)]

mod clock;
pub mod layout;
pub mod lazyfs;
pub mod membership;
pub mod net;
mod netem;
pub mod partition;
mod process;
mod spec;
pub mod sshlab;
pub mod supervise;
pub mod system;
#[cfg(test)]
mod testing;
mod upgrade;

pub use clock::ClockNemesis;
pub use membership::{MembershipNemesis, RunClock};
pub use netem::{LIBFAKETIME, NetNemesis, faketime_env};
pub use process::ProcessNemesis;
pub use spec::{Action, FAULTS, FaultSet, FaultSpec, Groups, Shape, SpecError, Target, fault_names};
pub use system::{
    GroupState, Leaders, Member, Members, Membership, NodeView, Processes, SpareSlots, System, SystemError, Upgrade,
};
pub use upgrade::UpgradeNemesis;

use async_trait::async_trait;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// A fault that could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// The system failed or lacks the power.
    #[error(transparent)]
    System(#[from] SystemError),
    /// This nemesis already holds a fault it cannot run beside the new one.
    #[error("{0} is still active")]
    Busy(String),
    /// The fault's target does not exist right now (no leader, no follower).
    #[error("no {0} to target")]
    NoTarget(&'static str),
    /// The run was not set up for the fault.
    #[error("{fault} needs {what}")]
    NotSetUp {
        /// The fault.
        fault: String,
        /// What it needs (`--env netns`, libfaketime).
        what: &'static str,
    },
    /// A crash could not lose the node's un-fsynced writes.
    #[error(transparent)]
    Disk(#[from] lazyfs::LazyFsError),
    /// Changing the network failed.
    #[error(transparent)]
    Network(#[from] net::NetError),
    /// Writing a clock control file failed.
    #[error("clock control file {path}: {source}")]
    Clock {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No nemesis of the composition takes this fault.
    #[error("no nemesis handles {0}")]
    Unhandled(String),
    /// The fault failed part way, after it had done what `done` records (a learner attached, a
    /// promote answered): the history keeps that record beside the error.
    #[error("{error}")]
    Partial {
        /// What the fault did before it failed, as its value would have shown it.
        done: Value,
        /// Why it failed.
        error: Box<NemesisError>,
    },
}

impl NemesisError {
    /// This error, raised after the fault had done what `done` records (which holds whatever
    /// an inner step recorded, so it replaces that).
    pub fn after(self, done: &Value) -> NemesisError {
        let error = match self {
            NemesisError::Partial { error, .. } => error,
            e => Box::new(e),
        };
        NemesisError::Partial { done: done.clone(), error }
    }

    /// What the fault did before it failed, if it says, and why it failed.
    pub fn into_parts(self) -> (Option<Value>, String) {
        match self {
            NemesisError::Partial { done, error } => (Some(done), error.to_string()),
            e => (None, e.to_string()),
        }
    }
}

/// A fault injector.
#[async_trait]
pub trait Nemesis: Send {
    /// Whether this nemesis injects `fault`; [`Compose`] routes by it.
    fn handles(&self, fault: &FaultSpec) -> bool;
    /// Starts `fault`, choosing targets with `rng`; returns what was done, for the history.
    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError>;
    /// Repairs `fault`, started earlier; returns what was done.
    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError>;
    /// Repairs everything this nemesis may have broken. Idempotent.
    async fn heal_all(&mut self) -> Result<(), NemesisError>;
}

/// Several nemeses as one (Jepsen's `compose`): each fault goes to the first that handles it,
/// so faults of different nemeses can be active at once.
pub struct Compose(pub Vec<Box<dyn Nemesis>>);

impl Compose {
    fn route(&mut self, fault: &FaultSpec) -> Result<&mut Box<dyn Nemesis>, NemesisError> {
        self.0.iter_mut().find(|n| n.handles(fault)).ok_or_else(|| NemesisError::Unhandled(fault.to_string()))
    }
}

#[async_trait]
impl Nemesis for Compose {
    fn handles(&self, fault: &FaultSpec) -> bool {
        self.0.iter().any(|n| n.handles(fault))
    }

    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        self.route(fault)?.start(fault, rng).await
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        self.route(fault)?.stop(fault).await
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        // Every nemesis heals even when an earlier one failed; the first error is reported.
        let mut first = Ok(());
        for n in &mut self.0 {
            if let Err(e) = n.heal_all().await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}
