//! Exposition parsing: Prometheus text 0.0.4 and OpenMetrics 1.0 text, zero-copy.
//!
//! Data enters as a response body ([`decode_body`] undoes `Content-Encoding`, [`format_from_content_type`]
//! picks the dialect) and leaves as borrowed [`Entry`] values from [`Parser`]. The body is checked for
//! UTF-8 once, up front; each line is then validated in a single pass as the iterator reaches it, and a
//! [`Sample`] keeps its raw label text so [`Sample::labels`] can re-walk it without validating again.
//! Validation also records the label set's shape: for the usual plain `name="value",...` set of up to
//! eight labels it notes where each `=` and closing quote is, so `labels()` only slices.
//!
//! Architecture invariants:
//! - nothing is allocated per sample unless a label value or HELP text holds an escape (and OpenMetrics
//!   validation keeps a little per-family state);
//! - the first error ends the iteration: a scrape is all or nothing, as in Prometheus.
//!
//! Text 0.0.4 follows Prometheus's own parser (`model/textparse/promparse.go`): what it rejects is
//! rejected here. OpenMetrics follows the upstream conformance suite (see `examples/openmetrics_conformance.rs`).

use std::borrow::Cow;
use std::io::Read;

use memchr::memchr;
use surge_model::EscapingScheme;

mod name;
mod openmetrics;
mod scan;

pub use name::Name;
pub use scan::LabelIter;

use scan::{Dialect, NameInBraces, ScanError, Shape};

/// Accept header exactly as Prometheus 2.x sends it when scraping (OpenMetrics preferred, then text 0.0.4).
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The Accept header Prometheus 3 sends with its default scrape protocols (OpenMetrics 1.0.0, 0.0.1,
/// text 1.0.0, text 0.0.4), asking the target to write names that are not legacy names with
/// `escaping` (`scrape/scrape.go` `acceptHeader`: only the 1.0.0 formats carry the parameter).
pub fn accept_header(escaping: EscapingScheme) -> &'static str {
    match escaping {
        EscapingScheme::AllowUtf8 => concat!(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,",
            "application/openmetrics-text;version=0.0.1;q=0.5,",
            "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,",
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ),
        EscapingScheme::Underscores => concat!(
            "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,",
            "application/openmetrics-text;version=0.0.1;q=0.5,",
            "text/plain;version=1.0.0;escaping=underscores;q=0.4,",
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ),
        EscapingScheme::Dots => concat!(
            "application/openmetrics-text;version=1.0.0;escaping=dots;q=0.6,",
            "application/openmetrics-text;version=0.0.1;q=0.5,",
            "text/plain;version=1.0.0;escaping=dots;q=0.4,",
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ),
        EscapingScheme::Values => concat!(
            "application/openmetrics-text;version=1.0.0;escaping=values;q=0.6,",
            "application/openmetrics-text;version=0.0.1;q=0.5,",
            "text/plain;version=1.0.0;escaping=values;q=0.4,",
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ),
    }
}

/// Which exposition dialect a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

/// The type a `# TYPE` line gives a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// No `# TYPE` line, or `untyped` (text) / `unknown` (OpenMetrics).
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
            Self::Unknown => "unknown",
        }
    }

    /// Types the text format knows (`untyped` is its name for unknown). `gaugehistogram` (and
    /// `gauge_histogram`) are the names prometheus/common's expfmt takes for the gauge histogram, which
    /// Prometheus 3 writes in the text format too.
    fn from_text(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "gaugehistogram" | "gauge_histogram" => Self::GaugeHistogram,
            "summary" => Self::Summary,
            "untyped" => Self::Unknown,
            _ => return None,
        })
    }

    /// Types OpenMetrics 1.0 knows (`untyped` is not one of them).
    fn from_openmetrics(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "gaugehistogram" => Self::GaugeHistogram,
            "summary" => Self::Summary,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// Prometheus 3's normalisation of the float-valued labels: a summary's `quantile` and a histogram's
/// `le` are rewritten in the canonical OpenMetrics form (`"1"` → `"1.0"`, `"0.50"` → `"0.5"`, `"+inf"`
/// → `"+Inf"`), so that one bucket has one series whichever way the target wrote the bound
/// (`normalizeFloatsInLabelValues` in `model/textparse`). Any other label, or a value that is not a
/// number, is returned as it is. Borrowed when already canonical.
pub fn normalize_float_label<'v>(
    kind: MetricType,
    name: &str,
    value: Cow<'v, str>,
) -> Cow<'v, str> {
    let float_label = matches!(
        (kind, name),
        (MetricType::Summary, "quantile") | (MetricType::Histogram, "le")
    );
    if !float_label {
        return value;
    }
    // `strconv.ParseFloat` also takes hex and underscores, which bounds never hold in practice.
    let Some(v) = scan::parse_number(&value) else {
        return value;
    };
    let canonical = format_openmetrics_float(v);
    if canonical == *value {
        value
    } else {
        Cow::Owned(canonical)
    }
}

/// A float as Prometheus writes it in OpenMetrics (`labels.FormatOpenMetricsFloat`): Go's shortest
/// `%g` form, with `.0` added to a whole number, and `NaN`, `+Inf`, `-Inf`.
pub fn format_openmetrics_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Go's `'g', -1` does.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v.is_sign_negative() { "-" } else { "" };
    // Go: `%e` when the exponent is below -4 or at least 6 (the shortest form's precision), else `%f`.
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{dot}{rest}e{exp_sign}{:02}",
            exp.unsigned_abs()
        );
    }
    let point = exp + 1;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

/// Picks the parser from a response `Content-Type` as Prometheus does: `application/openmetrics-text`
/// (any parameters, any case) is OpenMetrics, anything else (or nothing) is the text format.
pub fn format_from_content_type(content_type: Option<&str>) -> Format {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Why a response body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The `Content-Encoding` is neither `identity` nor `gzip`.
    #[error("unsupported Content-Encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The gzip stream is corrupt or truncated.
    #[error("invalid gzip body")]
    Gzip(#[source] std::io::Error),
    /// The decompressed body is larger than the cap (a gzip bomb, or a target that grew too big).
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
}

/// Decodes a body sent with `Content-Encoding: gzip`, stopping as soon as the decompressed size would
/// exceed `max_decoded_bytes`; an identity (or absent) encoding passes the body through untouched.
pub fn decode_body<'b>(
    body: &'b [u8],
    content_encoding: Option<&str>,
    max_decoded_bytes: usize,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let encoding = content_encoding.map(str::trim).unwrap_or_default();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if !(encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip")) {
        return Err(BodyError::UnsupportedEncoding(encoding.to_owned()));
    }
    // Go's gzip reader (what Prometheus uses) reads concatenated members, so this does too.
    let limit = u64::try_from(max_decoded_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(max_decoded_bytes));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut decoded)
        .map_err(BodyError::Gzip)?;
    if decoded.len() > max_decoded_bytes {
        return Err(BodyError::TooLarge {
            limit: max_decoded_bytes,
        });
    }
    Ok(Cow::Owned(decoded))
}

/// A malformed body: where (1-based line, and column counted in bytes) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// One meaningful line of exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# TYPE family kind`. A quoted family name (`# TYPE "my.metric" gauge`) is given without its
    /// quotes, as are all names below; a [`Name`] is unescaped only when read.
    Type { family: Name<'a>, kind: MetricType },
    /// `# HELP family text`, unescaped.
    Help {
        family: Name<'a>,
        text: Cow<'a, str>,
    },
    /// `# UNIT family unit` (OpenMetrics only).
    Unit { family: Name<'a>, unit: &'a str },
    /// A sample line.
    Sample(Sample<'a>),
}

/// One sample line, borrowed from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name of this line, e.g. `http_request_duration_seconds_bucket`, or `my.metric` for
    /// `{"my.metric"} 1` (unquoted; see [`Name`] for reading one that held an escape).
    pub name: Name<'a>,
    /// The exact input slice `name{...labels...}` (or just `name`, or `{"name",...labels...}`): the
    /// agent's per-target cache key.
    pub series_key: &'a str,
    pub value: f64,
    /// Text: integer milliseconds. OpenMetrics: float seconds converted to milliseconds.
    pub timestamp_ms: Option<i64>,
    /// Type of the family this sample belongs to ([`MetricType::Unknown`] without a `# TYPE`).
    pub kind: MetricType,
    /// The validated text between the braces (empty without labels).
    raw_labels: &'a str,
    /// What validation learned about the label set, so [`Sample::labels`] can take the quickest way.
    shape: Shape,
}

impl<'a> Sample<'a> {
    /// The labels in the order written, as `(name, value)`; a value is unescaped (and allocated) only when
    /// it holds a backslash.
    #[inline]
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter::with_shape(self.raw_labels, self.shape)
    }
}

/// What an OpenMetrics body is checked for (the text format has one set of rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checks {
    /// Everything the OpenMetrics conformance suite checks: line syntax, and the cross-line rules
    /// (families contiguous and not clashing, one HELP / TYPE / UNIT each and before the samples,
    /// histogram buckets consistent, counter values, exemplar placement).
    #[default]
    Conformance,
    /// What Prometheus's own scrape parser (`model/textparse/openmetricsparse.go`) checks: each
    /// line's syntax only. This is what the agent scrapes with, so that it accepts what Prometheus
    /// accepts.
    Prometheus,
}

/// Iterates the entries of a whole body. After an `Err` the iterator ends.
pub struct Parser<'a> {
    src: &'a str,
    /// Offset of the next line.
    pos: usize,
    /// 1-based number of the next line.
    line: usize,
    format: Format,
    done: bool,
    /// Set when the body is not UTF-8: the first item is then this error.
    invalid: Option<ParseError>,
    /// Text format: the family of the last `# TYPE` line, which later samples may belong to: its name
    /// as written (without quotes), its type, and whether the name holds an escape (so it must be
    /// unescaped before comparing; kept `Copy` so that the sample path does not move or drop it).
    text_family: Option<(&'a str, MetricType, bool)>,
    /// OpenMetrics: the per-family validation state.
    om: openmetrics::Validator<'a>,
}

impl<'a> Parser<'a> {
    /// Checks the body for UTF-8 (the only whole-body pass) and prepares to iterate it, with the
    /// conformance suite's checks for OpenMetrics.
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Self::with_checks(input, format, Checks::Conformance)
    }

    /// As [`Parser::new`], with the given OpenMetrics checks.
    pub fn with_checks(input: &'a [u8], format: Format, checks: Checks) -> Self {
        let (src, invalid) = match std::str::from_utf8(input) {
            Ok(src) => (src, None),
            Err(e) => {
                let bad = e.valid_up_to();
                let before = &input[..bad];
                let line = 1 + memchr::memchr_iter(b'\n', before).count();
                let line_start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
                let err = ParseError {
                    line,
                    column: bad - line_start + 1,
                    reason: "invalid UTF-8".to_owned(),
                };
                ("", Some(err))
            }
        };
        Self {
            src,
            pos: 0,
            line: 1,
            format,
            done: false,
            invalid,
            text_family: None,
            om: match checks {
                Checks::Conformance => openmetrics::Validator::default(),
                Checks::Prometheus => openmetrics::Validator::prometheus(),
            },
        }
    }

    /// The next line (without its `\n`) and its number, or `None` at the end of the body.
    #[inline]
    fn next_line(&mut self) -> Option<(&'a str, usize)> {
        let bytes = self.src.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |p| start + p);
        self.pos = end + 1;
        let number = self.line;
        self.line += 1;
        Some((self.src.get(start..end)?, number))
    }

    /// Text format: the next entry. Sets `done` itself on an error, so that a sample goes straight from
    /// [`Parser::text_sample`] to the caller, built in place.
    #[inline]
    fn next_text(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        loop {
            let (line, number) = self.next_line()?;
            let b = line.as_bytes();
            let first = scan::skip_blanks(b, 0);
            match b.get(first) {
                None => continue,
                Some(b'#') => match Self::text_keyword(b, first) {
                    Some((kw, help)) => return self.text_metadata(line, kw, help, number),
                    None => continue,
                },
                Some(_) => return self.text_sample(line, first, number),
            }
        }
    }

    /// Ends the iteration with the error `e` on line `number`.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, number: usize, e: ScanError) -> Option<Result<Entry<'a>, ParseError>> {
        self.done = true;
        Some(Err(ParseError {
            line: number,
            column: e.at + 1,
            reason: e.reason,
        }))
    }

    /// Where the keyword of a `# HELP` or `# TYPE` line starts, and whether it is HELP; `None` for a plain
    /// comment. Prometheus's lexer wants a blank after `#` and after the keyword; anything else is a
    /// comment.
    #[inline]
    fn text_keyword(b: &[u8], hash: usize) -> Option<(usize, bool)> {
        if !b.get(hash + 1).is_some_and(|&c| scan::is_blank(c)) {
            return None;
        }
        let kw = scan::skip_blanks(b, hash + 1);
        let help = match b.get(kw..kw + 4) {
            Some(b"HELP") => true,
            Some(b"TYPE") => false,
            _ => return None,
        };
        if !b.get(kw + 4).is_some_and(|&c| scan::is_blank(c)) {
            return None;
        }
        Some((kw, help))
    }

    /// The `# HELP` or `# TYPE` line whose keyword is at `kw` (see [`Parser::text_keyword`]).
    #[inline]
    fn text_metadata(
        &mut self,
        line: &'a str,
        kw: usize,
        help: bool,
        number: usize,
    ) -> Option<Result<Entry<'a>, ParseError>> {
        let b = line.as_bytes();
        let keyword = if help { "HELP" } else { "TYPE" };
        let name_start = scan::skip_blanks(b, kw + 4);
        let Some((family, name_end)) = scan::metric_name_token(line, name_start) else {
            return self.fail(
                number,
                ScanError::new(name_start, format!("expected metric name after {keyword}")),
            );
        };
        // Prometheus takes the rest of the line after exactly one separating blank.
        let (text, text_at) = match b.get(name_end) {
            None => ("", name_end),
            Some(&c) if scan::is_blank(c) => (&line[name_end + 1..], name_end + 1),
            Some(_) => {
                return self.fail(
                    number,
                    ScanError::new(name_end, "expected a blank after the metric name"),
                );
            }
        };
        if help {
            return Some(Ok(Entry::Help {
                family,
                text: scan::unescape_help(text),
            }));
        }
        let Some(kind) = MetricType::from_text(text) else {
            return self.fail(
                number,
                ScanError::new(text_at, format!("invalid metric type {text:?}")),
            );
        };
        self.text_family = Some((family.raw(), kind, family.is_escaped()));
        Some(Ok(Entry::Type { family, kind }))
    }

    /// A sample line: `name[{labels}] value [timestamp]`, where the name may also be quoted
    /// (`"my.metric"{...}`, as prometheus/common's expfmt reads it) or written inside the braces
    /// (`{"my.metric", a="b"}`, as Prometheus 3 writes it).
    #[inline]
    fn text_sample(
        &mut self,
        line: &'a str,
        start: usize,
        number: usize,
    ) -> Option<Result<Entry<'a>, ParseError>> {
        let b = line.as_bytes();
        let family = self.text_family;
        // Samples mostly follow their `# TYPE` line: a name starting with that (validated) family name
        // needs only the rest checked, and the prefix test is the one `text_kind` needs.
        let mut prefixed = None;
        let (mut name, name_end) = match b.get(start) {
            Some(b'{') => (None, start),
            Some(b'"') => match Self::quoted_name(line, start) {
                Some(quoted) => quoted,
                None => {
                    return self.fail(number, ScanError::new(start, "unterminated metric name"));
                }
            },
            _ => {
                prefixed = family
                    .filter(|(family, _, _)| scan::has_prefix(b, start, family.as_bytes()))
                    .map(|(family, kind, _)| (family.len(), kind));
                let end = match prefixed {
                    Some((len, _)) => scan::metric_name_rest_end(b, start + len),
                    None => scan::metric_name_end(b, start),
                };
                if end == start {
                    return self.fail(number, ScanError::new(start, "expected metric name"));
                }
                (Some(Name::plain(&line[start..end])), end)
            }
        };
        let mut key_end = name_end;
        let mut raw_labels = "";
        let mut shape = Shape::EMPTY;
        let mut i = scan::skip_blanks(b, name_end);
        if b.get(i) == Some(&b'{') {
            let names = if name.is_none() {
                NameInBraces::Allowed
            } else {
                NameInBraces::Forbidden
            };
            let set = match scan::scan_labels(b, i, Dialect::Text, names) {
                Ok(set) => set,
                Err(e) => return self.fail(number, e),
            };
            if let Some(q) = set.name {
                name = Some(q.name(line));
            }
            let close = set.close;
            shape = set.shape;
            raw_labels = &line[i + 1..close];
            key_end = close + 1;
            i = scan::skip_blanks(b, key_end);
        } else if i == name_end && i < b.len() {
            return self.fail(
                number,
                ScanError::new(i, "expected a blank or '{' after the metric name"),
            );
        }
        let Some(name) = name else {
            return self.fail(number, ScanError::new(start, "metric name not set"));
        };
        if i >= b.len() {
            return self.fail(number, ScanError::new(i, "expected value"));
        }
        let value_end = scan::token_end(b, i);
        let token = &line[i..value_end];
        let value = match scan::parse_number(token) {
            Some(v) if !scan::overflowed(token, v) => v,
            _ => {
                return self.fail(
                    number,
                    ScanError::new(i, format!("invalid value {token:?}")),
                );
            }
        };
        let mut timestamp_ms = None;
        let ts = scan::skip_blanks(b, value_end);
        if ts < b.len() {
            let ts_end = scan::token_end(b, ts);
            let token = &line[ts..ts_end];
            let Some(t) = scan::parse_millis(token) else {
                return self.fail(
                    number,
                    ScanError::new(ts, format!("invalid timestamp {token:?}")),
                );
            };
            timestamp_ms = Some(t);
            let rest = scan::skip_blanks(b, ts_end);
            if rest < b.len() {
                return self.fail(
                    number,
                    ScanError::new(rest, "unexpected data after timestamp"),
                );
            }
        }
        let kind = match (prefixed, family) {
            (Some((len, kind)), _) => {
                Self::text_kind(name.raw().get(len..).unwrap_or_default(), kind)
            }
            (None, Some((family, kind, escaped))) => Self::quoted_kind(name, family, kind, escaped),
            (None, _) => MetricType::Unknown,
        };
        Some(Ok(Entry::Sample(Sample {
            name,
            series_key: &line[start..key_end],
            value,
            timestamp_ms,
            kind,
            raw_labels,
            shape,
        })))
    }

    /// The type of a sample whose name did not start with the `# TYPE` family as written: it may
    /// still belong to it when the family was quoted (`# TYPE "a.b" gauge` then `{"a.b"} 1`).
    #[inline(never)]
    fn quoted_kind(name: Name<'_>, family: &str, kind: MetricType, escaped: bool) -> MetricType {
        let name = name.to_cow();
        let family = if escaped {
            Cow::Owned(scan::unescape_label(family))
        } else {
            Cow::Borrowed(family)
        };
        name.strip_prefix(family.as_ref())
            .map_or(MetricType::Unknown, |suffix| Self::text_kind(suffix, kind))
    }

    /// expfmt's quoted metric name at the start of a sample line, `"my.metric"{...}`: the name and the
    /// offset after its closing quote.
    #[cold]
    #[inline(never)]
    fn quoted_name(line: &'a str, start: usize) -> Option<(Option<Name<'a>>, usize)> {
        let q = scan::quoted_at(line.as_bytes(), start)?;
        Some((Some(q.name(line)), q.end + 1))
    }

    /// The type of a sample whose name is the last `# TYPE` family (of type `kind`) followed by `suffix`:
    /// `kind` if the sample is the family itself or one of its children (`_bucket`, `_sum`, `_count` of
    /// a histogram; `_sum`, `_count` of a summary).
    #[inline]
    fn text_kind(suffix: &str, kind: MetricType) -> MetricType {
        let belongs = matches!(
            (suffix, kind),
            ("", _)
                | (
                    "_sum" | "_count",
                    MetricType::Histogram | MetricType::Summary
                )
                | ("_bucket", MetricType::Histogram)
                | (
                    "_bucket" | "_sum" | "_count" | "_gsum" | "_gcount",
                    MetricType::GaugeHistogram
                )
        );
        if belongs { kind } else { MetricType::Unknown }
    }

    fn next_openmetrics(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        loop {
            let at_line = self.line;
            let Some((line, number)) = self.next_line() else {
                if self.om.saw_eof() {
                    return None;
                }
                return Some(Err(ParseError {
                    line: at_line,
                    column: 1,
                    reason: "missing # EOF at the end".to_owned(),
                }));
            };
            if self.om.saw_eof() {
                return Some(Err(ParseError {
                    line: number,
                    column: 1,
                    reason: "unexpected data after # EOF".to_owned(),
                }));
            }
            match self.om.line(line) {
                Ok(Some(entry)) => return Some(Ok(entry)),
                Ok(None) => continue,
                Err(e) => {
                    return Some(Err(ParseError {
                        line: number,
                        column: e.at + 1,
                        reason: e.reason,
                    }));
                }
            }
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.invalid.take() {
            self.done = true;
            return Some(Err(e));
        }
        match self.format {
            // Sets `done` on an error itself; its end (`None`) repeats.
            Format::Text => self.next_text(),
            Format::OpenMetrics => {
                let item = self.next_openmetrics();
                if !matches!(item, Some(Ok(_))) {
                    self.done = true;
                }
                item
            }
        }
    }
}

impl std::iter::FusedIterator for Parser<'_> {}

#[cfg(test)]
mod tests;
