//! A lock: `acquire` is legal when free, `release` when held.

use super::{Model, ModelError};
use ordeal_history::Op;

/// A mutex op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexOp {
    /// Took the lock.
    Acquire,
    /// Gave it back.
    Release,
}

/// The mutex model; starts free.
#[derive(Debug, Clone, Default)]
pub struct Mutex;

impl Model for Mutex {
    type Op = MutexOp;
    type State = bool;

    fn op(&self, invoke: &Op, _ok: Option<&Op>) -> Result<Option<MutexOp>, ModelError> {
        match invoke.f.as_str() {
            "acquire" | "lock" => Ok(Some(MutexOp::Acquire)),
            "release" | "unlock" => Ok(Some(MutexOp::Release)),
            f => Err(ModelError(format!("unknown mutex operation {f:?}: expected acquire or release"))),
        }
    }

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    fn describe_op(&self, op: &MutexOp) -> String {
        format!("{op:?}").to_lowercase()
    }

    fn describe_state(&self, held: &bool) -> String {
        if *held { "held".into() } else { "free".into() }
    }
}
