//! Headroom: spare capacity of a stated shape kept warm, as the `CapacityBuffer` API
//! (`autoscaling.x-k8s.io/v1beta1`, kubernetes-sigs/karpenter `pkg/apis/crds/`) states it, realised as
//! pause pods with a negative priority so that any provisioner keeps nodes for them and any real pod
//! preempts them.
//!
//! The number of chunks follows Karpenter's controller (`pkg/controllers/capacitybuffer`): `replicas`
//! and `percentage` (of the scalable workload's replicas, rounded up, at least 1) combine by their
//! maximum; `limits` cap that (each limited resource floor-divided by the chunk's request; resources the
//! chunk does not request do not limit); with neither `replicas` nor `percentage`, the limits alone
//! decide. [`Headroom::cost_per_hour`] prices the headroom as the nodes a plan of its pause pods alone
//! would launch.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::pod::Pod;
use crate::provision::{ProvisionInput, plan};
use crate::resources::{parse_cpu, parse_memory};
use crate::source::{Document, LoadError, LoadErrors};

/// The `provisioningStrategy` Karpenter (and surge) act on.
pub const ACTIVE_CAPACITY: &str = "buffer.x-k8s.io/active-capacity";

/// A reference to a workload with a `/scale` subresource.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalableRef {
    #[serde(default)]
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

/// Where a buffer's chunk shape comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufferSource {
    /// A PodTemplate in the buffer's namespace.
    PodTemplate(String),
    /// A workload whose pod template is the shape and whose replicas `percentage` is taken of.
    Scalable(ScalableRef),
}

/// The resource limits of a buffer (`spec.limits`): CPU millicores and memory bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferLimits {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// A `CapacityBuffer`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityBuffer {
    pub name: String,
    pub namespace: String,
    pub source: BufferSource,
    pub replicas: Option<u32>,
    pub percentage: Option<u32>,
    /// None: no `spec.limits`.
    pub limits: Option<BufferLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: RawMeta,
    spec: RawSpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct RawMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    pod_template_ref: Option<RawName>,
    #[serde(default)]
    scalable_ref: Option<ScalableRef>,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    percentage: Option<u32>,
    #[serde(default)]
    limits: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    #[serde(default)]
    provisioning_strategy: Option<String>,
}

#[derive(Deserialize)]
struct RawName {
    name: String,
}

impl CapacityBuffer {
    /// Reads and validates one CapacityBuffer; a field surge cannot honour (another provisioning
    /// strategy, a limit on a resource other than cpu and memory, both or neither reference) is refused
    /// with its path, line and column.
    pub fn from_yaml(text: &str, source: &str) -> Result<CapacityBuffer, LoadErrors> {
        let doc = Document::index(text, source)?;
        let raw: RawBuffer = doc.parse(text)?;
        let mut errors: Vec<LoadError> = Vec::new();
        if raw.api_version != "autoscaling.x-k8s.io/v1beta1" || raw.kind != "CapacityBuffer" {
            errors.push(doc.error(
                "apiVersion",
                format!(
                    "{}/{} is not autoscaling.x-k8s.io/v1beta1 CapacityBuffer",
                    raw.api_version, raw.kind
                ),
            ));
        }
        let strategy = raw.spec.provisioning_strategy.as_deref();
        if strategy.is_some_and(|s| s != ACTIVE_CAPACITY) {
            errors.push(doc.error(
                "spec.provisioningStrategy",
                format!("{strategy:?}: surge provisions only {ACTIVE_CAPACITY}"),
            ));
        }
        let source = match (raw.spec.pod_template_ref, raw.spec.scalable_ref) {
            (Some(t), None) => Some(BufferSource::PodTemplate(t.name)),
            (None, Some(s)) => Some(BufferSource::Scalable(s)),
            _ => {
                errors.push(doc.error(
                    "spec",
                    "exactly one of podTemplateRef and scalableRef must be set",
                ));
                None
            }
        };
        if raw.spec.percentage.is_some() && matches!(source, Some(BufferSource::PodTemplate(_))) {
            errors.push(doc.error(
                "spec.percentage",
                "percentage needs a scalableRef (it is a share of the workload's replicas)",
            ));
        }
        let limits = raw.spec.limits.map(|map| {
            let mut l = BufferLimits::default();
            for (key, value) in &map {
                let path = format!("spec.limits.{key}");
                let text = match value {
                    serde_yaml_ng::Value::String(s) => s.clone(),
                    serde_yaml_ng::Value::Number(n) => n.to_string(),
                    _ => {
                        errors.push(doc.error(&path, "not a quantity"));
                        continue;
                    }
                };
                let parsed = match key.as_str() {
                    "cpu" => parse_cpu(&text).map(|v| l.cpu_millis = Some(v)),
                    "memory" => parse_memory(&text).map(|v| l.memory_bytes = Some(v)),
                    other => Err(format!(
                        "a limit on {other:?}: surge sizes buffers on cpu and memory only"
                    )),
                };
                if let Err(e) = parsed {
                    errors.push(doc.error(&path, e));
                }
            }
            l
        });
        match source {
            Some(source) if errors.is_empty() => Ok(CapacityBuffer {
                name: raw.metadata.name,
                namespace: raw.metadata.namespace.unwrap_or_else(|| "default".into()),
                source,
                replicas: raw.spec.replicas,
                percentage: raw.spec.percentage,
                limits,
            }),
            _ => Err(LoadErrors(errors)),
        }
    }

    /// The number of chunks (pause pods of `chunk`'s shape) to keep; `scalable_replicas` is the
    /// referenced workload's replica count (ignored for a PodTemplate source).
    pub fn chunks(&self, chunk: &Pod, scalable_replicas: u32) -> u32 {
        let mut candidates = Vec::new();
        if let (BufferSource::Scalable(_), Some(pct)) = (&self.source, self.percentage)
            && scalable_replicas > 0
        {
            candidates.push(percentage_replicas(scalable_replicas, pct));
        }
        candidates.extend(self.replicas);
        let desired = candidates.iter().copied().max();
        let by_limits = self.limits.and_then(|l| limit_replicas(&l, chunk));
        match (desired, by_limits) {
            (Some(d), Some(l)) => d.min(l),
            (None, Some(l)) => l,
            (Some(d), None) => d,
            (None, None) => 0,
        }
    }
}

/// How many chunks fit the limits: per limited resource the chunk requests, the limit floor-divided by
/// the request; the least of them. None when no limited resource is requested (the limits do not
/// constrain). Karpenter's `calculateLimitReplicas`.
pub fn limit_replicas(limits: &BufferLimits, chunk: &Pod) -> Option<u32> {
    [
        (limits.cpu_millis, chunk.cpu_millis),
        (limits.memory_bytes, chunk.memory_bytes),
    ]
    .into_iter()
    .filter_map(|(limit, request)| Some((limit?, request)))
    .filter(|(_, request)| *request > 0)
    .map(|(limit, request)| u32::try_from(limit / request).unwrap_or(u32::MAX))
    .min()
}

/// `ceil(replicas × percentage / 100)`, at least 1 when both are positive. Karpenter's
/// `calculatePercentageReplicas`.
pub fn percentage_replicas(scalable_replicas: u32, percentage: u32) -> u32 {
    let n = (u64::from(scalable_replicas) * u64::from(percentage)).div_ceil(100);
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    if n < 1 && percentage > 0 && scalable_replicas > 0 {
        1
    } else {
        n
    }
}

/// Headroom as surge realises it: `replicas` pause pods of `chunk`'s shape in `namespace`, in a
/// Deployment named `name`, at a PriorityClass below every real workload's.
#[derive(Clone, Debug, PartialEq)]
pub struct Headroom {
    pub name: String,
    pub namespace: String,
    pub chunk: Pod,
    pub replicas: u32,
}

/// The PriorityClass pause pods run at: below the default 0, so any pod preempts them.
pub const PAUSE_PRIORITY_CLASS: &str = "surge-headroom";
pub const PAUSE_PRIORITY: i32 = -10;
/// The pause image the Deployment runs.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

impl Headroom {
    /// The headroom a buffer states, for the chunk shape its reference resolves to.
    pub fn from_buffer(buffer: &CapacityBuffer, chunk: &Pod, scalable_replicas: u32) -> Headroom {
        Headroom {
            name: format!("{}-headroom", buffer.name),
            namespace: buffer.namespace.clone(),
            chunk: chunk.clone(),
            replicas: buffer.chunks(chunk, scalable_replicas),
        }
    }

    /// Headroom sized from recent decisions: the largest scale-up (in pods) seen in the window, so the
    /// next one of that size finds its nodes already running.
    pub fn from_recent_scale_ups(
        name: &str,
        namespace: &str,
        chunk: &Pod,
        recent: &[u32],
    ) -> Headroom {
        Headroom {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            chunk: chunk.clone(),
            replicas: recent.iter().copied().max().unwrap_or(0),
        }
    }

    /// The pause pods, named `<namespace>/<name>-<i>`.
    pub fn pods(&self) -> Vec<Pod> {
        (0..self.replicas)
            .map(|i| {
                let mut p = self.chunk.clone();
                p.name = format!("{}/{}-{i}", self.namespace, self.name);
                p
            })
            .collect()
    }

    /// USD per hour of the nodes the pause pods alone would launch from `input`'s pools (its pods,
    /// existing nodes and claims are ignored: the figure is the headroom's own price).
    pub fn cost_per_hour(&self, input: &ProvisionInput<'_>) -> f64 {
        let pods = self.pods();
        plan(&ProvisionInput {
            pods: &pods,
            existing: &[],
            in_flight: &[],
            ..*input
        })
        .cost_per_hour()
    }

    /// The PriorityClass and the pause Deployment, as one YAML stream, for any provisioner to act on.
    pub fn manifests(&self) -> String {
        let mut selector = String::new();
        for (k, v) in &self.chunk.node_selector {
            selector.push_str(&format!("        {k}: {v:?}\n"));
        }
        let node_selector = if selector.is_empty() {
            String::new()
        } else {
            format!("      nodeSelector:\n{selector}")
        };
        let mut tolerations = String::new();
        for t in &self.chunk.tolerations {
            tolerations.push_str(&format!(
                "        - {{key: {:?}, operator: {:?}, value: {:?}{}}}\n",
                t.key,
                t.operator,
                t.value,
                t.effect
                    .map(|e| format!(", effect: {e:?}"))
                    .unwrap_or_default()
            ));
        }
        let tolerations = if tolerations.is_empty() {
            String::new()
        } else {
            format!("      tolerations:\n{tolerations}")
        };
        let affinity = if self.chunk.required_node_affinity.is_empty() {
            String::new()
        } else {
            let terms: Vec<serde_yaml_ng::Value> = self
                .chunk
                .required_node_affinity
                .iter()
                .map(|t| {
                    let mut m = serde_yaml_ng::Mapping::new();
                    m.insert(
                        "matchExpressions".into(),
                        serde_yaml_ng::to_value(t).unwrap_or_default(),
                    );
                    serde_yaml_ng::Value::Mapping(m)
                })
                .collect();
            let text = serde_yaml_ng::to_string(&terms).unwrap_or_default();
            let indented: String = text.lines().map(|l| format!("            {l}\n")).collect();
            format!(
                "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n{indented}"
            )
        };
        format!(
            "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: {PAUSE_PRIORITY_CLASS}
value: {PAUSE_PRIORITY}
preemptionPolicy: Never
globalDefault: false
description: surge headroom pause pods; any workload preempts them.
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app.kubernetes.io/managed-by: surge, surge.dev/headroom: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{surge.dev/headroom: {name}}}
  template:
    metadata:
      labels: {{surge.dev/headroom: {name}}}
    spec:
      priorityClassName: {PAUSE_PRIORITY_CLASS}
      terminationGracePeriodSeconds: 0
{node_selector}{tolerations}{affinity}      containers:
        - name: pause
          image: {PAUSE_IMAGE}
          resources:
            requests: {{cpu: {cpu}m, memory: \"{mem}\"}}
",
            name = self.name,
            namespace = self.namespace,
            replicas = self.replicas,
            cpu = self.chunk.cpu_millis,
            mem = self.chunk.memory_bytes,
        )
    }
}
