//! `aggregator.server:` how the aggregator's listener (remote-write and the Prometheus API) is
//! protected: TLS, who may write, and connection limits. And `tls_config:` of a remote-write
//! destination, the client side.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::path::FieldPath;
use crate::{duration, size};

/// The aggregator listener's protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Serve HTTPS with this certificate. Absent (the default): plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
    /// Require authentication for remote-write (`POST /api/v1/write`); unauthenticated writes answer
    /// 401 and are logged with the reason. Absent (the default): anyone who can connect may write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<WriteAuthConfig>,
    /// Connections served at once; more are refused with 503. Default 1024.
    pub max_connections: usize,
    /// The largest request head (request line and headers); larger ones answer 431. Default `64KiB`.
    #[serde(with = "size")]
    pub max_header_size: u64,
    /// Time a client has to send a request's head (slowloris). Default `10s`.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a remote-write body; later answers 408. Default `30s`.
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// A connection that moves no byte for this long is closed (a request being answered finishes
    /// first). Default `2m`.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Time a client has to finish a TLS handshake. Default `10s`.
    #[serde(with = "duration")]
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            auth: None,
            max_connections: 1024,
            max_header_size: 64 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The listener's serving certificate, and optionally client certificates (mTLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, e.g. `/tls/tls.crt`. Required.
    pub cert_file: PathBuf,
    /// PEM private key, e.g. `/tls/tls.key`. Required.
    pub key_file: PathBuf,
    /// PEM CA bundle client certificates are verified against. Absent: none are requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse a TLS handshake without a client certificate (needs `client_ca_file`). Default false: a
    /// certificate is optional, but one that is presented must verify.
    #[serde(default)]
    pub require_client_cert: bool,
    /// How often the files are checked for changes (a new pair is served without a restart; a broken one
    /// is logged and the old one kept). Default `5s`.
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// Who may write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteAuthConfig {
    /// Check `Authorization: Bearer` tokens with a Kubernetes TokenReview. Absent: tokens are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_review: Option<TokenReviewConfig>,
    /// A client certificate verified against `tls.client_ca_file` is enough on its own. Default false.
    pub client_certificates: bool,
    /// How long a token's answer (accepted or refused) is reused. Default `10s`.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
}

impl Default for WriteAuthConfig {
    fn default() -> Self {
        WriteAuthConfig {
            token_review: None,
            client_certificates: false,
            cache_ttl: Duration::from_secs(10),
        }
    }
}

/// Tokens reviewed by the Kubernetes API server (`authentication.k8s.io/v1` TokenReview; RBAC:
/// `create` on `tokenreviews`, e.g. ClusterRole `system:auth-delegator`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenReviewConfig {
    /// Audiences a token must be issued for, e.g. `[surge-aggregator]` (the agent's projected token
    /// names the same one). Empty: the API server's own audience.
    pub audiences: Vec<String>,
    /// Usernames allowed to write, e.g. `system:serviceaccount:monitoring:surge-agent`. Empty: any
    /// authenticated user.
    pub allowed_users: Vec<String>,
    /// A kubeconfig file to reach the API server with. Default: the in-cluster service account, else
    /// `$KUBECONFIG`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

/// TLS toward a remote-write destination (`https://` URLs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA bundle the server's certificate must chain to. Default: the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM); with `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the URL's host (e.g.
    /// `surge-aggregator.monitoring.svc` while writing to a pod IP). Default: the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (development only). Default false: verification is on.
    pub insecure_skip_verify: bool,
}

impl ServerConfig {
    /// Problems of the section, as (field, message), for `validate`.
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        if self.max_connections == 0 {
            out.push((
                FieldPath::root().key("max_connections"),
                "must be at least 1".into(),
            ));
        }
        // hyper refuses a read buffer under 8 KiB; a head never needs less.
        if self.max_header_size < 8192 {
            out.push((
                FieldPath::root().key("max_header_size"),
                format!(
                    "{} bytes is too small (at least 8KiB)",
                    self.max_header_size
                ),
            ));
        }
        for (field, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if d.is_zero() {
                out.push((FieldPath::root().key(field), "must be positive".into()));
            }
        }
        if let Some(t) = &self.tls
            && t.require_client_cert
            && t.client_ca_file.is_none()
        {
            out.push((
                FieldPath::root().key("tls").key("require_client_cert"),
                "needs tls.client_ca_file to verify client certificates against".into(),
            ));
        }
        if let Some(a) = &self.auth {
            if a.client_certificates && self.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none())
            {
                out.push((
                    FieldPath::root().key("auth").key("client_certificates"),
                    "needs tls.client_ca_file to verify client certificates against".into(),
                ));
            }
            if a.token_review.is_none() && !a.client_certificates {
                out.push((
                    FieldPath::root().key("auth"),
                    "accepts nobody: set token_review, or client_certificates with tls.client_ca_file"
                        .into(),
                ));
            }
        }
        out
    }
}

impl ClientTlsConfig {
    /// Problems of the section, as (field, message), for `validate`.
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            let missing = if self.cert_file.is_none() {
                "cert_file"
            } else {
                "key_file"
            };
            out.push((
                FieldPath::root().key(missing),
                "cert_file and key_file go together (a client certificate needs its key)".into(),
            ));
        }
        if self.insecure_skip_verify && self.ca_file.is_some() {
            out.push((
                FieldPath::root().key("insecure_skip_verify"),
                "with ca_file is contradictory: ca_file would not be used".into(),
            ));
        }
        out
    }
}
