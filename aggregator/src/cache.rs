//! The TTL cache of recent samples: series id → labels + a compressed ring of samples, with a postings index.
//!
//! # Concurrency
//!
//! One writer path (ingest), many cheap readers (API handlers, the engine):
//! - the series map is split into [`SHARDS`] `parking_lot::RwLock<HashMap>` shards keyed by [`SeriesId`]
//!   (already a 64-bit hash, so the maps use an identity hasher). Ingest takes a shard *read* lock to find a
//!   series and a write lock only to create one;
//! - each series has its own small `RwLock` around its samples, so appends to different series never contend
//!   and a query holds a series lock only while it decodes that series' window;
//! - the postings index (label name → value → series ids) has its own `RwLock`, written only when series are
//!   created or evicted. Lock order, where both are held: shard, then postings.
//!
//! `benches/benches/aggregator_cache.rs` compares this layout with `DashMap` on the same workload.
//!
//! # Staleness
//!
//! - A staleness marker is stored as a sample; an instant selection whose newest sample is a marker sees no
//!   value, and range selections skip markers, as in Prometheus.
//! - [`SeriesCache::current`] (the autoscaling path) also treats a newest sample older than
//!   `now - stale_after` as stale. PromQL uses the looser lookback rule unless
//!   [`crate::promql::EvalOptions::freshness`] asks for the stricter one.
//! - A series that received nothing for `idle_ttl` is evicted by [`SeriesCache::sweep`].
//!
//! # Labels
//!
//! Label strings are interned: the postings index doubles as the symbol table, and every series' `Labels`
//! hold `Arc<str>`s taken from its keys, so a name or value is stored once however many series use it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use regex::Regex;
use surge_model::{Labels, Sample, is_stale_nan};

use crate::block::{AppendError, SampleRing, Window};
use crate::options::{CacheOptions, millis};

/// Number of shards of the series map.
pub const SHARDS: usize = 32;

/// The identity of a series: [`Labels::hash64`] of its label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

impl SeriesId {
    pub fn of(labels: &Labels) -> SeriesId {
        SeriesId(labels.hash64())
    }

    /// Shard index: taken from middle bits, since the low bits pick the hash table bucket and the high bits
    /// its control byte.
    fn shard(self) -> usize {
        ((self.0 >> 32) as usize) % SHARDS
    }
}

/// A `Hasher` that passes a `u64` key through: series ids are already hashes.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type IdBuildHasher = BuildHasherDefault<IdHasher>;
type Shard = RwLock<HashMap<SeriesId, Arc<Series>, IdBuildHasher>>;

/// One series: its labels and its recent samples.
#[derive(Debug)]
pub struct Series {
    id: SeriesId,
    labels: Labels,
    state: RwLock<SeriesState>,
}

#[derive(Debug)]
struct SeriesState {
    ring: SampleRing,
    /// Wall-clock time of the last accepted sample, for idle eviction.
    last_append_ms: i64,
}

/// What happened to the samples of one series in one append.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    /// Exact repeats of the newest sample: ignored without error, as Prometheus does.
    pub repeated: u64,
    pub out_of_order: u64,
    pub duplicate_timestamp: u64,
    pub too_old: u64,
    pub too_far_in_future: u64,
    /// Newest timestamp accepted.
    pub newest_ms: Option<i64>,
}

/// Bounds an append checks besides order.
#[derive(Debug, Clone, Copy)]
pub struct AppendBounds {
    /// Samples older than this are rejected as too old.
    pub min_ms: i64,
    /// Samples newer than this are rejected as too far in the future.
    pub max_ms: i64,
    /// Wall-clock now.
    pub now_ms: i64,
}

impl Series {
    pub fn id(&self) -> SeriesId {
        self.id
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether the stored labels equal `pairs` in order (the sorted wire form of the same series).
    pub fn labels_eq_pairs<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        let mut mine = self.labels.iter();
        for (n, v) in pairs {
            match mine.next() {
                Some(l) if &*l.name == n && &*l.value == v => {}
                _ => return false,
            }
        }
        mine.next().is_none()
    }

    /// Appends samples in order under one lock.
    pub fn append(
        &self,
        samples: impl Iterator<Item = Sample>,
        bounds: AppendBounds,
        retention_ms: i64,
    ) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let mut st = self.state.write();
        for s in samples {
            if s.timestamp_ms < bounds.min_ms {
                out.too_old += 1;
                continue;
            }
            if s.timestamp_ms > bounds.max_ms {
                out.too_far_in_future += 1;
                continue;
            }
            match st.ring.push(s, retention_ms) {
                Ok(true) => {
                    out.accepted += 1;
                    out.newest_ms = Some(s.timestamp_ms);
                }
                Ok(false) => out.repeated += 1,
                Err(AppendError::OutOfOrder) => out.out_of_order += 1,
                Err(AppendError::DuplicateTimestamp) => out.duplicate_timestamp += 1,
            }
        }
        if out.accepted > 0 {
            st.last_append_ms = bounds.now_ms;
        }
        out
    }

    /// Runs `f` over the samples under the series' read lock.
    pub fn read<R>(&self, f: impl FnOnce(&SampleRing) -> R) -> R {
        f(&self.state.read().ring)
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, skipping staleness markers.
    pub fn range_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        self.read(|r| range_without_markers(r, mint, maxt, out));
    }

    /// [`SampleRing::summarize`] of the window `mint <= t <= maxt` under the series' read lock.
    pub fn summarize(&self, mint: i64, maxt: i64) -> Window {
        self.read(|r| r.summarize(mint, maxt))
    }

    /// The newest sample with timestamp ≤ `t`, staleness markers included.
    pub fn latest_at(&self, t: i64) -> Option<Sample> {
        self.read(|r| r.latest_at(t))
    }

    /// Estimated bytes this series costs, allocator overhead of ~16 bytes per allocation included.
    pub fn estimated_bytes(&self) -> usize {
        const ALLOC: usize = 16;
        let st = self.state.read();
        let blocks = st.ring.heap_bytes();
        // The series' Arc, the labels' Vec, the sample words.
        let n_allocs = 3;
        std::mem::size_of::<Series>()
            + 16 // Arc counts
            + self.labels.len() * std::mem::size_of::<surge_model::Label>()
            + blocks
            + n_allocs * ALLOC
    }
}

/// Appends the samples of `ring` with `mint <= t <= maxt` to `out`, skipping staleness markers.
pub fn range_without_markers(ring: &SampleRing, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
    let start = out.len();
    ring.range_into(mint, maxt, out);
    let mut i = start;
    // Markers are rare: remove them in place only when present.
    while i < out.len() {
        if is_stale_nan(out[i].value) {
            out.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Whether and how a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// A label matcher: `name op "value"`. A missing label matches as the empty string.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The fully anchored regex for `=~` and `!~`.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// Builds a matcher; regexes are anchored at both ends as Prometheus does.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, regex::Error> {
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(&format!("^(?s:{value})$"))?),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => self.value == v,
            (MatchOp::NotEqual, _) => self.value != v,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get(&self.name).unwrap_or(""))
    }
}

/// Why a selection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// More series matched than the query may touch.
    #[error("query selects more than {limit} series")]
    TooManySeries { limit: usize },
}

/// Why a series could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// The cache holds `max_series` series already.
    Limit,
    /// Another label set has the same 64-bit id (astronomically rare; the sample is rejected and counted).
    Collision,
}

/// The cache's own metrics; registered by [`SeriesCache::register`].
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    pub series: Gauge,
    pub created: Counter,
    pub evicted: Counter,
    pub stale_reads: Counter,
    pub memory_bytes: Gauge,
}

/// Result of one [`SeriesCache::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepStats {
    pub evicted: usize,
    pub remaining: usize,
    pub estimated_bytes: usize,
}

/// The current value of a series as the autoscaling path sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Current {
    /// A sample newer than `now - stale_after`.
    Fresh(Sample),
    /// The newest sample is a staleness marker or older than `now - stale_after`.
    Stale,
    /// No such series.
    Missing,
}

/// value → ids of one label name.
type ValuePostings = HashMap<Arc<str>, HashSet<SeriesId, IdBuildHasher>>;

#[derive(Debug, Default)]
struct Postings {
    /// name → value → ids. The keys are the interned strings every series' labels share.
    names: HashMap<Arc<str>, ValuePostings>,
}

impl Postings {
    /// Indexes `labels` under `id`, returning the same labels built from interned strings.
    fn add(&mut self, id: SeriesId, labels: &Labels) -> Labels {
        let mut pairs = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            let name = match self.names.get_key_value(&*l.name) {
                Some((k, _)) => k.clone(),
                None => {
                    let k: Arc<str> = Arc::from(&*l.name);
                    self.names.insert(k.clone(), HashMap::new());
                    k
                }
            };
            let Some(values) = self.names.get_mut(&*name) else {
                continue;
            };
            let value = match values.get_key_value(&*l.value) {
                Some((k, _)) => k.clone(),
                None => {
                    let k: Arc<str> = Arc::from(&*l.value);
                    values.insert(k.clone(), HashSet::default());
                    k
                }
            };
            if let Some(ids) = values.get_mut(&*value) {
                ids.insert(id);
            }
            pairs.push((name, value));
        }
        // `clone` leaves the label vector with capacity == length (the builder's may be larger).
        Labels::from_pairs(pairs).clone()
    }

    fn remove(&mut self, id: SeriesId, labels: &Labels) {
        for l in labels.iter() {
            let Some(values) = self.names.get_mut(&*l.name) else {
                continue;
            };
            if let Some(ids) = values.get_mut(&*l.value) {
                ids.remove(&id);
                if ids.is_empty() {
                    values.remove(&*l.value);
                }
            }
            if values.is_empty() {
                self.names.remove(&*l.name);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        let mut b = 0;
        for (n, values) in &self.names {
            b += n.len() + 16 + 64;
            for (v, ids) in values {
                b += v.len() + 16 + 64 + ids.capacity() * 9;
            }
        }
        b
    }
}

/// Selections with at least this many candidate series may be scanned by two threads
/// ([`SeriesCache::select_each_split`], [`SeriesCache::set_scan_threads`]): below it, spawning a thread
/// costs more than it saves.
pub const SPLIT_MIN_SERIES: usize = 4096;

/// Series a scan touches ahead of visiting them (see [`SeriesCache::scan`]).
const BATCH: usize = 16;

/// What a scan calls on each series.
enum Visit<'f> {
    Series(&'f mut dyn FnMut(&Arc<Series>)),
    /// Also given the series' samples, read-locked.
    Samples(&'f mut dyn FnMut(&Arc<Series>, &SampleRing)),
}

/// Visits a batch of a scan (see [`SeriesCache::scan`]).
fn visit_batch(batch: &[Option<&Arc<Series>>], visit: &mut Visit<'_>) {
    if let Visit::Samples(_) = visit {
        // The lock word's cache line, which the visit is about to lock (plain `Series` visits may not).
        for s in batch.iter().flatten() {
            std::hint::black_box(s.state.is_locked());
        }
    }
    match visit {
        Visit::Series(f) => {
            for s in batch.iter().flatten() {
                f(s);
            }
        }
        // Locking the batch at once and touching its blocks before the visits measured slower (16 guards
        // held and dropped) than locking one series at a time.
        Visit::Samples(f) => {
            for s in batch.iter().flatten() {
                f(s, &s.state.read().ring);
            }
        }
    }
}

/// Cores available to this process, read once (`available_parallelism` reads cgroup files).
fn parallelism() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A selection's candidates by shard (`None`: every series) and the matchers the postings did not answer.
struct Plan<'m> {
    by_shard: Option<Vec<Vec<SeriesId>>>,
    rest: Vec<&'m Matcher>,
}

/// The series cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SeriesCache {
    opts: CacheOptions,
    retention_ms: i64,
    shards: Box<[Shard]>,
    postings: RwLock<Postings>,
    count: AtomicUsize,
    metrics: CacheMetrics,
    /// Threads a large query scan may use ([`Self::set_scan_threads`]).
    scan_threads: AtomicUsize,
}

impl SeriesCache {
    pub fn new(opts: CacheOptions) -> SeriesCache {
        SeriesCache {
            retention_ms: millis(opts.retention),
            opts,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            postings: RwLock::default(),
            count: AtomicUsize::new(0),
            metrics: CacheMetrics::default(),
            scan_threads: AtomicUsize::new(2),
        }
    }

    /// Registers the cache's metrics.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "surge_aggregator_series",
            "Series held in the cache",
            m.series.clone(),
        );
        registry.register(
            "surge_aggregator_series_created",
            "Series created in the cache",
            m.created.clone(),
        );
        registry.register(
            "surge_aggregator_series_evicted",
            "Series evicted from the cache after idle_ttl without samples",
            m.evicted.clone(),
        );
        registry.register(
            "surge_aggregator_stale_reads",
            "Series left out of a read because their newest sample was a staleness marker or older than stale_after",
            m.stale_reads.clone(),
        );
        registry.register(
            "surge_aggregator_memory_estimate_bytes",
            "Estimated bytes held by the cache, updated by each sweep",
            m.memory_bytes.clone(),
        );
    }

    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Sets how many threads (1 or 2) a large query scan may use. 2, the default, splits selections of at
    /// least [`SPLIT_MIN_SERIES`] series across a scoped second thread when the process may use 2 cores;
    /// 1 keeps every query on its caller's thread. On the 2-vCPU benchmark host the split cut
    /// `sum(rate(x[30s]))` over 10,000 series from ~0.85 ms to ~0.55 ms while the second core was idle, but
    /// made the tail worse while other processes kept both cores busy (the join waits for the second
    /// thread to be scheduled): hosts whose cores are saturated by ingest may prefer 1.
    /// `benches/benches/aggregator_query.rs` prints both.
    pub fn set_scan_threads(&self, n: usize) {
        self.scan_threads.store(n.clamp(1, 2), Ordering::Relaxed);
    }

    fn scan_threads(&self) -> usize {
        if parallelism() < 2 {
            1
        } else {
            self.scan_threads.load(Ordering::Relaxed)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: SeriesId) -> Option<Arc<Series>> {
        self.shards[id.shard()].read().get(&id).cloned()
    }

    /// Finds or creates the series for `labels` (which must be valid).
    pub fn get_or_create(&self, labels: &Labels, now_ms: i64) -> Result<Arc<Series>, CreateError> {
        let id = SeriesId::of(labels);
        if let Some(s) = self.get(id)
            && s.labels == *labels
        {
            return Ok(s);
        }
        let mut shard = self.shards[id.shard()].write();
        if let Some(s) = shard.get(&id) {
            return if s.labels == *labels {
                Ok(s.clone())
            } else {
                Err(CreateError::Collision)
            };
        }
        if self.count.load(Ordering::Relaxed) >= self.opts.max_series {
            return Err(CreateError::Limit);
        }
        let interned = self.postings.write().add(id, labels);
        let series = Arc::new(Series {
            id,
            labels: interned,
            state: RwLock::new(SeriesState {
                ring: SampleRing::new(),
                last_append_ms: now_ms,
            }),
        });
        shard.insert(id, series.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        self.metrics.series.inc();
        self.metrics.created.inc();
        Ok(series)
    }

    /// Convenience for tests and tools: appends one sample to the series `labels`, creating it.
    pub fn append(
        &self,
        labels: &Labels,
        s: Sample,
        now_ms: i64,
    ) -> Result<AppendOutcome, CreateError> {
        let series = self.get_or_create(labels, now_ms)?;
        Ok(series.append(
            std::iter::once(s),
            AppendBounds {
                min_ms: i64::MIN,
                max_ms: i64::MAX,
                now_ms,
            },
            self.retention_ms,
        ))
    }

    /// The series matching all `matchers`; fails once more than `limit` match.
    pub fn select(
        &self,
        matchers: &[Matcher],
        limit: usize,
    ) -> Result<Vec<Arc<Series>>, SelectError> {
        let plan = self.plan(matchers, limit)?;
        let mut out = Vec::with_capacity(
            plan.by_shard
                .as_ref()
                .map_or(0, |b| b.iter().map(Vec::len).sum::<usize>().min(limit)),
        );
        self.scan(
            &plan,
            0..SHARDS,
            limit,
            Visit::Series(&mut |s| out.push(s.clone())),
        )?;
        Ok(out)
    }

    /// Calls `f` on each series matching all `matchers` and returns how many matched; fails once more than
    /// `limit` match (possibly after calling `f` on some). The query engine's scan: `f` runs under the read
    /// lock of the series' shard, so a scan takes 32 shard locks rather than cloning an `Arc` per series,
    /// and `f` must not touch the series map (it may take series locks: lock order is shard, then series).
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        limit: usize,
        mut f: impl FnMut(&Arc<Series>),
    ) -> Result<usize, SelectError> {
        let plan = self.plan(matchers, limit)?;
        self.scan(&plan, 0..SHARDS, limit, Visit::Series(&mut f))
    }

    /// [`Self::select_each`] for the query engine's scans: `f` also gets the series' samples, read-locked
    /// (in batches, see [`Self::scan`]), so it must not lock the series itself. When at least
    /// [`SPLIT_MIN_SERIES`] series are candidates and two scan threads are allowed
    /// ([`Self::set_scan_threads`]), the second half of the shards is scanned on a scoped thread into a
    /// second state. Returns the states in scan order (the order `select_each` would visit the
    /// series in), so a caller that replays them in order gets the sequential result bit for bit.
    pub fn select_each_split<S: Send>(
        &self,
        matchers: &[Matcher],
        limit: usize,
        init: impl Fn() -> S + Sync,
        f: impl Fn(&mut S, &Arc<Series>, &SampleRing) + Sync,
    ) -> Result<Vec<S>, SelectError> {
        let plan = self.plan(matchers, limit)?;
        let candidates = plan
            .by_shard
            .as_ref()
            .map_or(self.len(), |b| b.iter().map(Vec::len).sum());
        if candidates < SPLIT_MIN_SERIES || self.scan_threads() < 2 {
            let mut st = init();
            self.scan(
                &plan,
                0..SHARDS,
                limit,
                Visit::Samples(&mut |s, r| f(&mut st, s, r)),
            )?;
            return Ok(vec![st]);
        }
        let half = SHARDS / 2;
        let run = |shards: std::ops::Range<usize>| {
            let mut st = init();
            let n = self.scan(
                &plan,
                shards,
                limit,
                Visit::Samples(&mut |s, r| f(&mut st, s, r)),
            );
            n.map(|n| (n, st))
        };
        let (a, b) = std::thread::scope(|sc| {
            let second = sc.spawn(|| run(half..SHARDS));
            let a = run(0..half);
            let b = second
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (a, b)
        });
        let ((na, a), (nb, b)) = (a?, b?);
        if na + nb > limit {
            return Err(SelectError::TooManySeries { limit });
        }
        Ok(vec![a, b])
    }

    /// The candidates of a selection (from the postings) and the matchers left to check on each.
    fn plan<'m>(&self, matchers: &'m [Matcher], limit: usize) -> Result<Plan<'m>, SelectError> {
        let mut answered = vec![false; matchers.len()];
        let candidates = {
            let postings = self.postings.read();
            let mut sets: Vec<Vec<SeriesId>> = Vec::new();
            for (i, m) in matchers.iter().enumerate() {
                match m.op {
                    MatchOp::Equal if !m.value.is_empty() => {
                        let ids = postings
                            .names
                            .get(m.name.as_str())
                            .and_then(|v| v.get(m.value.as_str()));
                        sets.push(ids.map(|s| s.iter().copied().collect()).unwrap_or_default());
                        answered[i] = true;
                    }
                    MatchOp::Regex if !m.matches("") => {
                        let mut ids = Vec::new();
                        if let Some(values) = postings.names.get(m.name.as_str()) {
                            for (v, s) in values {
                                if m.matches(v) {
                                    ids.extend(s.iter().copied());
                                }
                            }
                        }
                        sets.push(ids);
                        answered[i] = true;
                    }
                    _ => {}
                }
            }
            if sets.is_empty() {
                None
            } else {
                sets.sort_by_key(Vec::len);
                let mut it = sets.into_iter();
                let mut acc = it.next().unwrap_or_default();
                for other in it {
                    if acc.is_empty() {
                        break;
                    }
                    let other: HashSet<SeriesId, IdBuildHasher> = other.into_iter().collect();
                    acc.retain(|id| other.contains(id));
                }
                Some(acc)
            }
        };
        let rest: Vec<&Matcher> = matchers
            .iter()
            .zip(&answered)
            .filter(|(_, a)| !**a)
            .map(|(m, _)| m)
            .collect();
        let by_shard = match candidates {
            Some(ids) => {
                if rest.is_empty() && ids.len() > limit {
                    return Err(SelectError::TooManySeries { limit });
                }
                let mut by_shard: Vec<Vec<SeriesId>> = vec![Vec::new(); SHARDS];
                for id in ids {
                    by_shard[id.shard()].push(id);
                }
                Some(by_shard)
            }
            None => None,
        };
        Ok(Plan { by_shard, rest })
    }

    /// Calls `visit` on the series of `plan` in `shards`; returns how many, failing past `limit`.
    ///
    /// Series are visited in batches of [`BATCH`]: first the map lookups and a plain load of each one's
    /// lock word, then the visits. The loads of a batch are independent, so the CPU overlaps their cache
    /// misses, where visiting one series at a time would wait for each miss behind the previous series'
    /// lock (an atomic RMW, which orders all memory accesses around it).
    fn scan(
        &self,
        plan: &Plan<'_>,
        shards: std::ops::Range<usize>,
        limit: usize,
        mut visit: Visit<'_>,
    ) -> Result<usize, SelectError> {
        let keep = |s: &Series| plan.rest.iter().all(|m| m.matches_labels(&s.labels));
        let mut n = 0usize;
        for i in shards {
            let Some(shard) = self.shards.get(i) else {
                continue;
            };
            let ids = match &plan.by_shard {
                Some(by_shard) => match by_shard.get(i) {
                    Some(ids) if !ids.is_empty() => Some(ids),
                    _ => continue,
                },
                None => None,
            };
            let map = shard.read();
            let mut batch: [Option<&Arc<Series>>; BATCH] = [None; BATCH];
            let mut len = 0;
            let mut all = map.values();
            let mut ids = ids.map(|ids| ids.iter());
            loop {
                let next = match ids.as_mut() {
                    Some(ids) => match ids.next() {
                        Some(id) => map.get(id),
                        None => break,
                    },
                    None => match all.next() {
                        Some(s) => Some(s),
                        None => break,
                    },
                };
                let Some(s) = next.filter(|s| keep(s)) else {
                    continue;
                };
                n += 1;
                if n > limit {
                    return Err(SelectError::TooManySeries { limit });
                }
                batch[len] = Some(s);
                len += 1;
                if len == BATCH {
                    visit_batch(&batch[..len], &mut visit);
                    len = 0;
                }
            }
            visit_batch(&batch[..len], &mut visit);
        }
        Ok(n)
    }

    /// The current value of series `id` at `now_ms` under the `stale_after` rule.
    pub fn current(&self, id: SeriesId, now_ms: i64) -> Current {
        let Some(series) = self.get(id) else {
            return Current::Missing;
        };
        match series.read(|r| r.last()) {
            Some(s)
                if !is_stale_nan(s.value)
                    && s.timestamp_ms >= now_ms - millis(self.opts.stale_after) =>
            {
                Current::Fresh(s)
            }
            Some(_) => {
                self.metrics.stale_reads.inc();
                Current::Stale
            }
            None => Current::Missing,
        }
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .postings
            .read()
            .names
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// All values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .postings
            .read()
            .names
            .get(name)
            .map(|m| m.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Evicts series idle for `idle_ttl`, trims blocks past the retention of the others, and refreshes the
    /// series and memory gauges. The lead schedules it (every few seconds is plenty).
    pub fn sweep(&self, now_ms: i64) -> SweepStats {
        let idle_cutoff = now_ms.saturating_sub(millis(self.opts.idle_ttl));
        let retention_cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut stats = SweepStats::default();
        for shard in self.shards.iter() {
            let mut evict = Vec::new();
            {
                let map = shard.read();
                for s in map.values() {
                    let mut st = s.state.write();
                    if st.last_append_ms < idle_cutoff {
                        evict.push(s.id);
                    } else {
                        st.ring.trim(retention_cutoff);
                    }
                }
            }
            if !evict.is_empty() {
                let mut map = shard.write();
                let mut postings = self.postings.write();
                for id in &evict {
                    // Re-check under the write lock: a sample may have arrived since.
                    let idle = map
                        .get(id)
                        .is_some_and(|s| s.state.read().last_append_ms < idle_cutoff);
                    if idle && let Some(s) = map.remove(id) {
                        postings.remove(*id, &s.labels);
                        stats.evicted += 1;
                    }
                }
                map.shrink_to_fit();
            }
            let map = shard.read();
            stats.remaining += map.len();
            stats.estimated_bytes += map.capacity() * 24;
            for s in map.values() {
                stats.estimated_bytes += s.estimated_bytes();
            }
        }
        stats.estimated_bytes += self.postings.read().heap_bytes();
        self.count.fetch_sub(stats.evicted, Ordering::Relaxed);
        self.metrics.evicted.inc_by(stats.evicted as u64);
        self.metrics.series.set(stats.remaining as i64);
        self.metrics
            .memory_bytes
            .set(i64::try_from(stats.estimated_bytes).unwrap_or(i64::MAX));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use surge_model::stale_nan;

    fn s(t: i64, v: f64) -> Sample {
        Sample {
            timestamp_ms: t,
            value: v,
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn eq(n: &str, v: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, n, v).unwrap()
    }

    #[test]
    fn out_of_order_and_duplicates_are_counted_not_fatal() {
        let c = SeriesCache::new(CacheOptions::default());
        let x = l(&[("__name__", "x")]);
        assert_eq!(c.append(&x, s(2000, 1.0), 0).unwrap().accepted, 1);
        assert_eq!(c.append(&x, s(1000, 1.0), 0).unwrap().out_of_order, 1);
        assert_eq!(
            c.append(&x, s(2000, 2.0), 0).unwrap().duplicate_timestamp,
            1
        );
        assert_eq!(c.append(&x, s(2000, 1.0), 0).unwrap().repeated, 1);
    }

    #[test]
    fn postings_select_and_regex_anchoring() {
        let c = SeriesCache::new(CacheOptions::default());
        for (job, inst) in [("api", "a"), ("api", "b"), ("db", "a")] {
            c.append(
                &l(&[("__name__", "up"), ("job", job), ("instance", inst)]),
                s(1, 1.0),
                0,
            )
            .unwrap();
        }
        c.append(&l(&[("__name__", "other")]), s(1, 1.0), 0)
            .unwrap();
        assert_eq!(c.select(&[eq("__name__", "up")], 100).unwrap().len(), 3);
        assert_eq!(
            c.select(&[eq("__name__", "up"), eq("job", "api")], 100)
                .unwrap()
                .len(),
            2
        );
        let re = Matcher::new(MatchOp::Regex, "job", "ap").unwrap();
        assert_eq!(c.select(&[re], 100).unwrap().len(), 0, "regex is anchored");
        let re = Matcher::new(MatchOp::Regex, "job", "ap.*|d.").unwrap();
        assert_eq!(c.select(&[re], 100).unwrap().len(), 3);
        let ne = Matcher::new(MatchOp::NotEqual, "job", "api").unwrap();
        assert_eq!(c.select(&[eq("__name__", "up"), ne], 100).unwrap().len(), 1);
        // A missing label matches "".
        let empty = eq("job", "");
        assert_eq!(c.select(&[empty], 100).unwrap().len(), 1);
        assert!(matches!(
            c.select(&[eq("__name__", "up")], 2),
            Err(SelectError::TooManySeries { limit: 2 })
        ));
        assert_eq!(c.label_values("job"), ["api", "db"]);
        assert_eq!(c.label_names(), ["__name__", "instance", "job"]);
    }

    #[test]
    fn labels_are_interned_across_series() {
        let c = SeriesCache::new(CacheOptions::default());
        let a = c
            .get_or_create(&l(&[("__name__", "x"), ("job", "j"), ("i", "1")]), 0)
            .unwrap();
        let b = c
            .get_or_create(&l(&[("__name__", "x"), ("job", "j"), ("i", "2")]), 0)
            .unwrap();
        let name = |s: &Series| {
            s.labels
                .iter()
                .find(|l| &*l.name == "job")
                .unwrap()
                .value
                .clone()
        };
        assert!(Arc::ptr_eq(&name(&a), &name(&b)));
    }

    #[test]
    fn stale_after_and_markers() {
        let c = SeriesCache::new(CacheOptions::default());
        let x = l(&[("__name__", "x")]);
        c.append(&x, s(10_000, 1.0), 10_000).unwrap();
        let id = SeriesId::of(&x);
        assert_eq!(c.current(id, 12_000), Current::Fresh(s(10_000, 1.0)));
        assert_eq!(c.current(id, 15_001), Current::Stale);
        c.append(&x, s(11_000, stale_nan()), 11_000).unwrap();
        assert_eq!(c.current(id, 11_500), Current::Stale);
        assert_eq!(c.current(SeriesId(1), 11_500), Current::Missing);
        assert_eq!(c.metrics().stale_reads.get(), 2);
        let mut v = Vec::new();
        c.get(id).unwrap().range_into(0, 20_000, &mut v);
        assert_eq!(v, [s(10_000, 1.0)], "range reads skip markers");
    }

    #[test]
    fn sweep_evicts_idle_series_and_cleans_postings() {
        let c = SeriesCache::new(CacheOptions {
            idle_ttl: Duration::from_secs(60),
            ..CacheOptions::default()
        });
        c.append(&l(&[("__name__", "old"), ("a", "1")]), s(0, 1.0), 0)
            .unwrap();
        c.append(&l(&[("__name__", "new")]), s(50_000, 1.0), 50_000)
            .unwrap();
        let st = c.sweep(100_000);
        assert_eq!((st.evicted, st.remaining), (1, 1));
        assert_eq!(c.len(), 1);
        assert_eq!(c.label_names(), ["__name__"]);
        assert_eq!(c.label_values("__name__"), ["new"]);
        assert_eq!(c.metrics().evicted.get(), 1);
    }

    #[test]
    fn series_limit() {
        let c = SeriesCache::new(CacheOptions {
            max_series: 1,
            ..CacheOptions::default()
        });
        c.append(&l(&[("__name__", "a")]), s(0, 1.0), 0).unwrap();
        assert_eq!(
            c.append(&l(&[("__name__", "b")]), s(0, 1.0), 0),
            Err(CreateError::Limit)
        );
    }

    /// Prints bytes/series for 5 min of 1 s samples (run with `--nocapture`); asserts the 1 KiB budget for
    /// the shapes that should fit: counters, constant and integer gauges, and decimal gauges.
    #[test]
    fn bytes_per_series() {
        let c = SeriesCache::new(CacheOptions::default());
        let now = 1_700_000_600_000i64;
        let n = 1000;
        /// Deterministic pseudo-random bits of (i, k).
        fn mix(i: i64, k: usize) -> u64 {
            let mut z = (i as u64) ^ ((k as u64) << 32);
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        type Shape = fn(i64, usize) -> f64;
        let shapes: [(&str, Shape, bool); 7] = [
            // A counter growing by a pseudo-random 0..=20 per second.
            (
                "counter",
                |i, k| {
                    (0..=i)
                        .map(|j| (j as u64 * 2_654_435_761 + k as u64 * 40_503) % 21)
                        .sum::<u64>() as f64
                },
                true,
            ),
            ("gauge_const", |_, k| k as f64, true),
            // A queue depth: an integer level varying by ±5.
            (
                "gauge_int",
                |i, k| (100 + k % 50) as f64 + (mix(i, k) % 11) as f64 - 5.0,
                true,
            ),
            // A latency in seconds with 3 decimals, as a scrape parses "0.183".
            (
                "gauge_3dec",
                |i, k| (150 + k % 50 + (mix(i, k) % 100) as usize) as f64 / 1000.0,
                true,
            ),
            // A full-precision ratio of two growing counters (hits / requests).
            (
                "gauge_ratio",
                |i, k| {
                    let req = 1000 + k as i64 * 10 + i * 20 + (mix(i, k) % 7) as i64;
                    let hits = 700 + k as i64 * 7 + i * 13 + (mix(i, k) % 5) as i64;
                    hits as f64 / req as f64
                },
                false,
            ),
            (
                "gauge_float",
                |i, k| ((i as f64) * 0.37 + k as f64).sin(),
                false,
            ),
            // Uniformly random bits (finite): incompressible.
            (
                "gauge_random",
                |i, k| f64::from_bits(mix(i, k) & !(0x7ffu64 << 52) | (0x3ffu64 << 52)),
                false,
            ),
        ];
        for (shape, f, fits) in shapes {
            for k in 0..n {
                let labels = l(&[
                    ("__name__", shape),
                    ("job", "api"),
                    ("namespace", "prod"),
                    ("pod", &format!("api-7d9f8-{k:05}")),
                    ("instance", &format!("10.0.{}.{}:8080", k / 256, k % 256)),
                ]);
                let series = c.get_or_create(&labels, now).unwrap();
                for i in 0..600i64 {
                    // 10 min of 1 s samples with a few ms of scrape jitter; 5 min are retained.
                    let t = now - 600_000 + i * 1000 + (i * 7 % 5);
                    series.append(
                        std::iter::once(s(t, f(i, k))),
                        AppendBounds {
                            min_ms: 0,
                            max_ms: i64::MAX,
                            now_ms: now,
                        },
                        c.retention_ms(),
                    );
                }
            }
            let sel = c.select(&[eq("__name__", shape)], usize::MAX).unwrap();
            let total: usize = sel.iter().map(|s| s.estimated_bytes()).sum();
            let samples: usize = sel.iter().map(|s| s.read(|r| r.len())).sum();
            let ring: usize = sel.iter().map(|s| s.read(|r| r.heap_bytes())).sum();
            println!(
                "{shape}: {} bytes/series ({} samples/series held; sample words {} B, struct {} B)",
                total / n,
                samples / n,
                ring / n,
                std::mem::size_of::<Series>()
            );
            if fits {
                assert!(total / n <= 1024, "{shape}: {} bytes/series", total / n);
            }
        }
        let st = c.sweep(now);
        println!(
            "whole cache incl. postings and maps: {} bytes/series",
            st.estimated_bytes / st.remaining
        );
    }

    /// Prints the whole-cache estimate (maps and postings included) for 10,000 series of 5 min of 1 s samples,
    /// a mix of 40% counters, 30% integer gauges, 20% 3-decimal gauges and 10% full-precision ratios.
    #[test]
    fn whole_cache_bytes_per_series_10k() {
        let c = SeriesCache::new(CacheOptions::default());
        let now = 1_700_000_600_000i64;
        let bounds = AppendBounds {
            min_ms: 0,
            max_ms: i64::MAX,
            now_ms: now,
        };
        for k in 0..10_000usize {
            let labels = l(&[
                (
                    "__name__",
                    ["c", "c", "c", "c", "g", "g", "g", "d", "d", "r"][k % 10],
                ),
                ("job", "api"),
                ("namespace", "prod"),
                ("pod", &format!("api-7d9f8-{k:05}")),
                ("instance", &format!("10.0.{}.{}:8080", k / 256, k % 256)),
            ]);
            let series = c.get_or_create(&labels, now).unwrap();
            let mut counter = 0u64;
            for i in 0..600i64 {
                let t = now - 600_000 + i * 1000 + (i * 7 % 5);
                let r = (i as u64 * 2_654_435_761 + k as u64 * 40_503) % 101;
                counter += r % 21;
                let v = match k % 10 {
                    0..=3 => counter as f64,
                    4..=6 => (100 + r % 11) as f64,
                    7 | 8 => (150 + r) as f64 / 1000.0,
                    _ => (700 + i * 13 + (r % 5) as i64) as f64 / (1000 + i * 20) as f64,
                };
                series.append(std::iter::once(s(t, v)), bounds, c.retention_ms());
            }
        }
        let st = c.sweep(now);
        println!(
            "10k mixed series, whole cache incl. postings and maps: {} bytes/series",
            st.estimated_bytes / st.remaining
        );
    }
}
