//! Unit tests: the batcher (proptest), the retry policy, and the dispatcher under tokio's paused clock
//! with a scripted transport (exact timings). Real-HTTP scenarios live in `tests/http.rs`; the upstream
//! compliance cases against the agent process in the workspace's `tests/tests/rw_compliance.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use prost::Message;
use surge_model::{Labels, Sample, Tier};
use surge_proto::remote_write::WriteRequest;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::events::RetryReason;
use super::request::{PendingEntry, PendingQueue, RequestCut};
use super::service::{AttemptResult, Backoff, Transport, Verdict, classify, parse_retry_after};
use super::*;

fn meta(i: usize) -> SeriesMeta {
    SeriesMeta::new(Labels::from_pairs([
        ("instance", format!("i{i}")),
        ("__name__", "m".to_owned()),
    ]))
}

fn decode(raw: &[u8]) -> WriteRequest {
    WriteRequest::decode(raw).expect("valid WriteRequest")
}

fn labels_of(ts: &surge_proto::remote_write::TimeSeries) -> Labels {
    Labels::from_pairs(ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())))
}

fn series_key(ts: &surge_proto::remote_write::TimeSeries) -> String {
    ts.labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// Batcher

proptest! {
    /// Random batches routed to shards, cut into requests that each take from a random set of shards (as
    /// the dispatcher combines free shards): every sample leaves exactly once, each series in time order,
    /// every request read `TimeSeries` by `TimeSeries` is in time order, a series' consecutive samples
    /// share one `TimeSeries`, and no request is over `max_samples_per_send`.
    #[test]
    fn requests_keep_series_order_and_respect_the_size_limit(
        batches in prop::collection::vec(prop::collection::vec((0usize..8, 1usize..4), 1..10), 1..25),
        shards in 1usize..5,
        max in 1usize..12,
        cut_between in prop::collection::vec(any::<u8>(), 25),
    ) {
        let metas: Vec<_> = (0..8).map(meta).collect();
        let mut next_ts = [0i64; 8];
        let mut clock = 0i64;
        let mut expected: HashMap<String, Vec<i64>> = HashMap::new();
        let mut queues: Vec<PendingQueue> = (0..shards).map(|_| PendingQueue::default()).collect();
        let mut got: HashMap<String, Vec<i64>> = HashMap::new();
        let now = Instant::now();

        let cut = |queues: &mut [PendingQueue], mask: u8, got: &mut HashMap<String, Vec<i64>>| {
            let mut c = RequestCut::default();
            for (i, q) in queues.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    q.take_into(max - c.len(), &mut c);
                }
            }
            if c.is_empty() {
                return;
            }
            let mut raw = Vec::new();
            let stats = c.encode(&mut raw);
            let req = decode(&raw);
            let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
            assert_eq!(n, stats.samples);
            assert_eq!(req.timeseries.len(), stats.series);
            assert!(n <= max, "{n} samples > {max}");
            let read: Vec<i64> = req.timeseries.iter().flat_map(|t| t.samples.iter().map(|s| s.timestamp)).collect();
            assert!(read.is_sorted(), "request goes back in time: {read:?}");
            for pair in req.timeseries.windows(2) {
                assert_ne!(series_key(&pair[0]), series_key(&pair[1]), "a run of one series split");
            }
            for ts in &req.timeseries {
                got.entry(series_key(ts)).or_default().extend(ts.samples.iter().map(|s| s.timestamp));
            }
        };

        for (bi, spec) in batches.iter().enumerate() {
            // Timestamps rise across batches and within a series, as scrapes produce them.
            let series: Vec<SeriesSamples> = spec
                .iter()
                .map(|&(id, n)| SeriesSamples {
                    series: metas[id].clone(),
                    samples: (0..n)
                        .map(|_| {
                            clock += 1;
                            next_ts[id] = next_ts[id].max(clock);
                            Sample { timestamp_ms: next_ts[id], value: 1.0 }
                        })
                        .collect(),
                })
                .collect();
            for s in &series {
                let k = s.series.labels().iter().map(|l| format!("{}={}", l.name, l.value)).collect::<Vec<_>>().join(",");
                expected.entry(k).or_default().extend(s.samples.iter().map(|x| x.timestamp_ms));
            }
            let tier = if bi % 2 == 0 { Tier::Critical } else { Tier::Standard };
            let batch = Arc::new(Batch { tier, series, scrape_end_ms: 0 });
            // As `submit` does: one entry per shard with the batch's series of that shard, in order.
            let mut by_shard = vec![Vec::new(); shards];
            for (idx, s) in batch.series.iter().enumerate() {
                by_shard[shard_for(s.series.hash(), shards)].push((idx, s.series.clone()));
            }
            for (shard, series) in by_shard.into_iter().enumerate() {
                queues[shard].push(PendingEntry::new(shard, batch.clone(), series, now));
            }
            cut(&mut queues, cut_between[bi], &mut got);
        }
        while queues.iter().any(|q| !q.is_empty()) {
            cut(&mut queues, u8::MAX, &mut got);
        }
        prop_assert!(queues.iter().all(|q| !q.has_critical()));
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_request_is_in_time_order_and_merges_runs_of_one_series() {
    let (a, b) = (meta(1), meta(2));
    let batch = |series: &[(&SeriesMeta, &[i64])]| {
        Arc::new(Batch {
            tier: Tier::Standard,
            series: series
                .iter()
                .map(|(m, ts)| SeriesSamples {
                    series: (*m).clone(),
                    samples: ts
                        .iter()
                        .map(|&t| Sample {
                            timestamp_ms: t,
                            value: 0.0,
                        })
                        .collect(),
                })
                .collect(),
            scrape_end_ms: 0,
        })
    };
    let mut q = PendingQueue::default();
    let now = Instant::now();
    // Two scrapes of a and b, then a batch of a whose samples came out of order.
    for bt in [
        batch(&[(&a, &[10]), (&b, &[10])]),
        batch(&[(&a, &[20]), (&b, &[20])]),
        batch(&[(&a, &[40, 30])]),
    ] {
        for i in 0..bt.series.len() {
            q.push(PendingEntry::new(
                0,
                bt.clone(),
                vec![(i, bt.series[i].series.clone())],
                now,
            ));
        }
    }
    let mut cut = RequestCut::default();
    assert_eq!(q.take_into(100, &mut cut), 6);
    let mut raw = Vec::new();
    let stats = cut.encode(&mut raw);
    assert_eq!((stats.samples, stats.series), (6, 5));
    assert_eq!(stats.highest_timestamp_ms, Some(40));
    let req = decode(&raw);
    let read: Vec<(String, Vec<i64>)> = req
        .timeseries
        .iter()
        .map(|t| {
            (
                t.labels[1].value.clone(),
                t.samples.iter().map(|s| s.timestamp).collect(),
            )
        })
        .collect();
    let want = |i: &str, ts: &[i64]| (i.to_owned(), ts.to_vec());
    assert_eq!(
        read,
        [
            want("i1", &[10]),
            want("i2", &[10]),
            want("i1", &[20]),
            want("i2", &[20]),
            want("i1", &[30, 40]),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Retry policy

#[test]
fn classification_follows_remote_write_1_0() {
    let status = |s| AttemptResult::Status {
        status: s,
        retry_after: None,
        detail: String::new(),
    };
    // (result, retry_on_http_429, retried with reason / rejected with status / delivered)
    let cases: [(AttemptResult, bool, &str); 9] = [
        (status(200), true, "delivered"),
        (status(204), true, "delivered"),
        (status(500), true, "retry http_5xx"),
        (status(503), false, "retry http_5xx"),
        (status(429), true, "retry http_429"),
        (status(429), false, "reject 429"),
        (status(400), true, "reject 400"),
        (AttemptResult::Timeout, true, "retry timeout"),
        (
            AttemptResult::Network("refused".into()),
            true,
            "retry network",
        ),
    ];
    for (result, retry_429, want) in cases {
        let got = match classify(result.clone(), retry_429) {
            Verdict::Delivered => "delivered".to_owned(),
            Verdict::Retry { reason, .. } => format!("retry {}", reason.as_str()),
            Verdict::Rejected { status, .. } => format!("reject {status}"),
        };
        assert_eq!(got, want, "{result:?} retry_on_http_429={retry_429}");
    }
    assert!(matches!(
        classify(status(302), true),
        Verdict::Rejected { status: 302, .. }
    ));
    let _ = RetryReason::Network;
}

#[test]
fn retry_after_accepts_seconds_and_http_dates() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
    assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(10))
    );
    // A date in the past means "now".
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO)
    );
    for bad in [
        "",
        "-1",
        "1.5",
        "soon",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 32 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
    // Leap years: 29 Feb 2024 00:00:00 is 1709164800.
    let now = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
    assert_eq!(
        parse_retry_after("Thu, 29 Feb 2024 00:00:05 GMT", now),
        Some(Duration::from_secs(5))
    );
    let _ = SystemTime::now();
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_max_and_honours_retry_after() {
    let opts = QueueOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..QueueOptions::default()
    };
    for _ in 0..50 {
        let mut b = Backoff::new(&opts);
        for d in [100u64, 200, 400, 500, 500] {
            let got = b.next_delay(None);
            let d = Duration::from_millis(d);
            assert!(
                got >= d / 2 && got <= d,
                "{got:?} not in [{:?}, {d:?}]",
                d / 2
            );
        }
    }
    let mut b = Backoff::new(&opts);
    assert_eq!(
        b.next_delay(Some(Duration::from_secs(2))),
        Duration::from_secs(2)
    );
    // Capped at max_backoff × 12.
    assert_eq!(
        b.next_delay(Some(Duration::from_secs(3600))),
        Duration::from_secs(6)
    );
}

#[test]
fn validation_lists_every_problem() {
    let mut o = SenderOptions::new("aggregator", "ftp://x");
    o.headers.insert("Content-Type".into(), "text/plain".into());
    o.headers.insert("bad header".into(), "v".into());
    o.queue_config.max_shards = 0;
    o.queue_config.min_backoff = Duration::from_secs(10);
    let err = o.validate().unwrap_err();
    assert_eq!(
        err.problems,
        [
            SenderOptionError::Url {
                url: "ftp://x".into()
            },
            SenderOptionError::ReservedHeader {
                name: "Content-Type".into()
            },
            SenderOptionError::Header {
                name: "bad header".into()
            },
            SenderOptionError::Zero {
                field: "queue_config.max_shards"
            },
            SenderOptionError::Backoff {
                min: Duration::from_secs(10),
                max: Duration::from_secs(5)
            },
        ]
    );
    assert!(
        err.to_string()
            .starts_with("remote_write \"aggregator\": url: ")
    );
    assert!(
        SenderOptions::new("a", "http://127.0.0.1:9091/api/v1/write")
            .validate()
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// The dispatcher under the paused clock

#[derive(Debug, Clone)]
enum Reply {
    Status(u16, Option<Duration>),
    Refused,
    Hang,
}

/// A transport that records each attempt (decoded) with its time and answers from a script (204 when
/// the script is empty).
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<Reply>>,
    attempts: Mutex<Vec<(Instant, WriteRequest)>>,
    notify: Notify,
}

impl Transport for Arc<Scripted> {
    async fn send(&self, body: bytes::Bytes) -> AttemptResult {
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        self.attempts.lock().push((Instant::now(), decode(&raw)));
        self.notify.notify_one();
        let reply = self.script.lock().pop_front();
        match reply.unwrap_or(Reply::Status(204, None)) {
            Reply::Status(status, retry_after) => AttemptResult::Status {
                status,
                retry_after,
                detail: String::new(),
            },
            Reply::Refused => AttemptResult::Network("connection refused".into()),
            Reply::Hang => std::future::pending().await,
        }
    }
}

impl Scripted {
    fn new(script: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        let s = Arc::new(Scripted::default());
        s.script.lock().extend(script);
        s
    }

    async fn wait_attempts(&self, n: usize) {
        while self.attempts.lock().len() < n {
            self.notify.notified().await;
        }
    }

    fn times(&self, since: Instant) -> Vec<Duration> {
        self.attempts.lock().iter().map(|a| a.0 - since).collect()
    }
}

struct Paused {
    registry: Registry,
    sender: RemoteWriteSender,
    transport: Arc<Scripted>,
}

fn paused(queue: QueueOptions, script: impl IntoIterator<Item = Reply>) -> Paused {
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let transport = Scripted::new(script);
    let mut opts = SenderOptions::new("d", "http://127.0.0.1:1/");
    opts.queue_config = queue;
    opts.remote_timeout = Duration::from_secs(5);
    let sender = RemoteWriteSender::start_with_transport(opts, transport.clone(), &metrics);
    Paused {
        registry,
        sender,
        transport,
    }
}

impl Paused {
    fn submit(&self, tier: Tier, ts: i64, series: std::ops::Range<usize>) {
        let series = series
            .map(|i| SeriesSamples {
                series: meta(i),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: 1.0,
                }],
            })
            .collect();
        self.sender.submit(Arc::new(Batch {
            tier,
            series,
            scrape_end_ms: ts,
        }));
    }

    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn dropped(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "surge_remote_write_samples_dropped_total{{destination=\"d\",reason=\"{reason}\"}}"
        ))
    }
}

fn one_shard() -> QueueOptions {
    QueueOptions {
        max_shards: 1,
        ..QueueOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn critical_samples_are_sent_without_any_timer() {
    let p = paused(one_shard(), []);
    let t0 = Instant::now();
    p.submit(Tier::Critical, 1, 0..3);
    p.transport.wait_attempts(1).await;
    assert_eq!(p.transport.times(t0), [Duration::ZERO]);
}

#[tokio::test(start_paused = true)]
async fn standard_samples_wait_exactly_for_the_batch_deadline() {
    let p = paused(one_shard(), []);
    let t0 = Instant::now();
    p.submit(Tier::Standard, 1, 0..3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.submit(Tier::Standard, 2, 0..3);
    p.transport.wait_attempts(1).await;
    // The deadline counts from the oldest pending sample; both scrapes share one request, the first
    // scrape's series before the second's.
    assert_eq!(p.transport.times(t0), [Duration::from_secs(1)]);
    let req = &p.transport.attempts.lock()[0].1;
    let read: Vec<i64> = req
        .timeseries
        .iter()
        .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
        .collect();
    assert_eq!(read, [1, 1, 1, 2, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_small_scrape_leaves_as_one_request_whatever_shards_its_series_take() {
    let p = paused(QueueOptions::default(), []);
    let shards: std::collections::HashSet<usize> =
        (0..20).map(|i| shard_for(meta(i).hash(), 4)).collect();
    assert_eq!(shards.len(), 4, "the series are spread over every shard");
    for ts in 1..=3 {
        p.submit(Tier::Critical, ts, 0..20);
        p.transport.wait_attempts(ts as usize).await;
    }
    let attempts = p.transport.attempts.lock();
    assert_eq!(attempts.len(), 3, "one request per scrape");
    assert!(attempts.iter().all(|a| a.1.timeseries.len() == 20));
}

#[tokio::test(start_paused = true)]
async fn a_retried_request_holds_its_shards_so_the_next_scrape_waits_behind_it() {
    let p = paused(QueueOptions::default(), [Reply::Status(500, None)]);
    let t0 = Instant::now();
    p.submit(Tier::Critical, 1, 0..20);
    p.transport.wait_attempts(1).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Within the first backoff (15..30 ms): every shard of these series is held by the refused request.
    p.submit(Tier::Critical, 2, 0..20);
    p.transport.wait_attempts(3).await;
    let attempts = p.transport.attempts.lock();
    let stamps: Vec<Vec<i64>> = attempts
        .iter()
        .map(|a| {
            let mut ts: Vec<i64> =
                a.1.timeseries
                    .iter()
                    .map(|t| t.samples[0].timestamp)
                    .collect();
            ts.dedup();
            ts
        })
        .collect();
    assert_eq!(stamps, [vec![1], vec![1], vec![2]]);
    assert!(attempts.iter().all(|a| a.1.timeseries.len() == 20));
    assert!(attempts[1].0 - t0 >= Duration::from_millis(15));
    assert_eq!(
        attempts[2].0, attempts[1].0,
        "the waiting scrape goes the moment the retry lands"
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_batch_fills_one_request_per_shard_in_parallel() {
    let q = QueueOptions {
        max_samples_per_send: 5,
        ..QueueOptions::default()
    };
    // The first four requests hang until remote_timeout: they are in flight together.
    let p = paused(q, std::iter::repeat_n(Reply::Hang, 4));
    let t0 = Instant::now();
    p.submit(Tier::Critical, 1, 0..60);
    p.transport.wait_attempts(4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let attempts = p.transport.attempts.lock();
        assert_eq!(attempts.len(), 4, "at most one request per shard in flight");
        let mut seen = std::collections::HashSet::new();
        for (at, req) in attempts.iter() {
            assert_eq!(*at, t0);
            assert_eq!(req.timeseries.len(), 5);
            // Each full request comes from one shard, a different one each.
            let of: std::collections::HashSet<usize> = req
                .timeseries
                .iter()
                .map(|t| shard_for(SeriesMeta::new(labels_of(t)).hash(), 4))
                .collect();
            assert_eq!(of.len(), 1);
            assert!(seen.insert(of.into_iter().next()));
        }
    }
    // After the timeouts everything is delivered, each series once.
    let report = p.sender.clone().shutdown(Duration::from_secs(30)).await;
    assert!(report.completed);
    let attempts = p.transport.attempts.lock();
    let delivered: Vec<String> = attempts[4..]
        .iter()
        .flat_map(|a| a.1.timeseries.iter().map(series_key))
        .collect();
    let unique: std::collections::HashSet<&String> = delivered.iter().collect();
    assert_eq!((delivered.len(), unique.len()), (60, 60));
}

#[tokio::test(start_paused = true)]
async fn a_critical_batch_takes_pending_standard_samples_along() {
    let p = paused(one_shard(), []);
    let t0 = Instant::now();
    p.submit(Tier::Standard, 1, 0..3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.submit(Tier::Critical, 2, 5..6);
    p.transport.wait_attempts(1).await;
    assert_eq!(p.transport.times(t0), [Duration::from_millis(100)]);
    assert_eq!(p.transport.attempts.lock()[0].1.timeseries.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_and_honour_retry_after() {
    let q = QueueOptions {
        max_shards: 1,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
        ..QueueOptions::default()
    };
    let p = paused(
        q,
        [
            Reply::Status(503, None),
            Reply::Refused,
            Reply::Status(500, None),
            Reply::Status(429, Some(Duration::from_secs(2))),
            Reply::Status(500, None),
        ],
    );
    let t0 = Instant::now();
    p.submit(Tier::Critical, 1, 0..2);
    p.transport.wait_attempts(6).await;
    let t = p.transport.times(t0);
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = Duration::from_millis;
    for (gap, d) in gaps.iter().zip([ms(100), ms(200), ms(300)]) {
        assert!(*gap >= d / 2 && *gap <= d, "gap {gap:?} for backoff {d:?}");
    }
    assert_eq!(gaps[3], Duration::from_secs(2), "Retry-After is honoured");
    assert!(gaps[4] >= ms(150) && gaps[4] <= ms(300));
    assert_eq!(p.dropped("http_500") + p.dropped("queue_full"), 0.0);
    assert_eq!(
        p.metric("surge_remote_write_samples_sent_total{destination=\"d\"}"),
        2.0
    );
    for (reason, n) in [("http_5xx", 3.0), ("network", 1.0), ("http_429", 1.0)] {
        let m =
            format!("surge_remote_write_retries_total{{destination=\"d\",reason=\"{reason}\"}}");
        assert_eq!(p.metric(&m), n, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_attempt_is_cut_by_remote_timeout() {
    let p = paused(one_shard(), [Reply::Hang]);
    let t0 = Instant::now();
    p.submit(Tier::Critical, 1, 0..1);
    p.transport.wait_attempts(2).await;
    let t = p.transport.times(t0);
    assert_eq!(t[0], Duration::ZERO);
    // remote_timeout (5 s) plus the first backoff (15..30 ms).
    assert!(t[1] >= Duration::from_millis(5015) && t[1] <= Duration::from_millis(5030));
}

#[tokio::test(start_paused = true)]
async fn capacity_counts_in_flight_samples_and_shutdown_drops_the_rest_at_the_deadline() {
    let q = QueueOptions {
        capacity: 10,
        max_shards: 3,
        ..QueueOptions::default()
    };
    let p = paused(q, std::iter::repeat_n(Reply::Hang, 100));
    for round in 0..5 {
        p.submit(Tier::Critical, round, 0..5);
    }
    assert_eq!(p.dropped("queue_full"), 15.0);
    assert_eq!(p.sender.queued_samples(), 10);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let t0 = Instant::now();
    let report = p.sender.clone().shutdown(Duration::from_secs(2)).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(
        report,
        ShutdownReport {
            flushed_samples: 0,
            dropped_samples: 10,
            completed: false
        }
    );
    assert_eq!(p.dropped("shutdown"), 10.0);
    assert_eq!(
        p.metric("surge_remote_write_queue_samples{destination=\"d\"}"),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn relabeling_runs_once_per_series_and_can_drop_or_rewrite() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let relabel: RelabelFn = Arc::new(move |l: &Labels| {
        c.fetch_add(1, Ordering::Relaxed);
        match l.get("instance") {
            Some("i0") => None,
            _ => Some(l.to_builder().set("env", "prod").clone().build()),
        }
    });
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let transport = Scripted::new([]);
    let mut opts = SenderOptions::new("d", "http://127.0.0.1:1/");
    opts.queue_config = one_shard();
    opts.write_relabel = Some(relabel);
    let sender = RemoteWriteSender::start_with_transport(opts, transport.clone(), &metrics);
    let series: Vec<_> = (0..3).map(meta).collect();
    for ts in 0..4 {
        sender.submit(Arc::new(Batch {
            tier: Tier::Critical,
            series: series
                .iter()
                .map(|s| SeriesSamples {
                    series: s.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts,
                        value: 0.0,
                    }],
                })
                .collect(),
            scrape_end_ms: ts,
        }));
    }
    let report = sender.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.flushed_samples, 8);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "once per series, then cached"
    );
    let attempts = transport.attempts.lock();
    let keys: std::collections::BTreeSet<String> = attempts
        .iter()
        .flat_map(|a| a.1.timeseries.iter().map(series_key))
        .collect();
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        [
            "__name__=m,env=prod,instance=i1",
            "__name__=m,env=prod,instance=i2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_options_disable_the_destination_and_count_drops() {
    let mut registry = Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    // Building a client needs a crypto provider; the agent installs ring at startup.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let sender = RemoteWriteSender::start(SenderOptions::new("bad", "nope"), client, &metrics);
    sender.submit(Arc::new(Batch {
        tier: Tier::Critical,
        series: vec![SeriesSamples {
            series: meta(0),
            samples: smallvec::smallvec![Sample {
                timestamp_ms: 1,
                value: 1.0,
            }],
        }],
        scrape_end_ms: 1,
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains(
        "surge_remote_write_samples_dropped_total{destination=\"bad\",reason=\"invalid_options\"} 1"
    ));
}

#[tokio::test(start_paused = true)]
async fn through_the_output_trait_the_sender_delivers_shuts_down_once_and_then_drops() {
    let p = paused(one_shard(), []);
    let output: Arc<dyn Output> = Arc::new(p.sender.clone());
    assert_eq!(output.name(), "d");
    let outputs = Outputs::new(vec![output.clone()]);
    // An empty batch is not handed to any output.
    outputs.submit(Batch {
        tier: Tier::Standard,
        series: Vec::new(),
        scrape_end_ms: 0,
    });
    p.submit(Tier::Standard, 1, 0..3);
    let reports = outputs.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        reports,
        [(
            "d",
            ShutdownReport {
                flushed_samples: 3,
                dropped_samples: 0,
                completed: true
            }
        )]
    );
    // Idempotent: a second shutdown has nothing left to report.
    assert_eq!(
        output.shutdown(Duration::from_secs(5)).await,
        ShutdownReport {
            flushed_samples: 0,
            dropped_samples: 0,
            completed: true
        }
    );
    // After shutdown, submits are dropped and counted.
    p.submit(Tier::Critical, 2, 0..2);
    assert_eq!(p.dropped("shutdown"), 2.0);
    assert_eq!(p.transport.attempts.lock().len(), 1);
}

#[test]
fn retry_after_http_dates_are_read_by_the_calendar() {
    // Sun, 06 Nov 1994 08:49:27 GMT
    let now = UNIX_EPOCH + Duration::from_secs(784_111_767);
    let check = |input: &str, expect: Option<u64>| {
        let got = parse_retry_after(input, now);
        assert_eq!(got, expect.map(Duration::from_secs), "{input:?}");
    };
    // A weekday that does not match the date: the date is what the receiver meant.
    check("Mon, 06 Nov 1994 08:49:37 GMT", Some(10));
    // A leap second is read as the second before it.
    check("Sun, 06 Nov 1994 08:49:60 GMT", Some(32));
    // Days that do not exist, and dates before the epoch.
    check("Tue, 31 Feb 1995 08:49:37 GMT", None);
    check("Wed, 31 Dec 1969 23:59:59 GMT", None);
    check("Thu, 01 Jan 1970 00:00:00 GMT", Some(0));
    // Other zones and two-digit years are not IMF-fixdate.
    check("Sun, 06 Nov 1994 08:49:37 +0000", None);
    check("Sun, 06 Nov 94 08:49:37 GMT", None);
}

/// The destination hangs, so nothing leaves the queue: standard volume stops at its ceiling (78 of 100),
/// the critical tier still has its own room (to 98), and a scrape's health series (the batch's tail)
/// get the last 2 even when both tiers have filled everything they may.
#[tokio::test(start_paused = true)]
async fn health_series_and_the_critical_tier_keep_room_of_their_own() {
    let q = QueueOptions {
        capacity: 100,
        ..QueueOptions::default()
    };
    let p = paused(q, std::iter::repeat_n(Reply::Hang, 100));
    p.submit(Tier::Standard, 1, 0..90);
    assert_eq!(p.sender.queued_samples(), 78);
    assert_eq!(p.dropped("queue_full"), 12.0);
    p.submit(Tier::Critical, 2, 100..130);
    assert_eq!(p.sender.queued_samples(), 98);
    assert_eq!(p.dropped("queue_full"), 12.0 + 10.0);
    // A scrape of 3 data series and 2 health series: the data does not fit, its health does.
    let series = (200..205)
        .map(|i| SeriesSamples {
            series: meta(i),
            samples: smallvec::smallvec![Sample {
                timestamp_ms: 3,
                value: 1.0,
            }],
        })
        .collect();
    let batch = Arc::new(Batch {
        tier: Tier::Critical,
        series,
        scrape_end_ms: 3,
    });
    Output::submit_with_health(&p.sender, batch, 2);
    assert_eq!(p.sender.queued_samples(), 100);
    assert_eq!(p.dropped("queue_full"), 22.0 + 3.0);
    assert_eq!(Output::max_scrape_samples(&p.sender), Some(25));
}

/// A tracked batch reports once, after its last request ends: a batch split over three requests
/// (delivered after a retry, refused with 400, delivered) settles with the refused samples as dropped;
/// a batch cancelled at the shutdown deadline settles with its samples unsettled.
#[tokio::test(start_paused = true)]
async fn a_tracked_batch_reports_its_fate_once_every_request_has_ended() {
    let q = QueueOptions {
        max_shards: 1,
        max_samples_per_send: 4,
        ..QueueOptions::default()
    };
    let p = paused(
        q,
        [
            Reply::Status(503, None),
            Reply::Status(204, None),
            Reply::Status(400, None),
            Reply::Status(204, None),
            Reply::Hang,
        ],
    );
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let tracked = |ts: i64, n: usize| {
        let series = (0..n)
            .map(|i| SeriesSamples {
                series: meta(i),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: 1.0,
                }],
            })
            .collect();
        let o = outcomes.clone();
        p.sender.submit_tracked(
            Arc::new(Batch {
                tier: Tier::Critical,
                series,
                scrape_end_ms: ts,
            }),
            Box::new(move |outcome| o.lock().push((ts, outcome))),
        );
    };
    tracked(1, 10);
    p.transport.wait_attempts(4).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        *outcomes.lock(),
        vec![(
            1,
            BatchOutcome {
                samples: 10,
                delivered: 6,
                dropped: 4
            }
        )]
    );
    tracked(2, 3);
    p.transport.wait_attempts(5).await;
    assert_eq!(
        outcomes.lock().len(),
        1,
        "a hanging request has not settled"
    );
    let _ = p.sender.clone().shutdown(Duration::from_secs(1)).await;
    let last = outcomes.lock()[1];
    assert_eq!(last.0, 2);
    assert_eq!(last.1.unsettled(), 3);
}
