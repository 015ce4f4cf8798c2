//! The sender's own metrics, registered once into an explicit registry and labelled by destination.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::events::{DropReason, LogGate, RetryReason};
use super::request::RequestStats;
use super::service::AttemptResult;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    destination: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    destination: String,
    /// `2xx`, `4xx`, `5xx`, … or `timeout` / `network` when there was no answer.
    status: String,
}

type HistogramFamily = Family<DestinationLabels, Histogram, fn() -> Histogram>;

fn send_duration_histogram() -> Histogram {
    // 5 ms to ~20 s: a healthy loopback send is a few ms, a struggling one ends at remote_timeout.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Metrics of every remote-write destination. Clone it freely; clones share the series.
#[derive(Debug, Clone)]
pub struct SenderMetrics {
    samples_sent: Family<DestinationLabels, Counter>,
    bytes_sent: Family<DestinationLabels, Counter>,
    requests: Family<StatusLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    queue_samples: Family<DestinationLabels, Gauge>,
    send_duration: HistogramFamily,
    highest_sent: Family<DestinationLabels, Gauge<f64, AtomicU64>>,
}

impl SenderMetrics {
    /// Registers the sender's metrics into `registry` (call once per process).
    pub fn new(registry: &mut Registry) -> Self {
        let m = SenderMetrics {
            samples_sent: Family::default(),
            bytes_sent: Family::default(),
            requests: Family::default(),
            retries: Family::default(),
            dropped: Family::default(),
            queue_samples: Family::default(),
            send_duration: HistogramFamily::new_with_constructor(send_duration_histogram),
            highest_sent: Family::default(),
        };
        registry.register(
            "surge_remote_write_samples_sent",
            "Samples delivered to the destination (2xx).",
            m.samples_sent.clone(),
        );
        registry.register(
            "surge_remote_write_sent_bytes",
            "Compressed request bytes delivered to the destination.",
            m.bytes_sent.clone(),
        );
        registry.register(
            "surge_remote_write_requests",
            "Request attempts by response status class (timeout/network when there was no response).",
            m.requests.clone(),
        );
        registry.register(
            "surge_remote_write_retries",
            "Request attempts that failed and were retried, by reason.",
            m.retries.clone(),
        );
        registry.register(
            "surge_remote_write_samples_dropped",
            "Samples given up on, by reason (queue_full, http_<status>, shutdown).",
            m.dropped.clone(),
        );
        registry.register(
            "surge_remote_write_queue_samples",
            "Samples held for the destination: queued, batching or in flight.",
            m.queue_samples.clone(),
        );
        registry.register(
            "surge_remote_write_send_duration_seconds",
            "Duration of one request attempt.",
            m.send_duration.clone(),
        );
        registry.register(
            "surge_remote_write_highest_sent_timestamp_seconds",
            "Timestamp of the newest sample delivered to the destination.",
            m.highest_sent.clone(),
        );
        m
    }

    /// The handles of one destination; `kind` names the output's kind in its log lines.
    pub(crate) fn destination(&self, name: &str, kind: &'static str) -> DestinationMetrics {
        let l = DestinationLabels {
            destination: name.to_owned(),
        };
        DestinationMetrics {
            destination: name.to_owned(),
            kind,
            samples_sent: self.samples_sent.get_or_create_owned(&l),
            bytes_sent: self.bytes_sent.get_or_create_owned(&l),
            queue_samples: self.queue_samples.get_or_create_owned(&l),
            send_duration: self.send_duration.get_or_create_owned(&l),
            highest_sent: self.highest_sent.get_or_create_owned(&l),
            highest_sent_ms: Mutex::new(i64::MIN),
            requests: self.requests.clone(),
            retries: self.retries.clone(),
            dropped_samples: self.dropped.clone(),
            retry_log: LogGate::default(),
            drop_log: LogGate::default(),
        }
    }
}

/// One destination's metric handles and log gates.
#[derive(Debug)]
pub(crate) struct DestinationMetrics {
    pub(crate) destination: String,
    /// `remote-write`, or a queued output's [`Deliver::KIND`](crate::Deliver::KIND).
    pub(crate) kind: &'static str,
    samples_sent: Counter,
    bytes_sent: Counter,
    pub(crate) queue_samples: Gauge,
    send_duration: Histogram,
    highest_sent: Gauge<f64, AtomicU64>,
    /// Guards the max so concurrent shards never move the gauge backwards.
    highest_sent_ms: Mutex<i64>,
    requests: Family<StatusLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    dropped_samples: Family<ReasonLabels, Counter>,
    pub(crate) retry_log: LogGate,
    pub(crate) drop_log: LogGate,
}

impl DestinationMetrics {
    pub(crate) fn observe_attempt(&self, result: &AttemptResult, took: Duration) {
        self.send_duration.observe(took.as_secs_f64());
        let status = match result {
            AttemptResult::Status { status, .. } => format!("{}xx", status / 100),
            AttemptResult::Timeout => "timeout".to_owned(),
            AttemptResult::Network(_) => "network".to_owned(),
        };
        self.requests
            .get_or_create(&StatusLabels {
                destination: self.destination.clone(),
                status,
            })
            .inc();
    }

    /// Like [`DestinationMetrics::observe_attempt`] for a queued output, whose receiver names the status.
    pub(crate) fn observe_status(&self, status: &str, took: Duration) {
        self.send_duration.observe(took.as_secs_f64());
        self.requests
            .get_or_create(&StatusLabels {
                destination: self.destination.clone(),
                status: status.to_owned(),
            })
            .inc();
    }

    pub(crate) fn delivered(&self, stats: &RequestStats, body_bytes: usize) {
        self.samples_sent.inc_by(stats.samples as u64);
        self.bytes_sent.inc_by(body_bytes as u64);
        if let Some(ts) = stats.highest_timestamp_ms {
            let mut highest = self.highest_sent_ms.lock();
            if ts > *highest {
                *highest = ts;
                self.highest_sent.set(ts as f64 / 1000.0);
            }
        }
    }

    pub(crate) fn retried(&self, reason: RetryReason) {
        self.retries
            .get_or_create(&ReasonLabels {
                destination: self.destination.clone(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn dropped(&self, reason: DropReason, samples: usize) {
        self.dropped_samples
            .get_or_create(&ReasonLabels {
                destination: self.destination.clone(),
                reason: reason.label().into_owned(),
            })
            .inc_by(samples as u64);
    }
}
