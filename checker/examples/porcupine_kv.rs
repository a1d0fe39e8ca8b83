//! ordeal's twin of Porcupine's kv driver (`scripts/porcupine-kv`), so that the check alone is
//! timed the same way on both sides: each file is first parsed whole into ops (Porcupine:
//! `parseKvLog` into events), then checked by the `kv` model, partitioned by key (Porcupine:
//! `CheckEvents` with `kvModel`, also partitioned by key). The check's wall time and the
//! process's CPU time over it (every thread's) are taken around the check call alone. Neither
//! side copies or frees its parsed input inside that call: Porcupine's events stay in Go's heap,
//! and ordeal's check borrows the parsed ops, as it does any history held in memory
//! (`check_history`). `scripts/bench-porcupine.sh` runs the two drivers alternately.
//!
//! Usage: `cargo run --release -p ordeal-checker --example porcupine_kv -- KV_LOG...`; prints per
//! file `PATH<TAB>linearizable=BOOL<TAB>parse_ms=N<TAB>check_ms=N<TAB>check_cpu_ms=N`, as the Go
//! driver does, and exits 1 when a file is not found linearizable.

use ordeal_checker::Verdict;
use ordeal_checker::formats::{self, Format};
use ordeal_checker::linear::{Options, check_by_name};
use std::path::Path;
use std::time::Instant;

/// The CPU time of the whole process so far (user and system, every thread), in milliseconds.
fn cpu_ms() -> f64 {
    let mut t = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for clock_gettime to fill.
    let failed = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0;
    assert!(!failed, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn main() {
    let mut exit = 0;
    for path in std::env::args().skip(1) {
        let t0 = Instant::now();
        let (history, _) = formats::import(Path::new(&path), Some(Format::Porcupine)).unwrap_or_else(|e| {
            eprintln!("porcupine_kv: {e}");
            std::process::exit(254)
        });
        let (t1, c1) = (Instant::now(), cpu_ms());
        let report = check_by_name("kv", &Format::Porcupine.default_init(), history.ops(), &Options::default())
            .unwrap_or_else(|e| {
                eprintln!("porcupine_kv: {path}: {e}");
                std::process::exit(254)
            });
        let (t2, c2) = (Instant::now(), cpu_ms());
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "{path}\tlinearizable={}\tparse_ms={:.1}\tcheck_ms={:.1}\tcheck_cpu_ms={:.1}",
            report.verdict == Verdict::Valid,
            ms(t1 - t0),
            ms(t2 - t1),
            c2 - c1
        );
        if report.verdict != Verdict::Valid {
            exit = 1;
        }
    }
    std::process::exit(exit)
}
