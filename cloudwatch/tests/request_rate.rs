//! The PutMetricData request-rate figure: calls per second against the minimum the per-call limits
//! allow for the sample rate, under tokio's paused clock with a receiver that only counts (the cutting
//! is the real `pmd::cut_calls`; the network is not what is measured).
//!
//! Workload: 20 targets × 100 series scraped every second (critical tier), each target's scrape
//! submitted as its own batch, the 20 spread evenly over the second: 2,000 samples/s, all distinct
//! metrics, so the limits allow no fewer than 2,000 / 1,000 = 2 calls per second.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use surge_cloudwatch::pmd::{Datum, MAX_DATA_PER_CALL, cut_calls};
use surge_cloudwatch::points::{Layout, Preparer};
use surge_model::{Labels, Sample, Tier};
use surge_sender::{
    Attempt, Batch, Chunk, Deliver, Encoded, Output, QueuedOptions, QueuedOutput, SendFuture,
    SenderMetrics, SeriesMeta, SeriesSamples,
};

const TARGETS: usize = 20;
const SERIES: usize = 100;
const SECONDS: i64 = 60;

struct Counting {
    preparer: Preparer,
    calls: Arc<AtomicUsize>,
    data: Arc<AtomicUsize>,
}

impl Deliver for Counting {
    type Request = Vec<Datum>;

    fn encode(&self, chunk: &Chunk) -> Encoded<Vec<Datum>> {
        let prepared = self.preparer.prepare(chunk);
        cut_calls(&prepared.points, 1_800_000_000_000 + SECONDS * 1000)
    }

    fn send<'a>(&'a self, request: &'a Vec<Datum>) -> SendFuture<'a> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.data.fetch_add(request.len(), Ordering::Relaxed);
        Box::pin(async { Attempt::Delivered { bytes: 0 } })
    }
}

/// Runs the workload; returns (calls per second, data delivered).
async fn run(budget: Option<f64>) -> (f64, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let data = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::default();
    let out = QueuedOutput::start(
        QueuedOptions {
            max_requests_per_second: budget,
            ..QueuedOptions::new("rate")
        },
        Counting {
            preparer: Preparer::new(Layout {
                dimensions: vec!["pod".into()],
                counter_pattern: None,
            }),
            calls: calls.clone(),
            data: data.clone(),
        },
        &SenderMetrics::new(&mut registry),
    );
    let targets: Vec<Vec<SeriesMeta>> = (0..TARGETS)
        .map(|t| {
            (0..SERIES)
                .map(|s| {
                    SeriesMeta::new(Labels::from_pairs([
                        ("__name__", format!("m{s}")),
                        ("pod", format!("p{t}")),
                    ]))
                })
                .collect()
        })
        .collect();
    let start = tokio::time::Instant::now();
    for second in 0..SECONDS {
        for series in &targets {
            let ts = 1_800_000_000_000 + second * 1000;
            out.submit(Arc::new(Batch {
                tier: Tier::Critical,
                series: series
                    .iter()
                    .map(|s| SeriesSamples {
                        series: s.clone(),
                        samples: smallvec::smallvec![Sample {
                            timestamp_ms: ts,
                            value: 1.0
                        }],
                    })
                    .collect(),
                scrape_end_ms: ts,
            }));
            tokio::time::sleep(Duration::from_millis(1000 / TARGETS as u64)).await;
        }
    }
    let report = out.shutdown(Duration::from_secs(60)).await;
    assert!(report.completed);
    let elapsed = start.elapsed().as_secs_f64();
    (
        calls.load(Ordering::Relaxed) as f64 / elapsed,
        data.load(Ordering::Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn put_metric_data_calls_per_second_against_the_minimum() {
    let minimum = (TARGETS * SERIES) as f64 / MAX_DATA_PER_CALL as f64;
    let (unbudgeted, data) = run(None).await;
    assert_eq!(
        data,
        TARGETS * SERIES * SECONDS as usize,
        "every sample delivered"
    );
    let (budgeted, data) = run(Some(2.5)).await;
    assert_eq!(
        data,
        TARGETS * SERIES * SECONDS as usize,
        "every sample delivered"
    );
    eprintln!(
        "PutMetricData calls/s for 2000 samples/s in 20 batches/s: minimum {minimum:.2}; \
         no budget {unbudgeted:.2} (ratio {:.2}); max_requests_per_second 2.5: {budgeted:.2} (ratio {:.2})",
        unbudgeted / minimum,
        budgeted / minimum
    );
    // Without a budget every critical batch leaves at once: one call per target scrape.
    assert!((19.0..=21.0).contains(&unbudgeted), "{unbudgeted}");
    // With one, batches that wait for a slot are coalesced: at most the budget, never below the minimum.
    assert!(
        budgeted <= 2.5 + 0.1 && budgeted >= minimum * 0.9,
        "{budgeted}"
    );
}
