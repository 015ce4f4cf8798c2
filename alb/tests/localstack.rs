//! The CloudWatch ALB source against a real CloudWatch endpoint: LocalStack (`../shared/aws/
//! localstack-up.sh`, the Smithy RPC v2 CBOR protocol the SDK speaks), seeded with `PutMetricData` into
//! `AWS/ApplicationELB` with the ALB's dimensions. The source polls it and the test reads what landed
//! through the aggregator's Prometheus API (`/api/v1/query`): exact series, values and timestamps.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use prometheus_client::registry::Registry;
use serde_json::Value;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions};
use surge_alb::{AlbMetrics, CloudWatchSource};
use surge_config::{AlbConfig, AlbTargetGroupConfig};

const LB: &str = "app/web-lb/50dc6c495c0c9188";
const TG: &str = "targetgroup/web/73e2d6bc24d8a067";
const IDLE_TG: &str = "targetgroup/idle/0123456789abcdef";
const MIN: i64 = 60_000;

mod support;
use support::localstack::LocalStack;

/// A client with static test credentials (the process environment is left alone; the binary's test
/// covers the standard chain).
fn client(endpoint: &str) -> aws_sdk_cloudwatch::Client {
    let conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::for_tests())
        .http_client(surge_alb::cloudwatch::http_client())
        .build();
    aws_sdk_cloudwatch::Client::from_conf(conf)
}

fn datum(metric: &str, tg: Option<&str>, t_ms: i64, value: f64) -> MetricDatum {
    let mut d = MetricDatum::builder()
        .metric_name(metric)
        .dimensions(Dimension::builder().name("LoadBalancer").value(LB).build())
        .timestamp(DateTime::from_millis(t_ms))
        .value(value);
    if let Some(tg) = tg {
        d = d.dimensions(Dimension::builder().name("TargetGroup").value(tg).build());
    }
    d.build()
}

async fn put(client: &aws_sdk_cloudwatch::Client, data: Vec<MetricDatum>) {
    client
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .set_metric_data(Some(data))
        .send()
        .await
        .unwrap();
}

/// `(timestamp ms, value)` of every sample of `selector` in the last 10 minutes, per series.
async fn read(base: &str, selector: &str, now_ms: i64) -> Vec<(Value, Vec<(i64, f64)>)> {
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[
            ("query", format!("{selector}[10m]")),
            ("time", format!("{:.3}", now_ms as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            (s["metric"].clone(), points)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_metrics_from_cloudwatch_land_in_the_store_with_period_end_timestamps() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ls = LocalStack::start();
    let cw = client(&ls.url);
    // Minutes are named by their start, relative to `n`, the start of the current minute.
    let now = surge_aggregator::now_ms();
    let n = now.div_euclid(MIN) * MIN;
    put(
        &cw,
        vec![
            // n-4m: 60 + 40 requests (CloudWatch sums them), 50 per target, 0.1 s and 0.3 s.
            datum("RequestCount", Some(TG), n - 4 * MIN + 10_000, 60.0),
            datum("RequestCount", Some(TG), n - 4 * MIN + 20_000, 40.0),
            datum(
                "RequestCountPerTarget",
                Some(TG),
                n - 4 * MIN + 10_000,
                50.0,
            ),
            datum("TargetResponseTime", Some(TG), n - 4 * MIN + 10_000, 0.1),
            datum("TargetResponseTime", Some(TG), n - 4 * MIN + 20_000, 0.3),
            datum("ActiveConnectionCount", None, n - 4 * MIN + 10_000, 7.0),
            // n-3m: no requests, so no points at all.
            // n-2m: 30 requests, 3 of them 5xx, 0.5 s.
            datum("RequestCount", Some(TG), n - 2 * MIN + 5_000, 30.0),
            datum(
                "HTTPCode_Target_5XX_Count",
                Some(TG),
                n - 2 * MIN + 5_000,
                3.0,
            ),
            datum("TargetResponseTime", Some(TG), n - 2 * MIN + 5_000, 0.5),
            // n-1m: not published yet.
        ],
    )
    .await;

    let mut registry = Registry::default();
    let state = Arc::new(AggregatorState::new(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
        &mut registry,
    ));
    let metrics = AlbMetrics::new(&mut registry);
    let cfg = AlbConfig {
        target_groups: vec![
            AlbTargetGroupConfig {
                load_balancer: LB.into(),
                target_group: TG.into(),
            },
            AlbTargetGroupConfig {
                load_balancer: LB.into(),
                target_group: IDLE_TG.into(),
            },
        ],
        ..AlbConfig::default()
    };
    let mut source = CloudWatchSource::new(cw.clone(), &cfg, state.clone(), metrics.clone());
    let written = source.poll(now).await.unwrap();

    state.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(surge_aggregator::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    let one = |series: Vec<(Value, Vec<(i64, f64)>)>| {
        assert_eq!(series.len(), 1, "{series:?}");
        series.into_iter().next().unwrap()
    };
    // Stamped at the period end: the minute that started at n-4m is written at n-3m. The minute that
    // started at n-3m had no point and a later one has: 0. The minute that started at n-1m is not
    // published and ended under `zero_fill_after` (3m) ago: not written yet.
    let (labels, points) = one(read(
        &base,
        &format!("aws_applicationelb_request_count_sum{{target_group=\"{TG}\"}}"),
        now,
    )
    .await);
    assert_eq!(
        labels,
        serde_json::json!({"__name__": "aws_applicationelb_request_count_sum", "load_balancer": LB,
            "target_group": TG, "source": "cloudwatch"})
    );
    assert_eq!(
        points,
        [(n - 3 * MIN, 100.0), (n - 2 * MIN, 0.0), (n - MIN, 30.0)]
    );
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_request_rate{{target_group=\"{TG}\",source=\"cloudwatch\"}}"),
        now,
    )
    .await);
    assert_eq!(
        points,
        [
            (n - 3 * MIN, 100.0 / 60.0),
            (n - 2 * MIN, 0.0),
            (n - MIN, 0.5)
        ]
    );
    // No later point and not yet 3m old: the minute that started at n-3m may still be published.
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_request_count_per_target_sum{{target_group=\"{TG}\"}}"),
        now,
    )
    .await);
    assert_eq!(points, [(n - 3 * MIN, 50.0)]);
    // A response time has no value for a minute without requests.
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_target_response_time_average{{target_group=\"{TG}\"}}"),
        now,
    )
    .await);
    assert_eq!(points, [(n - 3 * MIN, 0.2), (n - MIN, 0.5)]);
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_httpcode_target_5xx_count_sum{{target_group=\"{TG}\"}}"),
        now,
    )
    .await);
    assert_eq!(
        points,
        [(n - 3 * MIN, 0.0), (n - 2 * MIN, 0.0), (n - MIN, 3.0)]
    );
    // Per load balancer only, as CloudWatch publishes it.
    let (labels, points) =
        one(read(&base, "aws_applicationelb_active_connection_count_sum", now).await);
    assert_eq!(
        labels,
        serde_json::json!({"__name__": "aws_applicationelb_active_connection_count_sum",
            "load_balancer": LB, "source": "cloudwatch"})
    );
    assert_eq!(points, [(n - 3 * MIN, 7.0)]);
    // The idle target group: only the minute that ended ≥ 3m ago is known to be idle.
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_request_count_sum{{target_group=\"{IDLE_TG}\"}}"),
        now,
    )
    .await);
    assert_eq!(points, [(n - 3 * MIN, 0.0)]);
    assert_eq!(
        written,
        3 + 3 + 1 + 2 + 3 + 1 + /* idle: 3 counts + rate */ 4
    );

    // A late re-publication of a written minute is counted, not rewritten; the next minute arrives.
    put(
        &cw,
        vec![
            datum("RequestCount", Some(TG), n - 2 * MIN + 30_000, 5.0),
            datum("RequestCount", Some(TG), n - MIN + 1_000, 12.0),
        ],
    )
    .await;
    let later = n + MIN + 1_000;
    let written = source.poll(later).await.unwrap();
    let (_, points) = one(read(
        &base,
        &format!("aws_applicationelb_request_count_sum{{target_group=\"{TG}\"}}"),
        later,
    )
    .await);
    assert_eq!(
        points,
        [
            (n - 3 * MIN, 100.0),
            (n - 2 * MIN, 0.0),
            (n - MIN, 30.0),
            (n, 12.0)
        ]
    );
    assert!(written >= 2, "the new minute and its rate: {written}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("surge_alb_cloudwatch_points_total{kind=\"revised\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("surge_alb_cloudwatch_requests_total{outcome=\"ok\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_one_counted_error_per_poll() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A port nothing listens on: the call fails without a retry storm and the source says why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut registry = Registry::default();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let metrics = AlbMetrics::new(&mut registry);
    let cfg = AlbConfig {
        target_groups: vec![AlbTargetGroupConfig {
            load_balancer: LB.into(),
            target_group: TG.into(),
        }],
        ..AlbConfig::default()
    };
    let mut source = CloudWatchSource::new(
        client(&format!("http://127.0.0.1:{port}")),
        &cfg,
        state.clone(),
        metrics,
    );
    let err = source.poll(surge_aggregator::now_ms()).await.unwrap_err();
    assert!(
        matches!(err, surge_alb::cloudwatch::PollError::GetMetricData(_)),
        "{err:?}"
    );
    assert_eq!(state.cache().len(), 0);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("surge_alb_cloudwatch_requests_total{outcome=\"dispatch_failure\"} 1"),
        "{text}"
    );
}

/// A target group of its own: tests run in parallel and LocalStack instances may share what they hold.
const REPLICATED_TG: &str = "targetgroup/replicated/0a1b2c3d4e5f6a7b";

/// ALB series on every replica: CloudWatch's are read on the Lease leader only, so the leader writes
/// what it polled to every peer replica (`aggregator.peers.replicate_alb`); an HPA reading the metrics
/// APIs through a replica that does not lead sees the same series, values and timestamps. The leader
/// lists itself among the peers (as a Service's endpoints do) and must skip itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_alb_series_reach_a_replica_that_does_not_lead() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ls = LocalStack::start();
    let cw = client(&ls.url);
    let now = surge_aggregator::now_ms();
    let n = now.div_euclid(MIN) * MIN;
    put(
        &cw,
        vec![
            datum(
                "RequestCount",
                Some(REPLICATED_TG),
                n - 3 * MIN + 10_000,
                90.0,
            ),
            datum(
                "RequestCount",
                Some(REPLICATED_TG),
                n - 2 * MIN + 5_000,
                30.0,
            ),
        ],
    )
    .await;

    // Both replicas serve on real sockets; only the leader polls CloudWatch.
    let serve = |state: Arc<AggregatorState>, listener: tokio::net::TcpListener| {
        tokio::spawn(surge_aggregator::serve(
            listener,
            state,
            std::future::pending(),
        ))
    };
    let replica = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let replica_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica_addr = replica_listener.local_addr().unwrap().to_string();
    serve(replica.clone(), replica_listener);
    let mut registry = Registry::default();
    let leader = Arc::new(AggregatorState::new(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
        &mut registry,
    ));
    let leader_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader_addr = leader_listener.local_addr().unwrap();
    serve(leader.clone(), leader_listener);

    let (_peers_tx, peers) =
        tokio::sync::watch::channel(vec![leader_addr.to_string(), replica_addr.clone()]);
    let writer = surge_aggregator::peers::PeerWriter::start(
        surge_sender::SenderOptions::new("peers", "http://peer/api/v1/write"),
        peers,
        leader_addr.port(),
        reqwest::Client::new(),
        &surge_sender::SenderMetrics::new(&mut registry),
    );
    for _ in 0..100 {
        if !writer.addresses().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        writer.addresses(),
        vec![replica_addr.clone()],
        "itself skipped"
    );

    let cfg = AlbConfig {
        target_groups: vec![AlbTargetGroupConfig {
            load_balancer: LB.into(),
            target_group: REPLICATED_TG.into(),
        }],
        ..AlbConfig::default()
    };
    let mut source = CloudWatchSource::new(
        cw.clone(),
        &cfg,
        leader.clone(),
        AlbMetrics::new(&mut registry),
    )
    .with_replication(writer.clone());
    let written = source.poll(now).await.unwrap();
    assert!(written > 0);

    let leader_base = format!("http://{leader_addr}");
    let replica_base = format!("http://{replica_addr}");
    for selector in [
        format!("aws_applicationelb_request_count_sum{{target_group=\"{REPLICATED_TG}\"}}"),
        format!(
            "aws_applicationelb_request_rate{{target_group=\"{REPLICATED_TG}\",source=\"cloudwatch\"}}"
        ),
    ] {
        let on_leader = read(&leader_base, &selector, now).await;
        assert_eq!(on_leader.len(), 1, "{on_leader:?}");
        let mut on_replica = Vec::new();
        for _ in 0..200 {
            on_replica = read(&replica_base, &selector, now).await;
            if on_replica == on_leader {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(on_replica, on_leader, "{selector}");
    }
    // The minute that started at n-3m, stamped at its end: the replica has it as the leader does.
    let (_, points) = read(
        &replica_base,
        &format!("aws_applicationelb_request_count_sum{{target_group=\"{REPLICATED_TG}\"}}"),
        now,
    )
    .await
    .remove(0);
    assert!(points.contains(&(n - 2 * MIN, 90.0)), "{points:?}");
    assert!(points.contains(&(n - MIN, 30.0)), "{points:?}");
}
