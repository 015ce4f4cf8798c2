//! The real `surge agent` process scraping a real target and shipping over OTLP, to the Python OTLP
//! receiver (`otlp/tests/receiver/otlp_receiver.py`: the official `opentelemetry-proto` package behind
//! `grpcio` and an HTTP server), over HTTP/protobuf and gRPC at once, beside remote-write.
//!
//! The target serves a counter, a gauge and a classic histogram; the scrape config gives it the
//! Kubernetes labels pod discovery would. Every point the receiver decodes is checked: kind,
//! temporality, values, the scrape's timestamps (every point of a scrape at the same time), start
//! times, attributes, resource attributes, flags; and both transports carry the same points.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../otlp/tests/receiver/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use harness::{Receiver, ReceiverOptions};
use serde_json::{Value, json};

const EXPOSITION: &str = "\
# TYPE app_requests_total counter
app_requests_total{code=\"200\"} 42
# TYPE app_temperature_celsius gauge
app_temperature_celsius 21.5
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le=\"0.1\"} 3
app_latency_seconds_bucket{le=\"1\"} 5
app_latency_seconds_bucket{le=\"+Inf\"} 6
app_latency_seconds_sum 2.5
app_latency_seconds_count 6
";

fn surge() -> PathBuf {
    std::env::var_os("SURGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| surge_tests::kubelet::surge_binary().expect("the surge binary"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_ships_every_scraped_point_over_otlp_http_and_grpc() {
    let receiver = Receiver::start(ReceiverOptions::default());
    // The target, and a remote-write receiver that accepts everything (OTLP runs beside remote-write).
    let app = Router::new()
        .route("/metrics", get(|| async { EXPOSITION }))
        .route("/push", post(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("surge.yaml");
    std::fs::write(
        &config,
        format!(
            r#"agent:
  listen: 127.0.0.1:0
  scrape_configs:
    - job_name: app
      tier: critical
      interval: 1s
      static_configs:
        - targets: ["{addr}"]
          labels: {{namespace: shop, pod: app-1, node: node-a, container: app}}
  remote_write:
    - url: http://{addr}/push
  otlp:
    - name: otlp-http
      endpoint: http://127.0.0.1:{http}
      compression: gzip
    - name: otlp-grpc
      endpoint: http://127.0.0.1:{grpc}
      protocol: grpc
"#,
            http = receiver.http_port,
            grpc = receiver.grpc_port,
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(surge())
        .args(["agent", "-c"])
        .arg(&config)
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("starting surge agent");
    // Wait for three scrapes on each transport (the counter is in every scrape, once).
    let scrapes = |points: &[Value], transport: &str| {
        points
            .iter()
            .filter(|p| p["transport"] == transport && p["metric"] == "app_requests_total")
            .count()
    };
    let points = tokio::task::spawn_blocking(move || {
        let points = receiver.wait_for(Duration::from_secs(60), |p| {
            scrapes(p, "http") >= 3 && scrapes(p, "grpc") >= 3
        });
        (receiver, points)
    })
    .await
    .unwrap()
    .1;
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the agent exits within 20 s of SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    assert!(status.success(), "agent exited with {status}; log:\n{log}");

    let instance = addr.to_string();
    let resource = json!({
        "service.name": "app",
        "service.instance.id": instance,
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "app-1",
        "k8s.node.name": "node-a",
        "k8s.container.name": "app",
    });
    let mut by_transport: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for transport in ["http", "grpc"] {
        let mine: Vec<&Value> = points
            .iter()
            .filter(|p| p["transport"] == transport)
            .collect();
        // Every point: this resource, the surge scope, no flag (a running agent sends no staleness
        // marker for a live target).
        for p in &mine {
            assert_eq!(p["resource"], resource, "{p}");
            assert_eq!(p["scope"], "surge", "{p}");
            assert_eq!(p["flags"], 0, "{p}");
        }
        // Scrape times: every point of a scrape carries the scrape's time (each time below has the
        // whole scrape); the agent's scrapes are about 1 s apart, on the slot's grid when on time
        // (not asserted: a loaded machine starts them late).
        let times: BTreeSet<u64> = mine.iter().map(|p| p["time"].as_u64().unwrap()).collect();
        let times: Vec<u64> = times.into_iter().collect();
        assert!(times.len() >= 3, "{transport}: {times:?}");
        let first = times[0];
        for &t in &times {
            let at: Vec<&&Value> = mine.iter().filter(|p| p["time"] == t).collect();
            let metric = |name: &str| {
                let found: Vec<&&&Value> = at.iter().filter(|p| p["metric"] == name).collect();
                assert_eq!(found.len(), 1, "{transport} at {t}: one {name}: {at:#?}");
                (**found[0]).clone()
            };
            // The scrape's own series: the three families and the synthetic series, nothing else.
            let names: BTreeSet<&str> = at.iter().map(|p| p["metric"].as_str().unwrap()).collect();
            assert_eq!(
                names,
                BTreeSet::from([
                    "app_latency_seconds",
                    "app_requests_total",
                    "app_temperature_celsius",
                    "scrape_duration_seconds",
                    "scrape_samples_post_metric_relabeling",
                    "scrape_samples_scraped",
                    "scrape_series_added",
                    "up",
                ]),
                "{transport} at {t}"
            );
            let counter = metric("app_requests_total");
            assert_eq!(
                counter,
                json!({"resource": resource, "scope": "surge", "metric": "app_requests_total",
                       "type": "sum", "temporality": 2, "monotonic": true,
                       "attributes": {"code": "200"}, "start": first, "time": t, "flags": 0,
                       "value": 42.0, "transport": transport})
            );
            assert_eq!(
                metric("app_temperature_celsius"),
                json!({"resource": resource, "scope": "surge", "metric": "app_temperature_celsius",
                       "type": "gauge", "attributes": {}, "start": 0, "time": t, "flags": 0,
                       "value": 21.5, "transport": transport})
            );
            assert_eq!(
                metric("app_latency_seconds"),
                json!({"resource": resource, "scope": "surge", "metric": "app_latency_seconds",
                       "type": "histogram", "temporality": 2, "attributes": {}, "start": first,
                       "time": t, "flags": 0, "count": 6, "sum": 2.5, "bounds": [0.1, 1.0],
                       "buckets": [3, 2, 1], "transport": transport})
            );
            assert_eq!(metric("up")["value"], 1.0);
            assert_eq!(metric("up")["type"], "gauge");
            assert_eq!(metric("scrape_samples_scraped")["value"], 7.0);
            let duration = metric("scrape_duration_seconds")["value"].as_f64().unwrap();
            assert!(duration > 0.0 && duration < 1.0, "{duration}");
        }
        // The same points on both transports (compared where both have the scrape).
        by_transport.insert(
            transport.to_owned(),
            mine.iter()
                .filter(|p| p["metric"] != "scrape_duration_seconds")
                .map(|p| {
                    let mut p = (*p).clone();
                    p.as_object_mut().unwrap().remove("transport");
                    p.to_string()
                })
                .collect(),
        );
    }
    let (h, g) = (&by_transport["http"], &by_transport["grpc"]);
    let common = h.intersection(g).count();
    assert!(
        common >= 3 * 7,
        "http and grpc carry the same points: {common} in common"
    );
}
