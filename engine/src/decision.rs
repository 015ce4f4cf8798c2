//! What an evaluation decided and why: the explanation the aggregator serves and `surge simulate` prints.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::hpa::{ConditionStatus, MetricTarget};
use crate::keda::{FallbackBehavior, HealthStatus};

/// The outcome of one evaluation of one policy, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When the evaluation ran, in milliseconds since the Unix epoch (the caller's clock).
    pub now_ms: i64,
    /// Replicas of the target when the evaluation ran (`scale.spec.replicas`).
    pub current_replicas: i32,
    /// Replicas the target should have now. Equal to `current_replicas` when `scale` is false.
    pub desired_replicas: i32,
    /// Whether the target's replica count should be changed.
    pub scale: bool,
    /// The inputs the decision was made from.
    pub inputs: DecisionInputs,
    /// One entry per metric (HPA) or trigger (KEDA), in spec order.
    pub metrics: Vec<MetricProposal>,
    /// The maximum over the valid metric proposals, before stabilization and limits.
    pub recommendation: Option<i32>,
    /// The metric that gave `recommendation`.
    pub recommended_by: Option<String>,
    /// The recommendation after the stabilization window, when a window changed it.
    pub stabilization: Option<Adjustment>,
    /// The rule that clamped the stabilized recommendation (rate policy, scale-up limit, min or max), if any.
    pub limit: Option<Adjustment>,
    /// The status conditions upstream would record (`AbleToScale`, `ScalingActive`, `ScalingLimited`).
    pub conditions: Vec<Condition>,
    /// One line saying what happened and why.
    pub reason: String,
    /// Why the metrics could not be used, when they could not.
    pub error: Option<String>,
    /// The past recommendations and scale events the stabilization and rate rules read (HPA decisions
    /// that reached them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryUsed>,
    /// KEDA-specific details, for ScaledObject decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda: Option<KedaDetail>,
}

/// The inputs an evaluation used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionInputs {
    /// `scale.spec.replicas`.
    pub current_replicas: i32,
    /// `scale.status.replicas`.
    pub status_replicas: i32,
    /// The effective minimum (after schedules).
    pub min_replicas: i32,
    /// The maximum.
    pub max_replicas: i32,
    /// Scale-up tolerance (ratio above `1 + this` scales up).
    pub scale_up_tolerance: f64,
    /// Scale-down tolerance (ratio below `1 - this` scales down).
    pub scale_down_tolerance: f64,
    /// Pods matched by the target's selector.
    pub pods: usize,
    /// Whether `behavior` rules (rather than the legacy scale-up limit) were applied.
    pub behavior: bool,
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricProposal {
    /// The metric as upstream names it, e.g. `cpu resource utilization (percentage of request)`.
    pub name: String,
    /// The current value in milli-units (average per pod for per-pod targets, total otherwise).
    pub current_milli: Option<i64>,
    /// The current utilization percentage, for Utilization targets.
    pub current_utilization: Option<i32>,
    /// The target.
    pub target: MetricTarget,
    /// current / target (for Object/External AverageValue: total / (target · status replicas)).
    pub ratio: Option<f64>,
    /// The ratio after missing and unready pods were rebalanced, when they were.
    pub rebalanced_ratio: Option<f64>,
    /// The replica count this metric proposes.
    pub proposal: Option<i32>,
    /// Whether the proposal kept the current count because the ratio was within tolerance (or the
    /// rebalanced ratio flipped direction).
    pub within_tolerance: bool,
    /// How the target's pods were classified, for per-pod metrics: also when no proposal could be made
    /// (e.g. every pod unready), as long as samples arrived and pods matched.
    pub pods: Option<PodCounts>,
    /// The pods each class left out of the average, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_groups: Option<PodGroupNames>,
    /// Why the metric could not be used.
    pub error: Option<String>,
}

/// How pods were classified for one per-pod metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodCounts {
    /// Pods whose metric was used.
    pub ready: usize,
    /// Pending pods, and (CPU only) pods still initializing.
    pub unready: usize,
    /// Pods without a sample.
    pub missing: usize,
    /// Deleting or Failed pods.
    pub ignored: usize,
}

/// The pods `groupPods` left out of a per-pod metric's average, by name (in the pods' order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodGroupNames {
    /// Pending pods, and (CPU only) pods still initializing or never ready.
    pub unready: Vec<String>,
    /// Running pods without a sample.
    pub missing: Vec<String>,
    /// Deleting or Failed pods.
    pub ignored: Vec<String>,
}

/// The memory an evaluation read: the past recommendations inside its stabilization windows and the
/// scale events inside its rate policies' periods, as they stood before this evaluation recorded its own.
/// Seeded history (a scenario's `history`) shows here when it was used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryUsed {
    /// Recommendations newer than the longest stabilization window: `(replicas, at_ms)`.
    pub recommendations: Vec<(i32, i64)>,
    /// Scale-up events newer than the longest scale-up policy period: `(change, at_ms)`.
    pub scale_up_events: Vec<(i32, i64)>,
    /// Scale-down events newer than the longest scale-down policy period: `(change, at_ms)`.
    pub scale_down_events: Vec<(i32, i64)>,
}

/// A step that changed the replica count: from, to, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// The value before the step.
    pub from: i32,
    /// The value after the step.
    pub to: i32,
    /// Upstream's reason, e.g. `ScaleDownStabilized`, `ScaleUpLimit`, `TooFewReplicas`.
    pub rule: String,
    /// Upstream's message for that reason.
    pub message: String,
}

/// A status condition as the HPA controller records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited` (KEDA: `Active`, `Fallback`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: bool,
    /// The CamelCase reason.
    pub reason: String,
    /// The human message.
    pub message: String,
}

/// What the KEDA layer did on top of the HPA computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KedaDetail {
    /// Whether any trigger (or the formula) was above its activation threshold.
    pub active: bool,
    /// What the 0↔1 executor did: `ScaleFromZero`, `ScaleToZero`, `ScaleToIdle`, `ScaleToMin`,
    /// `CoolingDown`, `Hpa` (left to the HPA computation), `NoChange`.
    pub executor: String,
    /// Triggers served their fallback value.
    pub fallback_triggers: Vec<String>,
    /// The formula value, when `scalingModifiers` is used.
    pub formula_value: Option<f64>,
    /// The annotation that froze the target or a direction of it (`autoscaling.keda.sh/paused`,
    /// `.../paused-replicas`, `.../paused-scale-in`, `.../paused-scale-out`), if one did.
    #[serde(default)]
    pub frozen_by: Option<String>,
    /// The `fallback.behavior` that chose the fallback value, when one was served.
    #[serde(default)]
    pub fallback_behavior: Option<FallbackBehavior>,
    /// The replica count the fallback value stands for.
    #[serde(default)]
    pub fallback_replicas: Option<i32>,
    /// Whether this evaluation was a poll (the executor ran) rather than an HPA-only read.
    #[serde(default)]
    pub polled: bool,
    /// `status.triggersActivity`: each External trigger's activity at this read.
    #[serde(default)]
    pub triggers_activity: BTreeMap<String, bool>,
    /// Why each failing trigger failed, by trigger name.
    #[serde(default)]
    pub trigger_errors: BTreeMap<String, String>,
    /// `status.health` after this evaluation.
    #[serde(default)]
    pub health: BTreeMap<String, HealthStatus>,
    /// Each `cron` trigger's window at this evaluation, by trigger name.
    #[serde(default)]
    pub cron_windows: BTreeMap<String, CronWindowDetail>,
    /// KEDA's own conditions (`Ready`, `Active`, `Fallback`, `Paused`, `HPAActive`), tri-state, as KEDA
    /// would have written them.
    #[serde(default)]
    pub conditions: Vec<KedaCondition>,
}

/// Where a `cron` trigger's window stood at an evaluation, for `surge explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronWindowDetail {
    /// `metadata.timezone`.
    pub timezone: String,
    /// `metadata.start`.
    pub start: String,
    /// `metadata.end`.
    pub end: String,
    /// `metadata.desiredReplicas`.
    pub desired_replicas: i64,
    /// Whether the window was open.
    pub active: bool,
    /// The next firing of `start`, ms since the epoch (`None`: none within five years).
    pub next_start_ms: Option<i64>,
    /// The next firing of `end` (the window's close when open), ms since the epoch.
    pub next_end_ms: Option<i64>,
}

/// A time in ms since the epoch as RFC 3339 UTC (`2026-03-29T09:00:00Z`), for explanations.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// A ScaledObject status condition as KEDA writes it (its status can be `Unknown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KedaCondition {
    /// `Ready`, `Active`, `Fallback`, `Paused` or `HPAActive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// KEDA's reason, e.g. `ScalerCooldown`.
    pub reason: String,
    /// KEDA's message.
    pub message: String,
}

impl KedaCondition {
    /// A condition.
    pub fn new(kind: &str, status: ConditionStatus, reason: &str, message: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl Condition {
    pub(crate) fn new(kind: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

impl Decision {
    /// Serializes the decision as JSON (NaN or infinite ratios become `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Sets (or replaces) a condition of the given type, as upstream's `setCondition` does.
    pub(crate) fn set_condition(&mut self, condition: Condition) {
        if let Some(existing) = self
            .conditions
            .iter_mut()
            .find(|c| c.kind == condition.kind)
        {
            *existing = condition;
        } else {
            self.conditions.push(condition);
        }
    }

    /// The condition of a type, if recorded.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}
