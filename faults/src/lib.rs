//! The nemesis: cluster control ([`Db`]) and fault injection ([`Nemesis`]).
//!
//! A [`Db`] starts, stops and signals the broker's nodes wherever they run ([`local`] runs them as
//! processes on 127.0.0.1). A [`Nemesis`] breaks the cluster on request (`start`) and repairs
//! what it broke (`stop`); `heal_all` repairs everything and is idempotent, so it is safe to call
//! on any exit path. [`FaultSpec`] names a fault as the CLI does: `kill-leader`, `pause`,
//! `kill-majority`, ...
//!
//! Every fault is started and stopped by the runner, which records both in the history as
//! nemesis ops; this crate never writes the history itself.
#![warn(missing_docs)]

mod db;
pub mod local;
pub mod net;
mod netem;
pub mod partition;
mod process;
mod spec;

pub use db::{Db, DbError};
pub use netem::{LIBFAKETIME, NetNemesis, faketime_env};
pub use process::ProcessNemesis;
pub use spec::{Action, FAULT_NAMES, FaultSpec, Shape, Target};

use async_trait::async_trait;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// A fault injector.
#[async_trait]
pub trait Nemesis: Send {
    /// Starts `fault`, choosing targets with `rng`; returns what was done, for the history.
    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, DbError>;
    /// Repairs the fault started last; returns what was done.
    async fn stop(&mut self) -> Result<Value, DbError>;
    /// Repairs everything this nemesis may have broken. Idempotent.
    async fn heal_all(&mut self) -> Result<(), DbError>;
}

/// Routes each fault to the nemesis that handles it: process faults to one, network and clock
/// faults to the other (Jepsen's `compose`).
pub struct Nemeses {
    process: ProcessNemesis,
    net: NetNemesis,
    /// Which one holds the active fault: `Some(true)` the network one.
    active_net: Option<bool>,
}

impl Nemeses {
    /// Both nemeses, side by side.
    pub fn new(process: ProcessNemesis, net: NetNemesis) -> Self {
        Nemeses { process, net, active_net: None }
    }
}

#[async_trait]
impl Nemesis for Nemeses {
    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, DbError> {
        let to_net = fault.needs_network() || fault.needs_clock();
        let result = if to_net { self.net.start(fault, rng).await } else { self.process.start(fault, rng).await };
        self.active_net = Some(to_net);
        result
    }

    async fn stop(&mut self) -> Result<Value, DbError> {
        match self.active_net.take() {
            Some(true) => self.net.stop().await,
            Some(false) => self.process.stop().await,
            None => Ok(Value::Null),
        }
    }

    async fn heal_all(&mut self) -> Result<(), DbError> {
        self.active_net = None;
        let net = self.net.heal_all().await;
        self.process.heal_all().await?;
        net
    }
}
