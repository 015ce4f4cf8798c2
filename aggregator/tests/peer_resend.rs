//! An agent's resend after a peer's copy, end to end in one process: replica B copies the window from
//! replica A over a real socket (`/internal/v1/peer/dump` → `warm_up_from_peers`), then an agent writes
//! to B what it had already sent to A, plus one new sample. The resent samples are duplicates (their own
//! counter), not out-of-order rejections; the write answers 204 and B holds every sample once.

// Helpers outside `#[test]` fns are test code too; a panic there is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;
use surge_aggregator::peers::{PeerClient, WarmUpOptions, warm_up_from_peers};
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, now_ms, router,
};
use surge_proto::remote_write::{Label, ProtoSample, TimeSeries, WriteRequest};
use tower::ServiceExt;

fn replica() -> Arc<AggregatorState> {
    AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    )
}

/// A snappy remote-write body of one series `up{job="web"}` with `samples`.
fn body(samples: &[(i64, f64)]) -> Vec<u8> {
    let series = TimeSeries {
        labels: [("__name__", "up"), ("job", "web")]
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| ProtoSample { value, timestamp })
            .collect(),
    };
    let raw = WriteRequest {
        timeseries: vec![series],
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// Writes as the surge agent does; the status.
async fn write(st: &Arc<AggregatorState>, samples: &[(i64, f64)]) -> StatusCode {
    let req = Request::post("/api/v1/write")
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::USER_AGENT, "surge-agent/0.1.0")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body(samples)))
        .unwrap();
    router(st.clone()).oneshot(req).await.unwrap().status()
}

async fn metrics(st: &Arc<AggregatorState>) -> String {
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The value of the line starting with `prefix`, 0 when absent.
fn counter(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_resend_after_a_peer_copy_is_a_duplicate_not_out_of_order() {
    // A has ten samples of the last ten seconds and serves its dump.
    let t0 = now_ms() - 20_000;
    let sent: Vec<(i64, f64)> = (0..10).map(|i| (t0 + i * 1000, i as f64 * 1.5)).collect();
    let a = replica();
    assert_eq!(write(&a, &sent).await, StatusCode::NO_CONTENT);
    a.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(axum::serve(listener, router(a.clone())).into_future());

    // B copies it.
    let b = replica();
    let (_peers_tx, peers) = tokio::sync::watch::channel(vec![address.clone()]);
    let client = PeerClient {
        scheme: "http".into(),
        ..PeerClient::default()
    };
    let opts = WarmUpOptions {
        timeout: Duration::from_secs(10),
        max_bytes: 1 << 20,
        window: Duration::from_secs(300),
        own_port: 0,
    };
    let report = warm_up_from_peers(&b, peers, &client, &opts).await;
    assert_eq!(report.peer.as_deref(), Some(address.as_str()), "{report:?}");
    assert_eq!(report.samples, 10, "{report:?}");

    // The agent resends the last five it had sent to A (B refused them while copying) and a new one.
    let mut resend = sent[5..].to_vec();
    resend.push((t0 + 10_000, 15.0));
    assert_eq!(write(&b, &resend).await, StatusCode::NO_CONTENT);

    let text = metrics(&b).await;
    let duplicates = counter(
        &text,
        "surge_aggregator_ingest_duplicate_samples_total{sender=\"surge-agent\"}",
    );
    let out_of_order = counter(
        &text,
        "surge_aggregator_ingest_rejected_samples_total{sender=\"surge-agent\",reason=\"out_of_order\"}",
    );
    assert_eq!((duplicates, out_of_order), (5.0, 0.0), "{text}");
    // The copy's ten and the new one, each once.
    let ingested = counter(
        &text,
        "surge_aggregator_ingest_samples_total{sender=\"surge-agent\"}",
    );
    assert_eq!(ingested, 1.0, "{text}");
    let series = b.cache().select(&[], usize::MAX).unwrap();
    assert_eq!(series.len(), 1);
    let held = series[0].read(|r| r.len());
    assert_eq!(held, 11);

    // A changed value at a held timestamp is still refused as out of order (and the write still 204).
    assert_eq!(
        write(&b, &[(t0 + 3000, -1.0)]).await,
        StatusCode::NO_CONTENT
    );
    let text = metrics(&b).await;
    let out_of_order = counter(
        &text,
        "surge_aggregator_ingest_rejected_samples_total{sender=\"surge-agent\",reason=\"out_of_order\"}",
    );
    assert_eq!(out_of_order, 1.0, "{text}");
}
