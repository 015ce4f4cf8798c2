//! The ingest endpoint's limits: a plain struct; the binary maps `surge-config` onto it.

use std::time::Duration;

/// Limits of the remote-write endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    /// The largest compressed request body accepted; larger bodies answer 413.
    pub max_body_bytes: usize,
    /// The largest decompressed body accepted (snappy announces the size first, so this is checked before
    /// allocating); larger bodies answer 413.
    pub max_decompressed_bytes: usize,
    /// Samples with timestamps further than this in the future are rejected and counted.
    pub max_future: Duration,
    /// Time allowed to receive a request's whole body (a client trickling its body is cut off: 408).
    pub body_timeout: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 128 << 20,
            max_future: Duration::from_secs(10 * 60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Limits of the Prometheus query API (`query`, `query_range`), beside the evaluator's `max_series`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Queries evaluated at once; more wait for a slot (within their deadline). Default 20, as
    /// Prometheus's `--query.max-concurrency`.
    pub max_concurrent: usize,
    /// A query's deadline, queueing included; past it the evaluation stops and the answer is 503
    /// `timeout`. Default 2 min, as Prometheus's `--query.timeout`.
    pub timeout: std::time::Duration,
    /// The most samples one query may hold (`EvalOptions::max_samples`). Default 50 000 000, as
    /// Prometheus's `--query.max-samples`.
    pub max_samples: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_concurrent: 20,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
        }
    }
}
