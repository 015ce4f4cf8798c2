//! The CloudWatch outputs against real peers: LocalStack (started once per test binary, on a free port)
//! serving CloudWatch (the SDK's Smithy RPC v2 CBOR protocol) and CloudWatch Logs. Everything sent is
//! read back (`GetMetricData`, `ListMetrics`, `GetLogEvents`) and compared with what was submitted:
//! nothing missing, nothing doubled.
//!
//! Throttling, 5xx and a refused credential are injected by a small HTTP proxy in front of LocalStack
//! (LocalStack never throttles, and accepts any credential): the proxy answers a scripted number of
//! requests itself, in the wire shape AWS uses, and forwards the rest.
//!
//! Needs LocalStack: `../shared/aws/localstack-up.sh` beside the checkout (or `$SURGE_LOCALSTACK_UP`), which builds its
//! virtualenv on first use; `$SURGE_LOCALSTACK_ENDPOINT` reuses one already running instead.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::config::Credentials;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::Value;
use surge_cloudwatch::aws::{AwsTarget, loader};
use surge_cloudwatch::emf::{DEFAULT_MAX_EVENT_BYTES, EmfEncoder};
use surge_cloudwatch::logs::{EmfLogs, EmfPipeline};
use surge_cloudwatch::pmd::PutMetricData;
use surge_cloudwatch::points::{Layout, Preparer};
use surge_model::{Labels, Sample, Tier};
use surge_sender::{
    Batch, Output, QueuedOptions, QueuedOutput, SenderMetrics, SeriesMeta, SeriesSamples,
};

// ---------------------------------------------------------------------------------------------
// LocalStack, once per binary

struct LocalStack {
    endpoint: String,
}

fn localstack() -> &'static LocalStack {
    static LS: OnceLock<LocalStack> = OnceLock::new();
    LS.get_or_init(|| {
        // A LocalStack someone already runs (while iterating); CI starts its own below.
        if let Ok(endpoint) = std::env::var("SURGE_LOCALSTACK_ENDPOINT") {
            return LocalStack { endpoint };
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("surge-cw-localstack-{port}"));
        // `../shared` beside the checkout, as CI lays it out.
        let script = std::env::var("SURGE_LOCALSTACK_UP").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/aws/localstack-up.sh"
            )
            .to_owned()
        });
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(port.to_string())
            // LocalStack keeps CloudWatch's sqlite store under $TMPDIR/localstack without PERSISTENCE:
            // its own TMPDIR, or parallel instances share one database ("disk I/O error").
            .env("TMPDIR", &dir)
            .output()
            .expect("run localstack-up.sh");
        assert!(
            out.status.success(),
            "LocalStack did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = std::fs::read_to_string(dir.join("localstack.pid")).unwrap();
        // LocalStack runs in its own session: a watchdog stops it when this test process ends. The
        // watchdog outlives this process on purpose, so it is never waited for.
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null",
                me = std::process::id(),
                pid = pid.trim()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        LocalStack {
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SDK configuration for `endpoint`, with a generous attempt timeout: LocalStack's GetMetricData on a
/// loaded CI machine can take several seconds.
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    loader(
        &AwsTarget {
            region: Some("us-east-1".into()),
            endpoint_url: Some(endpoint.to_owned()),
        },
        Duration::from_secs(60),
    )
    .credentials_provider(Credentials::new("test", "test", None, None, "test"))
    .load()
    .await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn clock() -> Arc<dyn Fn() -> i64 + Send + Sync> {
    Arc::new(now_ms)
}

fn opts(name: &str) -> QueuedOptions {
    QueuedOptions {
        attempt_timeout: Duration::from_secs(60),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        batch_send_deadline: Duration::from_millis(200),
        ..QueuedOptions::new(name)
    }
}

fn layout() -> Layout {
    Layout {
        dimensions: vec!["namespace".into(), "pod".into()],
        counter_pattern: None,
    }
}

fn series(name: &str, pod: &str) -> SeriesMeta {
    SeriesMeta::new(Labels::from_pairs([
        ("__name__", name),
        ("namespace", "shop"),
        ("pod", pod),
        ("instance", "10.0.0.1:8080"),
    ]))
}

fn batch(tier: Tier, rows: &[(&SeriesMeta, i64, f64)]) -> Arc<Batch> {
    Arc::new(Batch {
        tier,
        series: rows
            .iter()
            .map(|(s, ts, v)| SeriesSamples {
                series: (*s).clone(),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: *ts,
                    value: *v
                }],
            })
            .collect(),
        scrape_end_ms: 0,
    })
}

fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Whole seconds, so that 1-second periods hold one sample each.
fn second_aligned(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting proxy

/// What the proxy answers instead of forwarding.
#[derive(Clone)]
struct Fault {
    status: u16,
    content_type: &'static str,
    body: &'static [u8],
}

/// Forwards to `upstream`, except that the first faults in `script` answer requests in its place.
struct FaultProxy {
    addr: SocketAddr,
    script: Arc<Mutex<Vec<Fault>>>,
    requests: Arc<AtomicUsize>,
}

impl FaultProxy {
    async fn start(upstream: String, faults: Vec<Fault>) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(faults.into_iter().rev().collect::<Vec<_>>()));
        let requests = Arc::new(AtomicUsize::new(0));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let (s, r) = (script.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, script, requests, upstream) =
                    (client.clone(), s.clone(), r.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (client, script, requests, upstream) = (
                                client.clone(),
                                script.clone(),
                                requests.clone(),
                                upstream.clone(),
                            );
                            async move {
                                requests.fetch_add(1, Ordering::Relaxed);
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                if let Some(f) = script.lock().pop() {
                                    let resp = hyper::Response::builder()
                                        .status(f.status)
                                        .header("content-type", f.content_type)
                                        .header("smithy-protocol", "rpc-v2-cbor")
                                        .body(Full::new(Bytes::from_static(f.body)))
                                        .unwrap();
                                    return Ok::<_, std::convert::Infallible>(resp);
                                }
                                let uri = format!(
                                    "{upstream}{}",
                                    parts.uri.path_and_query().map_or("/", |p| p.as_str())
                                );
                                let mut fwd =
                                    hyper::Request::builder().method(parts.method).uri(uri);
                                for (k, v) in &parts.headers {
                                    fwd = fwd.header(k, v);
                                }
                                let resp = client
                                    .request(fwd.body(Full::new(body)).unwrap())
                                    .await
                                    .unwrap();
                                let (parts, body) = resp.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                Ok(hyper::Response::from_parts(parts, Full::new(body)))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            addr,
            script,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn faults_left(&self) -> usize {
        self.script.lock().len()
    }
}

const THROTTLED_JSON: Fault = Fault {
    status: 400,
    content_type: "application/x-amz-json-1.1",
    body: br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
};
const UNAVAILABLE: Fault = Fault {
    status: 503,
    content_type: "text/plain",
    body: b"Service Unavailable",
};
const TOO_MANY: Fault = Fault {
    status: 429,
    content_type: "text/plain",
    body: b"Too Many Requests",
};
const BAD_TOKEN_JSON: Fault = Fault {
    status: 400,
    content_type: "application/x-amz-json-1.1",
    body: br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
};

// ---------------------------------------------------------------------------------------------
// PutMetricData

/// What GetMetricData says for one metric with one dimension set: (timestamp s, sum, sample count).
async fn read_back(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    pod: &str,
    period: i32,
    from_ms: i64,
) -> Vec<(i64, f64, f64)> {
    let stat = |s: &str| {
        MetricStat::builder()
            .metric(
                Metric::builder()
                    .namespace(namespace)
                    .metric_name(name)
                    .dimensions(Dimension::builder().name("namespace").value("shop").build())
                    .dimensions(Dimension::builder().name("pod").value(pod).build())
                    .build(),
            )
            .period(period)
            .stat(s)
            .build()
    };
    let out = cw
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("s")
                .metric_stat(stat("Sum"))
                .build(),
        )
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("n")
                .metric_stat(stat("SampleCount"))
                .build(),
        )
        // A narrow window: LocalStack computes every period of the window, so 1 s periods over hours
        // take minutes.
        .start_time(DateTime::from_millis(
            from_ms - 60_000 - from_ms.rem_euclid(60_000),
        ))
        .end_time(DateTime::from_millis(
            from_ms - from_ms.rem_euclid(60_000) + 120_000,
        ))
        .send()
        .await
        .unwrap();
    let results = out.metric_data_results();
    let series = |id: &str| -> BTreeMap<i64, f64> {
        let r = results.iter().find(|r| r.id() == Some(id)).unwrap();
        r.timestamps()
            .iter()
            .map(|t| t.secs())
            .zip(r.values().iter().copied())
            .collect()
    };
    let (sums, counts) = (series("s"), series("n"));
    sums.into_iter()
        .map(|(t, s)| (t, s, counts.get(&t).copied().unwrap_or(f64::NAN)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_metric_data_is_read_back_exactly() {
    let ls = localstack();
    let config = sdk(&ls.endpoint).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let namespace = format!("surge-test-pmd-{}", now_ms());
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let out = QueuedOutput::start(
        opts("pmd"),
        PutMetricData::new(
            Preparer::new(layout()),
            cw.clone(),
            namespace.clone(),
            clock(),
        ),
        &metrics,
    );
    let t0 = second_aligned(now_ms()) - 10_000;
    let (a, b) = (
        series("queue_depth", "web-1"),
        series("queue_depth", "web-2"),
    );
    let c = series("http_requests_total", "web-1");
    // Critical: a gauge on two pods over 3 seconds, and a counter (baseline, then two deltas).
    for (i, (va, vb, vc)) in [(1.0, 10.0, 100.0), (2.0, 20.0, 103.0), (3.0, 30.0, 110.0)]
        .into_iter()
        .enumerate()
    {
        let ts = t0 + i as i64 * 1000;
        out.submit(batch(
            Tier::Critical,
            &[(&a, ts, va), (&b, ts, vb), (&c, ts, vc)],
        ));
    }
    // Standard: a gauge at 60 s resolution, NaN and an out-of-range timestamp (both dropped).
    let s = series("memory_bytes", "web-1");
    let day = 86_400_000;
    out.submit(batch(
        Tier::Standard,
        &[(&s, t0, 512.0), (&series("bad", "web-1"), t0, f64::NAN)],
    ));
    out.submit(batch(
        Tier::Standard,
        &[(&series("old", "web-1"), t0 - 15 * day, 1.0)],
    ));
    let report = out.shutdown(Duration::from_secs(30)).await;
    assert!(report.completed);

    assert_eq!(
        read_back(&cw, &namespace, "queue_depth", "web-1", 1, t0).await,
        vec![
            (t0 / 1000, 1.0, 1.0),
            (t0 / 1000 + 1, 2.0, 1.0),
            (t0 / 1000 + 2, 3.0, 1.0)
        ],
        "high resolution: one value per second, none missing or doubled"
    );
    assert_eq!(
        read_back(&cw, &namespace, "queue_depth", "web-2", 1, t0).await,
        vec![
            (t0 / 1000, 10.0, 1.0),
            (t0 / 1000 + 1, 20.0, 1.0),
            (t0 / 1000 + 2, 30.0, 1.0)
        ]
    );
    assert_eq!(
        read_back(&cw, &namespace, "http_requests_total", "web-1", 1, t0).await,
        vec![(t0 / 1000 + 1, 3.0, 1.0), (t0 / 1000 + 2, 7.0, 1.0)],
        "the counter's first point is its baseline; then deltas"
    );
    let mem = read_back(&cw, &namespace, "memory_bytes", "web-1", 60, t0).await;
    assert_eq!(
        mem.iter().map(|m| (m.1, m.2)).collect::<Vec<_>>(),
        vec![(512.0, 1.0)]
    );

    // Exactly these metrics and dimension sets exist in the namespace.
    let listed = cw
        .list_metrics()
        .namespace(&namespace)
        .send()
        .await
        .unwrap();
    let mut names: Vec<(String, Vec<(String, String)>)> = listed
        .metrics()
        .iter()
        .map(|m| {
            (
                m.metric_name().unwrap_or_default().to_owned(),
                m.dimensions()
                    .iter()
                    .map(|d| {
                        (
                            d.name().unwrap_or_default().to_owned(),
                            d.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    names.sort();
    let dims = |pod: &str| {
        vec![
            ("namespace".into(), "shop".into()),
            ("pod".into(), pod.into()),
        ]
    };
    assert_eq!(
        names,
        vec![
            ("http_requests_total".into(), dims("web-1")),
            ("memory_bytes".into(), dims("web-1")),
            ("queue_depth".into(), dims("web-1")),
            ("queue_depth".into(), dims("web-2")),
        ]
    );
    let dropped = |reason: &str| {
        metric(
            &registry,
            &format!(
                "surge_remote_write_samples_dropped_total{{destination=\"pmd\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(dropped("non_finite"), 1.0);
    assert_eq!(dropped("timestamp_out_of_range"), 1.0);
    assert_eq!(
        metric(
            &registry,
            "surge_remote_write_samples_sent_total{destination=\"pmd\"}"
        ),
        // 6 gauge values, 2 counter deltas, 1 standard gauge (the baseline is consumed, not sent).
        9.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_metric_data_rides_out_throttling_and_5xx_without_doubling() {
    let ls = localstack();
    let proxy = FaultProxy::start(
        ls.endpoint.clone(),
        vec![TOO_MANY, UNAVAILABLE, TOO_MANY, UNAVAILABLE],
    )
    .await;
    let config = sdk(&proxy.url()).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let namespace = format!("surge-test-pmd-faults-{}", now_ms());
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let out = QueuedOutput::start(
        opts("pmd-faults"),
        PutMetricData::new(
            Preparer::new(layout()),
            cw.clone(),
            namespace.clone(),
            clock(),
        ),
        &metrics,
    );
    let t0 = second_aligned(now_ms()) - 20_000;
    let g = series("inflight", "web-9");
    for i in 0..5 {
        out.submit(batch(Tier::Critical, &[(&g, t0 + i * 1000, i as f64)]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(out.shutdown(Duration::from_secs(30)).await.completed);
    assert_eq!(proxy.faults_left(), 0);
    assert!(proxy.requests.load(Ordering::Relaxed) > 4);
    let direct = aws_sdk_cloudwatch::Client::new(&sdk(&ls.endpoint).await);
    let got = read_back(&direct, &namespace, "inflight", "web-9", 1, t0).await;
    assert_eq!(
        got,
        (0..5)
            .map(|i| (t0 / 1000 + i, i as f64, 1.0))
            .collect::<Vec<_>>(),
        "every value exactly once"
    );
    let retries = |reason: &str| {
        metric(
            &registry,
            &format!(
                "surge_remote_write_retries_total{{destination=\"pmd-faults\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(retries("throttled"), 2.0);
    assert_eq!(retries("http_5xx"), 2.0);
}

// ---------------------------------------------------------------------------------------------
// EMF to CloudWatch Logs

/// One value of an EMF document: (metric, dimensions, resolution, value, count).
type EmfRow = (String, Vec<(String, String)>, u64, f64, f64);

/// Checks one EMF document against the specification's rules and returns its values as
/// (metric, dimensions, resolution, value, count) rows.
fn validate_emf(doc: &Value, namespace: &str) -> Vec<EmfRow> {
    let aws = &doc["_aws"];
    let ts = aws["Timestamp"]
        .as_i64()
        .expect("_aws.Timestamp is epoch ms");
    assert!(ts > 1_500_000_000_000);
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    let mut rows = Vec::new();
    for d in directives {
        assert_eq!(d["Namespace"], namespace);
        let sets = d["Dimensions"].as_array().unwrap();
        let metrics = d["Metrics"].as_array().unwrap();
        assert!(metrics.len() <= 100, "at most 100 metrics per directive");
        for set in sets {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30, "at most 30 dimensions per set");
            let dims: Vec<(String, String)> = set
                .iter()
                .map(|k| {
                    let k = k.as_str().unwrap();
                    let v = doc[k]
                        .as_str()
                        .unwrap_or_else(|| panic!("dimension {k} is a member"));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                let res = m["StorageResolution"].as_u64().unwrap();
                assert!(res == 1 || res == 60);
                match &doc[name] {
                    Value::Number(n) => {
                        rows.push((name.into(), dims.clone(), res, n.as_f64().unwrap(), 1.0))
                    }
                    Value::Array(vs) => {
                        assert!(vs.len() <= 100, "at most 100 values per metric");
                        for v in vs {
                            rows.push((name.into(), dims.clone(), res, v.as_f64().unwrap(), 1.0));
                        }
                    }
                    Value::Object(o) => {
                        let vs = o["Values"].as_array().unwrap();
                        let cs = o["Counts"].as_array().unwrap();
                        assert_eq!(vs.len(), cs.len());
                        assert!(vs.len() <= 100);
                        for (v, c) in vs.iter().zip(cs) {
                            rows.push((
                                name.into(),
                                dims.clone(),
                                res,
                                v.as_f64().unwrap(),
                                c.as_f64().unwrap(),
                            ));
                        }
                    }
                    other => panic!("metric {name} has no value member: {other}"),
                }
            }
        }
    }
    rows
}

async fn log_events(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        let events = page.events();
        if events.is_empty() {
            break;
        }
        out.extend(events.iter().map(|e| {
            (
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_owned(),
            )
        }));
        let next = page.next_forward_token().map(str::to_owned);
        if next == token {
            break;
        }
        token = next;
    }
    out
}

fn emf_logs(
    client: aws_sdk_cloudwatchlogs::Client,
    namespace: &str,
    group: &str,
    max_event_bytes: usize,
) -> EmfLogs {
    EmfLogs::new(
        EmfPipeline {
            preparer: Preparer::new(layout()),
            encoder: EmfEncoder::new(namespace, max_event_bytes),
        },
        client,
        group.to_owned(),
        "node-1".to_owned(),
        clock(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_documents_reach_cloudwatch_logs_valid_and_complete() {
    let ls = localstack();
    let config = sdk(&ls.endpoint).await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let stamp = now_ms();
    let (namespace, group) = (
        format!("surge-emf-{stamp}"),
        format!("/surge/test/emf-{stamp}"),
    );
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    // Small events, so the documents split by size as well as by the 100-metric limit.
    let out = QueuedOutput::start(
        opts("emf"),
        emf_logs(logs.clone(), &namespace, &group, 16 * 1024),
        &metrics,
    );
    let t0 = second_aligned(now_ms()) - 60_000;
    // 150 gauges on 2 pods, critical: more than 100 metrics per dimension set.
    let mut expected = BTreeSet::new();
    let gauges: Vec<(SeriesMeta, String, String)> = (0..300)
        .map(|i| {
            let (name, pod) = (format!("g{:03}", i % 150), format!("web-{}", i / 150));
            (series(&name, &pod), name, pod)
        })
        .collect();
    for step in 0..2i64 {
        let ts = t0 + step * 1000;
        let rows: Vec<(&SeriesMeta, i64, f64)> = gauges
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| (s, ts, (i as i64 * 10 + step) as f64))
            .collect();
        for (i, (_, name, pod)) in gauges.iter().enumerate() {
            expected.insert((
                name.clone(),
                pod.clone(),
                1u64,
                ((i as i64 * 10 + step) as f64).to_bits(),
                1u64,
            ));
        }
        out.submit(batch(Tier::Critical, &rows));
    }
    // A histogram, standard tier: baseline, then bucket deltas.
    let bucket = |le: &str| {
        SeriesMeta::new(Labels::from_pairs([
            ("__name__", "latency_seconds_bucket"),
            ("le", le),
            ("namespace", "shop"),
            ("pod", "web-0"),
        ]))
    };
    let (b1, b2, b3) = (bucket("0.1"), bucket("1"), bucket("+Inf"));
    out.submit(batch(
        Tier::Standard,
        &[(&b1, t0, 1.0), (&b2, t0, 2.0), (&b3, t0, 2.0)],
    ));
    out.submit(batch(
        Tier::Standard,
        &[
            (&b1, t0 + 60_000, 4.0),
            (&b2, t0 + 60_000, 9.0),
            (&b3, t0 + 60_000, 10.0),
        ],
    ));
    expected.insert((
        "latency_seconds".into(),
        "web-0".into(),
        60,
        0.1f64.to_bits(),
        3,
    ));
    expected.insert((
        "latency_seconds".into(),
        "web-0".into(),
        60,
        1.0f64.to_bits(),
        5,
    ));
    assert!(out.shutdown(Duration::from_secs(30)).await.completed);

    let events = log_events(&logs, &group, "node-1").await;
    assert!(events.len() >= 4, "split documents: {}", events.len());
    let mut got = BTreeSet::new();
    let mut rows_total = 0;
    let mut last_ts = i64::MIN;
    for (ts, message) in &events {
        assert!(*ts >= last_ts, "events in time order");
        last_ts = *ts;
        assert!(message.len() <= 16 * 1024);
        let doc: Value = serde_json::from_str(message).unwrap();
        assert_eq!(doc["_aws"]["Timestamp"].as_i64(), Some(*ts));
        for (name, dims, res, v, c) in validate_emf(&doc, &namespace) {
            assert_eq!(dims[0], ("namespace".into(), "shop".into()));
            let pod = dims[1].1.clone();
            rows_total += 1;
            got.insert((name, pod, res, v.to_bits(), c as u64));
        }
    }
    // The histogram's +Inf bucket reports at the largest finite bound (1): counts 4 + 1 there.
    assert_eq!(rows_total, got.len(), "nothing doubled");
    assert_eq!(got, expected, "nothing missing, nothing extra");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_logs_retry_throttling_and_drop_once_on_a_refused_credential() {
    let ls = localstack();
    let stamp = now_ms();
    let (namespace, group) = (
        format!("surge-emf-f-{stamp}"),
        format!("/surge/test/emf-f-{stamp}"),
    );
    // Throttled twice, then a 503 (creating the group and the stream, then the first put).
    let proxy = FaultProxy::start(
        ls.endpoint.clone(),
        vec![THROTTLED_JSON, UNAVAILABLE, THROTTLED_JSON],
    )
    .await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk(&proxy.url()).await);
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let out = QueuedOutput::start(
        opts("emf-f"),
        emf_logs(logs, &namespace, &group, DEFAULT_MAX_EVENT_BYTES),
        &metrics,
    );
    let t0 = second_aligned(now_ms()) - 5_000;
    let g = series("up", "web-1");
    for i in 0..3 {
        out.submit(batch(Tier::Critical, &[(&g, t0 + i * 1000, 1.0)]));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(out.shutdown(Duration::from_secs(30)).await.completed);
    assert_eq!(proxy.faults_left(), 0);
    let direct = aws_sdk_cloudwatchlogs::Client::new(&sdk(&ls.endpoint).await);
    let events = log_events(&direct, &group, "node-1").await;
    let stamps: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        stamps,
        vec![t0, t0 + 1000, t0 + 2000],
        "each document exactly once"
    );
    let m = |family: &str, labels: &str| {
        metric(
            &registry,
            &format!("{family}{{destination=\"emf-f\",{labels}}}"),
        )
    };
    assert_eq!(
        m("surge_remote_write_retries_total", "reason=\"throttled\""),
        2.0
    );
    assert_eq!(
        m("surge_remote_write_retries_total", "reason=\"http_5xx\""),
        1.0
    );

    // A refused credential: dropped and counted once per request, never retried.
    let proxy = FaultProxy::start(ls.endpoint.clone(), vec![BAD_TOKEN_JSON; 4]).await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk(&proxy.url()).await);
    let out = QueuedOutput::start(
        opts("emf-auth"),
        emf_logs(
            logs,
            &namespace,
            &format!("{group}-auth"),
            DEFAULT_MAX_EVENT_BYTES,
        ),
        &metrics,
    );
    out.submit(batch(
        Tier::Critical,
        &[(&g, t0, 1.0), (&series("other", "web-1"), t0, 2.0)],
    ));
    assert!(out.shutdown(Duration::from_secs(30)).await.completed);
    assert_eq!(proxy.requests.load(Ordering::Relaxed), 1, "no retry storm");
    let m = |family: &str, labels: &str| {
        metric(
            &registry,
            &format!("{family}{{destination=\"emf-auth\",{labels}}}"),
        )
    };
    assert_eq!(
        m(
            "surge_remote_write_samples_dropped_total",
            "reason=\"auth\""
        ),
        2.0
    );
    assert_eq!(
        m("surge_remote_write_retries_total", "reason=\"auth\""),
        0.0
    );
}
