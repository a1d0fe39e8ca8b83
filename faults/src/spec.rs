//! Fault names as the CLI takes them: one table ([`FAULTS`]) maps each name to an action and a
//! target, so that parsing, printing, help and errors cannot disagree. A leader fault may name
//! its group (`kill-leader@2`, `kill-leader@all`); faults joined with `+` run at the same time
//! ([`FaultSet`]).

use std::fmt;

/// What a fault does to its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL; healed by starting the node again.
    Kill,
    /// SIGSTOP; healed by SIGCONT.
    Pause,
    /// SIGKILL, then the node's writes since their last fsync are lost, as in a power failure
    /// (its data directory is a lazyfs mount); healed by starting the node again.
    Crash,
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
    /// Resets every TCP connection between the target (a follower) and the leader, both ways,
    /// as the kernel of a crashed peer answers: the follower finds its leader's port refusing
    /// it while the leader lives on and leads the others.
    Reset,
    /// Moves one node's wall clock by up to five minutes (libfaketime).
    ClockSkew,
    /// Moves one node's wall clock by hours at once.
    ClockBump,
    /// Flips one node's wall clock back and forth every 50 ms.
    ClockStrobe,
    /// Moves the next node to the new build: leadership handed away, SIGTERM, restart on the
    /// other binary with the same data, wait until it caught up. Stays done (nothing to heal).
    Upgrade,
    /// The same, but SIGKILL instead of a graceful stop.
    UpgradeKill,
    /// Starts a fresh node in a spare slot, attaches it as a learner, and samples its catch-up.
    AddLearner,
    /// Promotes a learner, with the leader's commit index at that moment as `min_applied_index`.
    Promote,
    /// Removes a learner, else a voter that does not lead.
    Remove,
    /// Adds a learner, waits until it caught up, promotes it, removes an old voter.
    Replace,
    /// Moves the node upgraded last back to the old build, once per run (later ones do
    /// nothing); a later `upgrade` moves it forward again.
    Rollback,
}

/// How a partition splits the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The leader of the fault's group(s).
    Leader,
    /// One follower of the fault's group, chosen at random.
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

/// Which replication group a leader or follower fault looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Groups {
    /// Group 0, not named (`kill-leader`).
    #[default]
    Zero,
    /// A named group (`kill-leader@2`).
    One(u32),
    /// The leaders of every group at once (`kill-leader@all`; process faults only).
    All,
}

impl Groups {
    /// The one group named, if it names one.
    pub fn one(self) -> Option<u32> {
        match self {
            Groups::One(g) => Some(g),
            Groups::Zero => Some(0),
            Groups::All => None,
        }
    }
}

/// A fault kind: action, target and, for leader and follower faults, the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// What to do.
    pub action: Action,
    /// To whom.
    pub target: Target,
    /// Whose leader: group 0 unless the name says `@G` or `@all`.
    pub groups: Groups,
}

/// Every fault name, with what it means. The first row of an (action, target) pair is the name
/// it prints as; later rows are aliases.
pub const FAULTS: &[(&str, Action, Target)] = {
    use Action::*;
    use Target::*;
    &[
        ("kill", Kill, One),
        ("kill-leader", Kill, Leader),
        ("kill-follower", Kill, Follower),
        ("kill-minority", Kill, Minority),
        ("kill-majority", Kill, Majority),
        ("kill-all", Kill, All),
        ("crash", Crash, One),
        ("crash-leader", Crash, Leader),
        ("crash-follower", Crash, Follower),
        ("crash-minority", Crash, Minority),
        ("crash-majority", Crash, Majority),
        ("crash-all", Crash, All),
        ("pause", Pause, One),
        ("pause-leader", Pause, Leader),
        ("pause-follower", Pause, Follower),
        ("pause-minority", Pause, Minority),
        ("pause-majority", Pause, Majority),
        ("pause-all", Pause, All),
        ("terminate", Terminate, One),
        ("terminate-leader", Terminate, Leader),
        ("terminate-follower", Terminate, Follower),
        ("terminate-minority", Terminate, Minority),
        ("terminate-majority", Terminate, Majority),
        ("terminate-all", Terminate, All),
        ("transfer-leader", TransferLeader, Leader),
        ("partition", Partition(Shape::RandomHalves), All),
        ("partition-halves", Partition(Shape::Halves), All),
        ("partition-one", Partition(Shape::Isolate), One),
        ("partition-leader", Partition(Shape::Isolate), Leader),
        ("partition-ring", Partition(Shape::MajoritiesRing), All),
        ("partition-bridge", Partition(Shape::Bridge), All),
        ("partition-oneway", Partition(Shape::OneWay), Leader),
        ("loss", Loss, All),
        ("delay", Delay, All),
        ("slow", Slow, All),
        ("reset-follower", Reset, Follower),
        ("clock-skew", ClockSkew, One),
        ("clock-bump", ClockBump, One),
        ("clock-strobe", ClockStrobe, One),
        ("upgrade", Upgrade, One),
        ("upgrade-kill", UpgradeKill, One),
        ("add-learner", AddLearner, One),
        ("promote", Promote, One),
        ("remove", Remove, One),
        ("replace", Replace, One),
        ("rollback", Rollback, One),
        // Aliases: every name the parser took before the table existed.
        ("kill-one", Kill, One),
        ("kill-node", Kill, One),
        ("pause-one", Pause, One),
        ("pause-node", Pause, One),
        ("terminate-one", Terminate, One),
        ("terminate-node", Terminate, One),
        ("restart", Terminate, One),
        ("restart-one", Terminate, One),
        ("restart-node", Terminate, One),
        ("restart-leader", Terminate, Leader),
        ("restart-follower", Terminate, Follower),
        ("restart-minority", Terminate, Minority),
        ("restart-majority", Terminate, Majority),
        ("restart-all", Terminate, All),
        ("partition-random-halves", Partition(Shape::RandomHalves), All),
        ("isolate", Partition(Shape::Isolate), One),
        ("partition-majorities-ring", Partition(Shape::MajoritiesRing), All),
    ]
};

/// The fault names for help and errors (aliases left out).
pub fn fault_names() -> String {
    let mut seen = Vec::new();
    for (name, action, target) in FAULTS {
        if !seen.iter().any(|(_, a, t)| a == action && t == target) {
            seen.push((*name, *action, *target));
        }
    }
    seen.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
}

/// A bad fault name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No fault of this name.
    #[error("unknown fault {0:?}: expected one of {names}", names = fault_names())]
    Unknown(String),
    /// `@G` on a fault that targets no leader or follower, or `@all` where one group is needed.
    #[error("fault {0:?}: {1}")]
    Group(String, &'static str),
    /// An empty part in `a+b`.
    #[error("empty fault in {0:?}")]
    Empty(String),
}

impl FaultSpec {
    /// Whether the fault needs nodes in network namespaces (`--env netns`).
    pub fn needs_network(&self) -> bool {
        matches!(self.action, Action::Partition(_) | Action::Loss | Action::Delay | Action::Slow | Action::Reset)
    }

    /// Whether the fault needs the nodes in namespaces of the run's own (a delay loop of the
    /// harness's, a bandwidth cap there); partitions, loss and resets also work on hosts over SSH.
    pub fn needs_namespace(&self) -> bool {
        matches!(self.action, Action::Delay | Action::Slow)
    }

    /// Whether the fault moves clocks (nodes then start under libfaketime).
    pub fn needs_clock(&self) -> bool {
        matches!(self.action, Action::ClockSkew | Action::ClockBump | Action::ClockStrobe)
    }

    /// Whether the fault loses un-fsynced writes (nodes then keep their data on lazyfs).
    pub fn needs_disk(&self) -> bool {
        self.action == Action::Crash
    }

    /// Whether the fault moves a node to another build.
    pub fn is_upgrade(&self) -> bool {
        matches!(self.action, Action::Upgrade | Action::UpgradeKill | Action::Rollback)
    }

    /// Whether the fault changes the membership (it needs spare slots).
    pub fn is_membership(&self) -> bool {
        matches!(self.action, Action::AddLearner | Action::Promote | Action::Remove | Action::Replace)
    }

    /// Whether the fault stops or freezes processes.
    pub fn is_process(&self) -> bool {
        matches!(self.action, Action::Kill | Action::Crash | Action::Pause | Action::Terminate | Action::TransferLeader)
    }

    /// Parses `kill-leader`, `pause`, `kill-leader@2`, `pause-leader@all`, ...
    ///
    /// ```
    /// use ordeal_faults::{Action, FaultSpec, Groups, Target};
    /// let f = FaultSpec::parse("kill-leader@2").unwrap();
    /// assert_eq!((f.action, f.target, f.groups), (Action::Kill, Target::Leader, Groups::One(2)));
    /// assert!(FaultSpec::parse("explode").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<FaultSpec, SpecError> {
        let (base, group) = match name.split_once('@') {
            Some((base, group)) => (base, Some(group)),
            None => (name, None),
        };
        let (_, action, target) =
            FAULTS.iter().find(|(n, _, _)| *n == base).ok_or_else(|| SpecError::Unknown(name.to_owned()))?;
        let groups = match group {
            None => Groups::Zero,
            Some(_) if !matches!(target, Target::Leader | Target::Follower) => {
                return Err(SpecError::Group(name.into(), "only leader and follower faults name a group"));
            }
            Some("all") if !matches!(action, Action::Kill | Action::Crash | Action::Pause | Action::Terminate) => {
                return Err(SpecError::Group(name.into(), "@all is for kill, crash, pause and terminate"));
            }
            Some("all") => Groups::All,
            Some(g) => {
                Groups::One(g.parse().map_err(|_| SpecError::Group(name.into(), "@ takes a group number or all"))?)
            }
        };
        Ok(FaultSpec { action: *action, target: *target, groups })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FAULTS.iter().find(|(_, a, t)| *a == self.action && *t == self.target).map_or("?", |(n, _, _)| n);
        match self.groups {
            Groups::Zero => f.write_str(name),
            Groups::One(g) => write!(f, "{name}@{g}"),
            Groups::All => write!(f, "{name}@all"),
        }
    }
}

/// Faults that start together and heal together: `partition-halves+kill-follower`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSet(pub Vec<FaultSpec>);

impl FaultSet {
    /// Parses `a+b+...`.
    ///
    /// ```
    /// let set = ordeal_faults::FaultSet::parse("partition-halves+kill-follower").unwrap();
    /// assert_eq!(set.0.len(), 2);
    /// assert_eq!(set.to_string(), "partition-halves+kill-follower");
    /// ```
    pub fn parse(text: &str) -> Result<FaultSet, SpecError> {
        let parts: Vec<FaultSpec> = text
            .split('+')
            .map(|p| if p.trim().is_empty() { Err(SpecError::Empty(text.into())) } else { FaultSpec::parse(p.trim()) })
            .collect::<Result<_, _>>()?;
        Ok(FaultSet(parts))
    }

    /// Whether any part satisfies `p`.
    pub fn any(&self, p: impl Fn(&FaultSpec) -> bool) -> bool {
        self.0.iter().any(p)
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in fault_names().split(", ") {
            let spec = FaultSpec::parse(name).unwrap();
            assert_eq!(spec.to_string(), name);
        }
        assert_eq!(FaultSpec::parse("restart-leader").unwrap().to_string(), "terminate-leader");
        // Every action-target name the parser took before the table.
        for action in ["kill", "pause", "terminate", "restart"] {
            for target in ["leader", "follower", "one", "node", "minority", "majority", "all"] {
                assert!(FaultSpec::parse(&format!("{action}-{target}")).is_ok(), "{action}-{target}");
            }
        }
        assert_eq!(FaultSpec::parse("pause-leader@all").unwrap().to_string(), "pause-leader@all");
        let err = FaultSpec::parse("kill-everyone").unwrap_err().to_string();
        assert!(err.contains("kill-leader"), "{err}");
        assert!(FaultSpec::parse("kill@2").is_err(), "a random node has no group");
        assert!(FaultSpec::parse("partition-leader@all").is_err());
        assert!(FaultSpec::parse("kill-leader@x").is_err());
        assert!(FaultSet::parse("kill+").is_err());
    }
}
