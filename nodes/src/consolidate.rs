//! Consolidation as a pure function: which nodes to delete or replace with a cheaper one, now.
//!
//! Karpenter v1's order and rules (kubernetes-sigs/karpenter `pkg/controllers/disruption`):
//! - A node is a candidate when its pool is known, it is initialized and ready, not already being
//!   deleted, none of its pods says `karpenter.sh/do-not-disrupt`, and no pod was scheduled onto or
//!   removed from it for the pool's `consolidateAfter` (`Never`: never a candidate).
//! - Empty nodes (no pods besides DaemonSets) go first, reason `Empty`.
//! - Under `WhenEmptyOrUnderutilized`, the other candidates follow, fewest pods first (Karpenter's
//!   disruption cost), reason `Underutilized`: the node's pods are re-planned with [`crate::plan`] on
//!   the other nodes (less what earlier decisions removed, plus what they moved or launched). All fit:
//!   delete. Exactly one new node, cheaper than the candidate: replace. Anything else: keep.
//! - A spot node is replaced by spot only with Karpenter's `SpotToSpotConsolidation` gate on and at
//!   least [`MIN_SPOT_TO_SPOT_TYPES`] instance types cheaper than it that could take its pods.
//! - Budgets: per pool and reason, the most restrictive active budget, counted on the pool's initialized
//!   nodes (a percent rounds up), less the nodes already disrupting (not ready or being deleted), less
//!   the decisions made in this pass. A budget of 0 stops voluntary disruption.

use jiff::Timestamp;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::nodepool::{ConsolidationPolicy, DisruptionReason, NodePool};
use crate::pod::Pod;
use crate::provision::{ExistingNode, ProvisionInput, Unavailable, plan};
use crate::requirements::CapacityType;
use crate::resources::Resources;

/// Karpenter's `MinInstanceTypesForSpotToSpotConsolidation`.
pub const MIN_SPOT_TO_SPOT_TYPES: usize = 15;

/// A node of the cluster as consolidation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterNode {
    /// Its shape and place; `requested` is recomputed from `pods`.
    pub node: ExistingNode,
    /// The pods that would move if it went (DaemonSet pods excluded).
    pub pods: Vec<Pod>,
    /// The last time a pod was scheduled onto or removed from the node (or it initialized).
    pub last_pod_event: Timestamp,
    pub initialized: bool,
    pub ready: bool,
    /// Being deleted already (deletion timestamp or marked for disruption).
    pub marked_for_deletion: bool,
}

/// What consolidation decides from.
#[derive(Clone, Copy, Debug)]
pub struct ConsolidationInput<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub nodes: &'a [ClusterNode],
    pub daemonsets: &'a [Pod],
    pub unavailable: &'a [Unavailable],
    /// Karpenter's `SpotToSpotConsolidation` feature gate (off by default upstream).
    pub spot_to_spot: bool,
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    pub node: String,
    pub pool: String,
    pub reason: DisruptionReason,
    pub action: Action,
    /// USD per hour saved.
    pub savings: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Delete,
    /// Launch this instead, then delete the node.
    Replace {
        instance_type: String,
        capacity_type: CapacityType,
        zone: String,
        price: f64,
    },
}

struct Budgets<'a> {
    input: &'a ConsolidationInput<'a>,
    now: Timestamp,
    /// Per pool: initialized nodes, nodes disrupting, decisions made.
    counts: Vec<(u64, u64, u64)>,
}

impl Budgets<'_> {
    fn allows(&self, pool: usize, reason: DisruptionReason) -> bool {
        let (num, disrupting, decided) = self.counts[pool];
        let allowed = self.input.pools[pool]
            .disruption
            .allowed(self.now, num, reason);
        allowed.saturating_sub(disrupting) > decided
    }

    fn take(&mut self, pool: usize) {
        self.counts[pool].2 += 1;
    }
}

fn price_of(catalog: &Catalog, n: &ExistingNode) -> Option<f64> {
    catalog
        .get(&n.instance_type)
        .map(|t| t.price(n.capacity_type))
}

fn requested(pods: &[Pod]) -> Resources {
    pods.iter()
        .fold(Resources::ZERO, |acc, p| acc + p.requests())
}

/// The decisions for this pass, in the order they should be carried out.
pub fn consolidate(input: &ConsolidationInput<'_>, now: Timestamp) -> Vec<Disruption> {
    let pool_index = |n: &ClusterNode| {
        n.node
            .pool
            .as_deref()
            .and_then(|name| input.pools.iter().position(|p| p.name == name))
    };
    let mut budgets = Budgets {
        input,
        now,
        counts: vec![(0, 0, 0); input.pools.len()],
    };
    for n in input.nodes {
        if let (Some(p), true) = (pool_index(n), n.initialized) {
            budgets.counts[p].0 += 1;
            if !n.ready || n.marked_for_deletion {
                budgets.counts[p].1 += 1;
            }
        }
    }
    let candidate = |n: &ClusterNode| -> Option<usize> {
        let p = pool_index(n)?;
        let after = input.pools[p].disruption.consolidate_after?;
        let quiet = now.duration_since(n.last_pod_event) >= after;
        let eligible = n.initialized
            && n.ready
            && !n.marked_for_deletion
            && !n.pods.iter().any(|p| p.do_not_disrupt);
        (quiet && eligible).then_some(p)
    };

    let mut out = Vec::new();
    let mut gone = vec![false; input.nodes.len()];
    // Empty nodes first.
    for (i, n) in input.nodes.iter().enumerate() {
        let Some(p) = candidate(n) else { continue };
        if n.pods.is_empty() && budgets.allows(p, DisruptionReason::Empty) {
            budgets.take(p);
            gone[i] = true;
            out.push(Disruption {
                node: n.node.name.clone(),
                pool: input.pools[p].name.clone(),
                reason: DisruptionReason::Empty,
                action: Action::Delete,
                savings: price_of(input.catalog, &n.node).unwrap_or(0.0),
            });
        }
    }

    // Then underutilized nodes, fewest pods first (then the dearest first).
    let mut order: Vec<usize> = (0..input.nodes.len())
        .filter(|i| !gone[*i] && !input.nodes[*i].pods.is_empty())
        .filter(|i| {
            candidate(&input.nodes[*i]).is_some_and(|p| {
                input.pools[p].disruption.consolidation_policy
                    == ConsolidationPolicy::WhenEmptyOrUnderutilized
            })
        })
        .collect();
    order.sort_by(|a, b| {
        let (na, nb) = (&input.nodes[*a], &input.nodes[*b]);
        let pa = price_of(input.catalog, &na.node).unwrap_or(0.0);
        let pb = price_of(input.catalog, &nb.node).unwrap_or(0.0);
        na.pods.len().cmp(&nb.pods.len()).then(pb.total_cmp(&pa))
    });
    // Pods moved by earlier decisions, per node; nodes launched by earlier replacements.
    let mut extra = vec![Resources::ZERO; input.nodes.len()];
    let mut launched: Vec<ExistingNode> = Vec::new();
    for i in order {
        let n = &input.nodes[i];
        let Some(p) = candidate(n) else { continue };
        // A node that took pods in this pass stays: its new pods would have to move again.
        if extra[i] != Resources::ZERO || !budgets.allows(p, DisruptionReason::Underutilized) {
            continue;
        }
        let Some(current_price) = price_of(input.catalog, &n.node) else {
            continue;
        };
        let (others, index): (Vec<ExistingNode>, Vec<usize>) = input
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, o)| *j != i && !gone[*j] && !o.marked_for_deletion && o.ready)
            .map(|(j, o)| {
                let mut e = o.node.clone();
                e.requested = requested(&o.pods) + extra[j];
                (e, j)
            })
            .unzip();
        let sim = plan(&ProvisionInput {
            catalog: input.catalog,
            pools: input.pools,
            pods: &n.pods,
            existing: &others,
            in_flight: &launched,
            daemonsets: input.daemonsets,
            unavailable: input.unavailable,
        });
        if !sim.unschedulable.is_empty() || sim.nodes.len() > 1 {
            continue;
        }
        let action = match sim.nodes.first() {
            None => Action::Delete,
            Some(r) => {
                if r.price >= current_price {
                    continue;
                }
                if n.node.capacity_type == CapacityType::Spot
                    && r.capacity_type == CapacityType::Spot
                {
                    let cheaper = cheaper_spot_types(input, &n.pods, &r.pool, current_price);
                    if !input.spot_to_spot || cheaper < MIN_SPOT_TO_SPOT_TYPES {
                        continue;
                    }
                }
                Action::Replace {
                    instance_type: r.instance_type.clone(),
                    capacity_type: r.capacity_type,
                    zone: r.zone.clone(),
                    price: r.price,
                }
            }
        };
        // Commit: the moved pods take room on their new nodes.
        for b in &sim.bound {
            let moved: Vec<&Pod> = n.pods.iter().filter(|p| b.pods.contains(&p.name)).collect();
            let req = moved
                .iter()
                .fold(Resources::ZERO, |acc, p| acc + p.requests());
            if let Some(k) = others.iter().position(|o| o.name == b.node) {
                extra[index[k]] += req;
            } else if let Some(l) = launched.iter_mut().find(|l| l.name == b.node) {
                l.requested += req;
            }
        }
        let savings = match &action {
            Action::Delete => current_price,
            Action::Replace { price, .. } => current_price - price,
        };
        if let (Action::Replace { .. }, Some(r)) = (&action, sim.nodes.first()) {
            launched.push(ExistingNode {
                name: format!("replacement-of-{}", n.node.name),
                pool: Some(r.pool.clone()),
                instance_type: r.instance_type.clone(),
                capacity_type: r.capacity_type,
                zone: r.zone.clone(),
                labels: Default::default(),
                taints: Vec::new(),
                requested: requested(&n.pods),
                allocatable: None,
            });
        }
        budgets.take(p);
        gone[i] = true;
        out.push(Disruption {
            node: n.node.name.clone(),
            pool: input.pools[p].name.clone(),
            reason: DisruptionReason::Underutilized,
            action,
            savings,
        });
    }
    out
}

/// How many instance types of `pool` could take all of `pods` on spot for less than `price`.
fn cheaper_spot_types(
    input: &ConsolidationInput<'_>,
    pods: &[Pod],
    pool: &str,
    price: f64,
) -> usize {
    let Some(pool) = input.pools.iter().find(|p| p.name == pool) else {
        return 0;
    };
    let mut names: Vec<&str> = Vec::new();
    for t in &input.catalog.types {
        if t.spot_price >= price || names.contains(&t.name.as_str()) {
            continue;
        }
        let ok = t.zones.iter().any(|zone| {
            let node = ExistingNode {
                name: String::new(),
                pool: Some(pool.name.clone()),
                instance_type: t.name.clone(),
                capacity_type: CapacityType::Spot,
                zone: zone.clone(),
                labels: Default::default(),
                taints: pool.taints.clone(),
                requested: Resources::ZERO,
                allocatable: None,
            };
            // One fresh node of this type takes them all, within the pool's requirements.
            let sim = plan(&ProvisionInput {
                catalog: input.catalog,
                pools: std::slice::from_ref(pool),
                pods,
                existing: &[],
                in_flight: std::slice::from_ref(&node),
                daemonsets: input.daemonsets,
                unavailable: input.unavailable,
            });
            sim.nodes.is_empty()
                && sim.unschedulable.is_empty()
                && crate::requirements::first_unmet(
                    &pool.requirements,
                    &crate::catalog::OfferingLabels {
                        instance_type: t,
                        zone,
                        capacity_type: CapacityType::Spot,
                        pool: &pool.name,
                        extra: &pool.labels,
                    },
                )
                .is_none()
                && !input.unavailable.iter().any(|u| {
                    u.instance_type == t.name
                        && u.capacity_type.is_none_or(|c| c == CapacityType::Spot)
                        && u.zone.as_deref().is_none_or(|z| z == zone)
                })
        });
        if ok {
            names.push(&t.name);
        }
    }
    names.len()
}
