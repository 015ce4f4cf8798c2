//! Durations as Prometheus writes them: `500ms`, `1s`, `1m30s`, `5m`, `1h`, `1d`, `1w`, `1y`.
//!
//! Units go from largest to smallest, each at most once; `0` alone is zero. Use with
//! `#[serde(with = "crate::duration")]` on a `Duration` field or `crate::duration::option` on an
//! `Option<Duration>` field.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration (e.g. 1s, 500ms)")]
pub struct DurationError {
    pub input: String,
}

/// Parses a Prometheus duration.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(err());
    }
    let mut rest = input;
    let mut total_ms: u64 = 0;
    // Index into UNITS that the next unit must be at or after.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (i, unit_len) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, _))| (i, u.len()))
            .max_by_key(|(_, len)| *len)
            .ok_or_else(err)?;
        if i < next_unit {
            return Err(err());
        }
        next_unit = i + 1;
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(UNITS[i].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(err)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration as Prometheus does (`1m30s`, `500ms`, `0s`); sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 1s or 500ms")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            return Ok(Duration::ZERO);
        }
        Err(E::custom(format_args!(
            "{v} is not a duration: give a unit (e.g. {v}s or {v}ms)"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!(
                "{v} is not a duration (e.g. 1s, 500ms)"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "{v} is not a duration (e.g. 1s, 500ms)"
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "{v} is not a duration (e.g. 1s, 500ms)"
        )))
    }
}

/// The same for `Option<Duration>`: a missing or null value is `None`.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        struct Wrap(Duration);
        impl<'de> serde::Deserialize<'de> for Wrap {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(Wrap)
            }
        }
        Ok(<Option<Wrap> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<u64>) {
        let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn parses_prometheus_durations() {
        check("0", Some(0));
        check("0s", Some(0));
        check("500ms", Some(500));
        check("1s", Some(1000));
        check("1m30s", Some(90_000));
        check("5m", Some(300_000));
        check("1h", Some(3_600_000));
        check("1d", Some(86_400_000));
        check("1w", Some(604_800_000));
        check("1y", Some(31_536_000_000));
        check("1h2m3s4ms", Some(3_723_004));
        check("", None);
        check("1x", None);
        check("1", None);
        check("s", None);
        check("1s1m", None);
        check("1s1s", None);
        check("-1s", None);
        check("1.5s", None);
        check(" 1s", None);
        check("99999999999999999999y", None);
    }

    #[test]
    fn formats_as_prometheus() {
        assert_eq!(format_duration(Duration::from_millis(90_000)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(800)), "800ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "1w");
    }

    #[test]
    fn error_names_the_input() {
        let e = parse_duration("1x").unwrap_err();
        assert_eq!(e.to_string(), r#""1x" is not a duration (e.g. 1s, 500ms)"#);
    }
}
