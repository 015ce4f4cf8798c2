//! Which CloudWatch points become samples: pure, time passed in.
//!
//! Every poll reads the last `lookback` of each metric. Per series, [`SeriesBook::plan`] turns that
//! window into the samples still to write, in time order (the store accepts a series' samples only in
//! order, and a timestamp once):
//! - a sample's timestamp is its period's **end** (CloudWatch stamps the start): the value covers the
//!   minute before it and is complete only then, as a Prometheus sample is the state at its time;
//! - a count metric's missing minute is 0 once a later minute has a point, or once it ended
//!   `zero_fill_after` ago; before that it is not written yet (it may still be published);
//! - a gauge's missing minute is skipped (no requests, no response time);
//! - a point for a minute already written is not written again: a different value (a late re-publication,
//!   or a late point for a minute filled with 0) is counted as `revised`; a gauge point arriving for a
//!   minute older than one already written is counted as `late` and dropped.

use std::collections::BTreeMap;

use surge_model::Sample;

use crate::naming::Kind;

/// CloudWatch's period for ALB metrics.
pub const PERIOD_MS: i64 = 60_000;

/// The window one poll asks for: periods starting at `start_ms` up to (excluding) `end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    /// The whole periods of `lookback_ms` that ended by `now_ms`.
    pub fn ending_at(now_ms: i64, lookback_ms: i64) -> Window {
        let end_ms = now_ms.div_euclid(PERIOD_MS) * PERIOD_MS;
        let periods = (lookback_ms / PERIOD_MS).max(1);
        Window {
            start_ms: end_ms - periods * PERIOD_MS,
            end_ms,
        }
    }

    /// The end of every period in the window, oldest first.
    fn period_ends(self) -> impl Iterator<Item = i64> {
        (self.start_ms + PERIOD_MS..=self.end_ms).step_by(PERIOD_MS as usize)
    }
}

/// What one plan did besides the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Minutes written as 0 (count metrics without a point).
    pub zero_filled: u64,
    /// Points for an already written minute with a different value.
    pub revised: u64,
    /// Points older than the newest written minute that were never written (gauges).
    pub late: u64,
}

/// One series' memory: the newest written minute and the values written within the lookback.
#[derive(Debug, Clone, Default)]
pub struct SeriesBook {
    last_ms: Option<i64>,
    written: BTreeMap<i64, f64>,
}

impl SeriesBook {
    /// The samples to write for `fetched` (CloudWatch's points: period **start** → value) over `window`,
    /// at `now_ms`; remembers them as written.
    pub fn plan(
        &mut self,
        kind: Kind,
        fetched: &BTreeMap<i64, f64>,
        window: Window,
        now_ms: i64,
        zero_fill_after_ms: i64,
        counts: &mut PlanCounts,
    ) -> Vec<Sample> {
        let by_end = |end: i64| fetched.get(&(end - PERIOD_MS)).copied();
        let newest_published = fetched.keys().next_back().map(|start| start + PERIOD_MS);
        let mut out = Vec::new();
        for end in window.period_ends() {
            if self.last_ms.is_some_and(|last| end <= last) {
                match (by_end(end), self.written.get_mut(&end)) {
                    (Some(v), Some(old)) if v.to_bits() != old.to_bits() => {
                        counts.revised += 1;
                        // Counted once per change, not once per poll.
                        *old = v;
                    }
                    (Some(v), None) => {
                        counts.late += 1;
                        // Remembered, so the next poll does not count it again.
                        self.written.insert(end, v);
                    }
                    _ => {}
                }
                continue;
            }
            let value = match (by_end(end), kind) {
                (Some(v), _) => v,
                (None, Kind::Count)
                    if newest_published.is_some_and(|n| n > end)
                        || now_ms - end >= zero_fill_after_ms =>
                {
                    counts.zero_filled += 1;
                    0.0
                }
                // Not published yet: the next poll looks again; nothing after it is written before it.
                (None, Kind::Count) => break,
                (None, Kind::Gauge) => continue,
            };
            out.push(Sample {
                timestamp_ms: end,
                value,
            });
            self.written.insert(end, value);
            self.last_ms = Some(end);
        }
        // Forget what the next window cannot revise.
        self.written = self.written.split_off(&(window.start_ms + PERIOD_MS));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = PERIOD_MS;

    fn points(p: &[(i64, f64)]) -> BTreeMap<i64, f64> {
        p.iter().copied().collect()
    }

    fn ts(samples: &[Sample]) -> Vec<(i64, f64)> {
        samples.iter().map(|s| (s.timestamp_ms, s.value)).collect()
    }

    #[test]
    fn the_window_holds_whole_minutes_that_ended() {
        let w = Window::ending_at(10 * M + 5_000, 4 * M);
        assert_eq!(
            w,
            Window {
                start_ms: 6 * M,
                end_ms: 10 * M
            }
        );
        assert_eq!(
            w.period_ends().collect::<Vec<_>>(),
            [7 * M, 8 * M, 9 * M, 10 * M]
        );
    }

    #[test]
    fn counts_are_stamped_at_the_period_end_and_gaps_between_points_are_zero() {
        let mut book = SeriesBook::default();
        let mut c = PlanCounts::default();
        let w = Window::ending_at(10 * M + 1, 4 * M);
        // Points for the minutes starting 6m and 8m; 7m had no requests; 9m is not published yet.
        let got = book.plan(
            Kind::Count,
            &points(&[(6 * M, 5.0), (8 * M, 7.0)]),
            w,
            10 * M + 1,
            3 * M,
            &mut c,
        );
        assert_eq!(ts(&got), [(7 * M, 5.0), (8 * M, 0.0), (9 * M, 7.0)]);
        assert_eq!(c.zero_filled, 1);
        // The next minute: 9m published; nothing is written twice.
        let w = Window::ending_at(11 * M + 1, 4 * M);
        let got = book.plan(
            Kind::Count,
            &points(&[(7 * M, 5.0), (8 * M, 7.0), (9 * M, 2.0)]),
            w,
            11 * M + 1,
            3 * M,
            &mut c,
        );
        assert_eq!(ts(&got), [(10 * M, 2.0)]);
        // The minute that started at 7m was filled with 0 and is now published as 5: a revision.
        assert_eq!(c.revised, 1);
    }

    #[test]
    fn an_idle_series_is_zero_once_the_publication_delay_passed() {
        let mut book = SeriesBook::default();
        let mut c = PlanCounts::default();
        let now = 10 * M + 1;
        let got = book.plan(
            Kind::Count,
            &points(&[]),
            Window::ending_at(now, 4 * M),
            now,
            3 * M,
            &mut c,
        );
        // Minutes ending 7m and 8m ended ≥ 3m ago: 0. 9m and 10m may still be published.
        assert_eq!(ts(&got), [(7 * M, 0.0)]);
        let got = book.plan(
            Kind::Count,
            &points(&[]),
            Window::ending_at(now, 4 * M),
            now,
            2 * M,
            &mut c,
        );
        assert_eq!(ts(&got), [(8 * M, 0.0)]);
    }

    #[test]
    fn gauges_skip_missing_minutes_and_count_late_points() {
        let mut book = SeriesBook::default();
        let mut c = PlanCounts::default();
        let now = 10 * M + 1;
        let w = Window::ending_at(now, 4 * M);
        let got = book.plan(
            Kind::Gauge,
            &points(&[(6 * M, 0.25), (8 * M, 0.5)]),
            w,
            now,
            3 * M,
            &mut c,
        );
        assert_eq!(ts(&got), [(7 * M, 0.25), (9 * M, 0.5)]);
        // A point for the minute starting 7m shows up after 9m was written: too late for the store.
        let got = book.plan(
            Kind::Gauge,
            &points(&[(6 * M, 0.25), (7 * M, 0.125), (8 * M, 0.5)]),
            w,
            now,
            3 * M,
            &mut c,
        );
        assert!(got.is_empty());
        assert_eq!(
            c,
            PlanCounts {
                zero_filled: 0,
                revised: 0,
                late: 1
            }
        );
    }

    #[test]
    fn a_republished_value_is_counted_once() {
        let mut book = SeriesBook::default();
        let mut c = PlanCounts::default();
        let now = 10 * M + 1;
        let w = Window::ending_at(now, 4 * M);
        book.plan(Kind::Count, &points(&[(9 * M, 3.0)]), w, now, 3 * M, &mut c);
        book.plan(Kind::Count, &points(&[(9 * M, 4.0)]), w, now, 3 * M, &mut c);
        book.plan(Kind::Count, &points(&[(9 * M, 4.0)]), w, now, 3 * M, &mut c);
        assert_eq!(c.revised, 1);
    }
}
