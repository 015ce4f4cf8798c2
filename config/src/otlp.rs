//! `agent.otlp:` OpenTelemetry (OTLP) metrics destinations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::path::FieldPath;

/// An OTLP metrics receiver (an OpenTelemetry Collector, or any backend that speaks OTLP) scraped
/// series are sent to, as OTLP Gauge, Sum, Histogram and Summary points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Names the destination in logs and metrics (`destination` label); unique among `otlp` entries.
    /// Default `otlp` for the first entry, `otlp-1`, `otlp-2`, … for the next.
    pub name: String,
    /// The receiver. For `http/protobuf`, a base URL (`http://collector:4318`, to which `/v1/metrics`
    /// is appended) or the full metrics URL when it has a path
    /// (`http://vm:8428/opentelemetry/v1/metrics`); for `grpc`, `http://collector:4317` or `https://…`.
    /// Required.
    pub endpoint: String,
    /// `http/protobuf` (the default) or `grpc`.
    pub protocol: OtlpProtocol,
    /// `none` (the default) or `gzip`.
    pub compression: OtlpCompression,
    /// Headers (HTTP) or metadata (gRPC) sent with every request, e.g. `{Authorization: Bearer …}`.
    pub headers: BTreeMap<String, String>,
    /// How long one request may take. Default `10s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Certificates for an `https://` endpoint. Without it the system's roots are trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTlsConfig>,
    /// Which labels become resource attributes, by label name. Default: `namespace` →
    /// `k8s.namespace.name`, `pod` → `k8s.pod.name`, `node` → `k8s.node.name`, `container` →
    /// `k8s.container.name`, `job` → `service.name`, `instance` → `service.instance.id`. A label moved
    /// to the resource is no longer a point attribute.
    pub resource_attributes: BTreeMap<String, String>,
    /// Buffering, batching and retries.
    pub queue: OtlpQueueConfig,
}

/// OTLP's transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// `POST /v1/metrics` with a protobuf body.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// The `MetricsService/Export` gRPC call.
    #[serde(rename = "grpc")]
    Grpc,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpCompression {
    #[default]
    None,
    Gzip,
}

/// TLS towards the receiver (rustls with ring).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpTlsConfig {
    /// PEM CA certificates to trust instead of the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `key_file`) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// How points wait for, and are retried towards, one OTLP destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpQueueConfig {
    /// Samples buffered; beyond it new batches are dropped and counted. Default 100000.
    pub capacity: usize,
    /// Most samples in one request (a histogram point counts its series). Default 2000.
    pub max_samples_per_send: usize,
    /// Longest time a standard-tier sample waits for its request to fill (critical samples are sent at
    /// once). Default `1s`.
    #[serde(with = "duration")]
    pub batch_send_deadline: Duration,
    /// First retry delay, doubled on each retry. Default `100ms`.
    #[serde(with = "duration")]
    pub min_backoff: Duration,
    /// Longest retry delay. Default `5s`.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            name: String::new(),
            endpoint: String::new(),
            protocol: OtlpProtocol::default(),
            compression: OtlpCompression::default(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            tls: None,
            resource_attributes: default_resource_attributes(),
            queue: OtlpQueueConfig::default(),
        }
    }
}

impl Default for OtlpQueueConfig {
    fn default() -> Self {
        OtlpQueueConfig {
            capacity: 100_000,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Kubernetes' labels under the OpenTelemetry semantic conventions' names; `job` and `instance` as the
/// collector's Prometheus receiver maps them.
pub fn default_resource_attributes() -> BTreeMap<String, String> {
    [
        ("namespace", "k8s.namespace.name"),
        ("pod", "k8s.pod.name"),
        ("node", "k8s.node.name"),
        ("container", "k8s.container.name"),
        ("job", "service.name"),
        ("instance", "service.instance.id"),
    ]
    .into_iter()
    .map(|(l, a)| (l.to_owned(), a.to_owned()))
    .collect()
}

impl OtlpConfig {
    /// The default name of the `index`th entry.
    pub(crate) fn default_name(index: usize) -> String {
        match index {
            0 => "otlp".to_owned(),
            i => format!("otlp-{i}"),
        }
    }

    /// Every problem with this entry, by field (relative to the entry).
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let f = |name: &str| FieldPath::root().key(name);
        if self.endpoint.is_empty() {
            out.push((FieldPath::root(), "endpoint is required".to_owned()));
        } else if let Some(m) = crate::validate::url_problem(&self.endpoint) {
            out.push((
                f("endpoint"),
                m.replace(
                    "(e.g. http://127.0.0.1:9091/api/v1/write)",
                    "(e.g. http://collector:4318)",
                ),
            ));
        } else if self.protocol == OtlpProtocol::Grpc && endpoint_has_path(&self.endpoint) {
            out.push((
                f("endpoint"),
                format!(
                    "{:?} has a path, which gRPC does not use (e.g. http://collector:4317)",
                    self.endpoint
                ),
            ));
        }
        if self.timeout.is_zero() {
            out.push((f("timeout"), "must be above 0s".to_owned()));
        }
        for (name, value) in &self.headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                out.push((
                    f("headers").key(name.as_str()),
                    format!("{name:?} is not a valid header name"),
                ));
            } else if self.protocol == OtlpProtocol::Grpc
                && name.bytes().any(|b| b.is_ascii_uppercase())
            {
                // gRPC metadata keys are lowercase; tonic refuses others.
                out.push((
                    f("headers").key(name.as_str()),
                    format!(
                        "{name:?}: gRPC metadata keys are lowercase (write {:?})",
                        name.to_ascii_lowercase()
                    ),
                ));
            } else if value.contains(['\r', '\n']) {
                out.push((
                    f("headers").key(name.as_str()),
                    format!("the value of header {name:?} cannot contain a line break"),
                ));
            }
        }
        if let Some(t) = &self.tls {
            if !self.endpoint.starts_with("https://") {
                out.push((
                    f("tls"),
                    "tls is set but endpoint is not https://".to_owned(),
                ));
            }
            if t.cert_file.is_some() != t.key_file.is_some() {
                let missing = if t.cert_file.is_some() {
                    "key_file"
                } else {
                    "cert_file"
                };
                out.push((
                    f("tls").key(missing),
                    format!(
                        "{missing} is required with {}",
                        if missing == "key_file" {
                            "cert_file"
                        } else {
                            "key_file"
                        }
                    ),
                ));
            }
        }
        for (label, attribute) in &self.resource_attributes {
            if label.is_empty() || attribute.is_empty() {
                out.push((
                    f("resource_attributes").key(label.as_str()),
                    "label and attribute names cannot be empty".to_owned(),
                ));
            }
        }
        let q = &self.queue;
        let at = f("queue");
        if q.capacity == 0 {
            out.push((at.key("capacity"), "must be above 0".to_owned()));
        }
        if q.max_samples_per_send == 0 {
            out.push((at.key("max_samples_per_send"), "must be above 0".to_owned()));
        } else if q.capacity > 0 && q.max_samples_per_send > q.capacity {
            out.push((
                at.key("max_samples_per_send"),
                format!(
                    "max_samples_per_send {} is more than capacity {}",
                    q.max_samples_per_send, q.capacity
                ),
            ));
        }
        if q.batch_send_deadline.is_zero() {
            out.push((at.key("batch_send_deadline"), "must be above 0s".to_owned()));
        }
        if q.min_backoff.is_zero() {
            out.push((at.key("min_backoff"), "must be above 0s".to_owned()));
        }
        if q.min_backoff > q.max_backoff {
            out.push((
                at.key("max_backoff"),
                format!(
                    "max_backoff {} is shorter than min_backoff {}",
                    crate::format_duration(q.max_backoff),
                    crate::format_duration(q.min_backoff)
                ),
            ));
        }
        out
    }
}

/// Whether an (otherwise valid) URL has a path beyond `/`.
pub(crate) fn endpoint_has_path(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .is_some_and(|i| !matches!(&rest[i..], "/" | ""))
}

#[cfg(test)]
mod tests {
    use crate::{ConfigErrors, MapEnv, OtlpCompression, OtlpProtocol, load_str};

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, "surge.yaml", &MapEnv::new()) {
            Ok(_) => panic!("expected errors"),
            Err(e) => ConfigErrors::to_lines(&e),
        }
    }

    #[test]
    fn an_otlp_destination_loads_with_its_defaults() {
        let text = r#"
agent:
  otlp:
    - endpoint: http://collector:4318
    - endpoint: https://collector:4317
      protocol: grpc
      compression: gzip
      headers: {authorization: Bearer x}
      timeout: 3s
      tls: {ca_file: /etc/ca.pem}
      resource_attributes: {namespace: k8s.namespace.name}
      queue: {capacity: 500, max_samples_per_send: 100}
"#;
        let c = load_str(text, "surge.yaml", &MapEnv::new()).unwrap();
        let [a, b] = &c.agent.otlp[..] else {
            panic!("two entries")
        };
        assert_eq!(a.name, "otlp");
        assert_eq!(a.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(a.compression, OtlpCompression::None);
        assert_eq!(a.timeout, std::time::Duration::from_secs(10));
        assert_eq!(a.resource_attributes, super::default_resource_attributes());
        assert_eq!(a.queue, super::OtlpQueueConfig::default());
        assert_eq!(b.name, "otlp-1");
        assert_eq!(b.protocol, OtlpProtocol::Grpc);
        assert_eq!(b.compression, OtlpCompression::Gzip);
        assert_eq!(b.headers["authorization"], "Bearer x");
        assert_eq!(b.timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            b.tls.as_ref().and_then(|t| t.ca_file.as_deref()),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(b.resource_attributes.len(), 1);
        assert_eq!((b.queue.capacity, b.queue.max_samples_per_send), (500, 100));
    }

    #[test]
    fn every_otlp_problem_is_reported_with_its_position() {
        let text = r#"
agent:
  remote_write:
    - url: http://agg:9091/api/v1/write
      name: agg
  otlp:
    - protocol: grpc
    - endpoint: http://c:4317/v1/metrics
      protocol: grpc
      headers: {Authorization: x}
    - endpoint: ftp://c
      timeout: 0s
      tls: {cert_file: /c.pem}
      queue: {capacity: 10, max_samples_per_send: 20, min_backoff: 2s, max_backoff: 1s}
    - endpoint: http://c:4318
      name: agg
    - endpoint: http://c:4318
      name: agg
"#;
        assert_eq!(
            errors(text),
            [
                r#"surge.yaml:7:7: agent.otlp[0]: endpoint is required"#,
                r#"surge.yaml:8:17: agent.otlp[1].endpoint: "http://c:4317/v1/metrics" has a path, which gRPC does not use (e.g. http://collector:4317)"#,
                r#"surge.yaml:10:32: agent.otlp[1].headers.Authorization: "Authorization": gRPC metadata keys are lowercase (write "authorization")"#,
                r#"surge.yaml:11:17: agent.otlp[2].endpoint: "ftp://c" is not an http or https URL"#,
                r#"surge.yaml:12:16: agent.otlp[2].timeout: must be above 0s"#,
                r#"surge.yaml:13:12: agent.otlp[2].tls: tls is set but endpoint is not https://"#,
                r#"surge.yaml:13:12: agent.otlp[2].tls.key_file: key_file is required with cert_file"#,
                r#"surge.yaml:14:51: agent.otlp[2].queue.max_samples_per_send: max_samples_per_send 20 is more than capacity 10"#,
                r#"surge.yaml:14:85: agent.otlp[2].queue.max_backoff: max_backoff 1s is shorter than min_backoff 2s"#,
                r#"surge.yaml:16:13: agent.otlp[3].name: name "agg" is already used by remote_write[0]"#,
                r#"surge.yaml:18:13: agent.otlp[4].name: name "agg" is already used by otlp[3]"#,
            ]
        );
    }

    #[test]
    fn an_unknown_protocol_names_the_choices() {
        let e =
            errors("agent:\n  otlp:\n    - endpoint: http://c:4318\n      protocol: http/json\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                r#"surge.yaml:4:17: agent.otlp[0].protocol: unknown variant "http/json", expected "http/protobuf" or "grpc""#
            ),
            "{e:?}"
        );
    }
}
