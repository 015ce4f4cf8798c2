//! The durable queue's own metrics, registered once into an explicit registry, labelled by destination.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    destination: String,
    reason: String,
}

/// Every durable queue's metrics; one per process.
#[derive(Clone, Default)]
pub struct WalMetrics {
    appended: Family<DestinationLabels, Counter>,
    replayed: Family<DestinationLabels, Counter>,
    acked: Family<DestinationLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    lost_batches: Family<DestinationLabels, Counter>,
    corrupt_bytes: Family<DestinationLabels, Counter>,
    disk_bytes: Family<DestinationLabels, Gauge>,
    backlog: Family<DestinationLabels, Gauge>,
}

impl WalMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = WalMetrics::default();
        registry.register(
            "surge_wal_appended_samples",
            "Samples accepted into the durable queue (written to its log).",
            m.appended.clone(),
        );
        registry.register(
            "surge_wal_replayed_samples",
            "Samples read back from disk and sent (after an outage or a restart).",
            m.replayed.clone(),
        );
        registry.register(
            "surge_wal_acked_samples",
            "Samples whose delivery advanced the persisted cursor.",
            m.acked.clone(),
        );
        registry.register(
            "surge_wal_samples_dropped",
            "Samples the durable queue gave up on, by reason (wal_full, disk_error, corrupt, shutdown).",
            m.dropped.clone(),
        );
        registry.register(
            "surge_wal_lost_batches",
            "Batches lost to a corrupt or truncated segment (their sample count is unknown).",
            m.lost_batches.clone(),
        );
        registry.register(
            "surge_wal_corrupt_bytes",
            "Bytes of corrupt or truncated segment data skipped.",
            m.corrupt_bytes.clone(),
        );
        registry.register(
            "surge_wal_disk_bytes",
            "Bytes of segment files on disk.",
            m.disk_bytes.clone(),
        );
        registry.register(
            "surge_wal_backlog_samples",
            "Samples accepted but not yet acknowledged by the destination.",
            m.backlog.clone(),
        );
        m
    }

    pub(crate) fn destination(&self, name: &str) -> DestinationMetrics {
        let d = DestinationLabels {
            destination: name.to_owned(),
        };
        DestinationMetrics {
            name: name.to_owned(),
            dropped: self.dropped.clone(),
            appended: self.appended.get_or_create(&d).clone(),
            replayed: self.replayed.get_or_create(&d).clone(),
            acked: self.acked.get_or_create(&d).clone(),
            lost_batches: self.lost_batches.get_or_create(&d).clone(),
            corrupt_bytes: self.corrupt_bytes.get_or_create(&d).clone(),
            disk_bytes: self.disk_bytes.get_or_create(&d).clone(),
            backlog: self.backlog.get_or_create(&d).clone(),
        }
    }
}

/// One destination's handles.
#[derive(Clone)]
pub(crate) struct DestinationMetrics {
    name: String,
    dropped: Family<ReasonLabels, Counter>,
    pub(crate) appended: Counter,
    pub(crate) replayed: Counter,
    pub(crate) acked: Counter,
    pub(crate) lost_batches: Counter,
    pub(crate) corrupt_bytes: Counter,
    pub(crate) disk_bytes: Gauge,
    pub(crate) backlog: Gauge,
}

impl DestinationMetrics {
    /// Counts and logs `n` samples dropped for `reason`.
    pub(crate) fn dropped(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        tracing::warn!(destination = %self.name, reason, samples = n, "durable queue dropped samples");
        self.dropped
            .get_or_create(&ReasonLabels {
                destination: self.name.clone(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}
