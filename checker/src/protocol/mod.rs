//! Models of the broker's protocols, explored exhaustively by stateright within bounds: where the
//! history checkers judge what one run did, these judge every behaviour the rules allow.
//!
//! [`explore`] runs any stateright model and says, per property, whether it held (an `always`
//! property with no counterexample, a `sometimes` property with an example) and the path that
//! shows otherwise. A new model is a module here with a stateright `Model` whose properties
//! name what it guarantees; the CLI (`ordeal model`) registers it by name.

pub mod membership;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use stateright::{Checker, Expectation, Model};

use crate::Verdict;

/// What one exploration found.
#[derive(Debug, Clone, Serialize)]
pub struct Exploration {
    /// `valid` when every `always` property held over every reachable state and every
    /// `sometimes` property was reached; `invalid` when an `always` property did not hold;
    /// `unknown` otherwise (the state budget ran out, or the bounds never reach a state that a
    /// `sometimes` property asks for).
    pub verdict: Verdict,
    /// Each property, in the model's order.
    pub properties: Vec<PropertyOutcome>,
    /// Distinct states visited.
    pub states: usize,
    /// States generated, repeats included (what the budget counts).
    pub generated: usize,
    /// The longest path explored, in steps.
    pub depth: usize,
    /// Whether every reachable state within the model's bounds was visited.
    pub complete: bool,
    /// How long it took, in seconds.
    pub elapsed_secs: f64,
}

/// One property's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PropertyOutcome {
    /// Its name.
    pub name: &'static str,
    /// `always` (a safety property: any counterexample is a violation) or `sometimes` (a state
    /// the model must be able to reach, so that the bounds are not vacuous).
    pub kind: &'static str,
    /// What the search found.
    pub status: Status,
    /// The steps to the counterexample (for `always`) or to the example (for `sometimes`).
    pub path: Vec<String>,
}

/// What the search found for one property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// An `always` property held in every state visited, and the search was complete.
    Holds,
    /// An `always` property failed: the path leads to a counterexample.
    Violated,
    /// A `sometimes` property's state was reached: the path leads to it.
    Reached,
    /// A complete search never reached a `sometimes` property's state: the bounds are too small.
    Unreached,
    /// The search stopped (a violation elsewhere, or the state budget) before deciding.
    Undecided,
}

/// Stops a search at its first counterexample, as TLC does: a model calls [`Halt::stopped`] first
/// in its `actions`, which then offers nothing, so the queued states drain at once. A clone shares
/// the flag.
#[derive(Debug, Clone, Default)]
pub struct Halt(Arc<AtomicBool>);

impl Halt {
    /// Whether the search is to stop: an `always` property of `model` fails in `state`, now or
    /// in a state seen before.
    pub fn stopped<M: Model>(&self, model: &M, state: &M::State) -> bool {
        if self.0.load(Ordering::Relaxed) {
            return true;
        }
        let always = model.properties().into_iter().filter(|p| p.expectation == Expectation::Always);
        let violated = always.into_iter().any(|p| !(p.condition)(model, state));
        self.0.fetch_or(violated, Ordering::Relaxed);
        violated
    }

    /// Whether it stopped a search, clearing it: stateright rebuilds a discovery's path by
    /// replaying the model's actions, which a stopped model no longer offers.
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// A model whose search stops at its first counterexample.
pub trait Halting: Model {
    /// The flag its `actions` consult.
    fn halt(&self) -> &Halt;
}

/// Explores `model` breadth-first, stopping at its first counterexample or after about
/// `max_states` states generated (repeats included).
pub fn explore<M>(model: M, max_states: usize) -> Exploration
where
    M: Halting + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq,
{
    let start = Instant::now();
    // One thread: stateright's threads each search their own queue, so only one gives the
    // shortest paths, and the same ones every time.
    let checker = model.checker().target_state_count(max_states).spawn_bfs().join();
    let model = checker.model();
    let states = checker.unique_state_count();
    let halted = model.halt().take();
    let discoveries = checker.discoveries();
    // stateright's budget counts states generated, repeats included, and is checked between
    // blocks of work: a search that ends at or past it may have been cut, so it is not complete.
    // The search also stops once every property has a discovery, before it has seen everything.
    let generated = checker.state_count();
    let cut = generated >= max_states;
    let complete = !cut && !halted && discoveries.len() < model.properties().len();
    let properties: Vec<PropertyOutcome> = model
        .properties()
        .iter()
        .map(|p| {
            let found = discoveries.get(p.name);
            let path = found.map(|path| steps(model, path.clone().into_actions())).unwrap_or_default();
            let sometimes = p.expectation == Expectation::Sometimes;
            let status = match (sometimes, found.is_some(), complete) {
                (false, true, _) => Status::Violated,
                (true, true, _) => Status::Reached,
                (false, false, true) => Status::Holds,
                (true, false, true) => Status::Unreached,
                (_, false, false) => Status::Undecided,
            };
            PropertyOutcome { name: p.name, kind: if sometimes { "sometimes" } else { "always" }, status, path }
        })
        .collect();
    let verdict = verdict(&properties);
    Exploration {
        verdict,
        properties,
        states,
        generated,
        depth: checker.max_depth(),
        complete,
        elapsed_secs: start.elapsed().as_secs_f64(),
    }
}

fn verdict(properties: &[PropertyOutcome]) -> Verdict {
    if properties.iter().any(|p| p.status == Status::Violated) {
        Verdict::Invalid
    } else if properties.iter().all(|p| matches!(p.status, Status::Holds | Status::Reached)) {
        Verdict::Valid
    } else {
        Verdict::Unknown
    }
}

fn steps<M: Model>(model: &M, actions: Vec<M::Action>) -> Vec<String>
where
    M::Action: Debug,
{
    actions.iter().map(|a| model.format_action(a)).collect()
}
