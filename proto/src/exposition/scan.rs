//! Byte-level scanning shared by both formats: names, label sets, numbers, unescaping.
//!
//! Everything here works on byte offsets into an already UTF-8-validated line, and only ever stops on
//! ASCII bytes, so every offset it returns is a char boundary.

use std::borrow::Cow;
use std::ops::Range;

use super::Name;

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
pub(super) fn metric_name_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(&c) if CLASS[c as usize] & METRIC_START != 0 => name_run_end::<true>(b, i + 1),
        _ => i,
    }
}

/// End of a metric name whose first `i - start` bytes are known to be a valid metric name: the rest of
/// `[a-zA-Z0-9_:]*` from `i`.
#[inline]
pub(super) fn metric_name_rest_end(b: &[u8], i: usize) -> usize {
    name_run_end::<true>(b, i)
}

/// Whether `b[at..]` starts with `prefix` (compared a word at a time).
#[inline]
pub(super) fn has_prefix(b: &[u8], at: usize, prefix: &[u8]) -> bool {
    let n = prefix.len();
    let Some(head) = b.get(at..at + n) else {
        return false;
    };
    if n < 8 {
        return head == prefix;
    }
    // Whole words, then the last eight bytes (which may overlap the last whole word).
    let mut k = 0;
    while k + 8 <= n {
        if word_at(head, k) != word_at(prefix, k) {
            return false;
        }
        k += 8;
    }
    word_at(head, n - 8) == word_at(prefix, n - 8)
}

/// End of the label name `[a-zA-Z_][a-zA-Z0-9_]*` starting at `i` (`i` itself when there is none).
#[inline]
fn label_name_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(&c) if CLASS[c as usize] & LABEL_START != 0 => name_run_end::<false>(b, i + 1),
        _ => i,
    }
}

/// End of the run of name bytes (`[a-zA-Z0-9_]`, plus `:` when `COLON`) starting at `i`, eight bytes at
/// a time.
#[inline(always)]
fn name_run_end<const COLON: bool>(b: &[u8], i: usize) -> usize {
    let mut offset = i;
    while let Some(w) = word_at(b, offset) {
        let bad = !name_bytes::<COLON>(w) & HI;
        if bad != 0 {
            return offset + (bad.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    let class = if COLON { METRIC_CONT } else { LABEL_CONT };
    let rest = b.get(offset..).unwrap_or_default();
    offset
        + rest
            .iter()
            .position(|&c| CLASS[c as usize] & class == 0)
            .unwrap_or(rest.len())
}

/// The high bit of each byte of `w` that is a name byte: `[a-zA-Z0-9_]`, plus `:` when `COLON`. Exact
/// per byte (no carry crosses bytes).
#[inline(always)]
fn name_bytes<const COLON: bool>(w: u64) -> u64 {
    let ascii = !w & HI;
    let x = w & !HI;
    // `x + (0x80 - lo)` has its high bit set exactly when `x >= lo` (x < 0x80, so nothing carries out).
    let at_least = |lo: u8| x + LO * u64::from(0x80 - lo);
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let folded = x | (LO * 0x20);
    let folded_at_least = |lo: u8| folded + LO * u64::from(0x80 - lo);
    let alpha = folded_at_least(b'a') & !folded_at_least(b'z' + 1);
    let mut ok = digit | alpha | exact_eq(x, b'_');
    if COLON {
        ok |= exact_eq(x, b':');
    }
    ok & ascii & HI
}

/// The high bit of each byte of `x` (all bytes below 0x80) equal to `c`. Exact per byte.
#[inline(always)]
fn exact_eq(x: u64, c: u8) -> u64 {
    let t = x ^ (LO * u64::from(c));
    // A byte of `t` is below 0x80; adding 0x7f sets its high bit exactly when it is not zero.
    !(t + LO * 0x7f) & HI
}

/// The offset of the `=` after a valid label name starting at `i`, when the eight bytes at `i` hold
/// both (the common case, decided without a loop); `None` otherwise, valid or not.
#[inline(always)]
fn short_label_name(b: &[u8], i: usize) -> Option<usize> {
    let w = word_at(b, i)?;
    let eq = exact_eq(w & !HI, b'=') & !w;
    let first_eq = eq & eq.wrapping_neg();
    // The high bits of the bytes before the first `=`: the name, which must be all name bytes, not
    // empty, and not start with a digit.
    let name = first_eq.wrapping_sub(1) & HI;
    if first_eq == 0
        || name == 0
        || name & !name_bytes::<false>(w) != 0
        || (w as u8).is_ascii_digit()
    {
        return None;
    }
    Some(i + (first_eq.trailing_zeros() / 8) as usize)
}

/// The metric name at `i` of a metadata line, bare (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or quoted (`"my.metric"`,
/// unquoted and unescaped), and the offset after it. `None` when there is none, or its quote is not
/// closed.
pub(super) fn metric_name_token(line: &str, i: usize) -> Option<(Name<'_>, usize)> {
    let b = line.as_bytes();
    if b.get(i) == Some(&b'"') {
        let q = quoted_at(b, i)?;
        return Some((q.name(line), q.end + 1));
    }
    let end = metric_name_end(b, i);
    (end > i).then(|| (Name::plain(&line[i..end]), end))
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

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline(always)]
fn word_at(hay: &[u8], i: usize) -> Option<u64> {
    let chunk = hay.get(i..i + 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

/// High bit set in every byte of `w` equal to the byte splatted in `pattern` (the lowest flagged byte is
/// exact; flags above it may be false positives, so only `trailing_zeros` of the result is meaningful).
#[inline(always)]
fn eq_mask(w: u64, pattern: u64) -> u64 {
    let x = w ^ pattern;
    x.wrapping_sub(LO) & !x & HI
}

/// Offset of the first `a` or `b` at or after `i`, eight bytes at a time (SWAR: label values and names
/// are mostly shorter than `memchr`'s vector setup pays for).
#[inline]
fn find2(hay: &[u8], i: usize, a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut offset = i;
    while let Some(w) = word_at(hay, offset) {
        let found = eq_mask(w, pa) | eq_mask(w, pb);
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    hay.get(offset..)?
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
        if b.get(p) == Some(&b'"') {
            return Some(p);
        }
        // A backslash escapes whatever follows it; the pair is unescaped later (or kept as is).
        i = p + 2;
    }
}

/// Label sets up to this size are checked for duplicate names on the stack; larger ones re-scan.
const INLINE_NAMES: usize = 32;

/// The label names of one set seen so far, for the duplicate check. Each name is kept with its
/// [`fingerprint`], so that telling two names apart is one integer comparison; only equal fingerprints
/// compare the names themselves.
struct SeenNames<'a> {
    fingerprints: [u64; INLINE_NAMES],
    names: [&'a [u8]; INLINE_NAMES],
    count: usize,
}

impl<'a> SeenNames<'a> {
    #[inline(always)]
    fn new() -> Self {
        Self {
            fingerprints: [0; INLINE_NAMES],
            names: [&[]; INLINE_NAMES],
            count: 0,
        }
    }

    /// Records the name `b[start..end]`, failing if an earlier name of the set (among the first
    /// [`INLINE_NAMES`]) is the same.
    #[inline(always)]
    fn add(&mut self, b: &'a [u8], start: usize, end: usize) -> Result<(), ScanError> {
        let name = b.get(start..end).unwrap_or_default();
        let fingerprint = fingerprint(b, start, end);
        let count = self.count;
        if count <= INLINE_NAMES {
            let seen = &self.fingerprints[..count.min(INLINE_NAMES)];
            if seen.contains(&fingerprint) {
                let names = &self.names[..count.min(INLINE_NAMES)];
                if seen
                    .iter()
                    .zip(names)
                    .any(|(&f, &n)| f == fingerprint && n == name)
                {
                    return Err(duplicate(start, name));
                }
            }
        }
        if count < INLINE_NAMES {
            self.fingerprints[count] = fingerprint;
            self.names[count] = name;
        }
        self.count = count + 1;
        Ok(())
    }
}

/// A validated label set: the offset of its `}`, its shape, and the quoted metric name written inside
/// the braces (`{"my.metric", a="b"}`), if any.
#[derive(Clone, Copy)]
pub(super) struct LabelSet {
    pub close: usize,
    pub shape: Shape,
    pub name: Option<Quoted>,
}

/// A quoted string within a line: the offsets of its content (without the quotes), and whether the
/// content holds a backslash (so it needs unescaping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quoted {
    pub start: usize,
    pub end: usize,
    pub escaped: bool,
}

impl Quoted {
    /// The content as a name (escapes kept, read lazily).
    #[inline]
    pub(super) fn name<'a>(&self, line: &'a str) -> Name<'a> {
        Name::new(
            line.get(self.start..self.end).unwrap_or_default(),
            self.escaped,
        )
    }
}

/// The quoted string whose opening `"` is at `open` (label-value escapes: a backslash escapes the next
/// byte). `None` when it is not closed on this line.
#[inline]
pub(super) fn quoted_at(b: &[u8], open: usize) -> Option<Quoted> {
    let start = open + 1;
    let first = quote_or_backslash(b, start)?;
    if b.get(first) == Some(&b'"') {
        return Some(Quoted {
            start,
            end: first,
            escaped: false,
        });
    }
    let end = closing_quote(b, first)?;
    Some(Quoted {
        start,
        end,
        escaped: true,
    })
}

/// Whether a quoted metric name may appear inside a label set's braces: only where no name came before
/// the braces, and never in an exemplar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum NameInBraces {
    Allowed,
    Forbidden,
}

/// How [`LabelIter`] can walk a validated label set.
///
/// Plain means exactly `name="value"` pairs joined by single commas (a trailing comma allowed), with no
/// blank anywhere and no backslash in a value: the shape nearly every exporter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Anything valid: walk it token by token.
    General,
    /// Plain: labels are found from the quotes alone.
    Plain,
    /// Plain, and small enough that validation noted where each label's `=` and closing quote are.
    Indexed(Spans),
}

impl Shape {
    /// The shape of an empty label set.
    pub(super) const EMPTY: Self = Self::Indexed(Spans {
        count: 0,
        eq: 0,
        close: 0,
    });
}

/// Most labels an indexed set holds.
const SPAN_SLOTS: usize = 8;

/// Offsets within a plain label set's text of each label's `=` and closing quote, one byte per label
/// (so at most [`SPAN_SLOTS`] labels, within the first 256 bytes), packed into words: built and read in
/// registers rather than as byte arrays in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spans {
    count: u8,
    eq: u64,
    close: u64,
}

/// Label sets up to this size may be validated by the quick pass.
const QUICK_NAMES: usize = 16;

/// A label name's fingerprint: its first eight bytes, zero-padded, mixed with its length. Names are
/// never empty and hold no zero byte, so names of up to eight bytes have distinct fingerprints, and no
/// fingerprint is zero.
#[inline(always)]
fn fingerprint(b: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let prefix = match word_at(b, start) {
        Some(w) if len >= 8 => w,
        Some(w) => w & ((1u64 << (8 * len)) - 1),
        None => {
            let name = b.get(start..end).unwrap_or_default();
            let mut word = [0u8; 8];
            let n = name.len().min(8);
            word[..n].copy_from_slice(&name[..n]);
            u64::from_le_bytes(word)
        }
    };
    prefix ^ ((len as u64) << 58)
}

/// Validates the label set whose `{` is at `open`.
///
/// A plain set (see [`LabelSet`]) of up to [`QUICK_NAMES`] labels whose names have distinct
/// fingerprints is checked in one quick pass; anything else (blanks, escapes, a possible duplicate,
/// errors) is re-checked from the start by the general scanner, which alone reports errors.
#[inline]
pub(super) fn scan_labels(
    b: &[u8],
    open: usize,
    dialect: Dialect,
    names: NameInBraces,
) -> Result<LabelSet, ScanError> {
    let mut i = open + 1;
    if b.get(i) == Some(&b'}') {
        return Ok(LabelSet {
            close: i,
            shape: Shape::EMPTY,
            name: None,
        });
    }
    let base = open + 1;
    let mut seen = [0u64; QUICK_NAMES];
    let mut spans = Spans {
        count: 0,
        eq: 0,
        close: 0,
    };
    let mut count = 0;
    loop {
        let name_end = match short_label_name(b, i) {
            Some(end) => end,
            None => {
                let end = label_name_end(b, i);
                if end == i || b.get(end) != Some(&b'=') {
                    break;
                }
                end
            }
        };
        if b.get(name_end + 1) != Some(&b'"') || count == QUICK_NAMES {
            break;
        }
        let fp = fingerprint(b, i, name_end);
        if seen[..count].contains(&fp) {
            break;
        }
        seen[count] = fp;
        count += 1;
        let Some(close) = quote_or_backslash(b, name_end + 2) else {
            break;
        };
        let end = match (b.get(close), b.get(close + 1)) {
            (Some(b'"'), Some(b'}')) => close + 1,
            (Some(b'"'), Some(b',')) => {
                i = close + 2;
                if b.get(i) == Some(&b'}') && dialect == Dialect::Text {
                    i
                } else {
                    0
                }
            }
            _ => break,
        };
        // Offsets fit a byte while `close` does; past that (or past the slots) `count` stops below
        // the number of labels, which marks the spans as unusable.
        let slot = usize::from(spans.count);
        if slot + 1 == count && slot < SPAN_SLOTS && close - base < 256 {
            let shift = 8 * slot;
            spans.eq |= ((name_end - base) as u64) << shift;
            spans.close |= ((close - base) as u64) << shift;
            spans.count += 1;
        }
        if end != 0 {
            let shape = if usize::from(spans.count) == count {
                Shape::Indexed(spans)
            } else {
                Shape::Plain
            };
            return Ok(LabelSet {
                close: end,
                shape,
                name: None,
            });
        }
    }
    scan_labels_general(b, open, dialect, names).map(|(close, name)| LabelSet {
        close,
        shape: Shape::General,
        name,
    })
}

/// Validates any label set whose `{` is at `open` and returns the offset of its `}` and the quoted
/// metric name inside it, if any.
///
/// A label name is `[a-zA-Z_][a-zA-Z0-9_]*` or a quoted string (any UTF-8, label-value escapes). A
/// quoted string followed by `,` or `}` instead of `=` is the metric name (`{"my.metric", a="b"}`), at
/// most once, and only where `names` allows it. The text dialect also takes labels without a comma
/// between them (`{a="b" c="d"}`), as Prometheus's lexer does.
///
/// Label names must be unique: each is compared with the earlier ones, kept in a small array on the
/// stack; a set with more names than that is re-scanned once it is known to be well formed.
#[cold]
#[inline(never)]
fn scan_labels_general(
    b: &[u8],
    open: usize,
    dialect: Dialect,
    names: NameInBraces,
) -> Result<(usize, Option<Quoted>), ScanError> {
    let text = dialect == Dialect::Text;
    let skip = |i| if text { skip_blanks(b, i) } else { i };
    let mut i = skip(open + 1);
    let mut metric_name = None;
    if b.get(i) == Some(&b'}') {
        return Ok((i, None));
    }
    let mut seen = SeenNames::new();
    loop {
        let (name_start, name_end, after) = if b.get(i) == Some(&b'"') {
            let Some(q) = quoted_at(b, i) else {
                return Err(ScanError::new(i, "unterminated quoted label name"));
            };
            (q.start, q.end, q.end + 1)
        } else {
            let end = label_name_end(b, i);
            if end == i {
                return Err(ScanError::new(i, "expected label name"));
            }
            (i, end, end)
        };
        let quoted = after != name_end;
        let next = skip(after);
        if quoted && matches!(b.get(next), Some(b',' | b'}')) {
            if names == NameInBraces::Forbidden {
                return Err(ScanError::new(i, "expected label name"));
            }
            if metric_name.is_some() {
                return Err(ScanError::new(i, "metric name already set"));
            }
            metric_name = Some(Quoted {
                start: name_start,
                end: name_end,
                escaped: b
                    .get(name_start..name_end)
                    .is_some_and(|n| n.contains(&b'\\')),
            });
            if b.get(next) == Some(&b'}') {
                i = next;
                break;
            }
            i = skip(next + 1);
            if b.get(i) == Some(&b'}') {
                break;
            }
            continue;
        }
        seen.add(b, name_start, name_end)?;
        i = next;
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
            // Prometheus's text lexer needs no comma between labels.
            Some(_) if text => {}
            _ => {
                return Err(ScanError::new(i, "expected ',' or '}' after label value"));
            }
        }
    }
    if seen.count > INLINE_NAMES {
        check_unique(b, open + 1, i)?;
    }
    Ok((i, metric_name))
}

#[cold]
fn duplicate(at: usize, name: &[u8]) -> ScanError {
    ScanError::new(
        at,
        format!("duplicate label name \"{}\"", String::from_utf8_lossy(name)),
    )
}

/// Quadratic uniqueness check over an already validated label set `b[start..end]`.
#[cold]
fn check_unique(b: &[u8], start: usize, end: usize) -> Result<(), ScanError> {
    let Some(raw) = b.get(start..end) else {
        return Ok(());
    };
    let mut outer = 0;
    while let Some(label) = next_general(raw, &mut outer) {
        let mut inner = outer;
        while let Some(other) = next_general(raw, &mut inner) {
            let other_name = raw.get(other.name.clone()).unwrap_or_default();
            if other_name == raw.get(label.name.clone()).unwrap_or_default() {
                return Err(duplicate(start + other.name.start, other_name));
            }
        }
    }
    Ok(())
}

/// One label of a validated set as byte ranges: the name (without quotes when quoted) and the value
/// (still escaped), each with whether it holds a backslash.
struct RawLabel {
    name: Range<usize>,
    name_escaped: bool,
    value: Range<usize>,
    value_escaped: bool,
}

/// The next label of an already validated label set (the text between the braces) from `*pos`,
/// skipping a quoted metric name. Stops quietly on anything unexpected, which validation has ruled out.
#[inline]
fn next_general(b: &[u8], pos: &mut usize) -> Option<RawLabel> {
    let mut i = *pos;
    loop {
        while b.get(i).is_some_and(|&c| is_blank(c) || c == b',') {
            i += 1;
        }
        let (name, name_escaped, after) = if b.get(i) == Some(&b'"') {
            let q = quoted_at(b, i)?;
            (q.start..q.end, q.escaped, q.end + 1)
        } else {
            let end = label_name_end(b, i);
            if end == i {
                *pos = b.len();
                return None;
            }
            (i..end, false, end)
        };
        let eq = skip_blanks(b, after);
        if b.get(eq) != Some(&b'=') {
            // A quoted metric name inside the braces: not a label.
            i = eq;
            continue;
        }
        i = skip_blanks(b, eq + 1);
        if b.get(i) != Some(&b'"') {
            *pos = b.len();
            return None;
        }
        let start = i + 1;
        // Fast path: no backslash before the closing quote.
        let first = quote_or_backslash(b, start)?;
        let (close, value_escaped) = if b.get(first) == Some(&b'"') {
            (first, false)
        } else {
            (closing_quote(b, first)?, true)
        };
        *pos = close + 1;
        return Some(RawLabel {
            name,
            name_escaped,
            value: start..close,
            value_escaped,
        });
    }
}

/// Iterates a sample's labels as `(name, value)`, unescaping a value only when it holds a backslash.
#[derive(Clone)]
pub struct LabelIter<'a> {
    raw: &'a str,
    /// Offset of the next label.
    pos: usize,
    shape: Shape,
    /// Indexed sets: the index of the next label.
    slot: usize,
    /// Plain sets: offset of the eight-byte block `quotes` describes.
    block: usize,
    /// Plain sets: the high bit of each byte of that block that is a `"` not yet consumed.
    quotes: u64,
}

impl<'a> LabelIter<'a> {
    /// Iterates any validated label set (the text between the braces).
    #[inline]
    pub(super) fn new(raw: &'a str) -> Self {
        Self::with_shape(raw, Shape::General)
    }

    /// Iterates a validated label set of the given shape.
    #[inline]
    pub(super) fn with_shape(raw: &'a str, shape: Shape) -> Self {
        let quotes = if shape == Shape::Plain {
            quote_bits(raw.as_bytes(), 0)
        } else {
            0
        };
        Self {
            raw,
            pos: 0,
            shape,
            slot: 0,
            block: 0,
            quotes,
        }
    }

    /// Next label with its name and value still escaped, as they appear on the wire (a quoted name
    /// without its quotes), and whether the value holds a backslash.
    #[inline]
    pub(super) fn next_raw(&mut self) -> Option<(&'a str, &'a str, bool)> {
        self.next_escaped().map(|(n, _, v, e)| (n, v, e))
    }

    /// Next label as `(name, name holds a backslash, value, value holds a backslash)`, both escaped.
    #[inline(always)]
    fn next_escaped(&mut self) -> Option<(&'a str, bool, &'a str, bool)> {
        match self.shape {
            Shape::Indexed(spans) => {
                let (name, value) = self.next_indexed(&spans)?;
                Some((name, false, value, false))
            }
            Shape::Plain => {
                let (name, value) = self.next_plain()?;
                Some((name, false, value, false))
            }
            Shape::General => {
                let l = next_general(self.raw.as_bytes(), &mut self.pos)?;
                Some((
                    self.raw.get(l.name)?,
                    l.name_escaped,
                    self.raw.get(l.value)?,
                    l.value_escaped,
                ))
            }
        }
    }

    /// Next label of an indexed set.
    #[inline(always)]
    fn next_indexed(&mut self, spans: &Spans) -> Option<(&'a str, &'a str)> {
        if self.slot >= usize::from(spans.count) {
            return None;
        }
        let shift = 8 * self.slot;
        let eq = usize::from((spans.eq >> shift) as u8);
        let close = usize::from((spans.close >> shift) as u8);
        self.slot += 1;
        let name = self.raw.get(self.pos..eq)?;
        let value = self.raw.get(eq + 2..close)?;
        // Skip the closing quote and the comma after it.
        self.pos = close + 2;
        Some((name, value))
    }

    /// Offset of the next `"` of a plain set.
    #[inline(always)]
    fn next_quote(&mut self) -> Option<usize> {
        while self.quotes == 0 {
            self.block += 8;
            if self.block >= self.raw.len() {
                return None;
            }
            self.quotes = quote_bits(self.raw.as_bytes(), self.block);
        }
        let at = self.block + (self.quotes.trailing_zeros() / 8) as usize;
        self.quotes &= self.quotes - 1;
        Some(at)
    }

    /// Next label of a plain set, `name="value"`: every label holds exactly two quotes.
    #[inline(always)]
    fn next_plain(&mut self) -> Option<(&'a str, &'a str)> {
        let open = self.next_quote()?;
        let close = self.next_quote()?;
        let name = self.raw.get(self.pos..open.checked_sub(1)?)?;
        let value = self.raw.get(open + 1..close)?;
        // Skip the closing quote and the comma after it.
        self.pos = close + 2;
        Some((name, value))
    }
}

/// The high bit of each byte of the (zero-padded) eight-byte block at `at` that is a `"`.
#[inline(always)]
fn quote_bits(b: &[u8], at: usize) -> u64 {
    let w = word_at(b, at).unwrap_or_else(|| {
        let rest = b.get(at..).unwrap_or_default();
        let mut word = [0u8; 8];
        let n = rest.len().min(8);
        word[..n].copy_from_slice(&rest[..n]);
        u64::from_le_bytes(word)
    });
    // Exact per byte: a byte with its high bit set is never a quote, and the rest cannot carry.
    exact_eq(w & !HI, b'"') & !w
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (Name<'a>, Cow<'a, str>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (name, name_escaped, value, value_escaped) = self.next_escaped()?;
        let value = if value_escaped {
            Cow::Owned(unescape_label(value))
        } else {
            Cow::Borrowed(value)
        };
        Some((Name::new(name, name_escaped), value))
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

/// The text format's millisecond timestamp: an optionally signed run of decimal digits that fits an
/// `i64`, as `strconv.ParseInt` reads it (expfmt's parser; Prometheus 3 scrapes negative timestamps
/// too, e.g. samples from before 1970).
#[inline]
pub(super) fn parse_millis(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated negatively, so that `i64::MIN` itself fits.
    let mut v: i64 = 0;
    for &c in digits.as_bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if neg { Some(v) } else { v.checked_neg() }
}

/// Converts OpenMetrics float seconds to integer milliseconds, rounded (saturating at the `i64` range).
///
/// Prometheus truncates (`int64(ts * 1000)`), which turns `1.001` into 1000 ms because the product is
/// 1000.9999999999999; rounding gives what was written wherever a timestamp has at most millisecond
/// precision, and differs from Prometheus only by that float noise.
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

    /// The word-at-a-time name scan agrees with the byte table, for every byte at every position.
    #[test]
    fn name_scan_matches_table() {
        let reference = |b: &[u8], mut i: usize, class: u8| {
            while b.get(i).is_some_and(|&c| CLASS[c as usize] & class != 0) {
                i += 1;
            }
            i
        };
        for byte in 0..=255u8 {
            for at in 0..20 {
                for len in [at + 1, 20, 27] {
                    let mut b = vec![b'a'; len];
                    if let Some(slot) = b.get_mut(at) {
                        *slot = byte;
                    }
                    for start in [0, 1, 3] {
                        assert_eq!(
                            name_run_end::<true>(&b, start),
                            reference(&b, start, METRIC_CONT),
                            "{byte:#x} at {at} of {len}"
                        );
                        assert_eq!(
                            name_run_end::<false>(&b, start),
                            reference(&b, start, LABEL_CONT),
                            "{byte:#x} at {at} of {len}"
                        );
                    }
                }
            }
        }
    }

    /// The one-word label name check only ever answers what the byte scan would.
    #[test]
    fn short_label_names() {
        for byte in 0..=255u8 {
            for at in 0..9 {
                for eq_at in 0..9 {
                    let mut b = b"abcdefgh\"x\"".to_vec();
                    if let Some(slot) = b.get_mut(eq_at) {
                        *slot = b'=';
                    }
                    if let Some(slot) = b.get_mut(at) {
                        *slot = byte;
                    }
                    let scanned = label_name_end(&b, 0);
                    let expected =
                        (scanned > 0 && b.get(scanned) == Some(&b'=')).then_some(scanned);
                    if let Some(end) = short_label_name(&b, 0) {
                        assert_eq!(Some(end), expected, "{:?}", String::from_utf8_lossy(&b));
                    } else if eq_at < 8 && at != eq_at {
                        assert_eq!(expected, None, "{:?}", String::from_utf8_lossy(&b));
                    }
                }
            }
        }
    }

    #[test]
    fn prefix_test() {
        let line = b"node_network_receive_bytes_total{device=\"eth0\"} 1";
        for n in 0..line.len() {
            assert!(has_prefix(line, 0, &line[..n]));
            assert!(has_prefix(line, 5, &line[5..5 + n.min(line.len() - 5)]));
            let mut other = line[..n].to_vec();
            if let Some(last) = other.last_mut() {
                *last ^= 1;
                assert!(!has_prefix(line, 0, &other), "{n}");
            }
        }
        assert!(!has_prefix(b"abc", 0, b"abcd"));
        assert!(!has_prefix(b"abc", 4, b""));
    }

    /// Everything `Sample::labels` can yield, or the error, for the label set `{...}` of `line`.
    fn walk(line: &str, quick: bool, dialect: Dialect) -> Result<Vec<(String, String)>, String> {
        let b = line.as_bytes();
        let result = if quick {
            scan_labels(b, 0, dialect, NameInBraces::Allowed)
        } else {
            scan_labels_general(b, 0, dialect, NameInBraces::Allowed).map(|(close, name)| {
                LabelSet {
                    close,
                    shape: Shape::General,
                    name,
                }
            })
        };
        match result {
            Ok(set) => {
                let raw = &line[1..set.close];
                Ok(LabelIter::with_shape(raw, set.shape)
                    .map(|(n, v)| (n.to_string(), v.into_owned()))
                    .collect())
            }
            Err(e) => Err(format!("{} {}", e.at, e.reason)),
        }
    }

    /// The quick pass and the iterators it enables agree with the general scanner and iterator.
    #[test]
    fn quick_labels_match_general() {
        let many: String = (0..40).map(|i| format!("l{i}=\"{i}\",")).collect();
        let many_dup = format!("{many}l3=\"x\"");
        let long_value = format!("a=\"{}\",b=\"c\"", "v".repeat(300));
        let cases = [
            "{}".to_owned(),
            "{a=\"b\"}".to_owned(),
            "{a=\"b\",}".to_owned(),
            "{a=\"b\",c=\"\",d=\"e\"}".to_owned(),
            "{a=\"b\",a=\"c\"}".to_owned(),
            "{abcdefghij=\"1\",abcdefghik=\"2\",abcdefghij=\"3\"}".to_owned(),
            "{abcdefgh=\"1\",abcdefghX=\"2\"}".to_owned(),
            "{a=\"b\\\"c\",d=\"e\"}".to_owned(),
            "{a = \"b\" , c=\"d\"}".to_owned(),
            "{a=\"b\",c=\"d}".to_owned(),
            "{a=\"b\"c=\"d\"}".to_owned(),
            "{1a=\"b\"}".to_owned(),
            "{a=b}".to_owned(),
            "{a=\"é\",b=\"#\\\"\"}".to_owned(),
            format!("{{{many}}}"),
            format!("{{{many_dup}}}"),
            format!("{{{long_value}}}"),
            "{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\",i=\"9\"}".to_owned(),
            "{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\"}".to_owned(),
        ];
        for case in &cases {
            for dialect in [Dialect::Text, Dialect::OpenMetrics] {
                assert_eq!(
                    walk(case, true, dialect),
                    walk(case, false, dialect),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_label(r#"a\\b\"c\nd\ze"#), "a\\b\"c\nd\\ze");
        assert_eq!(unescape_help(r#"a\\b\"c\nd"#), "a\\b\\\"c\nd");
    }
}
