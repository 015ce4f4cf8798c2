//! `scalingModifiers` at each poll, as KEDA's `pkg/scaling/modifiers/formula.go` runs them: expr-lang
//! formulas over the triggers' values, nil past the failure threshold under `behavior: scalingModifiers`,
//! a nil result standing for `fallback.replicas · target`, and the composite value truncated to milli-units.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::hpa::PodInfo;
use surge_engine::{
    KedaInput, KedaState, ScaledObjectSpec, TriggerValue, evaluate_scaled_object,
    parse_scaled_object,
};

const T0: i64 = 1_700_000_000_000;

fn spec(formula: &str, fallback: &str) -> ScaledObjectSpec {
    let yaml = format!(
        "apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: so}}
spec:
  scaleTargetRef: {{name: web}}
  minReplicaCount: 1
  maxReplicaCount: 50
  pollingInterval: 30
{fallback}  advanced:
    scalingModifiers: {{formula: '{formula}', target: '2'}}
  triggers:
  - {{type: prometheus, name: a, metadata: {{query: a, threshold: '1'}}}}
  - {{type: prometheus, name: b, metadata: {{query: b, threshold: '1'}}}}
"
    );
    parse_scaled_object(&yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn input(values: Vec<TriggerValue>) -> KedaInput {
    KedaInput {
        current_replicas: 4,
        status_replicas: 4,
        pods: (0..4)
            .map(|i| PodInfo::running(&format!("p{i}"), 100))
            .collect(),
        triggers: values,
    }
}

/// (formula value, recommendation) of one evaluation.
fn run(
    s: &ScaledObjectSpec,
    state: &mut KedaState,
    values: Vec<TriggerValue>,
    t: i64,
) -> (Option<f64>, Option<i32>) {
    let d = evaluate_scaled_object(s, state, &input(values), T0 + t);
    (d.keda.unwrap().formula_value, d.recommendation)
}

#[test]
fn expr_language_formulas_feed_the_composite_metric() {
    use TriggerValue::Value;
    let rows = [
        // count() with a predicate closure, a ternary, an int result cast to float.
        ("count([a, b], {# > 1}) > 1 ? 12 : 0", 3.0, 4.0, 12.0, 6),
        ("count([a, b], {# > 1}) > 1 ? 12 : 0", 3.0, 1.0, 0.0, 0),
        // Division gives a float; the composite value is truncated to milli-units.
        ("a / 3", 1.0, 0.0, 0.333, 1),
        // A negative scaler value reads 0 (GenerateMetricInMili), so the formula sees 0 + b.
        ("a + b", -5.0, 8.0, 8.0, 4),
        ("float(max(a, b) * 2)", 2.5, 7.0, 14.0, 7),
    ];
    for (formula, a, b, value, replicas) in rows {
        let s = spec(formula, "");
        let got = run(&s, &mut KedaState::default(), vec![Value(a), Value(b)], 0);
        assert_eq!(
            got,
            (Some(value), Some(replicas)),
            "{formula} with a={a}, b={b}"
        );
    }
}

#[test]
fn nil_past_the_threshold_and_a_nil_result() {
    use TriggerValue::{Failed, Value};
    let fallback = "  fallback: {failureThreshold: 1, replicas: 6, behavior: scalingModifiers}\n";
    // `a ?? b`: a failing trigger is an error up to the threshold, then nil, and `??` takes b.
    let s = spec("a ?? b", fallback);
    let mut state = KedaState::default();
    let failing = || vec![Failed("down".to_owned()), Value(10.0)];
    let (value, _) = run(&s, &mut state, failing(), 0);
    assert_eq!(value, None, "one failure: the formula's trigger errors");
    assert_eq!(
        run(&s, &mut state, failing(), 30_000),
        (Some(10.0), Some(5))
    );
    // Both nil: the result is nil, which stands for fallback.replicas · target = 12.
    let s = spec("a ?? b", fallback);
    let mut state = KedaState::default();
    let both = || vec![Failed("down".to_owned()), Failed("down".to_owned())];
    run(&s, &mut state, both(), 0);
    assert_eq!(run(&s, &mut state, both(), 30_000), (Some(12.0), Some(6)));
    // Without `??`, nil in arithmetic is a runtime error: no composite value, as in KEDA.
    let s = spec("a + b", fallback);
    let mut state = KedaState::default();
    run(&s, &mut state, failing(), 0);
    assert_eq!(run(&s, &mut state, failing(), 30_000).0, None);
}
