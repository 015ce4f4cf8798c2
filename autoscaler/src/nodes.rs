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
//! Design choices: planned nodes are renamed `<pool>-<ms since epoch, base 36>-<i>` so claims of
//! different decisions never collide; consolidation's `Replace` decisions are left to a provisioner
//! (only `Delete` is carried out), since a replacement must launch and register before the old node
//! goes, which is a multi-step workflow rather than one decision.

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
        let delete: Vec<String> = if plan.nodes.is_empty() && !adds && view.pending.is_empty() {
            self.deletions(&view, now)
        } else {
            Vec::new()
        };
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

    /// The claims consolidation deletes now (its `Delete` decisions).
    fn deletions(&self, view: &surge_actuate::NodeView, now: i64) -> Vec<String> {
        let Ok(now) = jiff::Timestamp::from_millisecond(now) else {
            return Vec::new();
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
        surge_nodes::consolidate(&input, now)
            .into_iter()
            .filter(|d| d.action == surge_nodes::Action::Delete)
            .map(|d| d.node)
            .collect()
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

    #[test]
    fn base36_names_are_dns_labels() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(1_767_225_600_000), "mjuohs00");
    }
}
