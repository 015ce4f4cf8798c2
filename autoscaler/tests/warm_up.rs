//! Restart hygiene: right after the engine starts (an aggregator restart), the cache holds only what
//! the agents that already wrote again sent, so a sum over pods reads low. The engine must not scale
//! down on that half-warm view; a scale-up still goes through.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms,
};
use surge_autoscaler::{Autoscaler, DecisionRecord, VirtualWorkloads, build_policies};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use tokio_util::sync::CancellationToken;

/// Eight replicas serving 400 rps in all at a target of 50 each; no stabilization window, so only the
/// warm-up can hold a scale-down.
const POLICY: &str = r#"
policies:
  - name: web
    initial_replicas: 8
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: web, namespace: shop}
      spec:
        scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
        minReplicas: 1
        maxReplicas: 20
        behavior:
          scaleDown: {stabilizationWindowSeconds: 0}
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: AverageValue, averageValue: "50"}
    metrics:
      rps: sum(web_rps{service="web"})
"#;

/// A restarted aggregator: only the agent of node `a` has written again (100 rps of its pods); the
/// agent of node `b` (300 rps) has not yet. Returns the decision the engine makes on that view.
async fn decision_on_a_half_warm_cache(warm_up: Option<Duration>) -> Arc<DecisionRecord> {
    let cfg =
        surge_config::load_str(POLICY, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let a = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        build_policies(&cfg).unwrap(),
        Arc::new(VirtualWorkloads::default()),
        &mut Registry::default(),
    );
    if let Some(w) = warm_up {
        a.set_warm_up(w);
    }
    state.add_observer(a.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(a.clone().run(cancel.clone()));
    let mut raw = Vec::new();
    let labels = Labels::from_pairs([("__name__", "web_rps"), ("service", "web"), ("node", "a")]);
    encode_series(
        &mut raw,
        &encode_label_block(&labels),
        &[Sample {
            timestamp_ms: now_ms(),
            value: 100.0,
        }],
    );
    let body = compress(&raw, &mut snap::raw::Encoder::new());
    state
        .ingest_body(&body, Sender::SurgeAgent, now_ms())
        .unwrap();
    let d = async {
        loop {
            if let Some(d) = a
                .decisions(Some("web"), 1)
                .pop()
                .filter(|d| d.trigger == "ingest")
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let d = tokio::time::timeout(Duration::from_secs(5), d)
        .await
        .unwrap();
    cancel.cancel();
    d
}

#[tokio::test]
async fn a_policy_whose_inputs_are_partial_after_a_restart_does_not_scale_down() {
    let d = decision_on_a_half_warm_cache(None).await;
    // The engine proposes ceil(100 / 50) = 2; the warm-up holds it at 8.
    assert_eq!(d.decision.recommendation, Some(2));
    assert_eq!((d.replicas_before, d.replicas_after), (8, 8));
    assert!(!d.decision.scale);
    assert!(
        d.decision.reason.contains("warming up"),
        "{}",
        d.decision.reason
    );
}

#[tokio::test]
async fn without_the_warm_up_the_same_view_would_scale_down() {
    let d = decision_on_a_half_warm_cache(Some(Duration::ZERO)).await;
    assert_eq!((d.replicas_before, d.replicas_after), (8, 2));
}

/// One replica at a target of 50 in-flight requests, read as a one-minute average of the gauge.
const RATE_POLICY: &str = r#"
policies:
  - name: web
    initial_replicas: 1
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: web, namespace: shop}
      spec:
        scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
        minReplicas: 1
        maxReplicas: 20
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: AverageValue, averageValue: "50"}
    metrics:
      rps: sum(avg_over_time(web_inflight{service="web"}[1m]))
"#;

/// The decision on a cache holding the in-flight gauge from `first_second` of the last minute on (10
/// for 50 s, then a 10 s burst of 100), with the store's history declared from `since`.
fn rate_decision(first_second: i64, since: impl FnOnce(i64) -> i64) -> Arc<DecisionRecord> {
    let cfg = surge_config::load_str(RATE_POLICY, "surge.yaml", &surge_config::MapEnv::default())
        .unwrap();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let a = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        build_policies(&cfg).unwrap(),
        Arc::new(VirtualWorkloads::default()),
        &mut Registry::default(),
    );
    let now = now_ms();
    let start = now - 60_000;
    let samples: Vec<Sample> = (0..=60)
        .map(|k| Sample {
            timestamp_ms: start + k * 1000,
            value: if k <= 50 { 10.0 } else { 100.0 },
        })
        .filter(|s| s.timestamp_ms >= start + first_second * 1000)
        .collect();
    let labels = Labels::from_pairs([("__name__", "web_inflight"), ("service", "web")]);
    let mut raw = Vec::new();
    encode_series(&mut raw, &encode_label_block(&labels), &samples);
    let body = compress(&raw, &mut snap::raw::Encoder::new());
    state.ingest_body(&body, Sender::SurgeAgent, now).unwrap();
    state
        .cache()
        .set_history_since(since(start + first_second * 1000));
    a.evaluate_all(now);
    a.decisions(Some("web"), 1).pop().unwrap()
}

/// A restarted aggregator holds the last 10 s of a one-minute average: the burst reads as the minute's
/// average (about 92, two replicas) where the whole minute says about 25 (one replica). The engine must
/// not scale up on that window until it is covered. (A `rate` over a partial window reads low instead,
/// since Prometheus divides by the whole range: a scale-down, which the same gate holds.)
#[test]
fn a_rate_over_a_half_empty_window_does_not_scale_up() {
    // What the whole minute says: (51 × 10 + 10 × 100) / 61 ≈ 24.8, stay at 1.
    let whole = rate_decision(0, |_| surge_store::HISTORY_COMPLETE);
    let avg = whole.inputs[0].value.unwrap();
    assert!((avg - 1510.0 / 61.0).abs() < 1e-9, "{avg}");
    assert_eq!((whole.replicas_before, whole.replicas_after), (1, 1));

    // The last 10 s only, the store saying its history starts there: proposed 2, held at 1.
    let held = rate_decision(50, |since| since);
    let avg = held.inputs[0].value.unwrap();
    assert!(
        (avg - 1010.0 / 11.0).abs() < 1e-9,
        "the partial window reads the burst: {avg}"
    );
    assert_eq!(held.decision.recommendation, Some(2));
    assert_eq!((held.replicas_before, held.replicas_after), (1, 1));
    assert!(!held.decision.scale);
    assert!(
        held.decision.reason.contains("60 s of history")
            && held.decision.reason.contains("50 s to go"),
        "{}",
        held.decision.reason
    );

    // The same partial view without the declared history start scales up: the wrong decision the
    // gate prevents.
    let wrong = rate_decision(50, |_| surge_store::HISTORY_COMPLETE);
    assert_eq!((wrong.replicas_before, wrong.replicas_after), (1, 2));

    // While a peer warm-up is running, nothing acts.
    let pending = rate_decision(0, |_| surge_store::HISTORY_PENDING);
    assert!(!pending.decision.scale);
    assert!(
        pending.decision.reason.contains("peer replica"),
        "{}",
        pending.decision.reason
    );
}
