//! [`NodeActuator`]: node decisions carried out on a real cluster — Karpenter `NodeClaim`s created and
//! deleted, the headroom Deployment's replicas set — and the cluster as node decisions see it.
//!
//! ```text
//! reflectors: NodeClaims (karpenter.sh/v1, dynamic) · Nodes · Pods · DaemonSets (all namespaces)
//!   observe_nodes ─▶ NodeView: Ready nodes + their pods' requests, in-flight claims, Pending pods,
//!                    surge's nodes for consolidation, offerings that failed to launch, the pod
//!                    each DaemonSet runs per node
//! apply(NodeClaims / Headroom) ─▶ leader? ─▶ pending writes, one per object (latest wins)
//!   writer task ─▶ token bucket ─▶ create / delete / server-side apply ─▶ 429: wait Retry-After, retry
//! ```
//!
//! Architecture invariant: as for `/scale`, neither `observe_nodes` nor `apply` waits for the network.
//!
//! Coalescing: a NodeClaim is created once per name and deleted once per name; the headroom
//! Deployment is written only when its replica count differs from the last one asked for, and a newer
//! count replaces one not yet written. Writes go out at most `writes_per_second` (burst `burst`); a 429
//! puts the write back and pauses the writer for the Status' `retryAfterSeconds` (1 s when absent).
//!
//! Ordering with the pod decision: [`NodeActuator::apply_claims_written`] also returns a
//! [`ClaimsWritten`] for the writes it queued; the `/scale` patch of the same decision waits on it
//! (bounded) before it goes out, so the API server sees the NodeClaims before the pods that need them
//! although the two writes leave through independent queues.
//!
//! A claim that has not become a Ready node after `launch_timeout` (Karpenter's registration TTL) is
//! deleted and its offering is reported unavailable for `unavailable_ttl`, so the next plan falls back
//! to another type or capacity type. That check runs in `observe_nodes` (a cache read) and queues the
//! delete like any other write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use surge_actuate::NodeView;
use surge_nodes::requirements::{CAPACITY_TYPE, INSTANCE_TYPE, NODEPOOL, ZONE};
use surge_nodes::{
    CapacityType, ClusterNode, ExistingNode, Headroom, NodePool, PlannedNode, Resources,
    Unavailable, parse_cpu, parse_memory,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::LeaderHandle;

/// The field manager of surge's server-side applies.
const FIELD_MANAGER: &str = "surge";

/// Tuning of [`NodeActuator`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeActuatorConfig {
    /// Client-side rate limit of writes (creates, deletes, applies) to the API server.
    pub writes_per_second: f64,
    /// Writes that may go at once after a quiet spell.
    pub burst: u32,
    /// A claim not a Ready node after this long is deleted and its offering marked unavailable.
    pub launch_timeout: Duration,
    /// How long an offering that failed to launch is avoided (Karpenter's unavailable-offerings cache).
    pub unavailable_ttl: Duration,
    /// Longest one write may take.
    pub write_timeout: Duration,
}

impl Default for NodeActuatorConfig {
    fn default() -> Self {
        NodeActuatorConfig {
            writes_per_second: 10.0,
            burst: 20,
            launch_timeout: Duration::from_secs(15 * 60),
            unavailable_ttl: Duration::from_secs(3 * 60),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The `karpenter.sh/v1` NodeClaim resource.
pub fn node_claim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"),
        "nodeclaims",
    )
}

/// One object's pending write; a newer one for the same object replaces it.
#[derive(Debug, Clone)]
enum Write {
    CreateClaim(serde_json::Value),
    DeleteClaim,
    Headroom(Vec<serde_json::Value>),
}

impl Write {
    fn op(&self) -> &'static str {
        match self {
            Write::CreateClaim(_) => "create_claim",
            Write::DeleteClaim => "delete_claim",
            Write::Headroom(_) => "headroom",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    op: &'static str,
    outcome: &'static str,
}

/// What this replica asked for, so each object is written once per change.
#[derive(Default)]
struct Asked {
    /// Claims asked to be created, with the offering (for the launch timeout).
    created: BTreeMap<String, (PlannedNode, Instant)>,
    deleted: BTreeSet<String>,
    /// Headroom replicas last asked for, by `namespace/name`.
    headroom: HashMap<String, u32>,
    /// Offerings that failed to launch, until when.
    unavailable: Vec<(Unavailable, Instant)>,
    /// Per node: its pods' names and when that set last changed (consolidation's `last_pod_event`).
    pod_sets: HashMap<String, (BTreeSet<String>, jiff::Timestamp)>,
    /// Templates served by `pod_template`, by workload `namespace/name`: the claims' requests of the
    /// pods still to be created.
    templates: HashMap<String, surge_nodes::Pod>,
}

/// Node actuation on a real cluster; see the module doc.
pub struct NodeActuator {
    client: Client,
    leader: LeaderHandle,
    cfg: NodeActuatorConfig,
    pools: Vec<NodePool>,
    claims: Store<DynamicObject>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    daemonsets: Store<DaemonSet>,
    ready: [Arc<AtomicBool>; 4],
    asked: Mutex<Asked>,
    /// Pending writes by object key (`claim/<name>`, `headroom/<ns>/<name>`), oldest first.
    queue: Mutex<BTreeMap<String, (u64, Write)>>,
    seq: std::sync::atomic::AtomicU64,
    wake: Notify,
    /// The sequence number of the write on the wire, if any (taken under the `queue` lock).
    writing: Mutex<Option<u64>>,
    /// Bumped after each write's outcome (or requeue), so [`ClaimsWritten::wait`] looks again.
    settled: tokio::sync::watch::Sender<u64>,
    writes: Family<WriteLabels, Counter>,
    /// When a refused (403) write was last logged, per operation: the decision asks again every
    /// interval, and one error line a minute says what is missing.
    forbidden_logged: Mutex<HashMap<&'static str, Instant>>,
}

/// The writes one decision queued, for the `/scale` patch of that decision to wait on: settled once
/// none of them is queued or on the wire any more (written, failed, or dropped as not the leader). A
/// write put back after a 429 is not settled.
#[derive(Clone)]
pub struct ClaimsWritten {
    nodes: Arc<NodeActuator>,
    /// The highest sequence number of the decision's writes.
    seq: u64,
}

impl std::fmt::Debug for ClaimsWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsWritten")
            .field("seq", &self.seq)
            .finish()
    }
}

impl ClaimsWritten {
    /// Whether every write up to this decision's has left the queue.
    pub fn is_settled(&self) -> bool {
        self.nodes.settled_up_to(self.seq)
    }

    /// Waits until [`ClaimsWritten::is_settled`] or `limit` passed; returns whether it settled.
    pub async fn wait(&self, limit: Duration) -> bool {
        let mut rx = self.nodes.settled.subscribe();
        let settled = async {
            loop {
                if self.is_settled() {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The writer is gone (shutdown): nothing will settle.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, settled).await.is_ok()
    }
}

impl NodeActuator {
    /// Starts the NodeClaim, Node, Pod and DaemonSet reflectors and the writer task; waits up to `sync_timeout`
    /// for the caches. Everything stops on `cancel`.
    pub async fn start(
        client: Client,
        leader: LeaderHandle,
        cfg: NodeActuatorConfig,
        pools: Vec<NodePool>,
        registry: &mut Registry,
        sync_timeout: Duration,
        cancel: CancellationToken,
    ) -> Arc<NodeActuator> {
        let claims_api: Api<DynamicObject> = Api::all_with(client.clone(), &node_claim_resource());
        let (claims, c_ready) = reflect(
            claims_api,
            reflector::store::Writer::new(node_claim_resource()),
            &cancel,
        );
        let (nodes, n_ready) = reflect(
            Api::<Node>::all(client.clone()),
            reflector::store::Writer::default(),
            &cancel,
        );
        let (pods, p_ready) = reflect(
            Api::<Pod>::all(client.clone()),
            reflector::store::Writer::default(),
            &cancel,
        );
        let (daemonsets, d_ready) = reflect(
            Api::<DaemonSet>::all(client.clone()),
            reflector::store::Writer::default(),
            &cancel,
        );
        let writes = Family::default();
        registry.register(
            "surge_node_writes",
            "NodeClaim and headroom writes by operation and outcome",
            writes.clone(),
        );
        let actuator = Arc::new(NodeActuator {
            client,
            leader,
            cfg,
            pools,
            claims,
            nodes,
            pods,
            daemonsets,
            ready: [c_ready, n_ready, p_ready, d_ready],
            asked: Mutex::new(Asked::default()),
            queue: Mutex::new(BTreeMap::new()),
            seq: std::sync::atomic::AtomicU64::new(0),
            wake: Notify::new(),
            writing: Mutex::new(None),
            settled: tokio::sync::watch::channel(0).0,
            writes,
            forbidden_logged: Mutex::new(HashMap::new()),
        });
        tokio::spawn(actuator.clone().write_loop(cancel));
        let deadline = Instant::now() + sync_timeout;
        while !actuator.is_synced() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        actuator
    }

    /// Whether the four caches have been filled once.
    pub fn is_synced(&self) -> bool {
        self.ready.iter().all(|r| r.load(Ordering::Acquire))
    }

    /// NodeClaim creations and deletions: each name once, leader only.
    pub fn apply_claims(&self, create: &[PlannedNode], delete: &[String]) -> String {
        self.queue_claims(create, delete).0
    }

    /// As [`NodeActuator::apply_claims`], with what the decision's `/scale` patch waits on (`None`:
    /// nothing was queued).
    pub fn apply_claims_written(
        self: &Arc<Self>,
        create: &[PlannedNode],
        delete: &[String],
    ) -> (String, Option<ClaimsWritten>) {
        let (said, seq) = self.queue_claims(create, delete);
        let written = seq.map(|seq| ClaimsWritten {
            nodes: self.clone(),
            seq,
        });
        (said, written)
    }

    /// Queues the writes; returns what was done and the highest sequence number queued.
    fn queue_claims(&self, create: &[PlannedNode], delete: &[String]) -> (String, Option<u64>) {
        if !self.leader.is_leader() {
            self.count("any", "not_leader");
            return ("not the leader: skipped".into(), None);
        }
        let mut last_seq = None;
        let mut created = 0;
        let mut deleted = 0;
        {
            let mut asked = self.asked.lock();
            for n in create {
                if asked.created.contains_key(&n.name) {
                    continue;
                }
                let Some(pool) = self.pools.iter().find(|p| p.name == n.pool) else {
                    tracing::warn!(claim = %n.name, pool = %n.pool, "planned node of an unknown pool: skipped");
                    continue;
                };
                let requests = self.requests_of(&asked, n);
                let manifest = match serde_json::to_value(n.node_claim(
                    pool,
                    requests.cpu_millis,
                    requests.memory_bytes,
                )) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(claim = %n.name, error = %e, "NodeClaim manifest not JSON: skipped");
                        continue;
                    }
                };
                asked
                    .created
                    .insert(n.name.clone(), (n.clone(), Instant::now()));
                last_seq =
                    Some(self.enqueue(format!("claim/{}", n.name), Write::CreateClaim(manifest)));
                created += 1;
            }
            for name in delete {
                if asked.deleted.insert(name.clone()) {
                    last_seq = Some(self.enqueue(format!("claim/{name}"), Write::DeleteClaim));
                    deleted += 1;
                }
            }
        }
        (
            format!("NodeClaims queued: create {created}, delete {deleted}"),
            last_seq,
        )
    }

    /// Whether no write with a sequence number up to `seq` is queued or on the wire.
    fn settled_up_to(&self, seq: u64) -> bool {
        let queue = self.queue.lock();
        queue.values().all(|(s, _)| *s > seq) && self.writing.lock().is_none_or(|s| s > seq)
    }

    /// The headroom Deployment's replicas (and its PriorityClass), applied when the count changes.
    pub fn apply_headroom(&self, headroom: &Headroom) -> String {
        if !self.leader.is_leader() {
            self.count("headroom", "not_leader");
            return "not the leader: skipped".into();
        }
        let key = format!("{}/{}", headroom.namespace, headroom.name);
        if self.asked.lock().headroom.get(&key) == Some(&headroom.replicas) {
            return format!("headroom {key} already at {}", headroom.replicas);
        }
        let docs: Result<Vec<serde_json::Value>, _> = headroom
            .manifests()
            .split("\n---")
            .filter(|d| !d.trim().is_empty())
            .map(serde_yaml_ng::from_str::<serde_json::Value>)
            .collect();
        match docs {
            Ok(docs) => {
                self.asked
                    .lock()
                    .headroom
                    .insert(key.clone(), headroom.replicas);
                self.enqueue(format!("headroom/{key}"), Write::Headroom(docs));
                format!("headroom {key} → {} queued", headroom.replicas)
            }
            Err(e) => format!("headroom manifests unreadable: {e}"),
        }
    }

    /// The workload's pod template, from one of its live pods (selected by the `/scale` selector the
    /// caller passes): requests, nodeSelector, node affinity, tolerations. Remembered for the claims'
    /// requests.
    pub fn pod_template(
        &self,
        workload_key: &str,
        selector: &kube::core::Selector,
    ) -> Option<surge_nodes::Pod> {
        use kube::core::SelectorExt;
        let (ns, _) = workload_key.split_once('/')?;
        let pod = self.pods.state().into_iter().find(|p| {
            p.namespace().as_deref() == Some(ns)
                && p.metadata.deletion_timestamp.is_none()
                && selector.matches(p.labels())
        })?;
        let mut template = to_node_pod(&pod)?;
        template.name = workload_key.to_owned();
        self.asked
            .lock()
            .templates
            .insert(workload_key.to_owned(), template.clone());
        Some(template)
    }

    /// Remembers `template` as the pod of `workload_key`'s replicas still to be created (what the
    /// claims planned for them request).
    pub fn remember_template(&self, workload_key: &str, template: &surge_nodes::Pod) {
        self.asked
            .lock()
            .templates
            .insert(workload_key.to_owned(), template.clone());
    }

    /// What the planned node's pods request: known pods by name, pods still to be created
    /// (`<workload>-ahead-<i>`) from their workload's template.
    fn requests_of(&self, asked: &Asked, n: &PlannedNode) -> Resources {
        // Bound pods too: a consolidation replacement carries the pods of the node it replaces.
        let known: HashMap<String, Resources> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| to_node_pod(p).map(|np| (np.name.clone(), np.requests())))
            .collect();
        n.pods.iter().fold(Resources::ZERO, |acc, name| {
            let r = known.get(name).copied().or_else(|| {
                let (workload, _) = name.rsplit_once("-ahead-")?;
                asked.templates.get(workload).map(|t| t.requests())
            });
            acc + r.unwrap_or(Resources::ZERO)
        })
    }

    /// The cluster as node decisions see it; `None` until the caches are filled.
    pub fn observe_nodes(&self) -> Option<NodeView> {
        if !self.is_synced() {
            return None;
        }
        let now = Instant::now();
        let wall = jiff::Timestamp::now();
        let nodes: HashMap<String, Arc<Node>> = self
            .nodes
            .state()
            .into_iter()
            .map(|n| (n.name_any(), n))
            .collect();
        let pods = self.pods.state();
        let mut by_node: HashMap<String, Vec<surge_nodes::Pod>> = HashMap::new();
        let mut pending = Vec::new();
        for p in &pods {
            if is_daemonset(p) || is_terminal(p) {
                continue;
            }
            let Some(np) = to_node_pod(p) else { continue };
            match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                Some(node) => by_node.entry(node).or_default().push(np),
                None if p.metadata.deletion_timestamp.is_none() => pending.push(np),
                None => {}
            }
        }
        let mut view = NodeView {
            pending,
            daemonsets: self.daemonset_pods(),
            ..NodeView::default()
        };
        let mut asked = self.asked.lock();
        asked.unavailable.retain(|(_, until)| *until > now);
        let mut backed = BTreeSet::new();
        let mut timed_out = Vec::new();
        for claim in self.claims.state() {
            let name = claim.name_any();
            let node_name = claim
                .data
                .pointer("/status/nodeName")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if let Some(n) = &node_name {
                backed.insert(n.clone());
            }
            let node = node_name.as_ref().and_then(|n| nodes.get(n));
            let deleting =
                claim.metadata.deletion_timestamp.is_some() || asked.deleted.contains(&name);
            let mut existing = claim_offering(&claim);
            existing.name = name.clone();
            match node.filter(|n| is_ready(n)) {
                Some(node) => {
                    let pods = by_node.get(&node.name_any()).cloned().unwrap_or_default();
                    existing.allocatable = allocatable(node);
                    existing.requested = pods.iter().fold(Resources::ZERO, |a, p| a + p.requests());
                    let last = self.last_pod_event(&mut asked, &name, &pods, node, wall);
                    view.cluster.push(ClusterNode {
                        node: existing.clone(),
                        pods,
                        last_pod_event: last,
                        initialized: true,
                        ready: true,
                        marked_for_deletion: deleting,
                    });
                    if !deleting {
                        view.existing.push(existing);
                    }
                }
                None if deleting => {}
                None => {
                    let created = asked.created.get(&name).map(|(_, at)| *at);
                    if created.is_some_and(|at| now.duration_since(at) > self.cfg.launch_timeout) {
                        timed_out.push((name.clone(), existing));
                    } else {
                        view.in_flight.push(existing);
                    }
                }
            }
        }
        // Claims asked for but not yet in the cache are in flight too: the next evaluation must not
        // ask for them again.
        for (name, (planned, _)) in &asked.created {
            let known = view
                .in_flight
                .iter()
                .chain(&view.existing)
                .any(|n| &n.name == name)
                || view.cluster.iter().any(|c| &c.node.name == name)
                || asked.deleted.contains(name)
                || self.claims.state().iter().any(|c| &c.name_any() == name);
            if !known {
                view.in_flight.push(ExistingNode {
                    name: name.clone(),
                    pool: Some(planned.pool.clone()),
                    instance_type: planned.instance_type.clone(),
                    capacity_type: planned.capacity_type,
                    zone: planned.zone.clone(),
                    labels: BTreeMap::new(),
                    taints: Vec::new(),
                    requested: Resources::ZERO,
                    allocatable: None,
                });
            }
        }
        for (name, n) in timed_out {
            tracing::warn!(claim = %name, instance_type = %n.instance_type, capacity_type = %n.capacity_type,
                "NodeClaim did not become a node in time: deleting it, offering marked unavailable");
            asked.unavailable.push((
                Unavailable {
                    instance_type: n.instance_type,
                    capacity_type: Some(n.capacity_type),
                    zone: Some(n.zone),
                },
                now + self.cfg.unavailable_ttl,
            ));
            if asked.deleted.insert(name.clone()) && self.leader.is_leader() {
                self.enqueue(format!("claim/{name}"), Write::DeleteClaim);
            }
        }
        // Nodes no claim backs (not surge's, or another provisioner's): capacity, never consolidated.
        for (name, node) in &nodes {
            if backed.contains(name) || !is_ready(node) {
                continue;
            }
            let mut existing = node_offering(node);
            let pods = by_node.get(name).cloned().unwrap_or_default();
            existing.requested = pods.iter().fold(Resources::ZERO, |a, p| a + p.requests());
            view.existing.push(existing);
        }
        view.unavailable = asked.unavailable.iter().map(|(u, _)| u.clone()).collect();
        Some(view)
    }

    /// The pod of each DaemonSet (its template's requests, nodeSelector, affinity, tolerations), named
    /// `namespace/name`; one not readable is left out (logged).
    fn daemonset_pods(&self) -> Vec<surge_nodes::Pod> {
        self.daemonsets
            .state()
            .iter()
            .filter(|d| d.metadata.deletion_timestamp.is_none())
            .filter_map(|d| {
                let text = serde_json::to_string(d.as_ref()).ok()?;
                surge_nodes::Pod::from_k8s_yaml(&text, "daemonset")
                    .map_err(|e| {
                        tracing::debug!(daemonset = %d.name_any(), error = %e,
                            "DaemonSet pod template not readable for node decisions");
                    })
                    .ok()
            })
            .collect()
    }

    /// When a pod was last scheduled onto or removed from the claim's node (its Ready time at first).
    fn last_pod_event(
        &self,
        asked: &mut Asked,
        claim: &str,
        pods: &[surge_nodes::Pod],
        node: &Node,
        now: jiff::Timestamp,
    ) -> jiff::Timestamp {
        let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
        let entry = asked.pod_sets.entry(claim.to_owned()).or_insert_with(|| {
            let ready_at = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_transition_time.as_ref())
                .and_then(|t| jiff::Timestamp::from_millisecond(t.0.as_millisecond()).ok())
                .unwrap_or(now);
            (names.clone(), ready_at)
        });
        if entry.0 != names {
            *entry = (names, now);
        }
        entry.1
    }

    /// Queues `write` for `key` (replacing one not yet written); returns its sequence number.
    fn enqueue(&self, key: String, write: Write) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.queue.lock().insert(key, (seq, write));
        self.wake.notify_one();
        seq
    }

    fn count(&self, op: &'static str, outcome: &'static str) {
        self.writes
            .get_or_create(&WriteLabels { op, outcome })
            .inc();
    }

    /// Takes the oldest pending write and marks it on the wire (under the queue's lock, so a
    /// [`ClaimsWritten`] never sees it in neither place).
    fn next_write(&self) -> Option<(String, u64, Write)> {
        let mut q = self.queue.lock();
        let key = q
            .iter()
            .min_by_key(|(_, (seq, _))| *seq)
            .map(|(k, _)| k.clone())?;
        let (seq, w) = q.remove(&key)?;
        *self.writing.lock() = Some(seq);
        Some((key, seq, w))
    }

    /// The write on the wire has an outcome (or was put back): wake whoever waits on it.
    fn write_settled(&self) {
        *self.writing.lock() = None;
        self.settled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Writes pending objects one at a time under the rate limit until `cancel`.
    async fn write_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut bucket = TokenBucket::new(self.cfg.writes_per_second, self.cfg.burst);
        loop {
            let Some((key, seq, write)) = self.next_write() else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = bucket.take() => {}
            }
            if !self.leader.is_leader() {
                self.count(write.op(), "not_leader");
                self.write_settled();
                continue;
            }
            let op = write.op();
            let result =
                tokio::time::timeout(self.cfg.write_timeout, self.write(&key, &write)).await;
            match result {
                Ok(Ok(())) => {
                    self.count(op, "ok");
                    self.write_settled();
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                    self.count(op, "throttled");
                    let wait = s
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .unwrap_or(1);
                    tracing::info!(object = %key, wait_s = wait, "API server asked to retry later (429)");
                    // Put it back unless a newer write for the object arrived meanwhile.
                    self.queue.lock().entry(key).or_insert((seq, write));
                    self.write_settled();
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(u64::from(wait))) => {}
                    }
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 403 => {
                    // A missing grant: no retry fixes it, so it is counted apart and said once a
                    // minute (the next decision still asks, and succeeds once the grant is there).
                    self.count(op, "forbidden");
                    let mut logged = self.forbidden_logged.lock();
                    let now = Instant::now();
                    if logged
                        .get(op)
                        .is_none_or(|at| now.duration_since(*at) >= FORBIDDEN_LOG_EVERY)
                    {
                        logged.insert(op, now);
                        tracing::error!(object = %key, reason = %s.message,
                            "node write refused (403): the aggregator's ServiceAccount lacks a grant \
                             (the chart's nodeDecisions.enabled grants what node decisions need)");
                    }
                    drop(logged);
                    self.forget(&key, &write);
                    self.write_settled();
                }
                Ok(Err(e)) => {
                    self.count(op, "error");
                    tracing::warn!(object = %key, error = %e, "node write failed");
                    self.forget(&key, &write);
                    self.write_settled();
                }
                Err(_) => {
                    self.count(op, "timeout");
                    tracing::warn!(object = %key, "node write timed out");
                    self.forget(&key, &write);
                    self.write_settled();
                }
            }
        }
    }

    /// After a failed write, forget that it was asked for, so the next decision asks again.
    fn forget(&self, key: &str, write: &Write) {
        let mut asked = self.asked.lock();
        match (write, key.split_once('/')) {
            (Write::CreateClaim(_), Some((_, name))) => {
                asked.created.remove(name);
            }
            (Write::DeleteClaim, Some((_, name))) => {
                asked.deleted.remove(name);
            }
            (Write::Headroom(_), Some((_, name))) => {
                asked.headroom.remove(name);
            }
            _ => {}
        }
    }

    async fn write(&self, key: &str, write: &Write) -> Result<(), kube::Error> {
        let claims: Api<DynamicObject> = Api::all_with(self.client.clone(), &node_claim_resource());
        let name = key.split_once('/').map_or(key, |(_, n)| n);
        match write {
            Write::CreateClaim(manifest) => {
                let obj: DynamicObject =
                    serde_json::from_value(manifest.clone()).map_err(kube::Error::SerdeError)?;
                match claims.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    r => r.map(drop),
                }
            }
            Write::DeleteClaim => match claims.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                r => r.map(drop),
            },
            Write::Headroom(docs) => {
                for doc in docs {
                    let obj: DynamicObject =
                        serde_json::from_value(doc.clone()).map_err(kube::Error::SerdeError)?;
                    let Some(types) = obj.types.clone() else {
                        continue;
                    };
                    let (group, version) = types
                        .api_version
                        .split_once('/')
                        .unwrap_or(("", types.api_version.as_str()));
                    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
                    let plural = format!("{}s", types.kind.to_ascii_lowercase())
                        .replace("classs", "classes");
                    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
                    let api: Api<DynamicObject> = match obj.namespace() {
                        Some(ns) => Api::namespaced_with(self.client.clone(), &ns, &ar),
                        None => Api::all_with(self.client.clone(), &ar),
                    };
                    let params = PatchParams::apply(FIELD_MANAGER).force();
                    api.patch(&obj.name_any(), &params, &Patch::Apply(&obj))
                        .await?;
                }
                Ok(())
            }
        }
    }
}

/// How often a refused write's operation is logged.
const FORBIDDEN_LOG_EVERY: Duration = Duration::from_secs(60);

/// A client-side rate limit: `rate` tokens a second, at most `burst` saved.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.01),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// A reflector over `api` (managed fields dropped) on a task; the flag turns true once it listed.
fn reflect<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    cancel: &CancellationToken,
) -> (Store<K>, Arc<AtomicBool>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let store = writer.as_reader();
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    let cancel = cancel.clone();
    let reader = store.clone();
    tokio::spawn(async move {
        let waiter = reader.clone();
        let flag2 = flag.clone();
        tokio::spawn(async move {
            if waiter.wait_until_ready().await.is_ok() {
                flag2.store(true, Ordering::Release);
            }
        });
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = stream.next() => match ev {
                    Some(Err(e)) => tracing::debug!(error = %e, "node actuation watch error"),
                    Some(Ok(_)) => {}
                    None => return,
                }
            }
        }
    });
    (store, ready)
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && n.metadata.deletion_timestamp.is_none()
}

fn is_daemonset(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"))
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod as placement sees it, named `namespace/name`; `None` when its spec cannot be read.
fn to_node_pod(p: &Pod) -> Option<surge_nodes::Pod> {
    let text = serde_json::to_string(p).ok()?;
    match surge_nodes::Pod::from_k8s_yaml(&text, "pod") {
        Ok(mut np) => {
            np.do_not_disrupt = p
                .annotations()
                .get("karpenter.sh/do-not-disrupt")
                .is_some_and(|v| v == "true");
            Some(np)
        }
        Err(e) => {
            tracing::debug!(pod = %p.name_any(), error = %e, "pod spec not readable for node decisions");
            None
        }
    }
}

fn capacity_type(v: Option<&str>) -> CapacityType {
    match v {
        Some("spot") => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    }
}

/// A claim's offering: the pinned instance type, capacity type and zone of its requirements, its pool.
fn claim_offering(claim: &DynamicObject) -> ExistingNode {
    let pinned = |key: &str| -> Option<String> {
        claim
            .data
            .pointer("/spec/requirements")?
            .as_array()?
            .iter()
            .find(|r| r.get("key").and_then(|k| k.as_str()) == Some(key))?
            .get("values")?
            .get(0)?
            .as_str()
            .map(str::to_owned)
    };
    ExistingNode {
        name: claim.name_any(),
        pool: claim.labels().get(NODEPOOL).cloned(),
        instance_type: pinned(INSTANCE_TYPE).unwrap_or_default(),
        capacity_type: capacity_type(pinned(CAPACITY_TYPE).as_deref()),
        zone: pinned(ZONE).unwrap_or_default(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
        requested: Resources::ZERO,
        allocatable: None,
    }
}

/// A node's offering from its well-known labels, with the allocatable it reports.
fn node_offering(n: &Node) -> ExistingNode {
    let labels = n.labels();
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    ExistingNode {
        name: n.name_any(),
        pool: labels.get(NODEPOOL).cloned(),
        instance_type: labels.get(INSTANCE_TYPE).cloned().unwrap_or_default(),
        capacity_type: capacity_type(labels.get(CAPACITY_TYPE).map(String::as_str)),
        zone: labels.get(ZONE).cloned().unwrap_or_default(),
        labels: labels.clone(),
        taints,
        requested: Resources::ZERO,
        allocatable: allocatable(n),
    }
}

fn allocatable(n: &Node) -> Option<Resources> {
    let a = n.status.as_ref()?.allocatable.as_ref()?;
    let cpu = parse_cpu(&a.get("cpu")?.0).ok()?;
    let memory = parse_memory(&a.get("memory")?.0).ok()?;
    let pods = a.get("pods").and_then(|p| p.0.parse().ok()).unwrap_or(110);
    Some(Resources::new(cpu, memory, pods))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lease::{LeaderElector, LeaseConfig};
    use kube::client::Body;

    /// An API server stand-in, in-process (`kube::Client::new` over a `tower::service_fn`). Mocked
    /// because the real API server cannot be made to answer these writes 429 here: API Priority and
    /// Fairness admits a request whenever nothing else executes in its priority level, even at zero
    /// seats (`queueset.canAccommodateSeatsLocked`, kubernetes/kubernetes
    /// `staging/src/k8s.io/apiserver/pkg/util/flowcontrol/fairqueuing/queueset/queueset.go`), so a
    /// lone NodeClaim create is never rejected.
    ///
    /// Lists are empty, watches never answer, the Lease is kept and echoed, and the first
    /// `throttle` NodeClaim creates are refused with a `metav1.Status` 429 carrying
    /// `retryAfterSeconds: 2`.
    #[derive(Default)]
    struct FakeApiServer {
        throttle: usize,
        lease: Mutex<Option<Vec<u8>>>,
        claim_posts: Mutex<Vec<Instant>>,
    }

    impl FakeApiServer {
        async fn answer(&self, req: http::Request<Body>) -> http::Response<Body> {
            let (parts, body) = req.into_parts();
            let body = body.collect_bytes().await.unwrap_or_default().to_vec();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let json = |code: u16, body: Vec<u8>| {
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap()
            };
            let status = |code: u16, reason: &str, details: serde_json::Value| {
                let s = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": reason, "reason": reason, "code": code, "details": details});
                json(code, s.to_string().into_bytes())
            };
            if path.contains("/leases") {
                let mut lease = self.lease.lock();
                return match parts.method {
                    http::Method::GET => match lease.clone() {
                        Some(l) => json(200, l),
                        None => status(404, "NotFound", serde_json::json!({})),
                    },
                    _ => {
                        *lease = Some(body.clone());
                        json(200, body)
                    }
                };
            }
            if parts.method == http::Method::GET && query.contains("watch=true") {
                std::future::pending::<()>().await;
            }
            if parts.method == http::Method::GET {
                let list = r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"},"items":[]}"#;
                return json(200, list.as_bytes().to_vec());
            }
            if parts.method == http::Method::POST && path.ends_with("/nodeclaims") {
                let mut posts = self.claim_posts.lock();
                posts.push(Instant::now());
                if posts.len() <= self.throttle {
                    return status(
                        429,
                        "TooManyRequests",
                        serde_json::json!({"retryAfterSeconds": 2}),
                    );
                }
                return json(201, body);
            }
            status(404, "NotFound", serde_json::json!({}))
        }
    }

    const POOL: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.xlarge]}
"#;

    fn counted(registry: &Registry, outcome: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let key = format!("surge_node_writes_total{{op=\"create_claim\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A 429 is counted, the write waits the Status' `retryAfterSeconds` before it is tried again,
    /// and the decision's [`ClaimsWritten`] settles only once the claim was accepted.
    #[tokio::test(start_paused = true)]
    async fn throttled_claim_waits_retry_after_and_settles_when_written() {
        let server = Arc::new(FakeApiServer {
            throttle: 2,
            ..FakeApiServer::default()
        });
        let s = server.clone();
        let service = tower::service_fn(move |req| {
            let s = s.clone();
            async move { Ok::<_, std::convert::Infallible>(s.answer(req).await) }
        });
        let client = Client::new(service, "default");
        let cancel = CancellationToken::new();
        let leader = LeaderElector::start(
            client.clone(),
            LeaseConfig::new("surge", "default", "a"),
            cancel.clone(),
        )
        .unwrap();
        for _ in 0..100 {
            if leader.is_leader() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(leader.is_leader(), "leads with the Lease the fake keeps");
        let mut registry = Registry::default();
        let pools = NodePool::all_from_yaml(POOL, "pool.yaml").unwrap();
        let nodes = NodeActuator::start(
            client,
            leader,
            NodeActuatorConfig::default(),
            pools,
            &mut registry,
            Duration::from_secs(10),
            cancel.clone(),
        )
        .await;
        assert!(nodes.is_synced());
        let planned = PlannedNode {
            name: "general-0".into(),
            pool: "general".into(),
            instance_type: "m5.xlarge".into(),
            capacity_type: CapacityType::OnDemand,
            zone: "us-east-1a".into(),
            price: 0.192,
            pods: Vec::new(),
        };
        let (said, written) = nodes.apply_claims_written(std::slice::from_ref(&planned), &[]);
        assert_eq!(said, "NodeClaims queued: create 1, delete 0");
        let written = written.expect("a write was queued");
        // Refused at once, retried 2 s later, refused again: still not written after 3 s.
        assert!(!written.wait(Duration::from_secs(3)).await);
        assert!(!written.is_settled());
        assert!(written.wait(Duration::from_secs(10)).await);
        let posts = server.claim_posts.lock().clone();
        assert_eq!(posts.len(), 3, "two refusals, then accepted");
        for pair in posts.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_secs(2),
                "retried after Retry-After: {:?}",
                pair[1] - pair[0]
            );
        }
        assert_eq!(counted(&registry, "throttled"), 2);
        assert_eq!(counted(&registry, "ok"), 1);
        // Asked once: a later decision with the same claim queues nothing.
        let (_, again) = nodes.apply_claims_written(std::slice::from_ref(&planned), &[]);
        assert!(again.is_none());
        cancel.cancel();
    }
}
