//! Provisioning: order of placement, pools, spot/on-demand, fallback, limits, selectors, taints, reasons.

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use surge_nodes::{
    CapacityType, Catalog, ExistingNode, GIB, MIB, NodePool, Operator, Plan, Pod, ProvisionInput,
    Requirement, Resources, Strategy, Toleration, TolerationOperator, Unavailable, plan, plan_with,
};

fn pool_yaml(name: &str, weight: Option<u32>, requirements: &str, extra_spec: &str) -> NodePool {
    let weight = weight
        .map(|w| format!("  weight: {w}\n"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: {name}\nspec:\n{weight}{extra_spec}  template:\n    spec:\n      requirements:\n{requirements}"
    );
    NodePool::from_yaml(&text, name).unwrap()
}

fn req(key: &str, op: &str, values: &[&str]) -> String {
    let values = values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("        - {{key: {key}, operator: {op}, values: [{values}]}}\n")
}

fn pods(prefix: &str, n: usize, cpu_millis: u64, memory_bytes: u64) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod::new(&format!("{prefix}-{i}"), cpu_millis, memory_bytes))
        .collect()
}

fn input<'a>(catalog: &'a Catalog, pools: &'a [NodePool], pods: &'a [Pod]) -> ProvisionInput<'a> {
    ProvisionInput {
        catalog,
        pools,
        pods,
        existing: &[],
        in_flight: &[],
        daemonsets: &[],
        unavailable: &[],
    }
}

/// Every pod is placed once (bound, on a new node, or unschedulable), no new node is empty, and each
/// new node's pods fit its type's allocatable less the DaemonSets.
fn check(catalog: &Catalog, input: &ProvisionInput<'_>, plan: &Plan) {
    let mut seen = BTreeSet::new();
    let all = plan
        .bound
        .iter()
        .flat_map(|b| b.pods.iter())
        .chain(plan.nodes.iter().flat_map(|n| n.pods.iter()))
        .chain(plan.unschedulable.iter().map(|u| &u.pod));
    for p in all {
        assert!(seen.insert(p.clone()), "{p} placed twice");
    }
    assert_eq!(seen.len(), input.pods.len(), "every pod accounted for");
    let by_name: BTreeMap<&str, &Pod> = input.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let ds = input
        .daemonsets
        .iter()
        .fold(Resources::ZERO, |a, d| a + d.requests());
    for n in &plan.nodes {
        assert!(!n.pods.is_empty(), "{} is empty", n.name);
        let t = catalog.get(&n.instance_type).unwrap();
        let used = n
            .pods
            .iter()
            .fold(ds, |a, p| a + by_name[p.as_str()].requests());
        assert!(
            used.fits_in(&t.allocatable),
            "{}: {used} on {} ({})",
            n.name,
            t.name,
            t.allocatable
        );
        assert!(t.zones.contains(&n.zone));
        assert!((t.price(n.capacity_type) - n.price).abs() < 1e-12);
    }
}

/// A typical general-purpose pool: c, m and r families (no burstable t3), spot and on-demand.
fn general() -> NodePool {
    pool_yaml(
        "general",
        None,
        &req(
            "karpenter.k8s.aws/instance-category",
            "In",
            &["c", "m", "r"],
        ),
        "",
    )
}

#[test]
fn existing_capacity_first_then_in_flight_then_new_nodes() {
    let catalog = Catalog::embedded();
    let pools = [general()];
    let ps = pods("web", 10, 1000, GIB);
    let node = |name: &str, requested: u64| ExistingNode {
        name: name.into(),
        pool: Some("general".into()),
        instance_type: "m7i.xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        zone: "us-east-1a".into(),
        labels: BTreeMap::new(),
        taints: vec![],
        requested: Resources::new(requested, 0, 1),
        allocatable: None,
    };
    // m7i.xlarge: 3920m allocatable. The existing node has 1920m free (one pod); the claim 3920m (three).
    let existing = [node("existing", 2000)];
    let in_flight = [node("claim", 0)];
    let inp = ProvisionInput {
        existing: &existing,
        in_flight: &in_flight,
        ..input(&catalog, &pools, &ps)
    };
    let plan = plan(&inp);
    check(&catalog, &inp, &plan);
    assert_eq!(plan.bound.len(), 2);
    assert_eq!(
        (plan.bound[0].node.as_str(), plan.bound[0].pods.len()),
        ("existing", 1)
    );
    assert_eq!(
        (plan.bound[1].node.as_str(), plan.bound[1].pods.len()),
        ("claim", 3)
    );
    let on_new: usize = plan.nodes.iter().map(|n| n.pods.len()).sum();
    assert_eq!(on_new, 6);
    assert!(plan.unschedulable.is_empty());
}

#[test]
fn pools_are_tried_in_descending_weight() {
    let catalog = Catalog::embedded();
    // The heavy pool only has on-demand m7i; the default pool everything (cheaper spot arm64).
    let heavy = pool_yaml(
        "reserved-first",
        Some(80),
        &(req("karpenter.k8s.aws/instance-family", "In", &["m7i"])
            + &req("karpenter.sh/capacity-type", "In", &["on-demand"])),
        "",
    );
    let pools = [general(), heavy];
    let ps = pods("api", 4, 500, GIB);
    let plan = plan(&input(&catalog, &pools, &ps));
    assert!(!plan.nodes.is_empty());
    for n in &plan.nodes {
        assert_eq!(n.pool, "reserved-first");
        assert!(n.instance_type.starts_with("m7i."));
        assert_eq!(n.capacity_type, CapacityType::OnDemand);
    }
}

#[test]
fn spot_before_on_demand_with_fallback_when_spot_is_unavailable() {
    let catalog = Catalog::embedded();
    let pools = [pool_yaml(
        "p",
        None,
        &req(
            "node.kubernetes.io/instance-type",
            "In",
            &["m7i.large", "m7i.xlarge"],
        ),
        "",
    )];
    let ps = pods("w", 1, 1000, 2 * GIB);
    let p = plan(&input(&catalog, &pools, &ps));
    assert_eq!(p.nodes.len(), 1);
    assert_eq!(
        (p.nodes[0].instance_type.as_str(), p.nodes[0].capacity_type),
        ("m7i.large", CapacityType::Spot)
    );
    // The spot claim for m7i.large never became a node: the next-cheapest spot offering.
    let u1 = [Unavailable {
        instance_type: "m7i.large".into(),
        capacity_type: Some(CapacityType::Spot),
        zone: None,
    }];
    let p = plan(&ProvisionInput {
        unavailable: &u1,
        ..input(&catalog, &pools, &ps)
    });
    assert_eq!(
        (p.nodes[0].instance_type.as_str(), p.nodes[0].capacity_type),
        ("m7i.xlarge", CapacityType::Spot)
    );
    // No spot anywhere: on-demand.
    let u2 = [
        Unavailable {
            instance_type: "m7i.large".into(),
            capacity_type: Some(CapacityType::Spot),
            zone: None,
        },
        Unavailable {
            instance_type: "m7i.xlarge".into(),
            capacity_type: Some(CapacityType::Spot),
            zone: None,
        },
    ];
    let p = plan(&ProvisionInput {
        unavailable: &u2,
        ..input(&catalog, &pools, &ps)
    });
    assert_eq!(
        (p.nodes[0].instance_type.as_str(), p.nodes[0].capacity_type),
        ("m7i.large", CapacityType::OnDemand)
    );
    // Spot unavailable in one zone only: still spot, in another zone.
    let u3 = [Unavailable {
        instance_type: "m7i.large".into(),
        capacity_type: Some(CapacityType::Spot),
        zone: Some("us-east-1a".into()),
    }];
    let p = plan(&ProvisionInput {
        unavailable: &u3,
        ..input(&catalog, &pools, &ps)
    });
    assert_eq!(
        (p.nodes[0].instance_type.as_str(), p.nodes[0].capacity_type),
        ("m7i.large", CapacityType::Spot)
    );
    assert_ne!(p.nodes[0].zone, "us-east-1a");
}

#[test]
fn selectors_affinity_and_taints_decide_where_pods_go() {
    let catalog = Catalog::embedded();
    let tainted = pool_yaml(
        "gpu-ish",
        Some(100),
        &req("kubernetes.io/os", "In", &["linux"]),
        "",
    );
    let tainted = NodePool {
        taints: vec![surge_nodes::Taint {
            key: "dedicated".into(),
            value: Some("batch".into()),
            effect: surge_nodes::TaintEffect::NoSchedule,
        }],
        ..tainted
    };
    let pools = [general(), tainted];
    let mut arm = Pod::new("arm", 500, GIB);
    arm.node_selector
        .insert("kubernetes.io/arch".into(), "arm64".into());
    let mut amd_zone = Pod::new("amd-zone", 500, GIB);
    amd_zone.required_node_affinity = vec![vec![
        Requirement::new("kubernetes.io/arch", Operator::In, &["amd64"]),
        Requirement::new("topology.kubernetes.io/zone", Operator::In, &["us-east-1c"]),
        Requirement::new("karpenter.sh/capacity-type", Operator::In, &["on-demand"]),
    ]];
    let mut batch = Pod::new("batch", 500, GIB);
    batch.tolerations.push(Toleration {
        key: "dedicated".into(),
        operator: TolerationOperator::Equal,
        value: "batch".into(),
        effect: None,
    });
    let ps = [arm, amd_zone, batch];
    let inp = input(&catalog, &pools, &ps);
    let plan = plan(&inp);
    check(&catalog, &inp, &plan);
    let node_of = |pod: &str| {
        plan.nodes
            .iter()
            .find(|n| n.pods.iter().any(|p| p == pod))
            .unwrap()
    };
    let arm = node_of("arm");
    assert_eq!(catalog.get(&arm.instance_type).unwrap().arch, "arm64");
    assert_eq!(
        arm.pool, "general",
        "the tainted pool is heavier but the pod does not tolerate it"
    );
    let amd = node_of("amd-zone");
    assert_eq!(catalog.get(&amd.instance_type).unwrap().arch, "amd64");
    assert_eq!(
        (amd.zone.as_str(), amd.capacity_type),
        ("us-east-1c", CapacityType::OnDemand)
    );
    assert_eq!(node_of("batch").pool, "gpu-ish");
}

#[test]
fn pool_limits_are_respected_and_the_rest_goes_on() {
    let catalog = Catalog::embedded();
    let limited = pool_yaml(
        "limited",
        Some(10),
        &req("kubernetes.io/os", "In", &["linux"]),
        "  limits:\n    cpu: \"16\"\n",
    );
    let ps = pods("w", 40, 1000, GIB);
    let only = [limited.clone()];
    let inp = input(&catalog, &only, &ps);
    let p = plan(&inp);
    check(&catalog, &inp, &p);
    let cpu: u64 = p
        .nodes
        .iter()
        .map(|n| catalog.get(&n.instance_type).unwrap().vcpu)
        .sum();
    assert!(cpu <= 16, "{cpu} vCPU launched under a 16 vCPU limit");
    assert!(!p.unschedulable.is_empty());
    assert!(
        p.unschedulable
            .iter()
            .all(|u| u.reason == "pool limited: limits reached"),
        "{:?}",
        p.unschedulable[0]
    );
    // With a second pool the rest launches there.
    let both = [limited, general()];
    let inp = input(&catalog, &both, &ps);
    let p = plan(&inp);
    check(&catalog, &inp, &p);
    assert!(p.unschedulable.is_empty());
    assert!(p.nodes.iter().any(|n| n.pool == "general"));
    // Existing nodes of the pool count against its limit: 16 vCPU already there leaves nothing.
    let existing = [ExistingNode {
        name: "big".into(),
        pool: Some("limited".into()),
        instance_type: "m7i.4xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        zone: "us-east-1a".into(),
        labels: BTreeMap::new(),
        taints: vec![],
        requested: Resources::new(15_800, 0, 10),
        allocatable: None,
    }];
    let inp = ProvisionInput {
        existing: &existing,
        ..input(&catalog, &only, &ps)
    };
    let p = plan(&inp);
    assert!(p.nodes.is_empty());
    assert_eq!(p.unschedulable.len(), 40);
}

#[test]
fn a_pod_that_fits_nowhere_is_reported_with_the_requirement_that_failed() {
    let catalog = Catalog::embedded();
    let arm_only = pool_yaml(
        "arm",
        None,
        &req("kubernetes.io/arch", "In", &["arm64"]),
        "",
    );
    let pools = [arm_only];
    let mut s390 = Pod::new("s390", 100, MIB);
    s390.node_selector
        .insert("kubernetes.io/arch".into(), "amd64".into());
    let huge = Pod::new("huge", 300_000, GIB);
    let mut team = Pod::new("team", 100, MIB);
    team.node_selector.insert("team".into(), "payments".into());
    let ps = [s390, huge, team];
    let p = plan(&input(&catalog, &pools, &ps));
    let reason = |pod: &str| {
        p.unschedulable
            .iter()
            .find(|u| u.pod == pod)
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(
        reason("s390"),
        "pool arm: requirement kubernetes.io/arch In [amd64] matches none of its offerings"
    );
    assert!(reason("huge").starts_with("pool arm: requests (cpu 300000m, memory 1024Mi, pods 1) fit no compatible instance type (largest: "), "{}", reason("huge"));
    assert_eq!(
        reason("team"),
        "pool arm: requirement team In [payments] matches none of its offerings"
    );
    let none = plan(&input(&catalog, &[], &ps));
    assert!(
        none.unschedulable
            .iter()
            .all(|u| u.reason.starts_with("no NodePool"))
    );
}

#[test]
fn daemonsets_take_room_on_every_node() {
    let catalog = Catalog::embedded();
    let pools = [pool_yaml(
        "p",
        None,
        &req(
            "node.kubernetes.io/instance-type",
            "In",
            &["m7i.large", "m7i.xlarge"],
        ),
        "",
    )];
    // m7i.large allocatable: 1930m. A 1800m pod fits it alone, not with a 200m DaemonSet.
    let ps = pods("w", 1, 1800, GIB);
    let p = plan(&input(&catalog, &pools, &ps));
    assert_eq!(p.nodes[0].instance_type, "m7i.large");
    let ds = [Pod::new("kube-system/aws-node", 200, 128 * MIB)];
    let inp = ProvisionInput {
        daemonsets: &ds,
        ..input(&catalog, &pools, &ps)
    };
    let p = plan(&inp);
    check(&catalog, &inp, &p);
    assert_eq!(p.nodes[0].instance_type, "m7i.xlarge");
}

/// Many pods pending at once: one packing, never a claim per pod, no empty claim, never dearer than
/// Karpenter's first-fit-decreasing.
#[test]
fn a_burst_of_pending_pods_gets_only_the_nodes_it_needs() {
    let catalog = Catalog::embedded();
    let pools = [general()];
    let mut ps = pods("web", 3000, 250, 512 * MIB);
    ps.extend(pods("cache", 200, 500, 6 * GIB));
    ps.extend(pods("batch", 300, 2000, 2 * GIB));
    let inp = input(&catalog, &pools, &ps);
    let best = plan(&inp);
    check(&catalog, &inp, &best);
    assert!(best.unschedulable.is_empty());
    let ffd = plan_with(&inp, Strategy::KarpenterFfd);
    check(&catalog, &inp, &ffd);
    assert!(
        best.cost_per_hour() <= ffd.cost_per_hour() + 1e-9,
        "{} vs {}",
        best.cost_per_hour(),
        ffd.cost_per_hour()
    );
    // One packing for the burst, not a claim per pod (nor per handful of pods).
    assert!(
        best.nodes.len() * 5 <= ps.len(),
        "{} nodes for {} pods",
        best.nodes.len(),
        ps.len()
    );
}

#[test]
fn the_plan_serializes_as_the_cli_prints_it() {
    let catalog = Catalog::embedded();
    let pools = [general()];
    let ps = pods("w", 2, 500, GIB);
    let p = plan(&input(&catalog, &pools, &ps));
    let json = serde_json::to_value(&p).unwrap();
    let node = &json["nodes"][0];
    for field in ["name", "instance_type", "capacity_type", "zone", "pods"] {
        assert!(!node[field].is_null(), "{field} in {node}");
    }
    assert_eq!(node["capacity_type"], "spot");
    assert!(json["unschedulable"].as_array().unwrap().is_empty());
}

#[test]
fn a_planned_node_becomes_a_node_claim_pinned_to_its_offering() {
    let catalog = Catalog::embedded();
    let pool = NodePool::from_yaml(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: general}\nspec:\n  template:\n    metadata: {labels: {team: web}}\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n      taints: [{key: dedicated, value: web, effect: NoSchedule}]\n      expireAfter: 720h\n      requirements:\n        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}\n",
        "general",
    )
    .unwrap();
    let mut ps = pods("web", 3, 1000, GIB);
    for p in ps.iter_mut() {
        p.tolerations.push(Toleration {
            key: "dedicated".into(),
            operator: TolerationOperator::Equal,
            value: "web".into(),
            effect: None,
        });
    }
    let pools = [pool];
    let decided = plan(&input(&catalog, &pools, &ps));
    let node = &decided.nodes[0];
    let claim = node.node_claim(&pools[0], 3000, 3 * GIB);
    let get = |path: &[&str]| {
        path.iter()
            .try_fold(&claim, |v, k| v.get(*k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(get(&["apiVersion"]).as_str(), Some("karpenter.sh/v1"));
    assert_eq!(get(&["kind"]).as_str(), Some("NodeClaim"));
    assert_eq!(
        get(&["metadata", "name"]).as_str(),
        Some(node.name.as_str())
    );
    assert_eq!(
        get(&["metadata", "labels", "karpenter.sh/nodepool"]).as_str(),
        Some("general")
    );
    assert_eq!(get(&["metadata", "labels", "team"]).as_str(), Some("web"));
    assert_eq!(
        get(&["spec", "nodeClassRef", "kind"]).as_str(),
        Some("EC2NodeClass")
    );
    assert_eq!(get(&["spec", "expireAfter"]).as_str(), Some("720h"));
    assert_eq!(
        get(&["spec", "taints"]).as_sequence().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        get(&["spec", "resources", "requests", "cpu"]).as_str(),
        Some("3000m")
    );
    let reqs = get(&["spec", "requirements"]);
    let find = |key: &str| {
        reqs.as_sequence()
            .unwrap()
            .iter()
            .find(|r| r.get("key").and_then(|k| k.as_str()) == Some(key))
            .and_then(|r| r.get("values"))
            .and_then(|v| v.as_sequence())
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(
        find("node.kubernetes.io/instance-type"),
        Some(vec![node.instance_type.clone()])
    );
    assert_eq!(
        find("karpenter.sh/capacity-type"),
        Some(vec![node.capacity_type.to_string()])
    );
    assert_eq!(
        find("topology.kubernetes.io/zone"),
        Some(vec![node.zone.clone()])
    );
    assert_eq!(
        find("karpenter.k8s.aws/instance-category"),
        Some(vec!["c".into(), "m".into(), "r".into()])
    );
}
