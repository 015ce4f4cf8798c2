//! KEDA manifests as users write them (`keda.sh/v1alpha1` `ScaledObject` and `ScaledJob`), parsed from
//! YAML, defaulted as the CRD defaults them, and admitted as KEDA's webhook admits them
//! ([`super::admission`]).
//!
//! A field surge cannot honour is refused with its path and the reason, never accepted and ignored: spec
//! fields outside KEDA's API are unknown fields. Accepted without effect on decisions, because they act
//! on API objects only: `scaleTargetRef` (the workload is the scenario's or the policy's),
//! `advanced.restoreToOriginalReplicaCount` (acts on deletion), `authenticationRef` and scaler connection
//! metadata (surge reads the values itself), `jobTargetRef` and `rollout` of a ScaledJob.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::annotations::Annotations;
use super::cluster::{ClusterView, Incoming, TargetRef, hpa_name, verify_cluster};
use super::fallback::{HealthStatus, HealthStatusType};
use super::job::{JobScalingStrategy, JobTrigger, MultipleScalersCalculation, ScaledJobSpec};
use super::{
    FallbackBehavior, FallbackSpec, ScaledObjectSpec, ScalingModifiers, TriggerMetricType,
    TriggerSpec, admission,
};
use crate::cron::{CRON_TARGET, CronError};
use crate::hpa::{Behavior, ControllerConfig, ScalingRules};
use crate::manifest::{ManifestError, Quantity, RawBehavior, required, rules};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<S> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<S>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    creation_timestamp: Option<String>,
    #[serde(default)]
    finalizers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SoSpec {
    scale_target_ref: Option<serde_yaml_ng::Value>,
    polling_interval: Option<i32>,
    cooldown_period: Option<i32>,
    initial_cooldown_period: Option<i32>,
    idle_replica_count: Option<i32>,
    min_replica_count: Option<i32>,
    max_replica_count: Option<i32>,
    fallback: Option<RawFallback>,
    advanced: Option<RawAdvanced>,
    #[serde(default)]
    triggers: Vec<RawTrigger>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFallback {
    failure_threshold: Option<i32>,
    replicas: Option<i32>,
    behavior: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAdvanced {
    horizontal_pod_autoscaler_config: Option<RawHpaConfig>,
    #[serde(default)]
    restore_to_original_replica_count: bool,
    scaling_modifiers: Option<RawModifiers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHpaConfig {
    behavior: Option<RawBehavior>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawModifiers {
    formula: Option<String>,
    target: Option<Quantity>,
    activation_target: Option<Quantity>,
    metric_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    metric_type: Option<String>,
    #[serde(default)]
    use_cached_metrics: bool,
    authentication_ref: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    metadata: BTreeMap<String, Quantity>,
}

/// KEDA's one push scaler (`pkg/scalers/external_scaler.go`, `StreamIsActive`).
const PUSH_SCALER: &str = "external-push";

/// Metadata keys that hold a scaler's target, in the order looked for.
const THRESHOLD_KEYS: &[&str] = &[
    "threshold",
    "targetValue",
    "value",
    "queueLength",
    "lagThreshold",
    "listLength",
    "targetPendingTasks",
    "messageCount",
    "desiredReplicas",
];

/// What a `ScaledObject` manifest says about its past (`metadata.creationTimestamp`,
/// `status.lastActiveTime`, `status.health`, `status.conditions` Paused), in ms since the epoch: the
/// inputs a scenario seeds [`super::KedaState`] with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaledObjectStatusInput {
    /// `metadata.creationTimestamp`.
    pub created_ms: Option<i64>,
    /// `status.lastActiveTime`.
    pub last_active_ms: Option<i64>,
    /// `status.health`.
    pub health: BTreeMap<String, HealthStatus>,
}

fn check_kind(api_version: Option<&str>, kind: Option<&str>, want: &str, errors: &mut Vec<String>) {
    if !api_version.is_some_and(|v| v.starts_with("keda.sh/")) {
        errors.push(format!(
            "apiVersion: {:?} is not supported (expected \"keda.sh/v1alpha1\")",
            api_version.unwrap_or_default()
        ));
    }
    if kind != Some(want) {
        errors.push(format!(
            "kind: {:?} is not {want:?}",
            kind.unwrap_or_default()
        ));
    }
}

/// Parses a KEDA `ScaledObject` manifest into a defaulted, admitted [`ScaledObjectSpec`].
///
/// Each External trigger's target is read from its metadata (`threshold`, `targetValue`, `value`,
/// `queueLength`, `lagThreshold`, ...) and its activation threshold from the matching `activation...`
/// key; `cpu` and `memory` triggers read `value` and `containerName` as KEDA's cpu/memory scaler does.
pub fn parse_scaled_object(yaml: &str) -> Result<ScaledObjectSpec, ManifestError> {
    parse_scaled_object_in(yaml, None)
}

/// [`parse_scaled_object`] with the webhook's cluster checks ([`cluster::verify_cluster`]) made against
/// `cluster` when given: another ScaledObject or HPA on the same workload, cpu/memory requests of the
/// target's containers. Without a view those checks are not made (the caller vouches for the cluster).
pub fn parse_scaled_object_in(
    yaml: &str,
    cluster: Option<&ClusterView>,
) -> Result<ScaledObjectSpec, ManifestError> {
    let m: Manifest<SoSpec> = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
    let mut errors = Vec::new();
    check_kind(
        m.api_version.as_deref(),
        m.kind.as_deref(),
        "ScaledObject",
        &mut errors,
    );
    let annotations = Annotations::parse(&m.metadata.annotations).unwrap_or_else(|e| {
        errors.extend(e);
        Annotations::default()
    });
    let Some(spec) = m.spec else {
        errors.push("spec: missing".to_owned());
        return Err(ManifestError::Invalid(errors));
    };
    let min = spec.min_replica_count.unwrap_or(0);
    let max = spec.max_replica_count.unwrap_or(100);
    crd_bounds(&spec, &mut errors);
    let triggers = spec
        .triggers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| trigger(t, &format!("spec.triggers[{i}]"), i, &mut errors))
        .collect::<Vec<_>>();
    let fallback = spec
        .fallback
        .as_ref()
        .and_then(|f| fallback(f, &mut errors));
    let advanced = spec.advanced.as_ref();
    // Acts on deletion only (the target's count is restored when the ScaledObject is deleted).
    let _ = advanced.map(|a| a.restore_to_original_replica_count);
    let hpa_config = advanced.and_then(|a| a.horizontal_pod_autoscaler_config.as_ref());
    let behavior = hpa_config
        .and_then(|h| h.behavior.as_ref())
        .map(|b| behavior(b, &mut errors));
    let scaling_modifiers = advanced
        .and_then(|a| a.scaling_modifiers.as_ref())
        .and_then(|m| modifiers(m, &mut errors));
    let mut so = ScaledObjectSpec {
        warnings: Vec::new(),
        name: m.metadata.name.clone(),
        annotations,
        polling_interval_seconds: spec.polling_interval.unwrap_or(30),
        cooldown_period_seconds: spec.cooldown_period.unwrap_or(300),
        initial_cooldown_period_seconds: spec.initial_cooldown_period.unwrap_or(0),
        min_replica_count: min,
        min_replica_count_set: spec.min_replica_count.is_some(),
        max_replica_count: max,
        idle_replica_count: spec.idle_replica_count,
        triggers,
        fallback,
        scaling_modifiers,
        behavior,
        controller: ControllerConfig::default(),
    };
    // The webhook's checks run on what parsed, so every problem is listed at once.
    let raw_triggers = spec.triggers.len();
    // `verifyCPUMemoryScalers`, which holds the scale-to-zero rule, checks nothing on a dry run.
    let dry_run = cluster.is_some_and(|c| c.dry_run);
    let workload_target = is_workload_target(spec.scale_target_ref.as_ref()) && !dry_run;
    for e in admission::validate(
        &so,
        hpa_config.and_then(|h| h.name.as_deref()),
        workload_target,
    ) {
        // A trigger that did not parse is already reported; it is not missing.
        if raw_triggers > 0 && e.starts_with("spec.triggers: no triggers") {
            continue;
        }
        errors.push(e);
    }
    if let Some(view) = cluster {
        errors.extend(cluster_errors(&m.metadata, &spec, &so, view));
    }
    if !errors.is_empty() {
        return Err(ManifestError::Invalid(errors));
    }
    so.warnings = admission::warnings(
        &so,
        spec.polling_interval.is_some(),
        spec.cooldown_period.is_some(),
    );
    Ok(so)
}

/// The webhook's checks against the cluster, for a ScaledObject that parsed this far.
fn cluster_errors(
    meta: &Metadata,
    spec: &SoSpec,
    so: &ScaledObjectSpec,
    view: &ClusterView,
) -> Vec<String> {
    let target = spec
        .scale_target_ref
        .clone()
        .and_then(|v| serde_yaml_ng::from_value::<TargetRef>(v).ok())
        .unwrap_or_default();
    let custom = spec
        .advanced
        .as_ref()
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|h| h.name.clone())
        .unwrap_or_default();
    let triggers = spec
        .triggers
        .iter()
        .map(|t| {
            let container = t.metadata.get("containerName").map(Quantity::text);
            (
                t.kind.clone().unwrap_or_default(),
                container.unwrap_or_default(),
            )
        })
        .collect::<Vec<_>>();
    let incoming = Incoming {
        name: &so.name,
        target: &target,
        hpa_name: &hpa_name(&so.name, &custom),
        custom_hpa_name: &custom,
        annotations: &meta.annotations,
        triggers: &triggers,
    };
    verify_cluster(incoming, view)
}

/// Admits an update of a ScaledObject from `old_yaml` to `new_yaml` as the webhook's `ValidateUpdate`
/// does: an update that only removes finalizers (the spec unchanged, fewer finalizers) skips the cluster
/// checks, so a ScaledObject whose workload lost its requests can still be deleted. The checks on the
/// spec alone still apply: surge refuses a spec it cannot honour whatever the cluster says, and an
/// unchanged spec passed them when it was created. "Unchanged" compares the `spec` YAML trees (KEDA
/// compares the typed structs with `equality.Semantic`; the trees differ where only the spelling of an
/// equal value differs, such as `1` and `"1"`, which then counts as a change and is checked in full).
pub fn admit_scaled_object_update(
    old_yaml: &str,
    new_yaml: &str,
    cluster: &ClusterView,
) -> Result<ScaledObjectSpec, ManifestError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        metadata: Metadata,
        #[serde(default)]
        spec: serde_yaml_ng::Value,
    }
    let read = |y: &str| serde_yaml_ng::from_str::<Shape>(y).map_err(|e| ManifestError::yaml(&e));
    let (old, new) = (read(old_yaml)?, read(new_yaml)?);
    let removing_finalizer =
        new.metadata.finalizers.len() < old.metadata.finalizers.len() && new.spec == old.spec;
    parse_scaled_object_in(new_yaml, (!removing_finalizer).then_some(cluster))
}

/// `scaleTargetRef` names an `apps/v1` Deployment or StatefulSet (KEDA's defaults when apiVersion or kind
/// is empty); an absent reference counts as one (the workload comes from the caller).
fn is_workload_target(target: Option<&serde_yaml_ng::Value>) -> bool {
    let field = |k: &str| {
        target
            .and_then(|t| t.get(k))
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let api = field("apiVersion");
    let kind = field("kind");
    matches!(api.as_str(), "" | "apps/v1")
        && matches!(kind.as_str(), "" | "Deployment" | "StatefulSet")
}

/// The CRD's OpenAPI minimums and its `minReplicaCount <= maxReplicaCount` rule.
fn crd_bounds(spec: &SoSpec, errors: &mut Vec<String>) {
    for (field, v, minimum) in [
        ("pollingInterval", spec.polling_interval, 1),
        ("cooldownPeriod", spec.cooldown_period, 0),
        ("initialCooldownPeriod", spec.initial_cooldown_period, 0),
        ("idleReplicaCount", spec.idle_replica_count, 0),
        ("minReplicaCount", spec.min_replica_count, 0),
        ("maxReplicaCount", spec.max_replica_count, 1),
    ] {
        if let Some(v) = v
            && v < minimum
        {
            errors.push(format!(
                "spec.{field}: {v} must be greater than or equal to {minimum}"
            ));
        }
    }
    // `minReplicaCount <= maxReplicaCount` (the CRD's rule) and a trigger at least: the webhook's
    // checks say the same (admission).
}

fn trigger(
    raw: &RawTrigger,
    path: &str,
    index: usize,
    errors: &mut Vec<String>,
) -> Option<TriggerSpec> {
    let kind = required(&raw.kind, &format!("{path}.type"), errors)?.clone();
    if kind.is_empty() {
        errors.push(format!("{path}.type: must not be empty"));
        return None;
    }
    if kind == PUSH_SCALER {
        errors.push(format!(
            "{path}.type: {PUSH_SCALER:?} is a push scaler: KEDA also runs its executor whenever the scaler's stream reports activity (between polls, for that trigger alone), which surge does not model; the `external` scaler is the same service polled"
        ));
        return None;
    }
    let named = raw.name.as_deref().is_some_and(|n| !n.is_empty());
    let name = match raw.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => format!("s{index}-{kind}"),
    };
    let _ = &raw.authentication_ref;
    let base = TriggerSpec {
        name,
        named,
        kind: kind.clone(),
        metric_type: TriggerMetricType::AverageValue,
        threshold: 0.0,
        activation_threshold: 0.0,
        container: None,
        use_cached_metrics: raw.use_cached_metrics,
        metadata: raw
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect(),
    };
    if kind == "kubernetes-workload" {
        match base.metadata.get("podSelector") {
            None => errors.push(format!("{path}.metadata.podSelector: missing")),
            Some(sel) => {
                if let Err(e) = super::selector::LabelSelector::parse(sel) {
                    errors.push(format!("{path}.metadata.podSelector: {e}"));
                }
            }
        }
    }
    if kind == "cpu" || kind == "memory" {
        return resource_trigger(raw, base, path, errors);
    }
    let metric_type = metric_type(
        raw.metric_type.as_deref(),
        &format!("{path}.metricType"),
        errors,
    );
    if kind == "cron" {
        return cron_trigger(base, metric_type, path, errors);
    }
    let Some(key) = THRESHOLD_KEYS
        .iter()
        .find(|k| raw.metadata.contains_key(**k))
    else {
        errors.push(format!(
            "{path}.metadata: no target found (looked for {})",
            THRESHOLD_KEYS.join(", ")
        ));
        return None;
    };
    let threshold = raw
        .metadata
        .get(*key)
        .and_then(|q| q.float(&format!("{path}.metadata.{key}"), errors))?;
    let activation_key = format!("activation{}{}", key[..1].to_uppercase(), &key[1..]);
    let activation_threshold = match raw.metadata.get(&activation_key) {
        Some(q) => q.float(&format!("{path}.metadata.{activation_key}"), errors)?,
        None => 0.0,
    };
    if threshold <= 0.0 {
        errors.push(format!(
            "{path}.metadata.{key}: {threshold} must be greater than 0"
        ));
    }
    Some(TriggerSpec {
        metric_type,
        threshold,
        activation_threshold,
        ..base
    })
}

/// KEDA's cron scaler (`pkg/scalers/cron_scaler.go`): the metadata is parsed and validated as KEDA's
/// `parseCronMetadata` does, each problem located at its field; the target is [`CRON_TARGET`] (the
/// trigger has no threshold key), and its activity is its window, not an activation threshold.
///
/// A `timezone` that names no zone is refused here, though KEDA admits it and fails every metric read
/// (`unable to load timezone`): surge refuses what it would only ever fail on.
fn cron_trigger(
    base: TriggerSpec,
    metric_type: TriggerMetricType,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<TriggerSpec> {
    let field = |e: &CronError| match e {
        CronError::Missing(name) => (*name).to_owned(),
        CronError::DesiredReplicas(_) | CronError::NoDesiredReplicas => {
            "desiredReplicas".to_owned()
        }
        CronError::Start(_) => "start".to_owned(),
        CronError::End(_) | CronError::SameStartEnd => "end".to_owned(),
        CronError::TimeZone(_) => "timezone".to_owned(),
        CronError::Metadata(_) => String::new(),
    };
    let located = |e: &CronError| format!("{path}.metadata.{}: {e}", field(e));
    match base.cron() {
        Some(Ok(cron)) => {
            if let Some(e) = cron.zone_error() {
                errors.push(located(e));
                return None;
            }
            Some(TriggerSpec {
                metric_type,
                threshold: CRON_TARGET,
                activation_threshold: 0.0,
                ..base
            })
        }
        Some(Err(CronError::Metadata(all))) => {
            errors.extend(all.iter().map(located));
            None
        }
        Some(Err(e)) => {
            errors.push(located(&e));
            None
        }
        None => None,
    }
}

/// KEDA's cpu/memory scaler (`pkg/scalers/cpu_memory_scaler.go`): `metricType` Utilization (an int32
/// percentage in `value`) or AverageValue (a quantity in `value`), optional `containerName`.
fn resource_trigger(
    raw: &RawTrigger,
    base: TriggerSpec,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<TriggerSpec> {
    for key in raw.metadata.keys() {
        match key.as_str() {
            "value" | "containerName" => {}
            "type" => errors.push(format!(
                "{path}.metadata.type: the 'type' setting is DEPRECATED and is removed in v2.18 - Use 'metricType' instead"
            )),
            other => errors.push(format!(
                "{path}.metadata.{other}: not a setting of the {} scaler (value, containerName)",
                base.kind
            )),
        }
    }
    let container = raw.metadata.get("containerName").map(Quantity::text);
    let value = required(
        &raw.metadata.get("value").cloned(),
        &format!("{path}.metadata.value"),
        errors,
    )?
    .clone();
    let (metric_type, threshold) = match raw.metric_type.as_deref() {
        Some("Utilization") => match value.text().trim().parse::<i32>() {
            Ok(pct) => (TriggerMetricType::Utilization, f64::from(pct)),
            Err(_) => {
                errors.push(format!(
                    "{path}.metadata.value: {:?} is not an integer percentage (Utilization)",
                    value.text()
                ));
                return None;
            }
        },
        Some("AverageValue") => (
            TriggerMetricType::AverageValue,
            value.float(&format!("{path}.metadata.value"), errors)?,
        ),
        other => {
            errors.push(format!(
                "{path}.metricType: unknown metric type: {}, allowed values are 'Utilization' or 'AverageValue'",
                other.unwrap_or_default()
            ));
            return None;
        }
    };
    Some(TriggerSpec {
        metric_type,
        threshold,
        container: container.filter(|c| !c.is_empty()),
        ..base
    })
}

fn fallback(raw: &RawFallback, errors: &mut Vec<String>) -> Option<FallbackSpec> {
    let failure_threshold = *required(
        &raw.failure_threshold,
        "spec.fallback.failureThreshold",
        errors,
    )?;
    let replicas = *required(&raw.replicas, "spec.fallback.replicas", errors)?;
    let behavior = match raw.behavior.as_deref() {
        None | Some("" | "static") => FallbackBehavior::Static,
        Some("currentReplicas") => FallbackBehavior::CurrentReplicas,
        Some("currentReplicasIfHigher") => FallbackBehavior::CurrentReplicasIfHigher,
        Some("currentReplicasIfLower") => FallbackBehavior::CurrentReplicasIfLower,
        Some("scalingModifiers") => FallbackBehavior::ScalingModifiers,
        Some(other) => {
            errors.push(format!(
                "spec.fallback.behavior: {other:?} is not one of static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower, scalingModifiers"
            ));
            return None;
        }
    };
    Some(FallbackSpec {
        failure_threshold,
        replicas,
        behavior,
    })
}

fn behavior(raw: &RawBehavior, errors: &mut Vec<String>) -> Behavior {
    let path = "spec.advanced.horizontalPodAutoscalerConfig.behavior";
    Behavior {
        scale_up: rules(
            raw.scale_up.as_ref(),
            ScalingRules::default_scale_up(),
            &format!("{path}.scaleUp"),
            errors,
        ),
        scale_down: rules(
            raw.scale_down.as_ref(),
            ScalingRules::default_scale_down(),
            &format!("{path}.scaleDown"),
            errors,
        ),
    }
}

/// `scalingModifiers`: all strings in KEDA's API. An empty block is "not used" (`IsUsingModifiers`).
fn modifiers(raw: &RawModifiers, errors: &mut Vec<String>) -> Option<ScalingModifiers> {
    let path = "spec.advanced.scalingModifiers";
    let text = |q: &Option<Quantity>| q.as_ref().map(Quantity::text).unwrap_or_default();
    let formula = raw.formula.clone().unwrap_or_default();
    let target_text = text(&raw.target);
    let activation_text = text(&raw.activation_target);
    let metric_type_text = raw.metric_type.clone().unwrap_or_default();
    if formula.is_empty()
        && target_text.is_empty()
        && activation_text.is_empty()
        && metric_type_text.is_empty()
    {
        return None;
    }
    // The target's validity is the webhook's (admission); here it only needs to be a number if given.
    let target = if target_text.is_empty() {
        0.0
    } else {
        target_text.trim().parse::<f64>().unwrap_or(f64::NAN)
    };
    // KEDA parses activationTarget with ParseFloat at every poll and stops scaling when it fails: refused.
    let activation_target = if activation_text.is_empty() {
        0.0
    } else {
        match activation_text.trim().parse::<f64>() {
            Ok(v) => v,
            Err(_) => {
                errors.push(format!(
                    "{path}.activationTarget: {activation_text:?} is not a number (KEDA's polling loop fails on it at every poll)"
                ));
                return None;
            }
        }
    };
    let metric_type = match metric_type_text.as_str() {
        "" | "AverageValue" => TriggerMetricType::AverageValue,
        "Value" => TriggerMetricType::Value,
        "Utilization" => TriggerMetricType::Utilization,
        other => {
            errors.push(format!(
                "{path}.metricType: {other:?} is not one of AverageValue, Value"
            ));
            return None;
        }
    };
    Some(ScalingModifiers {
        formula,
        target,
        target_text,
        activation_target,
        metric_type,
    })
}

fn metric_type(raw: Option<&str>, path: &str, errors: &mut Vec<String>) -> TriggerMetricType {
    match raw {
        None | Some("" | "AverageValue") => TriggerMetricType::AverageValue,
        Some("Value") => TriggerMetricType::Value,
        Some(other) => {
            errors.push(format!(
                "{path}: {other:?} is not one of AverageValue, Value"
            ));
            TriggerMetricType::AverageValue
        }
    }
}

// ---- status, as inputs ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusManifest {
    #[serde(default)]
    metadata: Metadata,
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    last_active_time: Option<String>,
    #[serde(default)]
    health: BTreeMap<String, RawHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHealth {
    number_of_failures: Option<i32>,
    status: Option<String>,
}

fn timestamp(text: &str, path: &str, errors: &mut Vec<String>) -> Option<i64> {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(e) => {
            errors.push(format!("{path}: {text:?} is not an RFC 3339 time ({e})"));
            None
        }
    }
}

/// Reads `metadata.creationTimestamp`, `status.lastActiveTime` and `status.health` of a ScaledObject
/// manifest (as `kubectl get -o yaml` prints them).
pub fn parse_scaled_object_status(yaml: &str) -> Result<ScaledObjectStatusInput, ManifestError> {
    let m: StatusManifest = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
    let mut errors = Vec::new();
    let created_ms = m
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| timestamp(t, "metadata.creationTimestamp", &mut errors));
    let mut out = ScaledObjectStatusInput {
        created_ms,
        ..Default::default()
    };
    if let Some(status) = m.status {
        out.last_active_ms = status
            .last_active_time
            .as_deref()
            .and_then(|t| timestamp(t, "status.lastActiveTime", &mut errors));
        for (metric, h) in status.health {
            let path = format!("status.health.{metric}");
            let status = match h.status.as_deref() {
                Some("Happy") => HealthStatusType::Happy,
                Some("Failing") => HealthStatusType::Failing,
                other => {
                    errors.push(format!(
                        "{path}.status: {:?} is not Happy or Failing",
                        other.unwrap_or_default()
                    ));
                    continue;
                }
            };
            out.health.insert(
                metric,
                HealthStatus {
                    number_of_failures: h.number_of_failures.unwrap_or(0),
                    status,
                },
            );
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ManifestError::Invalid(errors))
    }
}

// ---- keda.sh/v1alpha1 ScaledJob ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SjSpec {
    job_target_ref: Option<serde_yaml_ng::Value>,
    polling_interval: Option<i32>,
    successful_jobs_history_limit: Option<i32>,
    failed_jobs_history_limit: Option<i32>,
    rollout_strategy: Option<String>,
    rollout: Option<serde_yaml_ng::Value>,
    env_source_container_name: Option<String>,
    min_replica_count: Option<i32>,
    max_replica_count: Option<i32>,
    scaling_strategy: Option<RawJobStrategy>,
    #[serde(default)]
    triggers: Vec<RawTrigger>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawJobStrategy {
    strategy: Option<String>,
    custom_scaling_queue_length_deduction: Option<i32>,
    custom_scaling_running_job_percentage: Option<String>,
    #[serde(default)]
    pending_pod_conditions: Vec<String>,
    multiple_scalers_calculation: Option<String>,
}

/// Parses a KEDA `ScaledJob` manifest (see [`super::job`]).
pub fn parse_scaled_job(yaml: &str) -> Result<ScaledJobSpec, ManifestError> {
    let m: Manifest<SjSpec> = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
    let mut errors = Vec::new();
    check_kind(
        m.api_version.as_deref(),
        m.kind.as_deref(),
        "ScaledJob",
        &mut errors,
    );
    let annotations = Annotations::parse(&m.metadata.annotations).unwrap_or_else(|e| {
        errors.extend(e);
        Annotations::default()
    });
    let Some(spec) = m.spec else {
        errors.push("spec: missing".to_owned());
        return Err(ManifestError::Invalid(errors));
    };
    if spec.job_target_ref.is_none() {
        errors.push("spec.jobTargetRef: missing".to_owned());
    }
    let _ = (
        &spec.rollout_strategy,
        &spec.rollout,
        &spec.env_source_container_name,
    );
    for (field, v, minimum) in [
        ("pollingInterval", spec.polling_interval, 1),
        ("minReplicaCount", spec.min_replica_count, 0),
        ("maxReplicaCount", spec.max_replica_count, 1),
        (
            "successfulJobsHistoryLimit",
            spec.successful_jobs_history_limit,
            0,
        ),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit, 0),
    ] {
        if let Some(v) = v
            && v < minimum
        {
            errors.push(format!(
                "spec.{field}: {v} must be greater than or equal to {minimum}"
            ));
        }
    }
    let raw = spec.scaling_strategy.as_ref();
    let strategy = JobScalingStrategy::from_manifest(
        raw.and_then(|s| s.strategy.as_deref()),
        raw.and_then(|s| s.custom_scaling_queue_length_deduction),
        raw.and_then(|s| s.custom_scaling_running_job_percentage.as_deref()),
    )
    .unwrap_or_else(|| {
        errors.push(format!(
            "spec.scalingStrategy.strategy: {:?} is not one of default, custom, accurate, eager",
            raw.and_then(|s| s.strategy.clone()).unwrap_or_default()
        ));
        JobScalingStrategy::Default
    });
    let calculation = match raw.and_then(|s| s.multiple_scalers_calculation.as_deref()) {
        None | Some("" | "max") => MultipleScalersCalculation::Max,
        Some("min") => MultipleScalersCalculation::Min,
        Some("avg") => MultipleScalersCalculation::Avg,
        Some("sum") => MultipleScalersCalculation::Sum,
        Some(other) => {
            errors.push(format!(
                "spec.scalingStrategy.multipleScalersCalculation: {other:?} is not one of min, avg, sum, max"
            ));
            MultipleScalersCalculation::Max
        }
    };
    if spec.triggers.is_empty() {
        errors.push("spec.triggers: no triggers defined in the ScaledObject/ScaledJob".to_owned());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut triggers = Vec::new();
    for (i, raw) in spec.triggers.iter().enumerate() {
        let path = format!("spec.triggers[{i}]");
        let Some(t) = trigger(raw, &path, i, &mut errors) else {
            continue;
        };
        if t.is_resource() {
            errors.push(format!(
                "{path}.type: {:?} triggers do not drive a ScaledJob (KEDA skips cpu/memory scalers for jobs)",
                t.kind
            ));
            continue;
        }
        if t.use_cached_metrics && t.kind == "cron" {
            errors.push(format!(
                "{path}.useCachedMetrics: property \"useCachedMetrics\" is not supported for \"cron\" scaler"
            ));
        }
        if t.named && !names.insert(t.name.clone()) {
            errors.push(format!(
                "{path}.name: triggerName {:?} is defined multiple times in the ScaledObject/ScaledJob, but it must be unique",
                t.name
            ));
        }
        triggers.push(JobTrigger {
            name: t.name,
            kind: t.kind,
            target: t.threshold,
            activation_threshold: t.activation_threshold,
        });
    }
    if !errors.is_empty() {
        return Err(ManifestError::Invalid(errors));
    }
    Ok(ScaledJobSpec {
        name: m.metadata.name.clone(),
        paused: annotations.paused,
        polling_interval_seconds: spec.polling_interval.unwrap_or(30),
        min_replica_count: spec.min_replica_count,
        max_replica_count: spec.max_replica_count,
        strategy,
        multiple_scalers_calculation: calculation,
        pending_pod_conditions: raw
            .map(|s| s.pending_pod_conditions.clone())
            .unwrap_or_default(),
        successful_jobs_history_limit: spec
            .successful_jobs_history_limit
            .unwrap_or(super::job::DEFAULT_JOBS_HISTORY_LIMIT),
        failed_jobs_history_limit: spec
            .failed_jobs_history_limit
            .unwrap_or(super::job::DEFAULT_JOBS_HISTORY_LIMIT),
        triggers,
    })
}
