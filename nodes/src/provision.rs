//! Provisioning as a pure function: pending pods, existing nodes and in-flight claims in, a placement out.
//!
//! Order, as Karpenter's scheduler has it: pods (sorted by CPU, then memory, descending) go first-fit
//! onto existing nodes, then onto in-flight claims, then onto new nodes from the NodePools in
//! descending weight (then name). Within a pool the pods a pool takes are packed by
//! [`crate::packing::best`] over the pool's offerings, where an offering is an instance type in a zone
//! with a capacity type that the pool's requirements allow and that is not marked unavailable.
//! Where a pod may run on spot, the spot offering of a type and zone hides its on-demand twin (spot
//! before on-demand); once spot is unavailable there, on-demand is the fallback. Pool limits (cpu,
//! memory, nodes, counted on capacity as Karpenter counts them, existing and in-flight nodes included)
//! are applied node by node: a node that would cross them is re-sized to a kind that fits or dropped,
//! and its pods go on to the next pool. A pod no pool can take is reported with the requirement that
//! failed in each pool.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::catalog::{Catalog, InstanceType};
use crate::nodepool::NodePool;
use crate::packing::{self, Bin, Demand, Kind, Problem};
use crate::pod::{Pod, Taint, Toleration};
use crate::requirements::{self as req, CapacityType, Labels, Requirement};
use crate::resources::Resources;

/// A node that exists (or a claim in flight): where pods may go before anything is launched.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExistingNode {
    pub name: String,
    /// The NodePool that launched it (None: not Karpenter's; it counts against no pool's limits).
    pub pool: Option<String>,
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub zone: String,
    /// Labels beyond the well-known ones the catalog gives (the pool's template labels are added).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// What the pods already bound to it request (DaemonSets excluded: see `allocatable`).
    pub requested: Resources,
    /// Allocatable less DaemonSets as the node reports it; None: the catalog's figure less the
    /// DaemonSets of the input.
    pub allocatable: Option<Resources>,
}

/// An offering marked unavailable (insufficient capacity, or a claim that never became a node): the
/// instance type, in one capacity type and zone or (None) in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    pub instance_type: String,
    pub capacity_type: Option<CapacityType>,
    pub zone: Option<String>,
}

impl Unavailable {
    fn covers(&self, t: &str, ct: CapacityType, zone: &str) -> bool {
        self.instance_type == t
            && self.capacity_type.is_none_or(|c| c == ct)
            && self.zone.as_deref().is_none_or(|z| z == zone)
    }
}

/// What provisioning decides from.
#[derive(Clone, Copy, Debug)]
pub struct ProvisionInput<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub pods: &'a [Pod],
    pub existing: &'a [ExistingNode],
    pub in_flight: &'a [ExistingNode],
    /// The DaemonSet pods every node runs (each counted on the nodes whose labels and taints it fits).
    pub daemonsets: &'a [Pod],
    pub unavailable: &'a [Unavailable],
}

/// The decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Pods placed on existing nodes and in-flight claims, by node name.
    pub bound: Vec<Binding>,
    /// New nodes to launch.
    pub nodes: Vec<PlannedNode>,
    pub unschedulable: Vec<Unschedulable>,
}

impl Plan {
    /// USD per hour of the new nodes.
    pub fn cost_per_hour(&self) -> f64 {
        self.nodes.iter().map(|n| n.price).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    pub node: String,
    pub pods: Vec<String>,
}

/// Serialized with snake_case fields, as `surge nodes plan` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedNode {
    /// `<pool>-<n>`, numbered in plan order.
    pub name: String,
    pub pool: String,
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub zone: String,
    /// USD per hour.
    pub price: f64,
    pub pods: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unschedulable {
    pub pod: String,
    /// Per pool, the requirement that failed (or the limit reached).
    pub reason: String,
}

/// Which packing decides the new nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The cheaper of the value-per-dollar greedy and Karpenter's FFD, both improved.
    Best,
    /// Karpenter's first-fit-decreasing as it is, for comparison.
    KarpenterFfd,
}

/// Plans with [`Strategy::Best`].
pub fn plan(input: &ProvisionInput<'_>) -> Plan {
    plan_with(input, Strategy::Best)
}

/// A set of pods with the same node selection and tolerations.
struct Class {
    terms: Vec<Vec<Requirement>>,
    tolerations: Vec<Toleration>,
}

impl Class {
    fn selects(&self, labels: &dyn Labels) -> bool {
        self.terms
            .iter()
            .any(|t| t.iter().all(|r| r.matches(labels.label(&r.key))))
    }

    fn untolerated<'t>(&self, taints: &'t [Taint]) -> Option<&'t Taint> {
        let probe = Pod {
            tolerations: self.tolerations.clone(),
            ..Pod::default()
        };
        probe.untolerated(taints)
    }
}

/// Pods of one class with one request, in placement order.
struct Group {
    class: usize,
    req: Resources,
    pods: Vec<usize>,
}

/// An offering a pool can launch.
struct Offering<'c> {
    instance_type: &'c InstanceType,
    zone: String,
    capacity_type: CapacityType,
    labels: BTreeMap<String, String>,
}

impl Labels for Offering<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            req::ZONE => Some(&self.zone),
            req::CAPACITY_TYPE => Some(self.capacity_type.as_str()),
            _ => self
                .instance_type
                .label(key)
                .or_else(|| self.labels.get(key).map(String::as_str)),
        }
    }
}

/// A node's labels: the catalog's well-known ones, the pool's, and its own.
struct NodeLabels<'a> {
    instance_type: Option<&'a InstanceType>,
    node: &'a ExistingNode,
    pool_labels: Option<&'a BTreeMap<String, String>>,
}

impl Labels for NodeLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.node.labels.get(key) {
            return Some(v);
        }
        match key {
            req::ZONE => Some(&self.node.zone),
            req::CAPACITY_TYPE => Some(self.node.capacity_type.as_str()),
            req::INSTANCE_TYPE => Some(&self.node.instance_type),
            req::NODEPOOL => self.node.pool.as_deref(),
            _ => match self.pool_labels.and_then(|l| l.get(key)) {
                Some(v) => Some(v),
                None => self.instance_type?.label(key),
            },
        }
    }
}

/// The DaemonSet overhead on a node with these labels and taints.
fn daemonset_overhead(daemonsets: &[Pod], labels: &dyn Labels, taints: &[Taint]) -> Resources {
    daemonsets
        .iter()
        .filter(|d| d.untolerated(taints).is_none() && d.selects(labels))
        .fold(Resources::ZERO, |acc, d| acc + d.requests())
}

/// Plans with the given strategy.
pub fn plan_with(input: &ProvisionInput<'_>, strategy: Strategy) -> Plan {
    let (classes, mut groups) = group_pods(input.pods);
    let mut plan = Plan::default();
    // Remaining count per group; pods taken from the front of each group's list.
    let mut taken = vec![0usize; groups.len()];

    for nodes in [input.existing, input.in_flight] {
        place_on_nodes(input, &classes, &groups, &mut taken, nodes, &mut plan);
    }

    let mut pools: Vec<&NodePool> = input.pools.iter().collect();
    pools.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.name.cmp(&b.name)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
    let mut counter: HashMap<String, usize> = HashMap::new();
    for pool in pools {
        let left: Vec<usize> = (0..groups.len())
            .filter(|g| taken[*g] < groups[*g].pods.len())
            .collect();
        if left.is_empty() {
            break;
        }
        provision_pool(
            input,
            pool,
            &classes,
            &groups,
            &left,
            &mut taken,
            &mut reasons,
            strategy,
            &mut counter,
            &mut plan,
        );
    }

    for (g, group) in groups.iter_mut().enumerate() {
        for &p in &group.pods[taken[g]..] {
            let reason = if input.pools.is_empty() {
                "no NodePool to launch a node from, and no existing node holds it".to_owned()
            } else if reasons[g].is_empty() {
                "no NodePool could take it".to_owned()
            } else {
                reasons[g].join("; ")
            };
            plan.unschedulable.push(Unschedulable {
                pod: input.pods[p].name.clone(),
                reason,
            });
        }
    }
    plan
}

/// Classes and groups, groups sorted by CPU then memory descending (Karpenter's order).
fn group_pods(pods: &[Pod]) -> (Vec<Class>, Vec<Group>) {
    type ClassKey<'p> = (
        &'p BTreeMap<String, String>,
        &'p Vec<Vec<Requirement>>,
        &'p Vec<Toleration>,
    );
    let mut class_ids: HashMap<ClassKey<'_>, usize> = HashMap::new();
    let mut classes = Vec::new();
    let mut group_ids: HashMap<(usize, Resources), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let key = (
            &pod.node_selector,
            &pod.required_node_affinity,
            &pod.tolerations,
        );
        let class = *class_ids.entry(key).or_insert_with(|| {
            classes.push(Class {
                terms: pod.terms(),
                tolerations: pod.tolerations.clone(),
            });
            classes.len() - 1
        });
        let req = pod.requests();
        let g = *group_ids.entry((class, req)).or_insert_with(|| {
            groups.push(Group {
                class,
                req,
                pods: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].pods.push(i);
    }
    groups.sort_by(|a, b| {
        (b.req.cpu_millis, b.req.memory_bytes)
            .cmp(&(a.req.cpu_millis, a.req.memory_bytes))
            .then(a.class.cmp(&b.class))
    });
    (classes, groups)
}

/// First-fit onto existing nodes (or in-flight claims), in the groups' order.
fn place_on_nodes(
    input: &ProvisionInput<'_>,
    classes: &[Class],
    groups: &[Group],
    taken: &mut [usize],
    nodes: &[ExistingNode],
    plan: &mut Plan,
) {
    let pool_labels = |n: &ExistingNode| {
        n.pool
            .as_deref()
            .and_then(|name| input.pools.iter().find(|p| p.name == name))
            .map(|p| &p.labels)
    };
    let mut free: Vec<Resources> = nodes
        .iter()
        .map(|n| {
            let labels = NodeLabels {
                instance_type: input.catalog.get(&n.instance_type),
                node: n,
                pool_labels: pool_labels(n),
            };
            let alloc = n.allocatable.unwrap_or_else(|| {
                input
                    .catalog
                    .get(&n.instance_type)
                    .map(|t| {
                        t.allocatable.saturating_sub(&daemonset_overhead(
                            input.daemonsets,
                            &labels,
                            &n.taints,
                        ))
                    })
                    .unwrap_or(Resources::ZERO)
            });
            alloc.saturating_sub(&n.requested)
        })
        .collect();
    let mut bound: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    for (g, group) in groups.iter().enumerate() {
        let class = &classes[group.class];
        for (i, n) in nodes.iter().enumerate() {
            if taken[g] == group.pods.len() {
                break;
            }
            let labels = NodeLabels {
                instance_type: input.catalog.get(&n.instance_type),
                node: n,
                pool_labels: pool_labels(n),
            };
            if class.untolerated(&n.taints).is_some() || !class.selects(&labels) {
                continue;
            }
            let k = group
                .req
                .copies_in(&free[i])
                .min((group.pods.len() - taken[g]) as u64) as usize;
            free[i] = free[i].saturating_sub(&group.req.times(k as u64));
            for &p in &group.pods[taken[g]..taken[g] + k] {
                bound[i].push(input.pods[p].name.clone());
            }
            taken[g] += k;
        }
    }
    for (n, pods) in nodes.iter().zip(bound) {
        if !pods.is_empty() {
            plan.bound.push(Binding {
                node: n.name.clone(),
                pods,
            });
        }
    }
}

/// The offerings of a pool: requirement-compatible, available instance types in zones and capacity
/// types.
fn offerings<'c>(input: &ProvisionInput<'c>, pool: &NodePool) -> Vec<Offering<'c>> {
    let mut out = Vec::new();
    for t in &input.catalog.types {
        for zone in &t.zones {
            for ct in CapacityType::ALL {
                let mut labels = pool.labels.clone();
                labels.insert(req::NODEPOOL.to_owned(), pool.name.clone());
                let o = Offering {
                    instance_type: t,
                    zone: zone.clone(),
                    capacity_type: ct,
                    labels,
                };
                if req::first_unmet(&pool.requirements, &o).is_none()
                    && !input
                        .unavailable
                        .iter()
                        .any(|u| u.covers(&t.name, ct, zone))
                {
                    out.push(o);
                }
            }
        }
    }
    out
}

/// Why a class cannot use a pool at all (taint, or no offering matches), if so.
fn class_refusal(pool: &NodePool, class: &Class, offers: &[Offering<'_>]) -> Option<String> {
    if let Some(t) = class.untolerated(&pool.taints) {
        return Some(format!("pool {}: taint {t} is not tolerated", pool.name));
    }
    if offers.is_empty() {
        return Some(format!(
            "pool {}: no offering left (its requirements match no catalog type, or all are unavailable)",
            pool.name
        ));
    }
    if offers.iter().any(|o| class.selects(o)) {
        return None;
    }
    // Name the first requirement that no offering meets on its own.
    for term in &class.terms {
        if let Some(r) = term
            .iter()
            .find(|r| !offers.iter().any(|o| r.matches(o.label(&r.key))))
        {
            return Some(format!(
                "pool {}: requirement {r} matches none of its offerings",
                pool.name
            ));
        }
    }
    let all: Vec<String> = class
        .terms
        .iter()
        .flatten()
        .map(|r| r.to_string())
        .collect();
    Some(format!(
        "pool {}: requirements {} together match none of its offerings",
        pool.name,
        all.join(", ")
    ))
}

/// Capacity the pool's nodes already hold (existing and in flight), as limits count it.
fn pool_usage(input: &ProvisionInput<'_>, pool: &NodePool) -> (u64, u64, u64) {
    let mut usage = (0, 0, 0);
    for n in input.existing.iter().chain(input.in_flight) {
        if n.pool.as_deref() == Some(pool.name.as_str()) {
            let cap = input
                .catalog
                .get(&n.instance_type)
                .map(|t| t.capacity())
                .unwrap_or_default();
            usage.0 += cap.cpu_millis;
            usage.1 += cap.memory_bytes;
            usage.2 += 1;
        }
    }
    usage
}

#[allow(clippy::too_many_arguments)]
fn provision_pool(
    input: &ProvisionInput<'_>,
    pool: &NodePool,
    classes: &[Class],
    groups: &[Group],
    left: &[usize],
    taken: &mut [usize],
    reasons: &mut [Vec<String>],
    strategy: Strategy,
    counter: &mut HashMap<String, usize>,
    plan: &mut Plan,
) {
    let offers = offerings(input, pool);
    // Kinds: offerings with their allocatable less DaemonSets.
    let kinds: Vec<Kind> = offers
        .iter()
        .map(|o| Kind {
            price: o.instance_type.price(o.capacity_type),
            alloc: o
                .instance_type
                .allocatable
                .saturating_sub(&daemonset_overhead(input.daemonsets, o, &pool.taints)),
        })
        .collect();
    let nk = kinds.len();
    let mut compat = vec![false; classes.len() * nk];
    let mut refused = vec![None; classes.len()];
    for (c, class) in classes.iter().enumerate() {
        refused[c] = class_refusal(pool, class, &offers);
        if refused[c].is_some() {
            continue;
        }
        for (k, o) in offers.iter().enumerate() {
            compat[c * nk + k] = class.selects(o);
        }
        // Spot before on-demand: where this class may run on spot for a type and zone, the
        // on-demand twin is hidden from it.
        let spot: std::collections::HashSet<(&str, &str)> = offers
            .iter()
            .enumerate()
            .filter(|(k, o)| o.capacity_type == CapacityType::Spot && compat[c * nk + k])
            .map(|(_, o)| (o.instance_type.name.as_str(), o.zone.as_str()))
            .collect();
        for (k, o) in offers.iter().enumerate() {
            if o.capacity_type == CapacityType::OnDemand
                && spot.contains(&(o.instance_type.name.as_str(), o.zone.as_str()))
            {
                compat[c * nk + k] = false;
            }
        }
    }

    // Offerings that differ only in zone (same type, capacity type, price, allocatable, and the same
    // classes may use them) are one kind: the first zone stands for them. Offerings no class may use
    // go. This keeps the packing's kinds to about one per type and capacity type.
    let mut keep: Vec<usize> = Vec::new();
    let mut seen: HashMap<(String, CapacityType, u64, Resources, Vec<bool>), ()> = HashMap::new();
    for k in 0..nk {
        let column: Vec<bool> = (0..classes.len()).map(|c| compat[c * nk + k]).collect();
        if !column.iter().any(|x| *x) {
            continue;
        }
        let key = (
            offers[k].instance_type.name.clone(),
            offers[k].capacity_type,
            kinds[k].price.to_bits(),
            kinds[k].alloc,
            column,
        );
        if seen.insert(key, ()).is_none() {
            keep.push(k);
        }
    }
    let offers: Vec<Offering<'_>> = {
        let mut all: Vec<Option<Offering<'_>>> = offers.into_iter().map(Some).collect();
        keep.iter().filter_map(|k| all[*k].take()).collect()
    };
    let kinds: Vec<Kind> = keep.iter().map(|k| kinds[*k].clone()).collect();
    let compat: Vec<bool> = (0..classes.len())
        .flat_map(|c| keep.iter().map(move |k| (c, *k)))
        .map(|(c, k)| compat[c * nk + k])
        .collect();
    let nk = kinds.len();

    // The groups this pool takes: those with a compatible kind that holds one pod.
    let mut demands = Vec::new();
    let mut demand_group = Vec::new();
    for &g in left {
        let group = &groups[g];
        if let Some(r) = &refused[group.class] {
            reasons[g].push(r.clone());
            continue;
        }
        let fits =
            (0..nk).any(|k| compat[group.class * nk + k] && group.req.fits_in(&kinds[k].alloc));
        if !fits {
            let largest = (0..nk)
                .filter(|k| compat[group.class * nk + k])
                .max_by_key(|k| (kinds[*k].alloc.cpu_millis, kinds[*k].alloc.memory_bytes))
                .map(|k| {
                    format!(
                        "{} allocatable {}",
                        offers[k].instance_type.name, kinds[k].alloc
                    )
                })
                .unwrap_or_default();
            reasons[g].push(format!(
                "pool {}: requests ({}) fit no compatible instance type (largest: {largest})",
                pool.name, group.req
            ));
            continue;
        }
        demands.push(Demand {
            class: group.class,
            req: group.req,
            count: (group.pods.len() - taken[g]) as u64,
        });
        demand_group.push(g);
    }
    if demands.is_empty() {
        return;
    }
    let problem = Problem::new(&kinds, &demands, &compat);
    let mut bins = match strategy {
        Strategy::Best => packing::best(&problem),
        Strategy::KarpenterFfd => packing::karpenter_ffd(&problem),
    };
    // Launch order: the fullest nodes first, so limits cut the emptiest.
    bins.sort_by(|a, b| {
        let fa = a.used.dominant_share(&kinds[a.kind].alloc);
        let fb = b.used.dominant_share(&kinds[b.kind].alloc);
        fb.total_cmp(&fa)
    });
    let bins = apply_limits(input, pool, &problem, &offers, bins, &demand_group, reasons);
    for bin in bins {
        let o = &offers[bin.kind];
        let mut pods = Vec::new();
        for (d, n) in &bin.counts {
            let g = demand_group[*d];
            for &p in &groups[g].pods[taken[g]..taken[g] + *n as usize] {
                pods.push(input.pods[p].name.clone());
            }
            taken[g] += *n as usize;
        }
        let n = counter.entry(pool.name.clone()).or_insert(0);
        *n += 1;
        plan.nodes.push(PlannedNode {
            name: format!("{}-{}", pool.name, n),
            pool: pool.name.clone(),
            instance_type: o.instance_type.name.clone(),
            capacity_type: o.capacity_type,
            zone: o.zone.clone(),
            price: kinds[bin.kind].price,
            pods,
        });
    }
}

/// Keeps the nodes that fit the pool's limits (re-sizing one that crosses them when a cheaper-or-any
/// kind within the limits holds its pods); the pods of dropped nodes get a reason and go on.
#[allow(clippy::too_many_arguments)]
fn apply_limits(
    input: &ProvisionInput<'_>,
    pool: &NodePool,
    problem: &Problem<'_>,
    offers: &[Offering<'_>],
    bins: Vec<Bin>,
    demand_group: &[usize],
    reasons: &mut [Vec<String>],
) -> Vec<Bin> {
    let limits = &pool.limits;
    if limits.cpu_millis.is_none() && limits.memory_bytes.is_none() && limits.nodes.is_none() {
        return bins;
    }
    let (mut cpu, mut mem, mut count) = pool_usage(input, pool);
    let within = |cpu: u64, mem: u64, count: u64| {
        limits.cpu_millis.is_none_or(|l| cpu <= l)
            && limits.memory_bytes.is_none_or(|l| mem <= l)
            && limits.nodes.is_none_or(|l| count <= l)
    };
    let mut kept = Vec::new();
    for mut bin in bins {
        let cap = |k: usize| offers[k].instance_type.capacity();
        let fits = |k: usize| {
            let c = cap(k);
            within(cpu + c.cpu_millis, mem + c.memory_bytes, count + 1)
        };
        if !fits(bin.kind) {
            let alternative = (0..problem.kinds.len())
                .filter(|k| {
                    fits(*k)
                        && bin.used.fits_in(&problem.kinds[*k].alloc)
                        && bin.counts.iter().all(|(d, _)| {
                            problem.compat[problem.demands[*d].class * problem.kinds.len() + k]
                        })
                })
                .min_by(|a, b| problem.kinds[*a].price.total_cmp(&problem.kinds[*b].price));
            match alternative {
                Some(k) => bin.kind = k,
                None => {
                    for (d, _) in &bin.counts {
                        let g = demand_group[*d];
                        let r = format!("pool {}: limits reached", pool.name);
                        if !reasons[g].contains(&r) {
                            reasons[g].push(r);
                        }
                    }
                    continue;
                }
            }
        }
        let c = cap(bin.kind);
        cpu += c.cpu_millis;
        mem += c.memory_bytes;
        count += 1;
        kept.push(bin);
    }
    kept
}
