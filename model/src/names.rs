//! Metric and label name rules: Prometheus 3's two validation schemes and the escapings it uses when a
//! UTF-8 name meets a side that only takes legacy names.
//!
//! This follows prometheus/common `model/metric.go` (`ValidationScheme`, `EscapingScheme`, `EscapeName`,
//! `UnescapeName`); the tests below port its tables from revision
//! d2417e2cbb82c4c81e4d28d55f354058169a9f08.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write;
use std::str::FromStr;

/// Which metric and label names are valid.
///
/// Prometheus 3's default is [`NameValidationScheme::Utf8`]: any non-empty UTF-8 string (a Rust `&str`
/// is always UTF-8, so only emptiness is checked). [`NameValidationScheme::Legacy`] is the
/// `[a-zA-Z_:][a-zA-Z0-9_:]*` / `[a-zA-Z_][a-zA-Z0-9_]*` rule of Prometheus 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NameValidationScheme {
    /// Any non-empty UTF-8 name (`utf8`).
    #[default]
    Utf8,
    /// Prometheus 2's character classes (`legacy`).
    Legacy,
}

impl NameValidationScheme {
    /// The name as it is written in configuration (`utf8`, `legacy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Legacy => "legacy",
        }
    }

    /// Whether `name` is a valid metric name under this scheme.
    pub fn is_valid_metric_name(self, name: &str) -> bool {
        match self {
            Self::Utf8 => !name.is_empty(),
            Self::Legacy => crate::is_valid_metric_name(name),
        }
    }

    /// Whether `name` is a valid label name under this scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            Self::Utf8 => !name.is_empty(),
            Self::Legacy => crate::is_valid_label_name(name),
        }
    }
}

impl fmt::Display for NameValidationScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is neither `utf8` nor `legacy` (or one of the escaping names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheme {0:?}")]
pub struct UnknownScheme(pub String);

impl FromStr for NameValidationScheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "utf8" => Ok(Self::Utf8),
            "legacy" => Ok(Self::Legacy),
            other => Err(UnknownScheme(other.to_owned())),
        }
    }
}

/// How a name that is not a legacy name is written for a side that only takes legacy names: the
/// `escaping=` parameter of the `Accept` / `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscapingScheme {
    /// No escaping: names stay UTF-8 (`allow-utf-8`).
    AllowUtf8,
    /// Every character a legacy name cannot hold becomes `_` (`underscores`; not reversible).
    Underscores,
    /// `.` becomes `_dot_`, `_` becomes `__`, any other character a legacy name cannot hold `__`
    /// (`dots`; reversible for names whose only such characters are dots).
    Dots,
    /// `U__` followed by the name with `_` doubled and every other character a legacy name cannot hold
    /// written as `_<hex code point>_` (`values`; reversible).
    Values,
}

impl EscapingScheme {
    /// The name as it is written in configuration and in the `escaping=` header parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowUtf8 => "allow-utf-8",
            Self::Underscores => "underscores",
            Self::Dots => "dots",
            Self::Values => "values",
        }
    }

    /// Escapes `name` (a metric or a label name) as `EscapeName` does; borrowed when unchanged.
    pub fn escape<'a>(self, name: &'a str) -> Cow<'a, str> {
        if name.is_empty() {
            return Cow::Borrowed(name);
        }
        match self {
            Self::AllowUtf8 => Cow::Borrowed(name),
            Self::Underscores => {
                if crate::is_valid_metric_name(name) {
                    return Cow::Borrowed(name);
                }
                let escaped = name
                    .char_indices()
                    .map(|(i, c)| if is_legacy_char(c, i) { c } else { '_' })
                    .collect();
                Cow::Owned(escaped)
            }
            // Underscores are doubled even in a legacy name, so that unescaping is unambiguous.
            Self::Dots => {
                let mut escaped = String::with_capacity(name.len() + 8);
                for (i, c) in name.char_indices() {
                    match c {
                        '_' => escaped.push_str("__"),
                        '.' => escaped.push_str("_dot_"),
                        c if is_legacy_char(c, i) => escaped.push(c),
                        _ => escaped.push_str("__"),
                    }
                }
                Cow::Owned(escaped)
            }
            Self::Values => {
                if crate::is_valid_metric_name(name) {
                    return Cow::Borrowed(name);
                }
                let mut escaped = String::with_capacity(name.len() * 2 + 3);
                escaped.push_str("U__");
                for (i, c) in name.char_indices() {
                    match c {
                        '_' => escaped.push_str("__"),
                        c if is_legacy_char(c, i) => escaped.push(c),
                        c => {
                            // Writing to a String cannot fail.
                            let _ = write!(escaped, "_{:x}_", u32::from(c));
                        }
                    }
                }
                Cow::Owned(escaped)
            }
        }
    }

    /// Undoes [`EscapingScheme::escape`] where the scheme allows it, as `UnescapeName` does: a name that
    /// is not a well-formed escape is returned unchanged.
    pub fn unescape<'a>(self, name: &'a str) -> Cow<'a, str> {
        match self {
            Self::AllowUtf8 | Self::Underscores => Cow::Borrowed(name),
            Self::Dots => {
                if !name.contains('_') {
                    return Cow::Borrowed(name);
                }
                Cow::Owned(name.replace("_dot_", ".").replace("__", "_"))
            }
            Self::Values => match unescape_values(name) {
                Some(unescaped) => Cow::Owned(unescaped),
                None => Cow::Borrowed(name),
            },
        }
    }
}

impl fmt::Display for EscapingScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EscapingScheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow-utf-8" => Ok(Self::AllowUtf8),
            "underscores" => Ok(Self::Underscores),
            "dots" => Ok(Self::Dots),
            "values" => Ok(Self::Values),
            other => Err(UnknownScheme(other.to_owned())),
        }
    }
}

/// Whether `c` at byte offset `i` may stand in a legacy metric name (`isValidLegacyRune`).
fn is_legacy_char(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (c.is_ascii_digit() && i > 0)
}

/// The `U__` decoding; `None` when `name` is not a well-formed value escape (no `U__` prefix, a single
/// `_`, an unterminated or over-long code, or a code that is not a character).
fn unescape_values(name: &str) -> Option<String> {
    let escaped = name.strip_prefix("U__")?;
    let b = escaped.as_bytes();
    let mut out = String::with_capacity(escaped.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            // Copy the run up to the next underscore as is (it may hold non-ASCII text).
            let end = b[i..]
                .iter()
                .position(|&c| c == b'_')
                .map_or(b.len(), |p| i + p);
            out.push_str(escaped.get(i..end)?);
            i = end;
            continue;
        }
        i += 1;
        match b.get(i)? {
            b'_' => {
                out.push('_');
                i += 1;
            }
            _ => {
                // `_<hex>_`: at most six hex digits (the largest code point is 10FFFF).
                let start = i;
                let end = b[i..].iter().position(|&c| c == b'_').map(|p| i + p)?;
                if end - start > 6 {
                    return None;
                }
                let code = u32::from_str_radix(escaped.get(start..end)?, 16).ok()?;
                if escaped[start..end].starts_with(['+', '-']) {
                    return None;
                }
                out.push(char::from_u32(code)?);
                i = end + 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prometheus/common model/metric_test.go `TestValidationScheme_IsMetricNameValid` (the invalid UTF-8
    /// row `"a\xc5z"` cannot be a Rust `&str`; remote-write decoding rejects such bytes before any name
    /// check).
    #[test]
    fn metric_name_validity() {
        let cases: &[(&str, bool, bool)] = &[
            ("Avalid_23name", true, true),
            ("_Avalid_23name", true, true),
            ("1valid_23name", false, true),
            ("avalid_23name", true, true),
            ("Ava:lid_23name", true, true),
            ("a lid_23name", false, true),
            (":leading_colon", true, true),
            ("colon:in:the:middle", true, true),
            ("", false, false),
            ("dot.in.name", false, true),
        ];
        for &(name, legacy, utf8) in cases {
            assert_eq!(
                NameValidationScheme::Legacy.is_valid_metric_name(name),
                legacy,
                "{name:?}"
            );
            assert_eq!(
                NameValidationScheme::Utf8.is_valid_metric_name(name),
                utf8,
                "{name:?}"
            );
        }
        assert!(NameValidationScheme::Utf8.is_valid_label_name("k.8s"));
        assert!(!NameValidationScheme::Legacy.is_valid_label_name("k.8s"));
        assert!(!NameValidationScheme::Legacy.is_valid_label_name("a:b"));
        assert!(!NameValidationScheme::Utf8.is_valid_label_name(""));
    }

    /// `TestValidationScheme_String` / `_Set`: the configuration spellings.
    #[test]
    fn scheme_names() {
        for s in [NameValidationScheme::Utf8, NameValidationScheme::Legacy] {
            assert_eq!(s.as_str().parse::<NameValidationScheme>(), Ok(s));
        }
        assert!("UTF8".parse::<NameValidationScheme>().is_err());
        for s in [
            EscapingScheme::AllowUtf8,
            EscapingScheme::Underscores,
            EscapingScheme::Dots,
            EscapingScheme::Values,
        ] {
            assert_eq!(s.as_str().parse::<EscapingScheme>(), Ok(s));
        }
        assert!("".parse::<EscapingScheme>().is_err());
        assert!("value".parse::<EscapingScheme>().is_err());
    }

    /// prometheus/common model/metric_test.go `TestEscapeName`: input, underscores, dots, dots
    /// unescaped, values (which always unescapes to the input).
    #[test]
    fn escape_name() {
        let cases: &[(&str, &str, &str, &str, &str, &str)] = &[
            ("empty string", "", "", "", "", ""),
            (
                "legacy valid name",
                "no:escaping_required",
                "no:escaping_required",
                "no:escaping__required",
                "no:escaping_required",
                "no:escaping_required",
            ),
            (
                "name with dots",
                "mysystem.prod.west.cpu.load",
                "mysystem_prod_west_cpu_load",
                "mysystem_dot_prod_dot_west_dot_cpu_dot_load",
                "mysystem.prod.west.cpu.load",
                "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load",
            ),
            (
                "name with dots and underscore",
                "mysystem.prod.west.cpu.load_total",
                "mysystem_prod_west_cpu_load_total",
                "mysystem_dot_prod_dot_west_dot_cpu_dot_load__total",
                "mysystem.prod.west.cpu.load_total",
                "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load__total",
            ),
            (
                "name with dots and colon",
                "http.status:sum",
                "http_status:sum",
                "http_dot_status:sum",
                "http.status:sum",
                "U__http_2e_status:sum",
            ),
            (
                "name with spaces and emoji",
                "label with 😱",
                "label_with__",
                "label__with____",
                "label_with__",
                "U__label_20_with_20__1f631_",
            ),
            (
                "name with unicode characters > 0x100",
                "花火",
                "__",
                "____",
                "__",
                "U___82b1__706b_",
            ),
            (
                "name with spaces and edge-case value",
                "label with \u{0100}",
                "label_with__",
                "label__with____",
                "label_with__",
                "U__label_20_with_20__100_",
            ),
        ];
        for &(case, input, underscores, dots, unescaped_dots, values) in cases {
            let u = EscapingScheme::Underscores.escape(input);
            assert_eq!(u, underscores, "{case}");
            assert_eq!(
                EscapingScheme::Underscores.unescape(&u),
                underscores,
                "{case}"
            );
            let d = EscapingScheme::Dots.escape(input);
            assert_eq!(d, dots, "{case}");
            assert_eq!(EscapingScheme::Dots.unescape(&d), unescaped_dots, "{case}");
            let v = EscapingScheme::Values.escape(input);
            assert_eq!(v, values, "{case}");
            assert_eq!(EscapingScheme::Values.unescape(&v), input, "{case}");
            assert_eq!(EscapingScheme::AllowUtf8.escape(input), input, "{case}");
        }
    }

    /// prometheus/common model/metric_test.go `TestValueUnescapeErrors`.
    #[test]
    fn value_unescape_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("empty string", "", ""),
            (
                "basic case, no error",
                "U__no:unescapingrequired",
                "no:unescapingrequired",
            ),
            ("capitals ok, no error", "U__capitals_2E_ok", "capitals.ok"),
            (
                "underscores, no error",
                "U__underscores__doubled__",
                "underscores_doubled_",
            ),
            (
                "invalid single underscore",
                "U__underscores_doubled_",
                "U__underscores_doubled_",
            ),
            (
                "invalid single underscore, 2",
                "U__underscores__doubled_",
                "U__underscores__doubled_",
            ),
            (
                "giant fake utf-8 code",
                "U__my__hack_2e_attempt_872348732fabdabbab_",
                "U__my__hack_2e_attempt_872348732fabdabbab_",
            ),
            ("trailing utf-8", "U__my__hack_2e", "U__my__hack_2e"),
            (
                "invalid utf-8 value",
                "U__bad__utf_2eg_",
                "U__bad__utf_2eg_",
            ),
            (
                "surrogate utf-8 value",
                "U__bad__utf_D900_",
                "U__bad__utf_D900_",
            ),
        ];
        for &(case, input, expected) in cases {
            assert_eq!(EscapingScheme::Values.unescape(input), expected, "{case}");
        }
    }
}
