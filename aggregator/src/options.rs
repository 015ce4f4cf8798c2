//! Plain option structs. The lead maps `surge-config` onto them, so this crate does not depend on the config
//! crate's types.

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
    /// (see [`crate::promql::EvalOptions::freshness`]).
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

/// Limits and defaults of the query engine.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOptions {
    /// A query whose selectors touch more series than this fails with an execution error.
    pub max_series: usize,
    /// How far back an instant vector selector looks for a sample (Prometheus's `--query.lookback-delta`).
    pub lookback_delta: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            max_series: 100_000,
            lookback_delta: Duration::from_secs(5 * 60),
        }
    }
}

/// Limits of the remote-write endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    /// The largest compressed request body accepted; larger bodies answer 413.
    pub max_body_bytes: usize,
    /// The largest decompressed body accepted (snappy announces the size first, so this is checked before
    /// allocating); larger bodies answer 413.
    pub max_decompressed_bytes: usize,
    /// Samples with timestamps further than this in the future are rejected and counted.
    pub max_future: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 128 << 20,
            max_future: Duration::from_secs(10 * 60),
        }
    }
}

/// Milliseconds in `d`, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
