//! Fetches one scrape body over HTTP with a deadline and a hard size cap, so a target that sends 1 GB or
//! never finishes costs bounded memory and time.

use std::time::Duration;

use surge_model::EscapingScheme;
use surge_proto::exposition::{self, Format};

/// Why a fetch failed. Each becomes the target's `up` = 0 reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    #[error("server returned HTTP status {0}")]
    Status(u16),
    #[error("body exceeds body_size_limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("request failed: {0}")]
    Network(String),
    #[error("cannot decode body: {0}")]
    Decode(String),
}

/// A fetched, decoded body and the format its Content-Type announced.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub format: Format,
}

/// Body buffers kept for reuse: scrape bodies of ~100 KB allocated and freed hundreds of times a second
/// fragment glibc's heap (measured: ~2 MiB more resident set at 200 targets × 1,000 series). At most
/// `POOL_BUFFERS` buffers of at most `POOL_MAX_BYTES` each are kept, so the pool's memory is bounded.
const POOL_BUFFERS: usize = 16;
const POOL_MAX_BYTES: usize = 4 << 20;

/// Shared HTTP client for all scrapes of one agent.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    pool: std::sync::Arc<parking_lot::Mutex<Vec<Vec<u8>>>>,
}

impl Fetcher {
    pub fn new(client: reqwest::Client) -> Self {
        Fetcher {
            client,
            pool: Default::default(),
        }
    }

    /// Hands a body back for reuse once it has been processed.
    pub fn recycle(&self, mut body: Vec<u8>) {
        if body.capacity() > POOL_MAX_BYTES {
            return;
        }
        body.clear();
        let mut pool = self.pool.lock();
        if pool.len() < POOL_BUFFERS {
            pool.push(body);
        }
    }

    /// GETs `url` with Prometheus 3's Accept header (asking for names escaped with `escaping`), within
    /// `timeout`, reading at most `limit` bytes (both on the wire and after gzip decoding).
    pub async fn fetch(
        &self,
        url: &str,
        timeout: Duration,
        limit: usize,
        escaping: EscapingScheme,
    ) -> Result<Fetched, FetchError> {
        let inner = self.fetch_inner(url, timeout, limit, escaping);
        match tokio::time::timeout(timeout, inner).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }

    async fn fetch_inner(
        &self,
        url: &str,
        timeout: Duration,
        limit: usize,
        escaping: EscapingScheme,
    ) -> Result<Fetched, FetchError> {
        let mut resp = self
            .client
            .get(url)
            .header(http::header::ACCEPT, exposition::accept_header(escaping))
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            )
            .send()
            .await
            .map_err(|e| FetchError::Network(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let headers = resp.headers();
        let format = exposition::format_from_content_type(
            headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let encoding = headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(FetchError::BodyTooLarge(limit));
        }
        // A recycled buffer, sized from Content-Length when the target sends one.
        let mut body = self.pool.lock().pop().unwrap_or_default();
        body.reserve(resp.content_length().map_or(0, |n| n as usize).min(limit));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Network(error_chain(&e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let body = match exposition::decode_body(&body, encoding.as_deref(), limit) {
            Ok(std::borrow::Cow::Borrowed(_)) => body,
            Ok(std::borrow::Cow::Owned(decoded)) => decoded,
            Err(e) => return Err(FetchError::Decode(e.to_string())),
        };
        Ok(Fetched { body, format })
    }
}

/// The error and its sources on one line: reqwest hides the useful part ("connection refused") in a source.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The request carries Prometheus 3's Accept header with the job's `escaping=`, and a quoted-name
    /// body comes back as the text format. A real loopback server (axum) records the header.
    #[tokio::test]
    async fn asks_for_the_configured_escaping() {
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: http::HeaderMap| {
                let record = record.clone();
                async move {
                    let accept = headers
                        .get(http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    record.lock().push(accept);
                    "{\"my.metric\"} 1\n"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let fetcher = Fetcher::new(crate::http_client().unwrap());
        let url = format!("http://{addr}/metrics");
        for scheme in [EscapingScheme::AllowUtf8, EscapingScheme::Values] {
            let f = fetcher
                .fetch(&url, Duration::from_secs(5), 1 << 20, scheme)
                .await
                .unwrap();
            assert_eq!(f.format, Format::Text);
            assert_eq!(f.body, b"{\"my.metric\"} 1\n");
        }
        let seen = seen.lock().clone();
        assert_eq!(
            seen,
            [
                exposition::accept_header(EscapingScheme::AllowUtf8),
                exposition::accept_header(EscapingScheme::Values)
            ]
        );
        assert!(seen[1].contains(";escaping=values;"), "{}", seen[1]);
    }
}
