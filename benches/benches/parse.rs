//! Exposition parsing: surge's zero-copy parser against `prometheus-parse`, on the same bodies.
//!
//! Inputs: a real Debian `prometheus-node-exporter` capture, and a synthetic 10,000-series body shaped
//! like an application (counters and a histogram, 6-8 labels each). Throughput is in samples, so the
//! report reads as samples per second. surge's side iterates every entry and touches every label (name
//! and value), which is what the agent does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_proto::exposition::{Entry, Format, Parser};

#[path = "../../proto/testdata/parse_bodies.rs"]
mod parse_bodies;

use parse_bodies::{NODE_EXPORTER, surge, synthetic_app};

fn prometheus_parse(body: &str) -> usize {
    match prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))) {
        Ok(scrape) => scrape.samples.len(),
        Err(e) => panic!("bench input does not parse: {e}"),
    }
}

fn samples(body: &str) -> u64 {
    Parser::new(body.as_bytes(), Format::Text)
        .filter(|e| matches!(e, Ok(Entry::Sample(_))))
        .count() as u64
}

fn bench(c: &mut Criterion) {
    let app = synthetic_app();
    for (name, body) in [("node_exporter", NODE_EXPORTER), ("app_10k", app.as_str())] {
        let mut group = c.benchmark_group(format!("parse/{name}"));
        group.throughput(Throughput::Elements(samples(body)));
        group.bench_function("surge", |b| b.iter(|| surge(black_box(body))));
        group.bench_function("prometheus_parse", |b| {
            b.iter(|| prometheus_parse(black_box(body)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
