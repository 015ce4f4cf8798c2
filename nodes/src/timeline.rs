//! A node scenario replayed: workloads' replica counts over time → node launches, deletions, cost per
//! hour and the pods' wait for capacity, planned ahead (at the pod decision) and as Karpenter would
//! (once the pods are Pending, after its batch window). `surge simulate` prints it.
//!
//! ```yaml
//! kind: NodeScenario
//! bootSeconds: 45        # claim → Ready node
//! pendingSeconds: 2      # pod decision → pods Pending (the ReplicaSet controller and the scheduler)
//! batchSeconds: 10       # Karpenter's batch window (idle 1 s … max 10 s: the busy case)
//! nodePools: [ ...karpenter.sh/v1 NodePool objects... ]
//! workloads:
//!   - {name: shop/web, cpu: 500m, memory: 1Gi, nodeSelector: {kubernetes.io/arch: arm64}}
//! steps:
//!   - {at: 0, replicas: {shop/web: 4}}
//!   - {at: 120, replicas: {shop/web: 20}}
//! ```
//!
//! Each step: scale-downs remove the newest pods; scale-ups are planned with [`crate::plan_ahead`]
//! against the nodes and claims already there (a pod on a Ready node waits 0 s, on a claim still booting
//! the rest of its boot, on a new node the whole boot; waiting for Pending adds `pendingSeconds +
//! batchSeconds` to every pod that needs a new node); then [`crate::consolidate`] runs at the step's
//! time and its deletions and replacements are carried out (the pods of a deleted node re-placed on the
//! others).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ahead::{ScaleUp, plan_ahead};
use crate::catalog::Catalog;
use crate::consolidate::{Action, ClusterNode, ConsolidationInput, consolidate};
use crate::nodepool::NodePool;
use crate::pod::{Pod, Toleration};
use crate::provision::{ExistingNode, ProvisionInput, plan};
use crate::resources::{Resources, parse_cpu, parse_memory};
use crate::source::{Document, LoadErrors};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScenario {
    kind: String,
    #[serde(default = "default_boot")]
    boot_seconds: u64,
    #[serde(default = "default_pending")]
    pending_seconds: u64,
    #[serde(default = "default_batch")]
    batch_seconds: u64,
    node_pools: Vec<serde_yaml_ng::Value>,
    workloads: Vec<RawWorkload>,
    steps: Vec<RawStep>,
}

fn default_boot() -> u64 {
    45
}
fn default_pending() -> u64 {
    2
}
fn default_batch() -> u64 {
    10
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWorkload {
    name: String,
    cpu: String,
    memory: String,
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: u64,
    replicas: BTreeMap<String, u32>,
}

/// A validated node scenario.
#[derive(Clone, Debug)]
pub struct NodeScenario {
    pub boot_seconds: u64,
    pub pending_seconds: u64,
    pub batch_seconds: u64,
    pub pools: Vec<NodePool>,
    /// `(name, pod template)`.
    pub workloads: Vec<(String, Pod)>,
    /// `(seconds, replicas by workload)`, in time order.
    pub steps: Vec<(u64, BTreeMap<String, u32>)>,
}

impl NodeScenario {
    /// Whether `text` is a node scenario (`kind: NodeScenario`).
    pub fn is_node_scenario(text: &str) -> bool {
        text.lines().any(|l| l.trim() == "kind: NodeScenario")
    }

    /// Reads and validates a scenario; every problem located by field path, line and column.
    pub fn from_yaml(text: &str, source: &str) -> Result<NodeScenario, LoadErrors> {
        let doc = Document::index(text, source)?;
        let raw: RawScenario = doc.parse(text)?;
        let mut errors = Vec::new();
        if raw.kind != "NodeScenario" {
            errors.push(doc.error("kind", format!("{:?} is not NodeScenario", raw.kind)));
        }
        let mut pools = Vec::new();
        for (i, v) in raw.node_pools.iter().enumerate() {
            let path = format!("nodePools[{i}]");
            let text = serde_yaml_ng::to_string(v).unwrap_or_default();
            match NodePool::from_yaml(&text, &format!("{source} {path}")) {
                Ok(p) => pools.push(p),
                Err(mut e) => errors.append(&mut e.0),
            }
        }
        let mut workloads = Vec::new();
        for (i, w) in raw.workloads.iter().enumerate() {
            let cpu = parse_cpu(&w.cpu)
                .map_err(|e| errors.push(doc.error(&format!("workloads[{i}].cpu"), e)));
            let mem = parse_memory(&w.memory)
                .map_err(|e| errors.push(doc.error(&format!("workloads[{i}].memory"), e)));
            if let (Ok(cpu), Ok(mem)) = (cpu, mem) {
                let mut pod = Pod::new(&w.name, cpu, mem);
                pod.node_selector = w.node_selector.clone();
                pod.tolerations = w.tolerations.clone();
                workloads.push((w.name.clone(), pod));
            }
        }
        let mut last = 0;
        for (i, s) in raw.steps.iter().enumerate() {
            if s.at < last {
                errors.push(doc.error(&format!("steps[{i}].at"), "steps must be in time order"));
            }
            last = s.at;
            for name in s.replicas.keys() {
                if !raw.workloads.iter().any(|w| &w.name == name) {
                    errors.push(doc.error(
                        &format!("steps[{i}].replicas.{name}"),
                        format!("no workload named {name:?}"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Ok(NodeScenario {
            boot_seconds: raw.boot_seconds,
            pending_seconds: raw.pending_seconds,
            batch_seconds: raw.batch_seconds,
            pools,
            workloads,
            steps: raw.steps.into_iter().map(|s| (s.at, s.replicas)).collect(),
        })
    }
}

/// A node launched in a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Launch {
    pub name: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub price: f64,
    pub pods: usize,
}

/// A node removed (or replaced) in a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deletion {
    pub name: String,
    pub instance_type: String,
    /// `delete`, or `replace by TYPE`.
    pub action: String,
    pub savings: f64,
}

/// What one step decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStep {
    pub at: u64,
    pub replicas: BTreeMap<String, u32>,
    pub launches: Vec<Launch>,
    pub deletions: Vec<Deletion>,
    pub nodes: usize,
    pub cost_per_hour: f64,
    /// Pods added this step.
    pub new_pods: usize,
    /// Mean and longest wait for capacity of the pods added, in seconds, planned at the decision.
    pub wait_ahead_mean: f64,
    pub wait_ahead_max: u64,
    /// The same waiting for the pods to go Pending and Karpenter's batch window first.
    pub wait_pending_mean: f64,
    pub wait_pending_max: u64,
    /// Pods no pool can take.
    pub unschedulable: usize,
}

struct SimNode {
    node: ClusterNode,
    price: f64,
    ready_at: u64,
}

fn existing(nodes: &[SimNode]) -> Vec<ExistingNode> {
    nodes
        .iter()
        .map(|n| {
            let mut e = n.node.node.clone();
            e.requested = n
                .node
                .pods
                .iter()
                .fold(Resources::ZERO, |a, p| a + p.requests());
            e
        })
        .collect()
}

/// Replays the scenario against `catalog`.
pub fn replay(scenario: &NodeScenario, catalog: &Catalog) -> Vec<NodeStep> {
    let mut nodes: Vec<SimNode> = Vec::new();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut launched = 0usize;
    let mut out = Vec::new();
    for (at, replicas) in &scenario.steps {
        let at = *at;
        let now = Timestamp::from_second(i64::try_from(at).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        // Scale-downs: the newest pods go first.
        for (w, want) in replicas {
            let have = counts.get(w).copied().unwrap_or(0);
            for _ in *want..have {
                let prefix = format!("{w}-");
                let newest = nodes
                    .iter_mut()
                    .flat_map(|n| n.node.pods.iter().map(|p| p.name.clone()))
                    .filter(|p| p.starts_with(&prefix))
                    .max_by_key(|p| p[prefix.len()..].parse::<u32>().unwrap_or(0));
                if let Some(name) = newest {
                    for n in nodes.iter_mut() {
                        if n.node.pods.iter().any(|p| p.name == name) {
                            n.node.pods.retain(|p| p.name != name);
                            n.node.last_pod_event = now;
                        }
                    }
                }
            }
        }
        // Scale-ups, planned at once.
        let ups: Vec<(String, Pod, u32, u32)> = replicas
            .iter()
            .filter_map(|(w, want)| {
                let have = counts.get(w).copied().unwrap_or(0);
                let template = scenario.workloads.iter().find(|(n, _)| n == w)?.1.clone();
                (*want > have).then(|| (w.clone(), template, have, *want))
            })
            .collect();
        let scale_ups: Vec<ScaleUp<'_>> = ups
            .iter()
            .map(|(w, t, have, want)| ScaleUp {
                workload: w,
                template: t,
                existing_pods: *have,
                desired: *want,
            })
            .collect();
        let current = existing(&nodes);
        let decided = plan_ahead(
            &ProvisionInput {
                catalog,
                pools: &scenario.pools,
                pods: &[],
                existing: &current,
                in_flight: &[],
                daemonsets: &[],
                unavailable: &[],
            },
            &scale_ups,
        );
        // Pods to come are named `<workload>-ahead-<i>`; in the cluster they are `<workload>-<i>` (a
        // scale-down removed the highest numbers, so `i` from the current count up is free).
        let template_of = |name: &str| -> Option<Pod> {
            let (w, i) = name.rsplit_once("-ahead-")?;
            let mut p = ups.iter().find(|u| u.0 == w)?.1.clone();
            p.name = format!("{w}-{i}");
            Some(p)
        };
        let mut waits_ahead = Vec::new();
        let mut waits_pending = Vec::new();
        let late = scenario.pending_seconds + scenario.batch_seconds;
        for b in &decided.bound {
            let Some(n) = nodes.iter_mut().find(|n| n.node.node.name == b.node) else {
                continue;
            };
            let wait = n.ready_at.saturating_sub(at);
            for name in &b.pods {
                if let Some(p) = template_of(name) {
                    n.node.pods.push(p);
                    waits_ahead.push(wait);
                    // Bound to free room: Pending pods get it as soon as they are scheduled.
                    waits_pending.push(if wait == 0 { 0 } else { wait.max(late) });
                }
            }
            n.node.last_pod_event = now;
        }
        let mut launches = Vec::new();
        for planned in &decided.nodes {
            launched += 1;
            let name = format!("{}-{launched}", planned.pool);
            let pods: Vec<Pod> = planned.pods.iter().filter_map(|p| template_of(p)).collect();
            for _ in &pods {
                waits_ahead.push(scenario.boot_seconds);
                waits_pending.push(late + scenario.boot_seconds);
            }
            launches.push(Launch {
                name: name.clone(),
                instance_type: planned.instance_type.clone(),
                capacity_type: planned.capacity_type.to_string(),
                price: planned.price,
                pods: pods.len(),
            });
            nodes.push(SimNode {
                node: ClusterNode {
                    node: ExistingNode {
                        name,
                        pool: Some(planned.pool.clone()),
                        instance_type: planned.instance_type.clone(),
                        capacity_type: planned.capacity_type,
                        zone: planned.zone.clone(),
                        labels: BTreeMap::new(),
                        taints: Vec::new(),
                        requested: Resources::ZERO,
                        allocatable: None,
                    },
                    pods,
                    last_pod_event: now,
                    initialized: true,
                    ready: true,
                    marked_for_deletion: false,
                },
                price: planned.price,
                ready_at: at + scenario.boot_seconds,
            });
        }
        for (w, want) in replicas {
            counts.insert(w.clone(), *want);
        }
        let deletions = consolidate_step(&mut nodes, scenario, catalog, now, &mut launched);
        let n = waits_ahead.len();
        let mean = |v: &[u64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64
            }
        };
        out.push(NodeStep {
            at,
            replicas: counts.clone(),
            launches,
            deletions,
            nodes: nodes.len(),
            cost_per_hour: nodes.iter().map(|n| n.price).sum(),
            new_pods: n,
            wait_ahead_mean: mean(&waits_ahead),
            wait_ahead_max: waits_ahead.iter().copied().max().unwrap_or(0),
            wait_pending_mean: mean(&waits_pending),
            wait_pending_max: waits_pending.iter().copied().max().unwrap_or(0),
            unschedulable: decided.unschedulable.len(),
        });
    }
    out
}

/// Runs consolidation at `now` and carries its decisions out.
fn consolidate_step(
    nodes: &mut Vec<SimNode>,
    scenario: &NodeScenario,
    catalog: &Catalog,
    now: Timestamp,
    launched: &mut usize,
) -> Vec<Deletion> {
    let cluster: Vec<ClusterNode> = nodes.iter().map(|n| n.node.clone()).collect();
    let decisions = consolidate(
        &ConsolidationInput {
            catalog,
            pools: &scenario.pools,
            nodes: &cluster,
            daemonsets: &[],
            unavailable: &[],
            spot_to_spot: false,
        },
        now,
    );
    let mut deletions = Vec::new();
    for d in decisions {
        let Some(i) = nodes.iter().position(|n| n.node.node.name == d.node) else {
            continue;
        };
        let gone = nodes.remove(i);
        let action = match &d.action {
            Action::Delete => {
                // Its pods go to the free room of the others (consolidation checked they fit).
                let current = existing(nodes);
                let placed = plan(&ProvisionInput {
                    catalog,
                    pools: &scenario.pools,
                    pods: &gone.node.pods,
                    existing: &current,
                    in_flight: &[],
                    daemonsets: &[],
                    unavailable: &[],
                });
                if !placed.nodes.is_empty() || !placed.unschedulable.is_empty() {
                    // Not movable after all (an earlier decision took the room): keep the node.
                    nodes.insert(i, gone);
                    continue;
                }
                for b in placed.bound {
                    if let Some(n) = nodes.iter_mut().find(|n| n.node.node.name == b.node) {
                        for p in &b.pods {
                            if let Some(pod) = gone.node.pods.iter().find(|q| &q.name == p) {
                                n.node.pods.push(pod.clone());
                            }
                        }
                        n.node.last_pod_event = now;
                    }
                }
                "delete".to_owned()
            }
            Action::Replace {
                instance_type,
                capacity_type,
                zone,
                price,
            } => {
                *launched += 1;
                let mut node = gone.node.clone();
                node.node.name = format!("{}-{launched}", d.pool);
                node.node.instance_type = instance_type.clone();
                node.node.capacity_type = *capacity_type;
                node.node.zone = zone.clone();
                node.last_pod_event = now;
                nodes.push(SimNode {
                    node,
                    price: *price,
                    ready_at: gone.ready_at,
                });
                format!("replace by {instance_type}")
            }
        };
        deletions.push(Deletion {
            name: gone.node.node.name.clone(),
            instance_type: gone.node.node.instance_type.clone(),
            action,
            savings: d.savings,
        });
    }
    deletions
}
