//! The agent-wide series cap (`agent.total_series_limit`): the series every target's cache holds,
//! together, stay under one number, whatever the targets expose.
//!
//! `series_memory_limit` bounds one target; a node with many targets could still add up to more than
//! the DaemonSet's memory limit. [`SeriesTotal`] is one counter shared by every scrape loop: a scrape
//! whose *new* series would take the total past the limit is refused whole (`up` = 0, reason
//! `series_total_limit`, as `sample_limit` is), and its new series never enter the cache, so the
//! targets already held keep their series and their samples. Series a target stops exposing are given
//! back when its scrape drops them; a removed target gives back all of its own.
//!
//! Design choices:
//! - The check is at the end of the body (the new series are counted once, in one atomic step), not per
//!   line: one scrape's transient memory is already bounded by `series_memory_limit`, so checking
//!   earlier would only add work to the hot path.
//! - A cache entry is counted whether its series ships or was relabeled away: both cost the agent
//!   memory (the dropped one is remembered so it is not relabeled again).
//! - The reservation is a compare-and-swap loop, so two targets growing at the same moment cannot both
//!   pass a limit that only one of them fits under.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Series held by every target together, against the agent's limit.
#[derive(Debug)]
pub struct SeriesTotal {
    limit: usize,
    held: AtomicUsize,
    /// `surge_agent_series`: what `held` is, for dashboards.
    gauge: Gauge,
}

/// A scrape's new series do not fit under the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub limit: usize,
    /// Series held by every target when the scrape was refused.
    pub held: usize,
}

impl SeriesTotal {
    /// A total with `limit` series (0: no limit), its gauges registered in `registry` when given.
    pub fn new(limit: usize, registry: Option<&mut Registry>) -> SeriesTotal {
        let total = SeriesTotal {
            limit,
            held: AtomicUsize::new(0),
            gauge: Gauge::default(),
        };
        if let Some(r) = registry {
            r.register(
                "surge_agent_series",
                "Series held in the scrape caches of every target together (agent.total_series_limit bounds it)",
                total.gauge.clone(),
            );
            let limit_gauge: Gauge = Gauge::default();
            limit_gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
            r.register(
                "surge_agent_series_limit",
                "agent.total_series_limit (0: none)",
                limit_gauge,
            );
        }
        total
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Takes `n` more series, or refuses without taking any.
    pub fn reserve(&self, n: usize) -> Result<(), OverLimit> {
        let mut held = self.held.load(Ordering::Acquire);
        loop {
            let next = held.saturating_add(n);
            if self.limit > 0 && next > self.limit {
                return Err(OverLimit {
                    limit: self.limit,
                    held,
                });
            }
            match self
                .held
                .compare_exchange_weak(held, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.gauge.set(i64::try_from(next).unwrap_or(i64::MAX));
                    return Ok(());
                }
                Err(now) => held = now,
            }
        }
    }

    /// Gives `n` series back.
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            })
            .unwrap_or(0);
        let after = before.saturating_sub(n);
        self.gauge.set(i64::try_from(after).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_over_the_limit_takes_nothing() {
        let t = SeriesTotal::new(10, None);
        t.reserve(6).unwrap();
        assert_eq!(t.reserve(5), Err(OverLimit { limit: 10, held: 6 }));
        assert_eq!(t.held(), 6, "a refused reservation takes nothing");
        t.reserve(4).unwrap();
        assert_eq!(t.held(), 10);
        t.release(3);
        t.reserve(3).unwrap();
        t.release(100);
        assert_eq!(t.held(), 0, "releasing more than held saturates");
    }

    #[test]
    fn zero_is_no_limit() {
        let t = SeriesTotal::new(0, None);
        t.reserve(usize::MAX / 2).unwrap();
        t.reserve(usize::MAX / 2).unwrap();
    }
}
