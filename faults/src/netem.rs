//! The network and clock nemesis: partitions, loss and bandwidth caps on a [`Network`], and
//! wall-clock faults through libfaketime control files.

use crate::net::Network;
use crate::partition::{self, Grudge};
use crate::{Action, Db, DbError, FaultSpec, Nemesis, Shape, Target};
use async_trait::async_trait;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where libfaketime is on Debian (package `faketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment a node needs so that its wall clock follows `control` (its monotonic clock,
/// which raft uses, is left alone).
pub fn faketime_env(control: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME_TIMESTAMP_FILE".into(), control.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

struct Active {
    fault: FaultSpec,
    value: Value,
    /// For an isolated leader: when it stopped believing it leads, in ms after the cut.
    step_down: Option<JoinHandle<Option<f64>>>,
    /// For a clock strobe: set to stop it.
    strobe: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// Network and clock faults.
pub struct NetNemesis {
    db: Arc<dyn Db>,
    net: Option<Arc<Network>>,
    clocks: BTreeMap<u64, PathBuf>,
    active: Option<Active>,
}

fn net_error(e: crate::net::NetError) -> DbError {
    DbError::Process { node: 0, message: e.to_string() }
}

/// Runs a topology change, which waits on `ip`, `nft` and `tc`, without stalling the runtime's
/// other tasks.
fn blocking<T>(f: impl FnOnce() -> Result<T, crate::net::NetError>) -> Result<T, DbError> {
    tokio::task::block_in_place(f).map_err(net_error)
}

fn set_clock(path: &PathBuf, offset_s: i64) -> Result<(), DbError> {
    std::fs::write(path, format!("{offset_s:+}\n"))
        .map_err(|e| DbError::Process { node: 0, message: format!("{}: {e}", path.display()) })
}

impl NetNemesis {
    /// Faults on `net` (partitions, loss, slow) when given, and on the clocks whose libfaketime
    /// control files are in `clocks`.
    pub fn new(db: Arc<dyn Db>, net: Option<Arc<Network>>, clocks: BTreeMap<u64, PathBuf>) -> Self {
        NetNemesis { db, net, clocks, active: None }
    }

    fn net(&self) -> Result<&Network, DbError> {
        self.net.as_deref().ok_or_else(|| DbError::Timeout("network faults need --env netns".into()))
    }

    fn clock(&self, node: u64) -> Result<&PathBuf, DbError> {
        self.clocks
            .get(&node)
            .ok_or_else(|| DbError::Timeout("clock faults need nodes started under libfaketime".into()))
    }

    async fn target(&self, target: Target, rng: &mut ChaCha8Rng) -> Result<u64, DbError> {
        match target {
            Target::Leader => self.db.leader(0).await.ok_or_else(|| DbError::Timeout("no leader to target".into())),
            _ => self.db.nodes().choose(rng).copied().ok_or(DbError::UnknownNode(0)),
        }
    }

    /// Polls `node` until it no longer claims leadership of group 0.
    fn watch_step_down(&self, node: u64) -> JoinHandle<Option<f64>> {
        let db = self.db.clone();
        tokio::spawn(async move {
            let t = tokio::time::Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                let statuses = db.statuses(Duration::from_millis(200)).await;
                if let Some(s) = statuses.get(&node)
                    && s.groups.first().is_some_and(|g| !g.is_leader)
                {
                    return Some(t.elapsed().as_secs_f64() * 1e3);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    }
}

#[async_trait]
impl Nemesis for NetNemesis {
    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, DbError> {
        if let Some(a) = &self.active {
            return Err(DbError::Timeout(format!("fault {} is still active", a.fault)));
        }
        let nodes = self.db.nodes();
        let name = fault.to_string();
        let mut active = Active { fault: *fault, value: Value::Null, step_down: None, strobe: None };
        active.value = match fault.action {
            Action::Partition(shape) => {
                let mut order = nodes.clone();
                if matches!(shape, Shape::RandomHalves | Shape::MajoritiesRing | Shape::Bridge) {
                    order.shuffle(rng);
                }
                let target = if matches!(shape, Shape::Isolate | Shape::OneWay) {
                    self.target(fault.target, rng).await?
                } else {
                    0
                };
                let grudge: Grudge = partition::grudge(shape, &order, target);
                let net = self.net()?;
                blocking(|| net.partition(&grudge))?;
                if fault.target == Target::Leader {
                    active.step_down = Some(self.watch_step_down(target));
                }
                let shown: BTreeMap<String, Vec<u64>> =
                    grudge.iter().map(|(n, s)| (n.to_string(), s.iter().copied().collect())).collect();
                json!({"fault": name, "targets": partition::isolated(&grudge, &nodes), "grudge": shown})
            }
            Action::Loss => {
                let net = self.net()?;
                blocking(|| net.loss(&nodes, 30))?;
                json!({"fault": name, "targets": nodes, "percent": 30})
            }
            Action::Delay => {
                let (delay, jitter) = (Duration::from_millis(50), Duration::from_millis(10));
                let net = self.net()?;
                blocking(|| net.delay(&nodes, delay, jitter))?;
                json!({"fault": name, "targets": nodes, "delay_ms": 50, "jitter_ms": 10})
            }
            Action::Slow => {
                let net = self.net()?;
                blocking(|| net.slow(&nodes, "1mbit"))?;
                json!({"fault": name, "targets": nodes, "rate": "1mbit"})
            }
            Action::ClockSkew | Action::ClockBump => {
                let node = self.target(fault.target, rng).await?;
                let magnitude = if fault.action == Action::ClockSkew {
                    rng.random_range(10..=300)
                } else {
                    rng.random_range(3600..=86_400)
                };
                let offset = if rng.random_bool(0.5) { magnitude } else { -magnitude };
                set_clock(self.clock(node)?, offset)?;
                json!({"fault": name, "targets": [node], "offset_s": offset})
            }
            Action::ClockStrobe => {
                let node = self.target(fault.target, rng).await?;
                let path = self.clock(node)?.clone();
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
                active.strobe = Some((stop, task));
                json!({"fault": name, "targets": [node], "offsets_s": [0, 200], "period_ms": 100})
            }
            _ => return Err(DbError::Timeout(format!("{name} is not a network or clock fault"))),
        };
        let value = active.value.clone();
        self.active = Some(active);
        Ok(value)
    }

    async fn stop(&mut self) -> Result<Value, DbError> {
        let Some(mut active) = self.active.take() else { return Ok(Value::Null) };
        if let Some(net) = &self.net {
            blocking(|| net.heal())?;
        }
        if let Some((flag, task)) = active.strobe.take() {
            flag.store(true, Ordering::Relaxed);
            let _ = task.await;
        }
        for path in self.clocks.values() {
            set_clock(path, 0)?;
        }
        if let Some(watch) = active.step_down.take() {
            let stepped = if watch.is_finished() {
                watch.await.ok().flatten()
            } else {
                watch.abort();
                None
            };
            active.value["stepped_down"] = json!(stepped.is_some());
            if let Some(ms) = stepped {
                active.value["stepped_down_after_ms"] = json!(ms);
            }
        }
        Ok(active.value)
    }

    async fn heal_all(&mut self) -> Result<(), DbError> {
        if let Some(mut active) = self.active.take() {
            if let Some((flag, task)) = active.strobe.take() {
                flag.store(true, Ordering::Relaxed);
                let _ = task.await;
            }
            if let Some(watch) = active.step_down.take() {
                watch.abort();
            }
        }
        if let Some(net) = &self.net {
            blocking(|| net.heal())?;
        }
        for path in self.clocks.values() {
            set_clock(path, 0)?;
        }
        Ok(())
    }
}
