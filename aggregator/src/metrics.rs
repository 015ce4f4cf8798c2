//! The aggregator's own ingest and query metrics, registered into a registry passed in (never a global).
//!
//! Label values are `&'static str` from closed sets (sender, reason, code), so cardinality is bounded.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ingest::{RejectReason, RequestError, Sender};

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];

/// Counters of the remote-write endpoint.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Accepted samples by sender.
    pub samples: Family<L1, Counter>,
    /// Identical copies of held samples, ignored, by sender.
    pub duplicate_samples: Family<L1, Counter>,
    /// Rejected samples by sender and reason.
    pub rejected_samples: Family<L2, Counter>,
    /// Requests by sender and response code.
    pub requests: Family<L2, Counter>,
    /// Requests refused as a whole by sender and reason.
    pub rejected_requests: Family<L2, Counter>,
}

impl IngestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "surge_aggregator_ingest_samples",
            "Samples accepted by remote-write ingest, by sender",
            self.samples.clone(),
        );
        registry.register(
            "surge_aggregator_ingest_duplicate_samples",
            "Samples identical to one already held (same series, timestamp and value: a retry, or a resend after a peer's copy), ignored without error, by sender",
            self.duplicate_samples.clone(),
        );
        registry.register(
            "surge_aggregator_ingest_rejected_samples",
            "Samples rejected by remote-write ingest, by sender and reason",
            self.rejected_samples.clone(),
        );
        registry.register(
            "surge_aggregator_ingest_requests",
            "Remote-write requests, by sender and HTTP status code",
            self.requests.clone(),
        );
        registry.register(
            "surge_aggregator_ingest_rejected_requests",
            "Remote-write requests refused as a whole, by sender and reason",
            self.rejected_requests.clone(),
        );
    }

    pub fn accepted(&self, sender: Sender, n: u64) {
        if n > 0 {
            self.samples
                .get_or_create(&[("sender", sender.as_str())])
                .inc_by(n);
        }
    }

    pub fn duplicates(&self, sender: Sender, n: u64) {
        if n > 0 {
            self.duplicate_samples
                .get_or_create(&[("sender", sender.as_str())])
                .inc_by(n);
        }
    }

    pub fn rejected(&self, sender: Sender, reason: RejectReason, n: u64) {
        if n > 0 {
            self.rejected_samples
                .get_or_create(&[("sender", sender.as_str()), ("reason", reason.as_str())])
                .inc_by(n);
        }
    }

    pub fn request(&self, sender: Sender, code: u16) {
        self.requests
            .get_or_create(&[("sender", sender.as_str()), ("code", code_str(code))])
            .inc();
    }

    pub fn request_rejected(&self, sender: Sender, err: &RequestError) {
        self.rejected_requests
            .get_or_create(&[("sender", sender.as_str()), ("reason", err.reason())])
            .inc();
    }
}

fn code_str(code: u16) -> &'static str {
    match code {
        204 => "204",
        400 => "400",
        413 => "413",
        401 => "401",
        408 => "408",
        415 => "415",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

fn duration_histogram() -> Histogram {
    // 10 µs .. ~10 s.
    Histogram::new(exponential_buckets(1e-5, 4.0, 11))
}

/// Latency of the query API.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    /// Query latency by endpoint (`query`, `query_range`, `series`, `labels`, `label_values`).
    pub duration: Family<L1, Histogram, fn() -> Histogram>,
    /// Queries refused or stopped by a limit, by reason (`timeout`, `too_many_samples`,
    /// `too_many_series`).
    pub refused: Family<L1, Counter>,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        QueryMetrics {
            duration: Family::new_with_constructor(duration_histogram),
            refused: Family::default(),
        }
    }
}

impl QueryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "surge_aggregator_query_duration_seconds",
            "Latency of Prometheus API queries, by endpoint",
            self.duration.clone(),
        );
        registry.register(
            "surge_aggregator_queries_refused",
            "Queries refused or stopped by a limit, by reason",
            self.refused.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn observe(&self, endpoint: &'static str, seconds: f64) {
        self.duration
            .get_or_create(&[("endpoint", endpoint)])
            .observe(seconds);
    }
}
