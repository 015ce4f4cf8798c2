//! KEDA's ScaledObject API helpers, ported from kedacore/keda at
//! 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: `apis/keda/v1alpha1/scaledobject_types_test.go`, one block per
//! upstream test, one row per case with its name.

// Test helpers may unwrap (a panic is a failed test); tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::BTreeMap;

use surge_engine::keda::TriggerMetricType;
use surge_engine::keda::admission;
use surge_engine::keda::annotations::{self, Annotations};
use surge_engine::{
    ControllerConfig, FallbackBehavior, FallbackSpec, ManifestError, ScaledObjectSpec,
    ScalingModifiers, TriggerSpec, parse_scaled_object,
};

fn trigger(kind: &str, metric_type: TriggerMetricType) -> TriggerSpec {
    TriggerSpec {
        name: format!("s0-{kind}"),
        named: false,
        kind: kind.to_owned(),
        metric_type,
        threshold: 1.0,
        activation_threshold: 0.0,
        container: None,
        use_cached_metrics: false,
        metadata: BTreeMap::new(),
    }
}

fn so(triggers: Vec<TriggerSpec>, fallback: Option<(i32, i32)>) -> ScaledObjectSpec {
    ScaledObjectSpec {
        name: "so".to_owned(),
        annotations: Annotations::default(),
        polling_interval_seconds: 30,
        cooldown_period_seconds: 300,
        initial_cooldown_period_seconds: 0,
        min_replica_count: 0,
        min_replica_count_set: false,
        max_replica_count: 100,
        idle_replica_count: None,
        triggers,
        fallback: fallback.map(|(failure_threshold, replicas)| FallbackSpec {
            failure_threshold,
            replicas,
            behavior: FallbackBehavior::Static,
        }),
        scaling_modifiers: None,
        behavior: None,
        controller: ControllerConfig::default(),
        warnings: Vec::new(),
    }
}

#[test]
fn check_fallback_valid() {
    use TriggerMetricType::{AverageValue, Utilization, Value};
    let modifiers = |metric_type| ScalingModifiers {
        formula: "x * 2".to_owned(),
        target: 0.0,
        target_text: String::new(),
        activation_target: 0.0,
        metric_type,
    };
    let rows: Vec<(&str, ScaledObjectSpec, bool)> = vec![
        (
            "No fallback configured",
            so(vec![trigger("couchdb", AverageValue)], None),
            false,
        ),
        (
            "Explicit AverageValue metricType - valid",
            so(vec![trigger("couchdb", AverageValue)], Some((3, 1))),
            false,
        ),
        (
            "Implicit AverageValue metricType (empty string) - valid",
            so(vec![trigger("couchdb", AverageValue)], Some((3, 1))),
            false,
        ),
        (
            "Value metricType - valid",
            so(vec![trigger("couchdb", Value)], Some((3, 1))),
            false,
        ),
        (
            "Multiple triggers with one valid AverageValue - valid",
            so(
                vec![
                    trigger("prometheus", Value),
                    trigger("couchdb", AverageValue),
                ],
                Some((3, 1)),
            ),
            false,
        ),
        (
            "CPU trigger - invalid",
            so(vec![trigger("cpu", AverageValue)], Some((3, 1))),
            true,
        ),
        (
            "Memory trigger - invalid",
            so(vec![trigger("memory", AverageValue)], Some((3, 1))),
            true,
        ),
        (
            "Multiple triggers with one CPU and one valid - valid",
            so(
                vec![
                    trigger("cpu", Utilization),
                    trigger("couchdb", AverageValue),
                ],
                Some((3, 1)),
            ),
            false,
        ),
        (
            "Negative FailureThreshold - invalid",
            so(vec![trigger("couchdb", AverageValue)], Some((-1, 1))),
            true,
        ),
        (
            "Negative Replicas - invalid",
            so(vec![trigger("couchdb", AverageValue)], Some((3, -1))),
            true,
        ),
        (
            "Using ScalingModifiers with AverageValue MetricType - valid",
            ScalingModifiersCase::with(modifiers(AverageValue)),
            false,
        ),
        (
            "Using ScalingModifiers with Value MetricType - valid",
            ScalingModifiersCase::with(modifiers(Value)),
            false,
        ),
    ];
    for (name, spec, want_error) in rows {
        assert_eq!(
            admission::check_fallback_valid(&spec).is_err(),
            want_error,
            "{name}"
        );
    }
}

struct ScalingModifiersCase;

impl ScalingModifiersCase {
    fn with(m: ScalingModifiers) -> ScaledObjectSpec {
        let mut s = so(
            vec![trigger("couchdb", TriggerMetricType::AverageValue)],
            Some((3, 1)),
        );
        s.scaling_modifiers = Some(m);
        s
    }
}

fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn has_paused_annotation() {
    for (name, pairs, want) in [
        ("No annotations", vec![], false),
        (
            "Has PausedAnnotation only",
            vec![(annotations::PAUSED, "true")],
            true,
        ),
        (
            "Has PausedReplicasAnnotation only",
            vec![(annotations::PAUSED_REPLICAS, "5")],
            true,
        ),
        (
            "Has both annotations",
            vec![
                (annotations::PAUSED, "true"),
                (annotations::PAUSED_REPLICAS, "5"),
            ],
            true,
        ),
        (
            "Has other annotations but not paused ones",
            vec![("some-other-annotation", "value")],
            false,
        ),
    ] {
        assert_eq!(
            annotations::has_paused_annotation(&raw(&pairs)),
            want,
            "{name}"
        );
    }
}

#[test]
fn need_to_be_paused_by_annotation() {
    for (name, pairs, want) in [
        ("No annotations", vec![], false),
        (
            "PausedAnnotation with true value",
            vec![(annotations::PAUSED, "true")],
            true,
        ),
        (
            "PausedAnnotation with false value",
            vec![(annotations::PAUSED, "false")],
            false,
        ),
        (
            "PausedAnnotation with invalid value",
            vec![(annotations::PAUSED, "invalid")],
            true,
        ),
        (
            "PausedReplicasAnnotation with value and status set",
            vec![(annotations::PAUSED_REPLICAS, "5")],
            true,
        ),
        (
            "PausedReplicasAnnotation with value but no status set",
            vec![(annotations::PAUSED_REPLICAS, "5")],
            true,
        ),
        (
            "Both annotations set",
            vec![
                (annotations::PAUSED, "true"),
                (annotations::PAUSED_REPLICAS, "5"),
            ],
            true,
        ),
        (
            "Both annotations set, PausedAnnotation false",
            vec![
                (annotations::PAUSED, "false"),
                (annotations::PAUSED_REPLICAS, "5"),
            ],
            true,
        ),
    ] {
        let a = Annotations::parse(&raw(&pairs)).unwrap();
        assert_eq!(a.paused_by_annotation(), want, "{name}");
    }
}

fn manifest(spec: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: so}}\nspec:\n  scaleTargetRef: {{name: w}}\n  triggers: [{{type: couchdb, name: x, metadata: {{threshold: '1'}}}}]\n{spec}"
    )
}

#[test]
fn is_using_modifiers() {
    // "No Advanced config" and "Empty ScalingModifiers": not used.
    for spec in ["", "  advanced: {scalingModifiers: {}}\n"] {
        let so = parse_scaled_object(&manifest(spec)).unwrap();
        assert!(so.scaling_modifiers.is_none(), "{spec:?}");
    }
    // "Has ScalingModifiers formula"
    let so = parse_scaled_object(&manifest(
        "  advanced: {scalingModifiers: {formula: 'x * 2', target: '2'}}\n",
    ))
    .unwrap();
    assert!(so.scaling_modifiers.is_some());
    // "Has ScalingModifiers target": used, so the webhook asks for the formula.
    let Err(ManifestError::Invalid(errors)) =
        parse_scaled_object(&manifest("  advanced: {scalingModifiers: {target: '2'}}\n"))
    else {
        panic!("expected a refusal");
    };
    assert!(
        errors.iter().any(|e| e.contains("Formula is mandatory")),
        "{errors:?}"
    );
}

#[test]
fn check_replica_count_bounds_are_valid() {
    for (name, min, max, idle, want) in [
        ("Valid: min 1, max 5, no idle", 1, 5, None, None),
        ("Valid: min 1, max 5, idle 0", 1, 5, Some(0), None),
        (
            "Invalid: min 2 > max 1",
            2,
            1,
            None,
            Some("MinReplicaCount=2 must be less than MaxReplicaCount=1"),
        ),
        (
            "Invalid: idle 1 == min 1",
            1,
            5,
            Some(1),
            Some("IdleReplicaCount=1 must be less than MinReplicaCount=1"),
        ),
        (
            "Invalid: idle 2 > min 1",
            1,
            5,
            Some(2),
            Some("IdleReplicaCount=2 must be less than MinReplicaCount=1"),
        ),
    ] {
        let mut s = so(
            vec![trigger("couchdb", TriggerMetricType::AverageValue)],
            None,
        );
        s.min_replica_count = min;
        s.min_replica_count_set = true;
        s.max_replica_count = max;
        s.idle_replica_count = idle;
        match (admission::check_replica_count_bounds(&s), want) {
            (Ok(()), None) => {}
            (Err(e), Some(text)) => assert!(e.contains(text), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn get_hpa_replicas() {
    for (name, min, max, want) in [
        ("Default min and max", None, None, (1, 100)),
        ("Custom min, default max", Some(5), None, (5, 100)),
        ("Default min, custom max", None, Some(10), (1, 10)),
        ("Custom min and max", Some(5), Some(10), (5, 10)),
        ("Zero min, default max", Some(0), None, (1, 100)),
    ] {
        let mut spec = String::new();
        if let Some(m) = min {
            spec.push_str(&format!("  minReplicaCount: {m}\n"));
        }
        if let Some(m) = max {
            spec.push_str(&format!("  maxReplicaCount: {m}\n"));
        }
        let hpa = parse_scaled_object(&manifest(&spec))
            .unwrap()
            .generated_hpa();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), want, "{name}");
    }
}

#[test]
fn get_paused_replica_count() {
    // "nil annotations returns nil" / "annotation absent returns nil"
    assert_eq!(Annotations::parse(&raw(&[])).unwrap().paused_replicas, None);
    assert_eq!(
        Annotations::parse(&raw(&[("other", "x")]))
            .unwrap()
            .paused_replicas,
        None
    );
    // "valid integer annotation returns pointer to value" / "zero value ..."
    assert_eq!(
        Annotations::parse(&raw(&[(annotations::PAUSED_REPLICAS, "3")]))
            .unwrap()
            .paused_replicas,
        Some(3)
    );
    assert_eq!(
        Annotations::parse(&raw(&[(annotations::PAUSED_REPLICAS, "0")]))
            .unwrap()
            .paused_replicas,
        Some(0)
    );
    // "invalid string annotation returns error"
    assert!(Annotations::parse(&raw(&[(annotations::PAUSED_REPLICAS, "abc")])).is_err());
}
