//! KEDA `cron` triggers through the executor: each trigger's metric is `desiredReplicas` inside its
//! window against a target of 1, and overlapping windows give the HPA's largest proposal.

// Test helpers may unwrap (a panic is a failed test).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use surge_engine::cron::{CRON_TARGET, CronTrigger};
use surge_engine::hpa::PodInfo;
use surge_engine::keda::TriggerMetricType;
use surge_engine::{
    ControllerConfig, KedaInput, KedaState, ScaledObjectSpec, TriggerSpec, TriggerValue,
    evaluate_scaled_object,
};

/// A `cron` trigger's metadata, Berlin time.
fn metadata(start: &str, end: &str, desired: &str) -> BTreeMap<String, String> {
    [
        ("timezone", "Europe/Berlin"),
        ("start", start),
        ("end", end),
        ("desiredReplicas", desired),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn cron(start: &str, end: &str, desired: &str) -> CronTrigger {
    let m = metadata(start, end, desired);
    CronTrigger::parse(|k| m.get(k).map(String::as_str)).unwrap()
}

fn spec(triggers: &[(&str, BTreeMap<String, String>)]) -> ScaledObjectSpec {
    ScaledObjectSpec {
        name: "so".to_owned(),
        annotations: Default::default(),
        polling_interval_seconds: 30,
        cooldown_period_seconds: 300,
        initial_cooldown_period_seconds: 0,
        min_replica_count: 1,
        min_replica_count_set: true,
        max_replica_count: 100,
        idle_replica_count: None,
        triggers: triggers
            .iter()
            .map(|(n, m)| TriggerSpec {
                name: (*n).to_owned(),
                named: true,
                kind: "cron".to_owned(),
                metric_type: TriggerMetricType::AverageValue,
                threshold: CRON_TARGET,
                activation_threshold: 0.0,
                container: None,
                use_cached_metrics: false,
                metadata: m.clone(),
            })
            .collect(),
        fallback: None,
        scaling_modifiers: None,
        behavior: None,
        controller: ControllerConfig::default(),
        warnings: Vec::new(),
    }
}

#[test]
fn overlapping_windows_take_the_largest() {
    // Weekdays 08:00-18:00 at 5 replicas, and a lunch peak 11:30-14:00 at 12 (Berlin time).
    let s = spec(&[
        ("day", metadata("0 8 * * 1-5", "0 18 * * 1-5", "5")),
        (
            "lunch",
            metadata("30 11 * * MON-FRI", "0 14 * * MON-FRI", "12"),
        ),
    ]);
    let lunch = cron("30 11 * * MON-FRI", "0 14 * * MON-FRI", "12");
    // (UTC instant, expected replicas): Berlin is UTC+1 in January.
    let rows = [
        ("2024-01-08T08:00:00Z", 5),  // 09:00: the day window only
        ("2024-01-08T10:45:00Z", 12), // 11:45: both, the lunch peak wins
        ("2024-01-08T12:59:59Z", 12), // 13:59:59: both still
        ("2024-01-08T13:00:00Z", 5),  // 14:00: lunch closed
        ("2024-01-08T17:00:00Z", 0),  // 18:00: both closed, both metrics 0
    ];
    for (now, expected) in rows {
        let now: Timestamp = now.parse().unwrap();
        // The engine reads cron triggers from the clock: their slots say nothing was read.
        let values = vec![TriggerValue::NotRead; 2];
        let input = KedaInput {
            current_replicas: 10,
            status_replicas: 10,
            pods: (0..10)
                .map(|i| PodInfo::running(&format!("p{i}"), 100))
                .collect(),
            triggers: values,
        };
        let d = evaluate_scaled_object(&s, &mut KedaState::default(), &input, now.as_millisecond());
        // The HPA's recommendation is the largest per-metric proposal, before stabilization and rate
        // limits (which start from the current ten replicas).
        assert_eq!(d.recommendation, Some(expected), "{now}: {d:?}");
        // The decision says which windows were open, and the lunch window's next bounds.
        let windows = &d.keda.as_ref().unwrap().cron_windows;
        assert_eq!(windows["lunch"].active, lunch.is_active(now).unwrap());
        assert_eq!(
            windows["lunch"].next_end_ms,
            lunch
                .window(now)
                .unwrap()
                .next_end
                .map(|t| t.as_millisecond())
        );
        assert_eq!(windows["day"].active, expected > 0, "{now}");
    }
    // Which window is open, for explanations.
    let w = lunch
        .window("2024-01-08T11:00:00Z".parse().unwrap())
        .unwrap();
    assert!(w.active);
    assert_eq!(w.next_end, Some("2024-01-08T13:00:00Z".parse().unwrap()));
}
