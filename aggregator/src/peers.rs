//! Peer replicas: a starting aggregator copies the recent window from a running one, and the leader's
//! ALB series reach every replica.
//!
//! ```text
//! starting replica B                                   running replica A
//!   writes answered 503 (agents retry, keep order)
//!   GET /internal/v1/peer/dump?min_time_ms=… ───────▶  (authenticated like remote-write)
//!     ◀── frames: u32 length + snappy WriteRequest ──  every series' samples in the window, markers too
//!   each frame → ingest (same path as remote-write)
//!   history since = the window's start (or its own start when the copy failed)
//!   writes accepted → agents' retried samples land after the copy, in order → ready
//! ```
//!
//! Design choices:
//! - The dump is remote-write bodies, so B ingests it through [`AggregatorState::ingest_body`]: the
//!   same validation, limits, counters and observers as any write, and values and timestamps arrive
//!   bit for bit (the store is lossless), so B answers the same PromQL as A over the window.
//! - B refuses writes (503 + `Retry-After`, which senders retry) until the copy ends: the store takes a
//!   series' samples only forward in time, so an agent's newer sample landing first would make the
//!   copy's older ones out of order. Agents write to every replica, warming or not, and keep what B
//!   refused in their queues; it lands after the copy. Samples A had already sent that the agent also
//!   retries to B arrive twice: identical copies of held samples are ignored and counted as duplicates
//!   (`surge_aggregator_ingest_duplicate_samples_total`), not as out-of-order rejections, and the
//!   write answers 2xx.
//! - The copy is bounded: `timeout` for the whole warm-up (a peer that is down, slow or trickling is
//!   abandoned and the next is tried within what is left), `max_bytes` of compressed dump. A replica
//!   that gets nothing starts cold, as before, and says so in its log and metrics.
//! - A peer that is itself not ready answers 503: a cold copy is not worth taking, another peer may be
//!   warm. A replica never copies from itself: a peer address that is one of this host's and carries
//!   its own port is skipped, and the dump refuses a request carrying the asker's own instance id.
//! - ALB replication (CloudWatch's series exist only on the Lease leader) is a push: the leader writes
//!   them to every peer's `/api/v1/write` through [`PeerWriter`], a remote-write sender per peer (its own
//!   queue, retries, TLS and token). A replica that misses a push while down gets them with the dump.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use surge_metrics_api::ClientIdentity;
use surge_model::Sample;
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use surge_sender::{Batch, RemoteWriteSender, SenderMetrics, SenderOptions};
use tokio::sync::watch;

use crate::error::HttpError;
use crate::ingest::Sender;
use crate::{AggregatorState, now_ms};

/// The dump endpoint.
pub const DUMP_PATH: &str = "/internal/v1/peer/dump";
/// The dump's content type: frames of a big-endian `u32` length and a snappy-compressed
/// remote-write 1.0 `WriteRequest` each.
pub const DUMP_CONTENT_TYPE: &str = "application/x-surge-peer-dump";
/// Response header: since when (ms since the epoch) the answering replica holds complete history.
pub const HISTORY_SINCE_HEADER: &str = "x-surge-history-since-ms";
/// Request header: the asking replica's instance id, so a replica never copies from itself.
pub const INSTANCE_HEADER: &str = "x-surge-instance";

/// Uncompressed bytes of one frame before it is cut (a series is never split across frames).
const FRAME_RAW_BYTES: usize = 1 << 20;
/// Frames buffered between the encoder and the connection: the dump's memory on the serving side.
const FRAMES_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The warm-up's and the dump's own metrics.
#[derive(Debug, Clone, Default)]
pub struct PeerMetrics {
    attempts: Family<ResultLabel, Counter>,
    samples: Counter,
    bytes: Counter,
    seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    dumps: Family<ResultLabel, Counter>,
    dump_bytes: Counter,
}

impl PeerMetrics {
    pub fn new(registry: &mut Registry) -> PeerMetrics {
        let m = PeerMetrics::default();
        registry.register(
            "surge_aggregator_peer_warmup_attempts",
            "Warm-up copies asked of a peer replica, by result (ok, partial, self, unavailable, error, timeout, too_large, no_peer)",
            m.attempts.clone(),
        );
        registry.register(
            "surge_aggregator_peer_warmup_samples",
            "Samples ingested from peer replicas' dumps at start",
            m.samples.clone(),
        );
        registry.register(
            "surge_aggregator_peer_warmup_bytes",
            "Compressed dump bytes read from peer replicas at start",
            m.bytes.clone(),
        );
        registry.register(
            "surge_aggregator_peer_warmup_seconds",
            "How long the warm-up from peers took at start",
            m.seconds.clone(),
        );
        registry.register(
            "surge_aggregator_peer_dumps",
            "Dumps of the recent window served to starting peers, by result (ok, unavailable, self, refused)",
            m.dumps.clone(),
        );
        registry.register(
            "surge_aggregator_peer_dump_bytes",
            "Compressed bytes of dumps served to peers",
            m.dump_bytes.clone(),
        );
        m
    }

    fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    fn dump(&self, result: &'static str) {
        self.dumps.get_or_create(&ResultLabel { result }).inc();
    }
}

// ---------------------------------------------------------------------------------------------
// Serving side

#[derive(Debug, serde::Deserialize)]
pub struct DumpQuery {
    /// The oldest sample wanted; default: the store's retention back from now.
    min_time_ms: Option<i64>,
}

/// `GET /internal/v1/peer/dump`: every series' samples (staleness markers included) from `min_time_ms`
/// to now, as a stream of frames (see [`DUMP_CONTENT_TYPE`]). Authenticated as remote-write is when
/// write authentication is on; 503 while this replica is not ready itself.
pub async fn dump_handler(
    State(state): State<Arc<AggregatorState>>,
    client_cert: Option<Extension<ClientIdentity>>,
    headers: HeaderMap,
    Query(q): Query<DumpQuery>,
) -> Result<Response, HttpError> {
    let metrics = state.peer_metrics().clone();
    if let Some(auth) = state.write_auth() {
        let cn = client_cert
            .as_ref()
            .map(|c| c.0.common_name.as_deref().unwrap_or(""));
        if let Err(refusal) = auth.check(&headers, cn).await {
            metrics.dump("refused");
            tracing::warn!(reason = %refusal, "peer dump refused: not authenticated");
            return Err(HttpError::Unauthenticated(refusal));
        }
    }
    let asker = headers
        .get(INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if asker == state.instance_id() {
        metrics.dump("self");
        return Ok((
            StatusCode::CONFLICT,
            "a replica does not copy from itself\n",
        )
            .into_response());
    }
    if !state.is_ready() {
        metrics.dump("unavailable");
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: this replica is warming up itself\n",
        )
            .into_response());
    }
    let now = now_ms();
    let min_ms = q
        .min_time_ms
        .unwrap_or_else(|| now.saturating_sub(state.cache().retention_ms()));
    let history_since = state.cache().history_since();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(FRAMES_IN_FLIGHT);
    let st = state.clone();
    // Reading the store and compressing is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || encode_dump(&st, min_ms, now, &tx, &metrics));
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|frame| frame.map(Ok::<_, std::convert::Infallible>))
    });
    state.peer_metrics().dump("ok");
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(DUMP_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&history_since.to_string()) {
        h.insert(HISTORY_SINCE_HEADER, v);
    }
    Ok(response)
}

/// Encodes the window into frames and sends them until done or the asker hung up.
fn encode_dump(
    state: &AggregatorState,
    min_ms: i64,
    max_ms: i64,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    metrics: &PeerMetrics,
) {
    // An empty selection visits every series; the list is taken first so no store lock is held
    // while the connection is slow.
    let Ok(all) = state.cache().select(&[], usize::MAX) else {
        return;
    };
    let mut encoder = snap::raw::Encoder::new();
    let mut raw = Vec::with_capacity(FRAME_RAW_BYTES + (64 << 10));
    let mut samples: Vec<Sample> = Vec::new();
    let mut send = |raw: &mut Vec<u8>| -> bool {
        let body = compress(raw, &mut encoder);
        raw.clear();
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        frame.extend_from_slice(&body);
        metrics.dump_bytes.inc_by(frame.len() as u64);
        tx.blocking_send(Bytes::from(frame)).is_ok()
    };
    for series in &all {
        samples.clear();
        series.read(|ring| ring.range_into(min_ms, max_ms, &mut samples));
        if samples.is_empty() {
            continue;
        }
        encode_series(&mut raw, &encode_label_block(series.labels()), &samples);
        if raw.len() >= FRAME_RAW_BYTES && !send(&mut raw) {
            return;
        }
    }
    if !raw.is_empty() {
        send(&mut raw);
    }
}

// ---------------------------------------------------------------------------------------------
// Starting side

/// How a starting replica reaches its peers.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    /// `http` or `https`.
    pub scheme: String,
    /// TLS toward `https` peers: CA, client certificate, the name their certificate carries.
    pub tls: Option<surge_sender::ClientTls>,
    /// `Authorization: Bearer` from this file, read when the warm-up starts.
    pub bearer_token_file: Option<PathBuf>,
}

impl PeerClient {
    /// A client for one peer and the URL base to reach it by (`server_name` resolved to the peer's
    /// address when set, so SNI and verification use it).
    fn for_peer(&self, address: &str) -> Result<(reqwest::Client, String), CopyError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder().no_proxy();
        let mut authority = address.to_owned();
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| CopyError::Setup(format!("ca_file {}: {e}", ca.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| CopyError::Setup(format!("ca_file {}: {e}", ca.display())))?;
                b = b.tls_certs_only(certs);
            }
            if let Some((cert, key)) = &tls.client_cert {
                let mut pem = std::fs::read(cert)
                    .map_err(|e| CopyError::Setup(format!("cert_file {}: {e}", cert.display())))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key).map_err(|e| {
                        CopyError::Setup(format!("key_file {}: {e}", key.display()))
                    })?,
                );
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| CopyError::Setup(format!("cert_file {}: {e}", cert.display())))?;
                b = b.identity(id);
            }
            if tls.insecure_skip_verify {
                b = b.tls_danger_accept_invalid_certs(true);
            }
            if let (Some(name), Ok(addr)) = (&tls.server_name, address.parse::<SocketAddr>()) {
                b = b.resolve(name, addr);
                authority = format!("{name}:{}", addr.port());
            }
        }
        let client = b
            .build()
            .map_err(|e| CopyError::Setup(format!("TLS client: {e}")))?;
        Ok((client, format!("{}://{authority}", self.scheme)))
    }
}

/// The warm-up's bounds.
#[derive(Debug, Clone)]
pub struct WarmUpOptions {
    /// The whole warm-up's deadline, waiting for the peer list included.
    pub timeout: Duration,
    /// Compressed dump bytes read at most.
    pub max_bytes: u64,
    /// How far back to copy (the store's retention: what its readers can ask for).
    pub window: Duration,
    /// This replica's own listening port, to recognise itself among the peers.
    pub own_port: u16,
}

/// What a warm-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmUpReport {
    /// The peer copied from, when one answered.
    pub peer: Option<String>,
    pub samples: u64,
    pub bytes: u64,
    /// Since when the store now holds complete history; `None` when no complete copy was made.
    pub history_since_ms: Option<i64>,
    /// Per peer tried, the result (`ok`, `partial`, `self`, `unavailable`, `error`, `timeout`,
    /// `too_large`).
    pub attempts: Vec<(String, &'static str)>,
}

/// Why one peer's copy ended early.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("is this replica")]
    IsSelf,
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the dump is malformed: {0}")]
    Malformed(String),
    #[error("the dump is over max_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("the warm-up deadline passed")]
    Timeout,
    #[error("{0}")]
    Setup(String),
}

impl CopyError {
    fn result(&self) -> &'static str {
        match self {
            CopyError::Status(s) if *s == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            CopyError::IsSelf => "self",
            CopyError::Status(_)
            | CopyError::Request(_)
            | CopyError::Malformed(_)
            | CopyError::Setup(_) => "error",
            CopyError::TooLarge(_) => "too_large",
            CopyError::Timeout => "timeout",
        }
    }
}

/// Copies the recent window from the first peer that gives all of it, within `opts`' bounds. Peers
/// come from `peers` (complete lists of `host:port`; the first non-empty list is waited for within the
/// deadline). Never fails: a replica that copies nothing starts cold.
pub async fn warm_up_from_peers(
    state: &Arc<AggregatorState>,
    mut peers: watch::Receiver<Vec<String>>,
    client: &PeerClient,
    opts: &WarmUpOptions,
) -> WarmUpReport {
    let started = tokio::time::Instant::now();
    let deadline = started + opts.timeout;
    let metrics = state.peer_metrics().clone();
    let mut report = WarmUpReport::default();
    let list = tokio::time::timeout_at(deadline, async {
        loop {
            let l = peers.borrow_and_update().clone();
            if !l.is_empty() || peers.changed().await.is_err() {
                return l;
            }
        }
    })
    .await
    .unwrap_or_default();
    let token = client.bearer_token_file.as_ref().and_then(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| tracing::warn!(path = %p.display(), error = %e, "peer warm-up: bearer_token_file unreadable"))
            .ok()
            .map(|t| t.trim().to_owned())
    });
    let min_ms = now_ms().saturating_sub(i64::try_from(opts.window.as_millis()).unwrap_or(0));
    for address in list {
        if is_own_address(&address, opts.own_port) {
            report.attempts.push((address, "self"));
            metrics.attempt("self");
            continue;
        }
        let copied = tokio::time::timeout_at(
            deadline,
            copy_from(
                state,
                &address,
                client,
                token.as_deref(),
                min_ms,
                opts,
                &mut report,
            ),
        )
        .await
        .unwrap_or(Err(CopyError::Timeout));
        match copied {
            Ok(peer_since) => {
                report.attempts.push((address.clone(), "ok"));
                metrics.attempt("ok");
                report.peer = Some(address);
                report.history_since_ms = Some(peer_since.max(min_ms));
                break;
            }
            Err(e) => {
                let result = if report.samples > 0 && e.result() != "self" {
                    "partial"
                } else {
                    e.result()
                };
                tracing::warn!(peer = %address, error = %e, "peer warm-up: copy from this peer failed");
                report.attempts.push((address, result));
                metrics.attempt(result);
                if matches!(e, CopyError::Timeout | CopyError::TooLarge(_)) {
                    break;
                }
            }
        }
    }
    if report.attempts.is_empty() {
        metrics.attempt("no_peer");
    }
    metrics.seconds.set(started.elapsed().as_secs_f64());
    report
}

/// One peer's dump, ingested frame by frame; returns the peer's own history start.
async fn copy_from(
    state: &Arc<AggregatorState>,
    address: &str,
    client: &PeerClient,
    token: Option<&str>,
    min_ms: i64,
    opts: &WarmUpOptions,
    report: &mut WarmUpReport,
) -> Result<i64, CopyError> {
    let (http, base) = client.for_peer(address)?;
    let url = format!("{base}{DUMP_PATH}?min_time_ms={min_ms}");
    let mut req = http.get(url).header(INSTANCE_HEADER, state.instance_id());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await?;
    match resp.status() {
        s if s.is_success() => {}
        StatusCode::CONFLICT => return Err(CopyError::IsSelf),
        s => return Err(CopyError::Status(s)),
    }
    let peer_since = resp
        .headers()
        .get(HISTORY_SINCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(surge_store::HISTORY_PENDING);
    let metrics = state.peer_metrics().clone();
    let mut frames = FrameReader::default();
    while let Some(chunk) = resp.chunk().await? {
        report.bytes += chunk.len() as u64;
        metrics.bytes.inc_by(chunk.len() as u64);
        if report.bytes > opts.max_bytes {
            return Err(CopyError::TooLarge(opts.max_bytes));
        }
        frames.push(&chunk);
        while let Some(frame) = frames.next_frame().map_err(CopyError::Malformed)? {
            let st = state.clone();
            let summary = tokio::task::spawn_blocking(move || {
                st.ingest_body(&frame, Sender::Other, now_ms())
            })
            .await
            .map_err(|e| CopyError::Malformed(e.to_string()))?
            .map_err(|e| CopyError::Malformed(e.to_string()))?;
            report.samples += summary.accepted;
            metrics.samples.inc_by(summary.accepted);
        }
    }
    if !frames.is_empty() {
        return Err(CopyError::Malformed("the dump ends inside a frame".into()));
    }
    Ok(peer_since)
}

/// Cuts a byte stream into frames (big-endian `u32` length, then that many bytes).
#[derive(Debug, Default)]
struct FrameReader {
    buf: Vec<u8>,
}

/// A frame announcing more than this is malformed (a frame holds about [`FRAME_RAW_BYTES`] before
/// compression).
const MAX_FRAME_BYTES: usize = 64 << 20;

impl FrameReader {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(format!(
                "a frame announces {len} bytes, over {MAX_FRAME_BYTES}"
            ));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(frame))
    }
}

/// Whether `address` (`host:port`) is this replica: its port is `own_port` and its IP is one of this
/// host's (a UDP socket "connected" to it takes it as its own source address; nothing is sent).
pub fn is_own_address(address: &str, own_port: u16) -> bool {
    let Ok(addr) = address.parse::<SocketAddr>() else {
        return false;
    };
    if addr.port() != own_port {
        return false;
    }
    let bind: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(addr)?;
            s.local_addr()
        })
        .is_ok_and(|local| local.ip() == addr.ip())
}

// ---------------------------------------------------------------------------------------------
// Replication

/// Writes series to every peer replica (the leader's ALB series): a remote-write sender per peer
/// address (this replica excluded), following the peer list.
pub struct PeerWriter {
    members: Arc<RwLock<BTreeMap<String, RemoteWriteSender>>>,
}

impl PeerWriter {
    /// Follows `peers`; each peer gets a sender with `template`'s settings, named `NAME@ADDRESS`, whose
    /// URL is `template`'s scheme and path at the peer's address. Must run inside a tokio runtime.
    pub fn start(
        template: SenderOptions,
        mut peers: watch::Receiver<Vec<String>>,
        own_port: u16,
        client: reqwest::Client,
        metrics: &SenderMetrics,
    ) -> Arc<PeerWriter> {
        let members: Arc<RwLock<BTreeMap<String, RemoteWriteSender>>> = Arc::default();
        let (m, metrics) = (members.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                let wanted: Vec<String> = peers
                    .borrow_and_update()
                    .iter()
                    .filter(|a| !is_own_address(a, own_port))
                    .cloned()
                    .collect();
                sync_members(&m, &wanted, &template, &client, &metrics);
                if peers.changed().await.is_err() {
                    return;
                }
            }
        });
        Arc::new(PeerWriter { members })
    }

    /// Hands `batch` to every peer's sender (never blocks; each sender counts its own drops).
    pub fn submit(&self, batch: Batch) {
        let batch = Arc::new(batch);
        for sender in self.members.read().values() {
            sender.submit(batch.clone());
        }
    }

    /// The peers written to now.
    pub fn addresses(&self) -> Vec<String> {
        self.members.read().keys().cloned().collect()
    }
}

fn sync_members(
    members: &RwLock<BTreeMap<String, RemoteWriteSender>>,
    wanted: &[String],
    template: &SenderOptions,
    client: &reqwest::Client,
    metrics: &SenderMetrics,
) {
    let mut m = members.write();
    m.retain(|address, _| wanted.contains(address));
    for address in wanted {
        if m.contains_key(address) {
            continue;
        }
        let mut o = template.clone();
        o.name = format!("{}@{address}", template.name);
        o.url = match template.url.split_once("://") {
            Some((scheme, rest)) => {
                let path = rest.find('/').map_or("/api/v1/write", |i| &rest[i..]);
                format!("{scheme}://{address}{path}")
            }
            None => format!("http://{address}/api/v1/write"),
        };
        match RemoteWriteSender::try_start(o, client.clone(), metrics) {
            Ok(s) => {
                tracing::info!(%address, "peer replica joined: replicating to it");
                m.insert(address.clone(), s);
            }
            Err(e) => tracing::warn!(%address, error = %e, "peer replica refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_across_chunks_and_oversized_ones_refused() {
        let mut r = FrameReader::default();
        let mut stream = Vec::new();
        for payload in [&b"abc"[..], b"", b"hello"] {
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        let mut got = Vec::new();
        for byte in stream {
            r.push(&[byte]);
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![b"abc".to_vec(), Vec::new(), b"hello".to_vec()]);
        assert!(r.is_empty());
        r.push(&u32::MAX.to_be_bytes());
        assert!(r.next_frame().unwrap_err().contains("announces"));
    }

    #[test]
    fn an_address_is_this_replica_only_with_a_local_ip_and_its_port() {
        assert!(is_own_address("127.0.0.1:9091", 9091));
        assert!(!is_own_address("127.0.0.1:9092", 9091));
        // TEST-NET-1: never an address of this host.
        assert!(!is_own_address("192.0.2.1:9091", 9091));
        assert!(!is_own_address("not-an-ip:9091", 9091));
    }
}
