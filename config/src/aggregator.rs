//! The `aggregator:` section: ingest, the cache of recent samples, queries, onward writes.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::remote_write::RemoteWriteConfig;
use crate::{duration, fields, size};

/// The aggregator: receives remote-write from agents, holds recent samples, answers queries and
/// drives the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Address for remote-write ingest, the Prometheus API and own metrics. Default `0.0.0.0:9091`.
    #[serde(with = "fields::socket_addr")]
    pub listen: SocketAddr,
    /// Largest remote-write request body accepted (compressed), e.g. `32MiB` (the default).
    #[serde(with = "size")]
    pub max_request_body_size: u64,
    /// The in-memory cache of recent samples.
    pub cache: CacheConfig,
    /// Limits of the query API.
    pub query: QueryConfig,
    /// Where ingested series are written onward (Mimir, Thanos Receive, VictoriaMetrics).
    pub remote_write: Vec<RemoteWriteConfig>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9091)),
            max_request_body_size: 32 << 20,
            cache: CacheConfig::default(),
            query: QueryConfig::default(),
            remote_write: Vec::new(),
        }
    }
}

/// The cache of recent samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Each series' ring holds at least this much history. Default `5m`.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// A series with no sample for this long is evicted. Default `10m`.
    #[serde(with = "duration")]
    pub idle_ttl: Duration,
    /// A value older than this is stale and never reported as current. Default `5s`.
    #[serde(with = "duration")]
    pub stale_after: Duration,
    /// Most series held; new series beyond it are dropped and counted. Default 2000000.
    pub max_series: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            retention: Duration::from_secs(300),
            idle_ttl: Duration::from_secs(600),
            stale_after: Duration::from_secs(5),
            max_series: 2_000_000,
        }
    }
}

/// Limits of the query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A selector touching more series than this fails. Default 100000.
    pub max_series: usize,
    /// How far back an instant query looks for a series' latest sample. Default `5m`.
    #[serde(with = "duration")]
    pub lookback_delta: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_series: 100_000,
            lookback_delta: Duration::from_secs(300),
        }
    }
}
