//! The PutMetricData request-rate figure: calls per second against the minimum the per-call limits
//! allow for the sample rate, under tokio's paused clock with a receiver that only counts (the cutting
//! is the real `pmd::cut_calls`; the network is not what is measured). A count, not a time, so the
//! ratios are asserted.
//!
//! Workload: T targets × S series scraped every second, each target's scrape submitted as its own
//! batch, the T spread evenly over the second. Every sample is a distinct metric, so the limits allow
//! no fewer than ⌈T·S / 1,000⌉ calls per second.

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

const SECONDS: i64 = 20;

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

/// One row of the figure.
struct Workload {
    targets: usize,
    series: usize,
    tier: Tier,
    budget: Option<f64>,
}

impl Workload {
    /// The fewest calls per second the limits allow (1,000 data per call).
    fn minimum(&self) -> f64 {
        (self.targets * self.series).div_ceil(MAX_DATA_PER_CALL) as f64
    }
}

/// Runs the workload; returns (calls per second, data delivered).
async fn run(w: &Workload) -> (f64, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let data = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::default();
    let out = QueuedOutput::start(
        QueuedOptions {
            max_requests_per_second: w.budget,
            capacity: 10_000_000,
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
    let targets: Vec<Vec<SeriesMeta>> = (0..w.targets)
        .map(|t| {
            (0..w.series)
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
                tier: w.tier,
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
            tokio::time::sleep(Duration::from_millis(1000 / w.targets as u64)).await;
        }
    }
    // The measured span is the scraping; what the standard lane still holds is flushed by shutdown
    // and counted, as it would have left within the next deadline.
    let elapsed = start.elapsed().as_secs_f64();
    let report = out.shutdown(Duration::from_secs(60)).await;
    assert!(report.completed);
    (
        calls.load(Ordering::Relaxed) as f64 / elapsed,
        data.load(Ordering::Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn put_metric_data_calls_per_second_against_the_minimum() {
    // (workload, bound on calls/s ÷ minimum, floor of the same ratio)
    let rows = [
        // One call per critical batch: 20 batches/s of 100 samples, where 2 calls would do.
        (
            Workload {
                targets: 20,
                series: 100,
                tier: Tier::Critical,
                budget: None,
            },
            10.5,
            9.5,
        ),
        // A budget coalesces the batches that wait for a slot: at most the budget, never below the minimum.
        (
            Workload {
                targets: 20,
                series: 100,
                tier: Tier::Critical,
                budget: Some(2.5),
            },
            1.3,
            0.9,
        ),
        // Batches of 1,000 samples: one full call each.
        (
            Workload {
                targets: 20,
                series: 1000,
                tier: Tier::Critical,
                budget: None,
            },
            1.05,
            0.95,
        ),
        // Batches of 2,500: three calls each (1,000 + 1,000 + 500).
        (
            Workload {
                targets: 20,
                series: 2500,
                tier: Tier::Critical,
                budget: None,
            },
            1.25,
            1.15,
        ),
        // The standard tier waits for 10,000 samples (or 5 s): full calls.
        (
            Workload {
                targets: 20,
                series: 100,
                tier: Tier::Standard,
                budget: None,
            },
            1.05,
            0.9,
        ),
    ];
    let mut table =
        String::from("samples/s  batches/s  tier      budget  minimum calls/s  calls/s  ratio\n");
    for (w, bound, floor) in &rows {
        let (per_second, data) = run(w).await;
        assert_eq!(
            data,
            w.targets * w.series * SECONDS as usize,
            "every sample delivered"
        );
        let ratio = per_second / w.minimum();
        table.push_str(&format!(
            "{:>9}  {:>9}  {:<8}  {:>6}  {:>15.1}  {:>7.2}  {:>5.2}\n",
            w.targets * w.series,
            w.targets,
            format!("{:?}", w.tier),
            w.budget.map_or("none".to_owned(), |b| b.to_string()),
            w.minimum(),
            per_second,
            ratio
        ));
        assert!(
            (*floor..=*bound).contains(&ratio),
            "{table}ratio {ratio:.3} outside [{floor}, {bound}]"
        );
    }
    eprintln!("PutMetricData calls per second against the minimum:\n{table}");
}
