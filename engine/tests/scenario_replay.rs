//! Scenarios replayed end to end through `scenario::parse` and `scenario::simulate`, each reproducing an
//! upstream HPA or KEDA behaviour (REFERENCE.md §2-3) and asserting the exact `(time_s, replicas)` sequence.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::scenario::{self, Step};

fn replay(yaml: &str) -> Vec<Step> {
    let s = scenario::parse(yaml).unwrap_or_else(|e| panic!("scenario rejected:\n{e}"));
    scenario::simulate(&s)
}

fn sequence(steps: &[Step]) -> Vec<(f64, i32)> {
    steps.iter().map(|s| (s.time_s, s.replicas)).collect()
}

/// `(t, replicas)` for t = 0, 15, … ≤ `end_s`, with `replicas_at(t)`.
fn every_15s(end_s: i32, replicas_at: impl Fn(i32) -> i32) -> Vec<(f64, i32)> {
    (0..=end_s / 15)
        .map(|i| (f64::from(i * 15), replicas_at(i * 15)))
        .collect()
}

/// An HPA manifest for `web` with the given spec lines (indented 4 spaces inside `spec:`), embedded as
/// the scenario's `policy.hpa` block.
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

const EXTERNAL_LOAD: &str = "minReplicas: 1
maxReplicas: 100
metrics:
- type: External
  external: {metric: {name: load}, target: {type: AverageValue, averageValue: \"100\"}}";

#[test]
fn cpu_scale_up_from_3_pods_at_90_percent_of_a_50_percent_target() {
    // Upstream TestScaleUp's shape: 3 pods at 90 % of request, target 50 % → ceil(1.8 · 3) = 6. The three
    // new pods have no sample (missing); on a scale-up they are assumed at 0, the rebalanced ratio is
    // 2700m / 6 cores = 45 % → 0.9, within tolerance: keep 6.
    let steps = replay(&format!(
        "{}
initial:
  replicas: 3
  pod_template: {{requests: {{cpu: '1'}}}}
timeline:
  - at: 0s
    metrics: {{cpu: {{web-0: 900m, web-1: 900m, web-2: 900m}}}}
end: 30s
",
        hpa(CPU_50)
    ));
    assert_eq!(sequence(&steps), [(0.0, 6), (15.0, 6), (30.0, 6)]);
    assert_eq!(steps[0].replicas_before, 3);
    assert_eq!(steps[0].desired, 6);
    assert_eq!(steps[0].workload, "shop/web");
    assert_eq!(steps[0].metrics[0].current.as_deref(), Some("90%"));
    assert!(
        steps[0].reason.starts_with("scale 3→6"),
        "{}",
        steps[0].reason
    );
}

#[test]
fn default_scale_up_limit_doubles_or_adds_four() {
    // No behavior: scale-up is limited to max(2 · current, 4) per evaluation (upstream
    // calculateScaleUpLimit), however large the ratio; then maxReplicas.
    let steps = replay(&format!(
        "{}
initial: {{replicas: 1}}
timeline:
  - at: 0s
    metrics: {{load: 100k}}
end: 90s
",
        hpa(EXTERNAL_LOAD)
    ));
    assert_eq!(
        sequence(&steps),
        [
            (0.0, 4),
            (15.0, 8),
            (30.0, 16),
            (45.0, 32),
            (60.0, 64),
            (75.0, 100),
            (90.0, 100)
        ]
    );
    assert_eq!(steps[0].desired, 1000);
    assert_eq!(
        steps[0].decision.limit.as_ref().map(|l| l.rule.as_str()),
        Some("ScaleUpLimit")
    );
}

#[test]
fn downscale_is_stabilized_for_300_seconds() {
    // Load drops at 60 s; the recommendation falls to 1 at once, but the replica count holds at the
    // window's maximum (5, last recommended at 45 s) while that sample is not before now − 300 s
    // (upstream's legacy stabilizeRecommendation keeps it at exactly 345 s): down at 360 s.
    let steps = replay(&format!(
        "{}
initial: {{replicas: 5}}
timeline:
  - at: 0s
    metrics: {{load: 500}}
  - at: 60s
    metrics: {{load: 100}}
end: 375s
",
        hpa(EXTERNAL_LOAD)
    ));
    assert_eq!(
        sequence(&steps),
        every_15s(375, |t| if t >= 360 { 1 } else { 5 })
    );
    let at_60 = &steps[4];
    assert_eq!((at_60.time_s, at_60.desired, at_60.replicas), (60.0, 1, 5));
    assert_eq!(
        at_60
            .decision
            .stabilization
            .as_ref()
            .map(|s| s.rule.as_str()),
        Some("ScaleDownStabilized")
    );
}

#[test]
fn behavior_scale_up_policy_adds_one_pod_per_minute() {
    // scaleUp: 1 Pod per 60 s. The event at t is outside the period at t + 60 s (upstream counts events
    // strictly after now − period), so each minute adds one pod.
    let spec = format!(
        "{EXTERNAL_LOAD}
behavior:
  scaleUp:
    stabilizationWindowSeconds: 0
    policies: [{{type: Pods, value: 1, periodSeconds: 60}}]"
    );
    let steps = replay(&format!(
        "{}
initial: {{replicas: 1}}
timeline:
  - at: 0s
    metrics: {{load: 1000}}
end: 180s
",
        hpa(&spec)
    ));
    assert_eq!(sequence(&steps), every_15s(180, |t| 2 + t / 60));
    assert!(steps.iter().all(|s| s.desired == 10));
}

#[test]
fn ratio_within_tolerance_keeps_replicas() {
    // 4 pods at 42 % of request against a 40 % target: ratio 1.05 ≤ 1 + 0.1, no change.
    let spec = CPU_50.replace("averageUtilization: 50", "averageUtilization: 40");
    let steps = replay(&format!(
        "{}
initial:
  replicas: 4
  pod_template: {{requests: {{cpu: 1000m}}}}
timeline:
  - at: 0s
    metrics: {{cpu: 420m}}
end: 30s
",
        hpa(&spec)
    ));
    assert_eq!(sequence(&steps), [(0.0, 4), (15.0, 4), (30.0, 4)]);
    assert_eq!(steps[0].decision.metrics[0].ratio, Some(1.05));
    assert!(steps[0].decision.metrics[0].within_tolerance);
}

const CPU_AND_QUEUE: &str = "minReplicas: 1
maxReplicas: 10
metrics:
- type: Resource
  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
- type: External
  external: {metric: {name: queue}, target: {type: AverageValue, averageValue: \"10\"}}";

#[test]
fn partial_failure_never_scales_down() {
    // cpu alone says 1 replica; queue fails: a partial outage may only scale up, so hold 4.
    let steps = replay(&format!(
        "{}
initial:
  replicas: 4
  pod_template: {{requests: {{cpu: 1000m}}}}
timeline:
  - at: 0s
    metrics: {{cpu: 100m, queue: error}}
end: 30s
",
        hpa(CPU_AND_QUEUE)
    ));
    assert_eq!(sequence(&steps), [(0.0, 4), (15.0, 4), (30.0, 4)]);
    assert!(
        steps[0]
            .reason
            .starts_with("not scaling: invalid metrics (1 invalid out of 2)"),
        "{}",
        steps[0].reason
    );
}

#[test]
fn partial_failure_still_scales_up() {
    // cpu at 90 % of a 50 % target → ceil(1.8 · 4) = 8 while queue fails: scaling up is allowed.
    let steps = replay(&format!(
        "{}
initial:
  replicas: 4
  pod_template: {{requests: {{cpu: 1000m}}}}
timeline:
  - at: 0s
    metrics: {{cpu: 900m, queue: \"error: connection refused\"}}
end: 0s
",
        hpa(CPU_AND_QUEUE)
    ));
    assert_eq!(sequence(&steps), [(0.0, 8)]);
    assert_eq!(
        steps[0].metrics[1].error.as_deref(),
        Some("failed to get external metric value: connection refused")
    );
}

#[test]
fn keda_activates_from_zero_scales_out_then_back_to_zero_after_cooldown() {
    // 0 → 1 by KEDA's executor on activation (30 s); 1 → 4 → 5 by the generated HPA (scale-up limit
    // max(2·1, 4), then ceil(50 / 10)); the queue empties at 120 s, the last active poll was 105 s, so the
    // cooldown (60 s) ends after 165 s: scale to zero at 180 s. Before that the HPA's own 300 s
    // stabilization holds 5.
    let steps = replay(
        "policy:
  scaledObject: |
    apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    metadata: {name: worker, namespace: jobs}
    spec:
      scaleTargetRef: {name: worker}
      minReplicaCount: 0
      maxReplicaCount: 10
      cooldownPeriod: 60
      triggers:
      - type: prometheus
        name: queue
        metadata: {serverAddress: 'http://prometheus:9090', query: 'sum(queue)', threshold: '10'}
initial: {replicas: 0}
new_pods: {ready_after: 0, requests: {cpu: 250m}}
timeline:
  - at: 0s
    metrics: {queue: 0}
  - at: 30s
    metrics: {queue: 50}
  - at: 120s
    metrics: {queue: 0}
end: 240s
",
    );
    assert_eq!(
        sequence(&steps),
        every_15s(240, |t| match t {
            0..30 => 0,
            30 => 1,
            45 => 4,
            60..180 => 5,
            _ => 0,
        })
    );
    assert_eq!(steps[0].workload, "jobs/worker");
    let executor = |i: usize| steps[i].decision.keda.as_ref().unwrap().executor.clone();
    assert_eq!(executor(2), "ScaleFromZero");
    assert_eq!(executor(8), "CoolingDown");
    assert_eq!(executor(12), "ScaleToZero");
}

#[test]
fn schedule_raises_the_floor_when_its_window_opens() {
    // The workload idles at its minimum of 2 until 09:00, when the schedule's minimum of 10 applies at
    // once (upstream's "below Spec.MinReplicas" path bypasses the rate limits).
    let spec = EXTERNAL_LOAD.replace("minReplicas: 1", "minReplicas: 2");
    let steps = replay(&format!(
        "{}
schedules:
  - {{start: '0 9 * * *', duration: 1h, min_replicas: 10}}
start: 2026-01-05T08:58:00Z
initial: {{replicas: 2}}
timeline:
  - at: 0s
    metrics: {{load: 200}}
end: 3m
",
        hpa(&spec)
    ));
    assert_eq!(
        sequence(&steps),
        every_15s(180, |t| if t >= 120 { 10 } else { 2 })
    );
    assert_eq!(steps[8].min_replicas, 10);
    assert_eq!(
        steps[8].reason,
        "scale 2→10: Current number of replicas below Spec.MinReplicas"
    );
}

#[test]
fn new_pods_are_unready_until_ready_after() {
    // Pods created at 0 s become ready at 20 s; `total` load is shared by the ready pods only, so the
    // per-pod average stays high until they join, then falls to the target.
    let spec = "minReplicas: 1
maxReplicas: 10
metrics:
- type: Pods
  pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"100\"}}";
    let steps = replay(&format!(
        "{}
initial: {{replicas: 2}}
new_pods: {{ready_after: 20s}}
timeline:
  - at: 0s
    metrics: {{rps: {{total: 400}}}}
end: 45s
",
        hpa(spec)
    ));
    // 0 s: avg 200 → 4. 15 s: the two new pods are Pending (unready, assumed 0 on scale-up):
    // 400 / 4 = 100 → within tolerance, keep 4. 30 s and 45 s: four ready pods at 100.
    assert_eq!(
        sequence(&steps),
        [(0.0, 4), (15.0, 4), (30.0, 4), (45.0, 4)]
    );
    let pods = steps[1].decision.metrics[0].pods.unwrap();
    assert_eq!((pods.ready, pods.unready), (2, 2));
    let pods = steps[2].decision.metrics[0].pods.unwrap();
    assert_eq!((pods.ready, pods.unready), (4, 0));
}

#[test]
fn explicit_pods_failed_and_deleted_are_ignored() {
    // Upstream's ignored pods: Failed and deleting pods do not count; a deleted pod is gone.
    let spec = "minReplicas: 1
maxReplicas: 10
metrics:
- type: Pods
  pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"100\"}}";
    let steps = replay(&format!(
        "{}
initial:
  replicas: 3
  pods:
    - {{name: web-0}}
    - {{name: web-1}}
    - {{name: web-2, phase: Running, ready: true, started: -10m, ready_since: -9m, deleting: false}}
timeline:
  - at: 0s
    metrics: {{rps: {{web-0: 100, web-1: 100, web-2: 100}}}}
  - at: 15s
    pods: [{{name: web-1, phase: Failed}}]
    deletes: [web-2]
end: 15s
",
        hpa(spec)
    ));
    assert_eq!(sequence(&steps), [(0.0, 3), (15.0, 3)]);
    let pods = steps[1].decision.metrics[0].pods.unwrap();
    assert_eq!((pods.ready, pods.ignored), (1, 1));
}

#[test]
fn evaluate_on_change_adds_steps_at_timeline_entries() {
    let steps = replay(&format!(
        "{}
evaluate_on_change: true
initial: {{replicas: 1}}
timeline:
  - at: 0s
    metrics: {{load: 100}}
  - at: 7s
    metrics: {{load: 300}}
end: 15s
",
        hpa(EXTERNAL_LOAD)
    ));
    assert_eq!(sequence(&steps), [(0.0, 1), (7.0, 3), (15.0, 3)]);
}

#[test]
fn steps_serialize_with_the_json_contract() {
    let steps = replay(&format!(
        "{}
initial: {{replicas: 1}}
timeline: [{{at: 0s, metrics: {{load: 100}}}}]
end: 0s
",
        hpa(EXTERNAL_LOAD)
    ));
    let v = serde_json::to_value(&steps[0]).unwrap();
    assert_eq!(v["time_s"], serde_json::json!(0.0));
    assert_eq!(v["workload"], "shop/web");
    assert_eq!(v["replicas"], 1);
    assert_eq!(v["desired"], 1);
    assert!(v["reason"].is_string());
    assert!(v["decision"].is_object());
}

#[test]
fn example_scenarios_parse_and_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if scenario::job::is_job_scenario(&text) {
                let s = scenario::job::parse(&text)
                    .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
                assert!(
                    !scenario::job::simulate(&s).is_empty(),
                    "{}",
                    path.display()
                );
                seen += 1;
                continue;
            }
            let s = scenario::parse(&text).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(!scenario::simulate(&s).is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the example scenarios in {}",
        dir.display()
    );
}
