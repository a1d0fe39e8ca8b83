//! The `ordeal` command line: parse, run, map the outcome to a Jepsen-compatible exit code.

mod cli;
mod cmd;
mod exit;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli::init_logging(&cli);
    match cmd::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("ordeal: error: {err:#}");
            exit::Outcome::from_error(&err).exit_code()
        }
    }
}
