//! The `aggregator.alb:` section: Application Load Balancer request metrics that policies can read.
//!
//! Two sources write into the aggregator's store, under one name family (see `surge-alb` for the series):
//! - `target_groups`: CloudWatch's `AWS/ApplicationELB` metrics, read with `GetMetricData` every
//!   `interval` (60 s: ALB publishes nothing finer), on the aggregator's leader only;
//! - `target_side`: the 1 s alternative, a request rate per target group computed from the targets' own
//!   counters (scraped by the agents) each time their samples land, on every replica.
//!
//! ```yaml
//! aggregator:
//!   alb:
//!     region: us-east-1
//!     target_groups:
//!       - load_balancer: app/web-lb/50dc6c495c0c9188
//!         target_group: targetgroup/web/73e2d6bc24d8a067
//!     target_side:
//!       - target_group: targetgroup/web/73e2d6bc24d8a067
//!         query: sum(rate(http_requests_total{service="web"}[5s]))
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::path::FieldPath;

/// ALB request metrics for policies. Absent or empty: nothing runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlbConfig {
    /// AWS region of the load balancers, e.g. `us-east-1`. Absent: the standard chain (`AWS_REGION`,
    /// the profile, the instance metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// CloudWatch endpoint override, e.g. `http://127.0.0.1:4566` (LocalStack). Absent: the regional
    /// AWS endpoint. Credentials always come from the standard chain (environment, IRSA web identity,
    /// EKS Pod Identity, instance profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How often `GetMetricData` is called. Default `60s`, ALB's only resolution.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How far back each call reads (whole minutes): a point published late, or re-published with a new
    /// value, within this window is seen. Keep it within `cache.retention`. Default `4m`.
    #[serde(with = "duration")]
    pub lookback: Duration,
    /// A count metric (RequestCount, RequestCountPerTarget, HTTPCode_Target_5XX_Count,
    /// ActiveConnectionCount) publishes no point for a minute without requests: such a minute is written
    /// as 0 once a later minute has a point, or once it ended this long ago (CloudWatch's publication
    /// delay, so a minute not yet published is not taken for an idle one). Default `3m`.
    #[serde(with = "duration")]
    pub zero_fill_after: Duration,
    /// Target groups read from CloudWatch, each with its load balancer.
    pub target_groups: Vec<AlbTargetGroupConfig>,
    /// The 1 s alternative: per target group, a PromQL query over the targets' own counters.
    pub target_side: Vec<AlbTargetSideConfig>,
    /// Least time between two evaluations of the `target_side` queries (they run when a sample lands).
    /// Default `200ms`.
    #[serde(with = "duration")]
    pub target_side_min_interval: Duration,
}

impl Default for AlbConfig {
    fn default() -> Self {
        AlbConfig {
            region: None,
            endpoint_url: None,
            interval: Duration::from_secs(60),
            lookback: Duration::from_secs(240),
            zero_fill_after: Duration::from_secs(180),
            target_groups: Vec::new(),
            target_side: Vec::new(),
            target_side_min_interval: Duration::from_millis(200),
        }
    }
}

/// One target group as CloudWatch names it (the ARN suffixes, which are also the label values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbTargetGroupConfig {
    /// The `LoadBalancer` dimension: the load balancer ARN's suffix, e.g. `app/web-lb/50dc6c495c0c9188`.
    pub load_balancer: String,
    /// The `TargetGroup` dimension: the target group ARN's suffix, e.g. `targetgroup/web/73e2d6bc24d8a067`.
    pub target_group: String,
}

/// A target group's request rate from its targets' counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbTargetSideConfig {
    /// The `target_group` label, as CloudWatch names it (so a policy switches source by one label).
    pub target_group: String,
    /// The `load_balancer` label, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// PromQL giving requests per second, e.g. `sum(rate(http_requests_total{service="web"}[5s]))`. A
    /// vector result is summed.
    pub query: String,
}

impl AlbConfig {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.target_groups.is_empty() && self.target_side.is_empty()
    }

    /// Problems serde cannot express, each with the path of its field (relative to this section).
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let at = FieldPath::root();
        if self.interval.is_zero() {
            out.push((at.key("interval"), "must be above 0s".to_owned()));
        }
        if self.lookback.as_secs() < 60 || !self.lookback.as_millis().is_multiple_of(60_000) {
            out.push((
                at.key("lookback"),
                format!(
                    "{} is not a whole number of minutes (CloudWatch periods are 60s), e.g. 4m",
                    duration::format_duration(self.lookback)
                ),
            ));
        }
        if self.target_side_min_interval.is_zero() {
            out.push((
                at.key("target_side_min_interval"),
                "must be above 0s".to_owned(),
            ));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push((
                at.key("endpoint_url"),
                format!("{url:?} is not an http or https URL"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tg) in self.target_groups.iter().enumerate() {
            let at = at.key("target_groups").index(i);
            if !tg.load_balancer.starts_with("app/") {
                out.push((
                    at.key("load_balancer"),
                    format!(
                        "{:?} is not an ALB's LoadBalancer dimension (app/NAME/ID, the ARN's suffix)",
                        tg.load_balancer
                    ),
                ));
            }
            if !tg.target_group.starts_with("targetgroup/") {
                out.push((
                    at.key("target_group"),
                    format!(
                        "{:?} is not a TargetGroup dimension (targetgroup/NAME/ID, the ARN's suffix)",
                        tg.target_group
                    ),
                ));
            }
            if !seen.insert((&tg.load_balancer, &tg.target_group)) {
                out.push((at, "listed twice".to_owned()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.target_side.iter().enumerate() {
            let at = at.key("target_side").index(i);
            if t.target_group.is_empty() {
                out.push((at.key("target_group"), "must not be empty".to_owned()));
            }
            if t.query.trim().is_empty() {
                out.push((at.key("query"), "must not be empty".to_owned()));
            }
            if !seen.insert((&t.target_group, &t.load_balancer)) {
                out.push((at, "a second query for the same target group".to_owned()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MapEnv, load_str};

    #[test]
    fn the_documented_example_loads_with_its_defaults() {
        let text = r#"
aggregator:
  alb:
    region: us-east-1
    target_groups:
      - load_balancer: app/web-lb/50dc6c495c0c9188
        target_group: targetgroup/web/73e2d6bc24d8a067
    target_side:
      - target_group: targetgroup/web/73e2d6bc24d8a067
        query: sum(rate(http_requests_total{service="web"}[5s]))
"#;
        let c = load_str(text, "surge.yaml", &MapEnv::new()).unwrap();
        let alb = c.aggregator.alb.unwrap();
        assert_eq!(alb.region.as_deref(), Some("us-east-1"));
        assert_eq!(alb.interval, Duration::from_secs(60));
        assert_eq!(alb.lookback, Duration::from_secs(240));
        assert_eq!(alb.zero_fill_after, Duration::from_secs(180));
        assert_eq!(
            alb.target_groups[0].load_balancer,
            "app/web-lb/50dc6c495c0c9188"
        );
        assert_eq!(alb.target_side[0].load_balancer, None);
        assert!(!alb.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = r#"aggregator:
  alb:
    endpoint_url: localhost:4566
    lookback: 90s
    target_groups:
      - load_balancer: web-lb
        target_group: targetgroup/web/1
      - load_balancer: app/a/1
        target_group: web
    target_side:
      - target_group: targetgroup/web/1
        query: " "
"#;
        let lines = match load_str(text, "surge.yaml", &MapEnv::new()) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.to_lines(),
        };
        assert_eq!(
            lines,
            [
                r#"surge.yaml:3:19: aggregator.alb.endpoint_url: "localhost:4566" is not an http or https URL"#,
                "surge.yaml:4:15: aggregator.alb.lookback: 1m30s is not a whole number of minutes (CloudWatch periods are 60s), e.g. 4m",
                r#"surge.yaml:6:24: aggregator.alb.target_groups[0].load_balancer: "web-lb" is not an ALB's LoadBalancer dimension (app/NAME/ID, the ARN's suffix)"#,
                r#"surge.yaml:9:23: aggregator.alb.target_groups[1].target_group: "web" is not a TargetGroup dimension (targetgroup/NAME/ID, the ARN's suffix)"#,
                "surge.yaml:12:16: aggregator.alb.target_side[0].query: must not be empty",
            ]
        );
    }
}
