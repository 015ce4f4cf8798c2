//! Per-metric replica proposals: upstream `replica_calculator.go` and `metrics/utilization.go`.
//!
//! Arithmetic follows Go: milli-unit `int64` values, sums that cannot overflow (upstream falls back to
//! `big.Int`; here `i128`), integer division truncating toward zero, `float64` ratios and `math.Ceil`.
//! Float-to-`int32` conversions saturate (Go's are undefined out of range; upstream caps the paths it
//! guards at `MaxInt32`).

use std::collections::{BTreeMap, BTreeSet};

use crate::decision::{Condition, MetricProposal, PodCounts};
use crate::quantity::milli_from_f64;

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
        error: None,
    };
    match compute(spec, sample, input, config, tolerances, now_ms) {
        Ok(p) => {
            out.current_milli = Some(p.usage);
            out.current_utilization = p.utilization;
            out.ratio = Some(p.ratio);
            out.rebalanced_ratio = p.rebalanced_ratio;
            out.proposal = Some(p.replicas);
            out.within_tolerance = p.within_tolerance;
            out.pods = p.pods;
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

fn per_pod_samples(sample: Option<&MetricSample>, what: &str) -> Result<PodSamples, String> {
    match sample {
        Some(MetricSample::PerPod(map)) => {
            let mut out = PodSamples::new();
            for (pod, m) in map {
                let value = milli_from_f64(m.value).ok_or_else(|| {
                    format!(
                        "{what} value {} for pod {pod} is not a finite number",
                        m.value
                    )
                })?;
                out.insert(
                    pod.clone(),
                    PodSample {
                        value,
                        timestamp_ms: m.timestamp_ms,
                        window_ms: m.window_ms,
                    },
                );
            }
            Ok(out)
        }
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected per-pod samples for {what}")),
        None => Err(format!("no sample for {what}")),
    }
}

fn object_value(sample: Option<&MetricSample>, what: &str) -> Result<i64, String> {
    match sample {
        Some(MetricSample::Object(v)) => {
            milli_from_f64(*v).ok_or_else(|| format!("{what} value {v} is not a finite number"))
        }
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected one object value for {what}")),
        None => Err(format!("no sample for {what}")),
    }
}

fn external_values(sample: Option<&MetricSample>, what: &str) -> Result<Vec<i64>, String> {
    match sample {
        Some(MetricSample::External(vs)) => {
            if vs.is_empty() {
                return Err(format!(
                    "unable to get external metric {what}: no metrics returned from external metrics API"
                ));
            }
            vs.iter()
                .map(|v| {
                    milli_from_f64(*v)
                        .ok_or_else(|| format!("{what} value {v} is not a finite number"))
                })
                .collect()
        }
        Some(MetricSample::Failed(e)) => Err(e.clone()),
        Some(_) => Err(format!("expected external series for {what}")),
        None => Err(format!("no sample for {what}")),
    }
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
                    get_resource_replicas(
                        current, t, name, container, tolerances, &input.pods, samples, config, now_ms,
                    )
                }
                MetricTarget::AverageValue(t) => {
                    invalid_target(t)?;
                    calc_plain_metric_replicas(
                        samples,
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
            calc_plain_metric_replicas(
                samples,
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
            Ok(per_pod_total_replicas(
                input.status_replicas,
                t,
                i128::from(usage),
                tolerances,
            ))
        }
        (MetricSource::External { metric }, MetricTarget::Value(t)) => {
            invalid_target(t)?;
            let values = external_values(sample, metric)?;
            let usage = values.iter().fold(0i64, |acc, v| acc.saturating_add(*v));
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
            let values = external_values(sample, metric)?;
            let total: i128 = values.iter().map(|v| i128::from(*v)).sum();
            Ok(per_pod_total_replicas(
                input.status_replicas,
                t,
                total,
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

/// `groupPods`: classify pods as ready, unready, missing or ignored. The CPU readiness rules apply when
/// `resource` is `cpu`.
pub fn group_pods(
    pods: &[PodInfo],
    metrics: &PodSamples,
    resource: Option<&str>,
    config: &ControllerConfig,
    now_ms: i64,
) -> PodGroups {
    let mut g = PodGroups::default();
    for pod in pods {
        if pod.deleting || pod.phase == PodPhase::Failed {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == PodPhase::Pending {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if resource == Some("cpu") {
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
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready_count += 1;
    }
    g
}

/// `calculateRequests`: each pod's request for `resource`, summed over containers (or one container).
pub fn calculate_requests(
    pods: &[PodInfo],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let mut request: i64 = 0;
        let mut found = false;
        for c in &pod.containers {
            if container.is_none() || container == Some(c.name.as_str()) {
                let Some(r) = c.requests.get(resource) else {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {}",
                        c.name, pod.name
                    ));
                };
                request = request.saturating_add(*r);
            }
            if container == Some(c.name.as_str()) {
                found = true;
                break;
            }
        }
        if let (Some(name), false) = (container, found) {
            return Err(format!("container {name} not found in Pod {}", pod.name));
        }
        requests.insert(pod.name.clone(), request);
    }
    Ok(requests)
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

/// `GetMetricUsageRatio`: (ratio, average milli).
pub fn metric_usage_ratio(metrics: &PodSamples, target_usage: i64) -> (f64, i64) {
    let total: i128 = metrics.values().map(|m| i128::from(m.value)).sum();
    let n = i128::try_from(metrics.len()).unwrap_or(i128::MAX).max(1);
    let usage = i128_to_i64(total / n);
    (usage as f64 / target_usage as f64, usage)
}

fn counts(g: &PodGroups) -> PodCounts {
    PodCounts {
        ready: g.ready_count,
        unready: g.unready.len(),
        missing: g.missing.len(),
        ignored: g.ignored.len(),
    }
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
    p.rebalanced_ratio = Some(new_ratio);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        p.within_tolerance = true;
        return Ok(p);
    }
    let new_replicas = ceil_i32(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok(p);
    }
    p.replicas = new_replicas;
    Ok(p)
}

fn zero_sample(value: i64) -> PodSample {
    PodSample {
        value,
        timestamp_ms: 0,
        window_ms: 0,
    }
}

/// `calcPlainMetricReplicas` (AverageValue of a resource, or a Pods metric). `resource` is the resource
/// name for Resource metrics (the CPU readiness rules need it), `None` for Pods metrics.
#[allow(clippy::too_many_arguments)]
pub fn calc_plain_metric_replicas(
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
    p.rebalanced_ratio = Some(new_ratio);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        p.within_tolerance = true;
        return Ok(p);
    }
    let new_replicas = ceil_i32(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok(p);
    }
    p.replicas = new_replicas;
    Ok(p)
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

/// `GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas` (AverageValue of a total).
pub fn per_pod_total_replicas(
    status_replicas: i32,
    target_per_pod: i64,
    total: i128,
    tolerances: Tolerances,
) -> Proposal {
    let usage_total = i128_to_i64(total);
    let ratio = usage_total as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    let within = tolerances.is_within(ratio);
    let replicas = if within {
        status_replicas
    } else {
        ceil_i32(usage_total as f64 / target_per_pod as f64)
    };
    let usage = if usage_total == i64::MAX || status_replicas == 0 {
        usage_total
    } else {
        let avg = (usage_total as f64 / f64::from(status_replicas)).ceil();
        if avg.is_finite() && avg.abs() < 9.2e18 {
            avg as i64
        } else {
            usage_total
        }
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
