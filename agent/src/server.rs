//! The agent's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/api/v1/targets`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

use crate::scrape::manager::TargetManager;

/// What the endpoints read.
pub struct ServerState {
    pub registry: Arc<Mutex<Registry>>,
    pub targets: Arc<tokio::sync::Mutex<TargetManager>>,
    pub ready: AtomicBool,
}

/// The agent's router, built by a function so tests can call it without a socket.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/targets", get(targets))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    s.targets.lock().await.update_gauges();
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &s.registry.lock()) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn targets(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    let health = s.targets.lock().await.health();
    axum::Json(serde_json::json!({ "status": "success", "data": { "activeTargets": health } }))
}
