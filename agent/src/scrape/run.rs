//! The per-target scrape loop, written once: wait for the target's slot in the interval, fetch with a
//! deadline, process, ship; when the target goes away, ship staleness markers for everything it wrote.
//! When the agent itself stops (a restart, a DaemonSet rollout) the series did not end: nothing is marked
//! stale, so the next agent's first scrape continues them (Prometheus writes no markers at shutdown either).
//!
//! The loop only sequences those stages: the processor decides what a scrape writes (samples, staleness
//! markers, the synthetic `up` family), [`JobScrapeMetrics`](crate::metrics::JobScrapeMetrics) counts it
//! and [`Outputs`] carries it away. Nothing here knows about parsing, labels or remote-write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use surge_model::{Labels, Tier};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::fetch::{FetchError, Fetched, Fetcher};
use super::processor::{HEALTH_SERIES, ScrapeReport, SeriesRules, TargetProcessor};
use super::target::ScrapeTarget;
use crate::metrics::ScrapeMetrics;
use surge_sender::{Batch, Outputs, SeriesSamples};

/// The error type moved to the processor, which builds it; re-exported so `scrape::run::ScrapeError`
/// keeps working.
pub use super::processor::ScrapeError;

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
    /// Where every scrape's batch goes: each batch to each output.
    pub outputs: Outputs,
    pub metrics: ScrapeMetrics,
    pub external_labels: Labels,
    /// The most samples one scrape may ship ([`Outputs::max_scrape_samples`]); a larger scrape is
    /// refused whole. `None`: no output bounds it.
    pub max_scrape_samples: Option<usize>,
    /// The agent-wide series count (`agent.total_series_limit`); `None`: no cap.
    pub series_total: Option<Arc<super::total::SeriesTotal>>,
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

/// How a scrape loop is told to stop, and why.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    target_gone: Arc<AtomicBool>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// The target was removed from discovery: its series ended, so the loop writes staleness markers.
    pub fn target_gone(&self) {
        self.target_gone.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// The agent is stopping: the target lives on, so the loop writes no markers (a restarted agent
    /// continues the series; markers would blank every autoscaling input until its first scrape).
    pub fn agent_stopping(&self) {
        self.token.cancel();
    }

    fn ends_series(&self) -> bool {
        self.target_gone.load(Ordering::Acquire)
    }
}

/// Scrapes `target` until `stop` fires; if the target is gone, then writes staleness markers for
/// everything it wrote.
pub async fn run_target(
    target: ScrapeTarget,
    ctx: Arc<ScrapeContext>,
    health: Arc<Mutex<TargetHealth>>,
    stop: Stop,
) {
    let cancel = &stop.token;
    let tier = target.job.tier;
    let mut proc = TargetProcessor::new(series_rules(&target, &ctx));
    if let Some(total) = &ctx.series_total {
        proc = proc.with_series_total(total.clone());
    }
    let metrics = ctx.metrics.for_job(&target.job.name);
    let mut status = TargetStatus::new(&target, health);
    let mut slots = ScrapeSlots::new(target.job.interval, target.offset());
    while let Some(ts) = slots.next(cancel).await {
        let started = Instant::now();
        let Some(fetched) = fetch(&ctx.fetcher, &target, cancel).await else {
            break;
        };
        let report = proc.scrape(&fetched, ts, || started.elapsed());
        recycle(&ctx.fetcher, fetched);
        metrics.scraped(&report, proc.cached_series());
        status.record(&report);
        ship(&ctx, tier, report.series, HEALTH_SERIES, now_ms());
    }
    if !stop.ends_series() {
        return;
    }
    // The target went away: end every series it wrote, including the synthetic ones.
    let ts = slots.end();
    let health = if proc.reported() { HEALTH_SERIES } else { 0 };
    let markers = proc.stop(ts);
    metrics.stopped(markers.len());
    ship(&ctx, tier, markers, health, ts);
}

/// How this target's samples get their labels and timestamps: its own labels, the agent's external
/// labels, and the job's honor, relabel and limit settings, with the outputs' bound on one scrape.
fn series_rules(target: &ScrapeTarget, ctx: &ScrapeContext) -> SeriesRules {
    let job = &target.job;
    let mut limits = job.limits;
    limits.queue_share = ctx.max_scrape_samples.unwrap_or(0);
    SeriesRules {
        target_labels: target.labels.clone(),
        external_labels: ctx.external_labels.clone(),
        honor_labels: job.honor_labels,
        honor_timestamps: job.honor_timestamps,
        metric_relabel: job.metric_relabel.clone(),
        limits,
        name_validation: job.name_validation,
        name_escaping: job.name_escaping,
    }
}

/// Fetches the target's body, or `None` when the target is removed meanwhile: a scrape whose series are
/// about to be marked stale is not worth finishing.
async fn fetch(
    fetcher: &Fetcher,
    target: &ScrapeTarget,
    cancel: &CancellationToken,
) -> Option<Result<Fetched, FetchError>> {
    let job = &target.job;
    tokio::select! {
        _ = cancel.cancelled() => None,
        r = fetcher.fetch(&target.url, job.timeout, job.body_size_limit, job.name_escaping) => Some(r),
    }
}

/// Hands a processed body's buffer back to the fetcher's pool.
fn recycle(fetcher: &Fetcher, fetched: Result<Fetched, FetchError>) {
    if let Ok(f) = fetched {
        fetcher.recycle(f.body);
    }
}

/// Hands one scrape's series to every output, the last `health` being its health series (which the
/// outputs keep room for); `scrape_end_ms` is carried for latency accounting.
fn ship(
    ctx: &ScrapeContext,
    tier: Tier,
    series: Vec<SeriesSamples>,
    health: usize,
    scrape_end_ms: i64,
) {
    let batch = Batch {
        tier,
        series,
        scrape_end_ms,
    };
    ctx.outputs.submit_with_health(batch, health);
}

/// A target's place in time: one tick per interval at the target's offset, and each scrape's timestamp.
struct ScrapeSlots {
    ticker: Interval,
    /// Wall time of the first slot (ms); the slots are `first_ms + k·period_ms`.
    first_ms: i64,
    period_ms: i64,
    /// The previous scrape's timestamp: every later one is greater.
    last_ms: i64,
}

impl ScrapeSlots {
    /// Starts at this target's slot: the next multiple of the interval plus its offset.
    fn new(interval: Duration, offset: Duration) -> Self {
        let now = now_ms();
        let period = interval.as_millis().max(1) as i64;
        let offset = offset.as_millis() as i64;
        let mut first = now - now.rem_euclid(period) + offset;
        if first < now {
            first += period;
        }
        let start = Instant::now() + Duration::from_millis((first - now).max(0) as u64);
        let mut ticker = tokio::time::interval_at(start, interval);
        // A scrape that overran its interval is not made up for: a burst of late scrapes would only
        // repeat the same values.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ScrapeSlots {
            ticker,
            first_ms: first,
            period_ms: period,
            last_ms: i64::MIN,
        }
    }

    /// Waits for the next slot and returns the scrape's timestamp, or `None` once `cancel` fires.
    async fn next(&mut self, cancel: &CancellationToken) -> Option<i64> {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = self.ticker.tick() => {}
        }
        // Never at or before the previous scrape's stamp (a wall clock stepped back within the tolerance).
        let ts = aligned_timestamp(now_ms(), self.first_ms, self.period_ms)
            .max(self.last_ms.saturating_add(1));
        self.last_ms = ts;
        Some(ts)
    }

    /// The timestamp of the markers written when the target goes away: now, but after every scrape.
    fn end(&self) -> i64 {
        now_ms().max(self.last_ms.saturating_add(1))
    }
}

/// What `/api/v1/targets` shows of one target, and one log line per change between up and down (not
/// one per failed scrape).
struct TargetStatus {
    health: Arc<Mutex<TargetHealth>>,
    job: Arc<str>,
    url: String,
    /// `None` before the first scrape.
    was_up: Option<bool>,
}

impl TargetStatus {
    fn new(target: &ScrapeTarget, health: Arc<Mutex<TargetHealth>>) -> Self {
        TargetStatus {
            health,
            job: target.job.name.clone(),
            url: target.url.clone(),
            was_up: None,
        }
    }

    fn record(&mut self, report: &ScrapeReport) {
        let up = report.up();
        if self.was_up != Some(up) {
            match (&report.error, self.was_up) {
                (Some(e), _) => {
                    tracing::warn!(job = %self.job, target = %self.url, reason = %e, "target down")
                }
                (None, Some(false)) => {
                    tracing::info!(job = %self.job, target = %self.url, "target up again")
                }
                _ => {}
            }
            self.was_up = Some(up);
        }
        let mut h = self.health.lock();
        h.health = if up { "up" } else { "down" };
        h.last_error = report.error.as_ref().map(ToString::to_string);
        h.last_scrape_ms = report.timestamp_ms;
        h.last_duration_seconds = report.duration.as_secs_f64();
        h.last_samples = report.stats.scraped;
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
