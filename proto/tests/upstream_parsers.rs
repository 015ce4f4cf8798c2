//! The parser test tables of Prometheus 3, run against surge's exposition parser.
//!
//! Sources (read with `fetch`, tables extracted by `upstream/generate.py`, one row per upstream case):
//! - prometheus/prometheus d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86, `model/textparse/promparse_test.go`
//!   (`TestPromParse`, `TestUTF8PromParse`, `TestPromParseErrors`, `TestPromNullByteHandling`) and
//!   `model/textparse/openmetricsparse_test.go` (`TestOpenMetricsParse`, `TestOpenMetricsParse_UTF8`,
//!   `TestOpenMetricsParseErrors`, `TestOMNullByteHandling`);
//! - prometheus/common d2417e2cbb82c4c81e4d28d55f354058169a9f08, `expfmt/text_parse_test.go`
//!   (`testTextParse`, `testTextParseError`).
//!
//! What is compared: for the entry tables, every HELP, TYPE, UNIT and series entry in order (series
//! text, value, timestamp, and the label set with `le` / `quantile` normalised as Prometheus 3 does);
//! comment entries are not compared (surge's parser does not yield comments), nor exemplars or created
//! timestamps (surge validates exemplars and drops them). For the error tables, whether the input is
//! accepted or refused: the wording of errors is Go's lexer's and is not copied. For expfmt's good
//! cases, that the input is accepted and that every family name and label pair upstream builds is
//! among what surge yields (expfmt builds protobuf families, which surge does not).
//!
//! Out of scope: the type-and-unit-labels variants (the `__type__` / `__unit__` labels behind
//! Prometheus's `type-and-unit-labels` feature flag), native histograms and the protobuf format
//! (`protobufparse_test.go`, `nhcbparse_test.go`), and created-timestamp lookup (`TestSTParseFailures`).
//!
//! Where surge's answer differs from upstream's, the case is listed in a `DIFFERS` table with the reason;
//! the tests assert that exactly those cases differ, so a fix or a regression both show up.

use surge_proto::exposition::{Checks, Entry, Format, MetricType, Parser, normalize_float_label};

// Generated tables, kept as generated.
#[rustfmt::skip]
#[path = "upstream/entries.rs"]
mod entries;
#[rustfmt::skip]
#[path = "upstream/errors.rs"]
mod errors;

/// One of expfmt's good cases: the input, the family names upstream builds, and every label pair.
pub type GoodCase = (
    &'static [u8],
    &'static [&'static [u8]],
    &'static [(&'static [u8], &'static [u8])],
);

/// One entry an upstream table expects (see `parsedEntry` in `model/textparse/interface_test.go`).
pub struct Expected {
    kind: &'static str,
    m: &'static [u8],
    text: &'static [u8],
    v: &'static str,
    t: Option<i64>,
    labels: &'static [(&'static [u8], &'static [u8])],
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn value(v: &str) -> String {
    let f = match v {
        "math.Float64frombits(value.NormalNaN)" | "math.NaN()" => f64::NAN,
        "math.Inf(1)" => f64::INFINITY,
        "math.Inf(-1)" => f64::NEG_INFINITY,
        v => v.parse::<f64>().unwrap_or_else(|_| panic!("value {v:?}")),
    };
    format!("{f:?}")
}

fn render_expected(e: &Expected) -> Option<String> {
    Some(match e.kind {
        "help" => format!("HELP {} {:?}", text(e.m), text(e.text)),
        "type" => format!("TYPE {} {}", text(e.m), text(e.text)),
        "unit" => format!("UNIT {} {:?}", text(e.m), text(e.text)),
        "series" => {
            let mut labels: Vec<(String, String)> =
                e.labels.iter().map(|(n, v)| (text(n), text(v))).collect();
            labels.sort();
            let ts = e.t.map(|t| format!(" @{t}")).unwrap_or_default();
            format!("SERIES {} {}{ts} {labels:?}", text(e.m), value(e.v))
        }
        _ => return None,
    })
}

/// Every entry surge yields, rendered as [`render_expected`] renders upstream's; an error ends the list.
/// OpenMetrics `_created` series of counters, summaries and histograms are skipped, as upstream's
/// tests skip them (`WithOMParserSTSeriesSkipped`).
fn render_ours(input: &[u8], format: Format) -> Vec<String> {
    let mut out = Vec::new();
    for entry in Parser::with_checks(input, format, Checks::Prometheus) {
        out.push(match entry {
            Ok(Entry::Help { family, text }) => format!("HELP {family} {text:?}"),
            Ok(Entry::Type { family, kind }) => format!("TYPE {family} {}", kind.as_str()),
            Ok(Entry::Unit { family, unit }) => format!("UNIT {family} {unit:?}"),
            Ok(Entry::Sample(s)) => {
                let st_kind = matches!(
                    s.kind,
                    MetricType::Counter | MetricType::Summary | MetricType::Histogram
                );
                if format == Format::OpenMetrics && st_kind && s.name.to_cow().ends_with("_created")
                {
                    continue;
                }
                let mut labels: Vec<(String, String)> = s
                    .labels()
                    .map(|(n, v)| {
                        let v = normalize_float_label(s.kind, &n.to_cow(), v);
                        (n.to_string(), v.into_owned())
                    })
                    .collect();
                labels.push(("__name__".to_owned(), s.name.to_string()));
                labels.sort();
                let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
                format!("SERIES {} {:?}{ts} {labels:?}", s.series_key, s.value)
            }
            Err(e) => format!("ERROR {e}"),
        });
    }
    out
}

/// Compares an entry table; returns the indices (into the upstream list, comments included) of the
/// entries surge renders differently, with both renderings.
fn differing_entries(table: &(&[u8], &[Expected]), format: Format) -> Vec<(usize, String, String)> {
    let (input, expected) = table;
    let ours = render_ours(input, format);
    let mut ours = ours.into_iter();
    let mut diffs = Vec::new();
    for (i, e) in expected.iter().enumerate() {
        let Some(want) = render_expected(e) else {
            continue;
        };
        let got = ours.next().unwrap_or_else(|| "(nothing)".to_owned());
        if got != want {
            diffs.push((i, want, got));
        }
    }
    if let Some(extra) = ours.next() {
        diffs.push((expected.len(), "(end)".to_owned(), extra));
    }
    diffs
}

#[track_caller]
fn check_entries(
    table: &(&[u8], &[Expected]),
    format: Format,
    total: usize,
    differs: &[(usize, &str)],
) {
    assert_eq!(table.1.len(), total, "rows in the upstream table");
    let diffs = differing_entries(table, format);
    let got: Vec<usize> = diffs.iter().map(|d| d.0).collect();
    let want: Vec<usize> = differs.iter().map(|d| d.0).collect();
    assert_eq!(got, want, "differing entries: {diffs:#?}");
}

/// Whether surge accepts the whole body.
fn accepts(input: &[u8], format: Format) -> Result<(), String> {
    match Parser::with_checks(input, format, Checks::Prometheus).find_map(Result::err) {
        None => Ok(()),
        Some(e) => Err(e.to_string()),
    }
}

/// Compares an accept/refuse table; returns the indices where surge and upstream disagree.
#[track_caller]
fn check_verdicts(
    table: &[(&[u8], &[u8])],
    format: Format,
    total: usize,
    differs: &[(usize, &str)],
) {
    assert_eq!(table.len(), total, "rows in the upstream table");
    let mut disagree = Vec::new();
    for (i, (input, err)) in table.iter().enumerate() {
        let upstream_accepts = err.is_empty() || *err == b"EOF";
        let ours = accepts(input, format);
        if ours.is_ok() != upstream_accepts {
            disagree.push((i, text(input), text(err), ours));
        }
    }
    let got: Vec<usize> = disagree.iter().map(|d| d.0).collect();
    let want: Vec<usize> = differs.iter().map(|d| d.0).collect();
    assert_eq!(got, want, "disagreements: {disagree:#?}");
}

#[test]
fn prom_parse() {
    check_entries(&entries::PROM_PARSE, Format::Text, 46, &[]);
}

#[test]
fn utf8_prom_parse() {
    check_entries(&entries::UTF8_PROM_PARSE, Format::Text, 13, &[]);
}

#[test]
fn prom_parse_errors() {
    check_verdicts(errors::PROM_PARSE_ERRORS, Format::Text, 18, &[]);
}

#[test]
fn prom_null_byte_handling() {
    check_verdicts(errors::PROM_NULL_BYTE_HANDLING, Format::Text, 9, &[]);
}

#[test]
fn openmetrics_parse() {
    check_entries(&entries::OPENMETRICS_PARSE, Format::OpenMetrics, 86, &[]);
}

#[test]
fn openmetrics_parse_utf8() {
    check_entries(
        &entries::OPENMETRICS_PARSE_UTF8,
        Format::OpenMetrics,
        13,
        &[],
    );
}

#[test]
fn openmetrics_parse_errors() {
    check_verdicts(errors::OM_PARSE_ERRORS, Format::OpenMetrics, 70, &[]);
}

#[test]
fn openmetrics_null_byte_handling() {
    check_verdicts(errors::OM_NULL_BYTE_HANDLING, Format::OpenMetrics, 12, &[]);
}

/// expfmt's parser builds protobuf metric families for client libraries and refuses more than
/// Prometheus's scrape parser (`promparse.go`) does; surge follows the scrape parser, so where the two
/// upstream parsers disagree, surge accepts what Prometheus scrapes. Each such row is listed with what
/// expfmt refuses and why surge accepts it.
const EXPFMT_DIFFERS: &[(usize, &str)] = &[
    (
        0,
        "no newline at the end of the input: promparse appends one",
    ),
    (
        1,
        "the escape `\\t` in a label value: promparse keeps unknown escapes as written",
    ),
    (
        4,
        "a `__name__` label: promparse takes it (the metric name then replaces it)",
    ),
    (
        7,
        "quantile=\"bla\": promparse keeps a non-numeric quantile (it only normalises numbers)",
    ),
    (12, "a second HELP line: promparse does not track families"),
    (13, "a second TYPE line: promparse does not track families"),
    (
        14,
        "TYPE after the family's samples: promparse does not track families",
    ),
    (19, "le=\"bla\": promparse keeps a non-numeric bound"),
    (32, "le=\"0x1p-3\": promparse keeps the bound as written"),
    (
        33,
        "quantile=\"0x1p-3\": promparse keeps the quantile as written",
    ),
    (
        36,
        "the escape `\\x` in a quoted metric name: promparse keeps unknown escapes as written",
    ),
    (
        38,
        "the escape `\\t` in a quoted metric name: promparse keeps unknown escapes as written",
    ),
    (
        43,
        "a negative histogram _count: promparse takes any float value",
    ),
    (
        44,
        "a negative bucket count: promparse takes any float value",
    ),
    (
        45,
        "a negative, fractional histogram _count: promparse takes any float value",
    ),
    (
        46,
        "a negative, fractional bucket count: promparse takes any float value",
    ),
];

#[test]
fn expfmt_text_parse_errors() {
    check_verdicts(
        errors::EXPFMT_TEXT_PARSE_ERRORS,
        Format::Text,
        48,
        EXPFMT_DIFFERS,
    );
}

/// expfmt's good cases: accepted, and every family name and label pair upstream builds is among what
/// surge yields.
#[test]
fn expfmt_text_parse() {
    let table = errors::EXPFMT_TEXT_PARSE;
    let differs: &[(usize, &str)] = &[];
    assert_eq!(table.len(), 18, "rows in the upstream table");
    let mut disagree = Vec::new();
    for (i, (input, families, pairs)) in table.iter().enumerate() {
        let mut names = Vec::new();
        let mut seen_pairs = Vec::new();
        let mut problem = None;
        for entry in Parser::new(input, Format::Text) {
            match entry {
                Ok(Entry::Help { family, .. } | Entry::Type { family, .. }) => {
                    names.push(family.to_string());
                }
                Ok(Entry::Sample(s)) => {
                    names.push(s.name.to_string());
                    seen_pairs.extend(s.labels().map(|(n, v)| (n.to_string(), v.into_owned())));
                }
                Ok(Entry::Unit { .. }) => {}
                Err(e) => problem = Some(e.to_string()),
            }
        }
        let missing_family = families
            .iter()
            .map(|f| text(f))
            .find(|f| !names.contains(f));
        let missing_pair = pairs
            .iter()
            .map(|(n, v)| (text(n), text(v)))
            .find(|p| !seen_pairs.contains(p));
        if problem.is_some() || missing_family.is_some() || missing_pair.is_some() {
            disagree.push((i, text(input), problem, missing_family, missing_pair));
        }
    }
    let got: Vec<usize> = disagree.iter().map(|d| d.0).collect();
    let want: Vec<usize> = differs.iter().map(|d| d.0).collect();
    assert_eq!(got, want, "disagreements: {disagree:#?}");
}
