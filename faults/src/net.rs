//! The `netns` environment: every node in a network namespace of its own, on one bridge; and the
//! same nft rules on the nodes' own hosts, over SSH ([`Network::hosts`]).
//!
//! ```text
//!   harness (its own private network namespace; clients and status sampling live here)
//!      │ bridge ob<run> 10.77.0.254/24
//!      ├── veth ── node 1 namespace: eth0 10.77.0.1, nft table `inet ordeal`
//!      ├── veth ── node 2 namespace: eth0 10.77.0.2
//!      └── veth ── node 3 namespace: eth0 10.77.0.3
//! ```
//!
//! Each node's namespace is held open by a `sleep infinity` process (the holder) started in a
//! fresh namespace; the broker is started into it with `setns`. Faults are nft rules on each
//! node's **input** hook (a sender never sees EPERM, as on a real network): a set of blocked
//! source addresses for partitions, and a `faults` chain for random loss.
//!
//! **No residue, by construction.** [`enter_private_network`] moves the whole harness into a
//! network namespace of its own before anything starts (rootless, through a user namespace, when
//! not root). The bridge lives there, so it vanishes with the harness; holders and brokers get
//! a parent-death signal, so their namespaces, veths and rules vanish with them even after a
//! `kill -9`. Nothing is ever created in the host's namespace. Over SSH the table lives on each
//! node's host: deleted when the [`Network`] is dropped, and by `ordeal cleanup` after a kill.

use ordeal_wire::launch::output_within;
use ordeal_wire::ssh::{Remote, quote};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A failure to build or change the topology.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct NetError {
    /// What was being done.
    pub what: String,
    /// What went wrong.
    pub message: String,
}

/// How long one `ip`, `nft` or `iptables` command may take: they answer in milliseconds, and
/// one that hangs (a lock another program holds) would hang the run's fault or heal.
const COMMAND_BOUND: Duration = Duration::from_secs(10);

fn net_err(what: impl Into<String>, e: impl std::fmt::Display) -> NetError {
    NetError { what: what.into(), message: e.to_string() }
}

/// The subnet every run uses inside its private namespace.
pub const SUBNET: [u8; 3] = [10, 77, 0];

/// The address of node `id`.
pub fn node_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], id as u8)
}

/// The bridge's own address: where the harness's clients come from.
pub fn bridge_ip() -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 254)
}

/// Why the `netns` environment is not available here, if it is not.
pub fn unavailable() -> Option<String> {
    // Every heal runs iptables too (the delay rules), so a machine without it could fault but
    // never heal.
    for tool in ["ip", "nft", "iptables", "sleep"] {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!(
                "`{tool}` is not installed (scripts/setup.sh installs iproute2, nftables and iptables)"
            ));
        }
    }
    if !nix::unistd::geteuid().is_root() {
        let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
        if max.trim() == "0" {
            return Some("not root, and user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)".into());
        }
    }
    None
}

/// Moves this process into a network namespace of its own: as root directly, otherwise inside
/// a new user namespace that maps the caller to root. Must run while the process has a single
/// thread (the kernel refuses a user namespace otherwise), so before any runtime starts.
pub fn enter_private_network() -> Result<(), NetError> {
    use nix::sched::{CloneFlags, unshare};
    if nix::unistd::geteuid().is_root() {
        return unshare(CloneFlags::CLONE_NEWNET).map_err(|e| net_err("creating the run's network namespace", e));
    }
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
        .map_err(|e| net_err("creating a user and network namespace (rootless)", e))?;
    let write =
        |path: &str, text: String| std::fs::write(path, text).map_err(|e| net_err(format!("writing {path}"), e));
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

/// One node's place in the topology.
enum Place {
    /// A namespace of the run's own, held open by a `sleep infinity`.
    Namespace { holder: Child, ns: File, path: PathBuf },
    /// A host of its own, reached over SSH, at its address.
    Host { remote: Remote, addr: IpAddr },
}

/// A run's topology: a bridge, and a namespace with a veth per node; or the nodes' hosts, reached
/// over SSH, each with the same nft table. Dropping it tears it down.
pub struct Network {
    /// The bridge, when the nodes are in namespaces.
    bridge: Option<String>,
    nodes: BTreeMap<u64, Place>,
    /// NFQUEUE delay loops, one per delayed node, running while a delay fault lasts.
    delays: std::sync::Mutex<Vec<DelayLoop>>,
}

/// A running delay loop: its stop flag and its thread.
type DelayLoop = (Arc<AtomicBool>, std::thread::JoinHandle<io::Result<()>>);

/// The NFQUEUE queue number the delay rules send packets to (one per namespace, so one number
/// serves every node).
const QUEUE: u16 = 7;

/// Opens and binds the delay queue in the namespace `ns`, on the calling thread.
fn bound_queue(ns: File) -> io::Result<nfq::Queue> {
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let mut queue = nfq::Queue::open()?;
    queue.bind(QUEUE)?;
    queue.set_copy_range(QUEUE, 0)?;
    queue.set_queue_max_len(QUEUE, 16 * 1024)?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// Holds every packet that reaches `queue` in the namespace `ns` until `arrival + delay ±
/// jitter` (so packets can overtake each other), then lets it through. Runs on a thread of its
/// own, moved into the node's namespace, until `stop`; then releases what it holds. Says on
/// `bound` whether its queue is bound, before any packet is sent to it.
fn delay_loop(
    ns: File,
    (delay, jitter): (Duration, Duration),
    seed: u64,
    stop: Arc<AtomicBool>,
    bound: std::sync::mpsc::SyncSender<io::Result<()>>,
) -> io::Result<()> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut queue = match bound_queue(ns) {
        Ok(queue) => queue,
        Err(e) => {
            let _ = bound.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let _ = bound.send(Ok(()));
    let mut held: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut messages: BTreeMap<u64, nfq::Message> = BTreeMap::new();
    let mut rng = seed | 1;
    let mut next_id = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            match queue.recv() {
                Ok(msg) => {
                    // xorshift: a jitter draw per packet, reproducible from the seed.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let spread = jitter.as_nanos() as u64;
                    let offset = if spread == 0 { 0 } else { rng % (2 * spread + 1) };
                    let release = Instant::now() + delay + Duration::from_nanos(offset) - jitter;
                    held.push(Reverse((release, next_id)));
                    messages.insert(next_id, msg);
                    next_id += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((release, id))) = held.peek().copied() {
            if release > now && !stopping {
                break;
            }
            held.pop();
            if let Some(mut msg) = messages.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                queue.verdict(msg)?;
            }
        }
        if stopping {
            return queue.unbind(QUEUE);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs `program args` inside `ns` (or here when `None`), feeding `stdin`.
fn run_in(ns: Option<&File>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(ns) = ns {
        let ns = ns.try_clone().map_err(|e| net_err(&what, e))?;
        // SAFETY: only setns, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
        }
    }
    let out = output_within(&mut cmd, stdin.map(str::as_bytes), COMMAND_BOUND).map_err(|e| net_err(&what, e))?;
    if !out.status.success() {
        return Err(net_err(&what, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// `nft` arguments that delete the run's table.
pub(crate) const DELETE_TABLE: [&str; 4] = ["delete", "table", "inet", "ordeal"];

/// The nft table every node gets: a set of blocked sources and a chain for other faults.
const TABLE: &str = "table inet ordeal {
  set blocked { type ipv4_addr; }
  chain input { type filter hook input priority -10; policy accept; ip saddr @blocked drop; }
  chain faults { type filter hook input priority -5; policy accept; }
}";

impl Network {
    /// Builds the topology for `nodes` in the current namespace; `run` (a short id) names the
    /// bridge and links.
    pub fn create(run: &str, nodes: &[u64]) -> Result<Network, NetError> {
        let bridge = format!("ob{}", &run[..run.len().min(8)]);
        let mut net = Network { bridge: Some(bridge.clone()), nodes: BTreeMap::new(), delays: Default::default() };
        run_in(None, "ip", &["link", "set", "lo", "up"], None)?;
        run_in(None, "ip", &["link", "add", &bridge, "type", "bridge"], None)?;
        run_in(None, "ip", &["addr", "add", &format!("{}/24", bridge_ip()), "dev", &bridge], None)?;
        run_in(None, "ip", &["link", "set", &bridge, "up"], None)?;
        for &id in nodes {
            let mut cmd = Command::new("sleep");
            cmd.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            // SAFETY: only unshare and prctl, async-signal-safe, run between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
                    Ok(())
                });
            }
            let holder = cmd.spawn().map_err(|e| net_err(format!("starting node {id}'s namespace"), e))?;
            let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
            let ns = File::open(&path).map_err(|e| net_err(format!("opening {}", path.display()), e))?;
            let veth = format!("{bridge}v{id}");
            let pid = holder.id().to_string();
            net.nodes.insert(id, Place::Namespace { holder, ns, path });
            run_in(None, "ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pid], None)?;
            run_in(None, "ip", &["link", "set", &veth, "master", &bridge], None)?;
            run_in(None, "ip", &["link", "set", &veth, "up"], None)?;
            let ns = Some(net.ns(id)?);
            run_in(ns, "ip", &["addr", "add", &format!("{}/24", node_ip(id)), "dev", "eth0"], None)?;
            run_in(ns, "ip", &["link", "set", "eth0", "up"], None)?;
            run_in(ns, "ip", &["link", "set", "lo", "up"], None)?;
            run_in(ns, "nft", &["-f", "-"], Some(TABLE))?;
        }
        Ok(net)
    }

    /// The nodes' `hosts` (id, how to reach it, its address), each given the table afresh: one a
    /// killed run left there goes first, with its rules.
    pub fn hosts(hosts: Vec<(u64, Remote, IpAddr)>) -> Result<Network, NetError> {
        let nodes = hosts.into_iter().map(|(id, remote, addr)| (id, Place::Host { remote, addr })).collect();
        let net = Network { bridge: None, nodes, delays: Default::default() };
        let fresh = format!("table inet ordeal {{}}\ndelete table inet ordeal\n{TABLE}\n");
        for &id in net.nodes.keys() {
            net.exec(id, "nft", &["-f", "-"], Some(&fresh))?;
        }
        Ok(net)
    }

    /// Every node of the topology: the cluster's, and those that may join it.
    pub fn nodes(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The path of node `id`'s namespace, for starting processes in it.
    pub fn ns_path(&self, id: u64) -> Option<PathBuf> {
        match self.nodes.get(&id)? {
            Place::Namespace { path, .. } => Some(path.clone()),
            Place::Host { .. } => None,
        }
    }

    fn place(&self, id: u64) -> Result<&Place, NetError> {
        self.nodes.get(&id).ok_or_else(|| net_err(format!("node {id}"), "not in the topology"))
    }

    /// Node `id`'s namespace: delay and bandwidth faults need one.
    fn ns(&self, id: u64) -> Result<&File, NetError> {
        match self.place(id)? {
            Place::Namespace { ns, .. } => Ok(ns),
            Place::Host { .. } => {
                Err(net_err(format!("node {id}"), "runs on another host; this fault needs --env netns"))
            }
        }
    }

    /// Node `id`'s address, as the other nodes see its packets come.
    fn addr(&self, id: u64) -> IpAddr {
        match self.nodes.get(&id) {
            Some(Place::Host { addr, .. }) => *addr,
            _ => IpAddr::V4(node_ip(id)),
        }
    }

    /// Runs `program args` where node `id`'s network is: in its namespace, or on its host.
    fn exec(&self, id: u64, program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
        match self.place(id)? {
            Place::Namespace { ns, .. } => run_in(Some(ns), program, args, stdin),
            Place::Host { remote, .. } => {
                let what = format!("{program} {}", args.join(" "));
                let script: Vec<String> = std::iter::once(program).chain(args.iter().copied()).map(quote).collect();
                let input = stdin.map(str::as_bytes);
                let bound = ordeal_wire::ssh::COMMAND_BOUND;
                remote.run(&what, &script.join(" "), input, bound).map(drop).map_err(|e| net_err(&what, e))
            }
        }
    }

    /// Applies a grudge: node -> the nodes whose packets it drops. Replaces any partition, one
    /// atomic nft transaction per node.
    pub fn partition(&self, grudge: &BTreeMap<u64, BTreeSet<u64>>) -> Result<(), NetError> {
        for &id in self.nodes.keys() {
            let sources: Vec<String> =
                grudge.get(&id).into_iter().flatten().map(|n| self.addr(*n).to_string()).collect();
            let mut script = String::from("flush set inet ordeal blocked\n");
            if !sources.is_empty() {
                script += &format!("add element inet ordeal blocked {{ {} }}\n", sources.join(", "));
            }
            self.exec(id, "nft", &["-f", "-"], Some(&script))?;
        }
        Ok(())
    }

    /// Drops `percent` of the packets each of `nodes` receives from the other nodes (not from the
    /// harness's clients).
    pub fn loss(&self, nodes: &[u64], percent: u8) -> Result<(), NetError> {
        for &id in nodes {
            let others: Vec<String> =
                self.nodes.keys().filter(|n| **n != id).map(|n| self.addr(*n).to_string()).collect();
            let mut script = String::from("flush chain inet ordeal faults\n");
            if !others.is_empty() {
                let from = others.join(", ");
                script += &format!(
                    "add rule inet ordeal faults ip saddr {{ {from} }} numgen random mod 100 < {percent} drop\n"
                );
            }
            self.exec(id, "nft", &["-f", "-"], Some(&script))?;
        }
        Ok(())
    }

    /// Delays every packet each of `nodes` receives from the other nodes by `delay ± jitter`,
    /// through NFQUEUE and a verdict loop of ours (this kernel has no netem).
    pub fn delay(&self, nodes: &[u64], delay: Duration, jitter: Duration) -> Result<(), NetError> {
        for &id in nodes {
            let ns = self.ns(id)?.try_clone().map_err(|e| net_err("delay", e))?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let (bound, is_bound) = std::sync::mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name(format!("nfqueue-n{id}"))
                .spawn(move || delay_loop(ns, (delay, jitter), id, flag, bound))
                .map_err(|e| net_err("starting a delay loop", e))?;
            self.delays.lock().unwrap_or_else(|e| e.into_inner()).push((stop, thread));
            // No rule before the loop is bound: with `--queue-bypass` packets would pass
            // undelayed while the fault is recorded as in force.
            match is_bound.recv_timeout(COMMAND_BOUND) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(net_err(format!("binding the delay queue of node {id}"), e)),
                Err(_) => {
                    return Err(net_err(
                        "delay",
                        format!("node {id}'s delay queue was not bound within {COMMAND_BOUND:?}"),
                    ));
                }
            }
            // nft's own `queue` expression is not in this kernel; iptables' NFQUEUE target is.
            let subnet = format!("{}.0/24", SUBNET.map(|b| b.to_string()).join("."));
            let queue = QUEUE.to_string();
            let bridge = bridge_ip().to_string();
            // Traffic from the bridge (the harness's clients) is accepted first, undelayed.
            run_in(Some(self.ns(id)?), "iptables", &["-A", "INPUT", "-s", &bridge, "-j", "ACCEPT"], None)?;
            run_in(
                Some(self.ns(id)?),
                "iptables",
                &["-A", "INPUT", "-s", &subnet, "-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"],
                None,
            )?;
        }
        Ok(())
    }

    /// Makes `a` and `b` answer each other's TCP packets with a reset: connections between them
    /// break and new ones are refused, as by a peer whose process is gone. The resets themselves
    /// pass, or neither side would ever see one.
    pub fn reset(&self, a: u64, b: u64) -> Result<(), NetError> {
        for (id, other) in [(a, b), (b, a)] {
            let script = format!(
                "flush chain inet ordeal faults\nadd rule inet ordeal faults ip saddr {} tcp flags & rst == 0 reject with tcp reset\n",
                self.addr(other)
            );
            self.exec(id, "nft", &["-f", "-"], Some(&script))?;
        }
        Ok(())
    }

    /// Caps each of `nodes`' outgoing bandwidth with a token bucket (`tc tbf`).
    pub fn slow(&self, nodes: &[u64], rate: &str) -> Result<(), NetError> {
        for &id in nodes {
            run_in(
                Some(self.ns(id)?),
                "tc",
                &[
                    "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "16kbit", "latency",
                    "200ms",
                ],
                None,
            )?;
        }
        Ok(())
    }

    /// Removes every fault: partitions, loss and bandwidth caps, one transaction per node. Every
    /// node is tried, whatever failed on another; the first failure is returned.
    pub fn heal(&self) -> Result<(), NetError> {
        let mut first_error = None;
        for &id in self.nodes.keys() {
            if let Err(e) = self.heal_node(id) {
                first_error.get_or_insert(e);
            }
        }
        // Rules first, loops second: nothing new is queued, then what is held goes through.
        let delays = self.stop_delays();
        first_error.map_or(delays, Err)
    }

    fn stop_delays(&self) -> Result<(), NetError> {
        let loops = std::mem::take(&mut *self.delays.lock().unwrap_or_else(|e| e.into_inner()));
        for (stop, _) in &loops {
            stop.store(true, Ordering::Relaxed);
        }
        // Every loop is joined, whatever another's fate: one left running holds its queue, and
        // the next delay could not bind it.
        let mut first_error = None;
        for (_, thread) in loops {
            let failed = match thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => net_err("delay loop", e),
                Err(_) => net_err("delay loop", "panicked"),
            };
            first_error.get_or_insert(failed);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.stop_delays();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            // A host keeps nothing of the run: its table goes (a namespace's goes with it).
            if matches!(self.nodes[&id], Place::Host { .. })
                && let Err(e) = self.exec(id, "nft", &DELETE_TABLE, None)
            {
                tracing::warn!(node = id, "the run's nft table stays on its host: {e}");
            }
            if let Some(Place::Namespace { holder, .. }) = self.nodes.get_mut(&id) {
                let _ = holder.kill();
                let _ = holder.wait();
            }
        }
        // The veths went with their namespaces; the bridge goes with the harness's namespace,
        // but delete it now in case the caller lives on.
        if let Some(bridge) = &self.bridge {
            let _ = run_in(None, "ip", &["link", "del", bridge], None);
        }
    }
}

impl Network {
    /// Removes the faults of one node: its nft rules, and in a namespace its bandwidth cap and
    /// delay rules.
    fn heal_node(&self, id: u64) -> Result<(), NetError> {
        let flush = "flush set inet ordeal blocked\nflush chain inet ordeal faults\n";
        self.exec(id, "nft", &["-f", "-"], Some(flush))?;
        let Place::Namespace { ns, .. } = self.place(id)? else { return Ok(()) };
        // No qdisc to delete is fine: there was no cap.
        let _ = run_in(Some(ns), "tc", &["qdisc", "del", "dev", "eth0", "root"], None);
        // The delay rules live in iptables' table; flushing an empty chain is harmless.
        run_in(Some(ns), "iptables", &["-F", "INPUT"], None)?;
        Ok(())
    }
}
