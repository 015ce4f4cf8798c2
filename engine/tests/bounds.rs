//! Property tests: any input (NaN, infinities, huge or negative values, odd specs) evaluates without
//! panicking, and a scale decision stays within [min, max] and [0, i32::MAX].

// Test helpers may unwrap (a panic is a failed test) and tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use surge_engine::hpa::{
    ConditionStatus, ContainerRequests, HpaInput, HpaSpec, HpaState, MetricSample, MetricSource,
    MetricSpec, MetricTarget, PodInfo, PodMetric, PodPhase,
};
use surge_engine::keda::TriggerMetricType;
use surge_engine::{
    Behavior, ControllerConfig, KedaInput, KedaState, ScaledObjectSpec, TriggerSpec, TriggerValue,
    evaluate_hpa, evaluate_scaled_object,
};

/// Float values (KEDA trigger values), the edges included.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1000.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
        1 => -1000.0..0.0f64,
        1 => Just(9.3e15),
    ]
}

/// Milli-unit values (HPA samples), the int64 edges included.
fn milli() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0..1_000_000i64,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX / 2 + 1),
        1 => -1_000_000..0i64,
        1 => any::<i64>(),
    ]
}

fn target() -> impl Strategy<Value = MetricTarget> {
    prop_oneof![
        (-5..500i32).prop_map(MetricTarget::Utilization),
        (-5..5_000_000i64).prop_map(MetricTarget::AverageValue),
        (-5..5_000_000i64).prop_map(MetricTarget::Value),
        Just(MetricTarget::AverageValue(i64::MAX)),
    ]
}

fn source() -> impl Strategy<Value = MetricSource> {
    prop_oneof![
        Just(MetricSource::Resource { name: "cpu".into() }),
        Just(MetricSource::Resource {
            name: "memory".into()
        }),
        Just(MetricSource::ContainerResource {
            name: "cpu".into(),
            container: "main".into()
        }),
        Just(MetricSource::Pods {
            metric: "rps".into()
        }),
        Just(MetricSource::Object {
            metric: "rps".into(),
            kind: "Ingress".into(),
            object: "i".into()
        }),
        Just(MetricSource::External { metric: "q".into() }),
    ]
}

fn pod() -> impl Strategy<Value = PodInfo> {
    (
        0..8usize,
        prop_oneof![
            Just(PodPhase::Running),
            Just(PodPhase::Pending),
            Just(PodPhase::Failed)
        ],
        prop_oneof![
            Just(None),
            Just(Some(ConditionStatus::True)),
            Just(Some(ConditionStatus::False))
        ],
        any::<bool>(),
        prop_oneof![Just(0i64), -5..5_000i64, Just(i64::MAX)],
        prop_oneof![
            Just(None),
            Just(Some(0i64)),
            Just(Some(i64::MAX)),
            Just(Some(i64::MIN))
        ],
    )
        .prop_map(|(i, phase, ready, deleting, request, start)| PodInfo {
            name: format!("p{i}"),
            phase,
            ready,
            ready_transition_ms: 0,
            start_ms: start,
            deleting,
            containers: vec![ContainerRequests {
                name: "main".into(),
                requests: BTreeMap::from([("cpu".into(), request), ("memory".into(), request)]),
            }],
            init_containers: Vec::new(),
            pod_requests: None,
            overhead: BTreeMap::new(),
        })
}

fn sample() -> impl Strategy<Value = MetricSample> {
    prop_oneof![
        proptest::collection::btree_map(
            (0..8usize).prop_map(|i| format!("p{i}")),
            (milli(), any::<i64>()).prop_map(|(milli, ts)| PodMetric {
                milli,
                timestamp_ms: ts,
                window_ms: 60_000
            }),
            0..8
        )
        .prop_map(MetricSample::PerPod),
        milli().prop_map(MetricSample::Object),
        proptest::collection::vec(milli(), 0..4).prop_map(MetricSample::External),
        Just(MetricSample::Failed("down".into())),
    ]
}

prop_compose! {
    fn hpa()(
        min in -2..20i32,
        max in -2..60i32,
        metrics in proptest::collection::vec((source(), target()), 0..4),
        behavior in any::<bool>(),
        tolerance in prop_oneof![Just(0.1f64), Just(0.0), Just(f64::NAN), Just(-1.0)],
    ) -> HpaSpec {
        HpaSpec {
            min_replicas: min,
            max_replicas: max,
            metrics: metrics.into_iter().map(|(source, target)| MetricSpec { source, target }).collect(),
            behavior: behavior.then(Behavior::default),
            controller: ControllerConfig { tolerance, ..ControllerConfig::default() },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hpa_never_panics_and_stays_in_bounds(
        spec in hpa(),
        steps in proptest::collection::vec(
            (
                prop_oneof![Just(0i32), 0..80i32, Just(i32::MAX), Just(-3)],
                proptest::collection::vec(pod(), 0..6),
                proptest::collection::vec(sample(), 0..4),
                0..400_000i64,
            ),
            1..5,
        ),
    ) {
        let mut state = HpaState::default();
        let mut now = 1_700_000_000_000i64;
        for (current, pods, metrics, dt) in steps {
            now += dt;
            let input = HpaInput { current_replicas: current, status_replicas: current, pods, metrics };
            let d = evaluate_hpa(&spec, &mut state, &input, now);
            prop_assert!(d.desired_replicas >= 0);
            if d.scale {
                let max = spec.max_replicas.max(0);
                let min = spec.min_replicas.max(0);
                prop_assert!(d.desired_replicas <= max.max(min), "desired {} max {}", d.desired_replicas, max);
                prop_assert!(d.desired_replicas >= min.min(max), "desired {} min {}", d.desired_replicas, min);
            } else {
                prop_assert_eq!(d.desired_replicas, current.max(0));
            }
            // The explanation always serializes.
            prop_assert!(serde_json::from_str::<serde_json::Value>(&d.to_json()).is_ok());
        }
        prop_assert!(state.recommendations.len() <= 8);
    }

    #[test]
    fn keda_never_panics_and_stays_in_bounds(
        min in 0..5i32,
        max in 5..40i32,
        thresholds in proptest::collection::vec((value(), value()), 1..3),
        steps in proptest::collection::vec(
            (0..50i32, proptest::collection::vec(prop_oneof![value().prop_map(TriggerValue::Value), Just(TriggerValue::Failed("x".into()))], 0..3), 0..400_000i64),
            1..6,
        ),
    ) {
        let spec = ScaledObjectSpec {
            name: "so".into(),
            annotations: Default::default(),
            min_replica_count_set: true,
            polling_interval_seconds: 30,
            cooldown_period_seconds: 300,
            initial_cooldown_period_seconds: 0,
            min_replica_count: min,
            max_replica_count: max,
            idle_replica_count: None,
            triggers: thresholds.iter().enumerate().map(|(i, (t, a))| TriggerSpec {
                name: format!("t{i}"),
                kind: "prometheus".into(),
                metric_type: if i % 2 == 0 { TriggerMetricType::AverageValue } else { TriggerMetricType::Value },
                threshold: *t,
                activation_threshold: *a,
                named: true,
                container: None,
                use_cached_metrics: false,
        metadata: Default::default(),
            }).collect(),
            fallback: None,
            scaling_modifiers: None,
            behavior: None,
            controller: ControllerConfig::default(),
            warnings: Vec::new(),
        };
        let mut state = KedaState::default();
        let mut now = 1_700_000_000_000i64;
        for (current, triggers, dt) in steps {
            now += dt;
            let input = KedaInput {
                current_replicas: current,
                status_replicas: current,
                pods: (0..current.min(10)).map(|i| PodInfo::running(&format!("p{i}"), 100)).collect(),
                triggers,
            };
            let d = evaluate_scaled_object(&spec, &mut state, &input, now);
            prop_assert!(d.desired_replicas >= 0);
            prop_assert!(d.desired_replicas <= max.max(current));
        }
    }
}
