//! The broker's membership protocol (learners, gated promotion, removal) as a model that
//! stateright explores exhaustively within bounds on terms and log length.
//!
//! The model follows the broker's raft (tikv raft-rs with ConfChangeV2 single changes) at the
//! level where membership bugs live, not its messages:
//!
//! * a node's configuration is the one its *applied* log prefix makes (raft-rs changes the
//!   configuration when the change is applied, not when it is appended); the model applies
//!   whatever a node knows committed;
//! * an election is one step: a voter of its own configuration takes the next term with the
//!   votes of some nodes whose term is lower and whose log is no more up to date, if those votes
//!   are a majority of its voters, and appends the empty entry of its term;
//! * replication copies a prefix of the leader's log to a member of the leader's configuration
//!   (truncating the follower at the first entry that differs) and tells it the commit index;
//! * a leader commits an index of its own term that a majority of its voters hold;
//! * a leader proposes a change only when the last one is applied, and a new leader only once
//!   its first entry is (raft-rs's `pending_conf_index`); a promotion only of a learner that has
//!   applied the leader's commit index (the broker's gate with `min_applied_index` set to it);
//! * a leader may step down at any time (a crash: terms, logs and commit indices are durable,
//!   leadership is not).
//!
//! Acks are read off the followers' logs at the commit, a subset of what a real leader can do
//! (its acks may be older); see docs/models.md for what the model leaves out.
//!
//! [`Bug`]s switch one rule off, so that a test shows each property catching its violation.

use std::fmt;

use stateright::{Model, Property};

use super::{Halt, Halting};

/// A rule of the protocol switched off, to show that the properties catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A learner's copy counts toward the voters' majority, for commits and for votes.
    CountLearners,
    /// A learner is promoted however far behind it is.
    NoGate,
    /// A leader proposes a change while the last one is not applied yet, or before its own first
    /// entry is.
    NoPendingCheck,
}

impl Bug {
    /// Every bug, with its name on the command line.
    pub const ALL: [(&'static str, Bug); 3] =
        [("count-learners", Bug::CountLearners), ("no-gate", Bug::NoGate), ("no-pending-check", Bug::NoPendingCheck)];

    /// The bug called `name`.
    pub fn named(name: &str) -> Option<Bug> {
        Bug::ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }
}

/// The bounds and rules of one exploration.
#[derive(Debug, Clone)]
pub struct Membership {
    /// How many nodes exist; the first `voters` of them start as the voters, the rest outside.
    pub nodes: u8,
    /// How many nodes start as voters.
    pub voters: u8,
    /// No term goes past this.
    pub max_term: u8,
    /// No log grows past this many entries.
    pub max_log: u8,
    /// A rule switched off, if any.
    pub bug: Option<Bug>,
    /// Stops the search at the first counterexample.
    pub halt: Halt,
}

impl Default for Membership {
    /// Three voters and one node to add; bounds that explore in seconds.
    fn default() -> Self {
        Membership { nodes: 4, voters: 3, max_term: 2, max_log: 4, bug: None, halt: Halt::default() }
    }
}

/// A membership change, as an entry carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Add this node as a learner.
    AddLearner(u8),
    /// Make this learner a voter.
    Promote(u8),
    /// Remove this voter or learner.
    Remove(u8),
}

/// A log entry: its term and, for a configuration change, the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The term of the leader that appended it.
    pub term: u8,
    /// The change it makes, or none for a client's write (or a leader's first, empty entry).
    pub change: Option<Change>,
}

/// A configuration, as bit sets of node ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conf {
    /// Who votes.
    pub voters: u8,
    /// Who only replicates.
    pub learners: u8,
}

impl Conf {
    fn apply(self, change: Change) -> Conf {
        let (voters, learners) = (self.voters, self.learners);
        match change {
            Change::AddLearner(n) => Conf { voters, learners: learners | bit(n) },
            Change::Promote(n) => Conf { voters: voters | bit(n), learners: learners & !bit(n) },
            Change::Remove(n) => Conf { voters: voters & !bit(n), learners: learners & !bit(n) },
        }
    }

    fn members(self) -> u8 {
        self.voters | self.learners
    }

    /// The nodes whose acks and votes count toward a majority: the voters, and the learners too
    /// under [`Bug::CountLearners`].
    fn counted(self, bug: Option<Bug>) -> u8 {
        if bug == Some(Bug::CountLearners) { self.members() } else { self.voters }
    }

    /// Whether the counted nodes in `acks` are a majority of the voters.
    fn quorum(self, acks: u8, bug: Option<Bug>) -> bool {
        2 * (acks & self.counted(bug)).count_ones() > self.voters.count_ones()
    }
}

fn bit(n: u8) -> u8 {
    1 << n
}

/// What one node keeps: all of it durable except leadership.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// Its current term. It votes only for a candidate of a later term, so at most once a term
    /// (raft-rs also refuses a vote while it knows a leader of its term), and needs no record of
    /// whom it voted for.
    pub term: u8,
    /// Its log.
    pub log: Vec<Entry>,
    /// How much of its log it knows committed, and has applied.
    pub commit: u8,
    /// Whether it leads in its term.
    pub leader: bool,
}

/// What the properties read besides the nodes: ghost variables, never read by the protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// The longest log prefix any leader committed.
    pub committed: Vec<Entry>,
    /// A commit or a truncation contradicted an earlier commit.
    pub lost_commit: bool,
    /// A commit that fewer than a majority of the voters held.
    pub learner_quorum: bool,
    /// A promotion of a learner that had not applied the leader's commit index.
    pub lagging_promotion: bool,
}

/// The cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// Every node, by id.
    pub nodes: Vec<Node>,
    /// What the properties read.
    pub ghost: Ghost,
}

/// One step of the protocol.
#[allow(missing_docs)] // each variant's line names its fields
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `node` wins `term` with the votes of the nodes in the bit set `granted`.
    Elect { node: u8, term: u8, granted: u8 },
    /// The leader of `term` appends a write (no change) or a membership change.
    Propose { leader: u8, term: u8, change: Option<Change> },
    /// The leader of `term` sends its first `upto` entries and its commit index to `to`.
    Replicate { leader: u8, term: u8, to: u8, upto: u8 },
    /// The leader of `term` raises its commit index to `index`.
    Commit { leader: u8, term: u8, index: u8 },
    /// The leader of `term` loses its leadership (it crashed and restarted, or stepped down).
    StepDown { node: u8, term: u8 },
}

impl Membership {
    fn initial_conf(&self) -> Conf {
        Conf { voters: (bit(self.voters) - 1), learners: 0 }
    }

    /// The configuration the first `upto` entries of `log` make.
    pub fn conf(&self, log: &[Entry], upto: u8) -> Conf {
        log[..usize::from(upto)].iter().filter_map(|e| e.change).fold(self.initial_conf(), Conf::apply)
    }

    fn applied_conf(&self, node: &Node) -> Conf {
        self.conf(&node.log, node.commit)
    }

    fn elections(&self, s: &State, out: &mut Vec<Action>) {
        for (c, node) in s.nodes.iter().enumerate() {
            let conf = self.applied_conf(node);
            let c = c as u8;
            if node.leader || conf.voters & bit(c) == 0 || node.term >= self.max_term || full(node, self) {
                continue;
            }
            let willing = self.willing_voters(s, c, conf);
            // Every set of willing voters that wins: which of them hear it changes their terms.
            for granted in subsets(willing) {
                if conf.quorum(granted | bit(c), self.bug) {
                    out.push(Action::Elect { node: c, term: node.term + 1, granted });
                }
            }
        }
    }

    /// The nodes that count toward `c`'s quorum and would vote for it in its next term.
    fn willing_voters(&self, s: &State, c: u8, conf: Conf) -> u8 {
        let term = s.nodes[usize::from(c)].term + 1;
        let counted = conf.counted(self.bug);
        let candidate = &s.nodes[usize::from(c)];
        (0..self.nodes)
            .filter(|&v| v != c && counted & bit(v) != 0)
            .filter(|&v| {
                let voter = &s.nodes[usize::from(v)];
                let free = voter.term < term;
                free && up_to_date(&candidate.log, &voter.log)
            })
            .fold(0, |set, v| set | bit(v))
    }

    fn proposals(&self, s: &State, out: &mut Vec<Action>) {
        for (l, node) in s.nodes.iter().enumerate() {
            if !node.leader || full(node, self) {
                continue;
            }
            let leader = l as u8;
            out.push(Action::Propose { leader, term: node.term, change: None });
            if self.bug != Some(Bug::NoPendingCheck) && pending_change(node) {
                continue;
            }
            // The broker refuses every change while the leader is not a voter itself.
            let conf = self.applied_conf(node);
            if conf.voters & bit(leader) == 0 {
                continue;
            }
            for target in 0..self.nodes {
                self.allowed_changes(s, leader, conf, target, out);
            }
        }
    }

    /// The changes the leader, a voter of `conf`, may propose for `target`, under the broker's
    /// checks (system/src/membership.rs).
    fn allowed_changes(&self, s: &State, leader: u8, conf: Conf, target: u8, out: &mut Vec<Action>) {
        let node = &s.nodes[usize::from(leader)];
        let term = node.term;
        let mut offer = |change| out.push(Action::Propose { leader, term, change: Some(change) });
        let t = bit(target);
        if conf.learners & t != 0 {
            let caught_up = s.nodes[usize::from(target)].commit >= node.commit;
            if caught_up || self.bug == Some(Bug::NoGate) {
                offer(Change::Promote(target));
            }
            offer(Change::Remove(target));
        } else if conf.voters & t == 0 {
            offer(Change::AddLearner(target));
        } else if target != leader && conf.voters.count_ones() > 1 {
            offer(Change::Remove(target));
        }
    }

    fn replications(&self, s: &State, out: &mut Vec<Action>) {
        for (l, node) in s.nodes.iter().enumerate() {
            if !node.leader {
                continue;
            }
            let members = self.applied_conf(node).members();
            for to in (0..self.nodes).filter(|&to| usize::from(to) != l && members & bit(to) != 0) {
                let follower = &s.nodes[usize::from(to)];
                if follower.term > node.term {
                    continue;
                }
                let common = common_prefix(&node.log, &follower.log);
                let stale = follower.term < node.term || follower.commit < node.commit.min(common);
                let from = if stale { common } else { common + 1 };
                for upto in from..=len(&node.log) {
                    out.push(Action::Replicate { leader: l as u8, term: node.term, to, upto });
                }
            }
        }
    }

    fn commits(&self, s: &State, out: &mut Vec<Action>) {
        for (l, node) in s.nodes.iter().enumerate() {
            if !node.leader {
                continue;
            }
            let conf = self.applied_conf(node);
            for index in node.commit + 1..=len(&node.log) {
                let own_term = node.log[usize::from(index) - 1].term == node.term;
                if own_term && conf.quorum(holders(s, &node.log, index), self.bug) {
                    out.push(Action::Commit { leader: l as u8, term: node.term, index });
                }
            }
        }
    }

    fn elect(&self, s: &mut State, c: u8, granted: u8) {
        let term = s.nodes[usize::from(c)].term + 1;
        for v in (0..self.nodes).filter(|&v| granted & bit(v) != 0) {
            let voter = &mut s.nodes[usize::from(v)];
            voter.term = term;
            voter.leader = false;
        }
        let node = &mut s.nodes[usize::from(c)];
        node.term = term;
        node.leader = true;
        node.log.push(Entry { term, change: None });
    }

    fn propose(&self, s: &mut State, leader: u8, change: Option<Change>) {
        if let Some(Change::Promote(target)) = change {
            let behind = s.nodes[usize::from(target)].commit < s.nodes[usize::from(leader)].commit;
            s.ghost.lagging_promotion |= behind;
        }
        let node = &mut s.nodes[usize::from(leader)];
        node.log.push(Entry { term: node.term, change });
    }

    fn replicate(&self, s: &mut State, leader: u8, to: u8, upto: u8) {
        let source = s.nodes[usize::from(leader)].clone();
        let follower = &mut s.nodes[usize::from(to)];
        let common = common_prefix(&source.log, &follower.log);
        if common < upto {
            s.ghost.lost_commit |= common < follower.commit;
            follower.log = source.log[..usize::from(upto)].to_vec();
        }
        follower.term = source.term;
        follower.leader = false;
        follower.commit = follower.commit.max(source.commit.min(upto));
    }

    fn commit(&self, s: &mut State, leader: u8, index: u8) {
        // The voters that decide this commit are those of the configuration before it.
        let voters = self.applied_conf(&s.nodes[usize::from(leader)]).voters;
        let held = holders(s, &s.nodes[usize::from(leader)].log, index) & voters;
        s.ghost.learner_quorum |= 2 * held.count_ones() <= voters.count_ones();
        let node = &mut s.nodes[usize::from(leader)];
        node.commit = index;
        let prefix = &node.log[..usize::from(index)];
        let ghost = &mut s.ghost;
        let n = ghost.committed.len().min(prefix.len());
        if ghost.committed[..n] != prefix[..n] {
            ghost.lost_commit = true;
        } else if prefix.len() > ghost.committed.len() {
            ghost.committed = prefix.to_vec();
        }
    }
}

fn full(node: &Node, m: &Membership) -> bool {
    len(&node.log) >= m.max_log
}

fn len(log: &[Entry]) -> u8 {
    log.len() as u8
}

/// Whether the leader has appended a change it has not applied, or has not applied its own first
/// entry yet (raft-rs sets `pending_conf_index` to the last index when it becomes leader).
fn pending_change(node: &Node) -> bool {
    let unapplied = &node.log[usize::from(node.commit)..];
    let first_of_term = node.log.iter().position(|e| e.term == node.term).map_or(0, |i| i as u8 + 1);
    unapplied.iter().any(|e| e.change.is_some()) || node.commit < first_of_term
}

/// Raft's election restriction: the candidate's last entry has a later term, or the same term and
/// at least the same index.
fn up_to_date(candidate: &[Entry], voter: &[Entry]) -> bool {
    let last = |log: &[Entry]| (log.last().map_or(0, |e| e.term), log.len());
    last(candidate) >= last(voter)
}

fn common_prefix(a: &[Entry], b: &[Entry]) -> u8 {
    a.iter().zip(b).take_while(|(x, y)| x == y).count() as u8
}

/// The nodes whose logs hold the first `index` entries of `log`.
fn holders(s: &State, log: &[Entry], index: u8) -> u8 {
    let prefix = &log[..usize::from(index)];
    s.nodes.iter().enumerate().filter(|(_, n)| n.log.starts_with(prefix)).fold(0, |set, (i, _)| set | bit(i as u8))
}

/// Every subset of the bit set `set`, the empty one included.
fn subsets(set: u8) -> impl Iterator<Item = u8> {
    let mut next = Some(set);
    std::iter::from_fn(move || {
        let current = next?;
        next = (current != 0).then(|| (current - 1) & set);
        Some(current)
    })
}

impl Model for Membership {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let node = Node { term: 0, log: Vec::new(), commit: 0, leader: false };
        vec![State { nodes: vec![node; usize::from(self.nodes)], ghost: Ghost::default() }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        if self.halt.stopped(self, s) {
            return;
        }
        self.elections(s, out);
        self.proposals(s, out);
        self.replications(s, out);
        self.commits(s, out);
        for (i, node) in s.nodes.iter().enumerate() {
            if node.leader {
                out.push(Action::StepDown { node: i as u8, term: node.term });
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Elect { node, granted, .. } => self.elect(&mut s, node, granted),
            Action::Propose { leader, change, .. } => self.propose(&mut s, leader, change),
            Action::Replicate { leader, to, upto, .. } => self.replicate(&mut s, leader, to, upto),
            Action::Commit { leader, index, .. } => self.commit(&mut s, leader, index),
            Action::StepDown { node, .. } => s.nodes[usize::from(node)].leader = false,
        }
        Some(s)
    }

    fn format_action(&self, action: &Action) -> String {
        action.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no committed entry is lost", |_, s: &State| !s.ghost.lost_commit && applied_agree(s)),
            Property::always("at most one leader per term", |_, s| one_leader_per_term(s)),
            Property::always("a majority of voters holds every commit", |_, s: &State| !s.ghost.learner_quorum),
            Property::always("only a caught-up learner is promoted", |_, s: &State| !s.ghost.lagging_promotion),
            Property::sometimes("a learner is promoted", promoted),
            Property::sometimes("a removed voter's removal is applied", removal_applied),
        ]
    }
}

/// Every two nodes' applied prefixes agree where both have applied.
fn applied_agree(s: &State) -> bool {
    s.nodes.iter().enumerate().all(|(i, a)| {
        s.nodes[i + 1..].iter().all(|b| {
            let both = usize::from(a.commit.min(b.commit));
            a.log[..both] == b.log[..both]
        })
    })
}

fn one_leader_per_term(s: &State) -> bool {
    let leaders: Vec<u8> = s.nodes.iter().filter(|n| n.leader).map(|n| n.term).collect();
    leaders.iter().enumerate().all(|(i, t)| !leaders[i + 1..].contains(t))
}

/// Some node applied the promotion of a node that started outside.
fn promoted(m: &Membership, s: &State) -> bool {
    let outside = !m.initial_conf().voters;
    s.nodes.iter().any(|n| m.applied_conf(n).voters & outside != 0)
}

/// Some node applied the removal of a node that started as a voter.
fn removal_applied(m: &Membership, s: &State) -> bool {
    let initial = m.initial_conf().voters;
    s.nodes.iter().any(|n| m.applied_conf(n).voters & initial != initial)
}

impl Halting for Membership {
    fn halt(&self) -> &Halt {
        &self.halt
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Elect { node, term, granted } => {
                write!(f, "node {node} wins term {term} with the votes of {}", ids(granted))
            }
            Action::Propose { leader, term, change: None } => {
                write!(f, "leader {leader} (term {term}) appends a write")
            }
            Action::Propose { leader, term, change: Some(c) } => {
                write!(f, "leader {leader} (term {term}) proposes {c}")
            }
            Action::Replicate { leader, term, to, upto: 0 } => {
                write!(f, "leader {leader} (term {term}) sends node {to} its term and commit index")
            }
            Action::Replicate { leader, term, to, upto } => {
                write!(f, "leader {leader} (term {term}) replicates its log up to index {upto} to node {to}")
            }
            Action::Commit { leader, term, index } => {
                write!(f, "leader {leader} (term {term}) commits up to index {index}")
            }
            Action::StepDown { node, term } => write!(f, "leader {node} (term {term}) steps down"),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddLearner(n) => write!(f, "add-learner {n}"),
            Change::Promote(n) => write!(f, "promote {n}"),
            Change::Remove(n) => write!(f, "remove-node {n}"),
        }
    }
}

fn ids(set: u8) -> String {
    let ids: Vec<String> = (0..8).filter(|&i| set & bit(i) != 0).map(|i| i.to_string()).collect();
    match ids.len() {
        0 => "no other node".into(),
        1 => format!("node {}", ids[0]),
        _ => format!("nodes {}", ids.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;
    use crate::protocol::{Status, explore};

    /// Far more than the bounds below generate: a search cut by it fails the tests.
    const BUDGET: usize = 100_000_000;

    /// Terms up to 2 and logs up to 3 entries: a few hundred thousand states, seconds in a test.
    fn small(bug: Option<Bug>) -> Membership {
        Membership { max_term: 2, max_log: 3, bug, ..Membership::default() }
    }

    fn status(e: &crate::protocol::Exploration, name: &str) -> Status {
        e.properties.iter().find(|p| p.name == name).map(|p| p.status).expect("no such property")
    }

    #[test]
    fn the_broker_s_rules_keep_every_property_in_every_reachable_state() {
        // A fourth node to add, and logs long enough for two changes in flight (the bounds at
        // which each bug below shows), each in seconds.
        let three_nodes = Membership { nodes: 3, max_term: 2, max_log: 4, ..Membership::default() };
        for (model, reach) in
            [(small(None), "a learner is promoted"), (three_nodes, "a removed voter's removal is applied")]
        {
            let e = explore(model, BUDGET);
            assert!(e.complete, "{e:?}");
            let safety = e.properties.iter().filter(|p| p.kind == "always");
            assert!(safety.clone().all(|p| p.status == Status::Holds), "{e:#?}");
            assert_eq!(status(&e, reach), Status::Reached);
            assert!(e.states > 100_000, "the bounds explore too little to mean anything: {} states", e.states);
        }
    }

    #[test]
    fn a_learner_counted_toward_the_majority_commits_what_the_voters_do_not_hold() {
        let e = explore(small(Some(Bug::CountLearners)), BUDGET);
        assert_eq!(e.verdict, Verdict::Invalid);
        assert_eq!(status(&e, "a majority of voters holds every commit"), Status::Violated, "{e:#?}");
        let path = &e.properties.iter().find(|p| p.status == Status::Violated).expect("a counterexample").path;
        assert!(path.iter().any(|step| step.contains("add-learner 3")), "{path:#?}");
    }

    #[test]
    fn a_promotion_without_the_gate_promotes_a_learner_that_lags() {
        let e = explore(small(Some(Bug::NoGate)), BUDGET);
        assert_eq!(status(&e, "only a caught-up learner is promoted"), Status::Violated, "{e:#?}");
        let path = &e.properties[3].path;
        assert!(path.last().is_some_and(|step| step.contains("promote 3")), "{path:#?}");
    }

    #[test]
    fn two_changes_in_flight_let_two_disjoint_majorities_commit() {
        // Three nodes: the counterexample needs four entries, and no fourth node to add.
        let model =
            Membership { nodes: 3, max_term: 2, max_log: 4, bug: Some(Bug::NoPendingCheck), ..Membership::default() };
        let e = explore(model, BUDGET);
        assert_eq!(status(&e, "no committed entry is lost"), Status::Violated, "{e:#?}");
    }

    #[test]
    fn a_complete_search_that_never_reaches_an_example_is_unknown_not_valid() {
        // Logs of two entries hold an election's entry and an add-learner: never a promotion.
        let e = explore(Membership { max_term: 2, max_log: 2, ..Membership::default() }, BUDGET);
        assert!(e.complete);
        assert_eq!(status(&e, "a learner is promoted"), Status::Unreached);
        assert_eq!(e.verdict, Verdict::Unknown);
    }

    #[test]
    fn a_search_cut_by_its_state_budget_is_unknown() {
        let e = explore(small(None), 1_000);
        assert!(!e.complete);
        assert_eq!(e.verdict, Verdict::Unknown);
        assert_eq!(status(&e, "no committed entry is lost"), Status::Undecided);
    }

    #[test]
    fn subsets_lists_every_subset_once() {
        let mut all: Vec<u8> = subsets(0b1011).collect();
        all.sort();
        assert_eq!(all, vec![0b0000, 0b0001, 0b0010, 0b0011, 0b1000, 0b1001, 0b1010, 0b1011]);
    }
}
