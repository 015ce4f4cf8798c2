//! KEDA ScaledObject semantics: activation, scale to and from zero with cooldowns, idle replicas,
//! fallback, scaling-modifier formulas, and 1↔N through the HPA KEDA generates.
//!
//! Upstream splits this in two: KEDA's scale executor (`pkg/scaling/executor/scale_scaledobjects.go`)
//! acts only 0↔1 (and idle↔min), and the HPA it generates (one External metric per trigger, or one
//! composite metric with `scalingModifiers`) does 1↔N with `advanced.horizontalPodAutoscalerConfig.behavior`.
//! [`evaluate_scaled_object`] runs the executor and, when the executor leaves the count alone, the HPA.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::{Condition, Decision, DecisionInputs, KedaDetail};
use crate::formula::Formula;
use crate::hpa::{
    self, Behavior, ControllerConfig, HpaInput, HpaSpec, HpaState, MetricSample, MetricSource,
    MetricSpec, MetricTarget, PodInfo,
};
use crate::quantity::milli_from_f64;

/// The metric name KEDA gives the composite metric of `scalingModifiers`.
pub const COMPOSITE_METRIC_NAME: &str = "composite-metric";

/// A `ScaledObject` spec, defaulted and validated (see [`crate::manifest::parse_scaled_object`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaledObjectSpec {
    /// `pollingInterval` seconds (30): how often KEDA would look; informational here.
    pub polling_interval_seconds: i32,
    /// `cooldownPeriod` seconds (300): inactivity before scaling to zero (or idle).
    pub cooldown_period_seconds: i32,
    /// `initialCooldownPeriod` seconds (0): after creation, before the first scale to zero.
    pub initial_cooldown_period_seconds: i32,
    /// `minReplicaCount` (0).
    pub min_replica_count: i32,
    /// `maxReplicaCount` (100).
    pub max_replica_count: i32,
    /// `idleReplicaCount`: the count when inactive, instead of zero.
    pub idle_replica_count: Option<i32>,
    /// `triggers`.
    pub triggers: Vec<TriggerSpec>,
    /// `fallback`.
    pub fallback: Option<FallbackSpec>,
    /// `advanced.scalingModifiers`.
    pub scaling_modifiers: Option<ScalingModifiers>,
    /// `advanced.horizontalPodAutoscalerConfig.behavior`.
    pub behavior: Option<Behavior>,
    /// The kube-controller-manager flags of the HPA that does 1↔N.
    #[serde(default)]
    pub controller: ControllerConfig,
}

/// One trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// `name` (or `s{index}-{type}` when unnamed): formulas refer to it.
    pub name: String,
    /// `type`, e.g. `prometheus`.
    pub kind: String,
    /// `metricType`: AverageValue (default) or Value.
    pub metric_type: TriggerMetricType,
    /// The scaler's target (e.g. `threshold`), base units.
    pub threshold: f64,
    /// `activationThreshold` (0): the trigger is active when its value is above it.
    pub activation_threshold: f64,
}

/// `metricType` of a trigger or of the composite metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerMetricType {
    /// The HPA divides the value by the target: `ceil(value / threshold)` replicas.
    AverageValue,
    /// The HPA compares the value with the target: `ceil(value / threshold · ready pods)`.
    Value,
}

/// `fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackSpec {
    /// `failureThreshold`: consecutive failures after which the fallback applies.
    pub failure_threshold: i32,
    /// `replicas`.
    pub replicas: i32,
    /// `behavior` (static).
    pub behavior: FallbackBehavior,
}

/// `fallback.behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FallbackBehavior {
    /// `fallback.replicas`.
    Static,
    /// The current replica count.
    CurrentReplicas,
    /// The current count if higher than `fallback.replicas`, else `fallback.replicas`.
    CurrentReplicasIfHigher,
    /// The current count if lower than `fallback.replicas`, else `fallback.replicas`.
    CurrentReplicasIfLower,
}

/// `advanced.scalingModifiers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingModifiers {
    /// `formula` over trigger names.
    pub formula: String,
    /// `target` of the composite metric.
    pub target: f64,
    /// `activationTarget` (0).
    pub activation_target: f64,
    /// `metricType` (AverageValue).
    pub metric_type: TriggerMetricType,
}

/// What the triggers report at `now`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KedaInput {
    /// `scale.spec.replicas`.
    pub current_replicas: i32,
    /// `scale.status.replicas`.
    pub status_replicas: i32,
    /// The target's pods (the HPA's Value targets count the ready ones).
    pub pods: Vec<PodInfo>,
    /// One value per trigger, in spec order; a missing entry is a failure.
    pub triggers: Vec<TriggerValue>,
}

/// One trigger's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriggerValue {
    /// The value in base units.
    Value(f64),
    /// The scaler failed.
    Failed(String),
}

/// Per-ScaledObject memory the caller keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KedaState {
    /// When the ScaledObject was first evaluated (stands in for `creationTimestamp`).
    pub created_ms: Option<i64>,
    /// `status.lastActiveTime`.
    pub last_active_ms: Option<i64>,
    /// Consecutive failures per trigger name (`status.health`).
    pub failures: BTreeMap<String, i32>,
    /// The generated HPA's history.
    pub hpa: HpaState,
}

impl FallbackSpec {
    /// The replica count the fallback asks for, given the current count.
    pub fn replicas_for(&self, current: i32) -> i32 {
        match self.behavior {
            FallbackBehavior::Static => self.replicas,
            FallbackBehavior::CurrentReplicas => current,
            FallbackBehavior::CurrentReplicasIfHigher => current.max(self.replicas),
            FallbackBehavior::CurrentReplicasIfLower => current.min(self.replicas),
        }
    }
}

impl ScaledObjectSpec {
    /// The HPA KEDA generates: min `max(minReplicaCount, 1)`, max `maxReplicaCount`, one External metric per
    /// trigger (or the composite metric), the ScaledObject's behavior.
    pub fn generated_hpa(&self) -> HpaSpec {
        let metric = |name: &str, metric_type: TriggerMetricType, target: f64| MetricSpec {
            source: MetricSource::External {
                metric: name.to_owned(),
            },
            target: {
                let milli = milli_from_f64(target).unwrap_or(0);
                match metric_type {
                    TriggerMetricType::AverageValue => MetricTarget::AverageValue(milli),
                    TriggerMetricType::Value => MetricTarget::Value(milli),
                }
            },
        };
        let metrics = match &self.scaling_modifiers {
            Some(m) => vec![metric(COMPOSITE_METRIC_NAME, m.metric_type, m.target)],
            None => self
                .triggers
                .iter()
                .map(|t| metric(&t.name, t.metric_type, t.threshold))
                .collect(),
        };
        HpaSpec {
            min_replicas: self.min_replica_count.max(1),
            max_replicas: self.max_replica_count,
            metrics,
            behavior: self.behavior.clone(),
            controller: self.controller,
        }
    }
}

/// Evaluates a ScaledObject at `now_ms`: KEDA's executor for 0↔1 (and idle), the generated HPA for 1↔N.
pub fn evaluate_scaled_object(
    spec: &ScaledObjectSpec,
    state: &mut KedaState,
    input: &KedaInput,
    now_ms: i64,
) -> Decision {
    let created = *state.created_ms.get_or_insert(now_ms);
    let current = input.current_replicas.max(0);

    // Trigger values, failures and activity.
    let mut values: BTreeMap<&str, f64> = BTreeMap::new();
    let mut errors: BTreeMap<&str, String> = BTreeMap::new();
    let mut active = false;
    for (i, trigger) in spec.triggers.iter().enumerate() {
        match input.triggers.get(i) {
            Some(TriggerValue::Value(v)) if v.is_finite() => {
                values.insert(&trigger.name, *v);
                state.failures.insert(trigger.name.clone(), 0);
                if spec.scaling_modifiers.is_none() && *v > trigger.activation_threshold {
                    active = true;
                }
            }
            other => {
                let e = match other {
                    Some(TriggerValue::Failed(e)) => e.clone(),
                    Some(TriggerValue::Value(v)) => {
                        format!("trigger value {v} is not a finite number")
                    }
                    None => "no value for trigger".to_owned(),
                };
                errors.insert(&trigger.name, e);
                let n = state.failures.entry(trigger.name.clone()).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
    }
    let is_error = !errors.is_empty();

    // The samples the generated HPA would receive, with fallback substituted.
    let hpa_spec = spec.generated_hpa();
    let mut fallback_triggers = Vec::new();
    let mut formula_value = None;
    let fallback_for =
        |failures: i32, target: f64, metric_type: TriggerMetricType| -> Option<MetricSample> {
            let fb = spec.fallback?;
            // Fallback only applies to AverageValue metrics, after more than failureThreshold failures.
            if metric_type != TriggerMetricType::AverageValue
                || fb.failure_threshold < 0
                || fb.replicas < 0
            {
                return None;
            }
            (failures > fb.failure_threshold)
                .then(|| MetricSample::external_f64(target * f64::from(fb.replicas_for(current))))
        };
    let samples: Vec<MetricSample> = match &spec.scaling_modifiers {
        Some(m) => {
            let evaluated = Formula::parse(&m.formula)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    if is_error {
                        return Err(format!(
                            "a trigger of the formula failed: {}",
                            errors.values().next().cloned().unwrap_or_default()
                        ));
                    }
                    f.eval(&|name| values.get(name).copied())
                        .map_err(|e| e.to_string())
                });
            match evaluated {
                Ok(v) => {
                    formula_value = Some(v);
                    active = v > m.activation_target;
                    vec![MetricSample::external_f64(v)]
                }
                Err(e) => {
                    let failures = state.failures.values().copied().max().unwrap_or(0);
                    match fallback_for(failures, m.target, m.metric_type) {
                        Some(s) => {
                            fallback_triggers.push(COMPOSITE_METRIC_NAME.to_owned());
                            vec![s]
                        }
                        None => vec![MetricSample::Failed(e)],
                    }
                }
            }
        }
        None => spec
            .triggers
            .iter()
            .map(|t| match values.get(t.name.as_str()) {
                Some(v) => MetricSample::external_f64(*v),
                None => {
                    let failures = state.failures.get(&t.name).copied().unwrap_or(0);
                    match fallback_for(failures, t.threshold, t.metric_type) {
                        Some(s) => {
                            fallback_triggers.push(t.name.clone());
                            s
                        }
                        None => MetricSample::Failed(
                            errors.get(t.name.as_str()).cloned().unwrap_or_default(),
                        ),
                    }
                }
            })
            .collect(),
    };
    let hpa_input = HpaInput {
        current_replicas: current,
        status_replicas: input.status_replicas,
        pods: input.pods.clone(),
        metrics: samples,
    };

    // KEDA's executor (RequestScale).
    let min = spec.min_replica_count;
    let idle = spec.idle_replica_count;
    enum Step {
        Set(i32, &'static str, String),
        Hpa(&'static str),
    }
    let step = if active {
        if (idle.is_some() && current < min) || current == 0 {
            state.last_active_ms = Some(now_ms);
            let to = if min > 0 { min } else { 1 };
            Step::Set(to, "ScaleFromZero", "a trigger is active".to_owned())
        } else {
            if !is_error {
                state.last_active_ms = Some(now_ms);
            }
            Step::Hpa("Hpa")
        }
    } else if is_error && spec.fallback.is_some_and(|f| f.replicas != 0) {
        // Left to the HPA, which falls back after failureThreshold (scaling to zero here would stop it).
        Step::Hpa("FallbackPending")
    } else if is_error && spec.fallback.is_none() {
        Step::Hpa("Hpa")
    } else if idle.is_some_and(|i| current > i) || (current > 0 && min == 0) {
        let cooled = match state.last_active_ms {
            None => {
                created.saturating_add(i64::from(spec.initial_cooldown_period_seconds) * 1000)
                    < now_ms
            }
            Some(last) => {
                last.saturating_add(i64::from(spec.cooldown_period_seconds) * 1000) < now_ms
            }
        };
        if cooled {
            match idle {
                Some(i) => Step::Set(
                    i,
                    "ScaleToIdle",
                    "no trigger active for the cooldown period".to_owned(),
                ),
                None => Step::Set(
                    min,
                    "ScaleToZero",
                    "no trigger active for the cooldown period".to_owned(),
                ),
            }
        } else {
            Step::Hpa("CoolingDown")
        }
    } else if current < min && idle.is_none() {
        Step::Set(min, "ScaleToMin", "below minReplicaCount".to_owned())
    } else {
        Step::Hpa("Hpa")
    };

    let mut decision = match step {
        Step::Hpa(executor) => {
            let mut d = hpa::evaluate_hpa(&hpa_spec, &mut state.hpa, &hpa_input, now_ms);
            d.keda = Some(KedaDetail {
                active,
                executor: executor.to_owned(),
                fallback_triggers: fallback_triggers.clone(),
                formula_value,
            });
            if executor == "CoolingDown" {
                d.reason = format!("{} (inactive, cooling down before scale to zero)", d.reason);
            }
            d
        }
        Step::Set(to, executor, why) => {
            let to = to.clamp(0, i32::MAX);
            let tolerances = hpa_spec.tolerances();
            let computed =
                hpa::calc::compute_replicas_for_metrics(&hpa_spec, &hpa_input, tolerances, now_ms);
            let scale = to != current;
            Decision {
                now_ms,
                current_replicas: current,
                desired_replicas: if scale { to } else { current },
                scale,
                inputs: DecisionInputs {
                    current_replicas: current,
                    status_replicas: input.status_replicas,
                    min_replicas: min,
                    max_replicas: spec.max_replica_count,
                    scale_up_tolerance: tolerances.scale_up,
                    scale_down_tolerance: tolerances.scale_down,
                    pods: input.pods.len(),
                    behavior: spec.behavior.is_some(),
                },
                history: None,
                metrics: computed.proposals,
                recommendation: None,
                recommended_by: None,
                stabilization: None,
                limit: None,
                conditions: Vec::new(),
                reason: if scale {
                    format!("scale {current}→{to}: {executor} ({why})")
                } else {
                    format!("keep {current}: {executor} ({why})")
                },
                error: None,
                keda: Some(KedaDetail {
                    active,
                    executor: executor.to_owned(),
                    fallback_triggers: fallback_triggers.clone(),
                    formula_value,
                }),
            }
        }
    };
    decision.set_condition(Condition::new(
        "Active",
        active,
        if active {
            "ScalerActive"
        } else {
            "ScalerNotActive"
        },
        if active {
            "Scaling is performed because triggers are active"
        } else {
            "Scaling is not performed because triggers are not active"
        },
    ));
    decision.set_condition(Condition::new(
        "Fallback",
        !fallback_triggers.is_empty(),
        if fallback_triggers.is_empty() {
            "NoFallbackFound"
        } else {
            "FallbackExists"
        },
        if fallback_triggers.is_empty() {
            "No fallbacks are active on this scaled object"
        } else {
            "At least one trigger is falling back on this scaled object"
        },
    ));
    decision
}
