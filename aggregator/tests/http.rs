//! The HTTP surface, in-process through `Router::oneshot`: remote-write ingest (every rejection counted in
//! `/metrics`), the Prometheus query API, health and readiness.

// Helpers outside `#[test]` fns are test code too; a panic there is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestObserver, IngestOptions, QueryOptions, SeriesId, Touched,
    now_ms, router,
};
use surge_proto::remote_write::{Label, ProtoSample, TimeSeries, WriteRequest};
use tower::ServiceExt;

fn state_with(ingest: IngestOptions, query: QueryOptions) -> Arc<AggregatorState> {
    AggregatorState::standalone(CacheOptions::default(), query, ingest)
}

fn state() -> Arc<AggregatorState> {
    state_with(IngestOptions::default(), QueryOptions::default())
}

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| ProtoSample {
                value: v,
                timestamp: t,
            })
            .collect(),
    }
}

fn body(series: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest { timeseries: series }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn write_req(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/write")
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::USER_AGENT, "Prometheus/2.42.0")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

async fn send(st: &Arc<AggregatorState>, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get(st: &Arc<AggregatorState>, uri: &str) -> (StatusCode, serde_json::Value) {
    let (s, b) = send(st, Request::get(uri).body(Body::empty()).unwrap()).await;
    (
        s,
        serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b)),
    )
}

async fn metrics(st: &Arc<AggregatorState>) -> String {
    send(st, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .1
}

fn metric_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn valid_write_then_query() {
    let st = state();
    let now = now_ms();
    let (s, _) = send(
        &st,
        write_req(body(vec![
            ts(
                &[("__name__", "x"), ("job", "a")],
                &[(now - 2000, 1.0), (now - 1000, 2.0)],
            ),
            ts(
                &[("__name__", "y"), ("job", "a")],
                &[(now - 1000, f64::INFINITY)],
            ),
            ts(
                &[("__name__", "z"), ("job", "a")],
                &[(now - 1000, f64::NAN)],
            ),
        ])),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let t = format!("{:.3}", now as f64 / 1000.0);
    let (s, v) = get(&st, &format!("/api/v1/query?query=x&time={t}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "a");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    // NaN and Inf are values, formatted as Prometheus does.
    let (_, v) = get(&st, &format!("/api/v1/query?query=y&time={t}")).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "+Inf");
    let (_, v) = get(&st, &format!("/api/v1/query?query=z&time={t}")).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "NaN");
    let (_, v) = get(&st, &format!("/api/v1/query?query=1%2B1&time={t}")).await;
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "2");
    let m = metrics(&st).await;
    assert!(
        m.contains("surge_aggregator_ingest_samples_total{sender=\"Prometheus\"} 4"),
        "{m}"
    );
    assert!(m.contains("surge_aggregator_series 3"), "{m}");
}

#[tokio::test]
async fn observers_learn_touched_series() {
    struct Rec(Mutex<Vec<Vec<Touched>>>);
    impl IngestObserver for Rec {
        fn on_ingest(&self, touched: &[Touched]) {
            self.0.lock().unwrap().push(touched.to_vec());
        }
    }
    let st = state();
    let rec = Arc::new(Rec(Mutex::new(Vec::new())));
    st.add_observer(rec.clone());
    let now = now_ms();
    send(
        &st,
        write_req(body(vec![
            ts(&[("__name__", "x")], &[(now - 5, 1.0)]),
            ts(&[("__name__", "x")], &[(now - 3, 1.0)]),
            ts(&[("__name__", "y")], &[(now - 9, 1.0)]),
        ])),
    )
    .await;
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].len(), 2, "each series once");
    // Each series with its own newest sample, not the request's.
    let x = SeriesId::of(&surge_model::Labels::from_pairs([("__name__", "x")]));
    let y = SeriesId::of(&surge_model::Labels::from_pairs([("__name__", "y")]));
    let newest = |id| calls[0].iter().find(|t| t.id == id).map(|t| t.newest_ms);
    assert_eq!(newest(x), Some(now - 3));
    assert_eq!(newest(y), Some(now - 9));
}

#[tokio::test]
async fn request_level_rejections_are_answered_and_counted() {
    let st = state_with(
        IngestOptions {
            max_body_bytes: 4096,
            max_decompressed_bytes: 64 * 1024,
            ..IngestOptions::default()
        },
        QueryOptions::default(),
    );
    // Garbage: not snappy.
    let (s, b) = send(&st, write_req(b"\xff\xff\xff\xff\xff garbage".to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("snappy"), "{b}");
    // Valid snappy, truncated protobuf.
    let raw = WriteRequest {
        timeseries: vec![ts(&[("__name__", "x")], &[(1, 1.0)])],
    }
    .encode_to_vec();
    let cut = snap::raw::Encoder::new()
        .compress_vec(&raw[..raw.len() - 3])
        .unwrap();
    let (s, b) = send(&st, write_req(cut)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("invalid protobuf"), "{b}");
    // Compressed body over the limit → 413.
    let (s, _) = send(&st, write_req(vec![0u8; 10_000])).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Small body announcing a huge decompressed size → 413.
    let bomb = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 70_000])
        .unwrap();
    assert!(bomb.len() < 4096);
    let (s, _) = send(&st, write_req(bomb)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Wrong encoding → 400; wrong content type → 415.
    let mut r = write_req(body(vec![]));
    r.headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(send(&st, r).await.0, StatusCode::BAD_REQUEST);
    let mut r = write_req(body(vec![]));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    assert_eq!(send(&st, r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Missing headers are accepted leniently (Prometheus 2.x does not check them).
    let r = Request::post("/api/v1/write")
        .body(Body::from(body(vec![ts(
            &[("__name__", "x")],
            &[(now_ms(), 1.0)],
        )])))
        .unwrap();
    assert_eq!(send(&st, r).await.0, StatusCode::NO_CONTENT);

    let m = metrics(&st).await;
    for (reason, n) in [
        ("corrupt_snappy", 1),
        ("corrupt_protobuf", 1),
        ("too_large", 2),
        ("unsupported_encoding", 1),
        ("unsupported_content_type", 1),
    ] {
        let want = format!(
            "surge_aggregator_ingest_rejected_requests_total{{sender=\"Prometheus\",reason=\"{reason}\"}} {n}"
        );
        assert!(m.contains(&want), "missing {want}\n{m}");
    }
    assert!(m.contains("surge_aggregator_ingest_requests_total{sender=\"other\",code=\"204\"} 1"));
}

#[tokio::test]
async fn sample_level_rejections_keep_the_rest_and_are_counted() {
    let st = state();
    let now = now_ms();
    let good = ts(&[("__name__", "ok"), ("a", "1")], &[(now - 1000, 1.0)]);
    let series = vec![
        good,
        ts(
            &[("__name__", "dup"), ("a", "1"), ("a", "2")],
            &[(now, 1.0)],
        ),
        // An empty label name is invalid under every scheme.
        ts(&[("__name__", "bad"), ("", "x")], &[(now, 1.0)]),
        // Prometheus 3 names (any UTF-8): accepted as sent.
        ts(
            &[("__name__", "k8s.pod-cpu"), ("1a", "x")],
            &[(now - 10, 1.0)],
        ),
        ts(&[("job", "noname")], &[(now, 1.0), (now + 1, 1.0)]),
        ts(&[("__name__", "future")], &[(now + 11 * 60 * 1000, 1.0)]),
        ts(&[("__name__", "old")], &[(now - 6 * 60 * 1000, 1.0)]),
        // Out of order within the series: the second sample is older.
        ts(&[("__name__", "ooo")], &[(now - 10, 1.0), (now - 20, 1.0)]),
        // Same timestamp, different value.
        ts(
            &[("__name__", "dupts")],
            &[(now - 10, 1.0), (now - 10, 2.0)],
        ),
        // Empty label values are dropped, not rejected.
        ts(&[("__name__", "empty"), ("e", "")], &[(now - 10, 1.0)]),
    ];
    let (s, _) = send(&st, write_req(body(series))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let m = metrics(&st).await;
    for (reason, n) in [
        ("duplicate_label_name", 1),
        ("invalid_label_name", 1),
        ("missing_metric_name", 2),
        ("too_far_in_future", 1),
        ("too_old", 1),
        ("out_of_order", 1),
        ("duplicate_timestamp", 1),
    ] {
        let want = format!(
            "surge_aggregator_ingest_rejected_samples_total{{sender=\"Prometheus\",reason=\"{reason}\"}} {n}"
        );
        assert!(m.contains(&want), "missing {want}\n{m}");
    }
    assert!(!m.contains("reason=\"invalid_metric_name\""), "{m}");
    let (_, v) = get(
        &st,
        "/api/v1/series?match[]=%7B__name__%3D~%22ok%7Cempty%7Ck8s.pod-cpu%22%7D",
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([
            {"1a": "x", "__name__": "k8s.pod-cpu"},
            {"__name__": "empty"},
            {"__name__": "ok", "a": "1"}
        ])
    );
}

#[tokio::test]
async fn query_api_endpoints_and_errors() {
    let st = state_with(
        IngestOptions::default(),
        QueryOptions {
            max_series: 3,
            ..QueryOptions::default()
        },
    );
    let now = now_ms() / 1000 * 1000;
    let mut series = Vec::new();
    for i in 0..4 {
        let inst = format!("i{i}");
        let samples: Vec<(i64, f64)> = (0..60)
            .map(|k| (now - 59_000 + k * 1000, (k * (i + 1)) as f64))
            .collect();
        series.push(ts(
            &[
                ("__name__", "req_total"),
                ("job", "api"),
                ("instance", &inst),
            ],
            &samples,
        ));
    }
    series.push(ts(&[("__name__", "up"), ("job", "db")], &[(now, 1.0)]));
    assert_eq!(
        send(&st, write_req(body(series))).await.0,
        StatusCode::NO_CONTENT
    );
    let t = now / 1000;

    // Syntax errors: 400 bad_data with Prometheus's position format.
    let (s, v) = get(
        &st,
        &format!("/api/v1/query?time={t}&query={}", enc("sum(rate(x[5m])))")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    assert_eq!(
        v["error"],
        "invalid parameter \"query\": 1:17: parse error: unexpected right parenthesis ')'"
    );
    // Too many series: 422 execution.
    let (s, v) = get(
        &st,
        &format!("/api/v1/query?time={t}&query={}", enc("sum(req_total)")),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errorType"], "execution");
    let (s, _) = get(&st, "/api/v1/query?query=up&time=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // POST form.
    let req = Request::post("/api/v1/query")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "query={}&time={t}",
            enc("sum(rate(req_total{instance=~\"i0|i1\"}[30s]))")
        )))
        .unwrap();
    let (s, b) = send(&st, req).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "3");

    // RFC 3339 time and query_range.
    let (s, v) = get(
        &st,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={t}&step=10s",
            enc("up"),
            t - 20
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        1
    );
    let (s, v) = get(
        &st,
        &format!(
            "/api/v1/query_range?query=up&start={t}&end={}&step=0",
            t - 1
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "end timestamp must not be before start time");
    let (_, v) = get(&st, "/api/v1/query?query=up&time=1970-01-01T00:00:00Z").await;
    assert_eq!(v["data"]["result"], serde_json::json!([]));

    let (_, v) = get(&st, "/api/v1/labels").await;
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job"])
    );
    let (_, v) = get(&st, "/api/v1/label/job/values").await;
    assert_eq!(v["data"], serde_json::json!(["api", "db"]));
    let (_, v) = get(&st, "/api/v1/labels?match[]=up").await;
    assert_eq!(v["data"], serde_json::json!(["__name__", "job"]));
    let (s, v) = get(&st, "/api/v1/series").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "no match[] parameter provided");
    let (s, _) = get(&st, "/api/v1/label/1bad/values").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let m = metrics(&st).await;
    assert!(
        metric_line(
            &m,
            "surge_aggregator_query_duration_seconds_count{endpoint=\"query\"}"
        )
        .is_some(),
        "{m}"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let mut registry = prometheus_client::registry::Registry::default();
    let st = Arc::new(AggregatorState::new(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
        &mut registry,
    ));
    let code = |uri: &'static str| {
        let st = st.clone();
        async move {
            send(&st, Request::get(uri).body(Body::empty()).unwrap())
                .await
                .0
        }
    };
    assert_eq!(code("/healthz").await, StatusCode::OK);
    assert_eq!(code("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code("/metrics").await, StatusCode::SERVICE_UNAVAILABLE);
    st.set_ready(true);
    assert!(st.publish_registry(Arc::new(registry)));
    assert_eq!(code("/readyz").await, StatusCode::OK);
    assert_eq!(code("/metrics").await, StatusCode::OK);
}

/// Grafana's flavour probes answer in Prometheus's shape (the differential test compares them with a real
/// Prometheus as well).
#[tokio::test]
async fn grafana_flavour_probes() {
    let st = state();
    let (s, v) = get(&st, "/api/v1/status/buildinfo").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["version"], "2.42.0");
    assert!(
        v["data"]["revision"]
            .as_str()
            .unwrap()
            .starts_with("surge-")
    );
    for k in ["branch", "buildUser", "buildDate", "goVersion"] {
        assert!(v["data"][k].is_string(), "{k} in {v}");
    }
    let (s, v) = get(&st, "/api/v1/metadata?metric=x&limit=3").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, serde_json::json!({"status": "success", "data": {}}));
    let (s, v) = get(&st, "/api/v1/metadata?limit_per_metric=many").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    assert_eq!(v["error"], "limit_per_metric must be a number");
}
