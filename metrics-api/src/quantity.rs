//! Kubernetes Quantity and timestamp formatting.
//!
//! Values are served as `resource.NewMilliQuantity(int64(v*1000), resource.DecimalSI).String()`, as
//! prometheus-adapter does: the HPA works in milli-units, so precision below 1m is truncated toward zero, and
//! the canonical form is the one Kubernetes prints (`"1500m"`, `"10"`, `"1500"`, `"2k"`).

/// Formats `v` as a canonical DecimalSI quantity of milli-units. `None` for NaN and ±Inf, which are not
/// quantities (the caller treats them as missing data).
pub fn format_quantity(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    // Saturating, as Go's conversion of an out-of-range float is not defined and the HPA cannot use it.
    let milli = (v * 1000.0).trunc();
    let milli = if milli >= i64::MAX as f64 {
        i64::MAX
    } else if milli <= i64::MIN as f64 {
        i64::MIN
    } else {
        milli as i64
    };
    Some(format_milli(milli))
}

/// `int64Amount{value: milli, scale: -3}.AsCanonicalBytes` plus the DecimalSI suffix.
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let mut mantissa = i128::from(milli);
    let mut exponent: i32 = -3;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    // The exponent must be a multiple of three (Go's `%` truncates, as Rust's does).
    match exponent % 3 {
        1 | -2 => {
            mantissa *= 10;
            exponent -= 1;
        }
        2 | -1 => {
            mantissa *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    let suffix = match exponent {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Unreachable from an i64 of milli-units; print the exponent form Kubernetes also accepts.
        e => return format!("{mantissa}e{e}"),
    };
    format!("{mantissa}{suffix}")
}

/// RFC 3339 in UTC with second precision, as `metav1.Time` marshals: `2024-01-02T03:04:05Z`.
pub fn format_rfc3339(ms: i64) -> String {
    // Whole seconds: metav1.Time drops the fraction (flooring, also before 1970).
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_table() {
        // Expected strings are what resource.NewMilliQuantity(int64(v*1000), DecimalSI).String() prints.
        let rows: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (10.0, "10"),
            (0.5, "500m"),
            (1.5, "1500m"),
            (0.001, "1m"),
            (0.0004, "0"),
            (0.0019, "1m"),
            (12.345, "12345m"),
            (100.0, "100"),
            (1000.0, "1k"),
            (1500.0, "1500"),
            (2000.0, "2k"),
            (1_234_567.0, "1234567"),
            (2_000_000.0, "2M"),
            (3e9, "3G"),
            (-1.5, "-1500m"),
            (-2000.0, "-2k"),
            (45.0, "45"),
            (0.1, "100m"),
        ];
        for (v, want) in rows {
            assert_eq!(format_quantity(*v).as_deref(), Some(*want), "{v}");
        }
        assert_eq!(format_quantity(f64::NAN), None);
        assert_eq!(format_quantity(f64::INFINITY), None);
        assert_eq!(
            format_quantity(1e300).as_deref(),
            Some("9223372036854775807m")
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
