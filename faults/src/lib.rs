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
mod process;
mod spec;

pub use db::{Db, DbError};
pub use process::ProcessNemesis;
pub use spec::{Action, FaultSpec, Target};

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
