//! Sizes in bytes: an integer (`1048576`) or a number with a unit (`512KiB`, `64MiB`, `1GB`).
//!
//! Units: `B`, `KB`, `MB`, `GB`, `TB` (powers of 1000) and `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
//! Use with `#[serde(with = "crate::size")]` on a `u64` field holding bytes.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Why a string is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a size (e.g. 1048576, 512KiB, 64MiB, 1GB)")]
pub struct SizeError {
    pub input: String,
}

/// Parses a size into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = || SizeError {
        input: input.to_owned(),
    };
    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(err());
    }
    let n: u64 = input[..digits].parse().map_err(|_| err())?;
    let unit = input[digits..].trim_start_matches(' ');
    if unit.is_empty() {
        return Ok(n);
    }
    let (_, mult) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(err)?;
    n.checked_mul(*mult).ok_or_else(err)
}

/// Formats bytes with the largest binary unit that divides them exactly (`64MiB`), else as bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, mult) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= mult && bytes.is_multiple_of(mult) {
            return format!("{}{unit}", bytes / mult);
        }
    }
    format!("{bytes}B")
}

pub(crate) fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_size(*bytes))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(SizeVisitor)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as 1048576 or 64MiB")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_size(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format_args!("{v} is not a size: sizes cannot be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format_args!(
            "{v} is not a size (e.g. 1048576, 512KiB, 64MiB, 1GB)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        for (input, expect) in [
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("512KiB", Some(512 * 1024)),
            ("64MiB", Some(64 << 20)),
            ("1GB", Some(1_000_000_000)),
            ("2 GiB", Some(2 << 30)),
            ("10B", Some(10)),
            ("1kb", None),
            ("MiB", None),
            ("1.5GiB", None),
            ("-1", None),
            ("99999999999TiB", None),
        ] {
            assert_eq!(parse_size(input).ok(), expect, "{input:?}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
    }
}
