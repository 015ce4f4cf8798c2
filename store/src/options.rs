//! The store's options: plain structs; the binary maps `surge-config` onto them, so this crate does not
//! depend on the config crate's types.

use std::time::Duration;

/// How the series cache keeps and forgets samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    /// The longest window any query needs. Blocks of samples older than `newest - retention` are dropped, and
    /// ingest rejects samples older than `now - retention`.
    pub retention: Duration,
    /// A series that received no sample for this long is evicted by [`crate::SeriesCache::sweep`].
    pub idle_ttl: Duration,
    /// A latest sample older than `now - stale_after` is never reported as current on the autoscaling path
    /// (the PromQL evaluator's freshness rule on the autoscaling path).
    pub stale_after: Duration,
    /// The most series held at once; samples of new series beyond it are rejected and counted.
    pub max_series: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            retention: Duration::from_secs(5 * 60),
            idle_ttl: Duration::from_secs(10 * 60),
            stale_after: Duration::from_secs(5),
            max_series: 2_000_000,
        }
    }
}

/// Milliseconds in `d`, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
