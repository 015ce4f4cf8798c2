//! The Kubernetes HPA algorithm (kube-controller-manager v1.3x), computed exactly, with time as an input.
//!
//! Entry point: [`evaluate_hpa`]. The per-metric replica calculation lives in [`calc`] (upstream
//! `replica_calculator.go` and `metrics/utilization.go`); stabilization and rate limits in [`rules`]
//! (upstream `horizontal.go`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::{Condition, Decision, DecisionInputs};

pub mod calc;
pub mod rules;
pub mod scale;

pub use scale::{OtherHpa, ScaleAccess};

/// Default global tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Default CPU initialization period (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const DEFAULT_CPU_INITIALIZATION_PERIOD_MS: i64 = 5 * 60 * 1000;
/// Default initial readiness delay (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_MS: i64 = 30 * 1000;
/// Default downscale stabilization (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION_MS: i64 = 5 * 60 * 1000;

/// A `HorizontalPodAutoscaler` spec, already defaulted and validated (see [`crate::manifest::parse_hpa`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpaSpec {
    /// `spec.minReplicas` (upstream default 1). 0 is allowed for Object/External metrics.
    pub min_replicas: i32,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
    /// `spec.metrics`: the proposal is the maximum over these.
    pub metrics: Vec<MetricSpec>,
    /// `spec.behavior`; `None` selects the legacy path (scale-up limit, 300 s downscale stabilization).
    pub behavior: Option<Behavior>,
    /// Controller flags (tolerance, CPU initialization period, ...).
    #[serde(default)]
    pub controller: ControllerConfig,
}

/// The kube-controller-manager flags the algorithm reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerConfig {
    /// Global tolerance, used for a direction whose `behavior` sets none.
    pub tolerance: f64,
    /// Window after pod start in which CPU samples of unready or just-ready pods are ignored.
    pub cpu_initialization_period_ms: i64,
    /// After the initialization period, a pod unready since within this delay of its start is ignored for CPU.
    pub delay_of_initial_readiness_status_ms: i64,
    /// Scale-down stabilization window without `behavior`, and the default `scaleDown` window with it.
    pub downscale_stabilization_window_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
            cpu_initialization_period_ms: DEFAULT_CPU_INITIALIZATION_PERIOD_MS,
            delay_of_initial_readiness_status_ms: DEFAULT_DELAY_OF_INITIAL_READINESS_STATUS_MS,
            downscale_stabilization_window_ms: DEFAULT_DOWNSCALE_STABILIZATION_MS,
        }
    }
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Where the metric comes from.
    pub source: MetricSource,
    /// What value it should have.
    pub target: MetricTarget,
}

/// The metric source types of `autoscaling/v2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase")]
pub enum MetricSource {
    /// A resource (cpu, memory) of the target's pods, summed over containers.
    Resource {
        /// Resource name, e.g. `cpu`.
        name: String,
    },
    /// A resource of one container of the target's pods.
    ContainerResource {
        /// Resource name, e.g. `cpu`.
        name: String,
        /// Container name.
        container: String,
    },
    /// A custom metric per pod, averaged.
    Pods {
        /// Metric name.
        metric: String,
    },
    /// A custom metric of one Kubernetes object.
    Object {
        /// Metric name.
        metric: String,
        /// Kind of the described object, e.g. `Ingress`.
        kind: String,
        /// Name of the described object.
        object: String,
    },
    /// A metric from outside the cluster (the HPA sums all returned series).
    External {
        /// Metric name.
        metric: String,
    },
}

/// `MetricTarget`: the value the metric should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "PascalCase")]
pub enum MetricTarget {
    /// `averageUtilization`: percent of request (Resource, ContainerResource).
    Utilization(i32),
    /// `averageValue` in milli-units (per pod).
    AverageValue(i64),
    /// `value` in milli-units (Object, External).
    Value(i64),
}

/// `spec.behavior`, already defaulted as the API server defaults it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behavior {
    /// `scaleUp`.
    pub scale_up: ScalingRules,
    /// `scaleDown`.
    pub scale_down: ScalingRules,
}

/// `HPAScalingRules` for one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`; `None` means the controller's default (only possible for scale-down).
    pub stabilization_window_seconds: Option<i32>,
    /// `selectPolicy`.
    pub select_policy: SelectPolicy,
    /// `policies`.
    pub policies: Vec<ScalingPolicy>,
    /// `tolerance` (HPAConfigurableTolerance); `None` uses the global tolerance.
    pub tolerance: Option<f64>,
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the most change.
    Max,
    /// The policy allowing the least change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    /// `type`: Pods or Percent.
    pub kind: PolicyKind,
    /// `value`.
    pub value: i32,
    /// `periodSeconds`.
    pub period_seconds: i32,
}

/// `HPAScalingPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyKind {
    /// An absolute number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

impl ScalingRules {
    /// `GenerateHPAScaleUpRules(nil)`: 0 s window, max of 4 pods or 100 % per 15 s.
    pub fn default_scale_up() -> Self {
        Self {
            stabilization_window_seconds: Some(0),
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
            tolerance: None,
        }
    }

    /// `GenerateHPAScaleDownRules(nil)`: the controller's window, 100 % per 15 s.
    pub fn default_scale_down() -> Self {
        Self {
            stabilization_window_seconds: None,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            }],
            tolerance: None,
        }
    }
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(),
        }
    }
}

/// Everything the evaluation reads about the world at `now`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HpaInput {
    /// `scale.spec.replicas`.
    pub current_replicas: i32,
    /// `scale.status.replicas` (used by Object/External AverageValue).
    pub status_replicas: i32,
    /// The pods the target's selector matches.
    pub pods: Vec<PodInfo>,
    /// One sample per entry of `spec.metrics`, in the same order. A missing entry is a failed metric.
    pub metrics: Vec<MetricSample>,
}

/// A pod as the HPA sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Pod name (the key of per-pod samples).
    pub name: String,
    /// `status.phase`.
    pub phase: PodPhase,
    /// The `Ready` condition's status; `None` when the pod has no such condition.
    pub ready: Option<ConditionStatus>,
    /// The `Ready` condition's `lastTransitionTime`, ms since the epoch.
    pub ready_transition_ms: i64,
    /// `status.startTime`, ms since the epoch; `None` when unset.
    pub start_ms: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.containers`: the regular containers and their resource requests.
    pub containers: Vec<ContainerRequests>,
    /// `spec.initContainers`, in order. Restartable ones (sidecars, `restartPolicy: Always`) count in the
    /// HPA's requests; plain ones only through the pod-level aggregate (see [`calc::calculate_requests`]).
    #[serde(default)]
    pub init_containers: Vec<InitContainerRequests>,
    /// `spec.resources.requests` (pod-level resources, Kubernetes 1.32+), milli-units by resource name;
    /// `None` when the pod sets none.
    #[serde(default)]
    pub pod_requests: Option<BTreeMap<String, i64>>,
    /// `spec.overhead` (set from the RuntimeClass), milli-units by resource name. Counted only where
    /// upstream counts it: in the pod-level aggregate.
    #[serde(default)]
    pub overhead: BTreeMap<String, i64>,
}

/// One init container's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitContainerRequests {
    /// Container name.
    pub name: String,
    /// Requests in milli-units, by resource name.
    pub requests: BTreeMap<String, i64>,
    /// `restartPolicy: Always`: a sidecar that runs beside the regular containers.
    pub restartable: bool,
}

/// One container's requests, in milli-units per resource name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRequests {
    /// Container name.
    pub name: String,
    /// Requests in milli-units, by resource name (`cpu`, `memory`).
    pub requests: BTreeMap<String, i64>,
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Not yet running.
    Pending,
    /// Running.
    Running,
    /// Terminated successfully.
    Succeeded,
    /// Terminated with failure.
    Failed,
    /// State unknown.
    Unknown,
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

/// One metric's sample at `now`, in milli-units of the metric's base unit (millicores, milli-bytes,
/// milli-requests per second...): the `MilliValue()` of the quantity the metrics API served, as the HPA
/// reads it. [`crate::quantity::sample_milli`] converts a float sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricSample {
    /// Per-pod values keyed by pod name (Resource, ContainerResource, Pods). Entries for pods not in
    /// `HpaInput::pods` are kept, as upstream keeps them.
    PerPod(BTreeMap<String, PodMetric>),
    /// The single value of an Object metric, milli-units.
    Object(i64),
    /// The series of an External metric (summed), milli-units. An empty list is an error, as upstream.
    External(Vec<i64>),
    /// The metric could not be fetched.
    Failed(String),
}

impl MetricSample {
    /// An External metric of one float value (in base units), as a metrics API would serve it: a NaN
    /// or an infinity, which no quantity can carry, fails the metric with a message saying so.
    pub fn external_f64(value: f64) -> Self {
        match crate::quantity::sample_milli(value) {
            Ok(milli) => MetricSample::External(vec![milli]),
            Err(e) => MetricSample::Failed(format!("external metric value {e}")),
        }
    }
}

/// One pod's sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMetric {
    /// Value in milli-units.
    pub milli: i64,
    /// When the sample was taken, ms since the epoch (CPU readiness rules compare it).
    pub timestamp_ms: i64,
    /// The window the sample covers, ms.
    pub window_ms: i64,
}

/// Per-workload memory the caller keeps between evaluations: recommendations and scale events.
///
/// Upstream keeps these in the controller keyed by HPA; here the caller owns one per workload and passes
/// it to every evaluation. Old entries are reused in place, as upstream does, so the lists stay bounded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HpaState {
    /// Whether the first evaluation has recorded its initial recommendation.
    pub initialized: bool,
    /// Past recommendations (the stabilization windows read them).
    pub recommendations: Vec<TimestampedRecommendation>,
    /// Past scale-ups (rate policies read them).
    pub scale_up_events: Vec<ScaleEvent>,
    /// Past scale-downs.
    pub scale_down_events: Vec<ScaleEvent>,
}

/// A past recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampedRecommendation {
    /// The recommended replica count.
    pub replicas: i32,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A past scale event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// How many replicas were added (scale-up) or removed (scale-down); positive.
    pub change: i32,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Older than the longest policy period: the slot may be reused.
    pub outdated: bool,
}

/// Scale-up and scale-down tolerances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    /// Below `1 - scale_down` scales down.
    pub scale_down: f64,
    /// Above `1 + scale_up` scales up.
    pub scale_up: f64,
}

impl Tolerances {
    /// `isWithin`: `1 - down <= ratio <= 1 + up`, inclusive.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

impl HpaSpec {
    /// The tolerances for this HPA: per-direction `behavior` tolerance, else the global one.
    pub fn tolerances(&self) -> Tolerances {
        let global = self.controller.tolerance;
        let mut t = Tolerances {
            scale_down: global,
            scale_up: global,
        };
        if let Some(b) = &self.behavior {
            if let Some(tol) = b.scale_down.tolerance {
                t.scale_down = tol;
            }
            if let Some(tol) = b.scale_up.tolerance {
                t.scale_up = tol;
            }
        }
        t
    }
}

impl PodInfo {
    /// A Running, Ready pod started long ago, with one container `main` requesting `cpu_milli` of CPU.
    pub fn running(name: &str, cpu_milli: i64) -> Self {
        Self {
            name: name.to_owned(),
            phase: PodPhase::Running,
            ready: Some(ConditionStatus::True),
            ready_transition_ms: 0,
            start_ms: Some(0),
            deleting: false,
            containers: vec![ContainerRequests {
                name: "main".to_owned(),
                requests: BTreeMap::from([("cpu".to_owned(), cpu_milli)]),
            }],
            init_containers: Vec::new(),
            pod_requests: None,
            overhead: BTreeMap::new(),
        }
    }
}

/// The recommendations and scale events the normalization at `now_ms` reads: recommendations inside the
/// longest stabilization window (without `behavior`, the controller's downscale window), events inside
/// the longest policy period of their direction (without `behavior` none are read).
fn history_used(state: &HpaState, spec: &HpaSpec, now_ms: i64) -> crate::decision::HistoryUsed {
    let seconds = |s: i32| i64::from(s).saturating_mul(1000);
    let default_down = spec.controller.downscale_stabilization_window_ms;
    let window_ms = match &spec.behavior {
        None => default_down,
        Some(b) => {
            let up = b.scale_up.stabilization_window_seconds.map_or(0, seconds);
            let down = b
                .scale_down
                .stabilization_window_seconds
                .map_or(default_down, seconds);
            up.max(down)
        }
    };
    let cutoff = now_ms.saturating_sub(window_ms);
    let recommendations = state
        .recommendations
        .iter()
        .filter(|r| r.at_ms > cutoff || (spec.behavior.is_none() && r.at_ms >= cutoff))
        .map(|r| (r.replicas, r.at_ms))
        .collect();
    let events = |events: &[ScaleEvent], rules: Option<&ScalingRules>| -> Vec<(i32, i64)> {
        let Some(rules) = rules else {
            return Vec::new();
        };
        let cutoff = now_ms.saturating_sub(seconds(rules::longest_policy_period(rules)));
        events
            .iter()
            .filter(|e| e.at_ms > cutoff)
            .map(|e| (e.change, e.at_ms))
            .collect()
    };
    crate::decision::HistoryUsed {
        recommendations,
        scale_up_events: events(
            &state.scale_up_events,
            spec.behavior.as_ref().map(|b| &b.scale_up),
        ),
        scale_down_events: events(
            &state.scale_down_events,
            spec.behavior.as_ref().map(|b| &b.scale_down),
        ),
    }
}

/// Evaluates an HPA at `now_ms`, as one `reconcileAutoscaler` pass does.
///
/// Reads the spec, the caller's per-workload `state` and the inputs; updates `state` (recommendation
/// history, and a scale event when the decision scales: the caller is expected to apply it, as upstream
/// records the event after a successful update).
pub fn evaluate_hpa(
    spec: &HpaSpec,
    state: &mut HpaState,
    input: &HpaInput,
    now_ms: i64,
) -> Decision {
    evaluate_hpa_with_min(spec, state, input, now_ms, spec.min_replicas)
}

/// [`evaluate_hpa`] with the minimum overridden (schedules raise it).
pub fn evaluate_hpa_with_min(
    spec: &HpaSpec,
    state: &mut HpaState,
    input: &HpaInput,
    now_ms: i64,
    min_replicas: i32,
) -> Decision {
    evaluate_hpa_with_scale(
        spec,
        state,
        input,
        &ScaleAccess::default(),
        now_ms,
        min_replicas,
    )
}

/// [`evaluate_hpa_with_min`] with what the caller's `/scale` read and write returned (see
/// [`ScaleAccess`]): a failed read, a missing, unparsable or ambiguous selector, a failed update.
pub fn evaluate_hpa_with_scale(
    spec: &HpaSpec,
    state: &mut HpaState,
    input: &HpaInput,
    scale: &ScaleAccess,
    now_ms: i64,
    min_replicas: i32,
) -> Decision {
    let current = input.current_replicas.max(0);
    let max_replicas = spec.max_replicas.max(0);
    let min_replicas = min_replicas.clamp(0, i32::MAX);
    let tolerances = spec.tolerances();
    let mut d = Decision {
        now_ms,
        current_replicas: current,
        desired_replicas: current,
        scale: false,
        inputs: DecisionInputs {
            current_replicas: current,
            status_replicas: input.status_replicas,
            min_replicas,
            max_replicas,
            scale_up_tolerance: tolerances.scale_up,
            scale_down_tolerance: tolerances.scale_down,
            pods: input.pods.len(),
            behavior: spec.behavior.is_some(),
        },
        metrics: Vec::new(),
        recommendation: None,
        recommended_by: None,
        stabilization: None,
        limit: None,
        conditions: Vec::new(),
        reason: String::new(),
        error: None,
        history: None,
        keda: None,
    };

    if let Some(error) = &scale.get_error {
        d.set_condition(Condition::new(
            "AbleToScale",
            false,
            "FailedGetScale",
            format!("the HPA controller was unable to get the target's current scale: {error}"),
        ));
        d.reason = format!("not scaling: failed to query scale subresource: {error}");
        d.error = Some(error.clone());
        return d;
    }

    // recordInitialRecommendation.
    if !state.initialized {
        state.initialized = true;
        state.recommendations.push(TimestampedRecommendation {
            replicas: current,
            at_ms: now_ms,
        });
    }

    let desired;
    if current == 0 && min_replicas != 0 {
        d.set_condition(Condition::new(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
        d.reason = "scaling disabled: the target was scaled to zero and minReplicas > 0".to_owned();
        return d;
    } else if current > max_replicas {
        desired = max_replicas;
        d.reason = "Current number of replicas above Spec.MaxReplicas".to_owned();
    } else if current < min_replicas {
        desired = min_replicas;
        d.reason = "Current number of replicas below Spec.MinReplicas".to_owned();
    } else {
        let pod_names: Vec<&str> = input.pods.iter().map(|p| p.name.as_str()).collect();
        if let Err(problem) = scale.validate_selector(&pod_names) {
            d.set_condition(Condition::new(
                "ScalingActive",
                false,
                problem.reason,
                problem.message,
            ));
            d.reason = format!("not scaling: {}", problem.error);
            d.error = Some(problem.error);
            return d;
        }
        let computed = calc::compute_replicas_for_metrics(spec, input, tolerances, now_ms);
        d.metrics = computed.proposals;
        let Some((metric_desired, metric_name)) = computed.replicas else {
            let error = computed.error.unwrap_or_else(|| "no metrics".to_owned());
            if let Some(c) = computed.condition {
                d.set_condition(c);
            }
            d.reason = format!("not scaling: {error}");
            d.error = Some(error);
            return d;
        };
        d.error = computed.error;
        d.set_condition(Condition::new(
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {metric_name}"
            ),
        ));
        d.recommendation = Some(metric_desired);
        d.recommended_by = Some(metric_name.clone());
        let proposed = metric_desired.max(0);
        let mut why = if proposed > current {
            format!("{metric_name} above target")
        } else if proposed < current {
            "All metrics below target".to_owned()
        } else {
            "metrics within tolerance of target".to_owned()
        };
        d.history = Some(history_used(state, spec, now_ms));
        let normalized = match &spec.behavior {
            None => rules::normalize_desired_replicas(
                state,
                now_ms,
                spec.controller.downscale_stabilization_window_ms,
                current,
                proposed,
                min_replicas,
                max_replicas,
            ),
            Some(behavior) => rules::normalize_desired_replicas_with_behaviors(
                state,
                now_ms,
                behavior,
                spec.controller.downscale_stabilization_window_ms,
                current,
                proposed,
                min_replicas,
                max_replicas,
            ),
        };
        for c in normalized.conditions {
            d.set_condition(c);
        }
        d.stabilization = normalized.stabilization;
        d.limit = normalized.limit;
        if let Some(s) = &d.stabilization {
            why.push_str(&format!("; {} {}→{}", s.rule, s.from, s.to));
        }
        if let Some(l) = &d.limit {
            why.push_str(&format!("; {} {}→{}", l.rule, l.from, l.to));
        }
        desired = normalized.replicas;
        d.reason = why;
    }

    let desired = desired.max(0);
    if let Some(error) = scale.update_error.as_ref().filter(|_| desired != current) {
        d.set_condition(Condition::new(
            "AbleToScale",
            false,
            "FailedUpdateScale",
            format!("the HPA controller was unable to update the target scale: {error}"),
        ));
        d.reason = format!(
            "failed to rescale {current}→{desired}: {error}: {}",
            d.reason
        );
        d.error = Some(error.clone());
    } else if desired != current {
        d.scale = true;
        d.desired_replicas = desired;
        rules::store_scale_event(state, spec.behavior.as_ref(), now_ms, current, desired);
        d.set_condition(Condition::new(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        ));
        d.reason = format!("scale {current}→{desired}: {}", d.reason);
    } else {
        d.reason = format!("keep {current}: {}", d.reason);
    }
    d
}
