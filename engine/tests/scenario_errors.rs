//! Invalid scenarios: every problem is reported with its line, column and field, including problems
//! inside the embedded manifests (placed in the scenario file, with the manifest's own line and column).

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::scenario;

/// The problems of an invalid scenario, one `line:column: field: message` string each.
fn check(yaml: &str) -> Vec<String> {
    match scenario::parse(yaml) {
        Ok(_) => panic!("the scenario was accepted"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

const VALID_HPA: &str = "policy:
  hpa: |
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    metadata: {name: web}
    spec:
      scaleTargetRef: {kind: Deployment, name: web}
      maxReplicas: 5
      metrics:
      - type: External
        external: {metric: {name: load}, target: {type: AverageValue, averageValue: '10'}}
";

#[test]
fn every_validation_problem_is_listed_in_file_order() {
    let problems = check(&format!(
        "{VALID_HPA}schedules:
  - {{start: '0 25 * * *', duration: 1h, min_replicas: 3}}
initial:
  replicas: 2
  pods: [{{name: a}}, {{name: a}}]
  pod_template: {{}}
timeline:
  - at: 30s
    metrics: {{laod: 5}}
  - at: 10s
    metrics: {{load: {{web-0: 1}}}}
  - at: 2m
end: 1m
"
    ));
    assert_eq!(
        problems,
        [
            "13:13: schedules[0].start: cron \"0 25 * * *\": \"25\" is outside 0-23",
            "16:28: initial.pods[1].name: pod \"a\" is listed twice",
            "17:17: initial.pod_template: give pods or pod_template, not both",
            "20:21: timeline[0].metrics.laod: the policy has no metric \"laod\" (its metrics: load)",
            "21:9: timeline[1].at: 10s comes before the previous entry's 30s: keep the timeline in time order",
            "22:21: timeline[1].metrics.load: an External metric takes a quantity, a list of quantities or error",
            "23:9: timeline[2].at: 2m is outside 0s..end",
        ]
    );
}

#[test]
fn manifest_problems_carry_both_positions() {
    let problems = check(
        "# Héllo: non-ASCII text before the manifest must not shift positions.
policy:
  hpa: |
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    metadata: {name: web}
    spec:
      scaleTargetRef: {kind: Deployment, name: web}
      metrics:
      - type: External
        external: {metric: {name: load}, target: {type: AverageValue, averageValue: 1x}}
initial: {replicas: 1}
end: 1m
",
    );
    assert_eq!(
        problems,
        [
            "8:7: policy.hpa: manifest line 5, column 3: spec.maxReplicas: missing (it is required)",
            "11:85: policy.hpa: manifest line 8, column 81: spec.metrics[0].external.target.averageValue: \"1x\" is not a Kubernetes quantity (e.g. 500m, 10, 2k, 1.5, 1Gi)",
        ]
    );
}

#[test]
fn manifest_syntax_errors_are_placed_in_the_scenario() {
    // An unterminated quote: the parser stops at the manifest's end (its line 7), which the block
    // places on the scenario's line 9.
    let problems = check(
        "policy:
  scaledObject: |
    apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    spec:
      triggers:
      - type: cron
        metadata: {start: \"0 8 * * *}
initial: {replicas: 0}
end: 1m
",
    );
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with(
            "9:5: policy.scaledObject: manifest line 7, column 1: found unexpected end of stream"
        ),
        "{problems:?}"
    );
}

#[test]
fn a_missing_target_name_and_two_policies_are_errors() {
    let problems = check(
        "policy:
  hpa: |
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    spec: {maxReplicas: 3}
initial: {replicas: 1}
end: 1m
",
    );
    assert_eq!(
        problems,
        ["2:8: policy.hpa: spec.scaleTargetRef.name: missing (the simulated target's name)"]
    );
    let problems = check("policy: {hpa: a, scaledObject: b}\ninitial: {replicas: 1}\nend: 1m\n");
    assert_eq!(
        problems,
        ["1:9: policy: give exactly one of hpa or scaledObject, not both"]
    );
    // surge's config spells it `scaled_object`: accepted, and located under that name.
    let problems = check(
        "policy:\n  scaled_object: |\n    kind: ScaledObject\ninitial: {replicas: 1}\nend: 1m\n",
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("3:5: policy.scaled_object: manifest line 1, column 1: apiVersion: \"\" is not supported"),
        "{problems:?}"
    );
}

#[test]
fn shape_errors_name_the_field_and_place() {
    // Structural errors come from the YAML parser: the first one, with its path and position.
    for (yaml, want) in [
        (
            "polcy: {}\nend: 1m\n",
            "1:1: unknown field `polcy`, expected one of",
        ),
        (
            "policy: {hpa: x}\ninitial: {replicas: 1}\ntimeline:\n  - at: 1x\nend: 1m\n",
            "4:9: timeline[0].at: \"1x\" is not a duration (e.g. 30s, -2m, 1m30s, 500ms)",
        ),
        (
            "policy: {hpa: x}\ninitial: {replicas: 1}\ntimeline:\n  - at: 0s\n    metrics: {cpu: {total: 1, web-0: 2}}\nend: 1m\n",
            "5:20: timeline[0].metrics.cpu: `total` shares a value among the pods",
        ),
        (
            "policy: {hpa: x}\ninitial: {replicas: 1, pod_template: {requests: {cpu: lots}}}\nend: 1m\n",
            "2:55: initial.pod_template.requests.cpu: \"lots\" is not a Kubernetes quantity",
        ),
        (
            "policy: {hpa: x}\ninitial: {replicas: 1, pod_template: {ready: maybe}}\nend: 1m\n",
            "2:46: initial.pod_template.ready: \"maybe\" is not a readiness",
        ),
        (
            "policy: {hpa: x}\nstart: tomorrow\ninitial: {replicas: 1}\nend: 1m\n",
            "2:8: start: \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            "policy: {hpa: x}\ninitial: {replicas: 1}\nend: 60\n",
            "3:6: end: 60 has no unit: write a duration such as 60s",
        ),
    ] {
        let problems = check(yaml);
        assert_eq!(problems.len(), 1, "{yaml}");
        assert!(problems[0].starts_with(want), "{yaml}\n{}", problems[0]);
    }
}

/// The `/scale` inputs are the HPA's: a ScaledObject replay refuses them, each at its field.
#[test]
fn scale_inputs_are_refused_for_a_scaled_object() {
    let problems = check(
        "policy:
  scaledObject: |
    apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    metadata: {name: web, namespace: shop}
    spec:
      scaleTargetRef: {name: web}
      triggers:
      - type: cron
        name: day
        metadata: {timezone: UTC, start: 0 8 * * *, end: 0 18 * * *, desiredReplicas: '3'}
initial:
  replicas: 1
  scale: {selector: app=web}
timeline:
  - at: 0s
    fail_scale_get: timeout
    fail_scale_update: conflict
end: 15s
",
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
    for (problem, field) in problems.iter().zip([
        "initial.scale",
        "timeline[0].fail_scale_get",
        "timeline[0].fail_scale_update",
    ]) {
        assert!(
            problem.contains(field)
                && problem.contains("only an HPA policy's replay reads the /scale subresource"),
            "{problem}"
        );
    }
}
