//! In-process tests: the router called with `oneshot` for every path and shape, and the HTTPS server on a
//! loopback socket for TLS, client certificates, certificate reload and forwarding.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value as Json, json};
use surge_model::{Labels, Sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::*;
use surge_promql::QueryOptions;
use surge_store::{CacheOptions, SeriesCache};

/// A ready store, as the aggregator's is once it serves.
fn store(opts: CacheOptions) -> Arc<SeriesCache> {
    let cache = Arc::new(SeriesCache::new(opts));
    cache.set_ready(true);
    cache
}

fn state() -> Arc<SeriesCache> {
    store(CacheOptions::default())
}

/// Appends `value_at(k)` at `now - k s` for k in `ages_s`.
fn write(st: &SeriesCache, pairs: &[(&str, &str)], now: i64, points: &[(i64, f64)]) {
    let labels = Labels::from_pairs(pairs.iter().copied());
    for (age_s, v) in points.iter().rev() {
        st.append(
            &labels,
            Sample {
                timestamp_ms: now - age_s * 1000,
                value: *v,
            },
            now,
        )
        .unwrap();
    }
}

fn gauge(st: &SeriesCache, pairs: &[(&str, &str)], now: i64, v: f64) {
    write(st, pairs, now, &[(1, v), (0, v)]);
}

fn rules() -> MetricsApiOptions {
    MetricsApiOptions {
        insecure_dev_no_auth: true,
        external_metrics: vec![
            ExternalMetricRule {
                name: "queue_total".into(),
                query: "sum(queue_depth)".into(),
            },
            ExternalMetricRule {
                name: "queue_by_pod".into(),
                query: "sum by (pod) (queue_depth)".into(),
            },
            ExternalMetricRule {
                name: "idle_metric".into(),
                query: "sum(never_written)".into(),
            },
            ExternalMetricRule {
                name: "stale_metric".into(),
                query: "sum(old_gauge)".into(),
            },
        ],
        custom_metrics: vec![
            CustomMetricRule {
                name: "queue_depth".into(),
                resource: "pods".into(),
                query: "sum by (namespace, pod) (queue_depth)".into(),
                object_label: None,
                window: None,
                ignore_label_selector: false,
            },
            CustomMetricRule {
                name: "queue_depth".into(),
                resource: "deployments.apps".into(),
                query: "sum by (namespace, deployment) (label_free_queue)".into(),
                object_label: None,
                window: Some(Duration::from_secs(30)),
                ignore_label_selector: false,
            },
            CustomMetricRule {
                name: "queue_depth".into(),
                resource: "namespaces".into(),
                query: "sum by (namespace) (queue_depth)".into(),
                object_label: None,
                window: None,
                ignore_label_selector: false,
            },
            CustomMetricRule {
                name: "node_load".into(),
                resource: "nodes".into(),
                query: "max by (node) (rate(node_busy_seconds_total[30s]))".into(),
                object_label: None,
                window: None,
                ignore_label_selector: false,
            },
        ],
        ..MetricsApiOptions::default()
    }
}

/// The demo data: queue_depth 1.5 / 4 / 7 on web-0..2 in `demo`, 100 on `other/x-0`; a deployment-level
/// gauge; a node counter; a stale gauge.
fn fixture() -> (Arc<SeriesCache>, Router) {
    let st = state();
    let now = crate::now_ms();
    for (pod, v, app) in [
        ("web-0", 1.5, "web"),
        ("web-1", 4.0, "web"),
        ("web-2", 7.0, "canary"),
    ] {
        gauge(
            &st,
            &[
                ("__name__", "queue_depth"),
                ("namespace", "demo"),
                ("pod", pod),
                ("app", app),
            ],
            now,
            v,
        );
    }
    gauge(
        &st,
        &[
            ("__name__", "queue_depth"),
            ("namespace", "other"),
            ("pod", "x-0"),
            ("app", "x"),
        ],
        now,
        100.0,
    );
    gauge(
        &st,
        &[
            ("__name__", "label_free_queue"),
            ("namespace", "demo"),
            ("deployment", "web"),
        ],
        now,
        2500.0,
    );
    // 2 busy-seconds per second on n1, sampled every second for 31 s.
    let pts: Vec<(i64, f64)> = (0..=30).map(|k| (k, (30 - k) as f64 * 2.0)).collect();
    write(
        &st,
        &[("__name__", "node_busy_seconds_total"), ("node", "n1")],
        now,
        &pts,
    );
    write(
        &st,
        &[("__name__", "old_gauge"), ("x", "1")],
        now,
        &[(60, 5.0), (30, 5.0)],
    );
    let api = MetricsApi::new(
        st.clone(),
        &QueryOptions::default(),
        &rules(),
        &mut Registry::default(),
    )
    .unwrap();
    (st, router(Arc::new(api)))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Json) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    (status, v)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Json) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// Replaces every `timestamp` by "T" (it is the time of the request).
fn norm(mut v: Json) -> Json {
    if let Some(items) = v.get_mut("items").and_then(Json::as_array_mut) {
        for it in items {
            assert!(it["timestamp"].as_str().unwrap().ends_with('Z'));
            it["timestamp"] = json!("T");
        }
    }
    v
}

fn status(code: u16, reason: &str, message: &str) -> Json {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

#[tokio::test]
async fn discovery() {
    let (_, app) = fixture();
    let (s, v) = get(&app, "/apis").await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "custom.metrics.k8s.io",
             "versions": [{"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"},
                          {"groupVersion": "custom.metrics.k8s.io/v1beta1", "version": "v1beta1"}],
             "preferredVersion": {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"}},
            {"name": "external.metrics.k8s.io",
             "versions": [{"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}],
             "preferredVersion": {"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}}]})
    );
    let (s, v) = get(&app, "/apis/external.metrics.k8s.io").await;
    assert_eq!(s, 200);
    assert_eq!(v["kind"], "APIGroup");
    assert_eq!(v["preferredVersion"]["version"], "v1beta1");
    let (s, v) = get(&app, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(s, 200);
    let ext = |n: &str| {
        json!({"name": n, "singularName": "", "namespaced": true,
               "kind": "ExternalMetricValueList", "verbs": ["get"]})
    };
    assert_eq!(
        v,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": "external.metrics.k8s.io/v1beta1",
               "resources": [ext("queue_total"), ext("queue_by_pod"), ext("idle_metric"), ext("stale_metric")]})
    );
    for version in ["v1beta1", "v1beta2"] {
        let (s, v) = get(&app, &format!("/apis/custom.metrics.k8s.io/{version}")).await;
        assert_eq!(s, 200);
        let cus = |n: &str, namespaced: bool| {
            json!({"name": n, "singularName": "", "namespaced": namespaced,
                   "kind": "MetricValueList", "verbs": ["get"]})
        };
        assert_eq!(
            v,
            json!({"kind": "APIResourceList", "apiVersion": "v1",
                   "groupVersion": format!("custom.metrics.k8s.io/{version}"),
                   "resources": [cus("pods/queue_depth", true), cus("deployments.apps/queue_depth", true),
                                 cus("namespaces/queue_depth", false), cus("nodes/node_load", false)]})
        );
    }
    let (s, _) = get(&app, "/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn aggregated_discovery_is_406_and_openapi_is_valid() {
    let (_, app) = fixture();
    for accept in [
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
    ] {
        let req = Request::get("/apis")
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        let (s, v) = send(&app, req).await;
        assert_eq!(s, 406, "{accept}");
        assert_eq!(v["reason"], "NotAcceptable");
    }
    let req = Request::get("/apis")
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, 200);
    let (s, v) = get(&app, "/openapi/v2").await;
    assert_eq!(s, 200);
    assert_eq!(v["swagger"], "2.0");
    assert!(v["info"]["title"].is_string() && v["paths"].is_object());
    let (s, v) = get(&app, "/openapi/v3").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"paths": {}})));
}

#[tokio::test]
async fn external_values() {
    let (_, app) = fixture();
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v),
        json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
               "metadata": {}, "items": [{"metricName": "queue_total", "metricLabels": null,
               "timestamp": "T", "value": "112500m"}]})
    );
    // The label selector narrows every selector of the query.
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=namespace%3Ddemo,app%20in%20(web)",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["items"][0]["value"], "5500m");
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_by_pod?labelSelector=app!%3Dx",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v)["items"],
        json!([
            {"metricName": "queue_by_pod", "metricLabels": {"pod": "web-0"}, "timestamp": "T", "value": "1500m"},
            {"metricName": "queue_by_pod", "metricLabels": {"pod": "web-1"}, "timestamp": "T", "value": "4"},
            {"metricName": "queue_by_pod", "metricLabels": {"pod": "web-2"}, "timestamp": "T", "value": "7"},
        ])
    );
    // Known but idle: one item of value 0.
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/idle_metric",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v)["items"],
        json!([{"metricName": "idle_metric", "metricLabels": null, "timestamp": "T", "value": "0"}])
    );
    // A selector that matches nothing is idle too.
    let (_, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=app%3Dnone",
    )
    .await;
    assert_eq!(v["items"][0]["value"], "0");
}

#[tokio::test]
async fn errors_are_statuses() {
    let (_, app) = fixture();
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/stale_metric",
    )
    .await;
    assert_eq!(s, 503);
    assert_eq!(v["reason"], "ServiceUnavailable");
    assert!(v["message"].as_str().unwrap().contains("stale"), "{v}");
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/nope",
    )
    .await;
    assert_eq!(s, 404);
    let mut want = status(
        404,
        "NotFound",
        "the server could not find the metric nope for namespace demo (external.metrics.k8s.io)",
    );
    want["details"] = json!({"name": "nope"});
    assert_eq!(v, want);
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=app%20in%20web",
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["reason"], "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid labelSelector \"app in web\""),
        "{v}"
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/queue_depth?metricLabelSelector=a%3E1",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::BAD_REQUEST, json!("BadRequest"))
    );
    let req = Request::post("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total")
        .body(Body::empty())
        .unwrap();
    let (s, v) = send(&app, req).await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!("MethodNotAllowed"))
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/nope",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::NOT_FOUND, json!("NotFound"))
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/web-9/queue_depth",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::NOT_FOUND, json!("NotFound"))
    );
    let (s, _) = get(&app, "/nothing/here").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn custom_pods_both_versions() {
    let (_, app) = fixture();
    let pod =
        |name: &str| json!({"kind": "Pod", "namespace": "demo", "name": name, "apiVersion": "/v1"});
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/queue_depth?labelSelector=app%3Dweb",
    )
    .await;
    assert_eq!(s, 200);
    let v2 = |name: &str, value: &str| {
        json!({"describedObject": pod(name), "metric": {"name": "queue_depth", "selector": null},
               "timestamp": "T", "windowSeconds": 60, "value": value})
    };
    assert_eq!(
        norm(v),
        json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {},
               "items": [v2("web-0", "1500m"), v2("web-1", "4")]})
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/demo/pods/*/queue_depth?metricLabelSelector=app%3Dcanary",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v),
        json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta1", "metadata": {},
               "items": [{"describedObject": pod("web-2"), "metricName": "queue_depth", "timestamp": "T",
                          "window": 60, "value": "7", "selector": {"matchLabels": {"app": "canary"}}}]})
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/web-1/queue_depth",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(norm(v)["items"], json!([v2("web-1", "4")]));
    // Another namespace's pods are never answered.
    let (_, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/other/pods/*/queue_depth",
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["describedObject"]["name"], "x-0");
}

#[tokio::test]
async fn custom_objects_namespaces_and_root_scoped() {
    let (_, app) = fixture();
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/deployments.apps/web/queue_depth",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v)["items"],
        json!([{"describedObject": {"kind": "Deployment", "namespace": "demo", "name": "web", "apiVersion": "apps/v1"},
                "metric": {"name": "queue_depth", "selector": null}, "timestamp": "T",
                "windowSeconds": 30, "value": "2500"}])
    );
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/demo/metrics/queue_depth",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        norm(v)["items"],
        json!([{"describedObject": {"kind": "Namespace", "name": "demo", "apiVersion": "/v1"},
                "metricName": "queue_depth", "timestamp": "T", "window": 60, "value": "12500m", "selector": null}])
    );
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/node_load",
        "/apis/custom.metrics.k8s.io/v1beta2/nodes/*/node_load",
    ] {
        let (s, v) = get(&app, path).await;
        assert_eq!(s, 200, "{path}: {v}");
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0]["describedObject"],
            json!({"kind": "Node", "name": "n1", "apiVersion": "/v1"})
        );
        assert_eq!(items[0]["windowSeconds"], 30);
        let milli = items[0]["value"].as_str().unwrap();
        assert!(milli == "2" || milli == "1999m", "{milli}");
    }
}

#[tokio::test]
async fn a_stale_pod_is_missing_not_old() {
    let st = state();
    let now = crate::now_ms();
    gauge(
        &st,
        &[
            ("__name__", "queue_depth"),
            ("namespace", "demo"),
            ("pod", "web-0"),
        ],
        now,
        3.0,
    );
    write(
        &st,
        &[
            ("__name__", "queue_depth"),
            ("namespace", "demo"),
            ("pod", "web-1"),
        ],
        now,
        &[(40, 9.0), (20, 9.0)],
    );
    // A rate over a counter that stopped 20 s ago (inside the 30 s window) is stale too.
    let pts: Vec<(i64, f64)> = (20..=40).map(|k| (k, (40 - k) as f64)).collect();
    write(
        &st,
        &[
            ("__name__", "stopped_total"),
            ("namespace", "demo"),
            ("pod", "web-1"),
        ],
        now,
        &pts,
    );
    let mut opts = rules();
    opts.custom_metrics.push(CustomMetricRule {
        name: "stopped".into(),
        resource: "pods".into(),
        query: "sum by (namespace, pod) (rate(stopped_total[30s]))".into(),
        object_label: None,
        window: None,
        ignore_label_selector: false,
    });
    let app = router(Arc::new(
        MetricsApi::new(
            st,
            &QueryOptions::default(),
            &opts,
            &mut Registry::default(),
        )
        .unwrap(),
    ));
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/queue_depth",
    )
    .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["describedObject"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-0"]);
    let (s, v) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/web-1/queue_depth",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("ServiceUnavailable"))
    );
    let (s, _) = get(
        &app,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/stopped",
    )
    .await;
    assert_eq!(s, 503);
}

/// A CA and leaf certificates for TLS tests.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn test_ca(cn: &str) -> TestCa {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
    }
}

impl TestCa {
    /// (cert PEM, key PEM) for `cn` with `sans`; `expired` puts not_after in the past.
    fn leaf(&self, cn: &str, sans: &[&str], expired: bool) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[test]
fn checks_name_the_file_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca("cluster-ca");
    let (c1, k1) = ca.leaf("server-1", &["localhost"], false);
    let (_, k2) = ca.leaf("server-2", &["localhost"], false);
    for (name, text) in [
        ("tls.crt", c1.as_str()),
        ("tls.key", k1.as_str()),
        ("other.key", k2.as_str()),
        ("ca.crt", ca.pem.as_str()),
        ("garbage", "not PEM at all\n"),
    ] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let check = |cert: &str, key: &str| -> Vec<(tls::PairFile, String)> {
        tls::check_pair(&d.join(cert), &d.join(key))
            .into_iter()
            .map(|(f, e)| (f, e.to_string()))
            .collect()
    };
    assert_eq!(check("tls.crt", "tls.key"), []);
    let mismatch = check("tls.crt", "other.key");
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch[0].0, tls::PairFile::Key);
    let want = format!(
        "other.key: the key does not match the certificate in {}",
        d.join("tls.crt").display()
    );
    assert!(mismatch[0].1.ends_with(&want), "{mismatch:?}");
    // Both files wrong: both reported.
    let both = check("missing.crt", "garbage");
    assert_eq!(
        both.iter().map(|p| p.0).collect::<Vec<_>>(),
        [tls::PairFile::Cert, tls::PairFile::Key],
        "{both:?}"
    );
    assert!(both[0].1.contains("missing.crt: "), "{both:?}");
    assert!(
        both[1]
            .1
            .ends_with("garbage: no PRIVATE KEY (or RSA PRIVATE KEY, EC PRIVATE KEY) in the file"),
        "{both:?}"
    );
    // A cert and key swapped.
    let swapped = check("tls.key", "tls.crt");
    assert_eq!(swapped.len(), 2, "{swapped:?}");
    assert!(
        swapped[0]
            .1
            .ends_with("tls.key: no CERTIFICATE in the file"),
        "{swapped:?}"
    );
    assert!(tls::read_roots(&d.join("ca.crt")).is_ok());
    assert!(tls::read_roots(&d.join("tls.key")).is_err());
    // The forward client reads its CA only when it verifies, and its client pair always.
    let mut fwd = ForwardOptions {
        url: "https://keda:443".into(),
        ca_file: Some(d.join("missing-ca.crt")),
        client_cert: Some((d.join("tls.crt"), d.join("other.key"))),
        insecure_skip_verify: false,
        timeout: Duration::from_secs(1),
    };
    let files = |o: &ForwardOptions| -> Vec<forward::ForwardFile> {
        forward::check_files(o)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    };
    assert_eq!(
        files(&fwd),
        [forward::ForwardFile::Ca, forward::ForwardFile::ClientKey]
    );
    assert!(forward::Forwarder::new(&fwd).is_err());
    fwd.insecure_skip_verify = true;
    assert_eq!(files(&fwd), [forward::ForwardFile::ClientKey]);
    fwd.client_cert = Some((d.join("tls.crt"), d.join("tls.key")));
    assert_eq!(files(&fwd), []);
    assert!(forward::Forwarder::new(&fwd).is_ok());
}

#[test]
fn common_name_from_der() {
    let ca = test_ca("test-ca");
    let (pem, _) = ca.leaf("front-proxy-client", &[], false);
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(
        tls::subject_common_name(&der).as_deref(),
        Some("front-proxy-client")
    );
    let (pem, _) = ca.leaf("", &["localhost"], false);
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(tls::subject_common_name(&der).as_deref(), Some(""));
}
use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn requestheader_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("front-proxy-ca");
    std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
    let mut opts = rules();
    opts.insecure_dev_no_auth = false;
    opts.requestheader = Some(RequestHeaderOptions {
        client_ca: ClientCa::File(dir.path().join("ca.crt")),
        allowed_names: vec!["front-proxy-client".into()],
    });
    let (st, _) = fixture();
    let app = router(Arc::new(
        MetricsApi::new(
            st.clone(),
            &QueryOptions::default(),
            &opts,
            &mut Registry::default(),
        )
        .unwrap(),
    ));
    let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total";
    let with = |cn: Option<&str>| {
        let mut r =
            Request::get(path).header("x-remote-user", "system:serviceaccount:kube-system:hpa");
        if let Some(cn) = cn {
            r = r.extension(ClientIdentity {
                common_name: Some(cn.to_owned()),
            });
        }
        r.body(Body::empty()).unwrap()
    };
    assert_eq!(send(&app, with(Some("front-proxy-client"))).await.0, 200);
    let (s, v) = send(&app, with(None)).await;
    assert_eq!(s, 401);
    assert_eq!(v, status(401, "Unauthorized", "Unauthorized"));
    assert_eq!(send(&app, with(Some("someone-else"))).await.0, 401);
    assert_eq!(get(&app, "/healthz").await.0, 200);
    assert_eq!(get(&app, "/readyz").await.0, 200);
    // No requestheader and no insecure flag: nobody.
    let mut deny = rules();
    deny.insecure_dev_no_auth = false;
    let app = router(Arc::new(
        MetricsApi::new(
            st,
            &QueryOptions::default(),
            &deny,
            &mut Registry::default(),
        )
        .unwrap(),
    ));
    assert_eq!(send(&app, with(Some("front-proxy-client"))).await.0, 401);
}

#[tokio::test]
async fn own_metrics_are_registered() {
    let st = state();
    let mut registry = Registry::default();
    let api =
        Arc::new(MetricsApi::new(st, &QueryOptions::default(), &rules(), &mut registry).unwrap());
    let app = router(api);
    get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/idle_metric",
    )
    .await;
    get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/nope",
    )
    .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"surge_aggregator_k8s_api_requests_total{api="external",code="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"surge_aggregator_k8s_api_requests_total{api="external",code="404"} 1"#)
    );
    assert!(text.contains("surge_aggregator_k8s_api_request_duration_seconds_bucket"));
}

/// A TLS client: trusts `ca_pem`, presents `client` if given; returns the status code of GET `path`, or
/// `None` if the handshake or the connection failed.
async fn https_get(
    port: u16,
    ca_pem: &str,
    client: Option<&(String, String)>,
    path: &str,
) -> Option<(u16, String, Vec<rustls::pki_types::CertificateDer<'static>>)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.ok()?;
    let chain = tls.get_ref().1.peer_certificates()?.to_vec();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    // TLS 1.3 reports a rejected client certificate only on the first read.
    tls.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.get(9..12)?.parse().ok()?;
    Some((code, text, chain))
}

#[tokio::test]
async fn https_client_certs_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = test_ca("cluster-ca");
    let proxy_ca = test_ca("front-proxy-ca");
    let other_ca = test_ca("evil-ca");
    let (c1, k1) = server_ca.leaf("server-1", &["localhost", "127.0.0.1"], false);
    std::fs::write(d.join("tls.crt"), &c1).unwrap();
    std::fs::write(d.join("tls.key"), &k1).unwrap();
    std::fs::write(d.join("proxy-ca.crt"), &proxy_ca.pem).unwrap();
    let mut opts = rules();
    opts.insecure_dev_no_auth = false;
    opts.tls = Some(TlsFiles {
        cert_file: d.join("tls.crt"),
        key_file: d.join("tls.key"),
        reload_interval: Duration::from_millis(100),
    });
    opts.requestheader = Some(RequestHeaderOptions {
        client_ca: ClientCa::File(d.join("proxy-ca.crt")),
        allowed_names: vec!["front-proxy-client".into()],
    });
    let (st, _) = fixture();
    let api = Arc::new(
        MetricsApi::new(
            st,
            &QueryOptions::default(),
            &opts,
            &mut Registry::default(),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_https(listener, api, async {
        let _ = stopped.await;
    }));
    let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total";
    let good = proxy_ca.leaf("front-proxy-client", &[], false);
    let (code, body, chain) = https_get(port, &server_ca.pem, Some(&good), path)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"112500m\""));
    let first_leaf = chain[0].clone();
    // No certificate: 401 Status.
    let (code, body, _) = https_get(port, &server_ca.pem, None, path).await.unwrap();
    assert_eq!(code, 401);
    assert!(body.contains("\"reason\":\"Unauthorized\""));
    // A verified certificate with a name not allowed: 401.
    let wrong_name = proxy_ca.leaf("admin", &[], false);
    assert_eq!(
        https_get(port, &server_ca.pem, Some(&wrong_name), path)
            .await
            .unwrap()
            .0,
        401
    );
    // Another CA's certificate and an expired one fail the handshake.
    let foreign = other_ca.leaf("front-proxy-client", &[], false);
    assert!(
        https_get(port, &server_ca.pem, Some(&foreign), path)
            .await
            .is_none()
    );
    let expired = proxy_ca.leaf("front-proxy-client", &[], true);
    assert!(
        https_get(port, &server_ca.pem, Some(&expired), path)
            .await
            .is_none()
    );
    // Health is open.
    assert_eq!(
        https_get(port, &server_ca.pem, None, "/healthz")
            .await
            .unwrap()
            .0,
        200
    );
    // Rotate the serving certificate: the next handshake serves the new one.
    let (c2, k2) = server_ca.leaf("server-2", &["localhost", "127.0.0.1"], false);
    std::fs::write(d.join("tls.key"), &k2).unwrap();
    std::fs::write(d.join("tls.crt"), &c2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, chain) = https_get(port, &server_ca.pem, Some(&good), "/healthz")
            .await
            .unwrap();
        if chain[0] != first_leaf {
            assert_eq!(
                tls::subject_common_name(&chain[0]).as_deref(),
                Some("server-2")
            );
            break;
        }
        assert!(Instant::now() < deadline, "certificate not reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken pair is refused and the current certificate kept.
    std::fs::write(d.join("tls.crt"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, _, chain) = https_get(port, &server_ca.pem, Some(&good), path)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        tls::subject_common_name(&chain[0]).as_deref(),
        Some("server-2")
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn write_pem(path: &Path, certs: &[rustls::pki_types::CertificateDer<'static>]) {
    let mut s = String::new();
    for c in certs {
        use std::fmt::Write as _;
        let b64 = base64_encode(c.as_ref());
        let _ = writeln!(s, "-----BEGIN CERTIFICATE-----");
        for chunk in b64.as_bytes().chunks(64) {
            let _ = writeln!(s, "{}", std::str::from_utf8(chunk).unwrap());
        }
        let _ = writeln!(s, "-----END CERTIFICATE-----");
    }
    std::fs::write(path, s).unwrap();
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn unknown_external_metrics_are_forwarded() {
    // The "other provider": a second surge metrics API (self-signed, no auth) that owns `keda_metric`.
    let other_state = state();
    gauge(
        &other_state,
        &[("__name__", "keda_source")],
        crate::now_ms(),
        42.0,
    );
    let other_opts = MetricsApiOptions {
        insecure_dev_no_auth: true,
        external_metrics: vec![ExternalMetricRule {
            name: "keda_metric".into(),
            query: "sum(keda_source)".into(),
        }],
        ..MetricsApiOptions::default()
    };
    let other = Arc::new(
        MetricsApi::new(
            other_state,
            &QueryOptions::default(),
            &other_opts,
            &mut Registry::default(),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    write_pem(&dir.path().join("other.crt"), &other.serving_chain());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_https(listener, other, async {
        let _ = stopped.await;
    }));

    let mut opts = rules();
    opts.forward_external = Some(ForwardOptions {
        url: format!("https://localhost:{port}"),
        ca_file: Some(dir.path().join("other.crt")),
        client_cert: None,
        insecure_skip_verify: false,
        timeout: Duration::from_secs(5),
    });
    let (st, _) = fixture();
    let mut registry = Registry::default();
    let app = router(Arc::new(
        MetricsApi::new(st, &QueryOptions::default(), &opts, &mut registry).unwrap(),
    ));
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/keda_metric?labelSelector=",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        norm(v)["items"],
        json!([{"metricName": "keda_metric", "metricLabels": null, "timestamp": "T", "value": "42"}])
    );
    // Its 404 passes through; our own metrics are still ours.
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/nobody_has_it",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::NOT_FOUND, json!("NotFound"))
    );
    assert_eq!(
        get(
            &app,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total"
        )
        .await
        .1["items"][0]["value"],
        "112500m"
    );
    // Discovery lists both providers' metrics.
    let (_, v) = get(&app, "/apis/external.metrics.k8s.io/v1beta1").await;
    let names: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "queue_total",
            "queue_by_pod",
            "idle_metric",
            "stale_metric",
            "keda_metric"
        ]
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"api="external_forward",code="200"} 1"#),
        "{text}"
    );
    // Unreachable: 503 Status.
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let (s, v) = get(
        &app,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/keda_metric",
    )
    .await;
    assert_eq!(
        (s, v["reason"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("ServiceUnavailable"))
    );
}

/// External metric latency with 10,000 series cached: 1,000 requests through the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_latency_with_10k_series() {
    // Filling the cache and 1,000 requests take longer than the default 5 s freshness in a debug build.
    let st = store(CacheOptions {
        stale_after: Duration::from_secs(600),
        ..CacheOptions::default()
    });
    let now = crate::now_ms();
    for i in 0..10_000 {
        let pod = format!("web-{i}");
        // Ten minutes of data at 10 s: the `[10m]` window below still holds samples however long the
        // 1,000 requests take on a loaded machine.
        let pts: Vec<(i64, f64)> = (0..=60).map(|k| (k * 10, ((60 - k) * 10) as f64)).collect();
        write(
            &st,
            &[
                ("__name__", "http_requests_total"),
                ("service", "web"),
                ("namespace", "demo"),
                ("pod", &pod),
                ("code", "200"),
            ],
            now,
            &pts,
        );
    }
    let opts = MetricsApiOptions {
        insecure_dev_no_auth: true,
        external_metrics: vec![ExternalMetricRule {
            name: "alb_request_rate".into(),
            query: r#"sum(rate(http_requests_total{service="web"}[10m]))"#.into(),
        }],
        ..MetricsApiOptions::default()
    };
    let app = router(Arc::new(
        MetricsApi::new(
            st,
            &QueryOptions::default(),
            &opts,
            &mut Registry::default(),
        )
        .unwrap(),
    ));
    let mut lat = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        let (s, v) = get(
            &app,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/alb_request_rate",
        )
        .await;
        lat.push(t.elapsed());
        assert_eq!(s, 200, "{v}");
    }
    lat.sort();
    let p50 = lat[500];
    let p99 = lat[989];
    eprintln!(
        "external metric over 10,000 series: p50 {p50:?}, p99 {p99:?}, max {:?}",
        lat[999]
    );
}

/// The front-proxy CA read from the cluster arrives as PEM text: it loads without a file, and a bad one
/// names where it came from.
#[test]
fn client_ca_from_pem_text() {
    let ca = rcgen::generate_simple_self_signed(vec!["front-proxy-ca".into()]).unwrap();
    let good = ClientCa::Pem {
        pem: ca.cert.pem(),
        origin: "test ConfigMap".into(),
    };
    assert_eq!(tls::client_roots(&good).unwrap().len(), 1);
    let bad = ClientCa::Pem {
        pem: "not a certificate".into(),
        origin: "test ConfigMap".into(),
    };
    let e = tls::client_roots(&bad).unwrap_err().to_string();
    assert!(e.contains("test ConfigMap: no CERTIFICATE"), "{e}");
}
