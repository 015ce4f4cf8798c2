//! Data-driven parser tests: `check(format, input, expect)` renders every entry (or the error) one per
//! line and compares with `expect`.

use std::fmt::Write;

use super::*;

fn render(input: &str, format: Format) -> String {
    let mut out = String::new();
    for entry in Parser::new(input.as_bytes(), format) {
        match entry {
            Ok(Entry::Type { family, kind }) => writeln!(out, "TYPE {family} {}", kind.as_str()),
            Ok(Entry::Help { family, text }) => writeln!(out, "HELP {family} {text:?}"),
            Ok(Entry::Unit { family, unit }) => writeln!(out, "UNIT {family} {unit:?}"),
            Ok(Entry::Sample(s)) => {
                let labels: Vec<String> = s.labels().map(|(n, v)| format!("{n}={v:?}")).collect();
                let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
                writeln!(
                    out,
                    "{} {{{}}} {:?}{ts} {} key={:?}",
                    s.name,
                    labels.join(","),
                    s.value,
                    s.kind.as_str(),
                    s.series_key
                )
            }
            Err(e) => writeln!(out, "ERR {e}"),
        }
        .unwrap();
    }
    out
}

#[track_caller]
fn check(format: Format, input: &str, expect: &str) {
    let got = render(input, format);
    let want: String = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, want, "input:\n{input}");
}

/// Only the last rendered line: the error an input ends with.
#[track_caller]
fn check_error(format: Format, input: &str, err: &str) {
    let got = render(input, format);
    assert_eq!(
        got.lines().last(),
        Some(format!("ERR {err}").as_str()),
        "input:\n{input}"
    );
}

#[track_caller]
fn text(input: &str, expect: &str) {
    check(Format::Text, input, expect);
}

#[track_caller]
fn om(input: &str, expect: &str) {
    check(Format::OpenMetrics, input, expect);
}

#[test]
fn text_constructs() {
    // Metadata, comments, blank lines, histogram children attributed to their family.
    text(
        "# HELP h Request latency.\n# TYPE h histogram\n# just a comment\n#nospace\n\n\
         h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.75\nh_count 2\nother 1\n",
        r#"
        HELP h "Request latency."
        TYPE h histogram
        h_bucket {le="0.5"} 1.0 histogram key="h_bucket{le=\"0.5\"}"
        h_bucket {le="+Inf"} 2.0 histogram key="h_bucket{le=\"+Inf\"}"
        h_sum {} 0.75 histogram key="h_sum"
        h_count {} 2.0 histogram key="h_count"
        other {} 1.0 unknown key="other"
        "#,
    );
    // Summary children, untyped, counter.
    text(
        "# TYPE s summary\ns{quantile=\"0.9\"} 3\ns_sum 4\ns_count 5\ns_bucket 1\n\
         # TYPE u untyped\nu 1\n# TYPE c_total counter\nc_total 7\n",
        r#"
        TYPE s summary
        s {quantile="0.9"} 3.0 summary key="s{quantile=\"0.9\"}"
        s_sum {} 4.0 summary key="s_sum"
        s_count {} 5.0 summary key="s_count"
        s_bucket {} 1.0 unknown key="s_bucket"
        TYPE u unknown
        u {} 1.0 unknown key="u"
        TYPE c_total counter
        c_total {} 7.0 counter key="c_total"
        "#,
    );
    // Values, timestamps, blanks between tokens, trailing comma, escapes, no final newline.
    text(
        "a +Inf\nb -Inf\nc NaN\nd Inf\ne 1.5e3 123\nf -0.25e-2\n g { x = \"1\" , y=\"2\", } 3 \t\n\
         h{v=\"a\\\\b\\\"c\\nd\\ze\"} 1\ni{} 2\nj:k 3",
        r#"
        a {} inf unknown key="a"
        b {} -inf unknown key="b"
        c {} NaN unknown key="c"
        d {} inf unknown key="d"
        e {} 1500.0 @123 unknown key="e"
        f {} -0.0025 unknown key="f"
        g {x="1",y="2"} 3.0 unknown key="g { x = \"1\" , y=\"2\", }"
        h {v="a\\b\"c\nd\\ze"} 1.0 unknown key="h{v=\"a\\\\b\\\"c\\nd\\ze\"}"
        i {} 2.0 unknown key="i{}"
        j:k {} 3.0 unknown key="j:k"
        "#,
    );
    // HELP escapes and edge cases Prometheus accepts.
    text(
        "# HELP a line\\nbreak \\\\ \\\" kept\n# HELP b\n# HELP c  two spaces\n#  TYPE  d gauge\n# HELP\n",
        r#"
        HELP a "line\nbreak \\ \\\" kept"
        HELP b ""
        HELP c " two spaces"
        TYPE d gauge
        "#,
    );
    text(
        "a{b=\"}\"} 1{",
        r#"ERR line 1, column 10: invalid value "1{""#,
    );
}

#[test]
fn text_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "a 1\nb{c} 1\n",
            "line 2, column 4: expected '=' after label name",
        ),
        (
            "a{c=1} 1",
            "line 1, column 5: expected '\"' to start label value",
        ),
        ("a{c=\"1} 1", "line 1, column 5: unterminated label value"),
        (
            "a{c=\"1\" d} 1",
            "line 1, column 10: expected '=' after label name",
        ),
        ("a{,} 1", "line 1, column 3: expected label name"),
        ("a{c=\"1\",,} 1", "line 1, column 9: expected label name"),
        ("a{1=\"1\"} 1", "line 1, column 3: expected label name"),
        (
            "a{b=\"1\",b=\"2\"} 1",
            "line 1, column 9: duplicate label name \"b\"",
        ),
        (
            "a{c=\"1\",b=\"2\",c=\"3\"} 1",
            "line 1, column 15: duplicate label name \"c\"",
        ),
        ("a abc", "line 1, column 3: invalid value \"abc\""),
        ("a", "line 1, column 2: expected value"),
        ("a{} ", "line 1, column 5: expected value"),
        ("a 0x1p-3", "line 1, column 3: invalid value \"0x1p-3\""),
        ("a 1_000", "line 1, column 3: invalid value \"1_000\""),
        ("a 1e999", "line 1, column 3: invalid value \"1e999\""),
        ("a -NaN", "line 1, column 3: invalid value \"-NaN\""),
        ("a 1 -", "line 1, column 5: invalid timestamp \"-\""),
        ("a 1 --5", "line 1, column 5: invalid timestamp \"--5\""),
        ("a 1 1.5", "line 1, column 5: invalid timestamp \"1.5\""),
        (
            "a 1 99999999999999999999",
            "line 1, column 5: invalid timestamp \"99999999999999999999\"",
        ),
        (
            "a 1 2 3",
            "line 1, column 7: unexpected data after timestamp",
        ),
        (
            "a-b 1",
            "line 1, column 2: expected a blank or '{' after the metric name",
        ),
        ("0a 1", "line 1, column 1: expected metric name"),
        (
            "{__name__=\"a\"} 1",
            "line 1, column 1: metric name not set",
        ),
        (
            "# TYPE a info",
            "line 1, column 10: invalid metric type \"info\"",
        ),
        (
            "# TYPE a counter ",
            "line 1, column 10: invalid metric type \"counter \"",
        ),
        ("# TYPE a", "line 1, column 9: invalid metric type \"\""),
        (
            "# HELP 0a x",
            "line 1, column 8: expected metric name after HELP",
        ),
        (
            "# TYPE a{ counter",
            "line 1, column 9: expected a blank after the metric name",
        ),
    ];
    for (input, err) in cases {
        check_error(Format::Text, input, err);
    }
    let invalid = Parser::new(b"a 1\nb{c=\"\xff\"} 1\n", Format::Text).collect::<Vec<_>>();
    assert_eq!(invalid.len(), 1, "an invalid body yields only the error");
    assert_eq!(
        invalid[0].as_ref().unwrap_err().to_string(),
        "line 2, column 6: invalid UTF-8"
    );
    // The iterator ends after an error, even though later lines are fine.
    text(
        "a 1\nb x\nc 3\n",
        "a {} 1.0 unknown key=\"a\"\nERR line 2, column 3: invalid value \"x\"",
    );
}

#[test]
fn openmetrics_constructs() {
    om(
        "# TYPE a counter\n# HELP a A \\\\ counter.\n# UNIT a \na_total{x=\"1\"} 1 1.5 # {trace=\"t\"} 0.5 1.25\n\
         a_created{x=\"1\"} 1700000000.123 1.5\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 2 # {} 3\n\
         h_count 2\nh_sum 3\n# TYPE s stateset\ns{s=\"on\"} 1\ns{s=\"off\"} 0\n# TYPE i info\ni_info{v=\"1.2\"} 1\n\
         # TYPE g_seconds gauge\n# UNIT g_seconds seconds\ng_seconds -Inf\n# EOF",
        r#"
        TYPE a counter
        HELP a "A \\ counter."
        UNIT a ""
        a_total {x="1"} 1.0 @1500 counter key="a_total{x=\"1\"}"
        a_created {x="1"} 1700000000.123 @1500 counter key="a_created{x=\"1\"}"
        TYPE h histogram
        h_bucket {le="1"} 0.0 histogram key="h_bucket{le=\"1\"}"
        h_bucket {le="+Inf"} 2.0 histogram key="h_bucket{le=\"+Inf\"}"
        h_count {} 2.0 histogram key="h_count"
        h_sum {} 3.0 histogram key="h_sum"
        TYPE s stateset
        s {s="on"} 1.0 stateset key="s{s=\"on\"}"
        s {s="off"} 0.0 stateset key="s{s=\"off\"}"
        TYPE i info
        i_info {v="1.2"} 1.0 info key="i_info{v=\"1.2\"}"
        TYPE g_seconds gauge
        UNIT g_seconds "seconds"
        g_seconds {} -inf gauge key="g_seconds"
        "#,
    );
    om("a 1 0.0000001\n# EOF\n", "a {} 1.0 @0 unknown key=\"a\"");
}

#[test]
fn openmetrics_errors() {
    let cases: &[(&str, &str)] = &[
        ("a 1\n", "line 2, column 1: missing # EOF at the end"),
        (
            "a 1\n# EOF\n\n",
            "line 3, column 1: unexpected data after # EOF",
        ),
        ("a 1\n\n# EOF\n", "line 2, column 1: blank line"),
        (
            "a{b=\"1\",} 1\n# EOF\n",
            "line 1, column 9: expected label name",
        ),
        (
            "a { b=\"1\"} 1\n# EOF\n",
            "line 1, column 3: invalid value \"{\"",
        ),
        ("a  1\n# EOF\n", "line 1, column 3: invalid value \"\""),
        ("a 1 \n# EOF\n", "line 1, column 5: invalid timestamp \"\""),
        (
            "# TYPE a untyped\n# EOF\n",
            "line 1, column 10: invalid metric type \"untyped\"",
        ),
        (
            "# TYPE a counter\na_total -1\n# EOF\n",
            "line 2, column 1: a_total cannot be negative, got -1",
        ),
        (
            "# TYPE a gauge\na 1 # {} 1\n# EOF\n",
            "line 2, column 5: exemplars are only allowed on histogram buckets and counter totals",
        ),
        (
            "# UNIT a_s m\n# EOF\n",
            "line 1, column 12: unit \"m\" is not a suffix of the metric name a_s",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# EOF\n",
            "line 3, column 1: histogram h has no +Inf bucket",
        ),
        (
            "a 1\nb 1\na 2\n# EOF\n",
            "line 4, column 1: metric name a clashes with an earlier family",
        ),
    ];
    for (input, err) in cases {
        check_error(Format::OpenMetrics, input, err);
    }
}

#[test]
fn labels_borrow_unless_escaped() {
    let body = b"a{x=\"plain\",y=\"es\\\"c\"} 1\n";
    let Some(Ok(Entry::Sample(s))) = Parser::new(body, Format::Text).next() else {
        panic!("expected a sample");
    };
    let labels: Vec<_> = s.labels().collect();
    assert!(matches!(labels[0].1, Cow::Borrowed("plain")));
    assert!(matches!(&labels[1].1, Cow::Owned(v) if v == "es\"c"));
}

#[test]
fn content_negotiation() {
    let cases: &[(Option<&str>, Format)] = &[
        (None, Format::Text),
        (Some(""), Format::Text),
        (
            Some("text/plain; version=0.0.4; charset=utf-8"),
            Format::Text,
        ),
        (
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics,
        ),
        (Some("Application/OpenMetrics-Text"), Format::OpenMetrics),
        (
            Some(" application/openmetrics-text ;version=0.0.1"),
            Format::OpenMetrics,
        ),
        (Some("application/json"), Format::Text),
    ];
    for (ct, want) in cases {
        assert_eq!(format_from_content_type(*ct), *want, "{ct:?}");
    }
    assert!(ACCEPT_HEADER.starts_with("application/openmetrics-text;version=1.0.0,"));
    // Prometheus 3's header (scrape/scrape.go acceptHeader with the default scrape protocols).
    assert_eq!(
        accept_header(EscapingScheme::AllowUtf8),
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
         application/openmetrics-text;version=0.0.1;q=0.5,\
         text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
         text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    );
    for scheme in [
        EscapingScheme::Underscores,
        EscapingScheme::Dots,
        EscapingScheme::Values,
    ] {
        let header = accept_header(scheme);
        let param = format!(";escaping={scheme};");
        assert_eq!(header.matches(param.as_str()).count(), 2, "{header}");
        assert_eq!(header.matches("escaping=").count(), 2, "{header}");
    }
}

#[test]
fn body_decoding() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;

    let plain = b"a 1\n".repeat(1000);
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();

    assert!(matches!(
        decode_body(&plain, None, 10),
        Ok(Cow::Borrowed(_))
    ));
    assert!(matches!(
        decode_body(&plain, Some("identity"), 10),
        Ok(Cow::Borrowed(_))
    ));
    assert_eq!(
        decode_body(&gz, Some("gzip"), plain.len())
            .unwrap()
            .as_ref(),
        &plain[..]
    );
    assert!(matches!(
        decode_body(&gz, Some("GZIP"), plain.len() - 1),
        Err(BodyError::TooLarge { limit }) if limit == plain.len() - 1
    ));
    assert!(matches!(
        decode_body(&gz[..gz.len() / 2], Some("gzip"), 1 << 20),
        Err(BodyError::Gzip(_))
    ));
    assert!(
        matches!(decode_body(&gz, Some("br"), 1 << 20), Err(BodyError::UnsupportedEncoding(e)) if e == "br")
    );
}

/// Prometheus 3's quoted names: `{"name", ...}`, quoted label names, quoted metadata names, and
/// expfmt's `"name"{...}` form; gauge histograms and negative timestamps in the text format.
#[test]
fn text_prometheus3_constructs() {
    text(
        "# HELP \"my.metric\" A \\\"dotted\\\" one.\n# TYPE \"my.metric\" gauge\n\
         {\"my.metric\", \"k.8s\"=\"v\"} 1\n{\"my.metric\"} 2\n\"my.metric\"{a=\"b\"} 3 -1000\n\
         \"my.metric\" 4\n{\"a\\\"q\"} 5\nb{\"c d\"=\"e\",f=\"g\"} 6\n",
        r#"
        HELP my.metric "A \\\"dotted\\\" one."
        TYPE my.metric gauge
        my.metric {k.8s="v"} 1.0 gauge key="{\"my.metric\", \"k.8s\"=\"v\"}"
        my.metric {} 2.0 gauge key="{\"my.metric\"}"
        my.metric {a="b"} 3.0 @-1000 gauge key="\"my.metric\"{a=\"b\"}"
        my.metric {} 4.0 gauge key="\"my.metric\""
        a"q {} 5.0 unknown key="{\"a\\\"q\"}"
        b {c d="e",f="g"} 6.0 unknown key="b{\"c d\"=\"e\",f=\"g\"}"
        "#,
    );
    text(
        "# TYPE g gaugehistogram\ng_bucket{le=\"1\"} 1\ng_bucket{le=\"+Inf\"} 2\ng_gcount 2\ng_gsum 3\n",
        r#"
        TYPE g gaugehistogram
        g_bucket {le="1"} 1.0 gaugehistogram key="g_bucket{le=\"1\"}"
        g_bucket {le="+Inf"} 2.0 gaugehistogram key="g_bucket{le=\"+Inf\"}"
        g_gcount {} 2.0 gaugehistogram key="g_gcount"
        g_gsum {} 3.0 gaugehistogram key="g_gsum"
        "#,
    );
    let errors: &[(&str, &str)] = &[
        (
            "{\"a\",\"b\"} 1",
            "line 1, column 6: metric name already set",
        ),
        ("a{\"b\"} 1", "line 1, column 3: expected label name"),
        (
            "{\"a} 1",
            "line 1, column 2: unterminated quoted label name",
        ),
        ("\"a 1", "line 1, column 1: unterminated metric name"),
        ("{a=\"b\"} 1", "line 1, column 1: metric name not set"),
    ];
    for (input, err) in errors {
        check_error(Format::Text, input, err);
    }
}

#[test]
fn openmetrics_prometheus3_constructs() {
    om(
        "# TYPE \"my.counter\" counter\n# UNIT \"my.counter\" \n{\"my.counter_total\",\"k.8s\"=\"v\"} 1 -1.5\n# EOF\n",
        r#"
        TYPE my.counter counter
        UNIT my.counter ""
        my.counter_total {k.8s="v"} 1.0 @-1500 counter key="{\"my.counter_total\",\"k.8s\"=\"v\"}"
        "#,
    );
    check_error(
        Format::OpenMetrics,
        "a_total 1 # {\"x\"} 1\n# EOF\n",
        "line 1, column 14: expected label name",
    );
}

/// `labels.FormatOpenMetricsFloat` and the `le` / `quantile` normalisation of `model/textparse`.
#[test]
fn float_label_normalisation() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (1.0, "1.0"),
        (0.25, "0.25"),
        (-1.5, "-1.5"),
        (100000.0, "100000.0"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e300, "1e+300"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
        (-0.0, "-0.0"),
    ];
    for &(v, want) in cases {
        assert_eq!(format_openmetrics_float(v), want, "{v}");
    }
    let n = |kind, name, v: &'static str| normalize_float_label(kind, name, Cow::Borrowed(v));
    assert_eq!(n(MetricType::Histogram, "le", "1"), "1.0");
    assert_eq!(n(MetricType::Histogram, "le", "+inf"), "+Inf");
    assert_eq!(n(MetricType::Histogram, "le", "0.50"), "0.5");
    assert_eq!(n(MetricType::Summary, "quantile", "0"), "0.0");
    assert_eq!(n(MetricType::Histogram, "le", "x"), "x");
    assert_eq!(n(MetricType::GaugeHistogram, "le", "1"), "1");
    assert_eq!(n(MetricType::Summary, "le", "1"), "1");
    assert_eq!(n(MetricType::Unknown, "le", "1"), "1");
    assert!(matches!(
        n(MetricType::Histogram, "le", "1.0"),
        Cow::Borrowed(_)
    ));
}
