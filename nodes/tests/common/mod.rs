//! Generated scenarios and the LP lower bound, shared by the quality test and the bench.

#![allow(dead_code)]

use surge_nodes::requirements::{Labels, first_unmet};
use surge_nodes::{CapacityType, Catalog, MIB, NodePool, OfferingLabels, Pod};

/// A small deterministic generator (splitmix64), so scenarios are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The pool the scenarios launch from: c, m and r families, spot and on-demand, amd64 and arm64.
pub fn general_pool() -> NodePool {
    let text = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: general\nspec:\n  template:\n    spec:\n      requirements:\n        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}\n";
    NodePool::from_yaml(text, "general").expect("the scenario pool loads")
}

/// `n` pending pods from a mix of workloads (a Deployment's replicas share a shape): web, memory-heavy,
/// CPU-heavy and a few very large pods. With `selectors`, workloads pin an architecture and/or a
/// capacity type.
pub fn scenario(seed: u64, n: usize, selectors: bool) -> Vec<Pod> {
    let mut rng = Rng::new(seed);
    let mut pods = Vec::with_capacity(n);
    let mut w = 0;
    while pods.len() < n {
        let kind = rng.range(0, 99);
        let (cpu, mem_mib, replicas) = match kind {
            0..=44 => (
                rng.range(2, 10) * 50,
                rng.range(2, 16) * 64,
                rng.range(5, 60),
            ), // web
            45..=64 => (
                rng.range(1, 8) * 125,
                rng.range(4, 32) * 512,
                rng.range(2, 25),
            ), // memory-heavy
            65..=91 => (
                rng.range(2, 8) * 500,
                rng.range(2, 8) * 256,
                rng.range(2, 30),
            ), // cpu-heavy
            _ => (
                rng.range(8, 28) * 1000,
                rng.range(16, 96) * 1024,
                rng.range(1, 3),
            ), // very large
        };
        let mut template = Pod::new("", cpu, mem_mib * MIB);
        if selectors {
            match rng.range(0, 2) {
                0 => drop(
                    template
                        .node_selector
                        .insert("kubernetes.io/arch".into(), "amd64".into()),
                ),
                1 => drop(
                    template
                        .node_selector
                        .insert("kubernetes.io/arch".into(), "arm64".into()),
                ),
                _ => {}
            }
            match rng.range(0, 3) {
                0 => drop(
                    template
                        .node_selector
                        .insert("karpenter.sh/capacity-type".into(), "on-demand".into()),
                ),
                1 => drop(
                    template
                        .node_selector
                        .insert("karpenter.sh/capacity-type".into(), "spot".into()),
                ),
                _ => {}
            }
        }
        for r in 0..replicas {
            if pods.len() == n {
                break;
            }
            let mut p = template.clone();
            p.name = format!("w{w}-{r}");
            pods.push(p);
        }
        w += 1;
    }
    pods
}

/// The LP relaxation of the packing, solved: a lower bound on the cost of any plan that puts every pod
/// on a node of `pool` (fractional nodes allowed, every capacity type the pool allows, no spot-first
/// rule, no limits). Written from the public model only, independent of the planner's internals.
pub fn lp_bound(catalog: &Catalog, pool: &NodePool, pods: &[Pod], daemonsets: &[Pod]) -> f64 {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    // Kinds: one per instance type and capacity type (zones make no difference to these pods).
    struct Kind {
        price: f64,
        cpu: f64,
        mem: f64,
        pods: f64,
        offering: (usize, String, CapacityType),
    }
    let mut kinds = Vec::new();
    for (ti, t) in catalog.types.iter().enumerate() {
        for ct in CapacityType::ALL {
            let zone = &t.zones[0];
            let labels = OfferingLabels {
                instance_type: t,
                zone,
                capacity_type: ct,
                pool: &pool.name,
                extra: &pool.labels,
            };
            if first_unmet(&pool.requirements, &labels).is_some() {
                continue;
            }
            let ds = daemonsets
                .iter()
                .fold(surge_nodes::Resources::ZERO, |a, d| a + d.requests());
            let alloc = t.allocatable.saturating_sub(&ds);
            kinds.push(Kind {
                price: t.price(ct),
                cpu: alloc.cpu_millis as f64 / 1000.0,
                mem: alloc.memory_bytes as f64 / MIB as f64,
                pods: alloc.pods as f64,
                offering: (ti, zone.clone(), ct),
            });
        }
    }
    // Groups of identical pods.
    let mut groups: Vec<(&Pod, f64)> = Vec::new();
    for p in pods {
        match groups.iter_mut().find(|(q, _)| {
            q.cpu_millis == p.cpu_millis
                && q.memory_bytes == p.memory_bytes
                && q.node_selector == p.node_selector
        }) {
            Some((_, n)) => *n += 1.0,
            None => groups.push((p, 1.0)),
        }
    }
    let mut lp = Problem::new(OptimizationDirection::Minimize);
    let x: Vec<_> = kinds
        .iter()
        .map(|k| lp.add_var(k.price, (0.0, f64::INFINITY)))
        .collect();
    let mut per_kind: Vec<Vec<(microlp::Variable, f64, f64)>> =
        (0..kinds.len()).map(|_| Vec::new()).collect();
    for (pod, count) in &groups {
        let (cpu, mem) = (
            pod.cpu_millis as f64 / 1000.0,
            pod.memory_bytes as f64 / MIB as f64,
        );
        let mut row = Vec::new();
        for (k, kind) in kinds.iter().enumerate() {
            let (ti, zone, ct) = &kind.offering;
            let t = &catalog.types[*ti];
            let labels = OfferingLabels {
                instance_type: t,
                zone,
                capacity_type: *ct,
                pool: &pool.name,
                extra: &pool.labels,
            };
            let selects = pod
                .node_selector
                .iter()
                .all(|(key, v)| labels.label(key) == Some(v.as_str()));
            if !selects || cpu > kind.cpu || mem > kind.mem || kind.pods < 1.0 {
                continue;
            }
            let y = lp.add_var(0.0, (0.0, f64::INFINITY));
            row.push((y, 1.0));
            per_kind[k].push((y, cpu, mem));
        }
        assert!(!row.is_empty(), "a scenario pod fits no kind");
        lp.add_constraint(row.as_slice(), ComparisonOp::Eq, *count);
    }
    for (k, ys) in per_kind.iter().enumerate() {
        if ys.is_empty() {
            continue;
        }
        let mut cpu_row: Vec<_> = ys.iter().map(|(y, c, _)| (*y, *c)).collect();
        cpu_row.push((x[k], -kinds[k].cpu));
        lp.add_constraint(cpu_row.as_slice(), ComparisonOp::Le, 0.0);
        let mut mem_row: Vec<_> = ys.iter().map(|(y, _, m)| (*y, *m)).collect();
        mem_row.push((x[k], -kinds[k].mem));
        lp.add_constraint(mem_row.as_slice(), ComparisonOp::Le, 0.0);
        let mut pod_row: Vec<_> = ys.iter().map(|(y, _, _)| (*y, 1.0)).collect();
        pod_row.push((x[k], -kinds[k].pods));
        lp.add_constraint(pod_row.as_slice(), ComparisonOp::Le, 0.0);
    }
    let solution = lp
        .solve()
        .expect("the LP solves")
        .into_solution()
        .expect("an optimal solution");
    solution.objective()
}
