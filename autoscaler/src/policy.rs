//! Building policies from the config: the manifests users write, and the PromQL each metric reads.

use std::collections::BTreeMap;

use surge_config::{Config, ConfigError, ConfigErrors, FieldPath, PolicyConfig};
use surge_engine::{HpaSpec, MetricSource, ScaledObjectSpec, Schedule, TriggerMetricType};

use surge_actuate::{ScaleTarget, Workload};
use surge_promql::ast::ExprKind;
use surge_promql::{self as promql, Expr};
use surge_store::Matcher;

/// Which engine entry point a policy uses.
#[derive(Debug, Clone)]
pub enum EnginePolicy {
    Hpa(Box<HpaSpec>),
    ScaledObject(Box<ScaledObjectSpec>),
}

/// One metric (HPA) or trigger (KEDA) and what feeds it, in the engine's order.
#[derive(Debug, Clone)]
pub struct MetricInput {
    pub key: String,
    pub source: InputSource,
    /// Resource, ContainerResource and Pods metrics: one value per pod (by the `pod` label).
    pub per_pod: bool,
    /// Object metrics take one value; External and triggers sum every series.
    pub object: bool,
    /// The vector selectors of `expr`: a series matching one of them touches this policy.
    pub selectors: Vec<Vec<Matcher>>,
}

/// Where an input's value comes from.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A PromQL query over the aggregator's cache.
    Query { text: String, expr: Expr },
    /// Nothing is read: the engine computes the value itself (a KEDA `cron` trigger, from the evaluation
    /// time). The engine gets [`surge_engine::TriggerValue::NotRead`] in its slot.
    Engine,
}

impl MetricInput {
    /// The query, for an input that reads one.
    pub fn query(&self) -> Option<&str> {
        match &self.source {
            InputSource::Query { text, .. } => Some(text),
            InputSource::Engine => None,
        }
    }
}

/// The pods' resource requests, for Utilization targets: the series kube-state-metrics exports
/// (`kube_pod_container_resource_requests`), one per pod and container, in base units (cores, bytes).
#[derive(Debug, Clone)]
pub struct RequestsInput {
    /// `cpu` or `memory`.
    pub resource: String,
    pub query: String,
    pub expr: Expr,
}

/// A policy ready to evaluate.
#[derive(Debug, Clone)]
pub struct PolicyDef {
    /// The policy's name, its workload, mode, initial count and `events`: what the actuator sees of it.
    pub target: ScaleTarget,
    pub engine: EnginePolicy,
    pub inputs: Vec<MetricInput>,
    /// The requests Utilization targets divide by; empty when no target is a Utilization.
    pub requests: Vec<RequestsInput>,
    pub min_interval_ms: i64,
    pub fallback_interval_ms: i64,
    /// Scheduled floors; empty for most policies.
    pub schedules: Vec<Schedule>,
}

impl PolicyDef {
    /// The policy's name (unique in a config).
    pub fn name(&self) -> &str {
        &self.target.policy
    }
}

/// Builds every policy of `cfg`, collecting every problem with its position in the config file.
pub fn build_policies(cfg: &Config) -> Result<Vec<PolicyDef>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    let root = FieldPath::root().key("policies");
    for (i, p) in cfg.policies.iter().enumerate() {
        let at = root.index(i);
        match build_one(p, &at) {
            Ok(def) => out.push(def),
            Err(problems) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(path, msg)| cfg.error_at(path, msg)),
                );
            }
        }
    }
    let mut seen = BTreeMap::new();
    for (i, d) in out.iter().enumerate() {
        if let Some(first) = seen.insert(d.name().to_owned(), i) {
            errors.push(cfg.error_at(
                root.index(i).key("name"),
                format!(
                    "policy name {:?} is already used by policies[{first}]",
                    d.name()
                ),
            ));
        }
    }
    match ConfigErrors::from_vec(errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

type Problems = Vec<(FieldPath, String)>;

fn build_one(p: &PolicyConfig, at: &FieldPath) -> Result<PolicyDef, Problems> {
    let mut problems: Problems = Vec::new();
    let (engine, manifest, manifest_key) = match (&p.hpa, &p.scaled_object) {
        (Some(text), None) => match surge_engine::parse_hpa(text) {
            Ok(spec) => (Some(EnginePolicy::Hpa(Box::new(spec))), text, "hpa"),
            Err(e) => {
                problems.push((
                    at.key("hpa"),
                    format!("invalid HorizontalPodAutoscaler: {e}"),
                ));
                (None, text, "hpa")
            }
        },
        (None, Some(text)) => match surge_engine::parse_scaled_object(text) {
            Ok(spec) => (
                Some(EnginePolicy::ScaledObject(Box::new(spec))),
                text,
                "scaled_object",
            ),
            Err(e) => {
                problems.push((
                    at.key("scaled_object"),
                    format!("invalid ScaledObject: {e}"),
                ));
                (None, text, "scaled_object")
            }
        },
        _ => {
            problems.push((
                at.clone(),
                "set exactly one of `hpa` and `scaled_object`".into(),
            ));
            return Err(problems);
        }
    };
    let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(manifest).unwrap_or_default();
    let workload = workload_of(&raw);
    if workload.name.is_empty() {
        problems.push((
            at.key(manifest_key),
            "the manifest has no spec.scaleTargetRef.name".into(),
        ));
    }
    let Some(engine) = engine else {
        return Err(problems);
    };
    // (metric key, per_pod, object, query from the manifest; `None` for an input the engine reads itself)
    let wanted: Vec<(String, bool, bool, Option<Option<String>>)> = match &engine {
        EnginePolicy::Hpa(spec) => spec
            .metrics
            .iter()
            .map(|m| match &m.source {
                MetricSource::Resource { name } | MetricSource::ContainerResource { name, .. } => {
                    (name.clone(), true, false, Some(None))
                }
                MetricSource::Pods { metric } => (metric.clone(), true, false, Some(None)),
                MetricSource::Object { metric, .. } => (metric.clone(), false, true, Some(None)),
                MetricSource::External { metric } => (metric.clone(), false, false, Some(None)),
            })
            .collect(),
        EnginePolicy::ScaledObject(spec) => spec
            .triggers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_resource() {
                    let q = resource_query(&workload_of(&raw), &t.kind, t.container.as_deref());
                    return (t.name.clone(), true, false, Some(q));
                }
                if !t.reads_input() {
                    return (t.name.clone(), false, false, None);
                }
                let q = raw["spec"]["triggers"][i]["metadata"]["query"]
                    .as_str()
                    .map(str::to_owned);
                (t.name.clone(), false, false, Some(q))
            })
            .collect(),
    };
    let known: Vec<String> = wanted.iter().map(|w| w.0.clone()).collect();
    let mut inputs = Vec::new();
    for (key, per_pod, object, manifest_query) in wanted {
        let Some(manifest_query) = manifest_query else {
            if p.metrics.contains_key(&key) {
                problems.push((
                    at.key("metrics").key(key.as_str()),
                    format!("{key:?} is a cron trigger: the engine reads it from the clock, and no query can replace that"),
                ));
            }
            inputs.push(MetricInput {
                key,
                source: InputSource::Engine,
                per_pod,
                object,
                selectors: Vec::new(),
            });
            continue;
        };
        let Some(query) = p.metrics.get(&key).cloned().or(manifest_query) else {
            problems.push((
                at.key("metrics"),
                format!("no query for metric {key:?}: add `{key}: <PromQL>` under metrics"),
            ));
            continue;
        };
        match promql::parse(&query) {
            Ok(expr) => {
                let mut selectors = Vec::new();
                collect_selectors(&expr, &mut selectors);
                inputs.push(MetricInput {
                    key,
                    source: InputSource::Query { text: query, expr },
                    per_pod,
                    object,
                    selectors,
                });
            }
            Err(e) => problems.push((
                at.key("metrics").key(key.as_str()),
                format!("query does not parse: {e}"),
            )),
        }
    }
    let requests = requests_inputs(&engine, &workload, p, at, &mut problems);
    // A metric of the manifest whose query does not parse was reported above; only strangers are left.
    for key in p.metrics.keys() {
        let requests_key = requests
            .iter()
            .any(|r| key.strip_prefix("requests.") == Some(r.resource.as_str()));
        if !known.contains(key) && !requests_key {
            problems.push((
                at.key("metrics").key(key.as_str()),
                format!("{key:?} is not a metric or trigger of the manifest (nor the requests.cpu/requests.memory of a Utilization target)"),
            ));
        }
    }
    let mut schedules = Vec::new();
    for (j, sc) in p.schedules.iter().enumerate() {
        match Schedule::parse(&sc.start, &sc.duration, sc.min_replicas, &sc.time_zone) {
            Ok(s) => schedules.push(s),
            Err(e) => problems.push((
                at.key("schedules").index(j),
                format!("invalid schedule: {e}"),
            )),
        }
    }
    if p.initial_replicas < 0 {
        problems.push((at.key("initial_replicas"), "must be 0 or more".into()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = if p.name.is_empty() {
        workload.key()
    } else {
        p.name.clone()
    };
    Ok(PolicyDef {
        target: ScaleTarget {
            policy: name,
            workload,
            mode: p.mode,
            initial_replicas: p.initial_replicas,
            events: p.events,
        },
        engine,
        inputs,
        requests,
        min_interval_ms: p.min_interval.as_millis() as i64,
        fallback_interval_ms: p.fallback_interval.as_millis().max(1) as i64,
        schedules,
    })
}

fn workload_of(raw: &serde_yaml_ng::Value) -> Workload {
    let s = |v: &serde_yaml_ng::Value| v.as_str().unwrap_or_default().to_owned();
    let target = &raw["spec"]["scaleTargetRef"];
    let namespace = s(&raw["metadata"]["namespace"]);
    Workload {
        namespace: if namespace.is_empty() {
            "default".into()
        } else {
            namespace
        },
        name: s(&target["name"]),
        kind: match s(&target["kind"]) {
            k if k.is_empty() => "Deployment".into(),
            k => k,
        },
        api_version: match s(&target["apiVersion"]) {
            v if v.is_empty() => "apps/v1".into(),
            v => v,
        },
    }
}

/// The per-pod usage a KEDA `cpu` or `memory` trigger reads, from the kubelet's cAdvisor series as the
/// agent on each node scrapes them (`/metrics/cadvisor`): the same numbers metrics-server serves on
/// `metrics.k8s.io` (it reads the kubelet's resource endpoint, which takes them from cAdvisor), without a
/// second scrape path or an API-server round trip per evaluation. cpu is the per-pod rate of
/// `container_cpu_usage_seconds_total` over one minute (four 15 s scrapes, so a missed scrape leaves a
/// rate), memory the per-pod sum of `container_memory_working_set_bytes` (what metrics-server reports).
/// Pods are the workload's by name prefix (`<name>-`); the pod-level cgroup series (`container=""`) are
/// left out, and `containerName` selects one container (a ContainerResource metric). A `metrics:` entry
/// named after the trigger replaces the query.
fn resource_query(w: &Workload, kind: &str, container: Option<&str>) -> Option<String> {
    let container = match container {
        Some(c) => format!("container=\"{c}\""),
        None => "container!=\"\"".to_owned(),
    };
    let selector = format!(
        "{{namespace=\"{}\",pod=~\"{}-.*\",{container}}}",
        w.namespace, w.name
    );
    match kind {
        "cpu" => Some(format!(
            "sum by (pod) (rate(container_cpu_usage_seconds_total{selector}[1m]))"
        )),
        "memory" => Some(format!(
            "sum by (pod) (container_memory_working_set_bytes{selector})"
        )),
        _ => None,
    }
}

/// The `metrics:` keys that replace the requests queries, and the resource each is for.
const REQUESTS_KEYS: [(&str, &str); 2] = [("requests.cpu", "cpu"), ("requests.memory", "memory")];

/// The requests queries a policy needs: one per resource some Utilization target reads (an HPA
/// Resource/ContainerResource metric with `averageUtilization`, a KEDA cpu/memory trigger with
/// `metricType: Utilization`).
///
/// Design choice: requests come from kube-state-metrics' `kube_pod_container_resource_requests` series,
/// not from the workload's pod template. The pipeline already ingests series, so a dry-run surge needs
/// no API-server access and no copy of the template in its config; and the series are per pod, so they
/// follow the pods actually running (a rollout's old and new requests side by side), which is what the
/// HPA's `calculatePodRequests` reads from each pod's spec. The default query is
/// `kube_pod_container_resource_requests{namespace="NS",pod=~"NAME-.*",resource="cpu"}` (unit `core`;
/// `memory` in bytes); `metrics: {requests.cpu: <PromQL>}` replaces it (the result must keep the `pod`
/// and `container` labels). kube-state-metrics exports regular containers only: init containers,
/// restartable sidecars and pod-level `spec.resources` are not in these series, so a workload that has
/// them needs an actuator that reads the pods.
fn requests_inputs(
    engine: &EnginePolicy,
    workload: &Workload,
    p: &PolicyConfig,
    at: &FieldPath,
    problems: &mut Problems,
) -> Vec<RequestsInput> {
    let utilization: Vec<&str> = match engine {
        EnginePolicy::Hpa(spec) => {
            spec.metrics
                .iter()
                .filter(|m| matches!(m.target, surge_engine::MetricTarget::Utilization(_)))
                .filter_map(|m| match &m.source {
                    MetricSource::Resource { name }
                    | MetricSource::ContainerResource { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect()
        }
        EnginePolicy::ScaledObject(spec) => spec
            .triggers
            .iter()
            .filter(|t| t.is_resource() && t.metric_type == TriggerMetricType::Utilization)
            .map(|t| t.kind.as_str())
            .collect(),
    };
    let mut out = Vec::new();
    for (key, resource) in REQUESTS_KEYS {
        if !utilization.contains(&resource) {
            continue;
        }
        let query = p.metrics.get(key).cloned().unwrap_or_else(|| {
            format!(
                "kube_pod_container_resource_requests{{namespace=\"{}\",pod=~\"{}-.*\",resource=\"{resource}\"}}",
                workload.namespace, workload.name
            )
        });
        match promql::parse(&query) {
            Ok(expr) => out.push(RequestsInput {
                resource: resource.to_owned(),
                query,
                expr,
            }),
            Err(e) => problems.push((
                at.key("metrics").key(key),
                format!("query does not parse: {e}"),
            )),
        }
    }
    out
}

/// Every vector selector's matchers in `e`.
pub fn collect_selectors(e: &Expr, out: &mut Vec<Vec<Matcher>>) {
    match &e.kind {
        ExprKind::Selector(sel) | ExprKind::Matrix { sel, .. } => out.push(sel.matchers.clone()),
        ExprKind::Call { args, .. } => args.iter().for_each(|a| collect_selectors(a, out)),
        ExprKind::Aggregate { expr, .. }
        | ExprKind::Subquery { expr, .. }
        | ExprKind::Neg(expr)
        | ExprKind::Paren(expr) => collect_selectors(expr, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_selectors(lhs, out);
            collect_selectors(rhs, out);
        }
        ExprKind::Number(_) | ExprKind::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One dry-run policy on shop/web whose `rps` input is `query`, with `extra` policy fields.
    pub(super) fn policies_with(extra: &str, query: &str) -> Vec<PolicyDef> {
        let yaml = format!(
            r#"policies:
  - mode: dry-run
{extra}    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {{name: web, namespace: shop}}
      spec:
        scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
        maxReplicas: 10
        metrics:
          - type: External
            external:
              metric: {{name: rps}}
              target: {{type: AverageValue, averageValue: "10"}}
    metrics:
      rps: '{query}'
"#
        );
        let cfg =
            surge_config::load_str(&yaml, "surge.yaml", &surge_config::MapEnv::new()).unwrap();
        build_policies(&cfg).unwrap()
    }

    fn policies(extra: &str) -> Vec<PolicyDef> {
        policies_with(extra, "sum(rps)")
    }

    #[test]
    fn events_are_carried_to_the_scale_target() {
        let off = policies("");
        assert_eq!(off.len(), 1);
        assert!(!off[0].target.events, "off by default");
        assert_eq!(off[0].name(), "shop/web");
        let on = policies("    events: true\n");
        assert!(on[0].target.events);
        assert_eq!(on[0].target.mode, surge_config::ActuationMode::DryRun);
    }
}

/// How long after the engine starts a scale-down is held by default: the HPA's default scale-down
/// stabilization window, which a restart empties.
pub const DEFAULT_WARM_UP: std::time::Duration = std::time::Duration::from_secs(300);

/// Restart hygiene: the engine does not scale down on a half-warm cache.
///
/// After an aggregator restart the cache fills as agents write again (and replay what their durable
/// queues held); until every agent has written, a sum or an average over pods reads low, and the
/// engine's own memory (the HPA's stabilization window, KEDA's cooldown) starts empty. So for
/// `warm_up` after start a decision to scale *down* is held at the current count, saying why. A
/// partial window can also over-read (an `avg_over_time` over the seconds since start reads a burst
/// as the whole window): that, scale-ups included, is [`history_gap`]'s to hold, until the store's
/// history covers what the policy reads. Once the window has passed, the HPA's own stabilization
/// window is full again and decisions stand as the engine made them.
#[derive(Debug)]
pub struct WarmUp {
    started_ms: i64,
    until_ms: std::sync::atomic::AtomicI64,
}

impl WarmUp {
    pub fn starting_now(now_ms: i64) -> Self {
        WarmUp {
            started_ms: now_ms,
            until_ms: std::sync::atomic::AtomicI64::new(
                now_ms + DEFAULT_WARM_UP.as_millis() as i64,
            ),
        }
    }

    /// Sets the window, counted from the start.
    pub fn set(&self, warm_up: std::time::Duration) {
        let ms = i64::try_from(warm_up.as_millis()).unwrap_or(i64::MAX);
        self.until_ms.store(
            self.started_ms.saturating_add(ms),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Holds `decision` at its current count if it scales down inside the window.
    pub fn hold_scale_down(&self, decision: &mut surge_engine::Decision, now_ms: i64) {
        let until = self.until_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now_ms >= until
            || !decision.scale
            || decision.desired_replicas >= decision.current_replicas
        {
            return;
        }
        decision.reason = format!(
            "held at {} while warming up after start ({} s left; inputs may be partial): the engine \
             proposed {} ({})",
            decision.current_replicas,
            (until - now_ms + 999) / 1000,
            decision.desired_replicas,
            decision.reason
        );
        decision.desired_replicas = decision.current_replicas;
        decision.scale = false;
    }
}

/// How much history (ms before the evaluation time) a policy's queries read: the longest range
/// selector or subquery with its offset, over every input and requests query, and at least
/// `freshness` (the autoscaling path's `stale_after`: within it every live series has written once, so
/// an instant sum over pods is whole only after it). `@` pins a time no restart can cover and adds
/// nothing.
pub fn history_needed_ms(def: &PolicyDef, freshness: Option<std::time::Duration>) -> i64 {
    let floor = freshness.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let queries = def
        .inputs
        .iter()
        .filter_map(|i| match &i.source {
            InputSource::Query { expr, .. } => Some(expr),
            InputSource::Engine => None,
        })
        .chain(def.requests.iter().map(|r| &r.expr));
    queries.map(expr_history_ms).fold(floor, i64::max)
}

/// The history one expression reads before its evaluation time: a selector's offset, a range's width
/// plus its offset, a subquery's width and offset on top of what its inner expression reads; any other
/// node reads what the most demanding of its children ([`Expr::children`]) reads.
fn expr_history_ms(e: &Expr) -> i64 {
    let back = |offset_ms: i64| offset_ms.max(0);
    let inner = || {
        e.children()
            .into_iter()
            .map(expr_history_ms)
            .max()
            .unwrap_or(0)
    };
    match &e.kind {
        ExprKind::Selector(sel) => back(sel.offset_ms),
        ExprKind::Matrix { sel, range_ms } => range_ms.saturating_add(back(sel.offset_ms)),
        ExprKind::Subquery {
            range_ms,
            offset_ms,
            ..
        } => range_ms
            .saturating_add(back(*offset_ms))
            .saturating_add(inner()),
        _ => inner(),
    }
}

/// Restart hygiene, second half: why a policy must not act yet, or `None` when its inputs are covered.
///
/// `since_ms` is the store's [`surge_store::SeriesCache::history_since`]: from when it holds every
/// sample. A policy reading `needed_ms` of history at `now_ms` decides only once that window lies
/// after it; before, an `avg_over_time(x[1m])` (or `max_over_time`, `irate`, `deriv`) over the 10 s
/// an aggregator has been up reads the last 10 s as if they were the minute (a burst becomes a
/// scale-up a full window would not make), a `rate` reads low (Prometheus divides by the whole range:
/// a scale-down), and an average over the pods that wrote again reads whatever those happen to be. This holds scale-ups as well as
/// scale-downs; [`WarmUp`] keeps holding scale-downs longer, for the engine's own memory.
pub fn history_gap(since_ms: i64, needed_ms: i64, now_ms: i64) -> Option<String> {
    if since_ms == surge_store::HISTORY_PENDING {
        return Some(
            "waiting for the recent window from a peer replica (the cache is being warmed)".into(),
        );
    }
    let from = now_ms.saturating_sub(needed_ms);
    if from >= since_ms {
        return None;
    }
    Some(format!(
        "the inputs read {} s of history and the cache holds it for {} s ({} s to go)",
        (needed_ms + 999) / 1000,
        (now_ms.saturating_sub(since_ms).max(0)) / 1000,
        (since_ms - from + 999) / 1000,
    ))
}

/// Holds `decision` at the current count because its inputs are not covered (see [`history_gap`]).
pub fn hold_uncovered(decision: &mut surge_engine::Decision, why: &str) {
    decision.reason = format!(
        "held at {} until the inputs are covered: {why}; the engine proposed {} ({})",
        decision.current_replicas, decision.desired_replicas, decision.reason
    );
    decision.desired_replicas = decision.current_replicas;
    decision.scale = false;
}

#[cfg(test)]
mod history_tests {
    use super::*;

    fn def(query: &str) -> PolicyDef {
        tests::policies_with("", query).remove(0)
    }

    #[test]
    fn history_is_the_longest_range_with_offsets_and_subqueries() {
        let five = Some(std::time::Duration::from_secs(5));
        // (query, needed ms)
        let cases = [
            ("sum(x)", 5_000),
            ("sum(rate(x[1m]))", 60_000),
            ("sum(rate(x[30s] offset 1m)) + sum(y)", 90_000),
            ("max_over_time(rate(x[1m])[5m:15s])", 360_000),
            ("sum(x offset 10s)", 10_000),
            ("sum(rate(x[1s]))", 5_000),
            ("quantile(0.9, avg_over_time(x[2m]))", 120_000),
        ];
        for (q, want) in cases {
            assert_eq!(history_needed_ms(&def(q), five), want, "{q}");
        }
        assert_eq!(history_needed_ms(&def("sum(x)"), None), 0);
    }

    #[test]
    fn a_window_is_covered_only_after_the_history_start() {
        let start = 1_000_000;
        // A 1 min rate, 10 s after start: 50 s to go.
        let why = history_gap(start, 60_000, start + 10_000).unwrap();
        assert!(why.contains("60 s of history"), "{why}");
        assert!(why.contains("50 s to go"), "{why}");
        assert_eq!(history_gap(start, 60_000, start + 60_000), None);
        assert_eq!(history_gap(surge_store::HISTORY_COMPLETE, 60_000, 0), None);
        let pending = history_gap(surge_store::HISTORY_PENDING, 0, start).unwrap();
        assert!(pending.contains("peer"), "{pending}");
    }
}
