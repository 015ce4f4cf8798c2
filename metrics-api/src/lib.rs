//! The Kubernetes metrics APIs: `external.metrics.k8s.io/v1beta1` and `custom.metrics.k8s.io`
//! `v1beta1` + `v1beta2` over HTTPS, so any real HorizontalPodAutoscaler can read surge's numbers.
//!
//! ```text
//!  kube-apiserver (front proxy, client cert) ──TLS──▶ tls::serve (accept loop, reloading cert,
//!                                                       ClientIdentity extension per connection)
//!      ──▶ router: observe (own metrics) ─▶ authenticate (requestheader CN) ─▶ handlers
//!            handlers: discovery, openapi, external / custom values ─▶ rules::evaluate (cache, freshness)
//!                      unknown external metric ─▶ forward::Forwarder (KEDA, prometheus-adapter)
//! ```
//!
//! - [`MetricsApi::new`] compiles the rules and loads the certificates (errors before any port is
//!   bound). [`rules::check`], [`tls::check_pair`], [`tls::read_roots`] and [`forward::check_files`] find
//!   every problem it would refuse, each with its rule or file, without building anything (for
//!   `surge check-config`); [`router`] builds the HTTP surface without a socket (tests call it with `oneshot`, inserting
//!   a [`ClientIdentity`] extension to play the front proxy); [`serve_https`] serves it.
//! - Errors are one enum, [`ApiError`], rendered as a `metav1.Status`.
//! - Freshness: a metric whose data is stale answers 503 (the HPA counts the metric as failed), never an
//!   old value; see [`rules`].
//! - Authorization is kube-apiserver's: it authorizes every request before proxying it here; this server
//!   authenticates the proxy (its client certificate) and does not trust `X-Remote-*` headers otherwise.

pub mod forward;
mod handlers;
pub mod metrics;
pub mod options;
pub mod quantity;
pub mod rules;
pub mod selector;
pub mod status;
pub mod tls;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use surge_promql::{EvalOptions, QueryOptions};
use surge_store::SeriesCache;

pub use handlers::router;
pub use options::{
    ClientCa, CustomMetricRule, ExternalMetricRule, ForwardOptions, MetricsApiOptions,
    RequestHeaderOptions, TlsFiles,
};
pub use status::ApiError;
pub use tls::{ClientIdentity, ReloadingCert, TlsError};

use forward::Forwarder;
use metrics::ApiMetrics;
use rules::{CustomRule, ExternalRule, RuleError};

/// Why the metrics APIs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A metric rule is invalid.
    #[error("kubernetes_api: {0}")]
    Rule(#[from] RuleError),
    /// A certificate, key or CA could not be loaded.
    #[error("kubernetes_api: {0}")]
    Tls(#[from] TlsError),
}

/// Who may call the APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Everyone (`insecure_dev_no_auth`).
    Open,
    /// Connections with a verified front-proxy certificate whose CN is allowed (any if empty).
    RequestHeader { allowed_names: Vec<String> },
    /// Nobody: no requestheader CA configured.
    DenyAll,
}

/// The metrics APIs: rules, auth, forwarding, TLS and own metrics, shared by every request.
pub struct MetricsApi {
    cache: Arc<SeriesCache>,
    /// The autoscaling path's evaluation options: the freshness rule on.
    eval: EvalOptions,
    external: Vec<ExternalRule>,
    custom: Vec<CustomRule>,
    auth: AuthPolicy,
    forwarder: Option<Forwarder>,
    metrics: ApiMetrics,
    listen: SocketAddr,
    cert: Arc<ReloadingCert>,
    tls: Arc<ServerConfig>,
}

impl std::fmt::Debug for MetricsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsApi")
            .field("external", &self.external.len())
            .field("custom", &self.custom.len())
            .field("auth", &self.auth)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl MetricsApi {
    /// Compiles the rules, loads certificates and CA, builds the forward client, and registers the own
    /// metrics in `registry` (call before the registry is published).
    pub fn new(
        cache: Arc<SeriesCache>,
        query: &QueryOptions,
        opts: &MetricsApiOptions,
        registry: &mut Registry,
    ) -> Result<MetricsApi, BuildError> {
        let external = rules::compile_external(&opts.external_metrics)?;
        let custom = rules::compile_custom(&opts.custom_metrics)?;
        let cert = Arc::new(match &opts.tls {
            Some(files) => ReloadingCert::from_files(files)?,
            None => {
                tracing::warn!(
                    "kubernetes_api: no tls files configured: serving a SELF-SIGNED certificate (development only; an APIService must skip TLS verification)"
                );
                ReloadingCert::self_signed()?
            }
        });
        let client_ca = opts.requestheader.as_ref().map(|r| &r.client_ca);
        let tls = tls::server_config(cert.clone(), client_ca)?;
        let auth = if opts.insecure_dev_no_auth {
            tracing::warn!(
                "kubernetes_api: insecure_dev_no_auth is set: ANYONE who can reach {} reads every metric (development only)",
                opts.listen
            );
            AuthPolicy::Open
        } else if let Some(r) = &opts.requestheader {
            AuthPolicy::RequestHeader {
                allowed_names: r.allowed_names.clone(),
            }
        } else {
            tracing::warn!(
                "kubernetes_api: no requestheader client CA configured: every API request will answer 401 (set requestheader, or insecure_dev_no_auth for development)"
            );
            AuthPolicy::DenyAll
        };
        let forwarder = opts
            .forward_external
            .as_ref()
            .map(Forwarder::new)
            .transpose()?;
        let metrics = ApiMetrics::default();
        metrics.register(registry);
        Ok(MetricsApi {
            eval: EvalOptions::autoscaling(query, cache.options()),
            cache,
            external,
            custom,
            auth,
            forwarder,
            metrics,
            listen: opts.listen,
            cert,
            tls,
        })
    }

    /// The configured listen address (the caller binds it).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The serving certificate chain now in use (e.g. to trust a self-signed one in a test).
    pub fn serving_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.cert.current_chain()
    }

    /// The own metrics (for tests and benches).
    pub fn metrics(&self) -> &ApiMetrics {
        &self.metrics
    }
}

/// Wall-clock milliseconds since the Unix epoch: the time a request is answered at.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Serves [`router`] over HTTPS on `listener` until `shutdown` completes.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    api: Arc<MetricsApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (config, cert) = (api.tls.clone(), api.cert.clone());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, external = api.external.len(), custom = api.custom.len(), "kubernetes metrics APIs serving");
    }
    tls::serve(listener, router(api), config, cert, shutdown).await
}
