//! The Prometheus remote-write 1.0 sender compliance suite, ported, against the real `surge agent` process.
//!
//! Upstream: `prometheus/compliance`, `remotewrite/sender/` at revision
//! adfa690dd4df11f9c1bc1b130db5843fdca219f1 ("Simplify compiance sender test (#183)", 2025-10-07), the last
//! revision whose `cases/` test remote-write 1.0 (the next change to the folder, 3de836d, replaced them
//! with the remote-write 2.0 suite). The Go suite cannot run here (no Go toolchain), so each case of
//! `main_test.go`'s list is ported below, one function per case, with its name and file in a comment:
//! the same exposition served on `/metrics`, the same interception of writes, the same assertions over the
//! samples received, read the way the suite reads them (request by request, `TimeSeries` by `TimeSeries`).
//!
//! The harness is upstream's `runTest`: one HTTP server per case serves both the target (`/metrics`) and
//! the receiver (`/push`, which decodes snappy + protobuf and records every request); the sender runs for
//! 10 s with the suite's configuration (job `test`, a 1 s scrape interval, `remote_write` to `/push`) and
//! is then signalled to stop; the case's assertions run over everything received. surge's configuration is
//! otherwise the agent's defaults (queue, batching, retries, shutdown); `listen: 127.0.0.1:0` only keeps
//! the concurrent agents from fighting over the default port, as the suite passes `--web.listen-address=:0`.
//!
//! Every case runs twice: in the default tier (`standard`: batched up to `batch_send_deadline`) stopped
//! with SIGINT as the suite stops its senders, and in the `critical` tier (each scrape sent at once)
//! stopped with SIGTERM as Kubernetes stops a pod.
//!
//! Beyond upstream's assertions, every run also checks what issue 19 asks of the sender:
//! - a request read in order never goes back in time, and a series never does across requests and shards;
//! - a small scrape is never split into several requests (all samples of one scrape arrive together)
//!   while the receiver keeps up;
//! - no staleness marker for a live series when the agent stops;
//! - the remote-write 1.0 headers on every request;
//!
//! and the extra cases `Retries429`, `RetryAfterSeconds` and `RetryAfterDate` check that 429 is retried
//! and that `Retry-After` is honoured in both its forms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use prost::Message;
use surge_proto::remote_write::WriteRequest;

/// How long each sender runs (from its first scrape), as upstream's `TargetOptions.Timeout`.
const RUN_FOR: Duration = Duration::from_secs(10);

/// Prometheus's staleness marker (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

// ---------------------------------------------------------------------------------------------
// What the receiver saw

/// One sample as upstream's `SampleCollector` records it: the series' labels in wire order.
#[derive(Debug, Clone)]
struct Sample {
    labels: Vec<(String, String)>,
    t: i64,
    v: f64,
}

impl Sample {
    /// Prometheus's `labels.Labels.String()`: `{a="1", b="2"}`.
    fn series(&self) -> String {
        let inner: Vec<String> = self
            .labels
            .iter()
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }

    fn name(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map(|(_, v)| v.as_str())
    }

    fn is_stale_marker(&self) -> bool {
        self.v.to_bits() == STALE_NAN_BITS
    }
}

/// One write attempt as it reached `/push`.
#[derive(Debug, Clone)]
struct Attempt {
    headers: HeaderMap,
    /// The decoded request, or why it could not be decoded.
    request: Result<Vec<Sample>, String>,
    /// When it arrived (wall clock, ms).
    at_ms: i64,
}

/// What a case's `Writes` middleware does with one attempt.
enum Interception {
    /// Hand it to the collector (recorded, answered 204).
    Pass,
    /// Sleep, then hand it to the collector (upstream's `OrderingTest`).
    Delay(Duration),
    /// Answer with this status and headers; nothing is recorded.
    Answer(StatusCode, Vec<(header::HeaderName, String)>),
}

/// Upstream's `Test.Writes`: sees every attempt (decoded) before the collector does.
type Writes = Box<dyn Fn(&Attempt) -> Interception + Send + Sync>;

/// Upstream's `Test.Metrics`: the body of each scrape, with its content type.
type Metrics = Box<dyn Fn() -> (&'static str, String) + Send + Sync>;

/// Upstream's `Test.Expected`: failures, empty when the case passes.
type Expected = Box<dyn Fn(&Received) -> Vec<String> + Send + Sync>;

/// Everything a run received.
struct Received {
    /// Accepted requests in arrival order (upstream's `collector.Batches`).
    batches: Vec<Vec<Sample>>,
    /// Every attempt, accepted or not.
    attempts: Vec<Attempt>,
    /// Wall clock (ms) when the run ended.
    end_ms: i64,
}

impl Received {
    /// Upstream's `forAllSamples`.
    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.batches.iter().flatten()
    }
}

struct Case {
    name: &'static str,
    metrics: Metrics,
    expected: Expected,
    writes: Option<Writes>,
    /// Metric names that leave the exposition while the agent runs: the only ones that may get a
    /// staleness marker.
    vanishing: &'static [&'static str],
    /// The receiver answers at once, so every scrape must arrive in a single request.
    receiver_keeps_up: bool,
}

impl Case {
    fn new(name: &'static str, metrics: Metrics, expected: Expected) -> Case {
        Case {
            name,
            metrics,
            expected,
            writes: None,
            vanishing: &[],
            receiver_keeps_up: true,
        }
    }

    fn writes(mut self, writes: Writes) -> Case {
        self.writes = Some(writes);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream's helpers (cases/helpers.go, cases/common.go)

/// `labels.FromStrings`: pairs sorted by name, as Prometheus's `Labels` are.
fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    l
}

/// `labelsContain`: whether `inner` is a subset of `outer`, both walked in order as upstream does.
fn labels_contain(outer: &[(String, String)], inner: &[(String, String)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < outer.len() && j < inner.len() {
        if outer[i].0 > inner[j].0 {
            return false;
        } else if outer[i].0 < inner[j].0 {
            i += 1;
        } else if outer[i].1 != inner[j].1 {
            return false;
        } else {
            i += 1;
            j += 1;
        }
    }
    j == inner.len()
}

/// `countMetricWithValue`: samples whose labels contain `ls`; each must have exactly `value`
/// (`require.Equal`, so a NaN never matches).
fn count_with_value(
    r: &Received,
    ls: &[(String, String)],
    value: f64,
    fails: &mut Vec<String>,
) -> usize {
    let mut n = 0;
    for s in r.samples().filter(|s| labels_contain(&s.labels, ls)) {
        if s.v != value {
            fails.push(format!("{} = {} at {}, want {value}", s.series(), s.v, s.t));
        }
        n += 1;
    }
    n
}

/// `labelMustMatch`: every sample has `label`, matching `pattern` (a full match of `127.0.0.1:\d+`,
/// the one pattern upstream uses, checked by hand to avoid a regex dependency).
fn label_must_be_loopback_address(r: &Received, label: &str, fails: &mut Vec<String>) {
    for s in r.samples() {
        match s.labels.iter().find(|(n, _)| n == label) {
            None => fails.push(format!("label '{label}' not found on {}", s.series())),
            Some((_, v)) => {
                let ok = v.strip_prefix("127.0.0.1:").is_some_and(|port| {
                    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                });
                if !ok {
                    fails.push(format!("{label}={v:?} does not match 127.0.0.1:\\d+"));
                }
            }
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which client_golang's text format uses for values.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // The shortest form uses %e when the decimal exponent is below -4 or at least 6.
    if f != 0.0 && !(-4..6).contains(&exp) {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        format!("{f}")
    }
}

/// One metric family as client_golang's `promhttp` writes it in the text format (version 0.0.4).
fn family(name: &str, kind: &str, lines: &[(String, f64)]) -> String {
    let mut out = format!("# HELP {name} \n# TYPE {name} {kind}\n");
    for (series, v) in lines {
        out.push_str(&format!("{series} {}\n", go_float(*v)));
    }
    out
}

/// `metricHandler` over one gauge whose value `f` computes at each scrape.
fn gauge_func(name: &'static str, f: impl Fn() -> f64 + Send + Sync + 'static) -> Metrics {
    Box::new(move || (PROM_TEXT, family(name, "gauge", &[(name.to_owned(), f())])))
}

/// `staticHandler`: the bytes as given; Go's `http.ResponseWriter` sniffs them as plain text.
fn static_body(body: &'static str) -> Metrics {
    Box::new(move || ("text/plain; charset=utf-8", body.to_owned()))
}

const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `time.Now().Unix() * 1000`, as upstream's "now" gauges compute it.
fn now_gauge_value() -> f64 {
    (unix_ms() / 1000 * 1000) as f64
}

/// `assert.InEpsilon(ts, v, 0.01)`.
fn in_epsilon(expected: f64, actual: f64, epsilon: f64) -> bool {
    ((expected - actual) / expected).abs() <= epsilon
}

// ---------------------------------------------------------------------------------------------
// The cases, in main_test.go's order

/// cases/counter.go `CounterTest`: a counter incremented after every scrape arrives as 0, 1, 2, … in
/// order, each value once.
fn counter() -> Case {
    let count = Arc::new(Mutex::new(0u64));
    Case::new(
        "Counter",
        Box::new(move || {
            let mut c = count.lock();
            let body = family("counter", "counter", &[("counter".into(), *c as f64)]);
            *c += 1;
            (PROM_TEXT, body)
        }),
        Box::new(|r| {
            let mut fails = Vec::new();
            let mut value = 0.0;
            let mut n = 0;
            for s in r.samples() {
                if labels_contain(&s.labels, &labels(&[("__name__", "counter")])) {
                    if s.v != value {
                        fails.push(format!("counter = {} at {}, want {value}", s.v, s.t));
                    }
                    value += 1.0;
                    n += 1;
                }
            }
            if n == 0 {
                fails.push(r#"found zero samples for {__name__="counter"}"#.into());
            }
            fails
        }),
    )
}

/// cases/gauge.go `GaugeTest`: a gauge holding the scrape's time (ms) arrives with a timestamp within
/// 1% of it.
fn gauge() -> Case {
    Case::new(
        "Gauge",
        gauge_func("now", now_gauge_value),
        Box::new(now_near_timestamp),
    )
}

/// The `Expected` of `GaugeTest` and `HeadersTest`.
fn now_near_timestamp(r: &Received) -> Vec<String> {
    let mut fails = Vec::new();
    let mut n = 0;
    for s in r.samples() {
        if labels_contain(&s.labels, &labels(&[("__name__", "now")])) {
            if !in_epsilon(s.t as f64, s.v, 0.01) {
                fails.push(format!("now = {} at {}: not within 1%", s.v, s.t));
            }
            n += 1;
        }
    }
    if n == 0 {
        fails.push(r#"found zero samples for {__name__="now"}"#.into());
    }
    fails
}

/// cases/histogram.go `HistogramTest`: buckets 1 and 2, observations 1 and 2.
fn histogram() -> Case {
    let body = family(
        "histogram",
        "histogram",
        &[
            (r#"histogram_bucket{le="1"}"#.into(), 1.0),
            (r#"histogram_bucket{le="2"}"#.into(), 2.0),
            (r#"histogram_bucket{le="+Inf"}"#.into(), 2.0),
            ("histogram_sum".into(), 3.0),
            ("histogram_count".into(), 2.0),
        ],
    );
    Case::new(
        "Histogram",
        Box::new(move || (PROM_TEXT, body.clone())),
        Box::new(|r| {
            let mut f = Vec::new();
            let bucket = |le| labels(&[("__name__", "histogram_bucket"), ("le", le)]);
            let le1 = count_with_value(r, &bucket("1"), 1.0, &mut f);
            let le2 = count_with_value(r, &bucket("2"), 2.0, &mut f);
            let inf = count_with_value(r, &bucket("+Inf"), 2.0, &mut f);
            let sum = count_with_value(r, &labels(&[("__name__", "histogram_sum")]), 3.0, &mut f);
            let count =
                count_with_value(r, &labels(&[("__name__", "histogram_count")]), 2.0, &mut f);
            equal_counts(
                count,
                &[("le=1", le1), ("le=2", le2), ("le=+Inf", inf), ("sum", sum)],
                &mut f,
            );
            if count == 0 {
                f.push(r#"found zero samples for {__name__="histogram_count"}"#.into());
            }
            f
        }),
    )
}

/// `require.Equal(t, count, x)` for each of `others`.
fn equal_counts(count: usize, others: &[(&str, usize)], fails: &mut Vec<String>) {
    for (what, n) in others {
        if *n != count {
            fails.push(format!("{n} samples of {what}, {count} of _count"));
        }
    }
}

/// cases/summary.go `SummaryTest`: objectives 0.5, 0.9, 0.99; observations 1, 2, 3.
fn summary() -> Case {
    let body = family(
        "summary",
        "summary",
        &[
            (r#"summary{quantile="0.5"}"#.into(), 2.0),
            (r#"summary{quantile="0.9"}"#.into(), 3.0),
            (r#"summary{quantile="0.99"}"#.into(), 3.0),
            ("summary_sum".into(), 6.0),
            ("summary_count".into(), 3.0),
        ],
    );
    Case::new(
        "Summary",
        Box::new(move || (PROM_TEXT, body.clone())),
        Box::new(|r| {
            let mut f = Vec::new();
            let q = |q| labels(&[("__name__", "summary"), ("quantile", q)]);
            let p50 = count_with_value(r, &q("0.5"), 2.0, &mut f);
            let p90 = count_with_value(r, &q("0.9"), 3.0, &mut f);
            let p99 = count_with_value(r, &q("0.99"), 3.0, &mut f);
            let sum = count_with_value(r, &labels(&[("__name__", "summary_sum")]), 6.0, &mut f);
            let count = count_with_value(r, &labels(&[("__name__", "summary_count")]), 3.0, &mut f);
            equal_counts(
                count,
                &[("p50", p50), ("p90", p90), ("p99", p99), ("sum", sum)],
                &mut f,
            );
            if count == 0 {
                f.push(r#"found zero samples for {__name__="summary_count"}"#.into());
            }
            f
        }),
    )
}

/// cases/up.go `UpTest`: `up{job="test"}` is 1.
fn up() -> Case {
    Case::new(
        "Up",
        gauge_func("gauge", || 42.0),
        Box::new(|r| up_is(r, 1.0)),
    )
}

fn up_is(r: &Received, value: f64) -> Vec<String> {
    let mut f = Vec::new();
    if count_with_value(
        r,
        &labels(&[("__name__", "up"), ("job", "test")]),
        value,
        &mut f,
    ) == 0
    {
        f.push(r#"found zero samples for up{job="test"}"#.into());
    }
    f
}

/// cases/up.go `InvalidTest`: a target exposing something unparsable is down: `up{job="test"}` is 0.
fn invalid() -> Case {
    Case::new(
        "Invalid",
        static_body("\n# this is not valid prometheus\n1234notvali}{ 444\n"),
        Box::new(|r| up_is(r, 0.0)),
    )
}

/// cases/job_label.go `JobLabelTest`: samples carry `job="test"`.
fn job_label() -> Case {
    Case::new(
        "JobLabel",
        gauge_func("gauge", || 42.0),
        Box::new(|r| {
            let mut f = Vec::new();
            let l = labels(&[("__name__", "gauge"), ("job", "test")]);
            if count_with_value(r, &l, 42.0, &mut f) == 0 {
                f.push(r#"found zero samples for gauge{job="test"}"#.into());
            }
            f
        }),
    )
}

/// cases/instance_label.go `InstanceLabelTest`: every sample carries `instance` = the target's address.
fn instance_label() -> Case {
    Case::new(
        "InstanceLabel",
        gauge_func("gauge", || 42.0),
        Box::new(|r| {
            let mut f = Vec::new();
            if count_with_value(r, &labels(&[("__name__", "gauge")]), 42.0, &mut f) == 0 {
                f.push(r#"found zero samples for gauge{job="test"}"#.into());
            }
            label_must_be_loopback_address(r, "instance", &mut f);
            f
        }),
    )
}

/// cases/labels.go `SortedLabelsTest`: labels exposed out of order arrive sorted.
fn sorted_labels() -> Case {
    Case::new(
        "SortedLabels",
        static_body("\n# HELP test A gauge\n# TYPE test gauge\ntest{b=\"2\",a=\"1\"} 1.0\n"),
        Box::new(|r| {
            let mut f = Vec::new();
            for s in r.samples() {
                if !s.labels.iter().map(|l| &l.0).is_sorted() {
                    f.push(format!("'{}' is not sorted", s.series()));
                }
            }
            let l = labels(&[("__name__", "test"), ("a", "1"), ("b", "2")]);
            if count_with_value(r, &l, 1.0, &mut f) == 0 {
                f.push(r#"found zero samples for test{a="1",b="2"}"#.into());
            }
            f
        }),
    )
}

/// cases/labels.go `RepeatedLabelsTest`: a series with a repeated label fails the scrape; nothing with
/// a repeated label, and no `test{a="1"}`, arrives.
fn repeated_labels() -> Case {
    Case::new(
        "RepeatedLabels",
        static_body("\n# HELP test A gauge\n# TYPE test gauge\ntest{a=\"1\",a=\"1\"} 1.0\n"),
        Box::new(|r| {
            let mut f = Vec::new();
            for s in r.samples() {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for (n, _) in &s.labels {
                    *counts.entry(n).or_default() += 1;
                }
                for (name, count) in counts.into_iter().filter(|(_, c)| *c != 1) {
                    f.push(format!("label '{name}' is repeated {count} times"));
                }
            }
            let l = labels(&[("__name__", "test"), ("a", "1")]);
            if count_with_value(r, &l, 1.0, &mut f) != 0 {
                f.push(r#"found samples for test{a="1"}, none expected"#.into());
            }
            f
        }),
    )
}

/// cases/labels.go `EmptyLabelsTest`: a label with an empty value is not sent.
fn empty_labels() -> Case {
    Case::new(
        "EmptyLabels",
        static_body("\n# HELP test A gauge\n# TYPE test gauge\ntest{a=\"\"} 1.0\n"),
        Box::new(|r| {
            let mut f = Vec::new();
            for s in r.samples() {
                if s.labels.iter().any(|(_, v)| v.is_empty()) {
                    f.push(format!("'{}' contains empty labels", s.series()));
                }
            }
            if count_with_value(r, &labels(&[("__name__", "test")]), 1.0, &mut f) == 0 {
                f.push(r#"found zero samples for {"__name__"="test"}"#.into());
            }
            f
        }),
    )
}

/// cases/labels.go `NameLabelTest`: a series without a metric name fails the scrape; every sample sent
/// has `__name__`, and `{label="value"}` never arrives.
fn name_label() -> Case {
    Case::new(
        "NameLabel",
        static_body("\n# HELP test A gauge\n# TYPE test gauge\n{label=\"value\"} 1.0\n"),
        Box::new(|r| {
            let mut f = Vec::new();
            for s in r.samples() {
                if s.name().is_none() {
                    f.push(format!("metric '{}' is missing name label", s.series()));
                }
            }
            if count_with_value(r, &labels(&[("label", "value")]), 1.0, &mut f) != 0 {
                f.push(r#"found non-zero samples for {label="value"} = 1.0"#.into());
            }
            f
        }),
    )
}

/// cases/labels.go `HonorLabelsTest`: exposed `job` and `instance` become `exported_job` and
/// `exported_instance` (honor_labels is false by default).
fn honor_labels() -> Case {
    Case::new(
        "HonorLabels",
        static_body(
            "\n# HELP test A gauge\n# TYPE test gauge\ntest{job=\"original\", instance=\"foo\"} 1.0\n",
        ),
        Box::new(|r| {
            let mut f = Vec::new();
            let l = labels(&[
                ("__name__", "test"),
                ("exported_job", "original"),
                ("exported_instance", "foo"),
            ]);
            if count_with_value(r, &l, 1.0, &mut f) == 0 {
                f.push(r#"found zero samples for test{exported_job="original"} = 1.0"#.into());
            }
            f
        }),
    )
}

/// cases/staleness.go `StalenessTest`: a gauge exposed by the first scrape only gets a staleness marker.
fn staleness() -> Case {
    let scraped = Arc::new(Mutex::new(false));
    let mut case = Case::new(
        "Staleness",
        Box::new(move || {
            let mut scraped = scraped.lock();
            let body = if *scraped {
                String::new()
            } else {
                family("stale", "gauge", &[("stale".into(), 0.0)])
            };
            *scraped = true;
            (PROM_TEXT, body)
        }),
        Box::new(|r| {
            let stale = labels(&[("__name__", "stale")]);
            let markers = r
                .samples()
                .filter(|s| labels_contain(&s.labels, &stale) && s.is_stale_marker())
                .count();
            if markers == 0 {
                vec![r#"found no staleness markers for stale{job="test"}"#.into()]
            } else {
                Vec::new()
            }
        }),
    );
    case.vanishing = &["stale"];
    case
}

/// cases/timestamps.go `TimestampTest`: every timestamp lies within the test's run, and they never
/// decrease, read sample by sample over everything received.
fn timestamp() -> Case {
    let start = unix_ms();
    Case::new(
        "Timestamp",
        gauge_func("gauge", || 42.0),
        Box::new(move |r| {
            let mut f = Vec::new();
            let mut last = 0;
            for s in r.samples() {
                if !(s.t > start && s.t < r.end_ms) {
                    f.push(format!(
                        "{} at {} is outside ({start}, {})",
                        s.series(),
                        s.t,
                        r.end_ms
                    ));
                }
                if s.t < last {
                    f.push(format!(
                        "{} at {} after a sample at {last}",
                        s.series(),
                        s.t
                    ));
                }
                last = s.t;
            }
            if count_with_value(r, &labels(&[("__name__", "gauge")]), 42.0, &mut f) == 0 {
                f.push(r#"found zero samples for up{job="test"}"#.into());
            }
            f
        }),
    )
}

/// cases/headers.go `HeadersTest`: every request carries the remote-write 1.0 headers.
fn headers() -> Case {
    Case::new(
        "Headers",
        gauge_func("now", now_gauge_value),
        Box::new(|r| {
            let mut f = now_near_timestamp(r);
            for a in &r.attempts {
                f.extend(header_problems(&a.headers));
            }
            f
        }),
    )
}

/// `assertHeaderExistsAndHasValue` for the three headers `HeadersTest` checks.
fn header_problems(headers: &HeaderMap) -> Vec<String> {
    [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ]
    .into_iter()
    .filter_map(|(name, expected)| {
        let actual = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        (actual != expected)
            .then(|| format!("header '{name}' != '{expected}'; value is '{actual}'"))
    })
    .collect()
}

/// cases/ordering.go `OrderingTest`: 1000 series, each write delayed at random: every series' timestamps
/// strictly increase in arrival order.
///
/// Upstream delays each write by up to 5 s, against senders whose `remote_timeout` is 30 s (Prometheus's
/// default). surge's default is 5 s, and an answer that comes after the timeout gets the request sent
/// again: a duplicate (at-least-once delivery), which the strict order check reads as going back in time
/// though nothing was reordered. So the delays here stay below the timeout by a margin: up to 4.5 s.
fn ordering() -> Case {
    let mut series: Vec<(String, f64)> = (0..1000)
        .map(|i| (format!("test{{i=\"{i}\"}}"), 1.0))
        .collect();
    // client_golang sorts a family's metrics by label value (as strings).
    series.sort_by_key(|(s, _)| s.clone());
    let body = family("test", "gauge", &series);
    let mut case = Case::new(
        "Ordering",
        Box::new(move || (PROM_TEXT, body.clone())),
        Box::new(|r| {
            let mut f = Vec::new();
            let mut last: HashMap<String, i64> = HashMap::new();
            for s in r.samples() {
                let l = s.series();
                let prev = last.get(&l).copied().unwrap_or(0);
                if prev >= s.t {
                    f.push(format!("{l} at {} after {prev}", s.t));
                }
                last.insert(l, s.t);
            }
            if count_with_value(r, &labels(&[("__name__", "test")]), 1.0, &mut f) == 0 {
                f.push("found zero samples for tests{}".into());
            }
            f
        }),
    )
    .writes(Box::new(|_| {
        Interception::Delay(Duration::from_millis(rand_below(ORDERING_MAX_DELAY_MS)))
    }));
    case.receiver_keeps_up = false;
    case
}

/// The longest delay of [`ordering`]'s writes (upstream: 5000).
const ORDERING_MAX_DELAY_MS: u64 = 4500;

/// A pseudo-random number below `n` (the ordering case's delays; no rand dependency for one call site).
fn rand_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ unix_ms() as u128);
    h.finish() % n
}

/// cases/retries.go `Retries500Test` and `Retries400Test`, and `Retries429` (issue 19): the first write
/// is answered `status`; the `now` sample it carried is (`retried`) or is not resent.
fn retries(name: &'static str, status: StatusCode, retried: bool) -> Case {
    let first: Arc<Mutex<Option<i64>>> = Arc::new(Mutex::new(None));
    let seen = first.clone();
    Case::new(
        name,
        gauge_func("now", now_gauge_value),
        Box::new(move |r| {
            let ts = seen.lock().unwrap_or(-1);
            let now = labels(&[("__name__", "now")]);
            let found = r
                .samples()
                .any(|s| labels_contain(&s.labels, &now) && s.t == ts);
            match (retried, found) {
                (true, false) => vec!["failed to find sample that should have been retried".into()],
                (false, true) => vec!["found sample that should not have been retried".into()],
                _ => Vec::new(),
            }
        }),
    )
    .writes(Box::new(move |a| {
        let mut first = first.lock();
        if first.is_some() {
            return Interception::Pass;
        }
        // `getFirstTimestamp`: the last `now` sample of the first request, -1 if it has none.
        let now = labels(&[("__name__", "now")]);
        let ts = match &a.request {
            Ok(samples) => samples
                .iter()
                .filter(|s| labels_contain(&s.labels, &now))
                .map(|s| s.t)
                .next_back()
                .unwrap_or(-1),
            Err(_) => -1,
        };
        *first = Some(ts);
        Interception::Answer(status, Vec::new())
    }))
}

/// Issue 19: the first write is answered `status` with `Retry-After` (`date`: an HTTP date, else
/// delay-seconds); the retry must not come before the time asked for (nor long after it), and the
/// `now` sample it carried must arrive.
fn retry_after(name: &'static str, status: StatusCode, date: bool) -> Case {
    /// When the first write was refused and the earliest the retry may come (ms).
    #[derive(Default)]
    struct Refused {
        at_ms: i64,
        not_before_ms: i64,
        ts: i64,
    }
    let refused: Arc<Mutex<Option<Refused>>> = Arc::new(Mutex::new(None));
    let seen = refused.clone();
    Case::new(
        name,
        gauge_func("now", now_gauge_value),
        Box::new(move |r| {
            let mut f = Vec::new();
            let Some(refused) = &*seen.lock() else {
                return vec!["no write was refused".into()];
            };
            let now = labels(&[("__name__", "now")]);
            let carries_refused = |a: &&Attempt| {
                a.at_ms >= refused.at_ms
                    && a.request.as_ref().is_ok_and(|s| {
                        s.iter()
                            .any(|s| labels_contain(&s.labels, &now) && s.t == refused.ts)
                    })
            };
            // The first attempt carried it; the retry is the next one that does.
            let Some(retry) = r.attempts.iter().filter(carries_refused).nth(1) else {
                return vec![format!(
                    "the refused sample (now at {}) was never sent again",
                    refused.ts
                )];
            };
            if retry.at_ms < refused.not_before_ms {
                f.push(format!(
                    "retried {} ms after the refusal, {} ms before Retry-After allowed",
                    retry.at_ms - refused.at_ms,
                    refused.not_before_ms - retry.at_ms
                ));
            }
            // The backoff alone would retry within 30 ms; more than 2 s past the allowed time is not
            // "honoured" but lost.
            if retry.at_ms > refused.not_before_ms + 2000 {
                f.push(format!(
                    "retried {} ms after Retry-After allowed",
                    retry.at_ms - refused.not_before_ms
                ));
            }
            if !r
                .samples()
                .any(|s| labels_contain(&s.labels, &now) && s.t == refused.ts)
            {
                f.push("the refused sample never arrived".into());
            }
            f
        }),
    )
    .writes(Box::new(move |a| {
        let mut refused = refused.lock();
        if refused.is_some() {
            return Interception::Pass;
        }
        let now = labels(&[("__name__", "now")]);
        let ts = a
            .request
            .as_ref()
            .ok()
            .and_then(|s| {
                s.iter()
                    .filter(|s| labels_contain(&s.labels, &now))
                    .map(|s| s.t)
                    .next_back()
            })
            .unwrap_or(-1);
        let (value, not_before_ms) = if date {
            // Three seconds from now, whole seconds as an HTTP date has them: the sender may not retry
            // before that second begins.
            let at = jiff::Timestamp::from_second(a.at_ms / 1000 + 3).unwrap();
            let value = jiff::fmt::strtime::format("%a, %d %b %Y %H:%M:%S GMT", at).unwrap();
            (value, at.as_millisecond())
        } else {
            ("2".to_owned(), a.at_ms + 2000)
        };
        *refused = Some(Refused {
            at_ms: a.at_ms,
            not_before_ms,
            ts,
        });
        Interception::Answer(status, vec![(header::RETRY_AFTER, value)])
    }))
}

/// `main_test.go`'s list, then issue 19's additions.
fn cases() -> Vec<Case> {
    vec![
        counter(),
        gauge(),
        histogram(),
        summary(),
        up(),
        invalid(),
        job_label(),
        instance_label(),
        sorted_labels(),
        repeated_labels(),
        empty_labels(),
        name_label(),
        honor_labels(),
        staleness(),
        timestamp(),
        headers(),
        ordering(),
        retries("Retries500", StatusCode::INTERNAL_SERVER_ERROR, true),
        retries("Retries400", StatusCode::BAD_REQUEST, false),
        // Issue 19.
        retries("Retries429", StatusCode::TOO_MANY_REQUESTS, true),
        retry_after("RetryAfterSeconds", StatusCode::SERVICE_UNAVAILABLE, false),
        retry_after("RetryAfterDate", StatusCode::TOO_MANY_REQUESTS, true),
    ]
}

/// How many of [`cases`] are upstream's.
const UPSTREAM_CASES: usize = 19;

// ---------------------------------------------------------------------------------------------
// The harness (main_test.go `runTest`)

/// One case's server state: its handlers and what `/push` recorded.
struct Server {
    metrics: Metrics,
    /// Fired by the first scrape.
    scraped: tokio::sync::Notify,
    writes: Option<Writes>,
    batches: Mutex<Vec<Vec<Sample>>>,
    attempts: Mutex<Vec<Attempt>>,
}

async fn serve_metrics(State(s): State<Arc<Server>>) -> Response {
    s.scraped.notify_one();
    let (content_type, body) = (s.metrics)();
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The receiver: decodes every request as client_golang's remote-write 1.0 handler does (snappy, then
/// `prometheus.WriteRequest`), shows it to the case's middleware, records it.
async fn serve_push(State(s): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let attempt = Attempt {
        request: decode(&body),
        headers,
        at_ms: unix_ms(),
    };
    s.attempts.lock().push(attempt.clone());
    let interception = match &s.writes {
        Some(w) => w(&attempt),
        None => Interception::Pass,
    };
    match interception {
        Interception::Answer(status, headers) => {
            let mut r = status.into_response();
            for (n, v) in headers {
                r.headers_mut().insert(n, v.parse().unwrap());
            }
            r
        }
        Interception::Pass => record(&s, attempt),
        Interception::Delay(d) => {
            // Like Go's handler, the delayed write is recorded even if the sender stops waiting for it.
            let s = s.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                record(&s, attempt)
            })
            .await
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn record(s: &Server, attempt: Attempt) -> Response {
    match attempt.request {
        Ok(samples) => {
            s.batches.lock().push(samples);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

fn decode(body: &[u8]) -> Result<Vec<Sample>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let req = WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
    Ok(req
        .timeseries
        .into_iter()
        .flat_map(|ts| {
            let labels: Vec<(String, String)> =
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            ts.samples.into_iter().map(move |s| Sample {
                labels: labels.clone(),
                t: s.timestamp,
                v: s.value,
            })
        })
        .collect())
}

/// How the agent runs and is stopped in one pass over the cases.
#[derive(Clone, Copy)]
struct Flavour {
    /// `None`: the default tier.
    tier: Option<&'static str>,
    stop: rustix::process::Signal,
}

/// The `surge` binary: `SURGE_BINARY` when set (a build of this tree kept apart from a shared target
/// directory), else this workspace's (built on demand).
fn surge() -> PathBuf {
    std::env::var_os("SURGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| surge_tests::kubelet::surge_binary().expect("the surge binary"))
}

/// Runs one case: serve, run the agent for [`RUN_FOR`], stop it, check.
async fn run_case(case: Case, flavour: Flavour) -> Outcome {
    let server = Arc::new(Server {
        metrics: case.metrics,
        scraped: tokio::sync::Notify::new(),
        writes: case.writes,
        batches: Mutex::new(Vec::new()),
        attempts: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/push", post(serve_push))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("surge.yaml");
    let tier = flavour
        .tier
        .map(|t| format!("\n      tier: {t}"))
        .unwrap_or_default();
    // The suite's configuration (targets/prometheus.go): job "test", 1 s scrapes, one remote_write.
    std::fs::write(
        &config,
        format!(
            "agent:\n  listen: 127.0.0.1:0\n  scrape_configs:\n    - job_name: test\n      interval: 1s{tier}\n      static_configs: [{{targets: [\"{addr}\"]}}]\n  remote_write:\n    - url: http://{addr}/push\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("agent.log");
    let mut child = tokio::process::Command::new(surge())
        .args(["agent", "-c"])
        .arg(&config)
        .stdout(std::fs::File::create(dir.path().join("agent.out")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("starting surge agent");
    // The run counts from the first scrape, so a slow start on a loaded machine (dozens of agents start
    // at once here) does not shorten it.
    let mut fails = Vec::new();
    if tokio::time::timeout(Duration::from_secs(60), server.scraped.notified())
        .await
        .is_err()
    {
        fails.push("no scrape within 60 s of starting the agent".to_owned());
    }
    tokio::time::sleep(RUN_FOR).await;
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        .unwrap();
    rustix::process::kill_process(pid, flavour.stop).unwrap();
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => fails.push(format!("the agent exited with {status}")),
        Ok(Err(e)) => fails.push(format!("waiting for the agent: {e}")),
        Err(_) => fails.push("the agent did not exit within 20 s of the signal".into()),
    }

    let received = Received {
        batches: std::mem::take(&mut *server.batches.lock()),
        attempts: std::mem::take(&mut *server.attempts.lock()),
        end_ms: unix_ms(),
    };
    let upstream = [fails, (case.expected)(&received)].concat();
    let issue_19 = issue_19_checks(&received, case.vanishing, case.receiver_keeps_up);
    let log = if upstream.is_empty() && issue_19.is_empty() {
        String::new()
    } else {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!(
            "{} requests received; agent log tail:\n{}",
            received.batches.len(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    Outcome {
        upstream,
        issue_19,
        log,
    }
}

/// One run's failures: of the case's own assertions (with the harness's: the agent ran and exited
/// cleanly), and of [`issue_19_checks`].
#[derive(Default)]
struct Outcome {
    upstream: Vec<String>,
    issue_19: Vec<String>,
    log: String,
}

/// What issue 19 asks beyond upstream's assertions, checked on every run.
fn issue_19_checks(r: &Received, vanishing: &[&str], receiver_keeps_up: bool) -> Vec<String> {
    let mut f = Vec::new();
    // A request read in order never goes back in time.
    for (i, b) in r.batches.iter().enumerate() {
        if !b.iter().map(|s| s.t).is_sorted() {
            f.push(format!("request {i} goes back in time"));
        }
    }
    // A series never goes back (nor repeats a timestamp) across requests and shards.
    let mut last: HashMap<String, i64> = HashMap::new();
    for s in r.samples() {
        let key = s.series();
        if let Some(prev) = last.insert(key.clone(), s.t)
            && prev >= s.t
        {
            f.push(format!("{key} at {} arrived after {prev}", s.t));
        }
    }
    // Stopping the agent marks nothing stale: only series that left the exposition get markers.
    for s in r.samples().filter(|s| s.is_stale_marker()) {
        if !s.name().is_some_and(|n| vanishing.contains(&n)) {
            f.push(format!("staleness marker for live series {}", s.series()));
        }
    }
    // A small scrape (one timestamp) arrives in one request, not spread over several.
    if receiver_keeps_up {
        let mut request_of: HashMap<i64, usize> = HashMap::new();
        for (i, b) in r.batches.iter().enumerate() {
            for s in b {
                if *request_of.entry(s.t).or_insert(i) != i {
                    f.push(format!(
                        "the scrape at {} was split over several requests",
                        s.t
                    ));
                    break;
                }
            }
        }
    }
    for a in &r.attempts {
        f.extend(header_problems(&a.headers));
        if let Err(e) = &a.request {
            f.push(format!("undecodable request: {e}"));
        }
    }
    f.dedup();
    f
}

/// Runs every case at once (as upstream's `t.Parallel()`), prints one line per case and fails with
/// every failing case's reasons.
async fn run_suite(flavour: Flavour, label: &str) {
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let results = futures::future::join_all(
        cases
            .into_iter()
            .map(|c| tokio::spawn(run_case(c, flavour))),
    )
    .await;
    let mut failed = Vec::new();
    for (i, (name, result)) in names.iter().zip(results).enumerate() {
        let outcome = result.unwrap_or_else(|e| Outcome {
            upstream: vec![format!("panicked: {e}")],
            ..Outcome::default()
        });
        let origin = if i < UPSTREAM_CASES {
            "upstream"
        } else {
            "issue 19"
        };
        let verdict = |fails: &[String]| if fails.is_empty() { "ok" } else { "FAILED" };
        println!(
            "{label} {name} ({origin}): case {}, issue 19 checks {}",
            verdict(&outcome.upstream),
            verdict(&outcome.issue_19)
        );
        if !outcome.upstream.is_empty() || !outcome.issue_19.is_empty() {
            let mut lines = outcome.upstream;
            lines.extend(outcome.issue_19);
            lines.push(outcome.log);
            failed.push(format!("{name}:\n  {}", lines.join("\n  ")));
        }
    }
    println!(
        "{label}: {}/{} passed",
        names.len() - failed.len(),
        names.len()
    );
    assert!(failed.is_empty(), "{label}: {}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_write_1_0_compliance_default_tier_stopped_by_sigint() {
    let flavour = Flavour {
        tier: None,
        stop: rustix::process::Signal::INT,
    };
    run_suite(flavour, "default tier, SIGINT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_write_1_0_compliance_critical_tier_stopped_by_sigterm() {
    let flavour = Flavour {
        tier: Some("critical"),
        stop: rustix::process::Signal::TERM,
    };
    run_suite(flavour, "critical tier, SIGTERM").await;
}

/// Upstream's cases/helpers_test.go `TestLabelsContain`, for the port of `labelsContain`.
#[test]
fn labels_contain_is_a_subset_test() {
    for (outer, inner, found) in [
        (labels(&[("foo", "bar")]), labels(&[("foo", "bar")]), true),
        (labels(&[("foo", "bar")]), labels(&[("foo", "baz")]), false),
        (
            labels(&[("foo", "bar"), ("blip", "blop")]),
            labels(&[("foo", "bar")]),
            true,
        ),
        (labels(&[]), labels(&[("foo", "bar")]), false),
    ] {
        assert_eq!(
            labels_contain(&outer, &inner),
            found,
            "{inner:?} ∩ {outer:?}"
        );
    }
}

#[test]
fn go_float_formats_as_strconv_g() {
    for (f, want) in [
        (0.0, "0"),
        (1.0, "1"),
        (42.0, "42"),
        (0.5, "0.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1_765_108_800_000.0, "1.7651088e+12"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (f64::INFINITY, "+Inf"),
    ] {
        assert_eq!(go_float(f), want, "{f}");
    }
}
