//! etcd (3.4, Debian's `etcd-server`) as a system nobody here wrote: its cluster ([`EtcdSystem`]:
//! kill and pause through the generic [`Supervisor`], its one raft group's leader through the
//! Maintenance API, restart on another binary, learners through the Cluster API) and its clients
//! for the register workload on the KV API.
//!
//! etcd names its members by random 64-bit ids; the harness names nodes 1..n. Each member's
//! Status answer carries its own id in its header, so the map from one to the other is learned
//! while the cluster starts (every member must answer before the run begins).

use super::broker::{encode, http_get, int, key_bytes, metric};
use super::{Registration, Sut, SutError};
use crate::client::{Client, ClientFactory, Completion, NoopClients, ok};
use async_trait::async_trait;
use ordeal_faults::layout::Layout;
use ordeal_faults::supervise::Supervisor;
use ordeal_faults::system::{
    self, GroupState, Leaders, Members, Membership, NodeView, SpareSlots, System, SystemError,
};
use ordeal_history::{OpType, Test};
use ordeal_wire::launch::Launch;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// The part of etcd's v3 API the harness uses (`workloads/proto/etcd.proto`).
mod pb {
    #![allow(missing_docs)]
    #![allow(clippy::all)]
    tonic::include_proto!("etcdserverpb");
}

use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// etcd's registration.
pub const REGISTRATION: Registration = Registration { name: "etcd", find_binary, validate, build };

/// `etcd` on the PATH, else Debian's.
fn find_binary() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
}

/// etcd's heartbeat interval and election timeout, from the test's raft timing (the same election
/// timeout as the broker's, so that their leader-loss gaps compare).
fn timing(test: &Test) -> (u64, u64) {
    (test.tick_ms * test.heartbeat_ticks as u64, test.tick_ms * test.election_ticks as u64)
}

fn validate(test: &Test) -> Result<(), SutError> {
    if !test.bugs.is_empty() {
        return Err(SutError::Setting(
            "--bug seeds bugs into ordeal-broker; etcd has none (try --etcd-reads serializable)".into(),
        ));
    }
    if test.groups != 1 {
        return Err(SutError::Setting(format!("--groups {}: etcd runs one raft group", test.groups)));
    }
    if !matches!(test.workload.as_str(), "register" | "noop") {
        return Err(SutError::Workload { system: "etcd", workload: test.workload.clone() });
    }
    // A clock fault would be recorded as in force while etcd's clock never moved.
    let faults = test.nemesis.iter().flat_map(|set| set.split('+')).map(str::trim);
    if let Some(clock) = faults.clone().find(|f| ordeal_faults::FaultSpec::parse(f).is_ok_and(|f| f.needs_clock())) {
        return Err(SutError::Setting(format!(
            "--nemesis {clock}: etcd is a Go program, which reads the clock through the vDSO, around libfaketime: \
             a clock fault would not move its clock"
        )));
    }
    if !matches!(test.etcd_reads.as_str(), "linearizable" | "serializable") {
        return Err(SutError::Setting(format!(
            "--etcd-reads {:?}: expected linearizable or serializable",
            test.etcd_reads
        )));
    }
    let (heartbeat, election) = timing(test);
    // etcd refuses to start otherwise (embed.Config.Validate).
    if election < 5 * heartbeat || election > 50_000 {
        return Err(SutError::Setting(format!(
            "etcd needs an election timeout of at least 5 heartbeats and at most 50 s; got {election} ms for a \
             {heartbeat} ms heartbeat (--tick-ms, --heartbeat-ticks, --election-ticks)"
        )));
    }
    Ok(())
}

fn member(s: &ordeal_faults::layout::Slot) -> Member {
    Member {
        id: s.id,
        name: format!("n{}", s.id),
        client: s.addr(0),
        client_url: format!("http://{}", s.addr(0)),
        peer_url: format!("http://{}", s.addr(1)),
        data_dir: s.data_dir(),
        log: s.log("etcd"),
        netns: s.netns.clone(),
        env: s.env.clone(),
        remote: s.remote.clone(),
    }
}

fn build(test: &Test, layout: &Layout, binary: PathBuf) -> Result<Sut, SutError> {
    validate(test)?;
    let members: Vec<Member> = layout.slots.iter().map(member).collect();
    let spares: Vec<Member> = layout.spares.iter().map(member).collect();
    let timeout = Duration::from_millis(test.op_timeout_ms);
    // The spares too: once learners have replaced the first voters, they are the cluster. A
    // spare not started yet refuses the connection, and the client moves on.
    let endpoints: Vec<(u64, String)> = members.iter().chain(&spares).map(|m| (m.id, m.client_url.clone())).collect();
    let clients: Arc<dyn ClientFactory> = match test.workload.as_str() {
        "register" => Arc::new(EtcdClients {
            endpoints: Arc::new(endpoints),
            timeout,
            serializable: test.etcd_reads == "serializable",
        }),
        "noop" => Arc::new(NoopClients),
        other => return Err(SutError::Workload { system: "etcd", workload: other.into() }),
    };
    let (heartbeat_ms, election_ms) = timing(test);
    let settings = Settings { heartbeat_ms, election_ms, snapshot_count: test.snapshot_entries };
    Ok(Sut { system: Arc::new(EtcdSystem::new(members, spares, binary, settings)), clients })
}

/// The flags every member gets alike.
#[derive(Debug, Clone, Copy)]
struct Settings {
    heartbeat_ms: u64,
    election_ms: u64,
    /// `--snapshot-count` (from `--snapshot-entries`): applied entries between snapshots. Each
    /// compacts the log (keeping at most 5,000 entries), so a member that joins later starts
    /// from a snapshot.
    snapshot_count: Option<u64>,
}

/// One member's place and flags.
#[derive(Debug, Clone)]
struct Member {
    id: u64,
    name: String,
    client: SocketAddr,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    netns: Option<PathBuf>,
    env: Vec<(String, String)>,
    remote: Option<ordeal_wire::ssh::Remote>,
}

/// `--initial-cluster` of `members`.
fn initial_cluster(members: &[Member]) -> String {
    members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",")
}

/// etcd's flags for `member`, which starts a `new` cluster or joins an `existing` one, of the
/// members `cluster` names (`name=peer URL,...`).
fn args(member: &Member, cluster: &str, state: &str, settings: Settings) -> Vec<String> {
    let mut args = vec![
        format!("--name={}", member.name),
        format!("--data-dir={}", member.data_dir.display()),
        format!("--listen-client-urls={}", member.client_url),
        format!("--advertise-client-urls={}", member.client_url),
        format!("--listen-peer-urls={}", member.peer_url),
        format!("--initial-advertise-peer-urls={}", member.peer_url),
        format!("--initial-cluster={cluster}"),
        format!("--initial-cluster-state={state}"),
        "--initial-cluster-token=ordeal".into(),
        format!("--heartbeat-interval={}", settings.heartbeat_ms),
        format!("--election-timeout={}", settings.election_ms),
        // zap to stderr (the log file): the default capnslog logger is deprecated in 3.4.
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
    ];
    args.extend(settings.snapshot_count.map(|n| format!("--snapshot-count={n}")));
    args
}

/// One lazily connected channel per member, reconnecting by itself after a restart or a heal.
struct Channels {
    endpoints: BTreeMap<u64, String>,
    connect_timeout: Duration,
    open: Mutex<BTreeMap<u64, Channel>>,
}

// No invariant spans a panic in these maps: they only cache channels and learned ids.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Channels {
    fn new(endpoints: BTreeMap<u64, String>, connect_timeout: Duration) -> Self {
        Channels { endpoints, connect_timeout, open: Mutex::new(BTreeMap::new()) }
    }

    /// The channel to `node`. Must be called on the runtime (the channel's worker is spawned).
    fn get(&self, node: u64) -> Result<Channel, tonic::Status> {
        if let Some(c) = lock(&self.open).get(&node) {
            return Ok(c.clone());
        }
        let url = self.endpoints.get(&node).ok_or_else(|| tonic::Status::not_found(format!("no node {node}")))?;
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|e| tonic::Status::invalid_argument(format!("{url}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // A partition leaves the connection open but silent: find out, and reconnect.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .connect_lazy();
        lock(&self.open).insert(node, channel.clone());
        Ok(channel)
    }
}

/// How long a membership change may take (etcd answers once it has applied it).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a change etcd refuses as an "unhealthy cluster" is asked again: etcd reconfigures
/// only once every voter has been connected for 5 s (its `HealthInterval`), so after a start, a
/// heal or a restart it refuses for up to that long.
const UNHEALTHY_BOUND: Duration = Duration::from_secs(15);

/// A cluster of etcd members.
pub struct EtcdSystem {
    /// The initial members.
    members: Vec<Member>,
    /// Places for members that join as learners.
    spares: Vec<Member>,
    /// The members now: the initial ones, plus those that joined, less those removed.
    current: Mutex<BTreeSet<u64>>,
    /// The spare slots handed out.
    used: SpareSlots,
    /// Each joined member's `--initial-cluster`, as etcd's MemberAdd answered it.
    joined: Arc<Mutex<BTreeMap<u64, String>>>,
    binary: PathBuf,
    processes: Supervisor,
    channels: Channels,
    /// etcd's member id → our node id, learned from each member's Status header.
    ids: Mutex<BTreeMap<u64, u64>>,
    /// How long a leadership transfer may take: etcd waits for the target to catch up and win.
    transfer_timeout: Duration,
}

impl EtcdSystem {
    fn new(members: Vec<Member>, spares: Vec<Member>, binary: PathBuf, settings: Settings) -> Self {
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let (initial, joiners) = (members.clone(), spares.clone());
        let joined: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
        let clusters = joined.clone();
        let processes = Supervisor::new(
            &ids,
            &binary,
            Box::new(move |id, binary| {
                let (member, cluster, state) = match initial.iter().find(|m| m.id == id) {
                    Some(m) => (m, initial_cluster(&initial), "new"),
                    None => {
                        let m = joiners.iter().find(|m| m.id == id);
                        let cluster = lock(&clusters).get(&id).cloned();
                        let (Some(m), Some(cluster)) = (m, cluster) else {
                            return Err(std::io::Error::other(format!("node {id} was not added to the cluster")));
                        };
                        (m, cluster, "existing")
                    }
                };
                Ok(Launch {
                    binary: binary.to_path_buf(),
                    args: args(member, &cluster, state, settings),
                    env: member.env.clone(),
                    log: member.log.clone(),
                    netns: member.netns.clone(),
                    remote: member.remote.clone(),
                    files: vec![],
                })
            }),
        );
        let endpoints = members.iter().chain(&spares).map(|m| (m.id, m.client_url.clone())).collect();
        EtcdSystem {
            current: Mutex::new(ids.into_iter().collect()),
            used: SpareSlots::default(),
            joined,
            binary,
            members,
            spares,
            processes,
            channels: Channels::new(endpoints, Duration::from_millis(200)),
            ids: Mutex::new(BTreeMap::new()),
            transfer_timeout: Duration::from_millis(2 * settings.election_ms).max(Duration::from_secs(2)),
        }
    }

    /// Member or spare `node`.
    fn place(&self, node: u64) -> Option<&Member> {
        self.members.iter().chain(&self.spares).find(|m| m.id == node)
    }

    /// etcd's member id of `node`, or an error naming it.
    fn known_id(&self, node: u64) -> Result<u64, SystemError> {
        self.member_id(node).ok_or_else(|| SystemError::Request { node, message: "etcd's member id is unknown".into() })
    }

    /// The member to send a membership change to: the leader, which decides it (a follower
    /// forwards it), else any member.
    async fn admin_node(&self) -> Result<u64, SystemError> {
        match system::leader(self, 0).await {
            Some(leader) => Ok(leader),
            None => self.nodes().first().copied().ok_or(SystemError::NotReady("no member left".into())),
        }
    }

    /// Runs a Cluster API call at the leader, asking again while etcd refuses it as an
    /// "unhealthy cluster" (bounded by [`UNHEALTHY_BOUND`]); a refusal is
    /// [`SystemError::Refused`] about `node`.
    async fn reconfigure<T, F, Fut>(&self, node: u64, call: F) -> Result<T, SystemError>
    where
        F: Fn(ClusterClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let began = Instant::now();
        loop {
            let at = self.admin_node().await?;
            let channel =
                self.channels.get(at).map_err(|e| SystemError::Request { node: at, message: e.to_string() })?;
            let answer = tokio::time::timeout(ADMIN_TIMEOUT, call(ClusterClient::new(channel))).await;
            let status = match answer {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    let message = format!("no answer within {ADMIN_TIMEOUT:?}");
                    return Err(SystemError::Request { node: at, message });
                }
            };
            let unhealthy = status.message().contains("unhealthy cluster");
            if unhealthy && began.elapsed() < UNHEALTHY_BOUND {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let reason = format!("{:?}: {}", status.code(), status.message());
            return Err(if unhealthy || status.code() == tonic::Code::FailedPrecondition {
                SystemError::Refused { node, reason, gate_saw: None }
            } else {
                SystemError::Request { node: at, message: reason }
            });
        }
    }

    /// `node`'s raft status, as etcd publishes it at `/debug/vars` (the leader's holds every
    /// member's match index and progress state).
    async fn raft_status(&self, node: u64) -> Result<RaftStatus, SystemError> {
        let request = |message: String| SystemError::Request { node, message };
        let at = self.place(node).ok_or(SystemError::UnknownNode(node))?.client;
        let body = tokio::time::timeout(Duration::from_secs(1), http_get(at, "/debug/vars"))
            .await
            .map_err(|_| request("/debug/vars: no answer within 1 s".into()))?
            .map_err(|e| request(format!("/debug/vars: {e}")))?;
        let vars: Value = serde_json::from_str(&body).map_err(|e| request(format!("/debug/vars: {e}")))?;
        RaftStatus::parse(&vars).ok_or_else(|| request(format!("/debug/vars: no raft.status in {:.200}", body)))
    }

    /// The members as `node` knows them: (etcd id, node id, learner). A learner cannot answer
    /// (etcd 3.4 serves it Status alone).
    async fn member_list(&self, node: u64, timeout: Duration) -> Option<Vec<(u64, u64, bool)>> {
        let channel = self.channels.get(node).ok()?;
        let mut client = ClusterClient::new(channel);
        let list = tokio::time::timeout(timeout, client.member_list(pb::MemberListRequest {}));
        let list = list.await.ok()?.ok()?.into_inner();
        let mut ids = lock(&self.ids);
        let named = |m: &pb::Member| m.name.strip_prefix('n').and_then(|n| n.parse::<u64>().ok());
        // A member added but not started yet has no name; its id was learned when it was added.
        let members =
            list.members.iter().filter_map(|m| Some((m.id, named(m).or(ids.get(&m.id).copied())?, m.is_learner)));
        let members: Vec<(u64, u64, bool)> = members.collect();
        for (id, node, _) in &members {
            ids.insert(*id, *node);
        }
        Some(members)
    }

    /// etcd's member id of `node`, once learned.
    fn member_id(&self, node: u64) -> Option<u64> {
        lock(&self.ids).iter().find(|(_, n)| **n == node).map(|(m, _)| *m)
    }
}

/// The part of etcd's raft status (`/debug/vars`, `raft.status`) the harness reads.
#[derive(Debug, PartialEq)]
struct RaftStatus {
    commit: u64,
    /// `StateLeader`, `StateFollower`, ...
    state: String,
    /// Per member (etcd's id in hex), at the leader only: its match index and whether it is
    /// being sent a snapshot (`StateSnapshot`).
    progress: BTreeMap<String, (u64, String)>,
}

impl RaftStatus {
    fn parse(vars: &Value) -> Option<RaftStatus> {
        let r = &vars["raft.status"];
        let progress = r["progress"].as_object().into_iter().flatten();
        let progress =
            progress.filter_map(|(id, p)| Some((id.clone(), (p["match"].as_u64()?, p["state"].as_str()?.into()))));
        Some(RaftStatus {
            commit: r["commit"].as_u64()?,
            state: r["raftState"].as_str()?.into(),
            progress: progress.collect(),
        })
    }
}

/// The neutral view of member `node`'s Status answer and its member list (etcd id, node id,
/// learner), when it gave one; `ids` maps etcd's member ids to ours.
fn view(node: u64, s: pb::StatusResponse, ids: &BTreeMap<u64, u64>, members: &[(u64, u64, bool)]) -> NodeView {
    let me = s.header.as_ref().map_or(0, |h| h.member_id);
    // A leader id not (yet) learned cannot be named; it reads as no leader.
    let leader_id = if s.leader == 0 { 0 } else { ids.get(&s.leader).copied().unwrap_or(0) };
    let role = if s.is_learner {
        "learner"
    } else if s.leader != 0 && s.leader == me {
        "leader"
    } else if s.leader == 0 {
        // Status does not tell a candidate from a follower whose leader is gone: both are
        // electing, which is what the roles plot shows.
        "candidate"
    } else {
        "follower"
    };
    let group = GroupState {
        group: 0,
        role: role.into(),
        leader_id,
        term: s.raft_term,
        commit_index: s.raft_index,
        applied_index: s.raft_applied_index,
        voters: members.iter().filter(|m| !m.2).map(|m| m.1).collect(),
        learners: members.iter().filter(|m| m.2).map(|m| m.1).collect(),
        cluster_version: None,
    };
    NodeView { id: node, version: s.version, release: None, time_ms: None, groups: vec![group] }
}

#[async_trait]
impl System for EtcdSystem {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn nodes(&self) -> Vec<u64> {
        lock(&self.current).iter().copied().collect()
    }

    fn addresses(&self) -> BTreeMap<u64, String> {
        let current = lock(&self.current);
        let members = self.members.iter().chain(&self.spares).filter(|m| current.contains(&m.id));
        members.map(|m| (m.id, m.client_url.clone())).collect()
    }

    fn log_file(&self, node: u64) -> Option<&Path> {
        self.place(node).map(|m| m.log.as_path())
    }

    async fn setup(&self) -> Result<(), SystemError> {
        let logs = |n: u64| self.log_file(n).map(|p| p.display().to_string()).unwrap_or_default();
        let n = self.members.len();
        // Every member must answer (which teaches its id) and all must name the same leader.
        self.processes
            .start_all(Duration::from_secs(30), logs, || async {
                let views = self.statuses(Duration::from_millis(500)).await;
                views.len() == n && system::agreed_leader(&views, 0).is_some()
            })
            .await?;
        // The member list confirms the ids learned from the headers (and fills any missed).
        let leader = system::leader(self, 0).await.unwrap_or(1);
        match self.member_list(leader, Duration::from_secs(2)).await {
            Some(_) => Ok(()),
            None => Err(SystemError::Request { node: leader, message: "member list: no answer within 2 s".into() }),
        }
    }

    async fn statuses(&self, timeout: Duration) -> BTreeMap<u64, NodeView> {
        // All members at once: a paused one costs the timeout, not the timeout times its rank.
        let mut probes = tokio::task::JoinSet::new();
        for node in self.nodes() {
            let Ok(channel) = self.channels.get(node) else { continue };
            probes.spawn(async move {
                let (mut client, mut cluster) = (MaintenanceClient::new(channel.clone()), ClusterClient::new(channel));
                let status = tokio::time::timeout(timeout, client.status(pb::StatusRequest {}));
                let list = tokio::time::timeout(timeout, cluster.member_list(pb::MemberListRequest {}));
                let (status, list) = tokio::join!(status, list);
                let list = list.ok().and_then(Result::ok).map(|l| l.into_inner().members).unwrap_or_default();
                (node, status.ok().and_then(Result::ok).map(tonic::Response::into_inner), list)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = probes.join_next().await {
            if let Ok((node, Some(s), list)) = joined {
                answers.push((node, s, list));
            }
        }
        let ids = {
            let mut ids = lock(&self.ids);
            for (node, s, _) in &answers {
                if let Some(h) = &s.header {
                    ids.insert(h.member_id, *node);
                }
            }
            ids.clone()
        };
        answers
            .into_iter()
            .map(|(node, s, list)| {
                // A member no node id is known for (not started, never answered) is left out.
                let members: Vec<(u64, u64, bool)> =
                    list.iter().filter_map(|m| Some((m.id, *ids.get(&m.id)?, m.is_learner))).collect();
                (node, view(node, s, &ids, &members))
            })
            .collect()
    }

    fn supervisor(&self) -> Option<&Supervisor> {
        Some(&self.processes)
    }

    fn leaders(&self) -> Option<&dyn Leaders> {
        Some(self)
    }

    fn membership(&self) -> Option<&dyn Membership> {
        Some(self)
    }
}

#[async_trait]
impl Membership for EtcdSystem {
    fn spares(&self) -> Vec<u64> {
        self.used.free(self.spares.iter().map(|m| m.id))
    }

    /// etcd's way: MemberAdd (as a learner) first, then the member starts with the cluster
    /// MemberAdd answered as its `--initial-cluster` and `--initial-cluster-state=existing`.
    async fn add_learner(&self, node: u64) -> Result<(), SystemError> {
        let spare = self.spares.iter().find(|m| m.id == node).ok_or(SystemError::UnknownNode(node))?;
        self.used.claim(node)?;
        let request = pb::MemberAddRequest { peer_ur_ls: vec![spare.peer_url.clone()], is_learner: true };
        let added = self.reconfigure(node, |mut c| {
            let request = request.clone();
            async move { c.member_add(request).await }
        });
        let added = added.await?;
        let id = added
            .member
            .as_ref()
            .map(|m| m.id)
            .ok_or_else(|| SystemError::Request { node, message: "MemberAdd answered without the member".into() })?;
        lock(&self.ids).insert(id, node);
        let ids = lock(&self.ids).clone();
        let cluster: Vec<String> = added
            .members
            .iter()
            .filter_map(|m| {
                let name = if m.id == id { spare.name.clone() } else { format!("n{}", ids.get(&m.id)?) };
                Some(format!("{name}={}", m.peer_ur_ls.first()?))
            })
            .collect();
        lock(&self.joined).insert(node, cluster.join(","));
        lock(&self.current).insert(node);
        self.processes.add(node, &self.binary);
        // Not waiting for it to answer: it is attached already, so its catch-up runs from here
        // (its start included, which etcd's way puts after the attachment).
        self.processes.start(node)
    }

    /// etcd takes no `min_applied_index`: it promotes once the learner's match index is within
    /// 10% of the leader's (`isLearnerReady`).
    async fn promote(&self, node: u64, _min_applied_index: u64) -> Result<Option<u64>, SystemError> {
        let id = self.known_id(node)?;
        let promote =
            move |mut c: ClusterClient<Channel>| async move { c.member_promote(pb::MemberPromoteRequest { id }).await };
        // etcd's gate is the leader's view of the learner's log: it never asks the learner.
        self.reconfigure(node, promote).await.map(|_| None)
    }

    async fn remove(&self, node: u64) -> Result<(), SystemError> {
        let id = self.known_id(node)?;
        let remove =
            move |mut c: ClusterClient<Channel>| async move { c.member_remove(pb::MemberRemoveRequest { id }).await };
        // Before the request: a removal may commit and the member end although no answer comes.
        self.processes.may_end(node, true);
        match self.reconfigure(node, remove).await {
            Err(e @ SystemError::Refused { .. }) => {
                self.processes.may_end(node, false);
                return Err(e);
            }
            done => done?,
        };
        lock(&self.current).remove(&node);
        self.processes.forget(node).await
    }

    /// From the leader: its raft status (commit, every member's match index and whether it is
    /// being sent a snapshot) and its member list (who is a learner).
    async fn members(&self) -> Result<Members, SystemError> {
        let views = self.statuses(Duration::from_millis(500)).await;
        let leader = views
            .values()
            .filter_map(|v| v.groups.first().filter(|g| g.role == "leader").map(|g| (g.term, v.id)))
            .max()
            .map(|(_, id)| id)
            .ok_or_else(|| SystemError::NotReady("no member says it leads".into()))?;
        let (raft, list) = tokio::join!(self.raft_status(leader), self.member_list(leader, Duration::from_millis(500)));
        let raft = raft?;
        let list =
            list.ok_or_else(|| SystemError::Request { node: leader, message: "member list: no answer".into() })?;
        if raft.state != "StateLeader" {
            return Err(SystemError::NotReady(format!("node {leader} no longer leads ({})", raft.state)));
        }
        let members = list
            .into_iter()
            .map(|(id, node, learner)| {
                let progress = raft.progress.get(&format!("{id:x}"));
                system::Member {
                    id: node,
                    learner,
                    match_index: progress.map_or(0, |p| p.0),
                    applied_index: views.get(&node).and_then(|v| v.groups.first()).map(|g| g.applied_index),
                    snapshot: progress.is_some_and(|p| p.1 == "StateSnapshot"),
                }
            })
            .collect();
        Ok(Members { leader, commit_index: raft.commit, members })
    }

    /// etcd's snapshot is its database file: once the learner has received one
    /// (`etcd_network_snapshot_receive_success`), the size of its database then; 0 before.
    async fn snapshot_bytes(&self, node: u64) -> Option<u64> {
        let at = self.place(node)?.client;
        let text = http_get(at, "/metrics").await.map_err(|e| tracing::debug!("{at}/metrics: {e}")).ok()?;
        if metric(&text, "etcd_network_snapshot_receive_success").unwrap_or(0) == 0 {
            return Some(0);
        }
        metric(&text, "etcd_mvcc_db_total_size_in_bytes")
    }

    fn own_gate(&self) -> Option<&'static str> {
        Some("etcd 3.4: the learner's match index at least 90% of the leader's")
    }
}

#[async_trait]
impl Leaders for EtcdSystem {
    fn groups(&self) -> u32 {
        1
    }

    async fn transfer_leader(&self, node: u64, group: u32, to: u64) -> Result<(), SystemError> {
        let request = |message: String| SystemError::Request { node, message };
        if group != 0 {
            return Err(request(format!("etcd has one raft group; no group {group}")));
        }
        let target = self.member_id(to).ok_or_else(|| request(format!("etcd's member id of node {to} is unknown")))?;
        let channel = self.channels.get(node).map_err(|e| request(e.to_string()))?;
        let timeout = self.transfer_timeout;
        // etcd accepts MoveLeader at the leader only, and answers once the target leads.
        tokio::time::timeout(
            timeout,
            MaintenanceClient::new(channel).move_leader(pb::MoveLeaderRequest { target_id: target }),
        )
        .await
        .map_err(|_| request(format!("transfer leader to {to}: no answer within {timeout:?}")))?
        .map_err(|e| request(format!("transfer leader to {to}: {}", e.message())))?;
        Ok(())
    }
}

/// etcd clients for the register workload.
pub struct EtcdClients {
    endpoints: Arc<Vec<(u64, String)>>,
    timeout: Duration,
    /// Range with `serializable`: served from the member's own state, not through the leader.
    serializable: bool,
}

impl ClientFactory for EtcdClients {
    fn open(&self, process: u64) -> Box<dyn Client> {
        let endpoints = self.endpoints.iter().cloned().collect();
        let channels = Channels::new(endpoints, Duration::from_millis(200).min(self.timeout));
        // Jepsen binds each process to a member; etcd forwards what needs the leader.
        let at = if self.endpoints.is_empty() { 0 } else { process as usize % self.endpoints.len() };
        Box::new(Etcd {
            nodes: self.endpoints.iter().map(|(id, _)| *id).collect(),
            channels,
            at,
            timeout: self.timeout,
            serializable: self.serializable,
        })
    }
}

/// One client process, bound to a member until that member fails it.
struct Etcd {
    nodes: Vec<u64>,
    /// This process's own connections, one per member it has used.
    channels: Channels,
    /// Index in `nodes` of the member it talks to.
    at: usize,
    timeout: Duration,
    serializable: bool,
}

/// Whether the request never left: the connection was refused or not made in time. Only then
/// is a write definitely not applied.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        // hyper-util's connector says so in words; its error types are private.
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// How an error completes an op: reads change nothing and fail; a write fails only when etcd
/// refused it before proposing (or it was never sent), else its outcome is unknown.
fn failed(status: &tonic::Status, read: bool, node: u64) -> Completion {
    use tonic::Code;
    let refused = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::ResourceExhausted
    );
    // A learner turns away what it cannot serve before proposing anything.
    let learner = status.message().contains("not supported for learner");
    let kind = if read || refused || learner || never_sent(status) { OpType::Fail } else { OpType::Info };
    let error = format!("{:?}: {}", status.code(), status.message());
    Completion { kind, value: Value::Null, error: Some(error), node: Some(node) }
}

impl Etcd {
    fn node(&self) -> u64 {
        self.nodes.get(self.at).copied().unwrap_or(0)
    }

    /// Moves to the next member.
    fn rotate(&mut self) {
        if !self.nodes.is_empty() {
            self.at = (self.at + 1) % self.nodes.len();
        }
    }

    /// One attempt at member `node`.
    async fn attempt(&self, f: &str, value: &Value, node: u64) -> Result<Completion, tonic::Status> {
        let mut kv = KvClient::new(self.channels.get(node)?);
        let key = key_bytes(value);
        match f {
            "read" => {
                let request = pb::RangeRequest { key, serializable: self.serializable };
                let r = kv.range(request).await?.into_inner();
                let v = r.kvs.first().map(|kv| int(&kv.value));
                Ok(ok(json!({"key": value["key"], "value": v}), node))
            }
            "write" => {
                kv.put(pb::PutRequest { key, value: encode(&value["value"]) }).await?;
                Ok(ok(value.clone(), node))
            }
            "cas" => {
                use pb::compare::{CompareResult, CompareTarget, TargetUnion};
                // An absent key has create revision 0; a present one compares by value.
                let (target, union) = if value["from"].is_null() {
                    (CompareTarget::Create, TargetUnion::CreateRevision(0))
                } else {
                    (CompareTarget::Value, TargetUnion::Value(encode(&value["from"])))
                };
                let compare = pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: target as i32,
                    key: key.clone(),
                    target_union: Some(union),
                };
                let put = pb::PutRequest { key: key.clone(), value: encode(&value["to"]) };
                // On a mismatch the same transaction reads what was there, for the error.
                let range = pb::RangeRequest { key, serializable: false };
                let txn = pb::TxnRequest {
                    compare: vec![compare],
                    success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }],
                    failure: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(range)) }],
                };
                let r = kv.txn(txn).await?.into_inner();
                if r.succeeded {
                    return Ok(ok(value.clone(), node));
                }
                let found = r.responses.iter().find_map(|op| match &op.response {
                    Some(pb::response_op::Response::ResponseRange(range)) => {
                        Some(range.kvs.first().map(|kv| int(&kv.value)))
                    }
                    _ => None,
                });
                let found = found.flatten().unwrap_or(Value::Null);
                Ok(Completion {
                    kind: OpType::Fail,
                    value: value.clone(),
                    error: Some(format!("cas mismatch: found {found}")),
                    node: Some(node),
                })
            }
            other => Ok(Completion {
                kind: OpType::Fail,
                value: value.clone(),
                error: Some(format!("unknown operation {other}")),
                node: None,
            }),
        }
    }
}

#[async_trait]
impl Client for Etcd {
    async fn invoke(&mut self, f: &str, value: &Value) -> Completion {
        let read = f == "read";
        let deadline = Instant::now() + self.timeout;
        // Each member at most once: a request that never left may go to the next one.
        for _ in 0..self.nodes.len().max(1) {
            let node = self.node();
            match tokio::time::timeout_at(deadline, self.attempt(f, value, node)).await {
                Ok(Ok(done)) => return done,
                Ok(Err(status)) if never_sent(&status) && Instant::now() < deadline => self.rotate(),
                Ok(Err(status)) => {
                    if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
                        self.rotate();
                    }
                    return failed(&status, read, node);
                }
                Err(_) => {
                    // The member is slow, paused or cut off: the next op tries another one.
                    self.rotate();
                    let kind = if read { OpType::Fail } else { OpType::Info };
                    let error = format!("no answer within {:?}", self.timeout);
                    return Completion { kind, value: Value::Null, error: Some(error), node: Some(node) };
                }
            }
        }
        let error = "no member could be reached".to_string();
        Completion { kind: OpType::Fail, value: Value::Null, error: Some(error), node: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(me: u64, leader: u64) -> pb::StatusResponse {
        pb::StatusResponse {
            header: Some(pb::ResponseHeader { member_id: me, ..Default::default() }),
            version: "3.4.23".into(),
            leader,
            raft_index: 9,
            raft_term: 3,
            raft_applied_index: 8,
            ..Default::default()
        }
    }

    #[test]
    fn status_maps_member_ids_to_nodes_and_roles() {
        let ids: BTreeMap<u64, u64> = [(0xaaaa, 1), (0xbbbb, 2)].into();
        let members = [(0xaaaa, 1, false), (0xbbbb, 2, false), (0xcccc, 4, true)];
        let leader = view(1, status(0xaaaa, 0xaaaa), &ids, &members);
        let g = &leader.groups[0];
        assert_eq!((g.role.as_str(), g.leader_id, g.term, g.commit_index, g.applied_index), ("leader", 1, 3, 9, 8));
        assert_eq!((g.voters.as_slice(), g.learners.as_slice()), (&[1, 2][..], &[4][..]), "from its member list");
        assert_eq!(view(2, status(0xbbbb, 0xaaaa), &ids, &members).groups[0].role, "follower");
        let lost = view(2, status(0xbbbb, 0), &ids, &members);
        assert_eq!((lost.groups[0].role.as_str(), lost.groups[0].leader_id), ("candidate", 0));
        // A leader whose id is not known yet is not named.
        assert_eq!(view(2, status(0xbbbb, 0xcccc), &ids, &members).groups[0].leader_id, 0);
    }

    #[test]
    fn the_leaders_raft_status_gives_commit_match_indexes_and_snapshots() {
        // The shape etcd 3.4.23 publishes at /debug/vars.
        let vars = json!({"cmdline": ["etcd"], "raft.status": {"id": "aaaa", "term": 2, "vote": "aaaa", "commit": 535,
            "lead": "aaaa", "raftState": "StateLeader", "applied": 535, "progress": {
                "aaaa": {"match": 536, "next": 537, "state": "StateReplicate"},
                "cccc": {"match": 0, "next": 520, "state": "StateSnapshot"}}, "leadtransferee": "0"}});
        let status = RaftStatus::parse(&vars).expect("a raft status");
        assert_eq!((status.commit, status.state.as_str()), (535, "StateLeader"));
        assert_eq!(status.progress["aaaa"], (536, "StateReplicate".to_string()));
        assert_eq!(status.progress["cccc"], (0, "StateSnapshot".to_string()));
        assert_eq!(RaftStatus::parse(&json!({"raft.status": {"commit": "x"}})), None, "garbled");
    }

    #[test]
    fn validate_refuses_what_etcd_cannot_run() {
        // From JSON, as test.json holds it: fields added later take their defaults.
        let test: Test = serde_json::from_value(json!({
            "name": "etcd-register", "system": "etcd", "workload": "register", "nemesis": [],
            "env": "local", "nodes": 3, "groups": 1, "concurrency": 10, "rate": 200.0,
            "time_limit_s": 30.0, "seed": 1, "op_timeout_ms": 1000, "nemesis_interval_s": 3.0,
            "fault_duration_s": 3.0, "keys": 10, "tick_ms": 10, "heartbeat_ticks": 5,
            "election_ticks": 50, "bugs": [], "broker_binary": "", "broker_version": "",
            "ordeal_version": "", "command": "", "started_at": ""
        }))
        .expect("a test.json");
        assert!(validate(&test).is_ok());
        let refused = |t: Test| validate(&t).map_err(|e| e.to_string()).unwrap_err();
        assert!(refused(Test { bugs: vec!["stale-reads".into()], ..test.clone() }).contains("etcd has none"));
        assert!(refused(Test { groups: 2, ..test.clone() }).contains("one raft group"));
        assert!(refused(Test { workload: "log".into(), ..test.clone() }).contains("log workload"));
        assert!(refused(Test { etcd_reads: "stale".into(), ..test.clone() }).contains("--etcd-reads"));
        assert!(
            refused(Test { nemesis: vec!["kill+clock-bump".into()], ..test.clone() }).contains("--nemesis clock-bump")
        );
        assert!(refused(Test { election_ticks: 20, ..test }).contains("at least 5 heartbeats"));
    }

    #[test]
    fn members_get_the_tests_timing_and_their_slots_urls() {
        let member = |id: u64| Member {
            id,
            name: format!("n{id}"),
            client: SocketAddr::from(([10, 0, 0, id as u8], 7000)),
            client_url: format!("http://10.0.0.{id}:7000"),
            peer_url: format!("http://10.0.0.{id}:8000"),
            data_dir: PathBuf::from(format!("/run/nodes/n{id}/data")),
            log: PathBuf::from(format!("/run/nodes/n{id}/etcd.log")),
            netns: None,
            env: vec![],
            remote: None,
        };
        let cluster = [member(1), member(2)];
        let settings = Settings { heartbeat_ms: 50, election_ms: 500, snapshot_count: Some(100) };
        let args = args(&cluster[1], &initial_cluster(&cluster), "new", settings);
        for want in [
            "--name=n2",
            "--data-dir=/run/nodes/n2/data",
            "--listen-client-urls=http://10.0.0.2:7000",
            "--initial-advertise-peer-urls=http://10.0.0.2:8000",
            "--initial-cluster=n1=http://10.0.0.1:8000,n2=http://10.0.0.2:8000",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--snapshot-count=100",
            "--initial-cluster-state=new",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
    }
}
