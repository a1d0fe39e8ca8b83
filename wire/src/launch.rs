//! Running node processes ([`Launch`], [`NodeProcess`]), and `ordeal-broker`'s command line
//! ([`ClusterSpec`]): the one place that knows the broker's flags.
//!
//! The harness and the broker's own integration tests both start broker nodes through
//! [`ClusterSpec`]; the harness starts other systems' nodes through [`Launch`].
//! Every child is held as a [`NodeProcess`], which never reaps a child before
//! it is done signalling it (so a recycled PID is never signalled), kills it on drop, and asks the
//! kernel to kill it if the parent dies first (`PR_SET_PDEATHSIG`).

use crate::certs::ClusterCa;
use crate::config::{Bug, RaftTiming};
use crate::ssh::{self, Remote};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a build may take to answer `--version` or `--help`.
pub const ANSWER_BOUND: Duration = Duration::from_secs(30);

/// Runs `cmd` to its end with `input` (if any) on its standard input, collecting its output; one
/// still running, or whose output has not ended, after `bound` is killed and answers `TimedOut`.
/// For the short commands the harness runs (`ip`, `nft`, a build's `--version`): one that hangs
/// (a netlink lock, a broken build) must not hang the run. The command runs in a process group of
/// its own, killed whole when it ends or is cut off: nothing it started outlives it.
pub fn output_within(cmd: &mut Command, input: Option<&[u8]>, bound: Duration) -> io::Result<Output> {
    let deadline = Instant::now() + bound;
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let (stdout, stderr) = (drained(child.stdout.take()), drained(child.stderr.take()));
    // Written on a thread of its own, so that a command that never reads its input is still cut
    // off at the bound; one that exits without reading it answers by its status.
    let (bytes, pipe) = (input.unwrap_or_default().to_owned(), child.stdin.take());
    let writer = std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            let _ = io::Write::write_all(&mut pipe, &bytes);
        }
        Vec::new()
    });
    let ended = ended_by(&child, deadline);
    // Killed while the command is still unreaped, so its group's id cannot name another group;
    // also when waiting for it failed, so that nothing of it is left running.
    let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let status = child.wait()?;
    let ended = ended?;
    // The readers are joined, not only heard from: a run entering its own user namespace must be
    // single-threaded. With the group gone they end at once, unless something left it.
    let grace = Instant::now().max(deadline) + Duration::from_secs(1);
    let (stdout, stderr, written) = (joined(stdout, grace), joined(stderr, grace), joined(writer, grace));
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, format!("still running after {bound:?}; killed"));
    match (ended, stdout, stderr, written) {
        (true, Some(stdout), Some(stderr), Some(_)) => Ok(Output { status, stdout, stderr }),
        _ => Err(timed_out()),
    }
}

/// Waits until `child` has ended, leaving it unreaped; false if it had not by `deadline`.
fn ended_by(child: &Child, deadline: Instant) -> io::Result<bool> {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let mut pause = Duration::from_micros(200);
    loop {
        if waitid(Id::Pid(Pid::from_raw(child.id() as i32)), flags)? != WaitStatus::StillAlive {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn drained(pipe: Option<impl io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// What `reader` read, once its thread has ended; `None` if it had not by `deadline`.
fn joined(reader: std::thread::JoinHandle<Vec<u8>>, deadline: Instant) -> Option<Vec<u8>> {
    while !reader.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    reader.join().ok()
}

/// One node of a cluster to start.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Raft id.
    pub id: u64,
    /// gRPC address.
    pub addr: SocketAddr,
    /// HTTP status address.
    pub http: SocketAddr,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Where the node's stdout and stderr go (appended across restarts).
    pub log: PathBuf,
    /// The network namespace to start the node in (a `/proc/<pid>/ns/net` path), if not the
    /// caller's.
    pub netns: Option<PathBuf>,
    /// Environment variables for this node only (e.g. its libfaketime control file).
    pub env: Vec<(String, String)>,
    /// The host it runs on, when not this machine.
    pub remote: Option<Remote>,
}

/// A cluster's shape and settings.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `ordeal-broker` binary.
    pub binary: PathBuf,
    /// The initial voters.
    pub nodes: Vec<NodeSpec>,
    /// Raft groups per node.
    pub groups: u32,
    /// Raft timing.
    pub timing: RaftTiming,
    /// fsync before acknowledging.
    pub sync: bool,
    /// Deliberate bugs.
    pub bugs: Vec<Bug>,
    /// Environment variables for every node (e.g. `LD_PRELOAD` for clock faults).
    pub env: Vec<(String, String)>,
    /// The cluster CA whose certificates the nodes authenticate each other with (mutual TLS on
    /// peer traffic); `None` starts nodes without credentials, and their peers unauthenticated.
    pub tls: Option<ClusterCa>,
}

/// Raft timing for tests: 10 ms ticks, heartbeats every 50 ms, elections after 500–1000 ms.
pub fn fast_timing() -> RaftTiming {
    RaftTiming { tick: Duration::from_millis(10), heartbeat_ticks: 5, election_ticks: 50, max_election_ticks: 0 }
}

/// Finds `ordeal-broker`: `$ORDEAL_BROKER_BIN`, then beside the running executable (or its
/// parent, for test binaries in `target/*/deps`), then on `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORDEAL_BROKER_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    for candidate in [dir.join("ordeal-broker"), dir.parent()?.join("ordeal-broker")] {
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("ordeal-broker")).find(|p| p.is_file())
}

/// Reserves `n` distinct free ports on 127.0.0.1. The ports are released on return; another
/// process could take one before the broker binds it, which shows as a bind error at start.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

impl ClusterSpec {
    /// `n` nodes on 127.0.0.1 with fresh ports, data under `dir/n<id>/`, peer TLS on with a
    /// new CA in `dir/tls/`.
    pub fn local(binary: PathBuf, n: usize, dir: &Path) -> io::Result<ClusterSpec> {
        let ports = free_ports(2 * n)?;
        let nodes = (0..n)
            .map(|i| {
                let id = i as u64 + 1;
                let node_dir = dir.join(format!("n{id}"));
                NodeSpec {
                    id,
                    addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    http: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    data_dir: node_dir.join("data"),
                    log: node_dir.join("broker.log"),
                    netns: None,
                    env: Vec::new(),
                    remote: None,
                }
            })
            .collect();
        let tls = Some(ClusterCa::new(&dir.join("tls"))?);
        Ok(ClusterSpec { binary, nodes, groups: 1, timing: fast_timing(), sync: true, bugs: vec![], env: vec![], tls })
    }

    /// Every node's id and gRPC address.
    pub fn peers(&self) -> BTreeMap<u64, String> {
        self.nodes.iter().map(|n| (n.id, n.addr.to_string())).collect()
    }

    /// The node with id `id`.
    pub fn node(&self, id: u64) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The `serve` arguments of node `id`.
    pub fn args(&self, node: &NodeSpec) -> Vec<String> {
        let peers: Vec<String> = self.peers().iter().map(|(id, a)| format!("{id}={a}")).collect();
        let t = &self.timing;
        let mut args = vec![
            "serve".into(),
            format!("--id={}", node.id),
            format!("--listen={}", node.addr),
            format!("--http={}", node.http),
            format!("--peers={}", peers.join(",")),
            format!("--data-dir={}", node.data_dir.display()),
            format!("--groups={}", self.groups),
            format!("--tick-ms={}", t.tick.as_millis()),
            format!("--heartbeat-ticks={}", t.heartbeat_ticks),
            format!("--election-ticks={}", t.election_ticks),
            format!("--max-election-ticks={}", t.max_election_ticks),
            format!("--sync={}", self.sync),
        ];
        args.extend(self.bugs.iter().map(|bug| format!("--bug={}", bug.name())));
        if let Some(ca) = &self.tls {
            let files = ca.files(node.id);
            args.push(format!("--tls-ca={}", files.ca.display()));
            args.push(format!("--tls-cert={}", files.cert.display()));
            args.push(format!("--tls-key={}", files.key.display()));
        }
        args
    }

    /// Issues `node` its certificate and key, if the cluster uses TLS and it has none yet.
    pub fn credentials(&self, node: &NodeSpec) -> io::Result<()> {
        match &self.tls {
            Some(ca) => ca.ensure(node.id, node.addr.ip()).map(drop),
            None => Ok(()),
        }
    }

    /// How to start node `node` on `binary`.
    pub fn launch(&self, node: &NodeSpec, binary: &Path) -> Launch {
        let files = match &self.tls {
            Some(ca) => {
                let f = ca.files(node.id);
                vec![f.ca, f.cert, f.key]
            }
            None => vec![],
        };
        Launch {
            binary: binary.to_path_buf(),
            args: self.args(node),
            env: self.env.iter().chain(&node.env).cloned().collect(),
            log: node.log.clone(),
            netns: node.netns.clone(),
            remote: node.remote.clone(),
            files,
        }
    }

    /// Starts node `id` on the cluster's binary. Its output is appended to its log file.
    pub fn spawn(&self, id: u64) -> io::Result<NodeProcess> {
        let node = self
            .node(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no node {id} in the cluster")))?;
        self.credentials(node)?;
        self.launch(node, &self.binary).spawn(id)
    }
}

/// How to start one process: any system's node, not only the broker's.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables added to the caller's.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (appended across restarts).
    pub log: PathBuf,
    /// The network namespace to start it in (a `/proc/<pid>/ns/net` path), if not the caller's.
    pub netns: Option<PathBuf>,
    /// The host to start it on, when not this machine ([`crate::ssh`]).
    pub remote: Option<Remote>,
    /// Files it reads (certificates), sent to its host first when it runs on another.
    pub files: Vec<PathBuf>,
}

impl Launch {
    /// Starts the process as node `id`: in its own session, in its namespace, killed by the
    /// kernel if the caller dies; on its host, if it has one ([`crate::ssh`]).
    pub fn spawn(&self, id: u64) -> io::Result<NodeProcess> {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let (mut cmd, remote) = match &self.remote {
            Some(r) => self.on_host(r)?,
            None => {
                let mut cmd = Command::new(&self.binary);
                cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
                (cmd, None)
            }
        };
        // A remote node's session reads a pipe nothing writes: its end is the node's end.
        let stdin = if remote.is_some() { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(stdin).stdout(log.try_clone()?).stderr(log);
        let netns = match &self.netns {
            Some(path) => Some(
                std::fs::File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        // SAFETY: only async-signal-safe calls (setns, setsid, prctl) run between fork and exec;
        // the namespace file stays open in the parent until `spawn` returns.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(ns) = &netns {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                }
                // Its own session: a Ctrl-C at the terminal reaches the harness, which then stops
                // the nodes in order, instead of reaching every node at once.
                nix::unistd::setsid().map_err(io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", self.binary.display())))?;
        Ok(NodeProcess { id, child, exited: None, remote })
    }

    /// The `ssh` session that runs the node on `remote`, once its binary and files are there, and
    /// where its process id is kept there.
    fn on_host(&self, remote: &Remote) -> io::Result<(Command, Option<(Remote, PathBuf)>)> {
        let dir = self.log.parent().unwrap_or(Path::new("/"));
        let binary = ssh::binary_path(&self.binary, dir)?;
        remote.send(&self.binary, &binary)?;
        for file in &self.files {
            remote.send(file, file)?;
        }
        let pid_file = self.log.with_extension("pid");
        let cmd = remote.command(&ssh::remote_node(&binary, &self.args, &self.env, &pid_file));
        Ok((cmd, Some((remote.clone(), pid_file))))
    }
}

/// A running node process, owned: killed and reaped on drop. For a node on another host, the
/// child is its `ssh` session, and signals go to the node through its process-id file there.
pub struct NodeProcess {
    id: u64,
    child: Child,
    exited: Option<ExitStatus>,
    remote: Option<(Remote, PathBuf)>,
}

impl NodeProcess {
    /// The node's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`, unless the process has already been reaped.
    pub fn signal(&mut self, signal: Signal) -> io::Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        if let Some((remote, pid_file)) = &self.remote {
            // A node that ended since is not an error, as a local zombie is not.
            return match remote.signal(pid_file, signal) {
                Err(_) if self.has_exited()?.is_some() => Ok(()),
                asked => asked,
            };
        }
        // The child is not reaped until `wait` below, so its PID still names it.
        kill(Pid::from_raw(self.child.id() as i32), signal).map_err(io::Error::from)
    }

    /// Whether it has exited (reaping it if so).
    pub fn has_exited(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?.map(|s| self.as_node(s));
        }
        Ok(self.exited)
    }

    /// The node's exit status from its process's: a remote node's session reports a signal as
    /// `128 + n`.
    fn as_node(&self, status: ExitStatus) -> ExitStatus {
        if self.remote.is_some() { ssh::exit_status(status) } else { status }
    }

    /// SIGKILL, then reap. A remote node whose host does not answer is still ended: its session
    /// is killed here, and the node with it there.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Err(e) = self.signal(Signal::SIGKILL) {
            if self.remote.is_none() {
                return Err(e);
            }
            tracing::warn!(node = self.id, "{e}; ending its session instead");
            kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).map_err(io::Error::from)?;
        }
        self.wait()
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.exited {
            return Ok(s);
        }
        let s = self.child.wait()?;
        let s = self.as_node(s);
        self.exited = Some(s);
        Ok(s)
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGCONT)?;
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.has_exited()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_command_answers_with_its_output_and_one_that_hangs_is_killed_at_the_bound() {
        let bound = Duration::from_secs(10);
        let out = output_within(&mut Command::new("cat"), Some(b"table\n"), bound).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"table\n");
        let out = output_within(&mut sh("echo why >&2; exit 3"), None, bound).unwrap();
        assert_eq!((out.status.code(), out.stderr.as_slice()), (Some(3), &b"why\n"[..]));
        // Both would take seconds; the bound ends them sooner.
        let began = Instant::now();
        let e = output_within(Command::new("sleep").arg("30"), None, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let e = output_within(&mut sh("sleep 30 & sleep 30"), None, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "a command whose child holds its pipes too: {e}");
        let unread = "x".repeat(1 << 20);
        let e = output_within(Command::new("sleep").arg("30"), Some(unread.as_bytes()), Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "1 MB of input it never reads: {e}");
        assert!(began.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn what_a_command_leaves_running_is_killed_when_it_ends() {
        for script in ["sleep 30 & echo $!", "sleep 30 >/dev/null 2>&1 </dev/null & echo $!"] {
            let out = output_within(&mut sh(script), None, Duration::from_secs(10)).unwrap();
            assert!(out.status.success(), "{script}");
            let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // Reaped by init once killed: waited for as an event, bounded only against a hang.
            let stat = format!("/proc/{pid}/stat");
            let began = Instant::now();
            while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
                assert!(began.elapsed() < Duration::from_secs(30), "{script}: the child {pid} still runs");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
