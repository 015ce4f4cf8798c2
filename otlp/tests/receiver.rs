//! surge-otlp against a real OTLP receiver: the Python `opentelemetry-proto` package's generated code
//! behind `grpcio` and an HTTP server (`receiver/otlp_receiver.py`), which decodes every request and
//! dumps every point. Each test sends the same three scrapes and checks every point the receiver
//! decoded: values, timestamps, start times, attributes, resource attributes, temporality, flags.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "receiver/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Receiver, ReceiverOptions};
use serde_json::{Value, json};
use surge_model::{Labels, Sample, Tier, stale_nan};
use surge_otlp::{Encoder, OtlpOptions, Outcome, ResourceLabels, Transport};
use surge_sender::{Batch, Samples, SeriesMeta, SeriesSamples};

/// The first scrape's time (ms); the next two are 1 s apart.
const T0: i64 = 1_700_000_000_000;
const MS: u64 = 1_000_000;

/// The pod's labels, as Kubernetes discovery and the scrape config set them.
const POD: &[(&str, &str)] = &[
    ("job", "api"),
    ("instance", "10.0.0.1:8080"),
    ("namespace", "shop"),
    ("pod", "api-7d9"),
    ("node", "ip-10-0-0-1"),
    ("container", "api"),
];

fn series(name: &str, extra: &[(&str, &str)], pod: bool) -> SeriesMeta {
    let mut pairs: Vec<(&str, &str)> = vec![("__name__", name)];
    if pod {
        pairs.extend_from_slice(POD);
    }
    pairs.extend_from_slice(extra);
    SeriesMeta::new(Labels::from_pairs(pairs))
}

fn one(meta: &SeriesMeta, ts: i64, value: f64) -> SeriesSamples {
    SeriesSamples {
        series: meta.clone(),
        samples: Samples::from_slice(&[Sample {
            timestamp_ms: ts,
            value,
        }]),
    }
}

/// Three scrapes of one pod (plus two series without Kubernetes labels): a counter that resets, a
/// gauge that goes stale, a histogram that goes stale, a summary, and groups that only look like
/// histograms.
fn scrapes() -> Vec<Batch> {
    let counter = series("http_requests_total", &[("code", "200")], true);
    let gauge = series("memory_bytes", &[("area", "heap")], true);
    let bucket = |le| {
        series(
            "latency_seconds_bucket",
            &[("route", "/"), ("le", le)],
            true,
        )
    };
    let (b01, b05, binf) = (bucket("0.1"), bucket("0.5"), bucket("+Inf"));
    let hsum = series("latency_seconds_sum", &[("route", "/")], true);
    let hcount = series("latency_seconds_count", &[("route", "/")], true);
    let q = |q| series("rpc_seconds", &[("quantile", q)], true);
    let (q5, q9) = (q("0.5"), q("0.9"));
    let ssum = series("rpc_seconds_sum", &[], true);
    let scount = series("rpc_seconds_count", &[], true);
    let up = series(
        "up",
        &[("job", "api"), ("instance", "10.0.0.1:8080")],
        false,
    );
    let bare = series("build_info", &[("version", "1.2.3")], false);
    let weird = series("weird_bucket", &[("le", "abc")], true);
    let broken1 = series("broken_bucket", &[("le", "1")], true);
    let broken2 = series("broken_bucket", &[("le", "2")], true);
    let broken_count = series("broken_count", &[], true);

    let t1 = T0 + 1000;
    let t2 = T0 + 2000;
    let batch = |series| Batch {
        tier: Tier::Critical,
        series,
        scrape_end_ms: 0,
    };
    vec![
        batch(vec![
            one(&counter, T0, 10.0),
            one(&gauge, T0, 1.5e6),
            one(&b01, T0, 3.0),
            one(&b05, T0, 5.0),
            one(&binf, T0, 6.0),
            one(&hsum, T0, 1.25),
            one(&hcount, T0, 6.0),
            one(&q5, T0, 0.01),
            one(&q9, T0, 0.05),
            one(&ssum, T0, 2.0),
            one(&scount, T0, 100.0),
            one(&up, T0, 1.0),
            one(&bare, T0, 1.0),
            one(&weird, T0, 1.0),
            one(&broken1, T0, 5.0),
            one(&broken2, T0, 3.0),
            one(&broken_count, T0, 5.0),
        ]),
        batch(vec![
            one(&counter, t1, 15.0),
            one(&gauge, t1, stale_nan()),
            one(&b01, t1, 4.0),
            one(&b05, t1, 7.0),
            one(&binf, t1, 8.0),
            one(&hsum, t1, 2.5),
            one(&hcount, t1, 8.0),
        ]),
        batch(vec![
            one(&counter, t2, 4.0),
            one(&b01, t2, stale_nan()),
            one(&b05, t2, stale_nan()),
            one(&binf, t2, stale_nan()),
            one(&hsum, t2, stale_nan()),
            one(&hcount, t2, stale_nan()),
        ]),
    ]
}

fn pod_resource() -> Value {
    json!({
        "service.name": "api",
        "service.instance.id": "10.0.0.1:8080",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "api-7d9",
        "k8s.node.name": "ip-10-0-0-1",
        "k8s.container.name": "api",
    })
}

/// Every point the receiver must decode from [`scrapes`], and nothing else.
fn expected() -> Vec<Value> {
    let ns = |ms: i64| ms as u64 * MS;
    let (t0, t1, t2) = (ns(T0), ns(T0 + 1000), ns(T0 + 2000));
    let r = pod_resource();
    let gauge =
        |metric: &str, attributes: Value, time, value: Value, flags: u32, resource: &Value| {
            json!({"resource": resource, "scope": "surge", "metric": metric, "type": "gauge",
               "attributes": attributes, "start": 0, "time": time, "flags": flags, "value": value})
        };
    let sum = |time, start, value: Value, flags: u32| {
        json!({"resource": r, "scope": "surge", "metric": "http_requests_total", "type": "sum",
               "temporality": 2, "monotonic": true, "attributes": {"code": "200"},
               "start": start, "time": time, "flags": flags, "value": value})
    };
    let hist = |time, start, count: u64, sum: Value, buckets: Vec<u64>, flags: u32| {
        let bounds: Vec<f64> = if buckets.is_empty() {
            vec![]
        } else {
            vec![0.1, 0.5]
        };
        json!({"resource": r, "scope": "surge", "metric": "latency_seconds", "type": "histogram",
               "temporality": 2, "attributes": {"route": "/"}, "start": start, "time": time,
               "flags": flags, "count": count, "sum": sum, "bounds": bounds, "buckets": buckets})
    };
    let none = json!({});
    vec![
        // The counter: start at its first sample, then after the reset the ms after the sample before.
        sum(t0, t0, json!(10.0), 0),
        sum(t1, t0, json!(15.0), 0),
        sum(t2, t1 + MS, json!(4.0), 0),
        gauge(
            "memory_bytes",
            json!({"area": "heap"}),
            t0,
            json!(1.5e6),
            0,
            &r,
        ),
        // The staleness marker: NoRecordedValue and no value.
        gauge(
            "memory_bytes",
            json!({"area": "heap"}),
            t1,
            Value::Null,
            1,
            &r,
        ),
        // Cumulative buckets 3, 5, 6 → per-bucket 3, 2, 1 (the +Inf bucket is OTLP's overflow).
        hist(t0, t0, 6, json!(1.25), vec![3, 2, 1], 0),
        hist(t1, t0, 8, json!(2.5), vec![4, 3, 1], 0),
        hist(t2, t0, 0, Value::Null, vec![], 1),
        json!({"resource": r, "scope": "surge", "metric": "rpc_seconds", "type": "summary",
               "attributes": {}, "start": t0, "time": t0, "flags": 0, "count": 100, "sum": 2.0,
               "quantiles": [[0.5, 0.01], [0.9, 0.05]]}),
        // job/instance alone make a resource of their own; no resource labels, an empty one.
        gauge(
            "up",
            json!({}),
            t0,
            json!(1.0),
            0,
            &json!({"service.name": "api", "service.instance.id": "10.0.0.1:8080"}),
        ),
        gauge(
            "build_info",
            json!({"version": "1.2.3"}),
            t0,
            json!(1.0),
            0,
            &none,
        ),
        // Not histograms: an le that is no number, cumulative counts that fall. Shipped as gauges.
        gauge("weird_bucket", json!({"le": "abc"}), t0, json!(1.0), 0, &r),
        gauge("broken_bucket", json!({"le": "1"}), t0, json!(5.0), 0, &r),
        gauge("broken_bucket", json!({"le": "2"}), t0, json!(3.0), 0, &r),
        gauge("broken_count", json!({}), t0, json!(5.0), 0, &r),
    ]
}

/// Sorted, transport-free copies, so the two lists compare as sets with a readable diff.
fn normalized(points: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = points
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.as_object_mut().unwrap().remove("transport");
            serde_json::to_string_pretty(&p).unwrap()
        })
        .collect();
    out.sort();
    out
}

fn assert_points(got: &[Value], want: &[Value]) {
    let (got, want) = (normalized(got), normalized(want));
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
        panic!(
            "{} points received, {} expected\nmissing:\n{}\nunexpected:\n{}",
            got.len(),
            want.len(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

fn options(endpoint: String, grpc: bool) -> OtlpOptions {
    let mut config = surge_config::OtlpConfig {
        name: "test".to_owned(),
        endpoint,
        ..Default::default()
    };
    if grpc {
        config.protocol = surge_config::OtlpProtocol::Grpc;
    }
    OtlpOptions::from_config(&config).unwrap()
}

/// Encodes the scrapes one by one (as the queue hands them over) and sends every request once.
async fn send_all(opts: &OtlpOptions) {
    let transport = Transport::new(opts).unwrap();
    let encoder = Encoder::new(ResourceLabels::default(), opts.max_samples_per_send);
    for batch in scrapes() {
        let encoded = encoder.encode([&batch]);
        assert!(encoded.dropped.is_empty());
        for r in encoded.requests {
            let outcome = transport.send(&transport.prepare(r.message)).await;
            assert!(
                matches!(outcome, Outcome::Delivered { rejected: 0, .. }),
                "{outcome:?}"
            );
        }
    }
}

fn check(receiver: &Receiver, transport: &str) {
    let want = expected();
    let got = receiver.wait_for(Duration::from_secs(10), |p| p.len() >= want.len());
    assert!(got.iter().all(|p| p["transport"] == transport));
    assert_points(&got, &want);
}

#[tokio::test]
async fn http_protobuf_carries_every_point() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let opts = options(format!("http://127.0.0.1:{}", receiver.http_port), false);
    send_all(&opts).await;
    check(&receiver, "http");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "one request per scrape: {requests:?}");
    for r in &requests {
        assert_eq!(r["headers"]["path"], "/v1/metrics");
        assert_eq!(r["headers"]["content-type"], "application/x-protobuf");
        assert!(r["headers"].get("content-encoding").is_none());
    }
}

#[tokio::test]
async fn http_protobuf_with_gzip_and_headers() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let mut opts = options(
        format!("http://127.0.0.1:{}/otlp/v1/metrics", receiver.http_port),
        false,
    );
    opts.gzip = true;
    opts.headers.insert("X-Scope-OrgID".into(), "team-a".into());
    send_all(&opts).await;
    check(&receiver, "http");
    for r in receiver.requests() {
        assert_eq!(r["headers"]["path"], "/otlp/v1/metrics");
        assert_eq!(r["headers"]["content-encoding"], "gzip");
        assert_eq!(r["headers"]["x-scope-orgid"], "team-a");
    }
}

#[tokio::test]
async fn grpc_carries_every_point() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let opts = options(format!("http://127.0.0.1:{}", receiver.grpc_port), true);
    send_all(&opts).await;
    check(&receiver, "grpc");
}

#[tokio::test]
async fn grpc_with_gzip_and_metadata() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let mut opts = options(format!("http://127.0.0.1:{}", receiver.grpc_port), true);
    opts.gzip = true;
    opts.headers
        .insert("authorization".into(), "Bearer t0k".into());
    send_all(&opts).await;
    check(&receiver, "grpc");
    for r in receiver.requests() {
        assert_eq!(r["headers"]["authorization"], "Bearer t0k");
    }
    // grpcio hides grpc-encoding from the handler; a receiver that accepts no compression proves it.
    let identity_only = Receiver::start(ReceiverOptions {
        grpc_identity_only: true,
        ..Default::default()
    });
    let mut opts = options(
        format!("http://127.0.0.1:{}", identity_only.grpc_port),
        true,
    );
    let transport = Transport::new(&opts).unwrap();
    let encoder = Encoder::new(ResourceLabels::default(), 100);
    let message = encoder.encode(&scrapes()[..1]).requests.remove(0).message;
    let plain = transport.send(&transport.prepare(message.clone())).await;
    assert!(matches!(plain, Outcome::Delivered { .. }), "{plain:?}");
    opts.gzip = true;
    let transport = Transport::new(&opts).unwrap();
    let gzipped = transport.send(&transport.prepare(message)).await;
    assert!(
        matches!(
            gzipped,
            Outcome::Refused {
                reason: "grpc_unimplemented",
                ..
            }
        ),
        "{gzipped:?}"
    );
}

/// A request cut at `max_samples_per_send`: a histogram point counts its series, and never straddles.
#[tokio::test]
async fn small_requests_still_carry_every_point_once() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let mut opts = options(format!("http://127.0.0.1:{}", receiver.http_port), false);
    opts.max_samples_per_send = 4;
    send_all(&opts).await;
    check(&receiver, "http");
    assert!(receiver.requests().len() > 3);
}

// TLS: a CA, a server certificate for 127.0.0.1 and a client certificate, made here with rcgen.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client, client_key) = leaf(vec!["surge-agent".into()]);
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", &ca_cert.pem());
        write("server.pem", &server);
        write("server.key", &server_key);
        write("client.pem", &client);
        write("client.key", &client_key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn tls_config(&self) -> surge_config::OtlpTlsConfig {
        surge_config::OtlpTlsConfig {
            ca_file: Some(self.path("ca.pem")),
            cert_file: Some(self.path("client.pem")),
            key_file: Some(self.path("client.key")),
        }
    }
}

async fn tls_case(grpc: bool) {
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some((pki.path("server.pem"), pki.path("server.key"))),
        ..Default::default()
    });
    let port = if grpc {
        receiver.grpc_port
    } else {
        receiver.http_port
    };
    let config = surge_config::OtlpConfig {
        name: "tls".to_owned(),
        endpoint: format!("https://127.0.0.1:{port}"),
        protocol: if grpc {
            surge_config::OtlpProtocol::Grpc
        } else {
            surge_config::OtlpProtocol::HttpProtobuf
        },
        tls: Some(pki.tls_config()),
        ..Default::default()
    };
    send_all(&OtlpOptions::from_config(&config).unwrap()).await;
    check(&receiver, if grpc { "grpc" } else { "http" });
}

#[tokio::test]
async fn https_with_a_private_ca_and_a_client_certificate() {
    tls_case(false).await;
}

#[tokio::test]
async fn grpc_over_tls_with_a_private_ca_and_a_client_certificate() {
    tls_case(true).await;
}

/// Without the CA, the receiver's certificate is not trusted: refused as a network error, retried
/// (the queue gives up at its deadline), nothing delivered.
#[tokio::test]
async fn an_untrusted_certificate_is_not_accepted() {
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some((pki.path("server.pem"), pki.path("server.key"))),
        ..Default::default()
    });
    let config = surge_config::OtlpConfig {
        name: "tls".to_owned(),
        endpoint: format!("https://127.0.0.1:{}", receiver.http_port),
        ..Default::default()
    };
    let opts = OtlpOptions::from_config(&config).unwrap();
    let transport = Transport::new(&opts).unwrap();
    let encoder = Encoder::new(ResourceLabels::default(), 100);
    let request = encoder.encode(&scrapes()[..1]).requests.remove(0);
    let outcome = transport.send(&transport.prepare(request.message)).await;
    assert!(
        matches!(
            outcome,
            Outcome::Retry {
                reason: "network",
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(receiver.requests().is_empty());
}

/// The receiver's refusals: 503 is retried with its Retry-After, UNAVAILABLE too.
#[tokio::test]
async fn injected_failures_are_retryable() {
    let receiver = Receiver::start(ReceiverOptions {
        fail_first: 1,
        ..Default::default()
    });
    let encoder = Encoder::new(ResourceLabels::default(), 100);
    for (grpc, port) in [(false, receiver.http_port), (true, receiver.grpc_port)] {
        let opts = options(format!("http://127.0.0.1:{port}"), grpc);
        let transport = Transport::new(&opts).unwrap();
        let request = encoder.encode(&scrapes()[..1]).requests.remove(0);
        let prepared = transport.prepare(request.message);
        let first = transport.send(&prepared).await;
        let want = if grpc { "grpc_unavailable" } else { "http_503" };
        match &first {
            Outcome::Retry { reason, after, .. } => {
                assert_eq!(*reason, want);
                if !grpc {
                    assert_eq!(*after, Some(Duration::ZERO));
                }
            }
            other => panic!("{other:?}"),
        }
        let second = transport.send(&prepared).await;
        assert!(matches!(second, Outcome::Delivered { .. }), "{second:?}");
    }
}

/// A path the receiver does not serve as OTLP is refused for good (not retried): here a body the
/// receiver cannot decode gets its 400.
#[tokio::test]
async fn a_bad_request_is_refused_not_retried() {
    let receiver = Receiver::start(ReceiverOptions::default());
    let opts = options(format!("http://127.0.0.1:{}", receiver.http_port), false);
    let transport = Transport::new(&opts).unwrap();
    let outcome = transport
        .send(&surge_otlp::Prepared::Http(bytes::Bytes::from_static(
            b"\xff\xff\xff",
        )))
        .await;
    assert!(
        matches!(
            outcome,
            Outcome::Refused {
                reason: "http_400",
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// The whole output (surge-sender's queue in front of OTLP): the first two requests of each transport
/// fail with 503 / UNAVAILABLE, are retried, and every point arrives exactly once; the retries are
/// counted, nothing is dropped, and shutdown reports every sample flushed.
async fn through_the_queue(grpc: bool) {
    use prometheus_client::registry::Registry;
    use surge_sender::{Output, SenderMetrics};

    let receiver = Receiver::start(ReceiverOptions {
        fail_first: 2,
        ..Default::default()
    });
    let port = if grpc {
        receiver.grpc_port
    } else {
        receiver.http_port
    };
    let mut opts = options(format!("http://127.0.0.1:{port}"), grpc);
    opts.name = "queued".to_owned();
    opts.min_backoff = Duration::from_millis(10);
    let mut registry = Registry::default();
    let sender_metrics = SenderMetrics::new(&mut registry);
    let otlp_metrics = surge_otlp::OtlpMetrics::new(&mut registry);
    let output = surge_otlp::start(&opts, &sender_metrics, &otlp_metrics).unwrap();
    let mut samples = 0;
    for batch in scrapes() {
        samples += batch.sample_count() as u64;
        output.submit(Arc::new(batch));
    }
    let report = output.shutdown(Duration::from_secs(20)).await;
    assert!(report.completed, "{report:?}");
    assert_eq!(report.dropped_samples, 0);
    // The broken histogram's and the weird bucket's samples are shipped as gauges: all of them count.
    assert_eq!(report.flushed_samples, samples);
    check(&receiver, if grpc { "grpc" } else { "http" });
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let reason = if grpc { "grpc_unavailable" } else { "http_503" };
    let retries =
        format!("surge_remote_write_retries_total{{destination=\"queued\",reason=\"{reason}\"}} 2");
    assert!(text.contains(&retries), "no {retries:?} in\n{text}");
    assert!(
        !text.contains("surge_remote_write_samples_dropped_total{"),
        "{text}"
    );
}

#[tokio::test]
async fn the_queued_output_retries_and_delivers_everything_once_over_http() {
    through_the_queue(false).await;
}

#[tokio::test]
async fn the_queued_output_retries_and_delivers_everything_once_over_grpc() {
    through_the_queue(true).await;
}
