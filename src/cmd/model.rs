//! `ordeal model`: explore a protocol model exhaustively and report each property.

use crate::cli::ModelArgs;
use crate::exit::{BadInput, Outcome};
use ordeal_checker::protocol::membership::{Bug, Membership};
use ordeal_checker::protocol::{self, Exploration, Status};

/// Builds a model from the flags and explores it.
type Explore = fn(&ModelArgs) -> Result<Exploration, BadInput>;

/// The models by name; a new model is a line here.
const MODELS: &[(&str, Explore)] = &[("membership", membership)];

/// Explores the named model; the exit code is its verdict's.
pub fn model(args: ModelArgs) -> anyhow::Result<Outcome> {
    let Some((_, explore)) = MODELS.iter().find(|(name, _)| *name == args.name) else {
        let names: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
        return Err(BadInput(format!("no model named {:?}; known: {}", args.name, names.join(", "))).into());
    };
    let exploration = explore(&args)?;
    if args.json {
        say!("{}", serde_json::to_string(&exploration)?);
    } else {
        print(&args, &exploration);
    }
    Ok(exploration.verdict.into())
}

fn membership(args: &ModelArgs) -> Result<Exploration, BadInput> {
    let bug = args.bug.as_deref().map(named_bug).transpose()?;
    let bounded = |flag: &str, value: u8, low: u8, high: u8| {
        let bad = || BadInput(format!("--{flag} {value}: expected {low} to {high}"));
        (low..=high).contains(&value).then_some(()).ok_or_else(bad)
    };
    bounded("nodes", args.nodes, 1, 8)?;
    bounded("voters", args.voters, 1, args.nodes)?;
    bounded("max-term", args.max_term, 1, 20)?;
    bounded("max-log", args.max_log, 1, 30)?;
    let model = Membership {
        nodes: args.nodes,
        voters: args.voters,
        max_term: args.max_term,
        max_log: args.max_log,
        bug,
        ..Membership::default()
    };
    Ok(protocol::explore(model, args.max_states))
}

fn named_bug(name: &str) -> Result<Bug, BadInput> {
    Bug::named(name).ok_or_else(|| {
        let names: Vec<&str> = Bug::ALL.iter().map(|(n, _)| *n).collect();
        BadInput(format!("--bug {name:?}: no such bug; known: {}", names.join(", ")))
    })
}

fn print(args: &ModelArgs, e: &Exploration) {
    let bug = args.bug.as_deref().map_or("none".to_string(), |b| format!("--bug {b}"));
    say!(
        "model {}: {} nodes ({} voters), terms up to {}, logs up to {} entries, rule switched off: {bug}",
        args.name,
        args.nodes,
        args.voters,
        args.max_term,
        args.max_log
    );
    for p in &e.properties {
        let status = match p.status {
            Status::Holds => "holds",
            Status::Violated => "VIOLATED",
            Status::Reached => "reached",
            Status::Unreached => "unreached",
            Status::Undecided => "undecided",
        };
        say!("  {status:<10} {:<10} {}", p.kind, p.name);
        if p.status == Status::Violated {
            for (i, step) in p.path.iter().enumerate() {
                say!("      {:>2}. {step}", i + 1);
            }
        }
    }
    let how = match (e.complete, e.verdict) {
        (true, _) => "every reachable state visited",
        (false, ordeal_checker::Verdict::Invalid) => "stopped at the first counterexample",
        (false, _) => "stopped before visiting every state (--max-states)",
    };
    if e.properties.iter().any(|p| p.status == Status::Unreached) {
        say!("  (an unreached state means the bounds are too small to show it: raise --max-log or --max-term)");
    }
    say!(
        "{}: {} distinct states ({} generated), depth {}, {:.1} s; {how}",
        e.verdict,
        e.states,
        e.generated,
        e.depth,
        e.elapsed_secs
    );
}
