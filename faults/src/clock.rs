//! The clock nemesis: wall-clock faults through libfaketime control files, one node at a time.

use crate::system::System;
use crate::{Action, FaultSpec, Nemesis, NemesisError};
use async_trait::async_trait;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The clock nemesis. It holds one fault at a time.
pub struct ClockNemesis {
    system: Arc<dyn System>,
    clocks: BTreeMap<u64, PathBuf>,
    /// The fault it holds, with what its start did (its stop reports the same).
    active: Option<(FaultSpec, Value)>,
    /// For a clock strobe: set to stop it.
    strobe: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn set_clock(path: &Path, offset_s: i64) -> Result<(), NemesisError> {
    std::fs::write(path, format!("{offset_s:+}\n"))
        .map_err(|source| NemesisError::Clock { path: path.display().to_string(), source })
}

impl ClockNemesis {
    /// A nemesis moving the clocks whose control files are in `clocks` (node → file).
    pub fn new(system: Arc<dyn System>, clocks: BTreeMap<u64, PathBuf>) -> Self {
        ClockNemesis { system, clocks, active: None, strobe: None }
    }

    async fn target(&self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<(u64, PathBuf), NemesisError> {
        let node = match fault.target {
            crate::Target::Leader => crate::process::leaders(&*self.system, fault.groups).await?[0],
            _ => *self.system.nodes().choose(rng).ok_or(NemesisError::NoTarget("node"))?,
        };
        let path = self.clocks.get(&node).ok_or_else(|| NemesisError::NotSetUp {
            fault: fault.to_string(),
            what: "nodes started under libfaketime",
        })?;
        Ok((node, path.clone()))
    }

    async fn stop_strobe(&mut self) {
        if let Some((flag, task)) = self.strobe.take() {
            flag.store(true, Ordering::Relaxed);
            let _ = task.await;
        }
    }

    async fn reset(&mut self) -> Result<(), NemesisError> {
        self.stop_strobe().await;
        for path in self.clocks.values() {
            set_clock(path, 0)?;
        }
        Ok(())
    }
}

fn strobe(path: PathBuf) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut high = false;
        while !flag.load(Ordering::Relaxed) {
            high = !high;
            let _ = set_clock(&path, if high { 200 } else { 0 });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (stop, task)
}

#[async_trait]
impl Nemesis for ClockNemesis {
    fn handles(&self, fault: &FaultSpec) -> bool {
        fault.needs_clock()
    }

    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        if let Some((a, _)) = &self.active {
            return Err(NemesisError::Busy(a.to_string()));
        }
        let (node, path) = self.target(fault, rng).await?;
        let name = fault.to_string();
        let value = match fault.action {
            Action::ClockStrobe => {
                self.strobe = Some(strobe(path));
                json!({"fault": name, "targets": [node], "offsets_s": [0, 200], "period_ms": 100, "down": []})
            }
            Action::ClockSkew | Action::ClockBump => {
                let magnitude = if fault.action == Action::ClockSkew {
                    rng.random_range(10..=300)
                } else {
                    rng.random_range(3600..=86_400)
                };
                let offset = if rng.random_bool(0.5) { magnitude } else { -magnitude };
                set_clock(&path, offset)?;
                json!({"fault": name, "targets": [node], "offset_s": offset, "down": []})
            }
            _ => return Err(NemesisError::Unhandled(name)),
        };
        self.active = Some((*fault, value.clone()));
        Ok(value)
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let Some((_, value)) = self.active.take_if(|(f, _)| f == fault) else { return Ok(Value::Null) };
        self.reset().await?;
        Ok(value)
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        self.active = None;
        self.reset().await
    }
}
