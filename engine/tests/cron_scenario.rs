//! KEDA `cron` triggers through `surge simulate`'s scenario replay: two overlapping windows written in
//! Berlin time, replayed across the spring-forward of 2026-03-29 (CET → CEST at 01:00 UTC), so the same
//! local windows open an hour earlier in UTC on the second day.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::scenario::{self, Step};

const SCENARIO: &str = "policy:
  scaledObject: |
    apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    metadata: {name: web, namespace: shop}
    spec:
      scaleTargetRef: {name: web}
      minReplicaCount: 1
      maxReplicaCount: 10
      advanced:
        horizontalPodAutoscalerConfig:
          behavior:
            scaleDown: {stabilizationWindowSeconds: 0}
      triggers:
      - type: cron
        name: day
        metadata: {timezone: Europe/Berlin, start: 0 8 * * *, end: 0 18 * * *, desiredReplicas: '3'}
      - type: cron
        name: peak
        metadata: {timezone: Europe/Berlin, start: 0 9 * * *, end: 0 11 * * *, desiredReplicas: '6'}
start: 2026-03-28T06:00:00Z
sync_period: 30m
initial: {replicas: 1}
end: 35h
";

fn at(steps: &[Step], hours: f64) -> &Step {
    steps
        .iter()
        .find(|s| s.time_s == hours * 3600.0)
        .unwrap_or_else(|| panic!("no step at {hours}h"))
}

#[test]
fn overlapping_berlin_windows_across_spring_forward() {
    let s = scenario::parse(SCENARIO).unwrap_or_else(|e| panic!("scenario rejected:\n{e}"));
    let steps = scenario::simulate(&s);
    // (hours after 2026-03-28T06:00Z, replicas, Berlin wall clock).
    let rows = [
        (0.0, 1, "Sat 07:00 CET: before both windows"),
        (1.0, 3, "Sat 08:00 CET: the day window opens"),
        (2.0, 6, "Sat 09:00 CET: both open, the peak's 6 wins"),
        (3.5, 6, "Sat 10:30 CET: both still open"),
        (4.0, 3, "Sat 11:00 CET: the peak closed"),
        (10.5, 3, "Sat 17:30 CET: the day window still open"),
        (11.0, 1, "Sat 18:00 CET: both closed, back to the minimum"),
        (
            19.0,
            1,
            "Sun 03:00 CEST: the clocks went forward at 01:00 UTC",
        ),
        (23.5, 1, "Sun 07:30 CEST"),
        (
            24.0,
            3,
            "Sun 08:00 CEST, 06:00 UTC: an hour earlier in UTC than on Saturday",
        ),
        (25.0, 6, "Sun 09:00 CEST: both open"),
        (26.5, 6, "Sun 10:30 CEST"),
        (27.0, 3, "Sun 11:00 CEST: the peak closed"),
        (33.5, 3, "Sun 17:30 CEST"),
        (34.0, 1, "Sun 18:00 CEST: both closed"),
        (35.0, 1, "Sun 19:00 CEST"),
    ];
    for (hours, replicas, when) in rows {
        let step = at(&steps, hours);
        assert_eq!(step.replicas, replicas, "{when}: {}", step.reason);
    }
    // The decision says which window was open and when it closes.
    let keda = at(&steps, 25.0).decision.keda.clone().unwrap();
    let peak = &keda.cron_windows["peak"];
    assert!(peak.active);
    assert_eq!(peak.timezone, "Europe/Berlin");
    let close: jiff::Timestamp = "2026-03-29T09:00:00Z".parse().unwrap();
    assert_eq!(peak.next_end_ms, Some(close.as_millisecond()));
    let opens: jiff::Timestamp = "2026-03-30T07:00:00Z".parse().unwrap();
    assert_eq!(peak.next_start_ms, Some(opens.as_millisecond()));
    assert!(keda.triggers_activity["day"]);
    // At 07:30 CEST neither is open; the day window's next start is 08:00 CEST.
    let keda = at(&steps, 23.5).decision.keda.clone().unwrap();
    assert!(!keda.cron_windows["day"].active);
    let day_opens: jiff::Timestamp = "2026-03-29T06:00:00Z".parse().unwrap();
    assert_eq!(
        keda.cron_windows["day"].next_start_ms,
        Some(day_opens.as_millisecond())
    );
}

#[test]
fn a_cron_trigger_with_bad_metadata_is_refused_at_its_field() {
    let bad = SCENARIO
        .replace("start: 0 9 * * *", "start: 0 25 * * *")
        .replace(
            "timezone: Europe/Berlin, start: 0 8",
            "timezone: Europe/Berlinn, start: 0 8",
        );
    let e = scenario::parse(&bad).err().unwrap().to_string();
    assert!(
        e.contains("spec.triggers[1].metadata.start: error parsing start schedule"),
        "{e}"
    );
    assert!(
        e.contains("spec.triggers[0].metadata.timezone: unable to load timezone: unknown time zone Europe/Berlinn"),
        "{e}"
    );
}
