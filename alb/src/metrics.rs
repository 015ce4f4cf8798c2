//! The ALB sources' own metrics, registered into the process registry passed in.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::points::PlanCounts;

type L1 = [(&'static str, &'static str); 1];

/// Counters of both sources. Label values come from closed sets.
#[derive(Debug, Clone, Default)]
pub struct AlbMetrics {
    /// `GetMetricData` calls by outcome (`ok`, `service_error`, `dispatch_failure`, `timeout`, …).
    pub requests: Family<L1, Counter>,
    /// CloudWatch points by what became of them (`zero_filled`, `revised`, `late`).
    pub points: Family<L1, Counter>,
    /// Samples written into the store, by source (`cloudwatch`, `targets`).
    pub samples: Family<L1, Counter>,
    /// Target-side evaluations that failed, by reason (`query`, `ingest`).
    pub target_side_errors: Family<L1, Counter>,
}

impl AlbMetrics {
    pub fn new(registry: &mut Registry) -> AlbMetrics {
        let m = AlbMetrics::default();
        registry.register(
            "surge_alb_cloudwatch_requests",
            "GetMetricData calls of the ALB source, by outcome",
            m.requests.clone(),
        );
        registry.register(
            "surge_alb_cloudwatch_points",
            "CloudWatch ALB points: minutes written as 0, re-published values and late points not written",
            m.points.clone(),
        );
        registry.register(
            "surge_alb_samples_written",
            "Samples the ALB sources wrote into the store, by source",
            m.samples.clone(),
        );
        registry.register(
            "surge_alb_target_side_errors",
            "Target-side request-rate evaluations that failed, by reason",
            m.target_side_errors.clone(),
        );
        m
    }

    pub(crate) fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub(crate) fn points(&self, c: &PlanCounts) {
        for (what, n) in [
            ("zero_filled", c.zero_filled),
            ("revised", c.revised),
            ("late", c.late),
        ] {
            if n > 0 {
                self.points.get_or_create(&[("kind", what)]).inc_by(n);
            }
        }
    }

    pub(crate) fn written(&self, source: &'static str, n: u64) {
        if n > 0 {
            self.samples.get_or_create(&[("source", source)]).inc_by(n);
        }
    }

    pub(crate) fn target_side_error(&self, reason: &'static str) {
        self.target_side_errors
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}
