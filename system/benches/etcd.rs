//! etcd as the reference system, measured in the same run as the broker: three members on
//! loopback with their default settings (fsync before every ack, 1 s election timeout), driven
//! through the same tonic stack as the broker so that the client costs the same on both sides.
//!
//! Only the two RPCs the benchmark needs are declared here, by hand, with the field numbers of
//! etcd's `rpc.proto`; prost skips every field it does not know.

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseHeader {
    #[prost(uint64, tag = "2")]
    member_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    leader: u64,
}

/// The etcd binary: `ORDEAL_BENCH_ETCD`, else `etcd` on the PATH (Debian's `etcd-server`).
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORDEAL_BENCH_ETCD") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("etcd")).find(|p| p.is_file())
}

/// Three etcd members, killed on drop (and by the kernel if the benchmark dies first).
pub struct Etcd {
    members: Vec<Child>,
    endpoints: Vec<String>,
    /// `name=peer URL` of every member, for a member that joins later.
    cluster: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start(binary: &std::path::Path) -> std::io::Result<Etcd> {
        Etcd::start_with(binary, &[])
    }

    /// Three members started with `extra` flags too.
    pub fn start_with(binary: &std::path::Path, extra: &[&str]) -> std::io::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let ports = ordeal_system::launch::free_ports(6)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let cluster: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        let mut etcd = Etcd { members: Vec::new(), endpoints: Vec::new(), cluster: cluster.clone(), _dir: dir };
        for i in 0..3 {
            let client = format!("http://127.0.0.1:{}", ports[2 * i]);
            let log = std::fs::File::create(etcd._dir.path().join(format!("e{i}.log")))?;
            let mut cmd = Command::new(binary);
            cmd.arg(format!("--name=e{i}"))
                .arg(format!("--data-dir={}", etcd._dir.path().join(format!("e{i}")).display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={}", peer(i)))
                .arg(format!("--initial-advertise-peer-urls={}", peer(i)))
                .arg(format!("--initial-cluster={}", cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=ordeal-bench")
                .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
            }
            etcd.members.push(cmd.spawn()?);
            etcd.endpoints.push(client);
        }
        Ok(etcd)
    }

    /// A client connected to the member every member names as leader.
    pub async fn leader(&self) -> Result<EtcdClient, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut views = Vec::new();
            for e in &self.endpoints {
                if let Ok(mut c) = EtcdClient::connect(e).await
                    && let Ok(s) = c.status().await
                {
                    views.push((s.header.map_or(0, |h| h.member_id), s.leader, c));
                }
            }
            let leader = views.first().map_or(0, |v| v.1);
            if views.len() == 3 && leader != 0 && views.iter().all(|v| v.1 == leader) {
                return views.into_iter().find(|v| v.0 == leader).map(|v| v.2).ok_or("leader not a member".into());
            }
            if Instant::now() > deadline {
                return Err(format!("etcd elected no leader in 20 s (logs in {})", self._dir.path().display()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

#[derive(Clone)]
pub struct EtcdClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdClient {
    async fn connect(endpoint: &str) -> Result<EtcdClient, tonic::transport::Error> {
        let channel = Channel::from_shared(endpoint.to_string())
            .expect("a valid URI")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(EtcdClient { grpc: tonic::client::Grpc::new(channel) })
    }

    async fn unary<Q, R>(&mut self, path: &'static str, request: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        let response = self.grpc.unary(tonic::Request::new(request), PathAndQuery::from_static(path), codec).await?;
        Ok(response.into_inner())
    }

    async fn status(&mut self) -> Result<StatusResponse, tonic::Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {}).await
    }

    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
        self.unary::<_, PutResponse>("/etcdserverpb.KV/Put", PutRequest { key, value }).await.map(|_| ())
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberAddRequest {
    #[prost(string, repeated, tag = "1")]
    peer_urls: Vec<String>,
    #[prost(bool, tag = "2")]
    is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Member {
    #[prost(uint64, tag = "1")]
    id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberAddResponse {
    #[prost(message, optional, tag = "2")]
    member: Option<Member>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberPromoteRequest {
    #[prost(uint64, tag = "1")]
    id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberPromoteResponse {}

impl Etcd {
    /// `member add --learner` (etcd's Cluster API), then starts that member (with `extra` flags)
    /// to join the cluster; returns its member id.
    pub async fn add_learner(&mut self, binary: &std::path::Path, extra: &[&str]) -> Result<u64, String> {
        let ports = ordeal_system::launch::free_ports(2).map_err(|e| e.to_string())?;
        let (client, peer) = (format!("http://127.0.0.1:{}", ports[0]), format!("http://127.0.0.1:{}", ports[1]));
        let name = format!("e{}", self.members.len());
        let mut c = EtcdClient::connect(&self.endpoints[0]).await.map_err(|e| e.to_string())?;
        let request = MemberAddRequest { peer_urls: vec![peer.clone()], is_learner: true };
        let added: MemberAddResponse =
            c.unary("/etcdserverpb.Cluster/MemberAdd", request).await.map_err(|e| e.to_string())?;
        let id = added.member.map(|m| m.id).ok_or("no member in the answer")?;
        self.cluster.push(format!("{name}={peer}"));
        let log = std::fs::File::create(self._dir.path().join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", self._dir.path().join(&name).display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.cluster.join(",")))
            .arg("--initial-cluster-state=existing")
            .arg("--initial-cluster-token=ordeal-bench")
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        self.members.push(cmd.spawn().map_err(|e| e.to_string())?);
        self.endpoints.push(client);
        Ok(id)
    }

    /// `member promote`: etcd 3.4 refuses until the learner's match index is within 10% of the
    /// leader's.
    pub async fn promote(&self, id: u64) -> Result<(), String> {
        let mut c = EtcdClient::connect(&self.endpoints[0]).await.map_err(|e| e.to_string())?;
        let request = MemberPromoteRequest { id };
        let _: MemberPromoteResponse =
            c.unary("/etcdserverpb.Cluster/MemberPromote", request).await.map_err(|e| e.message().to_owned())?;
        Ok(())
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.endpoints[i]
    }
}
