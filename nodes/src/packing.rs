//! Bin packing with a choice of bin kinds: the cost core of provisioning.
//!
//! The problem: groups of identical pods (a compatibility class and requests, with a count) and kinds of
//! node (an offering: instance type, zone, capacity type, with a price and an allocatable), each class
//! compatible with some kinds; open nodes so that every pod sits on a compatible node that holds it, at
//! the least total price.
//!
//! Two constructions and two improvement passes:
//! - [`karpenter_ffd`]: Karpenter's scheduler. Pods sorted by CPU then memory, each added to the first
//!   open claim where some remaining kind still holds everything, else a new claim; a claim launches as
//!   its cheapest remaining kind. This is the baseline the plan must beat or equal.
//! - [`greedy`]: opens one node at a time, of the kind whose first-fit-decreasing fill from the pods left
//!   packs the most value per dollar, where a pod's value is either its CPU and memory at the prices
//!   where the class's cheapest mix of kinds breaks even (the dual of the covering LP), or its price on
//!   the kind that suits it best alone (its dominant share of that kind's allocatable, times the price).
//!   Mixed shapes land on nodes whose ratio they fill (CPU-heavy with memory-heavy on general-purpose,
//!   lone shapes on c or r). Once a fill is chosen it is repeated while the pods last (the composition
//!   left barely changes). Kinds another kind beats on price, room and compatibility are never opened.
//! - [`improve`]: every node re-launched as the cheapest kind that holds its pods; the emptiest nodes
//!   emptied into the free room of the others where they fit; pairs of the emptiest nodes merged onto
//!   one cheaper kind; then re-sized again. It never raises the cost.
//! - [`local_search`]: the pods of the emptiest nodes, with a sliding window of fuller ones, re-planned
//!   together and kept where cheaper.
//!
//! [`best`] runs the constructions (the greedy with two ways of valuing a pod, each free or anchored on
//! the largest pod left; only the two that win most often above 2,000 pods), improves each, and keeps
//! the cheapest, Karpenter's FFD among them, so the plan is never worse than Karpenter's greedy.

use crate::resources::Resources;

/// One kind of node a pool can launch.
#[derive(Clone, Debug)]
pub(crate) struct Kind {
    pub price: f64,
    /// Allocatable less the DaemonSets the node runs.
    pub alloc: Resources,
}

/// Identical pods: one compatibility class and one request, `count` of them.
#[derive(Clone, Debug)]
pub(crate) struct Demand {
    pub class: usize,
    pub req: Resources,
    pub count: u64,
}

/// The instance: kinds, demands, and which class runs on which kind.
pub(crate) struct Problem<'a> {
    pub kinds: &'a [Kind],
    pub demands: &'a [Demand],
    /// `compat[class * kinds.len() + kind]`
    pub compat: &'a [bool],
    /// Kind indices by price, ties in index order: [`Problem::cheapest_kind`] stops at the first that
    /// fits instead of scanning every kind (it was most of a small plan's time).
    by_price: Vec<usize>,
}

/// One node of a packing: its kind, what its pods use, and how many of each demand it holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bin {
    pub kind: usize,
    pub used: Resources,
    pub counts: Vec<(usize, u64)>,
}

impl<'a> Problem<'a> {
    pub fn new(kinds: &'a [Kind], demands: &'a [Demand], compat: &'a [bool]) -> Problem<'a> {
        let mut by_price: Vec<usize> = (0..kinds.len()).collect();
        // Stable: equal prices keep index order, so the first fitting kind is the one `min_by` over
        // indices would pick.
        by_price.sort_by(|a, b| kinds[*a].price.total_cmp(&kinds[*b].price));
        Problem {
            kinds,
            demands,
            compat,
            by_price,
        }
    }

    fn compatible(&self, class: usize, kind: usize) -> bool {
        self.compat[class * self.kinds.len() + kind]
    }

    /// Whether `kind` may hold every demand in `counts`.
    fn kind_holds_classes(&self, kind: usize, counts: &[(usize, u64)]) -> bool {
        counts
            .iter()
            .all(|(d, _)| self.compatible(self.demands[*d].class, kind))
    }

    /// The cheapest kind that holds `used` and every class of `counts`.
    fn cheapest_kind(&self, used: &Resources, counts: &[(usize, u64)]) -> Option<usize> {
        self.by_price
            .iter()
            .copied()
            .find(|k| used.fits_in(&self.kinds[*k].alloc) && self.kind_holds_classes(*k, counts))
    }

    pub fn cost(&self, bins: &[Bin]) -> f64 {
        bins.iter().map(|b| self.kinds[b.kind].price).sum()
    }
}

fn add_count(counts: &mut Vec<(usize, u64)>, d: usize, n: u64) {
    match counts.iter_mut().find(|(x, _)| *x == d) {
        Some((_, c)) => *c += n,
        None => counts.push((d, n)),
    }
}

/// Karpenter's first-fit-decreasing over claims whose kind is decided at launch (the cheapest that
/// still holds everything). Demands must come sorted by CPU, then memory, descending.
pub(crate) fn karpenter_ffd(p: &Problem<'_>) -> Vec<Bin> {
    struct Claim {
        kinds: Vec<usize>,
        used: Resources,
        counts: Vec<(usize, u64)>,
    }
    let mut claims: Vec<Claim> = Vec::new();
    for (d, demand) in p.demands.iter().enumerate() {
        let mut left = demand.count;
        // How many of this demand a claim can still take: the most any of its kinds holds.
        let room = |kinds: &[usize], used: &Resources| {
            kinds
                .iter()
                .filter(|k| p.compatible(demand.class, **k))
                .map(|k| {
                    demand
                        .req
                        .copies_in(&p.kinds[*k].alloc.saturating_sub(used))
                })
                .max()
                .unwrap_or(0)
        };
        for c in claims.iter_mut() {
            if left == 0 {
                break;
            }
            let n = room(&c.kinds, &c.used).min(left);
            if n == 0 {
                continue;
            }
            c.used += demand.req.times(n);
            add_count(&mut c.counts, d, n);
            let used = c.used;
            c.kinds
                .retain(|k| p.compatible(demand.class, *k) && used.fits_in(&p.kinds[*k].alloc));
            left -= n;
        }
        let all: Vec<usize> = (0..p.kinds.len()).collect();
        while left > 0 {
            let n = room(&all, &Resources::ZERO).min(left);
            if n == 0 {
                break; // does not fit any kind: the caller filtered these out
            }
            let used = demand.req.times(n);
            let kinds = all
                .iter()
                .copied()
                .filter(|k| p.compatible(demand.class, *k) && used.fits_in(&p.kinds[*k].alloc))
                .collect();
            claims.push(Claim {
                kinds,
                used,
                counts: vec![(d, n)],
            });
            left -= n;
        }
    }
    claims
        .into_iter()
        .filter_map(|c| {
            let kind = c
                .kinds
                .iter()
                .copied()
                .min_by(|a, b| p.kinds[*a].price.total_cmp(&p.kinds[*b].price))?;
            Some(Bin {
                kind,
                used: c.used,
                counts: c.counts,
            })
        })
        .collect()
}

/// Prices per CPU millicore and per memory byte at which the class's cheapest mix of kinds breaks even:
/// the dual of the LP "cover the class's total CPU and memory with fractional nodes" (two variables,
/// so the optimum is a vertex of the constraints `a·cpu_k + b·mem_k ≤ price_k`, found by trying the
/// axes and every pair of kinds on the price-efficiency frontier).
fn resource_prices(p: &Problem<'_>, class: usize, total: Resources) -> (f64, f64) {
    let kinds: Vec<(f64, f64, f64)> = (0..p.kinds.len())
        .filter(|k| p.compatible(class, *k))
        .map(|k| {
            let kd = &p.kinds[k];
            (
                kd.alloc.cpu_millis as f64,
                kd.alloc.memory_bytes as f64,
                kd.price,
            )
        })
        .filter(|(c, m, _)| *c > 0.0 && *m > 0.0)
        .collect();
    // The frontier: kinds no other kind beats on both CPU and memory per dollar.
    let frontier: Vec<(f64, f64, f64)> = kinds
        .iter()
        .copied()
        .filter(|(c, m, pr)| {
            !kinds.iter().any(|(c2, m2, p2)| {
                c2 / p2 >= c / pr && m2 / p2 >= m / pr && (c2 / p2 > c / pr || m2 / p2 > m / pr)
            })
        })
        .collect();
    let feasible = |a: f64, b: f64| {
        a >= 0.0
            && b >= 0.0
            && frontier
                .iter()
                .all(|(c, m, pr)| a * c + b * m <= pr * (1.0 + 1e-9))
    };
    let (tc, tm) = (total.cpu_millis as f64, total.memory_bytes as f64);
    let mut best = (0.0, 0.0, 0.0);
    let mut consider = |a: f64, b: f64| {
        if feasible(a, b) && a * tc + b * tm > best.2 {
            best = (a, b, a * tc + b * tm);
        }
    };
    let a_max = frontier
        .iter()
        .map(|(c, _, pr)| pr / c)
        .fold(f64::INFINITY, f64::min);
    let b_max = frontier
        .iter()
        .map(|(_, m, pr)| pr / m)
        .fold(f64::INFINITY, f64::min);
    if a_max.is_finite() {
        consider(a_max, 0.0);
    }
    if b_max.is_finite() {
        consider(0.0, b_max);
    }
    for (i, (c1, m1, p1)) in frontier.iter().enumerate() {
        for (c2, m2, p2) in &frontier[i + 1..] {
            let det = c1 * m2 - c2 * m1;
            if det.abs() < 1e-12 {
                continue;
            }
            consider((p1 * m2 - p2 * m1) / det, (c1 * p2 - c2 * p1) / det);
        }
    }
    (best.0, best.1)
}

/// How a demand's value per pod is counted by [`greedy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Its resources at the class's break-even prices ([`resource_prices`]).
    BreakEven,
    /// Its price on the kind that suits it best alone (its dominant share of it).
    Alone,
}

/// Each demand's value per pod. Break-even prices that say nothing (no CPU or memory asked) fall back
/// to the price alone.
fn values(p: &Problem<'_>, how: Value) -> Vec<f64> {
    let nk = p.kinds.len();
    let classes = p.demands.iter().map(|d| d.class).max().map_or(0, |c| c + 1);
    let mut totals = vec![Resources::ZERO; classes];
    for d in p.demands {
        totals[d.class] += d.req.times(d.count);
    }
    let prices: Vec<(f64, f64)> = match how {
        Value::BreakEven => (0..classes)
            .map(|c| resource_prices(p, c, totals[c]))
            .collect(),
        Value::Alone => vec![(0.0, 0.0); classes],
    };
    p.demands
        .iter()
        .map(|d| {
            let (a, b) = prices[d.class];
            let dual = a * d.req.cpu_millis as f64 + b * d.req.memory_bytes as f64;
            if dual > 0.0 {
                return dual;
            }
            (0..nk)
                .filter(|k| p.compatible(d.class, *k) && d.req.fits_in(&p.kinds[*k].alloc))
                .map(|k| p.kinds[k].price * d.req.dominant_share(&p.kinds[k].alloc))
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// The kinds worth opening: those no other kind beats (at most the price, at least the allocatable,
/// and open to every class the first is).
fn undominated(p: &Problem<'_>) -> Vec<usize> {
    let nk = p.kinds.len();
    let classes = p.compat.len() / nk.max(1);
    let covers =
        |a: usize, b: usize| (0..classes).all(|c| !p.compat[c * nk + b] || p.compat[c * nk + a]);
    (0..nk)
        .filter(|&k| {
            let kk = &p.kinds[k];
            !(0..nk).any(|j| {
                let kj = &p.kinds[j];
                j != k
                    && kj.price <= kk.price
                    && kk.alloc.fits_in(&kj.alloc)
                    && covers(j, k)
                    && (kj.price < kk.price || kj.alloc != kk.alloc || j < k)
            })
        })
        .collect()
}

/// The best node found so far in a greedy step: efficiency, value, kind, fill, resources used.
type Candidate = (f64, f64, usize, Vec<(usize, u64)>, Resources);

/// The value-per-dollar greedy (see the module doc). `anchored`: every node starts with the largest
/// pod left (first-fit-decreasing's discipline), and only then takes the best-paying rest.
pub(crate) fn greedy(p: &Problem<'_>, how: Value, anchored: bool) -> Vec<Bin> {
    let value = values(p, how);
    let candidates = undominated(p);
    // Per kind, the demands it may hold, largest share first (the fill order).
    let mut order: Vec<Vec<usize>> = (0..p.kinds.len())
        .map(|k| {
            if !candidates.contains(&k) {
                return Vec::new();
            }
            let alloc = &p.kinds[k].alloc;
            let mut ds: Vec<usize> = (0..p.demands.len())
                .filter(|d| {
                    p.compatible(p.demands[*d].class, k) && p.demands[*d].req.fits_in(alloc)
                })
                .collect();
            ds.sort_by(|a, b| {
                let sa = p.demands[*a].req.dominant_share(alloc);
                let sb = p.demands[*b].req.dominant_share(alloc);
                sb.total_cmp(&sa).then(a.cmp(b))
            });
            ds
        })
        .collect();
    // The global size order for anchors: share of the largest allocatable.
    let biggest = p.kinds.iter().fold(Resources::ZERO, |acc, k| Resources {
        cpu_millis: acc.cpu_millis.max(k.alloc.cpu_millis),
        memory_bytes: acc.memory_bytes.max(k.alloc.memory_bytes),
        pods: acc.pods.max(k.alloc.pods),
    });
    let mut by_size: Vec<usize> = (0..p.demands.len()).collect();
    by_size.sort_by(|a, b| {
        let sa = p.demands[*a].req.dominant_share(&biggest);
        let sb = p.demands[*b].req.dominant_share(&biggest);
        sb.total_cmp(&sa).then(a.cmp(b))
    });
    let mut left: Vec<u64> = p.demands.iter().map(|d| d.count).collect();
    let mut bins = Vec::new();
    let mut fill = Vec::new();
    // Exhausted demands are skipped where met and swept out of the lists once an eighth of them is.
    let mut exhausted = 0;
    loop {
        if exhausted * 8 >= by_size.len().max(8) {
            for o in order.iter_mut() {
                o.retain(|d| left[*d] > 0);
            }
            by_size.retain(|d| left[*d] > 0);
            exhausted = 0;
        }
        let anchor = by_size.iter().copied().find(|d| left[*d] > 0);
        let Some(first) = anchor else { break };
        // The smallest CPU and memory any pod left asks: a node with less room is full.
        let (min_cpu, min_mem) =
            by_size
                .iter()
                .filter(|d| left[**d] > 0)
                .fold((u64::MAX, u64::MAX), |(c, m), d| {
                    (
                        c.min(p.demands[*d].req.cpu_millis),
                        m.min(p.demands[*d].req.memory_bytes),
                    )
                });
        let mut best: Option<Candidate> = None;
        for &k in &candidates {
            fill.clear();
            let mut room = p.kinds[k].alloc;
            let mut got = 0.0;
            let mut take = |d: usize, room: &mut Resources, fill: &mut Vec<(usize, u64)>| {
                let n = p.demands[d].req.copies_in(room).min(left[d]);
                if n > 0 {
                    *room = room.saturating_sub(&p.demands[d].req.times(n));
                    got += value[d] * n as f64;
                    fill.push((d, n));
                }
            };
            if anchored {
                if !p.compatible(p.demands[first].class, k) || !p.demands[first].req.fits_in(&room)
                {
                    continue;
                }
                take(first, &mut room, &mut fill);
            }
            for &d in &order[k] {
                if room.cpu_millis < min_cpu || room.memory_bytes < min_mem || room.pods == 0 {
                    break;
                }
                if left[d] == 0 || (anchored && d == first) {
                    continue;
                }
                take(d, &mut room, &mut fill);
            }
            if fill.is_empty() {
                continue;
            }
            let eff = got / p.kinds[k].price;
            let better = match &best {
                None => true,
                Some((be, bg, ..)) => {
                    eff > *be * (1.0 + 1e-9) || (eff >= *be * (1.0 - 1e-9) && got > *bg)
                }
            };
            if better {
                let used = p.kinds[k].alloc.saturating_sub(&room);
                best = Some((eff, got, k, fill.clone(), used));
            }
        }
        let Some((_, _, kind, counts, used)) = best else {
            break;
        };
        let repeat = counts
            .iter()
            .map(|(d, n)| left[*d] / n)
            .min()
            .unwrap_or(1)
            .max(1);
        for (d, n) in &counts {
            left[*d] -= n * repeat;
            exhausted += usize::from(left[*d] == 0);
        }
        for _ in 0..repeat {
            bins.push(Bin {
                kind,
                used,
                counts: counts.clone(),
            });
        }
    }
    bins
}

/// Re-launch every node as the cheapest kind that holds it.
fn resize(p: &Problem<'_>, bins: &mut [Bin]) {
    for b in bins.iter_mut() {
        if let Some(k) = p.cheapest_kind(&b.used, &b.counts)
            && p.kinds[k].price < p.kinds[b.kind].price
        {
            b.kind = k;
        }
    }
}

/// Move every pod of `bins[from]` into the free room of the other nodes (first fit); true when the
/// node was emptied (then the moves are kept), false with nothing changed.
fn empty_into_others(p: &Problem<'_>, bins: &mut [Bin], from: usize) -> bool {
    // (node, resources added, demands added)
    let mut trial: Vec<(usize, Resources, (usize, u64))> = Vec::new();
    let moving = bins[from].counts.clone();
    let mut added: Vec<Resources> = vec![Resources::ZERO; bins.len()];
    for (d, count) in moving {
        let demand = &p.demands[d];
        let mut left = count;
        for (i, b) in bins.iter().enumerate() {
            if left == 0 {
                break;
            }
            if i == from || !p.compatible(demand.class, b.kind) {
                continue;
            }
            let room = p.kinds[b.kind].alloc.saturating_sub(&(b.used + added[i]));
            let n = demand.req.copies_in(&room).min(left);
            if n > 0 {
                added[i] += demand.req.times(n);
                trial.push((i, demand.req.times(n), (d, n)));
                left -= n;
            }
        }
        if left > 0 {
            return false;
        }
    }
    for (i, used, (d, n)) in trial {
        bins[i].used += used;
        add_count(&mut bins[i].counts, d, n);
    }
    bins[from].counts.clear();
    bins[from].used = Resources::ZERO;
    true
}

/// How full a node is: its pods' largest share of the kind's allocatable.
fn fill_ratio(p: &Problem<'_>, b: &Bin) -> f64 {
    b.used.dominant_share(&p.kinds[b.kind].alloc)
}

/// The improvement pass (see the module doc); the result never costs more than `bins`.
pub(crate) fn improve(p: &Problem<'_>, mut bins: Vec<Bin>) -> Vec<Bin> {
    resize(p, &mut bins);
    // Empty the emptiest nodes into the others.
    let mut order: Vec<usize> = (0..bins.len()).collect();
    order.sort_by(|a, b| fill_ratio(p, &bins[*a]).total_cmp(&fill_ratio(p, &bins[*b])));
    for &i in order.iter().take(64) {
        empty_into_others(p, &mut bins, i);
    }
    bins.retain(|b| !b.counts.is_empty());
    resize(p, &mut bins);
    // Merge pairs of the emptiest nodes onto one cheaper kind, while that pays (a bounded number of
    // times: each round sorts the nodes).
    for _ in 0..64 {
        let mut order: Vec<usize> = (0..bins.len()).collect();
        order.sort_by(|a, b| fill_ratio(p, &bins[*a]).total_cmp(&fill_ratio(p, &bins[*b])));
        order.truncate(16);
        let mut best: Option<(f64, usize, usize, usize)> = None;
        for (x, &i) in order.iter().enumerate() {
            for &j in &order[x + 1..] {
                let used = bins[i].used + bins[j].used;
                let mut counts = bins[i].counts.clone();
                counts.extend_from_slice(&bins[j].counts);
                let Some(k) = p.cheapest_kind(&used, &counts) else {
                    continue;
                };
                let saving =
                    p.kinds[bins[i].kind].price + p.kinds[bins[j].kind].price - p.kinds[k].price;
                if saving > 1e-9 && best.is_none_or(|(s, ..)| saving > s) {
                    best = Some((saving, i, j, k));
                }
            }
        }
        let Some((_, i, j, k)) = best else {
            break;
        };
        let moved = std::mem::take(&mut bins[j].counts);
        let used = bins[j].used;
        bins[i].used += used;
        for (d, n) in moved {
            add_count(&mut bins[i].counts, d, n);
        }
        bins[i].kind = k;
        bins.swap_remove(j);
    }
    bins
}

/// Re-plans the pods of the nodes at `picked` together (every greedy variant, re-sized, and with
/// `polish` improved) and keeps the result where it costs less. True when the packing changed.
fn repack(p: &Problem<'_>, bins: &mut Vec<Bin>, picked: &[usize], polish: bool) -> bool {
    let mut counts: Vec<(usize, u64)> = Vec::new();
    let mut was = 0.0;
    for &i in picked {
        was += p.kinds[bins[i].kind].price;
        for (d, c) in &bins[i].counts {
            add_count(&mut counts, *d, *c);
        }
    }
    let demands: Vec<Demand> = counts
        .iter()
        .map(|(d, c)| Demand {
            count: *c,
            ..p.demands[*d].clone()
        })
        .collect();
    let sub = Problem {
        kinds: p.kinds,
        demands: &demands,
        compat: p.compat,
        by_price: p.by_price.clone(),
    };
    let mut best: Option<(f64, Vec<Bin>)> = None;
    for (how, anchored) in [
        (Value::BreakEven, true),
        (Value::Alone, false),
        (Value::BreakEven, false),
        (Value::Alone, true),
    ] {
        let mut candidate = greedy(&sub, how, anchored);
        if polish {
            candidate = improve(&sub, candidate);
        } else {
            resize(&sub, &mut candidate);
        }
        let cost = sub.cost(&candidate);
        if cost < was - 1e-9 && best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((cost, candidate));
        }
    }
    let Some((_, mut fresh)) = best else {
        return false;
    };
    // Back to the full problem's demand numbering.
    for b in fresh.iter_mut() {
        for (d, _) in b.counts.iter_mut() {
            *d = counts[*d].0;
        }
    }
    let mut picked = picked.to_vec();
    picked.sort_unstable_by(|a, b| b.cmp(a));
    for i in picked {
        bins.swap_remove(i);
    }
    bins.extend(fresh);
    true
}

/// Large-neighbourhood search over the tail: the pods of a few of the emptiest nodes, together with a
/// sliding window of fuller ones, re-planned (see [`repack`]) and kept where cheaper; `rounds` repacks at
/// most. The tail of a packing is where whole nodes are lost, and mixing in fuller nodes lets their
/// pods change places with the tail's so that both end on better-filled kinds.
fn local_search(p: &Problem<'_>, mut bins: Vec<Bin>, rounds: usize, polish: bool) -> Vec<Bin> {
    let mut done = 0;
    let mut offset = 0;
    while done < rounds && bins.len() >= 2 {
        bins.sort_by(|a, b| fill_ratio(p, a).total_cmp(&fill_ratio(p, b)));
        let n = bins.len();
        let picked: Vec<usize> = match done {
            // The emptiest 12, then 24.
            0 => (0..12.min(n)).collect(),
            1 => (0..24.min(n)).collect(),
            // Four emptiest and eight from a window that slides up the fill order.
            _ => {
                offset = if 4 + offset + 8 > n { 0 } else { offset };
                (0..4.min(n))
                    .chain((4 + offset)..(4 + offset + 8).min(n))
                    .collect()
            }
        };
        offset += 8;
        repack(p, &mut bins, &picked, polish);
        done += 1;
    }
    bins
}

/// Up to this many pods, every greedy variant is tried; above it, the two that win most often on the
/// generated scenarios (break-even anchored, alone free), which keeps 10,000 pods within the time budget.
const ALL_VARIANTS_UP_TO_PODS: u64 = 2_000;

/// How many repacks the local search makes on the cheapest construction (up to
/// [`ALL_VARIANTS_UP_TO_PODS`]).
const LOCAL_SEARCH_ROUNDS: usize = 48;

/// The constructions, improved; the cheapest (ties: fewer nodes). Karpenter's FFD is among them, so
/// the result never costs more than it.
pub(crate) fn best(p: &Problem<'_>) -> Vec<Bin> {
    let pods: u64 = p.demands.iter().map(|d| d.count).sum();
    let mut variants = vec![(Value::BreakEven, true), (Value::Alone, false)];
    if pods <= ALL_VARIANTS_UP_TO_PODS {
        variants.extend([(Value::BreakEven, false), (Value::Alone, true)]);
    }
    let mut plans = vec![improve(p, karpenter_ffd(p))];
    for (how, anchored) in variants {
        plans.push(improve(p, greedy(p, how, anchored)));
    }
    // Above the threshold only the dozen emptiest nodes of each plan are re-planned (un-polished):
    // the search's `improve` on every repack costs more than 10,000 pods' time budget leaves.
    let small = pods <= ALL_VARIANTS_UP_TO_PODS;
    for plan in plans.iter_mut() {
        *plan = local_search(p, std::mem::take(plan), if small { 2 } else { 1 }, small);
    }
    let key = |bins: &[Bin]| (p.cost(bins), bins.len());
    let best = plans
        .into_iter()
        .min_by(|a, b| {
            let (ca, cb) = (key(a), key(b));
            if (ca.0 - cb.0).abs() <= 1e-9 {
                ca.1.cmp(&cb.1)
            } else {
                ca.0.total_cmp(&cb.0)
            }
        })
        .unwrap_or_default();
    if small {
        local_search(p, best, LOCAL_SEARCH_ROUNDS, true)
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::GIB;

    fn kind(price: f64, cpu: u64, gib: u64) -> Kind {
        Kind {
            price,
            alloc: Resources::new(cpu, gib * GIB, 100),
        }
    }

    fn check(p: &Problem<'_>, bins: &[Bin]) {
        let mut placed = vec![0u64; p.demands.len()];
        for b in bins {
            let mut used = Resources::ZERO;
            for (d, n) in &b.counts {
                assert!(p.compatible(p.demands[*d].class, b.kind));
                used += p.demands[*d].req.times(*n);
                placed[*d] += n;
            }
            assert_eq!(used, b.used);
            assert!(
                used.fits_in(&p.kinds[b.kind].alloc),
                "{used} on {:?}",
                p.kinds[b.kind]
            );
            assert!(!b.counts.is_empty(), "no empty node");
        }
        let want: Vec<u64> = p.demands.iter().map(|d| d.count).collect();
        assert_eq!(placed, want);
    }

    #[test]
    fn mixed_shapes_share_a_general_purpose_node() {
        // c: 2 GiB per CPU, m: 4, r: 8, priced as EC2 prices them (per CPU: c < m < r).
        let kinds = [
            kind(0.17, 4000, 8),
            kind(0.19, 4000, 16),
            kind(0.25, 4000, 32),
        ];
        // CPU-heavy (2 CPU, 1 GiB) and memory-heavy (0.5 CPU, 7 GiB) pods, four of each.
        let demands = [
            Demand {
                class: 0,
                req: Resources::new(2000, GIB, 1),
                count: 4,
            },
            Demand {
                class: 0,
                req: Resources::new(500, 7 * GIB, 1),
                count: 4,
            },
        ];
        let compat = [true; 3];
        let p = Problem::new(&kinds, &demands, &compat);
        let plan = best(&p);
        check(&p, &plan);
        // Pairs (one of each: 2.5 CPU, 8 GiB) fit an m node each: 4 × 0.19 = 0.76. Alone they would need
        // 2 c nodes (0.34) and 1 r node (0.25 for 4 × 7 GiB? no: 28 GiB > 32 - fits) = 0.59 ... so the
        // plan must be no worse than either construction.
        let cost = p.cost(&plan);
        assert!(cost <= p.cost(&karpenter_ffd(&p)) + 1e-9);
        assert!(cost <= p.cost(&greedy(&p, Value::Alone, false)) + 1e-9);
        assert!(cost <= 0.59 + 1e-9, "{cost}");
    }

    #[test]
    fn classes_only_go_to_compatible_kinds() {
        let kinds = [kind(0.1, 4000, 16), kind(0.08, 4000, 16)];
        let demands = [
            Demand {
                class: 0,
                req: Resources::new(1000, GIB, 1),
                count: 3,
            },
            Demand {
                class: 1,
                req: Resources::new(1000, GIB, 1),
                count: 3,
            },
        ];
        // class 0 runs on kind 0 only (say amd64), class 1 anywhere.
        let compat = [true, false, true, true];
        let p = Problem::new(&kinds, &demands, &compat);
        for bins in [
            karpenter_ffd(&p),
            greedy(&p, Value::BreakEven, false),
            greedy(&p, Value::Alone, true),
            best(&p),
        ] {
            check(&p, &bins);
        }
        // One kind-0 node holds three class-0 pods; the class-1 pods take the cheaper kind 1 or share.
        assert!(p.cost(&best(&p)) <= 0.18 + 1e-9);
    }

    #[test]
    fn improve_never_raises_the_cost_and_drops_empty_nodes() {
        let kinds = [kind(0.1, 2000, 8), kind(0.2, 4000, 16), kind(0.4, 8000, 32)];
        let demands = [Demand {
            class: 0,
            req: Resources::new(900, GIB, 1),
            count: 7,
        }];
        let compat = [true; 3];
        let p = Problem::new(&kinds, &demands, &compat);
        // Seven pods on seven big nodes: improve packs them.
        let wasteful: Vec<Bin> = (0..7)
            .map(|_| Bin {
                kind: 2,
                used: Resources::new(900, GIB, 1),
                counts: vec![(0, 1)],
            })
            .collect();
        let better = improve(&p, wasteful.clone());
        check(&p, &better);
        assert!(p.cost(&better) < p.cost(&wasteful));
        // 8 pods of 900m fit in 8000m; 7 need 6300m: one 8-CPU node (0.4) or 2-CPU nodes (2 each, 0.1):
        // 4 small nodes = 0.4. Either way 0.4.
        assert!((p.cost(&better) - 0.4).abs() < 1e-9, "{}", p.cost(&better));
    }
}
