//! Plain option structs of the Kubernetes metrics APIs. The lead maps `surge-config`'s
//! `aggregator.kubernetes_api` section onto them (this crate does not depend on the config crate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`super::MetricsApi`] and [`super::serve_https`] need.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsApiOptions {
    /// Where the HTTPS server listens (the caller binds it). Default `0.0.0.0:6443`.
    pub listen: SocketAddr,
    /// The serving certificate; `None` → a self-signed certificate for development.
    pub tls: Option<TlsFiles>,
    /// Front-proxy (requestheader) authentication; `None` → every API request answers 401 unless
    /// `insecure_dev_no_auth`.
    pub requestheader: Option<RequestHeaderOptions>,
    /// Serve every request without authentication (development only; logged loudly).
    pub insecure_dev_no_auth: bool,
    /// Where external metrics not defined here are proxied.
    pub forward_external: Option<ForwardOptions>,
    /// `external.metrics.k8s.io` metrics.
    pub external_metrics: Vec<ExternalMetricRule>,
    /// `custom.metrics.k8s.io` metrics.
    pub custom_metrics: Vec<CustomMetricRule>,
}

impl Default for MetricsApiOptions {
    fn default() -> Self {
        MetricsApiOptions {
            listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
            tls: None,
            requestheader: None,
            insecure_dev_no_auth: false,
            forward_external: None,
            external_metrics: Vec::new(),
            custom_metrics: Vec::new(),
        }
    }
}

/// A serving certificate and key in PEM files, re-read when either file changes.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files' modification times are checked. Default 5 s.
    pub reload_interval: Duration,
}

/// Who may call: kube-apiserver's front proxy, identified by a client certificate signed by
/// `client_ca` whose common name is in `allowed_names` (empty = any verified certificate).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHeaderOptions {
    pub client_ca: ClientCa,
    pub allowed_names: Vec<String>,
}

/// Where the front-proxy CA comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCa {
    /// A PEM file (`requestheader.client_ca_file`).
    File(PathBuf),
    /// PEM text already read, e.g. from ConfigMap `kube-system/extension-apiserver-authentication`;
    /// `origin` names it in errors.
    Pem { pem: String, origin: String },
}

/// The external metrics provider that answers for metrics not defined here (KEDA, prometheus-adapter).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOptions {
    /// Base URL, e.g. `https://keda-metrics-apiserver.keda:443`; the request's path and query are appended.
    pub url: String,
    /// CA bundle that signs the provider's serving certificate; `None` → the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate presented to the provider (most providers want the front-proxy identity).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip verifying the provider's certificate (development only).
    pub insecure_skip_verify: bool,
    /// Deadline of one forwarded request. Default 10 s.
    pub timeout: Duration,
}

/// One external metric: `name` answers with the value(s) of `query`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalMetricRule {
    pub name: String,
    pub query: String,
}

/// One custom metric, served for objects of `resource`.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetricRule {
    pub name: String,
    /// `pods`, `namespaces`, `nodes` or a group-resource like `deployments.apps`.
    pub resource: String,
    /// The query; its result series name the object with `object_label` (and `namespace`).
    pub query: String,
    /// The result label holding the object's name. Default: the resource's singular (`pods` → `pod`,
    /// `deployments.apps` → `deployment`, `namespaces` → `namespace`).
    pub object_label: Option<String>,
    /// The `window`/`windowSeconds` reported. Default: the longest range in the query, else 60 s.
    pub window: Option<Duration>,
    /// Do not turn the request's `labelSelector` into matchers (for series that do not carry the
    /// objects' own labels; the namespace and object name still narrow).
    pub ignore_label_selector: bool,
}
