//! [`QueuedOutput`] under tokio's paused clock with a scripted receiver: every test is exact about what
//! was sent, when (virtual time), and what was counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use surge_model::{Labels, Sample, Tier};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::{SeriesMeta, SeriesSamples};

/// One request as the scripted receiver saw it: each sample as (series index, timestamp).
type Request = Vec<(usize, i64)>;

/// A receiver that answers from a script (then `Delivered`), and records every attempt and its time.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Attempt>>,
    attempts: Mutex<Vec<(Instant, Request)>>,
    /// When set, `send` waits for a notification (a receiver that hangs).
    hold: Option<Arc<Notify>>,
    /// Samples whose value is NaN are refused by the encoder (to exercise encoder drops).
    refuse_nan: bool,
    /// Requests carry at most this many samples (to exercise multi-request chunks).
    per_request: usize,
}

#[derive(Clone)]
struct Scripted(Arc<Script>);

impl Deliver for Scripted {
    type Request = Request;

    const KIND: &'static str = "scripted";

    fn encode(&self, chunk: &Chunk) -> Encoded<Request> {
        let mut out = Encoded::default();
        let mut all = Vec::new();
        let mut nan = 0;
        for batch in &chunk.batches {
            for s in &batch.series {
                let idx = series_index(&s.series);
                for p in &s.samples {
                    if self.0.refuse_nan && p.value.is_nan() {
                        nan += 1;
                    } else {
                        all.push((idx, p.timestamp_ms));
                    }
                }
            }
        }
        if nan > 0 {
            out.dropped.push(("nan", nan));
        }
        for piece in all.chunks(self.0.per_request.max(1)) {
            out.requests.push(Cut {
                request: piece.to_vec(),
                samples: piece.len(),
                highest_timestamp_ms: piece.iter().map(|p| p.1).max(),
            });
        }
        out
    }

    fn send<'a>(&'a self, request: &'a Request) -> SendFuture<'a> {
        Box::pin(async move {
            self.0
                .attempts
                .lock()
                .push((Instant::now(), request.clone()));
            if let Some(hold) = &self.0.hold {
                hold.notified().await;
            }
            self.0
                .answers
                .lock()
                .pop_front()
                .unwrap_or(Attempt::Delivered { bytes: 10 })
        })
    }
}

fn series_index(meta: &SeriesMeta) -> usize {
    meta.labels()
        .get("i")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

fn meta(i: usize) -> SeriesMeta {
    SeriesMeta::new(Labels::from_pairs([
        ("__name__", "m".to_owned()),
        ("i", i.to_string()),
    ]))
}

/// A batch of `tier` with one sample at `ts` for each series in `series`.
fn batch(tier: Tier, series: &[usize], ts: i64) -> Arc<Batch> {
    Arc::new(Batch {
        tier,
        series: series
            .iter()
            .map(|&i| SeriesSamples {
                series: meta(i),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: 1.0
                }],
            })
            .collect(),
        scrape_end_ms: ts,
    })
}

struct Harness {
    out: QueuedOutput<Scripted>,
    script: Arc<Script>,
    registry: Registry,
}

impl Harness {
    fn new(opts: QueuedOptions, script: Script) -> Self {
        let mut registry = Registry::default();
        let metrics = SenderMetrics::new(&mut registry);
        let script = Arc::new(script);
        let out = QueuedOutput::start(opts, Scripted(script.clone()), &metrics);
        Harness {
            out,
            script,
            registry,
        }
    }

    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn attempts(&self) -> Vec<(Instant, Request)> {
        self.script.attempts.lock().clone()
    }

    fn sent(&self) -> Vec<Request> {
        self.attempts().into_iter().map(|(_, r)| r).collect()
    }
}

fn opts() -> QueuedOptions {
    QueuedOptions {
        batch_send_deadline: Duration::from_secs(5),
        max_samples_per_send: 100,
        ..QueuedOptions::new("q")
    }
}

fn script() -> Script {
    Script {
        per_request: 1000,
        ..Script::default()
    }
}

/// Lets spawned tasks run without moving the paused clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn critical_batches_leave_at_once_and_standard_ones_wait_for_the_deadline() {
    let h = Harness::new(opts(), script());
    let t0 = Instant::now();
    h.out.submit(batch(Tier::Standard, &[1], 10));
    h.out.submit(batch(Tier::Critical, &[2], 11));
    settle().await;
    assert_eq!(
        h.sent(),
        vec![vec![(2, 11)]],
        "only the critical batch left"
    );

    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert_eq!(
        h.sent().len(),
        1,
        "the standard batch waits for its deadline"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts = h.attempts();
    assert_eq!(attempts[1].1, vec![(1, 10)]);
    assert_eq!(attempts[1].0 - t0, Duration::from_secs(5));
    assert_eq!(h.out.queued_samples(), 0);
    assert_eq!(
        h.metric("surge_remote_write_samples_sent_total{destination=\"q\"}"),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn standard_batches_leave_once_max_samples_are_waiting() {
    let h = Harness::new(opts(), script());
    let all: Vec<usize> = (0..60).collect();
    h.out.submit(batch(Tier::Standard, &all, 1));
    settle().await;
    assert!(h.sent().is_empty());
    h.out.submit(batch(Tier::Standard, &all, 2));
    settle().await;
    let sent = h.sent();
    assert_eq!(sent.len(), 1, "120 samples ≥ max_samples_per_send 100");
    assert_eq!(sent[0].len(), 120);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_at_least_the_hint_and_resends_only_the_failed_request() {
    let s = Script {
        per_request: 2,
        ..script()
    };
    s.answers.lock().extend([
        Attempt::Delivered { bytes: 1 },
        Attempt::Retry {
            reason: "throttled",
            after: Some(Duration::from_secs(3)),
            detail: "slow down".into(),
        },
    ]);
    let h = Harness::new(opts(), s);
    h.out.submit(batch(Tier::Critical, &[1, 2, 3, 4], 7));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = h.attempts();
    let sent: Vec<_> = attempts.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        sent,
        vec![
            vec![(1, 7), (2, 7)],
            vec![(3, 7), (4, 7)],
            vec![(3, 7), (4, 7)],
        ],
        "the delivered first request is not sent again"
    );
    assert!(attempts[2].0 - attempts[1].0 >= Duration::from_secs(3));
    assert_eq!(
        h.metric("surge_remote_write_retries_total{destination=\"q\",reason=\"throttled\"}"),
        1.0
    );
    assert_eq!(
        h.metric("surge_remote_write_samples_sent_total{destination=\"q\"}"),
        4.0
    );
    assert_eq!(h.out.queued_samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_between_retries() {
    let s = script();
    for _ in 0..4 {
        s.answers.lock().push_back(Attempt::Retry {
            reason: "http_5xx",
            after: None,
            detail: String::new(),
        });
    }
    let o = QueuedOptions {
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
        ..opts()
    };
    let h = Harness::new(o, s);
    h.out.submit(batch(Tier::Critical, &[1], 1));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let times: Vec<Instant> = h.attempts().iter().map(|a| a.0).collect();
    assert_eq!(times.len(), 5);
    // Equal jitter: each wait is in [d/2, d] for d = 1, 2, 4, 4 s.
    for (w, d) in times.windows(2).zip([1u64, 2, 4, 4]) {
        let wait = w[1] - w[0];
        let d = Duration::from_secs(d);
        assert!(
            wait >= d / 2 && wait <= d,
            "{wait:?} outside [{:?}, {d:?}]",
            d / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn refused_requests_and_encoder_refusals_are_counted_with_their_reason() {
    let s = Script {
        refuse_nan: true,
        ..script()
    };
    s.answers.lock().push_back(Attempt::Refused {
        reason: "auth",
        detail: "The security token included in the request is invalid".into(),
    });
    let h = Harness::new(opts(), s);
    h.out.submit(batch(Tier::Critical, &[1, 2], 1));
    settle().await;
    let mut b = (*batch(Tier::Critical, &[3, 4], 2)).clone();
    b.series[0].samples[0].value = f64::NAN;
    h.out.submit(Arc::new(b));
    settle().await;
    assert_eq!(h.sent().len(), 2, "a refusal is not retried");
    assert_eq!(
        h.metric("surge_remote_write_samples_dropped_total{destination=\"q\",reason=\"auth\"}"),
        2.0
    );
    assert_eq!(
        h.metric("surge_remote_write_samples_dropped_total{destination=\"q\",reason=\"nan\"}"),
        1.0
    );
    assert_eq!(
        h.metric("surge_remote_write_samples_sent_total{destination=\"q\"}"),
        1.0
    );
    assert_eq!(h.out.queued_samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_throttling_storm_fills_the_queue_to_capacity_and_no_further() {
    let s = script();
    for _ in 0..1000 {
        s.answers.lock().push_back(Attempt::Retry {
            reason: "throttled",
            after: None,
            detail: String::new(),
        });
    }
    let o = QueuedOptions {
        capacity: 50,
        ..opts()
    };
    let h = Harness::new(o, s);
    let ten: Vec<usize> = (0..10).collect();
    for ts in 0..20 {
        h.out.submit(batch(Tier::Critical, &ten, ts));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(h.out.queued_samples() <= 50);
    }
    // The critical tier fills the queue up to `capacity` less the health room kept for `up` and the
    // other synthetic series (capacity / 50 = 1 here): whole batches of 10, so 40.
    assert_eq!(h.out.queued_samples(), 40);
    assert_eq!(
        h.metric(
            "surge_remote_write_samples_dropped_total{destination=\"q\",reason=\"queue_full\"}"
        ),
        160.0
    );
    assert_eq!(
        h.metric("surge_remote_write_queue_samples{destination=\"q\"}"),
        40.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_request_budget_spaces_attempts() {
    let o = QueuedOptions {
        max_requests_per_second: Some(2.0),
        ..opts()
    };
    let h = Harness::new(o, script());
    for ts in 0..5 {
        h.out.submit(batch(Tier::Critical, &[1], ts));
        settle().await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let times: Vec<Instant> = h.attempts().iter().map(|a| a.0).collect();
    assert!(times.len() >= 2);
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(500));
    }
    let sent: Vec<i64> = h.sent().iter().flatten().map(|p| p.1).collect();
    assert_eq!(sent, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_the_standard_lane_without_waiting_and_is_idempotent() {
    let h = Harness::new(opts(), script());
    let t0 = Instant::now();
    h.out.submit(batch(Tier::Standard, &[1, 2], 5));
    settle().await;
    let report = h.out.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        report,
        ShutdownReport {
            flushed_samples: 2,
            dropped_samples: 0,
            completed: true
        }
    );
    assert!(
        Instant::now() - t0 < Duration::from_secs(5),
        "no batching wait"
    );
    h.out.submit(batch(Tier::Critical, &[3], 6));
    assert_eq!(
        h.metric("surge_remote_write_samples_dropped_total{destination=\"q\",reason=\"shutdown\"}"),
        1.0
    );
    assert_eq!(
        h.out.shutdown(Duration::from_secs(1)).await,
        ShutdownReport {
            flushed_samples: 0,
            dropped_samples: 0,
            completed: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_at_the_deadline_and_counts_what_is_left() {
    let s = Script {
        hold: Some(Arc::new(Notify::new())),
        per_request: 1,
        ..script()
    };
    let o = QueuedOptions {
        attempt_timeout: Duration::from_secs(3600),
        ..opts()
    };
    let h = Harness::new(o, s);
    h.out.submit(batch(Tier::Critical, &[1, 2, 3], 1));
    h.out.submit(batch(Tier::Standard, &[4, 5], 1));
    settle().await;
    let t0 = Instant::now();
    let report = h.out.shutdown(Duration::from_secs(2)).await;
    assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    assert_eq!(
        report,
        ShutdownReport {
            flushed_samples: 0,
            dropped_samples: 5,
            completed: false
        }
    );
    assert_eq!(h.out.queued_samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_is_retried() {
    let s = Script {
        hold: Some(Arc::new(Notify::new())),
        ..script()
    };
    let o = QueuedOptions {
        attempt_timeout: Duration::from_secs(2),
        min_backoff: Duration::from_secs(1),
        ..opts()
    };
    let h = Harness::new(o, s);
    h.out.submit(batch(Tier::Critical, &[1], 1));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(h.attempts().len() >= 3);
    assert!(
        h.metric("surge_remote_write_retries_total{destination=\"q\",reason=\"timeout\"}") >= 2.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Random batches of both tiers, random retries and request sizes: every sample is delivered exactly
    /// once (a retried request counts once), each series in submission order, and the queue ends empty.
    #[test]
    fn every_sample_leaves_once_in_series_order(
        batches in prop::collection::vec((any::<bool>(), prop::collection::btree_set(0usize..12, 1..6)), 1..30),
        failures in prop::collection::vec(any::<bool>(), 0..40),
        per_request in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Script { per_request, ..script() };
            s.answers.lock().extend(failures.iter().map(|&f| {
                if f {
                    Attempt::Retry { reason: "http_5xx", after: None, detail: String::new() }
                } else {
                    Attempt::Delivered { bytes: 1 }
                }
            }));
            let h = Harness::new(QueuedOptions { max_samples_per_send: 7, ..opts() }, s);
            // A series belongs to one tier: even indexes critical, odd standard.
            let mut expected: HashMap<usize, Vec<i64>> = HashMap::new();
            for (ts, (_, set)) in batches.iter().enumerate() {
                for tier in [Tier::Critical, Tier::Standard] {
                    let mine: Vec<usize> = set
                        .iter()
                        .copied()
                        .filter(|i| (i % 2 == 0) == (tier == Tier::Critical))
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    for &i in &mine {
                        expected.entry(i).or_default().push(ts as i64);
                    }
                    h.out.submit(batch(tier, &mine, ts as i64));
                }
                if batches[ts].0 {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
            }
            let report = h.out.shutdown(Duration::from_secs(3600)).await;
            assert!(report.completed);
            // Each request delivered = the last attempt of each run of identical consecutive retries.
            let mut delivered: HashMap<usize, Vec<i64>> = HashMap::new();
            let attempts = h.sent();
            let answers_used = attempts.len();
            let mut answers: Vec<bool> = failures.iter().take(answers_used).map(|f| !f).collect();
            answers.resize(answers_used, true);
            for (req, ok) in attempts.iter().zip(answers) {
                if ok {
                    for &(i, ts) in req {
                        delivered.entry(i).or_default().push(ts);
                    }
                }
            }
            assert_eq!(delivered, expected);
            assert_eq!(h.out.queued_samples(), 0);
        });
    }
}

/// Keeps what is logged, to read the log lines back.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn log_lines_name_the_output_kind_and_the_destination() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = Script {
        per_request: 2,
        ..script()
    };
    s.answers.lock().extend([
        Attempt::Retry {
            reason: "throttled",
            after: None,
            detail: "slow down".into(),
        },
        Attempt::Refused {
            reason: "auth",
            detail: "bad key".into(),
        },
    ]);
    let h = Harness::new(opts(), s);
    h.out.submit(batch(Tier::Critical, &[1, 2], 7));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    let retry = text
        .lines()
        .find(|l| l.contains("scripted request failed, retrying: slow down"));
    assert!(retry.is_some_and(|l| l.contains("destination=q")), "{text}");
    let drop = text
        .lines()
        .find(|l| l.contains("scripted samples dropped: bad key"));
    assert!(drop.is_some_and(|l| l.contains("destination=q")), "{text}");
    assert!(!text.contains("remote-write"), "{text}");
}
