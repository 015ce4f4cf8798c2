//! The per-target scrape loop: wait for the target's slot in the interval, fetch with a deadline, process,
//! add the synthetic series, ship. Written once; nothing here knows about parsing or labels.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use surge_model::Sample;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::fetch::{FetchError, Fetcher};
use super::processor::{ScrapeFailure, SeriesRules, TargetProcessor};
use super::target::ScrapeTarget;
use crate::metrics::ScrapeMetrics;
use surge_sender::{Batch, RemoteWriteSender, SeriesMeta, SeriesSamples};

/// Where a target stands, for `/api/v1/targets` and logs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TargetHealth {
    pub job: String,
    pub url: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `unknown` before the first scrape, then `up` or `down`.
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_scrape_ms: i64,
    pub last_duration_seconds: f64,
    pub last_samples: usize,
}

/// What every scrape loop shares.
pub struct ScrapeContext {
    pub fetcher: Fetcher,
    pub senders: Vec<RemoteWriteSender>,
    pub metrics: ScrapeMetrics,
    pub external_labels: surge_model::Labels,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How far a scrape may start from its slot and still be stamped with the slot's time, as Prometheus's
/// `--scrape.timestamp-tolerance` (default 2 ms) does: a target's timestamps are then exactly `interval`
/// apart, and the aggregator's blocks store each in 0 bits instead of the 2-3 bits a few milliseconds of
/// timer jitter cost (about 117 of the ~1,000 bytes a 5-minute series holds).
pub const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The timestamp of a scrape started at wall time `now` in a loop whose slots are `first + k·period`: the
/// nearest slot's time when `now` is within [`TIMESTAMP_TOLERANCE_MS`] of it, else `now`.
pub fn aligned_timestamp(now: i64, first: i64, period: i64) -> i64 {
    let period = period.max(1);
    let k = (now - first + period / 2).div_euclid(period);
    let slot = first + k * period;
    if (now - slot).abs() <= TIMESTAMP_TOLERANCE_MS {
        slot
    } else {
        now
    }
}

/// The synthetic series written after every scrape, in this order.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Scrapes `target` until `cancel` fires, then writes staleness markers for everything it wrote.
pub async fn run_target(
    target: ScrapeTarget,
    ctx: Arc<ScrapeContext>,
    health: Arc<Mutex<TargetHealth>>,
    cancel: CancellationToken,
) {
    let job = target.job.clone();
    let job_label = ctx.metrics.job(&job.name);
    let mut proc = TargetProcessor::new(SeriesRules {
        target_labels: target.labels.clone(),
        external_labels: ctx.external_labels.clone(),
        honor_labels: job.honor_labels,
        honor_timestamps: job.honor_timestamps,
        metric_relabel: job.metric_relabel.clone(),
        limits: job.limits,
    });
    let synthetic: Vec<SeriesMeta> = SYNTHETIC.iter().map(|n| proc.synthetic_series(n)).collect();

    // Start at this target's slot: the next multiple of the interval plus its offset.
    let interval = job.interval;
    let now = now_ms();
    let period = interval.as_millis().max(1) as i64;
    let offset = target.offset().as_millis() as i64;
    let mut first = now - now.rem_euclid(period) + offset;
    if first < now {
        first += period;
    }
    let start = Instant::now() + Duration::from_millis((first - now).max(0) as u64);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut was_up: Option<bool> = None;
    let mut last_ts = i64::MIN;

    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // Never at or before the previous scrape's stamp (a wall clock stepped back within the tolerance).
        let ts = aligned_timestamp(now_ms(), first, period).max(last_ts.saturating_add(1));
        last_ts = ts;
        let started = Instant::now();
        let fetched = tokio::select! {
            _ = cancel.cancelled() => break,
            r = ctx.fetcher.fetch(&target.url, job.timeout, job.body_size_limit) => r,
        };
        let result = match fetched {
            Ok(f) => {
                let r = proc
                    .process(&f.body, f.format, ts)
                    .map_err(ScrapeError::Process);
                ctx.fetcher.recycle(f.body);
                r
            }
            Err(e) => Err(ScrapeError::Fetch(e)),
        };
        let elapsed = started.elapsed();
        ctx.metrics.scrapes.get_or_create(&job_label).inc();
        ctx.metrics
            .duration
            .get_or_create(&job_label)
            .observe(elapsed.as_secs_f64());

        let (mut series, up, stats, err) = match result {
            Ok(out) => (out.series, true, out.stats, None),
            Err(e) => {
                ctx.metrics
                    .failures
                    .get_or_create(&crate::metrics::JobReason {
                        job: job.name.to_string(),
                        reason: e.reason(),
                    })
                    .inc();
                (
                    proc.fail(ts),
                    false,
                    Default::default(),
                    Some(e.to_string()),
                )
            }
        };
        if up {
            ctx.metrics
                .samples_scraped
                .get_or_create(&job_label)
                .inc_by(stats.scraped as u64);
            let relabeled = stats
                .scraped
                .saturating_sub(stats.post_relabel + stats.duplicates + stats.invalid);
            ctx.metrics
                .samples_relabeled_away
                .get_or_create(&job_label)
                .inc_by(relabeled as u64);
            for (reason, n) in [("duplicate", stats.duplicates), ("invalid", stats.invalid)] {
                if n > 0 {
                    ctx.metrics
                        .samples_dropped
                        .get_or_create(&crate::metrics::JobReason {
                            job: job.name.to_string(),
                            reason,
                        })
                        .inc_by(n as u64);
                }
            }
            ctx.metrics
                .stale_markers
                .get_or_create(&job_label)
                .inc_by(stats.stale_markers as u64);
        } else {
            ctx.metrics
                .stale_markers
                .get_or_create(&job_label)
                .inc_by(series.len() as u64);
        }
        let values = [
            if up { 1.0 } else { 0.0 },
            elapsed.as_secs_f64(),
            stats.scraped as f64,
            stats.post_relabel as f64,
            stats.series_added as f64,
        ];
        for (meta, v) in synthetic.iter().zip(values) {
            series.push(SeriesSamples {
                series: meta.clone(),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: v,
                }],
            });
        }
        ctx.metrics
            .samples_shipped
            .get_or_create(&job_label)
            .inc_by(series.len() as u64);
        ctx.metrics
            .series_cached
            .get_or_create(&job_label)
            .set(proc.cached_series() as i64);
        let samples = stats.scraped;
        ship(
            &ctx,
            Batch {
                tier: job.tier,
                series,
                scrape_end_ms: now_ms(),
            },
        );

        if was_up != Some(up) {
            match (&err, was_up) {
                (Some(e), _) => {
                    tracing::warn!(job = %job.name, target = %target.url, reason = %e, "target down")
                }
                (None, Some(false)) => {
                    tracing::info!(job = %job.name, target = %target.url, "target up again")
                }
                _ => {}
            }
            was_up = Some(up);
        }
        let mut h = health.lock();
        h.health = if up { "up" } else { "down" };
        h.last_error = err;
        h.last_scrape_ms = ts;
        h.last_duration_seconds = elapsed.as_secs_f64();
        h.last_samples = samples;
    }

    // The target went away: end every series it wrote, including the synthetic ones.
    let ts = now_ms().max(last_ts.saturating_add(1));
    let mut series = proc.fail(ts);
    if was_up.is_some() {
        for meta in &synthetic {
            series.push(SeriesSamples {
                series: meta.clone(),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: surge_model::stale_nan(),
                }],
            });
        }
    }
    ctx.metrics
        .stale_markers
        .get_or_create(&job_label)
        .inc_by(series.len() as u64);
    ship(
        &ctx,
        Batch {
            tier: job.tier,
            series,
            scrape_end_ms: ts,
        },
    );
}

fn ship(ctx: &ScrapeContext, batch: Batch) {
    if batch.series.is_empty() {
        return;
    }
    let batch = Arc::new(batch);
    for s in &ctx.senders {
        s.submit(batch.clone());
    }
}

/// A failed scrape, with a bounded `reason` for metrics and a full message for logs.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Fetch(FetchError),
    #[error(transparent)]
    Process(ScrapeFailure),
}

impl ScrapeError {
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(FetchError::Timeout(_)) => "timeout",
            ScrapeError::Fetch(FetchError::Status(_)) => "http_status",
            ScrapeError::Fetch(FetchError::BodyTooLarge(_)) => "body_too_large",
            ScrapeError::Fetch(FetchError::Network(_)) => "network",
            ScrapeError::Fetch(FetchError::Decode(_)) => "decode",
            ScrapeError::Process(ScrapeFailure::Parse(_)) => "parse",
            ScrapeError::Process(ScrapeFailure::SampleLimit { .. }) => "sample_limit",
            ScrapeError::Process(_) => "label_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_snap_to_the_slot_within_the_tolerance_only() {
        let (first, period) = (1_000_500, 1_000);
        assert_eq!(aligned_timestamp(1_000_500, first, period), 1_000_500);
        assert_eq!(aligned_timestamp(1_003_502, first, period), 1_003_500);
        assert_eq!(aligned_timestamp(1_003_498, first, period), 1_003_500);
        // Late by more than the tolerance: the real start time.
        assert_eq!(aligned_timestamp(1_003_503, first, period), 1_003_503);
        assert_eq!(aligned_timestamp(1_003_997, first, period), 1_003_997);
        // Before the first slot (a clock stepped back) and a zero period stay well defined.
        assert_eq!(aligned_timestamp(999_999, first, period), 999_999);
        assert_eq!(aligned_timestamp(1_000_501, first, 0), 1_000_501);
    }
}
