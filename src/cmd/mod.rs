//! One module per subcommand; each returns the [`Outcome`] that becomes the exit code.

use crate::cli::{Cli, Command};
use crate::exit::Outcome;

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    anyhow::bail!("`{}` is not implemented yet", name(&cli.command))
}

fn name(command: &Command) -> &'static str {
    match command {
        Command::Run(_) => "run",
        Command::Check(_) => "check",
        Command::Report(_) => "report",
        Command::Serve(_) => "serve",
        Command::Cleanup(_) => "cleanup",
        Command::Demo(_) => "demo",
    }
}
