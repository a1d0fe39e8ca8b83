//! The network nemesis: partitions, loss, delay and bandwidth caps on a [`Network`].

use crate::net::{NetError, Network};
use crate::partition::{self, Grudge};
use crate::system::System;
use crate::{Action, FaultSpec, Nemesis, NemesisError, Shape, Target};
use async_trait::async_trait;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
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
}

/// The network nemesis. The rules of one fault at a time live in the nodes' namespaces: a
/// second network fault waits for the first to heal.
pub struct NetNemesis {
    system: Arc<dyn System>,
    net: Option<Arc<Network>>,
    active: Option<Active>,
    turns: Arc<Turns>,
}

/// Changes to the network run one at a time, in the order they were asked for, even when the
/// runner's bound drops the future that asked: its blocking work runs on, and a heal asked after
/// it must not run first (the cut-off fault's rules would then be installed after its heal, and
/// stay in force through phases recorded as healed), nor a fault's rules go in while an earlier,
/// cut-off heal is still flushing.
#[derive(Default)]
struct Turns {
    /// The next ticket to hand out.
    next: std::sync::atomic::AtomicU64,
    /// The ticket whose turn it is, and the later ones already done (dropped unrun).
    serving: std::sync::Mutex<(u64, std::collections::BTreeSet<u64>)>,
    changed: std::sync::Condvar,
}

/// A place in [`Turns`]' order. Dropping it, run or not, gives the turn to the next.
struct Ticket {
    turns: Arc<Turns>,
    number: u64,
}

impl Turns {
    fn take(self: &Arc<Self>) -> Ticket {
        Ticket { turns: self.clone(), number: self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) }
    }
}

impl Ticket {
    /// Blocks until every earlier ticket is done.
    fn wait(&self) {
        let mut serving = self.turns.serving.lock().unwrap_or_else(|e| e.into_inner());
        while serving.0 != self.number {
            serving = self.turns.changed.wait(serving).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut serving = self.turns.serving.lock().unwrap_or_else(|e| e.into_inner());
        let (next, done) = &mut *serving;
        done.insert(self.number);
        while done.remove(next) {
            *next += 1;
        }
        self.turns.changed.notify_all();
    }
}

/// Runs `f` off the runtime's workers in its turn (taken now, before the first await), with
/// `spawn_blocking`, not `block_in_place`: a worker that blocks in place hands its core to a new
/// thread and retires about 10 s later, and every node that worker had started would then get
/// its parent-death signal, which is the forking *thread's*, not the process's: a node killed by
/// no fault at all.
async fn in_turn<T: Send + 'static>(
    turns: &Arc<Turns>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let ticket = turns.take();
    tokio::task::spawn_blocking(move || {
        ticket.wait();
        f()
    })
    .await
}

/// Runs `f` on the network, in its turn.
async fn blocking<T: Send + 'static>(
    turns: &Arc<Turns>,
    net: Arc<Network>,
    f: impl FnOnce(&Network) -> Result<T, NetError> + Send + 'static,
) -> Result<T, NemesisError> {
    let done = in_turn(turns, move || f(&net)).await;
    let done = done.map_err(|e| NetError { what: "a network change".into(), message: e.to_string() })?;
    Ok(done?)
}

impl NetNemesis {
    /// A nemesis on `net` (none when the nodes share the host's network: every fault then fails
    /// with why).
    pub fn new(system: Arc<dyn System>, net: Option<Arc<Network>>) -> Self {
        NetNemesis { system, net, active: None, turns: Arc::default() }
    }

    fn net(&self, fault: &FaultSpec) -> Result<Arc<Network>, NemesisError> {
        self.net.clone().ok_or_else(|| NemesisError::NotSetUp { fault: fault.to_string(), what: "--env netns" })
    }

    /// The node a fault aims at: the leader, or one of `candidates`.
    async fn target(&self, fault: &FaultSpec, candidates: &[u64], rng: &mut ChaCha8Rng) -> Result<u64, NemesisError> {
        match fault.target {
            Target::Leader => Ok(crate::process::leaders(&*self.system, fault.groups).await?[0]),
            _ => candidates.choose(rng).copied().ok_or(NemesisError::NoTarget("node")),
        }
    }

    fn watch_step_down(&self, node: u64, group: u32) -> JoinHandle<Option<f64>> {
        let system = self.system.clone();
        tokio::spawn(async move {
            let t = tokio::time::Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                let statuses = system.statuses(Duration::from_millis(200)).await;
                if let Some(s) = statuses.get(&node)
                    && s.groups.iter().find(|g| g.group == group).is_some_and(|g| g.role != "leader")
                {
                    return Some(t.elapsed().as_secs_f64() * 1e3);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    }

    /// A partition among the voters (a learner never counts toward a quorum, so the shapes'
    /// majorities and `down` are counted over voters); every other node of the topology (learners,
    /// nodes not yet joined) takes the side of a voter drawn at random.
    async fn partition(
        &mut self,
        fault: &FaultSpec,
        shape: Shape,
        rng: &mut ChaCha8Rng,
    ) -> Result<Active, NemesisError> {
        let mut voters = crate::system::voters(&*self.system).await;
        let mut order = voters.clone();
        if matches!(shape, Shape::RandomHalves | Shape::MajoritiesRing | Shape::Bridge) {
            order.shuffle(rng);
        }
        let target = match shape {
            Shape::Isolate | Shape::OneWay => self.target(fault, &voters, rng).await?,
            _ => 0,
        };
        // A leader the membership's answer missed (changed between the two asks) is still cut
        // off as the shape's own, not attached to a voter.
        if target != 0 && !voters.contains(&target) {
            voters.push(target);
        }
        let net = self.net(fault)?;
        let mut hosts = BTreeMap::new();
        for node in net.nodes().into_iter().filter(|n| !voters.contains(n)) {
            hosts.insert(node, *voters.choose(rng).ok_or(NemesisError::NoTarget("voter"))?);
        }
        let grudge: Grudge = partition::attach(&partition::grudge(shape, &order, target), &hosts);
        let cut = grudge.clone();
        blocking(&self.turns, net, move |net| net.partition(&cut)).await?;
        let step_down =
            (fault.target == Target::Leader).then(|| self.watch_step_down(target, fault.groups.one().unwrap_or(0)));
        let shown: BTreeMap<String, Vec<u64>> =
            grudge.iter().map(|(n, s)| (n.to_string(), s.iter().copied().collect())).collect();
        let isolated = partition::isolated(&grudge, &voters);
        let value = json!({"fault": fault.to_string(), "targets": isolated, "down": isolated, "grudge": shown});
        Ok(Active { fault: *fault, value, step_down })
    }

    /// Removes every network fault's rules, if the nodes have a network of their own.
    async fn heal_net(&self) -> Result<(), NemesisError> {
        match self.net.clone() {
            Some(net) => blocking(&self.turns, net, |net| net.heal()).await,
            None => Ok(()),
        }
    }

    /// Applies `fault` to the network: what it did, or why it failed (perhaps part way).
    async fn apply(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Active, NemesisError> {
        let nodes = self.system.nodes();
        let name = fault.to_string();
        let simple = |value| Active { fault: *fault, value, step_down: None };
        Ok(match fault.action {
            Action::Partition(shape) => self.partition(fault, shape, rng).await?,
            Action::Loss => {
                let net = self.net(fault)?;
                let all = nodes.clone();
                blocking(&self.turns, net, move |net| net.loss(&all, 30)).await?;
                simple(json!({"fault": name, "targets": nodes, "percent": 30, "down": []}))
            }
            Action::Delay => {
                let (delay, jitter) = (Duration::from_millis(50), Duration::from_millis(10));
                let net = self.net(fault)?;
                let all = nodes.clone();
                blocking(&self.turns, net, move |net| net.delay(&all, delay, jitter)).await?;
                simple(json!({"fault": name, "targets": nodes, "delay_ms": 50, "jitter_ms": 10, "down": []}))
            }
            Action::Reset => {
                let leader = crate::process::leaders(&*self.system, fault.groups).await?[0];
                let followers: Vec<u64> = nodes.iter().copied().filter(|n| *n != leader).collect();
                let follower = *followers.choose(rng).ok_or(NemesisError::NoTarget("follower"))?;
                let net = self.net(fault)?;
                blocking(&self.turns, net, move |net| net.reset(follower, leader)).await?;
                // Both stay up and serve; only their link is broken.
                simple(json!({"fault": name, "targets": [follower], "leader": leader, "down": []}))
            }
            Action::Slow => {
                let net = self.net(fault)?;
                let all = nodes.clone();
                blocking(&self.turns, net, move |net| net.slow(&all, "1mbit")).await?;
                simple(json!({"fault": name, "targets": nodes, "rate": "1mbit", "down": []}))
            }
            _ => return Err(NemesisError::Unhandled(name)),
        })
    }
}

#[async_trait]
impl Nemesis for NetNemesis {
    fn handles(&self, fault: &FaultSpec) -> bool {
        fault.needs_network()
    }

    async fn start(&mut self, fault: &FaultSpec, rng: &mut ChaCha8Rng) -> Result<Value, NemesisError> {
        if let Some(a) = &self.active {
            return Err(NemesisError::Busy(a.fault.to_string()));
        }
        // Marked before anything is applied: a start that the runner's bound cuts off (dropping
        // this future part way) still has its stop heal.
        let value = json!({"fault": fault.to_string()});
        self.active = Some(Active { fault: *fault, value, step_down: None });
        match self.apply(fault, rng).await {
            Ok(active) => {
                let value = active.value.clone();
                self.active = Some(active);
                Ok(value)
            }
            Err(e) => {
                // Some nodes may have their rules already. Healed now, so that a start recorded
                // as failed was not in force; if that heal fails too, the fault's stop tries again.
                match self.heal_net().await {
                    Ok(()) => self.active = None,
                    Err(heal) => tracing::warn!("healing {fault} after its failed start: {heal}"),
                }
                Err(e)
            }
        }
    }

    async fn stop(&mut self, fault: &FaultSpec) -> Result<Value, NemesisError> {
        let Some(mut active) = self.active.take_if(|a| a.fault == *fault) else { return Ok(Value::Null) };
        // Read before the heal: once the old leader hears the new one again it steps down for
        // that reason, which says nothing about what it did while cut off.
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
        self.heal_net().await?;
        Ok(active.value)
    }

    async fn heal_all(&mut self) -> Result<(), NemesisError> {
        if let Some(watch) = self.active.take().and_then(|mut a| a.step_down.take()) {
            watch.abort();
        }
        self.heal_net().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Down;
    use rand::SeedableRng as _;

    #[tokio::test]
    async fn a_fault_that_failed_to_start_is_healed_at_once_and_leaves_nothing_in_force() {
        // Without a network every fault fails; with one it may fail after some nodes got rules.
        // Either way the start heals at once: its record says failed, so nothing may be in force.
        let mut nemesis = NetNemesis::new(Arc::new(Down::default()), None);
        let fault = FaultSpec::parse("partition-halves").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(nemesis.start(&fault, &mut rng).await.is_err());
        assert!(nemesis.active.is_none(), "nothing left for a stop to heal");
        let again = nemesis.start(&fault, &mut rng).await.unwrap_err();
        assert!(!matches!(again, NemesisError::Busy(_)), "the next fault may start: {again}");
    }

    #[tokio::test]
    async fn a_change_cut_off_by_its_bound_runs_before_a_heal_asked_after_it() {
        let turns = Arc::new(Turns::default());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let applied = log.clone();
        let apply = in_turn(&turns, move || {
            std::thread::sleep(Duration::from_millis(200));
            applied.lock().unwrap().push("apply");
        });
        // As the runner's bound does: the future is dropped, its blocking work runs on.
        assert!(tokio::time::timeout(Duration::from_millis(10), apply).await.is_err());
        let healed = log.clone();
        in_turn(&turns, move || healed.lock().unwrap().push("heal")).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["apply", "heal"]);
    }

    #[test]
    fn a_turn_given_up_unrun_does_not_hold_up_the_next() {
        let turns = Arc::new(Turns::default());
        let (first, second, third) = (turns.take(), turns.take(), turns.take());
        drop(second);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            third.wait();
            let _ = done.send(());
        });
        assert!(finished.recv_timeout(Duration::from_millis(50)).is_err(), "the third waits for the first");
        drop(first);
        finished.recv_timeout(Duration::from_secs(10)).expect("the third runs once the first is done");
    }

    #[tokio::test]
    async fn a_start_cut_off_part_way_is_still_healed_by_its_stop() {
        let mut nemesis = NetNemesis::new(Arc::new(Down::default()), None);
        // It waits for a leader, which these nodes never have.
        let fault = FaultSpec::parse("partition-leader").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // As the runner's bound does: the start's future dropped before it ends.
        let start = nemesis.start(&fault, &mut rng);
        drop(tokio::time::timeout(Duration::ZERO, start).await);
        assert_eq!(nemesis.stop(&fault).await.unwrap()["fault"], "partition-leader", "its stop heals");
    }
}
