//! `--env ssh-lab`: the SSH scale-out path on one machine. Every node's network namespace gets
//! an `sshd` of its own, and the run then drives its nodes through them exactly as it drives real
//! hosts (`--env ssh`): binaries and certificates sent over SSH, nodes started, signalled and
//! stopped over SSH. Only the network around them is the `netns` environment's.
//!
//! Everything the lab makes is the run's: its keys, its `known_hosts` and the daemons' logs in
//! `<run>/ssh/`; each `sshd` is a child of the harness with a parent-death signal, in a namespace
//! that vanishes with the harness.

use crate::net::{self, Network};
use ordeal_wire::launch::{Launch, NodeProcess, output_within};
use ordeal_wire::ssh::Ssh;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where Debian's `sshd` is.
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long a lab's daemons may take to listen.
const LISTEN_BOUND: Duration = Duration::from_secs(20);

/// The lab's daemons, stopped when it is dropped; its private keys are removed then, the
/// daemons' logs and configuration kept with the run.
pub struct SshLab {
    /// How to log in to the lab's hosts.
    pub ssh: Arc<Ssh>,
    /// Each host's address, by node id.
    pub hosts: Vec<IpAddr>,
    daemons: Vec<NodeProcess>,
    dir: PathBuf,
}

impl Drop for SshLab {
    fn drop(&mut self) {
        // Killed and reaped first: no daemon reads a key that is gone. The private keys go
        // whether or not the run keeps its data (`ordeal cleanup` removes them after a hard kill).
        self.daemons.clear();
        for key in ["host_key", "client_key"] {
            let _ = std::fs::remove_file(self.dir.join(key));
        }
    }
}

/// Why the lab cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = net::unavailable() {
        return Some(why);
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} is not installed (scripts/setup.sh installs openssh-server)"));
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("sshd's privilege separation needs root".into());
    }
    None
}

impl SshLab {
    /// Starts an `sshd` in the namespace of each of `ids` on `net`, with keys made in `dir` (the
    /// run's `ssh/`).
    pub fn start(net: &Network, ids: &[u64], dir: &Path) -> io::Result<SshLab> {
        std::fs::create_dir_all(dir)?;
        let hosts: Vec<IpAddr> = ids.iter().map(|id| IpAddr::V4(net::node_ip(*id))).collect();
        let user = whoami()?;
        let ssh = Ssh::new(&user, 22, Some(dir.join("client_key")), Some(dir.join("known_hosts"))).multiplexed(dir);
        // From here on, dropped on any error: daemons stopped, keys removed.
        let mut lab = SshLab { ssh: Arc::new(ssh), hosts, daemons: Vec::new(), dir: dir.to_path_buf() };
        let host_key = keygen(&dir.join("host_key"))?;
        let client_key = keygen(&dir.join("client_key"))?;
        std::fs::copy(client_key.with_extension("pub"), dir.join("authorized_keys"))?;
        let config = dir.join("sshd_config");
        std::fs::write(&config, sshd_config(&host_key, &dir.join("authorized_keys")))?;
        // Where sshd's unprivileged child chroots; the package's service would make it at boot.
        std::fs::create_dir_all("/run/sshd")?;
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))?;
        let known: String = lab.hosts.iter().map(|h| format!("{h} {}\n", host_pub.trim())).collect();
        std::fs::write(dir.join("known_hosts"), known)?;
        for (id, host) in ids.iter().zip(&lab.hosts) {
            let config = config.display().to_string();
            // No ORDEAL_RUN for `ordeal cleanup` to find them by: sshd writes its process title over
            // its environment. A daemon dies with the harness; a connection, 6 s after its client.
            let launch = Launch {
                binary: SSHD.into(),
                args: ["-D", "-e", "-f", &config, "-o", &format!("ListenAddress={host}")].map(String::from).to_vec(),
                env: vec![],
                log: dir.join(format!("sshd-n{id}.log")),
                netns: net.ns_path(*id),
                remote: None,
                files: vec![],
            };
            lab.daemons.push(launch.spawn(*id)?);
        }
        for host in &lab.hosts {
            listening(SocketAddr::new(*host, 22), LISTEN_BOUND)?;
        }
        Ok(lab)
    }
}

/// A fresh ed25519 key pair at `path` (and `path.pub`), without a passphrase.
fn keygen(path: &Path) -> io::Result<PathBuf> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "ordeal-lab", "-f"]).arg(path);
    let out = output_within(&mut cmd, None, Duration::from_secs(20))?;
    if !out.status.success() {
        return Err(io::Error::other(format!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(path.to_path_buf())
}

/// A daemon that lets in the lab's one key and nothing else, and ends a connection whose client
/// has not answered for 6 s: after a `kill -9` of the harness its end of the connection vanishes
/// with its namespace, and nothing would tell the daemon.
fn sshd_config(host_key: &Path, authorized: &Path) -> String {
    format!(
        "HostKey {}\nAuthorizedKeysFile {}\nPidFile none\nUsePAM no\nStrictModes no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
         MaxStartups 64\nMaxSessions 64\nClientAliveInterval 2\nClientAliveCountMax 3\n",
        host_key.display(),
        authorized.display(),
    )
}

/// The user this process runs as, to log in as on the lab's hosts.
fn whoami() -> io::Result<String> {
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid).map_err(io::Error::from)?;
    user.map(|u| u.name).ok_or_else(|| io::Error::other(format!("uid {uid} has no name")))
}

/// Waits until something accepts connections at `addr`.
fn listening(addr: SocketAddr, bound: Duration) -> io::Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(e.kind(), format!("sshd at {addr} did not listen within {bound:?}: {e}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
