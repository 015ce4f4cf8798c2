//! KEDA's scale executor for ScaledObjects (`pkg/scaling/executor/scale_scaledobjects.go`, `RequestScale`)
//! and the pause handling of its controller (`controllers/keda/scaledobject_controller.go`): the 0↔1 and
//! idle↔min moves, the cooldowns, and the Ready / Active / Paused conditions with KEDA's reasons.

use super::annotations::{Annotations, PAUSED_SCALE_IN, PAUSED_SCALE_OUT};
use super::{KedaCondition, ScaledObjectSpec};
use crate::decision::Condition;
use crate::hpa::ConditionStatus;

/// `ScaledObjectConditionReadySuccessReason`.
pub const READY_REASON: &str = "ScaledObjectReady";
/// `ScaledObjectConditionReadySuccessMessage`.
pub const READY_MESSAGE: &str = "ScaledObject is defined correctly and is ready for scaling";
/// `ScaledObjectConditionPausedReason`.
pub const PAUSED_REASON: &str = "ScaledObjectPaused";
/// `ScaledObjectConditionPausedMessage`.
pub const PAUSED_MESSAGE: &str = "ScaledObject is paused";

/// What `RequestScale` was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorInput {
    /// Some trigger is active (or in fallback), or the formula is above its activation target.
    pub active: bool,
    /// The active triggers (`options.ActiveTriggers`), named in the activation message.
    pub active_triggers: Vec<String>,
    /// Some trigger failed (fallback not serving it).
    pub error: bool,
    /// `scale.spec.replicas`.
    pub current: i32,
    /// The ScaledObject's `creationTimestamp`, ms.
    pub created_ms: i64,
    /// `status.lastActiveTime`, ms.
    pub last_active_ms: Option<i64>,
    /// The evaluation's time, ms.
    pub now_ms: i64,
}

/// What `RequestScale` decided (KEDA's `ScaleResult`, plus the replica count it wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorResult {
    /// The replica count written to the target's `/scale`, if any.
    pub scale_to: Option<i32>,
    /// The step taken: `Paused`, `ScaleFromZero`, `ScaleToZero`, `ScaleToIdle`, `ScaleToMin`,
    /// `CoolingDown`, `PartialTriggerError`, `TriggerError`, `FallbackPending`, `ScaleInPaused`,
    /// `ScaleOutPaused` or `Hpa` (nothing for the executor to do; the HPA does 1↔N).
    pub step: &'static str,
    /// Why, in a few words.
    pub why: String,
    /// `status.lastActiveTime`, when this pass sets it.
    pub last_active_ms: Option<i64>,
    /// Conditions set by this pass (Ready, Active, Paused); others are left as they were.
    pub conditions: Vec<KedaCondition>,
    /// The annotation that stopped the executor, if one did.
    pub frozen_by: Option<&'static str>,
}

impl ExecutorResult {
    fn new() -> Self {
        Self {
            scale_to: None,
            step: "Hpa",
            why: String::new(),
            last_active_ms: None,
            conditions: vec![KedaCondition::new(
                "Ready",
                ConditionStatus::True,
                READY_REASON,
                READY_MESSAGE,
            )],
            frozen_by: None,
        }
    }

    fn set(&mut self, kind: &str, status: ConditionStatus, reason: &str, message: &str) {
        let c = KedaCondition::new(kind, status, reason, message);
        match self.conditions.iter_mut().find(|x| x.kind == kind) {
            Some(existing) => *existing = c,
            None => self.conditions.push(c),
        }
    }

    fn step(&mut self, step: &'static str, why: impl Into<String>) {
        self.step = step;
        self.why = why.into();
    }
}

/// `RequestScale`, after the current replica count was read.
pub fn request_scale(
    spec: &ScaledObjectSpec,
    annotations: &Annotations,
    input: &ExecutorInput,
) -> ExecutorResult {
    let mut r = ExecutorResult::new();
    let current = input.current;
    // handlePaused: the controller has stopped the loop and deleted the HPA; with paused-replicas it
    // scaled the target to that count.
    if let Some(annotation) = annotations.freezing_annotation() {
        r.set(
            "Paused",
            ConditionStatus::True,
            PAUSED_REASON,
            PAUSED_MESSAGE,
        );
        r.frozen_by = Some(annotation);
        r.scale_to = annotations.paused_replicas.filter(|n| *n != current);
        r.step("Paused", format!("{annotation} is set"));
        return r;
    }
    let min = spec.min_replica_count;
    let idle = spec.idle_replica_count;
    if input.active || annotations.force_activation {
        let message = if annotations.force_activation {
            "Scaling is performed because activation is being forced by annotation"
        } else {
            "Scaling is performed because triggers are active"
        };
        r.set("Active", ConditionStatus::True, "ScalerActive", message);
        if (idle.is_some() && current < min) || current == 0 {
            scale_from_zero_or_idle(spec, annotations, input, &mut r);
        } else if input.error {
            r.set(
                "Ready",
                ConditionStatus::Unknown,
                "PartialTriggerError",
                "Some triggers defined in ScaledObject are not working correctly",
            );
            r.step("PartialTriggerError", "some triggers failed");
        } else {
            r.last_active_ms = Some(input.now_ms);
        }
        return r;
    }
    r.set(
        "Active",
        ConditionStatus::False,
        "ScalerNotActive",
        "Scaling is not performed because triggers are not active",
    );
    if input.error && spec.fallback.is_some_and(|f| f.replicas != 0) {
        // Scaling to zero here would disable the HPA, which is what serves the fallback.
        r.step(
            "FallbackPending",
            "a trigger failed; fallback applies after failureThreshold",
        );
    } else if input.error && spec.fallback.is_none() {
        r.set(
            "Ready",
            ConditionStatus::False,
            "TriggerError",
            "Triggers defined in ScaledObject are not working correctly",
        );
        r.step("TriggerError", "triggers failed and no fallback is set");
    } else if idle.is_some_and(|i| current > i) || (current > 0 && min == 0) {
        scale_to_zero_or_idle(spec, annotations, input, &mut r);
    } else if idle.is_none() && current < min {
        r.scale_to = Some(min);
        r.step("ScaleToMin", "below minReplicaCount");
    }
    r
}

/// `scaleFromZeroOrIdle`.
fn scale_from_zero_or_idle(
    spec: &ScaledObjectSpec,
    annotations: &Annotations,
    input: &ExecutorInput,
    r: &mut ExecutorResult,
) {
    if annotations.paused_scale_out {
        r.frozen_by = Some(PAUSED_SCALE_OUT);
        r.step("ScaleOutPaused", format!("{PAUSED_SCALE_OUT} is set"));
        return;
    }
    let to = if spec.min_replica_count > 0 {
        spec.min_replica_count
    } else {
        1
    };
    r.scale_to = Some(to);
    r.last_active_ms = Some(input.now_ms);
    // The KEDAScaleTargetActivated event's wording.
    let why = if annotations.force_activation {
        format!(
            "from {} to {to}, caused by forced activation annotation",
            input.current
        )
    } else {
        format!(
            "from {} to {to}, triggered by {}",
            input.current,
            input.active_triggers.join(";")
        )
    };
    r.step("ScaleFromZero", why);
}

/// `scaleToZeroOrIdle`.
fn scale_to_zero_or_idle(
    spec: &ScaledObjectSpec,
    annotations: &Annotations,
    input: &ExecutorInput,
    r: &mut ExecutorResult,
) {
    if annotations.paused_scale_in {
        r.frozen_by = Some(PAUSED_SCALE_IN);
        r.step("ScaleInPaused", format!("{PAUSED_SCALE_IN} is set"));
        return;
    }
    let seconds = |s: i32| i64::from(s).saturating_mul(1000);
    // `Add(...).Before(now)`: strictly before.
    let cooled = match input.last_active_ms {
        None => {
            input
                .created_ms
                .saturating_add(seconds(spec.initial_cooldown_period_seconds))
                < input.now_ms
        }
        Some(last) => last.saturating_add(seconds(spec.cooldown_period_seconds)) < input.now_ms,
    };
    if !cooled {
        r.set(
            "Active",
            ConditionStatus::False,
            "ScalerCooldown",
            "Scaler cooling down because triggers are not active",
        );
        r.step(
            "CoolingDown",
            "inactive, cooling down before scaling to zero",
        );
        return;
    }
    match spec.idle_replica_count {
        Some(idle) => {
            r.scale_to = Some(idle);
            r.step("ScaleToIdle", "no trigger active for the cooldown period");
        }
        None => {
            r.scale_to = Some(spec.min_replica_count);
            r.step("ScaleToZero", "no trigger active for the cooldown period");
        }
    }
}

/// `getHPAHealth`: the `HPAActive` condition from the HPA's conditions; `None` when the HPA cannot be
/// observed (`hpa` is `None`) or has not reported `ScalingActive` yet, so the last state stays.
pub fn hpa_health(hpa: Option<&[Condition]>) -> Option<KedaCondition> {
    let c = hpa?.iter().find(|c| c.kind == "ScalingActive")?;
    Some(if c.status {
        KedaCondition::new(
            "HPAActive",
            ConditionStatus::True,
            "HPAActive",
            "HPA is actively scaling",
        )
    } else if c.reason == "ScalingDisabled" {
        // KEDA manages scale-to-zero; the HPA disables itself at 0 replicas.
        KedaCondition::new(
            "HPAActive",
            ConditionStatus::True,
            "ScalingDisabled",
            &c.message,
        )
    } else {
        let reason = if c.reason.is_empty() {
            "HPAMetricsUnavailable"
        } else {
            c.reason.as_str()
        };
        KedaCondition::new(
            "HPAActive",
            ConditionStatus::False,
            reason,
            &format!("HPA is not actively scaling: {}", c.message),
        )
    })
}

/// `getTriggersActivity` (polling scalers): every external metric name, active when listed in
/// `active`. Push scalers (`external-push`) are not modelled.
pub fn triggers_activity(
    external_metric_names: &[String],
    active: &[String],
) -> std::collections::BTreeMap<String, bool> {
    external_metric_names
        .iter()
        .map(|n| (n.clone(), active.contains(n)))
        .collect()
}

/// `getTriggersActivity` for a push scaler (`ForPushScalerMetric`): the previous `status.triggersActivity`
/// kept, and only the pushing trigger's entry set, active when listed in `active`. surge refuses push
/// scalers in manifests (see [`super::manifest`]); this is the executor's rule, for a caller that receives
/// pushes.
pub fn push_triggers_activity(
    previous: &std::collections::BTreeMap<String, bool>,
    push_metric: &str,
    active: &[String],
) -> std::collections::BTreeMap<String, bool> {
    let mut out = previous.clone();
    out.insert(
        push_metric.to_owned(),
        active.iter().any(|a| a == push_metric),
    );
    out
}

/// `GetInitializedConditions`: Ready, Active and Fallback Unknown, Paused False (no HPAActive).
pub fn initialized_conditions() -> Vec<KedaCondition> {
    vec![
        KedaCondition::new("Ready", ConditionStatus::Unknown, "", ""),
        KedaCondition::new("Active", ConditionStatus::Unknown, "", ""),
        KedaCondition::new("Fallback", ConditionStatus::Unknown, "", ""),
        KedaCondition::new("Paused", ConditionStatus::False, "", ""),
    ]
}
