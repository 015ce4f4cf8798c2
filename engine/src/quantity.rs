//! Kubernetes quantities (`"500m"`, `"2k"`, `"1.5"`, `"1Gi"`, `"1e3"`) as milli-units.
//!
//! The HPA works in milli-units (`Quantity.MilliValue()`), so the engine does too. [`parse_milli`] has
//! `MilliValue()`'s semantics as apimachinery implements it (`scaledValue`, `int64Amount.AsScaledInt64`):
//! the exact decimal value, a part finer than a milli-unit rounded away from zero, and a value beyond the
//! `int64` range saturated to `i64::MAX` / `i64::MIN`. No float is involved, so `9223372036854775807m`
//! is that many milli-units, not the nearest `f64`.

/// A quantity that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not of the quantity form (`<sign><digits>[.<digits>][<suffix>]`).
    #[error("{0:?} is not a Kubernetes quantity (e.g. 500m, 10, 2k, 1.5, 1Gi)")]
    Syntax(String),
}

/// A sample value that is not a number a Kubernetes quantity can carry.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// NaN (e.g. a `0/0` in a query): the metrics APIs have no way to say it.
    #[error("{0} is not a number (a metric value must be a Kubernetes quantity)")]
    NotANumber(f64),
    /// An infinity (e.g. a division by zero in a query).
    #[error("{0} is infinite (a metric value must be a Kubernetes quantity)")]
    Infinite(f64),
}

/// Parses a Kubernetes quantity into milli-units, as `Quantity.MilliValue()` reads it: rounded away from
/// zero below a milli-unit, saturated at the `i64` range.
///
/// ```
/// use surge_engine::quantity::parse_milli;
/// assert_eq!(parse_milli("500m"), Ok(500));
/// assert_eq!(parse_milli("2k"), Ok(2_000_000));
/// assert_eq!(parse_milli("1Gi"), Ok(1_073_741_824_000));
/// assert_eq!(parse_milli("9223372036854775807m"), Ok(i64::MAX));
/// assert_eq!(parse_milli("10E"), Ok(i64::MAX)); // saturates, as MilliValue() does
/// ```
pub fn parse_milli(text: &str) -> Result<i64, QuantityError> {
    let syntax = || QuantityError::Syntax(text.to_owned());
    let s = text.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // Split the number from the suffix.
    let number_end = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // digits * 10^dec_exp * 2^bin_exp is the value in base units (plus `sticky`, a non-zero part below
    // the last digit kept).
    let mut digits: i128 = 0;
    let mut sticky = false;
    let mut dec_exp: i64 = -i64::try_from(frac_part.len()).map_err(|_| syntax())?;
    for c in int_part.chars().chain(frac_part.chars()) {
        let d = i128::from(c.to_digit(10).ok_or_else(syntax)?);
        if digits > i128::MAX / 100 {
            // Keep precision bounded: drop further digits but remember their magnitude, and whether
            // any was non-zero (it decides the rounding).
            dec_exp += 1;
            sticky |= d != 0;
            continue;
        }
        digits = digits * 10 + d;
    }
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(syntax)?;
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            // An exponent too long for an i64 is far beyond either end of the range: clamp it.
            let exp: i64 = exp.parse().unwrap_or(if exp.starts_with('-') {
                -100_000
            } else {
                100_000
            });
            dec_exp = dec_exp.saturating_add(exp.clamp(-100_000, 100_000));
        }
    }
    let saturated = if negative { i64::MIN } else { i64::MAX };
    if digits == 0 && !sticky {
        return Ok(0);
    }
    // To milli-units.
    dec_exp += 3;
    let mut value = digits;
    if bin_exp > 0 {
        match value.checked_mul(1i128 << bin_exp) {
            Some(v) => value = v,
            None => return Ok(saturated),
        }
    }
    if dec_exp >= 0 {
        // digits ≥ 1 here, so 10^19 milli-units or more is beyond the range whatever the sticky part.
        if dec_exp > 19 {
            return Ok(saturated);
        }
        for _ in 0..dec_exp {
            match value.checked_mul(10) {
                Some(v) => value = v,
                None => return Ok(saturated),
            }
        }
    } else {
        // Divide, rounding away from zero as MilliValue does.
        let mut inexact = sticky;
        for _ in 0..(-dec_exp).min(40) {
            inexact |= value % 10 != 0;
            value /= 10;
        }
        if -dec_exp > 40 {
            inexact |= value != 0;
            value = 0;
        }
        value += i128::from(inexact);
    }
    let value = if negative { -value } else { value };
    Ok(i64::try_from(value).unwrap_or(saturated))
}

/// Formats milli-units as a Kubernetes quantity (`1500` → `"1500m"`, `2000` → `"2"`).
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// Converts a sample value in base units to milli-units.
///
/// Non-finite values and values beyond the `i64` milli range are rejected: a NaN or an infinity from a
/// scrape must fail the metric, never reach the arithmetic. A value within a millionth of a milli-unit of an
/// integer is taken as that integer (so `0.3` is `300`, not `301` through binary rounding); otherwise it is
/// rounded away from zero like `Quantity.MilliValue()`.
pub fn milli_from_f64(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let scaled = value * 1000.0;
    let nearest = round_half_away(scaled);
    let milli = if (scaled - nearest).abs() < 1e-6 {
        nearest
    } else if scaled > 0.0 {
        scaled.ceil()
    } else {
        scaled.floor()
    };
    // 2^63 does not fit an i64 (i64::MAX as f64 rounds up to it): the range is half-open.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&milli) {
        return None;
    }
    Some(milli as i64)
}

/// Converts a sample value in base units (a float, as PromQL and the KEDA scalers produce them) to
/// milli-units, as the value would reach the HPA: the metrics APIs serve it as a Kubernetes quantity and
/// the HPA reads `MilliValue()`. NaN and infinities have no quantity: they are errors. A finite value
/// beyond the `i64` range saturates, as `MilliValue()` does; otherwise it is converted as
/// [`milli_from_f64`] converts it.
pub fn sample_milli(value: f64) -> Result<i64, SampleError> {
    if value.is_nan() {
        return Err(SampleError::NotANumber(value));
    }
    if value.is_infinite() {
        return Err(SampleError::Infinite(value));
    }
    Ok(milli_from_f64(value).unwrap_or(if value < 0.0 { i64::MIN } else { i64::MAX }))
}

/// `x.round()` (half away from zero), without the libm call baseline x86-64 makes for it: below 2^52 the
/// truncation through `i64` is exact and so is `x - t`; from 2^52 on every `f64` is an integer.
fn round_half_away(x: f64) -> f64 {
    const EXACT: f64 = 4_503_599_627_370_496.0; // 2^52
    if x.abs() < EXACT {
        let t = (x as i64) as f64;
        let frac = x - t;
        if frac >= 0.5 {
            t + 1.0
        } else if frac <= -0.5 {
            t - 1.0
        } else {
            t
        }
    } else {
        x.round()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn round_half_away_is_round(bits in any::<u64>(), small in -1e7f64..1e7, halves in -100_000i64..100_000) {
            for x in [f64::from_bits(bits), small, halves as f64 / 2.0, small * 1000.0] {
                let (got, want) = (round_half_away(x), x.round());
                // Equal values (a zero's sign is not observable through `as i64`), or both NaN.
                prop_assert!(got == want || (got.is_nan() && want.is_nan()), "{x}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn round_half_away_edges() {
        for x in [
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            -4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            9.3e18,
            -9.3e18,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -0.0,
            0.0,
        ] {
            assert_eq!(round_half_away(x), x.round(), "{x}");
        }
    }

    fn check(text: &str, expect: Result<i64, ()>) {
        assert_eq!(parse_milli(text).map_err(|_| ()), expect, "{text}");
    }

    #[test]
    fn parses_the_forms_users_write() {
        check("500m", Ok(500));
        check("10", Ok(10_000));
        check("2k", Ok(2_000_000));
        check("1.5", Ok(1_500));
        check("1Gi", Ok(1_073_741_824_000));
        check("128Mi", Ok(134_217_728_000));
        check("0.1", Ok(100));
        check("1e3", Ok(1_000_000));
        check("1E-3", Ok(1));
        check("-2", Ok(-2_000));
        check("+2", Ok(2_000));
        check("1u", Ok(1)); // 0.001 milli rounds away from zero
        check("100n", Ok(1));
        check("0", Ok(0));
        check(".5", Ok(500));
        check("1500m", Ok(1_500));
        check("", Err(()));
        check("m", Err(()));
        check("1x", Err(()));
        check("1.2.3", Err(()));
        check("1 k", Err(()));
        check("9P", Ok(9_000_000_000_000_000_000)); // 9e18 milli fits in i64
        // Beyond the range, MilliValue() saturates (apimachinery's scaledValue / bigToInt64Saturated).
        check("10P", Ok(i64::MAX));
        check("-10P", Ok(i64::MIN));
        check("1E", Ok(i64::MAX));
        check("9Ei", Ok(i64::MAX));
        check("1e1000", Ok(i64::MAX));
        check("1e99999999999999999999", Ok(i64::MAX));
        check("-1e5000", Ok(i64::MIN));
        check("9223372036854775807m", Ok(i64::MAX));
        check("9223372036854775808m", Ok(i64::MAX));
        check("-9223372036854775808m", Ok(i64::MIN));
        check("9223372036854775.807", Ok(i64::MAX));
        check("0m", Ok(0));
        check("0e99999", Ok(0));
        // Below a milli-unit, away from zero, however small or however many digits.
        check("1e-5000", Ok(1));
        check("-1e-5000", Ok(-1));
        check("-1u", Ok(-1));
        check("1.00000000000000000000000000000000000000001", Ok(1_001));
        check("1.00000000000000000000000000000000000000000", Ok(1_000));
        check("1e", Err(()));
        check("1e+", Err(()));
        check("1e+-3", Err(()));
        check("1e+3", Ok(1_000_000));
    }

    #[test]
    fn formats_milli() {
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(2000), "2");
    }

    #[test]
    fn converts_floats_without_binary_noise() {
        assert_eq!(milli_from_f64(0.3), Some(300));
        assert_eq!(milli_from_f64(0.0004), Some(1));
        assert_eq!(milli_from_f64(-0.0004), Some(-1));
        assert_eq!(milli_from_f64(f64::NAN), None);
        assert_eq!(milli_from_f64(f64::INFINITY), None);
        assert_eq!(milli_from_f64(1e300), None);
    }

    #[test]
    fn samples_saturate_and_refuse_what_is_not_a_number() {
        assert_eq!(sample_milli(0.3), Ok(300));
        assert_eq!(sample_milli(1e300), Ok(i64::MAX));
        assert_eq!(sample_milli(-1e300), Ok(i64::MIN));
        assert_eq!(sample_milli(9.3e15), Ok(i64::MAX));
        assert!(matches!(
            sample_milli(f64::NAN),
            Err(SampleError::NotANumber(_))
        ));
        assert!(matches!(
            sample_milli(f64::NEG_INFINITY),
            Err(SampleError::Infinite(_))
        ));
        assert_eq!(
            sample_milli(f64::INFINITY).map_err(|e| e.to_string()),
            Err("inf is infinite (a metric value must be a Kubernetes quantity)".to_owned())
        );
    }
}
