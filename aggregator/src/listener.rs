//! The aggregator's own HTTP(S) listener: remote-write ingest and the Prometheus API behind the shared
//! hardened listener ([`surge_sender::listener`]: connection cap, head size and read time, idle and
//! handshake timeouts, each refusal counted in `surge_aggregator_http_limited_total{limit}`), with
//! optional TLS (with optional client certificates) whose certificate reloads while serving.
//!
//! What is the aggregator's here is the TLS: the serving certificate read from files by
//! `surge_metrics_api::tls` (and re-read when they change), client certificates verified against a CA,
//! and a verified certificate's name handed to the handlers as a [`ClientIdentity`]. The request body's
//! own limits (size, read time) belong to the handlers that read bodies (see [`crate::ingest`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use surge_metrics_api::tls::{ClientIdentity, ReloadingCert, TlsError, read_roots};
use surge_metrics_api::{TlsFiles, tls as mtls};
use surge_sender::listener::ServingTls;
pub use surge_sender::listener::{Limit, ListenerMetrics, ServerLimits};
use tokio::net::TcpListener;

/// TLS of the listener: the reloading serving certificate and the rustls config built around it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub cert: Arc<ReloadingCert>,
}

impl ServerTls {
    /// Serves `files`' certificate (re-read when the files change). With `client_ca`, client
    /// certificates are verified against it: required when `require_client_cert`, else optional (a
    /// presented one must still verify). A verified certificate reaches handlers as a
    /// [`ClientIdentity`] extension.
    pub fn from_files(
        files: &TlsFiles,
        client_ca: Option<&Path>,
        require_client_cert: bool,
    ) -> Result<ServerTls, TlsError> {
        let cert = Arc::new(ReloadingCert::from_files(files)?);
        let provider = mtls::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(read_roots(ca)?),
                    provider,
                );
                let verifier = if require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            cert,
        })
    }
}

impl ServingTls for ServerTls {
    fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    fn reload_interval(&self) -> Option<Duration> {
        self.cert.reload_interval()
    }

    fn reload_if_changed(&self) -> Result<bool, String> {
        self.cert.reload_if_changed().map_err(|e| e.to_string())
    }

    fn peer_extensions(&self, conn: &rustls::ServerConnection) -> http::Extensions {
        let mut out = http::Extensions::new();
        if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
            out.insert(ClientIdentity {
                common_name: mtls::subject_common_name(leaf),
            });
        }
        out
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is set) under `limits` until `shutdown` completes; then
/// stops accepting, closes idle connections and lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<ServerTls>,
    metrics: ListenerMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(|t| Arc::new(t) as Arc<dyn ServingTls>);
    surge_sender::listener::serve(listener, app, limits, tls, metrics, shutdown).await
}
