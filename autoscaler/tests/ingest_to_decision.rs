//! The event-driven engine loop in-process: a sample lands, the policies reading it decide at once, with
//! the HPA's exact numbers, the sample's timestamp, and nothing for unrelated series.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms,
};
use surge_autoscaler::{Actuator, Autoscaler, InputSource, VirtualWorkloads, build_policies};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
policies:
  - name: web
    initial_replicas: 2
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: web, namespace: shop}
      spec:
        scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
        minReplicas: 2
        maxReplicas: 20
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: AverageValue, averageValue: "50"}
    metrics:
      rps: sum(web_rps{service="web"})
"#;

/// One series' labels, value and timestamp.
type Point<'a> = (&'a [(&'a str, &'a str)], f64, i64);

fn body(series: &[Point<'_>]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (labels, v, t) in series {
        let l = Labels::from_pairs(labels.iter().copied());
        encode_series(
            &mut raw,
            &encode_label_block(&l),
            &[Sample {
                timestamp_ms: *t,
                value: *v,
            }],
        );
    }
    compress(&raw, &mut snap::raw::Encoder::new())
}

async fn setup(yaml: &str) -> (Arc<AggregatorState>, Arc<Autoscaler>, CancellationToken) {
    let cfg = surge_config::load_str(yaml, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let policies = build_policies(&cfg).unwrap();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let a = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        policies,
        Arc::new(VirtualWorkloads::default()),
        &mut Registry::default(),
    );
    state.add_observer(a.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(a.clone().run(cancel.clone()));
    (state, a, cancel)
}

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 2 s");
}

#[tokio::test]
async fn a_sample_triggers_an_hpa_exact_decision_at_once() {
    let (state, a, cancel) = setup(POLICY).await;
    // The first evaluation finds no data: a failed metric never scales.
    let first = wait_for(|| a.decisions(Some("web"), 1).pop()).await;
    assert!(!first.decision.scale);
    assert!(first.decision.error.is_some(), "{:?}", first.decision);

    let t = now_ms();
    let labels: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    state
        .ingest_body(&body(&[(labels, 400.0, t)]), Sender::SurgeAgent, now_ms())
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("shop/web"), 1)
            .pop()
            .filter(|d| d.trigger == "ingest")
    })
    .await;
    // AverageValue 50 at 400 → ceil(400/50) = 8; without `behavior` the HPA limits a scale-up to
    // max(2 × current, 4) = 4.
    assert_eq!(d.decision.recommendation, Some(8));
    assert_eq!((d.replicas_before, d.replicas_after), (2, 4));
    assert_eq!(d.trigger_sample_ms, Some(t));
    assert!(
        d.decided_at_ms - t < 1000,
        "decided {} ms after the sample",
        d.decided_at_ms - t
    );
    assert_eq!(d.inputs[0].value, Some(400.0));
    assert_eq!(d.actuation, "dry-run: 2 → 4");
    assert_eq!(d.workload, "shop/web");
    cancel.cancel();
}

/// Two policies reading two targets' series, both carried by one write request: one target's scrape is
/// 3 s old (a retried send), the other's is fresh. Each decision measures scrape → decision from the
/// series its policy read, not from the newest sample of the request.
#[tokio::test]
async fn scrape_to_decision_is_measured_from_the_series_the_policy_read() {
    let two = format!(
        "{POLICY}{}",
        POLICY
            .replace("policies:\n", "")
            .replace("name: web\n", "name: checkout\n")
            .replace(
                "{name: web, namespace: shop}",
                "{name: checkout, namespace: shop}"
            )
            .replace("Deployment, name: web}", "Deployment, name: checkout}")
            .replace("service=\"web\"", "service=\"checkout\"")
    );
    let (state, a, cancel) = setup(&two).await;
    wait_for(|| a.decisions(Some("checkout"), 1).pop()).await;
    let fresh = now_ms();
    let old = fresh - 3_000;
    let web: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    let checkout: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "checkout")];
    state
        .ingest_body(
            &body(&[(web, 400.0, fresh), (checkout, 120.0, old)]),
            Sender::SurgeAgent,
            now_ms(),
        )
        .unwrap();
    let ingest_decision = |policy: &'static str| {
        let a = a.clone();
        move || {
            a.decisions(Some(policy), 1)
                .pop()
                .filter(|d| d.trigger == "ingest")
        }
    };
    let w = wait_for(ingest_decision("web")).await;
    let c = wait_for(ingest_decision("checkout")).await;
    assert_eq!(w.trigger_sample_ms, Some(fresh));
    assert_eq!(
        c.trigger_sample_ms,
        Some(old),
        "checkout read only the old scrape"
    );
    assert!(c.decided_at_ms - old >= 3_000, "{c:?}");
    cancel.cancel();
}

#[tokio::test]
async fn unrelated_series_do_not_wake_the_policy() {
    let (state, a, cancel) = setup(POLICY).await;
    wait_for(|| a.decisions(None, 1).pop()).await;
    let before = a.decisions(None, 100).len();
    let other: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "checkout")];
    let other2: &[(&str, &str)] = &[("__name__", "queue_depth"), ("service", "web")];
    state
        .ingest_body(
            &body(&[(other, 1.0, now_ms()), (other2, 5.0, now_ms())]),
            Sender::Other,
            now_ms(),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.decisions(None, 100).len(),
        before,
        "no evaluation for series no policy reads"
    );
    cancel.cancel();
}

#[tokio::test]
async fn stale_input_is_a_missing_metric_not_an_old_value() {
    let (state, a, cancel) = setup(POLICY).await;
    let labels: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    // A sample older than stale_after (5 s): present in the cache, never reported as current.
    let old = now_ms() - 20_000;
    state
        .ingest_body(&body(&[(labels, 900.0, old)]), Sender::Other, now_ms())
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("web"), 1)
            .pop()
            .filter(|d| d.trigger == "ingest")
    })
    .await;
    assert!(!d.decision.scale, "{:?}", d.decision);
    assert_eq!(d.replicas_after, 2);
    assert!(
        d.inputs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no fresh samples"),
        "{:?}",
        d.inputs
    );
    cancel.cancel();
}

#[test]
fn invalid_policies_are_rejected_with_file_line_and_field() {
    let yaml = r#"
policies:
  - name: a
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: a}
      spec:
        scaleTargetRef: {kind: Deployment, name: a}
        minReplicas: 5
        maxReplicas: 2
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: Value, value: "10"}
    metrics:
      rps: sum(rate(x[30s])
  - name: b
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: b}
      spec:
        scaleTargetRef: {kind: Deployment, name: b}
        maxReplicas: 3
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: Value, value: "10"}
    metrics:
      rsp: sum(x)
"#;
    let cfg = surge_config::load_str(yaml, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let errors = build_policies(&cfg).unwrap_err().to_lines();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        "surge.yaml:5:7: policies[0].hpa: invalid HorizontalPodAutoscaler: invalid manifest: spec.minReplicas: 5 is greater than spec.maxReplicas (2)"
    );
    assert!(
        errors[1].starts_with("surge.yaml:33:7: policies[1].metrics: no query for metric \"rps\""),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("surge.yaml:33:12: policies[1].metrics.rsp: \"rsp\" is not a metric"),
        "{}",
        errors[2]
    );
}

#[tokio::test]
async fn a_schedule_raises_the_floor_while_its_window_is_open() {
    // A window that opened at the start of this minute and lasts an hour: always open during the test.
    let yaml = POLICY.replace(
        "    metrics:\n      rps:",
        "    schedules:\n      - {start: '* * * * *', duration: 1h, min_replicas: 7}\n    metrics:\n      rps:",
    );
    let (state, a, cancel) = setup(&yaml).await;
    let labels: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    state
        .ingest_body(&body(&[(labels, 40.0, now_ms())]), Sender::Other, now_ms())
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("web"), 1)
            .pop()
            .filter(|d| d.trigger == "ingest")
    })
    .await;
    assert_eq!(d.decision.inputs.min_replicas, 7);
    assert_eq!(
        (d.replicas_before, d.replicas_after),
        (2, 7),
        "{}",
        d.decision.reason
    );
    cancel.cancel();
}

#[test]
fn a_query_that_does_not_parse_is_reported_once() {
    let yaml = r#"
policies:
  - name: a
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: a}
      spec:
        scaleTargetRef: {kind: Deployment, name: a}
        maxReplicas: 2
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: Value, value: "10"}
    metrics:
      rps: sum(rate(x[30s])
"#;
    let cfg = surge_config::load_str(yaml, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let errors = build_policies(&cfg).unwrap_err().to_lines();
    assert_eq!(
        errors,
        [
            "surge.yaml:17:12: policies[0].metrics.rps: query does not parse: 1:4: parse error: unclosed left parenthesis"
        ]
    );
}

#[test]
fn an_invalid_schedule_is_located() {
    let yaml = POLICY.replace(
        "    metrics:\n      rps:",
        "    schedules:\n      - {start: '61 * * * *', duration: 1h, min_replicas: 3}\n    metrics:\n      rps:",
    );
    let cfg =
        surge_config::load_str(&yaml, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let errors = build_policies(&cfg).unwrap_err().to_lines();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("surge.yaml:19:9: policies[0].schedules[0]: invalid schedule: cron \"61 * * * *\": \"61\" is outside 0-59"), "{}", errors[0]);
}

/// Without a cluster, the pods are the ones the per-pod metrics name when there are as many as the
/// virtual replica count, and stand-ins otherwise.
#[test]
fn dry_run_pods_are_the_ones_the_metrics_name_when_the_counts_agree() {
    let cfg =
        surge_config::load_str(POLICY, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let p = &build_policies(&cfg).unwrap()[0];
    let v = VirtualWorkloads::default();
    let names =
        |pods: Vec<surge_engine::PodInfo>| pods.into_iter().map(|p| p.name).collect::<Vec<_>>();
    let seen = v.observe(&p.target, &[]).unwrap();
    assert_eq!((seen.spec_replicas, seen.status_replicas), (2, 2));
    assert_eq!(names(seen.pods), ["web-0", "web-1"]);
    let named = ["web-7d9f-abcde", "web-7d9f-fghij"];
    assert_eq!(names(v.observe(&p.target, &named).unwrap().pods), named);
    assert_eq!(
        names(v.observe(&p.target, &named[..1]).unwrap().pods),
        ["web-0", "web-1"]
    );
}

const MEMORY_POLICY: &str = r#"
policies:
  - name: api
    initial_replicas: 2
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {name: api, namespace: shop}
      spec:
        scaleTargetRef: {name: api}
        minReplicaCount: 1
        maxReplicaCount: 10
        triggers:
          - type: memory
            metricType: AverageValue
            metadata: {value: 100Mi}
"#;

/// A KEDA memory trigger live: the policy reads the pods' cAdvisor working set (no query written), the
/// engine gets per-pod samples, and the generated HPA's Resource metric decides as the HPA would.
#[tokio::test]
async fn a_memory_trigger_reads_per_pod_working_set() {
    let cfg = surge_config::load_str(
        MEMORY_POLICY,
        "surge.yaml",
        &surge_config::MapEnv::default(),
    )
    .unwrap();
    let p = &build_policies(&cfg).unwrap()[0];
    assert_eq!(
        p.inputs[0].query().unwrap(),
        r#"sum by (pod) (container_memory_working_set_bytes{namespace="shop",pod=~"api-.*",container!=""})"#
    );
    let (state, a, cancel) = setup(MEMORY_POLICY).await;
    let t = now_ms();
    let mib = 1024.0 * 1024.0;
    let series =
        |pod: &'static str, container: &'static str| -> Vec<(&'static str, &'static str)> {
            vec![
                ("__name__", "container_memory_working_set_bytes"),
                ("namespace", "shop"),
                ("pod", pod),
                ("container", container),
            ]
        };
    let app_a = series("api-6c5d-aaaaa", "app");
    let side_a = series("api-6c5d-aaaaa", "sidecar");
    let cgroup_a = series("api-6c5d-aaaaa", "");
    let app_b = series("api-6c5d-bbbbb", "app");
    let other = series("web-1", "app");
    state
        .ingest_body(
            &body(&[
                (&app_a, 250.0 * mib, t),
                (&side_a, 50.0 * mib, t),
                // The pod-level cgroup (no container) would count the pod twice.
                (&cgroup_a, 300.0 * mib, t),
                (&app_b, 300.0 * mib, t),
                // Another workload's pod.
                (&other, 900.0 * mib, t),
            ]),
            Sender::SurgeAgent,
            now_ms(),
        )
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("shop/api"), 1)
            .pop()
            .filter(|d| d.decision.recommendation.is_some())
    })
    .await;
    // 300Mi per pod on average against 100Mi: ratio 3, so 3 × 2 pods = 6; the scale-up limit without
    // `behavior` is max(2 × current, 4) = 4.
    assert_eq!(d.decision.recommendation, Some(6), "{:?}", d.decision);
    let m = &d.decision.metrics[0];
    assert_eq!(m.current_milli, Some(300 * 1024 * 1024 * 1000));
    assert_eq!(m.pods.map(|p| p.ready), Some(2));
    assert_eq!(d.replicas_after, 4);
    cancel.cancel();
}

const CRON_POLICY: &str = r#"
policies:
  - name: web
    initial_replicas: 2
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {name: web, namespace: default}
      spec:
        scaleTargetRef: {name: web}
        minReplicaCount: 1
        maxReplicaCount: 10
        triggers:
          - type: prometheus
            name: rps
            metadata: {query: 'sum(web_rps)', threshold: "100"}
          - type: cron
            name: business-day
            metadata: {timezone: Europe/Berlin, start: "0 0 * * *", end: "59 23 * * *", desiredReplicas: "3"}
"#;

/// A live ScaledObject with a cron trigger: accepted (the trigger reads the clock, no query), and its
/// window decides beside a Prometheus trigger, as KEDA's generated HPA takes the larger proposal.
#[tokio::test]
async fn a_cron_trigger_decides_from_the_clock_beside_a_query() {
    let (state, a, cancel) = setup(CRON_POLICY).await;
    let labels: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    state
        .ingest_body(&body(&[(labels, 40.0, now_ms())]), Sender::Other, now_ms())
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("default/web"), 1)
            .pop()
            .filter(|d| d.decision.recommendation.is_some())
    })
    .await;
    // The window is 00:00-23:59 Berlin time: closed only in the last minute of the Berlin day. The
    // Prometheus trigger alone asks for ceil(40 / 100) = 1 replica.
    let berlin = jiff::Timestamp::now().in_tz("Europe/Berlin").unwrap();
    let open = !(berlin.hour() == 23 && berlin.minute() == 59);
    let want = if open { 3 } else { 1 };
    assert_eq!(d.decision.recommendation, Some(want), "{:?}", d.decision);
    cancel.cancel();
}

/// The cron trigger's input reads nothing: no query, the record says the engine read it.
#[tokio::test]
async fn a_cron_trigger_has_no_query() {
    let cfg = surge_config::load_str(CRON_POLICY, "surge.yaml", &surge_config::MapEnv::default())
        .unwrap();
    let p = &build_policies(&cfg).unwrap()[0];
    assert!(matches!(p.inputs[1].source, InputSource::Engine));
    assert_eq!(p.inputs[1].query(), None);
    assert!(p.inputs[1].selectors.is_empty());
    // A query written for it could only be ignored: refused.
    let with_query = format!("{CRON_POLICY}    metrics:\n      business-day: vector(3)\n");
    let cfg = surge_config::load_str(&with_query, "surge.yaml", &surge_config::MapEnv::default())
        .unwrap();
    let errors = build_policies(&cfg).unwrap_err().to_string();
    assert!(
        errors.contains("\"business-day\" is a cron trigger"),
        "{errors}"
    );

    let (state, a, cancel) = setup(CRON_POLICY).await;
    let labels: &[(&str, &str)] = &[("__name__", "web_rps"), ("service", "web")];
    state
        .ingest_body(&body(&[(labels, 40.0, now_ms())]), Sender::Other, now_ms())
        .unwrap();
    let d = wait_for(|| a.decisions(Some("default/web"), 1).pop()).await;
    let shown = serde_json::to_value(&d.inputs[1]).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"metric": "business-day", "read_by_engine": true})
    );
    cancel.cancel();
}

const MEMORY_UTILIZATION_POLICY: &str = r#"
policies:
  - name: api
    initial_replicas: 2
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {name: api, namespace: shop}
      spec:
        scaleTargetRef: {name: api}
        minReplicaCount: 1
        maxReplicaCount: 10
        triggers:
          - type: memory
            metricType: Utilization
            metadata: {value: "50"}
"#;

/// A Utilization trigger in dry-run: the requests come from kube-state-metrics' per-pod, per-container
/// series; before they arrive the HPA reports the missing request and does not scale.
#[tokio::test]
async fn utilization_divides_by_kube_state_metrics_requests() {
    let cfg = surge_config::load_str(
        MEMORY_UTILIZATION_POLICY,
        "surge.yaml",
        &surge_config::MapEnv::default(),
    )
    .unwrap();
    let p = &build_policies(&cfg).unwrap()[0];
    assert_eq!(p.requests.len(), 1);
    assert_eq!(
        p.requests[0].query,
        r#"kube_pod_container_resource_requests{namespace="shop",pod=~"api-.*",resource="memory"}"#
    );
    let (state, a, cancel) = setup(MEMORY_UTILIZATION_POLICY).await;
    let mib = 1024.0 * 1024.0;
    let usage = |pod: &'static str, container: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("__name__", "container_memory_working_set_bytes"),
            ("namespace", "shop"),
            ("pod", pod),
            ("container", container),
        ]
    };
    let request =
        |pod: &'static str, container: &'static str| -> Vec<(&'static str, &'static str)> {
            vec![
                ("__name__", "kube_pod_container_resource_requests"),
                ("namespace", "shop"),
                ("pod", pod),
                ("container", container),
                ("resource", "memory"),
                ("unit", "byte"),
            ]
        };
    let (ua, sa, ub) = (
        usage("api-6c5d-aaaaa", "app"),
        usage("api-6c5d-aaaaa", "sidecar"),
        usage("api-6c5d-bbbbb", "app"),
    );
    let t = now_ms();
    state
        .ingest_body(
            &body(&[
                (&ua, 250.0 * mib, t),
                (&sa, 50.0 * mib, t),
                (&ub, 300.0 * mib, t),
            ]),
            Sender::SurgeAgent,
            now_ms(),
        )
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("shop/api"), 1).pop().filter(|d| {
            d.decision
                .metrics
                .first()
                .is_some_and(|m| m.error.is_some())
        })
    })
    .await;
    let e = d.decision.metrics[0].error.clone().unwrap();
    assert!(e.contains("request"), "{e}");
    assert!(!d.decision.scale);

    let (ra, rs, rb) = (
        request("api-6c5d-aaaaa", "app"),
        request("api-6c5d-aaaaa", "sidecar"),
        request("api-6c5d-bbbbb", "app"),
    );
    let t = now_ms();
    state
        .ingest_body(
            &body(&[
                (&ra, 200.0 * mib, t),
                (&rs, 100.0 * mib, t),
                (&rb, 200.0 * mib, t),
                // A fresh usage sample, so the policy evaluates on ingest.
                (&ub, 300.0 * mib, t),
            ]),
            Sender::SurgeAgent,
            now_ms(),
        )
        .unwrap();
    let d = wait_for(|| {
        a.decisions(Some("shop/api"), 1)
            .pop()
            .filter(|d| d.decision.recommendation.is_some())
    })
    .await;
    // 600Mi used of 500Mi requested: 120% against 50%, ratio 2.4 → ceil(2 × 2.4) = 5, limited to 4.
    let m = &d.decision.metrics[0];
    assert_eq!(m.current_utilization, Some(120), "{:?}", d.decision);
    assert_eq!(d.decision.recommendation, Some(5));
    assert_eq!(d.replicas_after, 4);
    cancel.cancel();
}

#[test]
fn a_requests_query_no_target_reads_is_refused() {
    let yaml = format!(
        "{MEMORY_POLICY}    metrics:\n      requests.memory: kube_pod_container_resource_requests\n"
    );
    let cfg =
        surge_config::load_str(&yaml, "surge.yaml", &surge_config::MapEnv::default()).unwrap();
    let errors = build_policies(&cfg).unwrap_err().to_string();
    assert!(
        errors.contains("\"requests.memory\" is not a metric or trigger"),
        "{errors}"
    );
}
