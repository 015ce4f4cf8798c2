//! Standard five-field cron schedules (minute hour day-of-month month day-of-week) and the `@` descriptors,
//! in UTC, as Karpenter's disruption budgets read them (robfig/cron `ParseStandard`).

use jiff::civil::DateTime;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};

/// A parsed schedule: one bit set per matching minute, hour, day, month and weekday.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month or day-of-week was `*` (or `?`): then both must match, otherwise either may
    /// (cron's rule, as robfig/cron applies it).
    day_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("unrecognized descriptor: {t}")),
            t => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {text:?}",
                fields.len()
            ));
        }
        let (dom, dom_star) = field(fields[2], 1, 31, &[])?;
        let (dow, dow_star) = field(fields[4], 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        let dow = if dow & (1 << 7) != 0 {
            (dow | 1) & !(1 << 7)
        } else {
            dow
        };
        Ok(Schedule {
            minutes: field(fields[0], 0, 59, &[])?.0,
            hours: field(fields[1], 0, 23, &[])?.0,
            days: dom,
            months: field(fields[3], 1, 12, &MONTHS)?.0,
            weekdays: dow,
            day_star: dom_star || dow_star,
        })
    }

    fn day_matches(&self, dt: &DateTime) -> bool {
        let dom = self.days & (1 << dt.day()) != 0;
        let dow = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn matches(&self, dt: &DateTime) -> bool {
        self.months & (1 << dt.month()) != 0
            && self.day_matches(dt)
            && self.hours & (1 << dt.hour()) != 0
            && self.minutes & (1 << dt.minute()) != 0
    }

    /// Whether the schedule hit at some minute in `(now - duration, now]` (UTC): Karpenter's
    /// `Budget.IsActive`, which takes the next hit after `now - duration` and checks it is not after now.
    pub fn active(&self, now: Timestamp, duration: SignedDuration) -> bool {
        let Ok(start) = now.checked_sub(duration) else {
            return true;
        };
        // robfig's Next(t) starts at the next whole second after t and returns a whole minute.
        let from = start.as_second() + 1;
        let first_minute = from.div_euclid(60) * 60 + if from.rem_euclid(60) == 0 { 0 } else { 60 };
        let end = now.as_second();
        let mut t = first_minute;
        while t <= end {
            let Ok(ts) = Timestamp::from_second(t) else {
                return false;
            };
            let dt = TimeZone::UTC.to_datetime(ts);
            if self.months & (1 << dt.month()) == 0 || !self.day_matches(&dt) {
                // Skip to the next day.
                t += (24 * 60 - (i64::from(dt.hour()) * 60 + i64::from(dt.minute()))) * 60;
            } else if self.hours & (1 << dt.hour()) == 0 {
                t += (60 - i64::from(dt.minute())) * 60;
            } else if self.matches(&dt) {
                return true;
            } else {
                t += 60;
            }
        }
        false
    }
}

/// One field as a bit set, and whether it was `*` or `?`.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("failed to parse int from {s}"))?;
                if step == 0 {
                    return Err(format!("step of range should be a positive number: {part}"));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            // robfig keeps the star bit for `*` and `*/1` only.
            star |= step.unwrap_or(1) == 1;
            (min, max)
        } else {
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (value(a, names, min)?, value(b, names, min)?),
                None => {
                    let v = value(range, names, min)?;
                    // `N/step` runs from N to the end of the field.
                    (v, if step.is_some() { max } else { v })
                }
            };
            (a, b)
        };
        if lo < min {
            return Err(format!(
                "beginning of range ({lo}) below minimum ({min}): {part}"
            ));
        }
        if hi > max {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn value(text: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + offset);
    }
    text.parse()
        .map_err(|_| format!("failed to parse int from {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fields_and_descriptors_parse() {
        assert!(Schedule::parse("* * * * *").is_ok());
        assert!(Schedule::parse("30 6 * * SUN").is_ok());
        assert!(Schedule::parse("*/15 9-17 * * mon-fri").is_ok());
        assert!(Schedule::parse("@weekly").is_ok());
        assert!(Schedule::parse("@wrongly").is_err());
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn a_schedule_is_active_for_its_duration_after_each_hit() {
        let s = Schedule::parse("0 9 * * mon-fri").unwrap();
        let h = SignedDuration::from_hours(1);
        // 2024-01-08 is a Monday.
        assert!(s.active(at("2024-01-08T09:00:00Z"), h));
        assert!(s.active(at("2024-01-08T09:59:59Z"), h));
        assert!(!s.active(at("2024-01-08T10:00:00Z"), h));
        assert!(!s.active(at("2024-01-08T08:59:59Z"), h));
        assert!(!s.active(at("2024-01-07T09:30:00Z"), h), "Sunday");
        // Day-of-month and day-of-week both restricted: either matches.
        let s = Schedule::parse("0 0 1 * mon").unwrap();
        assert!(
            s.active(at("2024-02-01T00:10:00Z"), h),
            "the 1st, a Thursday"
        );
        assert!(s.active(at("2024-01-08T00:10:00Z"), h), "a Monday");
        assert!(!s.active(at("2024-01-09T00:10:00Z"), h));
    }
}
