//! Parity with real Prometheus (Debian's 2.42 at `/usr/bin/prometheus`): the same remote-write bodies go to
//! Prometheus and to the aggregator, then a table of instant queries at fixed times runs through both
//! `/api/v1/query` endpoints and the results are compared label set by label set (1e-9 relative tolerance).
//! `promtool query instant|range` is also run against the aggregator.
//!
//! Both binaries are required: a missing one fails the test (CI installs Debian's `prometheus`).

// Helpers outside `#[test]` fns are test code too; a panic there is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{PROMETHEUS, Rng, close, enc, http, num, start_prometheus, write};
use prost::Message;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions, now_ms, serve};
use surge_proto::remote_write::{Label, ProtoSample, TimeSeries, WriteRequest};

const PROMTOOL: &str = "/usr/bin/promtool";

fn series(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> TimeSeries {
    let mut labels: Vec<Label> = labels
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: samples
            .into_iter()
            .map(|(t, v)| ProtoSample {
                value: v,
                timestamp: t,
            })
            .collect(),
    }
}

/// 10 minutes of 1 s samples ending at `end_ms`, as remote-write bodies of one minute each.
fn dataset(end_ms: i64) -> Vec<Vec<u8>> {
    const N: i64 = 600;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let start = end_ms - (N - 1) * 1000;
    // A few ms of scrape jitter, as real scrapes have.
    let times: Vec<i64> = (0..N).map(|i| start + i * 1000 + (i * 7 % 5)).collect();
    type Series = (Vec<(&'static str, String)>, Vec<(i64, f64)>);
    let mut all: Vec<Series> = Vec::new();
    for (job, inst, rate, reset_at) in [
        ("api", "i1", 20u64, Some(400)),
        ("api", "i2", 50, None),
        ("web", "i3", 5, Some(570)),
    ] {
        let mut v = 1000.0 * rng.unit().floor();
        let mut pts = Vec::new();
        for (i, t) in times.iter().enumerate() {
            if Some(i) == reset_at {
                v = rng.below(3) as f64;
            } else {
                v += rng.below(rate + 1) as f64;
            }
            pts.push((*t, v));
        }
        all.push((
            vec![
                ("__name__", "http_requests_total".into()),
                ("job", job.into()),
                ("instance", inst.into()),
            ],
            pts,
        ));
        let g: Vec<(i64, f64)> = times
            .iter()
            .map(|t| (*t, (rng.unit() * 1000.0 * 1000.0).round() / 1000.0))
            .collect();
        all.push((
            vec![
                ("__name__", "mem_bytes".into()),
                ("job", job.into()),
                ("instance", inst.into()),
            ],
            g,
        ));
    }
    // A classic histogram.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    let mut counts = [0.0f64; 6];
    let mut bucket_pts: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 6];
    for t in &times {
        for _ in 0..rng.below(30) {
            let x = rng.unit() * rng.unit() * 1.5;
            for (i, b) in bounds.iter().enumerate() {
                let ub: f64 = if *b == "+Inf" {
                    f64::INFINITY
                } else {
                    b.parse().unwrap()
                };
                if x <= ub {
                    counts[i] += 1.0;
                }
            }
        }
        for i in 0..6 {
            bucket_pts[i].push((*t, counts[i]));
        }
    }
    for (i, b) in bounds.iter().enumerate() {
        all.push((
            vec![
                ("__name__", "lat_seconds_bucket".into()),
                ("job", "api".into()),
                ("le", b.to_string()),
            ],
            bucket_pts[i].clone(),
        ));
    }
    let mut bodies = Vec::new();
    for chunk in 0..(N as usize / 60) {
        let ts: Vec<TimeSeries> = all
            .iter()
            .map(|(l, pts)| {
                let labels: Vec<(&str, &str)> = l.iter().map(|(n, v)| (*n, v.as_str())).collect();
                series(&labels, pts[chunk * 60..(chunk + 1) * 60].to_vec())
            })
            .collect();
        let raw = WriteRequest { timeseries: ts }.encode_to_vec();
        bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
    }
    bodies
}

#[derive(Debug, PartialEq)]
enum Answer {
    Scalar(f64),
    Vector(BTreeMap<String, f64>),
    Error(String),
}

fn query(port: u16, q: &str, t_ms: i64) -> Answer {
    let path = format!(
        "/api/v1/query?query={}&time={}.{:03}",
        enc(q),
        t_ms / 1000,
        t_ms % 1000
    );
    let (_, body) = http(port, "GET", &path, &[], &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if v["status"] != "success" {
        return Answer::Error(v["errorType"].to_string());
    }
    match v["data"]["resultType"].as_str().unwrap() {
        "scalar" => Answer::Scalar(num(&v["data"]["result"][1])),
        "vector" => Answer::Vector(
            v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["metric"].to_string(), num(&s["value"][1])))
                .collect(),
        ),
        other => Answer::Error(format!("unexpected result type {other}")),
    }
}

fn same(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Scalar(x), Answer::Scalar(y)) => close(*x, *y),
        (Answer::Vector(x), Answer::Vector(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && close(*va, *vb))
        }
        (Answer::Error(x), Answer::Error(y)) => x == y,
        _ => false,
    }
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[30s])",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[1m]))",
    "sum(rate(http_requests_total[30s]))",
    "irate(http_requests_total[1m])",
    "increase(http_requests_total[2m])",
    "increase(http_requests_total[10s])",
    "rate(http_requests_total[30s] offset 1m)",
    "delta(mem_bytes[1m])",
    "avg_over_time(mem_bytes[1m])",
    "max_over_time(mem_bytes[1m])",
    "min_over_time(mem_bytes[30s])",
    "sum_over_time(mem_bytes[1m])",
    "count_over_time(mem_bytes[1m])",
    "last_over_time(mem_bytes[1m])",
    "histogram_quantile(0.9, sum by (le) (rate(lat_seconds_bucket[1m])))",
    "histogram_quantile(0.5, rate(lat_seconds_bucket[30s]))",
    "histogram_quantile(0.99, sum by (job, le) (increase(lat_seconds_bucket[5m])))",
    "sum(rate(http_requests_total[30s])) / count(http_requests_total)",
    "sum by (job) (rate(http_requests_total[1m])) / on(job) count by (job) (mem_bytes)",
    "mem_bytes > 500",
    "mem_bytes > bool 500",
    "500 < mem_bytes",
    "avg by (job) (mem_bytes) * 2 - 1",
    "max without (instance) (mem_bytes)",
    "min(mem_bytes) by (job)",
    "count(http_requests_total) by (job)",
    "avg(mem_bytes)",
    "clamp_max(rate(http_requests_total[1m]), 5)",
    "clamp_min(rate(http_requests_total[1m]), 5)",
    "abs(delta(mem_bytes[1m]))",
    "-rate(http_requests_total[1m]) % 3",
    "rate(http_requests_total[1m]) ^ 0.5",
    "mem_bytes - on(job, instance) rate(http_requests_total[1m])",
    "scalar(sum(mem_bytes))",
    "vector(1) + 2",
    "time()",
    "2 ^ 3 ^ 2",
];

#[test]
fn parity_with_prometheus_2_42() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is required (Debian's prometheus package)"
    );
    let prom = start_prometheus("  scrape_interval: 1m\n");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = AggregatorState::standalone(
        CacheOptions {
            retention: Duration::from_secs(15 * 60),
            ..CacheOptions::default()
        },
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let agg_port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));

    let end = now_ms() / 1000 * 1000 - 5_000;
    for body in dataset(end) {
        write(prom.port, &body);
        write(agg_port, &body);
    }
    assert_eq!(state.cache().len(), 12);

    let times = [
        end,
        end - 37_500,
        end - 120_000 + 300,
        end + 3_000,
        end - 299_999,
    ];
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut nonempty = 0;
    for q in QUERIES {
        for t in times {
            let p = query(prom.port, q, t);
            let a = query(agg_port, q, t);
            if let Answer::Vector(v) = &p
                && v.is_empty()
                && !q.contains('>')
                && !q.contains('<')
            {
                mismatches.push(format!(
                    "{q} @ {t}: Prometheus returned nothing (test data problem)"
                ));
            }
            match &p {
                Answer::Vector(v) if !v.is_empty() => nonempty += 1,
                Answer::Scalar(_) => nonempty += 1,
                Answer::Error(e) => mismatches.push(format!("{q} @ {t}: Prometheus error {e}")),
                _ => {}
            }
            if !same(&p, &a) {
                mismatches.push(format!(
                    "{q} @ {t}:\n  prometheus {p:?}\n  surge      {a:?}"
                ));
            }
            compared += 1;
        }
    }
    println!(
        "compared {compared} query/time pairs ({nonempty} non-empty), {} mismatches",
        mismatches.len()
    );
    assert!(
        nonempty > compared * 3 / 4,
        "too few non-empty answers: {nonempty}"
    );
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));

    // promtool against the aggregator.
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is required (Debian's prometheus package)"
    );
    {
        let url = format!("http://127.0.0.1:{agg_port}");
        let t = format!("{}", end / 1000);
        let out = Command::new(PROMTOOL)
            .args([
                "query",
                "instant",
                "--time",
                &t,
                &url,
                "sum(rate(http_requests_total[30s]))",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `{} => 40.5 @[1700000000]`
        let want = match query(agg_port, "sum(rate(http_requests_total[30s]))", end) {
            Answer::Vector(v) => v.values().next().copied().unwrap(),
            other => panic!("{other:?}"),
        };
        let line = text.lines().next().unwrap_or("");
        assert!(line.starts_with("{} => "), "{text}");
        let got: f64 = line[6..].split(" @[").next().unwrap().parse().unwrap();
        assert!(close(got, want), "{line} vs {want}");
        assert!(line.ends_with(&format!("@[{t}]")), "{line}");

        let out = Command::new(PROMTOOL)
            .args([
                "query",
                "range",
                "--start",
                &format!("{}", end / 1000 - 60),
                "--end",
                &t,
                "--step",
                "15s",
                &url,
                "sum by (job) (rate(http_requests_total[1m]))",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `{job="api"} =>` followed by five `value @[t]` lines, per series.
        assert!(text.contains("{job=\"api\"} =>"), "{text}");
        assert!(text.contains("{job=\"web\"} =>"), "{text}");
        assert_eq!(text.matches(" @[").count(), 10, "{text}");
        println!("promtool range output:\n{text}");
    }

    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    drop(Arc::clone(&state));
}
