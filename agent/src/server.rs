//! The agent's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/api/v1/targets`.
//!
//! Served by the shared hardened listener ([`surge_sender::listener`]) under [`agent_limits`]: a
//! connection cap, a bounded request head with a read deadline (slowloris) and an idle timeout, each
//! refusal counted in `surge_agent_http_limited_total{limit}`. Every endpoint is a `GET` that reads no
//! body, so a request carrying one is refused with 413 before any handler runs; that, a wrong method
//! (405) and an unknown path (404) count in `surge_agent_http_refused_total{reason}`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use surge_sender::listener::{ListenerMetrics, ServerLimits};
use tokio::net::TcpListener;

use crate::scrape::manager::TargetManager;

/// What the endpoints read.
pub struct ServerState {
    pub registry: Arc<Mutex<Registry>>,
    pub targets: Arc<tokio::sync::Mutex<TargetManager>>,
    pub ready: AtomicBool,
}

/// The agent listener's limits: sized for a kubelet probing and one or two Prometheus servers scraping,
/// not for the public: few connections, small heads, short deadlines.
pub fn agent_limits() -> ServerLimits {
    ServerLimits {
        max_connections: 64,
        max_header_bytes: 16 << 10,
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        tls_handshake_timeout: Duration::from_secs(10),
    }
}

/// Why a request was refused (the `reason` label of `surge_agent_http_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request carried a body; no endpoint reads one (413).
    Body,
    /// A method the path does not serve (405).
    Method,
    /// No such path (404).
    NotFound,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Body => "body",
            Refusal::Method => "method",
            Refusal::NotFound => "not_found",
        }
    }
}

/// Requests the endpoints refused, by reason.
#[derive(Debug, Clone, Default)]
pub struct RefusalMetrics {
    refused: Family<[(&'static str, &'static str); 1], Counter>,
}

impl RefusalMetrics {
    /// Registers `surge_agent_http_refused_total`.
    pub fn new(registry: &mut Registry) -> RefusalMetrics {
        let m = RefusalMetrics::default();
        registry.register(
            "surge_agent_http_refused",
            "Requests to the agent's endpoints refused, by reason (body, method, not_found)",
            m.refused.clone(),
        );
        m
    }

    fn hit(&self, r: Refusal) {
        self.refused.get_or_create(&[("reason", r.as_str())]).inc();
    }

    /// Requests refused for `r` so far (tests, tools).
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused.get_or_create(&[("reason", r.as_str())]).get()
    }
}

/// The agent's router, built by a function so tests can call it without a socket.
pub fn router(state: Arc<ServerState>, refusals: RefusalMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/targets", get(targets))
        .with_state(state)
        // Around every route and the fallback, so 404s are counted too.
        .layer(axum::middleware::from_fn_with_state(refusals, refuse))
}

/// Binds nothing: serves the agent's endpoints on `listener` under `limits` until `shutdown`, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (listener_metrics, refusals) = {
        let mut r = state.registry.lock();
        (
            ListenerMetrics::new(&mut r, "agent"),
            RefusalMetrics::new(&mut r),
        )
    };
    let app = router(state, refusals);
    surge_sender::listener::serve(listener, app, limits, None, listener_metrics, shutdown).await
}

/// Refuses a request with a body before any handler (none reads one, and an unread body would hold the
/// connection), and counts the router's own refusals.
async fn refuse(State(m): State<RefusalMetrics>, req: Request, next: Next) -> Response {
    if carries_body(req.headers()) {
        m.hit(Refusal::Body);
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the agent's endpoints take no request body\n",
        )
            .into_response();
    }
    let resp = next.run(req).await;
    match resp.status() {
        StatusCode::METHOD_NOT_ALLOWED => m.hit(Refusal::Method),
        StatusCode::NOT_FOUND => m.hit(Refusal::NotFound),
        _ => {}
    }
    resp
}

/// A non-empty `Content-Length` or any `Transfer-Encoding` (hyper has refused malformed ones already).
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
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
