//! ALB request metrics end to end, with real processes: the `surge agent` scrapes two real HTTP targets
//! every second (critical tier: shipped at once, not batched) whose request counters the test drives at known rates (30/s and 20/s, by sending them
//! real requests) and writes to a `surge aggregator`, which computes the target-side request rate
//! (`aggregator.alb.target_side`) and also runs the CloudWatch source against LocalStack (credentials
//! from the environment, the standard chain; no leader election: one replica, it just runs). The test
//! reads both through the aggregator's Prometheus API, as a policy's PromQL would.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;
use surge_tests::{client, free_port, unix_now, wait_ready};

const LB: &str = "app/web-lb/50dc6c495c0c9188";
const TG: &str = "targetgroup/web/73e2d6bc24d8a067";
const MIN: i64 = 60_000;
/// The rates the test drives, requests per second.
const RATES: [u64; 2] = [30, 20];
/// Largest relative error accepted for the 1 s rate: a `rate(…[5s])` over 1 s scrapes of counters
/// driven by a timer on a loaded machine.
const TOLERANCE: f64 = 0.05;

#[path = "../../alb/tests/support/localstack.rs"]
mod localstack;
use localstack::LocalStack;

/// The `surge` binary (`SURGE_BINARY` when set).
fn surge() -> PathBuf {
    std::env::var_os("SURGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| surge_tests::kubelet::surge_binary().expect("the surge binary"))
}

/// A target: counts the requests it serves on `/` and exposes the count on `/metrics`.
async fn target() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/",
            get(|State(c): State<Arc<AtomicU64>>| async move {
                c.fetch_add(1, Ordering::Relaxed);
                "ok"
            }),
        )
        .route(
            "/metrics",
            get(|State(c): State<Arc<AtomicU64>>| async move {
                format!(
                    "# TYPE http_requests_total counter\nhttp_requests_total{{service=\"web\"}} {}\n",
                    c.load(Ordering::Relaxed)
                )
            }),
        )
        .with_state(count.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, count)
}

/// Sends `per_second` real requests a second to `addr`, forever (a missed tick is caught up, so the
/// average holds).
fn drive(addr: String, per_second: u64) {
    tokio::spawn(async move {
        let http = client();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tick.tick().await;
            let _ = http.get(format!("http://{addr}/")).send().await;
        }
    });
}

async fn query(base: &str, promql: &str) -> Vec<Value> {
    surge_tests::query(base, promql, unix_now()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_reads_the_alb_request_rate_from_cloudwatch_and_from_the_targets_at_1s() {
    let ls = LocalStack::start();
    // CloudWatch: 90 requests in the minute that started two minutes ago.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&ls.url)
            .credentials_provider(Credentials::for_tests())
            .http_client(surge_alb::cloudwatch::http_client())
            .build(),
    );
    let n = (unix_now() * 1000.0) as i64 / MIN * MIN;
    cw.put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(
            MetricDatum::builder()
                .metric_name("RequestCount")
                .dimensions(Dimension::builder().name("LoadBalancer").value(LB).build())
                .dimensions(Dimension::builder().name("TargetGroup").value(TG).build())
                .timestamp(DateTime::from_millis(n - 2 * MIN + 1_000))
                .value(90.0)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let (a, _) = target().await;
    let (b, _) = target().await;
    drive(a.clone(), RATES[0]);
    drive(b.clone(), RATES[1]);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("surge.yaml");
    std::fs::write(
        &config,
        format!(
            r#"agent:
  listen: 127.0.0.1:0
  scrape_configs:
    - job_name: web
      interval: 1s
      tier: critical
      static_configs: [{{targets: ["{a}", "{b}"]}}]
  remote_write:
    - url: http://127.0.0.1:{port}/api/v1/write
aggregator:
  listen: 127.0.0.1:{port}
  alb:
    region: us-east-1
    endpoint_url: {endpoint}
    target_groups:
      - load_balancer: {LB}
        target_group: {TG}
    target_side:
      - target_group: {TG}
        load_balancer: {LB}
        query: sum(rate(http_requests_total{{service="web"}}[5s]))
"#,
            endpoint = ls.url
        ),
    )
    .unwrap();
    let spawn = |what: &str| {
        tokio::process::Command::new(surge())
            .args([what, "-c"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(dir.path().join(format!("{what}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.path().join(format!("{what}.log"))).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let _aggregator = spawn("aggregator");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .unwrap();
    let _agent = spawn("agent");

    // The 60 s source: the first poll runs at start; the minute is stamped at its end, in requests per
    // second and as CloudWatch's sum.
    let cloudwatch =
        format!("aws_applicationelb_request_rate{{target_group=\"{TG}\",source=\"cloudwatch\"}}");
    let mut found = Vec::new();
    for _ in 0..100 {
        found = query(&base, &cloudwatch).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sum = query(
        &base,
        &format!("aws_applicationelb_request_count_sum{{target_group=\"{TG}\"}}[10m]"),
    )
    .await;
    // Earlier minutes without a point are 0 (a later minute has one); the minute is at its end.
    let last = sum
        .first()
        .and_then(|s| s["values"].as_array()?.last().cloned());
    assert_eq!(
        last,
        Some(serde_json::json!([(n - MIN) / 1000, "90"])),
        "{sum:?}\n{}",
        std::fs::read_to_string(dir.path().join("aggregator.log")).unwrap_or_default()
    );
    assert_eq!(surge_tests::single_value(&found), Some(1.5), "{found:?}");

    // The 1 s alternative: after the first scrapes plus the 5 s window, every written sample reads
    // the driven rate within the tolerance, one a second or more often.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let want = RATES.iter().sum::<u64>() as f64;
    let targets =
        format!("aws_applicationelb_request_rate{{target_group=\"{TG}\",source=\"targets\"}}");
    let series = query(&base, &format!("{targets}[4s]")).await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0]["metric"],
        serde_json::json!({"__name__": "aws_applicationelb_request_rate", "load_balancer": LB,
            "target_group": TG, "source": "targets"})
    );
    let points: Vec<(f64, f64)> = series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap(),
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert!(points.len() >= 3, "at least one a second: {points:?}");
    for (t, v) in &points {
        assert!(
            (v - want).abs() <= want * TOLERANCE,
            "at {t}: {v} req/s, want {want} ± {}%: {points:?}",
            TOLERANCE * 100.0
        );
    }
}
