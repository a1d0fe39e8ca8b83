//! `ordeal check` and `ordeal export`: offline work on recorded histories.

use crate::cli::{CheckArgs, ExportArgs};
use crate::exit::{BadInput, Outcome};
use anyhow::Context as _;
use ordeal_checker::Verdict;
use ordeal_checker::formats::{self, Format};
use ordeal_checker::linear::{self, Method, Methods, Options, Report, Undecided};
use ordeal_history::OpType;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn parse_format(name: &str) -> anyhow::Result<Option<Format>> {
    Format::parse(name).map_err(|e| BadInput(format!("--format: {e}")).into())
}

/// Parses `--init`: JSON, or `nil`/`absent` for an absent register.
pub fn parse_init(text: &str) -> Result<Value, BadInput> {
    match text.trim() {
        "nil" | "absent" | "none" => Ok(Value::Null),
        t => serde_json::from_str(t)
            .map_err(|e| BadInput(format!("--init `{t}` is not JSON ({e}); use e.g. 0, \"\", null or {{\"x\": 0}}"))),
    }
}

/// Checks each file and prints a result for every one, readable or not. The exit code is the
/// most severe of them: a violation found in any file (1) is never hidden by another file that
/// could not be read (254), which in turn beats a check that could not decide (2).
pub fn check(args: CheckArgs) -> anyhow::Result<Outcome> {
    if let Some(model) = &args.model {
        known_model(model)?;
    }
    let format = parse_format(&args.format)?;
    let init = args.init.as_deref().map(parse_init).transpose()?;
    // Negative, NaN, infinite and absurdly long (a deadline past the clock's range) alike.
    let timeout = args
        .timeout
        .map(|t| {
            let bad = || BadInput(format!("--timeout {t:e}: expected a positive number of seconds, at most 1e9"));
            Duration::try_from_secs_f64(t).ok().filter(|d| !d.is_zero() && t <= 1e9).ok_or_else(bad)
        })
        .transpose()?;
    let memory_limit = args.memory_mb.checked_mul(1 << 20).ok_or_else(|| {
        BadInput(format!("--memory-mb {} is more memory than a 64-bit address space holds", args.memory_mb))
    })?;
    let opts = Options {
        timeout,
        memory_limit,
        stop_at_first_failure: !args.all,
        methods: if args.search_only { Methods::SearchOnly } else { Methods::Any },
        ..Options::default()
    };
    let mut outcome = Outcome::Valid;
    let (mut counts, mut stdout) = (Counts::default(), std::io::stdout().lock());
    for file in &args.files {
        let result = check_file(file, &args, format, init.as_ref(), &opts);
        let this = match &result {
            Ok(checked) => checked.report.verdict.into(),
            Err(_) => Outcome::BadInput,
        };
        outcome = most_severe(outcome, this);
        counts.add(this);
        // A closed pipe (`| head`) ends the output, not the check.
        if print(&mut stdout, file, &result, args.json).is_err() {
            break;
        }
    }
    if args.files.len() > 1 && !args.json {
        let _ = writeln!(stdout, "{counts}");
    }
    Ok(outcome)
}

/// A file checked: the format it was read as, its report, and the time spent reading it.
struct Checked {
    format: Format,
    report: Report,
    read_ms: f64,
}

/// A file that could not be checked: why, and the format it was read as, when that was known.
struct Unchecked {
    format: Option<Format>,
    message: String,
}

impl Unchecked {
    fn new(format: Option<Format>, message: impl std::fmt::Display) -> Self {
        Unchecked { format, message: message.to_string() }
    }
}

/// Reads and checks one file.
fn check_file(
    file: &Path,
    args: &CheckArgs,
    format: Option<Format>,
    init: Option<&Value>,
    opts: &Options,
) -> Result<Checked, Unchecked> {
    if file.join("test.json").is_file() {
        let d = file.display();
        return Err(Unchecked::new(
            None,
            format!("{d} is a run directory: `ordeal report {d}` checks it with its workload's checkers"),
        ));
    }
    let stated = formats::stated(file).map_err(|e| Unchecked::new(format, e))?;
    let (ops, detected) = formats::open(file, format).map_err(|e| Unchecked::new(format, e))?;
    let unchecked = |message: String| Unchecked::new(Some(detected), message);
    // The flags win over what a file states, which wins over its format's default.
    let Some(model) = args.model.clone().or(stated.as_ref().map(|s| s.model.clone())) else {
        return Err(unchecked(format!("{}: --model is needed: the file does not state its model", file.display())));
    };
    // A model the file states is checked here, and named as the file's, not as a flag's.
    if args.model.is_none()
        && let Some(e) = unknown_model(&model)
    {
        return Err(unchecked(format!("{}:1: the ordeal header's :model {e}", file.display())));
    }
    let init = init.cloned().or(stated.map(|s| s.init)).unwrap_or_else(|| detected.default_init());
    // The history streams through the checker; the first bad line stops it. The time spent
    // reading and parsing is measured apart, so that the check's own time can be told.
    let mut bad_line = None;
    let mut ops = ops.map_while(|r| r.map_err(|e| bad_line = Some(e)).ok());
    let mut read = Duration::ZERO;
    let (mut client, mut acked) = (0usize, 0usize);
    let timed = std::iter::from_fn(|| {
        let started = Instant::now();
        let op = ops.next();
        read += started.elapsed();
        client += op.as_ref().is_some_and(|o| o.is_client()) as usize;
        acked += op.as_ref().is_some_and(|o| o.is_client() && o.kind == OpType::Ok) as usize;
        op
    });
    let checked = linear::check_by_name(&model, &init, timed, opts);
    let read_ms = read.as_secs_f64() * 1e3;
    if let Some(e) = bad_line {
        return Err(unchecked(e.to_string()));
    }
    let report = checked.map_err(|e| unchecked(format!("{}: {e}", file.display())))?;
    Ok(Checked { format: detected, report: fail_closed_on_empty(report, client, acked), read_ms })
}

/// Prints a file's result: its report on stdout, or its error on stderr (and, with `--json`, a
/// line on stdout of the same shape as a report's, whose `error` says why there is no report).
fn print(out: &mut impl Write, file: &Path, result: &Result<Checked, Unchecked>, json: bool) -> std::io::Result<()> {
    if let Err(e) = result {
        eprintln!("ordeal: error: {}", e.message);
    }
    match (result, json) {
        (Ok(c), true) => {
            let line = json!({"file": file, "format": c.format.name(), "read_ms": c.read_ms, "report": c.report, "error": null});
            writeln!(out, "{line}")
        }
        (Err(e), true) => {
            let line = json!({"file": file, "format": e.format.map(Format::name), "read_ms": null, "report": null, "error": e.message});
            writeln!(out, "{line}")
        }
        (Ok(c), false) => {
            let (report, ms) = (&c.report, (c.report.elapsed_ms, c.read_ms));
            writeln!(
                out,
                "{}: {} [{:.1} ms, of which reading {:.1} ms]",
                file.display(),
                report.summary(),
                ms.0,
                ms.1
            )?;
            write!(out, "{}", details(report))
        }
        (Err(_), false) => Ok(()),
    }
}

/// The more severe of two files' outcomes: invalid, then unreadable, then unknown, then valid.
fn most_severe(a: Outcome, b: Outcome) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Valid => 0,
        Outcome::Unknown => 1,
        Outcome::BadInput => 2,
        Outcome::Invalid => 3,
        Outcome::HarnessFailed => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// How many files ended each way, for the closing line of a check of several.
#[derive(Default)]
struct Counts {
    valid: usize,
    invalid: usize,
    unknown: usize,
    unreadable: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Valid => self.valid += 1,
            Outcome::Invalid => self.invalid += 1,
            Outcome::Unknown => self.unknown += 1,
            Outcome::BadInput | Outcome::HarnessFailed => self.unreadable += 1,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = self.valid + self.invalid + self.unknown + self.unreadable;
        let parts = [
            (self.invalid, "invalid"),
            (self.unreadable, "unreadable"),
            (self.unknown, "unknown"),
            (self.valid, "valid"),
        ];
        let parts: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        write!(f, "{all} files: {}", parts.join(", "))
    }
}

fn known_model(model: &str) -> Result<(), BadInput> {
    unknown_model(model).map_or(Ok(()), |e| Err(BadInput(format!("--model {e}"))))
}

/// What is wrong with a model name, if it is not one ordeal knows.
fn unknown_model(model: &str) -> Option<String> {
    let known = linear::MODELS.contains(&model);
    (!known).then(|| format!("`{model}`: expected one of {}", linear::MODELS.join(", ")))
}

/// A history without a single client op (`client` events), or without one that succeeded
/// (`acked`), verifies nothing: unknown, never valid.
fn fail_closed_on_empty(mut report: Report, client: usize, acked: usize) -> Report {
    let reason = match (client, acked) {
        (0, _) => "the history holds no op",
        (_, 0) => "no op of the history succeeded",
        _ => return report,
    };
    if report.verdict == Verdict::Valid {
        report.verdict = Verdict::Unknown;
        report.undecided.push(Undecided { partition: None, ops: report.ops, reason: reason.into() });
    }
    report
}

/// The evidence of an invalid report, indented under its verdict line.
fn details(report: &Report) -> String {
    let mut s = String::new();
    if let Some(f) = report.failures.first().filter(|f| f.method == Method::VersionOrder) {
        s += "  the ops of the proof (version order):\n";
        for op in &f.involved {
            s += &format!("    op {:>6}  process {:<6} {}\n", op.index, op.process.to_string(), op.op);
        }
    } else if let Some(f) = report.failures.first() {
        let skipped = f.prefix_len - f.prefix.len();
        s += &format!(
            "  longest legal order ({} ops{}):\n",
            f.prefix_len,
            if skipped > 0 { format!(", last {} shown", f.prefix.len()) } else { String::new() }
        );
        for step in &f.prefix {
            s += &format!(
                "    op {:>6}  process {:<6} {:<32} -> {}\n",
                step.op.index,
                step.op.process.to_string(),
                step.op.op,
                step.state
            );
        }
        s += &format!(
            "  then op {} (process {}: {}) is impossible in state {}\n",
            f.op.index, f.op.process, f.op.op, f.state
        );
        if !f.concurrent.is_empty() {
            let ops: Vec<String> = f.concurrent.iter().map(|o| format!("{} ({})", o.index, o.op)).collect();
            s += &format!("  concurrent ops tried: {}\n", ops.join(", "));
        }
    }
    if report.failures.len() > 1 {
        s += &format!("  ... and {} more illegal partitions (--json shows every one)\n", report.failures.len() - 1);
    }
    s
}

/// The model of a history whose file does not say: the log model for the log workload's
/// appends, a register per key for keyed values, else one cas-register.
fn default_model(history: &ordeal_history::History) -> &'static str {
    let ops = history.ops();
    if ops.iter().any(|op| op.f == "append") {
        "log"
    } else if ops.iter().any(|op| op.is_client() && op.value.get("key").is_some()) {
        "kv"
    } else {
        "cas-register"
    }
}

/// Converts a history file to EDN or JSON Lines.
pub fn export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let format = parse_format(&args.format)?;
    let stated = formats::stated(&args.file).map_err(|e| BadInput(e.to_string()))?;
    let (history, detected) = formats::import(&args.file, format).map_err(|e| BadInput(e.to_string()))?;
    if let Some(model) = &args.model {
        known_model(model)?;
    }
    let init = stated.as_ref().map_or_else(|| detected.default_init(), |s| s.init.clone());
    let text = match args.to.as_str() {
        "edn" => {
            // The export states the semantics the history was read with.
            let model = args.model.clone().or(stated.as_ref().map(|s| s.model.clone()));
            let model = model.unwrap_or_else(|| default_model(&history).into());
            formats::export_edn(&history, &model, &init)
        }
        "jsonl" => {
            // JSON Lines hold ops only, and their check assumes no initial value.
            if !init.is_null() {
                eprintln!(
                    "ordeal: note: JSON Lines cannot state the initial value {init}: check the export with --init '{init}'"
                );
            }
            let mut buf = Vec::new();
            let mut w = ordeal_history::jsonl::Writer::new(&mut buf);
            for op in history.ops() {
                w.write_unflushed(op)?;
            }
            w.flush()?;
            drop(w);
            String::from_utf8(buf).context("JSON is UTF-8")?
        }
        other => return Err(BadInput(format!("--to `{other}`: expected edn or jsonl")).into()),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|e| BadInput(format!("-o {}: {e}", path.display())))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(Outcome::Valid)
}
