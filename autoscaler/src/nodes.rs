//! Node decisions in the engine loop: capacity before Pending, and consolidation.
//!
//! ```text
//! pod decision current → desired (adds) ─▶ actuator.pod_template ─┐
//! actuator.observe_nodes (nodes, in-flight claims, Pending pods) ─┼─▶ nodes::plan_ahead ─▶ Action::NodeClaims
//!                                          (every `interval`) ────┴─▶ nodes::consolidate (Delete only)
//! ```
//!
//! When a policy decides to add replicas and node decisions are configured, the nodes those pods will
//! need are planned in the same evaluation, from the workload's pod template, and handed to the
//! actuator with the pod decision: the NodeClaims exist before the ReplicaSet has created the pods, so
//! they never wait for Karpenter's Pending-pod batch window. Between scale-ups, one evaluation per
//! `interval` (any policy's) plans for Pending pods that nothing covers (a claim that never became a
//! node) and runs consolidation.
//!
//! Headroom ([`HeadroomPolicy`]): in the same pass, the pause-pod Deployment's size is decided —
//! the stated minimum, or the largest scale-up (in pods) of the recent window when larger — and an
//! `Action::Headroom` goes out when it changes; its price (the nodes its pause pods alone would
//! launch) is shown with the decision and as a gauge.
//!
//! Consolidation's `Replace` is carried out in steps across passes: the cheaper claim is created
//! (named `<pool>-<stamp>-r<i>`, its pods those of the node it replaces); the old claim is deleted
//! only once the new one is a Ready node; a replacement that never becomes one (timed out, deleted)
//! is forgotten and the old node stays. While a replacement is under way neither node is a
//! consolidation candidate, and the new node stays protected until the old one is gone and the new
//! one runs pods (it is empty meanwhile and would otherwise look like an empty node to delete).
//!
//! Design choices: planned nodes are renamed `<pool>-<ms since epoch, base 36>-<i>` so claims of
//! different decisions never collide.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

use serde::Serialize;
use surge_actuate::{Action, Actuator, ScaleTarget};
use surge_engine::Decision;
use surge_nodes::{
    Catalog, ConsolidationInput, NodePool, PlannedNode, ProvisionInput, ScaleUp, Unschedulable,
};

/// What node decisions read: the NodePools, the instance-type catalog, DaemonSet pods every node runs
/// beyond the cluster's own (which the actuator reports in [`surge_actuate::NodeView::daemonsets`]),
/// and how often the between-decisions pass (Pending pods, consolidation) runs.
#[derive(Debug, Clone)]
pub struct NodeDecisions {
    pub pools: Vec<NodePool>,
    pub catalog: Catalog,
    pub daemonsets: Vec<surge_nodes::Pod>,
    /// Milliseconds between passes over Pending pods and consolidation (scale-ups do not wait).
    pub interval_ms: i64,
    /// Spare capacity kept warm as pause pods, when stated.
    pub headroom: Option<HeadroomPolicy>,
}

/// Headroom as a policy: `min_replicas` pause pods of `chunk`'s shape in Deployment
/// `namespace/name`, raised to the largest scale-up (in pods, any policy's) of the last `window_ms`
/// when that is larger, so the next scale-up of that size finds running nodes.
#[derive(Debug, Clone)]
pub struct HeadroomPolicy {
    pub name: String,
    pub namespace: String,
    /// One pause pod's shape (requests, nodeSelector, tolerations).
    pub chunk: surge_nodes::Pod,
    pub min_replicas: u32,
    /// How far back scale-ups size the headroom; 0: the minimum alone.
    pub window_ms: i64,
}

/// The headroom decided in a pass, when its size changed.
#[derive(Debug, Clone, Serialize)]
pub struct HeadroomRecord {
    /// `namespace/name` of the pause Deployment.
    pub deployment: String,
    pub replicas: u32,
    /// USD per hour of the nodes its pause pods alone would launch (Headroom::cost_per_hour).
    pub cost_per_hour: f64,
    /// What the actuator did with it.
    pub actuation: String,
}

/// The node side of one decision, as `/api/v1/decisions` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    /// NodeClaims asked for.
    pub create: Vec<PlannedNode>,
    /// NodeClaims consolidation deletes.
    pub delete: Vec<String>,
    /// Pods no pool can take, with the requirement that failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unschedulable: Vec<Unschedulable>,
    /// The headroom's new size, when this pass changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom: Option<HeadroomRecord>,
    /// From the pod decision to the node decision (planning included, the actuator's queueing not).
    pub decided_in_us: u64,
    /// What the actuator did with it.
    pub actuation: String,
}

/// Node decisions configured on an [`crate::Autoscaler`], with the time of the last pass.
pub(crate) struct NodeEngine {
    pub(crate) cfg: NodeDecisions,
    last_pass_ms: AtomicI64,
    /// Scale-ups (when, pods added) within the headroom window, oldest first.
    scale_ups: Mutex<VecDeque<(i64, u32)>>,
    /// The headroom size last handed to the actuator.
    headroom_replicas: Mutex<Option<u32>>,
    /// Consolidation's replacements under way, by the new claim's name.
    replacing: Mutex<std::collections::BTreeMap<String, Replacement>>,
}

/// A `Replace` under way: the node the new claim replaces, and whether its deletion was asked for.
#[derive(Debug, Clone)]
struct Replacement {
    old: String,
    old_deleted: bool,
}

/// The headroom gauges, registered with the engine's metrics.
#[derive(Clone, Default)]
pub(crate) struct HeadroomMetrics {
    pub(crate) replicas: prometheus_client::metrics::gauge::Gauge,
    pub(crate) cost_per_hour:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl NodeEngine {
    pub(crate) fn new(cfg: NodeDecisions) -> NodeEngine {
        NodeEngine {
            cfg,
            last_pass_ms: AtomicI64::new(0),
            scale_ups: Mutex::new(VecDeque::new()),
            headroom_replicas: Mutex::new(None),
            replacing: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Whether the between-decisions pass is due now; claims it when it is (one policy runs it).
    fn take_pass(&self, now: i64) -> bool {
        let last = self.last_pass_ms.load(Ordering::Acquire);
        now - last >= self.cfg.interval_ms
            && self
                .last_pass_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The node decision that goes with `decision` of `target`, whose workload has `existing_pods`
    /// pods now; `None` when there is nothing to decide (no scale-up and no pass due, or nothing known).
    pub(crate) fn decide(
        &self,
        actuator: &dyn Actuator,
        target: &ScaleTarget,
        decision: &Decision,
        existing_pods: u32,
        now: i64,
        metrics: &HeadroomMetrics,
    ) -> Option<NodeRecord> {
        let started = std::time::Instant::now();
        let adds = decision.scale && decision.desired_replicas > decision.current_replicas;
        if adds {
            let added = decision.desired_replicas - decision.current_replicas;
            self.scale_ups
                .lock()
                .push_back((now, u32::try_from(added).unwrap_or(0)));
        }
        if !adds && !self.take_pass(now) {
            return None;
        }
        let view = actuator.observe_nodes()?;
        let template = if adds {
            actuator.pod_template(target)
        } else {
            None
        };
        let workload = target.workload.key();
        let desired = u32::try_from(decision.desired_replicas).unwrap_or(0);
        let scale_ups: Vec<ScaleUp<'_>> = template
            .iter()
            .map(|t| ScaleUp {
                workload: &workload,
                template: t,
                existing_pods,
                desired,
            })
            .collect();
        let cfg = &self.cfg;
        let daemonsets = with_cluster_daemonsets(&cfg.daemonsets, &view);
        let input = ProvisionInput {
            catalog: &cfg.catalog,
            pools: &cfg.pools,
            pods: &view.pending,
            existing: &view.existing,
            in_flight: &view.in_flight,
            daemonsets: &daemonsets,
            unavailable: &view.unavailable,
        };
        let mut plan = surge_nodes::plan_ahead(&input, &scale_ups);
        let stamp = base36(now);
        for (i, n) in plan.nodes.iter_mut().enumerate() {
            n.name = format!("{}-{stamp}-{i}", n.pool);
        }
        // Consolidation only when nothing is being launched and no pod is Pending: a scale-up's or a
        // Pending pod's way may lead to the nodes that look empty now.
        let mut delete = self.replaced(&view);
        if plan.nodes.is_empty() && !adds && view.pending.is_empty() {
            let (deletions, replacements) = self.consolidation(&view, now, &stamp);
            delete.extend(deletions);
            plan.nodes.extend(replacements);
        }
        let headroom = if adds {
            None
        } else {
            self.headroom(actuator, &input, now, metrics)
        };
        if plan.nodes.is_empty()
            && delete.is_empty()
            && plan.unschedulable.is_empty()
            && headroom.is_none()
        {
            return None;
        }
        let decided_in_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let actuation = if plan.nodes.is_empty() && delete.is_empty() {
            String::new()
        } else {
            actuator.apply(Action::NodeClaims {
                create: &plan.nodes,
                delete: &delete,
            })
        };
        Some(NodeRecord {
            create: plan.nodes,
            delete,
            unschedulable: plan.unschedulable,
            headroom,
            decided_in_us,
            actuation,
        })
    }

    /// The headroom's size now; applied (and returned) when it differs from the last one applied.
    fn headroom(
        &self,
        actuator: &dyn Actuator,
        input: &ProvisionInput<'_>,
        now: i64,
        metrics: &HeadroomMetrics,
    ) -> Option<HeadroomRecord> {
        let policy = self.cfg.headroom.as_ref()?;
        let recent: Vec<u32> = {
            let mut ups = self.scale_ups.lock();
            while ups
                .front()
                .is_some_and(|(at, _)| now - at > policy.window_ms)
            {
                ups.pop_front();
            }
            ups.iter().map(|(_, n)| *n).collect()
        };
        let mut headroom = surge_nodes::Headroom::from_recent_scale_ups(
            &policy.name,
            &policy.namespace,
            &policy.chunk,
            &recent,
        );
        headroom.replicas = headroom.replicas.max(policy.min_replicas);
        let mut last = self.headroom_replicas.lock();
        if *last == Some(headroom.replicas) {
            return None;
        }
        let actuation = actuator.apply(Action::Headroom {
            headroom: &headroom,
        });
        // Written once the actuator took it; a replica that is not the leader asks again next pass.
        if !actuation.starts_with("not the leader") {
            *last = Some(headroom.replicas);
        }
        let cost_per_hour = headroom.cost_per_hour(input);
        metrics.replicas.set(i64::from(headroom.replicas));
        metrics.cost_per_hour.set(cost_per_hour);
        Some(HeadroomRecord {
            deployment: format!("{}/{}", policy.namespace, policy.name),
            replicas: headroom.replicas,
            cost_per_hour,
            actuation,
        })
    }

    /// Consolidation now: the claims to delete, and the replacement claims to create (remembered
    /// until their nodes are Ready). Nodes in a replacement under way are left alone.
    fn consolidation(
        &self,
        view: &surge_actuate::NodeView,
        now: i64,
        stamp: &str,
    ) -> (Vec<String>, Vec<PlannedNode>) {
        let Ok(now) = jiff::Timestamp::from_millisecond(now) else {
            return (Vec::new(), Vec::new());
        };
        let daemonsets = with_cluster_daemonsets(&self.cfg.daemonsets, view);
        let input = ConsolidationInput {
            catalog: &self.cfg.catalog,
            pools: &self.cfg.pools,
            nodes: &view.cluster,
            daemonsets: &daemonsets,
            unavailable: &view.unavailable,
            spot_to_spot: false,
        };
        let mut replacing = self.replacing.lock();
        let mut deletions = Vec::new();
        let mut replacements = Vec::new();
        for d in surge_nodes::consolidate(&input, now) {
            let busy =
                replacing.contains_key(&d.node) || replacing.values().any(|r| r.old == d.node);
            if busy {
                continue;
            }
            match d.action {
                surge_nodes::Action::Delete => deletions.push(d.node),
                surge_nodes::Action::Replace {
                    instance_type,
                    capacity_type,
                    zone,
                    price,
                } => {
                    let pods = view
                        .cluster
                        .iter()
                        .find(|c| c.node.name == d.node)
                        .map(|c| c.pods.iter().map(|p| p.name.clone()).collect())
                        .unwrap_or_default();
                    let name = format!("{}-{stamp}-r{}", d.pool, replacements.len());
                    replacing.insert(
                        name.clone(),
                        Replacement {
                            old: d.node,
                            old_deleted: false,
                        },
                    );
                    replacements.push(PlannedNode {
                        name,
                        pool: d.pool,
                        instance_type,
                        capacity_type,
                        zone,
                        price,
                        pods,
                    });
                }
            }
        }
        (deletions, replacements)
    }

    /// The nodes whose replacement became a Ready node since the last look (to delete now); forgets
    /// replacements that failed to launch and those finished (old node gone, new one running pods).
    fn replaced(&self, view: &surge_actuate::NodeView) -> Vec<String> {
        let mut delete = Vec::new();
        self.replacing.lock().retain(|new, r| {
            let ready = view.cluster.iter().find(|c| c.node.name == *new && c.ready);
            let launching = view.in_flight.iter().any(|n| n.name == *new);
            let Some(ready) = ready else {
                if !launching {
                    tracing::warn!(replacement = %new, old = %r.old,
                        "consolidation's replacement did not become a node: keeping the old one");
                }
                return launching;
            };
            if !r.old_deleted {
                delete.push(r.old.clone());
                r.old_deleted = true;
                return true;
            }
            let old_gone = !view.cluster.iter().any(|c| c.node.name == r.old);
            // Kept (protected) until the old node is gone and the new one runs pods.
            !old_gone || ready.pods.is_empty()
        });
        delete
    }
}

/// The DaemonSet pods every new node runs: the configured ones and the cluster's.
fn with_cluster_daemonsets(
    configured: &[surge_nodes::Pod],
    view: &surge_actuate::NodeView,
) -> Vec<surge_nodes::Pod> {
    configured.iter().chain(&view.daemonsets).cloned().collect()
}

/// `n` in base 36 (lowercase: NodeClaim names are DNS labels).
fn base36(mut n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    n = n.max(0);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use surge_actuate::{NodeView, Observed, Workload};
    use surge_nodes::{ClusterNode, ExistingNode, Pod, Resources};

    /// A cluster the test edits between passes; records the NodeClaims actions.
    #[derive(Default)]
    struct Cluster {
        view: Mutex<NodeView>,
        /// (created, deleted) per NodeClaims action.
        actions: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    }

    impl Actuator for Cluster {
        fn observe(&self, _: &ScaleTarget, _: &[&str]) -> Option<Observed> {
            None
        }
        fn apply(&self, action: Action<'_>) -> String {
            if let Action::NodeClaims { create, delete } = action {
                let created = create.iter().map(|n| n.name.clone()).collect();
                self.actions.lock().push((created, delete.to_vec()));
            }
            "applied".into()
        }
        fn observe_nodes(&self) -> Option<NodeView> {
            Some(self.view.lock().clone())
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
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.2xlarge]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1s
    budgets: [{nodes: "100%"}]
"#;

    /// Node decisions over [`POOL`] with a 1 s pass.
    fn replacing_engine() -> NodeEngine {
        NodeEngine::new(NodeDecisions {
            pools: NodePool::all_from_yaml(POOL, "pool.yaml").unwrap(),
            catalog: Catalog::embedded(),
            daemonsets: Vec::new(),
            interval_ms: 1000,
            headroom: None,
        })
    }

    fn web_target() -> ScaleTarget {
        ScaleTarget {
            policy: "p".into(),
            workload: Workload {
                namespace: "shop".into(),
                name: "web".into(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into(),
            },
            mode: surge_actuate::ActuationMode::Scale,
            initial_replicas: 1,
            events: false,
        }
    }

    fn node(name: &str, instance_type: &str, pods: Vec<Pod>) -> ClusterNode {
        ClusterNode {
            node: ExistingNode {
                name: name.into(),
                pool: Some("general".into()),
                instance_type: instance_type.into(),
                capacity_type: surge_nodes::CapacityType::OnDemand,
                zone: "us-east-1a".into(),
                labels: Default::default(),
                taints: Vec::new(),
                requested: pods.iter().fold(Resources::ZERO, |a, p| a + p.requests()),
                allocatable: None,
            },
            pods,
            last_pod_event: jiff::Timestamp::UNIX_EPOCH,
            initialized: true,
            ready: true,
            marked_for_deletion: false,
        }
    }

    fn stays() -> Decision {
        serde_json::from_value(serde_json::json!({
            "now_ms": 0, "current_replicas": 1, "desired_replicas": 1, "scale": false,
            "inputs": {"current_replicas": 1, "status_replicas": 1, "min_replicas": 1, "max_replicas": 10,
                       "scale_up_tolerance": 0.1, "scale_down_tolerance": 0.1, "pods": 1, "behavior": false},
            "metrics": [], "recommendation": null, "recommended_by": null, "stabilization": null,
            "limit": null, "conditions": [], "reason": "", "error": null
        }))
        .unwrap()
    }

    /// Consolidation's Replace in steps: the cheaper claim first, the old one deleted only once the
    /// new one is a Ready node, neither touched meanwhile, the new one protected while it is empty.
    #[test]
    fn replace_creates_first_and_deletes_the_old_node_once_the_new_one_is_ready() {
        let engine = replacing_engine();
        let web = Pod::new("shop/web-0", 500, 1 << 30);
        let cluster = Cluster::default();
        cluster.view.lock().cluster = vec![node("big", "m5.2xlarge", vec![web.clone()])];
        let target = web_target();
        let metrics = HeadroomMetrics::default();
        let mut now = 1_767_225_600_000;
        let mut pass = |cluster: &Cluster| {
            now += 1000;
            engine.decide(cluster, &target, &stays(), 1, now, &metrics)
        };

        // Pass 1: the replacement, m5.large, carrying big's pod; big stays.
        let first = pass(&cluster).expect("a consolidation decision");
        assert_eq!(first.create.len(), 1, "{first:?}");
        assert_eq!(first.create[0].instance_type, "m5.large");
        assert_eq!(first.create[0].pods, vec!["shop/web-0".to_owned()]);
        assert!(first.delete.is_empty(), "the old node waits: {first:?}");
        let new = first.create[0].name.clone();
        assert!(new.starts_with("general-") && new.ends_with("-r0"), "{new}");

        // Pass 2: the new claim is launching: nothing more (no second replacement, no delete).
        cluster.view.lock().in_flight = vec![node(&new, "m5.large", Vec::new()).node];
        assert!(pass(&cluster).is_none());

        // Pass 3: the new node is Ready (and empty): big's claim is deleted, the new one is not.
        {
            let mut v = cluster.view.lock();
            v.in_flight.clear();
            v.cluster.push(node(&new, "m5.large", Vec::new()));
        }
        let third = pass(&cluster).expect("the old node's deletion");
        assert_eq!(third.delete, vec!["big".to_owned()]);
        assert!(third.create.is_empty());

        // Pass 4: big is going; the empty new node is still protected.
        cluster.view.lock().cluster[0].marked_for_deletion = true;
        assert!(pass(&cluster).is_none());

        // Pass 5: big gone, the pod on the new node: the replacement is done; nothing to decide.
        cluster.view.lock().cluster = vec![node(&new, "m5.large", vec![web])];
        assert!(pass(&cluster).is_none());
        assert!(engine.replacing.lock().is_empty());
        assert_eq!(cluster.actions.lock().len(), 2, "create, then delete");
    }

    /// A replacement that never becomes a node is forgotten and the old node kept.
    #[test]
    fn a_replacement_that_never_launches_keeps_the_old_node() {
        let engine = replacing_engine();
        let cluster = Cluster::default();
        cluster.view.lock().cluster = vec![node(
            "big",
            "m5.2xlarge",
            vec![Pod::new("shop/web-0", 500, 1 << 30)],
        )];
        let target = web_target();
        let metrics = HeadroomMetrics::default();
        let t0 = 1_767_225_600_000;
        let first = engine
            .decide(&cluster, &target, &stays(), 1, t0, &metrics)
            .unwrap();
        assert_eq!(first.create.len(), 1);
        // The claim timed out and was deleted: neither in flight nor a node. The old one stays, and
        // consolidation may try again.
        let again = engine
            .decide(&cluster, &target, &stays(), 1, t0 + 1000, &metrics)
            .unwrap();
        assert!(again.delete.is_empty(), "{again:?}");
        assert_eq!(again.create.len(), 1, "tried again: {again:?}");
        assert_ne!(again.create[0].name, first.create[0].name);
    }

    #[test]
    fn base36_names_are_dns_labels() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(1_767_225_600_000), "mjuohs00");
    }
}
