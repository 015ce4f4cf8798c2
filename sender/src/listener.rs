//! A hardened HTTP(S) listener for the processes' own endpoints: the aggregator's remote-write and
//! Prometheus API, and the agent's `/metrics`, health and targets. It lives here because this is the one
//! crate both processes link that already carries the HTTP and TLS stack (the sender's client side); the
//! agent must not depend on the aggregator.
//!
//! A hand-written accept loop rather than `axum::serve`, because every limit below needs the connection
//! itself:
//!
//! - `max_connections`: beyond it a connection is answered `503` (plain HTTP) or closed (TLS) at once and
//!   counted; it never waits in the process for a slot.
//! - `header_read_timeout`: a client must send a request's whole head within it (slowloris); hyper
//!   closes the connection otherwise.
//! - `max_header_bytes`: a larger request head answers `431` and closes.
//! - `idle_timeout`: a connection with no bytes read or written for this long is closed; a request still
//!   being answered (a long query) is finished first (hyper's graceful shutdown).
//! - `tls_handshake_timeout`: a TLS client must finish its handshake within it.
//! - A request hyper cannot parse answers 400 and closes (`bad_request`); a connection closed in the
//!   middle of a request is counted too (`incomplete_request`).
//!
//! Each refusal counts in `surge_<component>_http_limited_total{limit}`. The request body's own limits
//! (size, read time) belong to the handlers that read bodies. TLS is whatever [`ServingTls`] provides (the
//! aggregator's reloads its certificate from files); without it the listener serves plain HTTP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// Connection limits of the listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Connections served at once. Default 1024.
    pub max_connections: usize,
    /// The largest request head (request line and headers). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Time allowed to send a request head. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection silent this long is closed. Default 2 min.
    pub idle_timeout: Duration,
    /// Time allowed for a TLS handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_header_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Which limit refused or closed a connection (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxConnections,
    HeaderReadTimeout,
    HeaderTooLarge,
    IdleTimeout,
    TlsHandshakeTimeout,
    TlsHandshakeFailed,
    /// A request hyper could not parse (garbage, a bad header): answered 400 and closed.
    BadRequest,
    /// The client closed the connection in the middle of a request.
    IncompleteRequest,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::HeaderTooLarge => "header_too_large",
            Limit::IdleTimeout => "idle_timeout",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
            Limit::TlsHandshakeFailed => "tls_handshake_failed",
            Limit::BadRequest => "bad_request",
            Limit::IncompleteRequest => "incomplete_request",
        }
    }
}

/// The listener's metrics, named after the process that serves (`surge_<component>_http_*`).
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    /// `agent` or `aggregator`: the metric names' middle and the log lines' prefix.
    component: &'static str,
    /// Connections open now.
    pub connections: Gauge,
    /// Connections refused or closed by a limit, by limit.
    pub limited: Family<[(&'static str, &'static str); 1], Counter>,
}

impl ListenerMetrics {
    /// Registers `surge_<component>_http_connections` and `surge_<component>_http_limited_total`.
    pub fn new(registry: &mut Registry, component: &'static str) -> ListenerMetrics {
        let m = ListenerMetrics::unregistered(component);
        registry.register(
            format!("surge_{component}_http_connections"),
            format!("Connections open on the {component}'s listener"),
            m.connections.clone(),
        );
        registry.register(
            format!("surge_{component}_http_limited"),
            "Connections refused or closed by a listener limit, by limit",
            m.limited.clone(),
        );
        m
    }

    /// Metrics no registry exports (tests, tools).
    pub fn unregistered(component: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            component,
            connections: Gauge::default(),
            limited: Family::default(),
        }
    }

    fn hit(&self, limit: Limit) {
        self.limited
            .get_or_create(&[("limit", limit.as_str())])
            .inc();
    }

    /// How often `limit` was hit (for tests and tools).
    pub fn hits(&self, limit: Limit) -> u64 {
        self.limited
            .get_or_create(&[("limit", limit.as_str())])
            .get()
    }
}

/// TLS for the listener: the rustls config, and what the accept loop does around it.
pub trait ServingTls: Send + Sync + 'static {
    /// The config every handshake uses (its certificate resolver may change what it serves).
    fn config(&self) -> Arc<rustls::ServerConfig>;
    /// How often [`ServingTls::reload_if_changed`] is called; `None`: never.
    fn reload_interval(&self) -> Option<Duration>;
    /// Serves a new certificate if its source changed: `Ok(true)` when one was loaded; an error keeps the
    /// current one (logged).
    fn reload_if_changed(&self) -> Result<bool, String>;
    /// What handlers learn about a connection's verified peer (e.g. its client certificate's name), as
    /// extensions added to each of its requests.
    fn peer_extensions(&self, conn: &rustls::ServerConnection) -> http::Extensions;
}

/// Serves `app` on `listener` (HTTPS when `tls` is set) under `limits` until `shutdown` completes; then
/// stops accepting, closes idle connections and lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<Arc<dyn ServingTls>>,
    metrics: ListenerMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let who = metrics.component;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.config()));
    let reload_every = tls
        .as_ref()
        .and_then(|t| t.reload_interval())
        .unwrap_or(Duration::from_secs(3600));
    let mut reload = tokio::time::interval(reload_every);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = reload.tick() => {
                if let Some(t) = &tls {
                    match t.reload_if_changed() {
                        Ok(true) => tracing::info!("{who}: serving certificate reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "{who}: certificate reload failed; keeping the current one"),
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (mut tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "{who}: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.hit(Limit::MaxConnections);
                    tracing::debug!(%peer, limit = limits.max_connections, "{who}: connection refused: max_connections reached");
                    if acceptor.is_none() {
                        // A short plain answer, so a client sees why; bounded so it cannot hold anything.
                        conns.spawn(async move {
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                tcp.write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 42\r\n\r\ntoo many connections (max_connections)\r\n\r\n"),
                            )
                            .await;
                        });
                    }
                    continue;
                };
                let conn = Connection {
                    app: app.clone(),
                    limits: limits.clone(),
                    metrics: metrics.clone(),
                    stop: stop_rx.clone(),
                };
                let acceptor = acceptor.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let metrics = conn.metrics.clone();
                    metrics.connections.inc();
                    match (acceptor, tls) {
                        (Some(acceptor), Some(tls)) => {
                            match tokio::time::timeout(conn.limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
                                Ok(Ok(s)) => {
                                    let extensions = tls.peer_extensions(s.get_ref().1);
                                    conn.serve(s, extensions, peer).await;
                                }
                                Ok(Err(e)) => {
                                    metrics.hit(Limit::TlsHandshakeFailed);
                                    tracing::debug!(%peer, error = %e, "{who}: TLS handshake failed");
                                }
                                Err(_) => metrics.hit(Limit::TlsHandshakeTimeout),
                            }
                        }
                        _ => conn.serve(tcp, http::Extensions::new(), peer).await,
                    }
                    metrics.connections.dec();
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// What one connection task needs.
struct Connection {
    app: Router,
    limits: ServerLimits,
    metrics: ListenerMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    async fn serve<S>(mut self, io: S, extensions: http::Extensions, peer: std::net::SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let who = self.metrics.component;
        let io = ActivityIo::new(io);
        let activity = io.activity.clone();
        let svc = self.app.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().extend(extensions.clone());
                req
            },
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_header_size(self.limits.max_header_bytes);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout.max(Duration::from_millis(10));
        let mut check = tokio::time::interval(idle / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if e.is_timeout() {
                            self.metrics.hit(Limit::HeaderReadTimeout);
                        } else if e.is_parse_too_large() {
                            self.metrics.hit(Limit::HeaderTooLarge);
                        } else if e.is_parse() {
                            self.metrics.hit(Limit::BadRequest);
                        } else if e.is_incomplete_message() {
                            self.metrics.hit(Limit::IncompleteRequest);
                        }
                        tracing::debug!(%peer, error = %e, "{who}: connection ended");
                    }
                    return;
                }
                _ = check.tick(), if !closing => {
                    if activity.idle_for() >= idle {
                        self.metrics.hit(Limit::IdleTimeout);
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
/// When a connection last moved a byte, in milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.opened.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// An IO that records when it last read or wrote a byte, for `idle_timeout`.
struct ActivityIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> ActivityIo<S> {
    fn new(inner: S) -> Self {
        ActivityIo {
            inner,
            activity: Arc::new(Activity {
                opened: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
