//! NodePool parsing, refusals with located errors, and disruption budgets (ported from Karpenter).

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use jiff::{SignedDuration, Timestamp};
use surge_nodes::cron::Schedule;
use surge_nodes::{
    Budget, BudgetNodes, ConsolidationPolicy, DisruptionReason, GIB, NodePool, Operator,
    PoolDisruption, TaintEffect,
};

const FULL: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: general
  annotations:
    kubernetes.io/description: "General purpose"
spec:
  template:
    metadata:
      labels:
        team: web
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["spot", "on-demand"]
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64", "arm64"]
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: ["c", "m", "r"]
        - key: karpenter.k8s.aws/instance-generation
          operator: Gt
          values: ["5"]
        - key: karpenter.k8s.aws/instance-cpu
          operator: Lt
          values: ["65"]
        - key: topology.kubernetes.io/zone
          operator: NotIn
          values: ["us-east-1d"]
        - key: karpenter.k8s.aws/instance-size
          operator: Exists
        - key: node.kubernetes.io/instance-type
          operator: DoesNotExist
        - key: environment
          operator: In
          values: ["prod"]
      taints:
        - key: example.com/special
          value: "true"
          effect: NoSchedule
      startupTaints:
        - key: example.com/booting
          effect: NoExecute
      expireAfter: 720h
  limits:
    cpu: 1000
    memory: 1000Gi
  weight: 50
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m30s
    budgets:
      - nodes: "20%"
        reasons: ["Empty", "Drifted"]
      - nodes: "5"
      - nodes: "0"
        schedule: "0 9 * * mon-fri"
        duration: 8h
"#;

#[test]
fn a_full_nodepool_reads_as_written() {
    let p = NodePool::from_yaml(FULL, "general.yaml").unwrap();
    assert_eq!(p.name, "general");
    assert_eq!(p.weight, 50);
    assert_eq!(p.requirements.len(), 8);
    assert_eq!(p.requirements[3].operator, Operator::Gt);
    assert_eq!(p.labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        p.labels.get("environment").map(String::as_str),
        Some("prod"),
        "custom In requirement"
    );
    assert_eq!(p.taints[0].effect, TaintEffect::NoSchedule);
    assert_eq!(p.startup_taints[0].key, "example.com/booting");
    assert_eq!(p.limits.cpu_millis, Some(1_000_000));
    assert_eq!(p.limits.memory_bytes, Some(1000 * GIB));
    assert_eq!(
        p.disruption.consolidation_policy,
        ConsolidationPolicy::WhenEmptyOrUnderutilized
    );
    assert_eq!(
        p.disruption.consolidate_after,
        Some(SignedDuration::from_secs(90))
    );
    assert_eq!(p.disruption.budgets.len(), 3);
    assert_eq!(p.disruption.budgets[0].nodes, BudgetNodes::Percent(20));
    assert_eq!(p.expire_after.as_deref(), Some("720h"));
    assert_eq!(
        p.node_class_ref.as_ref().map(|r| r.name.as_str()),
        Some("default")
    );
}

#[test]
fn defaults_are_karpenters() {
    let text = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      requirements: []\n";
    let p = NodePool::from_yaml(text, "d.yaml").unwrap();
    assert_eq!(p.weight, 0);
    assert_eq!(
        p.disruption.consolidation_policy,
        ConsolidationPolicy::WhenEmptyOrUnderutilized
    );
    assert_eq!(p.disruption.consolidate_after, Some(SignedDuration::ZERO));
    assert_eq!(
        p.disruption.budgets,
        vec![Budget {
            nodes: BudgetNodes::Percent(10),
            schedule: None,
            reasons: None
        }]
    );
    let never = text.replace(
        "spec:\n  template",
        "spec:\n  disruption: {consolidateAfter: Never}\n  template",
    );
    assert_eq!(
        NodePool::from_yaml(&never, "n.yaml")
            .unwrap()
            .disruption
            .consolidate_after,
        None
    );
}

/// What surge cannot honour in full is refused, each problem with its line, column and field path.
#[test]
fn fields_surge_cannot_honour_are_refused_with_their_path() {
    let text = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: bad
spec:
  replicas: 3
  weight: 500
  template:
    spec:
      requirements:
        - key: node.kubernetes.io/instance-type
          operator: In
          values: ["m7i.large", "m7i.xlarge"]
          minValues: 2
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["reserved"]
        - key: team
          operator: NotIn
          values: ["a"]
        - key: kubernetes.io/arch
          operator: Gt
          values: ["x"]
  limits:
    nvidia.com/gpu: 4
    cpu: lots
  disruption:
    consolidationPolicy: Balanced
    consolidateAfter: 10d
    budgets:
      - nodes: "110%"
      - nodes: "1"
        schedule: "@daily"
      - nodes: "1"
        schedule: "0 0 * * tue-mon"
        duration: 1h
"#;
    let errs = NodePool::from_yaml(text, "bad.yaml").unwrap_err();
    let got: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
    let want = [
        "bad.yaml:6:3: spec.replicas: static NodePools (replicas, alpha) are not supported: surge sizes pools from pod demand",
        "bad.yaml:7:3: spec.weight: 500 is not between 1 and 100",
        "bad.yaml:14:11: spec.template.spec.requirements[0].minValues: minValues is not honoured: surge plans one instance type per node, not a flexible set",
        "bad.yaml:17:11: spec.template.spec.requirements[1].values: capacity type \"reserved\" is not spot or on-demand",
        "bad.yaml:18:11: spec.template.spec.requirements[2].key: team: on a label the catalog does not carry only `In` with one value (the node's label) is supported",
        "bad.yaml:23:11: spec.template.spec.requirements[3].values: kubernetes.io/arch: Gt needs exactly one integer value",
        "bad.yaml:26:5: spec.limits.cpu: \"lots\" is not a quantity (e.g. 500m, 2, 128Mi, 1Gi)",
        "bad.yaml:25:5: spec.limits.nvidia.com/gpu: a limit on \"nvidia.com/gpu\" is not supported (the catalog carries cpu, memory and nodes)",
        "bad.yaml:28:5: spec.disruption.consolidationPolicy: \"Balanced\" is not supported (WhenEmpty or WhenEmptyOrUnderutilized)",
        "bad.yaml:29:5: spec.disruption.consolidateAfter: \"10d\" is not a duration (e.g. 1h, 1m, 1s)",
        "bad.yaml:31:9: spec.disruption.budgets[0].nodes: \"110%\" is not a node count or a percent up to 100%",
        "bad.yaml:32:9: spec.disruption.budgets[1].duration: 'schedule' must be set with 'duration'",
        "bad.yaml:35:9: spec.disruption.budgets[2].schedule: beginning of range (2) beyond end of range (1): tue-mon",
    ];
    assert_eq!(got, want);
}

#[test]
fn unknown_fields_and_type_errors_name_the_field() {
    let typo = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: t}\nspec:\n  template:\n    spec:\n      requirement: []\n";
    let e = NodePool::from_yaml(typo, "t.yaml").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].path, "spec.template.spec.requirement");
    assert_eq!(e.0[0].line, Some(7));
    assert!(
        e.0[0].reason.contains("unknown field `requirement`"),
        "{}",
        e.0[0].reason
    );
    let op = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: t}\nspec:\n  template:\n    spec:\n      requirements:\n        - {key: kubernetes.io/arch, operator: Equals, values: [amd64]}\n";
    let e = NodePool::from_yaml(op, "t.yaml").unwrap_err();
    assert_eq!(e.0[0].path, "spec.template.spec.requirements[0].operator");
    assert_eq!(e.0[0].line, Some(8));
}

#[test]
fn several_documents_read_as_several_pools() {
    let two = format!(
        "{FULL}---\n{}",
        FULL.replace("name: general", "name: second")
    );
    let pools = NodePool::all_from_yaml(&two, "pools.yaml").unwrap();
    assert_eq!(
        pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["general", "second"]
    );
}

// ---- Budgets: kubernetes-sigs/karpenter pkg/apis/v1/nodepool_budgets_test.go at
// 2266468104f36373ed002241afaee2d3bbc26078, one test per upstream `It`.

fn budget(
    nodes: &str,
    schedule: Option<&str>,
    duration: Option<&str>,
    reasons: Option<&[DisruptionReason]>,
) -> Budget {
    let nodes = match nodes.strip_suffix('%') {
        Some(p) => BudgetNodes::Percent(p.parse().unwrap()),
        None => BudgetNodes::Count(nodes.parse().unwrap()),
    };
    Budget {
        nodes,
        schedule: schedule.map(|s| {
            (
                Schedule::parse(s).unwrap(),
                surge_nodes::parse_duration(duration.unwrap(), "hm").unwrap(),
            )
        }),
        reasons: reasons.map(<[DisruptionReason]>::to_vec),
    }
}

/// The upstream BeforeEach: six budgets, all active every minute for 1h except the weekly one.
fn upstream_budgets() -> Vec<Budget> {
    use DisruptionReason::*;
    let every = Some("* * * * *");
    let h = Some("1h");
    vec![
        budget("10", every, h, None),
        budget("100", every, h, None),
        budget("100%", every, h, None),
        budget("15", every, h, Some(&[Drifted, Underutilized])),
        budget("5", every, h, Some(&[Drifted])),
        budget(
            "0",
            Some("@weekly"),
            h,
            Some(&[Underutilized, Drifted, Empty]),
        ),
    ]
}

fn pool(budgets: Vec<Budget>) -> PoolDisruption {
    PoolDisruption {
        consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
        consolidate_after: Some(SignedDuration::ZERO),
        budgets,
    }
}

/// "Set the time to the middle of the year of 2000, the best year ever"
fn upstream_now() -> Timestamp {
    "2000-06-15T12:30:30Z".parse().unwrap()
}

const ALL_REASONS: [DisruptionReason; 3] = [
    DisruptionReason::Empty,
    DisruptionReason::Underutilized,
    DisruptionReason::Drifted,
];

#[test]
fn budgets_should_return_0_for_all_reasons_if_a_budget_is_active_for_all_reasons() {
    let mut b = upstream_budgets();
    b[5] = budget("0", Some("* * * * *"), Some("1h"), b[5].reasons.as_deref());
    for r in ALL_REASONS {
        assert_eq!(pool(b.clone()).allowed(upstream_now(), 100, r), 0, "{r:?}");
    }
}

#[test]
fn budgets_should_return_max_for_all_reasons_when_there_are_no_active_budgets() {
    let b: Vec<Budget> = upstream_budgets()
        .into_iter()
        .map(|x| Budget {
            schedule: Some((
                Schedule::parse("@yearly").unwrap(),
                SignedDuration::from_hours(1),
            )),
            ..x
        })
        .collect();
    for r in ALL_REASONS {
        assert_eq!(
            pool(b.clone()).allowed(upstream_now(), 100, r),
            u64::MAX,
            "{r:?}"
        );
    }
}

#[test]
fn budgets_should_ignore_reason_defined_budgets_when_inactive() {
    let mut b = upstream_budgets();
    for i in [3, 4] {
        b[i].schedule = Some((
            Schedule::parse("@yearly").unwrap(),
            SignedDuration::from_hours(1),
        ));
    }
    for r in ALL_REASONS {
        assert_eq!(pool(b.clone()).allowed(upstream_now(), 100, r), 10, "{r:?}");
    }
}

#[test]
fn budgets_should_return_the_budget_for_all_disruption_reasons_when_undefined() {
    let b = upstream_budgets()[..1].to_vec();
    for r in ALL_REASONS {
        assert_eq!(pool(b.clone()).allowed(upstream_now(), 100, r), 10, "{r:?}");
    }
}

#[test]
fn budgets_should_get_the_minimum_budget_for_each_reason() {
    let mut b = upstream_budgets();
    b.push(budget(
        "4",
        Some("* * * * *"),
        Some("1h"),
        Some(&[DisruptionReason::Empty]),
    ));
    let p = pool(b);
    assert_eq!(p.allowed(upstream_now(), 100, DisruptionReason::Empty), 4);
    assert_eq!(p.allowed(upstream_now(), 100, DisruptionReason::Drifted), 5);
    // The budget where reason == nil overrides the budget with a specified reason.
    assert_eq!(
        p.allowed(upstream_now(), 100, DisruptionReason::Underutilized),
        10
    );
}

#[test]
fn budgets_allowed_disruptions() {
    // "should return zero values if a schedule is invalid" and "... if a nodes value is invalid":
    // surge refuses both at load (fields_surge_cannot_honour_are_refused_with_their_path), so no
    // invalid budget reaches a decision.
    assert!(Schedule::parse("@wrongly").is_err());
    // "should return MaxInt32 when a budget is inactive"
    let inactive = budget("10", Some("@yearly"), Some("1h"), None);
    assert_eq!(inactive.allowed(upstream_now(), 100), u64::MAX);
    // "should return the int value when a budget is active"
    assert_eq!(upstream_budgets()[0].allowed(upstream_now(), 100), 10);
    // "should return the string value when a budget is active"
    assert_eq!(upstream_budgets()[2].allowed(upstream_now(), 100), 100);
}

/// Percentages round up (Karpenter's `GetScaledValueFromIntOrPercent(.., true)`): 5 % of 10 nodes is 1.
#[test]
fn budgets_percent_rounds_up() {
    let b = budget("5%", None, None, None);
    assert_eq!(b.allowed(upstream_now(), 10), 1);
    assert_eq!(b.allowed(upstream_now(), 0), 0);
    assert_eq!(
        budget("10%", None, None, None).allowed(upstream_now(), 19),
        2
    );
    assert_eq!(
        budget("0%", None, None, None).allowed(upstream_now(), 19),
        0
    );
}

#[test]
fn budgets_is_active() {
    let active = |schedule: &str, duration: &str, now: &str| {
        let b = budget("10", Some(schedule), Some(duration), None);
        b.allowed(now.parse().unwrap(), 100) != u64::MAX
    };
    // "should always consider a schedule and time in UTC": June 0, 2000 00:00 at UTC+1 is
    // 2000-05-30T23:00Z; @daily for 30m is not active then.
    assert!(!active("@daily", "30m", "2000-05-30T23:00:00Z"));
    // "should return that a schedule is active when schedule and duration are nil"
    assert_eq!(
        budget("10", None, None, None).allowed(upstream_now(), 100),
        10
    );
    // "should return that a schedule is active"
    assert!(active("* * * * *", "1h", "2000-06-15T12:30:30Z"));
    // "should return that a schedule is inactive"
    assert!(!active("@yearly", "1h", "2000-06-15T12:30:30Z"));
    // "... active when the schedule hit is in the middle of the duration" (year 1000).
    assert!(active("@yearly", "24h", "1000-01-01T12:00:00Z"));
    // "... active when the duration is longer than the recurrence"
    assert!(active("@daily", "48h", "2024-01-07T00:00:00Z"));
    // "... inactive when the schedule hit is after the duration"
    assert!(!active("30 6 * * SUN", "6h", "2024-01-07T00:00:00Z"));
    // "should return an error indicating why the cron fails to parse"
    let e = Schedule::parse("0 0 * * tue-mon").unwrap_err();
    assert!(
        e.contains("beginning of range (2) beyond end of range (1)"),
        "{e}"
    );
}
