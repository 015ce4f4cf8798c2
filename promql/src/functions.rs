//! The numeric cores of PromQL functions, transcribed from Prometheus 2.42 (`promql/functions.go`,
//! `promql/quantile.go`) so results agree to the last bit where the arithmetic order is the same.

use surge_model::Sample;

use crate::ast::Func;

/// `extrapolatedRate` of Prometheus 2.x: `rate`, `increase` (counters) and `delta` (gauges).
///
/// `points` are the non-stale samples with `range_start <= t <= range_end` (both ends inclusive in 2.x).
/// Needs at least two points.
pub fn extrapolated_rate(
    points: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.value - first.value;
    if is_counter {
        let mut prev = first.value;
        for p in &points[1..] {
            if p.value < prev {
                result += prev;
            }
            prev = p.value;
        }
    }
    Some(extrapolate(
        result,
        first,
        last,
        points.len(),
        range_start,
        range_end,
        range_ms,
        is_counter,
        is_rate,
    ))
}

/// The extrapolation of [`extrapolated_rate`] once `result` (the increase with counter resets added, or
/// the delta) is known: needs only the window's first and last samples and its length (≥ 2).
#[allow(clippy::too_many_arguments)]
pub fn extrapolate(
    result: f64,
    first: Sample,
    last: Sample,
    count: usize,
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    // Duration between first/last samples and boundary of range.
    let mut duration_to_start = (first.timestamp_ms - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last.timestamp_ms) as f64 / 1000.0;
    let sampled_interval = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    let average_duration_between_samples = sampled_interval / (count - 1) as f64;

    if is_counter && result > 0.0 && first.value >= 0.0 {
        // Counters cannot be negative: if extrapolating to the start would go below zero, start at the
        // zero point instead.
        let duration_to_zero = sampled_interval * (first.value / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }

    // Extrapolate to a boundary only when the samples come close to it (within 110% of the average
    // interval); otherwise assume the series starts/ends half an interval beyond its first/last sample.
    let extrapolation_threshold = average_duration_between_samples * 1.1;
    let mut extrapolate_to_interval = sampled_interval;
    if duration_to_start < extrapolation_threshold {
        extrapolate_to_interval += duration_to_start;
    } else {
        extrapolate_to_interval += average_duration_between_samples / 2.0;
    }
    if duration_to_end < extrapolation_threshold {
        extrapolate_to_interval += duration_to_end;
    } else {
        extrapolate_to_interval += average_duration_between_samples / 2.0;
    }
    let mut factor = extrapolate_to_interval / sampled_interval;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    result * factor
}

/// `instantValue` of Prometheus: `irate` (`is_rate`) and `idelta` from the last two points.
pub fn instant_value(points: &[Sample], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    instant_value_of(points[points.len() - 2], points[points.len() - 1], is_rate)
}

/// [`instant_value`] of the last two points `prev` and `last`.
pub fn instant_value_of(prev: Sample, last: Sample, is_rate: bool) -> Option<f64> {
    let mut result = if is_rate && last.value < prev.value {
        // Counter reset.
        last.value
    } else {
        last.value - prev.value
    };
    let sampled_interval = last.timestamp_ms - prev.timestamp_ms;
    if sampled_interval == 0 {
        return None;
    }
    if is_rate {
        result /= sampled_interval as f64 / 1000.0;
    }
    Some(result)
}

/// Go's Kahan–Neumaier step (`kahanSumInc`): adds `inc` to `sum`, carrying the lost low bits in `c`.
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `avg_over_time`: the incremental mean of Prometheus 2.x, which avoids overflow and handles infinities,
/// Kahan-compensated as in 2.42.
pub fn avg_over_time(points: &[Sample]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for p in points {
        count += 1.0;
        if mean.is_infinite() {
            if p.value.is_infinite() && (mean > 0.0) == (p.value > 0.0) {
                continue;
            }
            if !p.value.is_infinite() && !p.value.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_sum_inc(p.value / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `sum_over_time`, Kahan-compensated as in 2.42.
pub fn sum_over_time(points: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for p in points {
        (sum, c) = kahan_sum_inc(p.value, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// `stdvar_over_time` (`stddev_over_time` is its square root): Welford's update, Kahan-compensated.
pub fn stdvar_over_time(points: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        count += 1.0;
        let delta = p.value - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (p.value - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `quantile` of Prometheus (`quantile.go`): linear interpolation between the closest ranks; NaN for no
/// values or a NaN φ, ∓Inf for φ outside [0, 1]. Sorts `values`.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort order for these heaps: NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `changes`: how often the value changed (NaN to NaN is no change).
pub fn changes(points: &[Sample]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].value != w[0].value && !(w[1].value.is_nan() && w[0].value.is_nan()))
        .count() as f64
}

/// `resets`: how often the value went down.
pub fn resets(points: &[Sample]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].value < w[0].value)
        .count() as f64
}

/// Least-squares fit of `points` (`linearRegression` of 2.42, Kahan-compensated), x in seconds from
/// `intercept_ms`: (slope, intercept). A constant series has slope 0 (NaN when the constant is infinite).
pub fn linear_regression(points: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let init_y = points.first().map_or(f64::NAN, |p| p.value);
    let mut const_y = true;
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0f64, 0.0, 0.0, 0.0);
    for (i, p) in points.iter().enumerate() {
        if const_y && i > 0 && p.value != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.timestamp_ms - intercept_ms) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(p.value, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * p.value, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `holt_winters` / `double_exponential_smoothing` (2.42's `funcHoltWinters`): the smoothed value after
/// the last point, with smoothing factor `sf` and trend factor `tf` (both already checked to be in (0, 1)).
/// Needs two points.
pub fn holt_winters(points: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].value);
    let mut b = points[1].value - points[0].value;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.value;
        // calcTrendValue(i - 1, …): at index 0 the trend is the initial one.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// The element-wise math functions (Prometheus's `simpleFunc` users); identity for anything else.
pub fn simple(func: Func) -> fn(f64) -> f64 {
    match func {
        Func::Abs => f64::abs,
        Func::Ceil => f64::ceil,
        Func::Floor => f64::floor,
        Func::Sqrt => f64::sqrt,
        Func::Exp => f64::exp,
        Func::Ln => f64::ln,
        Func::Log2 => f64::log2,
        Func::Log10 => f64::log10,
        Func::Sin => f64::sin,
        Func::Cos => f64::cos,
        Func::Tan => f64::tan,
        Func::Asin => f64::asin,
        Func::Acos => f64::acos,
        Func::Atan => f64::atan,
        Func::Sinh => f64::sinh,
        Func::Cosh => f64::cosh,
        Func::Tanh => f64::tanh,
        Func::Asinh => f64::asinh,
        Func::Acosh => f64::acosh,
        Func::Atanh => f64::atanh,
        Func::Deg => |v| v * 180.0 / std::f64::consts::PI,
        Func::Rad => |v| v * std::f64::consts::PI / 180.0,
        Func::Sgn => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => |v| v,
    }
}

/// Go's `int64(f)` on amd64: truncation toward zero, and the "integer indefinite" value (the minimum)
/// for NaN and out-of-range values.
pub fn go_float_to_i64(f: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// What a date function (`hour`, `day_of_week`, …) reads from a UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Month,
    Year,
}

impl DatePart {
    pub fn of(func: Func) -> DatePart {
        match func {
            Func::DaysInMonth => DatePart::DaysInMonth,
            Func::DayOfMonth => DatePart::DayOfMonth,
            Func::DayOfWeek => DatePart::DayOfWeek,
            Func::DayOfYear => DatePart::DayOfYear,
            Func::Hour => DatePart::Hour,
            Func::Minute => DatePart::Minute,
            Func::Month => DatePart::Month,
            _ => DatePart::Year,
        }
    }

    /// This part of the UTC time `secs` seconds after the Unix epoch.
    pub fn of_unix_seconds(self, secs: i64) -> f64 {
        let days = secs.div_euclid(86_400);
        let in_day = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let v = match self {
            DatePart::DaysInMonth => match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            },
            DatePart::DayOfMonth => d,
            // 1970-01-01 was a Thursday (4); Sunday is 0.
            DatePart::DayOfWeek => (days + 4).rem_euclid(7),
            DatePart::DayOfYear => {
                CUMULATIVE[usize::try_from(m - 1).unwrap_or(0)] + d + i64::from(leap && m > 2)
            }
            DatePart::Hour => in_day / 3600,
            DatePart::Minute => in_day % 3600 / 60,
            DatePart::Month => m,
            DatePart::Year => y,
        };
        v as f64
    }
}

/// (year, month 1–12, day 1–31) of a day count from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn max_over_time(points: &[Sample]) -> f64 {
    let mut max = points.first().map_or(f64::NAN, |p| p.value);
    for p in points {
        if p.value > max || max.is_nan() {
            max = p.value;
        }
    }
    max
}

pub fn min_over_time(points: &[Sample]) -> f64 {
    let mut min = points.first().map_or(f64::NAN, |p| p.value);
    for p in points {
        if p.value < min || min.is_nan() {
            min = p.value;
        }
    }
    min
}

/// Go's `math.Max`: NaN wins over finite values, +Inf over NaN, and +0 over -0.
pub fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y { x } else { y }
}

/// Go's `math.Min`: NaN wins over finite values, -Inf over NaN, and -0 over +0.
pub fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y { x } else { y }
}

/// One classic histogram bucket: upper bound (`le`) and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub upper_bound: f64,
    pub count: f64,
}

/// `bucketQuantile` of Prometheus 2.42: sorts, requires a `+Inf` bucket, merges equal bounds, forces
/// monotonic counts, then interpolates linearly inside the bucket holding the rank.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce_buckets(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the last bucket.
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

fn coalesce_buckets(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

fn ensure_monotonic(buckets: &mut [Bucket]) {
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
}

/// Parses an `le` value as Go's `strconv.ParseFloat` does for the forms exporters write.
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter()
            .map(|&(t, v)| Sample {
                timestamp_ms: t,
                value: v,
            })
            .collect()
    }

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        // Samples every 10 s at t=5..55 over [0, 60]: 5 s to each edge < 1.1 × 10 s, so extrapolate fully.
        let p = pts(&[
            (5_000, 10.0),
            (15_000, 20.0),
            (25_000, 30.0),
            (35_000, 40.0),
            (45_000, 50.0),
            (55_000, 60.0),
        ]);
        let r = extrapolated_rate(&p, 0, 60_000, 60_000, true, true).unwrap();
        // increase 50 over 50 s sampled; extrapolated by 5 s each side → 60/50 × 50 = 60 → 1/s.
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // Counter reset: 10, 20, 5 → increase 20 - 10 + 20... = (5 - 10) + 20 = 15 over 20 s.
        let p = pts(&[(0, 10.0), (10_000, 20.0), (20_000, 5.0)]);
        let inc = extrapolated_rate(&p, 0, 20_000, 20_000, true, false).unwrap();
        assert_eq!(inc, 15.0);
        // Zero-point clamp: counter starting at 1 rising 10/s; would extrapolate below zero.
        let p = pts(&[(10_000, 1.0), (20_000, 101.0)]);
        let inc = extrapolated_rate(&p, 0, 20_000, 20_000, true, false).unwrap();
        // durationToZero = 10 × 1/100 = 0.1 s < threshold 11 s → interval 10.1 s → 100 × 10.1/10.
        assert!((inc - 101.0).abs() < 1e-9, "{inc}");
        // Gauges are not clamped and may go down.
        let p = pts(&[(0, 10.0), (10_000, 5.0)]);
        assert_eq!(
            extrapolated_rate(&p, 0, 10_000, 10_000, false, false),
            Some(-5.0)
        );
    }

    #[test]
    fn irate_and_reset() {
        let p = pts(&[(0, 10.0), (2_000, 4.0)]);
        assert_eq!(instant_value(&p, true), Some(2.0));
        assert_eq!(instant_value(&p, false), Some(-6.0));
        assert_eq!(instant_value(&p[..1], true), None);
    }

    #[test]
    fn quantile_matches_prometheus_cases() {
        let b = |v: &[(f64, f64)]| -> Vec<Bucket> {
            v.iter()
                .map(|&(u, c)| Bucket {
                    upper_bound: u,
                    count: c,
                })
                .collect()
        };
        let mut h = b(&[
            (0.1, 10.0),
            (0.5, 50.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ]);
        assert!((bucket_quantile(0.5, &mut h) - 0.5).abs() < 1e-12);
        let mut h = b(&[
            (0.1, 10.0),
            (0.5, 50.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ]);
        // rank 95 falls in +Inf: the answer is the largest finite bound.
        assert_eq!(bucket_quantile(0.95, &mut h), 1.0);
        let mut h = b(&[(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0)]);
        // Non-monotonic counts are fixed up: [10, 10, 10] → rank 5 in the first bucket.
        assert_eq!(bucket_quantile(0.5, &mut h), 0.5);
        let mut h = b(&[(1.0, 10.0)]);
        assert!(bucket_quantile(0.5, &mut h).is_nan(), "no +Inf bucket");
        let mut h = b(&[(1.0, 0.0), (f64::INFINITY, 0.0)]);
        assert!(bucket_quantile(0.5, &mut h).is_nan(), "no observations");
        let mut h = b(&[(1.0, 1.0), (f64::INFINITY, 1.0)]);
        assert_eq!(bucket_quantile(-1.0, &mut h), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, &mut h), f64::INFINITY);
    }

    #[test]
    fn go_min_max_nan_rules() {
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(-0.0, 0.0).is_sign_negative());
    }
}
