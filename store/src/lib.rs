//! The sample store: every series' recent samples, compressed and randomly addressable, with a postings
//! index that drives selections. One writer path (ingest), many cheap readers (PromQL, the metrics APIs,
//! the autoscaler).
//!
//! # Map
//!
//! - [`cache`]: series id → interned labels + a compressed ring of recent samples ([`block`]), the postings
//!   index, label matchers, idle eviction by [`SeriesCache::sweep`].
//! - [`observer`]: the seam through which ingest tells readers which series a write touched.
//! - [`options`]: the cache's retention, idle TTL, freshness limit and series limit ([`CacheOptions`]).
//!
//! Architecture invariant: the store reads no clock and does no I/O. Every time-dependent call takes
//! `now_ms`.

pub mod block;
pub mod cache;
pub mod observer;
pub mod options;

pub use cache::{
    Current, HISTORY_COMPLETE, HISTORY_PENDING, MatchOp, Matcher, Series, SeriesCache, SeriesId,
    SweepStats,
};
pub use observer::{IngestObserver, Touched, dedup_touched};
pub use options::{CacheOptions, millis};

/// Hashes label pairs as [`surge_model::Labels::hash64`] does, one-shot over a per-thread buffer (a
/// streaming `Xxh3` costs more to set up than to feed a few labels). Pairs must come sorted by name, as
/// a [`SeriesId`] is the hash of the sorted set.
pub fn hash_labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        for (n, v) in pairs {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_64(&b)
    })
}
