//! `GET /v1/status` (JSON) and `GET /metrics` (Prometheus text).

use crate::api::NodeState;
use crate::metrics::Metrics;
use crate::node::GroupView;
use crate::{BUILD_VERSION, STORAGE_VERSION, WIRE_VERSION};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The JSON body of `GET /v1/status`, and of `ordeal-broker status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: u64,
    /// Its gRPC address.
    pub address: String,
    /// Its build version.
    pub version: String,
    /// The peer protocol version it speaks.
    pub wire_version: u32,
    /// The storage format version it writes.
    pub storage_version: u32,
    /// One entry per raft group.
    pub groups: Vec<GroupView>,
    /// The node's wall clock when it answered, in ms since the Unix epoch (raft never reads
    /// it; it is here to show clock skew).
    #[serde(default)]
    pub time_ms: u64,
}

impl NodeStatus {
    /// Builds the status from a node's state.
    pub fn of(state: &NodeState) -> NodeStatus {
        NodeStatus {
            id: state.config.id,
            address: state.config.peers.get(&state.config.id).cloned().unwrap_or_default(),
            version: BUILD_VERSION.into(),
            wire_version: WIRE_VERSION,
            storage_version: STORAGE_VERSION,
            groups: state.views(),
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

impl From<NodeStatus> for crate::pb::broker::StatusResponse {
    fn from(s: NodeStatus) -> Self {
        crate::pb::broker::StatusResponse {
            id: s.id,
            address: s.address,
            version: s.version,
            wire_version: s.wire_version,
            storage_version: s.storage_version,
            group_count: s.groups.len() as u32,
            groups: s.groups.into_iter().map(Into::into).collect(),
            time_ms: s.time_ms,
        }
    }
}

impl From<crate::pb::broker::StatusResponse> for NodeStatus {
    fn from(s: crate::pb::broker::StatusResponse) -> NodeStatus {
        NodeStatus {
            id: s.id,
            address: s.address,
            version: s.version,
            wire_version: s.wire_version,
            storage_version: s.storage_version,
            groups: s.groups.into_iter().map(GroupView::from).collect(),
            time_ms: s.time_ms,
        }
    }
}

#[derive(Clone)]
struct AppState {
    node: Arc<NodeState>,
    metrics: Arc<Metrics>,
}

/// The HTTP routes.
pub fn router(node: Arc<NodeState>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { node, metrics })
}

async fn status(State(s): State<AppState>) -> Json<NodeStatus> {
    Json(NodeStatus::of(&s.node))
}

async fn metrics_text(State(s): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let body = s.metrics.render(s.node.config.id, &s.node.views());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
