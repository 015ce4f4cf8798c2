//! `aggregator.peers`: the other replicas of the aggregator, for restart warm-up and ALB replication.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::Scheme;
use crate::remote_write::KubernetesEndpointsConfig;
use crate::server::ClientTlsConfig;
use crate::{duration, size};

/// The aggregator's peer replicas. With them, a starting replica copies the recent window from a
/// running one before it takes writes and reports ready, so its cache (and every decision and API
/// answer) does not start empty; and the leader's CloudWatch ALB series are written to every replica,
/// so an HPA reading the metrics APIs through any of them sees them. Absent: neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    /// Peers as `host:port` of their `listen` address, e.g. `[10.0.0.7:9091]`. This replica may be in
    /// the list (it recognises and skips itself).
    pub addresses: Vec<String>,
    /// The peers are the endpoints of this Service (the agents' `kubernetes_endpoints`, usually the
    /// same one), watched, besides `addresses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_endpoints: Option<KubernetesEndpointsConfig>,
    /// `http` (the default) or `https` (the peers' listener has `server.tls`).
    pub scheme: Scheme,
    /// TLS toward the peers: their CA, a client certificate when they require one, the server name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<ClientTlsConfig>,
    /// `Authorization: Bearer <the file's content>` toward the peers, when their writes require a
    /// token (`server.write_auth`), e.g. the projected ServiceAccount token. Absent: no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// The whole warm-up's deadline: a peer that is down or slow is given up within it and the replica
    /// starts cold. Default `15s`.
    #[serde(with = "duration")]
    pub warmup_timeout: Duration,
    /// Compressed dump read from a peer at most, e.g. `512MiB` (the default); past it the copy stops.
    #[serde(with = "size")]
    pub warmup_max_bytes: u64,
    /// Write the CloudWatch ALB series (`aggregator.alb`, leader only) to every peer. Default true.
    pub replicate_alb: bool,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            addresses: Vec::new(),
            kubernetes_endpoints: None,
            scheme: Scheme::Http,
            tls_config: None,
            bearer_token_file: None,
            warmup_timeout: Duration::from_secs(15),
            warmup_max_bytes: 512 << 20,
            replicate_alb: true,
        }
    }
}

impl PeersConfig {
    /// Whether any peer source is configured.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.kubernetes_endpoints.is_none()
    }
}
