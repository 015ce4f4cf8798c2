//! The actuation seam: where the engine learns a workload's replicas and pods, and where its decisions go.
//!
//! ```text
//! autoscaler ─observe(target)─▶ Actuator ─▶ (spec.replicas, status.replicas, pods)
//!            ─apply(Action)───▶ Actuator ─▶ dry-run count · /scale patch (surge-k8s) · later NodeClaims, warm pools
//! ```
//!
//! Implementations: [`VirtualWorkloads`] (dry-run, here) and the Kubernetes `/scale` actuator with Lease
//! leader election (`surge-k8s`). Node decisions and warm pools are further [`Action`] variants served by
//! further implementations, not edits to the autoscaler.
//!
//! Architecture invariant: this crate has no runtime, HTTP, Kubernetes or cloud dependency; the trait is
//! synchronous and an implementation that talks to a cluster answers from its own caches and does its
//! writes on its own tasks, so an evaluation never waits on the network.

use dashmap::DashMap;
pub use surge_config::ActuationMode;
use surge_engine::{Decision, PodInfo};

/// The object a policy scales.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub kind: String,
    pub api_version: String,
}

impl Workload {
    /// `namespace/name`, as `surge explain` and the decisions API name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What an actuator knows of a policy: its name, the workload it scales, how decisions take effect, the
/// replica count to assume while nothing better is known, and whether its decisions become Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    /// The policy's name (unique in a config).
    pub policy: String,
    pub workload: Workload,
    pub mode: ActuationMode,
    pub initial_replicas: i32,
    /// Record each decision that changes the replica count as a Kubernetes Event on the workload, in
    /// every mode (the policy's `events`): an actuator with a cluster does, from the leader only; one
    /// without ignores it.
    pub events: bool,
}

impl ScaleTarget {
    /// The mode's name as decisions and metrics show it.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            ActuationMode::DryRun => "dry-run",
            ActuationMode::Scale => "scale",
            ActuationMode::Hpa => "hpa",
        }
    }
}

/// What a workload looks like to the engine right now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `spec.replicas` of the workload's `/scale`.
    pub spec_replicas: i32,
    /// `status.replicas` of the workload's `/scale`.
    pub status_replicas: i32,
    /// The workload's pods (empty when the actuator does not know them).
    pub pods: Vec<PodInfo>,
}

/// One thing the engine asks for: pod decisions, node claims and headroom.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Action<'a> {
    /// Set the workload's replica count as `decision` says (a no-op decision is reported, not applied).
    Scale {
        target: &'a ScaleTarget,
        decision: &'a Decision,
    },
    /// Node decisions: a `karpenter.sh/v1` NodeClaim to create per planned node
    /// ([`surge_nodes::PlannedNode::node_claim`] gives its manifest) and the NodeClaims to delete
    /// (consolidation), by name. An actuator with a cluster creates and deletes them (leader only).
    NodeClaims {
        create: &'a [surge_nodes::PlannedNode],
        delete: &'a [String],
    },
    /// Headroom: set the pause Deployment's replicas ([`surge_nodes::Headroom::manifests`]).
    Headroom { headroom: &'a surge_nodes::Headroom },
}

/// The cluster as node decisions see it: nodes, NodeClaims not yet nodes, Pending pods, and what
/// consolidation needs. Names are NodeClaim names where a claim backs the node (what deleting takes).
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Ready nodes, with what their bound pods request.
    pub existing: Vec<surge_nodes::ExistingNode>,
    /// NodeClaims created but not yet Ready nodes (requests zero: the pods headed there are the Pending
    /// pods and the pods a decision is about to create).
    pub in_flight: Vec<surge_nodes::ExistingNode>,
    /// Pods no node is bound to yet.
    pub pending: Vec<surge_nodes::Pod>,
    /// The nodes surge's claims launched, for consolidation.
    pub cluster: Vec<surge_nodes::ClusterNode>,
    /// Offerings that failed to launch recently (a claim that never became a node).
    pub unavailable: Vec<surge_nodes::Unavailable>,
    /// The pod each DaemonSet runs on every node it selects (requests, nodeSelector, tolerations):
    /// what a new node has less to give.
    pub daemonsets: Vec<surge_nodes::Pod>,
}

/// Where replica counts come from and where decisions go.
pub trait Actuator: Send + Sync {
    /// The workload's current state, or `None` when unknown. `metric_pods` are the pods the policy's
    /// per-pod inputs name (empty when it has none): an actuator without a cluster (dry-run) takes them as
    /// its pod list; one with a cluster reads the real pods.
    fn observe(&self, target: &ScaleTarget, metric_pods: &[&str]) -> Option<Observed>;

    /// Carries out `action`; returns a short description of what happened (`dry-run: 3 → 5`,
    /// `patched /scale 3 → 5`, `not the leader`, …), shown with the decision.
    fn apply(&self, action: Action<'_>) -> String;

    /// The cluster's nodes, claims and Pending pods for node decisions (`None`: not known, so no node
    /// decision is made). Answered from caches, like `observe`.
    fn observe_nodes(&self) -> Option<NodeView> {
        None
    }

    /// The pod the workload's next replica will be (requests, nodeSelector, node affinity,
    /// tolerations), or `None` when unknown: capacity ahead of Pending needs it.
    fn pod_template(&self, _target: &ScaleTarget) -> Option<surge_nodes::Pod> {
        None
    }
}

/// The dry-run actuator: a virtual replica count per policy, all pods running and ready. The pods are
/// the ones the per-pod metrics name when there are as many as the virtual count (the workload's real
/// pods, seen through their metrics), else stand-ins named `WORKLOAD-i`.
#[derive(Default)]
pub struct VirtualWorkloads {
    replicas: DashMap<String, i32>,
}

impl Actuator for VirtualWorkloads {
    fn observe(&self, target: &ScaleTarget, metric_pods: &[&str]) -> Option<Observed> {
        let n = match self.replicas.get(&target.policy) {
            Some(n) => *n,
            None => *self
                .replicas
                .entry(target.policy.clone())
                .or_insert(target.initial_replicas),
        };
        let pods = if !metric_pods.is_empty() && usize::try_from(n).ok() == Some(metric_pods.len())
        {
            metric_pods.iter().map(|p| PodInfo::running(p, 0)).collect()
        } else {
            (0..n)
                .map(|i| PodInfo::running(&format!("{}-{i}", target.workload.name), 0))
                .collect()
        };
        Some(Observed {
            spec_replicas: n,
            status_replicas: n,
            pods,
        })
    }

    fn apply(&self, action: Action<'_>) -> String {
        match action {
            Action::Scale { target, decision } => {
                let before = decision.current_replicas;
                if decision.scale {
                    self.replicas
                        .insert(target.policy.clone(), decision.desired_replicas);
                    format!("dry-run: {before} → {}", decision.desired_replicas)
                } else {
                    format!("dry-run: stays at {before}")
                }
            }
            Action::NodeClaims { create, delete } => {
                let types: Vec<String> = create
                    .iter()
                    .map(|n| format!("{} {}", n.instance_type, n.capacity_type))
                    .collect();
                format!(
                    "dry-run: would create {} NodeClaims [{}] and delete {} [{}]",
                    create.len(),
                    types.join(", "),
                    delete.len(),
                    delete.join(", ")
                )
            }
            Action::Headroom { headroom } => format!(
                "dry-run: would keep {}/{} at {} pause pods",
                headroom.namespace, headroom.name, headroom.replicas
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ScaleTarget {
        ScaleTarget {
            policy: "p".into(),
            workload: Workload {
                namespace: "shop".into(),
                name: "web".into(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into(),
            },
            mode: ActuationMode::DryRun,
            initial_replicas: 2,
            events: false,
        }
    }

    #[test]
    fn dry_run_follows_its_decisions() {
        let v = VirtualWorkloads::default();
        let t = target();
        let seen = v.observe(&t, &[]).expect("dry-run always knows");
        assert_eq!((seen.spec_replicas, seen.pods.len()), (2, 2));
        assert_eq!(seen.pods[1].name, "web-1");
        let d: Decision = serde_json::from_value(serde_json::json!({
            "now_ms": 0, "current_replicas": 2, "desired_replicas": 5, "scale": true,
            "inputs": {"current_replicas": 2, "status_replicas": 2, "min_replicas": 1, "max_replicas": 10,
                       "scale_up_tolerance": 0.1, "scale_down_tolerance": 0.1, "pods": 2, "behavior": false},
            "metrics": [], "recommendation": null, "recommended_by": null, "stabilization": null,
            "limit": null, "conditions": [], "reason": "", "error": null
        }))
        .expect("a decision");
        assert_eq!(
            v.apply(Action::Scale {
                target: &t,
                decision: &d
            }),
            "dry-run: 2 → 5"
        );
        assert_eq!(v.observe(&t, &[]).map(|o| o.spec_replicas), Some(5));
        // The pods the metrics name are taken as the pods when there are as many as the count.
        let names = ["a", "b", "c", "d", "e"];
        let seen = v.observe(&t, &names).expect("known");
        assert_eq!(seen.pods[4].name, "e");
    }

    #[test]
    fn dry_run_reports_node_claims_and_headroom() {
        let v = VirtualWorkloads::default();
        let node = surge_nodes::PlannedNode {
            name: "general-1".into(),
            pool: "general".into(),
            instance_type: "m7g.large".into(),
            capacity_type: surge_nodes::CapacityType::Spot,
            zone: "us-east-1a".into(),
            price: 0.03,
            pods: vec!["shop/web-0".into()],
        };
        let said = v.apply(Action::NodeClaims {
            create: std::slice::from_ref(&node),
            delete: &["general-0".into()],
        });
        assert_eq!(
            said,
            "dry-run: would create 1 NodeClaims [m7g.large spot] and delete 1 [general-0]"
        );
        let h = surge_nodes::Headroom {
            name: "web-headroom".into(),
            namespace: "shop".into(),
            chunk: surge_nodes::Pod::new("", 500, 1 << 30),
            replicas: 3,
        };
        assert_eq!(
            v.apply(Action::Headroom { headroom: &h }),
            "dry-run: would keep shop/web-headroom at 3 pause pods"
        );
    }
}
