//! ALB request metrics for policies, written into the aggregator's store (`aggregator.alb`).
//!
//! # Two sources, one name family
//!
//! - [`cloudwatch`]: CloudWatch's `AWS/ApplicationELB` metrics, read with `GetMetricData` (period 60 s,
//!   the only resolution ALB publishes) every `interval`, on the aggregator's **leader** only (the Lease
//!   of `surge-k8s`; without leader election, a single replica, it just runs). One replica's calls are
//!   enough for the cluster's decisions, which only the leader acts on.
//! - [`target_side`]: the 1 s alternative, the request rate summed from the targets' own counters as the
//!   agents scrape them every second, on every replica.
//!
//! Both write through the remote-write ingest path ([`surge_aggregator::AggregatorState::ingest_body`]),
//! so policies, the Kubernetes metrics APIs, PromQL and the onward writer see them as any series.
//!
//! # Series
//!
//! | series | from | unit | labels |
//! |---|---|---|---|
//! | `aws_applicationelb_request_count_sum` | RequestCount, Sum | requests in the minute | `load_balancer`, `target_group`, `source="cloudwatch"` |
//! | `aws_applicationelb_request_count_per_target_sum` | RequestCountPerTarget, Sum | requests per target in the minute | same |
//! | `aws_applicationelb_target_response_time_average` | TargetResponseTime, Average | seconds | same |
//! | `aws_applicationelb_httpcode_target_5xx_count_sum` | HTTPCode_Target_5XX_Count, Sum | responses in the minute | same |
//! | `aws_applicationelb_active_connection_count_sum` | ActiveConnectionCount, Sum | connections in the minute | `load_balancer`, `source="cloudwatch"` (CloudWatch has it per load balancer only) |
//! | `aws_applicationelb_request_rate` | RequestCount Sum / 60 | requests per second | `load_balancer`, `target_group`, `source="cloudwatch"` |
//! | `aws_applicationelb_request_rate` | the rule's query (target side) | requests per second | `target_group`, `load_balancer` if configured, `source="targets"` |
//!
//! Names follow the yet-another-cloudwatch-exporter's `aws_<namespace>_<metric>_<statistic>` so its
//! dashboards read them; label values are CloudWatch's dimension values (the ARN suffixes
//! `app/NAME/ID`, `targetgroup/NAME/ID`). A policy reads the request rate per second from either source
//! by one label: `aws_applicationelb_request_rate{target_group="targetgroup/web/…", source="targets"}`
//! (1 s) or `source="cloudwatch"` (60 s). Always select a `source`: both share the name.
//!
//! # Time
//!
//! - A CloudWatch point is stamped at its period's **end** (CloudWatch stamps the start): the minute's
//!   value is complete only then, and a sample is the state at its time. CloudWatch publishes a minute
//!   one to a few minutes after it ends, so these series are at least a minute old: a policy reading them
//!   through the autoscaling path needs a `stale_after` above that age; the target-side rate is fresh.
//! - Each poll reads the last `lookback` (whole minutes). A minute is written once, in time order (the
//!   store takes a series' timestamps only forward). A re-published value for a written minute, or a late
//!   point for a minute written as 0, is counted (`surge_alb_cloudwatch_points_total{kind="revised"}`),
//!   not rewritten; a late response-time point older than a written one is counted as `late`.
//! - CloudWatch publishes the count metrics only while requests flow: a missing minute means 0 requests.
//!   It is written as 0 once a later minute has a point, or once it ended `zero_fill_after` ago (before
//!   then it may still be on its way). A missing response-time minute stays missing (no requests, no
//!   time). An idle target group therefore reads 0, not "no data", once its minutes are settled.

pub mod cloudwatch;
pub mod metrics;
pub mod naming;
pub mod points;
pub mod target_side;
pub mod write;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use surge_aggregator::AggregatorState;
use surge_config::AlbConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cloudwatch::CloudWatchSource;
pub use metrics::AlbMetrics;
pub use target_side::TargetSide;

/// Why the ALB sources could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// One or more `target_side` queries are invalid (each listed).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    TargetSide(Vec<target_side::RuleError>),
}

/// The running sources' tasks.
pub struct Alb {
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts what `cfg` configures: the target-side evaluator (registered as an observer of `state`) and,
/// with target groups, the CloudWatch source gated by `leader` (`None`: no election, always runs),
/// writing to the peer replicas too when `replicate` is given.
/// Registers the metrics into `registry`; the tasks end on `cancel`.
pub async fn start(
    cfg: &AlbConfig,
    state: Arc<AggregatorState>,
    leader: Option<watch::Receiver<bool>>,
    replicate: Option<Arc<surge_aggregator::peers::PeerWriter>>,
    registry: &mut Registry,
    cancel: CancellationToken,
) -> Result<Alb, StartError> {
    let metrics = AlbMetrics::new(registry);
    let mut tasks = Vec::new();
    if !cfg.target_side.is_empty() {
        let ts =
            TargetSide::new(cfg, state.clone(), metrics.clone()).map_err(StartError::TargetSide)?;
        state.add_observer(ts.observer());
        tasks.push(tokio::spawn(ts.run(cancel.clone())));
    }
    if !cfg.target_groups.is_empty() {
        let client = cloudwatch::client(cfg).await;
        let mut source = CloudWatchSource::new(client, cfg, state, metrics);
        if let Some(peers) = replicate {
            source = source.with_replication(peers);
        }
        tracing::info!(
            target_groups = cfg.target_groups.len(),
            interval = ?cfg.interval,
            leader_election = leader.is_some(),
            "ALB CloudWatch source started"
        );
        tasks.push(tokio::spawn(source.run(leader, cancel)));
    }
    Ok(Alb { tasks })
}
