//! Which CloudWatch metrics are read and the series each becomes.

use surge_model::Labels;

/// The `source` label of every series the CloudWatch source writes.
pub const SOURCE_CLOUDWATCH: &str = "cloudwatch";
/// The `source` label of the target-side (1 s) request rate.
pub const SOURCE_TARGETS: &str = "targets";
/// Requests per second, from either source (CloudWatch: `RequestCount` Sum / 60; targets: the query).
pub const REQUEST_RATE: &str = "aws_applicationelb_request_rate";

/// How a missing period reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count: CloudWatch publishes nothing for a minute without requests, so a missing minute is 0.
    Count,
    /// A measurement (response time): a minute without requests has no value.
    Gauge,
}

/// Which dimensions a metric is queried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `LoadBalancer` + `TargetGroup`.
    TargetGroup,
    /// `LoadBalancer` only: CloudWatch has no per-target-group series of the metric.
    LoadBalancer,
}

/// One CloudWatch metric as the source reads and names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlbMetric {
    /// CloudWatch's metric name in `AWS/ApplicationELB`.
    pub cloudwatch: &'static str,
    /// The statistic requested (the only one that means something for the metric).
    pub stat: &'static str,
    /// The series name: `aws_applicationelb_<snake name>_<statistic>`, as the yet-another-cloudwatch-
    /// exporter names them, so dashboards written for it read surge's series.
    pub series: &'static str,
    pub kind: Kind,
    pub scope: Scope,
}

/// The metrics read, in query order.
pub const METRICS: [AlbMetric; 5] = [
    AlbMetric {
        cloudwatch: "RequestCount",
        stat: "Sum",
        series: "aws_applicationelb_request_count_sum",
        kind: Kind::Count,
        scope: Scope::TargetGroup,
    },
    AlbMetric {
        cloudwatch: "RequestCountPerTarget",
        stat: "Sum",
        series: "aws_applicationelb_request_count_per_target_sum",
        kind: Kind::Count,
        scope: Scope::TargetGroup,
    },
    AlbMetric {
        cloudwatch: "TargetResponseTime",
        stat: "Average",
        series: "aws_applicationelb_target_response_time_average",
        kind: Kind::Gauge,
        scope: Scope::TargetGroup,
    },
    AlbMetric {
        cloudwatch: "HTTPCode_Target_5XX_Count",
        stat: "Sum",
        series: "aws_applicationelb_httpcode_target_5xx_count_sum",
        kind: Kind::Count,
        scope: Scope::TargetGroup,
    },
    // CloudWatch publishes ActiveConnectionCount per load balancer (and zone), never per target group.
    AlbMetric {
        cloudwatch: "ActiveConnectionCount",
        stat: "Sum",
        series: "aws_applicationelb_active_connection_count_sum",
        kind: Kind::Count,
        scope: Scope::LoadBalancer,
    },
];

/// The labels of a CloudWatch-sourced series.
pub fn cloudwatch_labels(name: &str, load_balancer: &str, target_group: Option<&str>) -> Labels {
    let mut pairs = vec![
        ("__name__", name),
        ("load_balancer", load_balancer),
        ("source", SOURCE_CLOUDWATCH),
    ];
    if let Some(tg) = target_group {
        pairs.push(("target_group", tg));
    }
    Labels::from_pairs(pairs)
}

/// The labels of a target-side request rate.
pub fn target_side_labels(target_group: &str, load_balancer: Option<&str>) -> Labels {
    Labels::from_pairs([
        ("__name__", REQUEST_RATE),
        ("load_balancer", load_balancer.unwrap_or("")),
        ("source", SOURCE_TARGETS),
        ("target_group", target_group),
    ])
}
