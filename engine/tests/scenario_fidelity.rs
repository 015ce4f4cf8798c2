//! The scenario format's HPA inputs from issue 18: seeded history, per-sample timestamps and windows,
//! pod-level resources, init containers and sidecars, pod groups reported without a proposal, and
//! values at the top of the int64 range, NaN and infinities. Each replayed through `scenario::parse` and
//! `scenario::simulate`, as `surge simulate` runs them.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::scenario::{self, Step};

fn replay(yaml: &str) -> Vec<Step> {
    let s = scenario::parse(yaml).unwrap_or_else(|e| panic!("scenario rejected:\n{e}"));
    scenario::simulate(&s)
}

fn problems(yaml: &str) -> Vec<String> {
    match scenario::parse(yaml) {
        Ok(_) => panic!("scenario accepted"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn hpa(spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "policy:\n  hpa: |\n    apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler\n    metadata: {{name: web, namespace: shop}}\n    spec:\n      scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n{spec}"
    )
}

const CPU_50: &str = "minReplicas: 1
maxReplicas: 10
metrics:
- type: Resource
  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}";

#[test]
fn seeded_recommendations_hold_a_scale_down_and_show_in_the_decision() {
    // CPU at 10 % of a 50 % target asks for 1 of 5; a recommendation of 5 made 4 min before 0s is still
    // inside the default 5 min downscale window, so the first evaluations keep 5; once it ages out
    // (t = 60 s) the window holds only the replay's own recommendations of 1.
    let steps = replay(&format!(
        "{}
initial: {{replicas: 5, pod_template: {{requests: {{cpu: '1'}}}}}}
history:
  recommendations: [{{at: -4m, replicas: 5}}]
timeline:
  - at: 0s
    metrics: {{cpu: 100m}}
end: 75s
",
        hpa(CPU_50)
    ));
    let replicas: Vec<i32> = steps.iter().map(|s| s.replicas).collect();
    assert_eq!(replicas, [5, 5, 5, 5, 5, 1]);
    assert_eq!(steps[0].seeded_history, ["recommendation 5 at -4m"]);
    assert!(steps[5].seeded_history.is_empty());
    let first = steps[0].decision.history.as_ref().unwrap();
    assert_eq!(first.recommendations[0], (5, -240_000));
    assert_eq!(
        steps[0]
            .decision
            .stabilization
            .as_ref()
            .map(|s| (s.from, s.to)),
        Some((1, 5))
    );
    // At 75 s the seeded entry is out of the window and out of the decision's history.
    let last = steps[5].decision.history.as_ref().unwrap();
    assert!(last.recommendations.iter().all(|r| r.1 >= 0), "{last:?}");
}

#[test]
fn seeded_scale_up_events_count_against_the_rate_policy() {
    // A 4-pods-per-60 s policy; 3 pods were added 30 s before 0s, so only 1 more may come until that
    // event ages out at 30 s.
    let spec = format!(
        "{CPU_50}
behavior:
  scaleUp:
    policies: [{{type: Pods, value: 4, periodSeconds: 60}}]"
    );
    let steps = replay(&format!(
        "{}
initial: {{replicas: 2, pod_template: {{requests: {{cpu: '1'}}}}}}
history:
  scale_up_events: [{{at: -30s, change: 3}}]
timeline:
  - at: 0s
    metrics: {{cpu: 1500m}}
end: 30s
",
        hpa(&spec)
    ));
    assert_eq!(steps[0].replicas, 3, "{}", steps[0].reason);
    assert_eq!(
        steps[0].decision.history.as_ref().unwrap().scale_up_events,
        [(3, -30_000)]
    );
    assert_eq!(steps[0].seeded_history, ["scale-up 3 at -30s"]);
}

#[test]
fn history_must_be_in_the_past() {
    let text = problems(&format!(
        "{}
initial: {{replicas: 2}}
history:
  recommendations: [{{at: 10s, replicas: -1}}]
  scale_down_events: [{{at: -1m, change: 0}}]
end: 30s
",
        hpa(CPU_50)
    ))
    .join("\n");
    assert!(
        text.contains("history.recommendations[0].at: 10s is after 0s: history is the past"),
        "{text}"
    );
    assert!(
        text.contains("history.recommendations[0].replicas: -1 must not be negative"),
        "{text}"
    );
    assert!(
        text.contains("history.scale_down_events[0].change: 0 must be greater than 0"),
        "{text}"
    );
}

#[test]
fn per_sample_timestamps_and_windows_drive_the_cpu_readiness_rules() {
    // web-1 started 1 min ago (inside the 5 min CPU initialization period) and became ready at its
    // start. Its sample, taken 10 s before 0s with a 60 s window, does not cover a full window since the
    // transition: upstream ignores it (unready). web-0's is normal. Given a 20 s window instead, the
    // sample counts.
    let scenario = |window: &str| {
        format!(
            "{}
initial:
  pods:
    - {{name: web-0, requests: {{cpu: '1'}}}}
    - {{name: web-1, requests: {{cpu: '1'}}, started: -60s, ready_since: -60s}}
timeline:
  - at: 0s
    metrics:
      cpu: {{web-0: 900m, web-1: {{value: 900m, timestamp: -10s, window: {window}}}}}
end: 0s
",
            hpa(CPU_50)
        )
    };
    let steps = replay(&scenario("1m"));
    let pods = steps[0].decision.metrics[0].pods.unwrap();
    assert_eq!((pods.ready, pods.unready), (1, 1));
    assert_eq!(
        steps[0].decision.metrics[0]
            .pod_groups
            .as_ref()
            .unwrap()
            .unready,
        ["web-1"]
    );
    let steps = replay(&scenario("20s"));
    let pods = steps[0].decision.metrics[0].pods.unwrap();
    assert_eq!((pods.ready, pods.unready), (2, 0));
}

#[test]
fn pod_groups_are_reported_when_no_proposal_is_made() {
    // Every pod is Pending: upstream fails with "did not receive metrics for targeted pods", and the
    // decision still says how the pods were grouped.
    let steps = replay(&format!(
        "{}
initial:
  pods:
    - {{name: web-0, phase: Pending, requests: {{cpu: '1'}}}}
    - {{name: web-1, phase: Failed, requests: {{cpu: '1'}}}}
timeline:
  - at: 0s
    metrics: {{cpu: {{web-0: 100m, web-1: 100m}}}}
end: 0s
",
        hpa(CPU_50)
    ));
    let m = &steps[0].decision.metrics[0];
    assert_eq!(m.proposal, None);
    assert!(
        m.error
            .as_deref()
            .unwrap()
            .contains("did not receive metrics for targeted pods")
    );
    let pods = m.pods.unwrap();
    assert_eq!(
        (pods.ready, pods.unready, pods.missing, pods.ignored),
        (0, 1, 0, 1)
    );
    assert_eq!(
        steps[0].metrics[0].pods.as_deref(),
        Some("ready 0, unready 1 (web-0), missing 0, ignored 1 (web-1)")
    );
}

#[test]
fn pod_level_resources_and_sidecars_set_the_request() {
    // 900m of usage per pod. Pod-level requests of 3 cores: 30 % of a 50 % target → scale down to 2 of
    // 3. Containers only (1 core) plus a 1-core sidecar: 2 cores → 45 %, within tolerance: keep 3. A plain
    // init container does not count.
    let run = |template: &str| {
        let steps = replay(&format!(
            "{}
initial:
  replicas: 3
  pod_template: {template}
timeline:
  - at: 0s
    metrics: {{cpu: 900m}}
end: 0s
",
            hpa(CPU_50)
        ));
        // `desired`: the proposal, before the downscale stabilization window holds it.
        (
            steps[0].metrics[0].current.clone().unwrap(),
            steps[0].desired,
        )
    };
    assert_eq!(
        run("{requests: {cpu: '1'}, resources: {requests: {cpu: '3'}}}"),
        ("30%".to_owned(), 2)
    );
    assert_eq!(
        run(
            "{requests: {cpu: '1'}, init_containers: [{name: proxy, restart_policy: Always, requests: {cpu: '1'}}, {name: migrate, requests: {cpu: '4'}}]}"
        ),
        ("45%".to_owned(), 3)
    );
    // Pod-level requests for memory only: cpu comes from the aggregate, where `migrate` (4 cores, plus
    // the 1-core sidecar started before it) dominates, plus the 100m overhead: 5.1 cores → 17 %.
    assert_eq!(
        run(
            "{requests: {cpu: '1'}, resources: {requests: {memory: 1Gi}}, overhead: {cpu: 100m}, init_containers: [{name: proxy, restart_policy: Always, requests: {cpu: '1'}}, {name: migrate, requests: {cpu: '4'}}]}"
        ),
        ("17%".to_owned(), 2)
    );
}

#[test]
fn values_at_the_top_of_the_int64_range_are_exact() {
    // upstream TestReplicaCalcScaleUpOverflow through a scenario: an Object metric at MaxInt64 milli
    // (9223372036854775807m) over a target of 1m proposes MaxInt32, capped by maxReplicas. No float
    // rounding: the reading shows the exact value.
    let steps = replay(&format!(
        "{}
initial: {{replicas: 3}}
timeline:
  - at: 0s
    metrics: {{qps: 9223372036854775807m}}
end: 0s
",
        hpa("minReplicas: 1
maxReplicas: 10
metrics:
- type: Object
  object:
    metric: {name: qps}
    describedObject: {apiVersion: apps/v1, kind: Deployment, name: some-deployment}
    target: {type: Value, value: 1m}")
    ));
    let m = &steps[0].decision.metrics[0];
    assert_eq!(m.current_milli, Some(i64::MAX));
    assert_eq!(m.proposal, Some(i32::MAX));
    assert_eq!(
        steps[0].metrics[0].current.as_deref(),
        Some("9223372036854775.807")
    );
    assert_eq!(steps[0].replicas, 6); // the default scale-up limit: max(2·3, 4)
    // A larger value saturates as MilliValue() does; so does a float beyond the range.
    for v in ["10E", "1e30"] {
        let steps = replay(&format!(
            "{}
initial: {{replicas: 3}}
timeline:
  - at: 0s
    metrics: {{load: [{v}, {v}]}}
end: 0s
",
            hpa("minReplicas: 1
maxReplicas: 10
metrics:
- type: External
  external: {metric: {name: load}, target: {type: Value, value: 10E}}")
        ));
        // TestReplicaCalcExternalMetricUsageOverflow's shape: the sum caps at MaxInt64, the target is
        // MaxInt64 too: ratio 1, keep.
        let m = &steps[0].decision.metrics[0];
        assert_eq!(
            (m.current_milli, m.proposal),
            (Some(i64::MAX), Some(3)),
            "{v}"
        );
    }
}

#[test]
fn nan_and_infinities_are_refused_with_a_reason() {
    for (value, said) in [
        (".nan", "NaN is not a number"),
        (".inf", "inf is infinite"),
        ("-.inf", "-inf is infinite"),
    ] {
        let text = problems(&format!(
            "{}
initial: {{replicas: 3}}
timeline:
  - at: 0s
    metrics: {{cpu: {{web-0: {value}}}}}
end: 0s
",
            hpa(CPU_50)
        ))
        .join("\n");
        assert!(text.contains(said), "{value}: {text}");
        assert!(
            text.contains("to make the metric fail, write error"),
            "{text}"
        );
        assert!(!text.contains("not a finite"), "{text}");
    }
}
