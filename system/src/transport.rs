//! Raft messages between peers, over gRPC client streams.
//!
//! Sending: one task and one bounded queue per peer. The Ready loop only ever `try_send`s: when a
//! peer's queue is full or its connection is down the messages are dropped (raft retransmits) and
//! the peer is reported unreachable, so a slow or dead peer never blocks the loop. The task
//! reconnects with exponential backoff.
//!
//! Receiving: [`RaftService`] decodes each envelope and hands its messages to the group's loop.
//! Anything malformed ends that stream with a status and leaves the node serving.

use crate::WIRE_VERSION;
use crate::node::{GroupHandle, Request};
use crate::pb::broker::raft_client::RaftClient;
use crate::pb::broker::raft_server::Raft;
use crate::pb::broker::{Envelope, SendAck};
use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

const PEER_QUEUE: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

struct Peer {
    queue: mpsc::Sender<Envelope>,
    connected: Arc<AtomicBool>,
}

/// The sending half: a queue and a connection task per peer.
pub struct Transport {
    id: u64,
    peers: HashMap<u64, Peer>,
}

impl Transport {
    /// Starts a sender task per peer other than `id`, on the current tokio runtime.
    pub fn start(id: u64, peers: &BTreeMap<u64, String>) -> Arc<Transport> {
        let mut out = HashMap::new();
        for (&peer, addr) in peers.iter().filter(|(p, _)| **p != id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let connected = Arc::new(AtomicBool::new(false));
            tokio::spawn(peer_loop(peer, addr.clone(), rx, connected.clone()));
            out.insert(peer, Peer { queue: tx, connected });
        }
        Arc::new(Transport { id, peers: out })
    }

    /// Queues `msgs` for their peers; returns the peers that could not take them.
    pub fn send(&self, group: u32, msgs: Vec<Message>) -> Vec<u64> {
        let mut by_peer: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
        for m in msgs {
            match m.write_to_bytes() {
                Ok(b) => by_peer.entry(m.to).or_default().push(b.into()),
                Err(e) => tracing::error!("raft message did not encode: {e}"),
            }
        }
        let mut unreachable = Vec::new();
        for (to, messages) in by_peer {
            let Some(peer) = self.peers.get(&to) else {
                tracing::warn!(to, "message for an unknown peer dropped");
                continue;
            };
            let env = Envelope { wire_version: WIRE_VERSION, from: self.id, to, group, messages };
            if !peer.connected.load(Ordering::Relaxed) || peer.queue.try_send(env).is_err() {
                unreachable.push(to);
            }
        }
        unreachable
    }
}

async fn peer_loop(peer: u64, addr: String, mut rx: mpsc::Receiver<Envelope>, connected: Arc<AtomicBool>) {
    let mut backoff = BACKOFF_MIN;
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_millis(250))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true),
        Err(e) => {
            tracing::error!(peer, addr, "invalid peer address: {e}");
            return;
        }
    };
    loop {
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer, "connect failed: {e}");
                // Drain what queued up meanwhile: raft will resend what still matters.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(peer, addr, "connected to peer");
        backoff = BACKOFF_MIN;
        let (stream_tx, stream_rx) = mpsc::channel::<Envelope>(256);
        let mut client = RaftClient::new(channel);
        let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(stream_rx)).await });
        connected.store(true, Ordering::Relaxed);
        loop {
            tokio::select! {
                env = rx.recv() => match env {
                    Some(env) => if stream_tx.send(env).await.is_err() { break },
                    None => { call.abort(); return; }
                },
                res = &mut call => {
                    tracing::info!(peer, "peer stream ended: {:?}", res.map(|r| r.err()));
                    break;
                }
            }
        }
        connected.store(false, Ordering::Relaxed);
        call.abort();
        tokio::time::sleep(backoff).await;
    }
}

/// The receiving half: the `Raft` gRPC service.
pub struct RaftService {
    id: u64,
    groups: Arc<Vec<GroupHandle>>,
    stopped: watch::Receiver<bool>,
}

impl RaftService {
    /// A service routing to `groups` (indexed by group id); its streams end when `stopped`
    /// turns true, so that a stopping server can drain.
    pub fn new(id: u64, groups: Arc<Vec<GroupHandle>>, stopped: watch::Receiver<bool>) -> Self {
        RaftService { id, groups, stopped }
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(&self, request: GrpcRequest<Streaming<Envelope>>) -> Result<Response<SendAck>, Status> {
        let mut stream = request.into_inner();
        let mut stopped = self.stopped.clone();
        loop {
            let env = tokio::select! {
                m = stream.message() => match m? {
                    Some(env) => env,
                    None => break,
                },
                _ = stopped.wait_for(|s| *s) => return Err(Status::unavailable("node is stopping")),
            };
            if env.wire_version == 0 || env.wire_version > WIRE_VERSION {
                return Err(Status::failed_precondition(format!(
                    "peer protocol version {} is not supported (this build speaks 1..={WIRE_VERSION})",
                    env.wire_version
                )));
            }
            if env.to != self.id {
                return Err(Status::invalid_argument(format!("envelope for node {} reached node {}", env.to, self.id)));
            }
            let Some(group) = self.groups.get(env.group as usize) else {
                return Err(Status::not_found(format!("unknown raft group {}", env.group)));
            };
            for bytes in env.messages {
                let m = Message::parse_from_bytes(&bytes)
                    .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
                // A full queue drops the message; raft retransmits.
                let _ = group.send(Request::Raft(Box::new(m)));
            }
        }
        Ok(Response::new(SendAck {}))
    }
}
