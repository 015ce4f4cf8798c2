//! Property tests: random valid series serialized to exposition come back unchanged, in both formats;
//! arbitrary bytes never panic the parser.

// Test helpers outside #[test] fns: a panic here is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use surge_proto::exposition::{Entry, Format, Parser};

/// A series as generated: labels (unique names, any value) and a value.
#[derive(Debug, Clone)]
struct Series {
    labels: BTreeMap<String, String>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_./:-]{0,12}",
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just('\\'),
                Just('"'),
                Just('\n'),
                Just('}'),
                Just(','),
                Just('#'),
                Just('é')
            ],
            0..6
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (0u64..1_000_000).prop_map(|v| v as f64),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
    ]
}

fn series() -> impl Strategy<Value = Series> {
    (
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", label_value(), 0..8),
        value(),
        prop::option::of(0i64..4_000_000_000_000),
    )
        .prop_map(|(labels, value, timestamp_ms)| Series {
            labels,
            value,
            timestamp_ms,
        })
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders series `i` as one line; OpenMetrics timestamps are seconds.
fn line(i: usize, s: &Series, format: Format) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    let ts = match (s.timestamp_ms, format) {
        (None, _) => String::new(),
        (Some(t), Format::Text) => format!(" {t}"),
        (Some(t), Format::OpenMetrics) => format!(" {}.{:03}", t / 1000, t % 1000),
    };
    format!("metric_{i}x{{{}}} {}{ts}\n", labels.join(","), s.value)
}

fn round_trip(all: &[Series], format: Format) {
    let mut body: String = all
        .iter()
        .enumerate()
        .map(|(i, s)| line(i, s, format))
        .collect();
    if format == Format::OpenMetrics {
        body.push_str("# EOF\n");
    }
    let parsed: Vec<_> = Parser::new(body.as_bytes(), format)
        .map(|e| match e {
            Ok(Entry::Sample(s)) => s,
            other => panic!("unexpected {other:?} in\n{body}"),
        })
        .collect();
    assert_eq!(parsed.len(), all.len());
    for (i, (got, want)) in parsed.iter().zip(all).enumerate() {
        assert_eq!(got.name, format!("metric_{i}x"));
        let labels: BTreeMap<String, String> = got
            .labels()
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect();
        assert_eq!(labels, want.labels);
        if want.value.is_nan() {
            assert!(got.value.is_nan());
        } else {
            assert_eq!(got.value.to_bits(), want.value.to_bits());
        }
        assert_eq!(got.timestamp_ms, want.timestamp_ms);
    }
}

proptest! {
    #[test]
    fn text_round_trips(all in prop::collection::vec(series(), 1..20)) {
        round_trip(&all, Format::Text);
    }

    #[test]
    fn openmetrics_round_trips(all in prop::collection::vec(series(), 1..20)) {
        round_trip(&all, Format::OpenMetrics);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::Text, Format::OpenMetrics] {
            for entry in Parser::new(&body, format) {
                if let Ok(Entry::Sample(s)) = entry {
                    s.labels().for_each(drop);
                }
            }
        }
    }

    #[test]
    fn exposition_like_bytes_never_panic(
        body in prop::collection::vec(
            prop_oneof![Just("a"), Just("_b"), Just("{"), Just("}"), Just("=\""), Just("\""), Just(","),
                Just(" "), Just("\n"), Just("# TYPE "), Just("# HELP "), Just("# EOF\n"), Just("1"),
                Just(".5e3"), Just("\\"), Just("le"), Just("_bucket"), Just("+Inf"), Just("NaN"),
                Just(" # {"), Just("histogram"), Just("counter"), Just("é")],
            0..80,
        ).prop_map(|parts| parts.concat())
    ) {
        for format in [Format::Text, Format::OpenMetrics] {
            for entry in Parser::new(body.as_bytes(), format) {
                if let Ok(Entry::Sample(s)) = entry {
                    s.labels().for_each(drop);
                }
            }
        }
    }
}
