//! The `ordeal` command line: parse, run, map the outcome to a Jepsen-compatible exit code.

/// Prints a line to stdout, ignoring a closed pipe (`ordeal run | head -1` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod cmd;
mod execute;
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
