//! A test's phases as the runner drives them: each phase's length, rate and op mix, checked
//! against the workload's op kinds.

use ordeal_history::{Phase, PhaseKind};
use std::time::Duration;

/// An op kind a workload's generator makes, with its weight in the workload's own mix.
#[derive(Debug, Clone, Copy)]
pub struct OpKind {
    /// The op's `f`.
    pub name: &'static str,
    /// Its weight in the workload's own mix.
    pub weight: f64,
    /// Whether it only reads (the kinds a final-reads phase may send).
    pub read_only: bool,
}

/// Weights over a workload's op kinds, in the order of its [`OpKind`] table.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(Vec<f64>);

impl Mix {
    /// The kind a roll in `[0, 1)` picks from `ops` under `mix`, or under the workload's own
    /// weights when `mix` is `None`. With integer weights the thresholds are exact fractions,
    /// so a schedule drawn from a seed does not depend on how the weights were written.
    pub fn pick(ops: &'static [OpKind], mix: Option<&Mix>, roll: f64) -> &'static str {
        let weight = |i: usize| mix.map_or(ops[i].weight, |m| m.0[i]);
        let total: f64 = (0..ops.len()).map(weight).sum();
        let mut cumulative = 0.0;
        let mut last = ops[0].name;
        for (i, op) in ops.iter().enumerate() {
            if weight(i) <= 0.0 {
                continue;
            }
            cumulative += weight(i);
            last = op.name;
            if roll < cumulative / total {
                return op.name;
            }
        }
        last
    }
}

/// A phase ready to drive.
#[derive(Debug, Clone)]
pub struct PlanPhase {
    /// What the nemesis does.
    pub kind: PhaseKind,
    /// How long it lasts.
    pub duration: Duration,
    /// Total client ops per second; 0 means no limit.
    pub rate: f64,
    /// The op mix; `None`: the workload's own.
    pub mix: Option<Mix>,
}

impl PlanPhase {
    /// One main phase with the workload's own mix: a run without phases.
    pub fn main(duration: Duration, rate: f64) -> PlanPhase {
        PlanPhase { kind: PhaseKind::Main, duration, rate, mix: None }
    }
}

/// A phase that cannot run, naming it and the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("phases[{index}] ({kind}).{field}: {message}")]
pub struct PhaseError {
    /// Its position in the list.
    pub index: usize,
    /// Its kind.
    pub kind: PhaseKind,
    /// The field at fault: `duration_s`, `rate` or `mix`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Checks `phases` against the workload's op kinds `ops` and resolves them; a phase without a
/// rate takes `rate`, the test's.
pub fn plan(ops: &'static [OpKind], phases: &[Phase], rate: f64) -> Result<Vec<PlanPhase>, PhaseError> {
    phases
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let fail = |field, message: String| PhaseError { index, kind: p.kind, field, message };
            if !(p.duration_s.is_finite() && p.duration_s > 0.0) {
                return Err(fail("duration_s", format!("{} is not a positive number of seconds", p.duration_s)));
            }
            if let Some(r) = p.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
                return Err(fail("rate", format!("{r} ops/s is not positive (leave it out for the test's rate)")));
            }
            let mix = mix(ops, p).map_err(|m| fail("mix", m))?;
            Ok(PlanPhase {
                kind: p.kind,
                duration: Duration::from_secs_f64(p.duration_s),
                rate: p.rate.unwrap_or(rate),
                mix,
            })
        })
        .collect()
}

/// A phase's mix over `ops`: its own weights, or the workload's (only the reads' in a
/// final-reads phase).
fn mix(ops: &'static [OpKind], phase: &Phase) -> Result<Option<Mix>, String> {
    let reads_only = phase.kind == PhaseKind::FinalReads;
    if phase.mix.is_empty() && !reads_only {
        return Ok(None);
    }
    let names = || ops.iter().map(|o| o.name).collect::<Vec<_>>().join(", ");
    for (kind, weight) in &phase.mix {
        let Some(op) = ops.iter().find(|o| o.name == kind) else {
            return Err(format!("unknown op kind {kind:?}: this workload's are {}", names()));
        };
        if !(weight.is_finite() && *weight >= 0.0) {
            return Err(format!("{kind} = {weight}: a weight is a number >= 0"));
        }
        if reads_only && *weight > 0.0 && !op.read_only {
            return Err(format!("{kind} is not a read: a final-reads phase only reads"));
        }
    }
    let weights: Vec<f64> = ops
        .iter()
        .map(|o| match phase.mix.get(o.name) {
            Some(w) => *w,
            None if phase.mix.is_empty() && o.read_only => o.weight,
            None => 0.0,
        })
        .collect();
    if !weights.iter().any(|w| *w > 0.0) {
        return Err(format!("no op kind has a positive weight (this workload's are {})", names()));
    }
    Ok(Some(Mix(weights)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const OPS: &[OpKind] = &[
        OpKind { name: "read", weight: 5.0, read_only: true },
        OpKind { name: "write", weight: 3.0, read_only: false },
        OpKind { name: "cas", weight: 2.0, read_only: false },
    ];

    fn phase(kind: PhaseKind, duration_s: f64, rate: Option<f64>, mix: &[(&str, f64)]) -> Phase {
        Phase { kind, duration_s, rate, mix: mix.iter().map(|(k, w)| (k.to_string(), *w)).collect::<BTreeMap<_, _>>() }
    }

    fn refused(p: Phase) -> String {
        plan(OPS, &[phase(PhaseKind::Main, 1.0, None, &[]), p], 100.0).unwrap_err().to_string()
    }

    #[test]
    fn the_own_mix_keeps_the_exact_thresholds_of_its_weights() {
        let picks = |roll| Mix::pick(OPS, None, roll);
        assert_eq!([picks(0.4999), picks(0.5), picks(0.7999), picks(0.8)], ["read", "write", "write", "cas"]);
        let writes = Mix(vec![0.0, 1.0, 0.0]);
        assert!((0..100).all(|i| Mix::pick(OPS, Some(&writes), i as f64 / 100.0) == "write"));
    }

    #[test]
    fn phases_take_the_tests_rate_and_final_reads_only_read() {
        let phases = [phase(PhaseKind::Main, 2.0, None, &[]), phase(PhaseKind::FinalReads, 1.5, Some(50.0), &[])];
        let planned = plan(OPS, &phases, 100.0).unwrap();
        assert_eq!((planned[0].rate, planned[1].rate), (100.0, 50.0));
        assert!(planned[0].mix.is_none());
        assert_eq!(planned[1].mix, Some(Mix(vec![5.0, 0.0, 0.0])));
    }

    #[test]
    fn bad_phases_are_refused_naming_the_phase_and_the_field() {
        let e = refused(phase(PhaseKind::Heal, 0.0, None, &[]));
        assert_eq!(e, "phases[1] (heal).duration_s: 0 is not a positive number of seconds");
        let e = refused(phase(PhaseKind::Main, 1.0, Some(0.0), &[]));
        assert!(e.starts_with("phases[1] (main).rate: 0 ops/s is not positive"), "{e}");
        let e = refused(phase(PhaseKind::Main, 1.0, Some(-5.0), &[]));
        assert!(e.contains(".rate: -5 ops/s"), "{e}");
        let e = refused(phase(PhaseKind::Main, 1.0, None, &[("delete", 1.0)]));
        assert_eq!(e, "phases[1] (main).mix: unknown op kind \"delete\": this workload's are read, write, cas");
        let e = refused(phase(PhaseKind::FinalReads, 1.0, None, &[("read", 1.0), ("write", 1.0)]));
        assert!(e.contains("(final-reads).mix: write is not a read"), "{e}");
        let e = refused(phase(PhaseKind::Main, 1.0, None, &[("read", 0.0)]));
        assert!(e.contains("no op kind has a positive weight"), "{e}");
        let e = refused(phase(PhaseKind::Main, 1.0, None, &[("read", f64::NAN)]));
        assert!(e.contains("a weight is a number >= 0"), "{e}");
    }
}
