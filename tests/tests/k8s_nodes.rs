//! Node decisions on a real control plane (`../shared/k8s`: etcd, kube-apiserver, controller-manager,
//! scheduler; `ready-pods.sh` playing the kubelet) with Karpenter's NodeClaim and NodePool CRDs applied
//! (`tests/data/karpenter/`, from kubernetes-sigs/karpenter 2266468104f3 `pkg/apis/crds/`).
//!
//! The engine runs in-process as in the aggregator: samples of a load metric are ingested into an
//! `AggregatorState`, the `Autoscaler` decides replicas of Deployment `nodes/web` and, with node
//! decisions on, the NodeClaims its new pods need; a `KubeActuator` with a `NodeActuator` patches
//! `/scale` and creates and deletes the claims.
//!
//! The engine acts with the aggregator's permissions as the Helm chart grants them with
//! `nodeDecisions.enabled` (rendered by the real Helm SDK, applied, and impersonated), so a grant the
//! chart lacks fails here.
//!
//! Mocked: the cloud provider only (there is no real one here). [`provider`] plays Karpenter's
//! cloud-provider side: each NodeClaim becomes a Ready fake Node (`fake-node.sh`, with the claim's
//! instance-type, capacity-type, zone and `karpenter.sh/nodepool` labels) after a delay and the claim's
//! `status.nodeName`/`providerID` are set; a spot claim never becomes a node (no spot capacity), so the
//! fallback to on-demand is exercised; a deleted claim's node is deleted. Everything else is real: the
//! scheduler binds the pods to those nodes, the ReplicaSet controller creates and deletes them.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms,
};
use surge_autoscaler::{Autoscaler, HeadroomPolicy, NodeDecisions, build_policies};
use surge_k8s::lease::{LeaderElector, LeaseConfig};
use surge_k8s::nodes::{NodeActuator, NodeActuatorConfig, node_claim_resource};
use surge_k8s::scale::{KubeActuator, KubeActuatorConfig};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use surge_tests::k8s::{ControlPlane, start_plane};
use tokio_util::sync::CancellationToken;

/// This file's control plane ports.
const APISERVER_PORT: u16 = 58443;
const ETCD_PORT: u16 = 59790;
const NS: &str = "nodes";

const NODE_POOL: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.xlarge]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 1s
    budgets: [{nodes: "100%"}]
"#;

fn policy_yaml() -> String {
    policy_yaml_in(NS)
}

/// An HPA policy on Deployment `ns/web`: 10 rps per replica.
fn policy_yaml_in(ns: &str) -> String {
    format!(
        r#"policies:
  - name: web
    mode: scale
    min_interval: 200ms
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {{name: web, namespace: {ns}}}
      spec:
        scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
        minReplicas: 1
        maxReplicas: 20
        metrics:
          - type: External
            external:
              metric: {{name: rps}}
              target: {{type: AverageValue, averageValue: "10"}}
        behavior:
          scaleUp:
            stabilizationWindowSeconds: 0
            policies: [{{type: Pods, value: 20, periodSeconds: 1}}]
          scaleDown:
            stabilizationWindowSeconds: 0
            policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
    metrics:
      rps: sum(web_rps)
"#
    )
}

/// A control plane on its own ports with Karpenter's CRDs established and `pool` applied (as
/// Karpenter's API accepts it, the CRD's validation, and as surge reads it); each scenario has its own,
/// so they run side by side.
fn karpenter_plane(apiserver_port: u16, etcd_port: u16, pool: &str) -> &'static ControlPlane {
    init_tracing();
    let plane: &'static ControlPlane = Box::leak(Box::new(
        start_plane(apiserver_port, etcd_port, None).unwrap(),
    ));
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/data/karpenter");
    plane.kubectl(&["apply", "-f", crds], None);
    plane.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/nodeclaims.karpenter.sh",
            "crd/nodepools.karpenter.sh",
        ],
        None,
    );
    plane.kubectl(&["apply", "-f", "-"], Some(pool));
    plane
}

/// Deployment `web` in `ns` at one replica of `cpu` and `memory` requests.
fn web_deployment(ns: &str, cpu: &str, memory: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
          resources: {{requests: {{cpu: "{cpu}", memory: {memory}}}}}
"#
    )
}

fn start() -> &'static ControlPlane {
    let plane = karpenter_plane(APISERVER_PORT, ETCD_PORT, NODE_POOL);
    // One node not launched by a claim: room for the first replica only (1 CPU each).
    plane.script("fake-node.sh", &["base", "1500m", "4Gi", "110"]);
    plane.ready_pods().unwrap();
    plane.kubectl(&["create", "namespace", NS], None);
    plane.kubectl(&["apply", "-f", "-"], Some(&web_deployment(NS, "1", "1Gi")));
    plane
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "surge_k8s=info,surge_autoscaler=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// When each object was first seen by a watch.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<BTreeMap<String, Instant>>>);

impl Seen {
    fn first(&self) -> Option<Instant> {
        self.0.lock().values().min().copied()
    }
    fn names(&self) -> BTreeSet<String> {
        self.0.lock().keys().cloned().collect()
    }
}

/// Records when each object `api` lists or watches first appears.
fn watch_first<K>(api: Api<K>, cfg: watcher::Config) -> Seen
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff().applied_objects());
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                let name = kube::ResourceExt::name_any(&o);
                s.0.lock().entry(name).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// The mock cloud provider (see the module doc): on-demand claims become Ready nodes after `delay`,
/// spot claims never do; a deleted claim's node goes too.
fn provider(plane: &'static ControlPlane, client: kube::Client, delay: Duration) {
    let api: Api<DynamicObject> = Api::all_with(client, &node_claim_resource());
    let catalog = surge_nodes::Catalog::embedded();
    tokio::spawn(async move {
        let mut handled = BTreeSet::new();
        let mut stream =
            std::pin::pin!(watcher(api.clone(), watcher::Config::default()).default_backoff());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim)) => {
                    let name = kube::ResourceExt::name_any(&claim);
                    if claim.metadata.deletion_timestamp.is_some() || !handled.insert(name.clone())
                    {
                        continue;
                    }
                    let pinned = |key: &str| -> String {
                        claim.data["spec"]["requirements"]
                            .as_array()
                            .and_then(|rs| rs.iter().find(|r| r["key"] == key))
                            .and_then(|r| r["values"][0].as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let (it, ct, zone) = (
                        pinned("node.kubernetes.io/instance-type"),
                        pinned("karpenter.sh/capacity-type"),
                        pinned("topology.kubernetes.io/zone"),
                    );
                    if ct == "spot" {
                        continue; // No spot capacity: this claim never becomes a node.
                    }
                    let pool = kube::ResourceExt::labels(&claim)
                        .get("karpenter.sh/nodepool")
                        .cloned()
                        .unwrap_or_default();
                    let t = catalog.get(&it).unwrap().clone();
                    let api = api.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let labels = [
                            format!("node.kubernetes.io/instance-type={it}"),
                            format!("karpenter.sh/capacity-type={ct}"),
                            format!("topology.kubernetes.io/zone={zone}"),
                            format!("karpenter.sh/nodepool={pool}"),
                        ];
                        let mut args = vec![
                            name.clone(),
                            t.vcpu.to_string(),
                            format!("{}Mi", t.memory_mib),
                            t.max_pods.to_string(),
                        ];
                        args.extend(labels);
                        tokio::task::spawn_blocking(move || {
                            let args: Vec<&str> = args.iter().map(String::as_str).collect();
                            plane.script("fake-node.sh", &args)
                        })
                        .await
                        .unwrap();
                        let status = serde_json::json!({"status": {
                            "nodeName": name, "providerID": format!("fake:///{zone}/{name}")}});
                        // The claim may be gone already (deleted after its launch timeout).
                        let _ = api
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    });
                }
                Ok(watcher::Event::Delete(claim)) => {
                    let name = kube::ResourceExt::name_any(&claim);
                    tokio::task::spawn_blocking(move || {
                        let _ = plane
                            .try_kubectl(&["delete", "node", &name, "--ignore-not-found"], None);
                    });
                }
                _ => {}
            }
        }
    });
}

/// Ingests `metric = load` every 500 ms (the metric stays fresh) until cancelled.
fn feed(
    state: Arc<AggregatorState>,
    metric: &'static str,
    load: Arc<Mutex<f64>>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut enc = snap::raw::Encoder::new();
        loop {
            let mut raw = Vec::new();
            let l = Labels::from_pairs([("__name__", metric)]);
            let sample = Sample {
                timestamp_ms: now_ms(),
                value: *load.lock(),
            };
            encode_series(&mut raw, &encode_label_block(&l), &[sample]);
            state
                .ingest_body(&compress(&raw, &mut enc), Sender::SurgeAgent, now_ms())
                .unwrap();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

/// The aggregator's RBAC as the Helm chart ships it with node decisions on (`nodeDecisions.enabled`,
/// and `settings.headroom` when the scenario keeps headroom), rendered by the real Helm SDK into release
/// namespace `ns` and applied (its ServiceAccounts and RBAC objects only: nothing else of the chart
/// runs here); then a client that impersonates the aggregator's ServiceAccount. Whatever the engine
/// does that the chart does not grant is refused by the API server's RBAC and fails the scenario.
async fn aggregator_client(
    plane: &ControlPlane,
    ns: &str,
    pools: &str,
    headroom: bool,
) -> kube::Client {
    let mut settings = serde_json::json!({});
    if headroom {
        settings["headroom"] = serde_json::json!({"cpu": "1", "memory": "1Gi", "replicas": 2});
    }
    let values = serde_json::json!({
        "nodeDecisions": {"enabled": true, "nodePools": pools, "settings": settings},
    });
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/helm/surge");
    let objects =
        surge_tests::helm::render_objects(std::path::Path::new(chart), ns, &values).unwrap();
    let kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let rbac: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| kinds.iter().any(|k| o["kind"] == *k))
        .collect();
    assert!(
        rbac.iter()
            .any(|o| o["metadata"]["name"] == "surge-aggregator-nodes"),
        "the chart renders the node decisions' ClusterRole"
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    plane.kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
    let client = plane
        .service_account_client(ns, "surge-aggregator")
        .await
        .unwrap();
    // The impersonation holds: what the chart does not grant is refused.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "kube-system");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("the aggregator's ServiceAccount listed Secrets: {other:?}"),
    }
    client
}

/// The engine as the aggregator wires it, with node decisions on: a Lease in `lease_ns`, a
/// `KubeActuator` with a `NodeActuator` (launch timeout 8 s), and the autoscaler over an aggregator's
/// cache, all through a client with the aggregator's permissions as the chart grants them
/// ([`aggregator_client`], release namespace `lease_ns`); returns once this replica leads.
struct Engine {
    autoscaler: Arc<Autoscaler>,
    state: Arc<AggregatorState>,
    registry: Registry,
}

async fn engine(
    plane: &ControlPlane,
    policy: &str,
    pools: &str,
    lease_ns: &str,
    headroom: Option<HeadroomPolicy>,
    cancel: &CancellationToken,
) -> Engine {
    let client = &aggregator_client(plane, lease_ns, pools, headroom.is_some()).await;
    let cfg =
        surge_config::load_str(policy, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let policies = build_policies(&cfg).unwrap();
    let targets: Vec<_> = policies.iter().map(|p| p.target.clone()).collect();
    let mut registry = Registry::default();
    let mut lease = LeaseConfig::new("surge", lease_ns, "replica-a");
    lease.lease_duration = Duration::from_secs(4);
    lease.renew_deadline = Duration::from_secs(3);
    lease.renew_period = Duration::from_millis(500);
    lease.retry_period = Duration::from_millis(500);
    let leader = LeaderElector::start(client.clone(), lease, cancel.clone()).unwrap();
    let kube = KubeActuator::start(
        client.clone(),
        leader.clone(),
        KubeActuatorConfig::default(),
        &targets,
        &mut registry,
        cancel.clone(),
    )
    .await;
    let pools = surge_nodes::NodePool::all_from_yaml(pools, "nodepool.yaml").unwrap();
    let nodes = NodeActuator::start(
        client.clone(),
        leader.clone(),
        NodeActuatorConfig {
            launch_timeout: Duration::from_secs(8),
            ..Default::default()
        },
        pools.clone(),
        &mut registry,
        Duration::from_secs(10),
        cancel.clone(),
    )
    .await;
    assert!(nodes.is_synced(), "node caches synced");
    kube.set_nodes(nodes.clone());
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let autoscaler = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        policies,
        kube.clone(),
        &mut registry,
    );
    autoscaler.set_warm_up(Duration::ZERO);
    assert!(autoscaler.set_node_decisions(NodeDecisions {
        pools,
        catalog: surge_nodes::Catalog::embedded(),
        daemonsets: Vec::new(),
        interval_ms: 500,
        headroom,
    }));
    state.add_observer(autoscaler.clone());
    wait_for("the Lease", Duration::from_secs(10), async || {
        leader.is_leader()
    })
    .await;
    Engine {
        autoscaler,
        state,
        registry,
    }
}

/// The registry's metrics in the text exposition format.
fn registry_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn web_pods(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_before_pending_then_fallback_then_consolidation() {
    let started = Instant::now();
    let plane = start();
    let client = plane.admin_client().await.unwrap();
    let cancel = CancellationToken::new();

    let Engine {
        autoscaler,
        state,
        registry,
    } = engine(plane, &policy_yaml(), NODE_POOL, NS, None, &cancel).await;
    wait_for(
        "web's first pod Running",
        Duration::from_secs(30),
        async || {
            let pods = web_pods(&client).await;
            pods.len() == 1
                && pods[0].spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("base")
        },
    )
    .await;
    provider(plane, client.clone(), Duration::from_secs(1));
    let claims = watch_first(
        Api::<DynamicObject>::all_with(client.clone(), &node_claim_resource()),
        watcher::Config::default(),
    );
    let first_pod = {
        let pods = web_pods(&client).await;
        kube::ResourceExt::name_any(&pods[0])
    };
    let pods_seen = watch_first(
        Api::<Pod>::namespaced(client.clone(), NS),
        watcher::Config::default().labels("app=web"),
    );
    let load = Arc::new(Mutex::new(10.0));
    feed(state.clone(), "web_rps", load.clone(), cancel.clone());
    tokio::spawn(autoscaler.clone().run(cancel.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(claims.names().is_empty(), "no claim at steady load");

    // Load step: 10 → 60 rps at 10 per replica is 6 replicas, 5 new pods of 1 CPU; `base` is full,
    // so they need nodes (m5.xlarge: 3 such pods each).
    let step = Instant::now();
    *load.lock() = 60.0;
    wait_for("6 web pods", Duration::from_secs(20), async || {
        web_pods(&client).await.len() == 6
    })
    .await;
    let d = autoscaler
        .decisions(Some("web"), 50)
        .into_iter()
        .rev()
        .find(|d| d.decision.scale && d.replicas_after > d.replicas_before)
        .unwrap();
    let node_decision = d.nodes.clone().expect("a node decision with the scale-up");
    assert!(!node_decision.create.is_empty(), "{node_decision:?}");
    eprintln!(
        "scale-up {} → {}: {} NodeClaims decided {} µs after the pod decision; {}",
        d.replicas_before,
        d.replicas_after,
        node_decision.create.len(),
        node_decision.decided_in_us,
        node_decision.actuation
    );
    // The claims are asked for in the pod decision itself, and the decision's `/scale` patch waits
    // until they were written: the API server holds the first NodeClaim before the first new pod.
    // Asserted twice: in the order two watches saw them, and by creationTimestamp (whole seconds, so
    // `<=`).
    let first_claim = claims.first().expect("claims created");
    let (first_new_pod_name, first_new_pod) = pods_seen
        .0
        .lock()
        .iter()
        .filter(|(n, _)| **n != first_pod)
        .map(|(n, t)| (n.clone(), *t))
        .min_by_key(|(_, t)| *t)
        .unwrap();
    assert!(
        first_claim < first_new_pod,
        "first claim seen {:?} after the load step, first new pod {:?}",
        first_claim - step,
        first_new_pod - step
    );
    let claim_api: Api<DynamicObject> = Api::all_with(client.clone(), &node_claim_resource());
    let created = |m: &kube::api::ObjectMeta| m.creation_timestamp.clone().unwrap().0;
    let claim_created = claim_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| created(&c.metadata))
        .min()
        .unwrap();
    let pod_created = created(
        &Api::<Pod>::namespaced(client.clone(), NS)
            .get(&first_new_pod_name)
            .await
            .unwrap()
            .metadata,
    );
    assert!(
        claim_created <= pod_created,
        "first claim created at {claim_created}, first new pod at {pod_created}"
    );
    let waits = registry_text(&registry);
    assert!(
        waits.contains("surge_scale_claims_wait_total{outcome=\"written\"}"),
        "the scale-up's patch waited for its claims: {waits}"
    );
    // The first claims are spot (cheapest): the provider never fulfils them. After the launch
    // timeout they are deleted and on-demand claims replace them; the scheduler binds every pod.
    wait_for("every web pod bound", Duration::from_secs(40), async || {
        web_pods(&client)
            .await
            .iter()
            .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
    })
    .await;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let live: BTreeSet<String> = claim_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(kube::ResourceExt::name_any)
        .collect();
    let spot_claims: Vec<String> = d
        .nodes
        .as_ref()
        .unwrap()
        .create
        .iter()
        .filter(|n| n.capacity_type == surge_nodes::CapacityType::Spot)
        .map(|n| n.name.clone())
        .collect();
    assert!(
        !spot_claims.is_empty(),
        "spot first where the pool allows it"
    );
    for s in &spot_claims {
        assert!(
            !live.contains(s),
            "spot claim {s} (never launched) was deleted"
        );
    }
    for p in web_pods(&client).await {
        let node_name = p.spec.unwrap().node_name.unwrap();
        if node_name == "base" {
            continue;
        }
        let node = nodes_api.get(&node_name).await.unwrap();
        let labels = kube::ResourceExt::labels(&node);
        assert_eq!(labels["karpenter.sh/capacity-type"], "on-demand");
        assert_eq!(labels["node.kubernetes.io/instance-type"], "m5.xlarge");
        assert!(
            live.contains(&node_name),
            "{node_name} backed by a live claim"
        );
    }
    assert!(
        live.len() <= 2,
        "no more claims than the 5 pods need (2 × m5.xlarge): {live:?}"
    );

    // Load drops: back to 1 replica; consolidation deletes the claims of the nodes left empty.
    *load.lock() = 10.0;
    wait_for("web back at 1 pod", Duration::from_secs(20), async || {
        web_pods(&client).await.len() == 1
    })
    .await;
    wait_for(
        "empty nodes' claims deleted",
        Duration::from_secs(30),
        async || {
            let pods = web_pods(&client).await;
            let used: BTreeSet<String> = pods
                .iter()
                .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
                .collect();
            let live: Vec<String> = claim_api
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(kube::ResourceExt::name_any)
                .collect();
            live.iter().all(|c| used.contains(c))
        },
    )
    .await;
    let deleted: Vec<String> = autoscaler
        .decisions(Some("web"), 256)
        .iter()
        .filter_map(|d| d.nodes.as_ref())
        .flat_map(|n| n.delete.clone())
        .collect();
    assert!(!deleted.is_empty(), "consolidation decided deletions");

    // A grant taken away (NodeClaims read-only): the next scale-up's claims are refused by RBAC,
    // counted as forbidden (not as transient errors), and no claim appears; the pods are still asked
    // for (the patch does not wait on a refusal).
    let claims_before = claim_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    plane.kubectl(
        &[
            "patch",
            "clusterrole",
            "surge-aggregator-nodes",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/rules/0/verbs", "value": ["get", "list", "watch"]}]"#,
        ],
        None,
    );
    *load.lock() = 60.0;
    let forbidden = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "surge_node_writes_total{op=\"create_claim\",outcome=\"forbidden\"} ",
                )
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for(
        "a refused claim counted as forbidden",
        Duration::from_secs(20),
        async || forbidden(&registry_text(&registry)) >= 1,
    )
    .await;
    wait_for(
        "web scaled up without its claims",
        Duration::from_secs(20),
        async || web_pods(&client).await.len() > 1,
    )
    .await;
    assert_eq!(
        claim_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        claims_before,
        "no claim was created without the grant"
    );
    cancel.cancel();
    eprintln!("k8s_nodes scenario wall time: {:?}", started.elapsed());
}

/// The second scenario's control plane ports (its own plane: it runs beside the first).
const ZERO_APISERVER_PORT: u16 = 58453;
const ZERO_ETCD_PORT: u16 = 59800;
const NS_ZERO: &str = "batch";

/// On-demand m5.xlarge or m5.2xlarge: which one a pod of 1 CPU needs depends on the DaemonSets.
const WIDE_POOL: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: wide}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.xlarge, m5.2xlarge]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 5m
    budgets: [{nodes: "100%"}]
"#;

/// The batch Deployment, at zero replicas: it has no live pod to read a template from.
fn batch_deployment() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: batch, namespace: {NS_ZERO}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: batch}}}}
  template:
    metadata: {{labels: {{app: batch}}}}
    spec:
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
          resources: {{requests: {{cpu: "1", memory: 1Gi}}}}
"#
    )
}

/// A node agent on every node asking for 3 CPU: an m5.xlarge (3.92 CPU allocatable) keeps less
/// than one batch pod's CPU.
const AGENT_DAEMONSET: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      containers:
        - name: agent
          image: registry.k8s.io/pause:3.10
          resources: {requests: {cpu: "3", memory: 512Mi}}
"#;

fn keda_policy_yaml() -> String {
    format!(
        r#"policies:
  - name: batch
    mode: scale
    min_interval: 200ms
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {{name: batch, namespace: {NS_ZERO}}}
      spec:
        scaleTargetRef: {{name: batch}}
        minReplicaCount: 0
        pollingInterval: 1
        maxReplicaCount: 10
        triggers:
          - type: prometheus
            name: rps
            metadata: {{query: 'sum(batch_rps)', threshold: "10"}}
"#
    )
}

/// Capacity ahead of a workload at zero replicas (its pod template read from the Deployment's spec,
/// no live pod exists), sized with the cluster's DaemonSets: the 3-CPU node agent makes the plan take
/// m5.2xlarge where it would take m5.xlarge without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_ahead_from_zero_sized_with_daemonsets() {
    let started = Instant::now();
    let plane = karpenter_plane(ZERO_APISERVER_PORT, ZERO_ETCD_PORT, WIDE_POOL);
    plane.ready_pods().unwrap();
    plane.kubectl(&["create", "namespace", NS_ZERO], None);
    plane.kubectl(&["apply", "-f", "-"], Some(AGENT_DAEMONSET));
    plane.kubectl(&["apply", "-f", "-"], Some(&batch_deployment()));
    let client = plane.admin_client().await.unwrap();
    let cancel = CancellationToken::new();
    let Engine {
        autoscaler, state, ..
    } = engine(
        plane,
        &keda_policy_yaml(),
        WIDE_POOL,
        NS_ZERO,
        None,
        &cancel,
    )
    .await;
    provider(plane, client.clone(), Duration::from_secs(1));
    let claims = watch_first(
        Api::<DynamicObject>::all_with(client.clone(), &node_claim_resource()),
        watcher::Config::default(),
    );
    let pods_seen = watch_first(
        Api::<Pod>::namespaced(client.clone(), NS_ZERO),
        watcher::Config::default().labels("app=batch"),
    );
    let load = Arc::new(Mutex::new(0.0));
    feed(state.clone(), "batch_rps", load.clone(), cancel.clone());
    tokio::spawn(autoscaler.clone().run(cancel.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(claims.names().is_empty(), "no claim at zero load");

    *load.lock() = 30.0;
    let step = Instant::now();
    while pods_seen.first().is_none() {
        assert!(
            step.elapsed() < Duration::from_secs(20),
            "no batch pod after 20 s; latest decisions: {}",
            serde_json::to_string_pretty(&autoscaler.decisions(Some("batch"), 2)).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = autoscaler
        .decisions(Some("batch"), 50)
        .into_iter()
        .rev()
        .find(|d| d.decision.scale && d.replicas_before == 0 && d.replicas_after > 0)
        .expect("a scale-up from zero");
    let node_decision = d
        .nodes
        .clone()
        .expect("a node decision with the scale-up from zero");
    eprintln!(
        "scale-up {} → {}: {:?}; {}",
        d.replicas_before,
        d.replicas_after,
        node_decision
            .create
            .iter()
            .map(|n| (&n.instance_type, &n.pods))
            .collect::<Vec<_>>(),
        node_decision.actuation
    );
    assert!(!node_decision.create.is_empty(), "{node_decision:?}");
    for n in &node_decision.create {
        assert_eq!(n.instance_type, "m5.2xlarge", "{node_decision:?}");
    }
    let first_claim = claims.first().expect("claims created");
    let first_pod = pods_seen.first().unwrap();
    assert!(
        first_claim < first_pod,
        "the claim ({first_claim:?}) before the first pod ({first_pod:?})"
    );

    // The same plan without the DaemonSet takes the smaller type: the DaemonSet is what changed it.
    let pools = surge_nodes::NodePool::all_from_yaml(WIDE_POOL, "nodepool.yaml").unwrap();
    let catalog = surge_nodes::Catalog::embedded();
    let template = surge_nodes::Pod::from_k8s_yaml(&batch_deployment(), "batch").unwrap();
    let plan = |daemonsets: &[surge_nodes::Pod]| {
        let input = surge_nodes::ProvisionInput {
            catalog: &catalog,
            pools: &pools,
            pods: &[],
            existing: &[],
            in_flight: &[],
            daemonsets,
            unavailable: &[],
        };
        let up = surge_nodes::ScaleUp {
            workload: "batch/batch",
            template: &template,
            existing_pods: 0,
            desired: u32::try_from(d.replicas_after).unwrap(),
        };
        surge_nodes::plan_ahead(&input, &[up])
    };
    let agent = surge_nodes::Pod::from_k8s_yaml(AGENT_DAEMONSET, "ds").unwrap();
    let with = plan(std::slice::from_ref(&agent));
    let without = plan(&[]);
    assert_eq!(with.nodes[0].instance_type, "m5.2xlarge");
    assert_eq!(without.nodes[0].instance_type, "m5.xlarge");

    // The real scheduler binds the batch pods beside the DaemonSet's pod on the claimed node.
    wait_for(
        "every batch pod bound",
        Duration::from_secs(30),
        async || {
            let api: Api<Pod> = Api::namespaced(client.clone(), NS_ZERO);
            let pods = api
                .list(&ListParams::default().labels("app=batch"))
                .await
                .unwrap()
                .items;
            !pods.is_empty()
                && pods.iter().all(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some_and(|n| claims.names().contains(n))
                })
        },
    )
    .await;
    cancel.cancel();
    eprintln!(
        "k8s_nodes zero-replicas scenario wall time: {:?}",
        started.elapsed()
    );
}

/// The headroom scenario's control plane ports (its own plane).
const ROOM_APISERVER_PORT: u16 = 58473;
const ROOM_ETCD_PORT: u16 = 59810;
const NS_ROOM: &str = "room";

/// Headroom from config, actuated: the pause PriorityClass and Deployment appear with the stated
/// replicas (the engine emits `Action::Headroom` in its pass), its price is reported, and a real pod
/// that finds no room preempts a pause pod (the real scheduler's preemption).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_pause_pods_from_config_are_preempted() {
    let started = Instant::now();
    let plane = karpenter_plane(ROOM_APISERVER_PORT, ROOM_ETCD_PORT, NODE_POOL);
    // Room for web (100m) and both pause pods (1 CPU each), 1.9 CPU to spare.
    plane.script("fake-node.sh", &["base", "4", "16Gi", "110"]);
    plane.ready_pods().unwrap();
    plane.kubectl(&["create", "namespace", NS_ROOM], None);
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&web_deployment(NS_ROOM, "100m", "128Mi")),
    );
    let client = plane.admin_client().await.unwrap();
    let cancel = CancellationToken::new();
    let headroom = HeadroomPolicy {
        name: "surge-headroom".into(),
        namespace: NS_ROOM.into(),
        chunk: surge_nodes::Pod::new("room/surge-headroom", 1000, 1 << 30),
        min_replicas: 2,
        window_ms: 60_000,
    };
    let Engine {
        autoscaler,
        state,
        registry,
    } = engine(
        plane,
        &policy_yaml_in(NS_ROOM),
        NODE_POOL,
        NS_ROOM,
        Some(headroom),
        &cancel,
    )
    .await;
    let load = Arc::new(Mutex::new(10.0));
    feed(state.clone(), "web_rps", load.clone(), cancel.clone());
    tokio::spawn(autoscaler.clone().run(cancel.clone()));

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS_ROOM);
    wait_for(
        "the pause Deployment at 2 replicas",
        Duration::from_secs(20),
        async || {
            deployments
                .get_opt("surge-headroom")
                .await
                .unwrap()
                .and_then(|d| d.spec?.replicas)
                == Some(2)
        },
    )
    .await;
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    let class = classes.get("surge-headroom").await.unwrap();
    assert_eq!(class.value, -10);
    let record = autoscaler
        .decisions(Some("web"), 256)
        .iter()
        .find_map(|d| d.nodes.as_ref()?.headroom.clone())
        .expect("a decision carries the headroom");
    assert_eq!(record.replicas, 2);
    assert!(record.cost_per_hour > 0.0, "{record:?}");
    let text = registry_text(&registry);
    assert!(
        text.contains("surge_headroom_replicas 2"),
        "headroom gauge: {text}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS_ROOM);
    let pause = ListParams::default().labels("surge.dev/headroom=surge-headroom");
    wait_for(
        "both pause pods on base",
        Duration::from_secs(30),
        async || {
            let list = pods.list(&pause).await.unwrap().items;
            list.len() == 2
                && list
                    .iter()
                    .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("base"))
        },
    )
    .await;
    let pause_before: BTreeSet<String> = pods
        .list(&pause)
        .await
        .unwrap()
        .items
        .iter()
        .map(kube::ResourceExt::name_any)
        .collect();

    // A real pod needing 2.5 CPU: base has 1.9 spare; the scheduler preempts one pause pod.
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: urgent, namespace: {NS_ROOM}}}
spec:
  containers:
    - name: app
      image: registry.k8s.io/pause:3.10
      resources: {{requests: {{cpu: 2500m, memory: 1Gi}}}}
"#
        )),
    );
    wait_for(
        "urgent placed on base by preemption",
        Duration::from_secs(30),
        async || {
            let p = pods.get("urgent").await.unwrap();
            let bound = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("base");
            let nominated = p
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                == Some("base");
            bound || nominated
        },
    )
    .await;
    wait_for(
        "a pause pod preempted",
        Duration::from_secs(30),
        async || {
            let now: Vec<Pod> = pods.list(&pause).await.unwrap().items;
            // The victim is gone or terminating (the ReplicaSet replaces it with a new, Pending one).
            pause_before.iter().any(|name| {
                now.iter()
                    .find(|p| &kube::ResourceExt::name_any(*p) == name)
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            })
        },
    )
    .await;
    let urgent = pods.get("urgent").await.unwrap();
    eprintln!(
        "urgent: nodeName {:?}, nominatedNodeName {:?}",
        urgent.spec.as_ref().and_then(|s| s.node_name.clone()),
        urgent
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
    );
    cancel.cancel();
    eprintln!(
        "k8s_nodes headroom scenario wall time: {:?}",
        started.elapsed()
    );
}
