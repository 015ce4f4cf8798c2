//! The parser's benchmark bodies and workload, shared by `benches/benches/parse.rs` (criterion) and
//! `proto/examples/parse_count.rs` (instruction counts), so both measure the same thing. Included with
//! `#[path]`; not a module of the crate.

use std::fmt::Write;
use std::hint::black_box;

use surge_proto::exposition::{Entry, Format, Parser};

/// A real Debian `prometheus-node-exporter` capture.
pub const NODE_EXPORTER: &str = include_str!("node_exporter.prom");

/// 1,600 counter series plus 600 histogram series of 12 buckets, `_sum` and `_count`: 10,000 samples.
pub fn synthetic_app() -> String {
    let mut body = String::with_capacity(2 << 20);
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let statuses = ["200", "201", "204", "400", "404", "500", "502", "503"];
    body.push_str(
        "# HELP http_requests_total Requests handled.\n# TYPE http_requests_total counter\n",
    );
    for i in 0..1600 {
        writeln!(
            body,
            "http_requests_total{{cluster=\"prod-eu-1\",namespace=\"shop\",pod=\"checkout-7d9f8b6c5-{:05}\",container=\"app\",method=\"{}\",handler=\"/api/v1/items/{}\",status=\"{}\"}} {}",
            i % 50,
            methods[i % 4],
            i / 200,
            statuses[i % 8],
            i * 137 + 11
        )
        .unwrap_or_default();
    }
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    body.push_str("# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\n");
    for i in 0..600 {
        let labels = format!(
            "cluster=\"prod-eu-1\",namespace=\"shop\",pod=\"checkout-7d9f8b6c5-{:05}\",container=\"app\",method=\"{}\",handler=\"/api/v1/items/{}\"",
            i % 50,
            methods[i % 4],
            i / 50
        );
        for (b, le) in bounds.iter().enumerate() {
            writeln!(
                body,
                "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                i * 3 + b * 17
            )
            .unwrap_or_default();
        }
        writeln!(
            body,
            "http_request_duration_seconds_sum{{{labels}}} {}.{:03}",
            i * 7,
            i % 1000
        )
        .unwrap_or_default();
        writeln!(
            body,
            "http_request_duration_seconds_count{{{labels}}} {}",
            i * 3 + 11 * 17
        )
        .unwrap_or_default();
    }
    body
}

/// surge: parse, and read every label name and value.
pub fn surge(body: &str) -> usize {
    let mut n = 0;
    for entry in Parser::new(body.as_bytes(), Format::Text) {
        match entry {
            Ok(Entry::Sample(s)) => {
                for (name, value) in s.labels() {
                    n += name.raw().len() + value.len();
                }
                black_box(s.value);
                n += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("input does not parse: {e}"),
        }
    }
    n
}
