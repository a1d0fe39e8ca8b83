//! Wires a node together and runs it until SIGTERM or SIGINT, then stops gracefully: refuse new
//! requests, hand leadership away, finish what is in flight, stop.

use crate::api::{AdminService, BrokerService, NodeState, check_admin_token};
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::node::{self, GroupContext, GroupHandle, Request};
use crate::pb::broker::admin_server::AdminServer;
use crate::pb::broker::broker_server::BrokerServer;
use crate::pb::broker::raft_server::RaftServer;
use crate::peer_auth::{self, PeerTls};
use crate::seeded;
use crate::snapshot;
use crate::storage::open_db_reading;
use crate::transport::{RaftService, Transport};
use anyhow::Context as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// HTTP/2 flow-control window per stream on the node's port.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// The largest HTTP/2 frame peers may send to the node's port: HTTP/2's default of 16 KB cuts a
/// snapshot's 1 MB chunk into 64 frames, each a header to write and parse and a wake-up.
const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// Runs a node until it is told to stop.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    seeded::announce(&config.bugs);
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let db = open_db_reading(&config.data_dir, config.release.storage_max)
        .with_context(|| format!("opening {}", config.data_dir.display()))?;
    crate::storage::claim(&db, config.id).with_context(|| config.data_dir.display().to_string())?;
    snapshot::recover_all(&db, &config.data_dir).context("finishing a snapshot install a crash interrupted")?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let http_listener = match config.http {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?),
        None => None,
    };

    let metrics = Arc::new(Metrics::default());
    let tls = peer_tls(&config)?;
    metrics.peer_auth_enabled.store(u64::from(tls.is_some()), Ordering::Relaxed);
    let peers = Arc::new(RwLock::new(config.peers.clone()));
    let ctx = GroupContext {
        db: db.clone(),
        config: config.clone(),
        peers: peers.clone(),
        transport: Transport::start(config.id, &config.peers, config.release, tls.clone()),
        metrics: metrics.clone(),
    };
    let (groups, threads): (Vec<GroupHandle>, Vec<_>) = (0..config.groups)
        .map(|g| node::spawn(g, &ctx))
        .collect::<Result<Vec<_>, _>>()
        .context("starting raft groups")?
        .into_iter()
        .unzip();
    let groups = Arc::new(groups);
    ctx.transport.tell(groups.clone());
    let (stop_peers, peers_stopped) = watch::channel(false);
    let state = Arc::new(NodeState {
        config: config.clone(),
        db,
        groups: groups.clone(),
        shutting_down: Default::default(),
        in_flight: Default::default(),
        peers,
    });

    let inbox = Arc::new(snapshot::Inbox {
        id: config.id,
        dir: snapshot::incoming_dir(&config.data_dir),
        metrics: metrics.clone(),
        snapshot_max: config.release.snapshot_max,
        streams: snapshot::StreamSlots::for_groups(groups.len()),
    });
    let mut raft = RaftService::new(config.id, groups.clone(), peers_stopped, inbox)
        .with_transport(config.release, ctx.transport.clone());
    if tls.is_some() {
        raft = raft.with_peer_auth();
    }
    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // HTTP/2's default 64 KB window caps one stream at a window per round trip: a snapshot
        // (or a peer catching up) moved at ~100 MB/s on a busy loopback. Reads are bounded by
        // the services' own queues, so larger windows add no unbounded buffering.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(2 * STREAM_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .add_service(BrokerServer::new(BrokerService(state.clone())))
        .add_service(AdminServer::with_interceptor(
            AdminService(state.clone()),
            check_admin_token(config.admin_token.clone()),
        ))
        .add_service(RaftServer::new(raft).max_decoding_message_size(crate::transport::MAX_PEER_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(peer_auth::incoming(listener, tls, metrics.clone()), async {
            let _ = grpc_stopped.await;
        });
    let grpc = tokio::spawn(grpc);
    let http =
        http_listener.map(|l| tokio::spawn(axum::serve(l, crate::http::router(state.clone(), metrics)).into_future()));
    tracing::info!(id = config.id, listen = %config.listen, http = ?config.http, groups = config.groups, "node started");

    wait_for_signal().await;
    tracing::info!("stopping: refusing new requests and handing leadership away");
    state.shutting_down.store(true, Ordering::SeqCst);
    hand_off_leadership(&state).await;
    let deadline = Instant::now() + config.request_timeout;
    while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Peer streams never end by themselves; end them so that the server can drain.
    let _ = stop_peers.send(true);
    let _ = stop_grpc.send(());
    if tokio::time::timeout(Duration::from_secs(2), grpc).await.is_err() {
        tracing::warn!("gRPC server did not drain within 2 s");
    }
    if let Some(h) = http {
        h.abort();
    }
    groups.iter().for_each(GroupHandle::stop);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The node's peer credentials, if it has any; without them it warns, once, that anyone who
/// reaches its port can speak raft to it.
fn peer_tls(config: &NodeConfig) -> anyhow::Result<Option<Arc<PeerTls>>> {
    match &config.tls {
        Some(files) => {
            let tls = PeerTls::load(files)?;
            tracing::info!(cert = %files.cert.display(), "peers authenticate with mutual TLS");
            Ok(Some(Arc::new(tls)))
        }
        None => {
            tracing::warn!(
                "peer traffic is not authenticated: anyone who reaches this port can send raft messages \
                 (start with --tls-ca, --tls-cert and --tls-key to require certificates)"
            );
            Ok(None)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the node can only be killed, which is still safe.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Asks every group this node leads to transfer leadership, and waits (bounded by two election
/// timeouts) until it no longer leads any.
async fn hand_off_leadership(state: &NodeState) {
    let deadline = Instant::now() + state.config.timing.election_timeout() * 2;
    loop {
        let leading: Vec<&GroupHandle> = state.groups.iter().filter(|g| g.view().is_leader).collect();
        if leading.is_empty() || Instant::now() >= deadline {
            return;
        }
        for g in leading {
            let (reply, rx) = oneshot::channel();
            if g.send(Request::StepDown { reply }).is_ok() {
                let _ = rx.await;
            }
        }
        tokio::time::sleep(state.config.timing.tick).await;
    }
}
