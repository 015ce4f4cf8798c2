//! Byte-level scanning shared by both formats: names, label sets, numbers, unescaping.
//!
//! Everything here works on byte offsets into an already UTF-8-validated line, and only ever stops on
//! ASCII bytes, so every offset it returns is a char boundary.

use std::borrow::Cow;

/// Byte classes, one bit per role.
const METRIC_START: u8 = 1; // [a-zA-Z_:]
const METRIC_CONT: u8 = 2; // [a-zA-Z0-9_:]
const LABEL_START: u8 = 4; // [a-zA-Z_]
const LABEL_CONT: u8 = 8; // [a-zA-Z0-9_]

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let mut class = 0;
        if alpha || b == b':' {
            class |= METRIC_START | METRIC_CONT;
        }
        if alpha {
            class |= LABEL_START | LABEL_CONT;
        }
        if b.is_ascii_digit() {
            class |= METRIC_CONT | LABEL_CONT;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// Where a scan failed: the byte offset (within the line) and why.
#[derive(Debug)]
pub(super) struct ScanError {
    pub at: usize,
    pub reason: String,
}

impl ScanError {
    pub(super) fn new(at: usize, reason: impl Into<String>) -> Self {
        Self {
            at,
            reason: reason.into(),
        }
    }
}

/// The two label-set dialects. Text 0.0.4 (as Prometheus lexes it) allows blanks between tokens and a
/// trailing comma; OpenMetrics allows neither.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Text,
    OpenMetrics,
}

/// End of the metric name `[a-zA-Z_:][a-zA-Z0-9_:]*` starting at `i` (`i` itself when there is none).
#[inline]
pub(super) fn metric_name_end(b: &[u8], mut i: usize) -> usize {
    match b.get(i) {
        Some(&c) if CLASS[c as usize] & METRIC_START != 0 => i += 1,
        _ => return i,
    }
    while let Some(&c) = b.get(i) {
        if CLASS[c as usize] & METRIC_CONT == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// End of the label name `[a-zA-Z_][a-zA-Z0-9_]*` starting at `i` (`i` itself when there is none).
#[inline]
fn label_name_end(b: &[u8], mut i: usize) -> usize {
    match b.get(i) {
        Some(&c) if CLASS[c as usize] & LABEL_START != 0 => i += 1,
        _ => return i,
    }
    while let Some(&c) = b.get(i) {
        if CLASS[c as usize] & LABEL_CONT == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// Whether `s` as a whole is a valid metric name.
pub(super) fn is_metric_name(s: &str) -> bool {
    !s.is_empty() && metric_name_end(s.as_bytes(), 0) == s.len()
}

#[inline]
pub(super) fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// First offset at or after `i` that is not a blank.
#[inline]
pub(super) fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_blank(c)) {
        i += 1;
    }
    i
}

/// First offset at or after `i` that is a blank (or the end).
#[inline]
pub(super) fn token_end(b: &[u8], i: usize) -> usize {
    match b.get(i..) {
        Some(rest) => rest
            .iter()
            .position(|&c| is_blank(c))
            .map_or(b.len(), |p| i + p),
        None => b.len(),
    }
}

/// Offset of the first `a` or `b` at or after `i`, eight bytes at a time (SWAR: label values and names
/// are mostly shorter than `memchr`'s vector setup pays for).
#[inline]
fn find2(hay: &[u8], i: usize, a: u8, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rest = hay.get(i..)?;
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut chunks = rest.chunks_exact(8);
    let mut offset = i;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let (xa, xb) = (w ^ pa, w ^ pb);
        // A zero byte in xa or xb marks a match; the lowest flagged byte is exact.
        let found = ((xa.wrapping_sub(LO) & !xa) | (xb.wrapping_sub(LO) & !xb)) & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|p| offset + p)
}

/// Offset of the first `"` or `\\` at or after `i`.
#[inline]
fn quote_or_backslash(b: &[u8], i: usize) -> Option<usize> {
    find2(b, i, b'"', b'\\')
}

/// Offset of the quote that closes a label value whose first byte is at `i`.
#[inline]
fn closing_quote(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let p = quote_or_backslash(b, i)?;
        if b[p] == b'"' {
            return Some(p);
        }
        // A backslash escapes whatever follows it; the pair is unescaped later (or kept as is).
        i = p + 2;
    }
}

/// Label sets up to this size are checked for duplicate names on the stack; larger ones re-scan.
const INLINE_NAMES: usize = 32;

/// Validates the label set whose `{` is at `open` and returns the offset of its `}`.
///
/// Label names must be unique. While names arrive sorted (as most exposition writes them) one comparison
/// with the previous name proves it; otherwise each name is compared with the earlier ones, kept in a
/// small array on the stack.
#[inline]
pub(super) fn scan_labels(b: &[u8], open: usize, dialect: Dialect) -> Result<usize, ScanError> {
    let text = dialect == Dialect::Text;
    let skip = |i| if text { skip_blanks(b, i) } else { i };
    let mut i = skip(open + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(i);
    }
    let mut names: [&[u8]; INLINE_NAMES] = [&[]; INLINE_NAMES];
    let mut count = 0usize;
    let mut sorted = true;
    let mut prev: &[u8] = &[];
    loop {
        let name_start = i;
        let name_end = label_name_end(b, i);
        if name_end == name_start {
            return Err(ScanError::new(i, "expected label name"));
        }
        let name = &b[name_start..name_end];
        if count > 0 {
            // Names nearly always differ in their first byte: decide on it before comparing the rest.
            if sorted && !first_byte_greater(name, prev) && name <= prev {
                sorted = false;
            }
            if !sorted
                && count <= INLINE_NAMES
                && names[..count]
                    .iter()
                    .any(|n| n.first() == name.first() && *n == name)
            {
                return Err(duplicate(name_start, name));
            }
        }
        if count < INLINE_NAMES {
            names[count] = name;
        }
        prev = name;
        count += 1;
        i = skip(name_end);
        if b.get(i) != Some(&b'=') {
            return Err(ScanError::new(i, "expected '=' after label name"));
        }
        i = skip(i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(ScanError::new(i, "expected '\"' to start label value"));
        }
        let Some(close) = closing_quote(b, i + 1) else {
            return Err(ScanError::new(i, "unterminated label value"));
        };
        i = skip(close + 1);
        match b.get(i) {
            Some(b'}') => break,
            Some(b',') => {
                i = skip(i + 1);
                if text && b.get(i) == Some(&b'}') {
                    break;
                }
            }
            _ => {
                return Err(ScanError::new(i, "expected ',' or '}' after label value"));
            }
        }
    }
    if !sorted && count > INLINE_NAMES {
        check_unique(b, open + 1, i)?;
    }
    Ok(i)
}

#[inline]
fn first_byte_greater(a: &[u8], b: &[u8]) -> bool {
    matches!((a.first(), b.first()), (Some(x), Some(y)) if x > y)
}

fn duplicate(at: usize, name: &[u8]) -> ScanError {
    ScanError::new(
        at,
        format!("duplicate label name \"{}\"", String::from_utf8_lossy(name)),
    )
}

/// Quadratic uniqueness check over an already validated label set `b[start..end]`.
fn check_unique(b: &[u8], start: usize, end: usize) -> Result<(), ScanError> {
    let Some(raw) = b.get(start..end) else {
        return Ok(());
    };
    let mut outer = RawLabels::new(raw);
    while let Some((name, _)) = outer.next_bytes() {
        let mut inner = outer.clone();
        while let Some((other, _)) = inner.next_bytes() {
            if other == name {
                let at = start + (other.as_ptr() as usize - raw.as_ptr() as usize);
                return Err(duplicate(at, other));
            }
        }
    }
    Ok(())
}

/// Iterates the `(name, escaped value)` pairs of an already validated label set (the text between the
/// braces). Stops quietly on anything unexpected, which validation has ruled out.
#[derive(Clone)]
pub(super) struct RawLabels<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> RawLabels<'a> {
    pub(super) fn new(raw: &'a [u8]) -> Self {
        Self { raw, pos: 0 }
    }

    /// Next pair as bytes, plus whether the value holds a backslash.
    #[inline]
    fn next_pair(&mut self) -> Option<(&'a [u8], &'a [u8], bool)> {
        let b = self.raw;
        let mut i = self.pos;
        while b.get(i).is_some_and(|&c| is_blank(c) || c == b',') {
            i += 1;
        }
        // Validated already: the name runs to '=' (minus blanks before it in the text dialect).
        let Some(eq) = find2(b, i, b'=', b'=') else {
            self.pos = b.len();
            return None;
        };
        let mut name_end = eq;
        while name_end > i && is_blank(b[name_end - 1]) {
            name_end -= 1;
        }
        if name_end == i {
            self.pos = b.len();
            return None;
        }
        let name = &b[i..name_end];
        i = skip_blanks(b, eq + 1);
        if b.get(i) != Some(&b'"') {
            self.pos = b.len();
            return None;
        }
        let start = i + 1;
        // Fast path: no backslash before the closing quote.
        let first = quote_or_backslash(b, start)?;
        let (close, escaped) = if b[first] == b'"' {
            (first, false)
        } else {
            (closing_quote(b, first)?, true)
        };
        self.pos = close + 1;
        Some((name, &b[start..close], escaped))
    }

    fn next_bytes(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        self.next_pair().map(|(n, v, _)| (n, v))
    }
}

/// Iterates a sample's labels as `(name, value)`, unescaping a value only when it holds a backslash.
#[derive(Clone)]
pub struct LabelIter<'a> {
    raw: &'a str,
    inner: RawLabels<'a>,
}

impl<'a> LabelIter<'a> {
    #[inline]
    pub(super) fn new(raw: &'a str) -> Self {
        Self {
            raw,
            inner: RawLabels::new(raw.as_bytes()),
        }
    }

    /// Next label with its value still escaped, as it appears on the wire.
    #[inline]
    pub(super) fn next_raw(&mut self) -> Option<(&'a str, &'a str, bool)> {
        let (name, value, escaped) = self.inner.next_pair()?;
        Some((self.slice(name)?, self.slice(value)?, escaped))
    }

    /// Re-borrows a sub-slice of `raw` as `&str` (the boundaries are ASCII, so this never fails).
    #[inline]
    fn slice(&self, part: &'a [u8]) -> Option<&'a str> {
        let start = part.as_ptr() as usize - self.raw.as_ptr() as usize;
        self.raw.get(start..start + part.len())
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, Cow<'a, str>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, escaped) = self.next_raw()?;
        if escaped {
            Some((name, Cow::Owned(unescape_label(value))))
        } else {
            Some((name, Cow::Borrowed(value)))
        }
    }
}

/// Label value escapes: `\\`, `\"` and `\n`; any other backslash pair is kept as written (as Prometheus
/// does).
pub(super) fn unescape_label(s: &str) -> String {
    unescape(s, true)
}

/// HELP escapes: `\\` and `\n` only.
pub(super) fn unescape_help(s: &str) -> Cow<'_, str> {
    if s.contains('\\') {
        Cow::Owned(unescape(s, false))
    } else {
        Cow::Borrowed(s)
    }
}

fn unescape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Exact powers of ten (all representable in an f64).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses a number as both formats write it (Go's `strconv.ParseFloat` minus hex and underscores, which
/// Prometheus refuses, and the OpenMetrics ABNF): `[+-]digits[.digits][e[+-]digits]` with at least one
/// digit in the mantissa, `[+-]Inf`/`[+-]Infinity` and `NaN`, the words in any case.
///
/// Plain decimals with at most 19 significant digits and a small exponent take Clinger's fast path (one
/// exact multiplication or division, hence correctly rounded); anything else goes to `str::parse`.
#[inline]
pub(super) fn parse_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (neg, digits_at) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let rest = &b[digits_at..];
    if rest.first()?.is_ascii_alphabetic() {
        return parse_word(rest, neg, digits_at == 1);
    }
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut significant = 0u32;
    let mut digits = 0u32;
    let mut scale: i32 = 0;
    while let Some(&c) = rest.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if mantissa != 0 || c != b'0' {
            significant += 1;
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        }
        digits += 1;
        i += 1;
    }
    if rest.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&c) = rest.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            if mantissa != 0 || c != b'0' {
                significant += 1;
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            }
            scale -= 1;
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    let mut exponent: i32 = 0;
    if rest.get(i).is_some_and(|&c| c | 0x20 == b'e') {
        i += 1;
        let exp_neg = match rest.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(&c) = rest.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i32::from(c - b'0'));
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_neg {
            exponent = -exponent;
        }
    }
    if i != rest.len() {
        return None;
    }
    let e = exponent.saturating_add(scale);
    let value = if mantissa == 0 && significant == 0 {
        0.0
    } else if significant <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&e) {
        let m = mantissa as f64;
        if e < 0 {
            m / POW10[e.unsigned_abs() as usize]
        } else {
            m * POW10[e as usize]
        }
    } else {
        // The syntax is checked above and is a subset of what `str::parse` accepts.
        return s.parse::<f64>().ok();
    };
    Some(if neg { -value } else { value })
}

fn parse_word(word: &[u8], neg: bool, signed: bool) -> Option<f64> {
    if word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"infinity") {
        Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    } else if !signed && word.eq_ignore_ascii_case(b"nan") {
        Some(f64::NAN)
    } else {
        None
    }
}

/// Whether a token that parsed to an infinity spelled a finite number (an overflow such as `1e999`).
pub(super) fn overflowed(token: &str, value: f64) -> bool {
    value.is_infinite()
        && token
            .as_bytes()
            .last()
            .is_some_and(|c| !c.is_ascii_alphabetic())
}

/// An unsigned run of decimal digits that fits an `i64` (the text format's millisecond timestamp).
#[inline]
pub(super) fn parse_millis(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in s.as_bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

/// Converts OpenMetrics float seconds to integer milliseconds (rounded; saturating at the `i64` range).
pub(super) fn seconds_to_millis(seconds: f64) -> i64 {
    // `as` saturates on overflow, which is the documented behaviour for absurd timestamps.
    (seconds * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("-1", Some(-1.0)),
            ("+1.5", Some(1.5)),
            ("1.", Some(1.0)),
            (".5", Some(0.5)),
            ("1e3", Some(1000.0)),
            ("1E-3", Some(0.001)),
            ("1.5e+3", Some(1500.0)),
            ("0.1", Some(0.1)),
            ("0.013300656000000001", Some(0.013300656000000001)),
            ("12345678901234567890.5", Some(12345678901234567890.5)),
            ("9223372036854775808", Some(9223372036854775808.0)),
            ("1e400", Some(f64::INFINITY)),
            ("1e-400", Some(0.0)),
            (
                "0000000000000000000000000000000000000000001.2e-1",
                Some(0.12),
            ),
            ("Inf", Some(f64::INFINITY)),
            ("+inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("", None),
            (".", None),
            ("-", None),
            ("e5", None),
            ("1e", None),
            ("1e+", None),
            ("1_2", None),
            ("0x1", None),
            ("0x1p-3", None),
            ("1.1.1", None),
            ("-NaN", None),
            ("abc", None),
            (" 1", None),
            ("1 ", None),
        ];
        for (input, want) in cases {
            let got = parse_number(input);
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{input:?}");
        }
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert!(parse_number("nan").is_some_and(f64::is_nan));
        assert_eq!(
            parse_number("-0").map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
    }

    #[test]
    fn fast_path_matches_std() {
        for s in [
            "3.14159",
            "2.5e-7",
            "123456789012345678",
            "0.000123",
            "98765.4321e10",
            "1e22",
            "1e-22",
            "9007199254740993",
            "4.35",
            "0.3",
        ] {
            assert_eq!(parse_number(s), s.parse::<f64>().ok(), "{s}");
        }
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_label(r#"a\\b\"c\nd\ze"#), "a\\b\"c\nd\\ze");
        assert_eq!(unescape_help(r#"a\\b\"c\nd"#), "a\\b\\\"c\nd");
    }
}
