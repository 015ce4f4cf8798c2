//! OTLP's two transports: `POST /v1/metrics` with a protobuf body (reqwest), and the
//! `MetricsService/Export` gRPC call (tonic, with opentelemetry-proto's generated client). Both use
//! rustls with ring.
//!
//! Which answers are retried follows the OTLP specification ("Failures" in `otlp.md`): HTTP 429, 502,
//! 503 and 504 (with `Retry-After` in seconds as the least wait), and the gRPC codes `UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `OUT_OF_RANGE` and `DATA_LOSS`,
//! plus timeouts and network errors; every other answer refuses the request for good. A success may
//! still carry a `partial_success` with rejected points: those are counted, not retried (the receiver
//! has said they will never be accepted).

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{OtlpOptions, Protocol, StartError};

/// How one attempt ended (the same three outcomes as the queue's).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted; `bytes` went over the wire; `rejected` points were refused inside a success
    /// (`partial_success`), with the receiver's message.
    Delivered {
        bytes: usize,
        rejected: u64,
        message: String,
    },
    /// Transient: send again after a backoff, waiting at least `after` when the receiver said so.
    Retry {
        reason: &'static str,
        after: Option<Duration>,
        detail: String,
    },
    /// Refused for good: its samples are dropped and counted under `reason`.
    Refused {
        reason: &'static str,
        detail: String,
    },
}

/// A request as the transport sends it: the HTTP body is encoded (and compressed) once, so a retry
/// costs no encoding; the gRPC client encodes the message itself.
#[derive(Debug, Clone)]
pub enum Prepared {
    Http(bytes::Bytes),
    Grpc(ExportMetricsServiceRequest),
}

/// One destination's transport.
#[derive(Debug, Clone)]
pub enum Transport {
    Http(HttpTransport),
    Grpc(GrpcTransport),
}

impl Transport {
    /// Builds the transport of `opts` (reads its TLS files); needs a tokio runtime for gRPC.
    pub fn new(opts: &OtlpOptions) -> Result<Self, StartError> {
        // Installing twice is harmless: the second call just reports the first provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        match opts.protocol {
            Protocol::HttpProtobuf => HttpTransport::new(opts).map(Transport::Http),
            Protocol::Grpc => GrpcTransport::new(opts).map(Transport::Grpc),
        }
    }

    /// Encodes `message` for this transport.
    pub fn prepare(&self, message: ExportMetricsServiceRequest) -> Prepared {
        match self {
            Transport::Http(h) => Prepared::Http(h.body(&message)),
            Transport::Grpc(_) => Prepared::Grpc(message),
        }
    }

    /// Sends one prepared request once.
    pub async fn send(&self, request: &Prepared) -> Outcome {
        match (self, request) {
            (Transport::Http(h), Prepared::Http(body)) => h.send(body.clone()).await,
            (Transport::Grpc(g), Prepared::Grpc(message)) => g.send(message).await,
            // prepare() of the same transport made it.
            _ => Outcome::Refused {
                reason: "internal",
                detail: "request prepared for another transport".to_owned(),
            },
        }
    }
}

/// OTLP/HTTP with protobuf bodies.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: String,
    headers: http::HeaderMap,
    gzip: bool,
    timeout: Duration,
}

impl HttpTransport {
    fn new(opts: &OtlpOptions) -> Result<Self, StartError> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("surge/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| StartError::Tls(format!("ca_file: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &opts.tls.identity_pem {
            let mut pem = cert.clone();
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| StartError::Tls(format!("cert_file/key_file: {e}")))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &opts.headers {
            let n = http::HeaderName::try_from(name.as_str())
                .map_err(|_| StartError::Header(name.clone()))?;
            let v = http::HeaderValue::try_from(value.as_str())
                .map_err(|_| StartError::Header(name.clone()))?;
            headers.insert(n, v);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        if opts.gzip {
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        Ok(HttpTransport {
            client,
            url: metrics_url(&opts.endpoint),
            headers,
            gzip: opts.gzip,
            timeout: opts.timeout,
        })
    }

    /// The request body: protobuf, gzipped when configured.
    fn body(&self, message: &ExportMetricsServiceRequest) -> bytes::Bytes {
        let raw = message.encode_to_vec();
        if !self.gzip {
            return raw.into();
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&raw);
        gz.finish().unwrap_or_default().into()
    }

    async fn send(&self, body: bytes::Bytes) -> Outcome {
        let bytes = body.len();
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Outcome::Retry {
                    reason: "timeout",
                    after: None,
                    detail: e.to_string(),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: "network",
                    after: None,
                    detail: error_chain(&e),
                };
            }
        };
        let status = response.status().as_u16();
        let after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let (rejected, message) = partial_success(&body);
            return Outcome::Delivered {
                bytes,
                rejected,
                message,
            };
        }
        let detail = format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
        );
        match status {
            429 | 502 | 503 | 504 => Outcome::Retry {
                reason: http_reason(status),
                after,
                detail,
            },
            _ => Outcome::Refused {
                reason: http_reason(status),
                detail,
            },
        }
    }
}

/// The metrics URL of an endpoint: as given when it has a path, else with `/v1/metrics` appended (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
pub fn metrics_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    match rest.find('/') {
        Some(i) if &rest[i..] != "/" => endpoint.to_owned(),
        _ => format!("{}/v1/metrics", endpoint.trim_end_matches('/')),
    }
}

/// The rejected points and message of a success body (empty or undecodable: none).
fn partial_success(body: &[u8]) -> (u64, String) {
    ExportMetricsServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or((0, String::new()), |p| {
            (
                u64::try_from(p.rejected_data_points).unwrap_or(0),
                p.error_message,
            )
        })
}

/// A bounded `reason` label for an HTTP status.
fn http_reason(status: u16) -> &'static str {
    match status {
        400 => "http_400",
        401 => "http_401",
        403 => "http_403",
        404 => "http_404",
        413 => "http_413",
        415 => "http_415",
        429 => "http_429",
        500 => "http_500",
        502 => "http_502",
        503 => "http_503",
        504 => "http_504",
        s if s < 500 => "http_4xx",
        _ => "http_5xx",
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// OTLP/gRPC.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    client: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcTransport {
    fn new(opts: &OtlpOptions) -> Result<Self, StartError> {
        let mut endpoint = Endpoint::from_shared(opts.endpoint.clone())
            .map_err(|e| StartError::Endpoint(e.to_string()))?
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .user_agent(concat!("surge/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| StartError::Endpoint(e.to_string()))?;
        if opts.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &opts.tls.ca_pem {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let Some((cert, key)) = &opts.tls.identity_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| StartError::Tls(error_chain(&e)))?;
        }
        let mut client = MetricsServiceClient::new(endpoint.connect_lazy());
        if opts.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &opts.headers {
            let key = MetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| StartError::Header(name.clone()))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| StartError::Header(name.clone()))?;
            metadata.insert(key, value);
        }
        Ok(GrpcTransport {
            client,
            metadata,
            timeout: opts.timeout,
        })
    }

    async fn send(&self, message: &ExportMetricsServiceRequest) -> Outcome {
        let bytes = message.encoded_len();
        let mut request = tonic::Request::new(message.clone());
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        match self.client.clone().export(request).await {
            Ok(response) => {
                let p = response.into_inner().partial_success.unwrap_or_default();
                Outcome::Delivered {
                    bytes,
                    rejected: u64::try_from(p.rejected_data_points).unwrap_or(0),
                    message: p.error_message,
                }
            }
            Err(status) => {
                use tonic::Code;
                let detail = format!("gRPC {:?}: {}", status.code(), status.message());
                let reason = grpc_reason(status.code());
                match status.code() {
                    Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::Cancelled
                    | Code::OutOfRange
                    | Code::DataLoss => Outcome::Retry {
                        reason,
                        after: None,
                        detail,
                    },
                    _ => Outcome::Refused { reason, detail },
                }
            }
        }
    }
}

/// A bounded `reason` label for a gRPC status code.
fn grpc_reason(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "grpc_ok",
        Code::Cancelled => "grpc_cancelled",
        Code::Unknown => "grpc_unknown",
        Code::InvalidArgument => "grpc_invalid_argument",
        Code::DeadlineExceeded => "grpc_deadline_exceeded",
        Code::NotFound => "grpc_not_found",
        Code::AlreadyExists => "grpc_already_exists",
        Code::PermissionDenied => "grpc_permission_denied",
        Code::ResourceExhausted => "grpc_resource_exhausted",
        Code::FailedPrecondition => "grpc_failed_precondition",
        Code::Aborted => "grpc_aborted",
        Code::OutOfRange => "grpc_out_of_range",
        Code::Unimplemented => "grpc_unimplemented",
        Code::Internal => "grpc_internal",
        Code::Unavailable => "grpc_unavailable",
        Code::DataLoss => "grpc_data_loss",
        Code::Unauthenticated => "grpc_unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_url_appends_the_signal_path_only_to_a_base_url() {
        assert_eq!(metrics_url("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(
            metrics_url("http://vm:8428/opentelemetry/v1/metrics"),
            "http://vm:8428/opentelemetry/v1/metrics"
        );
    }
}
