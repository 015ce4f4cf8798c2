//! Policies as users write them: `autoscaling/v2` `HorizontalPodAutoscaler` and KEDA `ScaledObject`
//! manifests, parsed from YAML, defaulted as the API server defaults them, and validated.
//!
//! Fields the engine does not use (`metadata`, `status`, `scaleTargetRef`, selectors, scaler connection
//! settings) are accepted and ignored, so manifests straight from `kubectl get -o yaml` parse.

use serde::Deserialize;

use crate::hpa::{
    Behavior, ControllerConfig, HpaSpec, MetricSource, MetricSpec, MetricTarget, PolicyKind,
    ScalingPolicy, ScalingRules, SelectPolicy,
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
    pub(crate) fn yaml(e: &serde_yaml_ng::Error) -> Self {
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
pub(crate) enum Quantity {
    Int(i64),
    Float(f64),
    Text(String),
    /// Anything else (booleans, lists in scaler metadata): never a quantity.
    Other(serde_yaml_ng::Value),
}

impl Quantity {
    pub(crate) fn text(&self) -> String {
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

    pub(crate) fn float(&self, path: &str, errors: &mut Vec<String>) -> Option<f64> {
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
pub(crate) struct RawBehavior {
    pub(crate) scale_up: Option<RawRules>,
    pub(crate) scale_down: Option<RawRules>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRules {
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

pub(crate) fn required<'a, T>(
    v: &'a Option<T>,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<&'a T> {
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

pub(crate) fn rules(
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

// ---- keda.sh/v1alpha1 ScaledObject and ScaledJob: in `crate::keda::manifest` ----

pub use crate::keda::manifest::{
    ScaledObjectStatusInput, admit_scaled_object_update, parse_scaled_job, parse_scaled_object,
    parse_scaled_object_in, parse_scaled_object_status,
};
