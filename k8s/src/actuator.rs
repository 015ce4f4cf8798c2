//! [`KubeActuator`]: the engine's [`Actuator`] on a real cluster.
//!
//! ```text
//! engine loop (sync, up to 50×/s per policy)
//!   observe ─▶ cached /scale (scale.rs) + pods of the namespace (reflector) filtered by its selector
//!   apply   ─▶ dry-run: VirtualWorkloads · hpa: nothing · scale: leader? ─▶ desired ─▶ patch task
//!             dry-run/hpa with `events`: a change, on the leader ─▶ Event task (scale.rs)
//! ```
//!
//! Architecture invariant: neither `observe` nor `apply` waits for the network. Both read caches that
//! watches keep current and hand work to tasks; the engine loop is never blocked by the API server.
//!
//! Pods: one reflector per namespace (a watch of every pod, managed fields and annotations dropped to
//! save memory), shared by the policies of that namespace. Its staleness is one watch delivery; after a
//! watch error the reflector relists (with backoff) and keeps serving the last complete list meanwhile.
//! The `PodInfo` list of a selector is recomputed only when a pod event arrived since.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::{Expression, Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
// `surge_actuate::ScaleTarget` is a policy's view (name, workload, mode); `scale::ScaleTarget` is one
// workload's watched `/scale`.
use surge_actuate::{
    Action, Actuator, Observed, ScaleTarget as Policy, VirtualWorkloads, Workload,
};
use surge_config::ActuationMode;
use surge_engine::{
    ConditionStatus, ContainerRequests, Decision, InitContainerRequests, PodInfo, PodPhase,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::{LeaderElector, LeaderHandle, LeaseConfig, LeaseConfigError};
use crate::scale::{Desired, PatchContext, ScaleMetrics, ScaleTarget};

/// Tuning of [`KubeActuator`]; the defaults suit an engine that evaluates many times a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeActuatorConfig {
    /// Re-read each target's `/scale` at least this often, even when its watch is quiet.
    pub scale_resync: Duration,
    /// Do not serve a cached `/scale` older than this (the API server has been unreachable).
    pub max_scale_age: Duration,
    /// Longest a `/scale` PATCH may take; it is also cut short when leadership would end sooner.
    pub patch_timeout: Duration,
    /// Record a `SuccessfulRescale` Event on each patch (`scale` mode). The Events of `dry-run` and
    /// `hpa` policies follow each policy's own `events`.
    pub events: bool,
    /// How long [`KubeActuator::start`] waits for the caches of the configured policies.
    pub initial_sync_timeout: Duration,
    /// Longest a `/scale` patch waits for the NodeClaims of its decision to be written.
    pub claims_wait: Duration,
}

impl Default for KubeActuatorConfig {
    fn default() -> Self {
        KubeActuatorConfig {
            scale_resync: Duration::from_secs(10),
            max_scale_age: Duration::from_secs(60),
            patch_timeout: Duration::from_secs(5),
            events: true,
            initial_sync_timeout: Duration::from_secs(10),
            claims_wait: Duration::from_secs(2),
        }
    }
}

/// Why the Kubernetes actuation could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No Kubernetes client: neither in a cluster nor a usable kubeconfig (`$KUBECONFIG`).
    #[error(
        "no Kubernetes client for /scale actuation (not in a cluster and no usable kubeconfig)"
    )]
    Client(#[source] kube::Error),
    /// The Lease settings from the environment do not work.
    #[error("invalid leader election settings")]
    Lease(#[source] LeaseConfigError),
}

/// Actuation on a real cluster: reads `/scale` and pods, and patches `/scale` when this replica is the
/// Lease leader. Dry-run policies go to a [`VirtualWorkloads`]; `hpa` policies are observed but never
/// actuated (a real HPA reads surge's metrics API). A dry-run or hpa policy with `events` has each
/// decision that changes the replica count recorded as an Event by the leader.
pub struct KubeActuator {
    ctx: Arc<PatchContext>,
    dry_run: VirtualWorkloads,
    runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
    /// By `apiVersion/kind/namespace/name`.
    targets: Mutex<HashMap<String, Arc<ScaleTarget>>>,
    /// By namespace.
    pods: Mutex<HashMap<String, Arc<PodCache>>>,
    /// By policy: the last `(current, desired)` recorded as an Event, so an `hpa` policy whose decision
    /// stands until the HPA acts records it once, not once per evaluation.
    recorded: Mutex<HashMap<String, (i32, i32)>>,
    /// Node actuation, when node decisions are configured ([`KubeActuator::set_nodes`]).
    nodes: std::sync::OnceLock<Arc<crate::nodes::NodeActuator>>,
    /// The NodeClaim writes of the decision being applied: the engine applies a decision's
    /// `NodeClaims` right before its `Scale` (same evaluation, same thread), which takes them.
    claims_of_decision: Mutex<Option<crate::nodes::ClaimsWritten>>,
}

impl KubeActuator {
    /// Starts following the workloads (and their namespaces' pods) of every policy that is not dry-run
    /// (and the workloads of dry-run policies with `events`, for their Events' uid), and waits up to
    /// `cfg.initial_sync_timeout` for those caches. Workloads of policies not given here are followed
    /// from their first `observe`. Everything stops on `cancel`.
    pub async fn start(
        client: Client,
        leader: LeaderHandle,
        cfg: KubeActuatorConfig,
        policies: &[Policy],
        registry: &mut Registry,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let metrics = ScaleMetrics::new(registry);
        let gauge = metrics.leader.clone();
        let mut leading = leader.subscribe();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                gauge.set(i64::from(*leading.borrow_and_update()));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = leading.changed() => if changed.is_err() { return },
                }
            }
        });
        let actuator = Arc::new(KubeActuator {
            ctx: Arc::new(PatchContext {
                client,
                leader,
                metrics,
                patch_timeout: cfg.patch_timeout,
                scale_resync: cfg.scale_resync,
                max_scale_age: cfg.max_scale_age,
                events: cfg.events,
                claims_wait: cfg.claims_wait,
            }),
            dry_run: VirtualWorkloads::default(),
            runtime: tokio::runtime::Handle::current(),
            cancel,
            targets: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
            recorded: Mutex::new(HashMap::new()),
            nodes: std::sync::OnceLock::new(),
            claims_of_decision: Mutex::new(None),
        });
        // A dry-run policy's workload is followed only for its Events' uid; its pods are not needed.
        let followed: Vec<_> = policies
            .iter()
            .filter(|p| p.mode != ActuationMode::DryRun || p.events)
            .map(|p| {
                (
                    actuator.target(&p.workload),
                    (p.mode != ActuationMode::DryRun)
                        .then(|| actuator.pod_cache(&p.workload.namespace)),
                )
            })
            .collect();
        let synced = futures::future::join_all(followed.iter().map(|(t, p)| async move {
            t.wait_synced().await;
            if let Some(p) = p {
                p.wait_ready().await;
            }
        }));
        if tokio::time::timeout(cfg.initial_sync_timeout, synced)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?cfg.initial_sync_timeout,
                "workload caches not synced yet: their policies see \"unknown\" until they are"
            );
        }
        actuator
    }

    /// Whether the `/scale` and pod caches of `workload` have been filled once.
    pub fn is_synced(&self, workload: &Workload) -> bool {
        let target = self.targets.lock().get(&target_key(workload)).cloned();
        let pods = self.pods.lock().get(&workload.namespace).cloned();
        target.is_some_and(|t| t.is_synced()) && pods.is_some_and(|p| p.is_ready())
    }

    /// The outcome of the latest patch task run for `workload` (`patched /scale 3 → 5`, `patch failed:
    /// …`, `not the leader: skipped`, `already at 5`); `apply` itself can only say it was queued.
    pub fn last_outcome(&self, workload: &Workload) -> Option<String> {
        self.targets
            .lock()
            .get(&target_key(workload))
            .and_then(|t| t.last_outcome())
    }

    /// Carries out node decisions (NodeClaims, headroom) with `nodes` and answers `observe_nodes` from
    /// its caches. Set once; a second call is ignored (returns false).
    pub fn set_nodes(&self, nodes: Arc<crate::nodes::NodeActuator>) -> bool {
        self.nodes.set(nodes).is_ok()
    }

    /// The client this actuator uses (the same one serves node actuation).
    pub fn client(&self) -> &Client {
        &self.ctx.client
    }

    /// The leader election this actuator obeys.
    pub fn leader(&self) -> &LeaderHandle {
        &self.ctx.leader
    }

    fn target(&self, w: &Workload) -> Arc<ScaleTarget> {
        self.targets
            .lock()
            .entry(target_key(w))
            .or_insert_with(|| {
                ScaleTarget::start(
                    w.clone(),
                    self.ctx.clone(),
                    &self.runtime,
                    self.cancel.clone(),
                )
            })
            .clone()
    }

    fn pod_cache(&self, namespace: &str) -> Arc<PodCache> {
        self.pods
            .lock()
            .entry(namespace.to_owned())
            .or_insert_with(|| {
                PodCache::start(
                    self.ctx.client.clone(),
                    namespace,
                    &self.runtime,
                    self.cancel.clone(),
                )
            })
            .clone()
    }
}

impl Actuator for KubeActuator {
    fn observe(&self, policy: &Policy, metric_pods: &[&str]) -> Option<Observed> {
        if policy.mode == ActuationMode::DryRun {
            return self.dry_run.observe(policy, metric_pods);
        }
        let scale = self.target(&policy.workload).observed()?;
        let pods = match scale.selector.as_deref() {
            Some(selector) => self.pod_cache(&policy.workload.namespace).pods(selector)?,
            // The HPA refuses a target without a selector; no pod can be attributed to it.
            None => Vec::new(),
        };
        Some(Observed {
            spec_replicas: scale.spec_replicas,
            status_replicas: scale.status_replicas,
            pods,
        })
    }

    fn apply(&self, action: Action<'_>) -> String {
        match action {
            Action::Scale { target, decision } => self.scale(target, decision),
            Action::NodeClaims { create, delete } => match self.nodes.get() {
                Some(n) => {
                    let (said, written) = n.apply_claims_written(create, delete);
                    *self.claims_of_decision.lock() = written;
                    said
                }
                None => "node actuation not configured: skipped".into(),
            },
            Action::Headroom { headroom } => match self.nodes.get() {
                Some(n) => n.apply_headroom(headroom),
                None => "node actuation not configured: skipped".into(),
            },
            _ => "not an action of the Kubernetes actuator: skipped".into(),
        }
    }

    fn observe_nodes(&self) -> Option<surge_actuate::NodeView> {
        self.nodes.get()?.observe_nodes()
    }

    /// From the workload's `spec.template` (its watch, so a workload at zero replicas has one too);
    /// else from a live pod of the workload (its `/scale` selector's). Dry-run policies have none.
    fn pod_template(&self, policy: &Policy) -> Option<surge_nodes::Pod> {
        if policy.mode == ActuationMode::DryRun {
            return None;
        }
        let nodes = self.nodes.get()?;
        let key = policy.workload.key();
        let target = self.target(&policy.workload);
        if let Some(mut template) = target.pod_template() {
            template.name = key.clone();
            nodes.remember_template(&key, &template);
            return Some(template);
        }
        let scale = target.observed()?;
        let selector = parse_selector(scale.selector.as_deref()?).ok()?;
        nodes.pod_template(&key, &selector)
    }
}

impl KubeActuator {
    /// A pod decision: dry-run and hpa modes report (and with `events`, record a change as an Event),
    /// scale mode queues a `/scale` patch (leader only).
    fn scale(&self, policy: &Policy, decision: &Decision) -> String {
        // Taken whatever happens below, so it never delays a later decision's patch.
        let after_claims = self.claims_of_decision.lock().take();
        match policy.mode {
            ActuationMode::DryRun => {
                let said = self.dry_run.apply(Action::Scale {
                    target: policy,
                    decision,
                });
                self.record_decision(policy, decision);
                return said;
            }
            ActuationMode::Hpa => {
                self.record_decision(policy, decision);
                return "hpa mode: served to the HPA, no patch".into();
            }
            ActuationMode::Scale => {}
        }
        let before = decision.current_replicas;
        if !decision.scale {
            return format!("stays at {before}");
        }
        if !self.ctx.leader.is_leader() {
            self.ctx.metrics.count("not_leader");
            return "not the leader: skipped".into();
        }
        let target = self.target(&policy.workload);
        let Some(observed) = target.observed() else {
            return "target not observed yet: skipped".into();
        };
        if observed.spec_replicas == decision.desired_replicas {
            return format!("already at {}", decision.desired_replicas);
        }
        target.request(Desired {
            replicas: decision.desired_replicas,
            from: observed.spec_replicas,
            reason: decision.reason.clone(),
            queued_at: Instant::now(),
            after_claims,
        });
        format!(
            "/scale patch queued {} → {}",
            observed.spec_replicas, decision.desired_replicas
        )
    }

    /// A dry-run or hpa policy with `events`: a decision that changes the replica count becomes an
    /// Event, recorded by the leader only, once per distinct change, on a task (never waited for here).
    fn record_decision(&self, policy: &Policy, decision: &Decision) {
        if !policy.events || !decision.scale || !self.ctx.leader.is_leader() {
            return;
        }
        let change = (decision.current_replicas, decision.desired_replicas);
        {
            let mut recorded = self.recorded.lock();
            if recorded.get(&policy.policy) == Some(&change) {
                return;
            }
            recorded.insert(policy.policy.clone(), change);
        }
        self.target(&policy.workload)
            .record_decision(policy.mode, decision, &self.runtime);
    }
}

fn target_key(w: &Workload) -> String {
    format!("{}/{}/{}/{}", w.api_version, w.kind, w.namespace, w.name)
}

/// Starts Kubernetes actuation when any policy has mode `scale` or `events` on: a client (in-cluster,
/// else `$KUBECONFIG`), the Lease election (see [`LeaseConfig::from_env`]; only the leader patches and
/// records Events), and a [`KubeActuator`]. `None` when no policy needs it, so a dry-run setup without
/// Events needs no cluster.
pub async fn start_for_policies(
    policies: &[Policy],
    registry: &mut Registry,
    cancel: CancellationToken,
) -> Result<Option<Arc<KubeActuator>>, StartError> {
    if !needs_cluster(policies) {
        return Ok(None);
    }
    let client = Client::try_default().await.map_err(StartError::Client)?;
    let lease = LeaseConfig::from_env();
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity,
        "starting leader election for /scale actuation and decision Events");
    let leader =
        LeaderElector::start(client.clone(), lease, cancel.clone()).map_err(StartError::Lease)?;
    let actuator = KubeActuator::start(
        client,
        leader,
        KubeActuatorConfig::default(),
        policies,
        registry,
        cancel,
    )
    .await;
    Ok(Some(actuator))
}

/// Whether `policies` need the cluster: one patches `/scale`, or records its decisions as Events.
fn needs_cluster(policies: &[Policy]) -> bool {
    policies
        .iter()
        .any(|p| p.mode == ActuationMode::Scale || p.events)
}

/// The pods of one selector, and the cache generation they were computed at.
type MemoizedPods = (u64, Arc<Vec<PodInfo>>);

/// Every pod of one namespace, kept by a reflector.
struct PodCache {
    store: Store<Pod>,
    ready: Arc<AtomicBool>,
    /// Bumped after each event the store applied: memoized lists older than this are recomputed.
    generation: Arc<AtomicU64>,
    /// Per selector string: the generation it was computed at, and the pods.
    memo: Mutex<HashMap<String, MemoizedPods>>,
    ready_tx: tokio::sync::watch::Sender<bool>,
}

impl PodCache {
    fn start(
        client: Client,
        namespace: &str,
        runtime: &tokio::runtime::Handle,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let cache = Arc::new(PodCache {
            store,
            ready: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
            memo: Mutex::new(HashMap::new()),
            ready_tx: tokio::sync::watch::channel(false).0,
        });
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let ns = namespace.to_owned();
        let c = cache.clone();
        runtime.spawn(async move {
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|pod: &mut Pod| {
                    pod.managed_fields_mut().clear();
                    pod.annotations_mut().clear();
                })
                .reflect(writer);
            futures::pin_mut!(events);
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = events.next() => ev,
                };
                match ev {
                    None => return,
                    Some(Ok(watcher::Event::InitDone)) => {
                        c.generation.fetch_add(1, Ordering::AcqRel);
                        if !c.ready.swap(true, Ordering::AcqRel) {
                            c.ready_tx.send_replace(true);
                        }
                    }
                    Some(Ok(_)) => {
                        c.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(namespace = %ns, error = %e, "pod watch error (relisting)");
                    }
                }
            }
        });
        cache
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    async fn wait_ready(&self) {
        let mut rx = self.ready_tx.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The pods matching `selector`; `None` until the first list completed.
    fn pods(&self, selector: &str) -> Option<Vec<PodInfo>> {
        if !self.is_ready() {
            return None;
        }
        // Read the generation before the store: a list computed from a newer store under an older
        // generation is only recomputed once more, never served stale.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((g, pods)) = self.memo.lock().get(selector)
            && *g == generation
        {
            return Some(pods.as_ref().clone());
        }
        let pods: Vec<PodInfo> = match parse_selector(selector) {
            Ok(sel) => self
                .store
                .state()
                .iter()
                .filter(|p| sel.matches(p.labels()))
                .map(|p| pod_info(p))
                .collect(),
            Err(e) => {
                tracing::warn!(selector, error = %e, "cannot parse the /scale selector: no pods");
                Vec::new()
            }
        };
        let pods = Arc::new(pods);
        self.memo
            .lock()
            .insert(selector.to_owned(), (generation, pods.clone()));
        Some(pods.as_ref().clone())
    }
}

/// A pod as the engine sees it: phase, Ready condition, start time, deletion, container requests.
pub fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        // "Pending", and a pod so new it has no phase yet.
        _ => PodPhase::Pending,
    };
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let spec = p.spec.as_ref();
    let containers = spec
        .map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .map(container_requests)
        .collect();
    // Init containers in order: sidecars (restartPolicy Always) count in the HPA's requests, plain ones
    // in the pod-level aggregate (the engine decides, as calculateRequests does).
    let init_containers = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            let ContainerRequests { name, requests } = container_requests(c);
            InitContainerRequests {
                name,
                requests,
                restartable: c.restart_policy.as_deref() == Some("Always"),
            }
        })
        .collect();
    let pod_requests = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|r| milli_requests(r.iter()));
    let overhead = spec
        .and_then(|s| s.overhead.as_ref())
        .map(|o| milli_requests(o.iter()))
        .unwrap_or_default();
    PodInfo {
        name: p.name_any(),
        phase,
        ready: ready.map(|c| match c.status.as_str() {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }),
        ready_transition_ms: ready
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(0, |t| t.0.as_millisecond()),
        start_ms: status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_millisecond()),
        deleting: p.metadata.deletion_timestamp.is_some(),
        containers,
        init_containers,
        pod_requests,
        overhead,
    }
}

/// Requests as milli-units (`MilliValue()`), cpu and memory only; an unreadable quantity is left out.
fn milli_requests<'a>(
    list: impl Iterator<
        Item = (
            &'a String,
            &'a k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        ),
    >,
) -> std::collections::BTreeMap<String, i64> {
    list.filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
        .filter_map(|(name, q)| {
            surge_engine::quantity::parse_milli(&q.0)
                .ok()
                .map(|v| (name.clone(), v))
        })
        .collect()
}

fn container_requests(c: &Container) -> ContainerRequests {
    let requests = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|r| milli_requests(r.iter()))
        .unwrap_or_default();
    ContainerRequests {
        name: c.name.clone(),
        requests,
    }
}

/// A label selector string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector requirement {requirement:?}")]
pub struct SelectorError {
    /// The offending requirement.
    pub requirement: String,
}

/// Parses a label selector string as `/scale`'s `status.selector` carries it (`metav1.FormatLabelSelector`):
/// comma-separated `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    let mut requirements = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                requirements.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    requirements.push(&text[start..]);
    let mut exprs = Vec::new();
    for r in requirements {
        let r = r.trim();
        if r.is_empty() {
            continue;
        }
        exprs.push(parse_requirement(r).ok_or_else(|| SelectorError {
            requirement: r.to_owned(),
        })?);
    }
    Ok(exprs.into_iter().collect())
}

fn parse_requirement(r: &str) -> Option<Expression> {
    if let Some(key) = r.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key).then(|| Expression::DoesNotExist(key.to_owned()));
    }
    let end = r
        .find(|c: char| c.is_whitespace() || c == '=' || c == '!' || c == '(')
        .unwrap_or(r.len());
    let (key, rest) = r.split_at(end);
    if !valid_key(key) {
        return None;
    }
    let key = key.to_owned();
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Some(Expression::Exists(key));
    }
    if let Some(v) = rest.strip_prefix("!=") {
        return Some(Expression::NotEqual(key, v.trim().to_owned()));
    }
    if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        return Some(Expression::Equal(key, v.trim().to_owned()));
    }
    let set = |s: &str| -> Option<std::collections::BTreeSet<String>> {
        let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(
            inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect(),
        )
    };
    if let Some(s) = rest.strip_prefix("notin") {
        return Some(Expression::NotIn(key, set(s)?));
    }
    if let Some(s) = rest.strip_prefix("in") {
        return Some(Expression::In(key, set(s)?));
    }
    None
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_cluster_is_needed_for_scale_mode_or_events() {
        let p = |mode, events| Policy {
            policy: "p".into(),
            workload: Workload {
                namespace: "ns".into(),
                name: "web".into(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into(),
            },
            mode,
            initial_replicas: 1,
            events,
        };
        assert!(!needs_cluster(&[]));
        assert!(!needs_cluster(&[
            p(ActuationMode::DryRun, false),
            p(ActuationMode::Hpa, false)
        ]));
        assert!(needs_cluster(&[p(ActuationMode::Scale, false)]));
        assert!(needs_cluster(&[
            p(ActuationMode::Hpa, false),
            p(ActuationMode::DryRun, true)
        ]));
        assert!(needs_cluster(&[p(ActuationMode::Hpa, true)]));
    }

    #[test]
    fn selectors_parse_and_match() {
        // (selector, labels, matches)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("app=web", &[("app", "web")], true),
            ("app=web", &[("app", "api")], false),
            (
                "app==web,tier=front",
                &[("app", "web"), ("tier", "front")],
                true,
            ),
            ("app=web,tier=front", &[("app", "web")], false),
            ("app!=web", &[("app", "api")], true),
            ("app!=web", &[], true),
            ("tier in (a, b),app", &[("tier", "b"), ("app", "x")], true),
            ("tier in (a,b)", &[("tier", "c")], false),
            ("tier notin (a,b)", &[("tier", "c")], true),
            ("tier notin (a,b)", &[], true),
            ("!canary", &[("app", "web")], true),
            ("!canary", &[("canary", "1")], false),
            (
                "app.kubernetes.io/name=web",
                &[("app.kubernetes.io/name", "web")],
                true,
            ),
            ("", &[("app", "web")], true),
        ];
        for (text, l, want) in cases {
            let sel = parse_selector(text).unwrap();
            assert_eq!(sel.matches(&labels(l)), *want, "{text:?} on {l:?}");
        }
        for bad in ["app in a,b", "=x", "app ~ x", "a b"] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pods_convert_to_engine_pods() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "labels": {"app": "web"}, "deletionTimestamp": "2026-01-01T00:00:10Z"},
            "spec": {
                "containers": [
                    {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "nvidia.com/gpu": "1"}}},
                    {"name": "plain"}
                ],
                "initContainers": [
                    {"name": "init", "resources": {"requests": {"cpu": "1"}}},
                    {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}
                ]
            },
            "status": {
                "phase": "Running",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}
                ]
            }
        }))
        .unwrap();
        let info = pod_info(&pod);
        assert_eq!(info.name, "web-1");
        assert_eq!(info.phase, PodPhase::Running);
        assert_eq!(info.ready, Some(ConditionStatus::True));
        assert_eq!(info.ready_transition_ms, 1_767_225_605_000);
        assert_eq!(info.start_ms, Some(1_767_225_600_000));
        assert!(info.deleting);
        let reqs: Vec<_> = info
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.requests.clone()))
            .collect();
        assert_eq!(
            reqs,
            vec![
                (
                    "app",
                    BTreeMap::from([
                        ("cpu".to_owned(), 250),
                        ("memory".to_owned(), 64 * 1024 * 1024 * 1000)
                    ])
                ),
                ("plain", BTreeMap::new()),
            ]
        );
        // Init containers keep their order and say which are sidecars: the engine counts them.
        let init: Vec<_> = info
            .init_containers
            .iter()
            .map(|c| (c.name.as_str(), c.restartable, c.requests.clone()))
            .collect();
        assert_eq!(
            init,
            vec![
                ("init", false, BTreeMap::from([("cpu".to_owned(), 1000)])),
                ("proxy", true, BTreeMap::from([("cpu".to_owned(), 100)])),
            ]
        );
        assert_eq!(info.pod_requests, None);
        let pending: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}})).unwrap();
        let info = pod_info(&pending);
        assert_eq!(
            (info.phase, info.ready, info.start_ms, info.deleting),
            (PodPhase::Pending, None, None, false)
        );
    }
}
