//! The surge aggregator's process core: remote-write ingest into the sample store (`surge-store`), the
//! Prometheus HTTP API over PromQL (`surge-promql`), and the onward writer. The Kubernetes metrics APIs
//! (`surge-metrics-api`) and the autoscaling loop (`surge-autoscaler`) read the same store; the binary
//! wires them together.
//!
//! # Map
//!
//! - [`ingest`]: `POST /api/v1/write`; tells registered [`IngestObserver`]s which series each request
//!   touched, with each series' newest sample.
//! - [`api`]: the HTTP surface; [`router`] builds it without a socket, so tests call it in-process.
//! - [`onward`]: what was ingested, shipped on through the output seam (`surge_sender::Output`).
//! - [`options`]: the ingest limits ([`IngestOptions`]).
//!
//! Architecture invariant: only the HTTP handlers read the wall clock, through [`now_ms`]; the store and
//! the evaluator take the time as an argument.

pub mod api;
pub mod auth;
pub mod error;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod onward;
pub mod options;
pub mod peers;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use prometheus_client::registry::Registry;

pub use api::router;
pub use error::HttpError;
pub use ingest::{IngestSummary, RejectReason, Sender};
pub use options::{IngestOptions, QueryLimits};
pub use surge_promql::{EvalOptions, QueryOptions};
pub use surge_store::{CacheOptions, IngestObserver, SeriesCache, SeriesId, Touched};

use auth::WriteAuth;
use metrics::{IngestMetrics, QueryMetrics};

/// A random id per process start (the clock's nanoseconds and the process id, hashed).
fn new_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    format!("{:016x}", h.digest())
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Everything the aggregator's handlers share.
pub struct AggregatorState {
    cache: Arc<SeriesCache>,
    query_opts: QueryOptions,
    ingest_opts: IngestOptions,
    ingest_metrics: IngestMetrics,
    query_metrics: QueryMetrics,
    observers: RwLock<Vec<Arc<dyn IngestObserver>>>,
    registry: OnceLock<Arc<Registry>>,
    query_gate: RwLock<Arc<api::QueryGate>>,
    write_auth: OnceLock<Arc<WriteAuth>>,
    /// This process's id among the replicas (see [`peers`]).
    instance_id: String,
    peer_metrics: peers::PeerMetrics,
    /// Writes are answered 503 while false (a warm-up from a peer runs; see [`peers`]).
    accepting_writes: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AggregatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorState")
            .field("series", &self.cache.len())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl AggregatorState {
    /// Builds the state and registers its metrics in `registry`. `/metrics` serves the registry once it is
    /// handed back with [`AggregatorState::publish_registry`] (after every component has registered).
    pub fn new(
        cache_opts: CacheOptions,
        query_opts: QueryOptions,
        ingest_opts: IngestOptions,
        registry: &mut Registry,
    ) -> AggregatorState {
        let cache = Arc::new(SeriesCache::new(cache_opts));
        cache.register(registry);
        let ingest_metrics = IngestMetrics::default();
        ingest_metrics.register(registry);
        let query_metrics = QueryMetrics::default();
        query_metrics.register(registry);
        let peer_metrics = peers::PeerMetrics::new(registry);
        AggregatorState {
            cache,
            query_opts,
            ingest_opts,
            ingest_metrics,
            query_metrics,
            observers: RwLock::new(Vec::new()),
            registry: OnceLock::new(),
            query_gate: RwLock::new(Arc::new(api::QueryGate::new(QueryLimits::default()))),
            write_auth: OnceLock::new(),
            instance_id: new_instance_id(),
            peer_metrics,
            accepting_writes: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// This process's id among the replicas: random per start.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn peer_metrics(&self) -> &peers::PeerMetrics {
        &self.peer_metrics
    }

    /// Whether `/api/v1/write` takes writes; while not, it answers 503 with `Retry-After`, which
    /// senders retry (a warm-up from a peer must land before newer samples; see [`peers`]).
    pub fn set_accepting_writes(&self, accepting: bool) {
        self.accepting_writes
            .store(accepting, std::sync::atomic::Ordering::Release);
    }

    pub fn accepting_writes(&self) -> bool {
        self.accepting_writes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A state with its own registry, already published and ready: for tests, benches and tools.
    pub fn standalone(
        cache_opts: CacheOptions,
        query_opts: QueryOptions,
        ingest_opts: IngestOptions,
    ) -> Arc<AggregatorState> {
        let mut registry = Registry::default();
        let st = AggregatorState::new(cache_opts, query_opts, ingest_opts, &mut registry);
        st.publish_registry(Arc::new(registry));
        st.set_ready(true);
        Arc::new(st)
    }

    /// Hands the finished registry to `/metrics`. Only the first call has an effect; returns whether it did.
    pub fn publish_registry(&self, registry: Arc<Registry>) -> bool {
        self.registry.set(registry).is_ok()
    }

    pub fn registry(&self) -> Option<&Registry> {
        self.registry.get().map(|r| &**r)
    }

    pub fn cache(&self) -> &Arc<SeriesCache> {
        &self.cache
    }

    pub fn query_options(&self) -> &QueryOptions {
        &self.query_opts
    }

    pub fn ingest_options(&self) -> &IngestOptions {
        &self.ingest_opts
    }

    /// Sets the query API's concurrency, deadline and sample limits (default: [`QueryLimits::default`]).
    /// Queries already running keep the limits they started with.
    pub fn set_query_limits(&self, limits: QueryLimits) {
        *self.query_gate.write() = Arc::new(api::QueryGate::new(limits));
    }

    pub fn query_limits(&self) -> QueryLimits {
        self.query_gate.read().limits.clone()
    }

    pub(crate) fn query_gate(&self) -> Arc<api::QueryGate> {
        self.query_gate.read().clone()
    }

    /// Requires authentication for remote-write (see [`auth`]). Only the first call has an effect;
    /// returns whether it did.
    pub fn set_write_auth(&self, auth: Arc<WriteAuth>) -> bool {
        self.write_auth.set(auth).is_ok()
    }

    pub fn write_auth(&self) -> Option<&Arc<WriteAuth>> {
        self.write_auth.get()
    }

    /// Registers an observer called after every ingest with the series it touched.
    pub fn add_observer(&self, observer: Arc<dyn IngestObserver>) {
        self.observers.write().push(observer);
    }

    /// Readiness is explicit: `/readyz` answers 503 until this is set (by [`serve`], or by the lead once
    /// the cache holds enough history for its policies).
    pub fn set_ready(&self, ready: bool) {
        self.cache.set_ready(ready);
    }

    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// Evaluation options of the Prometheus API (lookback only, no freshness rule).
    pub fn eval_options(&self) -> EvalOptions {
        EvalOptions::prometheus(&self.query_opts)
    }

    /// Evaluation options of the autoscaling path (freshness = `stale_after`).
    pub fn autoscaling_eval_options(&self) -> EvalOptions {
        EvalOptions::autoscaling(&self.query_opts, self.cache.options())
    }
}

/// Serves [`router`] on `listener` until `shutdown` completes; marks the state ready once serving.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AggregatorState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.set_ready(true);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
