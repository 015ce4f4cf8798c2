//! The durable queue against a real HTTP receiver in this process (an axum remote-write endpoint whose
//! answer the test switches between 204 and 500, or that is not listening at all): outages, restarts,
//! a full disk budget and corrupt segments, each counted sample by sample.
//!
//! A real receiver rather than Prometheus here so each test can fail it on cue in milliseconds; the
//! real-process fault tests (`tests/tests/durable_faults.rs`) use Prometheus.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use prost::Message;
use surge_model::{Labels, Sample, Tier};
use surge_sender::{
    Batch, Output, QueueOptions, RemoteWriteSender, SenderMetrics, SenderOptions, SeriesMeta,
    SeriesSamples,
};
use surge_wal::{DurableOptions, DurableOutput, FsyncPolicy, WalMetrics, WhenFull};

/// Every (series name, timestamp) received with 2xx, in arrival order.
#[derive(Default)]
struct Receiver {
    status: AtomicU16,
    got: Mutex<Vec<(String, i64)>>,
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver {
        status: AtomicU16::new(204),
        ..Receiver::default()
    });
    let state = r.clone();
    let app = axum::Router::new().route(
        "/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let status = state.status.load(Ordering::SeqCst);
                if status == 204 {
                    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    let req = surge_proto::remote_write::WriteRequest::decode(&raw[..]).unwrap();
                    let mut got = state.got.lock();
                    for ts in req.timeseries {
                        let name = ts
                            .labels
                            .iter()
                            .find(|l| l.name == "__name__")
                            .map(|l| l.value.clone())
                            .unwrap();
                        for s in ts.samples {
                            got.push((name.clone(), s.timestamp));
                        }
                    }
                }
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

fn batch(ts: i64, series: usize) -> Arc<Batch> {
    Arc::new(Batch {
        tier: Tier::Critical,
        series: (0..series)
            .map(|i| SeriesSamples {
                series: SeriesMeta::new(Labels::from_pairs([(
                    "__name__",
                    format!("m{i}").as_str(),
                )])),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: ts as f64,
                }],
            })
            .collect(),
        scrape_end_ms: ts,
    })
}

struct Queue {
    out: Arc<DurableOutput>,
    registry: Registry,
}

fn start(url: &str, opts: DurableOptions) -> Queue {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut registry = Registry::default();
    let sm = SenderMetrics::new(&mut registry);
    let wm = WalMetrics::new(&mut registry);
    let mut so = SenderOptions::new("d", url);
    so.queue_config = QueueOptions {
        capacity: 2_000,
        max_backoff: Duration::from_millis(50),
        min_backoff: Duration::from_millis(5),
        ..QueueOptions::default()
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let sender = RemoteWriteSender::try_start(so, client, &sm).unwrap();
    let (out, _) = DurableOutput::start(opts, sender, 2_000, &wm).unwrap();
    Queue { out, registry }
}

impl Queue {
    fn metric(&self, name: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.split(' ').nth(1)?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

fn options(dir: &std::path::Path) -> DurableOptions {
    DurableOptions {
        fsync: FsyncPolicy::Batch(Duration::from_millis(10)),
        memory_samples: 500,
        ..DurableOptions::new(dir)
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Per series, the timestamps must arrive rising (each once, barring the duplicates counted by the
/// caller), and the set must be exactly `expected`.
fn check_order(got: &[(String, i64)]) {
    let mut last = std::collections::HashMap::new();
    for (name, ts) in got {
        let prev = last.insert(name.clone(), *ts);
        assert!(prev.is_none_or(|p| p <= *ts), "{name}: {ts} after {prev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_memory_window_is_replayed_from_disk_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    let q = start(&url, options(dir.path()));
    for ts in 0..20 {
        q.out.submit(batch(ts, 50));
    }
    wait_for("healthy delivery", || rx.got.lock().len() == 1000).await;
    rx.status.store(500, Ordering::SeqCst);
    // 100 batches of 50 samples: twenty times the sender's window and ten times the memory window.
    for ts in 20..120 {
        q.out.submit(batch(ts, 50));
    }
    q.out.flush().await;
    assert!(q.out.backlog_samples() >= 4000);
    assert!(q.out.disk_bytes() > 0);
    rx.status.store(204, Ordering::SeqCst);
    wait_for("the backlog", || q.out.backlog_samples() == 0).await;
    let got = rx.got.lock().clone();
    check_order(&got);
    let distinct: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), 120 * 50);
    assert!(
        q.metric("surge_wal_replayed_samples_total") > 0,
        "read back from disk"
    );
    assert_eq!(q.metric("surge_wal_samples_dropped_total"), 0);
    assert_eq!(q.metric("surge_remote_write_samples_dropped_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_sending_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    {
        let q = start(&url, options(dir.path()));
        for ts in 0..10 {
            q.out.submit(batch(ts, 10));
        }
        wait_for("delivery", || rx.got.lock().len() == 100).await;
        wait_for("the cursor", || q.out.backlog_samples() == 0).await;
        rx.status.store(500, Ordering::SeqCst);
        for ts in 10..30 {
            q.out.submit(batch(ts, 10));
        }
        // A stop while the destination fails: nothing more is delivered, all of it stays on disk.
        q.out.shutdown(Duration::from_millis(200)).await;
    }
    assert_eq!(rx.got.lock().len(), 100);
    rx.status.store(204, Ordering::SeqCst);
    let q = start(&url, options(dir.path()));
    q.out.submit(batch(30, 10));
    wait_for("the replay", || q.out.backlog_samples() == 0).await;
    let got = rx.got.lock().clone();
    check_order(&got);
    let distinct: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), 310);
    // Nothing acknowledged before the stop is sent again.
    assert_eq!(got.len(), 310, "no duplicates: the cursor was persisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_drops_the_oldest_segments_and_counts_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    rx.status.store(500, Ordering::SeqCst);
    let opts = DurableOptions {
        max_bytes: 64 << 10,
        when_full: WhenFull::DropOldest,
        ..options(dir.path())
    };
    let q = start(&url, opts);
    for ts in 0..200 {
        q.out.submit(batch(ts, 20));
        if ts % 20 == 0 {
            q.out.flush().await;
        }
    }
    q.out.flush().await;
    assert!(q.out.disk_bytes() <= 64 << 10, "{}", q.out.disk_bytes());
    rx.status.store(204, Ordering::SeqCst);
    wait_for("the backlog", || q.out.backlog_samples() == 0).await;
    let got = rx.got.lock().clone();
    check_order(&got);
    let distinct: BTreeSet<_> = got.iter().cloned().collect();
    let dropped =
        q.metric("surge_wal_samples_dropped_total{destination=\"d\",reason=\"wal_full\"}");
    assert!(dropped > 0);
    assert_eq!(distinct.len() as u64 + dropped, 200 * 20);
    // The newest samples survive.
    assert!(distinct.contains(&("m0".to_owned(), 199)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_keeps_the_oldest_and_refuses_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    rx.status.store(500, Ordering::SeqCst);
    let opts = DurableOptions {
        max_bytes: 64 << 10,
        when_full: WhenFull::Backpressure,
        ..options(dir.path())
    };
    let q = start(&url, opts);
    for ts in 0..200 {
        q.out.submit(batch(ts, 20));
        q.out.flush().await;
    }
    rx.status.store(204, Ordering::SeqCst);
    wait_for("the backlog", || q.out.backlog_samples() == 0).await;
    let distinct: BTreeSet<_> = rx.got.lock().iter().cloned().collect();
    let dropped =
        q.metric("surge_wal_samples_dropped_total{destination=\"d\",reason=\"wal_full\"}");
    assert!(dropped > 0);
    assert_eq!(distinct.len() as u64 + dropped, 200 * 20);
    assert!(
        distinct.contains(&("m0".to_owned(), 0)),
        "the oldest is kept"
    );
    assert!(
        !distinct.contains(&("m0".to_owned(), 199)),
        "the newest is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_segment_is_skipped_and_counted_and_the_rest_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    rx.status.store(500, Ordering::SeqCst);
    let opts = DurableOptions {
        segment_bytes: 4096,
        max_bytes: 1 << 20,
        ..options(dir.path())
    };
    {
        let q = start(&url, opts.clone());
        for ts in 0..60 {
            q.out.submit(batch(ts, 10));
            q.out.flush().await;
        }
        q.out.shutdown(Duration::from_millis(100)).await;
    }
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "{segs:?}");
    // Flip a byte in the middle of the second segment, and cut the last one mid-record.
    let mut b = std::fs::read(&segs[1]).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&segs[1], b).unwrap();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    rx.status.store(204, Ordering::SeqCst);
    let q = start(&url, opts.clone());
    let lost = q.metric("surge_wal_lost_batches_total");
    assert!(lost >= 2, "the corrupt record and the torn one: {lost}");
    assert!(q.metric("surge_wal_corrupt_bytes_total") > 0);
    q.out.submit(batch(60, 10));
    wait_for("the replay", || q.out.backlog_samples() == 0).await;
    let got = rx.got.lock().clone();
    check_order(&got);
    let batches: BTreeSet<i64> = got.iter().map(|g| g.1).collect();
    // Every batch is delivered whole or is among the lost ones; the new one arrives.
    assert_eq!(batches.len() as u64 + lost, 61);
    assert!(batches.contains(&60));
    // A second open finds nothing more wrong: the torn tail was cut, the bad segment deleted once sent.
    q.out.shutdown(Duration::from_millis(100)).await;
    drop(q);
    let q = start(&url, opts);
    assert_eq!(q.metric("surge_wal_corrupt_bytes_total"), 0);
}

/// One target's scrape: `data` series named `{target}_m{i}` and then its five health series
/// (`{target}_up`, …), the last five of the batch, as the agent ships them.
fn scrape(target: &str, ts: i64, data: usize) -> Arc<Batch> {
    let names = (0..data)
        .map(|i| format!("{target}_m{i}"))
        .chain((0..5).map(|k| format!("{target}_up{k}")));
    Arc::new(Batch {
        tier: Tier::Critical,
        series: names
            .map(|name| SeriesSamples {
                series: SeriesMeta::new(Labels::from_pairs([("__name__", name.as_str())])),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: 1.0,
                }],
            })
            .collect(),
        scrape_end_ms: ts,
    })
}

fn health_received(rx: &Receiver, target: &str) -> usize {
    rx.got
        .lock()
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{target}_up")))
        .count()
}

/// The sender behind the queue keeps a health room (a fiftieth of its capacity of 2 000: 40 samples).
/// Target `a`'s scrape is larger than the rest of the queue; `b` scrapes beside it. Both targets' health
/// series arrive and only `a`'s overflow is dropped, counted as `queue_full`. Before the queue passed
/// the health count on, `a`'s health series were the tail of a batch cut at the queue's ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_series_keep_their_room_behind_the_durable_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    let q = start(&url, options(dir.path()));
    q.out.submit_with_health(scrape("a", 1, 1_990), 5);
    q.out.submit_with_health(scrape("b", 1, 10), 5);
    wait_for("the backlog", || q.out.backlog_samples() == 0).await;
    assert_eq!(health_received(&rx, "a"), 5, "a's own health series");
    assert_eq!(health_received(&rx, "b"), 5, "b's health series");
    let queue_full = q.metric(
        "surge_remote_write_samples_dropped_total{destination=\"d\",reason=\"queue_full\"}",
    );
    // The critical tier may fill 2 000 − 40: 1 960 of a's 1 990 data samples fit.
    assert_eq!(queue_full, 30);
    assert_eq!(rx.got.lock().len() as u64 + queue_full, 2_010);
    assert_eq!(q.out.max_scrape_samples(), Some(500), "the sender's bound");
}

/// Under `backpressure`, a full disk refuses a scrape's data but keeps its health series (a fiftieth
/// of `max_bytes` is theirs), so the aggregator still learns every target's `up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_backpressure_keeps_the_health_series() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = receiver().await;
    rx.status.store(500, Ordering::SeqCst);
    let opts = DurableOptions {
        max_bytes: 64 << 10,
        when_full: WhenFull::Backpressure,
        ..options(dir.path())
    };
    let q = start(&url, opts);
    // Fill the budget with another target's volume.
    for ts in 0..200 {
        q.out.submit(batch(ts, 20));
        q.out.flush().await;
    }
    let refused_before =
        q.metric("surge_wal_samples_dropped_total{destination=\"d\",reason=\"wal_full\"}");
    assert!(refused_before > 0, "the budget is used up");
    q.out.submit_with_health(scrape("t", 200, 20), 5);
    q.out.flush().await;
    let refused =
        q.metric("surge_wal_samples_dropped_total{destination=\"d\",reason=\"wal_full\"}");
    assert_eq!(
        refused - refused_before,
        20,
        "the data is refused, the health kept"
    );
    rx.status.store(204, Ordering::SeqCst);
    wait_for("the backlog", || q.out.backlog_samples() == 0).await;
    assert_eq!(health_received(&rx, "t"), 5);
    assert!(rx.got.lock().iter().all(|(n, _)| !n.starts_with("t_m")));
}
