//! Fuzz targets for every parser that reads untrusted input, and a harness that runs them on stable.
//!
//! Each target takes arbitrary bytes, must never panic (nor overflow the stack, nor allocate in
//! proportion to anything but its input), and returns an [`Outcome`]: a small summary of what the parser
//! made of the input (how many entries, which error kind), which the harness uses as a cheap stand-in for
//! coverage: an input that leads to an outcome not seen before joins the in-memory corpus.
//!
//! The same target functions are run two ways:
//! - **stable**, under `cargo test -p surge-fuzz` ([`harness`]): the committed corpus
//!   (`fuzz/corpus/<target>/`) and every past crash (`fuzz/regressions/<target>/`) first, then random
//!   mutations of them for a bounded time (`SURGE_FUZZ_SECONDS`, default 10 per target); a crash is
//!   written to `fuzz/regressions/<target>/` (from then on a regression test) and fails the test;
//! - **nightly**, with libFuzzer's coverage guidance: `cargo +nightly fuzz run <target>` from
//!   `fuzz/libfuzzer/` (outside the workspace, as cargo-fuzz needs), over the same corpus directories.

pub mod harness;

use std::hash::Hasher;

use surge_proto::exposition::{Checks, Entry, Format, Parser};

/// What a target made of one input; equal outcomes are "the same behaviour" to the harness.
pub type Outcome = u64;

/// A fuzz target: bytes in, outcome out; a panic is a crash.
pub type Target = fn(&[u8]) -> Outcome;

/// Every target, by the name its corpus and regression directories have.
pub const TARGETS: [(&str, Target); 5] = [
    ("exposition", exposition),
    ("remote_write", remote_write),
    ("config", config),
    ("promql", promql),
    ("selector", selector),
];

/// Summarises an outcome: a kind and a bucketed count, so that "3 entries" and "4 entries" are one
/// behaviour but "an error at the label value" and "an error at the timestamp" are two.
fn outcome(kind: &str, count: usize) -> Outcome {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.write(kind.as_bytes());
    h.write_u32(usize::BITS - count.leading_zeros());
    h.finish()
}

/// The kind of an error message: its text up to the first digit or quote, so that positions and the
/// offending input do not make every error "new".
fn error_kind(message: &str) -> &str {
    let end = message
        .find(|c: char| c.is_ascii_digit() || c == '"' || c == '`')
        .unwrap_or(message.len());
    &message[..end]
}

/// The exposition parser in every format and check set the agent and the conformance example use:
/// entries or one error, never a panic; every sample's labels iterate; errors carry a position.
pub fn exposition(data: &[u8]) -> Outcome {
    let modes = [
        (Format::Text, Checks::Prometheus),
        (Format::Text, Checks::Conformance),
        (Format::OpenMetrics, Checks::Conformance),
        (Format::OpenMetrics, Checks::Prometheus),
    ];
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (format, checks) in modes {
        let (mut samples, mut errors) = (0usize, 0usize);
        for entry in Parser::with_checks(data, format, checks) {
            match entry {
                Ok(Entry::Sample(s)) => {
                    // A bare name starts the key; a quoted one is inside the key's quotes or braces.
                    assert!(
                        s.series_key.starts_with(s.name.raw())
                            || s.series_key.starts_with(['{', '"'])
                    );
                    for (name, value) in s.labels() {
                        std::hint::black_box((name.to_cow(), value));
                    }
                    samples += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    assert!(e.line >= 1 && e.column >= 1, "{e}");
                    h.write_u64(outcome(error_kind(&e.to_string()), 0));
                    errors += 1;
                }
            }
        }
        // After an error the iterator ends.
        assert!(errors <= 1);
        h.write_u64(outcome("samples", samples));
    }
    h.finish()
}

/// The remote-write decoder as ingest runs it: snappy with a size cap, then the one-pass validation; a
/// body that is not snappy is also tried as a raw `WriteRequest`, so the protobuf reader is fuzzed
/// directly too.
pub fn remote_write(data: &[u8]) -> Outcome {
    let mut decoder = snap::raw::Decoder::new();
    let mut buf = Vec::new();
    let raw = match surge_proto::remote_write::decompress(data, 1 << 20, &mut decoder, &mut buf) {
        Ok(()) => &buf[..],
        Err(_) => data,
    };
    let (mut series, mut samples) = (0usize, 0usize);
    let r = surge_proto::remote_write::for_each_series(raw, |s| {
        series += 1;
        for (name, value) in s.labels() {
            std::hint::black_box((name, value));
        }
        samples += s.samples().count();
        Ok::<(), ()>(())
    });
    match r {
        Ok(_) => outcome("series", series) ^ outcome("samples", samples).rotate_left(1),
        Err(e) => outcome(error_kind(&e.to_string()), series),
    }
}

/// The config loader on any text (YAML syntax, unknown fields, every validation): a config or a list of
/// located errors, never a panic.
pub fn config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return outcome("not utf-8", 0);
    };
    let env = surge_config::MapEnv::new();
    match surge_config::load_str(text, "fuzz.yaml", &env) {
        Ok(c) => outcome(
            "config",
            c.agent.scrape_configs.len() + c.agent.remote_write.len(),
        ),
        Err(errors) => {
            let lines = errors.to_lines();
            assert!(!lines.is_empty(), "an error list is never empty");
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for l in &lines {
                // `fuzz.yaml:LINE:COL: path: message`: the message's kind is the behaviour.
                let message = l.splitn(4, ':').nth(3).unwrap_or(l);
                h.write(error_kind(message).as_bytes());
            }
            h.finish()
        }
    }
}

/// The PromQL parser, both entry points (an expression, and a bare selector as `/api/v1/series` reads
/// it): an AST or a positioned error, never a panic.
pub fn promql(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return outcome("not utf-8", 0);
    };
    let expr = match surge_promql::parse(text) {
        Ok(e) => {
            // The shape of the tree's root (`Call`, `Binary`, …) is the behaviour.
            let shown = format!("{e:?}");
            let root = shown.split(['(', '{', ' ']).next().unwrap_or("");
            outcome(root, shown.len())
        }
        Err(e) => outcome(error_kind(&e.to_string()), 1),
    };
    let selector = match surge_promql::parse_selector(text) {
        Ok(m) => outcome("matchers", m.len()),
        Err(e) => outcome(error_kind(&e.to_string()), 2),
    };
    expr ^ selector.rotate_left(1)
}

/// The Kubernetes label-selector parser of the metrics APIs (`labelSelector=` and
/// `metricLabelSelector=` from the HPA): requirements or an error, never a panic.
pub fn selector(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return outcome("not utf-8", 0);
    };
    match surge_metrics_api::selector::parse(text) {
        Ok(r) => outcome("requirements", r.len()),
        Err(e) => outcome(error_kind(&e), 0),
    }
}
