//! Cases ported from kubernetes `pkg/controller/podautoscaler/horizontal_test.go`, one row per upstream
//! case (its name in the comment). Upstream builds timestamps from `time.Now()`; here `NOW` is fixed.
//!
//! Revision: kubernetes/kubernetes commit 003e86297d18a8538c9da3619871393f9703bf70 (the v1.36 line of
//! the file: `ktesting`, `autoscalingapiv2`, events of both directions in `TestScalingWithRules`).
//! Every test function of the file is ported here (84/84). The `/scale` subresource and the other HPAs
//! of the namespace are inputs ([`ScaleAccess`]): the selector cases (`TestConditionInvalidSelector*`,
//! `TestCondition{No,}AmbiguousSelectorWhen*SelectorOverlapBetweenHPAs`) pass the selector the scale
//! read returns and the other HPA's, and `TestConditionFailed{Get,Update}Scale` the failed read or
//! write. Not ported are the Go monitor labels and event recorder that every `testCase` also checks.

// Test helpers may unwrap (a panic is a failed test) and tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::BTreeMap;

use surge_engine::hpa::OtherHpa;
use surge_engine::hpa::rules::{
    self, calculate_scale_down_limit_with_behaviors, calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_behavior_rate, convert_desired_replicas_with_rules,
    get_replicas_change_per_period, stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
};
use surge_engine::hpa::{
    Behavior, HpaInput, HpaSpec, HpaState, MetricSample, MetricSource, MetricSpec, MetricTarget,
    PodInfo, PodMetric, PolicyKind, ScaleEvent, ScalingPolicy, ScalingRules, SelectPolicy,
    TimestampedRecommendation,
};
use surge_engine::{ControllerConfig, ScaleAccess, evaluate_hpa, evaluate_hpa_with_scale};

const NOW: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

/// Upstream `generateScalingRules(pods, podsPeriod, percent, percentPeriod, stabilizationWindow)`.
fn rules(
    pods: i32,
    pods_period: i32,
    percent: i32,
    percent_period: i32,
    window: i32,
) -> ScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(ScalingPolicy {
            kind: PolicyKind::Pods,
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(ScalingPolicy {
            kind: PolicyKind::Percent,
            value: percent,
            period_seconds: percent_period,
        });
    }
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: SelectPolicy::Max,
        policies,
        tolerance: None,
    }
}

/// Upstream `generateEventsUniformDistribution`: events spread over the last `period` seconds.
fn uniform(raw: &[i32], period: i32) -> Vec<ScaleEvent> {
    let seg = f64::from(period) / raw.len() as f64;
    raw.iter()
        .enumerate()
        .map(|(i, change)| {
            // Go truncates the float seconds to an integer Duration before multiplying by time.Second.
            let secs = (f64::from(period) - seg * (i as f64 + 1.0) + seg / 2.0) as i64;
            ScaleEvent {
                change: *change,
                at_ms: NOW - secs * 1000,
                outdated: false,
            }
        })
        .collect()
}

fn rec(replicas: i32, ago_ms: i64) -> TimestampedRecommendation {
    TimestampedRecommendation {
        replicas,
        at_ms: NOW - ago_ms,
    }
}

#[test]
fn test_convert_desired_replicas_with_rules() {
    // (current, desired, min, max, expected, condition, upstream annotation)
    let rows = [
        (
            5,
            7,
            3,
            8,
            7,
            "DesiredWithinRange",
            "prenormalized desired replicas within range",
        ),
        (
            3,
            1,
            2,
            8,
            2,
            "TooFewReplicas",
            "prenormalized desired replicas < minReplicas",
        ),
        (
            1,
            0,
            0,
            10,
            0,
            "DesiredWithinRange",
            "prenormalized desired zeroed replicas within range",
        ),
        (
            20,
            1000,
            1,
            10,
            10,
            "TooManyReplicas",
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
        ),
        (
            3,
            1000,
            1,
            2000,
            rules::calculate_scale_up_limit(3),
            "ScaleUpLimit",
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas",
        ),
    ];
    for (current, desired, min, max, expected, condition, name) in rows {
        let (r, c, _) = convert_desired_replicas_with_rules(current, desired, min, max);
        assert_eq!((r, c), (expected, condition), "{name}");
    }
    assert_eq!(rules::calculate_scale_up_limit(3), 6);
    assert_eq!(rules::calculate_scale_up_limit(1), 4);
}

#[test]
fn test_calculate_scale_up_limit_with_scaling_rules() {
    // TestCalculateScaleUpLimitWithScalingRules
    let r = ScalingRules {
        stabilization_window_seconds: Some(300),
        select_policy: SelectPolicy::Min,
        policies: vec![
            ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 2,
                period_seconds: 60,
            },
            ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 50,
                period_seconds: 60,
            },
        ],
        tolerance: None,
    };
    assert_eq!(
        calculate_scale_up_limit_with_scaling_rules(NOW, 1, &[], &[], &r),
        2
    );
    // TestCalculateScaleDownLimitWithBehaviors
    assert_eq!(
        calculate_scale_down_limit_with_behaviors(NOW, 5, &[], &[], &r),
        3
    );
    // Disabled keeps the current count in both directions.
    let disabled = ScalingRules {
        select_policy: SelectPolicy::Disabled,
        ..r
    };
    assert_eq!(
        calculate_scale_up_limit_with_scaling_rules(NOW, 7, &[], &[], &disabled),
        7
    );
    assert_eq!(
        calculate_scale_down_limit_with_behaviors(NOW, 7, &[], &[], &disabled),
        7
    );
}

#[test]
fn test_generate_default_rules() {
    // GenerateHPAScaleUpRules(nil) / GenerateHPAScaleDownRules(nil), as TestGenerateScaleUpRules and
    // TestGenerateScaleDownRules check for the nil input.
    let up = ScalingRules::default_scale_up();
    assert_eq!(up.stabilization_window_seconds, Some(0));
    assert_eq!(up.select_policy, SelectPolicy::Max);
    assert_eq!(
        up.policies,
        vec![
            ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 4,
                period_seconds: 15
            },
            ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15
            },
        ]
    );
    let down = ScalingRules::default_scale_down();
    assert_eq!(down.stabilization_window_seconds, None);
    assert_eq!(
        down.policies,
        vec![ScalingPolicy {
            kind: PolicyKind::Percent,
            value: 100,
            period_seconds: 15
        }]
    );
}

#[test]
fn test_scaling_with_rules() {
    type Row = (
        &'static str,
        Vec<ScaleEvent>,
        Vec<ScaleEvent>,
        i32,
        i32,
        Option<ScalingRules>,
        Option<ScalingRules>,
        i32,
        i32,
        i32,
        &'static str,
    );
    // (name, up events, down events, min, max, up rules, down rules, current, desired, expected, condition)
    let e = Vec::new;
    let u = |r: &[i32]| uniform(r, 120);
    let rows: Vec<Row> = vec![
        (
            "prenormalized desired replicas within range",
            e(),
            e(),
            3,
            8,
            None,
            None,
            5,
            7,
            7,
            "DesiredWithinRange",
        ),
        (
            "prenormalized desired replicas < minReplicas",
            e(),
            e(),
            2,
            8,
            None,
            None,
            3,
            1,
            2,
            "TooFewReplicas",
        ),
        (
            "prenormalized desired replicas within range when minReplicas is 0",
            e(),
            e(),
            0,
            10,
            None,
            None,
            1,
            0,
            0,
            "DesiredWithinRange",
        ),
        (
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            e(),
            e(),
            1,
            10,
            None,
            None,
            20,
            1000,
            10,
            "TooManyReplicas",
        ),
        (
            "desired replica count is more than the maximum replica count",
            e(),
            e(),
            100,
            150,
            None,
            None,
            100,
            1000,
            150,
            "TooManyReplicas",
        ),
        (
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
            e(),
            e(),
            1,
            2000,
            Some(rules(0, 0, 1, 60, 0)),
            None,
            3,
            1000,
            4,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with default behavior",
            e(),
            e(),
            1,
            1000,
            None,
            None,
            10,
            50,
            20,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with pods policy larger than percent policy",
            e(),
            e(),
            1,
            1000,
            Some(rules(100, 60, 100, 60, 0)),
            None,
            10,
            500,
            110,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy larger than pods policy",
            e(),
            e(),
            1,
            1000,
            Some(rules(2, 60, 100, 60, 0)),
            None,
            10,
            500,
            20,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large pod policy",
            e(),
            e(),
            1,
            1000,
            Some(rules(100, 60, 0, 0, 0)),
            None,
            10,
            50,
            50,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large percent policy",
            e(),
            e(),
            1,
            1000,
            Some(rules(10000, 60, 0, 0, 0)),
            None,
            10,
            50,
            50,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with pod policy limitation",
            e(),
            e(),
            1,
            1000,
            Some(rules(30, 60, 0, 0, 0)),
            None,
            10,
            50,
            40,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy limitation",
            e(),
            e(),
            1,
            1000,
            Some(rules(0, 0, 200, 60, 0)),
            None,
            10,
            50,
            30,
            "ScaleUpLimit",
        ),
        (
            "scaleDown with percent policy larger than pod policy",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(20, 60, 1, 60, 300)),
            100,
            2,
            80,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with pod policy larger than percent policy",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(2, 60, 1, 60, 300)),
            100,
            2,
            98,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with spec MinReplicas=nil limitation with large pod policy",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(100, 60, 0, 0, 300)),
            10,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large pod policy",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(100, 60, 0, 0, 300)),
            10,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large percent policy",
            e(),
            e(),
            5,
            1000,
            None,
            Some(rules(0, 0, 100, 60, 300)),
            10,
            2,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with pod policy limitation",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(5, 60, 0, 0, 300)),
            10,
            2,
            5,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with percent policy limitation",
            e(),
            e(),
            1,
            1000,
            None,
            Some(rules(0, 0, 50, 60, 300)),
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large pod policy and events",
            u(&[1, 5, 9]),
            e(),
            1,
            200,
            Some(rules(300, 60, 0, 0, 0)),
            None,
            100,
            500,
            200,
            "TooManyReplicas",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large percent policy and events",
            u(&[1, 5, 9]),
            e(),
            1,
            200,
            Some(rules(0, 0, 10000, 60, 0)),
            None,
            100,
            500,
            200,
            "TooManyReplicas",
        ),
        (
            "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
            u(&[1, 5, 9]),
            e(),
            1,
            1000,
            Some(rules(5, 120, 0, 0, 0)),
            None,
            100,
            500,
            100,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with pod policy and previous scale up events",
            u(&[1, 5, 9]),
            e(),
            1,
            1000,
            Some(rules(150, 120, 0, 0, 0)),
            None,
            100,
            500,
            235,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy and previous scale up events",
            u(&[1, 5, 9]),
            e(),
            1,
            1000,
            Some(rules(0, 0, 200, 120, 0)),
            None,
            100,
            500,
            255,
            "ScaleUpLimit",
        ),
        (
            "scaleDown with default policy and previous events",
            e(),
            u(&[1, 5, 9]),
            1,
            1000,
            None,
            None,
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
            e(),
            u(&[1, 5, 9]),
            1,
            1000,
            None,
            Some(rules(115, 120, 0, 0, 300)),
            100,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
            e(),
            u(&[1, 5, 9]),
            5,
            1000,
            None,
            Some(rules(130, 120, 0, 0, 300)),
            100,
            0,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
            e(),
            u(&[1, 5, 9]),
            5,
            1000,
            None,
            Some(rules(0, 0, 100, 120, 300)),
            100,
            2,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with pod policy limitation and previous events",
            e(),
            u(&[1, 5, 9]),
            1,
            1000,
            None,
            Some(rules(5, 120, 0, 0, 300)),
            100,
            2,
            100,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with percent policy limitation and previous events",
            e(),
            u(&[2, 4, 6]),
            1,
            1000,
            None,
            Some(rules(0, 0, 50, 120, 300)),
            100,
            0,
            56,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with previous events preventing further scale down",
            e(),
            u(&[10, 10, 10]),
            1,
            1000,
            None,
            Some(rules(0, 0, 10, 120, 300)),
            100,
            0,
            100,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with with previous events still allowing more scale down",
            e(),
            u(&[10, 10, 10]),
            1,
            1000,
            None,
            Some(rules(0, 0, 1000, 120, 300)),
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check 'outdated' flag for events for one behavior for up",
            u(&[8, 12, 9, 11]),
            e(),
            1,
            1000,
            Some(rules(1000, 60, 0, 0, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check that events were not marked 'outdated' for two different policies in the behavior for up",
            u(&[8, 12, 9, 11]),
            e(),
            1,
            1000,
            Some(rules(1000, 120, 100, 60, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check that events were marked 'outdated' for two different policies in the behavior for up",
            u(&[8, 12, 9, 11]),
            e(),
            1,
            1000,
            Some(rules(1000, 30, 100, 60, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check 'outdated' flag for events for one behavior for down",
            e(),
            u(&[8, 12, 9, 11]),
            1,
            1000,
            None,
            Some(rules(1000, 60, 0, 0, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check that events were not marked 'outdated' for two different policies in the behavior for down",
            e(),
            u(&[8, 12, 9, 11]),
            1,
            1000,
            None,
            Some(rules(1000, 120, 100, 60, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check that events were marked 'outdated' for two different policies in the behavior for down",
            e(),
            u(&[8, 12, 9, 11]),
            1,
            1000,
            None,
            Some(rules(1000, 30, 100, 60, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
        // Rows of the v1.36 table where events of the other direction shift the period's start.
        (
            "scaleUp with percent policy and previous scale up and down events",
            uniform(&[4], 120),
            uniform(&[2], 120),
            1,
            1000,
            Some(rules(0, 0, 300, 300, 0)),
            None,
            6,
            24,
            16,
            "ScaleUpLimit",
        ),
        (
            "scaleDown with percent policy and previous scale up and down events",
            uniform(&[2], 120),
            uniform(&[4], 120),
            1,
            1000,
            None,
            Some(rules(0, 0, 50, 180, 0)),
            10,
            1,
            6,
            "ScaleDownLimit",
        ),
    ];
    // Upstream's row "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user
    // defined policies" sets `testThis: true`, which makes its loop return before asserting: not run.
    assert_eq!(rows.len(), 41);
    for (name, up_events, down_events, min, max, up, down, current, desired, expected, condition) in
        rows
    {
        let state = HpaState {
            scale_up_events: up_events,
            scale_down_events: down_events,
            ..HpaState::default()
        };
        let behavior = Behavior {
            scale_up: up.unwrap_or_else(ScalingRules::default_scale_up),
            scale_down: down.unwrap_or_else(ScalingRules::default_scale_down),
        };
        let (r, c, _) = convert_desired_replicas_with_behavior_rate(
            &state, NOW, &behavior, current, desired, min, max,
        );
        assert_eq!((r, c), (expected, condition), "{name}");
    }
}

#[test]
fn test_normalize_desired_replicas() {
    // TestNormalizeDesiredReplicas: (name, recommendations, desired, expected, expected log length)
    let rows = [
        ("empty log", vec![], 5, 5, 1),
        ("stabilize", vec![rec(4, 2 * MIN), rec(5, MIN)], 3, 5, 3),
        ("no stabilize", vec![rec(1, 2 * MIN), rec(2, MIN)], 3, 3, 3),
        (
            "no stabilize - old recommendations",
            vec![rec(10, 10 * MIN), rec(9, 9 * MIN)],
            3,
            3,
            2,
        ),
        (
            "stabilize - old recommendations",
            vec![
                rec(10, 10 * MIN),
                rec(4, MIN),
                rec(5, 2 * MIN),
                rec(9, 9 * MIN),
            ],
            3,
            5,
            4,
        ),
    ];
    for (name, recs, desired, expected, len) in rows {
        let mut state = HpaState {
            recommendations: recs,
            ..HpaState::default()
        };
        assert_eq!(
            stabilize_recommendation(&mut state, NOW, 5 * MIN, desired),
            expected,
            "{name}"
        );
        assert_eq!(state.recommendations.len(), len, "{name}");
    }
}

#[test]
fn test_normalize_desired_replicas_with_behavior() {
    // TestNormalizeDesiredReplicasWithBehavior:
    // (name, recommendations, current, desired, expected, expected stored recommendations, up window, down window)
    let rows: Vec<(
        &str,
        Vec<TimestampedRecommendation>,
        i32,
        i32,
        i32,
        Vec<i32>,
        i32,
        i32,
    )> = vec![
        (
            "empty recommendations for scaling down",
            vec![],
            100,
            5,
            5,
            vec![5],
            0,
            0,
        ),
        (
            "simple scale down stabilization",
            vec![rec(4, 2 * MIN), rec(5, MIN)],
            100,
            3,
            5,
            vec![4, 5, 3],
            0,
            180,
        ),
        (
            "simple scale up stabilization",
            vec![rec(4, 2 * MIN), rec(5, MIN)],
            1,
            7,
            4,
            vec![4, 5, 7],
            300,
            0,
        ),
        (
            "no scale down stabilization",
            vec![rec(1, 2 * MIN), rec(2, MIN)],
            100,
            3,
            3,
            vec![1, 2, 3],
            300,
            0,
        ),
        (
            "no scale up stabilization",
            vec![rec(4, 2 * MIN), rec(5, MIN)],
            1,
            3,
            3,
            vec![4, 5, 3],
            0,
            300,
        ),
        (
            "no scale down stabilization, reuse recommendation element",
            vec![rec(10, 10 * MIN), rec(9, 9 * MIN)],
            100,
            3,
            3,
            vec![10, 3],
            0,
            0,
        ),
        (
            "no scale up stabilization, reuse recommendation element",
            vec![rec(10, 10 * MIN), rec(9, 9 * MIN)],
            1,
            100,
            100,
            vec![10, 100],
            0,
            0,
        ),
        (
            "scale down stabilization, reuse one of obsolete recommendation element",
            vec![
                rec(10, 10 * MIN),
                rec(4, MIN),
                rec(5, 2 * MIN),
                rec(9, 9 * MIN),
            ],
            100,
            3,
            5,
            vec![10, 4, 5, 3],
            0,
            180,
        ),
        (
            "scale up stabilization, reuse one of obsolete recommendation element",
            vec![
                rec(10, 100 * MIN),
                rec(6, MIN),
                rec(5, 2 * MIN),
                rec(9, 3 * MIN),
            ],
            1,
            100,
            5,
            vec![100, 6, 5, 9],
            300,
            0,
        ),
    ];
    for (name, recs, current, desired, expected, stored, up, down) in rows {
        let mut state = HpaState {
            recommendations: recs,
            ..HpaState::default()
        };
        let (r, _, _) =
            stabilize_recommendation_with_behaviors(&mut state, NOW, up, down, current, desired);
        assert_eq!(r, expected, "{name}");
        let got: Vec<i32> = state.recommendations.iter().map(|r| r.replicas).collect();
        assert_eq!(got, stored, "{name}");
    }
    // The two rows without `expectedRecommendations` (upstream then checks the replicas only):
    // (name, recommendations, current, desired, expected, up window, down window).
    let rows = [
        (
            "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            vec![rec(2, 100 * MIN), rec(3, 3 * MIN)],
            2,
            1,
            2,
            300,
            300,
        ),
        (
            "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            vec![rec(2, 100 * MIN), rec(1, 3 * MIN)],
            2,
            3,
            2,
            300,
            300,
        ),
    ];
    for (name, recs, current, desired, expected, up, down) in rows {
        let mut state = HpaState {
            recommendations: recs,
            ..HpaState::default()
        };
        let (r, _, _) =
            stabilize_recommendation_with_behaviors(&mut state, NOW, up, down, current, desired);
        assert_eq!(r, expected, "{name}");
    }
}

#[test]
fn test_store_scale_events() {
    let ev = |change, ago_s: i64, outdated| ScaleEvent {
        change,
        at_ms: NOW - ago_s * 1000,
        outdated,
    };
    // TestStoreScaleEvents: (name, previous events, rules, expected (change, outdated) after storing +5,
    // expected change over the last 60 s before storing)
    let rows: Vec<(
        &str,
        Vec<ScaleEvent>,
        Option<ScalingRules>,
        Vec<(i32, bool)>,
        i32,
    )> = vec![
        (
            "empty entries with default behavior",
            vec![],
            None,
            vec![],
            0,
        ),
        (
            "empty entries with two-policy-behavior",
            vec![],
            Some(rules(10, 60, 100, 60, 0)),
            vec![(5, false)],
            0,
        ),
        (
            "one outdated entry to be kept untouched without behavior",
            vec![ev(7, 61, false)],
            None,
            vec![(7, false)],
            0,
        ),
        (
            "one outdated entry to be replaced with behavior",
            vec![ev(7, 61, false)],
            Some(rules(10, 60, 100, 60, 0)),
            vec![(5, false)],
            0,
        ),
        (
            "one actual entry to be not touched with behavior",
            vec![ev(7, 58, false)],
            Some(rules(10, 60, 100, 60, 0)),
            vec![(7, false), (5, false)],
            7,
        ),
        (
            "two entries, one of them to be replaced",
            vec![ev(7, 61, false), ev(6, 59, false)],
            Some(rules(10, 60, 0, 0, 0)),
            vec![(5, false), (6, false)],
            6,
        ),
        (
            "replace one entry, use policies with different periods",
            vec![
                ev(8, 29, false),
                ev(6, 59, false),
                ev(7, 61, false),
                ev(9, 61, false),
            ],
            Some(rules(10, 60, 100, 30, 0)),
            vec![(8, false), (6, false), (7, true), (5, false)],
            14,
        ),
        (
            "two entries, both actual",
            vec![ev(7, 58, false), ev(6, 59, false)],
            Some(rules(10, 120, 100, 30, 0)),
            vec![(7, false), (6, false), (5, false)],
            13,
        ),
    ];
    for (name, prev, r, expected, change) in rows {
        for up in [true, false] {
            let mut state = HpaState::default();
            if up {
                state.scale_up_events = prev.clone();
            } else {
                state.scale_down_events = prev.clone();
            }
            let events = if up {
                &state.scale_up_events
            } else {
                &state.scale_down_events
            };
            assert_eq!(
                get_replicas_change_per_period(NOW, 60, events),
                change,
                "{name}"
            );
            let behavior = r.clone().map(|r| Behavior {
                scale_up: r.clone(),
                scale_down: r,
            });
            let new = if up { 15 } else { 5 };
            rules::store_scale_event(&mut state, behavior.as_ref(), NOW, 10, new);
            let events = if up {
                &state.scale_up_events
            } else {
                &state.scale_down_events
            };
            let got: Vec<(i32, bool)> = events.iter().map(|e| (e.change, e.outdated)).collect();
            assert_eq!(got, expected, "{name} (up={up})");
        }
    }
}

// ---- Whole reconcile passes (upstream `testCase` runs), through `evaluate_hpa`. ----

fn cpu_pods(levels: &[i64]) -> (Vec<PodInfo>, MetricSample) {
    let pods = (0..levels.len())
        .map(|i| PodInfo::running(&format!("test-pod-{i}"), 1000))
        .collect();
    let samples = levels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("test-pod-{i}"),
                PodMetric {
                    milli: *l,
                    timestamp_ms: NOW - 30_000,
                    window_ms: 60_000,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    (pods, MetricSample::PerPod(samples))
}

fn cpu_spec(min: i32, max: i32, target: i32, extra: Vec<MetricSpec>) -> HpaSpec {
    let mut metrics = vec![MetricSpec {
        source: MetricSource::Resource {
            name: "cpu".to_owned(),
        },
        target: MetricTarget::Utilization(target),
    }];
    metrics.extend(extra);
    HpaSpec {
        min_replicas: min,
        max_replicas: max,
        metrics,
        behavior: None,
        controller: ControllerConfig::default(),
    }
}

fn external_qps(target_milli: i64) -> MetricSpec {
    MetricSpec {
        source: MetricSource::External {
            metric: "qps".to_owned(),
        },
        target: MetricTarget::Value(target_milli),
    }
}

#[test]
fn test_scale_up_one_metric_empty() {
    // TestScaleUpOneMetricEmpty: CPU says 4, the external metric fails: scale up on the valid one.
    let spec = cpu_spec(2, 6, 30, vec![external_qps(100)]);
    let (pods, cpu) = cpu_pods(&[300, 400, 500]);
    let input = HpaInput {
        current_replicas: 3,
        status_replicas: 3,
        pods,
        metrics: vec![cpu, MetricSample::Failed("something went wrong".to_owned())],
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!(d.desired_replicas, 4);
    assert!(d.scale);
    assert_eq!(d.metrics[0].current_utilization, Some(40));
    assert!(
        d.error
            .as_deref()
            .unwrap_or("")
            .starts_with("invalid metrics (1 invalid out of 2)")
    );
}

#[test]
fn test_no_scale_down_one_metric_invalid() {
    // TestNoScaleDownOneMetricInvalid: CPU says 3 (< 5) and another metric is invalid: do not scale down.
    let spec = cpu_spec(2, 6, 50, vec![external_qps(1000)]);
    let (pods, cpu) = cpu_pods(&[100, 300, 500, 250, 250]);
    let input = HpaInput {
        current_replicas: 5,
        status_replicas: 5,
        pods,
        metrics: vec![
            cpu,
            MetricSample::Failed("unknown metric source type \"CheddarCheese\"".to_owned()),
        ],
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!(d.desired_replicas, 5);
    assert!(!d.scale);
    assert_eq!(d.metrics[0].proposal, Some(3));
    // TestNoScaleDownOneMetricEmpty: the same with an empty external metric list.
    let input = HpaInput {
        metrics: vec![input.metrics[0].clone(), MetricSample::External(vec![])],
        ..input
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!((d.desired_replicas, d.scale), (5, false));
}

#[test]
fn test_all_metrics_invalid_is_an_error() {
    let spec = cpu_spec(1, 10, 50, vec![]);
    let input = HpaInput {
        current_replicas: 3,
        status_replicas: 3,
        pods: vec![PodInfo::running("p", 1000)],
        metrics: vec![MetricSample::Failed("metrics-server down".to_owned())],
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!((d.desired_replicas, d.scale), (3, false));
    assert_eq!(
        d.condition("ScalingActive").map(|c| c.reason.as_str()),
        Some("FailedGetResourceMetric")
    );
    assert_eq!(
        d.error.as_deref(),
        Some(
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: metrics-server down"
        )
    );
}

#[test]
fn test_scale_up_limit_without_behavior() {
    // TestScaleUpCMExternal-style: 1 replica, external value far above target: scale-up limit 4.
    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 100,
        metrics: vec![external_qps(1000)],
        behavior: None,
        controller: ControllerConfig::default(),
    };
    let input = HpaInput {
        current_replicas: 1,
        status_replicas: 1,
        pods: vec![PodInfo::running("p", 1000)],
        metrics: vec![MetricSample::External(vec![50_000])],
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!(d.recommendation, Some(50));
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(
        d.limit.as_ref().map(|l| l.rule.as_str()),
        Some("ScaleUpLimit")
    );
    assert_eq!(d.condition("ScalingLimited").map(|c| c.status), Some(true));
}

#[test]
fn test_scaled_to_zero_disables_scaling() {
    let spec = cpu_spec(1, 10, 50, vec![]);
    let input = HpaInput {
        current_replicas: 0,
        ..HpaInput::default()
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!((d.desired_replicas, d.scale), (0, false));
    assert_eq!(
        d.condition("ScalingActive").map(|c| c.reason.as_str()),
        Some("ScalingDisabled")
    );
}

#[test]
fn test_downscale_stabilization_over_time() {
    // Without behavior: a drop is held for 300 s by the highest recent recommendation.
    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 100,
        metrics: vec![MetricSpec {
            source: MetricSource::External {
                metric: "queue".to_owned(),
            },
            target: MetricTarget::AverageValue(1000),
        }],
        behavior: None,
        controller: ControllerConfig::default(),
    };
    let mut state = HpaState::default();
    let input = |current, total: i64| HpaInput {
        current_replicas: current,
        status_replicas: current,
        pods: (0..current)
            .map(|i| PodInfo::running(&format!("p{i}"), 1000))
            .collect(),
        metrics: vec![MetricSample::External(vec![total])],
    };
    // t=0: 10 replicas, total 10 → ratio 1: keep.
    let d = evaluate_hpa(&spec, &mut state, &input(10, 10_000), NOW);
    assert_eq!((d.desired_replicas, d.scale), (10, false));
    assert!(d.metrics[0].within_tolerance);
    // t=60s: total 4 → proposal 4, held at 10 by the window.
    let d = evaluate_hpa(&spec, &mut state, &input(10, 4_000), NOW + 60_000);
    assert_eq!(d.recommendation, Some(4));
    assert_eq!(
        d.stabilization
            .as_ref()
            .map(|s| (s.from, s.to, s.rule.as_str())),
        Some((4, 10, "ScaleDownStabilized"))
    );
    assert_eq!((d.desired_replicas, d.scale), (10, false));
    // t=200s: still held.
    let d = evaluate_hpa(&spec, &mut state, &input(10, 4_000), NOW + 200_000);
    assert_eq!((d.desired_replicas, d.scale), (10, false));
    // t=301s: the recommendations of t=0 left the window: scale down to 4.
    let d = evaluate_hpa(&spec, &mut state, &input(10, 4_000), NOW + 301_000);
    assert_eq!((d.desired_replicas, d.scale), (4, true));
    assert_eq!(d.reason, "scale 10→4: All metrics below target");
    // Outdated slots are reused: the history does not grow.
    assert_eq!(state.recommendations.len(), 4);
    // The decision serializes for the aggregator.
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(json["desired_replicas"], 4);
    assert_eq!(json["metrics"][0]["proposal"], 4);
}

#[test]
fn test_behavior_per_direction_tolerance() {
    // HPAConfigurableTolerance: scale-up tolerance 0.01 reacts to a 5 % rise that 0.1 would ignore.
    let mut behavior = Behavior::default();
    behavior.scale_up.tolerance = Some(0.01);
    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 100,
        metrics: vec![external_qps(1000)],
        behavior: Some(behavior),
        controller: ControllerConfig::default(),
    };
    let input = HpaInput {
        current_replicas: 20,
        status_replicas: 20,
        pods: (0..20)
            .map(|i| PodInfo::running(&format!("p{i}"), 1000))
            .collect(),
        metrics: vec![MetricSample::External(vec![1_050])],
    };
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!(d.desired_replicas, 21);
    assert!(!d.metrics[0].within_tolerance);
    let mut spec = spec;
    spec.behavior = None;
    let d = evaluate_hpa(&spec, &mut HpaState::default(), &input, NOW);
    assert_eq!(d.desired_replicas, 20);
    assert!(d.metrics[0].within_tolerance);
}

// ---- `testCase` runs of horizontal_test.go (v1.36), one reconcile pass each. ----
//
// The harness mirrors upstream's fakes: pods `test-pod-N` (as many as `reportedCPURequests`, else
// `statusReplicas`), each request split over `container1` and `container2`, Ready since its start time
// (zero unless given; "hot" is now, "cool" 3 min ago); resource samples taken now over 1 min, each
// container reporting half the pod's level; custom samples taken now; downscale window 5 min, tolerance
// 0.1, CPU initialization 2 min, readiness delay 10 s. `recommendations: []` (not nil) in upstream skips
// the initial recommendation: `Fresh::No` here. Upstream's test `init` sets `scaleUpLimitFactor = 8`;
// surge's factor is kube-controller-manager's 2, so only rows the legacy limit does not bind are
// compared (all of those below). The desired replica count and the status conditions are compared,
// as upstream's status update asserts them (see `condition_mismatch`); the monitor labels and events
// are not ported.

#[derive(Clone, Copy, PartialEq)]
enum Start {
    Zero,
    Hot,
    Cool,
}

#[derive(Clone, Copy)]
enum Extra {
    /// Pods AverageValue (milli).
    Pods(i64),
    /// Object Value (milli).
    Object(i64),
    /// Object AverageValue (milli).
    ObjectAverage(i64),
    /// External Value (milli).
    External(i64),
    /// External AverageValue (milli).
    ExternalAverage(i64),
}

#[derive(Clone)]
struct Case {
    min: i32,
    max: i32,
    spec: i32,
    status: i32,
    cpu_target: Option<i32>,
    /// ContainerResource cpu Utilization: (container, target).
    container: Option<(&'static str, i32)>,
    extra: Option<Extra>,
    levels: Vec<i64>,
    requests: Vec<i64>,
    readiness: Vec<bool>,
    start: Vec<Start>,
    failed: Vec<bool>,
    deleting: Vec<bool>,
    /// `recommendations: []timestampedRecommendation{}`: no initial recommendation.
    empty_recommendations: bool,
    /// `scaleUpRules` (the scale-down rules are then defaulted, as the API server does).
    scale_up_rules: Option<ScalingRules>,
    /// `scaleDownRules` (the scale-up rules are then defaulted).
    scale_down_rules: Option<ScalingRules>,
    /// The CPU metrics read fails (upstream's metrics client returns "something went wrong").
    cpu_failed: bool,
    /// The `extra` metric's read fails.
    extra_failed: bool,
    /// Upstream's `metricsTarget: [{Type: "CheddarCheese"}]`: see [`Case::invalid_metric`].
    invalid_metric: bool,
    /// `reportedCPURequests: []resource.Quantity{}`: an empty but non-nil list, so no pods are listed.
    no_pods: bool,
    /// `recommendations` seeded into the controller (non-empty).
    recommendations: Vec<TimestampedRecommendation>,
    /// What the `/scale` read and write return, and the namespace's other HPAs (default: the read
    /// succeeds and the selector is not checked).
    scale: ScaleAccess,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            min: 2,
            max: 6,
            spec: 3,
            status: 3,
            cpu_target: None,
            container: None,
            extra: None,
            levels: Vec::new(),
            requests: Vec::new(),
            readiness: Vec::new(),
            start: Vec::new(),
            failed: Vec::new(),
            deleting: Vec::new(),
            empty_recommendations: false,
            scale_up_rules: None,
            scale_down_rules: None,
            cpu_failed: false,
            extra_failed: false,
            invalid_metric: false,
            no_pods: false,
            recommendations: Vec::new(),
            scale: ScaleAccess::default(),
        }
    }
}

fn reconcile_decision(c: &Case) -> surge_engine::Decision {
    let mut metrics = Vec::new();
    let mut samples = Vec::new();
    let n = if c.no_pods {
        0
    } else if c.requests.is_empty() {
        usize::try_from(c.status).unwrap()
    } else {
        c.requests.len()
    };
    let pods: Vec<PodInfo> = (0..n)
        .map(|i| {
            let request = c.requests.get(i).copied().unwrap_or(1000);
            let start = match c.start.get(i).copied().unwrap_or(Start::Zero) {
                Start::Zero => 0,
                Start::Hot => NOW,
                Start::Cool => NOW - 3 * MIN,
            };
            let mut p = PodInfo::running(&format!("test-pod-{i}"), request / 2);
            p.containers.push(surge_engine::ContainerRequests {
                name: "container2".to_owned(),
                ..p.containers[0].clone()
            });
            p.containers[0].name = "container1".to_owned();
            if !c.readiness.get(i).copied().unwrap_or(true) {
                p.ready = Some(surge_engine::ConditionStatus::False);
            }
            if c.failed.get(i).copied().unwrap_or(false) {
                p.phase = surge_engine::PodPhase::Failed;
            }
            p.deleting = c.deleting.get(i).copied().unwrap_or(false);
            p.start_ms = Some(start);
            p.ready_transition_ms = start;
            p
        })
        .collect();
    let per_pod = |value: &dyn Fn(i64) -> i64, window_ms: i64| {
        MetricSample::PerPod(
            c.levels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let m = PodMetric {
                        milli: value(*l),
                        timestamp_ms: NOW,
                        window_ms,
                    };
                    (format!("test-pod-{i}"), m)
                })
                .collect(),
        )
    };
    if let Some(t) = c.cpu_target {
        metrics.push(MetricSpec {
            source: MetricSource::Resource { name: "cpu".into() },
            target: MetricTarget::Utilization(t),
        });
        // Two containers of level/2 each.
        samples.push(if c.cpu_failed {
            MetricSample::Failed("something went wrong".to_owned())
        } else {
            per_pod(&|l| 2 * (l / 2), MIN)
        });
    }
    if let Some((container, t)) = c.container {
        metrics.push(MetricSpec {
            source: MetricSource::ContainerResource {
                name: "cpu".into(),
                container: container.into(),
            },
            target: MetricTarget::Utilization(t),
        });
        samples.push(per_pod(&|l| l / 2, MIN));
    }
    let object = || MetricSource::Object {
        metric: "qps".into(),
        kind: "Deployment".into(),
        object: "some-deployment".into(),
    };
    let external = || MetricSource::External {
        metric: "qps".into(),
    };
    match c.extra {
        None => {}
        Some(Extra::Pods(t)) => {
            metrics.push(MetricSpec {
                source: MetricSource::Pods {
                    metric: "qps".into(),
                },
                target: MetricTarget::AverageValue(t),
            });
            samples.push(per_pod(&|l| l, 0));
        }
        Some(Extra::Object(t) | Extra::ObjectAverage(t)) => {
            let target = match c.extra {
                Some(Extra::Object(_)) => MetricTarget::Value(t),
                _ => MetricTarget::AverageValue(t),
            };
            metrics.push(MetricSpec {
                source: object(),
                target,
            });
            samples.push(MetricSample::Object(c.levels[0]));
        }
        Some(Extra::External(t) | Extra::ExternalAverage(t)) => {
            let target = match c.extra {
                Some(Extra::External(_)) => MetricTarget::Value(t),
                _ => MetricTarget::AverageValue(t),
            };
            metrics.push(MetricSpec {
                source: external(),
                target,
            });
            samples.push(MetricSample::External(c.levels.clone()));
        }
    }
    if c.extra_failed
        && let Some(last) = samples.last_mut()
    {
        *last = MetricSample::Failed("something went wrong".to_owned());
    }
    if c.invalid_metric {
        // surge refuses a metric of unknown type when the manifest loads
        // (`test_invalid_metric_source_type_is_refused_at_load`); upstream's controller meets it at
        // reconcile time and treats it as one more invalid metric. The stand-in is a metric whose read
        // fails, so the replica arithmetic around the invalid metric is the same.
        metrics.push(MetricSpec {
            source: MetricSource::External {
                metric: "cheddar-cheese".into(),
            },
            target: MetricTarget::Value(1000),
        });
        samples.push(MetricSample::Failed(
            "unknown metric source type \"CheddarCheese\"".to_owned(),
        ));
    }
    let behavior = match (&c.scale_up_rules, &c.scale_down_rules) {
        (None, None) => None,
        (up, down) => Some(Behavior {
            scale_up: up.clone().unwrap_or_else(ScalingRules::default_scale_up),
            scale_down: down
                .clone()
                .unwrap_or_else(ScalingRules::default_scale_down),
        }),
    };
    let spec = HpaSpec {
        min_replicas: c.min,
        max_replicas: c.max,
        metrics,
        behavior,
        controller: ControllerConfig {
            tolerance: 0.1,
            cpu_initialization_period_ms: 2 * MIN,
            delay_of_initial_readiness_status_ms: 10_000,
            downscale_stabilization_window_ms: 5 * MIN,
        },
    };
    let mut state = HpaState {
        initialized: c.empty_recommendations || !c.recommendations.is_empty(),
        recommendations: c.recommendations.clone(),
        ..HpaState::default()
    };
    let input = HpaInput {
        current_replicas: c.spec,
        status_replicas: c.status,
        pods,
        metrics: samples,
    };
    evaluate_hpa_with_scale(&spec, &mut state, &input, &c.scale, NOW, spec.min_replicas)
}

/// Upstream's `/scale` read and `hpaSelectors` for the selector cases: the target's
/// `scale.status.selector` as read (`""`: none), another HPA `test-hpa-2` of the namespace whose
/// target selects `other`, and `pods` pods labelled `name: test-pod` plus `extra`.
fn selector_access(
    selector: &str,
    other: Option<&str>,
    extra: &[(&str, &str)],
    pods: usize,
) -> ScaleAccess {
    let labels: BTreeMap<String, String> = [("name", "test-pod")]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ScaleAccess {
        selector: Some(selector.to_owned()),
        hpa_key: "test-namespace/test-hpa".to_owned(),
        other_hpas: other
            .map(|o| OtherHpa {
                key: "test-namespace/test-hpa-2".to_owned(),
                selector: o.to_owned(),
            })
            .into_iter()
            .collect(),
        pod_labels: (0..pods)
            .map(|i| (format!("test-pod-{i}"), labels.clone()))
            .collect(),
        ..ScaleAccess::default()
    }
}

#[test]
fn test_case_runs() {
    let r3 = vec![1000; 3];
    let r5 = vec![1000; 5];
    let cpu30 = Case {
        cpu_target: Some(30),
        levels: vec![300, 500, 700],
        requests: r3.clone(),
        ..Case::default()
    };
    let down5 = Case {
        spec: 5,
        status: 5,
        requests: r5.clone(),
        empty_recommendations: true,
        ..Case::default()
    };
    let rows: Vec<(&str, Case, i32)> = vec![
        ("TestScaleUp", cpu30.clone(), 5),
        (
            "TestScaleUpContainer",
            Case {
                cpu_target: None,
                container: Some(("container1", 30)),
                ..cpu30.clone()
            },
            5,
        ),
        (
            "TestScaleUpUnreadyLessScale",
            Case {
                readiness: vec![false, true, true],
                ..cpu30.clone()
            },
            4,
        ),
        (
            "TestScaleUpHotCpuLessScale",
            Case {
                start: vec![Start::Hot, Start::Cool, Start::Cool],
                ..cpu30.clone()
            },
            4,
        ),
        (
            "TestScaleUpUnreadyNoScale",
            Case {
                levels: vec![400, 500, 700],
                readiness: vec![true, false, false],
                ..cpu30.clone()
            },
            3,
        ),
        (
            "TestScaleUpHotCpuNoScale",
            Case {
                levels: vec![400, 500, 700],
                readiness: vec![true, false, false],
                start: vec![Start::Cool, Start::Hot, Start::Hot],
                ..cpu30.clone()
            },
            3,
        ),
        (
            "TestScaleUpIgnoresFailedPods",
            Case {
                spec: 2,
                status: 2,
                levels: vec![500, 700],
                requests: vec![1000; 4],
                readiness: vec![true, true, false, false],
                failed: vec![false, false, true, true],
                ..cpu30.clone()
            },
            4,
        ),
        (
            "TestScaleUpIgnoresDeletionPods",
            Case {
                spec: 2,
                status: 2,
                levels: vec![500, 700],
                requests: vec![1000; 4],
                readiness: vec![true, true, false, false],
                deleting: vec![false, false, true, true],
                ..cpu30.clone()
            },
            4,
        ),
        ("TestScaleUpDeployment", cpu30.clone(), 5),
        ("TestScaleUpReplicaSet", cpu30.clone(), 5),
        (
            "TestScaleUpCM",
            Case {
                extra: Some(Extra::Pods(15_000)),
                levels: vec![20000, 10000, 30000],
                requests: r3.clone(),
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleUpCMUnreadyAndHotCpuNoLessScale",
            Case {
                extra: Some(Extra::Pods(15_000)),
                levels: vec![50000, 10000, 30000],
                readiness: vec![true, true, false],
                start: vec![Start::Cool, Start::Cool, Start::Hot],
                requests: r3.clone(),
                ..Case::default()
            },
            6,
        ),
        (
            "TestScaleUpCMUnreadyandCpuHot",
            Case {
                extra: Some(Extra::Pods(15_000)),
                levels: vec![50000, 15000, 30000],
                readiness: vec![false, true, false],
                start: vec![Start::Hot, Start::Cool, Start::Hot],
                requests: r3.clone(),
                ..Case::default()
            },
            6,
        ),
        (
            "TestScaleUpHotCpuNoScaleWouldScaleDown",
            Case {
                extra: Some(Extra::Pods(15_000)),
                levels: vec![50000, 15000, 30000],
                start: vec![Start::Hot, Start::Cool, Start::Hot],
                requests: r3.clone(),
                ..Case::default()
            },
            6,
        ),
        (
            "TestScaleUpCMObject",
            Case {
                extra: Some(Extra::Object(15_000)),
                levels: vec![20000],
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleUpFromZeroCMObject",
            Case {
                min: 0,
                spec: 0,
                status: 0,
                extra: Some(Extra::Object(15_000)),
                levels: vec![20000],
                ..Case::default()
            },
            2,
        ),
        (
            "TestScaleUpFromZeroIgnoresToleranceCMObject",
            Case {
                min: 0,
                spec: 0,
                status: 0,
                extra: Some(Extra::Object(1_000)),
                levels: vec![1000],
                ..Case::default()
            },
            1,
        ),
        (
            "TestScaleUpPerPodCMObject",
            Case {
                extra: Some(Extra::ObjectAverage(10_000)),
                levels: vec![40000],
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleUpCMExternal",
            Case {
                extra: Some(Extra::External(6666)),
                levels: vec![8600],
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleUpPerPodCMExternal",
            Case {
                extra: Some(Extra::ExternalAverage(2222)),
                levels: vec![8600],
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleDown",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownContainerResource",
            Case {
                container: Some(("container2", 50)),
                levels: vec![100, 300, 500, 250, 250],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownStabilizeInitialSize",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                empty_recommendations: false,
                ..down5.clone()
            },
            5,
        ),
        (
            "TestScaleDownCM",
            Case {
                extra: Some(Extra::Pods(20_000)),
                levels: vec![12000; 5],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownCMObject",
            Case {
                extra: Some(Extra::Object(20_000)),
                levels: vec![12000],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownToZeroCMObject",
            Case {
                min: 0,
                extra: Some(Extra::Object(20_000)),
                levels: vec![0],
                ..down5.clone()
            },
            0,
        ),
        (
            "TestScaleDownPerPodCMObject",
            Case {
                extra: Some(Extra::ObjectAverage(20_000)),
                levels: vec![60000],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownCMExternal",
            Case {
                extra: Some(Extra::External(14_400)),
                levels: vec![8600],
                requests: vec![],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownToZeroCMExternal",
            Case {
                min: 0,
                extra: Some(Extra::External(14_400)),
                levels: vec![0],
                requests: vec![],
                ..down5.clone()
            },
            0,
        ),
        (
            "TestScaleDownPerPodCMExternal",
            Case {
                extra: Some(Extra::ExternalAverage(3000)),
                levels: vec![8600],
                requests: vec![],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownIncludeUnreadyPods",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                readiness: vec![true, true, true, false, false],
                ..down5.clone()
            },
            2,
        ),
        (
            "TestScaleDownIgnoreHotCpuPods",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                start: vec![
                    Start::Cool,
                    Start::Cool,
                    Start::Cool,
                    Start::Hot,
                    Start::Hot,
                ],
                ..down5.clone()
            },
            2,
        ),
        (
            "TestScaleDownIgnoresFailedPods",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                requests: vec![1000; 7],
                readiness: vec![true, true, true, true, true, false, false],
                failed: vec![false, false, false, false, false, true, true],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestScaleDownIgnoresDeletionPods",
            Case {
                cpu_target: Some(50),
                levels: vec![100, 300, 500, 250, 250],
                requests: vec![1000; 7],
                readiness: vec![true, true, true, true, true, false, false],
                deleting: vec![false, false, false, false, false, true, true],
                ..down5.clone()
            },
            3,
        ),
        (
            "TestTolerance",
            Case {
                min: 1,
                max: 5,
                cpu_target: Some(100),
                levels: vec![1010, 1030, 1020],
                requests: vec![900, 1000, 1100],
                ..Case::default()
            },
            3,
        ),
        (
            "TestToleranceCM",
            Case {
                min: 1,
                max: 5,
                extra: Some(Extra::Pods(20_000)),
                levels: vec![20000, 20001, 21000],
                requests: vec![900, 1000, 1100],
                ..Case::default()
            },
            3,
        ),
        (
            "TestToleranceCMObject",
            Case {
                min: 1,
                max: 5,
                extra: Some(Extra::Object(20_000)),
                levels: vec![20050],
                requests: vec![900, 1000, 1100],
                ..Case::default()
            },
            3,
        ),
        (
            "TestToleranceCMExternal",
            Case {
                spec: 4,
                status: 4,
                extra: Some(Extra::External(8666)),
                levels: vec![8600],
                ..Case::default()
            },
            4,
        ),
        (
            "TestTolerancePerPodCMObject",
            Case {
                spec: 4,
                status: 4,
                extra: Some(Extra::ObjectAverage(2200)),
                levels: vec![8600],
                ..Case::default()
            },
            4,
        ),
        (
            "TestTolerancePerPodCMExternal",
            Case {
                spec: 4,
                status: 4,
                extra: Some(Extra::ExternalAverage(2200)),
                levels: vec![8600],
                ..Case::default()
            },
            4,
        ),
        (
            "TestMinReplicas",
            Case {
                max: 5,
                cpu_target: Some(90),
                levels: vec![10, 95, 10],
                requests: vec![900, 1000, 1100],
                empty_recommendations: true,
                ..Case::default()
            },
            2,
        ),
        (
            "TestZeroMinReplicasDesiredZero",
            Case {
                min: 0,
                max: 5,
                cpu_target: Some(90),
                levels: vec![0, 0, 0],
                requests: vec![900, 1000, 1100],
                empty_recommendations: true,
                ..Case::default()
            },
            0,
        ),
        (
            "TestMinReplicasDesiredZero",
            Case {
                max: 5,
                cpu_target: Some(90),
                levels: vec![0, 0, 0],
                requests: vec![900, 1000, 1100],
                empty_recommendations: true,
                ..Case::default()
            },
            2,
        ),
        (
            "TestZeroReplicas",
            Case {
                min: 3,
                max: 5,
                spec: 0,
                status: 0,
                cpu_target: Some(90),
                ..Case::default()
            },
            0,
        ),
        (
            "TestTooFewReplicas",
            Case {
                min: 3,
                max: 5,
                spec: 2,
                status: 2,
                cpu_target: Some(90),
                ..Case::default()
            },
            3,
        ),
        (
            "TestTooManyReplicas",
            Case {
                min: 3,
                max: 5,
                spec: 10,
                status: 10,
                cpu_target: Some(90),
                ..Case::default()
            },
            5,
        ),
        (
            "TestMaxReplicas",
            Case {
                max: 5,
                cpu_target: Some(90),
                levels: vec![8000, 9500, 1000],
                requests: vec![900, 1000, 1100],
                ..Case::default()
            },
            5,
        ),
        (
            "TestSuperfluousMetrics",
            Case {
                spec: 4,
                status: 4,
                cpu_target: Some(100),
                levels: vec![4000, 9500, 3000, 7000, 3200, 2000],
                requests: vec![1000; 4],
                ..Case::default()
            },
            6,
        ),
        (
            "TestMissingMetrics",
            Case {
                spec: 4,
                status: 4,
                cpu_target: Some(100),
                levels: vec![400, 95],
                requests: vec![1000; 4],
                empty_recommendations: true,
                ..Case::default()
            },
            3,
        ),
        (
            "TestEmptyMetrics",
            Case {
                spec: 4,
                status: 4,
                cpu_target: Some(100),
                requests: vec![1000; 4],
                ..Case::default()
            },
            4,
        ),
        (
            "TestEventCreated",
            Case {
                min: 1,
                max: 5,
                spec: 1,
                status: 1,
                cpu_target: Some(50),
                levels: vec![200],
                requests: vec![200],
                ..Case::default()
            },
            2,
        ),
        (
            "TestEventNotCreated",
            Case {
                min: 1,
                max: 5,
                spec: 2,
                status: 2,
                cpu_target: Some(50),
                levels: vec![200, 200],
                requests: vec![400, 400],
                ..Case::default()
            },
            2,
        ),
        (
            "TestMissingReports",
            Case {
                min: 1,
                max: 5,
                spec: 4,
                status: 4,
                cpu_target: Some(50),
                levels: vec![200],
                requests: vec![200],
                empty_recommendations: true,
                ..Case::default()
            },
            2,
        ),
        (
            "TestUpscaleCap",
            Case {
                min: 1,
                max: 100,
                cpu_target: Some(10),
                levels: vec![100, 200, 300],
                requests: vec![100; 3],
                scale_up_rules: Some(rules(0, 0, 700, 60, 0)),
                ..Case::default()
            },
            24,
        ),
        (
            "TestUpscaleCapGreaterThanMaxReplicas",
            Case {
                min: 1,
                max: 20,
                cpu_target: Some(10),
                levels: vec![100, 200, 300],
                requests: vec![100; 3],
                scale_up_rules: Some(rules(0, 0, 700, 60, 0)),
                ..Case::default()
            },
            20,
        ),
        (
            "TestMoreReplicasThanSpecNoScale",
            Case {
                min: 1,
                max: 8,
                spec: 4,
                status: 5,
                cpu_target: Some(50),
                levels: vec![500; 5],
                requests: vec![1000; 5],
                ..Case::default()
            },
            4,
        ),
        (
            "TestScaleUpRCImmediately",
            Case {
                spec: 1,
                status: 1,
                levels: vec![0; 4],
                requests: vec![1000; 4],
                ..Case::default()
            },
            2,
        ),
        (
            "TestScaleDownRCImmediately",
            Case {
                max: 5,
                spec: 6,
                status: 6,
                cpu_target: Some(50),
                levels: vec![8000, 9500, 1000],
                requests: vec![900, 1000, 1100],
                ..Case::default()
            },
            5,
        ),
        (
            // Upstream's listed HPA targets 80 % (see its TODO), not the case's CPUTarget of 30.
            "TestAvoidUnnecessaryUpdates",
            Case {
                spec: 2,
                status: 2,
                cpu_target: Some(80),
                levels: vec![400, 500, 700],
                requests: r3.clone(),
                start: vec![Start::Cool, Start::Hot, Start::Hot],
                empty_recommendations: true,
                ..Case::default()
            },
            2,
        ),
    ];
    let total = rows.len();
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(name, c, want)| {
            let d = reconcile_decision(c);
            let mut problems = match upstream_conditions(name) {
                Some(conditions) => condition_mismatch(&d, &conditions),
                None => Vec::new(),
            };
            if d.desired_replicas != *want {
                problems.insert(0, format!("{} != {want}", d.desired_replicas));
            }
            (!problems.is_empty()).then(|| format!("{name}: {}", problems.join("; ")))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_eq!(total, 59);
}

/// The `expectedConditions` of the runs in [`test_case_runs`] (nil upstream: `statusOk`).
/// `TestAvoidUnnecessaryUpdates` asserts that no status is written at all: no conditions to compare.
fn upstream_conditions(name: &str) -> Option<Vec<Cond>> {
    let ready = ("AbleToScale", true, "ReadyForNewScale");
    let too_many = ("ScalingLimited", true, "TooManyReplicas");
    let too_few = ("ScalingLimited", true, "TooFewReplicas");
    Some(match name {
        "TestAvoidUnnecessaryUpdates" => return None,
        "TestScaleUpUnreadyNoScale"
        | "TestScaleUpHotCpuNoScale"
        | "TestTolerance"
        | "TestToleranceCM"
        | "TestToleranceCMObject"
        | "TestToleranceCMExternal"
        | "TestTolerancePerPodCMObject"
        | "TestTolerancePerPodCMExternal"
        | "TestEventNotCreated"
        | "TestMoreReplicasThanSpecNoScale" => status_ok(&[ready]),
        "TestScaleUpCMUnreadyandCpuHot"
        | "TestScaleUpHotCpuNoScaleWouldScaleDown"
        | "TestMaxReplicas"
        | "TestSuperfluousMetrics"
        | "TestUpscaleCapGreaterThanMaxReplicas" => status_ok(&[too_many]),
        "TestScaleDownStabilizeInitialSize" => {
            status_ok(&[("AbleToScale", true, "ScaleDownStabilized")])
        }
        "TestMinReplicas" | "TestMinReplicasDesiredZero" => status_ok(&[too_few]),
        "TestUpscaleCap" => status_ok(&[("ScalingLimited", true, "ScaleUpLimit")]),
        "TestZeroReplicas" => vec![
            ("AbleToScale", true, "SucceededGetScale"),
            ("ScalingActive", false, "ScalingDisabled"),
        ],
        "TestEmptyMetrics" => vec![
            ("AbleToScale", true, "SucceededGetScale"),
            ("ScalingActive", false, "FailedGetResourceMetric"),
        ],
        "TestTooFewReplicas"
        | "TestTooManyReplicas"
        | "TestScaleUpRCImmediately"
        | "TestScaleDownRCImmediately" => vec![("AbleToScale", true, "SucceededRescale")],
        _ => status_ok(&[]),
    })
}

// ---- The rest of horizontal_test.go's `testCase` runs, with their status conditions. ----
//
// Conditions are compared as upstream's status update does (type, status and reason; messages cleared),
// with two differences of scope, both the caller's in surge: `AbleToScale SucceededGetScale` (upstream
// fetched the scale subresource; the engine is handed the replica counts) is not expected from the
// engine, and for an unknown metric type (`InvalidMetricSourceType`) only the status is compared, as the
// stand-in metric fails with its own reason (surge refuses such a manifest at load).

type Cond = (&'static str, bool, &'static str);

/// Upstream's `statusOkWithOverrides`.
fn status_ok(overrides: &[Cond]) -> Vec<Cond> {
    let mut out = vec![
        ("AbleToScale", true, "SucceededRescale"),
        ("ScalingActive", true, "ValidMetricFound"),
        ("ScalingLimited", false, "DesiredWithinRange"),
    ];
    for o in overrides {
        for c in &mut out {
            if c.0 == o.0 {
                *c = *o;
            }
        }
    }
    out
}

/// What differs between the engine's conditions and upstream's expected ones (empty: none).
fn condition_mismatch(d: &surge_engine::Decision, want: &[Cond]) -> Vec<String> {
    let want: Vec<&Cond> = want
        .iter()
        .filter(|(kind, _, reason)| !(*kind == "AbleToScale" && *reason == "SucceededGetScale"))
        .collect();
    let mut out = Vec::new();
    for (kind, status, reason) in &want {
        match d.condition(kind) {
            None => out.push(format!("{kind} missing")),
            Some(c) => {
                let reason_ok = *reason == "InvalidMetricSourceType" || c.reason == *reason;
                if c.status != *status || !reason_ok {
                    out.push(format!(
                        "{kind} {}/{} != {status}/{reason}",
                        c.status, c.reason
                    ));
                }
            }
        }
    }
    for c in &d.conditions {
        if !want.iter().any(|(kind, _, _)| *kind == c.kind) {
            out.push(format!("unexpected {} {}/{}", c.kind, c.status, c.reason));
        }
    }
    out
}

/// TestComputedToleranceAlgImplementation's inputs, derived as upstream derives them.
fn computed_tolerance_case(target_offset: f64) -> (Case, i32, i32) {
    let start_pods: i32 = 10;
    let total_used: i64 = i64::from(start_pods) * 150;
    let total_requested: i64 = 2 * total_used;
    // Go divides the int32 values before converting: 3000 / 1500 = 2.
    let requested_to_used = (total_requested / total_used) as f64;
    let per_pod = total_requested / i64::from(start_pods);
    let tolerance = 0.1;
    let target = (1.0 / (requested_to_used * (1.0 - tolerance))).abs() + target_offset;
    let percent = (target * 100.0) as i32;
    let used_ratio = total_used as f64 / (total_requested as f64 * target);
    let final_pods = (used_ratio * f64::from(start_pods)).ceil() as i32;
    let case = Case {
        min: 0,
        max: 1000,
        spec: start_pods,
        status: start_pods,
        cpu_target: Some(percent),
        levels: vec![total_used / 10; 10],
        requests: [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
            .iter()
            .map(|d| per_pod + d)
            .collect(),
        empty_recommendations: true,
        ..Case::default()
    };
    (case, percent, final_pods)
}

#[test]
fn test_case_runs_with_conditions() {
    let r3 = vec![1000; 3];
    let small = vec![100; 3];
    let cpu30 = Case {
        cpu_target: Some(30),
        levels: vec![300, 500, 700],
        requests: r3.clone(),
        ..Case::default()
    };
    let down5 = Case {
        spec: 5,
        status: 5,
        requests: vec![1000; 5],
        empty_recommendations: true,
        levels: vec![100, 300, 500, 250, 250],
        ..Case::default()
    };
    let failed_get = |extra: Option<Extra>| Case {
        min: 1,
        max: 100,
        cpu_target: if extra.is_none() { Some(10) } else { None },
        cpu_failed: extra.is_none(),
        extra,
        extra_failed: extra.is_some(),
        levels: vec![100, 200, 300],
        requests: small.clone(),
        ..Case::default()
    };
    // The selector and scale cases' inputs, which upstream never reaches the metrics of.
    let cpu10 = Case {
        min: 1,
        max: 100,
        cpu_target: Some(10),
        levels: vec![100, 200, 300],
        requests: small.clone(),
        ..Case::default()
    };
    let scaling_inactive = |reason| {
        vec![
            ("AbleToScale", true, "SucceededGetScale"),
            ("ScalingActive", false, reason),
        ]
    };
    let (tolerance_scales, percent1, pods1) = computed_tolerance_case(0.01);
    let (tolerance_holds, percent2, _) = computed_tolerance_case(0.004);
    // Upstream computes these; pinned here so that a change in the derivation shows.
    assert_eq!((percent1, pods1, percent2), (56, 9, 55));

    let rows: Vec<(&str, Case, i32, Vec<Cond>)> = vec![
        (
            "TestScaleDownWithScalingRules",
            Case {
                cpu_target: Some(50),
                scale_up_rules: Some(rules(0, 0, 100, 15, 30)),
                ..down5.clone()
            },
            3,
            status_ok(&[]),
        ),
        (
            "TestScaleUpOneMetricInvalid",
            Case {
                levels: vec![300, 400, 500],
                invalid_metric: true,
                ..cpu30.clone()
            },
            4,
            status_ok(&[]),
        ),
        (
            "TestScaleUpFromZeroOneMetricInvalid",
            Case {
                min: 0,
                spec: 0,
                status: 0,
                levels: vec![300, 400, 500],
                invalid_metric: true,
                empty_recommendations: true,
                ..cpu30.clone()
            },
            4,
            status_ok(&[]),
        ),
        (
            "TestScaleUpBothMetricsEmpty",
            Case {
                invalid_metric: true,
                requests: r3.clone(),
                ..Case::default()
            },
            3,
            scaling_inactive("InvalidMetricSourceType"),
        ),
        (
            "TestEmptyCPURequest",
            Case {
                min: 1,
                max: 5,
                spec: 1,
                status: 1,
                cpu_target: Some(100),
                levels: vec![200],
                no_pods: true,
                ..Case::default()
            },
            1,
            scaling_inactive("FailedGetResourceMetric"),
        ),
        (
            "TestConditionNoAmbiguousSelectorWhenNoSelectorOverlapBetweenHPAs",
            Case {
                scale: selector_access("name=test-pod", Some("cheddar=cheese"), &[], 3),
                ..cpu30.clone()
            },
            5,
            status_ok(&[]),
        ),
        (
            "TestConditionAmbiguousSelectorWhenFullSelectorOverlapBetweenHPAs",
            Case {
                scale: selector_access("name=test-pod", Some("name=test-pod"), &[], 3),
                ..cpu30.clone()
            },
            3,
            scaling_inactive("AmbiguousSelector"),
        ),
        (
            // Upstream's pods carry `cheddar: cheese` too, which test-hpa-2 selects.
            "TestConditionAmbiguousSelectorWhenPartialSelectorOverlapBetweenHPAs",
            Case {
                scale: selector_access(
                    "name=test-pod",
                    Some("cheddar=cheese"),
                    &[("cheddar", "cheese")],
                    3,
                ),
                ..cpu30.clone()
            },
            3,
            scaling_inactive("AmbiguousSelector"),
        ),
        (
            // The scale read returns no selector.
            "TestConditionInvalidSelectorMissing",
            Case {
                scale: selector_access("", None, &[], 3),
                ..cpu10.clone()
            },
            3,
            scaling_inactive("InvalidSelector"),
        ),
        (
            "TestConditionInvalidSelectorUnparsable",
            Case {
                scale: selector_access("cheddar cheese", None, &[], 3),
                ..cpu10.clone()
            },
            3,
            scaling_inactive("InvalidSelector"),
        ),
        (
            "TestConditionFailedGetScale",
            Case {
                scale: ScaleAccess {
                    get_error: Some("something went wrong".to_owned()),
                    ..ScaleAccess::default()
                },
                ..cpu10.clone()
            },
            3,
            vec![("AbleToScale", false, "FailedGetScale")],
        ),
        (
            "TestConditionFailedUpdateScale",
            Case {
                min: 1,
                max: 5,
                cpu_target: Some(100),
                levels: vec![150, 150, 150],
                requests: small.clone(),
                scale: ScaleAccess {
                    update_error: Some("something went wrong".to_owned()),
                    ..ScaleAccess::default()
                },
                ..Case::default()
            },
            3,
            status_ok(&[("AbleToScale", false, "FailedUpdateScale")]),
        ),
        (
            "TestConditionFailedGetMetrics/FailedGetResourceMetric",
            failed_get(None),
            3,
            scaling_inactive("FailedGetResourceMetric"),
        ),
        (
            "TestConditionFailedGetMetrics/FailedGetPodsMetric",
            failed_get(Some(Extra::Pods(15_000))),
            3,
            scaling_inactive("FailedGetPodsMetric"),
        ),
        (
            "TestConditionFailedGetMetrics/FailedGetObjectMetric",
            failed_get(Some(Extra::Object(15_000))),
            3,
            scaling_inactive("FailedGetObjectMetric"),
        ),
        (
            "TestConditionFailedGetMetrics/FailedGetExternalMetric",
            failed_get(Some(Extra::External(300))),
            3,
            scaling_inactive("FailedGetExternalMetric"),
        ),
        (
            "TestConditionInvalidSourceType",
            Case {
                invalid_metric: true,
                levels: vec![20000],
                ..Case::default()
            },
            3,
            scaling_inactive("InvalidMetricSourceType"),
        ),
        (
            // `lastScaleTime` now: surge, like upstream, has no backoff on it.
            "TestNoBackoffUpscaleCM",
            Case {
                min: 1,
                max: 5,
                extra: Some(Extra::Pods(15_000)),
                levels: vec![20000, 10000, 30000],
                requests: r3.clone(),
                ..Case::default()
            },
            4,
            status_ok(&[]),
        ),
        (
            // The CPU proposal is far above max: upstream's test factor (8: limit 24) and surge's
            // (2: limit 6) both exceed maxReplicas 5, so TooManyReplicas binds either way.
            "TestNoBackoffUpscaleCMNoBackoffCpu",
            Case {
                min: 1,
                max: 5,
                cpu_target: Some(10),
                extra: Some(Extra::Pods(15_000)),
                levels: vec![20000, 10000, 30000],
                requests: r3.clone(),
                ..Case::default()
            },
            5,
            status_ok(&[("ScalingLimited", true, "TooManyReplicas")]),
        ),
        (
            "TestStabilizeDownscale",
            Case {
                min: 1,
                max: 5,
                spec: 4,
                status: 4,
                cpu_target: Some(100),
                levels: vec![50, 50, 50],
                requests: small.clone(),
                recommendations: vec![rec(10, 10 * MIN), rec(4, MIN)],
                ..Case::default()
            },
            4,
            status_ok(&[("AbleToScale", true, "ScaleDownStabilized")]),
        ),
        (
            "TestComputedToleranceAlgImplementation/tc1",
            tolerance_scales,
            9,
            status_ok(&[]),
        ),
        (
            "TestComputedToleranceAlgImplementation/tc2",
            tolerance_holds,
            10,
            status_ok(&[("AbleToScale", true, "ReadyForNewScale")]),
        ),
        (
            "TestScaleUpOneMetricEmpty",
            Case {
                levels: vec![300, 400, 500],
                extra: Some(Extra::External(100)),
                extra_failed: true,
                ..cpu30.clone()
            },
            4,
            status_ok(&[]),
        ),
        (
            "TestNoScaleDownOneMetricInvalid",
            Case {
                cpu_target: Some(50),
                invalid_metric: true,
                ..down5.clone()
            },
            5,
            scaling_inactive("InvalidMetricSourceType"),
        ),
        (
            "TestNoScaleDownOneMetricEmpty",
            Case {
                cpu_target: Some(50),
                extra: Some(Extra::External(1000)),
                extra_failed: true,
                ..down5.clone()
            },
            5,
            scaling_inactive("FailedGetExternalMetric"),
        ),
    ];
    let total = rows.len();
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(name, c, want, conditions)| {
            let d = reconcile_decision(c);
            let mut problems = condition_mismatch(&d, conditions);
            if d.desired_replicas != *want {
                problems.insert(0, format!("{} != {want}", d.desired_replicas));
            }
            (!problems.is_empty()).then(|| format!("{name}: {}", problems.join("; ")))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_eq!(total, 25);
}

/// The messages of the `/scale` and selector conditions (upstream's status update clears them, so the
/// rows above compare reasons only) and what each failure leaves in the controller's state: a failed
/// read returns before `recordInitialRecommendation`, a failed update records no scale event.
#[test]
fn test_scale_access_messages_and_state() {
    let base = Case {
        min: 1,
        max: 5,
        cpu_target: Some(100),
        levels: vec![150, 150, 150],
        requests: vec![100; 3],
        scale_up_rules: Some(rules(4, 60, 0, 0, 0)),
        ..Case::default()
    };
    let message = |scale: ScaleAccess, kind: &str| {
        let d = reconcile_decision(&Case {
            scale,
            ..base.clone()
        });
        d.condition(kind).unwrap().message.clone()
    };
    assert_eq!(
        message(selector_access("", None, &[], 3), "ScalingActive"),
        "the HPA target's scale is missing a selector"
    );
    assert!(
        message(
            selector_access("cheddar cheese", None, &[], 3),
            "ScalingActive"
        )
        .starts_with("couldn't convert selector into a corresponding internal selector object: ")
    );
    assert_eq!(
        message(
            selector_access("name=test-pod", Some("name=test-pod"), &[], 3),
            "ScalingActive"
        ),
        "pods by selector name=test-pod are controlled by multiple HPAs: \
         [test-namespace/test-hpa test-namespace/test-hpa-2]"
    );
    let failing = |get: bool| ScaleAccess {
        get_error: get.then(|| "something went wrong".to_owned()),
        update_error: (!get).then(|| "something went wrong".to_owned()),
        ..ScaleAccess::default()
    };
    assert_eq!(
        message(failing(true), "AbleToScale"),
        "the HPA controller was unable to get the target's current scale: something went wrong"
    );
    assert_eq!(
        message(failing(false), "AbleToScale"),
        "the HPA controller was unable to update the target scale: something went wrong"
    );

    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 5,
        metrics: Vec::new(),
        behavior: Some(Behavior {
            scale_up: rules(4, 60, 0, 0, 0),
            scale_down: ScalingRules::default_scale_down(),
        }),
        controller: ControllerConfig::default(),
    };
    let input = HpaInput {
        current_replicas: 6,
        status_replicas: 6,
        ..HpaInput::default()
    };
    let run = |scale: &ScaleAccess| {
        let mut state = HpaState::default();
        let d = evaluate_hpa_with_scale(&spec, &mut state, &input, scale, NOW, 1);
        (d.desired_replicas, d.scale, state)
    };
    let (desired, scaled, state) = run(&failing(true));
    assert_eq!((desired, scaled, state), (6, false, HpaState::default()));
    let (desired, scaled, state) = run(&failing(false));
    assert_eq!((desired, scaled), (6, false));
    assert!(state.initialized && state.scale_down_events.is_empty());
    let (desired, scaled, state) = run(&ScaleAccess::default());
    assert_eq!(
        (desired, scaled, state.scale_down_events.len()),
        (5, true, 1)
    );
}

#[test]
fn test_invalid_metric_source_type_is_refused_at_load() {
    // TestScaleUpOneMetricInvalid, TestScaleUpFromZeroOneMetricInvalid, TestScaleUpBothMetricsEmpty,
    // TestConditionInvalidSourceType and TestNoScaleDownOneMetricInvalid list a metric of type
    // "CheddarCheese". The API server would refuse it (upstream's own comment); surge refuses it when the
    // manifest loads, naming the field, alone or beside a valid metric.
    for metrics in [
        "  - type: CheddarCheese\n",
        "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 30\n  - type: CheddarCheese\n",
    ] {
        let yaml = format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  minReplicas: 2\n  maxReplicas: 6\n  metrics:\n{metrics}"
        );
        let Err(surge_engine::ManifestError::Invalid(errors)) = surge_engine::parse_hpa(&yaml)
        else {
            panic!("expected the unknown metric type to be refused:\n{yaml}");
        };
        let index = metrics.matches("- type:").count() - 1;
        assert_eq!(
            errors,
            vec![format!(
                "spec.metrics[{index}].type: unknown metric type \"CheddarCheese\" (expected Resource, ContainerResource, Pods, Object or External)"
            )]
        );
    }
}

#[test]
fn test_multiple_hpas() {
    // TestMultipleHPAs: 1000 HPAs over Deployments of one pod each (requests 500m + 500m, usage 200m +
    // 300m, started 10 minutes ago), cpu target 10 %, scale-up `generateScalingRules(100, 60, 0, 0, 0)`,
    // scale-down `generateScalingRules(2, 60, 1, 60, 300)`, each with its own past events. Upstream runs
    // them through five workers and asserts every one was processed; here each is evaluated with its
    // own state, and each must reach its own decision: 50 % on 10 % from 1 replica is 5, within what
    // the scale-up policy still allows after its events (1 - 20 + 100).
    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 10,
        metrics: vec![MetricSpec {
            source: MetricSource::Resource { name: "cpu".into() },
            target: MetricTarget::Utilization(10),
        }],
        behavior: Some(Behavior {
            scale_up: rules(100, 60, 0, 0, 0),
            scale_down: rules(2, 60, 1, 60, 300),
        }),
        controller: ControllerConfig {
            tolerance: 0.1,
            cpu_initialization_period_ms: 2 * MIN,
            delay_of_initial_readiness_status_ms: 10_000,
            downscale_stabilization_window_ms: 5 * MIN,
        },
    };
    let mut states: Vec<HpaState> = (0..1000)
        .map(|_| HpaState {
            scale_up_events: uniform(&[8, 12, 9, 11], 120),
            scale_down_events: uniform(&[10, 10, 10], 120),
            ..HpaState::default()
        })
        .collect();
    for (i, state) in states.iter_mut().enumerate() {
        let name = format!("dummy-target-{i}-0");
        let mut pod = PodInfo::running(&name, 500);
        pod.containers.push(surge_engine::ContainerRequests {
            name: "container2".to_owned(),
            ..pod.containers[0].clone()
        });
        pod.containers[0].name = "container1".to_owned();
        pod.start_ms = Some(NOW - 10 * MIN);
        let sample = PodMetric {
            milli: 200 + 300,
            timestamp_ms: NOW,
            window_ms: MIN,
        };
        let input = HpaInput {
            current_replicas: 1,
            status_replicas: 1,
            pods: vec![pod],
            metrics: vec![MetricSample::PerPod(BTreeMap::from([(name, sample)]))],
        };
        let d = evaluate_hpa(&spec, state, &input, NOW);
        assert_eq!((d.desired_replicas, d.scale), (5, true), "HPA {i}");
        assert_eq!(
            d.condition("ScalingLimited").map(|c| c.reason.as_str()),
            Some("DesiredWithinRange"),
            "HPA {i}"
        );
    }
    // Each HPA recorded its own scale-up of 4 in the last of its outdated slots, as upstream's
    // `storeScaleEvent` does (the events of 105 and 75 s ago fell out of the 60 s period).
    for state in &states {
        let events: Vec<(i32, bool)> = state
            .scale_up_events
            .iter()
            .map(|e| (e.change, e.outdated))
            .collect();
        assert_eq!(events, [(8, true), (4, false), (9, false), (11, false)]);
    }
}

/// The selector and `/scale` cases written as scenarios (`initial.scale`, `fail_scale_get`,
/// `fail_scale_update`), as `surge simulate` replays them: CPU at 50 % of a 30 % target asks for 5 of
/// 3 replicas whenever the controller gets that far.
#[test]
fn test_scale_and_selector_cases_as_scenarios() {
    let replay = |initial_scale: &str, entry: &str| {
        let yaml = format!(
            "policy:
  hpa: |
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    metadata: {{name: test-hpa, namespace: test-namespace}}
    spec:
      scaleTargetRef: {{apiVersion: v1, kind: ReplicationController, name: test-rc}}
      minReplicas: 2
      maxReplicas: 6
      metrics:
      - type: Resource
        resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 30}}}}
initial:
  replicas: 3
  pod_template: {{requests: {{cpu: '1'}}}}
{initial_scale}
timeline:
  - at: 0s
    metrics: {{cpu: 500m}}
{entry}
end: 15s
"
        );
        let s = surge_engine::scenario::parse(&yaml)
            .unwrap_or_else(|e| panic!("scenario rejected:\n{e}\n{yaml}"));
        surge_engine::scenario::simulate(&s)
            .iter()
            .map(|step| {
                let d = &step.decision;
                let active = d.condition("ScalingActive").map(|c| c.reason.clone());
                let able = d
                    .condition("AbleToScale")
                    .map(|c| (c.status, c.reason.clone()));
                (step.replicas, active, able)
            })
            .collect::<Vec<_>>()
    };
    let scale = |selector: &str, labels: &str, other: &str| {
        format!(
            "  scale:\n    selector: '{selector}'\n    pod_labels: {labels}\n    other_hpas: \
             [{{key: test-namespace/test-hpa-2, selector: '{other}'}}]"
        )
    };
    let inactive = |reason: &str| (3, Some(reason.to_owned()), None);
    let valid = Some("ValidMetricFound".to_owned());
    let rescaled = (
        5,
        valid.clone(),
        Some((true, "SucceededRescale".to_owned())),
    );
    let plain = "{name: test-pod}";
    let both = "{name: test-pod, cheddar: cheese}";
    for (name, initial, entry, want) in [
        (
            "TestConditionNoAmbiguousSelectorWhenNoSelectorOverlapBetweenHPAs",
            scale("name=test-pod", plain, "cheddar=cheese"),
            "",
            vec![
                rescaled.clone(),
                (5, valid.clone(), Some((true, "ReadyForNewScale".into()))),
            ],
        ),
        (
            "TestConditionAmbiguousSelectorWhenFullSelectorOverlapBetweenHPAs",
            scale("name=test-pod", plain, "name=test-pod"),
            "",
            vec![inactive("AmbiguousSelector"); 2],
        ),
        (
            "TestConditionAmbiguousSelectorWhenPartialSelectorOverlapBetweenHPAs",
            scale("name=test-pod", both, "cheddar=cheese"),
            "",
            vec![inactive("AmbiguousSelector"); 2],
        ),
        (
            "TestConditionInvalidSelectorMissing",
            scale("", plain, "cheddar=cheese"),
            "",
            vec![inactive("InvalidSelector"); 2],
        ),
        (
            "TestConditionInvalidSelectorUnparsable",
            scale("cheddar cheese", plain, "cheddar=cheese"),
            "",
            vec![inactive("InvalidSelector"); 2],
        ),
        (
            // The read fails at 0s only; at 15s the controller scales.
            "TestConditionFailedGetScale",
            String::new(),
            "    fail_scale_get: something went wrong",
            vec![
                (3, None, Some((false, "FailedGetScale".to_owned()))),
                rescaled.clone(),
            ],
        ),
        (
            "TestConditionFailedUpdateScale",
            String::new(),
            "    fail_scale_update: something went wrong",
            vec![
                (
                    3,
                    valid.clone(),
                    Some((false, "FailedUpdateScale".to_owned())),
                ),
                rescaled.clone(),
            ],
        ),
    ] {
        assert_eq!(replay(&initial, entry), want, "{name}");
    }
}
