//! KEDA ScaledObject semantics, table by table (REFERENCE.md §3; upstream `scale_scaledobjects.go`,
//! `fallback.go`).

// Test helpers may unwrap (a panic is a failed test) and tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use surge_engine::hpa::PodInfo;
use surge_engine::keda::TriggerMetricType;
use surge_engine::{
    Behavior, ControllerConfig, FallbackBehavior, FallbackSpec, KedaInput, KedaState,
    ScaledObjectSpec, ScalingModifiers, TriggerSpec, TriggerValue, evaluate_scaled_object,
};

const T0: i64 = 1_700_000_000_000;

fn trigger(name: &str, threshold: f64, activation: f64) -> TriggerSpec {
    TriggerSpec {
        name: name.to_owned(),
        kind: "prometheus".to_owned(),
        metric_type: TriggerMetricType::AverageValue,
        threshold,
        activation_threshold: activation,
        named: true,
        container: None,
        use_cached_metrics: false,
        metadata: Default::default(),
    }
}

fn spec(triggers: Vec<TriggerSpec>) -> ScaledObjectSpec {
    ScaledObjectSpec {
        name: "so".to_owned(),
        annotations: Default::default(),
        min_replica_count_set: false,
        polling_interval_seconds: 30,
        cooldown_period_seconds: 300,
        initial_cooldown_period_seconds: 0,
        min_replica_count: 0,
        max_replica_count: 100,
        idle_replica_count: None,
        triggers,
        fallback: None,
        scaling_modifiers: None,
        behavior: None,
        controller: ControllerConfig::default(),
        warnings: Vec::new(),
    }
}

fn input(current: i32, values: Vec<TriggerValue>) -> KedaInput {
    KedaInput {
        current_replicas: current,
        status_replicas: current,
        pods: (0..current)
            .map(|i| PodInfo::running(&format!("p{i}"), 100))
            .collect(),
        triggers: values,
    }
}

fn v(x: f64) -> TriggerValue {
    TriggerValue::Value(x)
}

fn fail() -> TriggerValue {
    TriggerValue::Failed("connection refused".to_owned())
}

fn executor(d: &surge_engine::Decision) -> &str {
    d.keda.as_ref().map_or("", |k| k.executor.as_str())
}

#[test]
fn activation_and_scale_from_zero() {
    // (case, min, current, value, activation threshold, expected replicas, expected executor)
    let rows = [
        (
            "active from zero goes to one",
            0,
            0,
            5.0,
            0.0,
            1,
            "ScaleFromZero",
        ),
        (
            "active from zero goes to minReplicaCount",
            3,
            0,
            5.0,
            0.0,
            3,
            "ScaleFromZero",
        ),
        (
            "below the activation threshold stays at zero",
            0,
            0,
            3.0,
            5.0,
            0,
            "Hpa",
        ),
        (
            "equal to the activation threshold is not active",
            0,
            0,
            5.0,
            5.0,
            0,
            "Hpa",
        ),
        (
            "inactive below min is raised to min",
            2,
            1,
            0.0,
            0.0,
            2,
            "ScaleToMin",
        ),
    ];
    for (case, min, current, value, activation, expected, exec) in rows {
        let mut s = spec(vec![trigger("q", 10.0, activation)]);
        s.min_replica_count = min;
        let d = evaluate_scaled_object(
            &s,
            &mut KedaState::default(),
            &input(current, vec![v(value)]),
            T0,
        );
        assert_eq!(
            (d.desired_replicas, executor(&d)),
            (expected, exec),
            "{case}"
        );
    }
}

#[test]
fn one_to_n_goes_through_the_hpa() {
    // AverageValue: ceil(50 / 10) = 5 from 4 replicas (limit max(8, 4)).
    let s = spec(vec![trigger("q", 10.0, 0.0)]);
    let d = evaluate_scaled_object(&s, &mut KedaState::default(), &input(4, vec![v(50.0)]), T0);
    assert_eq!((d.desired_replicas, executor(&d)), (5, "Hpa"));
    assert_eq!(d.metrics[0].proposal, Some(5));
    // Max over triggers: the second trigger asks for 9.
    let s = spec(vec![trigger("a", 10.0, 0.0), trigger("b", 5.0, 0.0)]);
    let d = evaluate_scaled_object(
        &s,
        &mut KedaState::default(),
        &input(5, vec![v(50.0), v(45.0)]),
        T0,
    );
    assert_eq!(d.desired_replicas, 9);
    assert_eq!(d.recommended_by.as_deref(), Some("external metric b"));
    // Value metric type with behavior defaults: ratio 3 × 4 ready pods = 12, limited to 8 by 100 %/15 s.
    let mut t = trigger("q", 10.0, 0.0);
    t.metric_type = TriggerMetricType::Value;
    let mut s = spec(vec![t]);
    s.behavior = Some(Behavior::default());
    let d = evaluate_scaled_object(&s, &mut KedaState::default(), &input(4, vec![v(30.0)]), T0);
    assert_eq!(d.recommendation, Some(12));
    assert_eq!(d.desired_replicas, 8);
    assert_eq!(
        d.limit.as_ref().map(|l| l.rule.as_str()),
        Some("ScaleUpLimit")
    );
    // The generated HPA never goes below one replica: maxReplicaCount caps it.
    let mut s = spec(vec![trigger("q", 1.0, 0.0)]);
    s.max_replica_count = 6;
    let d = evaluate_scaled_object(&s, &mut KedaState::default(), &input(5, vec![v(500.0)]), T0);
    assert_eq!(d.desired_replicas, 6);
}

#[test]
fn cooldown_to_zero() {
    let s = spec(vec![trigger("q", 10.0, 0.0)]);
    let mut state = KedaState::default();
    // Active at T0 with 3 replicas: lastActiveTime = T0.
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(25.0)]), T0);
    assert_eq!(executor(&d), "Hpa");
    assert_eq!(state.last_active_ms, Some(T0));
    // Inactive 200 s later: cooling down, the HPA still owns the count (and holds 3 by stabilization).
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(0.0)]), T0 + 200_000);
    assert_eq!((d.desired_replicas, executor(&d)), (3, "CoolingDown"));
    // At exactly the cooldown, still cooling (strictly after).
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(0.0)]), T0 + 300_000);
    assert_eq!(executor(&d), "CoolingDown");
    // After it, but before the next poll (pollingInterval 30 s): only the HPA runs.
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(0.0)]), T0 + 300_001);
    assert_eq!(executor(&d), "Hpa");
    assert!(!d.keda.as_ref().is_some_and(|k| k.polled));
    // The next poll scales to zero.
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(0.0)]), T0 + 330_000);
    assert_eq!(
        (d.desired_replicas, d.scale, executor(&d)),
        (0, true, "ScaleToZero")
    );
}

#[test]
fn initial_cooldown_and_idle() {
    // No lastActiveTime: initialCooldownPeriod from creation applies.
    let mut s = spec(vec![trigger("q", 10.0, 0.0)]);
    s.initial_cooldown_period_seconds = 60;
    let mut state = KedaState::default();
    let d = evaluate_scaled_object(&s, &mut state, &input(2, vec![v(0.0)]), T0);
    assert_eq!(executor(&d), "CoolingDown");
    let d = evaluate_scaled_object(&s, &mut state, &input(2, vec![v(0.0)]), T0 + 61_000);
    assert_eq!((d.desired_replicas, executor(&d)), (0, "ScaleToZero"));

    // idleReplicaCount 0 with minReplicaCount 2: inactive → idle, active → min.
    let mut s = spec(vec![trigger("q", 10.0, 0.0)]);
    s.min_replica_count = 2;
    s.idle_replica_count = Some(0);
    let mut created_earlier = KedaState {
        created_ms: Some(T0 - 3_600_000),
        ..KedaState::default()
    };
    let d = evaluate_scaled_object(&s, &mut created_earlier, &input(2, vec![v(0.0)]), T0);
    assert_eq!((d.desired_replicas, executor(&d)), (0, "ScaleToIdle"));
    let d = evaluate_scaled_object(&s, &mut KedaState::default(), &input(0, vec![v(4.0)]), T0);
    assert_eq!((d.desired_replicas, executor(&d)), (2, "ScaleFromZero"));
}

#[test]
fn fallback_after_failure_threshold() {
    // (behavior, current, expected replicas once the fallback applies)
    let rows = [
        (FallbackBehavior::Static, 5, 6),
        (FallbackBehavior::CurrentReplicas, 5, 5),
        (FallbackBehavior::CurrentReplicasIfHigher, 8, 8),
        (FallbackBehavior::CurrentReplicasIfHigher, 5, 6),
        (FallbackBehavior::CurrentReplicasIfLower, 8, 6),
        (FallbackBehavior::CurrentReplicasIfLower, 5, 5),
    ];
    for (behavior, current, expected) in rows {
        let mut s = spec(vec![trigger("q", 10.0, 0.0)]);
        s.fallback = Some(FallbackSpec {
            failure_threshold: 3,
            replicas: 6,
            behavior,
        });
        // Every evaluation below is a poll.
        s.polling_interval_seconds = 15;
        // No stabilization or rate limit in the way.
        let mut b = Behavior::default();
        b.scale_down.stabilization_window_seconds = Some(0);
        s.behavior = Some(b);
        let mut state = KedaState::default();
        for i in 0..3 {
            let d = evaluate_scaled_object(
                &s,
                &mut state,
                &input(current, vec![fail()]),
                T0 + i * 15_000,
            );
            assert_eq!(
                d.desired_replicas,
                current,
                "{behavior:?}: failure {} keeps the count",
                i + 1
            );
            assert!(
                d.keda
                    .as_ref()
                    .is_some_and(|k| k.fallback_triggers.is_empty())
            );
            assert_eq!(executor(&d), "FallbackPending");
        }
        let d = evaluate_scaled_object(&s, &mut state, &input(current, vec![fail()]), T0 + 60_000);
        assert_eq!(d.desired_replicas, expected, "{behavior:?} from {current}");
        assert_eq!(
            d.keda.as_ref().map(|k| k.fallback_triggers.clone()),
            Some(vec!["q".to_owned()])
        );
        assert_eq!(d.condition("Fallback").map(|c| c.status), Some(true));
        assert_eq!(state.health.get("q").map(|h| h.number_of_failures), Some(4));
        // A success resets the count.
        evaluate_scaled_object(&s, &mut state, &input(current, vec![v(10.0)]), T0 + 75_000);
        assert_eq!(state.health.get("q").map(|h| h.number_of_failures), Some(0));
    }
}

#[test]
fn scaling_modifiers_formula() {
    let modifiers = |formula: &str, target: f64, activation: f64| ScalingModifiers {
        formula: formula.to_owned(),
        target,
        activation_target: activation,
        metric_type: TriggerMetricType::AverageValue,
        target_text: target.to_string(),
    };
    // (formula, target, activation target, a, b, current, expected replicas, expected formula value, active)
    let rows = [
        ("(a + b) / 2", 1.0, 0.0, 10.0, 4.0, 4, 7, Some(7.0), true),
        ("a > 5 ? a : 0", 1.0, 1.0, 3.0, 0.0, 0, 0, Some(0.0), false),
        ("a > 5 ? a : b", 2.0, 0.0, 8.0, 1.0, 2, 4, Some(8.0), true),
        ("a * b", 10.0, 0.0, 3.0, 10.0, 0, 1, Some(30.0), true),
    ];
    for (formula, target, activation, a, b, current, expected, value, active) in rows {
        let mut s = spec(vec![trigger("a", 100.0, 0.0), trigger("b", 100.0, 0.0)]);
        s.scaling_modifiers = Some(modifiers(formula, target, activation));
        let d = evaluate_scaled_object(
            &s,
            &mut KedaState::default(),
            &input(current, vec![v(a), v(b)]),
            T0,
        );
        let k = d.keda.clone().unwrap();
        assert_eq!(
            (d.desired_replicas, k.formula_value, k.active),
            (expected, value, active),
            "{formula}"
        );
    }
    // A failing trigger fails the composite metric: no scaling.
    let mut s = spec(vec![trigger("a", 100.0, 0.0), trigger("b", 100.0, 0.0)]);
    s.scaling_modifiers = Some(modifiers("a + b", 1.0, 0.0));
    let d = evaluate_scaled_object(
        &s,
        &mut KedaState::default(),
        &input(3, vec![v(1.0), fail()]),
        T0,
    );
    assert_eq!((d.desired_replicas, d.scale), (3, false));
    assert!(d.error.is_some());
}

#[test]
fn non_finite_trigger_values_fail_the_trigger() {
    let s = spec(vec![trigger("q", 10.0, 0.0)]);
    let mut state = KedaState::default();
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(f64::NAN)]), T0);
    assert_eq!((d.desired_replicas, d.scale), (3, false));
    // Without a fallback KEDA keeps no health record; the failure is in the explanation.
    assert!(state.health.is_empty());
    let errors = d
        .keda
        .as_ref()
        .map(|k| k.trigger_errors.clone())
        .unwrap_or_default();
    assert!(
        errors
            .get("q")
            .is_some_and(|e| e.contains("not a finite number")),
        "{errors:?}"
    );
    let d = evaluate_scaled_object(&s, &mut state, &input(3, vec![v(f64::INFINITY)]), T0);
    assert_eq!((d.desired_replicas, d.scale), (3, false));
}

#[test]
fn polling_interval_and_cached_metrics() {
    // pollingInterval 30 s: the executor runs at T0 and T0+30 s, not at T0+15 s.
    let mut s = spec(vec![trigger("q", 10.0, 0.0)]);
    s.triggers[0].use_cached_metrics = true;
    let mut state = KedaState::default();
    let d = evaluate_scaled_object(&s, &mut state, &input(2, vec![v(50.0)]), T0);
    assert!(d.keda.as_ref().is_some_and(|k| k.polled));
    assert_eq!(d.desired_replicas, 4); // 2 → 5 wanted, scale-up limit max(2·2, 4)
    // Between polls the HPA reads the value cached at the last poll (50), not the fresh 100.
    let d = evaluate_scaled_object(&s, &mut state, &input(4, vec![v(100.0)]), T0 + 15_000);
    assert!(d.keda.as_ref().is_some_and(|k| !k.polled));
    assert_eq!(d.desired_replicas, 5);
    // At the next poll the fresh value is read (and cached).
    let d = evaluate_scaled_object(&s, &mut state, &input(5, vec![v(100.0)]), T0 + 30_000);
    assert!(d.keda.as_ref().is_some_and(|k| k.polled));
    assert_eq!(d.desired_replicas, 10);
    // Without useCachedMetrics the fresh value is used between polls too.
    let s = spec(vec![trigger("q", 10.0, 0.0)]);
    let mut state = KedaState::default();
    evaluate_scaled_object(&s, &mut state, &input(2, vec![v(50.0)]), T0);
    let d = evaluate_scaled_object(&s, &mut state, &input(4, vec![v(100.0)]), T0 + 15_000);
    assert_eq!(d.desired_replicas, 8);
}

#[test]
fn only_cpu_memory_triggers_are_always_active() {
    let mut cpu = trigger("cpu", 50.0, 0.0);
    cpu.kind = "cpu".to_owned();
    cpu.metric_type = TriggerMetricType::Utilization;
    let mut s = spec(vec![cpu]);
    s.min_replica_count = 1;
    let mut i = input(2, vec![]);
    i.triggers = vec![TriggerValue::PerPod(
        i.pods
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    surge_engine::PodMetric {
                        milli: 100,
                        timestamp_ms: T0,
                        window_ms: 30_000,
                    },
                )
            })
            .collect(),
    )];
    let d = evaluate_scaled_object(&s, &mut KedaState::default(), &i, T0);
    let k = d.keda.as_ref().unwrap();
    assert!(k.active);
    // Resource metrics are never part of triggersActivity.
    assert!(k.triggers_activity.is_empty());
    assert_eq!(
        d.metrics[0].name,
        "cpu resource utilization (percentage of request)"
    );
}
