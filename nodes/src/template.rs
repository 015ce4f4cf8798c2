//! A Kubernetes pod spec (a Pod's `spec`, a Deployment's or PodTemplate's `template.spec`) read as
//! placement sees it: the pod's effective requests, its nodeSelector, required node affinity and
//! tolerations.
//!
//! The effective request is Kubernetes' (and Karpenter's `resources.RequestsForSpec`): the regular
//! containers plus every sidecar (an init container with `restartPolicy: Always`), or, where larger, the
//! peak of the init phase, where each regular init container runs alone beside the sidecars started
//! before it. Pod overhead is added on top.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::pod::{Pod, Toleration};
use crate::requirements::Requirement;
use crate::resources::{parse_cpu, parse_memory};
use crate::source::{Document, LoadErrors};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodSpec {
    #[serde(default)]
    containers: Vec<RawContainer>,
    #[serde(default)]
    init_containers: Vec<RawContainer>,
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
    #[serde(default)]
    affinity: Option<RawAffinity>,
    #[serde(default)]
    overhead: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    resources: RawResources,
}

#[derive(Deserialize, Default)]
struct RawResources {
    #[serde(default)]
    requests: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAffinity {
    #[serde(default)]
    node_affinity: Option<RawNodeAffinity>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNodeAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Option<RawNodeSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNodeSelector {
    #[serde(default)]
    node_selector_terms: Vec<RawTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTerm {
    #[serde(default)]
    match_expressions: Vec<Requirement>,
}

/// The text of a quantity (`"500m"`, `2`, `1.5`).
fn quantity_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// CPU millicores and memory bytes of a `requests` map; `path` locates an error.
fn requests(
    doc: &Document,
    path: &str,
    map: &BTreeMap<String, serde_yaml_ng::Value>,
    errors: &mut Vec<crate::source::LoadError>,
) -> (u64, u64) {
    let mut read = |key: &str, parse: fn(&str) -> Result<u64, String>| {
        let Some(v) = map.get(key) else { return 0 };
        match quantity_text(v)
            .ok_or_else(|| "not a quantity".to_owned())
            .and_then(|t| parse(&t))
        {
            Ok(n) => n,
            Err(e) => {
                errors.push(doc.error(&format!("{path}.{key}"), e));
                0
            }
        }
    };
    (read("cpu", parse_cpu), read("memory", parse_memory))
}

/// The effective (CPU, memory) request of a pod spec, as `RequestsForSpec` computes it.
fn effective_requests(
    doc: &Document,
    path: &str,
    spec: &RawPodSpec,
    errors: &mut Vec<crate::source::LoadError>,
) -> (u64, u64) {
    let add = |a: (u64, u64), b: (u64, u64)| (a.0.saturating_add(b.0), a.1.saturating_add(b.1));
    let max = |a: (u64, u64), b: (u64, u64)| (a.0.max(b.0), a.1.max(b.1));
    let mut regular = (0, 0);
    for (i, c) in spec.containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}].resources.requests");
        regular = add(regular, requests(doc, &p, &c.resources.requests, errors));
    }
    // Init containers in order: sidecars keep running (they add to the pod for good); a regular init
    // container runs once beside the sidecars started before it.
    let mut sidecars = (0, 0);
    let mut init_peak = (0, 0);
    for (i, c) in spec.init_containers.iter().enumerate() {
        let p = format!("{path}.initContainers[{i}].resources.requests");
        let r = requests(doc, &p, &c.resources.requests, errors);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = add(sidecars, r);
            init_peak = max(init_peak, sidecars);
        } else {
            init_peak = max(init_peak, add(sidecars, r));
        }
    }
    let overhead = requests(doc, &format!("{path}.overhead"), &spec.overhead, errors);
    add(max(add(regular, sidecars), init_peak), overhead)
}

impl RawPodSpec {
    /// The pod placement sees, named `name`; errors name their field under `path`.
    pub(crate) fn to_pod(&self, doc: &Document, path: &str, name: &str) -> Result<Pod, LoadErrors> {
        let mut errors = Vec::new();
        let (cpu, memory) = effective_requests(doc, path, self, &mut errors);
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let terms = self
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| {
                s.node_selector_terms
                    .iter()
                    .map(|t| t.match_expressions.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Pod {
            name: name.to_owned(),
            cpu_millis: cpu,
            memory_bytes: memory,
            node_selector: self.node_selector.clone(),
            required_node_affinity: terms,
            tolerations: self.tolerations.clone(),
            do_not_disrupt: false,
        })
    }
}

#[derive(Deserialize)]
struct RawObject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: RawMeta,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
    #[serde(default)]
    template: Option<RawTemplate>,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTemplate {
    #[serde(default)]
    spec: RawPodSpec,
}

#[derive(Deserialize, Default)]
struct RawWorkloadSpec {
    #[serde(default)]
    template: RawTemplate,
}

#[derive(Deserialize, Default)]
struct RawReplicas {
    #[serde(default)]
    replicas: Option<u32>,
}

/// The pods a YAML stream of Kubernetes objects stands for: a `Pod` or `PodTemplate` is one pod, a
/// Deployment, StatefulSet or ReplicaSet is `spec.replicas` pods (default 1) named `namespace/name-i`.
/// Every document's problems are reported, each with its document number.
pub fn pods_from_k8s_yaml(text: &str, source: &str) -> Result<Vec<Pod>, LoadErrors> {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for (i, part) in crate::nodepool::split_documents(text)
        .into_iter()
        .enumerate()
    {
        if part
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let origin = format!("{source} (document {})", i + 1);
        let pod = match Pod::from_k8s_yaml(part, &origin) {
            Ok(p) => p,
            Err(mut e) => {
                errors.append(&mut e.0);
                continue;
            }
        };
        // The document parsed as a pod spec carrier above, so it parses here too.
        let Ok(object) = serde_yaml_ng::from_str::<RawObject>(part) else {
            continue;
        };
        if !matches!(
            object.kind.as_str(),
            "Deployment" | "StatefulSet" | "ReplicaSet"
        ) {
            pods.push(pod);
            continue;
        }
        let replicas = serde_yaml_ng::from_value::<RawReplicas>(object.spec)
            .ok()
            .and_then(|r| r.replicas)
            .unwrap_or(1);
        for r in 0..replicas {
            let mut p = pod.clone();
            p.name = format!("{}-{r}", pod.name);
            pods.push(p);
        }
    }
    if errors.is_empty() {
        Ok(pods)
    } else {
        Err(LoadErrors(errors))
    }
}

impl Pod {
    /// Reads a Kubernetes object that carries a pod spec: a `Pod` (its `spec`), a `PodTemplate` (its
    /// `template.spec`), or a workload with `spec.template.spec` (Deployment, StatefulSet, ReplicaSet,
    /// Job). The pod is named `namespace/name` of the object.
    pub fn from_k8s_yaml(text: &str, source: &str) -> Result<Pod, LoadErrors> {
        let doc = Document::index(text, source)?;
        let raw: RawObject = doc.parse(text)?;
        let ns = raw.metadata.namespace.as_deref().unwrap_or("default");
        let name = format!("{ns}/{}", raw.metadata.name);
        let from_value = |v: serde_yaml_ng::Value, path: &str| -> Result<RawPodSpec, LoadErrors> {
            serde_yaml_ng::from_value(v)
                .map_err(|e| LoadErrors(vec![doc.error(path, e.to_string())]))
        };
        match raw.kind.as_str() {
            "Pod" => from_value(raw.spec, "spec")?.to_pod(&doc, "spec", &name),
            "PodTemplate" => raw
                .template
                .unwrap_or_default()
                .spec
                .to_pod(&doc, "template.spec", &name),
            "Deployment" | "StatefulSet" | "ReplicaSet" | "Job" | "DaemonSet" => {
                let spec: RawWorkloadSpec = serde_yaml_ng::from_value(raw.spec)
                    .map_err(|e| LoadErrors(vec![doc.error("spec", e.to_string())]))?;
                spec.template.spec.to_pod(&doc, "spec.template.spec", &name)
            }
            other => Err(LoadErrors(vec![doc.error(
                "kind",
                format!("{other:?} carries no pod spec surge reads (Pod, PodTemplate, Deployment, StatefulSet, ReplicaSet, Job, DaemonSet)"),
            )])),
        }
    }
}
