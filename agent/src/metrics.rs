//! The agent's own metrics, registered into an explicit registry (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::scrape::processor::{ScrapeReport, ScrapeStats};

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
            "Failed scrapes by reason (timeout, http_status, body_too_large, network, decode, parse, sample_limit, queue_share, series_memory_limit, series_total_limit, label_limit)",
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

    /// The counters one job's scrape loops keep.
    pub fn for_job(&self, job: &str) -> JobScrapeMetrics {
        JobScrapeMetrics {
            metrics: self.clone(),
            job: self.job(job),
        }
    }
}

/// [`ScrapeMetrics`] as a scrape loop of one job uses them: one method per event, so the loop itself
/// does no counter bookkeeping. Series are created on first use, so a job that never failed shows no
/// failure series and a target that never came up shows no sample counts.
#[derive(Clone)]
pub struct JobScrapeMetrics {
    metrics: ScrapeMetrics,
    job: JobLabel,
}

impl JobScrapeMetrics {
    /// Counts one finished scrape: the attempt and its duration, the failure reason or where the samples
    /// went, the staleness markers, what is shipped and how many series the target's cache holds.
    pub fn scraped(&self, report: &ScrapeReport, cached_series: usize) {
        let m = &self.metrics;
        m.scrapes.get_or_create(&self.job).inc();
        m.duration
            .get_or_create(&self.job)
            .observe(report.duration.as_secs_f64());
        match &report.error {
            Some(e) => {
                m.failures.get_or_create(&self.reason(e.reason())).inc();
            }
            None => self.samples(&report.stats),
        }
        self.stale_markers(report.stats.stale_markers);
        m.samples_shipped
            .get_or_create(&self.job)
            .inc_by(report.series.len() as u64);
        m.series_cached
            .get_or_create(&self.job)
            .set(cached_series as i64);
    }

    /// Counts the staleness markers written when a target goes away.
    pub fn stopped(&self, stale_markers: usize) {
        self.stale_markers(stale_markers);
    }

    /// Where a good scrape's samples went: read, relabeled away on purpose, or dropped as duplicate or
    /// invalid (the rest are shipped).
    fn samples(&self, stats: &ScrapeStats) {
        let m = &self.metrics;
        m.samples_scraped
            .get_or_create(&self.job)
            .inc_by(stats.scraped as u64);
        let relabeled = stats
            .scraped
            .saturating_sub(stats.post_relabel + stats.duplicates + stats.invalid);
        m.samples_relabeled_away
            .get_or_create(&self.job)
            .inc_by(relabeled as u64);
        for (reason, n) in [("duplicate", stats.duplicates), ("invalid", stats.invalid)] {
            if n > 0 {
                m.samples_dropped
                    .get_or_create(&self.reason(reason))
                    .inc_by(n as u64);
            }
        }
    }

    fn stale_markers(&self, n: usize) {
        self.metrics
            .stale_markers
            .get_or_create(&self.job)
            .inc_by(n as u64);
    }

    fn reason(&self, reason: &'static str) -> JobReason {
        JobReason {
            job: self.job.job.clone(),
            reason,
        }
    }
}
