//! Policies as users write them: `autoscaling/v2` `HorizontalPodAutoscaler` and KEDA `ScaledObject`
//! manifests, parsed from YAML, defaulted as the API server defaults them, and validated.
//!
//! Fields the engine does not use (`metadata`, `status`, `scaleTargetRef`, selectors, scaler connection
//! settings) are accepted and ignored, so manifests straight from `kubectl get -o yaml` parse.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::formula::Formula;
use crate::hpa::{
    Behavior, ControllerConfig, HpaSpec, MetricSource, MetricSpec, MetricTarget, PolicyKind,
    ScalingPolicy, ScalingRules, SelectPolicy,
};
use crate::keda::{
    FallbackBehavior, FallbackSpec, ScaledObjectSpec, ScalingModifiers, TriggerMetricType,
    TriggerSpec,
};
use crate::quantity::parse_milli;

/// Why a manifest was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML of the expected shape.
    #[error("{line}:{column}: {message}")]
    Yaml {
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The manifest parsed but is not valid; every problem is listed, one per entry, each naming its field.
    #[error("invalid manifest: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl ManifestError {
    fn yaml(e: &serde_yaml_ng::Error) -> Self {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        // The location is carried separately: keep only the parser's own words.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        Self::Yaml {
            line,
            column,
            message,
        }
    }
}

/// A number or a string, as Kubernetes quantities appear in YAML (`30`, `0.5`, `"500m"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Int(i64),
    Float(f64),
    Text(String),
    /// Anything else (booleans, lists in scaler metadata): never a quantity.
    Other(serde_yaml_ng::Value),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Int(i) => i.to_string(),
            Quantity::Float(f) => f.to_string(),
            Quantity::Text(s) => s.clone(),
            Quantity::Other(v) => format!("{v:?}"),
        }
    }

    fn milli(&self, path: &str, errors: &mut Vec<String>) -> Option<i64> {
        match parse_milli(&self.text()) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                None
            }
        }
    }

    fn float(&self, path: &str, errors: &mut Vec<String>) -> Option<f64> {
        self.milli(path, errors).map(|m| m as f64 / 1000.0)
    }
}

// ---- autoscaling/v2 HorizontalPodAutoscaler ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HpaManifest {
    api_version: Option<String>,
    kind: Option<String>,
    spec: Option<HpaManifestSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HpaManifestSpec {
    min_replicas: Option<i32>,
    max_replicas: Option<i32>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
    behavior: Option<RawBehavior>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetric {
    #[serde(rename = "type")]
    kind: Option<String>,
    resource: Option<RawResource>,
    container_resource: Option<RawResource>,
    pods: Option<RawPods>,
    object: Option<RawObject>,
    external: Option<RawPods>,
}

#[derive(Deserialize)]
struct RawResource {
    name: Option<String>,
    container: Option<String>,
    target: Option<RawTarget>,
}

#[derive(Deserialize)]
struct RawIdentifier {
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawPods {
    metric: Option<RawIdentifier>,
    target: Option<RawTarget>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObject {
    metric: Option<RawIdentifier>,
    described_object: Option<RawDescribed>,
    target: Option<RawTarget>,
}

#[derive(Deserialize)]
struct RawDescribed {
    kind: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTarget {
    #[serde(rename = "type")]
    kind: Option<String>,
    average_utilization: Option<i32>,
    average_value: Option<Quantity>,
    value: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBehavior {
    scale_up: Option<RawRules>,
    scale_down: Option<RawRules>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRules {
    stabilization_window_seconds: Option<i32>,
    select_policy: Option<String>,
    policies: Option<Vec<RawPolicy>>,
    tolerance: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<i32>,
    period_seconds: Option<i32>,
}

/// Parses an `autoscaling/v2` `HorizontalPodAutoscaler` manifest into a defaulted, validated [`HpaSpec`].
pub fn parse_hpa(yaml: &str) -> Result<HpaSpec, ManifestError> {
    let m: HpaManifest = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
    let mut errors = Vec::new();
    match m.api_version.as_deref() {
        Some("autoscaling/v2" | "autoscaling/v2beta2") => {}
        other => errors.push(format!(
            "apiVersion: {other:?} is not supported (expected \"autoscaling/v2\")"
        )),
    }
    if m.kind.as_deref() != Some("HorizontalPodAutoscaler") {
        errors.push(format!(
            "kind: {:?} is not \"HorizontalPodAutoscaler\"",
            m.kind.unwrap_or_default()
        ));
    }
    let Some(spec) = m.spec else {
        errors.push("spec: missing".to_owned());
        return Err(ManifestError::Invalid(errors));
    };
    let min_replicas = spec.min_replicas.unwrap_or(1);
    let max_replicas = match spec.max_replicas {
        Some(v) => v,
        None => {
            errors.push("spec.maxReplicas: missing (it is required)".to_owned());
            0
        }
    };
    if spec.max_replicas.is_some() && max_replicas < 1 {
        errors.push(format!(
            "spec.maxReplicas: {max_replicas} must be at least 1"
        ));
    }
    if min_replicas < 0 {
        errors.push(format!(
            "spec.minReplicas: {min_replicas} must not be negative"
        ));
    }
    if spec.max_replicas.is_some() && min_replicas > max_replicas {
        errors.push(format!(
            "spec.minReplicas: {min_replicas} is greater than spec.maxReplicas ({max_replicas})"
        ));
    }
    let mut metrics = Vec::new();
    for (i, raw) in spec.metrics.iter().enumerate() {
        if let Some(m) = metric(raw, &format!("spec.metrics[{i}]"), &mut errors) {
            metrics.push(m);
        }
    }
    if spec.metrics.is_empty() {
        // API defaulting: CPU at 80 % utilization.
        metrics.push(MetricSpec {
            source: MetricSource::Resource {
                name: "cpu".to_owned(),
            },
            target: MetricTarget::Utilization(80),
        });
    }
    if min_replicas == 0
        && !metrics.iter().any(|m| {
            matches!(
                m.source,
                MetricSource::Object { .. } | MetricSource::External { .. }
            )
        })
    {
        errors.push(
            "spec.minReplicas: 0 needs at least one Object or External metric (HPAScaleToZero)"
                .to_owned(),
        );
    }
    let behavior = spec.behavior.as_ref().map(|b| Behavior {
        scale_up: rules(
            b.scale_up.as_ref(),
            ScalingRules::default_scale_up(),
            "spec.behavior.scaleUp",
            &mut errors,
        ),
        scale_down: rules(
            b.scale_down.as_ref(),
            ScalingRules::default_scale_down(),
            "spec.behavior.scaleDown",
            &mut errors,
        ),
    });
    if !errors.is_empty() {
        return Err(ManifestError::Invalid(errors));
    }
    Ok(HpaSpec {
        min_replicas,
        max_replicas,
        metrics,
        behavior,
        controller: ControllerConfig::default(),
    })
}

fn required<'a, T>(v: &'a Option<T>, path: &str, errors: &mut Vec<String>) -> Option<&'a T> {
    if v.is_none() {
        errors.push(format!("{path}: missing"));
    }
    v.as_ref()
}

fn metric(raw: &RawMetric, path: &str, errors: &mut Vec<String>) -> Option<MetricSpec> {
    let kind = required(&raw.kind, &format!("{path}.type"), errors)?;
    let (source, target, field) = match kind.as_str() {
        "Resource" => {
            let r = required(&raw.resource, &format!("{path}.resource"), errors)?;
            let name = required(&r.name, &format!("{path}.resource.name"), errors)?.clone();
            (MetricSource::Resource { name }, &r.target, "resource")
        }
        "ContainerResource" => {
            let r = required(
                &raw.container_resource,
                &format!("{path}.containerResource"),
                errors,
            )?;
            let name =
                required(&r.name, &format!("{path}.containerResource.name"), errors)?.clone();
            let container = required(
                &r.container,
                &format!("{path}.containerResource.container"),
                errors,
            )?
            .clone();
            (
                MetricSource::ContainerResource { name, container },
                &r.target,
                "containerResource",
            )
        }
        "Pods" => {
            let p = required(&raw.pods, &format!("{path}.pods"), errors)?;
            let metric = required(&p.metric, &format!("{path}.pods.metric"), errors)?;
            let metric =
                required(&metric.name, &format!("{path}.pods.metric.name"), errors)?.clone();
            (MetricSource::Pods { metric }, &p.target, "pods")
        }
        "Object" => {
            let o = required(&raw.object, &format!("{path}.object"), errors)?;
            let metric = required(&o.metric, &format!("{path}.object.metric"), errors)?;
            let metric =
                required(&metric.name, &format!("{path}.object.metric.name"), errors)?.clone();
            let described = required(
                &o.described_object,
                &format!("{path}.object.describedObject"),
                errors,
            )?;
            let kind = described.kind.clone().unwrap_or_default();
            let object = described.name.clone().unwrap_or_default();
            (
                MetricSource::Object {
                    metric,
                    kind,
                    object,
                },
                &o.target,
                "object",
            )
        }
        "External" => {
            let e = required(&raw.external, &format!("{path}.external"), errors)?;
            let metric = required(&e.metric, &format!("{path}.external.metric"), errors)?;
            let metric = required(
                &metric.name,
                &format!("{path}.external.metric.name"),
                errors,
            )?
            .clone();
            (MetricSource::External { metric }, &e.target, "external")
        }
        other => {
            errors.push(format!(
                "{path}.type: unknown metric type {other:?} (expected Resource, ContainerResource, Pods, Object or External)"
            ));
            return None;
        }
    };
    let tpath = format!("{path}.{field}.target");
    let Some(t) = target else {
        errors.push(format!("{tpath}: missing (a metric needs a target)"));
        return None;
    };
    let before = errors.len();
    let target = match t.kind.as_deref() {
        Some("Utilization") => match t.average_utilization {
            Some(u) if u > 0 => Some(MetricTarget::Utilization(u)),
            Some(u) => {
                errors.push(format!(
                    "{tpath}.averageUtilization: {u} must be greater than 0"
                ));
                None
            }
            None => {
                errors.push(format!(
                    "{tpath}.averageUtilization: missing for a Utilization target"
                ));
                None
            }
        },
        Some("AverageValue") => match &t.average_value {
            Some(q) => q
                .milli(&format!("{tpath}.averageValue"), errors)
                .map(MetricTarget::AverageValue),
            None => {
                errors.push(format!(
                    "{tpath}.averageValue: missing for an AverageValue target"
                ));
                None
            }
        },
        Some("Value") => match &t.value {
            Some(q) => q
                .milli(&format!("{tpath}.value"), errors)
                .map(MetricTarget::Value),
            None => {
                errors.push(format!("{tpath}.value: missing for a Value target"));
                None
            }
        },
        Some(other) => {
            errors.push(format!(
                "{tpath}.type: unknown target type {other:?} (expected Utilization, AverageValue or Value)"
            ));
            None
        }
        None => {
            errors.push(format!("{tpath}.type: missing"));
            None
        }
    }?;
    let allowed = match (&source, target) {
        (
            MetricSource::Resource { .. } | MetricSource::ContainerResource { .. },
            MetricTarget::Value(_),
        ) => false,
        (MetricSource::Pods { .. }, t) => matches!(t, MetricTarget::AverageValue(_)),
        (
            MetricSource::Object { .. } | MetricSource::External { .. },
            MetricTarget::Utilization(_),
        ) => false,
        _ => true,
    };
    if !allowed {
        errors.push(format!(
            "{tpath}.type: {target:?} is not a valid target for a {kind} metric"
        ));
    }
    if let MetricTarget::AverageValue(v) | MetricTarget::Value(v) = target
        && v <= 0
    {
        errors.push(format!("{tpath}: the target must be greater than 0"));
    }
    (errors.len() == before).then_some(MetricSpec { source, target })
}

fn rules(
    raw: Option<&RawRules>,
    defaults: ScalingRules,
    path: &str,
    errors: &mut Vec<String>,
) -> ScalingRules {
    let Some(raw) = raw else {
        return defaults;
    };
    let mut out = defaults;
    if let Some(w) = raw.stabilization_window_seconds {
        if !(0..=3600).contains(&w) {
            errors.push(format!(
                "{path}.stabilizationWindowSeconds: {w} must be between 0 and 3600"
            ));
        }
        out.stabilization_window_seconds = Some(w);
    }
    if let Some(p) = &raw.select_policy {
        out.select_policy = match p.as_str() {
            "Max" => SelectPolicy::Max,
            "Min" => SelectPolicy::Min,
            "Disabled" => SelectPolicy::Disabled,
            other => {
                errors.push(format!(
                    "{path}.selectPolicy: {other:?} is not one of Max, Min, Disabled"
                ));
                SelectPolicy::Max
            }
        };
    }
    if let Some(policies) = &raw.policies {
        if policies.is_empty() {
            errors.push(format!("{path}.policies: must specify at least one policy"));
        }
        out.policies = policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let pp = format!("{path}.policies[{i}]");
                let kind = match p.kind.as_deref() {
                    Some("Pods") => PolicyKind::Pods,
                    Some("Percent") => PolicyKind::Percent,
                    other => {
                        errors.push(format!("{pp}.type: {other:?} is not one of Pods, Percent"));
                        return None;
                    }
                };
                let value = p.value.unwrap_or(0);
                if value <= 0 {
                    errors.push(format!("{pp}.value: {value} must be greater than 0"));
                }
                let period_seconds = p.period_seconds.unwrap_or(0);
                if !(1..=1800).contains(&period_seconds) {
                    errors.push(format!(
                        "{pp}.periodSeconds: {period_seconds} must be between 1 and 1800"
                    ));
                }
                Some(ScalingPolicy {
                    kind,
                    value,
                    period_seconds,
                })
            })
            .collect();
    }
    if let Some(t) = &raw.tolerance
        && let Some(v) = t.float(&format!("{path}.tolerance"), errors)
    {
        if v < 0.0 {
            errors.push(format!("{path}.tolerance: {v} must not be negative"));
        }
        out.tolerance = Some(v);
    }
    out
}

// ---- keda.sh/v1alpha1 ScaledObject ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SoManifest {
    api_version: Option<String>,
    kind: Option<String>,
    spec: Option<SoSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SoSpec {
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
#[serde(rename_all = "camelCase")]
struct RawFallback {
    failure_threshold: Option<i32>,
    replicas: Option<i32>,
    behavior: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAdvanced {
    horizontal_pod_autoscaler_config: Option<RawHpaConfig>,
    scaling_modifiers: Option<RawModifiers>,
}

#[derive(Deserialize)]
struct RawHpaConfig {
    behavior: Option<RawBehavior>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModifiers {
    formula: Option<String>,
    target: Option<Quantity>,
    activation_target: Option<Quantity>,
    metric_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    metric_type: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Quantity>,
}

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

/// Parses a KEDA `ScaledObject` manifest into a defaulted, validated [`ScaledObjectSpec`].
///
/// Each trigger's target is read from its metadata (`threshold`, `targetValue`, `value`, `queueLength`,
/// `lagThreshold`, ...) and its activation threshold from the matching `activation...` key.
pub fn parse_scaled_object(yaml: &str) -> Result<ScaledObjectSpec, ManifestError> {
    let m: SoManifest = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
    let mut errors = Vec::new();
    if !m
        .api_version
        .as_deref()
        .is_some_and(|v| v.starts_with("keda.sh/"))
    {
        errors.push(format!(
            "apiVersion: {:?} is not supported (expected \"keda.sh/v1alpha1\")",
            m.api_version.unwrap_or_default()
        ));
    }
    if m.kind.as_deref() != Some("ScaledObject") {
        errors.push(format!(
            "kind: {:?} is not \"ScaledObject\"",
            m.kind.unwrap_or_default()
        ));
    }
    let Some(spec) = m.spec else {
        errors.push("spec: missing".to_owned());
        return Err(ManifestError::Invalid(errors));
    };
    let min = spec.min_replica_count.unwrap_or(0);
    let max = spec.max_replica_count.unwrap_or(100);
    if min < 0 {
        errors.push(format!("spec.minReplicaCount: {min} must not be negative"));
    }
    if min > max {
        errors.push(format!(
            "spec.minReplicaCount: {min} is greater than spec.maxReplicaCount ({max})"
        ));
    }
    if let Some(idle) = spec.idle_replica_count
        && (idle < 0 || idle >= min)
    {
        errors.push(format!(
            "spec.idleReplicaCount: {idle} must be at least 0 and less than spec.minReplicaCount ({min})"
        ));
    }
    for (field, v) in [
        ("pollingInterval", spec.polling_interval),
        ("cooldownPeriod", spec.cooldown_period),
        ("initialCooldownPeriod", spec.initial_cooldown_period),
    ] {
        if v.is_some_and(|v| v < 0) {
            errors.push(format!("spec.{field}: must not be negative"));
        }
    }
    if spec.triggers.is_empty() {
        errors.push("spec.triggers: at least one trigger is required".to_owned());
    }
    let mut triggers = Vec::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        let path = format!("spec.triggers[{i}]");
        let Some(kind) = required(&t.kind, &format!("{path}.type"), &mut errors).cloned() else {
            continue;
        };
        let name = t.name.clone().unwrap_or_else(|| format!("s{i}-{kind}"));
        let metric_type = metric_type(
            t.metric_type.as_deref(),
            &format!("{path}.metricType"),
            &mut errors,
        );
        let key = THRESHOLD_KEYS.iter().find(|k| t.metadata.contains_key(**k));
        let Some(key) = key else {
            errors.push(format!(
                "{path}.metadata: no target found (looked for {})",
                THRESHOLD_KEYS.join(", ")
            ));
            continue;
        };
        let threshold = t
            .metadata
            .get(*key)
            .and_then(|q| q.float(&format!("{path}.metadata.{key}"), &mut errors));
        let activation_key = format!("activation{}{}", key[..1].to_uppercase(), &key[1..]);
        let activation = match t.metadata.get(&activation_key) {
            Some(q) => q.float(&format!("{path}.metadata.{activation_key}"), &mut errors),
            None => Some(0.0),
        };
        if let Some(th) = threshold
            && th <= 0.0
        {
            errors.push(format!(
                "{path}.metadata.{key}: {th} must be greater than 0"
            ));
        }
        if let (Some(threshold), Some(activation_threshold)) = (threshold, activation) {
            triggers.push(TriggerSpec {
                name,
                kind,
                metric_type,
                threshold,
                activation_threshold,
            });
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for t in &triggers {
        if !names.insert(t.name.clone()) {
            errors.push(format!(
                "spec.triggers: trigger name {:?} is used twice",
                t.name
            ));
        }
    }
    let fallback = spec.fallback.as_ref().map(|f| {
        let failure_threshold = f.failure_threshold.unwrap_or(0);
        let replicas = f.replicas.unwrap_or(0);
        if failure_threshold < 0 {
            errors.push(format!("spec.fallback.failureThreshold: {failure_threshold} must not be negative"));
        }
        if replicas < 0 {
            errors.push(format!("spec.fallback.replicas: {replicas} must not be negative"));
        }
        let behavior = match f.behavior.as_deref() {
            None | Some("static") => FallbackBehavior::Static,
            Some("currentReplicas") => FallbackBehavior::CurrentReplicas,
            Some("currentReplicasIfHigher") => FallbackBehavior::CurrentReplicasIfHigher,
            Some("currentReplicasIfLower") => FallbackBehavior::CurrentReplicasIfLower,
            Some(other) => {
                errors.push(format!(
                    "spec.fallback.behavior: {other:?} is not one of static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower"
                ));
                FallbackBehavior::Static
            }
        };
        FallbackSpec {
            failure_threshold,
            replicas,
            behavior,
        }
    });
    let advanced = spec.advanced.as_ref();
    let behavior = advanced
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|h| h.behavior.as_ref())
        .map(|b| Behavior {
            scale_up: rules(
                b.scale_up.as_ref(),
                ScalingRules::default_scale_up(),
                "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp",
                &mut errors,
            ),
            scale_down: rules(
                b.scale_down.as_ref(),
                ScalingRules::default_scale_down(),
                "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown",
                &mut errors,
            ),
        });
    let scaling_modifiers = advanced
        .and_then(|a| a.scaling_modifiers.as_ref())
        .and_then(|m| {
            let path = "spec.advanced.scalingModifiers";
            let formula = required(&m.formula, &format!("{path}.formula"), &mut errors)?.clone();
            match Formula::parse(&formula) {
                Ok(f) => {
                    for v in f.variables() {
                        if !names.contains(&v) {
                            errors.push(format!(
                                "{path}.formula: {v:?} is not the name of a trigger"
                            ));
                        }
                    }
                }
                Err(e) => errors.push(format!("{path}.formula: {e}")),
            }
            let target = required(&m.target, &format!("{path}.target"), &mut errors)?
                .float(&format!("{path}.target"), &mut errors)?;
            if target <= 0.0 {
                errors.push(format!("{path}.target: {target} must be greater than 0"));
            }
            let activation_target = match &m.activation_target {
                Some(q) => q.float(&format!("{path}.activationTarget"), &mut errors)?,
                None => 0.0,
            };
            Some(ScalingModifiers {
                formula,
                target,
                activation_target,
                metric_type: metric_type(
                    m.metric_type.as_deref(),
                    &format!("{path}.metricType"),
                    &mut errors,
                ),
            })
        });
    if !errors.is_empty() {
        return Err(ManifestError::Invalid(errors));
    }
    Ok(ScaledObjectSpec {
        polling_interval_seconds: spec.polling_interval.unwrap_or(30),
        cooldown_period_seconds: spec.cooldown_period.unwrap_or(300),
        initial_cooldown_period_seconds: spec.initial_cooldown_period.unwrap_or(0),
        min_replica_count: min,
        max_replica_count: max,
        idle_replica_count: spec.idle_replica_count,
        triggers,
        fallback,
        scaling_modifiers,
        behavior,
        controller: ControllerConfig::default(),
    })
}

fn metric_type(raw: Option<&str>, path: &str, errors: &mut Vec<String>) -> TriggerMetricType {
    match raw {
        None | Some("AverageValue") => TriggerMetricType::AverageValue,
        Some("Value") => TriggerMetricType::Value,
        Some(other) => {
            errors.push(format!(
                "{path}: {other:?} is not one of AverageValue, Value"
            ));
            TriggerMetricType::AverageValue
        }
    }
}
