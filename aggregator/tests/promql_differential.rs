//! Differential PromQL test against real Prometheus (Debian's 2.42, `/usr/bin/prometheus`, upstream
//! revision v2.42.0 = 225c61122d88b01d1f0eaaee0e05b6f3e0567ac0).
//!
//! The same generated remote-write bodies (counters with resets, gauges with gaps, real NaN values and a
//! staleness marker, classic histograms, several jobs and instances) go to a Prometheus started here
//! (`--web.enable-remote-write-receiver`, a temporary TSDB, a free port, killed on drop) and to surge's
//! aggregator (the real HTTP server on loopback). Then a corpus of instant and range queries, category by
//! category, runs against both `/api/v1/query` and `/api/v1/query_range` and the answers are compared:
//! values to 1e-9 relative, label sets exactly, NaN exactly, errors by HTTP status (the messages need not
//! match word for word). `sort`/`sort_desc` results are compared in order; everything else as a set.
//!
//! What Prometheus 2.42 does not know (`double_exponential_smoothing`, the quoted UTF-8 selector syntax
//! of Prometheus 3) is checked against surge alone at the end.

// Helpers outside `#[test]` fns are test code too; a panic there is a failed test (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Rng, close, enc, http, num, start_prometheus, write};
use prost::Message;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions, now_ms, serve};
use surge_proto::remote_write::{Label, ProtoSample, TimeSeries, WriteRequest};

const STEP_MS: i64 = 5_000;
const POINTS: i64 = 240; // 20 minutes

/// One generated series: labels and (timestamp, value) samples.
struct Generated {
    labels: Vec<(&'static str, String)>,
    samples: Vec<(i64, f64)>,
}

fn series_of(labels: &[(&'static str, &str)], samples: Vec<(i64, f64)>) -> Generated {
    Generated {
        labels: labels.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        samples,
    }
}

/// 20 minutes of 5 s samples ending at `end_ms`.
fn dataset(end_ms: i64) -> Vec<Generated> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let start = end_ms - (POINTS - 1) * STEP_MS;
    // A few ms of scrape jitter, as real scrapes have.
    let times: Vec<i64> = (0..POINTS)
        .map(|i| start + i * STEP_MS + (i * 7 % 5))
        .collect();
    let mut all = Vec::new();
    // Counters: several jobs, instances and codes; some reset.
    for (job, inst, rate, reset_at) in [
        ("api", "i1", 20u64, Some(150usize)),
        ("api", "i2", 50, None),
        ("web", "i3", 5, Some(200)),
        ("web", "i4", 9, Some(60)),
    ] {
        for code in ["200", "500"] {
            let scale = if code == "500" { 5 } else { 1 };
            let mut v = (rng.below(1000)) as f64;
            let mut pts = Vec::new();
            for (i, t) in times.iter().enumerate() {
                if Some(i) == reset_at {
                    v = rng.below(3) as f64;
                } else {
                    v += (rng.below(rate + 1) / scale) as f64;
                }
                pts.push((*t, v));
            }
            all.push(series_of(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", job),
                    ("instance", inst),
                    ("code", code),
                ],
                pts,
            ));
        }
        // Gauges: random walks with decimals; i3's has a 2-minute gap, i4's ends with a staleness marker.
        let mut g = 500.0 + rng.unit() * 100.0;
        let mut pts = Vec::new();
        for (i, t) in times.iter().enumerate() {
            g = ((g + (rng.unit() - 0.5) * 40.0) * 1000.0).round() / 1000.0;
            if inst == "i3" && (100..124).contains(&i) {
                continue;
            }
            if inst == "i4" && i == 220 {
                pts.push((*t, surge_model::stale_nan()));
                break;
            }
            pts.push((*t, g));
        }
        all.push(series_of(
            &[("__name__", "mem_bytes"), ("job", job), ("instance", inst)],
            pts,
        ));
        all.push(series_of(
            &[("__name__", "up"), ("job", job), ("instance", inst)],
            times
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        *t,
                        if inst == "i2" && i % 50 > 45 {
                            0.0
                        } else {
                            1.0
                        },
                    )
                })
                .collect(),
        ));
        // An info-style metric for group_left joins.
        all.push(series_of(
            &[
                ("__name__", "build_info"),
                ("instance", inst),
                ("version", if inst < "i3" { "1.2" } else { "1.3" }),
                ("team", if job == "api" { "core" } else { "edge" }),
            ],
            times.iter().map(|t| (*t, 1.0)).collect(),
        ));
    }
    // A gauge in [-1, 1] for the trigonometric functions, with an occasional real NaN value.
    for sensor in ["s1", "s2"] {
        let pts = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v = if sensor == "s2" && i % 37 == 0 {
                    f64::NAN
                } else {
                    ((rng.unit() * 2.0 - 1.0) * 1e6).round() / 1e6
                };
                (*t, v)
            })
            .collect();
        all.push(series_of(&[("__name__", "ratio"), ("sensor", sensor)], pts));
    }
    // Unix timestamps as values, for the date functions.
    all.push(series_of(
        &[("__name__", "last_seen_seconds"), ("job", "api")],
        times
            .iter()
            .map(|t| (*t, (t / 1000 - 86_400 * 40 - 3_777) as f64))
            .collect(),
    ));
    // Classic histograms, two jobs, with _sum and _count.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    for job in ["api", "web"] {
        let mut counts = [0.0f64; 6];
        let mut sum = 0.0;
        let mut bucket_pts: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 6];
        let mut sum_pts = Vec::new();
        for t in &times {
            for _ in 0..rng.below(30) {
                let x = rng.unit() * rng.unit() * 1.5;
                sum += x;
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
            sum_pts.push((*t, sum));
        }
        for (i, b) in bounds.iter().enumerate() {
            all.push(series_of(
                &[("__name__", "lat_seconds_bucket"), ("job", job), ("le", b)],
                bucket_pts[i].clone(),
            ));
        }
        all.push(series_of(
            &[("__name__", "lat_seconds_count"), ("job", job)],
            bucket_pts[5].clone(),
        ));
        all.push(series_of(
            &[("__name__", "lat_seconds_sum"), ("job", job)],
            sum_pts,
        ));
    }
    // A series that appears halfway, and one that stops early (without a marker).
    all.push(series_of(
        &[("__name__", "late_total"), ("job", "batch")],
        times[120..]
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, (i * 3) as f64))
            .collect(),
    ));
    all.push(series_of(
        &[("__name__", "early_total"), ("job", "batch")],
        times[..60]
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, (i * 2) as f64))
            .collect(),
    ));
    all
}

/// Remote-write bodies of one minute each, in time order.
fn bodies(all: &[Generated], end_ms: i64) -> Vec<Vec<u8>> {
    let start = end_ms - POINTS * STEP_MS;
    let mut out = Vec::new();
    let mut from = start;
    while from <= end_ms {
        let to = from + 60_000;
        let ts: Vec<TimeSeries> = all
            .iter()
            .filter_map(|g| {
                let samples: Vec<ProtoSample> = g
                    .samples
                    .iter()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .map(|&(t, v)| ProtoSample {
                        value: v,
                        timestamp: t,
                    })
                    .collect();
                if samples.is_empty() {
                    return None;
                }
                let mut labels: Vec<Label> = g
                    .labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.to_string(),
                        value: v.clone(),
                    })
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                Some(TimeSeries { labels, samples })
            })
            .collect();
        let raw = WriteRequest { timeseries: ts }.encode_to_vec();
        out.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
        from = to;
    }
    out
}

/// An API answer reduced to what must agree.
#[derive(Debug, Clone)]
enum Answer {
    Scalar(i64, f64),
    String(String),
    /// Label set (canonical JSON) → value, in the order returned.
    Vector(Vec<(String, f64)>),
    /// Label set → points.
    Matrix(BTreeMap<String, Vec<(i64, f64)>>),
    /// HTTP status and `errorType`.
    Error(u16, String),
}

fn ts_ms(x: &serde_json::Value) -> i64 {
    (x.as_f64().unwrap() * 1000.0).round() as i64
}

fn ask(port: u16, path: &str) -> Answer {
    let (status, body) = http(port, "GET", path, &[], &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    if v["status"] != "success" {
        return Answer::Error(status, v["errorType"].as_str().unwrap_or("").to_string());
    }
    let data = &v["data"];
    let result = &data["result"];
    match data["resultType"].as_str().unwrap() {
        "scalar" => Answer::Scalar(ts_ms(&result[0]), num(&result[1])),
        "string" => Answer::String(result[1].as_str().unwrap().to_string()),
        "vector" => Answer::Vector(
            result
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["metric"].to_string(), num(&s["value"][1])))
                .collect(),
        ),
        "matrix" => Answer::Matrix(
            result
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let pts = s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (ts_ms(&p[0]), num(&p[1])))
                        .collect();
                    (s["metric"].to_string(), pts)
                })
                .collect(),
        ),
        other => Answer::Error(0, format!("unexpected result type {other}")),
    }
}

fn same(a: &Answer, b: &Answer, ordered: bool) -> bool {
    match (a, b) {
        (Answer::Scalar(ta, x), Answer::Scalar(tb, y)) => ta == tb && close(*x, *y),
        (Answer::String(x), Answer::String(y)) => x == y,
        (Answer::Vector(x), Answer::Vector(y)) => {
            let (mut x, mut y) = (x.clone(), y.clone());
            if !ordered {
                x.sort_by(|a, b| a.0.cmp(&b.0));
                y.sort_by(|a, b| a.0.cmp(&b.0));
            }
            x.len() == y.len()
                && x.iter()
                    .zip(&y)
                    .all(|((ka, va), (kb, vb))| ka == kb && close(*va, *vb))
        }
        (Answer::Matrix(x), Answer::Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((ka, pa), (kb, pb))| {
                    ka == kb
                        && pa.len() == pb.len()
                        && pa
                            .iter()
                            .zip(pb)
                            .all(|((ta, va), (tb, vb))| ta == tb && close(*va, *vb))
                })
        }
        (Answer::Error(sa, ta), Answer::Error(sb, tb)) => sa == sb && ta == tb,
        _ => false,
    }
}

fn is_empty(a: &Answer) -> bool {
    match a {
        Answer::Vector(v) => v.is_empty(),
        Answer::Matrix(m) => m.is_empty(),
        _ => false,
    }
}

/// The corpus: (category, queries). Each instant query runs at several times, each range query over
/// two windows.
fn corpus() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "selectors and modifiers",
            vec![
                "http_requests_total",
                "http_requests_total{job=\"api\"}",
                "http_requests_total{code!=\"200\"}",
                "http_requests_total{instance=~\"i[12]\", code=~\"5..\"}",
                "http_requests_total{instance!~\"i1|i3\"}",
                "{__name__=~\"mem_.*|up\"}",
                "{job=\"batch\"}",
                "mem_bytes offset 1m",
                "mem_bytes offset -1m",
                "mem_bytes offset 90s",
                "mem_bytes @ end()",
                "mem_bytes @ start()",
                "mem_bytes @ end() offset 5m",
                "mem_bytes offset 5m @ end()",
                "rate(http_requests_total[1m] @ end())",
                "rate(http_requests_total[1m] offset 2m)",
                "rate(http_requests_total[2m] offset -1m)",
                "mem_bytes[1m]",
                "mem_bytes[30s] offset 1m",
                "ratio[20s]",
                "up < bool 1",
                "gone_never_written",
                "(mem_bytes)",
            ],
        ),
        (
            "counter functions",
            vec![
                "rate(http_requests_total[30s])",
                "rate(http_requests_total[1m])",
                "rate(http_requests_total[5m])",
                "irate(http_requests_total[1m])",
                "increase(http_requests_total[2m])",
                "increase(http_requests_total[10s])",
                "delta(mem_bytes[1m])",
                "idelta(mem_bytes[1m])",
                "resets(http_requests_total[10m])",
                "changes(up[10m])",
                "changes(mem_bytes[1m])",
                "deriv(mem_bytes[2m])",
                "deriv(http_requests_total[5m])",
                "predict_linear(mem_bytes[5m], 600)",
                "predict_linear(http_requests_total[2m], 3600)",
                "holt_winters(mem_bytes[5m], 0.5, 0.5)",
                "holt_winters(mem_bytes[2m], 0.1, 0.9)",
                "rate(late_total[5m])",
                "increase(early_total[20m])",
            ],
        ),
        (
            "over_time functions",
            vec![
                "avg_over_time(mem_bytes[1m])",
                "min_over_time(mem_bytes[2m])",
                "max_over_time(mem_bytes[2m])",
                "sum_over_time(mem_bytes[1m])",
                "count_over_time(mem_bytes[3m])",
                "quantile_over_time(0.9, mem_bytes[5m])",
                "quantile_over_time(0, mem_bytes[5m])",
                "quantile_over_time(1.5, mem_bytes[1m])",
                "stddev_over_time(mem_bytes[5m])",
                "stdvar_over_time(mem_bytes[5m])",
                "last_over_time(mem_bytes[1m])",
                "present_over_time(mem_bytes[1m])",
                "absent_over_time(mem_bytes[1m])",
                "absent_over_time(nonexistent{job=\"x\"}[1m])",
                "absent_over_time(early_total[5m])",
                "absent_over_time({job=\"batch\"}[1m])",
                "present_over_time({job=\"batch\"}[1m])",
                "avg_over_time(ratio[2m])",
                "max_over_time(ratio[1m])",
                "stddev_over_time(ratio[1m])",
                "count_over_time({job=\"batch\"}[1m])",
            ],
        ),
        (
            "math functions",
            vec![
                "abs(ratio)",
                "ceil(mem_bytes)",
                "floor(mem_bytes)",
                "round(mem_bytes)",
                "round(mem_bytes, 5)",
                "round(mem_bytes, 0.1)",
                "sqrt(mem_bytes)",
                "exp(ratio)",
                "ln(mem_bytes)",
                "log2(mem_bytes)",
                "log10(mem_bytes)",
                "sgn(ratio)",
                "sgn(ratio - ratio)",
                "sin(ratio)",
                "cos(ratio)",
                "tan(ratio)",
                "asin(ratio)",
                "acos(ratio)",
                "atan(ratio)",
                "sinh(ratio)",
                "cosh(ratio)",
                "tanh(ratio)",
                "asinh(ratio)",
                "acosh(mem_bytes)",
                "atanh(ratio)",
                "deg(ratio)",
                "rad(mem_bytes)",
                "pi()",
                "clamp(mem_bytes, 480, 520)",
                "clamp(mem_bytes, 520, 480)",
                "clamp_min(ratio, 0)",
                "clamp_max(ratio, 0)",
                "ratio atan2 ratio",
                "mem_bytes atan2 on(job, instance) mem_bytes",
            ],
        ),
        (
            "date functions",
            vec![
                "hour()",
                "minute()",
                "month()",
                "year()",
                "day_of_month()",
                "day_of_week()",
                "day_of_year()",
                "days_in_month()",
                "hour(last_seen_seconds)",
                "minute(last_seen_seconds)",
                "day_of_week(last_seen_seconds)",
                "day_of_year(last_seen_seconds)",
                "days_in_month(last_seen_seconds)",
                "month(last_seen_seconds)",
                "year(last_seen_seconds)",
                "day_of_month(vector(1709251200))",
                "days_in_month(vector(1709251200 - 86400))",
                "timestamp(mem_bytes)",
                "timestamp(mem_bytes offset 1m)",
                "timestamp(mem_bytes @ end())",
                "timestamp(rate(http_requests_total[1m]))",
                "time()",
                "time() - timestamp(up)",
            ],
        ),
        (
            "label functions",
            vec![
                "label_replace(up, \"host\", \"$1\", \"instance\", \"i(.*)\")",
                "label_replace(up, \"host\", \"x-$1-${1}y\", \"instance\", \"(.*)\")",
                "label_replace(up, \"instance\", \"\", \"instance\", \"i1\")",
                "label_replace(up, \"job\", \"$1\", \"nope\", \"(.*)\")",
                "label_replace(mem_bytes, \"__name__\", \"renamed\", \"job\", \"api\")",
                "label_replace(up, \"dst\", \"$name\", \"job\", \"(?P<name>a.*)\")",
                "label_join(up, \"both\", \"/\", \"job\", \"instance\")",
                "label_join(up, \"job\", \"\", \"nope\")",
                "label_join(up, \"joined\", \"-\", \"instance\", \"instance\", \"job\")",
                "label_join(mem_bytes, \"x\", \",\")",
            ],
        ),
        (
            "aggregations",
            vec![
                "sum(http_requests_total)",
                "sum by (job) (rate(http_requests_total[1m]))",
                "sum without (instance, code) (rate(http_requests_total[1m]))",
                "avg by (code) (mem_bytes)",
                "min by (job) (mem_bytes)",
                "max(mem_bytes) by (job)",
                "count by (job) (up)",
                "group by (job) (up)",
                "group(mem_bytes)",
                "stddev(mem_bytes)",
                "stddev by (job) (mem_bytes)",
                "stdvar without (instance) (mem_bytes)",
                "topk(2, mem_bytes)",
                "topk by (job) (1, mem_bytes)",
                "bottomk(2, rate(http_requests_total[1m]))",
                "bottomk without (code) (1, http_requests_total)",
                "topk(0, mem_bytes)",
                "topk(100, up)",
                "quantile(0.5, mem_bytes)",
                "quantile by (job) (0.9, rate(http_requests_total[1m]))",
                "quantile(-1, mem_bytes)",
                "quantile(2, mem_bytes)",
                "count_values(\"value\", up)",
                "count_values by (job) (\"v\", up)",
                "count_values without (instance) (\"v\", up)",
                "count_values(\"version\", build_info)",
                "sum(ratio)",
                "avg(ratio)",
                "max(ratio)",
                "min(ratio)",
                "quantile(0.5, ratio)",
                "sum by (__name__) ({job=\"api\"})",
                "count without () (up)",
                "sum(up) by ()",
            ],
        ),
        (
            "binary operators and matching",
            vec![
                "mem_bytes * 2 - 1",
                "-mem_bytes",
                "mem_bytes / 0",
                "mem_bytes % 7",
                "mem_bytes ^ 0.5",
                "2 ^ mem_bytes / mem_bytes",
                "mem_bytes > 500",
                "mem_bytes > bool 500",
                "500 < mem_bytes",
                "500 >= bool mem_bytes",
                "mem_bytes == mem_bytes",
                "mem_bytes != bool mem_bytes",
                "mem_bytes - on(job, instance) up",
                "mem_bytes + ignoring(code) up",
                "rate(http_requests_total[1m]) / ignoring(code) group_left up",
                "rate(http_requests_total[1m]) * on(instance) group_left(version, team) build_info",
                "build_info * on(instance) group_right(version) mem_bytes",
                "up * on(instance) group_left(team) build_info",
                "sum by (job, code) (rate(http_requests_total[1m])) / ignoring(code) group_left sum by (job) (rate(http_requests_total[1m]))",
                "http_requests_total > on(job, instance) group_left mem_bytes",
                "sum(rate(http_requests_total[30s])) / count(http_requests_total)",
                "sum by (job) (rate(http_requests_total[1m])) / on(job) count by (job) (mem_bytes)",
                "ratio + ratio",
                "ratio > 0",
                "ratio == bool ratio",
                "1 + 2 * 3 - 4 / 2 % 3 ^ 2",
                "2 ^ 3 ^ 2",
                "-2 ^ 2",
                "1 > bool 2",
                "NaN == bool NaN",
                "Inf - Inf",
                "-(mem_bytes offset 1m)",
            ],
        ),
        (
            "set operators",
            vec![
                "up and mem_bytes",
                "up and on(job) mem_bytes{instance=\"i1\"}",
                "up or mem_bytes",
                "up{instance=\"i1\"} or up{instance=\"i2\"}",
                "mem_bytes > 520 or mem_bytes < 480",
                "up unless mem_bytes",
                "up unless on(instance) (mem_bytes > 520)",
                "mem_bytes unless ignoring(job) up{instance=\"i1\"}",
                "up and ignoring(instance) mem_bytes",
                "nonexistent or up",
                "up or nonexistent",
                "nonexistent and up",
                "up unless nonexistent",
                "rate(http_requests_total[1m]) > 1 and on(instance) up == 1 or on() vector(0)",
                "up == 1 or up == 0 unless up",
                "sum(up) or vector(0)",
                "absent(nonexistent) or vector(2)",
            ],
        ),
        (
            "subqueries",
            vec![
                "max_over_time(rate(http_requests_total[1m])[5m:30s])",
                "avg_over_time(mem_bytes[5m:1m])",
                "avg_over_time(mem_bytes[5m:])",
                "rate(http_requests_total[1m:10s])",
                "min_over_time(sum by (job) (rate(http_requests_total[1m]))[10m:1m])",
                "deriv(sum(mem_bytes)[5m:15s])",
                "max_over_time(mem_bytes[2m:20s] offset 1m)",
                "max_over_time(mem_bytes[2m:20s] @ end())",
                "count_over_time((up == 1)[10m:1m])",
                "quantile_over_time(0.5, (mem_bytes - mem_bytes offset 1m)[5m:30s])",
                "sum_over_time(vector(1)[1m:10s])",
                "last_over_time(mem_bytes[1m:15s])",
                "absent_over_time(nonexistent[1m:10s])",
                "max_over_time(max_over_time(mem_bytes[1m:15s])[3m:1m])",
                "mem_bytes[1m:20s]",
                "rate(http_requests_total[30s])[2m:30s]",
                "changes(up[10m:30s])",
                "predict_linear(mem_bytes[5m:30s], 60)",
                "holt_winters(mem_bytes[5m:30s], 0.3, 0.7)",
            ],
        ),
        (
            "histograms",
            vec![
                "histogram_quantile(0.9, sum by (le) (rate(lat_seconds_bucket[1m])))",
                "histogram_quantile(0.5, rate(lat_seconds_bucket[30s]))",
                "histogram_quantile(0.99, sum by (job, le) (increase(lat_seconds_bucket[5m])))",
                "histogram_quantile(0, lat_seconds_bucket)",
                "histogram_quantile(1, lat_seconds_bucket)",
                "histogram_quantile(-0.5, lat_seconds_bucket)",
                "histogram_quantile(NaN, lat_seconds_bucket)",
                "histogram_quantile(0.9, lat_seconds_bucket{le!=\"+Inf\"})",
                "histogram_quantile(0.5, sum without (job) (lat_seconds_bucket))",
                "rate(lat_seconds_sum[1m]) / rate(lat_seconds_count[1m])",
                "histogram_count(lat_seconds_bucket)",
                "histogram_sum(lat_seconds_bucket)",
                "histogram_fraction(0, 0.5, lat_seconds_bucket)",
                "sum(rate(lat_seconds_bucket{le=\"0.25\"}[1m])) by (job) / sum(rate(lat_seconds_count[1m])) by (job)",
            ],
        ),
        (
            "absent, sort and conversions",
            vec![
                "absent(nonexistent)",
                "absent(nonexistent{job=\"x\", instance=~\"y\"})",
                "absent(nonexistent{job=\"x\", job=\"y\"})",
                "absent(up)",
                "absent(sum(nonexistent))",
                "absent(up{job=\"nope\"} offset 1m)",
                "sort(mem_bytes)",
                "sort_desc(mem_bytes)",
                "sort(rate(http_requests_total[1m]))",
                "sort_desc(sum by (job) (mem_bytes))",
                "sort(ratio)",
                "vector(1)",
                "vector(time())",
                "scalar(sum(mem_bytes))",
                "scalar(mem_bytes)",
                "scalar(nonexistent)",
                "vector(scalar(up{instance=\"i1\"}))",
                "\"a string\"",
                "42",
                "-Inf",
            ],
        ),
        (
            "dashboard and autoscaling",
            vec![
                "sum(rate(http_requests_total{job=\"api\"}[1m]))",
                "sum by (instance) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (instance) (rate(http_requests_total[5m]))",
                "100 * (1 - avg by (job) (up))",
                "topk(3, sum by (instance) (rate(http_requests_total[5m])))",
                "sum(rate(http_requests_total[2m])) / scalar(count(up == 1))",
                "max(avg_over_time(mem_bytes[2m])) / 1000",
                "ceil(sum(rate(http_requests_total[1m])) / 10)",
                "sum(rate(http_requests_total[1m])) > bool 30",
                "avg(rate(http_requests_total[30s])) by (job) * on(job) group_left count by (job) (up)",
                "clamp_min(sum(rate(http_requests_total[1m])) - 5, 0)",
                "sum by (job) (increase(http_requests_total[5m])) unless on(job) (sum by (job) (up) == 0)",
                "(sum(mem_bytes) - sum(mem_bytes offset 5m)) / sum(mem_bytes offset 5m)",
                "count(count by (version) (build_info))",
                "label_replace(sum by (instance) (rate(http_requests_total[1m])), \"pod\", \"pod-$1\", \"instance\", \"i(.*)\")",
                "max_over_time(sum(rate(http_requests_total[1m]))[5m:15s])",
            ],
        ),
        (
            "errors",
            vec![
                "rate(mem_bytes)",
                "sum(",
                "foo(bar)",
                "1 > 2",
                "mem_bytes[5m] + 1",
                "up and 1",
                "1 or up",
                "up + on(job) group_left(job) up",
                "up and on(job) group_left up",
                "topk(mem_bytes, up)",
                "count_values(1, up)",
                "quantile(\"x\", up)",
                "label_replace(up, \"host\", \"$1\", \"instance\", \"(\")",
                "label_replace(up, \"0bad\", \"$1\", \"instance\", \"(.*)\")",
                "label_join(up, \"x\", \"-\", \"1bad\")",
                "holt_winters(mem_bytes[5m], 1, 0.5)",
                "holt_winters(mem_bytes[5m], 0.5, 0)",
                "count_values(\"1x\", up)",
                "topk(NaN, up)",
                "rate({__name__=~\"up|mem_bytes\"}[1m])",
                "mem_bytes + on() mem_bytes",
                "up * on(job) group_left build_info",
                "sum(up) offset 1m",
                "mem_bytes @ 1 @ 2",
                "mem_bytes offset 1m offset 2m",
                "(mem_bytes)[5m]",
                "mem_bytes[1m][5m:]",
                "{job=~\".*\"}",
                "round(mem_bytes, 1, 2)",
                "label_join(up)",
                "hour(1, 2)",
                "mem_bytes{job=\"api\"",
                "sum by (job) (up) by (job)",
                "rate(x[5m:]) @",
                "absent()",
                "nonexistent[5m:0s]",
                "up + bool up",
                "limitk(2, up)",
                "up + on(instance) group_left(instance) build_info",
                "mem_bytes + on() group_left up",
                "mem_bytes + on(job) group_left http_requests_total",
                "http_requests_total + on(job) mem_bytes",
                "atan2(1, 2) + 0 * pi()",
            ],
        ),
    ]
}

/// Range-query-only corpus: what a dashboard draws.
const RANGE_QUERIES: &[&str] = &[
    "rate(http_requests_total[1m])",
    "sum by (job) (rate(http_requests_total[1m]))",
    "mem_bytes",
    "mem_bytes offset 1m",
    "mem_bytes @ end()",
    "mem_bytes @ start()",
    "avg_over_time(mem_bytes[1m])",
    "histogram_quantile(0.9, sum by (le) (rate(lat_seconds_bucket[1m])))",
    "absent(nonexistent)",
    "absent_over_time(early_total[1m])",
    "absent(late_total)",
    "up == 0",
    "up or vector(0)",
    "topk(2, mem_bytes)",
    "max_over_time(rate(http_requests_total[1m])[2m:30s])",
    "time()",
    "vector(time()) - timestamp(mem_bytes)",
    "hour()",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"i(.*)\")",
    "sort_desc(mem_bytes)",
    "count_values(\"v\", up)",
    "quantile(0.5, mem_bytes)",
    "stddev(mem_bytes)",
    "deriv(mem_bytes[2m])",
    "predict_linear(mem_bytes[2m], 60)",
    "changes(up[5m])",
    "resets(http_requests_total[5m])",
    "rate(http_requests_total[1m]) * on(instance) group_left(version) build_info",
    "scalar(sum(up))",
    "1 + 1",
    "rate(late_total[1m])",
    "mem_bytes[1m]",
    "quantile_over_time(0.9, mem_bytes[2m])",
    "changes(mem_bytes[1m:10s])",
    "max_over_time(mem_bytes[1m] @ end())",
    "sum by (job, code) (rate(http_requests_total[1m])) / ignoring(code) group_left sum by (job) (rate(http_requests_total[1m]))",
    "up and on(instance) (mem_bytes > 500)",
    "mem_bytes unless on(instance) up{instance=\"i1\"}",
    "label_join(up, \"both\", \"/\", \"job\", \"instance\")",
    "holt_winters(mem_bytes[2m], 0.5, 0.5)",
];

#[test]
fn promql_matches_prometheus_2_42() {
    // evaluation_interval is the default step of a subquery written `x[5m:]` (surge: 1 m as well).
    let prom = start_prometheus("  scrape_interval: 1m\n  evaluation_interval: 1m\n");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = AggregatorState::standalone(
        CacheOptions {
            retention: Duration::from_secs(40 * 60),
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

    let end = now_ms() / 1000 * 1000 - 10_000;
    let data = dataset(end);
    let series = data.len();
    for body in bodies(&data, end) {
        write(prom.port, &body);
        write(agg_port, &body);
    }
    assert_eq!(state.cache().len(), series);

    let times = [
        end,
        end - 37_500,
        end - 300_000 + 300,
        // Inside i3's gap (still within the lookback) and after i4's staleness marker.
        end - 650_000,
        end - 90_000,
        // Past the data: only the lookback remains.
        end + 200_000,
    ];
    let mut mismatches = Vec::new();
    let mut counts: Vec<(&str, usize, usize)> = Vec::new();
    let mut nonempty_total = 0;
    let mut compared_total = 0;
    for (category, queries) in corpus() {
        let mut compared = 0;
        for q in &queries {
            let ordered = q.starts_with("sort");
            let mut any_nonempty = false;
            let mut any_error = false;
            for t in times {
                let path = format!(
                    "/api/v1/query?query={}&time={}.{:03}",
                    enc(q),
                    t / 1000,
                    t % 1000
                );
                let p = ask(prom.port, &path);
                let a = ask(agg_port, &path);
                if !is_empty(&p) {
                    any_nonempty = true;
                    nonempty_total += 1;
                }
                if let Answer::Error(..) = p {
                    any_error = true;
                }
                if category != "errors"
                    && let Answer::Error(..) = p
                {
                    mismatches.push(format!("{q} @ {t}: Prometheus error {p:?}"));
                }
                if !same(&p, &a, ordered) {
                    mismatches.push(format!(
                        "[{category}] {q} @ {t}:\n  prometheus {p:?}\n  surge      {a:?}"
                    ));
                }
                compared += 1;
            }
            // A query that is empty at every time tests nothing about values: only the deliberate ones.
            let deliberately_empty = q.contains("nonexistent")
                || q.contains("never_written")
                || q.contains("topk(0")
                || q.starts_with("histogram_count")
                || q.starts_with("histogram_sum")
                || q.starts_with("histogram_fraction")
                || q.contains("up == 0 unless")
                || q.starts_with("absent(up")
                || q.starts_with("absent(sum(nonexistent")
                || *q == "clamp(mem_bytes, 520, 480)"
                || *q == "up unless mem_bytes";
            if category == "errors" && !any_error {
                mismatches.push(format!("{q}: Prometheus never refused it"));
            }
            if !any_nonempty && !deliberately_empty && category != "errors" {
                mismatches.push(format!("{q}: empty at every time (test data problem)"));
            }
        }
        counts.push((category, queries.len(), compared));
        compared_total += compared;
    }

    // Range queries: two windows, two steps.
    let mut range_compared = 0;
    for q in RANGE_QUERIES {
        for (start, stop, step) in [
            (end - 600_000, end, "15s"),
            (end - 1_100_000, end + 60_000, "47"),
        ] {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={step}",
                enc(q),
                start / 1000,
                stop / 1000
            );
            let p = ask(prom.port, &path);
            let a = ask(agg_port, &path);
            if !same(&p, &a, false) {
                mismatches.push(format!(
                    "[range] {q} {start}..{stop} step {step}:\n  prometheus {p:?}\n  surge      {a:?}"
                ));
            }
            range_compared += 1;
        }
    }
    counts.push(("range queries", RANGE_QUERIES.len(), range_compared));

    println!("category: queries, comparisons");
    for (c, n, k) in &counts {
        println!("  {c}: {n} queries, {k} comparisons");
    }
    println!(
        "total: {} queries, {} comparisons ({nonempty_total} non-empty instant answers), {} mismatches",
        counts.iter().map(|c| c.1).sum::<usize>(),
        compared_total + range_compared,
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));

    grafana_probes_match(prom.port, agg_port);

    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
}

fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(port, "GET", path, &[], &[]).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Grafana's flavour probes: `buildinfo` has Prometheus's fields (a version Grafana reads as a
/// Prometheus release), `metadata` answers as Prometheus does for data that came by remote write.
fn grafana_probes_match(prom: u16, agg: u16) {
    let (ps, p) = get_json(prom, "/api/v1/status/buildinfo");
    let (ss, a) = get_json(agg, "/api/v1/status/buildinfo");
    assert_eq!((ps, ss), (200, 200));
    assert_eq!(a["status"], "success");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&a),
        keys(&p),
        "buildinfo fields: surge {a}, prometheus {p}"
    );
    // Debian's build says `2.42.0+ds`: the release without its build metadata.
    let release = p["data"]["version"]
        .as_str()
        .unwrap()
        .split('+')
        .next()
        .unwrap();
    assert_eq!(a["data"]["version"], release);
    for path in [
        "/api/v1/metadata",
        "/api/v1/metadata?limit=5",
        "/api/v1/metadata?metric=http_requests_total",
    ] {
        let (ps, p) = get_json(prom, path);
        let (ss, a) = get_json(agg, path);
        assert_eq!((ss, &a), (ps, &p), "{path}");
    }
    let (ps, p) = get_json(prom, "/api/v1/metadata?limit=x");
    let (ss, a) = get_json(agg, "/api/v1/metadata?limit=x");
    assert_eq!((ss, &a["errorType"]), (ps, &p["errorType"]));
    assert_eq!(ss, 400);
}
