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
    /// Cuts the network between nodes (nft drops on each node's input); healed atomically.
    Partition(Shape),
    /// Drops 30% of the packets between nodes.
    Loss,
    /// Delays the packets between nodes by 50 ms ± 10 ms (NFQUEUE; reorders them too).
    Delay,
    /// Caps every node's outgoing bandwidth (tc tbf).
    Slow,
    /// Moves one node's wall clock by up to five minutes (libfaketime).
    ClockSkew,
    /// Moves one node's wall clock by hours at once.
    ClockBump,
    /// Flips one node's wall clock back and forth every 50 ms.
    ClockStrobe,
}

/// How a partition splits the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// A random minority cut from a majority.
    RandomHalves,
    /// The first ⌊n/2⌋ nodes by id cut from the rest.
    Halves,
    /// The target (a random node, or the leader) cut from everyone.
    Isolate,
    /// Every node hears a majority, but no two the same one (asymmetric for odd n).
    MajoritiesRing,
    /// Two halves cut apart, except one node that hears both.
    Bridge,
    /// The target (the leader) hears no other node, but they still hear it.
    OneWay,
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
terminate-minority, transfer-leader, partition, partition-halves, partition-one, partition-leader, \
partition-ring, partition-bridge, partition-oneway, loss, delay, slow, clock-skew, clock-bump, clock-strobe";

impl FaultSpec {
    /// Whether the fault needs nodes in network namespaces (`--env netns`).
    pub fn needs_network(&self) -> bool {
        matches!(self.action, Action::Partition(_) | Action::Loss | Action::Delay | Action::Slow)
    }

    /// Whether the fault moves clocks (nodes then start under libfaketime).
    pub fn needs_clock(&self) -> bool {
        matches!(self.action, Action::ClockSkew | Action::ClockBump | Action::ClockStrobe)
    }

    /// Parses `kill-leader`, `pause`, `kill-majority`, ... (an action alone targets one random
    /// node).
    ///
    /// ```
    /// use ordeal_faults::{Action, FaultSpec, Target};
    /// assert_eq!(FaultSpec::parse("kill-leader").unwrap(), FaultSpec { action: Action::Kill, target: Target::Leader });
    /// assert!(FaultSpec::parse("explode").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<FaultSpec, String> {
        let whole = |action| Ok(FaultSpec { action, target: Target::All });
        let one = |action| Ok(FaultSpec { action, target: Target::One });
        match name {
            "transfer-leader" => return Ok(FaultSpec { action: Action::TransferLeader, target: Target::Leader }),
            "partition" | "partition-random-halves" => return whole(Action::Partition(Shape::RandomHalves)),
            "partition-halves" => return whole(Action::Partition(Shape::Halves)),
            "partition-one" | "isolate" => return one(Action::Partition(Shape::Isolate)),
            "partition-leader" => {
                return Ok(FaultSpec { action: Action::Partition(Shape::Isolate), target: Target::Leader });
            }
            "partition-ring" | "partition-majorities-ring" => return whole(Action::Partition(Shape::MajoritiesRing)),
            "partition-bridge" => return whole(Action::Partition(Shape::Bridge)),
            "partition-oneway" => {
                return Ok(FaultSpec { action: Action::Partition(Shape::OneWay), target: Target::Leader });
            }
            "loss" => return whole(Action::Loss),
            "delay" => return whole(Action::Delay),
            "slow" => return whole(Action::Slow),
            "clock-skew" => return one(Action::ClockSkew),
            "clock-bump" => return one(Action::ClockBump),
            "clock-strobe" => return one(Action::ClockStrobe),
            _ => {}
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
        let action = match (self.action, self.target) {
            (Action::Kill, _) => "kill",
            (Action::Pause, _) => "pause",
            (Action::Terminate, _) => "terminate",
            (Action::TransferLeader, _) => return f.write_str("transfer-leader"),
            (Action::Partition(Shape::RandomHalves), _) => return f.write_str("partition"),
            (Action::Partition(Shape::Halves), _) => return f.write_str("partition-halves"),
            (Action::Partition(Shape::Isolate), Target::Leader) => return f.write_str("partition-leader"),
            (Action::Partition(Shape::Isolate), _) => return f.write_str("partition-one"),
            (Action::Partition(Shape::MajoritiesRing), _) => return f.write_str("partition-ring"),
            (Action::Partition(Shape::Bridge), _) => return f.write_str("partition-bridge"),
            (Action::Partition(Shape::OneWay), _) => return f.write_str("partition-oneway"),
            (Action::Loss, _) => return f.write_str("loss"),
            (Action::Delay, _) => return f.write_str("delay"),
            (Action::Slow, _) => return f.write_str("slow"),
            (Action::ClockSkew, _) => return f.write_str("clock-skew"),
            (Action::ClockBump, _) => return f.write_str("clock-bump"),
            (Action::ClockStrobe, _) => return f.write_str("clock-strobe"),
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
