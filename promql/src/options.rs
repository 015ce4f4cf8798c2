//! The query engine's limits.

use std::time::Duration;

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
