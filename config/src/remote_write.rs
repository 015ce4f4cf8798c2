//! `remote_write:` destinations, shared by the agent and the aggregator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::relabel::RelabelConfig;
use crate::server::ClientTlsConfig;
use crate::size;

/// A Prometheus remote-write 1.0 receiver series are sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Names the destination in logs and metrics; unique. Default: the URL's `host:port`.
    /// After loading this is always set.
    pub name: String,
    /// The receiver's write endpoint, `http://` or `https://`, e.g.
    /// `http://127.0.0.1:9091/api/v1/write`. Required.
    pub url: String,
    /// How long one request may take. Default `5s`.
    #[serde(with = "duration")]
    pub remote_timeout: Duration,
    /// HTTP headers sent with every request, e.g. `{X-Scope-OrgID: team-a}`.
    pub headers: BTreeMap<String, String>,
    /// Rules applied to each series before it is queued for this destination; they can drop series.
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Buffering, batching and retries.
    pub queue_config: QueueConfig,
    /// Write to every endpoint of a Kubernetes Service instead of through it, e.g. every aggregator
    /// replica, so each replica holds every series and answers the same. The endpoints come from the
    /// Service's EndpointSlices (watched): every one that is not terminating, ready or not (a replica
    /// warming up must receive samples before it is ready). Each gets its own queue (this destination's
    /// `queue_config`) named `NAME@IP:PORT`, with `url`'s scheme and path. Until the first list arrives,
    /// and while the Service has no endpoint, samples go to `url` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_endpoints: Option<KubernetesEndpointsConfig>,
    /// TLS toward an `https://` destination: CA, client certificate, server name. Verification is on
    /// unless `insecure_skip_verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<ClientTlsConfig>,
    /// Send `Authorization: Bearer <the file's content>` with every request, e.g. a projected
    /// ServiceAccount token (`/var/run/secrets/surge/token`). The file is re-read when it changes (the
    /// kubelet rotates it). Absent (the default): no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

/// A Kubernetes Service whose ready endpoints are remote-write destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesEndpointsConfig {
    /// The Service's namespace, e.g. `${POD_NAMESPACE}`. Required.
    pub namespace: String,
    /// The Service's name, e.g. `surge-aggregator`. Required.
    pub service: String,
    /// The Service port's name (e.g. `http`) or number whose endpoint port is written to. Required.
    pub port: String,
    /// A kubeconfig file to reach the API server with. Default: the in-cluster service account, else
    /// the file named by `$KUBECONFIG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            name: String::new(),
            url: String::new(),
            remote_timeout: Duration::from_secs(5),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            queue_config: QueueConfig::default(),
            kubernetes_endpoints: None,
            tls_config: None,
            bearer_token_file: None,
        }
    }
}

impl RemoteWriteConfig {
    /// The `host:port` part of `url` (empty when the URL has none): the default `name`.
    pub fn url_authority(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&self.url);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // Credentials never become a name.
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host)
    }
}

/// How samples wait for, and are retried towards, one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered for this destination; beyond it new samples are dropped and counted.
    /// Default 100000.
    pub capacity: usize,
    /// Most concurrent requests. Default 4.
    pub max_shards: usize,
    /// Most samples in one request. Default 2000; at most `capacity`.
    pub max_samples_per_send: usize,
    /// Longest time a standard-tier sample waits for its batch to fill (critical samples are sent at
    /// once). Default `1s`.
    #[serde(with = "duration")]
    pub batch_send_deadline: Duration,
    /// First retry delay after a failed request, doubled on each retry. Default `30ms`.
    #[serde(with = "duration")]
    pub min_backoff: Duration,
    /// Longest retry delay. Default `5s`.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Retry requests the receiver answered with 429 Too Many Requests. Default true.
    pub retry_on_http_429: bool,
    /// Keep what this destination has accepted on disk until the destination acknowledged it, so an
    /// outage, a restart or `kill -9` loses nothing within `max_bytes`. Off by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable: Option<DurableQueueConfig>,
}

/// A durable queue on disk in front of one destination.
///
/// While the destination answers, samples are sent from memory and written to disk beside the send;
/// after an outage or a restart, what was not acknowledged is sent again from disk, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurableQueueConfig {
    /// The queue's own directory (one per destination), e.g. `/var/lib/surge/wal/aggregator`. Required.
    pub dir: String,
    /// Disk used at most, e.g. `1GiB`. Default `1GiB`.
    #[serde(with = "size")]
    pub max_bytes: u64,
    /// When written records are forced to disk: `batch` (every `fsync_interval`), `always` (every
    /// write), `never` (left to the kernel). A killed process loses nothing written in any mode; this is
    /// about power loss. Default `batch`.
    pub fsync: FsyncMode,
    /// The `batch` mode's interval. Default `1s`.
    #[serde(with = "duration")]
    pub fsync_interval: Duration,
    /// When `max_bytes` is used up: `drop_oldest` deletes the oldest data, `backpressure` refuses new
    /// samples at the queue and keeps the oldest. Either way the samples are counted
    /// (`surge_wal_samples_dropped_total{reason="wal_full"}`). Default `drop_oldest`.
    pub when_full: WhenFullMode,
}

impl Default for DurableQueueConfig {
    fn default() -> Self {
        DurableQueueConfig {
            dir: String::new(),
            max_bytes: 1 << 30,
            fsync: FsyncMode::Batch,
            fsync_interval: Duration::from_secs(1),
            when_full: WhenFullMode::DropOldest,
        }
    }
}

/// `queue_config.durable.fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    Batch,
    Always,
    Never,
}

/// `queue_config.durable.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFullMode {
    DropOldest,
    Backpressure,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 100_000,
            max_shards: 4,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(1),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            durable: None,
        }
    }
}
