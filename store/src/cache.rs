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
//!   the evaluator's freshness option (`surge-promql`) asks for the stricter one.
//! - A series that received nothing for `idle_ttl` is evicted by [`SeriesCache::sweep`].
//!
//! # Labels
//!
//! Label strings are interned: the postings index doubles as the symbol table, and every series' `Labels`
//! hold `ArcStr`s taken from its keys, so a name or value is stored once however many series use it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use regex::Regex;
use smallvec::SmallVec;
use surge_model::{ArcStr, Labels, Sample, is_stale_nan};

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
    /// Identical copies of samples already held (same timestamp and value bits: a retry, or an agent's
    /// resend of what a peer's copy brought): ignored without error, as Prometheus ignores an exact
    /// duplicate. Not out of order.
    pub duplicates: u64,
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
                Ok(false) => out.duplicates += 1,
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

/// The series of one label value. Most values of high-cardinality labels (`pod`, `instance`) belong to one
/// series, held inline; the lists hold the series themselves, so a scan driven by the postings reaches
/// each series without a map lookup.
type PostingList = SmallVec<[Arc<Series>; 1]>;
/// value → series of one label name.
type ValuePostings = HashMap<ArcStr, PostingList>;

#[derive(Debug, Default)]
struct Postings {
    /// name → value → series. The keys are the interned strings every series' labels share.
    names: HashMap<ArcStr, ValuePostings>,
}

impl Postings {
    /// The same labels built from interned strings (interning the new ones).
    fn intern(&mut self, labels: &Labels) -> Labels {
        let mut pairs = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            let name = match self.names.get_key_value(&*l.name) {
                Some((k, _)) => k.clone(),
                None => {
                    let k = l.name.clone();
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
                    let k = l.value.clone();
                    values.insert(k.clone(), SmallVec::new());
                    k
                }
            };
            pairs.push((name, value));
        }
        // `clone` leaves the label vector with capacity == length (the builder's may be larger).
        Labels::from_pairs(pairs).clone()
    }

    /// Indexes `series` (whose labels [`Self::intern`] built) under each of its labels.
    fn add(&mut self, series: &Arc<Series>) {
        for l in series.labels.iter() {
            if let Some(list) = self
                .names
                .get_mut(&*l.name)
                .and_then(|v| v.get_mut(&*l.value))
            {
                // Grow by a quarter, not double: a list as long as a metric's series count would leave
                // up to half of its slots (8 bytes each) unused.
                if list.len() == list.capacity() {
                    list.reserve_exact((list.len() / 4).max(1));
                }
                list.push(series.clone());
            }
        }
    }

    /// Removes `gone` from every list, one pass per affected list (evicting n series of one value costs
    /// O(list), not O(n · list)).
    fn remove_all(&mut self, gone: &[Arc<Series>]) {
        let ptrs: HashSet<usize> = gone.iter().map(|s| Arc::as_ptr(s) as usize).collect();
        let mut pairs: HashSet<(&str, &str)> = HashSet::new();
        for s in gone {
            for l in s.labels.iter() {
                pairs.insert((&*l.name, &*l.value));
            }
        }
        for (name, value) in pairs {
            let Some(values) = self.names.get_mut(name) else {
                continue;
            };
            if let Some(list) = values.get_mut(value) {
                list.retain(|s| !ptrs.contains(&(Arc::as_ptr(s) as usize)));
                if list.is_empty() {
                    values.remove(value);
                } else if list.spilled() && list.capacity() > 2 * list.len() {
                    list.shrink_to_fit();
                }
            }
            if values.is_empty() {
                self.names.remove(name);
            } else if values.capacity() > 4 * values.len() {
                values.shrink_to_fit();
            }
        }
    }

    /// Estimated heap bytes of the index: hash table entries at their capacity, the interned strings
    /// (shared with every series' labels, counted once here) and spilled lists, each allocation with
    /// ~16 bytes of allocator overhead.
    fn heap_bytes(&self) -> usize {
        const ALLOC: usize = 16;
        let str_bytes = |s: &str| 16 + s.len().next_multiple_of(8) + ALLOC;
        let entry = std::mem::size_of::<(ArcStr, PostingList)>() + 1;
        let mut b = self.names.capacity() * (std::mem::size_of::<(ArcStr, ValuePostings)>() + 1);
        for (n, values) in &self.names {
            b += str_bytes(n) + values.capacity() * entry + ALLOC;
            for (v, list) in values {
                b += str_bytes(v);
                if list.spilled() {
                    b += list.capacity() * std::mem::size_of::<Arc<Series>>() + ALLOC;
                }
            }
        }
        b
    }
}

/// Selections with at least this many candidate series may be scanned by two threads
/// ([`SeriesCache::select_each_split`], [`SeriesCache::set_scan_threads`]): below it, spawning a thread
/// costs more than it saves.
pub const SPLIT_MIN_SERIES: usize = 4096;

/// How many series ahead of its visit a scan prefetches (see [`visit_seq`]).
const AHEAD: usize = 8;

/// What a scan calls on each series.
enum Visit<'f> {
    Series(&'f mut dyn FnMut(&Arc<Series>)),
    /// Also given the series' samples, read-locked.
    Samples(&'f mut dyn FnMut(&Arc<Series>, &SampleRing)),
}

/// Asks the CPU to fetch `lines` cache lines from address `p` without waiting for them.
#[inline(always)]
fn prefetch_lines(p: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..lines {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and its result is not
        // observable.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * i).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// Prefetches the struct of series `s` (labels, lock, ring header and tail: 152 bytes).
#[inline(always)]
fn prefetch(s: &Arc<Series>) {
    prefetch_lines(Arc::as_ptr(s).cast::<u8>(), 3);
}

/// Visits the series of `items` that pass `keep`, counting them into `n` and failing past `limit`.
///
/// Each series is prefetched [`AHEAD`] visits before its own, so the cache misses of successive series
/// overlap. (Prefetching each series' recent blocks too, from an address hint kept in the struct,
/// measured no faster: past the struct, a visit is bound by its arithmetic, not by memory.) Without it every visit waits for its series' first miss, and the lock taken on it (an atomic
/// read-modify-write, which orders the memory accesses around it) keeps the CPU from running ahead.
fn visit_seq<'a>(
    items: impl Iterator<Item = &'a Arc<Series>> + Clone,
    keep: &dyn Fn(&Series) -> bool,
    n: &mut usize,
    limit: usize,
    visit: &mut Visit<'_>,
) -> Result<(), SelectError> {
    let mut ahead = items.clone();
    for s in ahead.by_ref().take(AHEAD) {
        prefetch(s);
    }
    for s in items {
        if let Some(a) = ahead.next() {
            prefetch(a);
        }
        if !keep(s) {
            continue;
        }
        *n += 1;
        if *n > limit {
            return Err(SelectError::TooManySeries { limit });
        }
        match visit {
            Visit::Series(f) => f(s),
            Visit::Samples(f) => f(s, &s.state.read().ring),
        }
    }
    Ok(())
}

/// Cores available to this process, read once (`available_parallelism` reads cgroup files).
fn parallelism() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Where a selection's candidates come from.
enum Source<'p> {
    /// Posting lists of one label name (disjoint: a series has one value per name).
    Lists(Lists<'p>),
    /// Every series, shard by shard.
    Shards,
}

/// Plans a selection: the candidates are the smallest list of an `=` matcher, else the lists of the
/// values a `=~` matcher accepts (one that does not match the empty string), else every series. Returns
/// them with the matchers left to check on each candidate.
fn plan<'p, 'm>(postings: &'p Postings, matchers: &'m [Matcher]) -> (Source<'p>, Vec<&'m Matcher>) {
    let values_of = |m: &Matcher| postings.names.get(m.name.as_str());
    let mut best: Option<(usize, &'p [Arc<Series>])> = None;
    for (i, m) in matchers.iter().enumerate() {
        if m.op == MatchOp::Equal && !m.value.is_empty() {
            let list = values_of(m)
                .and_then(|v| v.get(m.value.as_str()))
                .map_or(&[][..], |l| l.as_slice());
            if best.is_none_or(|(_, b)| list.len() < b.len()) {
                best = Some((i, list));
            }
        }
    }
    let (driver, source) = match best {
        Some((i, list)) => (Some(i), Source::Lists(vec![list])),
        None => {
            match matchers
                .iter()
                .position(|m| m.op == MatchOp::Regex && !m.matches(""))
            {
                Some(i) => {
                    let m = &matchers[i];
                    let lists = values_of(m).map_or_else(Vec::new, |values| {
                        values
                            .iter()
                            .filter(|(v, _)| m.matches(v))
                            .map(|(_, l)| l.as_slice())
                            .collect()
                    });
                    (Some(i), Source::Lists(lists))
                }
                None => (None, Source::Shards),
            }
        }
    };
    let rest = matchers
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != driver)
        .map(|(_, m)| m)
        .collect();
    (source, rest)
}

/// Runs `run(a)` on this thread and `run(b)` on a scoped second one (whose panic resumes here).
fn on_two_threads<P: Send, R: Send>(run: impl Fn(P) -> R + Sync, a: P, b: P) -> (R, R) {
    std::thread::scope(|sc| {
        let second = sc.spawn(|| run(b));
        let first = run(a);
        let second = second
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (first, second)
    })
}

/// Candidates as a sequence of posting lists (or parts of them).
type Lists<'p> = Vec<&'p [Arc<Series>]>;

/// Splits a sequence of lists at item `at`.
fn split_lists<'p>(lists: &[&'p [Arc<Series>]], at: usize) -> (Lists<'p>, Lists<'p>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut seen = 0;
    for &l in lists {
        if seen >= at {
            b.push(l);
        } else if seen + l.len() <= at {
            a.push(l);
        } else {
            let (x, y) = l.split_at(at - seen);
            a.push(x);
            b.push(y);
        }
        seen += l.len();
    }
    (a, b)
}

/// Whether series `s` passes every matcher of `rest`.
fn keeps(rest: &[&Matcher], s: &Series) -> bool {
    rest.iter().all(|m| m.matches_labels(&s.labels))
}

/// [`SeriesCache::history_since`] of a store that declared nothing: complete history.
pub const HISTORY_COMPLETE: i64 = i64::MIN;
/// [`SeriesCache::history_since`] while the history is being copied in: nothing is complete yet.
pub const HISTORY_PENDING: i64 = i64::MAX;

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
    /// Explicit readiness ([`Self::set_ready`]): readers answer 503 until the process says the store serves.
    ready: AtomicBool,
    /// Since when the store holds complete history ([`Self::set_history_since`]).
    history_since_ms: std::sync::atomic::AtomicI64,
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
            scan_threads: AtomicUsize::new(1),
            ready: AtomicBool::new(false),
            history_since_ms: std::sync::atomic::AtomicI64::new(HISTORY_COMPLETE),
        }
    }

    /// Readiness is explicit: the process marks the store ready once it serves (or once it holds enough
    /// history for its readers); `/readyz` of every API reading it answers 503 until then.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Restart hygiene, explicit like readiness: the process says since when (ms since the epoch) the
    /// store holds *every* sample its writers sent: its start, or earlier once a peer replica's recent
    /// window was copied in; [`HISTORY_PENDING`] while such a copy runs. Readers that need a window of
    /// history (the autoscaler's rates) wait until the window lies after it. Default
    /// [`HISTORY_COMPLETE`]: nothing declared, the store is taken as complete (tests, tools).
    pub fn set_history_since(&self, since_ms: i64) {
        self.history_since_ms.store(since_ms, Ordering::Release);
    }

    /// See [`Self::set_history_since`].
    pub fn history_since(&self) -> i64 {
        self.history_since_ms.load(Ordering::Acquire)
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

    /// Sets how many threads (1 or 2) a large query scan may use. 1, the default, keeps every query on its
    /// caller's thread; 2 splits selections of at least [`SPLIT_MIN_SERIES`] series across a scoped second
    /// thread when the process may use 2 cores. On the 2-vCPU benchmark host, `sum(rate(x[30s]))` over
    /// 10,000 series measured p50 0.68-0.69 ms / p99 0.75-0.80 ms on one thread and p50 0.55-0.58 ms /
    /// p99 0.88-0.97 ms on two: the split shortens the median but lengthens the tail (the join waits for
    /// the second thread to be scheduled), and the autoscaling path is judged by its tail.
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
        let series = {
            let mut postings = self.postings.write();
            let series = Arc::new(Series {
                id,
                labels: postings.intern(labels),
                state: RwLock::new(SeriesState {
                    ring: SampleRing::new(),
                    last_append_ms: now_ms,
                }),
            });
            postings.add(&series);
            series
        };
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
        let mut out = Vec::new();
        self.select_each(matchers, limit, |s| out.push(s.clone()))?;
        Ok(out)
    }

    /// Calls `f` on each series matching all `matchers` and returns how many matched; fails once more than
    /// `limit` match (possibly after calling `f` on some). The query engine's scan: `f` runs under the read
    /// lock of the postings (or of the series' shard when no matcher can use the postings), so a scan
    /// clones no `Arc`; `f` may take series locks but must not select or create series itself.
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        limit: usize,
        mut f: impl FnMut(&Arc<Series>),
    ) -> Result<usize, SelectError> {
        let postings = self.postings.read();
        let (source, rest) = plan(&postings, matchers);
        match source {
            Source::Lists(lists) => Self::scan_lists(&lists, &rest, limit, Visit::Series(&mut f)),
            Source::Shards => {
                drop(postings);
                self.scan_shards(0..SHARDS, &rest, limit, Visit::Series(&mut f))
            }
        }
    }

    /// [`Self::select_each`] for the query engine's scans: `f` also gets the series' samples, read-locked,
    /// so it must not lock the series itself. When at least [`SPLIT_MIN_SERIES`] series are candidates and
    /// two scan threads are allowed ([`Self::set_scan_threads`]), the second half of the candidates is
    /// scanned on a scoped thread into a second state. Returns the states in scan order (the order
    /// `select_each` would visit the series in), so a caller that replays them in order gets the
    /// sequential result bit for bit.
    pub fn select_each_split<S: Send>(
        &self,
        matchers: &[Matcher],
        limit: usize,
        init: impl Fn() -> S + Sync,
        f: impl Fn(&mut S, &Arc<Series>, &SampleRing) + Sync,
    ) -> Result<Vec<S>, SelectError> {
        let two = self.scan_threads() >= 2;
        let postings = self.postings.read();
        let (source, rest) = plan(&postings, matchers);
        let ((na, a), (nb, b)) = match source {
            Source::Lists(lists) => {
                let total: usize = lists.iter().map(|l| l.len()).sum();
                if total < SPLIT_MIN_SERIES || !two {
                    let mut st = init();
                    let visit = Visit::Samples(&mut |s, r| f(&mut st, s, r));
                    Self::scan_lists(&lists, &rest, limit, visit)?;
                    return Ok(vec![st]);
                }
                if rest.is_empty() && total > limit {
                    return Err(SelectError::TooManySeries { limit });
                }
                let (first, second) = split_lists(&lists, total / 2);
                let run = |lists: &[&[Arc<Series>]]| {
                    let mut st = init();
                    let visit = Visit::Samples(&mut |s, r| f(&mut st, s, r));
                    Self::scan_lists(lists, &rest, limit, visit).map(|n| (n, st))
                };
                let (a, b) = on_two_threads(run, &first[..], &second[..]);
                (a?, b?)
            }
            Source::Shards => {
                drop(postings);
                let run = |shards: std::ops::Range<usize>| {
                    let mut st = init();
                    let visit = Visit::Samples(&mut |s, r| f(&mut st, s, r));
                    self.scan_shards(shards, &rest, limit, visit)
                        .map(|n| (n, st))
                };
                if self.len() < SPLIT_MIN_SERIES || !two {
                    return Ok(vec![run(0..SHARDS)?.1]);
                }
                let (a, b) = on_two_threads(run, 0..SHARDS / 2, SHARDS / 2..SHARDS);
                (a?, b?)
            }
        };
        if na + nb > limit {
            return Err(SelectError::TooManySeries { limit });
        }
        Ok(vec![a, b])
    }

    /// Visits the candidates in `lists` that pass `rest`; returns how many, failing past `limit`
    /// (before any visit when every candidate matches).
    fn scan_lists(
        lists: &[&[Arc<Series>]],
        rest: &[&Matcher],
        limit: usize,
        mut visit: Visit<'_>,
    ) -> Result<usize, SelectError> {
        if rest.is_empty() && lists.iter().map(|l| l.len()).sum::<usize>() > limit {
            return Err(SelectError::TooManySeries { limit });
        }
        let mut n = 0;
        let keep = |s: &Series| keeps(rest, s);
        visit_seq(
            lists.iter().copied().flatten(),
            &keep,
            &mut n,
            limit,
            &mut visit,
        )?;
        Ok(n)
    }

    /// Visits every series of `shards` that passes `rest`; returns how many, failing past `limit`.
    fn scan_shards(
        &self,
        shards: std::ops::Range<usize>,
        rest: &[&Matcher],
        limit: usize,
        mut visit: Visit<'_>,
    ) -> Result<usize, SelectError> {
        let mut n = 0;
        let keep = |s: &Series| keeps(rest, s);
        for shard in self.shards.get(shards).unwrap_or_default() {
            let map = shard.read();
            visit_seq(map.values(), &keep, &mut n, limit, &mut visit)?;
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
        let mut gone = Vec::new();
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
                for id in &evict {
                    // Re-check under the write lock: a sample may have arrived since.
                    let idle = map
                        .get(id)
                        .is_some_and(|s| s.state.read().last_append_ms < idle_cutoff);
                    if idle && let Some(s) = map.remove(id) {
                        gone.push(s);
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
        if !gone.is_empty() {
            // Out of the maps already: a scan that still finds them in the postings sees idle series.
            self.postings.write().remove_all(&gone);
            stats.evicted = gone.len();
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

    /// Deterministic pseudo-random bits of (i, k).
    fn mix(i: i64, k: usize) -> u64 {
        let mut z = (i as u64) ^ ((k as u64) << 32);
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A cache for the memory tests, the time they fill it up to, and append bounds accepting everything.
    fn memory_test_cache() -> (SeriesCache, i64, AppendBounds) {
        let now = 1_700_000_600_000i64;
        let bounds = AppendBounds {
            min_ms: 0,
            max_ms: i64::MAX,
            now_ms: now,
        };
        (SeriesCache::new(CacheOptions::default()), now, bounds)
    }

    /// Sweeps `c` and prints its bytes per series, whole and by part; returns the whole.
    fn memory_report(c: &SeriesCache, now: i64, what: &str) -> usize {
        let st = c.sweep(now);
        let n = st.remaining.max(1);
        let all = c.select(&[], usize::MAX).unwrap();
        let series: usize = all.iter().map(|s| s.estimated_bytes()).sum();
        let ring: usize = all.iter().map(|s| s.read(|r| r.heap_bytes())).sum();
        let held: usize = all.iter().map(|s| s.read(|r| r.len())).sum();
        let postings = c.postings.read().heap_bytes();
        let per = st.estimated_bytes / n;
        println!(
            "{what}, whole cache incl. postings and maps: {per} bytes/series (sample words {}, series \
             struct/labels/allocations {}, postings {}, maps {}; {} samples held/series)",
            ring / n,
            (series - ring) / n,
            postings / n,
            (st.estimated_bytes - series - postings) / n,
            held / n,
        );
        per
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
        assert_eq!(c.append(&x, s(2000, 1.0), 0).unwrap().duplicates, 1);
    }

    /// A peer's copy, then the agent's resend of the same samples with a new one: the resent ones are
    /// duplicates, not out of order, and the new one lands.
    #[test]
    fn resent_samples_after_a_copy_are_duplicates() {
        let c = SeriesCache::new(CacheOptions::default());
        let x = l(&[("__name__", "x"), ("pod", "a")]);
        let series = c.get_or_create(&x, 0).unwrap();
        let bounds = AppendBounds {
            min_ms: i64::MIN,
            max_ms: i64::MAX,
            now_ms: 0,
        };
        let copied: Vec<Sample> = (1..=100).map(|i| s(i * 1000, i as f64)).collect();
        let out = series.append(copied.iter().copied(), bounds, i64::MAX);
        assert_eq!(out.accepted, 100);
        let resent = (91..=101).map(|i| s(i * 1000, i as f64));
        let out = series.append(resent, bounds, i64::MAX);
        assert_eq!(
            (out.accepted, out.duplicates, out.out_of_order),
            (1, 10, 0),
            "{out:?}"
        );
        assert_eq!(out.newest_ms, Some(101_000));
        // The same timestamps with other values are still refused as out of order.
        let changed = (95..=96).map(|i| s(i * 1000, -1.0));
        let out = series.append(changed, bounds, i64::MAX);
        assert_eq!((out.duplicates, out.out_of_order), (0, 2), "{out:?}");
        assert_eq!(series.read(|r| r.len()), 101);
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
        assert!(ArcStr::ptr_eq(&name(&a), &name(&b)));
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

    /// Fills a cache as an aggregator holds it for real targets: 100 pods × 100 series (so target labels
    /// are shared, as they are when a pod exposes many series), 5 min of 1 s samples, shaped on what a Go
    /// service and node-exporter expose (measured on this machine's node-exporter: of 507 series, 392 held
    /// still over 5 s, 65 varied as integers or ≤ 2-decimal values, 49 as nanosecond durations printed in
    /// seconds, 1 as a full-precision float). Per pod: 44 histogram buckets, 4 `_count` and 16 request
    /// counters (integer counters), 4 `_sum` (full-precision float counters), 10 integer gauges, 8
    /// nanosecond durations, 4 three-decimal gauges, 10 constants. Timestamps are exactly 1 s apart as
    /// surge's agent stamps them (`surge run` shows every sample on its slot), or with 0-4 ms of jitter
    /// as senders that stamp the wall clock send them.
    fn fill_realistic_targets(jitter: bool) -> (SeriesCache, i64) {
        let (c, now, bounds) = memory_test_cache();
        let les = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
        ];
        // Filled round-robin, a sample of every series a second, as ingest fills it.
        type Shape = Box<dyn Fn(i64, usize) -> f64>;
        let mut work: Vec<(Arc<Series>, usize, Shape)> = Vec::new();
        for pod in 0..100usize {
            let pod_name = format!("api-7d9f8c6b5-{pod:05}");
            let instance = format!("10.1.{}.{}:8080", pod / 256, pod % 256);
            let mut j = 0usize;
            let mut add = |name: &str, extra: &[(&str, &str)], f: Shape| {
                j += 1;
                let k = pod * 100 + j;
                let mut pairs = vec![
                    ("__name__", name),
                    ("job", "api"),
                    ("namespace", "prod"),
                    ("pod", pod_name.as_str()),
                    ("instance", instance.as_str()),
                ];
                pairs.extend_from_slice(extra);
                work.push((c.get_or_create(&l(&pairs), now).unwrap(), k, f));
            };
            // A counter growing by a pseudo-random 0..=rate per second.
            let counter = |rate: u64| {
                move |i: i64, k: usize| (0..=i).map(|j| mix(j, k) % (rate + 1)).sum::<u64>() as f64
            };
            for code in ["200", "500"] {
                for method in ["GET", "POST"] {
                    for (b, le) in les.iter().enumerate() {
                        let rate = 2 + 4 * b as u64;
                        add(
                            "http_request_duration_seconds_bucket",
                            &[("code", code), ("method", method), ("le", le)],
                            Box::new(counter(rate)),
                        );
                    }
                    let extra = [("code", code), ("method", method)];
                    add(
                        "http_request_duration_seconds_count",
                        &extra,
                        Box::new(counter(40)),
                    );
                    // The sum of float latencies: not a decimal after the first additions.
                    add(
                        "http_request_duration_seconds_sum",
                        &extra,
                        Box::new(|i, k| {
                            (0..=i)
                                .map(|j| {
                                    (mix(j, k) % 40) as f64
                                        * (0.0137 + (mix(j, k + 1) % 1000) as f64 * 1e-7)
                                })
                                .sum()
                        }),
                    );
                }
            }
            for r in [
                "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p",
            ] {
                add("app_requests_total", &[("route", r)], Box::new(counter(20)));
            }
            for g in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
                add(
                    "app_queue_depth",
                    &[("queue", g)],
                    Box::new(|i, k| (100 + (mix(i, k) % 11)) as f64),
                );
            }
            for d in ["0", "1", "2", "3", "4", "5", "6", "7"] {
                add(
                    "app_step_duration_seconds",
                    &[("step", d)],
                    Box::new(|i, k| {
                        let text = format!("{}", (100_000 + mix(i, k) % 60_000) as f64 / 1e9);
                        text.parse().unwrap()
                    }),
                );
            }
            for d in ["0", "1", "2", "3"] {
                add(
                    "app_latency_seconds",
                    &[("quantile", d)],
                    Box::new(|i, k| (150 + mix(i, k) % 100) as f64 / 1000.0),
                );
            }
            for d in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
                add(
                    "app_limit",
                    &[("kind", d)],
                    Box::new(|_, k| (k % 7) as f64 * 1024.0),
                );
            }
        }
        for i in 0..600i64 {
            let t = now - 600_000 + i * 1000 + if jitter { i * 7 % 5 } else { 0 };
            for (series, k, f) in &work {
                series.append(std::iter::once(s(t, f(i, *k))), bounds, c.retention_ms());
            }
        }
        drop(work);
        assert_eq!(c.len(), 10_000);
        (c, now)
    }

    /// The issue's budget, 1 KiB a series, for series as surge's agent sends them.
    #[test]
    fn whole_cache_bytes_per_series_realistic_targets() {
        let (c, now) = fill_realistic_targets(false);
        let per = memory_report(&c, now, "100 pods x 100 series, agent timestamps");
        assert!(per <= 1024, "{per} bytes/series");
    }

    /// The same series with jittered timestamps: 2-3 bits more a sample. Asserts the figure reached (see
    /// the README), so that a regression fails.
    #[test]
    fn whole_cache_bytes_per_series_realistic_targets_jittered() {
        let (c, now) = fill_realistic_targets(true);
        let per = memory_report(&c, now, "100 pods x 100 series, 0-4 ms jitter");
        assert!(per <= 1100, "{per} bytes/series");
    }

    /// The whole-cache estimate (maps and postings included) for 10,000 series of 5 min of 1 s samples,
    /// a mix of 40% counters, 30% integer gauges, 20% 3-decimal gauges and 10% full-precision ratios.
    #[test]
    fn whole_cache_bytes_per_series_10k() {
        let (c, now, bounds) = memory_test_cache();
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
        let per = memory_report(&c, now, "10k mixed series");
        // The figure reached (see the README), so that a regression fails.
        assert!(per <= 1300, "{per} bytes/series");
    }
}
