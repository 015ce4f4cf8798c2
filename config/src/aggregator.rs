//! The `aggregator:` section: ingest, the cache of recent samples, queries, onward writes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alb::AlbConfig;
use crate::path::FieldPath;
use crate::remote_write::RemoteWriteConfig;
use crate::server::ServerConfig;
use crate::{duration, fields, size};

/// The aggregator: receives remote-write from agents, holds recent samples, answers queries and
/// drives the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Address for remote-write ingest, the Prometheus API and own metrics. Default `0.0.0.0:9091`.
    #[serde(with = "fields::socket_addr")]
    pub listen: SocketAddr,
    /// Largest remote-write request body accepted (compressed), e.g. `32MiB` (the default).
    #[serde(with = "size")]
    pub max_request_body_size: u64,
    /// The in-memory cache of recent samples.
    pub cache: CacheConfig,
    /// Limits of the query API.
    pub query: QueryConfig,
    /// Where ingested series are written onward (Mimir, Thanos Receive, VictoriaMetrics).
    pub remote_write: Vec<RemoteWriteConfig>,
    /// The Kubernetes metrics APIs (`external.metrics.k8s.io`, `custom.metrics.k8s.io`) over HTTPS, for
    /// any HorizontalPodAutoscaler. Absent: not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_api: Option<KubernetesApiConfig>,
    /// On SIGTERM, how long the aggregator keeps serving while it reports not ready (`/readyz` 503), so
    /// kube-apiserver, Services and agents stop sending to it before it closes: deleting a replica then
    /// fails no request. Keep it under the pod's `terminationGracePeriodSeconds`. Default `3s`.
    #[serde(with = "duration")]
    pub shutdown_delay: Duration,
    /// `/readyz` (and the metrics APIs' readiness) answer 503 until this long after start, so a new
    /// replica takes queries only once it holds the history its rules read (e.g. the 30 s of a
    /// `rate(x[30s])` plus a scrape); it ingests meanwhile. `0s` (the default): ready at once.
    #[serde(with = "duration")]
    pub warmup: Duration,
    /// The listener's TLS, write authentication and connection limits.
    pub server: ServerConfig,
    /// ALB request metrics for policies: CloudWatch's (60 s, leader only) and the targets' own (1 s).
    /// Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbConfig>,
    /// The other replicas: warm-up from one at start, ALB series to all. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<crate::peers::PeersConfig>,
    /// Node decisions with the pod decisions: NodeClaims asked for before pods go Pending. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<crate::nodes::NodesConfig>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9091)),
            max_request_body_size: 32 << 20,
            cache: CacheConfig::default(),
            query: QueryConfig::default(),
            remote_write: Vec::new(),
            kubernetes_api: None,
            shutdown_delay: Duration::from_secs(3),
            warmup: Duration::ZERO,
            server: ServerConfig::default(),
            alb: None,
            peers: None,
            nodes: None,
        }
    }
}

/// The cache of recent samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Each series' ring holds at least this much history. Default `5m`.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// A series with no sample for this long is evicted. Default `10m`.
    #[serde(with = "duration")]
    pub idle_ttl: Duration,
    /// A value older than this is stale and never reported as current. Default `5s`.
    #[serde(with = "duration")]
    pub stale_after: Duration,
    /// Most series held; new series beyond it are dropped and counted. Default 2000000.
    pub max_series: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            retention: Duration::from_secs(300),
            idle_ttl: Duration::from_secs(600),
            stale_after: Duration::from_secs(5),
            max_series: 2_000_000,
        }
    }
}

/// Limits of the query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A selector touching more series than this fails. Default 100000.
    pub max_series: usize,
    /// How far back an instant query looks for a series' latest sample. Default `5m`.
    #[serde(with = "duration")]
    pub lookback_delta: Duration,
    /// Queries evaluated at once; more wait (within their timeout). Default 20.
    pub max_concurrent: usize,
    /// A query's deadline, waiting included; past it the evaluation stops and the answer is 503
    /// `timeout`. Default `2m`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// The most samples one query may hold (points read by range selectors and of a range query's
    /// result). Default 50000000.
    pub max_samples: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_series: 100_000,
            lookback_delta: Duration::from_secs(300),
            max_concurrent: 20,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
        }
    }
}

/// The Kubernetes metrics APIs, registered with kube-apiserver through `APIService` objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesApiConfig {
    /// HTTPS listen address. Default `0.0.0.0:6443`.
    #[serde(with = "fields::socket_addr")]
    pub listen: SocketAddr,
    /// Serving certificate and key (PEM), re-read when they change. Omitted: a self-signed certificate
    /// for development (logged loudly; the APIService must then skip TLS verification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<KubernetesApiTlsConfig>,
    /// Front-proxy authentication: who may call. Omitted: every API request answers 401 unless
    /// `insecure_dev_no_auth` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requestheader: Option<RequestHeaderConfig>,
    /// Serve every request without authentication (development only). Default false.
    pub insecure_dev_no_auth: bool,
    /// External metrics not defined below are proxied to this provider (same path and query), e.g.
    /// `https://keda-metrics-apiserver.keda:443`, so surge does not take the external-metrics slot
    /// away from KEDA. Its answer is passed through; unreachable → 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_external_url: Option<String>,
    /// How to reach `forward_external_url`. Default: the system roots, no client certificate, 10s.
    pub forward_external_tls: ForwardTlsConfig,
    /// `external.metrics.k8s.io/v1beta1` metrics: each answers with the value(s) of its query.
    pub external_metrics: Vec<ExternalMetricConfig>,
    /// `custom.metrics.k8s.io` (v1beta1 and v1beta2) metrics, per object of a resource.
    pub custom_metrics: Vec<CustomMetricConfig>,
}

impl Default for KubernetesApiConfig {
    fn default() -> Self {
        KubernetesApiConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
            tls: None,
            requestheader: None,
            insecure_dev_no_auth: false,
            forward_external_url: None,
            forward_external_tls: ForwardTlsConfig::default(),
            external_metrics: Vec::new(),
            custom_metrics: Vec::new(),
        }
    }
}

/// A serving certificate in files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesApiTlsConfig {
    /// PEM certificate chain, e.g. `/tls/tls.crt`.
    pub cert_file: PathBuf,
    /// PEM private key, e.g. `/tls/tls.key`.
    pub key_file: PathBuf,
    /// How often the files are checked for changes. Default `5s`.
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// kube-apiserver's front proxy: its client certificate must verify against the
/// `requestheader-client-ca-file`: a file (`client_ca_file`) or, as every aggregated API server reads
/// it, ConfigMap `kube-system/extension-apiserver-authentication` (`from_cluster`). Set exactly one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeaderConfig {
    /// PEM CA bundle, e.g. `/pki/front-proxy-ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Read the CA (`requestheader-client-ca-file`) and, when `allowed_names` is empty, the allowed
    /// names (`requestheader-allowed-names`) from ConfigMap `kube-system/extension-apiserver-authentication`
    /// at start, with the pod's service account (RBAC: the `extension-apiserver-authentication-reader`
    /// Role). Default false.
    #[serde(default)]
    pub from_cluster: bool,
    /// Common names accepted (`requestheader-allowed-names`, e.g. `front-proxy-client`). Empty: any
    /// certificate the CA signed.
    #[serde(default)]
    pub allowed_names: Vec<String>,
}

/// TLS toward the forward target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardTlsConfig {
    /// PEM CA bundle that signs the provider's certificate. Default: the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate presented to the provider (most want the front-proxy identity); needs
    /// `ca_file` or `insecure_skip_verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Do not verify the provider's certificate (development only). Default false.
    pub insecure_skip_verify: bool,
    /// Deadline of one forwarded request. Default `10s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for ForwardTlsConfig {
    fn default() -> Self {
        ForwardTlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            insecure_skip_verify: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One external metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalMetricConfig {
    /// The metric name HPAs ask for (`metric.name` of an `External` metric).
    pub name: String,
    /// PromQL (surge's subset), e.g. `sum(rate(http_requests_total{service="web"}[30s]))`. The request's
    /// `labelSelector` is added to every selector. Each result series is one item (the HPA sums them);
    /// no series → one item of value 0; stale data → 503, never an old value.
    pub query: String,
}

/// One custom metric, served for the objects of `resource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetricConfig {
    /// The metric name HPAs ask for (`Pods` or `Object` metrics).
    pub name: String,
    /// `pods` (default), `namespaces`, `nodes` or a group-resource like `deployments.apps`.
    #[serde(default = "default_resource")]
    pub resource: String,
    /// PromQL whose result series name the object: `pod` (or `object_label`) and `namespace`, e.g.
    /// `sum by (namespace, pod) (rate(http_requests_total[30s]))`.
    pub query: String,
    /// The result label holding the object's name. Default: the resource's singular (`pods` → `pod`,
    /// `deployments.apps` → `deployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_label: Option<String>,
    /// The window reported with each value. Default: the longest range in the query, else 60s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Do not add the request's `labelSelector` (the pods' own labels) to the query, for series that do
    /// not carry them; namespace and name still narrow. Default false.
    #[serde(default)]
    pub ignore_label_selector: bool,
}

fn default_resource() -> String {
    "pods".to_owned()
}

fn is_metric_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '?', '#', '%']) && !s.chars().any(char::is_whitespace)
}

impl KubernetesApiConfig {
    /// Problems serde cannot express, with the field each is about (relative to this section).
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let f = |name: &str| FieldPath::root().key(name);
        if let Some(t) = &self.tls {
            for (name, p) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
                if p.as_os_str().is_empty() {
                    out.push((f("tls").key(name), format!("{name} is required")));
                }
            }
            if t.reload_interval.is_zero() {
                out.push((
                    f("tls").key("reload_interval"),
                    "must be above 0s".to_owned(),
                ));
            }
        }
        if let Some(r) = &self.requestheader {
            let file = r
                .client_ca_file
                .as_ref()
                .filter(|p| !p.as_os_str().is_empty());
            match (file, r.from_cluster) {
                (None, false) => out.push((
                    f("requestheader").key("client_ca_file"),
                    "set client_ca_file, or from_cluster: true to read the CA from kube-system/extension-apiserver-authentication".to_owned(),
                )),
                (Some(_), true) => out.push((
                    f("requestheader").key("from_cluster"),
                    "set either client_ca_file or from_cluster, not both".to_owned(),
                )),
                _ => {}
            }
        }
        if let Some(url) = &self.forward_external_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            out.push((
                f("forward_external_url"),
                format!("{url:?} is not an http or https URL (e.g. https://keda-metrics-apiserver.keda:443)"),
            ));
        }
        let t = &self.forward_external_tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            out.push((
                f("forward_external_tls"),
                "cert_file and key_file go together".to_owned(),
            ));
        } else if t.cert_file.is_some() && t.ca_file.is_none() && !t.insecure_skip_verify {
            out.push((
                f("forward_external_tls").key("ca_file"),
                "a client certificate needs ca_file (or insecure_skip_verify)".to_owned(),
            ));
        }
        if t.timeout.is_zero() {
            out.push((
                f("forward_external_tls").key("timeout"),
                "must be above 0s".to_owned(),
            ));
        }
        let mut names = std::collections::HashMap::new();
        for (i, m) in self.external_metrics.iter().enumerate() {
            let at = f("external_metrics").index(i);
            if !is_metric_name(&m.name) {
                out.push((
                    at.key("name"),
                    format!(
                        "{:?} is not a metric name (no /, ?, #, % or spaces)",
                        m.name
                    ),
                ));
            } else if let Some(first) = names.insert(m.name.as_str(), i) {
                out.push((
                    at.key("name"),
                    format!(
                        "{:?} is already defined by external_metrics[{first}]",
                        m.name
                    ),
                ));
            }
            if m.query.trim().is_empty() {
                out.push((at.key("query"), "query is required".to_owned()));
            }
        }
        let mut names = std::collections::HashMap::new();
        for (i, m) in self.custom_metrics.iter().enumerate() {
            let at = f("custom_metrics").index(i);
            if !is_metric_name(&m.name) {
                out.push((
                    at.key("name"),
                    format!(
                        "{:?} is not a metric name (no /, ?, #, % or spaces)",
                        m.name
                    ),
                ));
            } else if let Some(first) = names.insert((m.resource.as_str(), m.name.as_str()), i) {
                out.push((
                    at.key("name"),
                    format!(
                        "{:?} for {} is already defined by custom_metrics[{first}]",
                        m.name, m.resource
                    ),
                ));
            }
            let valid_resource = !m.resource.is_empty()
                && m.resource.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !valid_resource {
                out.push((
                    at.key("resource"),
                    format!(
                        "{:?} is not a resource (e.g. pods, namespaces, deployments.apps)",
                        m.resource
                    ),
                ));
            }
            if m.query.trim().is_empty() {
                out.push((at.key("query"), "query is required".to_owned()));
            }
            if let Some(l) = &m.object_label
                && !surge_model::is_valid_label_name(l)
            {
                out.push((at.key("object_label"), format!("{l:?} is not a label name")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{MapEnv, load_str};

    #[test]
    fn kubernetes_api_section() {
        let text = r#"
aggregator:
  kubernetes_api:
    listen: 0.0.0.0:6443
    tls: {cert_file: /tls/tls.crt, key_file: /tls/tls.key}
    requestheader: {client_ca_file: /pki/front-proxy-ca.crt, allowed_names: [front-proxy-client]}
    forward_external_url: https://keda-metrics-apiserver.keda:443
    external_metrics:
      - name: alb_request_rate
        query: sum(rate(http_requests_total{service="web"}[30s]))
    custom_metrics:
      - name: http_requests_per_second
        resource: pods
        query: sum by (namespace, pod) (rate(http_requests_total[30s]))
"#;
        let c = load_str(text, "surge.yaml", &MapEnv::new()).unwrap();
        let k = c.aggregator.kubernetes_api.unwrap();
        assert_eq!(k.listen.port(), 6443);
        assert_eq!(k.tls.unwrap().reload_interval.as_secs(), 5);
        assert_eq!(
            k.requestheader.unwrap().allowed_names,
            ["front-proxy-client"]
        );
        assert_eq!(k.external_metrics[0].name, "alb_request_rate");
        assert_eq!(k.custom_metrics[0].resource, "pods");
        assert_eq!(k.forward_external_tls.timeout.as_secs(), 10);
    }

    #[test]
    fn kubernetes_api_problems() {
        let text = r#"
aggregator:
  kubernetes_api:
    forward_external_url: keda:443
    forward_external_tls: {cert_file: /c.crt}
    external_metrics:
      - {name: a, query: x}
      - {name: a, query: ""}
    custom_metrics:
      - {name: "b/c", resource: Deployments, query: y, object_label: "1x"}
"#;
        let e = load_str(text, "surge.yaml", &MapEnv::new())
            .unwrap_err()
            .to_string();
        for want in [
            "aggregator.kubernetes_api.forward_external_url: \"keda:443\" is not an http or https URL",
            "aggregator.kubernetes_api.forward_external_tls: cert_file and key_file go together",
            "aggregator.kubernetes_api.external_metrics[1].name: \"a\" is already defined by external_metrics[0]",
            "aggregator.kubernetes_api.external_metrics[1].query: query is required",
            "aggregator.kubernetes_api.custom_metrics[0].name: \"b/c\" is not a metric name",
            "aggregator.kubernetes_api.custom_metrics[0].resource: \"Deployments\" is not a resource",
            "aggregator.kubernetes_api.custom_metrics[0].object_label: \"1x\" is not a label name",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let unknown = "aggregator:\n  kubernetes_api:\n    listen_port: 1\n";
        let e = load_str(unknown, "surge.yaml", &MapEnv::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
