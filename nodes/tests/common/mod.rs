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

/// A tighter lower bound where the LP's is loose (few pods per selector class, where no plan can fill
/// nodes as the LP's fractional pods do): the configuration LP's, Gilmore and Gomory's for cutting
/// stock. Its columns are whole node patterns (a kind and a whole number of pods of each group that
/// fit it together), so it sees that ten 500m pods do not fill three 1,930m nodes.
///
/// It is solved from the dual side: maximise Σ countᵍ·πᵍ over prices πᵍ ≥ 0 per pod of group g such
/// that no pattern is worth more than its node's price. Patterns are added as rows where an exact
/// knapsack per kind (branch and bound over whole pod counts) finds one worth more. At every round,
/// the prices divided by the largest worth/price ratio any pattern reaches are feasible for *every*
/// pattern, so Σ countᵍ·πᵍ / ratio is a true lower bound on the configuration LP, hence on every plan
/// (weak duality; Farley's bound). Where a knapsack runs out of its budget, the ratio takes its
/// fractional upper bound instead of the worth found, which keeps the round's bound true (only
/// weaker). The best bound over the rounds is returned; `None` when the LP itself fails.
pub fn pattern_bound(
    catalog: &Catalog,
    pool: &NodePool,
    pods: &[Pod],
    daemonsets: &[Pod],
) -> Option<f64> {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    struct Kind {
        price: f64,
        cpu: u64,
        mem: u64,
        pods: u64,
        labels: (usize, String, CapacityType),
    }
    let ds = daemonsets
        .iter()
        .fold(surge_nodes::Resources::ZERO, |a, d| a + d.requests());
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
            let alloc = t.allocatable.saturating_sub(&ds);
            kinds.push(Kind {
                price: t.price(ct),
                cpu: alloc.cpu_millis,
                mem: alloc.memory_bytes,
                pods: alloc.pods,
                labels: (ti, zone.clone(), ct),
            });
        }
    }
    // Groups of identical pods: (cpu, memory, selector, count).
    let mut groups: Vec<(u64, u64, &Pod, u64)> = Vec::new();
    for p in pods {
        match groups.iter_mut().find(|(c, m, q, _)| {
            *c == p.cpu_millis && *m == p.memory_bytes && q.node_selector == p.node_selector
        }) {
            Some((.., n)) => *n += 1,
            None => groups.push((p.cpu_millis, p.memory_bytes, p, 1)),
        }
    }
    // Per kind, the groups it may hold (selected, and one pod fits).
    let holds: Vec<Vec<usize>> = kinds
        .iter()
        .map(|k| {
            let (ti, zone, ct) = &k.labels;
            let labels = OfferingLabels {
                instance_type: &catalog.types[*ti],
                zone,
                capacity_type: *ct,
                pool: &pool.name,
                extra: &pool.labels,
            };
            (0..groups.len())
                .filter(|g| {
                    let (c, m, pod, _) = groups[*g];
                    c <= k.cpu
                        && m <= k.mem
                        && k.pods >= 1
                        && pod
                            .node_selector
                            .iter()
                            .all(|(key, v)| labels.label(key) == Some(v.as_str()))
                })
                .collect()
        })
        .collect();
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let price: Vec<_> = groups
        .iter()
        .map(|g| lp.add_var(g.3 as f64, (0.0, f64::INFINITY)))
        .collect();
    // Start from the one-group patterns: as many pods of a group as a kind holds.
    for (k, kind) in kinds.iter().enumerate() {
        for &g in &holds[k] {
            let (c, m, _, count) = groups[g];
            let n = (kind.cpu / c.max(1))
                .min(kind.mem / m.max(1))
                .min(kind.pods)
                .min(count);
            lp.add_constraint(
                [(price[g], n as f64)].as_slice(),
                ComparisonOp::Le,
                kind.price,
            );
        }
    }
    let mut best: Option<f64> = None;
    for _round in 0..400 {
        let solution = lp
            .solve()
            .expect("the pattern LP solves")
            .into_solution()
            .ok()?;
        let pi: Vec<f64> = price
            .iter()
            .map(|v| solution.var_value(*v).max(0.0))
            .collect();
        let mut ratio: f64 = 1.0;
        let mut added = 0;
        for (k, kind) in kinds.iter().enumerate() {
            let best_pattern = knapsack(kind.cpu, kind.mem, kind.pods, &holds[k], &groups, &pi);
            ratio = ratio.max(best_pattern.most / kind.price);
            if best_pattern.worth > kind.price * (1.0 + 1e-9) {
                let row: Vec<_> = best_pattern
                    .counts
                    .iter()
                    .map(|(g, n)| (price[*g], *n as f64))
                    .collect();
                lp.add_constraint(row.as_slice(), ComparisonOp::Le, kind.price);
                added += 1;
            }
        }
        let objective: f64 = pi.iter().zip(&groups).map(|(p, g)| p * g.3 as f64).sum();
        let bound = objective / ratio;
        best = Some(best.map_or(bound, |b: f64| b.max(bound)));
        if added == 0 {
            break;
        }
    }
    best
}

/// The best pattern a knapsack found for one kind.
struct BestPattern {
    /// What the pattern found is worth, and its pods per group.
    worth: f64,
    counts: Vec<(usize, u64)>,
    /// The most any pattern of the kind is worth: `worth` where the search finished, else the
    /// fractional bound at its root.
    most: f64,
}

/// The most a node of this room is worth at prices `pi`: whole pods of the groups it may hold, each
/// group at most its count. Depth-first branch and bound, bounded by the best worth per unit of CPU,
/// of memory and of pod slots among the groups not yet decided, within a budget of search nodes.
fn knapsack(
    cpu: u64,
    mem: u64,
    slots: u64,
    holds: &[usize],
    groups: &[(u64, u64, &Pod, u64)],
    pi: &[f64],
) -> BestPattern {
    let mut order: Vec<usize> = holds.iter().copied().filter(|g| pi[*g] > 1e-12).collect();
    // Most worth per share of the node first.
    let share = |g: usize| {
        (groups[g].0 as f64 / cpu.max(1) as f64)
            .max(groups[g].1 as f64 / mem.max(1) as f64)
            .max(1.0 / slots.max(1) as f64)
    };
    order.sort_by(|a, b| (pi[*b] / share(*b)).total_cmp(&(pi[*a] / share(*a))));
    // Per position, the best worth per millicore, per byte and per slot from there on.
    let mut tail = vec![(0.0f64, 0.0f64, 0.0f64); order.len() + 1];
    for i in (0..order.len()).rev() {
        let g = order[i];
        let (c, m) = (groups[g].0.max(1) as f64, groups[g].1.max(1) as f64);
        tail[i] = (
            tail[i + 1].0.max(pi[g] / c),
            tail[i + 1].1.max(pi[g] / m),
            tail[i + 1].2.max(pi[g]),
        );
    }
    struct Search<'a> {
        order: &'a [usize],
        groups: &'a [(u64, u64, &'a Pod, u64)],
        pi: &'a [f64],
        tail: &'a [(f64, f64, f64)],
        budget: u64,
        best: f64,
        best_counts: Vec<(usize, u64)>,
        counts: Vec<(usize, u64)>,
    }
    impl Search<'_> {
        fn go(&mut self, i: usize, cpu: u64, mem: u64, slots: u64, worth: f64) -> bool {
            if self.budget == 0 {
                return false;
            }
            self.budget -= 1;
            if worth > self.best {
                self.best = worth;
                self.best_counts = self.counts.clone();
            }
            if i == self.order.len() {
                return true;
            }
            let (a, b, c) = self.tail[i];
            let bound = (a * cpu as f64).min(b * mem as f64).min(c * slots as f64);
            if worth + bound <= self.best * (1.0 + 1e-12) {
                return true;
            }
            let g = self.order[i];
            let (gc, gm, _, count) = self.groups[g];
            let most = (cpu / gc.max(1)).min(mem / gm.max(1)).min(slots).min(count);
            for n in (0..=most).rev() {
                if n > 0 {
                    self.counts.push((g, n));
                }
                let ok = self.go(
                    i + 1,
                    cpu - gc * n,
                    mem - gm * n,
                    slots - n,
                    worth + self.pi[g] * n as f64,
                );
                if n > 0 {
                    self.counts.pop();
                }
                if !ok {
                    return false;
                }
            }
            true
        }
    }
    let mut search = Search {
        order: &order,
        groups,
        pi,
        tail: &tail,
        budget: 1_000_000,
        best: 0.0,
        best_counts: Vec::new(),
        counts: Vec::new(),
    };
    let finished = search.go(0, cpu, mem, slots, 0.0);
    let root = (tail[0].0 * cpu as f64)
        .min(tail[0].1 * mem as f64)
        .min(tail[0].2 * slots as f64);
    BestPattern {
        worth: search.best,
        most: if finished {
            search.best
        } else {
            search.best.max(root)
        },
        counts: search.best_counts,
    }
}
