//! The OTLP metrics output: scraped samples as OpenTelemetry points, to any OTLP receiver over
//! HTTP/protobuf or gRPC.
//!
//! ```text
//! submit(Arc<Batch>) ─▶ QueuedOutput (surge-sender) ─▶ encode: kinds recognised per batch, resources from
//!   Kubernetes labels, start times, staleness flags ─▶ ExportMetricsServiceRequest(s) ─▶
//!   POST /v1/metrics (reqwest) | MetricsService/Export (tonic) ─▶ retried or refused per the OTLP spec
//! ```
//!
//! Why not `opentelemetry-otlp`'s exporter: it exports the SDK's `ResourceMetrics`, which only the SDK's
//! aggregation can build (its fields are crate-private), with one timestamp per metric rather than per
//! point and no point flags. Scraped samples are already aggregated, each with its own timestamp, and a
//! staleness marker needs the `NoRecordedValue` flag. So this crate builds
//! `ExportMetricsServiceRequest` with `opentelemetry-proto`'s prost types and sends it itself: HTTP with
//! reqwest (the workspace's client), gRPC with `opentelemetry-proto`'s generated tonic client.
//!
//! - [`encode`]: batches → requests (how each kind is recognised without `# TYPE`, start times,
//!   staleness, resources).
//! - [`transport`]: the two transports, TLS (rustls + ring), gzip, headers, timeout, and which answers
//!   are retried.
//! - [`output`]: [`OtlpDeliver`] behind surge-sender's `QueuedOutput`, which keeps the output contract
//!   (bounded queue, tiers, retries, counted drops, bounded shutdown); [`start`] builds one.

pub mod encode;
pub mod output;
pub mod transport;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use surge_config::{OtlpCompression, OtlpConfig, OtlpProtocol};

pub use encode::{Encoded, EncodedRequest, Encoder, ResourceLabels};
pub use output::{OtlpDeliver, OtlpMetrics, start};
pub use transport::{Outcome, Prepared, Transport};

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// TLS material, read from the configured files.
#[derive(Debug, Clone, Default)]
pub struct TlsMaterial {
    /// PEM CA bundle to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// One OTLP destination, resolved from its config (files read).
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    pub name: String,
    pub endpoint: String,
    pub protocol: Protocol,
    pub gzip: bool,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    pub tls: TlsMaterial,
    pub resource_labels: ResourceLabels,
    pub capacity: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// Why an OTLP destination cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TLS file cannot be read.
    #[error("tls.{field}: cannot read {path}")]
    File {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS material is unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// The endpoint is not a usable URI.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// A header cannot be sent.
    #[error("headers: {0:?} is not a valid header or gRPC metadata entry")]
    Header(String),
}

impl OtlpOptions {
    /// Resolves `config`, reading its TLS files.
    pub fn from_config(config: &OtlpConfig) -> Result<Self, StartError> {
        let read = |field: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| StartError::File {
                field,
                path: path.display().to_string(),
                source,
            })
        };
        let mut tls = TlsMaterial::default();
        if let Some(t) = &config.tls {
            if let Some(ca) = &t.ca_file {
                tls.ca_pem = Some(read("ca_file", ca)?);
            }
            if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
                tls.identity_pem = Some((read("cert_file", cert)?, read("key_file", key)?));
            }
        }
        let q = &config.queue;
        Ok(OtlpOptions {
            name: config.name.clone(),
            endpoint: config.endpoint.clone(),
            protocol: match config.protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpProtobuf,
                OtlpProtocol::Grpc => Protocol::Grpc,
            },
            gzip: config.compression == OtlpCompression::Gzip,
            headers: config.headers.clone(),
            timeout: config.timeout,
            tls,
            resource_labels: ResourceLabels(
                config
                    .resource_attributes
                    .iter()
                    .map(|(l, a)| (l.clone(), a.clone()))
                    .collect(),
            ),
            capacity: q.capacity,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: q.batch_send_deadline,
            min_backoff: q.min_backoff,
            max_backoff: q.max_backoff,
        })
    }
}
