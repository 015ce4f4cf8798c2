//! A workload's `/scale` subresource: a watch-fed cache of its replica counts and selector, and one
//! task per workload that patches it.
//!
//! ```text
//! watch the target object (metadata.name=<name>) ─any event─▶ GET …/{plural}/{name}/scale ─▶ cache
//!   (and at least every `scale_resync`, and from each PATCH response)
//! engine: apply(decision) ─▶ desired (watch channel: the last desired wins) ─▶ patch task (one per
//!   workload, so two decisions never race) ─leader?─▶ PATCH …/scale {"spec":{"replicas":N}} ─▶ Event
//! dry-run/hpa policy with `events`, a change, on the leader ─▶ Event task (DryRunRescale,
//!   SurgeRecommendation; the uid from the cache)
//! ```
//!
//! Staleness: the cached `/scale` lags the API server by one watch delivery plus one GET (milliseconds);
//! a watch that stalls silently is covered by the periodic resync, so the cache is never older than
//! `scale_resync` plus one request while the API server answers. A value older than `max_scale_age`
//! (the API server has been unreachable) is not served at all: the engine then sees "unknown" and no
//! patch is sent. Our own patches update the cache from the PATCH response at once.
//!
//! The engine-facing [`Actuator`](surge_actuate::Actuator) is [`KubeActuator`].

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use surge_actuate::Workload;
use surge_config::ActuationMode;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::actuator::{KubeActuator, KubeActuatorConfig};
use crate::lease::LeaderHandle;
/// The engine types the [`Actuator`](surge_actuate::Actuator) trait speaks.
pub use surge_engine::{Decision, PodInfo};

/// The field manager our patches are recorded under (`kubectl get -o yaml --show-managed-fields`).
const FIELD_MANAGER: &str = "surge";
/// How often `/scale` is read when the target object cannot be watched.
const POLL_WITHOUT_WATCH: Duration = Duration::from_secs(2);
/// `reason` of the Event on each patch, as the HPA controller writes it.
pub const RESCALE_REASON: &str = "SuccessfulRescale";
/// `reason` of the Event on a `dry-run` policy's decision that changes its (virtual) replica count.
pub const DRY_RUN_REASON: &str = "DryRunRescale";
/// `reason` of the Event on an `hpa` policy's decision that would change the replica count (surge does
/// not apply it: the real HPA decides).
pub const RECOMMENDATION_REASON: &str = "SurgeRecommendation";

/// What `/scale` said, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedScale {
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.selector`: the pods of the workload, as a label selector string.
    pub selector: Option<String>,
    /// The workload's uid (the Scale carries its parent's), for Events.
    pub uid: Option<String>,
    /// When it was read (or returned by our PATCH).
    pub at: Instant,
}

impl ObservedScale {
    fn from_scale(scale: &k8s_openapi::api::autoscaling::v1::Scale) -> Self {
        ObservedScale {
            spec_replicas: scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
            selector: scale
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .filter(|s| !s.is_empty()),
            uid: scale.metadata.uid.clone(),
            at: Instant::now(),
        }
    }
}

/// The API resource of a workload kind: group and version from `apiVersion`, the plural from the kind
/// (`Deployment` → `deployments`, `StatefulSet` → `statefulsets`, `ReplicaSet` → `replicasets`,
/// `ReplicationController` → `replicationcontrollers`; any other kind, such as a custom resource with
/// a scale subresource, is lower-cased with an `s` appended).
pub fn api_resource(w: &Workload) -> ApiResource {
    let (group, version) = match w.api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), w.api_version.clone()),
    };
    let plural = match w.kind.as_str() {
        "Deployment" => "deployments".to_owned(),
        "StatefulSet" => "statefulsets".to_owned(),
        "ReplicaSet" => "replicasets".to_owned(),
        "ReplicationController" => "replicationcontrollers".to_owned(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    ApiResource {
        group,
        version,
        api_version: w.api_version.clone(),
        kind: w.kind.clone(),
        plural,
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The actuation metrics, registered once per actuator.
#[derive(Clone)]
pub(crate) struct ScaleMetrics {
    patches: Family<ResultLabel, Counter>,
    decision_to_patch: Histogram,
    claims_wait: Family<OutcomeLabel, Counter>,
    pub(crate) leader: Gauge,
}

impl ScaleMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = ScaleMetrics {
            patches: Family::default(),
            decision_to_patch: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            claims_wait: Family::default(),
            leader: Gauge::default(),
        };
        registry.register(
            "surge_scale_claims_wait",
            "Scale patches that waited for their decision's NodeClaim writes, by outcome (written, timeout)",
            m.claims_wait.clone(),
        );
        registry.register(
            "surge_scale_actuations",
            "Scale decisions by outcome (patched, failed, unchanged, not_leader)",
            m.patches.clone(),
        );
        registry.register(
            "surge_decision_to_patch_seconds",
            "From a scale decision to the API server's answer to its /scale PATCH",
            m.decision_to_patch.clone(),
        );
        registry.register(
            "surge_leader",
            "1 while this replica holds the Lease and may actuate",
            m.leader.clone(),
        );
        m
    }

    pub(crate) fn count(&self, result: &'static str) {
        self.patches.get_or_create(&ResultLabel { result }).inc();
    }
}

/// A replica count to set, and why.
#[derive(Debug, Clone)]
pub(crate) struct Desired {
    pub(crate) replicas: i32,
    /// The engine's `current_replicas`, shown when the cache has no better value.
    pub(crate) from: i32,
    pub(crate) reason: String,
    pub(crate) queued_at: Instant,
    /// The NodeClaim writes of the same decision: the patch goes out once they left the node
    /// actuator's queue, or after `claims_wait` regardless.
    pub(crate) after_claims: Option<crate::nodes::ClaimsWritten>,
}

/// What the patch tasks share.
pub(crate) struct PatchContext {
    pub(crate) client: Client,
    pub(crate) leader: LeaderHandle,
    pub(crate) metrics: ScaleMetrics,
    pub(crate) patch_timeout: Duration,
    pub(crate) scale_resync: Duration,
    pub(crate) max_scale_age: Duration,
    pub(crate) events: bool,
    pub(crate) claims_wait: Duration,
}

/// One workload's `/scale`: the cache, the desired count and the last outcome.
pub(crate) struct ScaleTarget {
    pub(crate) workload: Workload,
    api: Api<DynamicObject>,
    scale: RwLock<Option<ObservedScale>>,
    /// Patches that landed (their answers went into `scale`): a GET that was in flight across one
    /// may carry the count from before it and must not overwrite the newer answer.
    patched: std::sync::atomic::AtomicU64,
    /// Set after the first GET answered (found or not).
    synced: watch::Sender<bool>,
    desired: watch::Sender<Option<Desired>>,
    last_outcome: Mutex<Option<String>>,
    /// The workload object as its watch last delivered it (its `spec.template` is the pod the next
    /// replica will be), `None` until seen or once deleted.
    object: RwLock<Option<Arc<DynamicObject>>>,
    ctx: Arc<PatchContext>,
}

impl ScaleTarget {
    /// Starts following `workload`'s `/scale` and its patch task on `runtime`.
    pub(crate) fn start(
        workload: Workload,
        ctx: Arc<PatchContext>,
        runtime: &tokio::runtime::Handle,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let resource = api_resource(&workload);
        if !matches!(
            workload.kind.as_str(),
            "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController"
        ) {
            tracing::warn!(workload = %workload.key(), kind = %workload.kind, plural = %resource.plural,
                "unknown kind: guessing its resource plural");
        }
        let api = Api::<DynamicObject>::namespaced_with(
            ctx.client.clone(),
            &workload.namespace,
            &resource,
        );
        let (desired, desired_rx) = watch::channel(None);
        let target = Arc::new(ScaleTarget {
            workload,
            api,
            scale: RwLock::new(None),
            patched: std::sync::atomic::AtomicU64::new(0),
            synced: watch::channel(false).0,
            desired,
            last_outcome: Mutex::new(None),
            object: RwLock::new(None),
            ctx,
        });
        runtime.spawn(target.clone().follow(cancel.clone()));
        runtime.spawn(target.clone().patch_loop(desired_rx, cancel));
        target
    }

    /// The cached `/scale`, unless it is older than `max_scale_age`.
    pub(crate) fn observed(&self) -> Option<ObservedScale> {
        self.scale
            .read()
            .as_ref()
            .filter(|s| s.at.elapsed() <= self.ctx.max_scale_age)
            .cloned()
    }

    pub(crate) fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub(crate) async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Hands `d` to the patch task; a desired count not yet patched is replaced (the last one wins).
    pub(crate) fn request(&self, d: Desired) {
        self.desired.send_replace(Some(d));
    }

    pub(crate) fn last_outcome(&self) -> Option<String> {
        self.last_outcome.lock().clone()
    }

    /// The pod the workload's next replica will be, from its `spec.template` (Deployment,
    /// StatefulSet, ReplicaSet): known at zero replicas too, unlike a live pod. `None` before the
    /// watch delivered the object, for a kind without a pod template, or when it cannot be read.
    pub(crate) fn pod_template(&self) -> Option<surge_nodes::Pod> {
        let object = self.object.read().clone()?;
        let mut object = object.as_ref().clone();
        // Objects of a list carry no `apiVersion`/`kind`; the template reader goes by the kind.
        object.types = Some(kube::api::TypeMeta {
            api_version: self.workload.api_version.clone(),
            kind: self.workload.kind.clone(),
        });
        let text = serde_json::to_string(&object).ok()?;
        match surge_nodes::Pod::from_k8s_yaml(&text, &self.workload.key()) {
            Ok(pod) => Some(pod),
            Err(e) => {
                tracing::debug!(workload = %self.workload.key(), error = %e,
                    "the workload's pod template is not readable for node decisions");
                None
            }
        }
    }

    /// Keeps the object a watch event carries (its pod template), or forgets a deleted one.
    fn keep_object(&self, ev: &watcher::Event<DynamicObject>) {
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                *self.object.write() = Some(Arc::new(o.clone()));
            }
            watcher::Event::Delete(_) => *self.object.write() = None,
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// Records a `dry-run` or `hpa` policy's decision as an Event on the workload ([`decision_event`]),
    /// on a task of `runtime`: the caller never waits for the API server. The workload's uid (which
    /// `kubectl describe` selects Events by) comes from the cached `/scale`, or from one GET of it while
    /// the cache is still empty. The caller checks leadership.
    pub(crate) fn record_decision(
        self: &Arc<Self>,
        mode: ActuationMode,
        decision: &Decision,
        runtime: &tokio::runtime::Handle,
    ) {
        let cached_uid = self.observed().and_then(|s| s.uid);
        let (replicas, reason) = (decision.desired_replicas, decision.reason.clone());
        let target = self.clone();
        runtime.spawn(async move {
            let key = target.workload.key();
            let uid = match cached_uid {
                Some(uid) => Some(uid),
                None => match target.api.get_scale(&target.workload.name).await {
                    Ok(scale) => scale.metadata.uid,
                    Err(e) => {
                        tracing::debug!(workload = %key, error = %e,
                            "reading /scale for the Event's uid failed");
                        None
                    }
                },
            };
            let event = decision_event(
                &target.workload,
                uid,
                mode,
                replicas,
                &reason,
                target.ctx.leader.identity(),
            );
            let ns = &target.workload.namespace;
            let api: Api<Event> = Api::namespaced(target.ctx.client.clone(), ns);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::warn!(workload = %key, error = %e, "recording the decision Event failed");
            }
        });
    }

    /// Re-reads `/scale` on every change of the target object, and every `scale_resync` regardless.
    /// Without permission to watch the object (RBAC that grants `/scale` only), it polls `/scale` every
    /// [`POLL_WITHOUT_WATCH`] instead.
    async fn follow(self: Arc<Self>, cancel: CancellationToken) {
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", self.workload.name));
        let events = watcher(self.api.clone(), config).default_backoff();
        futures::pin_mut!(events);
        let mut resync = tokio::time::interval(self.ctx.scale_resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = resync.tick() => {}
                ev = events.next(), if watching => match ev {
                    Some(Ok(ev)) => {
                        self.keep_object(&ev);
                        // Coalesce a burst (the initial list, a rollout's status updates) into one GET.
                        while let Some(Some(ev)) = events.next().now_or_never() {
                            if let Ok(ev) = ev {
                                self.keep_object(&ev);
                            }
                        }
                    }
                    Some(Err(e)) if is_forbidden(&e) => {
                        let poll = POLL_WITHOUT_WATCH.min(self.ctx.scale_resync);
                        tracing::warn!(workload = %self.workload.key(), every = ?poll,
                            "not allowed to watch the scale target (grant list/watch on it for prompt updates): polling /scale");
                        watching = false;
                        resync = tokio::time::interval(poll);
                        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(workload = %self.workload.key(), error = %e, "workload watch error");
                        continue;
                    }
                    None => {
                        watching = false;
                        continue;
                    }
                },
            }
            self.refresh().await;
        }
    }

    async fn refresh(&self) {
        use std::sync::atomic::Ordering;
        let patched_before = self.patched.load(Ordering::Acquire);
        match self.api.get_scale(&self.workload.name).await {
            Ok(scale) => {
                let mut cached = self.scale.write();
                // A patch answered while this GET was in flight: its answer is at least as new (the
                // next watch event refreshes again). Seen as a second, redundant patch of one decision.
                if self.patched.load(Ordering::Acquire) == patched_before {
                    *cached = Some(ObservedScale::from_scale(&scale));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if self.scale.write().take().is_some() {
                    tracing::warn!(workload = %self.workload.key(), "scale target not found");
                }
            }
            Err(e) => {
                // Keep the last value: `observed` stops serving it once it is too old.
                tracing::warn!(workload = %self.workload.key(), error = %e, "reading /scale failed");
                return;
            }
        }
        self.synced
            .send_if_modified(|s| !std::mem::replace(s, true));
    }

    /// One patch at a time for this workload, always toward the latest desired count.
    async fn patch_loop(
        self: Arc<Self>,
        mut rx: watch::Receiver<Option<Desired>>,
        cancel: CancellationToken,
    ) {
        use std::sync::atomic::Ordering;
        // The count this loop's last patch set, while the cache still shows it: a request for the same
        // count, queued by an evaluation that ran before this replica's cache saw that patch, is a
        // repeat and changes nothing (the patch stays the reported outcome).
        let mut landed: Option<i32> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
            let Some(desired) = rx.borrow_and_update().clone() else {
                continue;
            };
            let cached = self.scale.read().as_ref().map(|s| s.spec_replicas);
            if landed == Some(desired.replicas) && cached == landed {
                continue;
            }
            if let Some(claims) = &desired.after_claims {
                self.wait_for_claims(claims).await;
            }
            let patched_before = self.patched.load(Ordering::Acquire);
            let outcome = self.patch(&desired).await;
            landed = (self.patched.load(Ordering::Acquire) != patched_before)
                .then_some(desired.replicas);
            *self.last_outcome.lock() = Some(outcome);
        }
    }

    /// Holds the patch until the decision's NodeClaims were written (accepted or failed), at most
    /// `claims_wait`: pods must not reach the API server before the capacity asked for them, but a
    /// throttled or slow claim write must not hold a scale-up for long either.
    async fn wait_for_claims(&self, claims: &crate::nodes::ClaimsWritten) {
        let outcome = if claims.wait(self.ctx.claims_wait).await {
            "written"
        } else {
            tracing::warn!(workload = %self.workload.key(), waited = ?self.ctx.claims_wait,
                "the decision's NodeClaims are not written yet: patching /scale anyway");
            "timeout"
        };
        self.ctx
            .metrics
            .claims_wait
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    async fn patch(&self, d: &Desired) -> String {
        let key = self.workload.key();
        let Some(left) = self.ctx.leader.remaining() else {
            self.ctx.metrics.count("not_leader");
            return "not the leader: skipped".into();
        };
        let from = self
            .scale
            .read()
            .as_ref()
            .map_or(d.from, |s| s.spec_replicas);
        if from == d.replicas {
            self.ctx.metrics.count("unchanged");
            return format!("already at {from}");
        }
        // Never let a patch land long after this replica may have stopped leading.
        let limit = self.ctx.patch_timeout.min(left);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let body = Patch::Merge(serde_json::json!({"spec": {"replicas": d.replicas}}));
        let answer = tokio::time::timeout(
            limit,
            self.api.patch_scale(&self.workload.name, &params, &body),
        )
        .await;
        match answer {
            Ok(Ok(scale)) => {
                let observed = ObservedScale::from_scale(&scale);
                let uid = observed.uid.clone();
                {
                    let mut cached = self.scale.write();
                    *cached = Some(observed);
                    self.patched
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                self.ctx.metrics.count("patched");
                self.ctx
                    .metrics
                    .decision_to_patch
                    .observe(d.queued_at.elapsed().as_secs_f64());
                tracing::info!(workload = %key, from, to = d.replicas, reason = %d.reason, "patched /scale");
                if self.ctx.events {
                    let event = rescale_event(&self.workload, uid, d, self.ctx.leader.identity());
                    let client = self.ctx.client.clone();
                    let ns = self.workload.namespace.clone();
                    // Off the patch path: the next patch does not wait for the Event.
                    tokio::spawn(async move {
                        let api: Api<Event> = Api::namespaced(client, &ns);
                        if let Err(e) = api.create(&PostParams::default(), &event).await {
                            tracing::warn!(workload = %key, error = %e, "recording the rescale Event failed");
                        }
                    });
                }
                format!("patched /scale {from} → {}", d.replicas)
            }
            Ok(Err(e)) => {
                self.ctx.metrics.count("failed");
                tracing::warn!(workload = %key, from, to = d.replicas, error = %e, "patching /scale failed");
                format!("patch failed: {e}")
            }
            Err(_) => {
                self.ctx.metrics.count("failed");
                tracing::warn!(workload = %key, from, to = d.replicas, timeout = ?limit, "patching /scale timed out");
                format!("patch failed: no answer within {limit:?}")
            }
        }
    }
}

fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// A core/v1 Event like the HPA controller's: `SuccessfulRescale`, "New size: N; reason: …".
fn rescale_event(w: &Workload, uid: Option<String>, d: &Desired, instance: &str) -> Event {
    workload_event(
        w,
        uid,
        RESCALE_REASON,
        format!("New size: {}; reason: {}", d.replicas, d.reason),
        instance,
    )
}

/// The Event of a decision surge does not apply itself: [`DRY_RUN_REASON`] in `dry-run` mode,
/// [`RECOMMENDATION_REASON`] in `hpa` mode, and the HPA's message prefixed with `dry-run:` ("dry-run:
/// New size: N; reason: …").
pub(crate) fn decision_event(
    w: &Workload,
    uid: Option<String>,
    mode: ActuationMode,
    replicas: i32,
    reason: &str,
    instance: &str,
) -> Event {
    let event_reason = match mode {
        ActuationMode::Hpa => RECOMMENDATION_REASON,
        ActuationMode::DryRun | ActuationMode::Scale => DRY_RUN_REASON,
    };
    workload_event(
        w,
        uid,
        event_reason,
        format!("dry-run: New size: {replicas}; reason: {reason}"),
        instance,
    )
}

/// A Normal core/v1 Event about `w`, reported by surge's `instance`.
fn workload_event(
    w: &Workload,
    uid: Option<String>,
    reason: &str,
    message: String,
    instance: &str,
) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", w.name, now.as_nanosecond())),
            namespace: Some(w.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(w.api_version.clone()),
            kind: Some(w.kind.clone()),
            name: Some(w.name.clone()),
            namespace: Some(w.namespace.clone()),
            uid,
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("surge".into()),
            host: None,
        }),
        reporting_component: Some("surge".into()),
        reporting_instance: Some(instance.to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: &str, api_version: &str) -> Workload {
        Workload {
            namespace: "ns".into(),
            name: "web".into(),
            kind: kind.into(),
            api_version: api_version.into(),
        }
    }

    #[test]
    fn kinds_map_to_resources() {
        let r = api_resource(&workload("Deployment", "apps/v1"));
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("apps", "v1", "deployments")
        );
        let r = api_resource(&workload("StatefulSet", "apps/v1"));
        assert_eq!(r.plural, "statefulsets");
        let r = api_resource(&workload("ReplicaSet", "apps/v1"));
        assert_eq!(r.plural, "replicasets");
        let r = api_resource(&workload("ReplicationController", "v1"));
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("", "v1", "replicationcontrollers")
        );
        let r = api_resource(&workload("Rollout", "argoproj.io/v1alpha1"));
        assert_eq!(
            (r.group.as_str(), r.plural.as_str()),
            ("argoproj.io", "rollouts")
        );
    }

    #[test]
    fn event_reads_like_the_hpa() {
        let d = Desired {
            replicas: 5,
            from: 3,
            reason: "external metric rps above target".into(),
            queued_at: Instant::now(),
            after_claims: None,
        };
        let e = rescale_event(
            &workload("Deployment", "apps/v1"),
            Some("u-1".into()),
            &d,
            "agg-0",
        );
        assert_eq!(e.reason.as_deref(), Some("SuccessfulRescale"));
        assert_eq!(
            e.message.as_deref(),
            Some("New size: 5; reason: external metric rps above target")
        );
        assert_eq!(e.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Deployment"));
        assert!(e.metadata.name.unwrap().starts_with("web."));
    }

    #[test]
    fn decision_events_say_dry_run() {
        let w = workload("Deployment", "apps/v1");
        let e = decision_event(
            &w,
            Some("u-2".into()),
            ActuationMode::DryRun,
            5,
            "external metric rps above target",
            "agg-1",
        );
        assert_eq!(e.reason.as_deref(), Some("DryRunRescale"));
        assert_eq!(
            e.message.as_deref(),
            Some("dry-run: New size: 5; reason: external metric rps above target")
        );
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_component.as_deref(), Some("surge"));
        assert_eq!(e.reporting_instance.as_deref(), Some("agg-1"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("web."));
        let o = &e.involved_object;
        assert_eq!(
            (
                o.api_version.as_deref(),
                o.kind.as_deref(),
                o.namespace.as_deref(),
                o.name.as_deref(),
                o.uid.as_deref()
            ),
            (
                Some("apps/v1"),
                Some("Deployment"),
                Some("ns"),
                Some("web"),
                Some("u-2")
            )
        );
        assert_eq!(e.count, Some(1));
        let e = decision_event(&w, None, ActuationMode::Hpa, 2, "scale down", "agg-1");
        assert_eq!(e.reason.as_deref(), Some("SurgeRecommendation"));
        assert_eq!(
            e.message.as_deref(),
            Some("dry-run: New size: 2; reason: scale down")
        );
        assert_eq!(e.involved_object.uid, None);
    }
}
