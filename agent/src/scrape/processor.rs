//! Turns one scrape into everything it ships: parse → target labels → metric relabeling → limits →
//! staleness → synthetic series. Pure and synchronous (no I/O, no clock: the scrape loop passes time in),
//! so it is tested and benchmarked without sockets.
//!
//! The per-target series cache is what makes the steady state cheap: a series' final label set and its
//! pre-encoded remote-write label block are computed once, the first time its exposition line is seen,
//! and found again by a 128-bit hash of that line's `name{labels}` text on every later scrape.

use std::sync::Arc;
use std::time::Duration;

use surge_model::{
    ArcStr, EscapingScheme, Labels, LabelsBuilder, NameValidationScheme, Sample,
    is_valid_metric_name, stale_nan,
};
use surge_proto::exposition::{Checks, Entry, Format, Parser};

use super::fetch::{FetchError, Fetched};
use super::total::SeriesTotal;
use crate::relabel::Relabeler;
use surge_sender::{SeriesMeta, SeriesSamples};

/// How many series at the end of every scrape's (and a stopped target's) output are health series: the
/// [`SYNTHETIC`] ones, which outputs keep room for ([`surge_sender::Output::submit_with_health`]).
pub const HEALTH_SERIES: usize = SYNTHETIC.len();

/// The synthetic series written after every scrape, in this order (Prometheus's, which dashboards and
/// alerts expect by name).
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Limits a scrape must stay within; a violation fails the whole scrape (`up` = 0), as in Prometheus.
///
/// The sample limits and the memory budget are checked *while* the body is parsed: a scrape is refused
/// as soon as it passes one, before the rest of its series are built, so a target exposing millions of
/// series costs the agent at most the budget (plus its body, capped by `body_size_limit`), never memory
/// in proportion to what it exposes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrapeLimits {
    /// Samples after metric relabeling; 0 = unlimited.
    pub sample_limit: usize,
    /// Labels per series; 0 = unlimited.
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    /// The estimated memory of the target's series (see [`series_memory`]), in bytes; 0 = unlimited.
    pub series_memory_limit: usize,
    /// The most samples one scrape may ship: its share of the smallest output queue
    /// ([`surge_sender::Output::max_scrape_samples`]); 0 = no bound. Set by the scrape loop from the
    /// agent's outputs, not from the config.
    pub queue_share: usize,
}

/// The memory estimate behind `series_memory_limit`, per exposition line and per shipped sample.
///
/// Every line holds a series-cache entry (40 bytes, plus a 56-byte slot the scrape it first appears in);
/// a shipped sample also holds its slot in the scrape's batch (40), its queue entry in a destination
/// (64) and, for its series, the encoded label block with its reference-count header and the
/// allocator's rounding. The estimate is deliberately a little above what was measured, so the budget
/// errs on the safe side.
pub mod series_memory {
    /// Bytes per exposition line (its cache entry).
    pub const PER_LINE: usize = 64;
    /// Bytes per shipped sample, besides its label block.
    pub const PER_SAMPLE: usize = 144;

    /// The estimate for one shipped sample whose label block is `label_block` bytes long.
    pub fn sample(label_block: usize) -> usize {
        PER_LINE + PER_SAMPLE + label_block
    }
}

/// How a target's samples get their labels and timestamps.
#[derive(Debug, Clone)]
pub struct SeriesRules {
    /// The target's labels (`job`, `instance`, and whatever target relabeling left).
    pub target_labels: Labels,
    /// Labels added to every series that does not already have them.
    pub external_labels: Labels,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: Arc<Relabeler>,
    pub limits: ScrapeLimits,
    /// Which names a series may have once escaped and relabeled; others are dropped as invalid.
    pub name_validation: NameValidationScheme,
    /// How scraped names that are not legacy names are rewritten before metric relabeling (as a target
    /// that honours the Accept header's `escaping=` would have written them).
    pub name_escaping: EscapingScheme,
}

/// Why a scrape body was refused. The target is marked down with this reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ScrapeFailure {
    /// The exposition is malformed; the message carries line and column.
    #[error("parse error: {0}")]
    Parse(String),
    /// Counted while parsing: the scrape stops at the first sample over the limit.
    #[error("sample_limit exceeded: more than {limit} samples")]
    SampleLimit { limit: usize },
    /// The scrape would take more than its share of a destination's queue (a quarter of
    /// `queue_config.capacity`): refused whole, so it cannot fill the queue and have other targets'
    /// samples dropped.
    #[error(
        "scrape refused: more than {limit} samples, over its share of the remote-write queue (a quarter of queue_config.capacity; raise capacity or set metric_relabel_configs)"
    )]
    QueueShare { limit: usize },
    /// The target's series would need more memory than `series_memory_limit`.
    #[error(
        "scrape refused: its series need more than series_memory_limit ({limit} bytes) after {lines} lines"
    )]
    SeriesMemory { limit: usize, lines: usize },
    /// The scrape's new series would take the series of every target together past
    /// `agent.total_series_limit` (see [`super::total`]).
    #[error(
        "scrape refused: its {new} new series would take the agent past total_series_limit ({limit} series across all targets, {held} held)"
    )]
    SeriesTotal {
        limit: usize,
        held: usize,
        new: usize,
    },
    #[error("label_limit exceeded: series {series} has {got} labels > limit {limit}")]
    LabelLimit {
        series: String,
        got: usize,
        limit: usize,
    },
    #[error("label name length limit exceeded: {name:?} is {got} bytes > limit {limit}")]
    LabelNameLength {
        name: String,
        got: usize,
        limit: usize,
    },
    #[error("label value length limit exceeded: label {name} is {got} bytes > limit {limit}")]
    LabelValueLength {
        name: String,
        got: usize,
        limit: usize,
    },
}

/// A failed scrape, with a bounded `reason` for metrics and a full message for logs.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The body could not be fetched.
    #[error(transparent)]
    Fetch(FetchError),
    /// The body was refused.
    #[error(transparent)]
    Process(ScrapeFailure),
}

impl ScrapeError {
    /// The `reason` label of `surge_scrape_failures_total`: one of a fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(FetchError::Timeout(_)) => "timeout",
            ScrapeError::Fetch(FetchError::Status(_)) => "http_status",
            ScrapeError::Fetch(FetchError::BodyTooLarge(_)) => "body_too_large",
            ScrapeError::Fetch(FetchError::Network(_)) => "network",
            ScrapeError::Fetch(FetchError::Decode(_)) => "decode",
            ScrapeError::Process(ScrapeFailure::Parse(_)) => "parse",
            ScrapeError::Process(ScrapeFailure::SampleLimit { .. }) => "sample_limit",
            ScrapeError::Process(ScrapeFailure::QueueShare { .. }) => "queue_share",
            ScrapeError::Process(ScrapeFailure::SeriesMemory { .. }) => "series_memory_limit",
            ScrapeError::Process(ScrapeFailure::SeriesTotal { .. }) => "series_total_limit",
            ScrapeError::Process(_) => "label_limit",
        }
    }
}

/// Counts of one scrape, reported as the synthetic series and in the agent's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Samples in the body (`scrape_samples_scraped`).
    pub scraped: usize,
    /// Samples left after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub post_relabel: usize,
    /// Series seen for the first time (`scrape_series_added`).
    pub series_added: usize,
    /// Lines that repeated a series already seen in this scrape: dropped.
    pub duplicates: usize,
    /// Samples with a metric name or label set that is invalid after relabeling: dropped.
    pub invalid: usize,
    /// Staleness markers written for series that disappeared (after a failed scrape: for every series
    /// of the last good one).
    pub stale_markers: usize,
}

/// What one scrape body produced.
#[derive(Debug, Default)]
pub struct ScrapeOutput {
    pub series: Vec<SeriesSamples>,
    pub stats: ScrapeStats,
}

/// Everything one scrape writes and what it counted: the answer to [`TargetProcessor::scrape`], which
/// the scrape loop counts, shows as the target's health, and ships.
#[derive(Debug)]
pub struct ScrapeReport {
    /// In shipping order: the scraped samples and the staleness markers of vanished series (after a
    /// failure: a marker for every series of the last good scrape), then the synthetic series.
    pub series: Vec<SeriesSamples>,
    /// All zero after a failure, except `stale_markers`.
    pub stats: ScrapeStats,
    /// Why the target is down; `None` when it is up.
    pub error: Option<ScrapeError>,
    /// From the scrape's start to its processed body (`scrape_duration_seconds`).
    pub duration: Duration,
    /// The scrape's timestamp, shared by every sample the target did not stamp itself.
    pub timestamp_ms: i64,
}

impl ScrapeReport {
    /// Whether the target answered with a body the processor accepted (`up` = 1).
    pub fn up(&self) -> bool {
        self.error.is_none()
    }
}

struct CacheEntry {
    /// `None` when metric relabeling dropped the series: remembered so it is not relabeled again.
    series: Option<SeriesMeta>,
    /// Scrape attempt that last saw this series (duplicate detection). 32 bits: one entry per live series
    /// is the agent's memory, and equality is all that is asked of it.
    touched: u32,
    /// Whether the series was written by the last successful scrape (and so needs a staleness marker
    /// when it disappears).
    live: bool,
}

/// A 128-bit hash as two words: `u128` would align entries to 16 bytes and pad each by 8.
type Key = [u64; 2];

/// The per-target series cache: entries sorted by key (a 128-bit hash of the exposition line's
/// `name{labels}` text), looked up by binary search.
///
/// A sorted `Vec` rather than a hash map because one entry per live series is most of the agent's memory:
/// it holds exactly `len` entries of 40 bytes (16-byte key, 24-byte entry), where a hash map holds up to twice that in empty buckets.
/// Series first seen in a scrape go to `fresh` and are merged in when the scrape ends.
///
/// A target writes its series in the same order scrape after scrape, so each line's entry is first
/// looked for where the same line found it last time (`order`): one comparison instead of the binary
/// search's ~log2(n) dependent cache misses, which were a third of the agent's parsing time. 4 bytes per
/// series and scrape, kept for two scrapes.
#[derive(Default)]
struct SeriesCache {
    sorted: Vec<(Key, CacheEntry)>,
    /// New entries of the current scrape, with the index of their sample in the scrape's output.
    fresh: Vec<(Key, CacheEntry, Option<usize>)>,
    /// Per line of the previous scrape, the index in `sorted` it found ([`NOT_FOUND`] if none);
    /// emptied whenever `sorted` changes shape.
    order: Vec<u32>,
    /// The same for the current scrape, being written.
    next_order: Vec<u32>,
}

/// A line whose series was not in the cache.
const NOT_FOUND: u32 = u32::MAX;

impl SeriesCache {
    fn len(&self) -> usize {
        self.sorted.len() + self.fresh.len()
    }

    /// Starts a scrape: the last scrape's line order becomes the prediction.
    fn begin_scrape(&mut self) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        self.next_order.clear();
    }

    /// The entry of `key`, found on the `line`-th sample line of the scrape (0-based).
    fn get_mut(&mut self, key: Key, line: usize) -> Option<&mut CacheEntry> {
        let predicted = self
            .order
            .get(line)
            .map(|&i| i as usize)
            .filter(|&i| self.sorted.get(i).is_some_and(|(k, _)| *k == key));
        let found = predicted.or_else(|| self.sorted.binary_search_by(|(k, _)| k.cmp(&key)).ok());
        if self.next_order.len() == line {
            self.next_order.push(
                found
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(NOT_FOUND),
            );
        }
        found.map(|i| &mut self.sorted[i].1)
    }

    /// `sorted` changed shape: recorded positions no longer hold.
    fn forget_order(&mut self) {
        self.order.clear();
        self.next_order.clear();
    }

    fn insert_fresh(&mut self, key: Key, entry: CacheEntry, out_index: Option<usize>) {
        self.fresh.push((key, entry, out_index));
    }

    /// Forgets the current scrape's new series (it was refused), and their memory.
    fn discard_fresh(&mut self) {
        self.fresh = Vec::new();
    }

    /// Merges the fresh entries in. A series new in this scrape that repeated within it keeps its first
    /// line; the output indexes of the repeats are returned so their samples can be dropped.
    fn merge(&mut self) -> Vec<usize> {
        let mut repeats = Vec::new();
        if self.fresh.is_empty() {
            return repeats;
        }
        self.forget_order();
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.sort_by_key(|(k, _, idx)| (*k, idx.unwrap_or(usize::MAX)));
        let mut merged = Vec::with_capacity(self.sorted.len() + fresh.len());
        let mut old = std::mem::take(&mut self.sorted).into_iter().peekable();
        let mut last: Option<Key> = None;
        for (k, e, idx) in fresh {
            if last == Some(k) {
                repeats.extend(idx);
                continue;
            }
            last = Some(k);
            while let Some((ok, _)) = old.peek() {
                if *ok < k {
                    merged.extend(old.next());
                } else {
                    break;
                }
            }
            merged.push((k, e));
        }
        merged.extend(old);
        self.sorted = merged;
        repeats
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut CacheEntry) -> bool) {
        let before = self.sorted.len();
        self.sorted.retain_mut(|(_, e)| keep(e));
        if self.sorted.len() != before {
            self.forget_order();
        }
        // Give memory back after a target shrinks a lot, without reallocating on small changes.
        if self.sorted.capacity() > 64 && self.sorted.capacity() > self.sorted.len() * 2 {
            self.sorted.shrink_to_fit();
        }
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut CacheEntry> + '_ {
        self.sorted.iter_mut().map(|(_, e)| e)
    }
}

/// One target's scrape state: series cache, liveness, and the rules that build labels.
pub struct TargetProcessor {
    rules: SeriesRules,
    cache: SeriesCache,
    attempt: u32,
    /// The [`SYNTHETIC`] series, built once per target.
    synthetic: Vec<SeriesMeta>,
    /// Whether a scrape has written the synthetic series, which then need staleness markers too.
    reported: bool,
    /// Series the last successful scrape shipped: the next scrape's output is sized from it, so it is
    /// allocated once rather than grown (and copied) ten times for a thousand series.
    last_shipped: usize,
    /// The agent-wide series count this target's cache entries are counted in, and how many are.
    total: Option<std::sync::Arc<SeriesTotal>>,
    counted: usize,
}

impl Drop for TargetProcessor {
    /// A removed target gives its series back to the agent-wide total.
    fn drop(&mut self) {
        if let Some(t) = &self.total {
            t.release(self.counted);
        }
    }
}

impl TargetProcessor {
    pub fn new(rules: SeriesRules) -> Self {
        let mut p = TargetProcessor {
            rules,
            cache: SeriesCache::default(),
            attempt: 0,
            synthetic: Vec::new(),
            reported: false,
            last_shipped: 0,
            total: None,
            counted: 0,
        };
        p.synthetic = SYNTHETIC.iter().map(|n| p.synthetic_series(n)).collect();
        p
    }

    /// Counts this target's series in the agent-wide `total`: a scrape whose new series do not fit is
    /// refused whole (see [`super::total`]).
    pub fn with_series_total(mut self, total: std::sync::Arc<SeriesTotal>) -> Self {
        self.total = Some(total);
        self
    }

    /// Reserves the scrape's new series in the agent-wide total before they join the cache.
    fn reserve_new_series(&mut self) -> Result<(), ScrapeFailure> {
        let (Some(total), new) = (&self.total, self.cache.fresh.len()) else {
            return Ok(());
        };
        if new == 0 {
            return Ok(());
        }
        total
            .reserve(new)
            .map_err(|over| ScrapeFailure::SeriesTotal {
                limit: over.limit,
                held: over.held,
                new,
            })?;
        self.counted += new;
        Ok(())
    }

    /// After a scrape changed the cache: gives back what it no longer holds (vanished series, and
    /// repeats that were reserved as new).
    fn settle_series_total(&mut self) {
        let Some(total) = &self.total else {
            return;
        };
        let held = self.cache.len();
        if held < self.counted {
            total.release(self.counted - held);
            self.counted = held;
        }
    }

    /// Everything one scrape writes, in one call: the scraped samples with the staleness markers of
    /// vanished series (or, when the fetch or the body failed, a marker for every series of the last good
    /// scrape, as Prometheus does for a target that goes down), then the synthetic series at `ts_ms`.
    ///
    /// `elapsed` is read once the body is processed, so `scrape_duration_seconds` covers fetching and
    /// processing as Prometheus's does; taking it as a function keeps this module free of clocks.
    pub fn scrape(
        &mut self,
        fetched: &Result<Fetched, FetchError>,
        ts_ms: i64,
        elapsed: impl FnOnce() -> Duration,
    ) -> ScrapeReport {
        let processed = match fetched {
            Ok(f) => self
                .process(&f.body, f.format, ts_ms)
                .map_err(ScrapeError::Process),
            Err(e) => Err(ScrapeError::Fetch(e.clone())),
        };
        let duration = elapsed();
        let (mut series, stats, error) = match processed {
            Ok(out) => (out.series, out.stats, None),
            Err(e) => {
                let markers = self.fail(ts_ms);
                let stats = ScrapeStats {
                    stale_markers: markers.len(),
                    ..ScrapeStats::default()
                };
                (markers, stats, Some(e))
            }
        };
        let values = [
            if error.is_none() { 1.0 } else { 0.0 },
            duration.as_secs_f64(),
            stats.scraped as f64,
            stats.post_relabel as f64,
            stats.series_added as f64,
        ];
        self.push_synthetic(&mut series, ts_ms, values);
        ScrapeReport {
            series,
            stats,
            error,
            duration,
            timestamp_ms: ts_ms,
        }
    }

    /// Whether a scrape has written the synthetic series, so that [`Self::stop`] ends them too (as its
    /// last [`HEALTH_SERIES`] series).
    pub fn reported(&self) -> bool {
        self.reported
    }

    /// The target went away at `ts_ms`: a staleness marker for every series it wrote, the synthetic
    /// ones included once a scrape has written them.
    pub fn stop(&mut self, ts_ms: i64) -> Vec<SeriesSamples> {
        let mut series = self.fail(ts_ms);
        if self.reported {
            self.push_synthetic(&mut series, ts_ms, [stale_nan(); SYNTHETIC.len()]);
        }
        series
    }

    /// Appends one sample per [`SYNTHETIC`] series, in that order.
    fn push_synthetic(
        &mut self,
        series: &mut Vec<SeriesSamples>,
        ts_ms: i64,
        values: [f64; SYNTHETIC.len()],
    ) {
        self.reported = true;
        for (meta, value) in self.synthetic.iter().zip(values) {
            series.push(SeriesSamples {
                series: meta.clone(),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts_ms,
                    value,
                }],
            });
        }
    }

    /// Number of series held in the cache (live and dropped).
    pub fn cached_series(&self) -> usize {
        self.cache.len()
    }

    /// Processes one successful response body scraped at `ts_ms`. On failure every series of the previous
    /// scrape gets a staleness marker in the returned output's place: call [`Self::fail`].
    pub fn process(
        &mut self,
        body: &[u8],
        format: Format,
        ts_ms: i64,
    ) -> Result<ScrapeOutput, ScrapeFailure> {
        self.cache.merge();
        self.attempt = self.attempt.wrapping_add(1);
        let processed = self.process_body(body, format, ts_ms);
        if processed.is_err() {
            // The refused scrape's new series never shipped: they leave no trace in the cache, so a
            // target refused on every scrape holds no memory for what it exposes.
            self.cache.discard_fresh();
        }
        self.settle_series_total();
        processed
    }

    fn process_body(
        &mut self,
        body: &[u8],
        format: Format,
        ts_ms: i64,
    ) -> Result<ScrapeOutput, ScrapeFailure> {
        let mut out = ScrapeOutput {
            // The synthetic series and a few staleness markers join the scraped ones.
            series: Vec::with_capacity(self.last_shipped + SYNTHETIC.len() + 8),
            stats: ScrapeStats::default(),
        };
        let mut budget = ScrapeBudget::new(&self.rules.limits);
        self.cache.begin_scrape();
        // Accept what Prometheus accepts (not only what the OpenMetrics conformance suite does).
        for entry in Parser::with_checks(body, format, Checks::Prometheus) {
            match entry {
                Ok(Entry::Sample(sample)) => {
                    let shipped = out.series.len();
                    self.add_sample(&sample, ts_ms, &mut out)?;
                    let added = out.series[shipped..]
                        .first()
                        .map(|s| s.series.label_block().len());
                    budget.admit(added, out.stats.scraped)?;
                }
                Ok(_) => {}
                Err(e) => return Err(ScrapeFailure::Parse(e.to_string())),
            }
        }
        self.reserve_new_series()?;
        self.drop_repeats(&mut out);
        out.stats.post_relabel = out.series.len();
        out.stats.stale_markers = self.mark_vanished(ts_ms, &mut out.series);
        self.last_shipped = out.series.len();
        Ok(out)
    }

    /// One exposition line. The steady state is a cached series: hash, look up, push; a series seen for
    /// the first time has its labels built once and joins the cache when the scrape ends.
    fn add_sample(
        &mut self,
        sample: &surge_proto::exposition::Sample<'_>,
        ts_ms: i64,
        out: &mut ScrapeOutput,
    ) -> Result<(), ScrapeFailure> {
        out.stats.scraped += 1;
        let attempt = self.attempt;
        let h = xxhash_rust::xxh3::xxh3_128(sample.series_key.as_bytes());
        let key: Key = [(h >> 64) as u64, h as u64];
        let t = match (self.rules.honor_timestamps, sample.timestamp_ms) {
            (true, Some(t)) => t,
            _ => ts_ms,
        };
        let s = Sample {
            timestamp_ms: t,
            value: sample.value,
        };
        if let Some(e) = self.cache.get_mut(key, out.stats.scraped - 1) {
            if e.touched == attempt {
                out.stats.duplicates += 1;
            } else {
                e.touched = attempt;
                if let Some(series) = &e.series {
                    out.series.push(SeriesSamples {
                        series: series.clone(),
                        samples: smallvec::smallvec![s],
                    });
                }
            }
            return Ok(());
        }
        let series = match self.build_series(sample)? {
            SeriesBuild::Keep(meta) => Some(meta),
            SeriesBuild::Dropped => None,
            SeriesBuild::Invalid => {
                out.stats.invalid += 1;
                return Ok(());
            }
        };
        let out_index = series.as_ref().map(|meta| {
            out.stats.series_added += 1;
            out.series.push(SeriesSamples {
                series: meta.clone(),
                samples: smallvec::smallvec![s],
            });
            out.series.len() - 1
        });
        let entry = CacheEntry {
            series,
            touched: attempt,
            live: false,
        };
        self.cache.insert_fresh(key, entry, out_index);
        Ok(())
    }

    /// Merges the scrape's new series into the cache. A series new in this scrape that appeared more than
    /// once keeps its first sample only; the repeats count as duplicates.
    fn drop_repeats(&mut self, out: &mut ScrapeOutput) {
        let mut repeats = self.cache.merge();
        if repeats.is_empty() {
            return;
        }
        out.stats.duplicates += repeats.len();
        out.stats.series_added -= repeats.len();
        repeats.sort_unstable();
        for i in repeats.into_iter().rev() {
            out.series.remove(i);
        }
    }

    /// Series of the previous scrape that are gone now get a staleness marker at `ts_ms` and leave the
    /// cache; returns how many markers were written.
    fn mark_vanished(&mut self, ts_ms: i64, out: &mut Vec<SeriesSamples>) -> usize {
        let attempt = self.attempt;
        let before = out.len();
        self.cache.retain(|e| {
            if e.touched == attempt {
                e.live = e.series.is_some();
                return true;
            }
            if e.live
                && let Some(series) = &e.series
            {
                out.push(SeriesSamples {
                    series: series.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts_ms,
                        value: stale_nan(),
                    }],
                });
            }
            false
        });
        out.len() - before
    }

    /// Records a failed scrape at `ts_ms`: every series of the last successful scrape gets a staleness
    /// marker, as Prometheus does when a target goes down, and the same happens when a target is removed.
    pub fn fail(&mut self, ts_ms: i64) -> Vec<SeriesSamples> {
        self.cache.merge();
        self.attempt = self.attempt.wrapping_add(1);
        let mut out = Vec::new();
        for e in self.cache.values_mut() {
            if e.live
                && let Some(series) = &e.series
            {
                out.push(SeriesSamples {
                    series: series.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts_ms,
                        value: stale_nan(),
                    }],
                });
            }
            e.live = false;
        }
        out
    }

    /// A series built from the target labels alone, for the synthetic `up`-family series.
    pub fn synthetic_series(&self, name: &str) -> SeriesMeta {
        let mut b = LabelsBuilder::default();
        for l in self.rules.target_labels.iter() {
            b.set(l.name.clone(), l.value.clone());
        }
        b.set("__name__", name);
        for l in self.rules.external_labels.iter() {
            if b.get(&l.name).is_none() {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        SeriesMeta::new(b.build())
    }

    fn build_series(
        &self,
        sample: &surge_proto::exposition::Sample<'_>,
    ) -> Result<SeriesBuild, ScrapeFailure> {
        let mut b = LabelsBuilder::default();
        let escaping = self.rules.name_escaping;
        for (n, v) in sample.labels() {
            let n = n.to_cow();
            // `le` and `quantile` are shipped as the target wrote them, as Prometheus 2 and the
            // remote-write compliance suite expect (`le="1"` stays `le="1"`); Prometheus 3's
            // canonical form (`proto::exposition::normalize_float_label`) is not applied.
            b.set(escape_name(escaping, &n), v.as_ref());
        }
        b.set("__name__", escape_name(escaping, &sample.name.to_cow()));
        for l in self.rules.target_labels.iter() {
            if self.rules.honor_labels {
                if b.get(&l.name).is_none() {
                    b.set(l.name.clone(), l.value.clone());
                }
            } else {
                if let Some(existing) = b.get(&l.name).map(Arc::<str>::from) {
                    // Prometheus keeps the scraped value as `exported_<name>`, prefixing again on clashes.
                    let mut exported = format!("exported_{}", l.name);
                    while b.get(&exported).is_some() {
                        exported.insert_str(0, "exported_");
                    }
                    b.set(exported, existing);
                }
                b.set(l.name.clone(), l.value.clone());
            }
        }
        if !self.rules.metric_relabel.process(&mut b) {
            return Ok(SeriesBuild::Dropped);
        }
        for l in self.rules.external_labels.iter() {
            if b.get(&l.name).is_none() {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        let labels = b.build();
        let scheme = self.rules.name_validation;
        match labels.metric_name() {
            Some(n) if scheme.is_valid_metric_name(n) => {}
            _ => return Ok(SeriesBuild::Invalid),
        }
        if labels.iter().any(|l| !scheme.is_valid_label_name(&l.name)) {
            return Ok(SeriesBuild::Invalid);
        }
        let lim = &self.rules.limits;
        if lim.label_limit > 0 && labels.len() > lim.label_limit {
            return Err(ScrapeFailure::LabelLimit {
                series: labels.to_string(),
                got: labels.len(),
                limit: lim.label_limit,
            });
        }
        for l in labels.iter() {
            if lim.label_name_length_limit > 0 && l.name.len() > lim.label_name_length_limit {
                return Err(ScrapeFailure::LabelNameLength {
                    name: l.name.to_string(),
                    got: l.name.len(),
                    limit: lim.label_name_length_limit,
                });
            }
            if lim.label_value_length_limit > 0 && l.value.len() > lim.label_value_length_limit {
                return Err(ScrapeFailure::LabelValueLength {
                    name: l.name.to_string(),
                    got: l.value.len(),
                    limit: lim.label_value_length_limit,
                });
            }
        }
        Ok(SeriesBuild::Keep(SeriesMeta::new(labels)))
    }
}

/// One scrape's sample count and memory estimate against its limits, checked sample by sample.
struct ScrapeBudget {
    /// `sample_limit` or the queue share, whichever is smaller (0 = none), and the failure it gives.
    samples: Option<(usize, ScrapeFailure)>,
    memory_limit: usize,
    shipped: usize,
    memory: usize,
}

impl ScrapeBudget {
    fn new(limits: &ScrapeLimits) -> Self {
        let sample_limit = (limits.sample_limit > 0).then(|| {
            let limit = limits.sample_limit;
            (limit, ScrapeFailure::SampleLimit { limit })
        });
        let share = (limits.queue_share > 0).then(|| {
            let limit = limits.queue_share;
            (limit, ScrapeFailure::QueueShare { limit })
        });
        let samples = match (sample_limit, share) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        ScrapeBudget {
            samples,
            memory_limit: limits.series_memory_limit,
            shipped: 0,
            memory: 0,
        }
    }

    /// Accounts for one exposition line that shipped a sample with a label block of `shipped` bytes
    /// (`None`: the line shipped nothing: relabeled away, a duplicate or invalid); `lines` so far.
    ///
    /// A duplicate of a series new in this scrape is only recognised when the scrape ends, so until
    /// then it counts as a sample: a target exactly at its limit that repeats new series is refused.
    fn admit(&mut self, shipped: Option<usize>, lines: usize) -> Result<(), ScrapeFailure> {
        self.memory += match shipped {
            Some(block) => {
                self.shipped += 1;
                series_memory::sample(block)
            }
            None => series_memory::PER_LINE,
        };
        if let Some((limit, failure)) = &self.samples
            && self.shipped > *limit
        {
            return Err(failure.clone());
        }
        if self.memory_limit > 0 && self.memory > self.memory_limit {
            return Err(ScrapeFailure::SeriesMemory {
                limit: self.memory_limit,
                lines,
            });
        }
        Ok(())
    }
}

enum SeriesBuild {
    Keep(SeriesMeta),
    Dropped,
    Invalid,
}

/// A scraped metric or label name as `escaping` writes it. Legacy names (nearly all) pass through
/// untouched whatever the scheme, as prometheus/common's `EscapeMetricFamily` leaves them; so does
/// every name under `allow-utf-8`.
fn escape_name(escaping: EscapingScheme, name: &str) -> ArcStr {
    if escaping == EscapingScheme::AllowUtf8 || is_valid_metric_name(name) {
        return ArcStr::from(name);
    }
    ArcStr::from(&*escaping.escape(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_config::RelabelConfig;

    fn rules(honor_labels: bool, metric_relabel: &str) -> SeriesRules {
        let relabel: Vec<RelabelConfig> = serde_yaml_ng::from_str(metric_relabel).unwrap();
        SeriesRules {
            target_labels: Labels::from_pairs([("job", "web"), ("instance", "10.0.0.1:80")]),
            external_labels: Labels::from_pairs([("cluster", "c1")]),
            honor_labels,
            honor_timestamps: true,
            metric_relabel: Arc::new(Relabeler::new(&relabel).unwrap()),
            limits: ScrapeLimits::default(),
            name_validation: NameValidationScheme::Utf8,
            name_escaping: EscapingScheme::AllowUtf8,
        }
    }

    fn names(validation: NameValidationScheme, escaping: EscapingScheme) -> SeriesRules {
        SeriesRules {
            name_validation: validation,
            name_escaping: escaping,
            ..rules(false, "[]")
        }
    }

    /// Prometheus 3's UTF-8 names: kept by default, escaped as the job asks, and dropped as invalid
    /// under legacy validation when nothing escapes them.
    #[test]
    fn utf8_names_are_kept_escaped_or_refused() {
        let body = b"{\"my.metric\", \"k.8s\"=\"v\"} 1\nplain_total{a=\"b\"} 2\n";
        let cases = [
            (
                NameValidationScheme::Utf8,
                EscapingScheme::AllowUtf8,
                r#"my.metric{cluster="c1", instance="10.0.0.1:80", job="web", k.8s="v"} 1 @1000"#,
            ),
            (
                NameValidationScheme::Legacy,
                EscapingScheme::Underscores,
                r#"my_metric{cluster="c1", instance="10.0.0.1:80", job="web", k_8s="v"} 1 @1000"#,
            ),
            (
                NameValidationScheme::Legacy,
                EscapingScheme::Dots,
                r#"my_dot_metric{cluster="c1", instance="10.0.0.1:80", job="web", k_dot_8s="v"} 1 @1000"#,
            ),
            (
                NameValidationScheme::Utf8,
                EscapingScheme::Values,
                r#"U__my_2e_metric{U__k_2e_8s="v", cluster="c1", instance="10.0.0.1:80", job="web"} 1 @1000"#,
            ),
        ];
        for (validation, escaping, want) in cases {
            let mut p = TargetProcessor::new(names(validation, escaping));
            let out = p.process(body, Format::Text, 1000).unwrap();
            let s = shown(&out);
            assert_eq!(s[0], want, "{validation} {escaping}");
            // Legacy names are never touched.
            assert!(
                s[1].starts_with(r#"plain_total{a="b","#),
                "{validation} {escaping}: {s:?}"
            );
        }
        // Legacy validation with nothing escaping (allow-utf-8 is refused by the config; a UTF-8 name
        // made by metric relabeling is the other way in): the series is dropped as invalid.
        let mut p = TargetProcessor::new(names(
            NameValidationScheme::Legacy,
            EscapingScheme::AllowUtf8,
        ));
        let out = p.process(body, Format::Text, 1000).unwrap();
        let s = shown(&out);
        assert!(s.iter().all(|l| !l.contains("my.metric")), "{s:?}");
        assert!(s.iter().any(|l| l.starts_with("plain_total{")), "{s:?}");
    }

    fn shown(out: &ScrapeOutput) -> Vec<String> {
        out.series
            .iter()
            .map(|s| {
                let v = value_text(s.samples[0].value);
                format!("{} {v} @{}", s.series.labels(), s.samples[0].timestamp_ms)
            })
            .collect()
    }

    #[test]
    fn target_labels_win_unless_honor_labels() {
        let body = b"m{job=\"app\",a=\"1\"} 5\n";
        let mut p = TargetProcessor::new(rules(false, "[]"));
        let out = p.process(body, Format::Text, 1000).unwrap();
        assert_eq!(
            shown(&out),
            [
                r#"m{a="1", cluster="c1", exported_job="app", instance="10.0.0.1:80", job="web"} 5 @1000"#
            ]
        );
        let mut p = TargetProcessor::new(rules(true, "[]"));
        let out = p.process(body, Format::Text, 1000).unwrap();
        assert_eq!(
            shown(&out),
            [r#"m{a="1", cluster="c1", instance="10.0.0.1:80", job="app"} 5 @1000"#]
        );
    }

    #[test]
    fn vanished_series_get_one_staleness_marker() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        let out = p.process(b"a 1\nb 2\n", Format::Text, 1000).unwrap();
        assert_eq!(out.stats.series_added, 2);
        let out = p.process(b"a 3\n", Format::Text, 2000).unwrap();
        assert_eq!(out.stats.series_added, 0);
        assert_eq!(out.stats.stale_markers, 1);
        let s = shown(&out);
        assert_eq!(s.len(), 2);
        assert!(
            s[0].starts_with("a{") && s[0].ends_with(" 3 @2000"),
            "{s:?}"
        );
        assert!(
            s[1].starts_with("b{") && s[1].ends_with(" STALE @2000"),
            "{s:?}"
        );
        // Gone for good: no second marker.
        let out = p.process(b"a 4\n", Format::Text, 3000).unwrap();
        assert_eq!(out.stats.stale_markers, 0);
    }

    #[test]
    fn a_failed_scrape_marks_everything_stale_once() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        p.process(b"a 1\nb 2\n", Format::Text, 1000).unwrap();
        let err = p.process(b"a 1\nb{ 2\n", Format::Text, 2000).unwrap_err();
        assert!(
            matches!(&err, ScrapeFailure::Parse(m) if m.contains("line 2")),
            "{err}"
        );
        assert_eq!(p.fail(2000).len(), 2);
        assert_eq!(p.fail(3000).len(), 0);
        // Back up: series come back as new.
        let out = p.process(b"a 1\n", Format::Text, 4000).unwrap();
        assert_eq!(out.series.len(), 1);
    }

    #[test]
    fn metric_relabeling_drops_and_is_remembered() {
        let mut p = TargetProcessor::new(rules(
            false,
            "[{source_labels: [__name__], regex: 'go_.*', action: drop}]",
        ));
        for ts in [1000, 2000] {
            let out = p.process(b"go_gc 1\nhttp 2\n", Format::Text, ts).unwrap();
            assert_eq!(out.stats.scraped, 2);
            assert_eq!(out.stats.post_relabel, 1);
        }
        assert_eq!(p.cached_series(), 2);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        // New in this scrape and repeated: the first line wins.
        let out = p.process(b"a 1\nb 5\na 2\n", Format::Text, 1000).unwrap();
        assert_eq!(shown(&out).len(), 2);
        assert!(shown(&out)[0].starts_with("a{") && shown(&out)[0].ends_with(" 1 @1000"));
        assert_eq!((out.stats.duplicates, out.stats.series_added), (1, 2));
        // Known and repeated.
        let out = p.process(b"a 3\na 4\nb 6\n", Format::Text, 2000).unwrap();
        assert_eq!(out.series.len(), 2);
        assert_eq!(out.stats.duplicates, 1);
        assert!(shown(&out)[0].ends_with(" 3 @2000"));
    }

    #[test]
    fn the_cache_stays_sorted_through_churn() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        for round in 0..20u32 {
            let body: String = (round..round + 50)
                .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
                .collect();
            let out = p
                .process(body.as_bytes(), Format::Text, i64::from(round) * 1000)
                .unwrap();
            assert_eq!(out.stats.scraped, 50);
            assert_eq!(out.stats.series_added, if round == 0 { 50 } else { 1 });
            assert_eq!(out.stats.stale_markers, usize::from(round > 0));
            assert_eq!(p.cached_series(), 50);
            assert!(p.cache.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn limits_fail_the_scrape() {
        let mut r = rules(false, "[]");
        r.limits.sample_limit = 2;
        let mut p = TargetProcessor::new(r);
        assert!(p.process(b"a 1\nb 1\n", Format::Text, 1).is_ok());
        assert_eq!(
            p.process(b"a 1\nb 1\nc 1\n", Format::Text, 2).unwrap_err(),
            ScrapeFailure::SampleLimit { limit: 2 }
        );
        let mut r = rules(false, "[]");
        r.limits.label_limit = 4;
        let mut p = TargetProcessor::new(r);
        let err = p
            .process(b"a{x=\"1\",y=\"2\"} 1\n", Format::Text, 1)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ScrapeFailure::LabelLimit {
                    got: 6,
                    limit: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn many_series(n: usize) -> String {
        (0..n).map(|i| format!("m{{i=\"{i}\"}} {i}\n")).collect()
    }

    /// A scrape over its queue share or memory budget is refused at the first sample over it, with the
    /// reason, and leaves nothing behind in the cache: a target refused on every scrape holds no memory
    /// for what it exposes, and the last good scrape's series get their staleness markers.
    #[test]
    fn budgets_refuse_a_scrape_while_parsing_and_keep_nothing() {
        let mut r = rules(false, "[]");
        r.limits.queue_share = 100;
        let mut p = TargetProcessor::new(r);
        assert!(
            p.process(many_series(100).as_bytes(), Format::Text, 1)
                .is_ok()
        );
        assert_eq!(p.cached_series(), 100);
        let err = p
            .process(many_series(10_000).as_bytes(), Format::Text, 2)
            .unwrap_err();
        assert_eq!(err, ScrapeFailure::QueueShare { limit: 100 });
        assert_eq!(
            p.cached_series(),
            100,
            "the refused scrape's series are gone"
        );
        assert_eq!(p.fail(2).len(), 100);

        // The smaller of sample_limit and the share decides, and names itself.
        let mut r = rules(false, "[]");
        (r.limits.queue_share, r.limits.sample_limit) = (100, 50);
        let mut p = TargetProcessor::new(r);
        let err = p
            .process(many_series(101).as_bytes(), Format::Text, 1)
            .unwrap_err();
        assert_eq!(err, ScrapeFailure::SampleLimit { limit: 50 });
        assert_eq!(p.cached_series(), 0);

        // Memory: each shipped series costs its label block plus the fixed part.
        let mut r = rules(false, "[]");
        r.limits.series_memory_limit = 100 * series_memory::sample(0);
        let mut p = TargetProcessor::new(r);
        let err = p
            .process(many_series(1000).as_bytes(), Format::Text, 1)
            .unwrap_err();
        let ScrapeFailure::SeriesMemory { lines, .. } = err else {
            panic!("{err}")
        };
        // Labels here encode to ~50 bytes, so the budget ends well before 100 series.
        assert!((40..100).contains(&lines), "{lines}");
        assert_eq!(p.cached_series(), 0);
        let failed = ScrapeError::Process(err);
        assert_eq!(failed.reason(), "series_memory_limit");
        assert!(
            failed.to_string().contains("series_memory_limit"),
            "{failed}"
        );
    }

    /// Series relabeled away still hold a cache entry each, so they count against the memory budget.
    #[test]
    fn series_relabeled_away_count_against_memory() {
        let mut r = rules(
            false,
            "[{source_labels: [__name__], regex: 'm', action: drop}]",
        );
        r.limits.series_memory_limit = 10 * series_memory::PER_LINE;
        let mut p = TargetProcessor::new(r);
        let err = p
            .process(many_series(11).as_bytes(), Format::Text, 1)
            .unwrap_err();
        assert_eq!(
            err,
            ScrapeFailure::SeriesMemory {
                limit: 10 * series_memory::PER_LINE,
                lines: 11
            }
        );
        assert!(
            p.process(many_series(10).as_bytes(), Format::Text, 2)
                .is_ok()
        );
    }

    /// The line-order prediction is only a shortcut: a target that reorders, drops or repeats lines gets
    /// exactly what a binary search would have found.
    #[test]
    fn reordered_lines_find_their_series() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        let forward: String = (0..50).map(|i| format!("m{{i=\"{i}\"}} {i}\n")).collect();
        let backward: String = (0..50)
            .rev()
            .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
            .collect();
        let first = shown(&p.process(forward.as_bytes(), Format::Text, 1000).unwrap());
        for (ts, body) in [
            (2000, &forward),
            (3000, &backward),
            (4000, &forward),
            (5000, &forward),
        ] {
            let out = p.process(body.as_bytes(), Format::Text, ts).unwrap();
            assert_eq!((out.stats.series_added, out.stats.duplicates), (0, 0));
            let mut got: Vec<String> = shown(&out)
                .iter()
                .map(|l| l.replace(&format!(" @{ts}"), " @1000"))
                .collect();
            let mut want = first.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "at {ts}");
        }
        let out = p
            .process(b"m{i=\"3\"} 1\nm{i=\"3\"} 2\n", Format::Text, 6000)
            .unwrap();
        assert_eq!(
            (
                out.series.len(),
                out.stats.duplicates,
                out.stats.stale_markers
            ),
            (1 + 49, 1, 49)
        );
    }

    #[test]
    fn timestamps_honoured_only_when_asked() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        let out = p.process(b"a 1 5000\n", Format::Text, 9000).unwrap();
        assert_eq!(out.series[0].samples[0].timestamp_ms, 5000);
        let mut r = rules(false, "[]");
        r.honor_timestamps = false;
        let mut p = TargetProcessor::new(r);
        let out = p.process(b"a 1 5000\n", Format::Text, 9000).unwrap();
        assert_eq!(out.series[0].samples[0].timestamp_ms, 9000);
    }

    /// A sample value as the tests show it: `STALE` for a staleness marker.
    fn value_text(v: f64) -> String {
        if surge_model::is_stale_nan(v) {
            "STALE".to_string()
        } else {
            v.to_string()
        }
    }

    /// Metric name and value of each series, `STALE` for a staleness marker.
    fn names_values(series: &[SeriesSamples]) -> Vec<(String, String)> {
        series
            .iter()
            .map(|s| {
                let v = value_text(s.samples[0].value);
                let name = s.series.labels().metric_name().unwrap_or("").to_owned();
                (name, v)
            })
            .collect()
    }

    fn body(text: &str) -> Result<Fetched, FetchError> {
        Ok(Fetched {
            body: text.as_bytes().to_vec(),
            format: Format::Text,
        })
    }

    #[test]
    fn a_scrape_writes_its_samples_then_the_synthetic_series() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        let r = p.scrape(&body("a 1\nb 2\na 3\n"), 1000, || {
            Duration::from_millis(250)
        });
        assert!(r.up());
        assert_eq!(
            names_values(&r.series),
            [
                ("a", "1"),
                ("b", "2"),
                ("up", "1"),
                ("scrape_duration_seconds", "0.25"),
                ("scrape_samples_scraped", "3"),
                ("scrape_samples_post_metric_relabeling", "2"),
                ("scrape_series_added", "2"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert!(r.series.iter().all(|s| s.samples[0].timestamp_ms == 1000));
        assert_eq!((r.stats.duplicates, r.timestamp_ms), (1, 1000));
        // The synthetic series carry the target and external labels like every other series.
        assert_eq!(
            r.series[2].series.labels().to_string(),
            r#"up{cluster="c1", instance="10.0.0.1:80", job="web"}"#
        );
    }

    #[test]
    fn a_failed_scrape_writes_markers_for_the_last_good_one_and_up_0() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        p.scrape(&body("a 1\nb 2\n"), 1000, || Duration::ZERO);
        let r = p.scrape(&Err(FetchError::Status(503)), 2000, || {
            Duration::from_millis(5)
        });
        assert_eq!(
            r.error.as_ref().map(ScrapeError::reason),
            Some("http_status")
        );
        assert_eq!(r.stats.stale_markers, 2);
        let mut got = names_values(&r.series);
        // Markers come in the cache's order, not the body's.
        got[..2].sort();
        assert_eq!(
            got,
            [
                ("a", "STALE"),
                ("b", "STALE"),
                ("up", "0"),
                ("scrape_duration_seconds", "0.005"),
                ("scrape_samples_scraped", "0"),
                ("scrape_samples_post_metric_relabeling", "0"),
                ("scrape_series_added", "0"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        // A body the processor refuses is a failure too, with its own reason; nothing is left to mark.
        let r = p.scrape(&body("a{ 1\n"), 3000, || Duration::ZERO);
        assert_eq!(r.error.as_ref().map(ScrapeError::reason), Some("parse"));
        assert_eq!((r.stats.stale_markers, r.series.len()), (0, 5));
    }

    #[test]
    fn stopping_marks_every_series_stale_and_the_synthetic_ones_once_written() {
        let mut p = TargetProcessor::new(rules(false, "[]"));
        assert!(p.stop(500).is_empty(), "nothing written, nothing to end");
        p.scrape(&body("a 1\n"), 1000, || Duration::ZERO);
        let markers = p.stop(2000);
        assert_eq!(
            names_values(&markers)
                .iter()
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>(),
            [
                "a STALE",
                "up STALE",
                "scrape_duration_seconds STALE",
                "scrape_samples_scraped STALE",
                "scrape_samples_post_metric_relabeling STALE",
                "scrape_series_added STALE",
            ]
        );
        assert!(markers.iter().all(|s| s.samples[0].timestamp_ms == 2000));
    }

    /// `agent.total_series_limit`: the targets' series together stay under one count. A scrape whose
    /// new series do not fit is refused whole and leaves nothing; the targets already held keep
    /// scraping; series given back (a target shrinks, or goes away) make room again.
    #[test]
    fn the_total_series_limit_refuses_the_scrape_that_would_pass_it() {
        let total = Arc::new(SeriesTotal::new(150, None));
        let mut a = TargetProcessor::new(rules(false, "[]")).with_series_total(total.clone());
        let mut b = TargetProcessor::new(rules(false, "[]")).with_series_total(total.clone());
        a.process(many_series(100).as_bytes(), Format::Text, 1)
            .unwrap();
        assert_eq!(total.held(), 100);
        let err = b
            .process(many_series(60).as_bytes(), Format::Text, 1)
            .unwrap_err();
        assert_eq!(
            err,
            ScrapeFailure::SeriesTotal {
                limit: 150,
                held: 100,
                new: 60
            }
        );
        assert_eq!(b.cached_series(), 0, "the refused scrape keeps nothing");
        assert_eq!(total.held(), 100);
        let failed = ScrapeError::Process(err);
        assert_eq!(failed.reason(), "series_total_limit");
        assert!(
            failed
                .to_string()
                .contains("total_series_limit (150 series"),
            "{failed}"
        );
        // The target held before is not affected: same series, nothing new to reserve.
        let out = a
            .process(many_series(100).as_bytes(), Format::Text, 2)
            .unwrap();
        assert_eq!(out.series.len(), 100);
        // The refused target goes through `scrape` too: up = 0 with the reason.
        let fetched = Ok(Fetched {
            body: many_series(60).into_bytes(),
            format: Format::Text,
        });
        let report = b.scrape(&fetched, 2, || Duration::ZERO);
        assert!(!report.up());
        assert_eq!(
            report.error.as_ref().map(ScrapeError::reason),
            Some("series_total_limit")
        );
        // A shrinks: its vanished series are given back, and B fits.
        a.process(many_series(40).as_bytes(), Format::Text, 3)
            .unwrap();
        assert_eq!(total.held(), 40);
        b.process(many_series(60).as_bytes(), Format::Text, 3)
            .unwrap();
        assert_eq!(total.held(), 100);
        // A removed target gives back everything it held.
        drop(a);
        assert_eq!(total.held(), 60);
    }
}
