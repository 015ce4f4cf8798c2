//! Who learns what a write touched: the seam between ingest and the readers that react to new samples
//! (the autoscaling loop, the onward writer).

use crate::SeriesId;

/// One series a write request appended to, with the newest sample it accepted for that series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touched {
    pub id: SeriesId,
    /// The newest accepted sample timestamp of this series in the request (ms since the epoch).
    pub newest_ms: i64,
}

/// Told which series an ingest touched, so the engine re-evaluates only the policies reading them.
pub trait IngestObserver: Send + Sync {
    /// `touched` holds each series that accepted at least one sample, once, with that series' newest
    /// accepted timestamp: a reader measures scrape → decision from the series it actually reads, not from
    /// the newest sample of the whole request (one request can carry several targets' scrapes).
    fn on_ingest(&self, touched: &[Touched]);

    /// Called with every decompressed `WriteRequest` that was applied, for observers that need the
    /// samples themselves (the onward remote-write). The default ignores it.
    fn on_write_request(&self, _decompressed: &[u8]) {}
}

/// Sorts `touched` by series and moves one entry per series, with its newest timestamp, to the front;
/// returns how many there are (truncate to it).
pub fn dedup_touched(touched: &mut [Touched]) -> usize {
    touched.sort_unstable();
    // Sorted by (id, newest_ms): the last entry of each id run holds the newest timestamp.
    let mut w = 0;
    for r in 0..touched.len() {
        if w > 0 && touched[w - 1].id == touched[r].id {
            touched[w - 1] = touched[r];
        } else {
            touched[w] = touched[r];
            w += 1;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_the_newest_timestamp_per_series() {
        let t = |id, newest_ms| Touched {
            id: SeriesId(id),
            newest_ms,
        };
        let mut v = vec![t(2, 10), t(1, 5), t(2, 30), t(1, 4), t(3, 1), t(2, 20)];
        let n = dedup_touched(&mut v);
        v.truncate(n);
        assert_eq!(v, vec![t(1, 5), t(2, 30), t(3, 1)]);
    }
}
