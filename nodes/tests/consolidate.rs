//! Consolidation: empty nodes, underutilized nodes deleted or replaced, consolidateAfter, budgets,
//! do-not-disrupt, and Karpenter's spot-to-spot rule.

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use surge_nodes::{
    Action, CapacityType, Catalog, ClusterNode, ConsolidationInput, DisruptionReason, ExistingNode,
    GIB, NodePool, Pod, Resources, consolidate,
};

fn pool(disruption: &str, requirements: &str) -> NodePool {
    let text = format!(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: p\nspec:\n  disruption:\n{disruption}  template:\n    spec:\n      requirements:\n{requirements}"
    );
    NodePool::from_yaml(&text, "p").unwrap()
}

const CMR: &str =
    "        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}\n";

fn now() -> Timestamp {
    "2024-01-08T12:00:00Z".parse().unwrap()
}

fn node(
    name: &str,
    instance_type: &str,
    ct: CapacityType,
    pods: Vec<Pod>,
    idle_minutes: i64,
) -> ClusterNode {
    ClusterNode {
        node: ExistingNode {
            name: name.into(),
            pool: Some("p".into()),
            instance_type: instance_type.into(),
            capacity_type: ct,
            zone: "us-east-1a".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            requested: Resources::ZERO,
            allocatable: None,
        },
        pods,
        last_pod_event: now() - jiff::SignedDuration::from_mins(idle_minutes),
        initialized: true,
        ready: true,
        marked_for_deletion: false,
    }
}

fn pods(prefix: &str, n: usize, cpu: u64, mem: u64) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod::new(&format!("{prefix}-{i}"), cpu, mem))
        .collect()
}

fn run(
    catalog: &Catalog,
    pools: &[NodePool],
    nodes: &[ClusterNode],
    spot_to_spot: bool,
) -> Vec<surge_nodes::Disruption> {
    consolidate(
        &ConsolidationInput {
            catalog,
            pools,
            nodes,
            daemonsets: &[],
            unavailable: &[],
            spot_to_spot,
        },
        now(),
    )
}

const OD: CapacityType = CapacityType::OnDemand;

#[test]
fn empty_nodes_go_first_and_busy_nodes_stay() {
    let catalog = Catalog::embedded();
    let pools = [pool(
        "    consolidateAfter: 5m\n    budgets: [{nodes: \"100%\"}]\n",
        CMR,
    )];
    let nodes = [
        node("empty", "m7i.xlarge", OD, vec![], 10),
        // Spot, and the spot-to-spot gate off: only deletion could take it, and its pod fits nowhere else.
        node(
            "busy",
            "c7g.large",
            CapacityType::Spot,
            pods("busy", 1, 1800, GIB),
            10,
        ),
    ];
    let d = run(&catalog, &pools, &nodes, false);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].node.as_str(), d[0].reason, &d[0].action),
        ("empty", DisruptionReason::Empty, &Action::Delete)
    );
    assert!((d[0].savings - 0.2016).abs() < 1e-9);
}

#[test]
fn consolidate_after_waits_and_never_means_never() {
    let catalog = Catalog::embedded();
    let nodes = [node("empty", "m7i.xlarge", OD, vec![], 3)];
    let five = [pool("    consolidateAfter: 5m\n", CMR)];
    assert!(
        run(&catalog, &five, &nodes, false).is_empty(),
        "idle 3m < 5m"
    );
    let two = [pool("    consolidateAfter: 2m\n", CMR)];
    assert_eq!(run(&catalog, &two, &nodes, false).len(), 1);
    let never = [pool("    consolidateAfter: Never\n", CMR)];
    assert!(run(&catalog, &never, &nodes, false).is_empty());
}

#[test]
fn underutilized_nodes_are_deleted_when_their_pods_fit_elsewhere() {
    let catalog = Catalog::embedded();
    let pools = [pool("    budgets: [{nodes: \"100%\"}]\n", CMR)];
    // Two m7i.2xlarge (7910m allocatable) each a quarter used: one takes the other's pods.
    let nodes = [
        node("a", "m7i.2xlarge", OD, pods("a", 2, 1000, GIB), 60),
        node("b", "m7i.2xlarge", OD, pods("b", 2, 1000, GIB), 60),
    ];
    let d = run(&catalog, &pools, &nodes, false);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].reason, &d[0].action),
        (DisruptionReason::Underutilized, &Action::Delete)
    );
    // Under WhenEmpty nothing moves.
    let when_empty = [pool(
        "    consolidationPolicy: WhenEmpty\n    budgets: [{nodes: \"100%\"}]\n",
        CMR,
    )];
    assert!(run(&catalog, &when_empty, &nodes, false).is_empty());
}

#[test]
fn an_oversized_node_is_replaced_by_a_cheaper_type() {
    let catalog = Catalog::embedded();
    let pools = [pool("    budgets: [{nodes: \"100%\"}]\n", CMR)];
    let nodes = [node("big", "m7i.4xlarge", OD, pods("x", 1, 500, GIB), 60)];
    let d = run(&catalog, &pools, &nodes, false);
    assert_eq!(d.len(), 1);
    let Action::Replace {
        instance_type,
        capacity_type,
        price,
        ..
    } = &d[0].action
    else {
        panic!("expected a replacement, got {:?}", d[0].action);
    };
    // On-demand to spot is allowed (the pool allows spot); the replacement is the cheapest that fits.
    assert_eq!(*capacity_type, CapacityType::Spot);
    assert!(*price < 0.8064);
    assert!(
        catalog.get(instance_type).unwrap().vcpu <= 2,
        "{instance_type}"
    );
}

#[test]
fn do_not_disrupt_pods_keep_their_node() {
    let catalog = Catalog::embedded();
    let pools = [pool("    budgets: [{nodes: \"100%\"}]\n", CMR)];
    let mut p = Pod::new("precious", 500, GIB);
    p.do_not_disrupt = true;
    let nodes = [node("big", "m7i.4xlarge", OD, vec![p], 60)];
    assert!(run(&catalog, &pools, &nodes, false).is_empty());
}

#[test]
fn budgets_cap_the_disruptions_and_zero_stops_them() {
    let catalog = Catalog::embedded();
    let empties: Vec<ClusterNode> = (0..10)
        .map(|i| node(&format!("e{i}"), "m7i.large", OD, vec![], 60))
        .collect();
    // Default 10 % of 10 nodes: 1.
    let default = [pool("    consolidateAfter: 0s\n", CMR)];
    assert_eq!(run(&catalog, &default, &empties, false).len(), 1);
    // 25 % of 10 rounds up to 3.
    let quarter = [pool("    budgets: [{nodes: \"25%\"}]\n", CMR)];
    assert_eq!(run(&catalog, &quarter, &empties, false).len(), 3);
    // A node already disrupting (not ready) uses one of the 3.
    let mut with_unready = empties.clone();
    with_unready[9].ready = false;
    assert_eq!(run(&catalog, &quarter, &with_unready, false).len(), 2);
    // 0 stops voluntary disruption; a 0 only for Underutilized leaves Empty alone.
    let zero = [pool("    budgets: [{nodes: \"0\"}]\n", CMR)];
    assert!(run(&catalog, &zero, &empties, false).is_empty());
    let zero_underutilized = [pool(
        "    budgets: [{nodes: \"0\", reasons: [Underutilized]}, {nodes: \"2\"}]\n",
        CMR,
    )];
    assert_eq!(run(&catalog, &zero_underutilized, &empties, false).len(), 2);
    // A scheduled 0 budget: active Mondays 09:00-17:00 (now is Monday 12:00).
    let business_hours = [pool(
        "    budgets: [{nodes: \"100%\"}, {nodes: \"0\", schedule: \"0 9 * * mon-fri\", duration: 8h}]\n",
        CMR,
    )];
    assert!(run(&catalog, &business_hours, &empties, false).is_empty());
}

/// Spot-to-spot replacement needs the gate and at least 15 cheaper spot types that take the pods
/// (kubernetes-sigs/karpenter `pkg/controllers/disruption/consolidation.go`,
/// `MinInstanceTypesForSpotToSpotConsolidation`).
#[test]
fn spot_to_spot_needs_fifteen_cheaper_types() {
    let catalog = Catalog::embedded();
    let pools = [pool("    budgets: [{nodes: \"100%\"}]\n", CMR)];
    // A spot r7i.4xlarge (~0.43/h) holding one small pod: plenty of cheaper spot types take it.
    let nodes = [node(
        "spot",
        "r7i.4xlarge",
        CapacityType::Spot,
        pods("s", 1, 500, GIB),
        60,
    )];
    assert!(
        run(&catalog, &pools, &nodes, false).is_empty(),
        "gate off: no spot-to-spot replacement"
    );
    let d = run(&catalog, &pools, &nodes, true);
    assert_eq!(d.len(), 1);
    assert!(matches!(
        d[0].action,
        Action::Replace {
            capacity_type: CapacityType::Spot,
            ..
        }
    ));
    // Restricted to a few families, fewer than 15 cheaper types remain: the node stays.
    let narrow = [pool(
        "    budgets: [{nodes: \"100%\"}]\n",
        "        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [r7i]}\n",
    )];
    assert!(run(&catalog, &narrow, &nodes, true).is_empty());
}

#[test]
fn decisions_in_one_pass_do_not_double_book_room() {
    let catalog = Catalog::embedded();
    let pools = [pool("    budgets: [{nodes: \"100%\"}]\n", CMR)];
    // Three m7i.xlarge (3920m) with 1800m each: one can absorb one other, not both.
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            node(
                &format!("n{i}"),
                "m7i.xlarge",
                OD,
                pods(&format!("n{i}"), 1, 1800, GIB),
                60,
            )
        })
        .collect();
    let d = run(&catalog, &pools, &nodes, false);
    // n0's pod moves to n1 (3600m of 3920m); n1 took pods so it stays; n2's pod fits nowhere
    // else and its node is replaced by a cheaper one.
    let actions: Vec<(&str, bool)> = d
        .iter()
        .map(|x| (x.node.as_str(), x.action == Action::Delete))
        .collect();
    assert_eq!(actions, [("n0", true), ("n2", false)], "{d:?}");
}
