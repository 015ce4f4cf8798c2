//! Remote-write 1.0 ingest: `POST /api/v1/write`.
//!
//! # Rules
//!
//! - Framing problems refuse the whole request: a `Content-Encoding` other than `snappy` → 400 (a missing
//!   header is accepted and the body decoded as snappy, as Prometheus 2.x does), a `Content-Type` other than
//!   `application/x-protobuf` → 415, a body over `max_body_bytes` (or announcing a decompressed size over
//!   `max_decompressed_bytes`) → 413, corrupt snappy or protobuf → 400 with the reason.
//! - Per-series and per-sample problems never refuse the request (**surge rule**, unlike Prometheus, which
//!   answers 400 for the whole request on invalid labels or out-of-order samples): the offending series or
//!   sample is dropped and counted in `surge_aggregator_ingest_rejected_samples_total{reason}`, the rest is
//!   kept and the answer is 204. A sender retrying a partly applied batch then produces only counted
//!   duplicates, and one bad series from one target cannot block every other target's samples.
//! - Label rules: `__name__` present and a valid metric name, names valid, no duplicate names; empty values
//!   are dropped (an empty value means "no label"). NaN and ±Inf are ordinary values; only the staleness
//!   NaN ends a series. Samples newer than `now + max_future` or older than `now - retention` are rejected.
//!
//! # Hot path
//!
//! The decoder hands out borrowed label pairs; the series is looked up by a hash of the raw pairs computed
//! exactly as [`surge_model::Labels::hash64`] does, so a known series costs one hash and one map read, and no
//! `Labels` is built. Decode buffers live in a per-thread scratch area reused across requests.

use std::cell::RefCell;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use surge_metrics_api::ClientIdentity;
use surge_model::{Labels, METRIC_NAME, NameValidationScheme};
use surge_proto::remote_write::{DecodeError, SeriesRef, decompress, for_each_series};

use surge_store::cache::{AppendBounds, CreateError};
use surge_store::{SeriesCache, SeriesId, Touched, dedup_touched, millis};

use crate::AggregatorState;
use crate::error::HttpError;
use crate::options::IngestOptions;

/// Who sent a request: the product token of `User-Agent`, from a closed set so metric labels stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    Prometheus,
    Vmagent,
    SurgeAgent,
    GrafanaAgent,
    Alloy,
    OtelCollector,
    Other,
}

impl Sender {
    /// Classifies a `User-Agent` header by its first product token.
    pub fn from_user_agent(ua: Option<&str>) -> Sender {
        let Some(ua) = ua else {
            return Sender::Other;
        };
        let product = ua.split(['/', ' ']).next().unwrap_or("");
        match product.to_ascii_lowercase().as_str() {
            "prometheus" => Sender::Prometheus,
            "vmagent" | "victoriametrics" => Sender::Vmagent,
            "surge-agent" | "surge" => Sender::SurgeAgent,
            "grafanaagent" | "grafana-agent" => Sender::GrafanaAgent,
            "alloy" => Sender::Alloy,
            "opentelemetry" | "otelcol" | "otelcol-contrib" => Sender::OtelCollector,
            _ => Sender::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Prometheus => "Prometheus",
            Sender::Vmagent => "vmagent",
            Sender::SurgeAgent => "surge-agent",
            Sender::GrafanaAgent => "GrafanaAgent",
            Sender::Alloy => "Alloy",
            Sender::OtelCollector => "otelcol",
            Sender::Other => "other",
        }
    }
}

/// Why a sample was rejected (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    OutOfOrder,
    DuplicateTimestamp,
    TooOld,
    TooFarInFuture,
    MissingMetricName,
    InvalidMetricName,
    InvalidLabelName,
    DuplicateLabelName,
    SeriesLimit,
    HashCollision,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::OutOfOrder,
        RejectReason::DuplicateTimestamp,
        RejectReason::TooOld,
        RejectReason::TooFarInFuture,
        RejectReason::MissingMetricName,
        RejectReason::InvalidMetricName,
        RejectReason::InvalidLabelName,
        RejectReason::DuplicateLabelName,
        RejectReason::SeriesLimit,
        RejectReason::HashCollision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::MissingMetricName => "missing_metric_name",
            RejectReason::InvalidMetricName => "invalid_metric_name",
            RejectReason::InvalidLabelName => "invalid_label_name",
            RejectReason::DuplicateLabelName => "duplicate_label_name",
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::HashCollision => "hash_collision",
        }
    }
}

/// Why a whole request was refused. Rendered by [`HttpError`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `Content-Encoding` is set to something other than snappy.
    #[error(
        "unsupported Content-Encoding {0:?}: remote-write 1.0 bodies must be snappy block compressed"
    )]
    UnsupportedEncoding(String),
    /// `Content-Type` is set to something other than protobuf.
    #[error("unsupported Content-Type {0:?}: expected application/x-protobuf")]
    UnsupportedContentType(String),
    /// The compressed body is larger than `max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The body could not be read from the connection.
    #[error("reading the request body failed")]
    Body,
    /// The body did not arrive within `body_timeout`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The body is not a valid snappy-compressed `WriteRequest`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::UnsupportedEncoding(_) | RequestError::Body => StatusCode::BAD_REQUEST,
            RequestError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::BodyTooLarge { .. }
            | RequestError::Decode(DecodeError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Decode(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label of `surge_aggregator_ingest_rejected_requests_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::UnsupportedEncoding(_) => "unsupported_encoding",
            RequestError::UnsupportedContentType(_) => "unsupported_content_type",
            RequestError::BodyTooLarge { .. }
            | RequestError::Decode(DecodeError::TooLarge { .. }) => "too_large",
            RequestError::Body => "body_read",
            RequestError::BodyTimeout(_) => "body_timeout",
            RequestError::Decode(DecodeError::Snappy(_)) => "corrupt_snappy",
            RequestError::Decode(_) => "corrupt_protobuf",
        }
    }
}

/// What one request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub series: usize,
    pub accepted: u64,
    /// Identical copies of samples already held (a retry, or an agent's resend of what a peer's copy
    /// brought), ignored without error and counted apart from the rejections.
    pub duplicates: u64,
    /// Rejected samples, indexed like [`RejectReason::ALL`].
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Newest accepted sample timestamp.
    pub newest_ms: Option<i64>,
}

impl IngestSummary {
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejected[r as usize]
    }

    fn reject(&mut self, r: RejectReason, n: u64) {
        self.rejected[r as usize] += n;
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// Per-thread buffers reused across requests.
struct Scratch {
    decoder: snap::raw::Decoder,
    buf: Vec<u8>,
    touched: Vec<Touched>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        decoder: snap::raw::Decoder::new(),
        buf: Vec::new(),
        touched: Vec::new(),
    });
}

/// Buffers above this size are released after the request instead of kept for the next one.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// Hashes wire label pairs exactly as [`Labels::hash64`] hashes the same sorted set.
fn raw_hash(series: &SeriesRef<'_>) -> u64 {
    surge_store::hash_labels(series.labels())
}

/// Validates wire labels and builds the canonical label set.
fn build_labels(series: &SeriesRef<'_>) -> Result<Labels, RejectReason> {
    let mut pairs: Vec<(&str, &str)> = series.labels().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(RejectReason::DuplicateLabelName);
    }
    // Names are checked as Prometheus 3 checks remote-written ones: any non-empty UTF-8 (the decoder
    // already refused invalid UTF-8), so `{"k8s.pod.name"="..."}` lands as sent.
    const NAMES: NameValidationScheme = NameValidationScheme::Utf8;
    let mut has_name = false;
    for (n, v) in &pairs {
        if !NAMES.is_valid_label_name(n) {
            return Err(RejectReason::InvalidLabelName);
        }
        if *n == METRIC_NAME && !v.is_empty() {
            if !NAMES.is_valid_metric_name(v) {
                return Err(RejectReason::InvalidMetricName);
            }
            has_name = true;
        }
    }
    if !has_name {
        return Err(RejectReason::MissingMetricName);
    }
    Ok(Labels::from_pairs(
        pairs.into_iter().filter(|(_, v)| !v.is_empty()),
    ))
}

/// Applies a decompressed `WriteRequest` to the cache; `touched` is appended each series that accepted a
/// sample, once, with its newest accepted timestamp. Independent of HTTP, so the engine's tests and the
/// benches can call it.
pub fn apply_write_request(
    cache: &SeriesCache,
    opts: &IngestOptions,
    raw: &[u8],
    now_ms: i64,
    touched: &mut Vec<Touched>,
) -> Result<IngestSummary, DecodeError> {
    let bounds = AppendBounds {
        min_ms: now_ms.saturating_sub(cache.retention_ms()),
        max_ms: now_ms.saturating_add(millis(opts.max_future)),
        now_ms,
    };
    let retention = cache.retention_ms();
    let mut sum = IngestSummary::default();
    let start = touched.len();
    for_each_series(raw, |series| {
        sum.series += 1;
        let id = SeriesId(raw_hash(&series));
        let found = cache.get(id).filter(|s| s.labels_eq_pairs(series.labels()));
        let target = match found {
            Some(s) => s,
            None => {
                let created = build_labels(&series).and_then(|labels| {
                    cache.get_or_create(&labels, now_ms).map_err(|e| match e {
                        CreateError::Limit => RejectReason::SeriesLimit,
                        CreateError::Collision => RejectReason::HashCollision,
                    })
                });
                match created {
                    Ok(s) => s,
                    Err(reason) => {
                        sum.reject(reason, series.samples().count() as u64);
                        return Ok::<(), ()>(());
                    }
                }
            }
        };
        let out = target.append(series.samples(), bounds, retention);
        sum.accepted += out.accepted;
        sum.duplicates += out.duplicates;
        sum.reject(RejectReason::OutOfOrder, out.out_of_order);
        sum.reject(RejectReason::DuplicateTimestamp, out.duplicate_timestamp);
        sum.reject(RejectReason::TooOld, out.too_old);
        sum.reject(RejectReason::TooFarInFuture, out.too_far_in_future);
        if let Some(t) = out.newest_ms {
            sum.newest_ms = Some(sum.newest_ms.map_or(t, |m| m.max(t)));
            touched.push(Touched {
                id: target.id(),
                newest_ms: t,
            });
        }
        Ok(())
    })?
    .ok();
    // A request may carry a series more than once: one entry each, with its newest sample.
    let n = dedup_touched(&mut touched[start..]);
    touched.truncate(start + n);
    Ok(sum)
}

impl AggregatorState {
    /// Decompresses and applies one remote-write body; counts everything and notifies observers.
    pub fn ingest_body(
        &self,
        body: &[u8],
        sender: Sender,
        now_ms: i64,
    ) -> Result<IngestSummary, RequestError> {
        let result = SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = &mut *guard;
            decompress(
                body,
                self.ingest_opts.max_decompressed_bytes,
                &mut scratch.decoder,
                &mut scratch.buf,
            )?;
            scratch.touched.clear();
            let sum = apply_write_request(
                &self.cache,
                &self.ingest_opts,
                &scratch.buf,
                now_ms,
                &mut scratch.touched,
            )?;
            let observers = self.observers.read();
            if !scratch.touched.is_empty() {
                for o in observers.iter() {
                    o.on_ingest(&scratch.touched);
                }
            }
            for o in observers.iter() {
                o.on_write_request(&scratch.buf);
            }
            drop(observers);
            if scratch.buf.capacity() > KEEP_BUFFER_BYTES {
                scratch.buf = Vec::new();
            }
            Ok::<_, DecodeError>(sum)
        });
        let sum = result.map_err(RequestError::Decode)?;
        self.ingest_metrics.accepted(sender, sum.accepted);
        self.ingest_metrics.duplicates(sender, sum.duplicates);
        for r in RejectReason::ALL {
            self.ingest_metrics.rejected(sender, r, sum.rejected(r));
        }
        Ok(sum)
    }
}

fn check_headers(headers: &HeaderMap, opts: &IngestOptions) -> Result<(), RequestError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = String::from_utf8_lossy(enc.as_bytes());
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return Err(RequestError::UnsupportedEncoding(enc.into_owned()));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes());
        let mime = ct.split(';').next().unwrap_or("").trim();
        // A `proto=` parameter naming remote-write 2.0 is not supported (yet).
        let v2 = ct.contains("io.prometheus.write.v2");
        if !mime.eq_ignore_ascii_case("application/x-protobuf") || v2 {
            return Err(RequestError::UnsupportedContentType(ct.into_owned()));
        }
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > opts.max_body_bytes
    {
        return Err(RequestError::BodyTooLarge {
            limit: opts.max_body_bytes,
        });
    }
    Ok(())
}

/// `POST /api/v1/write`.
pub async fn write_handler(
    State(state): State<Arc<AggregatorState>>,
    client_cert: Option<Extension<ClientIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, HttpError> {
    let sender = Sender::from_user_agent(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    if let Some(auth) = state.write_auth() {
        let cn = client_cert
            .as_ref()
            .map(|c| c.0.common_name.as_deref().unwrap_or(""));
        if let Err(refusal) = auth.check(&headers, cn).await {
            let e = HttpError::Unauthenticated(refusal);
            state.ingest_metrics.request(sender, e.status().as_u16());
            tracing::warn!(sender = sender.as_str(), reason = %e, "remote-write request refused: not authenticated");
            return Err(e);
        }
    }
    if !state.accepting_writes() {
        state.ingest_metrics.request(sender, 503);
        return Err(HttpError::Warming(
            "warming up from a peer replica: retry shortly".into(),
        ));
    }
    let result = async {
        check_headers(&headers, &state.ingest_opts)?;
        let limit = state.ingest_opts.max_body_bytes;
        let timeout = state.ingest_opts.body_timeout;
        let read = axum::body::to_bytes(body, limit);
        let bytes = match tokio::time::timeout(timeout, read).await {
            Err(_) => return Err(RequestError::BodyTimeout(timeout)),
            Ok(read) => read.map_err(|e| {
                // `to_bytes` reports an exceeded limit as an error whose source is `LengthLimitError`.
                let mut src: Option<&dyn std::error::Error> = Some(&e);
                while let Some(s) = src {
                    if s.to_string().contains("length limit exceeded") {
                        return RequestError::BodyTooLarge { limit };
                    }
                    src = s.source();
                }
                RequestError::Body
            })?,
        };
        // Decompressing and applying a large write is CPU work: it runs on the blocking pool so the
        // async threads keep accepting and answering other requests meanwhile.
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.ingest_body(&bytes, sender, crate::now_ms()))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "remote-write apply task failed");
                RequestError::Body
            })?
    }
    .await;
    match result {
        Ok(_) => {
            state.ingest_metrics.request(sender, 204);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            state.ingest_metrics.request(sender, e.status().as_u16());
            state.ingest_metrics.request_rejected(sender, &e);
            tracing::debug!(sender = sender.as_str(), error = %e, "remote-write request refused");
            Err(HttpError::Ingest(e))
        }
    }
}
