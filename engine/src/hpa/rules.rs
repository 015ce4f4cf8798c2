//! Stabilization windows, rate limits and min/max: upstream `horizontal.go` (`normalizeDesiredReplicas`,
//! `normalizeDesiredReplicasWithBehaviors` and helpers). Time comparisons are strict, as Go's
//! `Before`/`After` are.

use crate::decision::{Adjustment, Condition};

use super::{
    Behavior, HpaState, PolicyKind, ScaleEvent, ScalingRules, SelectPolicy,
    TimestampedRecommendation,
};

/// Scale-up limit factor without `behavior`.
pub const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
/// Scale-up limit minimum without `behavior`.
pub const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// What normalization decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The final replica count.
    pub replicas: i32,
    /// The stabilization step, when it changed the recommendation.
    pub stabilization: Option<Adjustment>,
    /// The limit step, when it changed the stabilized value.
    pub limit: Option<Adjustment>,
    /// `AbleToScale` and `ScalingLimited` as upstream sets them.
    pub conditions: Vec<Condition>,
}

fn seconds_to_ms(s: i32) -> i64 {
    i64::from(s) * 1000
}

/// `calculateScaleUpLimit`: `max(2 · current, 4)`.
pub fn calculate_scale_up_limit(current: i32) -> i32 {
    let limit = (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM);
    if limit >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        limit as i32
    }
}

/// `stabilizeRecommendation` (no `behavior`): the maximum over the window, recording the new value in
/// the slot of an outdated one when there is one.
pub fn stabilize_recommendation(
    state: &mut HpaState,
    now_ms: i64,
    window_ms: i64,
    desired: i32,
) -> i32 {
    let mut max = desired;
    let mut old_index = None;
    let cutoff = now_ms.saturating_sub(window_ms);
    for (i, rec) in state.recommendations.iter().enumerate() {
        if rec.at_ms < cutoff {
            old_index = Some(i);
        } else if rec.replicas > max {
            max = rec.replicas;
        }
    }
    let new = TimestampedRecommendation {
        replicas: desired,
        at_ms: now_ms,
    };
    match old_index {
        Some(i) => state.recommendations[i] = new,
        None => state.recommendations.push(new),
    }
    max
}

/// `convertDesiredReplicasWithRules`: clamp to [min, min(max, scale-up limit)]; (replicas, reason, message).
pub fn convert_desired_replicas_with_rules(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str) {
    let scale_up_limit = calculate_scale_up_limit(current);
    let (maximum, reason, message) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    if desired < min {
        return (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        );
    }
    if desired > maximum {
        return (maximum, reason, message);
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// `normalizeDesiredReplicas`: the path without `behavior`.
pub fn normalize_desired_replicas(
    state: &mut HpaState,
    now_ms: i64,
    downscale_window_ms: i64,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let stabilized = stabilize_recommendation(state, now_ms, downscale_window_ms, desired);
    let mut conditions = Vec::new();
    let mut stabilization = None;
    if stabilized != desired {
        let message = "recent recommendations were higher than current one, applying the highest recent recommendation";
        conditions.push(Condition::new(
            "AbleToScale",
            true,
            "ScaleDownStabilized",
            message,
        ));
        stabilization = Some(Adjustment {
            from: desired,
            to: stabilized,
            rule: "ScaleDownStabilized".to_owned(),
            message: message.to_owned(),
        });
    } else {
        conditions.push(Condition::new(
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        ));
    }
    let (replicas, reason, message) =
        convert_desired_replicas_with_rules(current, stabilized, min, max);
    conditions.push(Condition::new(
        "ScalingLimited",
        replicas != stabilized,
        reason,
        message,
    ));
    let limit = (replicas != stabilized).then(|| Adjustment {
        from: stabilized,
        to: replicas,
        rule: reason.to_owned(),
        message: message.to_owned(),
    });
    Normalized {
        replicas,
        stabilization,
        limit,
        conditions,
    }
}

/// `stabilizeRecommendationWithBehaviors`: clamp current between the minimum of the up-window and the
/// maximum of the down-window recommendations; record the new one. Returns (value, reason, message).
pub fn stabilize_recommendation_with_behaviors(
    state: &mut HpaState,
    now_ms: i64,
    up_window_seconds: i32,
    down_window_seconds: i32,
    current: i32,
    desired: i32,
) -> (i32, &'static str, &'static str) {
    let up_cutoff = now_ms.saturating_sub(seconds_to_ms(up_window_seconds));
    let down_cutoff = now_ms.saturating_sub(seconds_to_ms(down_window_seconds));
    let mut up = desired;
    let mut down = desired;
    let mut old_index = None;
    for (i, rec) in state.recommendations.iter().enumerate() {
        if rec.at_ms > up_cutoff {
            up = up.min(rec.replicas);
        }
        if rec.at_ms > down_cutoff {
            down = down.max(rec.replicas);
        }
        if rec.at_ms < up_cutoff && rec.at_ms < down_cutoff {
            old_index = Some(i);
        }
    }
    let mut recommendation = current;
    if recommendation < up {
        recommendation = up;
    }
    if recommendation > down {
        recommendation = down;
    }
    let new = TimestampedRecommendation {
        replicas: desired,
        at_ms: now_ms,
    };
    match old_index {
        Some(i) => state.recommendations[i] = new,
        None => state.recommendations.push(new),
    }
    if desired >= current {
        (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

/// `getReplicasChangePerPeriod`: the sum of changes of events strictly after `now - period`.
pub fn get_replicas_change_per_period(
    now_ms: i64,
    period_seconds: i32,
    events: &[ScaleEvent],
) -> i32 {
    let cutoff = now_ms.saturating_sub(seconds_to_ms(period_seconds));
    events
        .iter()
        .filter(|e| e.at_ms > cutoff)
        .fold(0i32, |acc, e| acc.saturating_add(e.change))
}

fn period_start(
    now_ms: i64,
    current: i32,
    policy_period: i32,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
) -> i32 {
    let added = get_replicas_change_per_period(now_ms, policy_period, up);
    let deleted = get_replicas_change_per_period(now_ms, policy_period, down);
    current.saturating_sub(added).saturating_add(deleted)
}

fn f64_to_i32(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else if x >= f64::from(i32::MAX) {
        i32::MAX
    } else if x <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        x as i32
    }
}

/// `calculateScaleUpLimitWithScalingRules`.
pub fn calculate_scale_up_limit_with_scaling_rules(
    now_ms: i64,
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, std::cmp::min),
        SelectPolicy::Max => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let start = period_start(
            now_ms,
            current,
            policy.period_seconds,
            scale_up_events,
            scale_down_events,
        );
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_add(policy.value),
            // Rounded up, or a small percentage of few replicas would never scale up.
            PolicyKind::Percent => {
                f64_to_i32((f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil())
            }
        };
        result = select(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
pub fn calculate_scale_down_limit_with_behaviors(
    now_ms: i64,
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, std::cmp::max),
        SelectPolicy::Max => (i32::MAX, std::cmp::min),
    };
    for policy in &rules.policies {
        let start = period_start(
            now_ms,
            current,
            policy.period_seconds,
            scale_up_events,
            scale_down_events,
        );
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_sub(policy.value),
            PolicyKind::Percent => {
                f64_to_i32(f64::from(start) * (1.0 - f64::from(policy.value) / 100.0))
            }
        };
        result = select(result, proposed);
    }
    result
}

/// `convertDesiredReplicasWithBehaviorRate`: (replicas, reason, message).
pub fn convert_desired_replicas_with_behavior_rate(
    state: &HpaState,
    now_ms: i64,
    behavior: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let mut limit = calculate_scale_up_limit_with_scaling_rules(
            now_ms,
            current,
            &state.scale_up_events,
            &state.scale_down_events,
            &behavior.scale_up,
        );
        if limit < current {
            // No further scale-up until the recent scale-up events age out.
            limit = current;
        }
        let (maximum, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > maximum {
            return (maximum, reason, message);
        }
    } else if desired < current {
        let mut limit = calculate_scale_down_limit_with_behaviors(
            now_ms,
            current,
            &state.scale_up_events,
            &state.scale_down_events,
            &behavior.scale_down,
        );
        if limit > current {
            // No further scale-down until the recent scale-down events age out.
            limit = current;
        }
        let (minimum, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < minimum {
            return (minimum, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// `normalizeDesiredReplicasWithBehaviors`.
#[allow(clippy::too_many_arguments)]
pub fn normalize_desired_replicas_with_behaviors(
    state: &mut HpaState,
    now_ms: i64,
    behavior: &Behavior,
    downscale_window_ms: i64,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> Normalized {
    // maybeInitScaleDownStabilizationWindow: an unset scale-down window is the controller's default.
    let default_down = i32::try_from(downscale_window_ms / 1000).unwrap_or(i32::MAX);
    let up_window = behavior.scale_up.stabilization_window_seconds.unwrap_or(0);
    let down_window = behavior
        .scale_down
        .stabilization_window_seconds
        .unwrap_or(default_down);
    let (stabilized, reason, message) = stabilize_recommendation_with_behaviors(
        state,
        now_ms,
        up_window,
        down_window,
        current,
        desired,
    );
    let mut conditions = Vec::new();
    let mut stabilization = None;
    if stabilized != desired {
        conditions.push(Condition::new("AbleToScale", true, reason, message));
        stabilization = Some(Adjustment {
            from: desired,
            to: stabilized,
            rule: reason.to_owned(),
            message: message.to_owned(),
        });
    } else {
        conditions.push(Condition::new(
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        ));
    }
    let (replicas, reason, message) = convert_desired_replicas_with_behavior_rate(
        state, now_ms, behavior, current, stabilized, min, max,
    );
    conditions.push(Condition::new(
        "ScalingLimited",
        replicas != stabilized,
        reason,
        message,
    ));
    let limit = (replicas != stabilized).then(|| Adjustment {
        from: stabilized,
        to: replicas,
        rule: reason.to_owned(),
        message: message.to_owned(),
    });
    Normalized {
        replicas,
        stabilization,
        limit,
        conditions,
    }
}

/// `getLongestPolicyPeriod`.
pub fn longest_policy_period(rules: &ScalingRules) -> i32 {
    rules
        .policies
        .iter()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0)
        .max(0)
}

fn mark_scale_events_outdated(events: &mut [ScaleEvent], now_ms: i64, longest_period: i32) {
    let cutoff = now_ms.saturating_sub(seconds_to_ms(longest_period));
    for e in events.iter_mut() {
        if e.at_ms < cutoff {
            e.outdated = true;
        }
    }
}

/// `storeScaleEvent`: record a scale event (only with `behavior`: without it none are read), reusing the
/// slot of an outdated one.
pub fn store_scale_event(
    state: &mut HpaState,
    behavior: Option<&Behavior>,
    now_ms: i64,
    prev: i32,
    new: i32,
) {
    let Some(behavior) = behavior else {
        return;
    };
    let (events, rules, change) = if new > prev {
        (
            &mut state.scale_up_events,
            &behavior.scale_up,
            new.saturating_sub(prev),
        )
    } else {
        (
            &mut state.scale_down_events,
            &behavior.scale_down,
            prev.saturating_sub(new),
        )
    };
    mark_scale_events_outdated(events, now_ms, longest_policy_period(rules));
    let event = ScaleEvent {
        change,
        at_ms: now_ms,
        outdated: false,
    };
    match events.iter().rposition(|e| e.outdated) {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}
