//! KEDA ScaledObject semantics: activation, scale to and from zero with cooldowns, idle replicas,
//! fallback, scaling-modifier formulas, and 1↔N through the HPA KEDA generates.
//!
//! Upstream splits this in two: KEDA's scale executor (`pkg/scaling/executor/scale_scaledobjects.go`)
//! acts only 0↔1 (and idle↔min), and the HPA it generates (one External metric per trigger, or one
//! composite metric with `scalingModifiers`) does 1↔N with `advanced.horizontalPodAutoscalerConfig.behavior`.
//! [`evaluate_scaled_object`] runs the executor and, when the executor leaves the count alone, the HPA.
//!
//! The parts, one module each: [`annotations`] (what the annotations freeze), [`triggers`] (one read of
//! every trigger: activity, errors, the composite metric), [`fallback`] (health counting and fallback
//! values), [`executor`] (`RequestScale` and its conditions), [`admission`] (the webhook's checks),
//! [`job`] (ScaledJob).
//!
//! **Time model.** KEDA's polling loop runs the executor every `pollingInterval`; the HPA reads metrics on
//! its own period. Here an evaluation is a *poll* when `pollingInterval` has passed since the last poll
//! (the first evaluation always is): the executor runs only then. Every evaluation reads the triggers for
//! the HPA; a trigger with `useCachedMetrics` gives the HPA the value of the last poll instead of a fresh
//! one, as KEDA's metrics cache does.

pub mod admission;
pub mod annotations;
pub mod cluster;
pub mod executor;
pub mod fallback;
pub mod job;
pub mod job_object;
pub mod manifest;
pub mod selector;
pub mod triggers;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use annotations::Annotations;
pub use fallback::{HealthStatus, HealthStatusType};

use crate::cron::{CronError, CronTrigger};
use crate::decision::{Condition, Decision, DecisionInputs, KedaCondition, KedaDetail};
use crate::formula::composite_target_milli;
use crate::hpa::{
    self, Behavior, ConditionStatus, ControllerConfig, HpaInput, HpaSpec, HpaState, MetricSample,
    MetricSource, MetricSpec, MetricTarget, PodInfo, PodMetric, ScalingRules, SelectPolicy,
};
use crate::quantity::milli_from_f64;

/// The metric name KEDA gives the composite metric of `scalingModifiers`.
pub const COMPOSITE_METRIC_NAME: &str = "composite-metric";

/// A `ScaledObject` spec, defaulted and validated (see [`crate::manifest::parse_scaled_object`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaledObjectSpec {
    /// `metadata.name` (admission checks its length).
    #[serde(default)]
    pub name: String,
    /// The annotations KEDA acts on (`metadata.annotations`).
    #[serde(default)]
    pub annotations: Annotations,
    /// `pollingInterval` seconds (30): how often the executor runs.
    pub polling_interval_seconds: i32,
    /// `cooldownPeriod` seconds (300): inactivity before scaling to zero (or idle).
    pub cooldown_period_seconds: i32,
    /// `initialCooldownPeriod` seconds (0): after creation, before the first scale to zero.
    pub initial_cooldown_period_seconds: i32,
    /// `minReplicaCount` (0).
    pub min_replica_count: i32,
    /// Whether `minReplicaCount` was written (the webhook's replica-bound check differs).
    #[serde(default)]
    pub min_replica_count_set: bool,
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
    /// The webhook's warnings (admitted, but a field has no effect), e.g. `PollingInterval is configured
    /// but is not relevant...`.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// `name` (or `s{index}-{type}` when unnamed): formulas refer to it.
    pub name: String,
    /// Whether `name` was written (only named triggers are formula variables, and duplicates checked).
    #[serde(default)]
    pub named: bool,
    /// `type`, e.g. `prometheus`.
    pub kind: String,
    /// `metricType`: AverageValue (default) or Value.
    pub metric_type: TriggerMetricType,
    /// The scaler's target (e.g. `threshold`), base units.
    pub threshold: f64,
    /// `activationThreshold` (0): the trigger is active when its value is above it.
    pub activation_threshold: f64,
    /// cpu/memory: `metadata.containerName` (a ContainerResource metric instead of a Resource one).
    #[serde(default)]
    pub container: Option<String>,
    /// `useCachedMetrics`: the HPA reads the value of the last poll.
    #[serde(default)]
    pub use_cached_metrics: bool,
    /// The trigger's `metadata` as written (e.g. `podSelector` of `kubernetes-workload`, a query).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `metricType` of a trigger or of the composite metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerMetricType {
    /// The HPA divides the value by the target: `ceil(value / threshold)` replicas.
    AverageValue,
    /// The HPA compares the value with the target: `ceil(value / threshold · ready pods)`.
    Value,
    /// cpu/memory only: percent of the pods' requests (`threshold` is the percentage).
    Utilization,
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
    /// The failing trigger is `nil` in the `scalingModifiers` formula (for its `??`); a formula that
    /// yields nil gives `fallback.replicas · target`.
    ScalingModifiers,
}

/// `advanced.scalingModifiers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingModifiers {
    /// `formula` over trigger names.
    pub formula: String,
    /// `target` of the composite metric.
    pub target: f64,
    /// `target` as written (fallback needs it to be an integer: `HasValidFallback`).
    #[serde(default)]
    pub target_text: String,
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
    /// The metric read failed (the scaler exists; fallback counts this).
    Failed(String),
    /// The scaler could not be built (bad metadata, missing credentials): KEDA's scalers cache fails as a
    /// whole, so no trigger is read, no failure is counted and the executor does not run.
    BuildFailed(String),
    /// cpu/memory triggers: per-pod usage (base units), read by the HPA as a Resource metric.
    PerPod(BTreeMap<String, PodMetric>),
    /// The caller read nothing for this trigger: right for a trigger the engine reads itself (see
    /// [`TriggerSpec::reads_input`]; a `cron` trigger reads the evaluation time), a failed read for any
    /// other.
    NotRead,
}

/// Per-ScaledObject memory the caller keeps; also the ScaledObject's `status`, which a scenario can seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KedaState {
    /// `metadata.creationTimestamp`, ms (set to the first evaluation's time when not given).
    pub created_ms: Option<i64>,
    /// `status.lastActiveTime`.
    pub last_active_ms: Option<i64>,
    /// `status.health`, by trigger name (KEDA keys it by metric name: one metric per trigger here).
    #[serde(default)]
    pub health: BTreeMap<String, HealthStatus>,
    /// `status.conditions` as KEDA last wrote them.
    #[serde(default)]
    pub conditions: Vec<KedaCondition>,
    /// `status.pausedReplicaCount`.
    #[serde(default)]
    pub paused_replica_count: Option<i32>,
    /// When the executor last ran (the polling loop), ms.
    #[serde(default)]
    pub last_poll_ms: Option<i64>,
    /// The value of each `useCachedMetrics` trigger at the last poll.
    #[serde(default)]
    pub cached: BTreeMap<String, TriggerValue>,
    /// The generated HPA's history.
    pub hpa: HpaState,
}

impl TriggerSpec {
    /// A `cpu` or `memory` trigger: a Resource metric of the generated HPA.
    pub fn is_resource(&self) -> bool {
        self.kind == "cpu" || self.kind == "memory"
    }

    /// Whether the caller must read a value for this trigger. A `cron` trigger needs none: the engine
    /// computes it from `now_ms`, and its slot in [`KedaInput::triggers`] is ignored
    /// ([`TriggerValue::NotRead`] says so).
    pub fn reads_input(&self) -> bool {
        self.kind != "cron"
    }

    /// A `cron` trigger's schedule, parsed from its metadata; `None` for other triggers.
    ///
    /// Parsed at each read rather than kept beside the metadata, so a spec built or deserialized without
    /// the manifest still reads its schedule (the manifest refuses metadata that does not parse; a spec
    /// built in code with bad metadata fails its reads with KEDA's message).
    pub fn cron(&self) -> Option<Result<CronTrigger, CronError>> {
        (self.kind == "cron")
            .then(|| CronTrigger::parse(|k| self.metadata.get(k).map(String::as_str)))
    }
}

impl KedaState {
    /// The condition of a type, as last written.
    pub fn condition(&self, kind: &str) -> Option<&KedaCondition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    fn set_condition(&mut self, c: KedaCondition) {
        match self.conditions.iter_mut().find(|x| x.kind == c.kind) {
            Some(existing) => *existing = c,
            None => self.conditions.push(c),
        }
    }
}

impl FallbackSpec {
    /// The replica count the fallback asks for, given the current count.
    pub fn replicas_for(&self, current: i32) -> i32 {
        match self.behavior {
            // scalingModifiers never reaches doFallback's arithmetic (the formula decides); KEDA's
            // default branch is `fallback.replicas`.
            FallbackBehavior::Static | FallbackBehavior::ScalingModifiers => self.replicas,
            FallbackBehavior::CurrentReplicas => current,
            FallbackBehavior::CurrentReplicasIfHigher => current.max(self.replicas),
            FallbackBehavior::CurrentReplicasIfLower => current.min(self.replicas),
        }
    }
}

impl ScaledObjectSpec {
    /// The formula's variables: the named triggers that are not cpu or memory (KEDA's environment for
    /// `scalingModifiers.formula`, at admission and at each poll).
    pub fn formula_triggers(&self) -> Vec<&str> {
        self.triggers
            .iter()
            .filter(|t| !t.is_resource() && t.named)
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Trigger indices in the order of the generated HPA's metrics: KEDA sorts the metric specs by type
    /// (`ContainerResource` < `External` < `Resource`), stably. With `scalingModifiers` only the Resource
    /// triggers are kept (the composite metric follows them).
    pub fn hpa_order(&self) -> Vec<usize> {
        let rank = |t: &TriggerSpec| match (t.is_resource(), t.container.is_some()) {
            (true, true) => 0,
            (false, _) => 1,
            (true, false) => 2,
        };
        let mut order: Vec<usize> = (0..self.triggers.len()).collect();
        if self.scaling_modifiers.is_some() {
            order.retain(|&i| self.triggers.get(i).is_some_and(|t| rank(t) == 2));
        } else {
            order.sort_by_key(|&i| self.triggers.get(i).map_or(1, rank));
        }
        order
    }

    /// The HPA KEDA generates: min `max(minReplicaCount, 1)`, max `maxReplicaCount`, one metric per
    /// trigger (a Resource or ContainerResource one for cpu/memory, an External one otherwise) or the
    /// Resource ones and the composite metric, the ScaledObject's behavior with the directions the
    /// `paused-scale-in` / `paused-scale-out` annotations disable.
    pub fn generated_hpa(&self) -> HpaSpec {
        let external = |name: &str, metric_type: TriggerMetricType, target: f64| MetricSpec {
            source: MetricSource::External {
                metric: name.to_owned(),
            },
            target: target_of(metric_type, target),
        };
        let trigger_metric = |t: &TriggerSpec| {
            if !t.is_resource() {
                return external(&t.name, t.metric_type, t.threshold);
            }
            let source = match &t.container {
                Some(c) => MetricSource::ContainerResource {
                    name: t.kind.clone(),
                    container: c.clone(),
                },
                None => MetricSource::Resource {
                    name: t.kind.clone(),
                },
            };
            MetricSpec {
                source,
                target: target_of(t.metric_type, t.threshold),
            }
        };
        let mut metrics: Vec<MetricSpec> = self
            .hpa_order()
            .into_iter()
            .filter_map(|i| self.triggers.get(i).map(trigger_metric))
            .collect();
        if let Some(m) = &self.scaling_modifiers {
            // `NewMilliQuantity(int64(target * 1000))`: truncated, unlike a trigger's target.
            let milli = composite_target_milli(m.target);
            metrics.push(MetricSpec {
                source: MetricSource::External {
                    metric: COMPOSITE_METRIC_NAME.to_owned(),
                },
                target: match m.metric_type {
                    TriggerMetricType::Value => MetricTarget::Value(milli),
                    // Utilization is refused at admission.
                    _ => MetricTarget::AverageValue(milli),
                },
            });
        }
        let mut behavior = self.behavior.clone();
        if self.annotations.paused_scale_in || self.annotations.paused_scale_out {
            let b = behavior.get_or_insert_with(|| Behavior {
                scale_up: ScalingRules::default_scale_up(),
                scale_down: ScalingRules::default_scale_down(),
            });
            if self.annotations.paused_scale_in {
                b.scale_down.select_policy = SelectPolicy::Disabled;
            }
            if self.annotations.paused_scale_out {
                b.scale_up.select_policy = SelectPolicy::Disabled;
            }
        }
        HpaSpec {
            min_replicas: self.min_replica_count.max(1),
            max_replicas: self.max_replica_count,
            metrics,
            behavior,
            controller: self.controller,
        }
    }
}

/// The HPA target of a trigger: Utilization in percent, the others in milli-units.
fn target_of(metric_type: TriggerMetricType, target: f64) -> MetricTarget {
    let milli = milli_from_f64(target).unwrap_or(0);
    match metric_type {
        TriggerMetricType::AverageValue => MetricTarget::AverageValue(milli),
        TriggerMetricType::Value => MetricTarget::Value(milli),
        // Admission makes the percentage an int32 (`parseUtilization`).
        TriggerMetricType::Utilization => MetricTarget::Utilization(target as i32),
    }
}

/// Evaluates a ScaledObject at `now_ms`: KEDA's executor for 0↔1 (and idle) when this evaluation is a
/// poll, the generated HPA for 1↔N, with the annotations, fallback and conditions as KEDA applies them.
pub fn evaluate_scaled_object(
    spec: &ScaledObjectSpec,
    state: &mut KedaState,
    input: &KedaInput,
    now_ms: i64,
) -> Decision {
    let created_ms = *state.created_ms.get_or_insert(now_ms);
    if state.conditions.is_empty() {
        state.conditions = executor::initialized_conditions();
    }
    let current = input.current_replicas.max(0);
    let poll = state.last_poll_ms.is_none_or(|last| {
        now_ms.saturating_sub(last) >= i64::from(spec.polling_interval_seconds) * 1000
    });
    if poll {
        state.last_poll_ms = Some(now_ms);
    }
    let annotations = &spec.annotations;
    let build_error = input.triggers.iter().find_map(|t| match t {
        TriggerValue::BuildFailed(e) => Some(e.clone()),
        _ => None,
    });

    // Paused entirely: the controller stopped the loop and deleted the HPA.
    if annotations.paused_by_annotation() {
        let result = executor::request_scale(
            spec,
            annotations,
            &executor_input(false, false, current, created_ms, state, now_ms),
        );
        state.paused_replica_count = annotations.paused_replicas;
        return executor_decision(spec, state, input, now_ms, result, None);
    }
    if let Some(e) = build_error {
        return build_failed(spec, state, input, now_ms, &e);
    }

    let values = trigger_values(spec, state, input, poll, now_ms);
    let reads = triggers::read_triggers(spec, &mut state.health, input, &values, now_ms);
    let mut result = if poll {
        executor::request_scale(
            spec,
            annotations,
            &executor::ExecutorInput {
                active_triggers: reads.active_triggers.clone(),
                ..executor_input(
                    reads.active,
                    reads.error,
                    current,
                    created_ms,
                    state,
                    now_ms,
                )
            },
        )
    } else {
        executor::ExecutorResult {
            scale_to: None,
            step: "Hpa",
            why: "between polls".to_owned(),
            last_active_ms: None,
            conditions: Vec::new(),
            frozen_by: None,
        }
    };
    if let Some(t) = result.last_active_ms {
        state.last_active_ms = Some(t);
    }
    if annotations.paused_scale_in || annotations.paused_scale_out {
        // Unidirectional pauses: the controller reports the ScaledObject paused and keeps the loop.
        result.conditions.push(KedaCondition::new(
            "Paused",
            ConditionStatus::True,
            executor::PAUSED_REASON,
            executor::PAUSED_MESSAGE,
        ));
    }
    executor_decision(spec, state, input, now_ms, result, Some(reads))
}

fn executor_input(
    active: bool,
    error: bool,
    current: i32,
    created_ms: i64,
    state: &KedaState,
    now_ms: i64,
) -> executor::ExecutorInput {
    executor::ExecutorInput {
        active,
        error,
        active_triggers: Vec::new(),
        current,
        created_ms,
        last_active_ms: state.last_active_ms,
        now_ms,
    }
}

/// Each trigger's value for this evaluation: fresh, or for `useCachedMetrics` triggers between polls, the
/// value of the last poll (stored at each poll). A `cron` trigger's fresh value comes from the clock
/// ([`triggers::cron_read`]); its entry in `input.triggers` is not read.
fn trigger_values(
    spec: &ScaledObjectSpec,
    state: &mut KedaState,
    input: &KedaInput,
    poll: bool,
    now_ms: i64,
) -> Vec<Option<TriggerValue>> {
    spec.triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fresh = match t.cron() {
                Some(cron) => Some(
                    match cron
                        .map_err(|e| e.to_string())
                        .and_then(|c| triggers::cron_read(&c, now_ms))
                    {
                        Ok((value, _)) => TriggerValue::Value(value),
                        Err(e) => TriggerValue::Failed(e),
                    },
                ),
                None => input.triggers.get(i).cloned(),
            };
            if !t.use_cached_metrics {
                return fresh;
            }
            if poll {
                match &fresh {
                    Some(v) => {
                        state.cached.insert(t.name.clone(), v.clone());
                    }
                    None => {
                        state.cached.remove(&t.name);
                    }
                }
                return fresh;
            }
            state.cached.get(&t.name).cloned().or(fresh)
        })
        .collect()
}

/// A scaler failed to build: KEDA's scalers cache fails as a whole, the reconcile reports it, and the
/// HPA's metric queries fail (the HPA keeps the count).
fn build_failed(
    spec: &ScaledObjectSpec,
    state: &mut KedaState,
    input: &KedaInput,
    now_ms: i64,
    error: &str,
) -> Decision {
    let message = format!("failed to ensure HPA is correctly created for ScaledObject: {error}");
    let result = executor::ExecutorResult {
        scale_to: None,
        step: "ScaledObjectCheckFailed",
        why: format!("a scaler could not be built: {error}"),
        last_active_ms: None,
        conditions: vec![
            KedaCondition::new(
                "Ready",
                ConditionStatus::False,
                "ScaledObjectCheckFailed",
                &message,
            ),
            KedaCondition::new(
                "Active",
                ConditionStatus::Unknown,
                "UnknownState",
                "ScaledObject check failed",
            ),
        ],
        frozen_by: None,
    };
    let failed = format!("error getting scalers: {error}");
    let hpa_spec = spec.generated_hpa();
    let reads = triggers::TriggerReads {
        active: false,
        active_triggers: Vec::new(),
        error: true,
        fallback_triggers: Vec::new(),
        fallback_replicas: None,
        formula_value: None,
        samples: hpa_spec
            .metrics
            .iter()
            .map(|_| MetricSample::Failed(failed.clone()))
            .collect(),
        errors: BTreeMap::new(),
        cron_windows: BTreeMap::new(),
    };
    executor_decision(spec, state, input, now_ms, result, Some(reads))
}

/// Turns the executor's result (and, when it left the count alone, the HPA's) into the decision, and
/// records KEDA's conditions in `state`.
fn executor_decision(
    spec: &ScaledObjectSpec,
    state: &mut KedaState,
    input: &KedaInput,
    now_ms: i64,
    result: executor::ExecutorResult,
    reads: Option<triggers::TriggerReads>,
) -> Decision {
    let current = input.current_replicas.max(0);
    let hpa_spec = spec.generated_hpa();
    let hpa_input = HpaInput {
        current_replicas: current,
        status_replicas: input.status_replicas,
        pods: input.pods.clone(),
        metrics: reads
            .as_ref()
            .map(|r| r.samples.clone())
            .unwrap_or_default(),
    };
    let paused = spec.annotations.paused_by_annotation();
    let mut decision = match result.scale_to {
        None if !paused => {
            let mut d = hpa::evaluate_hpa(&hpa_spec, &mut state.hpa, &hpa_input, now_ms);
            if result.step != "Hpa" {
                d.reason = format!("{} ({}: {})", d.reason, result.step, result.why);
            }
            mirror_hpa_health(state, &d);
            d
        }
        to => set_replicas(
            spec,
            &hpa_spec,
            &hpa_input,
            now_ms,
            to.unwrap_or(current),
            &result,
        ),
    };
    for c in &result.conditions {
        state.set_condition(c.clone());
    }
    update_fallback_condition(spec, state);
    if !paused && !spec.annotations.paused_scale_in && !spec.annotations.paused_scale_out {
        if state
            .condition("Paused")
            .is_some_and(|c| c.status == ConditionStatus::True)
        {
            state.set_condition(KedaCondition::new(
                "Paused",
                ConditionStatus::False,
                "ScaledObjectUnpaused",
                "pause annotation removed for ScaledObject",
            ));
        }
        state.paused_replica_count = None;
    }
    let active = reads.as_ref().is_some_and(|r| r.active);
    let fallback_triggers = reads
        .as_ref()
        .map(|r| r.fallback_triggers.clone())
        .unwrap_or_default();
    for kind in ["Ready", "Active", "Fallback", "Paused"] {
        if let Some(c) = state.condition(kind) {
            decision.set_condition(Condition::new(
                kind,
                c.status == ConditionStatus::True,
                &c.reason,
                c.message.clone(),
            ));
        }
    }
    decision.keda = Some(KedaDetail {
        active,
        executor: result.step.to_owned(),
        fallback_triggers,
        formula_value: reads.as_ref().and_then(|r| r.formula_value),
        frozen_by: result.frozen_by.map(str::to_owned).or_else(|| {
            // The HPA's disabled directions come from the unidirectional pause annotations.
            match (
                spec.annotations.paused_scale_in,
                spec.annotations.paused_scale_out,
            ) {
                (true, true) => Some(format!(
                    "{}, {}",
                    annotations::PAUSED_SCALE_IN,
                    annotations::PAUSED_SCALE_OUT
                )),
                (true, false) => Some(annotations::PAUSED_SCALE_IN.to_owned()),
                (false, true) => Some(annotations::PAUSED_SCALE_OUT.to_owned()),
                (false, false) => None,
            }
        }),
        fallback_behavior: reads
            .as_ref()
            .filter(|r| !r.fallback_triggers.is_empty())
            .and(spec.fallback.map(|f| f.behavior)),
        fallback_replicas: reads.as_ref().and_then(|r| r.fallback_replicas),
        polled: state.last_poll_ms == Some(now_ms),
        triggers_activity: reads
            .as_ref()
            .map(|r| {
                let names: Vec<String> = spec
                    .triggers
                    .iter()
                    .filter(|t| !t.is_resource())
                    .map(|t| t.name.clone())
                    .collect();
                executor::triggers_activity(&names, &r.active_triggers)
            })
            .unwrap_or_default(),
        cron_windows: reads
            .as_ref()
            .map(|r| r.cron_windows.clone())
            .unwrap_or_default(),
        trigger_errors: reads.map(|r| r.errors).unwrap_or_default(),
        health: state.health.clone(),
        conditions: state.conditions.clone(),
    });
    decision
}

/// KEDA's `HPAActive` condition mirrors the HPA's `ScalingActive` one; left as it was when the HPA
/// reported none.
fn mirror_hpa_health(state: &mut KedaState, d: &Decision) {
    if let Some(c) = executor::hpa_health(Some(&d.conditions)) {
        state.set_condition(c);
    }
}

/// Records the Fallback condition ([`fallback::condition`]).
fn update_fallback_condition(spec: &ScaledObjectSpec, state: &mut KedaState) {
    let c = fallback::condition(spec, &state.health);
    state.set_condition(c);
}

/// A decision where the executor (or the pause) set the count and the HPA did not run.
fn set_replicas(
    spec: &ScaledObjectSpec,
    hpa_spec: &HpaSpec,
    hpa_input: &HpaInput,
    now_ms: i64,
    to: i32,
    result: &executor::ExecutorResult,
) -> Decision {
    let current = hpa_input.current_replicas;
    let to = to.max(0);
    let tolerances = hpa_spec.tolerances();
    let computed = if hpa_input.metrics.is_empty() {
        None
    } else {
        Some(hpa::calc::compute_replicas_for_metrics(
            hpa_spec, hpa_input, tolerances, now_ms,
        ))
    };
    let scale = to != current;
    Decision {
        now_ms,
        current_replicas: current,
        desired_replicas: if scale { to } else { current },
        scale,
        inputs: DecisionInputs {
            current_replicas: current,
            status_replicas: hpa_input.status_replicas,
            min_replicas: spec.min_replica_count,
            max_replicas: spec.max_replica_count,
            scale_up_tolerance: tolerances.scale_up,
            scale_down_tolerance: tolerances.scale_down,
            pods: hpa_input.pods.len(),
            behavior: spec.behavior.is_some(),
        },
        history: None,
        metrics: computed.map(|c| c.proposals).unwrap_or_default(),
        recommendation: None,
        recommended_by: None,
        stabilization: None,
        limit: None,
        conditions: Vec::new(),
        reason: if scale {
            format!("scale {current}→{to}: {} ({})", result.step, result.why)
        } else {
            format!("keep {current}: {} ({})", result.step, result.why)
        },
        error: None,
        keda: None,
    }
}
