//! One read of every trigger, as KEDA's scale handler does it (`pkg/scaling/scale_handler.go`,
//! `getScaledObjectState` and `GetScaledObjectMetrics`; `pkg/scaling/modifiers/formula.go`): each
//! External trigger's value through fallback, its activity, the composite metric of `scalingModifiers`,
//! and the samples the generated HPA receives.

use std::collections::BTreeMap;

use super::fallback::{self, FallbackRead, HealthStatus, TargetReplicas};
use super::{COMPOSITE_METRIC_NAME, FallbackBehavior, KedaInput, ScaledObjectSpec, TriggerValue};
use crate::cron::{CronTrigger, CronWindow};
use crate::decision::CronWindowDetail;
use crate::formula::{
    Formula, composite_milli, nil_fallback_value, scaler_metric_value,
    scaling_modifier_trigger_value,
};
use crate::hpa::{MetricSample, PodPhase};

/// The outcome of reading every trigger once.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerReads {
    /// `isScaledObjectActive`.
    pub active: bool,
    /// The active triggers' names (`composite-metric` with `scalingModifiers`), for the activation event.
    pub active_triggers: Vec<String>,
    /// `isScaledObjectError`.
    pub error: bool,
    /// Triggers (or `composite-metric`) served a fallback value.
    pub fallback_triggers: Vec<String>,
    /// The replica count the fallback stands for, when one applied.
    pub fallback_replicas: Option<i32>,
    /// The formula's value, when `scalingModifiers` is used and it evaluated.
    pub formula_value: Option<f64>,
    /// The generated HPA's samples, in the order of [`ScaledObjectSpec::generated_hpa`]'s metrics.
    pub samples: Vec<MetricSample>,
    /// Per trigger, the reason it failed (for the explanation).
    pub errors: BTreeMap<String, String>,
    /// Each `cron` trigger's window, by trigger name.
    pub cron_windows: BTreeMap<String, CronWindowDetail>,
}

/// One trigger's contribution before the HPA's samples are ordered.
enum TriggerSample {
    /// A cpu/memory trigger's per-pod sample.
    Resource(MetricSample),
    /// An External trigger's read through fallback.
    External(String, FallbackRead),
}

/// A trigger's raw read: a value, or the scaler's error.
pub fn raw_read(value: Option<&TriggerValue>) -> Result<f64, String> {
    match value {
        Some(TriggerValue::Value(v)) if v.is_finite() => Ok(*v),
        Some(TriggerValue::Value(v)) => Err(format!("trigger value {v} is not a finite number")),
        Some(TriggerValue::Failed(e)) => Err(e.clone()),
        Some(TriggerValue::BuildFailed(e)) => Err(format!("scaler could not be built: {e}")),
        Some(TriggerValue::PerPod(_)) => {
            Err("per-pod resource usage given for an external trigger".to_owned())
        }
        Some(TriggerValue::NotRead) => {
            Err("no value was read for this trigger (only a cron trigger reads none)".to_owned())
        }
        None => Err("no value for trigger".to_owned()),
    }
}

/// A `cron` trigger's read at `now_ms`, as its scaler's `GetMetricsAndActivity` gives it: the metric
/// (`desiredReplicas` inside the window, else 0) and the window (whose `active` is the trigger's
/// activity, not a comparison of the value with an activation threshold).
pub fn cron_read(cron: &CronTrigger, now_ms: i64) -> Result<(f64, CronWindow), String> {
    let now = jiff::Timestamp::from_millisecond(now_ms)
        .map_err(|e| format!("evaluation time {now_ms} ms is out of range: {e}"))?;
    let window = cron.window(now).map_err(|e| e.to_string())?;
    let value = cron.metric_value(now).map_err(|e| e.to_string())?;
    Ok((value, window))
}

/// The explanation's view of a cron trigger's window.
fn cron_detail(cron: &CronTrigger, w: &CronWindow) -> CronWindowDetail {
    CronWindowDetail {
        timezone: cron.timezone.clone(),
        start: cron.start.expr.clone(),
        end: cron.end.expr.clone(),
        desired_replicas: cron.desired_replicas,
        active: w.active,
        next_start_ms: w.next_start.map(|t| t.as_millisecond()),
        next_end_ms: w.next_end.map(|t| t.as_millisecond()),
    }
}

/// Running pods whose Ready condition is True (`getReadyReplicasCount`).
fn ready_pods(input: &KedaInput) -> i32 {
    let n = input
        .pods
        .iter()
        .filter(|p| {
            p.phase == PodPhase::Running && p.ready == Some(crate::hpa::ConditionStatus::True)
        })
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Reads every trigger once: `values[i]` is trigger `i`'s value (cached or fresh, the caller decides).
pub fn read_triggers(
    spec: &ScaledObjectSpec,
    health: &mut BTreeMap<String, HealthStatus>,
    input: &KedaInput,
    values: &[Option<TriggerValue>],
    now_ms: i64,
) -> TriggerReads {
    let replicas = TargetReplicas {
        current: input.current_replicas.max(0),
        ready: ready_pods(input),
    };
    let mut out = TriggerReads {
        active: false,
        active_triggers: Vec::new(),
        error: false,
        fallback_triggers: Vec::new(),
        fallback_replicas: None,
        formula_value: None,
        samples: Vec::new(),
        errors: BTreeMap::new(),
        cron_windows: BTreeMap::new(),
    };
    // Per trigger (spec order): the HPA's sample for cpu/memory, the read through fallback for the others.
    let mut per_trigger: Vec<TriggerSample> = Vec::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        let value = values.get(i).cloned().flatten();
        if t.is_resource() {
            // cpu/memory: a Resource metric of the HPA, never part of the activity.
            per_trigger.push(TriggerSample::Resource(match value {
                Some(TriggerValue::PerPod(m)) => MetricSample::PerPod(m),
                other => {
                    let e = raw_read(other.as_ref()).err().unwrap_or_else(|| {
                        format!("{} trigger needs per-pod usage, not a single value", t.kind)
                    });
                    MetricSample::Failed(e)
                }
            }));
            continue;
        }
        let target = match &spec.scaling_modifiers {
            Some(m) => (m.metric_type, m.target),
            None => (t.metric_type, t.threshold),
        };
        // A cron trigger is active inside its window (its scaler's own activity).
        let cron_active = t.cron().and_then(|cron| {
            let cron = cron.ok()?;
            let (_, window) = cron_read(&cron, now_ms).ok()?;
            out.cron_windows
                .insert(t.name.clone(), cron_detail(&cron, &window));
            Some(window.active)
        });
        let read = fallback::read_with_fallback(
            spec,
            health,
            &t.name,
            raw_read(value.as_ref()),
            target,
            replicas,
        );
        match &read {
            FallbackRead::Value(v) => {
                if cron_active.unwrap_or(*v > t.activation_threshold) {
                    out.active = true;
                    out.active_triggers.push(t.name.clone());
                }
            }
            FallbackRead::Fallback { replicas, .. } => {
                // A trigger in fallback counts as active (`isActiveOrFallback`).
                out.active = true;
                out.active_triggers.push(t.name.clone());
                out.fallback_triggers.push(t.name.clone());
                out.fallback_replicas = Some(*replicas);
            }
            FallbackRead::Placeholder => {}
            FallbackRead::Error(e) => {
                out.error = true;
                out.errors.insert(t.name.clone(), e.clone());
            }
        }
        per_trigger.push(TriggerSample::External(t.name.clone(), read));
    }
    let cpu_mem = spec.triggers.iter().filter(|t| t.is_resource()).count();
    match &spec.scaling_modifiers {
        None => {
            let mut samples: Vec<Option<MetricSample>> = per_trigger
                .into_iter()
                .map(|s| {
                    Some(match s {
                        TriggerSample::Resource(s) => s,
                        TriggerSample::External(_, FallbackRead::Value(v)) => {
                            MetricSample::external_f64(v)
                        }
                        TriggerSample::External(_, FallbackRead::Fallback { value, .. }) => {
                            MetricSample::external_f64(value)
                        }
                        // Not reachable without scalingModifiers (admission requires a formula for it).
                        TriggerSample::External(_, FallbackRead::Placeholder) => {
                            MetricSample::Failed("no value".to_owned())
                        }
                        TriggerSample::External(_, FallbackRead::Error(e)) => {
                            MetricSample::Failed(e)
                        }
                    })
                })
                .collect();
            out.samples = spec
                .hpa_order()
                .into_iter()
                .filter_map(|i| samples.get_mut(i).and_then(Option::take))
                .collect();
        }
        Some(m) => {
            let external: Vec<(String, FallbackRead)> = per_trigger
                .iter()
                .filter_map(|s| match s {
                    TriggerSample::External(n, r) => Some((n.clone(), r.clone())),
                    TriggerSample::Resource(_) => None,
                })
                .collect();
            let composite = composite_sample(spec, health, &external, &mut out);
            out.active = false;
            out.active_triggers.clear();
            if !out.error
                && let Some(v) = out.formula_value
            {
                out.active = v > m.activation_target;
                if out.active {
                    out.active_triggers.push(COMPOSITE_METRIC_NAME.to_owned());
                }
            }
            // Only Resource metrics are kept beside the composite one (not ContainerResource).
            out.samples = spec
                .triggers
                .iter()
                .zip(per_trigger)
                .filter_map(|(t, s)| match s {
                    TriggerSample::Resource(s) if t.container.is_none() => Some(s),
                    _ => None,
                })
                .collect();
            out.samples.push(composite);
        }
    }
    // Only cpu/memory triggers: always active (they could never scale from zero).
    if spec.triggers.len() <= cpu_mem && !out.error {
        out.active = true;
    }
    out
}

/// The composite metric, as `HandleScalingModifiers` makes it: the first fallback value when a fallback
/// is active; else the formula (`calculateScalingModifiersFormula`) over each named trigger's value as
/// the formula reads it ([`scaler_metric_value`], nil past the failure threshold under `behavior:
/// scalingModifiers`: [`scaling_modifier_trigger_value`]), a nil result taking
/// [`nil_fallback_value`], the result truncated to milli-units ([`composite_milli`]).
fn composite_sample(
    spec: &ScaledObjectSpec,
    health: &BTreeMap<String, HealthStatus>,
    external: &[(String, FallbackRead)],
    out: &mut TriggerReads,
) -> MetricSample {
    if let Some(value) = external.iter().find_map(|(_, r)| match r {
        FallbackRead::Fallback { value, .. } => Some(*value),
        _ => None,
    }) {
        out.fallback_triggers = vec![COMPOSITE_METRIC_NAME.to_owned()];
        return MetricSample::external_f64(value);
    }
    if out.error {
        // `GetScaledObjectMetrics` answers the HPA with an error when a scaler failed below the threshold.
        let first = out.errors.values().next().cloned().unwrap_or_default();
        return MetricSample::Failed(format!("a trigger of the formula failed: {first}"));
    }
    let Some(m) = &spec.scaling_modifiers else {
        return MetricSample::Failed("no scalingModifiers".to_owned());
    };
    // KEDA runs the program its admission compiled (`cacheObj.CompiledFormula`): the same compilation.
    let formula = match Formula::compile(&m.formula, &spec.formula_triggers()) {
        Ok(f) => f,
        Err(e) => return MetricSample::Failed(e.to_string()),
    };
    let modifiers_fallback = spec
        .fallback
        .filter(|f| f.behavior == FallbackBehavior::ScalingModifiers);
    let threshold = modifiers_fallback.map(|f| f.failure_threshold);
    let values: BTreeMap<&str, Option<f64>> = external
        .iter()
        .map(|(name, r)| {
            let failures = health.get(name).map(|h| h.number_of_failures);
            let v = match r {
                FallbackRead::Value(v) => {
                    scaling_modifier_trigger_value(scaler_metric_value(*v), threshold, failures)
                }
                // A placeholder: past the threshold under `behavior: scalingModifiers`, which is the
                // case `scalingModifierTriggerValue` makes nil. (Fallback and Error returned above.)
                FallbackRead::Placeholder
                | FallbackRead::Fallback { .. }
                | FallbackRead::Error(_) => None,
            };
            (name.as_str(), v)
        })
        .collect();
    let evaluated = formula
        .evaluate(&|name| values.get(name).copied().flatten())
        .and_then(|v| match v {
            Some(v) => Ok((v, false)),
            None => {
                nil_fallback_value(spec.fallback.map(|f| f.replicas), m.target).map(|v| (v, true))
            }
        });
    match evaluated {
        Ok((v, nil_fallback)) => {
            // `SetMilli(int64(out * 1000))`: truncated to milli-units.
            let milli = composite_milli(v);
            out.formula_value = Some(milli as f64 / 1000.0);
            if nil_fallback {
                out.fallback_triggers = vec![COMPOSITE_METRIC_NAME.to_owned()];
                out.fallback_replicas = spec.fallback.map(|f| f.replicas);
            }
            MetricSample::External(vec![milli])
        }
        Err(e) => MetricSample::Failed(e.to_string()),
    }
}
