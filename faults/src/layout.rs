//! Where each node of a cluster runs, the same for every system: its address, its ports, its
//! directory, its network namespace and its clock. A system turns a [`Slot`] into its own flags.

use crate::net::{self, Network};
use crate::netem::faketime_env;
use ordeal_wire::ssh::{COMMAND_BOUND, Remote, Ssh, quote};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Ports a slot offers; a system uses as many as it needs (client, peer, status).
pub const PORTS_PER_NODE: usize = 3;

/// The environment variable every node process carries: its run directory. `ordeal cleanup`
/// finds the processes a killed run left by it, whatever the system and its flags.
pub const RUN_ENV: &str = "ORDEAL_RUN";

/// One node's place.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The node's id (1-based).
    pub id: u64,
    /// The address it listens on: 127.0.0.1, or its namespace's address.
    pub host: IpAddr,
    /// Ports free for it on `host`.
    pub ports: [u16; PORTS_PER_NODE],
    /// Its directory: data, log, clock control file.
    pub dir: PathBuf,
    /// Its network namespace, when it has one of its own.
    pub netns: Option<PathBuf>,
    /// Environment variables for it alone (libfaketime's).
    pub env: Vec<(String, String)>,
    /// The host it runs on, reached over SSH, when not this machine. Its files there are at the
    /// same paths as here: its data directory, its process-id file; its log stays here.
    pub remote: Option<Remote>,
}

impl Slot {
    /// Port `i` on the node's address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.host, self.ports[i])
    }

    /// The node's data directory (a lazyfs mount when the run has crash faults).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The file the node's output goes to.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

/// Every node's place.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// One per node, by id.
    pub slots: Vec<Slot>,
    /// Places for nodes that join later (fresh directory, ports, namespace), ids after the
    /// nodes'.
    pub spares: Vec<Slot>,
    /// Each node's libfaketime control file, when clocks can be moved.
    pub clocks: BTreeMap<u64, PathBuf>,
}

impl Layout {
    /// `n` nodes on 127.0.0.1 with fresh ports, under `dir/n<id>/` (`dir`: the run's absolute
    /// `nodes/` directory).
    pub fn local(n: usize, dir: &Path) -> io::Result<Layout> {
        let ports = ordeal_wire::launch::free_ports(PORTS_PER_NODE * n)?;
        let slots = (0..n)
            .map(|i| {
                let mut own = [0; PORTS_PER_NODE];
                own.copy_from_slice(&ports[PORTS_PER_NODE * i..PORTS_PER_NODE * (i + 1)]);
                slot(i as u64 + 1, IpAddr::V4(Ipv4Addr::LOCALHOST), own, dir, None)
            })
            .collect();
        Ok(Layout { slots, spares: Vec::new(), clocks: BTreeMap::new() })
    }

    /// `n` nodes, each in its namespace of `net`, on fixed ports of its own address.
    pub fn netns(net: &Network, n: usize, dir: &Path) -> Layout {
        let slots = (1..=n as u64)
            .map(|id| slot(id, IpAddr::V4(net::node_ip(id)), [7000, 8000, 9000], dir, net.ns_path(id)))
            .collect();
        Layout { slots, spares: Vec::new(), clocks: BTreeMap::new() }
    }

    /// A node on each of `hosts`, in order, reached through `ssh`, on fixed ports of the host's
    /// address (`hosts`: addresses, as the nodes advertise them to each other and to clients).
    pub fn ssh(ssh: Arc<Ssh>, hosts: &[IpAddr], dir: &Path) -> Layout {
        let slots = hosts
            .iter()
            .zip(1..)
            .map(|(host, id)| {
                let mut slot = slot(id, *host, [7000, 8000, 9000], dir, None);
                slot.remote = Some(Remote { ssh: ssh.clone(), host: host.to_string() });
                slot
            })
            .collect();
        Layout { slots, spares: Vec::new(), clocks: BTreeMap::new() }
    }

    /// Keeps the last `k` slots as spares: nodes that may join later, not started at setup.
    pub fn with_spares(mut self, k: usize) -> Layout {
        let at = self.slots.len().saturating_sub(k);
        self.spares = self.slots.split_off(at);
        self
    }

    /// Starts every node under libfaketime with a control file at offset zero, so that the clock
    /// nemesis can move its clock.
    pub fn with_clocks(mut self) -> io::Result<Layout> {
        for slot in self.slots.iter_mut().chain(&mut self.spares) {
            std::fs::create_dir_all(&slot.dir)?;
            let control = slot.dir.join("faketime.rc");
            std::fs::write(&control, "+0\n")?;
            slot.env.extend(faketime_env(&control));
            self.clocks.insert(slot.id, control);
        }
        Ok(self)
    }

    /// Removes what the run put on the nodes' hosts (data, binaries, process-id files, the
    /// certificates), for nodes that ran on other hosts. Returns what stays: for each host that
    /// did not answer, where and why.
    pub fn remove_host_files(&self) -> Vec<String> {
        let mut stays = Vec::new();
        for slot in self.slots.iter().chain(&self.spares) {
            let Some(remote) = &slot.remote else { continue };
            let tls = slot.dir.parent().map(|d| d.join("tls"));
            // The nft table too, which a killed run's partition may have left (none is fine).
            let script = format!(
                "nft {} 2>/dev/null; cd {} 2>/dev/null || exit 0; rm -rf -- data bin ./*.pid {}",
                net::DELETE_TABLE.join(" "),
                quote(&slot.dir.display().to_string()),
                tls.map(|t| quote(&t.display().to_string())).unwrap_or_default(),
            );
            if let Err(e) = remote.run("removing the run's files", &script, None, COMMAND_BOUND) {
                stays.push(format!("node {}'s files in {} on its host: {e}", slot.id, slot.dir.display()));
            }
        }
        stays
    }

    /// Ends the SSH connections to the nodes' hosts, if any.
    pub fn close_connections(&self) {
        for (_, remote, _) in self.hosts() {
            remote.ssh.close();
        }
    }

    /// The nodes and spare nodes that run on other hosts: id, how to reach the host, its address.
    pub fn hosts(&self) -> Vec<(u64, Remote, IpAddr)> {
        let slots = self.slots.iter().chain(&self.spares);
        slots.filter_map(|s| Some((s.id, s.remote.clone()?, s.host))).collect()
    }

    /// The ids.
    pub fn ids(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.id).collect()
    }
}

/// `dir` is the run's `nodes/` directory, absolute.
fn slot(id: u64, host: IpAddr, ports: [u16; PORTS_PER_NODE], dir: &Path, netns: Option<PathBuf>) -> Slot {
    let run = dir.parent().unwrap_or(dir).display().to_string();
    Slot { id, host, ports, dir: dir.join(format!("n{id}")), netns, env: vec![(RUN_ENV.into(), run)], remote: None }
}
