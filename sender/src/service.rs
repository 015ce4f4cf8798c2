//! The network end of a shard: one request body in, delivered or given up on out.
//!
//! The stack, outermost first (hand-written rather than tower, because the retry needs the response's
//! `Retry-After` and the shutdown token, and the "stack" is three small steps):
//!
//! 1. one request in flight per shard: keeps each series in time order (the shard awaits [`deliver`]);
//!    parallelism comes from the shards instead;
//! 2. retry with exponential backoff and jitter: 5xx, 429 and network failures are usually transient, and
//!    doubling the wait keeps a struggling receiver from being hammered by every agent at once;
//! 3. a timeout per attempt (`remote_timeout`): a receiver that hangs must not stall the shard forever;
//! 4. the HTTP POST itself ([`HttpTransport`]).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{RequestRetried, RetryReason};
use super::metrics::DestinationMetrics;
use super::{InvalidSenderOptions, QueueOptions, SenderOptionError, SenderOptions};

/// `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("surge-agent/", env!("CARGO_PKG_VERSION"));

/// A `Retry-After` longer than `max_backoff` × this is cut to it: the receiver's wish is honoured, but a
/// misconfigured receiver (or clock skew on an HTTP date) cannot park a shard for hours. With the default
/// `max_backoff` of 5 s the cap is one minute.
pub(crate) const RETRY_AFTER_CAP_FACTOR: u32 = 12;

/// At most this much of an error response body is read (for the log line).
const ERROR_BODY_LIMIT: usize = 512;

/// How one attempt ended, before classification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptResult {
    /// The receiver answered.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the response body (error responses only), for the log.
        detail: String,
    },
    /// No answer within `remote_timeout`.
    Timeout,
    /// Connecting or talking to the receiver failed.
    Network(String),
}

/// Sends one encoded, compressed `WriteRequest`.
pub(crate) trait Transport: Send + Sync + 'static {
    fn send(&self, body: Bytes) -> impl Future<Output = AttemptResult> + Send;
}

/// The validated URL and headers every request of a destination carries.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    url: reqwest::Url,
    headers: HeaderMap,
}

impl RequestTemplate {
    /// The client (and URL) of a destination with TLS options.
    pub(crate) fn tls_client(
        &self,
        tls: &crate::ClientTls,
    ) -> Result<(reqwest::Client, reqwest::Url), String> {
        crate::auth::tls_client(tls, &self.url)
    }

    /// Validates `opts` (every problem at once) and builds the request headers.
    pub(crate) fn new(opts: &SenderOptions) -> Result<Self, InvalidSenderOptions> {
        let mut problems = Vec::new();
        let url = match reqwest::Url::parse(&opts.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
            _ => {
                problems.push(SenderOptionError::Url {
                    url: opts.url.clone(),
                });
                None
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static(surge_proto::remote_write::CONTENT_ENCODING),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(surge_proto::remote_write::CONTENT_TYPE),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        headers.insert(
            surge_proto::remote_write::VERSION_HEADER,
            HeaderValue::from_static(surge_proto::remote_write::VERSION),
        );
        for (name, value) in &opts.headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => {
                    if headers.contains_key(&n) {
                        problems.push(SenderOptionError::ReservedHeader { name: name.clone() });
                    } else {
                        headers.insert(n, v);
                    }
                }
                _ => problems.push(SenderOptionError::Header { name: name.clone() }),
            }
        }
        let q = &opts.queue_config;
        for (field, zero) in [
            ("remote_timeout", opts.remote_timeout.is_zero()),
            ("queue_config.capacity", q.capacity == 0),
            ("queue_config.max_shards", q.max_shards == 0),
            (
                "queue_config.max_samples_per_send",
                q.max_samples_per_send == 0,
            ),
            ("queue_config.min_backoff", q.min_backoff.is_zero()),
        ] {
            if zero {
                problems.push(SenderOptionError::Zero { field });
            }
        }
        if q.min_backoff > q.max_backoff {
            problems.push(SenderOptionError::Backoff {
                min: q.min_backoff,
                max: q.max_backoff,
            });
        }
        match url {
            Some(url) if problems.is_empty() => Ok(RequestTemplate { url, headers }),
            _ => Err(InvalidSenderOptions {
                destination: opts.name.clone(),
                problems,
            }),
        }
    }
}

/// Remote-write over HTTP with a shared `reqwest::Client` (connection pool, TLS set up by the caller).
pub(crate) struct HttpTransport {
    client: reqwest::Client,
    template: RequestTemplate,
    token: Option<crate::auth::TokenFile>,
}

impl HttpTransport {
    /// A destination with TLS options gets a client of its own instead of `client`.
    pub(crate) fn new(
        opts: &SenderOptions,
        client: reqwest::Client,
    ) -> Result<Self, InvalidSenderOptions> {
        let mut template = RequestTemplate::new(opts)?;
        let client = match &opts.tls {
            None => client,
            Some(tls) => {
                let (client, url) = crate::auth::tls_client(tls, &template.url).map_err(|e| {
                    InvalidSenderOptions {
                        destination: opts.name.clone(),
                        problems: vec![SenderOptionError::Tls(e)],
                    }
                })?;
                template.url = url;
                client
            }
        };
        Ok(HttpTransport {
            client,
            template,
            token: opts
                .bearer_token_file
                .clone()
                .map(crate::auth::TokenFile::new),
        })
    }
}

impl Transport for HttpTransport {
    async fn send(&self, body: Bytes) -> AttemptResult {
        let mut request = self
            .client
            .post(self.template.url.clone())
            .headers(self.template.headers.clone())
            .body(body);
        if let Some(token) = &self.token {
            match token.current() {
                Ok(t) => request = request.bearer_auth(&*t),
                // Never sent without its token: retried like a network error.
                Err(e) => return AttemptResult::Network(e),
            }
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return AttemptResult::Timeout,
            Err(e) => return AttemptResult::Network(error_chain(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut detail = Vec::new();
        if !response.status().is_success() {
            // Read a little of the error for the log; the rest is dropped with the connection.
            while detail.len() < ERROR_BODY_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => detail.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            detail.truncate(ERROR_BODY_LIMIT);
        } else {
            // Drain a success body (usually empty) so the connection goes back to the pool.
            while let Ok(Some(_)) = response.chunk().await {}
        }
        AttemptResult::Status {
            status,
            retry_after,
            detail: String::from_utf8_lossy(&detail).trim().to_owned(),
        }
    }
}

/// "error sending request: connection refused", the whole source chain on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parses a `Retry-After` value: delay-seconds or an IMF-fixdate HTTP date (the form servers must send;
/// the obsolete RFC 850 and asctime forms are ignored, falling back to the backoff).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → seconds since the epoch; `None` for any other form, for a date
/// that does not exist (`31 Feb`), and for dates before 1970 (no receiver means those, and a negative
/// epoch second has no `Duration`).
///
/// The calendar is jiff's, so the whole workspace has one date implementation. The format is spelled out
/// rather than using jiff's RFC 2822 parser because that one also accepts zones like `UTC` or `-0500`,
/// which an IMF-fixdate (always `GMT`) is not.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let mut parsed = jiff::fmt::strtime::parse("%a, %d %b %Y %H:%M:%S GMT", s).ok()?;
    // The weekday is redundant with the date; a receiver that gets it wrong still meant the date, so it
    // is not checked (as it never was).
    parsed.set_weekday(None);
    let civil = parsed.to_datetime().ok()?;
    let at = jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()?;
    u64::try_from(at.as_second()).ok()
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Delivered,
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Not retried: the receiver refused the data (4xx other than a retried 429, or an unexpected status).
    Rejected {
        status: u16,
        detail: String,
    },
}

/// remote-write 1.0: retry 5xx and network errors, 429 if configured; never other 4xx.
pub(crate) fn classify(result: AttemptResult, retry_on_http_429: bool) -> Verdict {
    match result {
        AttemptResult::Status { status, .. } if (200..300).contains(&status) => Verdict::Delivered,
        AttemptResult::Status {
            status,
            retry_after,
            detail,
        } if status >= 500 || (status == 429 && retry_on_http_429) => Verdict::Retry {
            reason: if status == 429 {
                RetryReason::Http429
            } else {
                RetryReason::Http5xx
            },
            retry_after,
            detail: format!("HTTP {status}: {detail}"),
        },
        AttemptResult::Status { status, detail, .. } => Verdict::Rejected { status, detail },
        AttemptResult::Timeout => Verdict::Retry {
            reason: RetryReason::Timeout,
            retry_after: None,
            detail: "no response within remote_timeout".to_owned(),
        },
        AttemptResult::Network(detail) => Verdict::Retry {
            reason: RetryReason::Network,
            retry_after: None,
            detail,
        },
    }
}

/// Exponential backoff: `min_backoff` doubling up to `max_backoff`, each wait drawn uniformly from
/// `[d/2, d]` ("equal jitter") so agents that failed together do not retry together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(opts: &QueueOptions) -> Self {
        Backoff {
            next: opts.min_backoff,
            max: opts.max_backoff.max(opts.min_backoff),
        }
    }

    /// The next wait; `retry_after` (capped at `max_backoff` × [`RETRY_AFTER_CAP_FACTOR`]) is a floor.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let jittered = d / 2 + d.mul_f64(rand::rng().random_range(0.0..=0.5));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max * RETRY_AFTER_CAP_FACTOR)),
            None => jittered,
        }
    }
}

/// How [`deliver`] ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    Delivered,
    Rejected {
        status: u16,
        detail: String,
    },
    /// The shutdown deadline passed while still trying.
    Cancelled,
}

/// Sends `body` until it is delivered, rejected, or the shutdown deadline cancels it.
pub(crate) async fn deliver<T: Transport>(
    transport: &T,
    body: Bytes,
    opts: &QueueOptions,
    remote_timeout: Duration,
    metrics: &DestinationMetrics,
    cancel: &CancellationToken,
    shard: usize,
) -> Delivery {
    let mut backoff = Backoff::new(opts);
    let mut attempt = 1u32;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Delivery::Cancelled,
            r = tokio::time::timeout(remote_timeout, transport.send(body.clone())) => {
                r.unwrap_or(AttemptResult::Timeout)
            }
        };
        metrics.observe_attempt(&result, started.elapsed());
        match classify(result, opts.retry_on_http_429) {
            Verdict::Delivered => return Delivery::Delivered,
            Verdict::Rejected { status, detail } => return Delivery::Rejected { status, detail },
            Verdict::Retry {
                reason,
                retry_after,
                detail,
            } => {
                let wait = backoff.next_delay(retry_after);
                RequestRetried {
                    shard,
                    reason,
                    attempt,
                    wait,
                    detail: &detail,
                }
                .emit(metrics);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Delivery::Cancelled,
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
