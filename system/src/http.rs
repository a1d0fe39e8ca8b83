//! `GET /v1/status` (JSON) and `GET /metrics` (Prometheus text).

use crate::BUILD_VERSION;
use crate::api::NodeState;
use crate::metrics::Metrics;
use crate::version;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
pub use ordeal_wire::status::NodeStatus;
use std::sync::Arc;

/// Builds the status from a node's state.
pub fn node_status(state: &NodeState) -> NodeStatus {
    let release = state.config.release;
    let groups = state.views();
    let cluster_version = groups.iter().map(|g| g.cluster_version).min().unwrap_or(1);
    NodeStatus {
        id: state.config.id,
        address: state.config.peers.get(&state.config.id).cloned().unwrap_or_default(),
        version: BUILD_VERSION.into(),
        wire_version: release.wire_max,
        storage_version: version::storage_format(cluster_version),
        release: release.release,
        wire_version_min: release.wire_min,
        storage_version_max: release.storage_max,
        peer_auth: state.config.tls.is_some(),
        groups,
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
    let mut body = s.metrics.render(s.node.config.id, &s.node.views());
    let r = s.node.config.release;
    body.push_str(&format!(
        "# HELP ordeal_build_info The build and the formats its release reads and writes.\n# TYPE ordeal_build_info gauge\nordeal_build_info{{node=\"{}\",version=\"{BUILD_VERSION}\",release=\"{}\",wire_min=\"{}\",wire_max=\"{}\",storage_max=\"{}\",command_max=\"{}\"}} 1\n",
        s.node.config.id, r.release, r.wire_min, r.wire_max, r.storage_max, r.command_max
    ));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
