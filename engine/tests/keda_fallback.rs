//! KEDA fallback, ported from kedacore/keda at 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a:
//! `pkg/fallback/fallback_test.go` (`Describe("fallback")`), one block per `It`, its title in a comment.
//! Upstream reads through mocked clients (the scaler, `/scale`, the status patch); here the same inputs
//! are arguments: the read's result, the current replica count, the health map.
//! `TestUpdateStatusConcurrency` shares the health map across threads under a lock, as the caller does.

// Test helpers may unwrap (a panic is a failed test).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use surge_engine::hpa::ConditionStatus;
use surge_engine::keda::TriggerMetricType;
use surge_engine::keda::fallback::{self, FallbackRead, TargetReplicas};
use surge_engine::{
    ControllerConfig, FallbackBehavior, FallbackSpec, HealthStatus, HealthStatusType,
    ScaledObjectSpec, ScalingModifiers, TriggerSpec,
};

const METRIC: &str = "some_metric_name";

fn so(fallback: Option<FallbackSpec>) -> ScaledObjectSpec {
    ScaledObjectSpec {
        name: "name".to_owned(),
        annotations: Default::default(),
        polling_interval_seconds: 30,
        cooldown_period_seconds: 300,
        initial_cooldown_period_seconds: 0,
        min_replica_count: 0,
        min_replica_count_set: false,
        max_replica_count: 100,
        idle_replica_count: None,
        triggers: vec![TriggerSpec {
            name: METRIC.to_owned(),
            named: true,
            kind: "prometheus".to_owned(),
            metric_type: TriggerMetricType::AverageValue,
            threshold: 10.0,
            activation_threshold: 0.0,
            container: None,
            use_cached_metrics: false,
            metadata: Default::default(),
        }],
        fallback,
        scaling_modifiers: None,
        behavior: None,
        controller: ControllerConfig::default(),
        warnings: Vec::new(),
    }
}

fn fb(failure_threshold: i32, replicas: i32, behavior: FallbackBehavior) -> Option<FallbackSpec> {
    Some(FallbackSpec {
        failure_threshold,
        replicas,
        behavior,
    })
}

fn health(entries: &[(&str, i32, HealthStatusType)]) -> BTreeMap<String, HealthStatus> {
    entries
        .iter()
        .map(|(m, n, s)| {
            (
                (*m).to_owned(),
                HealthStatus {
                    number_of_failures: *n,
                    status: *s,
                },
            )
        })
        .collect()
}

/// `createMetricSpec(target)`: an AverageValue target.
fn read(
    spec: &ScaledObjectSpec,
    h: &mut BTreeMap<String, HealthStatus>,
    result: Result<f64, &str>,
    target: f64,
    current: i32,
) -> FallbackRead {
    fallback::read_with_fallback(
        spec,
        h,
        METRIC,
        result.map_err(str::to_owned),
        (TriggerMetricType::AverageValue, target),
        TargetReplicas {
            current,
            ready: current,
        },
    )
}

fn status(h: &BTreeMap<String, HealthStatus>) -> Option<(i32, HealthStatusType)> {
    h.get(METRIC).map(|s| (s.number_of_failures, s.status))
}

use HealthStatusType::{Failing, Happy};

#[test]
fn returns_the_metric_when_fallback_is_disabled() {
    // should return the expected metric when fallback is disabled
    let mut h = BTreeMap::new();
    assert_eq!(
        read(&so(None), &mut h, Ok(5.0), 3.0, 0),
        FallbackRead::Value(5.0)
    );
}

#[test]
fn initialises_the_health_status_on_success() {
    // should initialise the health status on success when fallback is enabled and status is empty
    let mut h = BTreeMap::new();
    let s = so(fb(3, 10, FallbackBehavior::Static));
    assert_eq!(read(&s, &mut h, Ok(6.0), 3.0, 0), FallbackRead::Value(6.0));
    assert_eq!(status(&h), Some((0, Happy)));
}

#[test]
fn resets_the_health_status_on_success() {
    // should reset the health status when scaler metrics are available when fallback is enabled
    let mut h = health(&[(METRIC, 5, Failing)]);
    let s = so(fb(3, 10, FallbackBehavior::Static));
    assert_eq!(read(&s, &mut h, Ok(6.0), 3.0, 0), FallbackRead::Value(6.0));
    assert_eq!(status(&h), Some((0, Happy)));
}

#[test]
fn keeps_the_health_status_when_fallback_is_not_enabled() {
    // should not reset the health status when fallback is not enabled
    let mut h = health(&[(METRIC, 5, Failing)]);
    assert_eq!(
        read(&so(None), &mut h, Ok(6.0), 3.0, 0),
        FallbackRead::Value(6.0)
    );
    assert_eq!(status(&h), Some((5, Failing)));
}

#[test]
fn propagates_the_error_when_fallback_is_disabled() {
    // should propagate the error when fallback is disabled
    let mut h = BTreeMap::new();
    assert_eq!(
        read(&so(None), &mut h, Err("some error"), 3.0, 0),
        FallbackRead::Error("some error".to_owned())
    );
    assert!(h.is_empty());
}

#[test]
fn bumps_the_number_of_failures() {
    // should bump the number of failures when metrics call fails
    let mut h = health(&[(METRIC, 0, Happy)]);
    let s = so(fb(3, 10, FallbackBehavior::Static));
    assert_eq!(
        read(&s, &mut h, Err("some error"), 10.0, 5),
        FallbackRead::Error("some error".to_owned())
    );
    assert_eq!(status(&h), Some((1, Failing)));
}

#[test]
fn normalised_metric_beyond_the_threshold() {
    // should return a normalised metric when number of failures are beyond threshold
    // should ignore error if we fail to update kubernetes status (same inputs and outcome: surge has no
    // status write to fail)
    for _case in 0..2 {
        let mut h = health(&[(METRIC, 3, Happy)]);
        let s = so(fb(3, 10, FallbackBehavior::Static));
        assert_eq!(
            read(&s, &mut h, Err("some error"), 10.0, 5),
            FallbackRead::Fallback {
                value: 100.0,
                replicas: 10
            }
        );
        assert_eq!(status(&h), Some((4, Failing)));
    }
}

#[test]
fn invalid_parameters_return_the_error() {
    // should return error when fallback is enabled but scaledobject has invalid parameter
    let mut h = health(&[(METRIC, 3, Happy)]);
    let s = so(fb(-3, 10, FallbackBehavior::Static));
    assert_eq!(
        read(&s, &mut h, Err("some error"), 10.0, 5),
        FallbackRead::Error("some error".to_owned())
    );
}

#[test]
fn sets_the_fallback_condition() {
    // should set the fallback condition when a fallback exists in the scaled object
    let mut h = health(&[("another metric name", 6, Failing), (METRIC, 3, Happy)]);
    let s = so(fb(3, 10, FallbackBehavior::Static));
    assert!(matches!(
        read(&s, &mut h, Err("some error"), 10.0, 5),
        FallbackRead::Fallback { .. }
    ));
    let c = fallback::condition(&s, &h);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, "FallbackExists")
    );
}

#[test]
fn fallback_condition_false_when_config_invalid() {
    // should set the fallback condition to false if the config is invalid
    let mut h = health(&[("another metric name", 6, Failing), (METRIC, 3, Happy)]);
    let s = so(fb(-3, 10, FallbackBehavior::Static));
    assert_eq!(
        read(&s, &mut h, Err("some error"), 10.0, 5),
        FallbackRead::Error("some error".to_owned())
    );
    let c = fallback::condition(&s, &h);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "NoFallbackFound")
    );
}

#[test]
fn behaviors() {
    // should use fallback replicas when current replicas is lower when behavior is 'currentReplicasIfHigher'
    // should use current replicas when behavior is 'currentReplicas'
    // should ignore current replicas when behavior is 'static'
    for (behavior, current, want) in [
        (FallbackBehavior::CurrentReplicasIfHigher, 4, 100.0),
        (FallbackBehavior::CurrentReplicas, 6, 60.0),
        (FallbackBehavior::Static, 15, 100.0),
    ] {
        let mut h = health(&[(METRIC, 3, Happy)]);
        let s = so(fb(3, 10, behavior));
        let got = read(&s, &mut h, Err("some error"), 10.0, current);
        assert!(
            matches!(got, FallbackRead::Fallback { value, .. } if value == want),
            "{behavior:?}: {got:?}"
        );
    }
}

// ---- Beyond the upstream table: the rest of doFallback and HasValidFallback ----

#[test]
fn value_targets_divide_by_ready_pods() {
    // doFallback: Value metrics are divided by the ready replica count; none ready is an error.
    let s = so(fb(0, 6, FallbackBehavior::Static));
    let mut h = BTreeMap::new();
    let got = fallback::read_with_fallback(
        &s,
        &mut h,
        METRIC,
        Err("down".to_owned()),
        (TriggerMetricType::Value, 10.0),
        TargetReplicas {
            current: 4,
            ready: 4,
        },
    );
    assert_eq!(
        got,
        FallbackRead::Fallback {
            value: 15.0,
            replicas: 6
        }
    );
    let mut h = BTreeMap::new();
    let got = fallback::read_with_fallback(
        &s,
        &mut h,
        METRIC,
        Err("down".to_owned()),
        (TriggerMetricType::Value, 10.0),
        TargetReplicas {
            current: 4,
            ready: 0,
        },
    );
    assert_eq!(
        got,
        FallbackRead::Error("error performing fallback".to_owned())
    );
}

#[test]
fn composite_fallback_needs_an_integer_target() {
    // HasValidFallback: with scalingModifiers the target must ParseInt to a value above 0.
    for (target, valid) in [("2", true), ("2.5", false), ("0", false), ("x", false)] {
        let mut s = so(fb(1, 3, FallbackBehavior::Static));
        s.scaling_modifiers = Some(ScalingModifiers {
            formula: METRIC.to_owned(),
            target: target.parse().unwrap_or(0.0),
            target_text: target.to_owned(),
            activation_target: 0.0,
            metric_type: TriggerMetricType::AverageValue,
        });
        assert_eq!(fallback::has_valid_fallback(&s), valid, "{target}");
    }
}

#[test]
fn scaling_modifiers_behavior_serves_a_placeholder() {
    let s = so(fb(0, 3, FallbackBehavior::ScalingModifiers));
    let mut h = BTreeMap::new();
    assert_eq!(
        read(&s, &mut h, Err("down"), 10.0, 2),
        FallbackRead::Placeholder
    );
    assert_eq!(status(&h), Some((1, Failing)));
}

#[test]
fn update_status_concurrency() {
    // TestUpdateStatusConcurrency: 20 concurrent reads of different metrics of one ScaledObject, all
    // failing, must not race on the health map. Upstream shares the ScaledObject under the scalers
    // cache's RWMutex; here `read_with_fallback` takes the health map `&mut`, so sharing it across threads
    // needs a lock (the autoscaler holds one per policy), and the outcome is checked too: one failure per
    // metric, none lost.
    let spec = so(fb(3, 10, FallbackBehavior::Static));
    let shared = std::sync::Mutex::new(BTreeMap::<String, HealthStatus>::new());
    std::thread::scope(|s| {
        for i in 0..20 {
            let (spec, shared) = (&spec, &shared);
            s.spawn(move || {
                let mut h = shared.lock().unwrap();
                fallback::read_with_fallback(
                    spec,
                    &mut h,
                    &format!("metric_{i}"),
                    Err("scaler error".to_owned()),
                    (TriggerMetricType::AverageValue, 3.0),
                    TargetReplicas {
                        current: 1,
                        ready: 1,
                    },
                );
            });
        }
    });
    let h = shared.into_inner().unwrap();
    assert_eq!(h.len(), 20);
    assert!(
        h.values()
            .all(|s| (s.number_of_failures, s.status) == (1, Failing)),
        "{h:?}"
    );
}
