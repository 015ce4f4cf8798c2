//! KEDA's ScaledObject executor, ported from kedacore/keda at 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a:
//! `pkg/scaling/executor/scale_scaledobjects_test.go`, one block per upstream test, its name in a comment.
//! Upstream reads the current count and writes `/scale` through mocks; here the count is an input and the
//! write is `scale_to`.

// Test helpers may unwrap (a panic is a failed test).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use surge_engine::hpa::ConditionStatus;
use surge_engine::keda::executor::{self, ExecutorInput, ExecutorResult};
use surge_engine::keda::{Annotations, TriggerMetricType};
use surge_engine::{
    Condition, ControllerConfig, FallbackBehavior, FallbackSpec, KedaCondition, ScaledObjectSpec,
    TriggerSpec,
};

const NOW: i64 = 1_700_000_000_000;

fn so(min: i32, idle: Option<i32>) -> ScaledObjectSpec {
    ScaledObjectSpec {
        name: "name".to_owned(),
        annotations: Annotations::default(),
        polling_interval_seconds: 30,
        cooldown_period_seconds: 300,
        initial_cooldown_period_seconds: 0,
        min_replica_count: min,
        min_replica_count_set: true,
        max_replica_count: 100,
        idle_replica_count: idle,
        triggers: vec![TriggerSpec {
            name: "testTrigger".to_owned(),
            named: true,
            kind: "prometheus".to_owned(),
            metric_type: TriggerMetricType::AverageValue,
            threshold: 1.0,
            activation_threshold: 0.0,
            container: None,
            use_cached_metrics: false,
            metadata: Default::default(),
        }],
        fallback: None,
        scaling_modifiers: None,
        behavior: None,
        controller: ControllerConfig::default(),
        warnings: Vec::new(),
    }
}

fn annotations(pairs: &[(&str, &str)]) -> Annotations {
    let raw: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Annotations::parse(&raw).unwrap()
}

/// `RequestScale(ctx, so, isActive, isError, options)`; the ScaledObject has no `lastActiveTime` and a zero
/// `creationTimestamp` (Go's zero time: long ago), as upstream's fixtures.
fn request(
    spec: &ScaledObjectSpec,
    current: i32,
    active: bool,
    error: bool,
    active_triggers: &[&str],
) -> ExecutorResult {
    executor::request_scale(
        spec,
        &spec.annotations,
        &ExecutorInput {
            active,
            error,
            active_triggers: active_triggers.iter().map(|t| (*t).to_owned()).collect(),
            current,
            created_ms: i64::MIN / 2,
            last_active_ms: None,
            now_ms: NOW,
        },
    )
}

fn condition<'a>(r: &'a ExecutorResult, kind: &str) -> Option<&'a KedaCondition> {
    r.conditions.iter().find(|c| c.kind == kind)
}

fn status(r: &ExecutorResult, kind: &str) -> Option<ConditionStatus> {
    condition(r, kind).map(|c| c.status)
}

#[test]
fn scale_to_min_replicas_when_not_active() {
    // TestScaleToMinReplicasWhenNotActive
    let r = request(&so(0, None), 10, false, false, &[]);
    assert_eq!(r.scale_to, Some(0));
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::False));
}

#[test]
fn scale_to_min_replicas_from_lower_initial_replica_count() {
    // TestScaleToMinReplicasFromLowerInitialReplicaCount
    let r = request(&so(5, None), 1, false, false, &[]);
    assert_eq!(r.scale_to, Some(5));
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::False));
}

#[test]
fn scale_from_min_replicas_when_active() {
    // TestScaleFromMinReplicasWhenActive
    let r = request(&so(0, None), 0, true, false, &[]);
    assert_eq!(r.scale_to, Some(1));
    let c = condition(&r, "Active").unwrap();
    assert_eq!(c.status, ConditionStatus::True);
    assert_eq!(c.reason, "ScalerActive");
    assert_eq!(
        c.message,
        "Scaling is performed because triggers are active"
    );
    assert!(r.last_active_ms.is_some());
}

#[test]
fn scale_to_idle_replicas_when_not_active() {
    // TestScaleToIdleReplicasWhenNotActive
    let r = request(&so(5, Some(0)), 10, false, false, &[]);
    assert_eq!(r.scale_to, Some(0));
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::False));
}

#[test]
fn scale_from_idle_to_min_replicas_when_active() {
    // TestScaleFromIdleToMinReplicasWhenActive
    let r = request(&so(5, Some(0)), 0, true, false, &[]);
    assert_eq!(r.scale_to, Some(5));
    let c = condition(&r, "Active").unwrap();
    assert_eq!(
        (c.status, c.reason.as_str(), c.message.as_str()),
        (
            ConditionStatus::True,
            "ScalerActive",
            "Scaling is performed because triggers are active"
        )
    );
    assert!(r.last_active_ms.is_some());
}

#[test]
fn scale_to_paused_replicas_count() {
    // TestScaleToPausedReplicasCount: the executor stops at the pause (Paused True, Active not set);
    // the count itself is the controller's move (handlePause), which surge folds into the same result.
    let mut spec = so(0, None);
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused-replicas", "0")]);
    let r = request(&spec, 2, true, false, &[]);
    assert_eq!(status(&r, "Paused"), Some(ConditionStatus::True));
    assert_ne!(status(&r, "Active"), Some(ConditionStatus::True));
    assert_eq!(r.scale_to, Some(0));
    assert_eq!(r.frozen_by, Some("autoscaling.keda.sh/paused-replicas"));
}

#[test]
fn event_with_trigger_info() {
    // TestEventWitTriggerInfo: "Scaled  namespace/name from 2 to 5, triggered by testTrigger"
    let r = request(&so(5, Some(0)), 2, true, false, &["testTrigger"]);
    assert_eq!(r.scale_to, Some(5));
    assert_eq!(r.why, "from 2 to 5, triggered by testTrigger");
}

#[test]
fn no_scale_to_min_when_not_active_and_paused_scale_in() {
    // TestNoScaleToMinReplicasWhenNotActiveAndPauseScaleInAnnotationSet
    let mut spec = so(0, None);
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused-scale-in", "true")]);
    let r = request(&spec, 5, false, false, &[]);
    assert_eq!(r.scale_to, None);
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::False));
    assert_eq!(r.frozen_by, Some("autoscaling.keda.sh/paused-scale-in"));
}

#[test]
fn no_scale_to_idle_when_not_active_and_paused_scale_in() {
    // TestNoScaleToIdleReplicasWhenNotActiveAndPauseScaleInAnnotationSet
    let mut spec = so(5, Some(0));
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused-scale-in", "true")]);
    let r = request(&spec, 5, false, false, &[]);
    assert_eq!(r.scale_to, None);
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::False));
}

#[test]
fn scale_from_min_when_activation_forced() {
    // TestScaleFromMinReplicasWhenActivationForced
    let mut spec = so(0, None);
    spec.annotations = annotations(&[("autoscaling.keda.sh/force-activation", "true")]);
    let r = request(&spec, 0, false, false, &[]);
    assert_eq!(r.scale_to, Some(1));
    let c = condition(&r, "Active").unwrap();
    assert_eq!(
        (c.status, c.reason.as_str(), c.message.as_str()),
        (
            ConditionStatus::True,
            "ScalerActive",
            "Scaling is performed because activation is being forced by annotation"
        )
    );
    assert!(r.last_active_ms.is_some());
}

#[test]
fn no_scale_from_min_when_active_and_paused_scale_out() {
    // TestNoScaleFromMinReplicasWhenActiveAndPausedScaleOutAnnotationSet
    let mut spec = so(0, None);
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused-scale-out", "true")]);
    let r = request(&spec, 0, true, false, &[]);
    assert_eq!(r.scale_to, None);
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::True));
}

#[test]
fn no_scale_from_idle_to_min_when_active_and_paused_scale_out() {
    // TestNoScaleFromIdleReplicasToMinReplicasWhenActiveAndPausedScaleOutAnnotationSet
    let mut spec = so(5, Some(0));
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused-scale-out", "true")]);
    let r = request(&spec, 0, true, false, &[]);
    assert_eq!(r.scale_to, None);
    assert_eq!(status(&r, "Active"), Some(ConditionStatus::True));
}

// ---- getHPAHealth / checkHPAHealth ----

fn hpa_condition(kind: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        kind: kind.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

fn health(conditions: Option<&[Condition]>) -> Option<(ConditionStatus, String, String)> {
    executor::hpa_health(conditions).map(|c| (c.status, c.reason, c.message))
}

#[test]
fn get_hpa_health() {
    // TestGetHPAHealth_NoHPAName and TestGetHPAHealth_HPAReadError: the HPA cannot be observed.
    assert_eq!(health(None), None);
    // TestGetHPAHealth_ScalingActiveTrue
    assert_eq!(
        health(Some(&[hpa_condition("ScalingActive", true, "", "")])),
        Some((
            ConditionStatus::True,
            "HPAActive".to_owned(),
            "HPA is actively scaling".to_owned()
        ))
    );
    // TestGetHPAHealth_ScalingActiveFalse
    assert_eq!(
        health(Some(&[hpa_condition(
            "ScalingActive",
            false,
            "FailedGetExternalMetric",
            "unable to get metrics"
        )])),
        Some((
            ConditionStatus::False,
            "FailedGetExternalMetric".to_owned(),
            "HPA is not actively scaling: unable to get metrics".to_owned()
        ))
    );
    // TestGetHPAHealth_ScalingDisabled
    let disabled = "scaling is disabled since the replica count of the target is zero";
    assert_eq!(
        health(Some(&[hpa_condition(
            "ScalingActive",
            false,
            "ScalingDisabled",
            disabled
        )])),
        Some((
            ConditionStatus::True,
            "ScalingDisabled".to_owned(),
            disabled.to_owned()
        ))
    );
    // TestGetHPAHealth_NoGracePeriod
    assert_eq!(
        health(Some(&[hpa_condition(
            "ScalingActive",
            false,
            "FailedGetExternalMetric",
            ""
        )])),
        Some((
            ConditionStatus::False,
            "FailedGetExternalMetric".to_owned(),
            "HPA is not actively scaling: ".to_owned()
        ))
    );
    // TestGetHPAHealth_EmptyReasonFallback
    assert_eq!(
        health(Some(&[hpa_condition(
            "ScalingActive",
            false,
            "",
            "unable to compute replica count"
        )])),
        Some((
            ConditionStatus::False,
            "HPAMetricsUnavailable".to_owned(),
            "HPA is not actively scaling: unable to compute replica count".to_owned()
        ))
    );
    // TestGetHPAHealth_NoScalingActiveConditionYet
    assert_eq!(
        health(Some(&[hpa_condition("AbleToScale", true, "", "")])),
        None
    );
}

fn unhealthy() -> Vec<Condition> {
    vec![hpa_condition(
        "ScalingActive",
        false,
        "FailedGetExternalMetric",
        "metrics not available",
    )]
}

fn ready(r: &ExecutorResult) -> (ConditionStatus, String) {
    let c = condition(r, "Ready").unwrap();
    (c.status, c.reason.clone())
}

#[test]
fn request_scale_ready_and_hpa_active() {
    let spec = so(1, None);
    // TestRequestScale_AllHealthy_HPAHealthy
    let r = request(&spec, 1, true, false, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::True, "ScaledObjectReady".to_owned())
    );
    // TestRequestScale_ScalerError_HPAHealthy
    let r = request(&spec, 1, false, true, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::False, "TriggerError".to_owned())
    );
    // TestRequestScale_PartialError_HPAHealthy
    let r = request(&spec, 1, true, true, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::Unknown, "PartialTriggerError".to_owned())
    );
    // TestRequestScale_NoError_HPAUnhealthy and TestRequestScale_TransientHPAGap_ReadyStaysTrue: Ready
    // stays True, HPAActive carries the HPA's reason.
    let r = request(&spec, 1, true, false, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::True, "ScaledObjectReady".to_owned())
    );
    let h = executor::hpa_health(Some(&unhealthy())).unwrap();
    assert_eq!(
        (h.status, h.reason.as_str(), h.message.as_str()),
        (
            ConditionStatus::False,
            "FailedGetExternalMetric",
            "HPA is not actively scaling: metrics not available"
        )
    );
    // TestRequestScale_ScalerError_HPAUnhealthy: Ready False TriggerError, not ScalingDegraded.
    let r = request(&spec, 1, false, true, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::False, "TriggerError".to_owned())
    );
    // TestRequestScale_HPAHealthy_HPAActiveTrue
    let h = executor::hpa_health(Some(&[hpa_condition("ScalingActive", true, "", "")])).unwrap();
    assert_eq!(
        (h.status, h.reason.as_str()),
        (ConditionStatus::True, "HPAActive")
    );
    // TestRequestScale_HPAScalingDisabled_HPAActiveTrueWithDistinctReason
    let h = executor::hpa_health(Some(&[hpa_condition(
        "ScalingActive",
        false,
        "ScalingDisabled",
        "scaling is disabled since the replica count of the target is zero",
    )]))
    .unwrap();
    assert_eq!(
        (h.status, h.reason.as_str()),
        (ConditionStatus::True, "ScalingDisabled")
    );
    // TestRequestScale_HPAActive_NotInSharedDefaults: four initialized conditions, none HPAActive, and the
    // executor never writes HPAActive itself.
    let initialized = executor::initialized_conditions();
    assert_eq!(initialized.len(), 4);
    assert!(initialized.iter().all(|c| c.kind != "HPAActive"));
    assert!(condition(&r, "HPAActive").is_none());
    // TestRequestScale_ScalerErrorWithFallback_HPAHealthy: with fallback replicas, Ready stays True.
    let mut with_fallback = so(1, None);
    with_fallback.fallback = Some(FallbackSpec {
        failure_threshold: 0,
        replicas: 3,
        behavior: FallbackBehavior::Static,
    });
    let r = request(&with_fallback, 1, false, true, &[]);
    assert_eq!(
        ready(&r),
        (ConditionStatus::True, "ScaledObjectReady".to_owned())
    );
}

#[test]
fn check_hpa_health_cannot_observe_leaves_the_condition() {
    // TestCheckHPAHealth_CannotObserve_HPAActiveUnchanged: through evaluate_scaled_object, a paused
    // evaluation (no HPA to read) leaves HPAActive as last observed.
    use surge_engine::hpa::PodInfo;
    use surge_engine::{KedaInput, KedaState, TriggerValue, evaluate_scaled_object};
    let mut state = KedaState::default();
    let previous = KedaCondition::new(
        "HPAActive",
        ConditionStatus::False,
        "HPAMetricsUnavailable",
        "FailedGetExternalMetric: metrics not available",
    );
    state.conditions.push(previous.clone());
    let mut spec = so(1, None);
    spec.annotations = annotations(&[("autoscaling.keda.sh/paused", "true")]);
    let input = KedaInput {
        current_replicas: 2,
        status_replicas: 2,
        pods: vec![PodInfo::running("p0", 100), PodInfo::running("p1", 100)],
        triggers: vec![TriggerValue::Value(1.0)],
    };
    evaluate_scaled_object(&spec, &mut state, &input, NOW);
    assert_eq!(state.condition("HPAActive"), Some(&previous));
}

// ---- triggers_activity_test.go ----

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn get_triggers_activity() {
    let all = names(&["trigger-a", "trigger-b", "trigger-c"]);
    // TestGetTriggersActivity: All triggers inactive / One / Multiple / All active / Zero-value options
    for (active, want) in [
        (vec![], [false, false, false]),
        (vec!["trigger-a"], [true, false, false]),
        (vec!["trigger-a", "trigger-c"], [true, false, true]),
        (
            vec!["trigger-a", "trigger-b", "trigger-c"],
            [true, true, true],
        ),
    ] {
        let r = executor::triggers_activity(&all, &names(&active));
        assert_eq!(r.len(), 3);
        let got: Vec<bool> = all.iter().map(|n| r[n]).collect();
        assert_eq!(got, want, "{active:?}");
    }
    // TestGetTriggersActivityTriggerListChanges: New trigger added
    let r = executor::triggers_activity(
        &names(&["trigger-a", "trigger-b", "trigger-new"]),
        &names(&["trigger-a", "trigger-new"]),
    );
    assert_eq!(
        (r["trigger-a"], r["trigger-b"], r["trigger-new"]),
        (true, false, true)
    );
    // Trigger removed: only the current names are kept.
    let r =
        executor::triggers_activity(&names(&["trigger-a", "trigger-c"]), &names(&["trigger-a"]));
    assert_eq!(r.len(), 2);
    assert!(!r.contains_key("trigger-b"));
    // Trigger replaced
    let r = executor::triggers_activity(
        &names(&["trigger-a", "trigger-new"]),
        &names(&["trigger-a", "trigger-new"]),
    );
    assert_eq!(r.len(), 2);
    assert!(r["trigger-a"] && r["trigger-new"] && !r.contains_key("trigger-old"));
    // Empty metric names returns empty map
    assert!(executor::triggers_activity(&[], &names(&["x"])).is_empty());
}

#[test]
fn get_triggers_activity_push_scaler() {
    // TestGetTriggersActivityPushScaler
    let previous: std::collections::BTreeMap<String, bool> = [
        ("trigger-a", true),
        ("trigger-b", false),
        ("trigger-c", true),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Push scaler only updates its own trigger
    let r = executor::push_triggers_activity(&previous, "trigger-b", &names(&["trigger-b"]));
    assert_eq!(
        (r["trigger-a"], r["trigger-b"], r["trigger-c"]),
        (true, true, true)
    );
    // Push scaler deactivates its trigger
    let r = executor::push_triggers_activity(&previous, "trigger-a", &[]);
    assert_eq!(
        (r["trigger-a"], r["trigger-b"], r["trigger-c"]),
        (false, false, true)
    );
}

#[test]
fn get_triggers_activity_scaled_job() {
    // TestGetTriggersActivityScaledJob: ScaledJob triggers activity (the same rule over a ScaledJob's
    // external metric names)
    let r =
        executor::triggers_activity(&names(&["trigger-x", "trigger-y"]), &names(&["trigger-x"]));
    assert_eq!(r.len(), 2);
    assert!(r["trigger-x"] && !r["trigger-y"]);
}

#[test]
fn a_push_scaler_is_refused_at_load() {
    let yaml = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: a}\nspec:\n  scaleTargetRef: {name: w}\n  triggers:\n  - type: external-push\n    metadata: {scalerAddress: 'svc:9090', value: '5'}\n";
    let Err(surge_engine::ManifestError::Invalid(errors)) = surge_engine::parse_scaled_object(yaml)
    else {
        panic!("an external-push trigger was accepted");
    };
    assert!(
        errors[0].starts_with("spec.triggers[0].type: \"external-push\" is a push scaler"),
        "{errors:?}"
    );
}

#[test]
fn not_read_is_a_failed_read_for_a_trigger_that_needs_input() {
    use surge_engine::TriggerValue;
    use surge_engine::keda::triggers::raw_read;
    let e = raw_read(Some(&TriggerValue::NotRead)).unwrap_err();
    assert!(e.contains("no value was read"), "{e}");
}
