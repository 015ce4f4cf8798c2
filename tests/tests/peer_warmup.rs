//! Restart hygiene across replicas, with real `surge aggregator` processes: a replica that starts
//! beside a running one copies its recent window before it takes writes and reports ready, and
//! answers the same PromQL over that window, exactly, before any new sample arrives. A peer that is
//! down or never answers does not hold the start past `warmup_timeout`.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use surge_model::{Labels, Sample, stale_nan};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use surge_tests::{client, free_port, wait_ready};

/// A `surge aggregator` child process, killed when dropped.
struct Aggregator {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Aggregator {
    fn start(port: u16, extra: &str) -> Aggregator {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("surge.yaml");
        std::fs::write(
            &config,
            format!("aggregator:\n  listen: 127.0.0.1:{port}\n  shutdown_delay: 0s\n{extra}"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("aggregator.log")).unwrap();
        let child = Command::new(surge_tests::kubelet::surge_binary().unwrap())
            .args(["aggregator", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Aggregator {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn ready(&self) {
        wait_ready(&format!("{}/readyz", self.url()), Duration::from_secs(30))
            .await
            .unwrap();
    }

    async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn query_range(&self, q: &str, start_ms: i64, end_ms: i64) -> serde_json::Value {
        let r: serde_json::Value = client()
            .get(format!("{}/api/v1/query_range", self.url()))
            .query(&[
                ("query", q.to_owned()),
                ("start", format!("{:.3}", start_ms as f64 / 1000.0)),
                ("end", format!("{:.3}", end_ms as f64 / 1000.0)),
                ("step", "1".to_owned()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{q}: {r}");
        r["data"].clone()
    }
}

/// The value of one sample line of a Prometheus text exposition (`name{labels} value`), 0 if absent.
fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// 3 series × 120 samples a second apart, ending `end_ms`, with values that need every bit (fractions,
/// a counter reset) and a staleness marker ending one series.
fn window(end_ms: i64) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    let mut n = 0;
    for s in 0..3 {
        let id = s.to_string();
        let labels = Labels::from_pairs([
            ("__name__", "wu_requests_total"),
            ("pod", id.as_str()),
            ("job", "web"),
        ]);
        let mut samples: Vec<Sample> = (0..120)
            .map(|k| Sample {
                timestamp_ms: end_ms - (119 - k) * 1000,
                value: if k == 70 {
                    0.5
                } else {
                    (k * (s + 1)) as f64 * 1.1 + 0.3
                },
            })
            .collect();
        if s == 2 {
            samples.push(Sample {
                timestamp_ms: end_ms + 500,
                value: stale_nan(),
            });
        }
        n += samples.len();
        encode_series(&mut raw, &encode_label_block(&labels), &samples);
    }
    (compress(&raw, &mut snap::raw::Encoder::new()), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_replica_answers_like_its_peer_before_any_new_sample() {
    let (pa, pb) = (free_port(), free_port());
    let a = Aggregator::start(pa, "");
    a.ready().await;
    let end = jiff::Timestamp::now().as_millisecond() - 2_000;
    let (body, samples) = window(end);
    let r = client()
        .post(format!("{}/api/v1/write", a.url()))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // B lists itself among its peers too: it must recognise and skip itself.
    let b = Aggregator::start(
        pb,
        &format!(
            "  peers:\n    addresses: [\"127.0.0.1:{pb}\", \"127.0.0.1:{pa}\"]\n    warmup_timeout: 20s\n"
        ),
    );
    b.ready().await;

    // Nothing was written to B: every answer comes from the copy, series by series bit for bit.
    for q in [
        "wu_requests_total",
        "rate(wu_requests_total[30s])",
        "increase(wu_requests_total[1m])",
        "max_over_time(wu_requests_total[10s])",
    ] {
        let (from_a, from_b) = (
            a.query_range(q, end - 119_000, end + 2_000).await,
            b.query_range(q, end - 119_000, end + 2_000).await,
        );
        assert_eq!(from_a, from_b, "{q}");
        assert!(
            from_a["result"].as_array().is_some_and(|r| !r.is_empty()),
            "{q}: {from_a}"
        );
    }
    // Across series, a sum adds in the replica's own series order, so the last bit may differ: the
    // same values to 1e-12.
    let q = "sum by (job) (increase(wu_requests_total[1m]))";
    let points = |v: &serde_json::Value| -> Vec<(f64, f64)> {
        v["result"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_f64().unwrap(),
                    p[1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    let (from_a, from_b) = (
        points(&a.query_range(q, end - 119_000, end + 2_000).await),
        points(&b.query_range(q, end - 119_000, end + 2_000).await),
    );
    assert_eq!(from_a.len(), from_b.len());
    for ((ta, va), (tb, vb)) in from_a.iter().zip(&from_b) {
        assert_eq!(ta, tb);
        assert!(
            (va - vb).abs() <= 1e-12 * va.abs().max(1.0),
            "{q} at {ta}: {va} vs {vb}"
        );
    }
    let m = b.metrics().await;
    assert_eq!(
        metric(&m, "surge_aggregator_peer_warmup_samples_total "),
        samples as f64,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "surge_aggregator_peer_warmup_attempts_total{result=\"ok\"} "
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "surge_aggregator_peer_warmup_attempts_total{result=\"self\"} "
        ),
        1.0
    );
    assert!(metric(&m, "surge_aggregator_peer_warmup_bytes_total ") > 0.0);
    let served = a.metrics().await;
    assert_eq!(
        metric(&served, "surge_aggregator_peer_dumps_total{result=\"ok\"} "),
        1.0
    );
    // B takes writes again after the copy.
    let (body, _) = window(end + 200_000);
    let r = client()
        .post(format!("{}/api/v1/write", b.url()))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

/// A peer that refuses connections and one that accepts but never answers: the replica starts cold
/// within `warmup_timeout`, and says so in its metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_silent_peer_does_not_hold_the_start() {
    let down = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let pb = free_port();
    let started = Instant::now();
    let b = Aggregator::start(
        pb,
        &format!(
            "  peers:\n    addresses: [\"127.0.0.1:{down}\", \"127.0.0.1:{silent_port}\"]\n    warmup_timeout: 2s\n"
        ),
    );
    b.ready().await;
    let took = started.elapsed();
    // The deadline bounds the start; process start and the first readiness poll add a little.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let m = b.metrics().await;
    assert_eq!(
        metric(
            &m,
            "surge_aggregator_peer_warmup_attempts_total{result=\"error\"} "
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "surge_aggregator_peer_warmup_attempts_total{result=\"timeout\"} "
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "surge_aggregator_peer_warmup_samples_total "),
        0.0
    );
    drop(silent);
}
