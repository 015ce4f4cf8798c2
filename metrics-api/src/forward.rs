//! Forwarding of external metrics surge does not define to another provider (KEDA's metrics server,
//! prometheus-adapter), so installing surge does not take the `v1beta1.external.metrics.k8s.io` slot
//! away from it. The provider's answer (status and body) is passed through; an unreachable provider is a
//! 503 Status.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::options::ForwardOptions;
use super::status::ApiError;
use super::tls::{PairFile, TlsError, check_pair, first_problem, load_pair, provider, read_roots};

/// The front-proxy headers passed on (the provider trusts them only from a client certificate it
/// accepts, which `client_cert` provides).
const PASSED_HEADERS: &[&str] = &["x-remote-user", "x-remote-group"];

/// A client for the forward target.
#[derive(Debug, Clone)]
pub struct Forwarder {
    base: String,
    client: reqwest::Client,
}

/// Accepts any server certificate (`insecure_skip_verify`, development only); signatures are still
/// checked so the handshake is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which file of [`ForwardOptions`] a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFile {
    Ca,
    ClientCert,
    ClientKey,
}

/// The CA bundle [`Forwarder::new`] trusts: `ca_file`, unless verification is off (then it is not read).
fn trusted_roots(opts: &ForwardOptions) -> Option<Result<RootCertStore, TlsError>> {
    if opts.insecure_skip_verify {
        return None;
    }
    opts.ca_file.as_deref().map(read_roots)
}

/// Every problem [`Forwarder::new`] would refuse in the files it reads (the CA bundle, the client
/// certificate and its key), each with its file. Nothing is connected to.
pub fn check_files(opts: &ForwardOptions) -> Vec<(ForwardFile, TlsError)> {
    let mut problems = Vec::new();
    if let Some(Err(e)) = trusted_roots(opts) {
        problems.push((ForwardFile::Ca, e));
    }
    if let Some((cert, key)) = &opts.client_cert {
        problems.extend(check_pair(cert, key).into_iter().map(|(file, e)| {
            let file = match file {
                PairFile::Cert => ForwardFile::ClientCert,
                PairFile::Key => ForwardFile::ClientKey,
            };
            (file, e)
        }));
    }
    problems
}

impl Forwarder {
    /// Builds the client: trusting `ca_file` (or the system roots), presenting `client_cert` if set.
    pub fn new(opts: &ForwardOptions) -> Result<Forwarder, TlsError> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(opts.timeout)
            .user_agent(concat!("surge/", env!("CARGO_PKG_VERSION")));
        if opts.ca_file.is_some() || opts.client_cert.is_some() || opts.insecure_skip_verify {
            let p = provider();
            let b = ClientConfig::builder_with_provider(p.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            let b = if opts.insecure_skip_verify {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(p)))
            } else {
                match trusted_roots(opts) {
                    Some(roots) => b.with_root_certificates(roots?),
                    None => {
                        return Err(TlsError::Config(
                            "forwarding with a client certificate needs ca_file (or insecure_skip_verify)"
                                .into(),
                        ));
                    }
                }
            };
            let config = match &opts.client_cert {
                Some((cert, key)) => {
                    let pair = load_pair(cert, key).map_err(first_problem)?;
                    b.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(pair)))
                }
                None => b.with_no_client_auth(),
            };
            builder = builder.tls_backend_preconfigured(config);
        } else {
            // The system roots through reqwest's platform verifier, which needs a process-wide provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = builder
            .build()
            .map_err(|e| TlsError::Config(format!("forward client: {e}")))?;
        Ok(Forwarder {
            base: opts.url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// Sends `GET {base}{path_and_query}` and passes the answer through.
    pub async fn forward(&self, path_and_query: &str, headers: &HeaderMap) -> Response {
        let mut req = self
            .client
            .get(format!("{}{}", self.base, path_and_query))
            .header(header::ACCEPT, "application/json");
        for name in PASSED_HEADERS {
            for v in headers.get_all(*name) {
                req = req.header(*name, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target = %self.base, error = %e, "external metrics forward failed");
                return ApiError::Unavailable(format!(
                    "the external metrics provider at {} is unreachable",
                    self.base
                ))
                .into_response();
            }
        };
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        match resp.bytes().await {
            Ok(body) => (status, [(header::CONTENT_TYPE, content_type)], body).into_response(),
            Err(_) => ApiError::Unavailable(format!(
                "the external metrics provider at {} closed the connection",
                self.base
            ))
            .into_response(),
        }
    }

    /// The provider's external metric resources (for discovery), or none if it does not answer.
    pub async fn resources(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/apis/external.metrics.k8s.io/v1beta1", self.base);
        let fetch = async {
            let body = self.client.get(url).send().await.ok()?.bytes().await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v.get("resources")?.as_array().cloned()
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), fetch)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}
