//! The remote-write sender against a real HTTP receiver on 127.0.0.1 (axum), one scenario per test.
//!
//! The receiver checks the protocol headers, snappy-decodes and prost-decodes every request, records it,
//! and answers from a script. Timings are measured in real time with tolerance: tokio's paused clock
//! auto-advances while a real socket is waiting, which would fire `remote_timeout` spuriously. The same
//! behaviours are pinned exactly under the paused clock in `agent/src/sender/tests.rs`.

// Test helpers live outside `#[test]` functions, where clippy's allow-unwrap-in-tests does not reach; a
// panic here is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use prost::Message;
use surge_model::{Labels, Sample, Tier};
use surge_proto::remote_write::WriteRequest;
use surge_sender::{
    Batch, QueueOptions, RemoteWriteSender, SenderMetrics, SenderOptions, SeriesMeta, SeriesSamples,
};

// ---------------------------------------------------------------------------------------------
// The receiver

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Never answers (the client's `remote_timeout` must fire).
    Hang,
}

/// One series on the wire: labels in wire order, (timestamp, value) samples.
type WireSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    answered: u16,
    series: Vec<WireSeries>,
}

impl Received {
    fn samples(&self) -> usize {
        self.series.iter().map(|s| s.1.len()).sum()
    }
}

#[derive(Default)]
struct Receiver {
    script: Mutex<VecDeque<Reply>>,
    log: Mutex<Vec<Received>>,
    header_problems: Mutex<Vec<String>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.log.lock().clone()
    }

    /// Requests answered 2xx: what was delivered.
    fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    fn delivered_samples(&self) -> usize {
        self.delivered().iter().map(Received::samples).sum()
    }
}

async fn write(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let expect = [
        ("content-encoding", "snappy"),
        ("content-type", "application/x-protobuf"),
        ("x-prometheus-remote-write-version", "0.1.0"),
        ("x-scope-orgid", "team-a"),
    ];
    for (name, want) in expect {
        let got = headers.get(name).and_then(|v| v.to_str().ok());
        if got != Some(want) {
            rx.header_problems.lock().push(format!("{name}: {got:?}"));
        }
    }
    let ua = headers.get("user-agent").and_then(|v| v.to_str().ok());
    if !ua.is_some_and(|ua| ua.starts_with("surge-agent/")) {
        rx.header_problems
            .lock()
            .push(format!("user-agent: {ua:?}"));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block body");
    let req = WriteRequest::decode(raw.as_slice()).expect("protobuf WriteRequest");
    let series = req
        .timeseries
        .into_iter()
        .map(|ts| {
            (
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                ts.samples
                    .into_iter()
                    .map(|s| (s.timestamp, s.value))
                    .collect(),
            )
        })
        .collect();
    let reply = rx.script.lock().pop_front().unwrap_or(Reply::Status(204));
    let answered = match reply {
        Reply::Status(s) | Reply::RetryAfter(s, _) => s,
        Reply::Hang => 0,
    };
    rx.log.lock().push(Received {
        at,
        answered,
        series,
    });
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RetryAfter(s, after) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", after)],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn receiver(script: impl IntoIterator<Item = Reply>) -> (Arc<Receiver>, String) {
    let rx = Arc::new(Receiver::default());
    rx.script.lock().extend(script);
    let app = Router::new()
        .route("/api/v1/write", axum::routing::post(write))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rx, format!("http://{addr}/api/v1/write"))
}

/// A URL nothing listens on: connections are refused.
async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/api/v1/write")
}

// ---------------------------------------------------------------------------------------------
// The sender side

fn options(url: &str, queue: QueueOptions) -> SenderOptions {
    let mut o = SenderOptions::new("rw", url);
    o.remote_timeout = Duration::from_secs(5);
    o.headers = BTreeMap::from([("X-Scope-OrgID".to_owned(), "team-a".to_owned())]);
    o.queue_config = queue;
    o
}

fn queue() -> QueueOptions {
    QueueOptions {
        capacity: 10_000,
        max_shards: 4,
        max_samples_per_send: 100,
        batch_send_deadline: Duration::from_millis(200),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        retry_on_http_429: true,
    }
}

struct Harness {
    registry: Registry,
    sender: RemoteWriteSender,
    series: Vec<SeriesMeta>,
}

fn start(opts: SenderOptions, n_series: usize) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let sender = RemoteWriteSender::start(opts, client, &metrics);
    // Labels given out of order on purpose: the wire must carry them sorted.
    let series = (0..n_series)
        .map(|i| {
            SeriesMeta::new(Labels::from_pairs([
                ("pod", format!("p{i}")),
                ("__name__", "http_requests_total".to_owned()),
                ("job", "app".to_owned()),
            ]))
        })
        .collect();
    Harness {
        registry,
        sender,
        series,
    }
}

impl Harness {
    /// Submits one sample for each of `series` at `ts`.
    fn submit(&self, tier: Tier, ts: i64, series: std::ops::Range<usize>) -> usize {
        let batch = Batch {
            tier,
            series: self.series[series]
                .iter()
                .map(|s| SeriesSamples {
                    series: s.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts,
                        value: ts as f64,
                    }],
                })
                .collect(),
            scrape_end_ms: ts,
        };
        let n = batch.sample_count();
        self.sender.submit(Arc::new(batch));
        n
    }

    /// The value of one exposed series, e.g. `surge_remote_write_samples_sent_total{destination="rw"}`.
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn dropped(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "surge_remote_write_samples_dropped_total{{destination=\"rw\",reason=\"{reason}\"}}"
        ))
    }

    fn retries(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "surge_remote_write_retries_total{{destination=\"rw\",reason=\"{reason}\"}}"
        ))
    }

    fn sent(&self) -> f64 {
        self.metric("surge_remote_write_samples_sent_total{destination=\"rw\"}")
    }

    /// Waits until the sender has counted `n` samples as sent and holds nothing any more.
    async fn settled(&self, n: usize) {
        let queued = "surge_remote_write_queue_samples{destination=\"rw\"}";
        eventually("the sender to settle", Duration::from_secs(5), || {
            self.sent() == n as f64 && self.metric(queued) == 0.0
        })
        .await;
    }

    fn total_dropped(&self) -> f64 {
        ["queue_full", "shutdown", "http_400", "http_429", "http_500"]
            .iter()
            .map(|r| self.dropped(r))
            .sum()
    }
}

async fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts the receiver got exactly `expected` samples per series, in time order, labels sorted, every
/// request in time order as read `TimeSeries` by `TimeSeries` (a run of one series in one `TimeSeries`)
/// and no request over `max`.
fn assert_delivered(rx: &Receiver, expected: &HashMap<String, Vec<i64>>, max: usize) {
    assert!(
        rx.header_problems.lock().is_empty(),
        "{:?}",
        rx.header_problems.lock()
    );
    let mut got: HashMap<String, Vec<i64>> = HashMap::new();
    for req in rx.delivered() {
        assert!(req.samples() <= max, "request of {} samples", req.samples());
        let read: Vec<i64> = req
            .series
            .iter()
            .flat_map(|(_, samples)| samples.iter().map(|s| s.0))
            .collect();
        assert!(read.is_sorted(), "request goes back in time: {read:?}");
        let mut previous = None;
        for (labels, samples) in &req.series {
            let names: Vec<_> = labels.iter().map(|l| l.0.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "labels must be sorted");
            let key = format!("{labels:?}");
            assert_ne!(previous.as_ref(), Some(&key), "a run of one series split");
            got.entry(key.clone())
                .or_default()
                .extend(samples.iter().map(|s| s.0));
            previous = Some(key);
        }
    }
    assert_eq!(&got, expected);
}

fn key(h: &Harness, i: usize) -> String {
    let labels: Vec<(String, String)> = h.series[i]
        .labels()
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    format!("{labels:?}")
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// In a module named `sender` so `cargo test -p surge-agent sender` selects these scenarios too.
mod sender {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_every_sample_once_in_series_order_across_shards() {
        let (rx, url) = receiver([]).await;
        let mut q = queue();
        q.max_samples_per_send = 37;
        let h = start(options(&url, q), 50);
        let mut expected: HashMap<String, Vec<i64>> = HashMap::new();
        let mut total = 0;
        for round in 0..6 {
            let ts = 1_700_000_000_000 + round * 1000;
            total += h.submit(Tier::Critical, ts, 0..50);
            for i in 0..50 {
                expected.entry(key(&h, i)).or_default().push(ts);
            }
        }
        eventually("all samples", Duration::from_secs(10), || {
            rx.delivered_samples() == total
        })
        .await;
        // The receiver records a request before its answer reaches the sender: wait for the sender's side.
        h.settled(total).await;
        assert_delivered(&rx, &expected, 37);
        assert_eq!(h.sent(), total as f64);
        assert_eq!(h.total_dropped(), 0.0);
        assert_eq!(
            h.metric("surge_remote_write_highest_sent_timestamp_seconds{destination=\"rw\"}"),
            1_700_000_005.0
        );
        assert_eq!(
            h.metric("surge_remote_write_queue_samples{destination=\"rw\"}"),
            0.0
        );
        let report = h.sender.shutdown(Duration::from_secs(1)).await;
        assert!(report.completed);
        assert_eq!(report.dropped_samples, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_500_is_retried_and_delivered_once_without_counting_a_drop() {
        let (rx, url) = receiver([Reply::Status(500)]).await;
        let mut q = queue();
        q.max_shards = 1;
        let h = start(options(&url, q), 5);
        let n = h.submit(Tier::Critical, 1000, 0..5);
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
        h.settled(n).await;
        let all = rx.received();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].answered, 500);
        assert_eq!(
            all[0].series, all[1].series,
            "the retry resends the same request"
        );
        assert_eq!(h.retries("http_5xx"), 1.0);
        assert_eq!(h.sent(), n as f64);
        assert_eq!(h.total_dropped(), 0.0);
        assert_eq!(
            h.metric("surge_remote_write_requests_total{destination=\"rw\",status=\"5xx\"}"),
            1.0
        );
        assert_eq!(
            h.metric("surge_remote_write_requests_total{destination=\"rw\",status=\"2xx\"}"),
            1.0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_with_retry_after_waits_before_the_next_attempt() {
        let (rx, url) = receiver([Reply::RetryAfter(429, "1")]).await;
        let mut q = queue();
        q.max_shards = 1;
        let h = start(options(&url, q), 3);
        let n = h.submit(Tier::Critical, 1000, 0..3);
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
        h.settled(n).await;
        let all = rx.received();
        assert_eq!(all.len(), 2);
        let gap = all[1].at - all[0].at;
        // min_backoff is 10 ms: without Retry-After the retry would come far sooner.
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
        assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
        assert_eq!(h.retries("http_429"), 1.0);
        assert_eq!(h.total_dropped(), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_400_is_not_retried_and_its_samples_are_counted_as_dropped() {
        let (rx, url) = receiver([Reply::Status(400)]).await;
        let mut q = queue();
        q.max_shards = 1;
        let h = start(options(&url, q), 7);
        let n = h.submit(Tier::Critical, 1000, 0..7);
        eventually("the drop", Duration::from_secs(5), || {
            h.dropped("http_400") == n as f64
        })
        .await;
        // The shard goes on: the next batch is delivered, and the refused one was never sent again.
        let m = h.submit(Tier::Critical, 2000, 0..4);
        eventually("next delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == m
        })
        .await;
        h.settled(m).await;
        let all = rx.received();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].answered, 400);
        assert!(all[1].series.iter().all(|s| s.1 == [(2000, 2000.0)]));
        assert_eq!(h.dropped("http_400"), n as f64);
        assert_eq!(h.retries("http_5xx") + h.retries("http_429"), 0.0);
        assert_eq!(h.sent(), m as f64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_receiver_times_out_and_the_request_is_retried() {
        let (rx, url) = receiver([Reply::Hang]).await;
        let mut q = queue();
        q.max_shards = 1;
        let mut o = options(&url, q);
        o.remote_timeout = Duration::from_millis(300);
        let h = start(o, 2);
        let started = Instant::now();
        let n = h.submit(Tier::Critical, 1000, 0..2);
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
        h.settled(n).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(rx.received().len(), 2);
        assert_eq!(h.retries("timeout"), 1.0);
        assert_eq!(h.sent(), n as f64);
        assert_eq!(h.total_dropped(), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_is_retried_until_the_queue_is_full() {
        let url = refused_url().await;
        let mut q = queue();
        q.capacity = 20;
        q.max_shards = 2;
        let h = start(options(&url, q), 10);
        let mut submitted = 0;
        for round in 0..5 {
            submitted += h.submit(Tier::Critical, 1000 + round, 0..10);
        }
        assert_eq!(submitted, 50);
        // Everything beyond the capacity is dropped at submit, exactly; nothing else is.
        assert_eq!(h.dropped("queue_full"), 30.0);
        assert_eq!(
            h.metric("surge_remote_write_queue_samples{destination=\"rw\"}"),
            20.0
        );
        eventually("retries", Duration::from_secs(5), || {
            h.retries("network") >= 4.0
        })
        .await;
        assert_eq!(h.dropped("queue_full"), 30.0);
        let report = h.sender.clone().shutdown(Duration::from_millis(300)).await;
        assert!(!report.completed);
        assert_eq!(report.dropped_samples, 20);
        assert_eq!(h.dropped("shutdown"), 20.0);
        assert_eq!(
            h.metric("surge_remote_write_queue_samples{destination=\"rw\"}"),
            0.0
        );
        // After shutdown, submissions are dropped and counted too.
        h.submit(Tier::Critical, 9999, 0..3);
        assert_eq!(h.dropped("shutdown"), 23.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_critical_tier_does_not_wait_for_the_batch_deadline() {
        let (rx, url) = receiver([]).await;
        let mut q = queue();
        q.batch_send_deadline = Duration::from_secs(30);
        let h = start(options(&url, q), 10);
        let started = Instant::now();
        let n = h.submit(Tier::Critical, 1000, 0..10);
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_standard_tier_is_batched_until_the_deadline() {
        let (rx, url) = receiver([]).await;
        let mut q = queue();
        q.max_shards = 1;
        q.batch_send_deadline = Duration::from_millis(400);
        let h = start(options(&url, q), 10);
        let started = Instant::now();
        let mut n = 0;
        for round in 0..3 {
            n += h.submit(Tier::Standard, 1000 + round, 0..10);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
        let all = rx.delivered();
        assert_eq!(all.len(), 1, "three scrapes, one request");
        // Read in order, the request goes scrape by scrape: each series once per scrape.
        let read: Vec<i64> = all[0].series.iter().map(|s| s.1[0].0).collect();
        assert_eq!(read.len(), 30);
        assert!(read.is_sorted(), "{read:?}");
        assert!(all[0].series.iter().all(|s| s.1.len() == 1));
        let waited = all[0].at - started;
        assert!(
            waited >= Duration::from_millis(380),
            "sent after {waited:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_standard_tier_goes_at_once_when_a_request_is_full() {
        let (rx, url) = receiver([]).await;
        let mut q = queue();
        q.max_shards = 1;
        q.max_samples_per_send = 10;
        q.batch_send_deadline = Duration::from_secs(30);
        let h = start(options(&url, q), 10);
        let n = h.submit(Tier::Standard, 1000, 0..10);
        eventually("delivery", Duration::from_secs(5), || {
            rx.delivered_samples() == n
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_flushes_the_standard_tier_within_the_deadline() {
        let (rx, url) = receiver([]).await;
        let mut q = queue();
        q.batch_send_deadline = Duration::from_secs(60);
        let h = start(options(&url, q), 40);
        let n = h.submit(Tier::Standard, 1000, 0..40);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rx.delivered_samples(), 0, "held for the batch deadline");
        let started = Instant::now();
        let report = h.sender.clone().shutdown(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(report.completed);
        assert_eq!(report.flushed_samples, n as u64);
        assert_eq!(report.dropped_samples, 0);
        assert_eq!(rx.delivered_samples(), n);
    }
}

// ---------------------------------------------------------------------------------------------
// Every endpoint of a set (each aggregator replica)

/// `EndpointFanOut`: while the set is empty batches go to the fallback URL; once two endpoints are
/// listed every batch reaches both (each its own queue); an endpoint that leaves gets nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_writes_every_batch_to_every_endpoint_of_the_set() {
    use surge_sender::{EndpointFanOut, Output};
    let (fallback, fallback_url) = receiver([]).await;
    let (a, a_url) = receiver([]).await;
    let (b, b_url) = receiver([]).await;
    let authority = |url: &str| {
        url.trim_start_matches("http://")
            .trim_end_matches("/api/v1/write")
            .to_owned()
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let series: Vec<SeriesMeta> = (0..4)
        .map(|i| {
            SeriesMeta::new(Labels::from_pairs([
                ("__name__", "m".to_owned()),
                ("i", i.to_string()),
            ]))
        })
        .collect();
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Vec::<String>::new());
    let fan = EndpointFanOut::start(options(&fallback_url, queue()), rx, client, &metrics).unwrap();
    let batch = |ts: i64| {
        Arc::new(Batch {
            tier: Tier::Critical,
            series: series
                .iter()
                .map(|s| SeriesSamples {
                    series: s.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts,
                        value: 1.0,
                    }],
                })
                .collect(),
            scrape_end_ms: ts,
        })
    };

    fan.submit(batch(1_000));
    eventually(
        "the fallback receives while the set is unknown",
        Duration::from_secs(5),
        || fallback.delivered_samples() == 4,
    )
    .await;

    tx.send_replace(vec![authority(&a_url), authority(&b_url)]);
    eventually("both endpoints are members", Duration::from_secs(5), || {
        fan.addresses().len() == 2
    })
    .await;
    fan.submit(batch(2_000));
    eventually(
        "each endpoint receives every sample",
        Duration::from_secs(5),
        || a.delivered_samples() == 4 && b.delivered_samples() == 4,
    )
    .await;
    assert_eq!(
        fallback.delivered_samples(),
        4,
        "nothing more to the fallback"
    );

    tx.send_replace(vec![authority(&b_url)]);
    eventually("a left", Duration::from_secs(5), || {
        fan.addresses().len() == 1
    })
    .await;
    fan.submit(batch(3_000));
    eventually("b receives the next batch", Duration::from_secs(5), || {
        b.delivered_samples() == 8
    })
    .await;
    assert_eq!(
        a.delivered_samples(),
        4,
        "a left the set and gets nothing more"
    );
    let report = fan.shutdown(Duration::from_secs(2)).await;
    assert!(report.completed, "{report:?}");
    assert_eq!(report.dropped_samples, 0);
}
