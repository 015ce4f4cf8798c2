//! Lease leader election and `/scale` actuation against a real control plane (`../shared/k8s`: etcd,
//! kube-apiserver, controller-manager, scheduler; `fake-node.sh n1`; `ready-pods.sh 0` playing the
//! kubelet) with a Deployment `act/web`.
//!
//! One control plane for this binary, on this file's own ports, started by the first test and stopped by
//! a watchdog shell once the test process exits (a static is never dropped). The tests share it and run
//! one at a time (`SERIAL`); each uses its own Lease name.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use surge_autoscaler::{Action, Actuator, ScaleTarget, build_policies};
use surge_config::ActuationMode;
use surge_k8s::lease::{LeaderElector, LeaderHandle, LeaseConfig};
use surge_k8s::scale::{Decision, KubeActuator, KubeActuatorConfig, PodInfo};
use surge_tests::k8s::{ControlPlane, start_plane};
use tokio_util::sync::CancellationToken;

/// This file's control plane ports (other suites use 26443/36443/46443).
const APISERVER_PORT: u16 = 56443;
const ETCD_PORT: u16 = 63790;
/// Where the workload and the Leases live.
const NS: &str = "act";

/// One test at a time: they share the control plane and the Deployment.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static PLANE: OnceLock<ControlPlane> = OnceLock::new();

// ---------------------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------------------

/// The plane, started on first use: up.sh (with its watchdog), node n1, ready-pods.sh, namespace `act`
/// and Deployment `web` with one replica.
fn plane() -> &'static ControlPlane {
    PLANE.get_or_init(start)
}

fn start() -> ControlPlane {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "surge_k8s=info".into()),
        )
        .with_test_writer()
        .try_init();
    let plane = start_plane(APISERVER_PORT, ETCD_PORT, None).unwrap();
    plane.script("fake-node.sh", &["n1", "8", "32Gi", "110"]);
    plane.ready_pods().unwrap();
    plane.kubectl(&["create", "namespace", NS], None);
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
          resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
"#
        )),
    );
    plane
}

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// A Lease config with short timings so the tests do not wait 15 s per handover (unless `default`).
fn lease(name: &str, identity: &str, fast: bool) -> LeaseConfig {
    let mut c = LeaseConfig::new(name, NS, identity);
    if fast {
        c.lease_duration = Duration::from_secs(4);
        c.renew_deadline = Duration::from_secs(3);
        c.renew_period = Duration::from_millis(500);
        c.retry_period = Duration::from_millis(500);
    }
    c
}

/// A policy on `act/web` in `mode`.
fn policy(mode: &str) -> ScaleTarget {
    policy_with(mode, "")
}

/// A policy on `act/web` in `mode`, with `extra` policy fields (one `key: value` line).
fn policy_with(mode: &str, extra: &str) -> ScaleTarget {
    let yaml = format!(
        r#"policies:
  - name: web-{mode}
    mode: {mode}
    {extra}
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {{name: web, namespace: {NS}}}
      spec:
        scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
        minReplicas: 1
        maxReplicas: 20
        metrics:
          - type: External
            external:
              metric: {{name: rps}}
              target: {{type: AverageValue, averageValue: "10"}}
    metrics:
      rps: sum(rate(http_requests_total[30s]))
"#
    );
    let cfg = surge_config::from_str_default_env(&yaml, "test.yaml").unwrap();
    let mut p = build_policies(&cfg).unwrap();
    assert_eq!(p.len(), 1);
    p.remove(0).target
}

/// A scale decision `current → desired`.
fn decision(current: i32, desired: i32, reason: &str) -> Decision {
    serde_json::from_value(serde_json::json!({
        "now_ms": 0,
        "current_replicas": current,
        "desired_replicas": desired,
        "scale": current != desired,
        "inputs": {
            "current_replicas": current, "status_replicas": current, "min_replicas": 1,
            "max_replicas": 20, "scale_up_tolerance": 0.1, "scale_down_tolerance": 0.1,
            "pods": current, "behavior": false
        },
        "metrics": [],
        "conditions": [],
        "reason": reason
    }))
    .unwrap()
}

/// Starts an elector (a separate cancel token so a test can stop it alone).
fn elect(client: &kube::Client, cfg: LeaseConfig) -> (LeaderHandle, CancellationToken) {
    let cancel = CancellationToken::new();
    let h = LeaderElector::start(client.clone(), cfg, cancel.clone()).unwrap();
    (h, cancel)
}

async fn actuator(
    client: &kube::Client,
    leader: LeaderHandle,
    policies: &[ScaleTarget],
) -> Arc<KubeActuator> {
    let mut registry = Registry::default();
    KubeActuator::start(
        client.clone(),
        leader,
        KubeActuatorConfig::default(),
        policies,
        &mut registry,
        CancellationToken::new(),
    )
    .await
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Each change of `act/web`'s `spec.replicas`, as a watch delivers it, with its arrival time.
#[derive(Clone, Default)]
struct ReplicaChanges(Arc<Mutex<Vec<(Instant, i32)>>>);

impl ReplicaChanges {
    async fn start(client: &kube::Client) -> ReplicaChanges {
        let changes = ReplicaChanges::default();
        let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
        let c = changes.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let stream = watcher(api, watcher::Config::default().fields("metadata.name=web"))
                .default_backoff();
            futures::pin_mut!(stream);
            let mut last = None;
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let replicas = match &ev {
                    watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                        d.spec.as_ref().and_then(|s| s.replicas)
                    }
                    watcher::Event::InitDone => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(last);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(r) = replicas
                    && last != Some(r)
                {
                    if last.is_some() || ready.is_none() {
                        c.0.lock().push((Instant::now(), r));
                    }
                    last = Some(r);
                }
            }
        });
        ready_rx.await.unwrap();
        changes
    }

    fn all(&self) -> Vec<i32> {
        self.0.lock().iter().map(|c| c.1).collect()
    }

    fn first_at(&self, replicas: i32, after: Instant) -> Option<Instant> {
        self.0
            .lock()
            .iter()
            .find(|(t, r)| *r == replicas && *t >= after)
            .map(|c| c.0)
    }
}

async fn deployment_replicas(client: &kube::Client) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap()
}

async fn set_replicas(client: &kube::Client, n: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": n}})),
    )
    .await
    .unwrap();
}

async fn get_lease(client: &kube::Client, name: &str) -> LeaseSpec {
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    api.get(name).await.unwrap().spec.unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

/// Two electors on one Lease (client-go's default timing): exactly one leads; after the leader crashes
/// (its task killed, the Lease not released) the other leads within lease duration + renew period, and
/// at no sampled instant (every 50 ms) do both lead. Then a graceful shutdown releases the Lease and a
/// newcomer takes it over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_handover_after_a_crash_and_a_release() {
    let _serial = SERIAL.lock().await;
    let client = plane().admin_client().await.unwrap();
    let cfg_a = lease("handover", "a", false);
    let (a, _ca) = elect(&client, cfg_a.clone());
    let (b, cb) = elect(&client, lease("handover", "b", false));
    wait_for("a leader", Duration::from_secs(10), || {
        a.is_leader() || b.is_leader()
    })
    .await;
    // Watch it settle: exactly one, and it stays so.
    for _ in 0..40 {
        assert!(a.is_leader() ^ b.is_leader(), "exactly one leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower, follower_cancel) = if a.is_leader() {
        (a.clone(), b.clone(), cb.clone())
    } else {
        (b.clone(), a.clone(), _ca.clone())
    };
    let spec = get_lease(&client, "handover").await;
    assert_eq!(spec.holder_identity.as_deref(), Some(leader.identity()));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    let transitions_before = spec.lease_transitions.unwrap_or(0);
    let mut follower_changes = follower.subscribe();
    follower_changes.borrow_and_update();

    // Crash: no release.
    leader.abort();
    let crashed = Instant::now();
    assert!(
        !leader.is_leader(),
        "a crashed leader stops leading at once"
    );
    let mut samples = 0;
    while !follower.is_leader() {
        assert!(
            !(leader.is_leader() && follower.is_leader()),
            "two leaders at once"
        );
        samples += 1;
        assert!(crashed.elapsed() < Duration::from_secs(30), "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = crashed.elapsed();
    for _ in 0..20 {
        assert!(!leader.is_leader() && follower.is_leader());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(follower_changes.has_changed().unwrap() && *follower_changes.borrow_and_update());
    let bound = cfg_a.lease_duration + cfg_a.renew_period;
    eprintln!(
        "takeover after a crash: {:.2} s (bound {:.0} s, {samples} samples, never two leaders)",
        takeover.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(takeover <= bound, "takeover took {takeover:?}");
    let spec = get_lease(&client, "handover").await;
    assert_eq!(spec.holder_identity.as_deref(), Some(follower.identity()));
    assert_eq!(spec.lease_transitions, Some(transitions_before + 1));

    // Graceful shutdown: released, and a newcomer takes over at its first attempt.
    follower_cancel.cancel();
    follower.stopped().await;
    assert!(!follower.is_leader());
    let spec = get_lease(&client, "handover").await;
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    let started = Instant::now();
    let (c, cc) = elect(&client, lease("handover", "c", false));
    wait_for("c to lead", Duration::from_secs(3), || c.is_leader()).await;
    eprintln!(
        "takeover after a release: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let spec = get_lease(&client, "handover").await;
    assert_eq!(spec.holder_identity.as_deref(), Some("c"));
    assert_eq!(spec.lease_transitions, Some(transitions_before + 2));
    cc.cancel();
    c.stopped().await;
}

/// Two actuators, each with its own elector, given the same decisions: the Deployment is patched once
/// per decision, by the leader only (its Event names it); after the leader crashes, the follower patches
/// the next decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_patches_each_decision_once() {
    let _serial = SERIAL.lock().await;
    let client = plane().admin_client().await.unwrap();
    set_replicas(&client, 1).await;
    let p = policy("scale");
    let (la, ca) = elect(&client, lease("actuation", "replica-a", true));
    let (lb, cb) = elect(&client, lease("actuation", "replica-b", true));
    let a = actuator(&client, la.clone(), std::slice::from_ref(&p)).await;
    let b = actuator(&client, lb.clone(), std::slice::from_ref(&p)).await;
    wait_for("a leader", Duration::from_secs(10), || {
        la.is_leader() || lb.is_leader()
    })
    .await;
    wait_for("observed 1 replica", Duration::from_secs(10), || {
        a.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 1)
            && b.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 1)
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let events_before = rescale_events(&events).await.len();
    let changes = ReplicaChanges::start(&client).await;
    let (leader, follower, leader_handle, follower_handle) = if la.is_leader() {
        (a.clone(), b.clone(), la.clone(), lb.clone())
    } else {
        (b.clone(), a.clone(), lb.clone(), la.clone())
    };

    // Decision 1: both replicas evaluate it (the follower first, to show it does nothing).
    let d = decision(1, 2, "external metric rps above target");
    let follower_said = follower.apply(Action::Scale {
        target: &p,
        decision: &d,
    });
    let leader_said = leader.apply(Action::Scale {
        target: &p,
        decision: &d,
    });
    assert_eq!(follower_said, "not the leader: skipped");
    assert_eq!(leader_said, "/scale patch queued 1 → 2");
    wait_for("web at 2", Duration::from_secs(5), || {
        changes.all().contains(&2)
    })
    .await;
    // The engine evaluates again and again: repeats change nothing.
    for _ in 0..10 {
        leader.apply(Action::Scale {
            target: &p,
            decision: &d,
        });
        follower.apply(Action::Scale {
            target: &p,
            decision: &d,
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(changes.all(), vec![2], "patched exactly once");
    assert_eq!(
        leader.last_outcome(&p.workload).as_deref(),
        Some("patched /scale 1 → 2")
    );
    assert_eq!(follower.last_outcome(&p.workload), None);

    // The leader crashes; the follower takes over and patches the next decision.
    leader_handle.abort();
    wait_for("the follower to lead", Duration::from_secs(10), || {
        follower_handle.is_leader()
    })
    .await;
    wait_for("both observe 2", Duration::from_secs(5), || {
        follower
            .observe(&p, &[])
            .is_some_and(|o| o.spec_replicas == 2)
    })
    .await;
    let d = decision(2, 3, "external metric rps above target");
    assert_eq!(
        leader.apply(Action::Scale {
            target: &p,
            decision: &d
        }),
        "not the leader: skipped"
    );
    assert_eq!(
        follower.apply(Action::Scale {
            target: &p,
            decision: &d
        }),
        "/scale patch queued 2 → 3"
    );
    wait_for("web at 3", Duration::from_secs(5), || {
        changes.all().contains(&3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(changes.all(), vec![2, 3], "one patch per decision");
    assert_eq!(deployment_replicas(&client).await, 3);

    // One SuccessfulRescale Event per patch, from the replica that patched.
    let mut found = Vec::new();
    for _ in 0..50 {
        found = rescale_events(&events).await;
        if found.len() >= events_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new: Vec<(String, String)> = found[events_before..]
        .iter()
        .map(|e| {
            (
                e.message.clone().unwrap_or_default(),
                e.reporting_instance.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        new,
        vec![
            (
                "New size: 2; reason: external metric rps above target".to_owned(),
                leader_handle.identity().to_owned()
            ),
            (
                "New size: 3; reason: external metric rps above target".to_owned(),
                follower_handle.identity().to_owned()
            ),
        ]
    );
    ca.cancel();
    cb.cancel();
}

async fn rescale_events(api: &Api<Event>) -> Vec<Event> {
    let mut list: Vec<Event> = api
        .list(&ListParams::default().fields("involvedObject.name=web,reason=SuccessfulRescale"))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| e.metadata.name.clone());
    list
}

/// Events of `act/web` with `reason`, oldest first.
async fn events_with_reason(api: &Api<Event>, reason: &str) -> Vec<Event> {
    let mut list: Vec<Event> = api
        .list(&ListParams::default().fields(&format!("involvedObject.name=web,reason={reason}")))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| e.metadata.name.clone());
    list
}

/// Waits (up to 5 s) for `want` more Events with `reason` than `before`, then a little longer for any
/// extra one; returns the new ones.
async fn new_events(api: &Api<Event>, reason: &str, before: usize, want: usize) -> Vec<Event> {
    let start = Instant::now();
    let mut found = events_with_reason(api, reason).await;
    while found.len() < before + want && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        found = events_with_reason(api, reason).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    events_with_reason(api, reason).await.split_off(before)
}

/// `events: true` on dry-run and hpa policies: two actuators with their own electors are given the same
/// decisions; the leader records one Event per change on the Deployment (`DryRunRescale`,
/// `SurgeRecommendation`, "dry-run: New size: N; reason: …", with its uid, so `kubectl describe` shows
/// them), the follower none, and the Deployment is never patched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_hpa_decisions_become_events_on_the_leader() {
    let _serial = SERIAL.lock().await;
    let plane = plane();
    let client = plane.admin_client().await.unwrap();
    set_replicas(&client, 1).await;
    let dry = policy_with("dry-run", "events: true");
    let hpa = policy_with("hpa", "events: true");
    assert!(dry.events && hpa.events);
    assert!(!policy("dry-run").events, "off by default");
    let policies = [dry.clone(), hpa.clone()];
    let (la, ca) = elect(&client, lease("events", "events-a", true));
    let (lb, cb) = elect(&client, lease("events", "events-b", true));
    let a = actuator(&client, la.clone(), &policies).await;
    let b = actuator(&client, lb.clone(), &policies).await;
    wait_for("a leader", Duration::from_secs(10), || {
        la.is_leader() || lb.is_leader()
    })
    .await;
    let (leader, follower, leader_handle) = if la.is_leader() {
        (a.clone(), b.clone(), la.clone())
    } else {
        (b.clone(), a.clone(), lb.clone())
    };
    wait_for(
        "hpa policy observes 1 replica",
        Duration::from_secs(10),
        || {
            leader
                .observe(&hpa, &[])
                .is_some_and(|o| o.spec_replicas == 1)
        },
    )
    .await;
    let uid = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("web")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let dry_before = events_with_reason(&events, "DryRunRescale").await.len();
    let hpa_before = events_with_reason(&events, "SurgeRecommendation")
        .await
        .len();

    // Dry-run: both replicas apply every decision to their virtual counts (return strings unchanged);
    // the follower first, to show it records nothing.
    let scale = |act: &KubeActuator, t: &ScaleTarget, d: &Decision| {
        act.apply(Action::Scale {
            target: t,
            decision: d,
        })
    };
    let up = decision(1, 4, "external metric rps above target");
    let stay = decision(4, 4, "within tolerance");
    let down = decision(4, 2, "external metric rps below target");
    assert_eq!(scale(&follower, &dry, &up), "dry-run: 1 → 4");
    assert_eq!(scale(&leader, &dry, &up), "dry-run: 1 → 4");
    assert_eq!(scale(&leader, &dry, &stay), "dry-run: stays at 4");
    assert_eq!(scale(&follower, &dry, &down), "dry-run: 4 → 2");
    assert_eq!(scale(&leader, &dry, &down), "dry-run: 4 → 2");
    assert_eq!(leader.observe(&dry, &[]).unwrap().spec_replicas, 2);

    // hpa: a decision stands until the HPA acts, so the engine repeats it: recorded once.
    for _ in 0..5 {
        assert_eq!(
            scale(
                &follower,
                &hpa,
                &decision(1, 3, "external metric rps above target")
            ),
            "hpa mode: served to the HPA, no patch"
        );
        assert_eq!(
            scale(
                &leader,
                &hpa,
                &decision(1, 3, "external metric rps above target")
            ),
            "hpa mode: served to the HPA, no patch"
        );
    }

    let summary = |list: &[Event]| -> Vec<(String, String, String, String)> {
        list.iter()
            .map(|e| {
                let o = &e.involved_object;
                (
                    e.message.clone().unwrap_or_default(),
                    e.reporting_instance.clone().unwrap_or_default(),
                    format!(
                        "{}/{}",
                        o.kind.as_deref().unwrap_or_default(),
                        o.name.as_deref().unwrap_or_default()
                    ),
                    o.uid.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let me = leader_handle.identity().to_owned();
    let dry_new = new_events(&events, "DryRunRescale", dry_before, 2).await;
    assert_eq!(
        summary(&dry_new),
        vec![
            (
                "dry-run: New size: 4; reason: external metric rps above target".to_owned(),
                me.clone(),
                "Deployment/web".to_owned(),
                uid.clone()
            ),
            (
                "dry-run: New size: 2; reason: external metric rps below target".to_owned(),
                me.clone(),
                "Deployment/web".to_owned(),
                uid.clone()
            ),
        ],
        "one Event per change, from the leader only"
    );
    let hpa_new = new_events(&events, "SurgeRecommendation", hpa_before, 1).await;
    assert_eq!(
        summary(&hpa_new),
        vec![(
            "dry-run: New size: 3; reason: external metric rps above target".to_owned(),
            me.clone(),
            "Deployment/web".to_owned(),
            uid.clone()
        )]
    );
    // What a user sees: `kubectl describe` selects Events by the object's uid.
    let described = plane.kubectl(&["describe", "deployment", "web", "-n", NS], None);
    assert!(
        described.contains("DryRunRescale")
            && described.contains("dry-run: New size: 2; reason: external metric rps below target")
            && described.contains("SurgeRecommendation"),
        "{described}"
    );
    assert_eq!(deployment_replicas(&client).await, 1, "never patched");
    ca.cancel();
    cb.cancel();
}

/// `observe` reports the Deployment's real replica counts and its pods as ready-pods.sh left them;
/// dry-run policies see the virtual workload and `hpa` ones are never actuated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_returns_real_replicas_and_ready_pods() {
    let _serial = SERIAL.lock().await;
    let client = plane().admin_client().await.unwrap();
    set_replicas(&client, 2).await;
    let p = policy("hpa");
    let (leader, cancel) = elect(&client, lease("observe", "o", true));
    let act = actuator(&client, leader, std::slice::from_ref(&p)).await;
    let ready = |pods: &[PodInfo]| {
        pods.len() == 2
            && pods.iter().all(|pod| {
                format!("{:?}/{:?}", pod.phase, pod.ready) == "Running/Some(True)" && !pod.deleting
            })
    };
    let waited = wait_for("2 ready pods", Duration::from_secs(30), || {
        act.observe(&p, &[])
            .is_some_and(|o| o.spec_replicas == 2 && o.status_replicas == 2 && ready(&o.pods))
    })
    .await;
    let seen = act.observe(&p, &[]).unwrap();
    let (spec, status, pods) = (seen.spec_replicas, seen.status_replicas, seen.pods);
    eprintln!("observe: {spec}/{status} replicas, pods ready after {waited:?}");
    for pod in &pods {
        assert!(pod.name.starts_with("web-"), "{}", pod.name);
        assert!(pod.start_ms.is_some_and(|t| t > 0));
        assert!(pod.ready_transition_ms > 0);
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].requests["cpu"], 100);
        assert_eq!(
            pod.containers[0].requests["memory"],
            64 * 1024 * 1024 * 1000
        );
    }
    // A change made by someone else shows up through the watch, without any PATCH of ours.
    set_replicas(&client, 3).await;
    let waited = wait_for("3 replicas observed", Duration::from_secs(5), || {
        act.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 3)
    })
    .await;
    eprintln!(
        "an outside /scale change observed after {:.0} ms",
        waited.as_secs_f64() * 1e3
    );
    assert_eq!(
        act.apply(Action::Scale {
            target: &p,
            decision: &decision(3, 5, "test")
        }),
        "hpa mode: served to the HPA, no patch"
    );
    let mut dry = p.clone();
    dry.mode = ActuationMode::DryRun;
    dry.policy = "web-dry".into();
    assert_eq!(
        act.observe(&dry, &[]).unwrap().spec_replicas,
        dry.initial_replicas
    );
    assert_eq!(
        act.apply(Action::Scale {
            target: &dry,
            decision: &decision(1, 4, "test")
        }),
        "dry-run: 1 → 4"
    );
    assert_eq!(act.observe(&dry, &[]).unwrap().spec_replicas, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        deployment_replicas(&client).await,
        3,
        "no patch outside scale mode"
    );
    cancel.cancel();
}

/// A Lease whose holder stopped renewing long ago is taken over at once; one whose holder renews is
/// not, until the holder stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_holder_is_taken_over_live_holder_is_not() {
    let _serial = SERIAL.lock().await;
    let client = plane().admin_client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let ago = |s: i64| {
        MicroTime(
            Timestamp::now()
                .checked_sub(SignedDuration::from_secs(s))
                .unwrap(),
        )
    };
    let by_hand = |name: &str, renewed: MicroTime, duration: i32| Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("ghost".into()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(ago(3600)),
            renew_time: Some(renewed),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    };
    leases
        .create(&PostParams::default(), &by_hand("dead", ago(60), 15))
        .await
        .unwrap();
    let started = Instant::now();
    let (x, cx) = elect(&client, lease("dead", "x", false));
    wait_for("x takes the dead lease", Duration::from_secs(3), || {
        x.is_leader()
    })
    .await;
    eprintln!("dead holder taken over after {:?}", started.elapsed());
    let spec = get_lease(&client, "dead").await;
    assert_eq!(spec.holder_identity.as_deref(), Some("x"));
    assert_eq!(spec.lease_transitions, Some(4));

    // A live holder renews every second (lease 5 s); y must wait.
    leases
        .create(&PostParams::default(), &by_hand("live", ago(0), 5))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let renewer = {
        let leases = leases.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
                leases
                    .patch("live", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let (y, cy) = elect(&client, lease("live", "y", false));
    for _ in 0..(8_000 / 50) {
        assert!(!y.is_leader(), "took a lease its live holder renews");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_lease(&client, "live").await.holder_identity.as_deref(),
        Some("ghost")
    );
    // The holder dies: y takes over once its 5 s lease ran out.
    stop.cancel();
    renewer.await.unwrap();
    let died = Instant::now();
    wait_for("y takes over", Duration::from_secs(10), || y.is_leader()).await;
    let after = died.elapsed();
    eprintln!("live holder stopped renewing; taken over after {after:?}");
    assert!(
        after >= Duration::from_secs(3),
        "took over too early: {after:?}"
    );
    assert_eq!(get_lease(&client, "live").await.lease_transitions, Some(4));
    cx.cancel();
    cy.cancel();
    x.stopped().await;
    y.stopped().await;
}

/// Decision → patch visible to a watch of the Deployment, over 20 decisions; also two decisions in a
/// row end at the later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_to_patch_latency() {
    let _serial = SERIAL.lock().await;
    let client = plane().admin_client().await.unwrap();
    set_replicas(&client, 2).await;
    let p = policy("scale");
    let (leader, cancel) = elect(&client, lease("latency", "l", true));
    let act = actuator(&client, leader.clone(), std::slice::from_ref(&p)).await;
    wait_for("leader", Duration::from_secs(10), || leader.is_leader()).await;
    wait_for("observed 2", Duration::from_secs(10), || {
        act.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 2)
    })
    .await;
    let changes = ReplicaChanges::start(&client).await;
    let mut took = Vec::new();
    let mut current = 2;
    for i in 0..20 {
        let desired = if i % 2 == 0 { 3 } else { 2 };
        let decided = Instant::now();
        let said = act.apply(Action::Scale {
            target: &p,
            decision: &decision(current, desired, "latency test"),
        });
        assert_eq!(said, format!("/scale patch queued {current} → {desired}"));
        wait_for("the patch to be watched", Duration::from_secs(5), || {
            changes.first_at(desired, decided).is_some()
        })
        .await;
        took.push(changes.first_at(desired, decided).unwrap() - decided);
        current = desired;
        wait_for("observed", Duration::from_secs(5), || {
            act.observe(&p, &[])
                .is_some_and(|o| o.spec_replicas == desired)
        })
        .await;
    }
    took.sort();
    let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
    eprintln!(
        "decision → patch seen by a watch, {} decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        took.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");

    // Decisions in a row: 2 → 5 → 7 → 6, each queued before the last patch answered: the patches are
    // serialized and the last desired count wins; the count never goes back to an older one.
    let before = changes.all().len();
    for (from, to) in [(2, 5), (5, 7), (7, 6)] {
        act.apply(Action::Scale {
            target: &p,
            decision: &decision(from, to, "burst"),
        });
    }
    wait_for("web at 6", Duration::from_secs(5), || {
        act.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 6)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst = changes.all()[before..].to_vec();
    eprintln!("burst 5, 7, 6 → watched {burst:?}");
    assert_eq!(burst.last(), Some(&6));
    assert_eq!(deployment_replicas(&client).await, 6);
    cancel.cancel();
}

/// With the least-privilege RBAC of `deploy/` (Lease in its namespace, `deployments/scale` get/patch,
/// Events) plus the pod read access `observe` needs, and no read access to the Deployment itself: the
/// actuator polls `/scale` instead of watching the object, and still observes and patches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_scale_only_rbac() {
    let _serial = SERIAL.lock().await;
    let plane = plane();
    let admin = plane.admin_client().await.unwrap();
    set_replicas(&admin, 1).await;
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: scaler, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: scaler, namespace: {NS}}}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "create", "update"]
  - apiGroups: ["apps"]
    resources: ["deployments/scale", "statefulsets/scale"]
    verbs: ["get", "patch", "update"]
  - apiGroups: ["", "events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: scaler, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: scaler}}
subjects: [{{kind: ServiceAccount, name: scaler, namespace: {NS}}}]
"#
        )),
    );
    let token = plane.kubectl(
        &["create", "token", "scaler", "-n", NS, "--duration", "1h"],
        None,
    );
    let kubeconfig = Kubeconfig::from_yaml(&format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{}", certificate-authority: "{}/ca.crt"}}
users:
- name: scaler
  user: {{token: "{token}"}}
contexts:
- name: local
  context: {{cluster: local, user: scaler}}
current-context: local
"#,
        plane.env["K8S_API"], plane.env["K8S_PKI"]
    ))
    .unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let p = policy("scale");
    let (leader, cancel) = elect(&client, lease("rbac", "r", true));
    let act = actuator(&client, leader.clone(), std::slice::from_ref(&p)).await;
    wait_for("leader", Duration::from_secs(10), || leader.is_leader()).await;
    wait_for("observed 1 ready pod", Duration::from_secs(30), || {
        act.observe(&p, &[])
            .is_some_and(|o| o.spec_replicas == 1 && o.pods.len() == 1)
    })
    .await;
    // An outside change: seen by polling within about 2 s.
    set_replicas(&admin, 2).await;
    let waited = wait_for("2 observed by polling", Duration::from_secs(5), || {
        act.observe(&p, &[]).is_some_and(|o| o.spec_replicas == 2)
    })
    .await;
    eprintln!(
        "scale-only RBAC: an outside change observed after {:.2} s (polling)",
        waited.as_secs_f64()
    );
    assert_eq!(
        act.apply(Action::Scale {
            target: &p,
            decision: &decision(2, 4, "rbac test")
        }),
        "/scale patch queued 2 → 4"
    );
    wait_for("patched to 4", Duration::from_secs(5), || {
        act.last_outcome(&p.workload).as_deref() == Some("patched /scale 2 → 4")
    })
    .await;
    assert_eq!(deployment_replicas(&admin).await, 4);
    cancel.cancel();
    leader.stopped().await;
}
