//! Own metrics of the Kubernetes metrics APIs, registered into the registry passed in.
//!
//! Label values come from closed sets (`api`, `code`), so cardinality is bounded.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type L2 = [(&'static str, &'static str); 2];

/// Which API a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    External,
    /// An external metric proxied to `forward_external_url`.
    ExternalForward,
    Custom,
    Discovery,
    OpenApi,
    Health,
    Other,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::External => "external",
            ApiKind::ExternalForward => "external_forward",
            ApiKind::Custom => "custom",
            ApiKind::Discovery => "discovery",
            ApiKind::OpenApi => "openapi",
            ApiKind::Health => "health",
            ApiKind::Other => "other",
        }
    }
}

fn code_str(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        500 => "500",
        502 => "502",
        503 => "503",
        _ => "other",
    }
}

/// Request counter and latency histogram, both by `api` and `code`.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub requests: Family<L2, Counter>,
    pub duration: Family<L2, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    // 50 µs .. ~13 s.
    Histogram::new(exponential_buckets(5e-5, 4.0, 10))
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "surge_aggregator_k8s_api_requests",
            "Requests to the Kubernetes metrics APIs, by API and HTTP status code",
            self.requests.clone(),
        );
        registry.register(
            "surge_aggregator_k8s_api_request_duration_seconds",
            "Latency of the Kubernetes metrics APIs, by API and HTTP status code",
            self.duration.clone(),
        );
    }

    pub fn observe(&self, api: ApiKind, code: u16, seconds: f64) {
        let labels = [("api", api.as_str()), ("code", code_str(code))];
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }
}
