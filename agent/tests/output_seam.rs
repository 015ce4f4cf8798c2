//! The output seam's own test: an agent given two in-memory outputs (and no remote-write destination)
//! hands every scrape's batch to both, then shuts both down (stopping the agent writes no staleness
//! markers: the target did not go away).
//!
//! The recording output is a mock on purpose: what is under test is the seam itself (that the agent
//! only needs `Output`), not any real destination; remote-write has its own tests in `surge-sender`.

// Test helpers live outside `#[test]` functions, where clippy's allow-unwrap-in-tests does not reach; a
// panic here is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use surge_agent::agent::{Agent, AgentSpec, JobSpec};
use surge_agent::relabel::Relabeler;
use surge_agent::scrape::processor::ScrapeLimits;
use surge_agent::scrape::target::{ScrapeJob, TargetGroup};
use surge_model::{Labels, Tier, is_stale_nan};
use surge_sender::{Batch, Output, ShutdownFuture, ShutdownReport};

/// An output that keeps every batch it is given, in order.
#[derive(Default)]
struct RecordingOutput {
    name: String,
    batches: Mutex<Vec<Arc<Batch>>>,
    shutdowns: Mutex<u32>,
}

impl Output for RecordingOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(&self, batch: Arc<Batch>) {
        self.batches.lock().push(batch);
    }

    fn shutdown(&self, _deadline: Duration) -> ShutdownFuture<'_> {
        *self.shutdowns.lock() += 1;
        Box::pin(async { ShutdownReport::default() })
    }
}

/// A target whose only series is `m`.
async fn serve_metrics() -> std::net::SocketAddr {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { "m 1\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn spec(target: String, outputs: Vec<Arc<dyn Output>>) -> AgentSpec {
    let job = ScrapeJob {
        name: Arc::from("app"),
        tier: Tier::Critical,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        scheme: "http".into(),
        metrics_path: "/metrics".into(),
        params: Vec::new(),
        honor_labels: false,
        honor_timestamps: true,
        limits: ScrapeLimits::default(),
        body_size_limit: 1 << 20,
        name_validation: surge_model::NameValidationScheme::Utf8,
        name_escaping: surge_model::EscapingScheme::AllowUtf8,
        relabel: Arc::new(Relabeler::new(&[]).unwrap()),
        metric_relabel: Arc::new(Relabeler::new(&[]).unwrap()),
    };
    AgentSpec {
        listen: None,
        external_labels: Labels::default(),
        shutdown_timeout: Duration::from_secs(1),
        jobs: vec![JobSpec {
            job: Arc::new(job),
            static_groups: vec![TargetGroup {
                targets: vec![target],
                labels: Vec::new(),
                source: "static".into(),
            }],
            file_sd: Vec::new(),
            dynamic: Vec::new(),
        }],
        destinations: Vec::new(),
        outputs,
        sender_metrics: None,
        endpoint_sets: Default::default(),
        durable: Default::default(),
        total_series_limit: 0,
    }
}

fn names_and_values(batch: &Batch) -> Vec<(String, f64)> {
    batch
        .series
        .iter()
        .map(|s| {
            let name = s.series.labels().metric_name().unwrap_or("").to_owned();
            (name, s.samples[0].value)
        })
        .collect()
}

#[tokio::test]
async fn every_batch_reaches_every_output_and_every_output_is_shut_down() {
    let addr = serve_metrics().await;
    let outputs: Vec<Arc<RecordingOutput>> = ["first", "second"]
        .map(|name| {
            Arc::new(RecordingOutput {
                name: name.into(),
                ..RecordingOutput::default()
            })
        })
        .into();
    let as_outputs = outputs
        .iter()
        .map(|o| o.clone() as Arc<dyn Output>)
        .collect();
    let agent = Agent::start(
        spec(addr.to_string(), as_outputs),
        Arc::new(Mutex::new(Registry::default())),
        Arc::new(|_: &std::path::Path| Ok(Vec::new())),
        Arc::new(|_: &str| Vec::new()),
    )
    .await
    .unwrap();

    // A few scrapes at 50 ms; generous bound for a loaded machine.
    tokio::time::timeout(Duration::from_secs(20), async {
        while outputs[0].batches.lock().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("three scrapes within 20 s");
    agent.shutdown().await;

    let first = outputs[0].batches.lock().clone();
    let second = outputs[1].batches.lock().clone();
    // The same batches, in the same order, shared rather than copied.
    assert_eq!(first.len(), second.len());
    assert!(first.iter().zip(&second).all(|(a, b)| Arc::ptr_eq(a, b)));
    // Every batch is a scrape: stopping the agent ends no series, so it ships no staleness markers
    // (a removed target's markers are the processor's `stop`, tested there).
    for batch in &first {
        let got = names_and_values(batch);
        assert_eq!(
            got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            [
                "m",
                "up",
                "scrape_duration_seconds",
                "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling",
                "scrape_series_added",
            ]
        );
        assert_eq!((got[0].1, got[1].1, got[3].1), (1.0, 1.0, 1.0));
        assert!(!got.iter().any(|(_, v)| is_stale_nan(*v)), "{got:?}");
    }
    assert!(outputs.iter().all(|o| *o.shutdowns.lock() == 1));
}
