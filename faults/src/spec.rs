//! Fault names as the CLI takes them: an action, optionally followed by a target.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a fault does to its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL; healed by starting the node again.
    Kill,
    /// SIGSTOP; healed by SIGCONT.
    Pause,
    /// SIGTERM (graceful stop with leadership transfer); healed by starting the node again.
    Terminate,
    /// Asks the leader to hand leadership to another voter; nothing to heal.
    TransferLeader,
}

/// Which nodes a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The current leader of group 0.
    Leader,
    /// One follower of group 0, chosen at random.
    Follower,
    /// One node chosen at random.
    One,
    /// A random minority (⌊(n−1)/2⌋ nodes).
    Minority,
    /// A random majority (⌊n/2⌋+1 nodes).
    Majority,
    /// Every node.
    All,
}

/// A fault kind: action and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What to do.
    pub action: Action,
    /// To whom.
    pub target: Target,
}

/// Every name [`FaultSpec::parse`] accepts, for help and errors.
pub const FAULT_NAMES: &str = "kill, kill-leader, kill-follower, kill-minority, kill-majority, kill-all, pause, \
pause-leader, pause-follower, pause-minority, pause-majority, pause-all, terminate, terminate-leader, \
terminate-minority, transfer-leader";

impl FaultSpec {
    /// Parses `kill-leader`, `pause`, `kill-majority`, ... (an action alone targets one random
    /// node).
    ///
    /// ```
    /// use ordeal_faults::{Action, FaultSpec, Target};
    /// assert_eq!(FaultSpec::parse("kill-leader").unwrap(), FaultSpec { action: Action::Kill, target: Target::Leader });
    /// assert!(FaultSpec::parse("explode").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<FaultSpec, String> {
        if name == "transfer-leader" {
            return Ok(FaultSpec { action: Action::TransferLeader, target: Target::Leader });
        }
        let (action, target) = name.split_once('-').unwrap_or((name, "one"));
        let action = match action {
            "kill" => Action::Kill,
            "pause" => Action::Pause,
            "terminate" | "restart" => Action::Terminate,
            _ => return Err(format!("unknown fault {name:?}: expected one of {FAULT_NAMES}")),
        };
        let target = match target {
            "leader" => Target::Leader,
            "follower" => Target::Follower,
            "one" | "node" => Target::One,
            "minority" => Target::Minority,
            "majority" => Target::Majority,
            "all" => Target::All,
            _ => return Err(format!("unknown fault {name:?}: expected one of {FAULT_NAMES}")),
        };
        Ok(FaultSpec { action, target })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Kill => "kill",
            Action::Pause => "pause",
            Action::Terminate => "terminate",
            Action::TransferLeader => return f.write_str("transfer-leader"),
        };
        match self.target {
            Target::One => f.write_str(action),
            Target::Leader => write!(f, "{action}-leader"),
            Target::Follower => write!(f, "{action}-follower"),
            Target::Minority => write!(f, "{action}-minority"),
            Target::Majority => write!(f, "{action}-majority"),
            Target::All => write!(f, "{action}-all"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in FAULT_NAMES.split(", ") {
            let spec = FaultSpec::parse(name).unwrap();
            assert_eq!(spec.to_string(), name);
        }
        assert_eq!(FaultSpec::parse("restart-leader").unwrap().to_string(), "terminate-leader");
        let err = FaultSpec::parse("kill-everyone").unwrap_err();
        assert!(err.contains("kill-leader"), "{err}");
    }
}
