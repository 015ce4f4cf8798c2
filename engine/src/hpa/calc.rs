//! Per-metric replica proposals: upstream `replica_calculator.go` and `metrics/utilization.go`.
//!
//! Arithmetic follows Go: milli-unit `int64` values, sums that cannot overflow (upstream falls back to
//! `big.Int`; here `i128`), integer division truncating toward zero, `float64` ratios and `math.Ceil`.
//! Float-to-`int32` conversions saturate (Go's are undefined out of range; upstream caps the paths it
//! guards at `MaxInt32`).

use std::collections::{BTreeMap, BTreeSet};

use crate::decision::{Condition, MetricProposal, PodCounts, PodGroupNames};

use super::{
    ConditionStatus, ControllerConfig, HpaInput, HpaSpec, MetricSample, MetricSource, MetricSpec,
    MetricTarget, PodInfo, PodPhase, Tolerances,
};

/// One pod's sample in milli-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSample {
    /// Milli-units.
    pub value: i64,
    /// When taken, ms since the epoch.
    pub timestamp_ms: i64,
    /// Window covered, ms.
    pub window_ms: i64,
}

/// Per-pod samples keyed by pod name (`PodMetricsInfo`).
pub type PodSamples = BTreeMap<String, PodSample>;

/// The result of `computeReplicasForMetrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// The maximum proposal and the metric that gave it; `None` when upstream returns -1 (all metrics
    /// invalid, or some invalid and the valid ones would scale down).
    pub replicas: Option<(i32, String)>,
    /// One per metric.
    pub proposals: Vec<MetricProposal>,
    /// `invalid metrics (N invalid out of M), first error is: ...`.
    pub error: Option<String>,
    /// The condition of the first invalid metric.
    pub condition: Option<Condition>,
}

/// A replica proposal from one calculator function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// Proposed replicas.
    pub replicas: i32,
    /// Current usage in milli-units (average per pod or total, as upstream reports it).
    pub usage: i64,
    /// Current utilization percent (Utilization targets only).
    pub utilization: Option<i32>,
    /// The usage ratio.
    pub ratio: f64,
    /// The ratio after rebalancing missing/unready pods, when computed.
    pub rebalanced_ratio: Option<f64>,
    /// Kept current replicas because of tolerance or a direction flip.
    pub within_tolerance: bool,
    /// Pod classification, for per-pod metrics.
    pub pods: Option<PodCounts>,
}

/// `int32(math.Ceil(x))`, saturating (NaN → 0).
pub fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c.is_nan() {
        0
    } else if c >= f64::from(i32::MAX) {
        i32::MAX
    } else if c <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        c as i32
    }
}

fn i128_to_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `computeReplicasForMetrics`: the maximum proposal over the metrics, with the partial-failure rule.
pub fn compute_replicas_for_metrics(
    spec: &HpaSpec,
    input: &HpaInput,
    tolerances: Tolerances,
    now_ms: i64,
) -> Computed {
    let spec_replicas = input.current_replicas;
    let mut replicas: i32 = 0;
    let mut metric = String::new();
    let mut invalid = 0usize;
    let mut first_error: Option<String> = None;
    let mut first_condition: Option<Condition> = None;
    let mut proposals = Vec::with_capacity(spec.metrics.len());
    for (i, metric_spec) in spec.metrics.iter().enumerate() {
        let sample = input.metrics.get(i);
        let (proposal, failure) = compute_replicas_for_metric(
            metric_spec,
            sample,
            input,
            &spec.controller,
            tolerances,
            now_ms,
        );
        match failure {
            Some((error, condition)) => {
                if invalid == 0 {
                    first_error = Some(error);
                    first_condition = Some(condition);
                }
                invalid += 1;
            }
            None => {
                let p = proposal.proposal.unwrap_or(0);
                if replicas == 0 || p > replicas {
                    replicas = p;
                    metric = proposal.name.clone();
                }
            }
        }
        proposals.push(proposal);
    }
    let error = first_error.map(|e| {
        format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
            spec.metrics.len()
        )
    });
    if spec.metrics.is_empty() {
        return Computed {
            replicas: None,
            proposals,
            error: Some("the HPA has no metrics".to_owned()),
            condition: None,
        };
    }
    if invalid >= spec.metrics.len() || (invalid > 0 && replicas < spec_replicas) {
        return Computed {
            replicas: None,
            proposals,
            error,
            condition: first_condition,
        };
    }
    Computed {
        replicas: Some((replicas, metric)),
        proposals,
        error,
        condition: None,
    }
}

/// Upstream's name for a metric (`metricNameProposal`).
pub fn metric_name(spec: &MetricSpec) -> String {
    match (&spec.source, &spec.target) {
        (MetricSource::Resource { name }, MetricTarget::Utilization(_)) => {
            format!("{name} resource utilization (percentage of request)")
        }
        (MetricSource::Resource { name }, _) => format!("{name} resource"),
        (MetricSource::ContainerResource { name, .. }, MetricTarget::Utilization(_)) => {
            format!("{name} container resource utilization (percentage of request)")
        }
        (MetricSource::ContainerResource { name, .. }, _) => format!("{name} container resource"),
        (MetricSource::Pods { metric }, _) => format!("pods metric {metric}"),
        (MetricSource::Object { metric, kind, .. }, _) => format!("{kind} metric {metric}"),
        (MetricSource::External { metric }, _) => format!("external metric {metric}"),
    }
}

fn failure_reason(source: &MetricSource) -> &'static str {
    match source {
        MetricSource::Resource { .. } => "FailedGetResourceMetric",
        MetricSource::ContainerResource { .. } => "FailedGetContainerResourceMetric",
        MetricSource::Pods { .. } => "FailedGetPodsMetric",
        MetricSource::Object { .. } => "FailedGetObjectMetric",
        MetricSource::External { .. } => "FailedGetExternalMetric",
    }
}

/// `computeReplicasForMetric`: one metric's proposal, or why it failed (error and condition).
pub fn compute_replicas_for_metric(
    spec: &MetricSpec,
    sample: Option<&MetricSample>,
    input: &HpaInput,
    config: &ControllerConfig,
    tolerances: Tolerances,
    now_ms: i64,
) -> (MetricProposal, Option<(String, Condition)>) {
    let name = metric_name(spec);
    let mut out = MetricProposal {
        name: name.clone(),
        current_milli: None,
        current_utilization: None,
        target: spec.target,
        ratio: None,
        rebalanced_ratio: None,
        proposal: None,
        within_tolerance: false,
        pods: None,
        pod_groups: None,
        error: None,
    };
    if let Some((counts, names)) = group_names(spec, sample, input, config, now_ms) {
        out.pods = Some(counts);
        out.pod_groups = Some(names);
    }
    match compute(spec, sample, input, config, tolerances, now_ms) {
        Ok(p) => {
            out.current_milli = Some(p.usage);
            out.current_utilization = p.utilization;
            out.ratio = Some(p.ratio);
            out.rebalanced_ratio = p.rebalanced_ratio;
            out.proposal = Some(p.replicas);
            out.within_tolerance = p.within_tolerance;
            if p.pods.is_some() {
                out.pods = p.pods;
            }
            (out, None)
        }
        Err(e) => {
            let prefix = match &spec.source {
                MetricSource::Resource { name } => {
                    format!("failed to get {name} resource metric value")
                }
                MetricSource::ContainerResource { name, .. } => {
                    format!("failed to get {name} container metric value")
                }
                MetricSource::Pods { .. } => "failed to get pods metric value".to_owned(),
                MetricSource::Object { .. } => "failed to get object metric value".to_owned(),
                MetricSource::External { .. } => "failed to get external metric value".to_owned(),
            };
            let error = format!("{prefix}: {e}");
            out.error = Some(error.clone());
            let condition = Condition::new(
                "ScalingActive",
                false,
                failure_reason(&spec.source),
                format!("the HPA was unable to compute the replica count: {error}"),
            );
            (out, Some((error, condition)))
        }
    }
}

/// For a per-pod metric whose samples arrived and whose selector matched pods: `groupPods`' classes, as
/// counts and as the names of the pods left out (ready pods are only counted). Computed whether or not
/// a proposal follows, so a decision that could not propose still says which pods were unready,
/// missing or ignored.
fn group_names(
    spec: &MetricSpec,
    sample: Option<&MetricSample>,
    input: &HpaInput,
    config: &ControllerConfig,
    now_ms: i64,
) -> Option<(PodCounts, PodGroupNames)> {
    let resource = match &spec.source {
        MetricSource::Resource { name } | MetricSource::ContainerResource { name, .. } => {
            Some(name.as_str())
        }
        MetricSource::Pods { .. } => None,
        MetricSource::Object { .. } | MetricSource::External { .. } => return None,
    };
    let Some(MetricSample::PerPod(map)) = sample else {
        return None;
    };
    if input.pods.is_empty() {
        return None;
    }
    let cpu = resource == Some("cpu");
    let mut counts = PodCounts::default();
    let mut names = PodGroupNames::default();
    for pod in &input.pods {
        let metric = map.get(&pod.name).map(|m| PodSample {
            value: m.milli,
            timestamp_ms: m.timestamp_ms,
            window_ms: m.window_ms,
        });
        match classify_pod(pod, metric.as_ref(), cpu, config, now_ms) {
            PodClass::Ready => counts.ready += 1,
            PodClass::Unready => {
                counts.unready += 1;
                names.unready.push(pod.name.clone());
            }
            PodClass::Missing => {
                counts.missing += 1;
                names.missing.push(pod.name.clone());
            }
            PodClass::Ignored => {
                counts.ignored += 1;
                names.ignored.push(pod.name.clone());
            }
        }
    }
    Some((counts, names))
}

/// Per-pod samples in name order (the order of the input map), borrowing the names.
fn per_pod_samples<'a>(
    sample: Option<&'a MetricSample>,
    what: &str,
) -> Result<Vec<(&'a str, PodSample)>, String> {
    match sample {
        Some(MetricSample::PerPod(map)) => Ok(map
            .iter()
            .map(|(pod, m)| {
                (
                    pod.as_str(),
                    PodSample {
                        value: m.milli,
                        timestamp_ms: m.timestamp_ms,
                        window_ms: m.window_ms,
                    },
                )
            })
            .collect()),
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected per-pod samples for {what}")),
        None => Err(format!("no sample for {what}")),
    }
}

fn object_value(sample: Option<&MetricSample>, what: &str) -> Result<i64, String> {
    match sample {
        Some(MetricSample::Object(v)) => Ok(*v),
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected one object value for {what}")),
        None => Err(format!("no sample for {what}")),
    }
}

fn external_values<'a>(sample: Option<&'a MetricSample>, what: &str) -> Result<&'a [i64], String> {
    match sample {
        Some(MetricSample::External(vs)) => {
            if vs.is_empty() {
                return Err(format!(
                    "unable to get external metric {what}: no metrics returned from external metrics API"
                ));
            }
            Ok(vs)
        }
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected external series for {what}")),
        None => Err(format!("no sample for {what}")),
    }
}

/// `GetExternalMetricReplicas`' sum: stops at `MaxInt64` when a positive value would overflow it
/// ("Cap at MaxInt64 for positive overflow"); a negative overflow wraps, as Go's `int64` addition does.
pub fn external_usage(values: &[i64]) -> i64 {
    let mut usage: i64 = 0;
    for &v in values {
        if v > 0 && usage > i64::MAX - v {
            return i64::MAX;
        }
        usage = usage.wrapping_add(v);
    }
    usage
}

/// `GetExternalPerPodMetricReplicas`' sum: Go's wrapping addition, and `MaxInt64` as soon as the running
/// total is negative ("the only way we would ever get here is because of an Int64 overflow" — also
/// reached by negative values, as upstream).
pub fn external_per_pod_usage(values: &[i64]) -> i64 {
    let mut usage: i64 = 0;
    for &v in values {
        usage = usage.wrapping_add(v);
        if usage < 0 {
            return i64::MAX;
        }
    }
    usage
}

fn compute(
    spec: &MetricSpec,
    sample: Option<&MetricSample>,
    input: &HpaInput,
    config: &ControllerConfig,
    tolerances: Tolerances,
    now_ms: i64,
) -> Result<Proposal, String> {
    let current = input.current_replicas;
    let invalid_target = |t: i64| {
        if t <= 0 {
            Err(format!("invalid target {t}: targets must be positive"))
        } else {
            Ok(())
        }
    };
    match (&spec.source, spec.target) {
        (MetricSource::Resource { name }, target)
        | (MetricSource::ContainerResource { name, .. }, target) => {
            let container = match &spec.source {
                MetricSource::ContainerResource { container, .. } => Some(container.as_str()),
                _ => None,
            };
            let samples = per_pod_samples(sample, name)?;
            if samples.is_empty() {
                return Err(format!(
                    "unable to get metrics for resource {name}: no metrics returned from resource metrics API"
                ));
            }
            match target {
                MetricTarget::Utilization(t) => {
                    invalid_target(i64::from(t))?;
                    resource_replicas(
                        current,
                        t,
                        name,
                        container,
                        tolerances,
                        &input.pods,
                        &samples,
                        config,
                        now_ms,
                    )
                }
                MetricTarget::AverageValue(t) => {
                    invalid_target(t)?;
                    plain_metric_replicas(
                        &samples,
                        current,
                        t,
                        tolerances,
                        &input.pods,
                        Some(name),
                        config,
                        now_ms,
                    )
                }
                MetricTarget::Value(_) => Err(
                    "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set"
                        .to_owned(),
                ),
            }
        }
        (MetricSource::Pods { metric }, MetricTarget::AverageValue(t)) => {
            invalid_target(t)?;
            let samples = per_pod_samples(sample, metric)?;
            if samples.is_empty() {
                return Err(format!(
                    "unable to get metric {metric}: no metrics returned from custom metrics API"
                ));
            }
            plain_metric_replicas(
                &samples,
                current,
                t,
                tolerances,
                &input.pods,
                None,
                config,
                now_ms,
            )
        }
        (MetricSource::Object { metric, .. }, MetricTarget::Value(t)) => {
            invalid_target(t)?;
            let usage = object_value(sample, metric)?;
            let ratio = usage as f64 / t as f64;
            get_usage_ratio_replica_count(current, ratio, tolerances, &input.pods).map(
                |(replicas, within)| Proposal {
                    replicas,
                    usage,
                    utilization: None,
                    ratio,
                    rebalanced_ratio: None,
                    within_tolerance: within,
                    pods: None,
                },
            )
        }
        (MetricSource::Object { metric, .. }, MetricTarget::AverageValue(t)) => {
            invalid_target(t)?;
            let usage = object_value(sample, metric)?;
            Ok(object_per_pod_replicas(
                input.status_replicas,
                t,
                usage,
                tolerances,
            ))
        }
        (MetricSource::External { metric }, MetricTarget::Value(t)) => {
            invalid_target(t)?;
            let usage = external_usage(external_values(sample, metric)?);
            let ratio = usage as f64 / t as f64;
            get_usage_ratio_replica_count(current, ratio, tolerances, &input.pods).map(
                |(replicas, within)| Proposal {
                    replicas,
                    usage,
                    utilization: None,
                    ratio,
                    rebalanced_ratio: None,
                    within_tolerance: within,
                    pods: None,
                },
            )
        }
        (MetricSource::External { metric }, MetricTarget::AverageValue(t)) => {
            invalid_target(t)?;
            let usage = external_per_pod_usage(external_values(sample, metric)?);
            Ok(external_per_pod_replicas(
                input.status_replicas,
                t,
                usage,
                tolerances,
            ))
        }
        (source, target) => Err(format!(
            "target {target:?} is not valid for a {} metric",
            match source {
                MetricSource::Resource { .. } => "Resource",
                MetricSource::ContainerResource { .. } => "ContainerResource",
                MetricSource::Pods { .. } => "Pods",
                MetricSource::Object { .. } => "Object",
                MetricSource::External { .. } => "External",
            }
        )),
    }
}

/// Pod groups from `groupPods`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodGroups {
    /// Pods whose metric is used.
    pub ready_count: usize,
    /// Pending pods, and for CPU pods still initializing.
    pub unready: BTreeSet<String>,
    /// Pods without a sample.
    pub missing: BTreeSet<String>,
    /// Deleting or Failed pods.
    pub ignored: BTreeSet<String>,
}

/// How `groupPods` classifies one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodClass {
    Ready,
    Unready,
    Missing,
    Ignored,
}

/// `groupPods` for one pod, given its sample. `cpu`: the CPU readiness rules apply.
fn classify_pod(
    pod: &PodInfo,
    metric: Option<&PodSample>,
    cpu: bool,
    config: &ControllerConfig,
    now_ms: i64,
) -> PodClass {
    if pod.deleting || pod.phase == PodPhase::Failed {
        return PodClass::Ignored;
    }
    if pod.phase == PodPhase::Pending {
        return PodClass::Unready;
    }
    let Some(metric) = metric else {
        return PodClass::Missing;
    };
    if cpu {
        let unready = match (pod.ready, pod.start_ms) {
            (None, _) | (_, None) => true,
            (Some(status), Some(start)) => {
                let transition = pod.ready_transition_ms;
                if start.saturating_add(config.cpu_initialization_period_ms) > now_ms {
                    // Still initializing: ignore the sample if the pod is unready, or if no full
                    // metric window has passed since the last readiness transition.
                    status == ConditionStatus::False
                        || metric.timestamp_ms < transition.saturating_add(metric.window_ms)
                } else {
                    // Ignore the sample if the pod is unready and has never been ready.
                    status == ConditionStatus::False
                        && start.saturating_add(config.delay_of_initial_readiness_status_ms)
                            > transition
                }
            }
        };
        if unready {
            return PodClass::Unready;
        }
    }
    PodClass::Ready
}

/// `groupPods`: classify pods as ready, unready, missing or ignored. The CPU readiness rules apply when
/// `resource` is `cpu`.
pub fn group_pods(
    pods: &[PodInfo],
    metrics: &PodSamples,
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> PodGroups {
    let cpu = resource == Some("cpu");
    let mut g = PodGroups::default();
    for pod in pods {
        match classify_pod(pod, metrics.get(&pod.name), cpu, config, now_ms) {
            PodClass::Ignored => {
                g.ignored.insert(pod.name.clone());
            }
            PodClass::Unready => {
                g.unready.insert(pod.name.clone());
            }
            PodClass::Missing => {
                g.missing.insert(pod.name.clone());
            }
            PodClass::Ready => g.ready_count += 1,
        }
    }
    g
}

/// `calculateRequests` per pod, in `pods` order; the first error in pod order, as upstream.
fn pod_requests(
    pods: &[PodInfo],
    container: Option<&str>,
    resource: &str,
) -> Result<Vec<i64>, String> {
    pods.iter()
        .map(|pod| pod_request(pod, container, resource))
        .collect()
}

/// One pod's request for `resource`, as `calculateRequests` decides it (v1.36, `PodLevelResources` on,
/// its default since 1.34): the pod-level requests when the pod sets any and the metric names no
/// container (KEP-2837), else the sum over the regular containers and the restartable init containers
/// (or the one named container among them).
pub fn pod_request(pod: &PodInfo, container: Option<&str>, resource: &str) -> Result<i64, String> {
    if container.is_none() && pod_level_requests_set(pod) {
        return pod_level_request(pod, resource);
    }
    requests_from_containers(pod, container, resource)
}

/// `resourcehelpers.IsSupportedPodLevelResource`: cpu, memory and huge pages.
fn supported_pod_level_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory") || name.starts_with("hugepages-")
}

/// `resourcehelpers.IsPodLevelRequestsSet`.
fn pod_level_requests_set(pod: &PodInfo) -> bool {
    pod.pod_requests
        .as_ref()
        .is_some_and(|r| r.keys().any(|k| supported_pod_level_resource(k)))
}

/// `calculatePodLevelRequests`: `resourcehelpers.PodRequests(pod, {})[resource]`, i.e. the pod-level
/// request where the pod sets one for a supported resource, else the containers' aggregate (regular and
/// sidecar containers summed, init containers as the maximum they need while they run), plus the pod's
/// overhead.
fn pod_level_request(pod: &PodInfo, resource: &str) -> Result<i64, String> {
    let pod_level = pod
        .pod_requests
        .as_ref()
        .and_then(|r| r.get(resource))
        .filter(|_| supported_pod_level_resource(resource));
    let request = match pod_level {
        Some(r) => Some(*r),
        None => aggregate_container_request(pod, resource),
    };
    let request = match (request, pod.overhead.get(resource)) {
        (Some(r), Some(o)) => Some(r.saturating_add(*o)),
        (r, o) => r.or(o.copied()),
    };
    request.ok_or_else(|| {
        format!(
            "missing pod-level request for {resource} in Pod {}",
            pod.name
        )
    })
}

/// `resourcehelpers.AggregateContainerRequests` for one resource; `None` when no container names it.
/// Each init container needs its own request plus the sidecars started before it; the pod needs the
/// most of those and of the regular containers plus all sidecars.
fn aggregate_container_request(pod: &PodInfo, resource: &str) -> Option<i64> {
    let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, y) => x.or(y),
    };
    let mut total = pod
        .containers
        .iter()
        .fold(None, |acc, c| add(acc, c.requests.get(resource).copied()));
    let mut sidecars: Option<i64> = None;
    let mut init_max: Option<i64> = None;
    for c in &pod.init_containers {
        let own = c.requests.get(resource).copied();
        let needs = if c.restartable {
            total = add(total, own);
            sidecars = add(sidecars, own);
            sidecars
        } else {
            add(own, sidecars)
        };
        init_max = match (init_max, needs) {
            (Some(m), Some(n)) => Some(m.max(n)),
            (m, n) => m.or(n),
        };
    }
    match (total, init_max) {
        (Some(t), Some(m)) => Some(t.max(m)),
        (t, m) => t.or(m),
    }
}

/// `calculatePodRequestsFromContainers`: the regular containers, then the restartable init containers;
/// all of them, or the one named `container` (an error when it is not there). Go's `int64` sum wraps;
/// this one saturates (a request total past 9.2·10¹⁸ milli-units is not a pod).
fn requests_from_containers(
    pod: &PodInfo,
    container: Option<&str>,
    resource: &str,
) -> Result<i64, String> {
    let sidecars = pod
        .init_containers
        .iter()
        .filter(|c| c.restartable)
        .map(|c| (c.name.as_str(), &c.requests));
    let all = pod
        .containers
        .iter()
        .map(|c| (c.name.as_str(), &c.requests))
        .chain(sidecars);
    let mut request: i64 = 0;
    for (name, requests) in all {
        if container.is_none() || container == Some(name) {
            let Some(r) = requests.get(resource) else {
                return Err(format!(
                    "missing request for {resource} in container {name} of Pod {}",
                    pod.name
                ));
            };
            request = request.saturating_add(*r);
        }
        // Container names are unique inside the pod.
        if container == Some(name) {
            return Ok(request);
        }
    }
    match container {
        Some(name) => Err(format!("container {name} not found in Pod {}", pod.name)),
        None => Ok(request),
    }
}

/// `calculateRequests`: each pod's request for `resource`, summed over containers (or one container).
pub fn calculate_requests(
    pods: &[PodInfo],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let per_pod = pod_requests(pods, container, resource)?;
    let mut requests = BTreeMap::new();
    for (pod, request) in pods.iter().zip(per_pod) {
        requests.insert(pod.name.clone(), request);
    }
    Ok(requests)
}

/// The end of `GetResourceUtilizationRatio` from its sums: (ratio, utilization %, raw average milli).
fn utilization_from_totals(
    metrics_total: i128,
    requests_total: i128,
    entries: i128,
    target_utilization: i32,
) -> Result<(f64, i32, i64), String> {
    if requests_total == 0 {
        return Err("no metrics returned matched known pods".to_owned());
    }
    let percentage = metrics_total * 100 / requests_total;
    let utilization = i32::try_from(percentage)
        .map_err(|_| format!("resource utilization {percentage} is outside the int32 range"))?;
    let raw = i128_to_i64(metrics_total / entries.max(1));
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        raw,
    ))
}

/// `GetResourceUtilizationRatio`: (ratio, utilization %, raw average milli).
pub fn resource_utilization_ratio(
    metrics: &PodSamples,
    requests: &BTreeMap<String, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), String> {
    let mut metrics_total: i128 = 0;
    let mut requests_total: i128 = 0;
    let mut entries: i128 = 0;
    for (pod, m) in metrics {
        let Some(request) = requests.get(pod) else {
            // Missing requests are checked elsewhere: a sample without one is extraneous.
            continue;
        };
        metrics_total += i128::from(m.value);
        requests_total += i128::from(*request);
        entries += 1;
    }
    utilization_from_totals(metrics_total, requests_total, entries, target_utilization)
}

/// The end of `GetMetricUsageRatio` from its sum over `count` samples: (ratio, average milli).
fn usage_from_totals(total: i128, count: usize, target_usage: i64) -> (f64, i64) {
    let n = i128::try_from(count).unwrap_or(i128::MAX).max(1);
    let usage = i128_to_i64(total / n);
    (usage as f64 / target_usage as f64, usage)
}

/// `GetMetricUsageRatio`: (ratio, average milli).
pub fn metric_usage_ratio(metrics: &PodSamples, target_usage: i64) -> (f64, i64) {
    let total: i128 = metrics.values().map(|m| i128::from(m.value)).sum();
    usage_from_totals(total, metrics.len(), target_usage)
}

fn counts(g: &PodGroups) -> PodCounts {
    PodCounts {
        ready: g.ready_count,
        unready: g.unready.len(),
        missing: g.missing.len(),
        ignored: g.ignored.len(),
    }
}

// ---- The per-pod calculators over pods matched to samples once. ----
//
// Upstream keys everything by pod name (`PodMetricsInfo`, sets of names, a map of requests). With unique
// pod names that is a one-to-one match of pods to samples, computed here once by merging the name-sorted
// pods with the name-sorted samples; the groups, sums and rebalancing then run over indices. When two pods
// share a name the name-keyed sets merge them, so that (odd) input takes the name-keyed path below.

/// `sample_of` entry of a pod without a sample.
const NO_SAMPLE: usize = usize::MAX;

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Sixteen bytes of a name, big-endian and zero-padded: a key whose order agrees with the names' order
/// whenever two keys differ.
fn name_key(bytes: &[u8]) -> u128 {
    let mut key = [0u8; 16];
    for (k, b) in key.iter_mut().zip(bytes) {
        *k = *b;
    }
    u128::from_be_bytes(key)
}

/// Pod indices in name order; `None` when two pods share a name. Sorts by a 16-byte key taken after the
/// names' common prefix (pod names share their workload's prefix), comparing whole names only on ties.
fn sorted_pod_order(pods: &[PodInfo]) -> Option<Vec<usize>> {
    let first = pods.first().map(|p| p.name.as_bytes()).unwrap_or_default();
    let mut lcp = first.len();
    for pod in pods {
        let name = pod.name.as_bytes();
        if !name.starts_with(first.get(..lcp).unwrap_or_default()) {
            lcp = common_prefix(first.get(..lcp).unwrap_or_default(), name);
        }
    }
    let mut keyed: Vec<(u128, usize)> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                name_key(p.name.as_bytes().get(lcp..).unwrap_or_default()),
                i,
            )
        })
        .collect();
    let name = |i: usize| pods.get(i).map(|p| p.name.as_str());
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| name(a.1).cmp(&name(b.1))));
    for w in keyed.windows(2) {
        if let [a, b] = w
            && a.0 == b.0
            && name(a.1) == name(b.1)
        {
            return None;
        }
    }
    Some(keyed.into_iter().map(|(_, i)| i).collect())
}

/// Merges pods given in name order with the name-sorted samples, recording each pod's sample index.
fn merge_sorted<'a>(
    sorted_pods: impl Iterator<Item = (usize, &'a PodInfo)>,
    samples: &[(&str, PodSample)],
    sample_of: &mut [usize],
) {
    let mut j = 0;
    for (i, pod) in sorted_pods {
        let name = pod.name.as_str();
        while let Some((sample_name, _)) = samples.get(j) {
            match (*sample_name).cmp(name) {
                std::cmp::Ordering::Less => j += 1,
                std::cmp::Ordering::Equal => {
                    if let Some(slot) = sample_of.get_mut(i) {
                        *slot = j;
                    }
                    j += 1;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        if j >= samples.len() {
            break;
        }
    }
}

/// Merges `pods` with the samples assuming both are in name order, recording each pod's sample index;
/// `false` as soon as two consecutive pods are not in strictly increasing name order. Two consecutive pods
/// that both matched are in order (their samples are), so only pods next to an unmatched one are compared.
fn merge_if_sorted(
    pods: &[PodInfo],
    samples: &[(&str, PodSample)],
    sample_of: &mut [usize],
) -> bool {
    let mut j = 0;
    let mut prev: Option<(&str, bool)> = None;
    for (pod, slot) in pods.iter().zip(sample_of.iter_mut()) {
        let name = pod.name.as_str();
        let mut matched = false;
        while let Some((sample_name, _)) = samples.get(j) {
            match (*sample_name).cmp(name) {
                std::cmp::Ordering::Less => j += 1,
                std::cmp::Ordering::Equal => {
                    *slot = j;
                    j += 1;
                    matched = true;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        if let Some((prev_name, prev_matched)) = prev
            && !(prev_matched && matched)
            && prev_name >= name
        {
            return false;
        }
        prev = Some((name, matched));
    }
    true
}

/// For each pod (in `pods` order), the index of its sample in `samples` (name-sorted, unique names), or
/// [`NO_SAMPLE`]. `None` when two pods share a name. Pods in name order (as the API server lists them)
/// merge with the samples directly; others are sorted first.
fn match_samples(pods: &[PodInfo], samples: &[(&str, PodSample)]) -> Option<Vec<usize>> {
    let mut sample_of = vec![NO_SAMPLE; pods.len()];
    if !merge_if_sorted(pods, samples, &mut sample_of) {
        sample_of.fill(NO_SAMPLE);
        let order = sorted_pod_order(pods)?;
        merge_sorted(
            order
                .into_iter()
                .filter_map(|i| pods.get(i).map(|p| (i, p))),
            samples,
            &mut sample_of,
        );
    }
    Some(sample_of)
}

/// `groupPods` over matched pods, with the sums the calculators need.
struct Tally {
    /// Each pod's class, in `pods` order.
    classes: Vec<PodClass>,
    /// How many of each.
    counts: PodCounts,
    /// Samples left once those of ignored and unready pods are removed (extraneous samples stay).
    remaining: usize,
    /// Their total.
    remaining_total: i128,
    /// The total of the ready pods' samples.
    ready_total: i128,
}

fn tally(
    pods: &[PodInfo],
    samples: &[(&str, PodSample)],
    sample_of: &[usize],
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> Tally {
    let cpu = resource == Some("cpu");
    let mut t = Tally {
        classes: Vec::with_capacity(pods.len()),
        counts: PodCounts::default(),
        remaining: samples.len(),
        remaining_total: samples.iter().map(|(_, s)| i128::from(s.value)).sum(),
        ready_total: 0,
    };
    for (pod, &j) in pods.iter().zip(sample_of) {
        let sample = samples.get(j).map(|(_, s)| s);
        let class = classify_pod(pod, sample, cpu, config, now_ms);
        match class {
            PodClass::Ready => {
                t.counts.ready += 1;
                t.ready_total += sample.map_or(0, |s| i128::from(s.value));
            }
            PodClass::Unready => t.counts.unready += 1,
            PodClass::Missing => t.counts.missing += 1,
            PodClass::Ignored => t.counts.ignored += 1,
        }
        if let (PodClass::Unready | PodClass::Ignored, Some(s)) = (class, sample) {
            t.remaining -= 1;
            t.remaining_total -= i128::from(s.value);
        }
        t.classes.push(class);
    }
    t
}

fn to_pod_samples(samples: &[(&str, PodSample)]) -> PodSamples {
    samples
        .iter()
        .map(|(name, s)| ((*name).to_owned(), *s))
        .collect()
}

fn borrow_pod_samples(metrics: &PodSamples) -> Vec<(&str, PodSample)> {
    metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// The rebalanced step shared by both calculators: keep `p` when the rebalanced ratio is within tolerance,
/// flips direction, or its replica count would move against it; else propose that count.
fn settle_rebalanced(
    mut p: Proposal,
    current: i32,
    tolerances: Tolerances,
    new_ratio: f64,
    len: usize,
) -> Proposal {
    let ratio = p.ratio;
    p.rebalanced_ratio = Some(new_ratio);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        p.within_tolerance = true;
        return p;
    }
    let new_replicas = ceil_i32(new_ratio * len as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return p;
    }
    p.replicas = new_replicas;
    p
}

/// [`get_resource_replicas`] over name-sorted samples.
#[allow(clippy::too_many_arguments)]
fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    tolerances: Tolerances,
    pods: &[PodInfo],
    samples: &[(&str, PodSample)],
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".to_owned());
    }
    let Some(sample_of) = match_samples(pods, samples) else {
        return get_resource_replicas_by_name(
            current,
            target_utilization,
            resource,
            container,
            tolerances,
            pods,
            to_pod_samples(samples),
            config,
            now_ms,
        );
    };
    let t = tally(pods, samples, &sample_of, Some(resource), config, now_ms);
    if t.remaining == 0 {
        return Err("did not receive metrics for targeted pods (pods might be unready)".to_owned());
    }
    let requests = pod_requests(pods, container, resource)?;
    let (mut ready_requests, mut missing_requests, mut unready_requests) = (0i128, 0i128, 0i128);
    for (class, r) in t.classes.iter().zip(&requests) {
        match class {
            PodClass::Ready => ready_requests += i128::from(*r),
            PodClass::Missing => missing_requests += i128::from(*r),
            PodClass::Unready => unready_requests += i128::from(*r),
            PodClass::Ignored => {}
        }
    }
    let (ratio, utilization, raw) = utilization_from_totals(
        t.ready_total,
        ready_requests,
        t.counts.ready as i128,
        target_utilization,
    )?;
    let mut p = Proposal {
        replicas: current,
        usage: raw,
        utilization: Some(utilization),
        ratio,
        rebalanced_ratio: None,
        within_tolerance: false,
        pods: Some(t.counts),
    };

    let scale_up_with_unready = t.counts.unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && t.counts.missing == 0 {
        if tolerances.is_within(ratio) {
            p.within_tolerance = true;
            return Ok(p);
        }
        p.replicas = ceil_i32(ratio * t.counts.ready as f64);
        return Ok(p);
    }

    // The samples after rebalancing: the ready pods', the extraneous ones, and the stand-ins below.
    let mut metrics_total = t.ready_total;
    let mut requests_total = ready_requests;
    let mut len = t.remaining;
    if t.counts.missing > 0 {
        if ratio < 1.0 {
            // Scale-down: missing pods use 100 % of their request, or the target if it is higher.
            let fallback = i128::from(target_utilization.max(100));
            for (class, r) in t.classes.iter().zip(&requests) {
                if *class == PodClass::Missing {
                    metrics_total += i128::from(i128_to_i64(i128::from(*r) * fallback / 100));
                }
            }
            requests_total += missing_requests;
            len += t.counts.missing;
        } else if ratio > 1.0 {
            // Scale-up: missing pods use 0 %.
            requests_total += missing_requests;
            len += t.counts.missing;
        }
    }
    if scale_up_with_unready {
        requests_total += unready_requests;
        len += t.counts.unready;
    }
    let (new_ratio, _, _) =
        utilization_from_totals(metrics_total, requests_total, 1, target_utilization)?;
    Ok(settle_rebalanced(p, current, tolerances, new_ratio, len))
}

/// `GetResourceReplicas` (Utilization target).
#[allow(clippy::too_many_arguments)]
pub fn get_resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    tolerances: Tolerances,
    pods: &[PodInfo],
    metrics: PodSamples,
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    resource_replicas(
        current,
        target_utilization,
        resource,
        container,
        tolerances,
        pods,
        &borrow_pod_samples(&metrics),
        config,
        now_ms,
    )
}

/// `GetResourceReplicas` keyed by pod name, as upstream computes it (pods sharing a name are one).
#[allow(clippy::too_many_arguments)]
fn get_resource_replicas_by_name(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    tolerances: Tolerances,
    pods: &[PodInfo],
    mut metrics: PodSamples,
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".to_owned());
    }
    let groups = group_pods(pods, &metrics, Some(resource), config, now_ms);
    for name in groups.ignored.iter().chain(groups.unready.iter()) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".to_owned());
    }
    let requests = calculate_requests(pods, container, resource)?;
    let (ratio, utilization, raw) =
        resource_utilization_ratio(&metrics, &requests, target_utilization)?;
    let mut p = Proposal {
        replicas: current,
        usage: raw,
        utilization: Some(utilization),
        ratio,
        rebalanced_ratio: None,
        within_tolerance: false,
        pods: Some(counts(&groups)),
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            p.within_tolerance = true;
            return Ok(p);
        }
        p.replicas = ceil_i32(ratio * groups.ready_count as f64);
        return Ok(p);
    }

    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // Scale-down: missing pods use 100 % of their request, or the target if it is higher.
            let fallback = i64::from(target_utilization.max(100));
            for name in &groups.missing {
                let request = requests.get(name).copied().unwrap_or(0);
                let value = i128_to_i64(i128::from(request) * i128::from(fallback) / 100);
                metrics.insert(name.clone(), zero_sample(value));
            }
        } else if ratio > 1.0 {
            // Scale-up: missing pods use 0 %.
            for name in &groups.missing {
                metrics.insert(name.clone(), zero_sample(0));
            }
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), zero_sample(0));
        }
    }

    let (new_ratio, _, _) = resource_utilization_ratio(&metrics, &requests, target_utilization)?;
    Ok(settle_rebalanced(
        p,
        current,
        tolerances,
        new_ratio,
        metrics.len(),
    ))
}

fn zero_sample(value: i64) -> PodSample {
    PodSample {
        value,
        timestamp_ms: 0,
        window_ms: 0,
    }
}

/// [`calc_plain_metric_replicas`] over name-sorted samples.
#[allow(clippy::too_many_arguments)]
fn plain_metric_replicas(
    samples: &[(&str, PodSample)],
    current: i32,
    target_usage: i64,
    tolerances: Tolerances,
    pods: &[PodInfo],
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".to_owned());
    }
    let Some(sample_of) = match_samples(pods, samples) else {
        return calc_plain_metric_replicas_by_name(
            to_pod_samples(samples),
            current,
            target_usage,
            tolerances,
            pods,
            resource,
            config,
            now_ms,
        );
    };
    let t = tally(pods, samples, &sample_of, resource, config, now_ms);
    if t.remaining == 0 {
        return Err("did not receive metrics for targeted pods (pods might be unready)".to_owned());
    }
    let (ratio, usage) = usage_from_totals(t.remaining_total, t.remaining, target_usage);
    let mut p = Proposal {
        replicas: current,
        usage,
        utilization: None,
        ratio,
        rebalanced_ratio: None,
        within_tolerance: false,
        pods: Some(t.counts),
    };
    let scale_up_with_unready = t.counts.unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && t.counts.missing == 0 {
        if tolerances.is_within(ratio) {
            p.within_tolerance = true;
            return Ok(p);
        }
        p.replicas = ceil_i32(ratio * t.counts.ready as f64);
        return Ok(p);
    }
    let mut total = t.remaining_total;
    let mut len = t.remaining;
    if t.counts.missing > 0 {
        if ratio < 1.0 {
            // Scale-down: missing pods use exactly the target.
            total += i128::from(target_usage) * t.counts.missing as i128;
            len += t.counts.missing;
        } else if ratio > 1.0 {
            len += t.counts.missing;
        }
    }
    if scale_up_with_unready {
        len += t.counts.unready;
    }
    let (new_ratio, _) = usage_from_totals(total, len, target_usage);
    Ok(settle_rebalanced(p, current, tolerances, new_ratio, len))
}

/// `calcPlainMetricReplicas` (AverageValue of a resource, or a Pods metric). `resource` is the resource
/// name for Resource metrics (the CPU readiness rules need it), `None` for Pods metrics.
#[allow(clippy::too_many_arguments)]
pub fn calc_plain_metric_replicas(
    metrics: PodSamples,
    current: i32,
    target_usage: i64,
    tolerances: Tolerances,
    pods: &[PodInfo],
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    plain_metric_replicas(
        &borrow_pod_samples(&metrics),
        current,
        target_usage,
        tolerances,
        pods,
        resource,
        config,
        now_ms,
    )
}

/// `calcPlainMetricReplicas` keyed by pod name, as upstream computes it (pods sharing a name are one).
#[allow(clippy::too_many_arguments)]
fn calc_plain_metric_replicas_by_name(
    mut metrics: PodSamples,
    current: i32,
    target_usage: i64,
    tolerances: Tolerances,
    pods: &[PodInfo],
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".to_owned());
    }
    let groups = group_pods(pods, &metrics, resource, config, now_ms);
    for name in groups.ignored.iter().chain(groups.unready.iter()) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".to_owned());
    }
    let (ratio, usage) = metric_usage_ratio(&metrics, target_usage);
    let mut p = Proposal {
        replicas: current,
        usage,
        utilization: None,
        ratio,
        rebalanced_ratio: None,
        within_tolerance: false,
        pods: Some(counts(&groups)),
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            p.within_tolerance = true;
            return Ok(p);
        }
        p.replicas = ceil_i32(ratio * groups.ready_count as f64);
        return Ok(p);
    }
    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // Scale-down: missing pods use exactly the target.
            for name in &groups.missing {
                metrics.insert(name.clone(), zero_sample(target_usage));
            }
        } else if ratio > 1.0 {
            for name in &groups.missing {
                metrics.insert(name.clone(), zero_sample(0));
            }
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), zero_sample(0));
        }
    }
    let (new_ratio, _) = metric_usage_ratio(&metrics, target_usage);
    Ok(settle_rebalanced(
        p,
        current,
        tolerances,
        new_ratio,
        metrics.len(),
    ))
}

/// `getReadyPodsCount`: Running pods whose Ready condition is True.
pub fn ready_pods_count(pods: &[PodInfo]) -> Result<i64, String> {
    if pods.is_empty() {
        return Err("unable to calculate ready pods: no pods returned by selector while calculating replica count".to_owned());
    }
    Ok(pods
        .iter()
        .filter(|p| p.phase == PodPhase::Running && p.ready == Some(ConditionStatus::True))
        .count() as i64)
}

/// `getUsageRatioReplicaCount` (Object and External Value): (replicas, kept-within-tolerance).
pub fn get_usage_ratio_replica_count(
    current: i32,
    ratio: f64,
    tolerances: Tolerances,
    pods: &[PodInfo],
) -> Result<(i32, bool), String> {
    if current != 0 {
        if tolerances.is_within(ratio) {
            return Ok((current, true));
        }
        let ready = ready_pods_count(pods)?;
        let replicas = ratio * ready as f64;
        if replicas > f64::from(i32::MAX) {
            return Ok((i32::MAX, false));
        }
        Ok((ceil_i32(replicas), false))
    } else {
        // From zero replicas: scale to zero or n pods depending on the ratio, without tolerance.
        Ok((ceil_i32(ratio), false))
    }
}

/// Go's `int64(f)` for a float64 `f`, as Go compiles it on arm64 (`FCVTZS`): saturating, NaN → 0. The
/// Go spec leaves an out-of-range conversion to the implementation (amd64 yields `MinInt64`); only paths
/// upstream does not guard reach it (an Object or External AverageValue over zero status replicas).
fn go_i64(f: f64) -> i64 {
    f as i64
}

/// `GetObjectPerPodMetricReplicas` (Object AverageValue): no caps upstream, so the conversions are Go's.
pub fn object_per_pod_replicas(
    status_replicas: i32,
    target_per_pod: i64,
    usage: i64,
    tolerances: Tolerances,
) -> Proposal {
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    let within = tolerances.is_within(ratio);
    let replicas = if within {
        status_replicas
    } else {
        ceil_i32(usage as f64 / target_per_pod as f64)
    };
    Proposal {
        replicas,
        usage: go_i64((usage as f64 / f64::from(status_replicas)).ceil()),
        utilization: None,
        ratio,
        rebalanced_ratio: None,
        within_tolerance: within,
        pods: None,
    }
}

/// `GetExternalPerPodMetricReplicas` (External AverageValue) over the capped sum
/// ([`external_per_pod_usage`]): the proposal capped at `MaxInt32`, the per-pod usage at `MaxInt64`.
pub fn external_per_pod_replicas(
    status_replicas: i32,
    target_per_pod: i64,
    usage: i64,
    tolerances: Tolerances,
) -> Proposal {
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    let within = tolerances.is_within(ratio);
    let replicas = if within {
        status_replicas
    } else {
        let count = (usage as f64 / target_per_pod as f64).ceil();
        if count > f64::from(i32::MAX) {
            i32::MAX
        } else {
            ceil_i32(count)
        }
    };
    // `float64(usage) >= float64(math.MaxInt64)`: true from 2^63 - 512 on, where the float rounds up.
    let usage = if usage as f64 >= i64::MAX as f64 {
        i64::MAX
    } else {
        go_i64((usage as f64 / f64::from(status_replicas)).ceil())
    };
    Proposal {
        replicas,
        usage,
        utilization: None,
        ratio,
        rebalanced_ratio: None,
        within_tolerance: within,
        pods: None,
    }
}

#[cfg(test)]
mod tests {
    //! The index-based calculators against the name-keyed ones (upstream's shape), on inputs with
    //! unsorted, duplicate, prefix-sharing and extraneous names.

    use proptest::prelude::*;

    use super::*;
    use crate::hpa::ContainerRequests;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..14usize).prop_map(|i| format!("p{i}")),
            (0..14usize).prop_map(|i| format!("pod-aaaaaaaaaaaaaaaaaaaa-{i}")),
            (0..14usize).prop_map(|i| format!("pod-aaaaaaaaaaaaaaaaaaaa-{i}x")),
            Just(String::new()),
        ]
    }

    fn requests() -> impl Strategy<Value = BTreeMap<String, i64>> {
        (
            prop_oneof![
                Just(None),
                (-5..5_000i64).prop_map(Some),
                Just(Some(0)),
                Just(Some(i64::MAX))
            ],
            prop_oneof![Just(None), (0..5_000i64).prop_map(Some)],
        )
            .prop_map(|(cpu, memory)| {
                let mut m = BTreeMap::new();
                if let Some(v) = cpu {
                    m.insert("cpu".to_owned(), v);
                }
                if let Some(v) = memory {
                    m.insert("memory".to_owned(), v);
                }
                m
            })
    }

    fn pod() -> impl Strategy<Value = PodInfo> {
        (
            name(),
            prop_oneof![
                4 => Just(PodPhase::Running),
                1 => Just(PodPhase::Pending),
                1 => Just(PodPhase::Failed),
                1 => Just(PodPhase::Succeeded),
                1 => Just(PodPhase::Unknown),
            ],
            prop_oneof![
                Just(None),
                Just(Some(ConditionStatus::True)),
                Just(Some(ConditionStatus::False)),
                Just(Some(ConditionStatus::Unknown))
            ],
            prop_oneof![4 => Just(false), 1 => Just(true)],
            prop_oneof![
                Just(None),
                Just(Some(0i64)),
                Just(Some(NOW - 60_000)),
                Just(Some(i64::MAX))
            ],
            prop_oneof![Just(0i64), Just(NOW - 50_000), Just(NOW - 1_000)],
            proptest::collection::vec((prop_oneof![Just("a"), Just("b")], requests()), 1..3),
        )
            .prop_map(
                |(name, phase, ready, deleting, start_ms, ready_transition_ms, containers)| {
                    PodInfo {
                        name,
                        phase,
                        ready,
                        ready_transition_ms,
                        start_ms,
                        deleting,
                        containers: containers
                            .into_iter()
                            .map(|(name, requests)| ContainerRequests {
                                name: name.to_owned(),
                                requests,
                            })
                            .collect(),
                        init_containers: Vec::new(),
                        pod_requests: None,
                        overhead: BTreeMap::new(),
                    }
                },
            )
    }

    fn samples() -> impl Strategy<Value = PodSamples> {
        proptest::collection::btree_map(
            name(),
            (
                prop_oneof![
                    8 => 0..40_000i64,
                    1 => Just(-7i64),
                    1 => Just(i64::MAX / 4),
                ],
                prop_oneof![Just(0i64), Just(NOW - 30_000), Just(NOW)],
            )
                .prop_map(|(value, timestamp_ms)| PodSample {
                    value,
                    timestamp_ms,
                    window_ms: 60_000,
                }),
            0..12,
        )
    }

    const NOW: i64 = 1_700_000_000_000;

    fn config() -> ControllerConfig {
        ControllerConfig {
            cpu_initialization_period_ms: 2 * 60_000,
            delay_of_initial_readiness_status_ms: 10_000,
            ..ControllerConfig::default()
        }
    }

    fn tolerances(t: f64) -> Tolerances {
        Tolerances {
            scale_down: t,
            scale_up: t,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn resource_replicas_match_the_name_keyed_path(
            pods in proptest::collection::vec(pod(), 0..12),
            metrics in samples(),
            current in 0..30i32,
            target in 1..200i32,
            resource in prop_oneof![Just("cpu"), Just("memory")],
            container in prop_oneof![Just(None), Just(Some("a")), Just(Some("c"))],
            tol in prop_oneof![Just(0.1f64), Just(0.0)],
        ) {
            let fast = get_resource_replicas(
                current, target, resource, container, tolerances(tol), &pods, metrics.clone(),
                &config(), NOW,
            );
            let by_name = get_resource_replicas_by_name(
                current, target, resource, container, tolerances(tol), &pods, metrics,
                &config(), NOW,
            );
            prop_assert_eq!(format!("{fast:?}"), format!("{by_name:?}"));
        }

        #[test]
        fn plain_replicas_match_the_name_keyed_path(
            pods in proptest::collection::vec(pod(), 0..12),
            metrics in samples(),
            current in 0..30i32,
            target in 1..20_000i64,
            resource in prop_oneof![Just(None), Just(Some("cpu")), Just(Some("memory"))],
            tol in prop_oneof![Just(0.1f64), Just(0.0)],
        ) {
            let fast = calc_plain_metric_replicas(
                metrics.clone(), current, target, tolerances(tol), &pods, resource, &config(), NOW,
            );
            let by_name = calc_plain_metric_replicas_by_name(
                metrics, current, target, tolerances(tol), &pods, resource, &config(), NOW,
            );
            prop_assert_eq!(format!("{fast:?}"), format!("{by_name:?}"));
        }

        #[test]
        fn sorted_pod_order_sorts_by_name(names in proptest::collection::vec(name(), 0..20)) {
            let pods: Vec<PodInfo> = names.iter().map(|n| PodInfo::running(n, 1)).collect();
            let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
            expected.sort_unstable();
            let unique = expected.windows(2).all(|w| w[0] < w[1]);
            match sorted_pod_order(&pods) {
                Some(order) => {
                    prop_assert!(unique);
                    let got: Vec<&str> = order.iter().map(|&i| pods[i].name.as_str()).collect();
                    prop_assert_eq!(got, expected);
                }
                None => prop_assert!(!unique),
            }
        }
    }

    /// Many pods, in name order and not: the merge must pair every pod with its own sample.
    #[test]
    fn large_inputs_match_the_name_keyed_path() {
        for shuffled in [false, true] {
            let mut pods: Vec<PodInfo> = (0..1500)
                .map(|i| {
                    let mut p = PodInfo::running(&format!("web-7d9f8c6b5-{i}"), 100 + i % 7);
                    p.start_ms = Some(NOW - 3_600_000);
                    if i % 97 == 0 {
                        p.phase = PodPhase::Pending;
                    }
                    if i % 101 == 0 {
                        p.deleting = true;
                    }
                    p
                })
                .collect();
            if shuffled {
                pods.reverse();
                pods.rotate_left(333);
            }
            let metrics: PodSamples = (0..1600)
                .filter(|i| i % 89 != 0)
                .map(|i| {
                    (
                        format!("web-7d9f8c6b5-{i}"),
                        PodSample {
                            value: 50 + (i as i64 % 13) * 7,
                            timestamp_ms: NOW - 10_000,
                            window_ms: 30_000,
                        },
                    )
                })
                .collect();
            for target in [30, 60, 90, 150] {
                let fast = get_resource_replicas(
                    1500,
                    target,
                    "cpu",
                    None,
                    tolerances(0.1),
                    &pods,
                    metrics.clone(),
                    &config(),
                    NOW,
                );
                let by_name = get_resource_replicas_by_name(
                    1500,
                    target,
                    "cpu",
                    None,
                    tolerances(0.1),
                    &pods,
                    metrics.clone(),
                    &config(),
                    NOW,
                );
                assert_eq!(format!("{fast:?}"), format!("{by_name:?}"));
            }
            for target in [50, 80, 120] {
                let fast = calc_plain_metric_replicas(
                    metrics.clone(),
                    1500,
                    target,
                    tolerances(0.1),
                    &pods,
                    None,
                    &config(),
                    NOW,
                );
                let by_name = calc_plain_metric_replicas_by_name(
                    metrics.clone(),
                    1500,
                    target,
                    tolerances(0.1),
                    &pods,
                    None,
                    &config(),
                    NOW,
                );
                assert_eq!(format!("{fast:?}"), format!("{by_name:?}"));
            }
        }
    }
}
