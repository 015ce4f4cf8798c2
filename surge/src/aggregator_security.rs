//! `aggregator.server` and `aggregator.query` limits mapped onto the aggregator: the listener's TLS and
//! connection limits, write authentication (TokenReview from `surge-k8s` behind the aggregator's
//! `TokenAuthenticator` seam), and the query API's concurrency, deadline and sample limits.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use surge_aggregator::auth::{BoxFuture, Identity, TokenAuthenticator, TokenRejected, WriteAuth};
use surge_aggregator::listener::{ListenerMetrics, ServerLimits, ServerTls};
use surge_aggregator::{AggregatorState, QueryLimits};
use surge_config::AggregatorConfig;
use surge_k8s::token_review::{ReviewError, TokenReviewer};

/// The aggregator's listener, set up: what [`Listener::serve`] needs.
pub struct Listener {
    limits: ServerLimits,
    tls: Option<ServerTls>,
    metrics: ListenerMetrics,
}

impl Listener {
    /// Serves `app` on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        surge_aggregator::listener::serve(
            listener,
            app,
            self.limits,
            self.tls,
            self.metrics,
            shutdown,
        )
        .await
    }
}

/// The aggregator's `TokenAuthenticator`: a TokenReview per cache miss.
struct KubeTokens(TokenReviewer);

impl TokenAuthenticator for KubeTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Identity, TokenRejected>> {
        Box::pin(async move {
            match self.0.review(token).await {
                Ok(u) => Ok(Identity {
                    username: u.username,
                }),
                Err(ReviewError::Unauthenticated(why)) => Err(TokenRejected::Invalid(why)),
                Err(ReviewError::NotAllowed(user)) => Err(TokenRejected::Forbidden(user)),
                Err(e @ ReviewError::Failed(_)) => Err(TokenRejected::Unavailable(format!(
                    "{:#}",
                    anyhow::Error::new(e)
                ))),
            }
        })
    }
}

/// Applies `aggregator.query` limits and `aggregator.server` (certificates are read, and the API server
/// client built, before any port is bound), registering the listener's and authentication's metrics.
pub async fn setup(
    cfg: &AggregatorConfig,
    state: &AggregatorState,
    registry: &mut Registry,
) -> anyhow::Result<Listener> {
    state.set_query_limits(QueryLimits {
        max_concurrent: cfg.query.max_concurrent,
        timeout: cfg.query.timeout,
        max_samples: cfg.query.max_samples,
    });
    let s = &cfg.server;
    let tls = match &s.tls {
        Some(t) => Some(
            ServerTls::from_files(
                &surge_metrics_api::TlsFiles {
                    cert_file: t.cert_file.clone(),
                    key_file: t.key_file.clone(),
                    reload_interval: t.reload_interval,
                },
                t.client_ca_file.as_deref(),
                t.require_client_cert,
            )
            .map_err(|e| anyhow::anyhow!("aggregator.server.tls: {e}"))?,
        ),
        None => None,
    };
    if let Some(a) = &s.auth {
        let authenticator: Option<Arc<dyn TokenAuthenticator>> = match &a.token_review {
            Some(tr) => {
                let client = surge_k8s::discovery::client_for(tr.kubeconfig.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("aggregator.server.auth.token_review: {e:#}"))?;
                Some(Arc::new(KubeTokens(TokenReviewer::new(
                    client,
                    tr.audiences.clone(),
                    tr.allowed_users.clone(),
                ))))
            }
            None => None,
        };
        let auth = WriteAuth::new(authenticator, a.client_certificates, a.cache_ttl, registry);
        tracing::info!(?auth, "remote-write requires authentication");
        state.set_write_auth(Arc::new(auth));
    } else {
        tracing::warn!("aggregator.server.auth is not set: anyone who can connect may write");
    }
    Ok(Listener {
        limits: ServerLimits {
            max_connections: s.max_connections,
            max_header_bytes: usize::try_from(s.max_header_size).unwrap_or(usize::MAX),
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            tls_handshake_timeout: s.tls_handshake_timeout,
        },
        tls,
        metrics: ListenerMetrics::new(registry, "aggregator"),
    })
}
