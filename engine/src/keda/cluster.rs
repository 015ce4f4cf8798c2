//! The cluster state KEDA's admission webhook reads (`apis/keda/v1alpha1/scaledobject_webhook.go` at
//! kedacore/keda `8b4f083c`), as an input: the engine reads no API server, so the caller says what the
//! ScaledObject's namespace holds.
//!
//! A [`ClusterView`] is built from the Kubernetes objects themselves ([`ClusterView::from_manifests`]:
//! what `kubectl get -o yaml` prints), so a scenario can carry the objects upstream's tests create. Only
//! the kinds and fields the webhook reads are taken; any other kind is refused, never ignored:
//! - `HorizontalPodAutoscaler`: name, `validations.keda.sh/hpa-ownership`, owner references,
//!   `spec.scaleTargetRef` (`verifyHpas`);
//! - `ScaledObject`: name, `spec.scaleTargetRef`, the HPA name it generates (`verifyScaledObjects`);
//! - `Deployment`, `StatefulSet`: the pod template's containers' requests and limits
//!   (`verifyCPUMemoryScalers`);
//! - `LimitRange`: each item's type, `default` and `defaultRequest` (`isContainerResourceLimitSet`);
//! - `CustomResourceDefinition`: the group, versions and kind it serves, standing for the REST mapper
//!   `ParseGVKR` asks about kinds other than Deployment and StatefulSet.
//!
//! Every object is taken to be in the ScaledObject's namespace (the webhook lists in that namespace only).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::annotations::{TRANSFER_HPA_OWNERSHIP, VALIDATIONS_HPA_OWNERSHIP};
use crate::manifest::{ManifestError, Quantity};
use crate::quantity::parse_milli;

/// `scaleTargetRef` of an HPA or a ScaledObject, as written (empty strings when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `apiVersion` (KEDA's default when empty: `apps/v1`).
    #[serde(default)]
    pub api_version: String,
    /// `kind` (KEDA's default when empty: `Deployment`).
    #[serde(default)]
    pub kind: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
}

/// An HPA in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHpa {
    /// `metadata.name`.
    pub name: String,
    /// `validations.keda.sh/hpa-ownership: "false"`: the webhook does not check this HPA.
    pub validation_disabled: bool,
    /// `metadata.ownerReferences` as (kind, name).
    pub owners: Vec<(String, String)>,
    /// `spec.scaleTargetRef`.
    pub target: TargetRef,
}

/// Another ScaledObject in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterScaledObject {
    /// `metadata.name`.
    pub name: String,
    /// `spec.scaleTargetRef`.
    pub target: TargetRef,
    /// The HPA it generates (`getHpaName`).
    pub hpa_name: String,
}

/// A container's `resources`: for each resource name, the request and the limit in milli-units, when
/// written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// `name`.
    pub name: String,
    /// `resources.requests`.
    pub requests: BTreeMap<String, i64>,
    /// `resources.limits`.
    pub limits: BTreeMap<String, i64>,
}

/// A Deployment or StatefulSet in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterWorkload {
    /// `apiVersion` and `kind` (`apps/v1`, `Deployment` or `StatefulSet`) and `metadata.name`.
    pub target: TargetRef,
    /// `spec.template.spec.containers`.
    pub containers: Vec<ContainerResources>,
}

/// One `spec.limits` item of a LimitRange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitRangeItem {
    /// `type` (`Container`, `Pod`, `PersistentVolumeClaim`).
    pub kind: String,
    /// `default` (default limits), milli-units.
    pub default: BTreeMap<String, i64>,
    /// `defaultRequest`, milli-units.
    pub default_request: BTreeMap<String, i64>,
}

/// What the webhook can read of the ScaledObject's namespace, plus whether the request is a dry run
/// (`verifyCPUMemoryScalers` checks nothing then).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// HorizontalPodAutoscalers.
    pub hpas: Vec<ClusterHpa>,
    /// ScaledObjects (the one admitted is skipped by name).
    pub scaled_objects: Vec<ClusterScaledObject>,
    /// Deployments and StatefulSets.
    pub workloads: Vec<ClusterWorkload>,
    /// Every item of every LimitRange.
    pub limit_ranges: Vec<LimitRangeItem>,
    /// Kinds the REST mapper knows besides Deployment and StatefulSet, as (group, version, kind).
    pub custom_kinds: Vec<(String, String, String)>,
    /// The admission request is a dry run (`kubectl apply --dry-run=server`).
    pub dry_run: bool,
}

// ---- Kubernetes objects, only the fields read ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TargetSpec {
    #[serde(default)]
    scale_target_ref: TargetRef,
    #[serde(default)]
    advanced: Option<AdvancedSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AdvancedSpec {
    #[serde(default)]
    horizontal_pod_autoscaler_config: Option<HpaConfigSpec>,
}

#[derive(Deserialize, Default)]
struct HpaConfigSpec {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct WorkloadSpec {
    #[serde(default)]
    template: PodTemplate,
}

#[derive(Deserialize, Default)]
struct PodTemplate {
    #[serde(default)]
    spec: PodSpec,
}

#[derive(Deserialize, Default)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resources: Resources,
}

#[derive(Deserialize, Default)]
struct Resources {
    #[serde(default)]
    requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    limits: BTreeMap<String, Quantity>,
}

#[derive(Deserialize, Default)]
struct LimitRangeSpec {
    #[serde(default)]
    limits: Vec<RawLimitItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLimitItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    default: BTreeMap<String, Quantity>,
    #[serde(default)]
    default_request: BTreeMap<String, Quantity>,
}

#[derive(Deserialize, Default)]
struct CrdSpec {
    #[serde(default)]
    group: String,
    #[serde(default)]
    names: CrdNames,
    #[serde(default)]
    versions: Vec<CrdVersion>,
}

#[derive(Deserialize, Default)]
struct CrdNames {
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
struct CrdVersion {
    #[serde(default)]
    name: String,
}

fn spec_of<T: for<'de> Deserialize<'de> + Default>(
    spec: serde_yaml_ng::Value,
    path: &str,
    errors: &mut Vec<String>,
) -> T {
    if spec.is_null() {
        return T::default();
    }
    serde_yaml_ng::from_value(spec).unwrap_or_else(|e| {
        errors.push(format!("{path}.spec: {e}"));
        T::default()
    })
}

fn milli_map(
    raw: &BTreeMap<String, Quantity>,
    path: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<String, i64> {
    raw.iter()
        .filter_map(|(name, q)| match parse_milli(&q.text()) {
            Ok(v) => Some((name.clone(), v)),
            Err(e) => {
                errors.push(format!("{path}.{name}: {e}"));
                None
            }
        })
        .collect()
}

impl ClusterView {
    /// Reads Kubernetes objects, YAML documents separated by `---` (a document may also be a `List` of
    /// `items`). Every problem is reported with the document's index and the field.
    pub fn from_manifests(yaml: &str) -> Result<Self, ManifestError> {
        let mut view = ClusterView::default();
        let mut errors = Vec::new();
        let mut index = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value =
                serde_yaml_ng::Value::deserialize(doc).map_err(|e| ManifestError::yaml(&e))?;
            if value.is_null() {
                continue;
            }
            let items = match value.get("kind").and_then(serde_yaml_ng::Value::as_str) {
                Some("List") => value
                    .get("items")
                    .and_then(serde_yaml_ng::Value::as_sequence)
                    .cloned()
                    .unwrap_or_default(),
                _ => vec![value],
            };
            for item in items {
                view.add(item, &format!("objects[{index}]"), &mut errors);
                index += 1;
            }
        }
        if errors.is_empty() {
            Ok(view)
        } else {
            Err(ManifestError::Invalid(errors))
        }
    }

    fn add(&mut self, value: serde_yaml_ng::Value, path: &str, errors: &mut Vec<String>) {
        let o: Object = match serde_yaml_ng::from_value(value) {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                return;
            }
        };
        let kind = o.kind.clone().unwrap_or_default();
        let api_version = o.api_version.clone().unwrap_or_default();
        let name = o.metadata.name.clone();
        match kind.as_str() {
            "HorizontalPodAutoscaler" => {
                let spec: TargetSpec = spec_of(o.spec, path, errors);
                self.hpas.push(ClusterHpa {
                    name,
                    validation_disabled: o
                        .metadata
                        .annotations
                        .get(VALIDATIONS_HPA_OWNERSHIP)
                        .is_some_and(|v| v == "false"),
                    owners: o
                        .metadata
                        .owner_references
                        .into_iter()
                        .map(|r| (r.kind, r.name))
                        .collect(),
                    target: spec.scale_target_ref,
                });
            }
            "ScaledObject" => {
                let spec: TargetSpec = spec_of(o.spec, path, errors);
                let custom = spec
                    .advanced
                    .and_then(|a| a.horizontal_pod_autoscaler_config)
                    .map(|h| h.name)
                    .unwrap_or_default();
                self.scaled_objects.push(ClusterScaledObject {
                    hpa_name: hpa_name(&name, &custom),
                    name,
                    target: spec.scale_target_ref,
                });
            }
            "Deployment" | "StatefulSet" => {
                let spec: WorkloadSpec = spec_of(o.spec, path, errors);
                let containers = spec
                    .template
                    .spec
                    .containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let at = format!("{path}.spec.template.spec.containers[{i}].resources");
                        ContainerResources {
                            name: c.name.clone(),
                            requests: milli_map(
                                &c.resources.requests,
                                &format!("{at}.requests"),
                                errors,
                            ),
                            limits: milli_map(&c.resources.limits, &format!("{at}.limits"), errors),
                        }
                    })
                    .collect();
                self.workloads.push(ClusterWorkload {
                    target: TargetRef {
                        api_version,
                        kind,
                        name,
                    },
                    containers,
                });
            }
            "LimitRange" => {
                let spec: LimitRangeSpec = spec_of(o.spec, path, errors);
                for (i, item) in spec.limits.iter().enumerate() {
                    let at = format!("{path}.spec.limits[{i}]");
                    self.limit_ranges.push(LimitRangeItem {
                        kind: item.kind.clone(),
                        default: milli_map(&item.default, &format!("{at}.default"), errors),
                        default_request: milli_map(
                            &item.default_request,
                            &format!("{at}.defaultRequest"),
                            errors,
                        ),
                    });
                }
            }
            "CustomResourceDefinition" => {
                let spec: CrdSpec = spec_of(o.spec, path, errors);
                for v in spec.versions {
                    self.custom_kinds
                        .push((spec.group.clone(), v.name, spec.names.kind.clone()));
                }
            }
            other => errors.push(format!(
                "{path}.kind: {other:?} is not an object KEDA's admission webhook reads (HorizontalPodAutoscaler, ScaledObject, Deployment, StatefulSet, LimitRange, CustomResourceDefinition)"
            )),
        }
    }
}

/// `getHpaName`: the custom name, or `keda-hpa-<name>`.
pub fn hpa_name(so_name: &str, custom: &str) -> String {
    if custom.is_empty() {
        format!("keda-hpa-{so_name}")
    } else {
        custom.to_owned()
    }
}

/// A group, version and kind, as `ParseGVKR` resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gvk {
    group: String,
    version: String,
    kind: String,
}

impl Gvk {
    /// `GVKString`.
    fn text(&self) -> String {
        format!("{}/{}.{}", self.group, self.version, self.kind)
    }
}

/// `ParseGVKR`: defaults (`apps`, `v1`, `Deployment`), `schema.ParseGroupVersion`, and the REST mapper
/// for kinds other than Deployment and StatefulSet (here: the view's CustomResourceDefinitions).
fn parse_gvkr(target: &TargetRef, view: &ClusterView) -> Result<Gvk, String> {
    let (group, version) = match target.api_version.as_str() {
        "" => ("apps".to_owned(), "v1".to_owned()),
        "v1" => (String::new(), "v1".to_owned()),
        gv => match gv.split('/').collect::<Vec<_>>().as_slice() {
            [v] => (String::new(), (*v).to_owned()),
            [g, v] => ((*g).to_owned(), (*v).to_owned()),
            _ => return Err(format!("unexpected GroupVersion string: {gv}")),
        },
    };
    let kind = if target.kind.is_empty() {
        "Deployment".to_owned()
    } else {
        target.kind.clone()
    };
    let mapped = matches!(kind.as_str(), "Deployment" | "StatefulSet")
        || view
            .custom_kinds
            .iter()
            .any(|(g, v, k)| *g == group && *v == version && *k == kind);
    if !mapped {
        return Err(format!(
            "no matches for kind {kind:?} in version {group:?}/{version:?}"
        ));
    }
    Ok(Gvk {
        group,
        version,
        kind,
    })
}

/// What the cluster checks need to know of the ScaledObject admitted.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `spec.scaleTargetRef`.
    pub target: &'a TargetRef,
    /// The HPA it generates (`getHpaName`).
    pub hpa_name: &'a str,
    /// `spec.advanced.horizontalPodAutoscalerConfig.name` as written (empty when not).
    pub custom_hpa_name: &'a str,
    /// `metadata.annotations`.
    pub annotations: &'a BTreeMap<String, String>,
    /// Each trigger's `type` and `metadata.containerName`.
    pub triggers: &'a [(String, String)],
}

/// The webhook's checks that read the cluster, each stopping at its first problem as KEDA's do:
/// `verifyScaledObjects` (another ScaledObject on the workload or on the HPA name), `verifyHpas` (another
/// HPA on the workload not owned by this ScaledObject, unless ownership transfer names it) and
/// `verifyCPUMemoryScalers` (every container, or the one named, has the request or limit of each
/// cpu/memory trigger, or a Container LimitRange defaults it). Errors are located at the field that
/// conflicts.
pub fn verify_cluster(so: Incoming<'_>, view: &ClusterView) -> Vec<String> {
    let mut errors = Vec::new();
    let gvk = match parse_gvkr(so.target, view) {
        Ok(g) => g,
        Err(e) => {
            errors.push(format!("spec.scaleTargetRef: {e}"));
            return errors;
        }
    };
    for check in [verify_scaled_objects, verify_hpas, verify_cpu_memory] {
        if let Err(e) = check(so, &gvk, view) {
            errors.push(e);
        }
    }
    errors
}

fn verify_scaled_objects(so: Incoming<'_>, gvk: &Gvk, view: &ClusterView) -> Result<(), String> {
    for other in &view.scaled_objects {
        if other.name == so.name || other.target.name != so.target.name {
            continue;
        }
        let other_gvk = parse_gvkr(&other.target, view)
            .map_err(|e| format!("spec.scaleTargetRef: ScaledObject {:?}: {e}", other.name))?;
        if other_gvk.text() == gvk.text() {
            return Err(format!(
                "spec.scaleTargetRef: the workload '{}' of type '{}' is already managed by the ScaledObject '{}'",
                other.target.name,
                gvk.text(),
                other.name
            ));
        }
    }
    if let Some(other) = view
        .scaled_objects
        .iter()
        .find(|o| o.name != so.name && o.hpa_name == so.hpa_name)
    {
        return Err(format!(
            "spec.advanced.horizontalPodAutoscalerConfig.name: the HPA '{}' is already managed by the ScaledObject '{}'",
            so.hpa_name, other.name
        ));
    }
    Ok(())
}

fn verify_hpas(so: Incoming<'_>, gvk: &Gvk, view: &ClusterView) -> Result<(), String> {
    for hpa in &view.hpas {
        if hpa.validation_disabled || hpa.target.name != so.target.name {
            continue;
        }
        let hpa_gvk = parse_gvkr(&hpa.target, view)
            .map_err(|e| format!("spec.scaleTargetRef: HPA {:?}: {e}", hpa.name))?;
        if hpa_gvk.text() != gvk.text() {
            continue;
        }
        let owned = hpa
            .owners
            .iter()
            .any(|(kind, name)| kind == "ScaledObject" && name == so.name);
        if owned {
            continue;
        }
        let transfer = so
            .annotations
            .get(TRANSFER_HPA_OWNERSHIP)
            .is_some_and(|v| v == "true");
        if !transfer {
            return Err(format!(
                "spec.scaleTargetRef: the workload '{}' of type '{}' is already managed by the hpa '{}'",
                so.target.name,
                gvk.text(),
                hpa.name
            ));
        }
        if so.custom_hpa_name != hpa.name {
            return Err(format!(
                "spec.advanced.horizontalPodAutoscalerConfig.name: the existing hpa '{}' for workload '{}' of type '{}' must be specified by name in advanced settings to enable ownership transfer",
                hpa.name,
                so.target.name,
                gvk.text()
            ));
        }
    }
    Ok(())
}

fn verify_cpu_memory(so: Incoming<'_>, gvk: &Gvk, view: &ClusterView) -> Result<(), String> {
    let is_resource = |t: &str| t == "cpu" || t == "memory";
    if view.dry_run || !so.triggers.iter().any(|(t, _)| is_resource(t)) {
        return Ok(());
    }
    let kind = gvk.text();
    if kind != "apps/v1.Deployment" && kind != "apps/v1.StatefulSet" {
        return Ok(());
    }
    let workload = view.workloads.iter().find(|w| {
        w.target.name == so.target.name
            && parse_gvkr(&w.target, view).is_ok_and(|g| g.text() == kind)
    });
    let Some(workload) = workload else {
        return Err(format!(
            "spec.scaleTargetRef: {} {:?} not found (the webhook reads it for the cpu/memory triggers)",
            gvk.kind, so.target.name
        ));
    };
    for (i, (resource, container_name)) in so.triggers.iter().enumerate() {
        if !is_resource(resource) {
            continue;
        }
        let unset = workload
            .containers
            .iter()
            .filter(|c| container_name.is_empty() || c.name == *container_name)
            .find(|c| !resource_set(c, resource) && !limit_range_sets(view, resource));
        if let Some(c) = unset {
            return Err(format!(
                "spec.triggers[{i}]: the scaledobject has a {resource} trigger but the container {} doesn't have the {resource} request defined",
                c.name
            ));
        }
    }
    // The scale-to-zero rule needs no cluster: `admission::validate` checks it on the spec.
    Ok(())
}

/// `isWorkloadResourceSet`: a request or a limit written, and one of them above zero.
fn resource_set(c: &ContainerResources, resource: &str) -> bool {
    let request = c.requests.get(resource).copied().unwrap_or(0);
    let limit = c.limits.get(resource).copied().unwrap_or(0);
    request > 0 || limit > 0
}

/// `isContainerResourceLimitSet`: some Container LimitRange item defaults the resource above zero.
fn limit_range_sets(view: &ClusterView, resource: &str) -> bool {
    view.limit_ranges.iter().any(|item| {
        item.kind == "Container"
            && (item.default.get(resource).copied().unwrap_or(0) > 0
                || item.default_request.get(resource).copied().unwrap_or(0) > 0)
    })
}
