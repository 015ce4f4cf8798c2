//! The agent's own metrics, registered into an explicit registry (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobReason {
    pub job: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobHealth {
    pub job: String,
    pub health: &'static str,
}

/// Counters and gauges of the scrape side.
#[derive(Clone)]
pub struct ScrapeMetrics {
    pub scrapes: Family<JobLabel, Counter>,
    pub failures: Family<JobReason, Counter>,
    pub duration: Family<JobLabel, Histogram>,
    pub samples_scraped: Family<JobLabel, Counter>,
    pub samples_shipped: Family<JobLabel, Counter>,
    pub samples_dropped: Family<JobReason, Counter>,
    pub samples_relabeled_away: Family<JobLabel, Counter>,
    pub stale_markers: Family<JobLabel, Counter>,
    pub targets: Family<JobHealth, Gauge>,
    pub series_cached: Family<JobLabel, Gauge>,
}

impl ScrapeMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = ScrapeMetrics {
            scrapes: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ])
            }),
            samples_scraped: Family::default(),
            samples_shipped: Family::default(),
            samples_dropped: Family::default(),
            samples_relabeled_away: Family::default(),
            stale_markers: Family::default(),
            targets: Family::default(),
            series_cached: Family::default(),
        };
        registry.register("surge_scrapes", "Scrapes attempted", m.scrapes.clone());
        registry.register(
            "surge_scrape_failures",
            "Failed scrapes by reason (timeout, http_status, body_too_large, network, decode, parse, sample_limit, label_limit)",
            m.failures.clone(),
        );
        registry.register(
            "surge_scrape_duration_seconds",
            "Time from scrape start to a processed body",
            m.duration.clone(),
        );
        registry.register(
            "surge_scrape_samples",
            "Samples read from targets",
            m.samples_scraped.clone(),
        );
        registry.register(
            "surge_scrape_samples_shipped",
            "Samples handed to the remote-write queues (incl. synthetic series and staleness markers)",
            m.samples_shipped.clone(),
        );
        registry.register(
            "surge_scrape_samples_dropped",
            "Samples dropped on the scrape side by reason (duplicate, invalid, scrape_failed)",
            m.samples_dropped.clone(),
        );
        registry.register(
            "surge_scrape_samples_relabeled_away",
            "Samples removed on purpose by metric_relabel_configs",
            m.samples_relabeled_away.clone(),
        );
        registry.register(
            "surge_scrape_stale_markers",
            "Staleness markers written for series or targets that disappeared",
            m.stale_markers.clone(),
        );
        registry.register(
            "surge_targets",
            "Scrape targets by health",
            m.targets.clone(),
        );
        registry.register(
            "surge_scrape_series_cached",
            "Series held in the per-target scrape caches",
            m.series_cached.clone(),
        );
        m
    }

    pub fn job(&self, job: &str) -> JobLabel {
        JobLabel {
            job: job.to_owned(),
        }
    }
}
