//! The checks KEDA's admission webhook makes on a ScaledObject (`apis/keda/v1alpha1/scaledobject_webhook.go`,
//! `scaledobject_types.go`, `scaletriggers_types.go`), on the parsed spec. Each problem names its field and
//! carries KEDA's own words.
//!
//! The checks that read the cluster (another HPA or ScaledObject on the workload, the workload's
//! cpu/memory requests and LimitRanges) are in [`super::cluster`], made when the caller gives a
//! [`super::cluster::ClusterView`].

use super::{FallbackBehavior, ScaledObjectSpec, TriggerMetricType};
use crate::formula::{ScalingModifiersError, validate_scaling_modifiers};

/// `maxK8sLabelValueLength`.
pub const MAX_NAME_LENGTH: usize = 63;

/// Every webhook problem with `spec` (empty when KEDA would admit it). `hpa_name` is
/// `spec.advanced.horizontalPodAutoscalerConfig.name` when set; `workload_target` says whether
/// `scaleTargetRef` is an `apps/v1` Deployment or StatefulSet (the cpu/memory check applies only then).
pub fn validate(
    spec: &ScaledObjectSpec,
    hpa_name: Option<&str>,
    workload_target: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    verify_name(spec, hpa_name, &mut errors);
    verify_replica_count(spec, &mut errors);
    verify_fallback(spec, &mut errors);
    verify_triggers(spec, &mut errors);
    verify_scaling_modifiers(spec, &mut errors);
    if workload_target {
        verify_cpu_memory(spec, &mut errors);
    }
    errors
}

/// `verifyName`: the name is a label value, and so is the generated HPA's name.
fn verify_name(spec: &ScaledObjectSpec, hpa_name: Option<&str>, errors: &mut Vec<String>) {
    let name = &spec.name;
    if name.len() > MAX_NAME_LENGTH {
        errors.push(format!(
            "metadata.name: scaledobject name {name:?} is {} characters long; must be no more than {MAX_NAME_LENGTH} characters because it is used as the \"scaledobject.keda.sh/name\" label value",
            name.len()
        ));
        return;
    }
    let hpa = match hpa_name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => format!("keda-hpa-{name}"),
    };
    if hpa.len() > MAX_NAME_LENGTH {
        errors.push(format!(
            "spec.advanced.horizontalPodAutoscalerConfig.name: HPA name {hpa:?} derived from scaledobject is {} characters long; must be no more than {MAX_NAME_LENGTH} characters; set spec.advanced.horizontalPodAutoscalerConfig.name to a shorter name or shorten the scaledobject name",
            hpa.len()
        ));
    }
}

/// `CheckReplicaCountBoundsAreValid` (min is the HPA's min, so an explicit 0 counts as 1 there).
fn verify_replica_count(spec: &ScaledObjectSpec, errors: &mut Vec<String>) {
    if let Err(e) = check_replica_count_bounds(spec) {
        errors.push(e);
    }
}

/// `CheckReplicaCountBoundsAreValid`: the first problem, with its field.
pub fn check_replica_count_bounds(spec: &ScaledObjectSpec) -> Result<(), String> {
    let min = if spec.min_replica_count_set {
        spec.min_replica_count.max(1)
    } else {
        0
    };
    let max = spec.max_replica_count;
    if min > max {
        return Err(format!(
            "spec.minReplicaCount: MinReplicaCount={min} must be less than MaxReplicaCount={max}"
        ));
    }
    if let Some(idle) = spec.idle_replica_count
        && idle >= min
    {
        return Err(format!(
            "spec.idleReplicaCount: IdleReplicaCount={idle} must be less than MinReplicaCount={min}"
        ));
    }
    Ok(())
}

/// `CheckFallbackValid`: thresholds not negative; without scalingModifiers, some trigger that is not cpu
/// or memory.
pub fn check_fallback_valid(spec: &ScaledObjectSpec) -> Result<(), String> {
    let Some(fb) = spec.fallback else {
        return Ok(());
    };
    if fb.failure_threshold < 0 || fb.replicas < 0 {
        return Err(format!(
            "spec.fallback: FailureThreshold={} & Replicas={} must both be greater than or equal to 0",
            fb.failure_threshold, fb.replicas
        ));
    }
    if spec.scaling_modifiers.is_none() && spec.triggers.iter().all(|t| t.is_resource()) {
        return Err(
            "spec.fallback: at least one trigger (that is not cpu or memory) has to have the `AverageValue` type for the fallback to be enabled".to_owned(),
        );
    }
    Ok(())
}

/// `CheckFallbackValid` and the scalingModifiers behavior's requirement.
fn verify_fallback(spec: &ScaledObjectSpec, errors: &mut Vec<String>) {
    let Some(fb) = spec.fallback else {
        return;
    };
    if let Err(e) = check_fallback_valid(spec) {
        errors.push(e);
        return;
    }
    if fb.behavior == FallbackBehavior::ScalingModifiers
        && spec
            .scaling_modifiers
            .as_ref()
            .is_none_or(|m| m.formula.is_empty())
    {
        errors.push(
            "spec.fallback.behavior: scalingModifiers fallback behavior requires scalingModifiers.formula to be defined".to_owned(),
        );
    }
}

/// `ValidateTriggers`: at least one, names unique, `useCachedMetrics` not on cpu, memory or cron.
fn verify_triggers(spec: &ScaledObjectSpec, errors: &mut Vec<String>) {
    if spec.triggers.is_empty() {
        errors.push("spec.triggers: no triggers defined in the ScaledObject/ScaledJob".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        if t.use_cached_metrics && (t.is_resource() || t.kind == "cron") {
            errors.push(format!(
                "spec.triggers[{i}].useCachedMetrics: property \"useCachedMetrics\" is not supported for {:?} scaler",
                t.kind
            ));
        }
        if t.named && !seen.insert(t.name.as_str()) {
            errors.push(format!(
                "spec.triggers[{i}].name: triggerName {:?} is defined multiple times in the ScaledObject/ScaledJob, but it must be unique",
                t.name
            ));
        }
    }
}

/// `ValidateAndCompileScalingModifiers` ([`validate_scaling_modifiers`]): a formula, a target, a formula
/// that compiles and runs over the named non-resource triggers, a target above 0, not Utilization. KEDA
/// stops at the first problem, and so does this; the problem is located at its field.
fn verify_scaling_modifiers(spec: &ScaledObjectSpec, errors: &mut Vec<String>) {
    let Some(m) = &spec.scaling_modifiers else {
        return;
    };
    let path = "spec.advanced.scalingModifiers";
    let Err(e) = validate_scaling_modifiers(
        &m.formula,
        &m.target_text,
        m.metric_type == TriggerMetricType::Utilization,
        &spec.formula_triggers(),
    ) else {
        return;
    };
    let field = match &e {
        ScalingModifiersError::FormulaMandatory | ScalingModifiersError::Formula(_) => "formula",
        ScalingModifiersError::TargetEmpty | ScalingModifiersError::Target(_) => "target",
        ScalingModifiersError::Utilization => "metricType",
    };
    let text = match &e {
        // errors.Join's two lines, on one.
        ScalingModifiersError::Formula(source) => format!("{e}: {source}"),
        _ => e.to_string(),
    };
    errors.push(format!("{path}.{field}: {text}"));
}

/// `verifyCPUMemoryScalers`, the part that needs no cluster: only cpu/memory triggers cannot scale to
/// zero.
fn verify_cpu_memory(spec: &ScaledObjectSpec, errors: &mut Vec<String>) {
    let all_resource = !spec.triggers.is_empty() && spec.triggers.iter().all(|t| t.is_resource());
    if all_resource && spec.min_replica_count == 0 {
        errors.push(
            "spec.minReplicaCount: scaledobject has only cpu/memory triggers AND minReplica is 0 (scale to zero doesn't work in this case)".to_owned(),
        );
    }
}

/// `verifyScaledObjects`' warnings: `pollingInterval` / `cooldownPeriod` written where they change
/// nothing (minReplicaCount above 0 without idle mode; pollingInterval stays relevant with cached metrics).
pub fn warnings(spec: &ScaledObjectSpec, polling_set: bool, cooldown_set: bool) -> Vec<String> {
    let mut out = Vec::new();
    let idle_disabled = spec.idle_replica_count.is_none();
    let cached = spec.triggers.iter().any(|t| t.use_cached_metrics);
    if polling_set && spec.min_replica_count > 0 && idle_disabled && !cached {
        out.push("PollingInterval is configured but is not relevant. PollingInterval is only relevant when minReplicaCount = 0, idleReplicaCount is set, or useCachedMetrics is enabled".to_owned());
    }
    if cooldown_set && spec.min_replica_count > 0 && idle_disabled {
        out.push("CooldownPeriod is configured but is not relevant. CooldownPeriod is only relevant when minReplicaCount = 0 or idleReplicaCount is set".to_owned());
    }
    out
}
