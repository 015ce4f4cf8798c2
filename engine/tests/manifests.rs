//! Real manifests, as users write them, parsed and validated.

// Test helpers may unwrap (a panic is a failed test) and tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use surge_engine::hpa::{MetricSource, MetricTarget, PolicyKind, SelectPolicy};
use surge_engine::keda::TriggerMetricType;
use surge_engine::{FallbackBehavior, ManifestError, parse_hpa, parse_scaled_object};

const HPA_DOCS: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: php-apache
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: php-apache
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
  - type: ContainerResource
    containerResource:
      name: memory
      container: application
      target:
        type: AverageValue
        averageValue: 500Mi
  - type: Pods
    pods:
      metric:
        name: packets-per-second
      target:
        type: AverageValue
        averageValue: 1k
  - type: Object
    object:
      metric:
        name: requests-per-second
      describedObject:
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        name: main-route
      target:
        type: Value
        value: 10k
  - type: External
    external:
      metric:
        name: queue_messages_ready
        selector:
          matchLabels:
            queue: worker_tasks
      target:
        type: AverageValue
        averageValue: 30
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 60
      policies:
      - type: Pods
        value: 4
        periodSeconds: 60
      - type: Percent
        value: 10
        periodSeconds: 60
      selectPolicy: Min
      tolerance: 0.05
    scaleUp:
      tolerance: "0.01"
status:
  currentReplicas: 1
  desiredReplicas: 1
"#;

#[test]
fn parses_the_docs_hpa() {
    let spec = parse_hpa(HPA_DOCS).unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (1, 10));
    let sources: Vec<_> = spec
        .metrics
        .iter()
        .map(|m| (m.source.clone(), m.target))
        .collect();
    assert_eq!(
        sources,
        vec![
            (
                MetricSource::Resource { name: "cpu".into() },
                MetricTarget::Utilization(50)
            ),
            (
                MetricSource::ContainerResource {
                    name: "memory".into(),
                    container: "application".into()
                },
                MetricTarget::AverageValue(524_288_000_000)
            ),
            (
                MetricSource::Pods {
                    metric: "packets-per-second".into()
                },
                MetricTarget::AverageValue(1_000_000)
            ),
            (
                MetricSource::Object {
                    metric: "requests-per-second".into(),
                    kind: "Ingress".into(),
                    object: "main-route".into()
                },
                MetricTarget::Value(10_000_000)
            ),
            (
                MetricSource::External {
                    metric: "queue_messages_ready".into()
                },
                MetricTarget::AverageValue(30_000)
            ),
        ]
    );
    let b = spec.behavior.unwrap();
    assert_eq!(b.scale_down.stabilization_window_seconds, Some(60));
    assert_eq!(b.scale_down.select_policy, SelectPolicy::Min);
    assert_eq!(b.scale_down.policies[1].kind, PolicyKind::Percent);
    assert_eq!(b.scale_down.tolerance, Some(0.05));
    // scaleUp given only a tolerance: the rest is defaulted.
    assert_eq!(b.scale_up.tolerance, Some(0.01));
    assert_eq!(b.scale_up.policies.len(), 2);
    assert_eq!(b.scale_up.stabilization_window_seconds, Some(0));
}

#[test]
fn defaults_cpu_when_no_metrics() {
    let spec = parse_hpa(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: 5\n",
    )
    .unwrap();
    assert_eq!(spec.min_replicas, 1);
    assert_eq!(spec.metrics[0].target, MetricTarget::Utilization(80));
    assert!(spec.behavior.is_none());
}

#[test]
fn rejects_invalid_hpas_listing_every_problem() {
    let yaml = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
spec:
  minReplicas: 5
  maxReplicas: 3
  metrics:
  - type: CheddarCheese
  - type: Resource
    resource:
      name: cpu
  - type: External
    external:
      metric:
        name: qps
      target:
        type: Utilization
        averageUtilization: 50
  - type: Pods
    pods:
      metric:
        name: rps
      target:
        type: AverageValue
        averageValue: 12x
  behavior:
    scaleUp:
      selectPolicy: Sometimes
      policies:
      - type: Pods
        value: 0
        periodSeconds: 4000
"#;
    let Err(ManifestError::Invalid(errors)) = parse_hpa(yaml) else {
        panic!("expected a validation error");
    };
    assert_eq!(
        errors,
        vec![
            "spec.minReplicas: 5 is greater than spec.maxReplicas (3)",
            "spec.metrics[0].type: unknown metric type \"CheddarCheese\" (expected Resource, ContainerResource, Pods, Object or External)",
            "spec.metrics[1].resource.target: missing (a metric needs a target)",
            "spec.metrics[2].external.target.type: Utilization(50) is not a valid target for a External metric",
            "spec.metrics[3].pods.target.averageValue: \"12x\" is not a Kubernetes quantity (e.g. 500m, 10, 2k, 1.5, 1Gi)",
            "spec.behavior.scaleUp.selectPolicy: \"Sometimes\" is not one of Max, Min, Disabled",
            "spec.behavior.scaleUp.policies[0].value: 0 must be greater than 0",
            "spec.behavior.scaleUp.policies[0].periodSeconds: 4000 must be between 1 and 1800",
        ]
    );
}

#[test]
fn yaml_errors_carry_line_and_column() {
    let err = parse_hpa("apiVersion: autoscaling/v2\nspec:\n  maxReplicas: [\n").unwrap_err();
    let ManifestError::Yaml { line, .. } = err else {
        panic!("expected a YAML error, got {err:?}");
    };
    assert!(line >= 3);
    let err = parse_hpa(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: ten\n",
    )
    .unwrap_err();
    assert!(
        matches!(err, ManifestError::Yaml { line: 4, .. }),
        "{err:?}"
    );
}

const SCALED_OBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef:
    name: worker
  pollingInterval: 5
  cooldownPeriod: 120
  initialCooldownPeriod: 30
  minReplicaCount: 1
  maxReplicaCount: 50
  fallback:
    failureThreshold: 3
    replicas: 6
    behavior: currentReplicasIfHigher
  advanced:
    restoreToOriginalReplicaCount: true
    horizontalPodAutoscalerConfig:
      name: keda-hpa-worker
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 60
          policies:
          - type: Percent
            value: 50
            periodSeconds: 30
    scalingModifiers:
      formula: "rps > 100 ? rps + queue : queue"
      target: "20"
      activationTarget: "1"
      metricType: AverageValue
  triggers:
  - type: prometheus
    name: rps
    metadata:
      serverAddress: http://prometheus:9090
      query: sum(rate(http_requests_total[1m]))
      threshold: "100"
      activationThreshold: "5.5"
      ignoreNullValues: true
  - type: rabbitmq
    name: queue
    metricType: Value
    metadata:
      queueName: tasks
      mode: QueueLength
      value: "20"
"#;

#[test]
fn parses_a_scaled_object() {
    let so = parse_scaled_object(SCALED_OBJECT).unwrap();
    assert_eq!((so.min_replica_count, so.max_replica_count), (1, 50));
    assert_eq!(
        (
            so.cooldown_period_seconds,
            so.initial_cooldown_period_seconds,
            so.polling_interval_seconds
        ),
        (120, 30, 5)
    );
    assert_eq!(so.triggers[0].name, "rps");
    assert_eq!(
        (
            so.triggers[0].threshold,
            so.triggers[0].activation_threshold
        ),
        (100.0, 5.5)
    );
    assert_eq!(so.triggers[1].metric_type, TriggerMetricType::Value);
    assert_eq!(so.triggers[1].threshold, 20.0);
    let fb = so.fallback.unwrap();
    assert_eq!(
        (fb.failure_threshold, fb.replicas, fb.behavior),
        (3, 6, FallbackBehavior::CurrentReplicasIfHigher)
    );
    let m = so.scaling_modifiers.clone().unwrap();
    assert_eq!((m.target, m.activation_target), (20.0, 1.0));
    assert_eq!(
        so.behavior
            .as_ref()
            .unwrap()
            .scale_down
            .stabilization_window_seconds,
        Some(60)
    );
    // Defaults of a minimal ScaledObject.
    let minimal = parse_scaled_object(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nspec:\n  scaleTargetRef: {name: w}\n  triggers:\n  - type: kafka\n    metadata: {lagThreshold: '10', activationLagThreshold: '2'}\n",
    )
    .unwrap();
    assert_eq!(
        (
            minimal.min_replica_count,
            minimal.max_replica_count,
            minimal.cooldown_period_seconds
        ),
        (0, 100, 300)
    );
    assert_eq!(minimal.triggers[0].name, "s0-kafka");
    assert_eq!(
        (
            minimal.triggers[0].threshold,
            minimal.triggers[0].activation_threshold
        ),
        (10.0, 2.0)
    );
    assert!(minimal.fallback.is_none() && minimal.behavior.is_none());
}

#[test]
fn rejects_invalid_scaled_objects() {
    let yaml = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
spec:
  minReplicaCount: 10
  maxReplicaCount: 2
  idleReplicaCount: 12
  fallback:
    failureThreshold: 3
    replicas: 2
    behavior: sometimes
  advanced:
    scalingModifiers:
      formula: "a + missing"
      target: "2"
  triggers:
  - type: prometheus
    name: a
    metadata:
      query: up
"#;
    let Err(ManifestError::Invalid(errors)) = parse_scaled_object(yaml) else {
        panic!("expected a validation error");
    };
    assert_eq!(
        errors,
        vec![
            "spec.triggers[0].metadata: no target found (looked for threshold, targetValue, value, queueLength, lagThreshold, listLength, targetPendingTasks, messageCount, desiredReplicas)",
            "spec.fallback.behavior: \"sometimes\" is not one of static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower, scalingModifiers",
            "spec.minReplicaCount: MinReplicaCount=10 must be less than MaxReplicaCount=2",
            // expr's checker stops at the first unknown name (`a` did not parse, so it is not a trigger).
            "spec.advanced.scalingModifiers.formula: error validating formula in ScalingModifiers: formula \"float(a + missing)\": unknown name a (1:7)\n | float(a + missing)\n | ......^",
        ]
    );
}
