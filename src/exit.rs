//! Exit codes, decided in one place. They follow Jepsen's: a CI job can tell a bug in the system
//! (1) from a run that could not decide (2) and from a broken harness (255).

use std::process::ExitCode;

/// How a command ended, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: every check passed.
    Valid,
    /// 1: some check found a violation.
    Invalid,
    /// 2: some check could not decide (budget exhausted, history incomplete).
    Unknown,
    /// 254: bad arguments or unreadable input.
    BadInput,
    /// 255: the harness itself failed.
    HarnessFailed,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Valid => 0,
            Outcome::Invalid => 1,
            Outcome::Unknown => 2,
            Outcome::BadInput => 254,
            Outcome::HarnessFailed => 255,
        })
    }

    /// Bad input is marked by a [`BadInput`] anywhere in the error's chain; anything else is
    /// the harness failing.
    pub fn from_error(err: &anyhow::Error) -> Outcome {
        if err.chain().any(|e| e.is::<BadInput>()) { Outcome::BadInput } else { Outcome::HarnessFailed }
    }
}

impl From<ordeal_checker::Verdict> for Outcome {
    fn from(verdict: ordeal_checker::Verdict) -> Outcome {
        match verdict {
            ordeal_checker::Verdict::Valid => Outcome::Valid,
            ordeal_checker::Verdict::Invalid => Outcome::Invalid,
            ordeal_checker::Verdict::Unknown => Outcome::Unknown,
        }
    }
}

/// Marks an error as the user's input being wrong (exit 254) rather than the harness failing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
