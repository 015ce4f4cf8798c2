//! Scheduled minimums (the CronHPA case): from each firing of a 5-field cron expression, for a duration,
//! the workload's minimum replica count is raised.
//!
//! Time zones are `UTC`, fixed offsets (`+02:00`, `-0530`, `UTC+1`) or IANA names (`Europe/Berlin`,
//! `America/New_York`) looked up in the tz database jiff bundles into the binary (the engine reads no
//! files). Across daylight-saving changes a schedule follows Vixie cron's rule (cron.c, kept by cronie):
//!
//! - a *fixed-time* schedule (neither the minute nor the hour field starts with `*`) whose firing falls
//!   in the hour a spring-forward skips fires at the first instant after the jump (02:30 on the night
//!   Berlin's clock goes 02:00 → 03:00 fires at 03:00 CEST), and a firing in the hour an autumn
//!   fall-back repeats fires only on the first pass (02:30 CEST, not again at 02:30 CET);
//! - a *wildcard* schedule (`*/15 * * * *`, `0 * * * *`) fires on the clock as it reads: nothing for the
//!   skipped wall minutes, and again during the repeated hour.
//!
//! (KEDA's `cron` trigger does not follow this rule but robfig/cron's, see [`crate::cron`].)
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Serialize};

/// The longest window a schedule may hold (31 days): bounds the work of one evaluation.
pub const MAX_DURATION_MS: i64 = 31 * 24 * 3600 * 1000;

/// Why a schedule was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression is not five valid fields.
    #[error("cron {expr:?}: {message}")]
    Cron {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// The duration is not of the form `1h30m`, `90s`, `2d`, or is out of range.
    #[error("duration {0:?} is not a duration between 1s and 31d (e.g. 30m, 1h30m, 2h)")]
    Duration(String),
    /// The time zone is neither a fixed offset nor a name in the tz database.
    #[error(
        "time zone {0:?} is not UTC, a fixed offset like +02:00 or an IANA name like Europe/Berlin"
    )]
    TimeZone(String),
    /// The minimum is negative.
    #[error("minReplicas {0} must not be negative")]
    MinReplicas(i32),
}

/// A parsed 5-field cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cron {
    /// The text, for explanations.
    pub expr: String,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
    /// Vixie cron's wildcard job: the minute or the hour field starts with `*`.
    wildcard_time: bool,
}

/// The zone a schedule's cron fields are read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleZone {
    /// A fixed offset, minutes east of UTC.
    Fixed(i32),
    /// An IANA name in the bundled tz database, as the database spells it.
    Iana(String),
}

/// A window raising `minReplicas`: from every firing of `start`, for `duration_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When windows open.
    pub start: Cron,
    /// How long each window stays open, ms.
    pub duration_ms: i64,
    /// The minimum while open.
    pub min_replicas: i32,
    /// The time zone of the cron fields.
    pub zone: ScheduleZone,
}

impl Schedule {
    /// Parses a schedule: `start` cron, `duration` (`1h30m`), minimum, time zone (`UTC`, `+02:00`,
    /// `Europe/Berlin`).
    pub fn parse(
        start: &str,
        duration: &str,
        min_replicas: i32,
        time_zone: &str,
    ) -> Result<Self, ScheduleError> {
        if min_replicas < 0 {
            return Err(ScheduleError::MinReplicas(min_replicas));
        }
        Ok(Self {
            start: Cron::parse(start)?,
            duration_ms: parse_duration(duration)?,
            min_replicas,
            zone: parse_zone(time_zone)?,
        })
    }

    /// The zone whose wall clock the cron fields are read on.
    pub fn time_zone(&self) -> TimeZone {
        match &self.zone {
            // `parse` keeps offsets within ±14:59, inside jiff's ±25:59:59, and checks names; only a
            // hand-built schedule can fall outside, and it is read as UTC rather than panicking.
            ScheduleZone::Fixed(minutes) => {
                let offset = Offset::from_seconds(minutes.saturating_mul(60));
                TimeZone::fixed(offset.unwrap_or(Offset::UTC))
            }
            ScheduleZone::Iana(name) => TimeZone::get(name).unwrap_or(TimeZone::UTC),
        }
    }

    /// Whether a window is open at `now_ms`: the schedule fired at some minute `t` with
    /// `t <= now < t + duration` (firings across daylight-saving changes as the module says).
    ///
    /// The walk steps back over instants, one real minute at a time, and reads the zone's clock at each.
    /// IANA offsets since 1900 are whole minutes, so each instant is a wall-clock minute. Instants
    /// outside jiff's years ±9999 match nothing.
    pub fn is_active(&self, now_ms: i64) -> bool {
        if Timestamp::from_millisecond(now_ms).is_err() {
            return false;
        }
        let zone = self.time_zone();
        let mut minute_ms = now_ms.div_euclid(60_000) * 60_000;
        while now_ms - minute_ms < self.duration_ms {
            let Ok(minute) = Timestamp::from_millisecond(minute_ms) else {
                return false;
            };
            if self.fires_at(&zone, minute) {
                return true;
            }
            minute_ms -= 60_000;
        }
        false
    }

    /// Whether the schedule fires at the real minute `minute` (an instant on a whole minute).
    fn fires_at(&self, zone: &TimeZone, minute: Timestamp) -> bool {
        let reading = zone.to_datetime(minute);
        if self.start.wildcard_time {
            return self.start.matches(reading);
        }
        if self.start.matches(reading) {
            // In a repeated hour only the first pass fires.
            let first = zone.to_ambiguous_timestamp(reading).earlier();
            return first.map_or(true, |first| first == minute);
        }
        // Right after a jump forward, the skipped readings fire.
        let Ok(previous) = minute.checked_sub(jiff::SignedDuration::from_mins(1)) else {
            return false;
        };
        let mut skipped = zone.to_datetime(previous);
        // A jump is at most a day; the bound keeps a hand-built zone from looping long.
        for _ in 0..24 * 60 {
            let Ok(next) = skipped.checked_add(jiff::SignedDuration::from_mins(1)) else {
                return false;
            };
            if next >= reading {
                return false;
            }
            if self.start.matches(next) {
                return true;
            }
            skipped = next;
        }
        false
    }

    /// The minimum at `now_ms`: the highest of `base` and every open window's minimum.
    pub fn effective_min(schedules: &[Schedule], base: i32, now_ms: i64) -> i32 {
        schedules
            .iter()
            .filter(|s| s.is_active(now_ms))
            .map(|s| s.min_replicas)
            .fold(base, i32::max)
    }
}

fn field_error(expr: &str, message: String) -> ScheduleError {
    ScheduleError::Cron {
        expr: expr.to_owned(),
        message,
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses one field into a bit set over `lo..=hi`.
fn parse_field(
    expr: &str,
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, ScheduleError> {
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + name_base);
        }
        s.parse::<u32>()
            .map_err(|_| field_error(expr, format!("{s:?} is not a number or name")))
    };
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| field_error(expr, format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(field_error(expr, "step must be at least 1".to_owned()));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if step > 1 { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(field_error(expr, format!("{part:?} is outside {lo}-{hi}")));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week` (`*`, lists, ranges, steps, names).
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(field_error(
                expr,
                format!("has {} fields, expected 5", fields.len()),
            ));
        };
        let mut days_of_week = parse_field(expr, dow, 0, 7, &DAYS, 0)?;
        if days_of_week & (1 << 7) != 0 {
            // 7 is Sunday too.
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        Ok(Self {
            expr: expr.to_owned(),
            minutes: parse_field(expr, minute, 0, 59, &[], 0)?,
            hours: parse_field(expr, hour, 0, 23, &[], 0)? as u32,
            days_of_month: parse_field(expr, dom, 1, 31, &[], 0)? as u32,
            months: parse_field(expr, month, 1, 12, &MONTHS, 1)? as u16,
            days_of_week: days_of_week as u8,
            dom_restricted: !dom.starts_with('*'),
            dow_restricted: !dow.starts_with('*'),
            wildcard_time: minute.starts_with('*') || hour.starts_with('*'),
        })
    }

    /// Whether the expression fires at the wall-clock minute `local` (its seconds are ignored).
    pub fn matches(&self, local: DateTime) -> bool {
        // Cron counts weekdays from Sunday = 0.
        let weekday = local.weekday().to_sunday_zero_offset();
        let dom = self.days_of_month & (1 << local.day()) != 0;
        let dow = self.days_of_week & (1 << weekday) != 0;
        // Standard cron: when both day fields are restricted, either may match.
        let day_ok = if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        };
        self.minutes & (1 << local.minute()) != 0
            && self.hours & (1 << local.hour()) != 0
            && self.months & (1 << local.month()) != 0
            && day_ok
    }
}

/// Parses `1h30m`, `90s`, `2d`, `500ms` into ms (1 s to 31 days).
pub fn parse_duration(text: &str) -> Result<i64, ScheduleError> {
    let err = || ScheduleError::Duration(text.to_owned());
    let total = duration_ms(text.trim()).ok_or_else(err)?;
    if !(1000..=MAX_DURATION_MS).contains(&total) {
        return Err(err());
    }
    Ok(total)
}

/// The unsigned sum of `<digits><unit>` terms (`ms`, `s`, `m`, `h`, `d`) in ms; `None` when malformed or
/// overflowing. Shared by schedules and scenario offsets.
pub(crate) fn duration_ms(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v))?;
    }
    Some(total)
}

/// Parses a fixed offset or an IANA name (the database's own spelling is kept).
pub fn parse_zone(text: &str) -> Result<ScheduleZone, ScheduleError> {
    if let Ok(minutes) = parse_offset(text) {
        return Ok(ScheduleZone::Fixed(minutes));
    }
    let name = text.trim();
    let zone = TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(text.to_owned()))?;
    let canonical = zone.iana_name().unwrap_or(name);
    Ok(ScheduleZone::Iana(canonical.to_owned()))
}

/// Parses `UTC`, `Z`, `+02:00`, `-0530`, `+2`, `UTC+01:00` into minutes east of UTC.
pub fn parse_offset(text: &str) -> Result<i32, ScheduleError> {
    let err = || ScheduleError::TimeZone(text.to_owned());
    let t = text.trim();
    let t = t
        .strip_prefix("UTC")
        .or_else(|| t.strip_prefix("GMT"))
        .unwrap_or(t);
    if t.is_empty() || t == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(err()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let h: i32 = h.parse().map_err(|_| err())?;
    let m: i32 = m.parse().map_err(|_| err())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(err());
    }
    Ok(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    use jiff::civil::date;

    /// 2024-03-04 (a Monday) at hh:mm UTC, in ms.
    fn monday(hh: i8, mm: i8) -> i64 {
        let utc = Offset::UTC.to_timestamp(date(2024, 3, 4).at(hh, mm, 0, 0));
        utc.unwrap().as_millisecond()
    }

    #[test]
    fn wall_clock_readings() {
        // What `is_active` hands the cron: the zone's wall clock at an instant.
        let read = |zone: &str, ms: i64| {
            let s = Schedule::parse("* * * * *", "1m", 1, zone).unwrap();
            s.time_zone()
                .to_datetime(Timestamp::from_millisecond(ms).unwrap())
        };
        assert_eq!(read("UTC", 0), date(1970, 1, 1).at(0, 0, 0, 0));
        assert_eq!(
            read("UTC", -1),
            date(1969, 12, 31).at(23, 59, 59, 999_000_000)
        );
        assert_eq!(
            read("+02:00", monday(6, 0)),
            date(2024, 3, 4).at(8, 0, 0, 0)
        );
        // Across midnight, back into Sunday.
        let sunday = read("-0530", monday(2, 0));
        assert_eq!(sunday, date(2024, 3, 3).at(20, 30, 0, 0));
        let cron = Cron::parse("30 20 * * SUN").unwrap();
        assert!(cron.matches(sunday));
        assert!(!cron.matches(read("UTC", monday(2, 0))));
        // A hand-built offset beyond jiff's range reads as UTC instead of panicking.
        let mut s = Schedule::parse("* * * * *", "1m", 1, "UTC").unwrap();
        s.zone = ScheduleZone::Fixed(i32::MAX);
        assert_eq!(s.time_zone(), TimeZone::UTC);
        // Instants beyond jiff's years ±9999 open no window.
        assert!(!s.is_active(i64::MAX));
        assert!(!s.is_active(i64::MIN));
    }

    #[test]
    fn weekday_morning_window() {
        let s = Schedule::parse("0 8 * * MON-FRI", "2h", 10, "UTC").unwrap();
        assert!(!s.is_active(monday(7, 59)));
        assert!(s.is_active(monday(8, 0)));
        assert!(s.is_active(monday(9, 59)));
        assert!(!s.is_active(monday(10, 0)));
        // Sunday 2024-03-03 08:30: not a weekday.
        assert!(!s.is_active(monday(8, 30) - 86_400_000));
        assert_eq!(
            Schedule::effective_min(std::slice::from_ref(&s), 2, monday(9, 0)),
            10
        );
        assert_eq!(Schedule::effective_min(&[s], 2, monday(11, 0)), 2);
    }

    #[test]
    fn offsets_shift_the_window() {
        // 08:00 at +02:00 is 06:00 UTC.
        let s = Schedule::parse("0 8 * * *", "30m", 5, "+02:00").unwrap();
        assert!(s.is_active(monday(6, 10)));
        assert!(!s.is_active(monday(8, 10)));
        let s = Schedule::parse("0 8 * * *", "30m", 5, "-0530").unwrap();
        assert!(s.is_active(monday(13, 40)));
    }

    #[test]
    fn windows_across_midnight_and_steps() {
        let s = Schedule::parse("30 23 * * *", "1h", 3, "UTC").unwrap();
        assert!(s.is_active(monday(0, 15)));
        let s = Schedule::parse("*/15 * * * *", "5m", 3, "UTC").unwrap();
        assert!(s.is_active(monday(10, 47)));
        assert!(!s.is_active(monday(10, 50)));
        let s = Schedule::parse("0 0 1 JAN,jul *", "1d", 3, "UTC").unwrap();
        assert!(!s.is_active(monday(12, 0)));
    }

    #[test]
    fn day_fields_either_match_when_both_restricted() {
        // The 4th of the month or any Friday: 2024-03-04 matches by day of month.
        let s = Schedule::parse("0 12 4 * FRI", "1h", 3, "UTC").unwrap();
        assert!(s.is_active(monday(12, 30)));
        let s = Schedule::parse("0 12 5 * 7", "1h", 3, "UTC").unwrap();
        assert!(!s.is_active(monday(12, 30)));
        assert!(s.is_active(monday(12, 30) - 86_400_000)); // Sunday
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Schedule::parse("0 8 * *", "1h", 1, "UTC").is_err());
        assert!(Schedule::parse("60 8 * * *", "1h", 1, "UTC").is_err());
        assert!(Schedule::parse("*/0 8 * * *", "1h", 1, "UTC").is_err());
        assert!(Schedule::parse("0 8 * * *", "1x", 1, "UTC").is_err());
        assert!(Schedule::parse("0 8 * * *", "40d", 1, "UTC").is_err());
        assert!(Schedule::parse("0 8 * * *", "1h", -1, "UTC").is_err());
        let e = Schedule::parse("0 8 * * *", "1h", 1, "Europe/Atlantis").unwrap_err();
        assert_eq!(
            e.to_string(),
            "time zone \"Europe/Atlantis\" is not UTC, a fixed offset like +02:00 or an IANA name like Europe/Berlin"
        );
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_offset("UTC+1"), Ok(60));
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn iana_zones_follow_daylight_saving() {
        let s = Schedule::parse("0 9 * * MON-FRI", "1h", 4, "Europe/Berlin").unwrap();
        assert_eq!(s.zone, ScheduleZone::Iana("Europe/Berlin".to_owned()));
        // 09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert!(s.is_active(ms("2024-01-08T08:30:00Z")));
        assert!(!s.is_active(ms("2024-01-08T07:30:00Z")));
        assert!(s.is_active(ms("2024-07-08T07:30:00Z")));
        assert!(!s.is_active(ms("2024-07-08T08:30:00Z")));
        let ny = Schedule::parse("0 9 * * *", "30m", 4, "America/New_York").unwrap();
        assert!(ny.is_active(ms("2024-01-08T14:10:00Z")));
        assert!(ny.is_active(ms("2024-07-08T13:10:00Z")));
        // jiff's lookup ignores case; the database's spelling is kept.
        let lower = Schedule::parse("0 9 * * *", "30m", 4, "america/new_york").unwrap();
        assert_eq!(
            lower.zone,
            ScheduleZone::Iana("America/New_York".to_owned())
        );
    }

    #[test]
    fn spring_forward_fixed_time_fires_after_the_jump() {
        // Berlin, 2024-03-31: 02:00 CET -> 03:00 CEST at 01:00 UTC; 02:30 never reads on the clock.
        let s = Schedule::parse("30 2 * * *", "10m", 4, "Europe/Berlin").unwrap();
        // Fires at 03:00 CEST (01:00 UTC), for ten minutes.
        assert!(!s.is_active(ms("2024-03-31T00:59:00Z")));
        assert!(s.is_active(ms("2024-03-31T01:00:00Z")));
        assert!(s.is_active(ms("2024-03-31T01:09:59Z")));
        assert!(!s.is_active(ms("2024-03-31T01:10:00Z")));
        // Not a second time at 03:30 CEST.
        assert!(!s.is_active(ms("2024-03-31T01:35:00Z")));
        // On the next day 02:30 CEST is 00:30 UTC.
        assert!(s.is_active(ms("2024-04-01T00:35:00Z")));
        // A wildcard schedule has nothing to catch up.
        let w = Schedule::parse("*/30 * * * *", "1m", 4, "Europe/Berlin").unwrap();
        assert!(w.is_active(ms("2024-03-31T01:00:30Z"))); // 03:00 CEST
        assert!(w.is_active(ms("2024-03-31T00:30:30Z"))); // 01:30 CET
        assert!(!w.is_active(ms("2024-03-31T00:59:30Z"))); // 01:59 CET
    }

    #[test]
    fn fall_back_fixed_time_fires_once_and_wildcards_twice() {
        // Berlin, 2024-10-27: 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30 reads at 00:30 and 01:30 UTC.
        let s = Schedule::parse("30 2 * * *", "10m", 4, "Europe/Berlin").unwrap();
        assert!(s.is_active(ms("2024-10-27T00:35:00Z"))); // 02:35 CEST
        assert!(!s.is_active(ms("2024-10-27T01:35:00Z"))); // 02:35 CET: the second pass
        let w = Schedule::parse("30 * * * *", "10m", 4, "Europe/Berlin").unwrap();
        assert!(w.is_active(ms("2024-10-27T00:35:00Z")));
        assert!(w.is_active(ms("2024-10-27T01:35:00Z")));
        // New York, 2024-11-03: 02:00 EDT -> 01:00 EST at 06:00 UTC; 01:30 reads at 05:30 and 06:30 UTC.
        let ny = Schedule::parse("30 1 * * *", "5m", 4, "America/New_York").unwrap();
        assert!(ny.is_active(ms("2024-11-03T05:31:00Z")));
        assert!(!ny.is_active(ms("2024-11-03T06:31:00Z")));
        // A spring-forward in New York (2024-03-10, 02:00 EST -> 03:00 EDT at 07:00 UTC).
        let spring = Schedule::parse("15 2 10 3 *", "5m", 4, "America/New_York").unwrap();
        assert!(spring.is_active(ms("2024-03-10T07:00:00Z")));
        assert!(!spring.is_active(ms("2024-03-10T06:59:00Z")));
    }
}
