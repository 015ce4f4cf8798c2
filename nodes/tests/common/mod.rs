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
    // Which groups each kind may hold, and the kinds no other kind beats (no dearer, at least the room,
    // holds every group the first does): whatever a plan puts on a beaten kind fits the other at a lower
    // price, so dropping beaten kinds leaves the LP's optimum as it was (and the LP small).
    let selects = |pod: &Pod, kind: &Kind| {
        let (ti, zone, ct) = &kind.offering;
        let labels = OfferingLabels {
            instance_type: &catalog.types[*ti],
            zone,
            capacity_type: *ct,
            pool: &pool.name,
            extra: &pool.labels,
        };
        pod.node_selector
            .iter()
            .all(|(key, v)| labels.label(key) == Some(v.as_str()))
            && pod.cpu_millis as f64 / 1000.0 <= kind.cpu
            && pod.memory_bytes as f64 / MIB as f64 <= kind.mem
            && kind.pods >= 1.0
    };
    let holds: Vec<Vec<bool>> = kinds
        .iter()
        .map(|k| groups.iter().map(|(pod, _)| selects(pod, k)).collect())
        .collect();
    let beaten = |k: usize| {
        (0..kinds.len()).any(|j| {
            let (a, b) = (&kinds[j], &kinds[k]);
            j != k
                && a.price <= b.price
                && a.cpu >= b.cpu
                && a.mem >= b.mem
                && a.pods >= b.pods
                && holds[k].iter().zip(&holds[j]).all(|(hk, hj)| !hk || *hj)
                && (a.price < b.price || (a.cpu, a.mem, a.pods) != (b.cpu, b.mem, b.pods) || j < k)
        })
    };
    let kept: Vec<bool> = (0..kinds.len()).map(|k| !beaten(k)).collect();
    let mut lp = Problem::new(OptimizationDirection::Minimize);
    let x: Vec<_> = kinds
        .iter()
        .map(|k| lp.add_var(k.price, (0.0, f64::INFINITY)))
        .collect();
    let mut per_kind: Vec<Vec<(microlp::Variable, f64, f64)>> =
        (0..kinds.len()).map(|_| Vec::new()).collect();
    for (gi, (pod, count)) in groups.iter().enumerate() {
        let (cpu, mem) = (
            pod.cpu_millis as f64 / 1000.0,
            pod.memory_bytes as f64 / MIB as f64,
        );
        let mut row = Vec::new();
        for k in 0..kinds.len() {
            if !kept[k] || !holds[k][gi] {
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
/// stock. Its columns are whole node patterns (a kind and a whole number of pods of each shape that
/// fit it together), so it sees that ten 500m pods do not fill three 1,930m nodes.
///
/// Pods are grouped by shape (requests and constraints, the name aside), so the LP has one price per
/// shape, weighted by the shape's count, whatever the number of pods: this is what lets it run on
/// 10,000-pod scenarios. It is solved from the dual side: maximise Σ countˢ·πˢ over prices πˢ ≥ 0 per
/// pod of shape s such that no pattern is worth more than its node's price. Patterns are added as rows
/// (warm-started: the LP is re-solved from the last basis) where a bounded knapsack over the shapes a
/// kind may hold (branch and bound over whole pod counts, each shape at most its count) finds one worth
/// more.
///
/// The generation starts from the plain LP's dual prices (where Farley's bound is the LP's, less the
/// knapsacks' slack) and prices out, each round, at a mix of the restricted LP's prices and the best
/// feasible prices so far (Wentges' smoothing); the knapsacks use the LP's resource prices for each kind
/// as a surrogate constraint. It stops when the bound is within [`PATTERN_GAP`] of the restricted LP's
/// objective, when no pattern is worth adding, or at [`PATTERN_WORK`]. Measured on the generated
/// scenarios: it converges up to ~200 pods (a 150-pod scenario: 1.7 % over the LP's bound); beyond,
/// the knapsacks over dozens of small shapes stop at their budget, the bound stays at the LP's less
/// the slack, and the caller's max with the LP's bound is the LP's.
///
/// Why it stays a true lower bound however early the generation stops: at every round, the prices
/// divided by the largest worth/price ratio any pattern of any kind reaches are feasible for *every*
/// pattern, so Σ countˢ·πˢ / ratio is the objective of a feasible dual solution, a lower bound on the
/// configuration LP (weak duality; Farley's bound), which is itself below every plan. A knapsack that
/// runs out of its budget, or skips subtrees within its slack ([`KNAPSACK_SLACK`]), contributes an
/// upper bound on its kind's best worth (the largest bound of the subtrees it did not search, the
/// slack included), which keeps the round's bound true, only weaker. The best bound over the rounds
/// is returned; `None` when an LP fails.
///
/// What keeps it cheap without raising it: a kind that another kind beats (no dearer, at least the
/// room, holds every shape the first does) is dropped, since each of its patterns fits the other at a
/// lower price (its rows are redundant); and a pod's compatibility with a kind is judged on its node
/// selector alone (affinity and tolerations ignored: the scenarios have none, and ignoring them only
/// allows more patterns, which can only lower the bound).
pub fn pattern_bound(
    catalog: &Catalog,
    pool: &NodePool,
    pods: &[Pod],
    daemonsets: &[Pod],
) -> Option<f64> {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    use std::collections::HashMap;
    use std::collections::hash_map::Entry;
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
    // Shapes: pods alike but for their names, with their counts.
    let mut index: HashMap<Pod, usize> = HashMap::new();
    let mut shapes: Vec<Shape<'_>> = Vec::new();
    for p in pods {
        let key = Pod {
            name: String::new(),
            do_not_disrupt: false,
            ..p.clone()
        };
        match index.entry(key) {
            Entry::Occupied(e) => shapes[*e.get()].count += 1,
            Entry::Vacant(e) => {
                e.insert(shapes.len());
                shapes.push(Shape {
                    cpu: p.cpu_millis,
                    mem: p.memory_bytes,
                    pod: p,
                    count: 1,
                });
            }
        }
    }
    // Per kind, the shapes it may hold (selected, and one pod fits), ascending.
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
            (0..shapes.len())
                .filter(|s| {
                    let shape = &shapes[*s];
                    shape.cpu <= k.cpu
                        && shape.mem <= k.mem
                        && k.pods >= 1
                        && shape
                            .pod
                            .node_selector
                            .iter()
                            .all(|(key, v)| labels.label(key) == Some(v.as_str()))
                })
                .collect()
        })
        .collect();
    // The kinds no other kind beats (ties: the first index stays).
    let beats = |j: usize, k: usize| {
        let (a, b) = (&kinds[j], &kinds[k]);
        a.price <= b.price
            && a.cpu >= b.cpu
            && a.mem >= b.mem
            && a.pods >= b.pods
            && holds[k].iter().all(|s| holds[j].binary_search(s).is_ok())
            && (a.price < b.price || (a.cpu, a.mem, a.pods) != (b.cpu, b.mem, b.pods) || j < k)
    };
    let kept: Vec<usize> = (0..kinds.len())
        .filter(|&k| !holds[k].is_empty() && !(0..kinds.len()).any(|j| j != k && beats(j, k)))
        .collect();
    // The plain LP's dual, solved first: a price per pod of each shape and, per kind, a price per share
    // of its CPU, memory and pod slots, such that no kind's resources cost more than the kind and no
    // pod is worth more than the resources it takes on any kind that may hold it. Its optimum is the
    // LP's bound; its pod prices start the generation (Farley's bound there is the LP's, less the
    // knapsacks' slack), and its resource prices give each kind's knapsack the surrogate constraint
    // that bounds it tightly near those prices.
    let mut dual = Problem::new(OptimizationDirection::Maximize);
    let dual_pi: Vec<_> = shapes
        .iter()
        .map(|s| dual.add_var(s.count as f64, (0.0, f64::INFINITY)))
        .collect();
    let dual_a: Vec<[microlp::Variable; 3]> = kept
        .iter()
        .map(|_| {
            [
                dual.add_var(0.0, (0.0, f64::INFINITY)),
                dual.add_var(0.0, (0.0, f64::INFINITY)),
                dual.add_var(0.0, (0.0, f64::INFINITY)),
            ]
        })
        .collect();
    for (x, &k) in kept.iter().enumerate() {
        let kind = &kinds[k];
        let [ac, am, ap] = dual_a[x];
        dual.add_constraint(
            [(ac, 1.0), (am, 1.0), (ap, 1.0)].as_slice(),
            ComparisonOp::Le,
            kind.price,
        );
        for &s in &holds[k] {
            let shape = &shapes[s];
            dual.add_constraint(
                [
                    (dual_pi[s], 1.0),
                    (ac, -(shape.cpu as f64) / kind.cpu.max(1) as f64),
                    (am, -(shape.mem as f64) / kind.mem.max(1) as f64),
                    (ap, -1.0 / kind.pods.max(1) as f64),
                ]
                .as_slice(),
                ComparisonOp::Le,
                0.0,
            );
        }
    }
    let dual_solution = dual.solve().ok()?.into_solution().ok()?;
    let start: Vec<f64> = dual_pi
        .iter()
        .map(|v| dual_solution.var_value(*v).max(0.0))
        .collect();
    // Per kept kind, its surrogate weights per share of CPU, memory and slots (per unit of its price).
    let surrogate: Vec<[f64; 3]> = kept
        .iter()
        .zip(&dual_a)
        .map(|(&k, vars)| vars.map(|v| dual_solution.var_value(v).max(0.0) / kinds[k].price))
        .collect();

    // Prices out at `pi`: Farley's bound there with the prices scaled to be feasible for every pattern,
    // and the patterns worth more than their node at `pi` and at `also` (the restricted LP's prices).
    let work = std::cell::Cell::new(0u64);
    let price_out = |pi: &[f64], also: &[f64]| {
        let objective: f64 = pi
            .iter()
            .zip(&shapes)
            .map(|(p, s)| p * s.count as f64)
            .sum();
        let mut ratio: f64 = 1.0;
        let mut rows = Vec::new();
        for (x, &k) in kept.iter().enumerate() {
            let kind = &kinds[k];
            let found = knapsack(
                (kind.cpu, kind.mem, kind.pods),
                &holds[k],
                &shapes,
                pi,
                kind.price,
                surrogate[x],
            );
            ratio = ratio.max(found.most / kind.price);
            // A search node's cost grows with the shapes its bounds scan.
            work.set(work.get() + found.work * (holds[k].len() as u64 + 1));
            let at_also: f64 = found.counts.iter().map(|(s, n)| also[*s] * *n as f64).sum();
            if found.worth > kind.price * (1.0 + 1e-9) && at_also > kind.price * (1.0 + 1e-9) {
                rows.push((found.counts, kind.price));
            }
        }
        let scaled: Vec<f64> = pi.iter().map(|p| p / ratio).collect();
        (objective / ratio, scaled, rows)
    };

    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let price: Vec<_> = shapes
        .iter()
        .map(|s| lp.add_var(s.count as f64, (0.0, f64::INFINITY)))
        .collect();
    // The restricted LP starts from one pattern per shape: the cheapest per pod of the one-shape
    // patterns (as many pods of it as a kind holds), which bounds every price.
    for (s, shape) in shapes.iter().enumerate() {
        let (_, n, node_price) = kept
            .iter()
            .filter(|k| holds[**k].binary_search(&s).is_ok())
            .map(|&k| {
                let kind = &kinds[k];
                let n = (kind.cpu / shape.cpu.max(1))
                    .min(kind.mem / shape.mem.max(1))
                    .min(kind.pods)
                    .min(shape.count);
                (kind.price / n as f64, n, kind.price)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        lp.add_constraint(
            [(price[s], n as f64)].as_slice(),
            ComparisonOp::Le,
            node_price,
        );
    }
    // The best bound so far and the feasible prices that reached it: the stabilisation centre.
    let (first, centre, _) = price_out(&start, &start);
    let mut best = (first, centre);
    let mut solution = lp.solve().ok()?.into_solution().ok()?;
    for _round in 0..PATTERN_ROUNDS {
        let lp_pi: Vec<f64> = price
            .iter()
            .map(|v| solution.var_value(*v).max(0.0))
            .collect();
        let lp_objective: f64 = lp_pi
            .iter()
            .zip(&shapes)
            .map(|(p, s)| p * s.count as f64)
            .sum();
        // Close enough (the restricted LP's objective is above the configuration LP's optimum), or out of
        // work.
        if best.0 >= lp_objective * (1.0 - PATTERN_GAP) || work.get() > PATTERN_WORK {
            break;
        }
        // Prices out at a point between the restricted LP's prices and the centre (Wentges'
        // smoothing: the restricted LP's prices swing from round to round, the mix converges in far
        // fewer rounds); where the mix finds no pattern to add, at the LP's own prices.
        let mut rows = Vec::new();
        for smooth in [PATTERN_SMOOTHING, 0.0] {
            let pi: Vec<f64> = lp_pi
                .iter()
                .zip(&best.1)
                .map(|(l, c)| smooth * c + (1.0 - smooth) * l)
                .collect();
            let (bound, scaled, found) = price_out(&pi, &lp_pi);
            if bound > best.0 {
                best = (bound, scaled);
            }
            rows = found;
            if !rows.is_empty() {
                break;
            }
        }
        if rows.is_empty() {
            break;
        }
        for (counts, rhs) in rows {
            let row: Vec<_> = counts.iter().map(|(s, n)| (price[*s], *n as f64)).collect();
            match solution
                .add_constraint(row.as_slice(), ComparisonOp::Le, rhs)
                .ok()
                .and_then(|o| o.into_solution().ok())
            {
                Some(next) => solution = next,
                None => return Some(best.0),
            }
        }
    }
    Some(best.0)
}

/// How far the prices a round prices out at lean to the best feasible prices found so far.
const PATTERN_SMOOTHING: f64 = 0.5;

/// At most this many rounds of pattern generation, and this much knapsack work over all rounds
/// (search nodes times the shapes a node's bounds scan); each round's bound is true, more rounds only
/// tighten it. The work limit is what keeps the quality test quick on thousands of pods, where the
/// generation converges too slowly to help (see the test).
const PATTERN_ROUNDS: usize = 200;
const PATTERN_WORK: u64 = 2_000_000;

/// Pattern generation stops once Farley's bound is within this fraction of the restricted LP's
/// objective (which is above the configuration LP's optimum): the bound is then within 0.1 % of it.
const PATTERN_GAP: f64 = 1e-3;

/// Search nodes one knapsack may visit before it settles for an upper bound.
const KNAPSACK_BUDGET: u64 = 5_000;

/// A subtree that could beat the best pattern found (or the node's price) by no more than this
/// fraction is not searched: near-ties among many small pods are what make an exact search explode.
/// The knapsack's upper bound then carries the same slack, so the bound stays true and loses at most
/// this fraction.
const KNAPSACK_SLACK: f64 = 5e-4;

/// Pods of one shape: requests and constraints alike.
struct Shape<'a> {
    cpu: u64,
    mem: u64,
    pod: &'a Pod,
    count: u64,
}

/// The best pattern a knapsack found for one kind.
struct BestPattern {
    /// What the pattern found is worth, and its pods per shape.
    worth: f64,
    counts: Vec<(usize, u64)>,
    /// The most any pattern of the kind is worth: `worth` where the search finished, else the
    /// largest bound of the subtrees it had not searched when the budget ran out.
    most: f64,
    /// Search nodes visited.
    work: u64,
}

/// The most a node of this room is worth at prices `pi`: whole pods of the shapes it may hold, each
/// shape at most its count (a bounded knapsack in CPU, memory and pod slots). Depth-first branch and
/// bound (the densest shape first, as many of it as fit first); a subtree is bounded by the fractional
/// knapsack (Dantzig's bound) of five single-constraint relaxations: CPU alone, memory alone, slots
/// alone, their average share, and `surrogate` (the three shares weighted by the LP's resource prices
/// for this kind, per unit of its price), each a valid upper bound, the least of them taken. Within
/// [`KNAPSACK_BUDGET`] search nodes; past it, the subtrees left are only bounded.
fn knapsack(
    (cpu, mem, slots): (u64, u64, u64),
    holds: &[usize],
    shapes: &[Shape<'_>],
    pi: &[f64],
    price: f64,
    surrogate: [f64; 3],
) -> BestPattern {
    let (c0, m0, p0) = (cpu.max(1) as f64, mem.max(1) as f64, slots.max(1) as f64);
    let items: Vec<usize> = holds.iter().copied().filter(|s| pi[*s] > 1e-12).collect();
    // Per item, its weight in each relaxation (as a share of the node).
    let [sc, sm, sp] = surrogate;
    let weights: Vec<[f64; 5]> = items
        .iter()
        .map(|&s| {
            let (c, m, p) = (
                shapes[s].cpu as f64 / c0,
                shapes[s].mem as f64 / m0,
                1.0 / p0,
            );
            [c, m, p, (c + m + p) / 3.0, sc * c + sm * m + sp * p]
        })
        .collect();
    // The branching order: most worth per dominant share first.
    let mut order: Vec<usize> = (0..items.len()).collect();
    let density = |i: usize| {
        let w = &weights[i];
        pi[items[i]] / w[0].max(w[1]).max(w[2])
    };
    order.sort_by(|a, b| density(*b).total_cmp(&density(*a)));
    // Per relaxation, the items by worth per unit of its weight, descending (positions in `order`).
    let mut rank = vec![0usize; items.len()];
    for (pos, &i) in order.iter().enumerate() {
        rank[i] = pos;
    }
    let by_ratio: Vec<Vec<(usize, f64, f64)>> = (0..5)
        .map(|r| {
            let mut v: Vec<(usize, f64, f64)> = (0..items.len())
                .map(|i| (rank[i], weights[i][r], pi[items[i]]))
                .collect();
            v.sort_by(|a, b| (b.2 / b.1.max(1e-18)).total_cmp(&(a.2 / a.1.max(1e-18))));
            v
        })
        .collect();
    struct Search<'a> {
        order: &'a [usize],
        items: &'a [usize],
        shapes: &'a [Shape<'a>],
        pi: &'a [f64],
        by_ratio: &'a [Vec<(usize, f64, f64)>],
        full: (f64, f64, f64),
        surrogate: [f64; 3],
        budget: u64,
        best: f64,
        best_counts: Vec<(usize, u64)>,
        counts: Vec<(usize, u64)>,
        /// The largest bound of a subtree left unsearched once the budget ran out.
        open: f64,
        /// What a subtree must be able to beat to be searched: the node's price (a pattern worth less
        /// neither enters the LP nor raises the ratio above 1).
        floor: f64,
    }
    impl Search<'_> {
        /// The least of the relaxations' fractional bounds on what the items from position `from` on
        /// add to a node with this room left.
        fn bound(&self, from: usize, cpu: u64, mem: u64, slots: u64) -> f64 {
            let (c, m, p) = (
                cpu as f64 / self.full.0,
                mem as f64 / self.full.1,
                slots as f64 / self.full.2,
            );
            let [sc, sm, sp] = self.surrogate;
            let room = [c, m, p, (c + m + p) / 3.0, sc * c + sm * m + sp * p];
            let mut least = f64::INFINITY;
            for (r, list) in self.by_ratio.iter().enumerate() {
                let mut left = room[r];
                let mut worth = 0.0;
                for &(pos, w, value) in list {
                    if pos < from {
                        continue;
                    }
                    let count = self.shapes[self.items[self.order[pos]]].count as f64;
                    if w * count <= left {
                        left -= w * count;
                        worth += value * count;
                    } else {
                        worth += value * left / w.max(1e-18);
                        break;
                    }
                }
                least = least.min(worth);
            }
            least
        }

        fn go(&mut self, i: usize, cpu: u64, mem: u64, slots: u64, worth: f64) {
            if worth > self.best {
                self.best = worth;
                self.best_counts = self.counts.clone();
            }
            if i == self.order.len() {
                return;
            }
            let bound = self.bound(i, cpu, mem, slots);
            if worth + bound <= self.best.max(self.floor) * (1.0 + KNAPSACK_SLACK) {
                return;
            }
            if self.budget == 0 {
                self.open = self.open.max(worth + bound);
                return;
            }
            self.budget -= 1;
            let s = self.items[self.order[i]];
            let shape = &self.shapes[s];
            let most = (cpu / shape.cpu.max(1))
                .min(mem / shape.mem.max(1))
                .min(slots)
                .min(shape.count);
            for n in (0..=most).rev() {
                if n > 0 {
                    self.counts.push((s, n));
                }
                self.go(
                    i + 1,
                    cpu - shape.cpu * n,
                    mem - shape.mem * n,
                    slots - n,
                    worth + self.pi[s] * n as f64,
                );
                if n > 0 {
                    self.counts.pop();
                }
            }
        }
    }
    let mut search = Search {
        order: &order,
        items: &items,
        shapes,
        pi,
        by_ratio: &by_ratio,
        full: (c0, m0, p0),
        surrogate,
        budget: KNAPSACK_BUDGET,
        best: 0.0,
        best_counts: Vec::new(),
        counts: Vec::new(),
        open: 0.0,
        floor: price,
    };
    search.go(0, cpu, mem, slots, 0.0);
    BestPattern {
        worth: search.best,
        // Every subtree pruned could reach at most this (the slack included).
        most: (search.best.max(price) * (1.0 + KNAPSACK_SLACK)).max(search.open),
        work: KNAPSACK_BUDGET - search.budget,
        counts: search.best_counts,
    }
}
