//! The aggregator forwards what it ingests to a long-term store through the same sender as the agent:
//! Debian's VictoriaMetrics receives exactly the samples that were remote-written to the aggregator.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use surge_aggregator::onward::Onward;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use surge_sender::{RemoteWriteSender, SenderMetrics, SenderOptions};
use surge_tests::{client, unix_now, victoria_metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_samples_are_forwarded_to_victoria_metrics() {
    let vm = victoria_metrics().await.unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = SenderMetrics::new(&mut registry);
    let mut opts = SenderOptions::new("vm", format!("{}/api/v1/write", vm.base_url()));
    opts.queue_config.batch_send_deadline = Duration::from_millis(100);
    let sender = RemoteWriteSender::try_start(opts, client(), &metrics).unwrap();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let onward = Arc::new(Onward::new(surge_sender::Outputs::new(vec![Arc::new(
        sender.clone(),
    )])));
    state.add_observer(onward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = surge_aggregator::api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // 3 series × 5 samples, remote-written to the aggregator over HTTP.
    let now = (unix_now() * 1000.0) as i64 - 10_000;
    let mut raw = Vec::new();
    for s in 0..3 {
        let series = s.to_string();
        let l = Labels::from_pairs([
            ("__name__", "onward_total"),
            ("s", series.as_str()),
            ("job", "t"),
        ]);
        let samples: Vec<Sample> = (0..5)
            .map(|k| Sample {
                timestamp_ms: now + k * 1000,
                value: (s * 100 + k) as f64,
            })
            .collect();
        encode_series(&mut raw, &encode_label_block(&l), &samples);
    }
    let body = compress(&raw, &mut snap::raw::Encoder::new());
    let r = client()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // VictoriaMetrics' raw export shows every sample, values and timestamps exactly.
    let mut exported = Vec::new();
    for _ in 0..100 {
        let text = client()
            .get(format!("{}/api/v1/export", vm.base_url()))
            .query(&[("match[]", "onward_total")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        exported = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if exported.len() == 3
            && exported
                .iter()
                .all(|e| e["values"].as_array().map(Vec::len) == Some(5))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(exported.len(), 3, "{exported:?}");
    for e in &exported {
        let s: i64 = e["metric"]["s"].as_str().unwrap().parse().unwrap();
        assert_eq!(e["metric"]["job"], "t");
        let values: Vec<f64> = e["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let stamps: Vec<i64> = e["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            values,
            (0..5).map(|k| (s * 100 + k) as f64).collect::<Vec<_>>()
        );
        assert_eq!(stamps, (0..5).map(|k| now + k * 1000).collect::<Vec<_>>());
    }
    let report = sender.shutdown(Duration::from_secs(2)).await;
    assert_eq!(report.dropped_samples, 0);
}
