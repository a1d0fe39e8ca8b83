//! `GET /v1/status` (JSON) and `GET /metrics` (Prometheus text).

use crate::api::NodeState;
use crate::metrics::Metrics;
use crate::{BUILD_VERSION, STORAGE_VERSION, WIRE_VERSION};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
pub use ordeal_wire::status::NodeStatus;
use std::sync::Arc;

/// Builds the status from a node's state.
pub fn node_status(state: &NodeState) -> NodeStatus {
    NodeStatus {
        id: state.config.id,
        address: state.config.peers.get(&state.config.id).cloned().unwrap_or_default(),
        version: BUILD_VERSION.into(),
        wire_version: WIRE_VERSION,
        storage_version: STORAGE_VERSION,
        groups: state.views(),
        time_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
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
    Json(node_status(&s.node))
}

async fn metrics_text(State(s): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let body = s.metrics.render(s.node.config.id, &s.node.views());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
