//! Provisioning speed: 10,000 pending pods over the full embedded catalog (one pool of c, m and r
//! families, spot and on-demand, every zone), with and without arch/capacity-type selectors.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_nodes::{Catalog, NodePool, ProvisionInput, Strategy, plan_with};

fn bench_plan(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    // The whole catalog, t3 included.
    let everything = NodePool::from_yaml(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: all}\nspec:\n  template:\n    spec:\n      requirements: []\n",
        "all",
    )
    .expect("the bench pool loads");
    let mut group = c.benchmark_group("plan");
    group.sample_size(20);
    for (name, pool, selectors) in [
        ("10k_pods_full_catalog", everything.clone(), false),
        ("10k_pods_cmr_pool", common::general_pool(), false),
        ("10k_pods_selectors", common::general_pool(), true),
    ] {
        let pods = common::scenario(42, 10_000, selectors);
        let pools = [pool];
        let input = ProvisionInput {
            catalog: &catalog,
            pools: &pools,
            pods: &pods,
            existing: &[],
            in_flight: &[],
            daemonsets: &[],
            unavailable: &[],
        };
        group.throughput(Throughput::Elements(pods.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(plan_with(black_box(&input), Strategy::Best)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
