//! Nodes on other hosts, reached with OpenSSH's client: Jepsen's control-node model. The harness
//! stays on the control machine (clients, status, history); each node's process runs on its host,
//! started, signalled and stopped through `ssh`.
//!
//! A node on a host is one `ssh` session, held by the harness as its child ([`remote_node`]):
//! - the node's output comes back over the session into its log on the control machine;
//! - the session ends when the node does, with its exit status (`128 + n` for signal `n`, which
//!   [`exit_status`] turns back into a signal);
//! - the node is killed when the session ends: a watcher on the host reads the session's input,
//!   which nothing ever writes, and kills the node when it reads end-of-file. So when the harness
//!   dies, even by SIGKILL, its `ssh` children die with it (parent-death signal), and each node
//!   dies on its host: no residue there either.
//!
//! Files a node reads (its binary, its certificates) are sent to its host first, at the same
//! absolute paths as on the control machine, except binaries, which go beside the node's log
//! (`bin/`) so that two builds of one name never meet. With [`Ssh::multiplexed`] every command to
//! a host rides one master connection, the harness's child, ended by [`Ssh::close`].

use crate::launch::output_within;
use crate::lock;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one short command on a host may take (`kill`, `mkdir`, `rm`): a host that does not
/// answer within it is unreachable, and a fault or a teardown must not hang on it.
pub const COMMAND_BOUND: Duration = Duration::from_secs(20);

/// How long a master connection may take to listen: its login's own bound, and some.
const MASTER_BOUND: Duration = Duration::from_secs(12);

/// How long sending one file (a binary of tens of MB) may take.
pub const UPLOAD_BOUND: Duration = Duration::from_secs(300);

/// How the harness logs in to the nodes' hosts.
#[derive(Debug)]
pub struct Ssh {
    /// The user to log in as.
    pub user: String,
    /// The hosts' SSH port.
    pub port: u16,
    /// The private key (`ssh -i`); the user's own keys and agent when `None`.
    pub identity: Option<PathBuf>,
    /// The known-hosts file the hosts' keys are checked against (`UserKnownHostsFile`); the
    /// user's own when `None`. A host whose key is not there is refused, never trusted on first
    /// use: a run must not talk to a machine nobody vouched for.
    pub known_hosts: Option<PathBuf>,
    /// Files already sent, by host and remote path: a node restarted on the same binary does not
    /// send it again.
    sent: Mutex<BTreeSet<(String, PathBuf)>>,
    /// The directory where each host's master connection listens (`mux-<host>`), when commands
    /// share one.
    control: Option<PathBuf>,
    /// The master connection of each host, once a command needed it.
    masters: Mutex<BTreeMap<String, Child>>,
}

impl Ssh {
    /// Logs in as `user` on `port`.
    pub fn new(user: &str, port: u16, identity: Option<PathBuf>, known_hosts: Option<PathBuf>) -> Ssh {
        let (sent, masters) = (Mutex::default(), Mutex::default());
        Ssh { user: user.into(), port, identity, known_hosts, sent, control: None, masters }
    }

    /// Carries every command to a host over one connection (OpenSSH's `ControlMaster`), its
    /// socket in `dir`: a command then costs a round trip, not a login (0.1–0.3 s each here).
    pub fn multiplexed(mut self, dir: &Path) -> Ssh {
        self.control = Some(dir.to_path_buf());
        self
    }
}

impl Ssh {
    /// Ends the master connections (SIGTERM, so that each closes its connection and removes its
    /// socket); a command after this logs in again. A run calls it while the hosts can still hear
    /// the connections close: the SSH lab's hosts vanish with their namespaces.
    pub fn close(&self) {
        for (_, mut master) in std::mem::take(&mut *lock(&self.masters)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(master.id() as i32), Signal::SIGTERM);
            let _ = master.wait();
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        self.close();
    }
}

/// One host, and how to reach it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// How to log in.
    pub ssh: Arc<Ssh>,
    /// The host's name or address.
    pub host: String,
}

/// `text` quoted for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn quote_path(path: &Path) -> String {
    quote(&path.display().to_string())
}

impl Remote {
    /// `ssh` running `script` on the host with `sh`: non-interactive, never asking for a password,
    /// giving up on a host that does not answer in 10 s or stops answering for 15 s; over the
    /// host's master connection when commands share one (one whose master is gone logs in on its
    /// own).
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = self.login();
        if self.ssh.control.is_some() {
            self.master();
            cmd.args(["-o", "ControlMaster=no"]);
        }
        cmd.arg("--").arg(script);
        cmd
    }

    /// `ssh` to the host, before what it runs there.
    fn login(&self) -> Command {
        let ssh = &self.ssh;
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]);
        cmd.args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]);
        if let Some(file) = &ssh.known_hosts {
            cmd.arg("-o").arg(format!("UserKnownHostsFile={}", file.display()));
        }
        if let Some(key) = &ssh.identity {
            cmd.arg("-o").arg("IdentitiesOnly=yes").arg("-i").arg(key);
        }
        // Named from the socket's directory: a run's own path is often longer than a socket's
        // may be (107 bytes).
        if let Some(dir) = &ssh.control {
            cmd.current_dir(dir).args(["-o", "ControlPath=mux-%h"]);
        }
        cmd.arg("-p").arg(ssh.port.to_string()).arg("-l").arg(&ssh.user).arg(&self.host);
        cmd
    }

    /// Starts the host's master connection unless it runs, and waits (bounded) until it listens
    /// or has given up. It is the harness's child, killed by the kernel if the harness dies.
    fn master(&self) {
        let mut masters = lock(&self.ssh.masters);
        if let Some(m) = masters.get_mut(&self.host)
            && matches!(m.try_wait(), Ok(None))
        {
            return;
        }
        let mut cmd = self.login();
        cmd.args(["-M", "-N", "-o", "ControlPersist=no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
        }
        let Ok(mut master) = cmd.spawn() else { return };
        let socket = self.socket();
        let deadline = Instant::now() + MASTER_BOUND;
        while !socket.exists() && matches!(master.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        masters.insert(self.host.clone(), master);
    }

    /// The host's control socket.
    fn socket(&self) -> PathBuf {
        self.ssh.control.as_deref().unwrap_or(Path::new("")).join(format!("mux-{}", self.host))
    }

    /// Runs `script` on the host, with `input` on its standard input; its output, or an error
    /// naming the host, `what` the script does and what it printed on its standard error.
    pub fn run(&self, what: &str, script: &str, input: Option<&[u8]>, bound: Duration) -> io::Result<Vec<u8>> {
        let out = output_within(&mut self.command(script), input, bound)
            .map_err(|e| io::Error::new(e.kind(), format!("ssh {}: {what}: {e}", self.host)))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(io::Error::other(format!("ssh {}: {what} failed ({}): {why}", self.host, out.status)));
        }
        Ok(out.stdout)
    }

    /// Sends the local file `from` to `to` on the host (its directory made, the file replaced
    /// whole: written beside it, then renamed), keeping its permissions; once per host and path.
    pub fn send(&self, from: &Path, to: &Path) -> io::Result<()> {
        let key = (self.host.clone(), to.to_path_buf());
        if lock(&self.ssh.sent).contains(&key) {
            return Ok(());
        }
        let bytes = std::fs::read(from).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(from)?.permissions()) & 0o777;
        let dir = to.parent().unwrap_or(Path::new("/"));
        let part = PathBuf::from(format!("{}.part", to.display()));
        let script = format!(
            "mkdir -p {dir} && cat > {part} && chmod {mode:o} {part} && mv -f {part} {to}",
            dir = quote_path(dir),
            part = quote_path(&part),
            to = quote_path(to),
        );
        self.run(&format!("sending {}", from.display()), &script, Some(&bytes), UPLOAD_BOUND)?;
        lock(&self.ssh.sent).insert(key);
        Ok(())
    }

    /// Sends `signal` to the process whose id is in `pid_file` on the host, waiting up to 5 s for
    /// the file: a node just started may not have written it yet, and one that ended removed it.
    pub fn signal(&self, pid_file: &Path, signal: Signal) -> io::Result<()> {
        let sig = signal.as_str().trim_start_matches("SIG");
        let script = format!(
            "f={}; i=0; while [ ! -s \"$f\" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -s {sig} \"$(cat \"$f\")\"",
            quote_path(pid_file)
        );
        self.run(&format!("signalling the node of {}", pid_file.display()), &script, None, COMMAND_BOUND).map(drop)
    }
}

/// The script that runs `binary` with `args` and `env` on a host as one node: it writes the node's
/// process id to `pid_file` (whole, by a rename) and removes it once the node has ended, so that
/// no signal meant for the node reaches a process that took its id; it kills the node when the
/// session's input ends, and exits with the node's status. The node's own input is `/dev/null`:
/// only the watcher reads the session's, kept as descriptor 3 because a shell gives what it runs
/// in the background `/dev/null` as input.
pub fn remote_node(binary: &Path, args: &[String], env: &[(String, String)], pid_file: &Path) -> String {
    let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
    let words: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let part = quote(&format!("{}.part", pid_file.display()));
    let pid_file = quote_path(pid_file);
    format!(
        "mkdir -p \"$(dirname {pid_file})\" || exit 125\n\
         exec 3<&0\n\
         env {env} {binary} {args} </dev/null 3<&- &\n\
         node=$!\n\
         echo $node > {part} && mv -f {part} {pid_file}\n\
         (cat <&3 >/dev/null 2>&1; kill -s KILL $node) >/dev/null 2>&1 &\n\
         exec 3<&-\n\
         wait $node\n\
         status=$?\n\
         rm -f {pid_file}\n\
         exit $status",
        env = assignments.join(" "),
        binary = quote_path(binary),
        args = words.join(" "),
    )
}

/// A remote node's exit status as if it had been the harness's own child: the shell reports a node
/// ended by signal `n` as `128 + n`, and `ssh` passes that on.
pub fn exit_status(status: ExitStatus) -> ExitStatus {
    match status.code() {
        Some(code @ 129..=192) => ExitStatus::from_raw(code - 128),
        _ => status,
    }
}

/// Where a node's binary goes on its host: in `bin/` beside the node's log, under a name that
/// tells apart builds of one file name (from its path, size and modification time), so that a
/// rolling upgrade's two `ordeal-broker`s are two files there.
pub fn binary_path(binary: &Path, node_dir: &Path) -> io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let meta = std::fs::metadata(binary).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (binary, meta.len(), meta.modified().ok()).hash(&mut hasher);
    let name = binary.file_name().unwrap_or(binary.as_os_str());
    Ok(node_dir.join("bin").join(format!("{:016x}", hasher.finish())).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_byte_one_word() {
        let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", quote("a 'b' $c \\d"))).output().unwrap();
        assert_eq!(out.stdout, b"a 'b' $c \\d");
    }

    #[test]
    fn the_node_script_reports_the_node_and_kills_it_when_its_input_ends() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("n1/node.pid");
        let env = vec![("GREETING".to_string(), "it's here".to_string())];
        // The node finds its own id in the file (once written), then ends.
        let node =
            format!("sleep 0.3; [ \"$(cat {})\" = $$ ] && echo mine; echo $GREETING; exit 7", pid_file.display());
        let script = remote_node(Path::new("sh"), &["-c".into(), node], &env, &pid_file);
        let mut session = Command::new("sh");
        session.arg("-c").arg(&script).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        let mut child = session.spawn().unwrap();
        // Held open, as the harness holds a session's input, until the node has ended.
        let input = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(input);
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(7), &b"mine\nit's here\n"[..]));
        assert!(!pid_file.exists(), "the id of an ended node stays behind");
        // A node that would run for a minute: its input ends at once, so the watcher kills it.
        let script = remote_node(Path::new("sleep"), &["60".into()], &[], &pid_file);
        let out = output_within(Command::new("sh").arg("-c").arg(&script), None, COMMAND_BOUND).unwrap();
        assert_eq!(exit_status(out.status).signal(), Some(9), "{:?}", out.status);
    }
}
