//! The 1 s alternative: a target group's request rate from its targets' own counters.
//!
//! The agents scrape the targets every second; each rule's PromQL (e.g.
//! `sum(rate(http_requests_total{service="web"}[5s]))`) is evaluated over the store when their samples
//! land, and its value written as `aws_applicationelb_request_rate{target_group, source="targets"}`
//! (requests per second, the unit of the CloudWatch source's series of the same name) through the ingest
//! path, so policies, the metrics APIs and PromQL read it like any series.
//!
//! When: an [`IngestObserver`] notes the newest timestamp among the series a write touched (its own
//! output series excluded, so a write of the rate does not trigger the next one) and wakes the evaluator,
//! which evaluates at that timestamp, at most once per `target_side_min_interval`, and only forward in
//! time. The written sample carries the evaluation time: the scrape time of the newest sample read.
//! Every replica computes it from what the agents sent it (the agents write to every replica), so no
//! leader is needed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use surge_aggregator::{AggregatorState, IngestObserver, Sender, SeriesId, Touched};
use surge_config::AlbConfig;
use surge_model::{Labels, Sample};
use surge_promql::ast::ValueType;
use surge_promql::{Expr, Value, eval_instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::AlbMetrics;
use crate::naming::{self, SOURCE_TARGETS};
use crate::write::WriteBatch;

/// A rule's query did not parse, or is not a number per evaluation.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("aggregator.alb.target_side[{index}].query: {query:?}: {message}")]
    Query {
        index: usize,
        query: String,
        message: String,
    },
}

struct Rule {
    labels: Labels,
    expr: Expr,
}

/// The target-side evaluator; [`TargetSide::observer`] goes to the aggregator's observers.
pub struct TargetSide {
    state: Arc<AggregatorState>,
    rules: Vec<Rule>,
    own: HashSet<SeriesId>,
    newest_ms: AtomicI64,
    wake: Notify,
    min_interval: Duration,
    metrics: AlbMetrics,
}

/// The observer half: marks new data, never evaluates (a slow query must not slow ingest).
pub struct TargetSideObserver(Arc<TargetSide>);

impl IngestObserver for TargetSideObserver {
    fn on_ingest(&self, touched: &[Touched]) {
        let t = &self.0;
        let newest = touched
            .iter()
            .filter(|x| !t.own.contains(&x.id))
            .map(|x| x.newest_ms)
            .max();
        if let Some(n) = newest
            && t.newest_ms.fetch_max(n, Ordering::AcqRel) < n
        {
            t.wake.notify_one();
        }
    }
}

impl TargetSide {
    /// Parses every rule of `cfg.target_side`; every bad query is reported.
    pub fn new(
        cfg: &AlbConfig,
        state: Arc<AggregatorState>,
        metrics: AlbMetrics,
    ) -> Result<Arc<TargetSide>, Vec<RuleError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (index, r) in cfg.target_side.iter().enumerate() {
            let err = |message: String| RuleError::Query {
                index,
                query: r.query.clone(),
                message,
            };
            match surge_promql::parse(&r.query) {
                Ok(expr) => {
                    let ty = expr.value_type();
                    if matches!(ty, ValueType::Vector | ValueType::Scalar) {
                        rules.push(Rule {
                            labels: naming::target_side_labels(
                                &r.target_group,
                                r.load_balancer.as_deref(),
                            ),
                            expr,
                        });
                    } else {
                        errors.push(err(format!(
                            "is a {}; a request rate must be an instant vector or a scalar",
                            ty.name()
                        )));
                    }
                }
                Err(e) => errors.push(err(e.to_string())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let own = rules.iter().map(|r| SeriesId(r.labels.hash64())).collect();
        Ok(Arc::new(TargetSide {
            state,
            rules,
            own,
            newest_ms: AtomicI64::new(i64::MIN),
            wake: Notify::new(),
            min_interval: cfg.target_side_min_interval,
            metrics,
        }))
    }

    pub fn observer(self: &Arc<Self>) -> Arc<dyn IngestObserver> {
        Arc::new(TargetSideObserver(self.clone()))
    }

    /// Evaluates every rule at `t_ms` and writes the values; returns how many were written.
    pub fn evaluate(&self, t_ms: i64, now_ms: i64) -> usize {
        let opts = self.state.eval_options();
        let mut batch = WriteBatch::default();
        for rule in &self.rules {
            let value = match eval_instant(self.state.cache(), &rule.expr, t_ms, &opts) {
                Ok(Value::Scalar(v)) => Some(v),
                // The HPA sums an external metric's items; so does this (one item: its value).
                Ok(Value::Vector(v)) if !v.is_empty() => Some(v.iter().map(|s| s.value).sum()),
                // No series yet (or any more): nothing to say, and no invented 0.
                Ok(_) => None,
                Err(e) => {
                    self.metrics.target_side_error("query");
                    tracing::debug!(error = %e, labels = ?rule.labels, "target-side request rate: query failed");
                    None
                }
            };
            if let Some(value) = value {
                batch.push(
                    &rule.labels,
                    &[Sample {
                        timestamp_ms: t_ms,
                        value,
                    }],
                );
            }
        }
        let n = batch.samples();
        match batch.ingest(&self.state, Sender::Other, now_ms) {
            Ok(_) => {
                self.metrics.written(SOURCE_TARGETS, n as u64);
                n
            }
            Err(e) => {
                self.metrics.target_side_error("ingest");
                tracing::warn!(error = %e, "target-side request rate: write failed");
                0
            }
        }
    }

    /// Evaluates whenever new samples land (see the module docs) until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut last = i64::MIN;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            let t = self.newest_ms.load(Ordering::Acquire);
            if t <= last {
                continue;
            }
            self.evaluate(t, surge_aggregator::now_ms());
            last = t;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.min_interval) => {}
            }
        }
    }
}
