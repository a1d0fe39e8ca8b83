//! The interpreter: runs a test's phases against a live cluster.
//!
//! 1. **the phases**, in order: `concurrency` client workers draw ops from the generator, with
//!    the phase's op mix, under the phase's total rate limit, until the phase's end; in a
//!    **main** phase the nemesis starts a fault every `nemesis_interval`, holds it for
//!    `fault_duration`, and heals it (with fault rounds, until every fault ran that many times:
//!    the phase then ends, and each later one lasts its length from then); a **heal** phase
//!    begins by healing every fault; a **final-reads** phase only reads. A sampler records every
//!    node's status throughout;
//! 2. **heal**: every fault is repaired and the run waits until the cluster is healthy;
//! 3. **final**: the generator's final reads, through a fresh client process.
//!
//! An interrupt (Ctrl-C) ends the phases at once and skips the final reads; healing still
//! happens. A process whose op completed `info` retires; a fresh process id takes its slot.

use crate::client::{ClientFactory, Completion};
use crate::generator::Generator;
use crate::phases::{Mix, PlanPhase};
use crate::recorder::{Counts, Recorder};
use indicatif::{ProgressBar, ProgressStyle};
use ordeal_faults::system::{self, System};
use ordeal_faults::{FaultSet, Nemesis};
use ordeal_history::{Op, OpType, PhaseKind, PhaseSpan, Process, ROUNDS_CUT_SHORT, TIMED_OUT};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a run is driven.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seeds the generator and the nemesis.
    pub seed: u64,
    /// Client processes at a time.
    pub concurrency: usize,
    /// The phases, in order: their lengths, rates and op mixes.
    pub phases: Vec<PlanPhase>,
    /// Per-op timeout.
    pub op_timeout: Duration,
    /// Faults to draw from (each a set that starts and heals together); none means no nemesis.
    pub faults: Vec<FaultSet>,
    /// Take the faults in turn instead of at random.
    pub cycle_faults: bool,
    /// With `cycle_faults`: end the main phase once every fault has run and healed this many
    /// times (the time limit then only bounds the run, and reaching it first is a nemesis
    /// error). Tests decide by "every fault ran", not by how many fit in a time. Meant for a
    /// single main phase.
    pub fault_rounds: Option<usize>,
    /// Quiet time before each fault.
    pub nemesis_interval: Duration,
    /// How long each fault lasts.
    pub fault_duration: Duration,
    /// Where to append node status samples (JSON Lines), if anywhere.
    pub status_log: Option<PathBuf>,
    /// How often to sample.
    pub status_interval: Duration,
    /// Draw a live progress line on stderr.
    pub progress: bool,
    /// How long healing may take: the nemesis's repairs, then the wait for a healthy cluster,
    /// each.
    pub heal_timeout: Duration,
}

/// What happened, beyond the history.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The main phase was cut short by an interrupt.
    pub interrupted: bool,
    /// Completion counts.
    pub counts: Counts,
    /// Faults the nemesis could not start or stop, with why.
    pub nemesis_errors: Vec<String>,
    /// Whether the cluster was healthy after healing (and if not, why).
    pub healed: Result<(), String>,
    /// Whether the final reads all completed.
    pub final_reads_complete: bool,
    /// When each phase ran (those that began, when interrupted).
    pub phases: Vec<PhaseSpan>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            seed: 0,
            concurrency: 5,
            phases: vec![PlanPhase::main(Duration::from_secs(10), 0.0)],
            op_timeout: Duration::from_secs(1),
            faults: Vec::new(),
            cycle_faults: false,
            fault_rounds: None,
            nemesis_interval: Duration::from_secs(3),
            fault_duration: Duration::from_secs(3),
            status_log: None,
            status_interval: Duration::from_millis(250),
            progress: false,
            heal_timeout: Duration::from_secs(30),
        }
    }
}

/// Spaces ops out to the total rate.
struct Limiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(rate: f64) -> Self {
        let interval = (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(1.0 / rate));
        Limiter { interval, next: Mutex::new(Instant::now()) }
    }

    /// Waits for this op's slot; `None` when the slot falls after `deadline`.
    async fn acquire(&self, deadline: Instant) -> Option<()> {
        let Some(interval) = self.interval else { return Some(()) };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + interval;
            slot
        };
        if slot >= deadline {
            return None;
        }
        tokio::time::sleep_until(slot).await;
        Some(())
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Performs one op through `client` and records both halves.
async fn perform(
    recorder: &Recorder,
    client: &mut Box<dyn crate::client::Client>,
    process: u64,
    f: &'static str,
    value: Value,
    timeout: Duration,
) -> (Op, Op) {
    let invoke = recorder.record(Op::invoke(Process::Client(process), f, value.clone()));
    (invoke, complete(recorder, client, process, f, value, timeout).await)
}

/// Performs an op whose invocation is recorded through `client`, and records its completion.
async fn complete(
    recorder: &Recorder,
    client: &mut Box<dyn crate::client::Client>,
    process: u64,
    f: &'static str,
    value: Value,
    timeout: Duration,
) -> Op {
    // The client enforces the timeout itself; this bound only guards against a client that
    // would not, and its expiry is an unknown outcome like any other.
    let c = match tokio::time::timeout(timeout + Duration::from_millis(500), client.invoke(f, &value)).await {
        Ok(c) => c,
        Err(_) => Completion {
            kind: OpType::Info,
            value: Value::Null,
            error: Some("client did not return".into()),
            node: None,
        },
    };
    let result = if c.value.is_null() && c.kind != OpType::Ok { value } else { c.value };
    let mut done = Op::invoke(Process::Client(process), f, result).completed(c.kind);
    done.error = c.error;
    done.node = c.node;
    recorder.record(done)
}

/// What every client worker shares: the schedule, and each phase's end, rate and mix.
struct Drive {
    generator: Mutex<(Box<dyn Generator>, ChaCha8Rng)>,
    recorder: Arc<Recorder>,
    clients: Arc<dyn ClientFactory>,
    /// When each phase ends: planned at the start, and set again as each begins (a main phase
    /// that fault rounds ended early moves every later one up).
    ends: Mutex<Vec<Instant>>,
    limiters: Vec<Limiter>,
    mixes: Vec<Option<Mix>>,
    concurrency: u64,
    timeout: Duration,
    /// The highest process id a worker has taken (each takes a new one after an op of unknown
    /// outcome): the final reads take theirs above it.
    highest: std::sync::atomic::AtomicU64,
}

/// One client slot through the phases: draws each op with the current phase's mix, under its
/// rate, until the last phase ends (`phase` passes the number of phases) or an interrupt.
async fn worker(drive: Arc<Drive>, slot: u64, mut phase: watch::Receiver<usize>, interrupt: watch::Receiver<bool>) {
    let mut process = slot;
    let mut client = drive.clients.open(process);
    loop {
        let i = *phase.borrow();
        if i >= drive.limiters.len() || *interrupt.borrow() {
            break;
        }
        let end = lock(&drive.ends)[i];
        if drive.limiters[i].acquire(end).await.is_none() {
            // No slot left in this phase: wait for the next one.
            if phase.wait_for(|p| *p != i).await.is_err() {
                break;
            }
            continue;
        }
        let (f, value, invoke) = {
            // Held while the op is drawn and its invocation recorded: the phase switch waits
            // for it, so an op's invocation time falls in the phase whose mix it was drawn from.
            let current = phase.borrow();
            if *current != i {
                continue;
            }
            let mut g = lock(&drive.generator);
            let (schedule, rng) = &mut *g;
            let (f, value) = schedule.op(rng, drive.mixes[i].as_ref());
            let invoke = drive.recorder.record(Op::invoke(Process::Client(process), f, value.clone()));
            (f, value, invoke)
        };
        let done = complete(&drive.recorder, &mut client, process, f, value, drive.timeout).await;
        lock(&drive.generator).0.update(&invoke, &done);
        if done.kind == OpType::Info {
            process += drive.concurrency;
            drive.highest.fetch_max(process, std::sync::atomic::Ordering::Relaxed);
            client = drive.clients.open(process);
        }
    }
}

/// Runs the test. The cluster must be set up; it is healed but not torn down.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: &Plan,
    system: Arc<dyn System>,
    nemesis: Box<dyn Nemesis>,
    generator: Box<dyn Generator>,
    clients: Arc<dyn ClientFactory>,
    recorder: Arc<Recorder>,
    interrupt: watch::Receiver<bool>,
) -> Summary {
    let started = Instant::now();
    let first_start = recorder.now();
    let ends: Vec<Instant> = plan
        .phases
        .iter()
        .scan(started, |end, p| {
            *end += p.duration;
            Some(*end)
        })
        .collect();
    let time_limit = ends.last().map_or(Duration::ZERO, |e| e.duration_since(started));
    let drive = Arc::new(Drive {
        generator: Mutex::new((generator, ChaCha8Rng::seed_from_u64(plan.seed))),
        recorder: recorder.clone(),
        clients: clients.clone(),
        limiters: plan.phases.iter().map(|p| Limiter::new(p.rate)).collect(),
        mixes: plan.phases.iter().map(|p| p.mix.clone()).collect(),
        ends: Mutex::new(ends),
        concurrency: plan.concurrency as u64,
        timeout: plan.op_timeout,
        highest: (plan.concurrency as u64).saturating_sub(1).into(),
    });
    let fault_now: Shared<String> = Arc::new(Mutex::new(String::new()));
    let (stop_tx, stop) = watch::channel(false);
    let (phase_tx, phase) = watch::channel(0usize);

    // The phases: workers, nemesis, sampler, progress.
    let workers: Vec<_> = (0..plan.concurrency as u64)
        .map(|slot| tokio::spawn(worker(drive.clone(), slot, phase.clone(), interrupt.clone())))
        .collect();
    let phases_task = tokio::spawn(drive_phases(
        plan.clone(),
        nemesis,
        fault_now.clone(),
        drive.clone(),
        first_start,
        interrupt.clone(),
        phase_tx,
    ));
    let sampler = plan.status_log.clone().map(|path| {
        tokio::spawn(sample_statuses(system.clone(), path, plan.status_interval, recorder.clone(), stop.clone()))
    });
    let progress = plan
        .progress
        .then(|| tokio::spawn(show_progress(recorder.clone(), fault_now.clone(), started, time_limit, stop.clone())));

    for w in workers {
        let _ = w.await;
    }
    let (mut nemesis, nemesis_errors, phases) = match phases_task.await {
        Ok(x) => x,
        Err(e) => {
            // The nemesis went with the task: nothing can heal its faults (the teardown still
            // stops every node), which the run says; it was no Ctrl-C.
            let _ = stop_tx.send(true);
            return Summary {
                interrupted: false,
                counts: recorder.counts(),
                nemesis_errors: vec![],
                healed: Err(format!("the nemesis task failed, so nothing healed its faults: {e}")),
                final_reads_complete: false,
                phases: vec![],
            };
        }
    };
    let mut interrupted = *interrupt.borrow();

    // Heal phase.
    *lock(&fault_now) = "healing".into();
    let healed = heal(&mut *nemesis, &*system, &recorder, plan.heal_timeout).await;

    // Final phase.
    let mut final_reads_complete = false;
    if !interrupted && healed.is_ok() {
        *lock(&fault_now) = "final reads".into();
        let ops = lock(&drive.generator).0.final_ops();
        // Every worker has ended: ids above theirs are fresh.
        let mut process = drive.highest.load(std::sync::atomic::Ordering::Relaxed) + 1;
        let mut client = clients.open(process);
        final_reads_complete = true;
        for (f, value) in ops {
            // A Ctrl-C here ends the run as one during the phases does.
            if *interrupt.borrow() {
                (interrupted, final_reads_complete) = (true, false);
                break;
            }
            let mut done = false;
            for _ in 0..10 {
                let (_, c) = perform(&recorder, &mut client, process, f, value.clone(), plan.op_timeout).await;
                if c.kind == OpType::Ok {
                    done = true;
                    break;
                }
                if c.kind == OpType::Info {
                    process += 1;
                    client = clients.open(process);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            final_reads_complete &= done;
        }
    }

    let _ = stop_tx.send(true);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    if let Some(p) = progress {
        let _ = p.await;
    }
    Summary { interrupted, counts: recorder.counts(), nemesis_errors, healed, final_reads_complete, phases }
}

/// Runs the phases' clock and the nemesis: faults in main phases, a heal as each heal phase
/// begins. `phase` moves to each next phase at its end, or past the last on an interrupt.
/// Returns the nemesis, to be healed, its errors, and when each phase ran.
async fn drive_phases(
    plan: Plan,
    mut nemesis: Box<dyn Nemesis>,
    fault_now: Shared<String>,
    drive: Arc<Drive>,
    mut start: u64,
    mut interrupt: watch::Receiver<bool>,
    phase: watch::Sender<usize>,
) -> (Box<dyn Nemesis>, Vec<String>, Vec<PhaseSpan>) {
    let recorder = &drive.recorder;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0x006e_656d_6573_6973);
    let mut errors = Vec::new();
    let mut spans = Vec::new();
    for (i, p) in plan.phases.iter().enumerate() {
        let mut end = lock(&drive.ends)[i];
        match p.kind {
            PhaseKind::Main => {
                errors.extend(
                    nemesis_loop(&plan, &mut *nemesis, recorder, &fault_now, end, &mut interrupt, &mut rng).await,
                );
                // Fault rounds end the phase once they are done.
                if plan.fault_rounds.is_some() && plan.cycle_faults {
                    end = end.min(Instant::now());
                }
            }
            PhaseKind::Heal => {
                *lock(&fault_now) = "healing, load goes on".into();
                errors.extend(
                    heal_all(&mut *nemesis, recorder, plan.heal_timeout).await.err().map(|e| format!("heal: {e}")),
                );
            }
            PhaseKind::FinalReads => *lock(&fault_now) = "reads only".into(),
        }
        let interrupted = !sleep_or_stop(end, &mut interrupt).await;
        phase.send_modify(|current| {
            *current = if interrupted { plan.phases.len() } else { i + 1 };
            // Set before the workers see the next phase: it lasts its length from now.
            if let Some(next) = plan.phases.get(i + 1) {
                lock(&drive.ends)[i + 1] = Instant::now() + next.duration;
            }
            let now = recorder.now();
            spans.push(PhaseSpan { kind: p.kind, start, end: now, rate: p.rate });
            start = now;
        });
        lock(&fault_now).clear();
        if interrupted {
            break;
        }
    }
    (nemesis, errors, spans)
}

/// How long one fault's start or stop may take.
const FAULT_BOUND: Duration = Duration::from_secs(30);

/// Repairs everything, within `bound`; recorded as a nemesis `stop` of all.
async fn heal_all(nemesis: &mut dyn Nemesis, recorder: &Recorder, bound: Duration) -> Result<(), String> {
    let healed =
        async { nemesis.heal_all().await.map(|()| json!({"fault": "all"})).map_err(|e| (None, e.to_string())) };
    nemesis_op(recorder, "stop", "all", bound, healed).await.error.map_or(Ok(()), Err)
}

/// Repairs everything and waits for a healthy cluster.
async fn heal(
    nemesis: &mut dyn Nemesis,
    system: &dyn System,
    recorder: &Recorder,
    timeout: Duration,
) -> Result<(), String> {
    heal_all(nemesis, recorder, timeout).await?;
    system::wait_healthy(system, timeout).await.map_err(|e| e.to_string())
}

/// Sleeps until `until`; false if interrupted first.
async fn sleep_or_stop(until: Instant, interrupt: &mut watch::Receiver<bool>) -> bool {
    let interrupted = tokio::select! {
        _ = tokio::time::sleep_until(until) => false,
        _ = interrupt.wait_for(|i| *i) => true,
    };
    !interrupted && !*interrupt.borrow()
}

/// Starts and stops faults until the deadline, or until the fault rounds are done. Returns the
/// errors.
async fn nemesis_loop(
    plan: &Plan,
    nemesis: &mut dyn Nemesis,
    recorder: &Recorder,
    fault_now: &Mutex<String>,
    deadline: Instant,
    interrupt: &mut watch::Receiver<bool>,
    rng: &mut ChaCha8Rng,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut turn = 0;
    let wanted = plan.fault_rounds.filter(|_| plan.cycle_faults).map(|r| r * plan.faults.len());
    loop {
        if wanted.is_some_and(|w| turn >= w) {
            break;
        }
        let next =
            if plan.cycle_faults { plan.faults.get(turn % plan.faults.len().max(1)) } else { plan.faults.choose(rng) };
        let Some(faults) = next.cloned() else { break };
        turn += 1;
        // The quiet time is cut at the deadline: the phase ends then, not an interval later.
        let quiet = (Instant::now() + plan.nemesis_interval).min(deadline);
        if !sleep_or_stop(quiet, interrupt).await || Instant::now() >= deadline {
            if let Some(w) = wanted.filter(|_| !*interrupt.borrow()) {
                errors.push(format!("{ROUNDS_CUT_SHORT} {} of {w} faults", turn - 1));
            }
            break;
        }
        let name = faults.to_string();
        let started = nemesis_op(recorder, "start", &name, FAULT_BOUND, start_set(nemesis, &faults, rng)).await;
        errors.extend(started.error.iter().map(|e| format!("start {name}: {e}")));
        let shown = format!("{name} {}", started.value.get("targets").map(|t| t.to_string()).unwrap_or_default());
        *lock(fault_now) = shown;
        let until = if wanted.is_some() {
            Instant::now() + plan.fault_duration
        } else {
            (Instant::now() + plan.fault_duration).min(deadline)
        };
        sleep_or_stop(until, interrupt).await;
        let stopped = nemesis_op(recorder, "stop", &name, FAULT_BOUND, stop_set(nemesis, &faults)).await;
        errors.extend(stopped.error.iter().map(|e| format!("stop {name}: {e}")));
        lock(fault_now).clear();
    }
    errors
}

/// Appends every node's status to `path` at each interval until stopped.
async fn sample_statuses(
    system: Arc<dyn System>,
    path: PathBuf,
    every: Duration,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut file) = std::fs::File::create(&path) else {
        tracing::warn!("cannot create {}", path.display());
        return;
    };
    loop {
        let time = recorder.now();
        let statuses = system.statuses(every.min(Duration::from_millis(300))).await;
        let nodes: serde_json::Map<String, Value> = system
            .nodes()
            .into_iter()
            .map(|n| {
                let v = match statuses.get(&n) {
                    Some(s) => json!({
                        "up": true, "version": s.version, "release": s.release, "time_ms": s.time_ms, "groups": s.groups
                    }),
                    None => json!({"up": false}),
                };
                (n.to_string(), v)
            })
            .collect();
        let _ = writeln!(file, "{}", json!({"time": time, "nodes": nodes}));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn show_progress(
    recorder: Arc<Recorder>,
    fault_now: Shared<String>,
    started: Instant,
    limit: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let bar = ProgressBar::new(limit.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut last = (Instant::now(), 0u64);
    loop {
        let c = recorder.counts();
        let now = Instant::now();
        let rate = (c.events - last.1) as f64 / 2.0 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, c.events);
        bar.set_position(now.duration_since(started).as_secs().min(limit.as_secs()));
        let fault = lock(&fault_now).clone();
        bar.set_message(format!(
            "{rate:>6.0} ops/s  ok {} fail {} info {}  {}",
            c.ok,
            c.fail,
            c.info,
            if fault.is_empty() { "no fault".into() } else { fault }
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    bar.finish_and_clear();
}

/// How a set of faults failed: what it did before, when it says, and why.
type Failed = (Option<Value>, String);

/// Records a nemesis op `f` around `action`, bounded by `bound`; returns its completion. A failed
/// action's completion keeps what it did before it failed; one the bound cut off says so
/// ([`TIMED_OUT`]), since what it did is then not all on record.
async fn nemesis_op(
    recorder: &Recorder,
    f: &'static str,
    name: &str,
    bound: Duration,
    action: impl std::future::Future<Output = Result<Value, Failed>>,
) -> Op {
    recorder.record(Op::invoke(Process::Nemesis, f, json!({"fault": name})));
    let mut done = Op::invoke(Process::Nemesis, f, json!({"fault": name})).completed(OpType::Info);
    match tokio::time::timeout(bound, action).await {
        Ok(Ok(v)) => done.value = v,
        Ok(Err((partial, e))) => {
            done.value = partial.unwrap_or(done.value);
            done.error = Some(e);
        }
        Err(_) => {
            done.value[TIMED_OUT] = json!(true);
            done.error = Some(format!("timed out after {} s", bound.as_secs_f64()));
        }
    }
    recorder.record(done)
}

/// What a set of faults did, as one value: a single fault's own, or every part's with the union
/// of their targets.
fn merged(name: &str, parts: Vec<Value>) -> Value {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut targets: Vec<u64> = parts
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_u64())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    json!({"fault": name, "targets": targets, "parts": parts})
}

/// Starts every fault of the set; stops at the first that fails (the heal phase repairs the
/// others), keeping what the set did until then.
async fn start_set(nemesis: &mut dyn Nemesis, faults: &FaultSet, rng: &mut ChaCha8Rng) -> Result<Value, Failed> {
    let mut parts = Vec::new();
    for fault in &faults.0 {
        match nemesis.start(fault, rng).await {
            Ok(v) => parts.push(v),
            Err(e) => {
                let (done, why) = e.into_parts();
                parts.extend(done);
                let done = (!parts.is_empty()).then(|| merged(&faults.to_string(), parts));
                return Err((done, format!("{fault}: {why}")));
            }
        }
    }
    Ok(merged(&faults.to_string(), parts))
}

/// Stops every fault of the set, last started first; every part is tried.
async fn stop_set(nemesis: &mut dyn Nemesis, faults: &FaultSet) -> Result<Value, Failed> {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    for fault in faults.0.iter().rev() {
        match nemesis.stop(fault).await {
            Ok(v) => parts.push(v),
            Err(e) => errors.push(format!("{fault}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err((None, errors.join("; ")));
    }
    parts.reverse();
    Ok(merged(&faults.to_string(), parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use ordeal_faults::{FaultSpec, NemesisError};

    /// Starts every fault but `replace`, which fails after recording what it did.
    struct FailsPartWay;

    #[async_trait]
    impl Nemesis for FailsPartWay {
        fn handles(&self, _: &FaultSpec) -> bool {
            true
        }
        async fn start(&mut self, fault: &FaultSpec, _: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
            let done = json!({"fault": fault.to_string(), "targets": [4]});
            match fault.to_string().as_str() {
                "replace" => Err(NemesisError::NoTarget("learner").after(&done)),
                _ => Ok(done),
            }
        }
        async fn stop(&mut self, _: &FaultSpec) -> Result<Value, NemesisError> {
            Ok(Value::Null)
        }
        async fn heal_all(&mut self) -> Result<(), NemesisError> {
            Ok(())
        }
    }

    /// A nemesis whose heal never ends (a repair waiting on something that never answers).
    struct HealHangs;

    #[async_trait]
    impl Nemesis for HealHangs {
        fn handles(&self, _: &FaultSpec) -> bool {
            true
        }
        async fn start(&mut self, _: &FaultSpec, _: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
            Ok(Value::Null)
        }
        async fn stop(&mut self, _: &FaultSpec) -> Result<Value, NemesisError> {
            Ok(Value::Null)
        }
        async fn heal_all(&mut self) -> Result<(), NemesisError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_heal_that_never_ends_is_cut_off_at_its_bound_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
        let e = heal_all(&mut HealHangs, &recorder, Duration::from_millis(50)).await.unwrap_err();
        assert!(e.starts_with("timed out after"), "{e}");
        recorder.finish().unwrap();
        let text = std::fs::read_to_string(dir.path().join("history.jsonl")).unwrap();
        let done: Op = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!((done.f.as_str(), done.value[TIMED_OUT].as_bool()), ("stop", Some(true)));
        assert_eq!(done.error.as_deref(), Some(e.as_str()));
    }

    #[tokio::test]
    async fn a_set_that_fails_part_way_keeps_what_it_did_beside_the_error() {
        let set = FaultSet::parse("kill-leader+replace").unwrap();
        let (done, error) = start_set(&mut FailsPartWay, &set, &mut ChaCha8Rng::seed_from_u64(1)).await.unwrap_err();
        assert_eq!(error, "replace: no learner to target");
        let parts = done.expect("what the set did")["parts"].clone();
        assert_eq!(parts, json!([{"fault": "kill-leader", "targets": [4]}, {"fault": "replace", "targets": [4]}]));
    }
}
