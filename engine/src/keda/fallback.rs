//! KEDA's fallback (`pkg/fallback/fallback.go`): per-metric health counting and the metric value served
//! in place of a failing scaler's once it has failed more than `failureThreshold` times in a row.
//!
//! The value makes the HPA land on the fallback replica count: `target · replicas` for AverageValue
//! targets, `target · replicas / readyPods` for Value targets, carried as KEDA carries it
//! (`NewMilliQuantity(int64(target·1000·replicas))`, so the milli-units are truncated). With
//! `scalingModifiers`, the composite metric's target is used, and only when it is an integer greater than 0
//! (`HasValidFallback` parses it with `ParseInt`): otherwise the fallback is never applied.
//!
//! surge reads each trigger once per evaluation, so a failure is counted once per evaluation. (KEDA counts
//! one per read, and both its polling loop and every HPA query read: a cluster reaches the threshold up to
//! twice as fast.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FallbackBehavior, ScaledObjectSpec, TriggerMetricType};
use crate::decision::KedaCondition;
use crate::hpa::ConditionStatus;

/// `status.health[metric].status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthStatusType {
    /// The last read succeeded.
    Happy,
    /// The last read failed.
    Failing,
}

/// `status.health[metric]`: an input (a scenario can seed it) and the memory fallback keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// `numberOfFailures`.
    pub number_of_failures: i32,
    /// `status`.
    pub status: HealthStatusType,
}

/// What a read turned into once fallback had its say (`GetMetricsWithFallback`'s three results).
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackRead {
    /// The scaler's own value (fallback not involved).
    Value(f64),
    /// The fallback value, with the replica count it stands for.
    Fallback {
        /// The metric value served.
        value: f64,
        /// The replica count the behavior chose.
        replicas: i32,
    },
    /// `behavior: scalingModifiers`: the formula sees this trigger as `nil` (KEDA serves a -1 placeholder
    /// and the formula engine reads it as nil); no fallback is reported as active.
    Placeholder,
    /// The error goes to the caller (below the threshold, fallback disabled or invalid, or the fallback
    /// could not be computed).
    Error(String),
}

/// What the fallback needs to know about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetReplicas {
    /// `scale.spec.replicas` (read for every behavior but `static`).
    pub current: i32,
    /// Running and Ready pods (only Value targets divide by it).
    pub ready: i32,
}

/// `HasValidFallback`: thresholds not negative, and with `scalingModifiers` an integer target above 0.
pub fn has_valid_fallback(spec: &ScaledObjectSpec) -> bool {
    let Some(fb) = spec.fallback else {
        return false;
    };
    let modifiers_ok = spec
        .scaling_modifiers
        .as_ref()
        .is_none_or(|m| m.target_text.trim().parse::<i64>().is_ok_and(|v| v > 0));
    fb.failure_threshold >= 0 && fb.replicas >= 0 && modifiers_ok
}

/// `fallbackExceededThreshold`: some metric is failing more than `failureThreshold` times.
pub fn exceeded_threshold(health: &BTreeMap<String, HealthStatus>, failure_threshold: i32) -> bool {
    health
        .values()
        .any(|h| h.status == HealthStatusType::Failing && h.number_of_failures > failure_threshold)
}

/// The Fallback condition: from the health map when a valid fallback is configured (`updateStatus`),
/// `NoFallbackFound` otherwise (the controller's reconcile).
pub fn condition(
    spec: &ScaledObjectSpec,
    health: &BTreeMap<String, HealthStatus>,
) -> KedaCondition {
    let exceeded = spec
        .fallback
        .filter(|_| has_valid_fallback(spec))
        .is_some_and(|fb| exceeded_threshold(health, fb.failure_threshold));
    if exceeded {
        KedaCondition::new(
            "Fallback",
            ConditionStatus::True,
            "FallbackExists",
            "At least one trigger is falling back on this scaled object",
        )
    } else {
        KedaCondition::new(
            "Fallback",
            ConditionStatus::False,
            "NoFallbackFound",
            "No fallbacks are active on this scaled object",
        )
    }
}

/// `GetMetricsWithFallback` for one metric: updates `health` (only when a valid fallback is configured)
/// and returns the value the HPA and the activity check see.
///
/// `target` is the metric's HPA target (the trigger's, or the composite metric's with `scalingModifiers`).
pub fn read_with_fallback(
    spec: &ScaledObjectSpec,
    health: &mut BTreeMap<String, HealthStatus>,
    metric: &str,
    read: Result<f64, String>,
    target: (TriggerMetricType, f64),
    replicas: TargetReplicas,
) -> FallbackRead {
    let configured = has_valid_fallback(spec);
    let error = match read {
        Ok(v) => {
            if configured {
                health.insert(
                    metric.to_owned(),
                    HealthStatus {
                        number_of_failures: 0,
                        status: HealthStatusType::Happy,
                    },
                );
            }
            return FallbackRead::Value(v);
        }
        Err(e) => e,
    };
    let Some(fb) = spec.fallback.filter(|_| configured) else {
        return FallbackRead::Error(error);
    };
    let h = health.entry(metric.to_owned()).or_insert(HealthStatus {
        number_of_failures: 0,
        status: HealthStatusType::Failing,
    });
    h.number_of_failures = h.number_of_failures.saturating_add(1);
    h.status = HealthStatusType::Failing;
    if h.number_of_failures <= fb.failure_threshold {
        return FallbackRead::Error(error);
    }
    if fb.behavior == FallbackBehavior::ScalingModifiers {
        return FallbackRead::Placeholder;
    }
    match fallback_value(spec, target, replicas) {
        Some((value, replicas)) => FallbackRead::Fallback { value, replicas },
        None => FallbackRead::Error("error performing fallback".to_owned()),
    }
}

/// `doFallback`: the replica count the behavior picks and the metric value standing for it; `None` for a
/// Value target when no pod is ready (KEDA cannot divide by zero ready replicas).
pub fn fallback_value(
    spec: &ScaledObjectSpec,
    target: (TriggerMetricType, f64),
    replicas: TargetReplicas,
) -> Option<(f64, i32)> {
    let fb = spec.fallback?;
    let chosen = fb.replicas_for(replicas.current);
    let mut per = f64::from(chosen);
    let (metric_type, normalisation) = match &spec.scaling_modifiers {
        Some(m) => (m.metric_type, m.target),
        None => target,
    };
    if metric_type == TriggerMetricType::Value {
        if replicas.ready <= 0 {
            return None;
        }
        per /= f64::from(replicas.ready);
    }
    // `int64(normalisationValue*1000*replicas)` milli-units, as a float in base units.
    let milli = (normalisation * 1000.0 * per).trunc();
    Some((milli / 1000.0, chosen))
}
