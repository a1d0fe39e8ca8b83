//! One module per subcommand; each returns the [`Outcome`] that becomes the exit code.

mod check;
mod cleanup;
mod gate;
mod model;
mod report;
mod run;
mod serve;
mod suite;

use crate::cli::{Cli, Command};
use crate::exit::Outcome;

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Check(args) => check::check(args),
        Command::Export(args) => check::export(args),
        Command::Run(args) => run::run(*args),
        Command::Demo(args) => run::demo(args),
        Command::Report(args) => report::report(args),
        Command::Cleanup(args) => cleanup::cleanup(args),
        Command::Serve(args) => serve::serve(args),
        Command::Suite(args) => suite::suite(args),
        Command::Gate(args) => gate::gate(args),
        Command::Model(args) => model::model(args),
    }
}
